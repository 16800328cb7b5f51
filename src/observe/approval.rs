//! The reviewers' accounts: approval requests, decisions, timeouts, and the queue in front of
//! each reviewer (its length, and how long requests waited in it and for a decision).

use std::collections::BTreeMap;

use super::Observer;
use crate::kernel::ActorIdx;
use crate::protocol::{ConvId, HumanMsg, Payload, ToolMsg};
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
    /// Requests waiting to be taken up, at most, over the run.
    pub queue_max: u64,
    /// Requests waiting to be taken up now.
    pub queued: u64,
    /// Per request that ended (decided or timed out): how long its conversation waited.
    pub waits_us: Vec<u64>,
    /// Per request taken up: how long it waited in the queue first.
    pub queue_waits_us: Vec<u64>,
}

/// A request not decided yet: its reviewer, when it was made, whether it was taken up.
#[derive(Debug, Clone, Copy)]
pub(super) struct OpenRequest {
    human: HumanIdx,
    requested_at_us: u64,
    taken: bool,
}

/// A request's key: the tool, the conversation, the call.
type RequestKey = (ToolIdx, ConvId, u32);

impl Observer {
    /// Follows a delivery that is part of an approval.
    pub(super) fn on_approval(&mut self, to: ActorIdx, payload: &Payload, now_us: u64) {
        let Some(directory) = self.directory else {
            return;
        };
        let (kind, index) = directory.locate(to);
        match payload {
            Payload::Human(HumanMsg::Review {
                conv, tool, call_id, ..
            }) if kind == ActorKind::Human => {
                let open = OpenRequest {
                    human: index,
                    requested_at_us: now_us,
                    taken: false,
                };
                self.approval_open.insert((*tool, *conv, *call_id), open);
                let account = &mut self.approvals[index];
                account.requests += 1;
                account.queued += 1;
                account.queue_max = account.queue_max.max(account.queued);
            }
            Payload::Human(HumanMsg::Take {
                conv,
                tool,
                call_id,
                waited_us,
            }) => {
                if let Some(open) = self.approval_open.get_mut(&(*tool, *conv, *call_id)) {
                    open.taken = true;
                    let account = &mut self.approvals[open.human];
                    account.queued = account.queued.saturating_sub(1);
                    account.queue_waits_us.push(*waited_us);
                }
            }
            Payload::Human(HumanMsg::Withdraw { conv, tool, call_id }) => {
                // Withdrawn while still open: its call was cancelled (a timeout closes it first).
                if let Some(open) = self.close_request((*tool, *conv, *call_id), now_us) {
                    self.approvals[open.human].withdrawn += 1;
                }
            }
            Payload::Tool(ToolMsg::Reviewed {
                conv,
                call_id,
                approved,
            }) if kind == ActorKind::Tool => match self.close_request((index, *conv, *call_id), now_us) {
                Some(open) if *approved => self.approvals[open.human].approved += 1,
                Some(open) => self.approvals[open.human].rejected += 1,
                None => {
                    if let Some(approval) = self.tool_reviewers.get(index).copied().flatten() {
                        self.approvals[approval].late_decisions += 1;
                    }
                }
            },
            Payload::Tool(ToolMsg::ApprovalTimeout { conv, call_id }) if kind == ActorKind::Tool => {
                if let Some(open) = self.close_request((index, *conv, *call_id), now_us) {
                    self.approvals[open.human].timed_out += 1;
                }
            }
            _ => {}
        }
    }

    /// Ends an open request now: its wait is counted and, if it was still queued, it leaves
    /// the queue. `None` when it was not open.
    fn close_request(&mut self, key: RequestKey, now_us: u64) -> Option<OpenRequest> {
        let open = self.approval_open.remove(&key)?;
        let account = &mut self.approvals[open.human];
        account.waits_us.push(now_us.saturating_sub(open.requested_at_us));
        if !open.taken {
            account.queued = account.queued.saturating_sub(1);
        }
        Some(open)
    }
}

/// The open requests, by key.
pub(super) type OpenRequests = BTreeMap<RequestKey, OpenRequest>;
