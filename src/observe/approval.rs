//! The reviewers' accounts: approval requests, decisions, timeouts, and the queue in front of
//! each reviewer (its length, and how long requests waited in it and for a decision).

use std::collections::{BTreeMap, BTreeSet};

use super::Observer;
use crate::kernel::ActorIdx;
use crate::protocol::{CallKey, HumanMsg, Payload, ToolMsg};
use crate::scenario::{ActorKind, HumanIdx, ToolIdx};

/// One reviewer's requests and how they went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalAccount {
    pub name: String,
    pub requests: u64,
    pub approved: u64,
    pub rejected: u64,
    /// No decision within the reviewer's `timeout`.
    pub timed_out: u64,
    /// Withdrawn before a decision: the call was cancelled.
    pub withdrawn: u64,
    /// Decisions that came after their request had timed out (dropped).
    pub late_decisions: u64,
    /// Requests waiting to be taken up, at most, over the run (held for some virtual time: a
    /// request taken up the moment it arrives never waited).
    pub queue_max: u64,
    /// Requests waiting to be taken up now, and since when that count holds.
    pub queued: u64,
    queued_since_us: u64,
    /// Per request that ended (decided or timed out): how long its conversation waited.
    pub waits_us: Vec<u64>,
    /// Per request taken up: how long it waited in the queue first.
    pub queue_waits_us: Vec<u64>,
}

impl ApprovalAccount {
    pub fn named(name: &str) -> ApprovalAccount {
        ApprovalAccount {
            name: name.to_owned(),
            ..Default::default()
        }
    }

    /// The queue length changes at `now_us`: the length held until now counts if it held for a
    /// while.
    fn queue_changes(&mut self, now_us: u64) {
        if now_us > self.queued_since_us {
            self.queue_max = self.queue_max.max(self.queued);
        }
        self.queued_since_us = now_us;
    }
}

/// A request not decided yet: its reviewer, when it was made, whether it was taken up.
#[derive(Debug, Clone, Copy)]
pub(super) struct OpenRequest {
    human: HumanIdx,
    requested_at_us: u64,
    taken: bool,
}

/// A request's key: the tool and the call.
type RequestKey = (ToolIdx, CallKey);

/// The requests still open, and those that timed out (a decision for one of those is late).
#[derive(Debug, Default)]
pub(super) struct OpenRequests {
    open: BTreeMap<RequestKey, OpenRequest>,
    timed_out: BTreeSet<RequestKey>,
}

impl Observer {
    /// Follows a delivery that is part of an approval.
    pub(super) fn on_approval(&mut self, to: ActorIdx, payload: &Payload, now_us: u64) {
        let Some(directory) = self.directory else {
            return;
        };
        let (kind, index) = directory.locate(to);
        match payload {
            Payload::Human(HumanMsg::Review { key, tool, .. }) if kind == ActorKind::Human => {
                if self.approval_open.open.contains_key(&(*tool, *key)) {
                    return;
                }
                let open = OpenRequest {
                    human: index,
                    requested_at_us: now_us,
                    taken: false,
                };
                self.approval_open.open.insert((*tool, *key), open);
                let account = &mut self.approvals[index];
                account.requests += 1;
                account.queue_changes(now_us);
                account.queued += 1;
            }
            Payload::Human(HumanMsg::Take { key, tool, waited_us }) => {
                if let Some(open) = self.approval_open.open.get_mut(&(*tool, *key)) {
                    open.taken = true;
                    let account = &mut self.approvals[open.human];
                    account.queue_changes(now_us);
                    account.queued = account.queued.saturating_sub(1);
                    account.queue_waits_us.push(*waited_us);
                }
            }
            Payload::Human(HumanMsg::Withdraw { key, tool }) => {
                // Withdrawn while still open: its call was cancelled (a timeout closes it first).
                if let Some(open) = self.close_request((*tool, *key), now_us) {
                    self.approvals[open.human].withdrawn += 1;
                }
            }
            Payload::Tool(ToolMsg::Reviewed { key, approved }) if kind == ActorKind::Tool => {
                match self.close_request((index, *key), now_us) {
                    Some(open) if *approved => self.approvals[open.human].approved += 1,
                    Some(open) => self.approvals[open.human].rejected += 1,
                    None => {
                        let reviewer = self.tool_reviewers.get(index).copied().flatten();
                        if let (true, Some(human)) = (self.approval_open.timed_out.remove(&(index, *key)), reviewer) {
                            self.approvals[human].late_decisions += 1;
                        }
                    }
                }
            }
            Payload::Tool(ToolMsg::ApprovalTimeout(key)) if kind == ActorKind::Tool => {
                if let Some(open) = self.close_request((index, *key), now_us) {
                    self.approvals[open.human].timed_out += 1;
                    self.approval_open.timed_out.insert((index, *key));
                }
            }
            _ => {}
        }
    }

    /// Ends an open request now: its wait is counted and, if it was still queued, it leaves
    /// the queue. `None` when it was not open.
    fn close_request(&mut self, key: RequestKey, now_us: u64) -> Option<OpenRequest> {
        let open = self.approval_open.open.remove(&key)?;
        let account = &mut self.approvals[open.human];
        account.waits_us.push(now_us.saturating_sub(open.requested_at_us));
        if !open.taken {
            account.queue_changes(now_us);
            account.queued = account.queued.saturating_sub(1);
        }
        Some(open)
    }

    /// At the end of the run: the queues as they were last count too.
    pub(super) fn close_queues(&mut self, end_us: u64) {
        for account in &mut self.approvals {
            account.queue_changes(end_us);
        }
    }
}
