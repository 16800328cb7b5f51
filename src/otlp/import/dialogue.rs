//! Conversations of a trace as dialogues: which root agent spans make one conversation (one per
//! run of the agent when the app ran it once per user turn, tied by `gen_ai.conversation.id`),
//! the user's messages in order (each model call's input grows by the user's new turns), how
//! long the user took before each follow-up, and how the conversation ended: normally, out of
//! turns (`MaxTurnsExceeded`, or model calls asking for tools and then nothing), or failed with
//! the framework's error.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::build::Builder;
use super::chat::{user_messages, ChatCall};
use super::span::Op;
use super::NO_USER_TEXT;

/// How long the user takes before a follow-up when the trace cannot say.
const THINK_US_DEFAULT: u64 = 1_000_000;
/// An exception this close to its span's end, with no work after it, ended the run.
const TERMINAL_SLACK_NS: u64 = 10_000_000;

/// One conversation of the trace.
#[derive(Debug, Clone)]
pub(super) struct Dialogue {
    /// The agent the user talked to first.
    pub(super) agent: String,
    /// Its root spans: agent spans (or the first chat, in a trace without agents), in time order.
    pub(super) roots: Vec<usize>,
    pub(super) at_us: u64,
    /// The user's messages in order; the first opened the conversation.
    pub(super) messages: Vec<String>,
    /// The median time the user took before a follow-up.
    pub(super) think_us: u64,
    pub(super) ending: Ending,
}

/// How a conversation of the trace ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ending {
    Normal,
    /// The agent ran out of turns after `calls` model calls in the user's last turn.
    OutOfTurns {
        agent: String,
        calls: u32,
    },
    /// The agent's run ended in an error that is not a model call's (`ModelBehaviorError`, …).
    Failed {
        agent: String,
        error: String,
    },
}

impl Builder {
    /// The conversations of the trace, in the order they opened, and the exception events their
    /// endings explain (not crashes to replay).
    pub(super) fn dialogues(
        &mut self,
        ops: &[Op],
        chats: &[usize],
        calls: &[ChatCall],
        origin_ns: u64,
    ) -> (Vec<Dialogue>, BTreeSet<usize>) {
        self.root = self.conversation_roots(ops, chats);
        let roots: Vec<usize> = (0..ops.len()).filter(|&i| self.root[i] == Some(i)).collect();
        // Roots that share a conversation id are one conversation.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut group_of: BTreeMap<usize, usize> = BTreeMap::new();
        let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
        for &r in &roots {
            let g = match self.spans[r].str("gen_ai.conversation.id").map(str::to_owned) {
                Some(id) => *by_id.entry(id).or_insert(groups.len()),
                None => groups.len(),
            };
            if g == groups.len() {
                groups.push(Vec::new());
            }
            groups[g].push(r);
            group_of.insert(r, g);
        }
        // Each group's work, in time order, in one pass over the spans.
        let mut work: Vec<Vec<usize>> = vec![Vec::new(); groups.len()];
        for i in (0..ops.len()).filter(|&i| matches!(ops[i], Op::Chat | Op::Tool)) {
            if let Some(g) = self.root[i].and_then(|r| group_of.get(&r)) {
                work[*g].push(i);
            }
        }
        // Each model call's answer by its span.
        let mut call_of: Vec<Option<&ChatCall>> = vec![None; ops.len()];
        for call in calls {
            call_of[call.span] = Some(call);
        }
        let mut explained = BTreeSet::new();
        let dialogues = groups
            .into_iter()
            .zip(work)
            .map(|(group, work)| self.dialogue(ops, group, &work, &call_of, origin_ns, &mut explained))
            .collect();
        (dialogues, explained)
    }

    /// The span that roots each span's conversation: its topmost agent span; for work outside
    /// any agent span, the first model call of its trace (or of its `gen_ai.conversation.id`,
    /// when the app gives one), so that each request of an app without agent spans is a
    /// conversation of its own.
    fn conversation_roots(&self, ops: &[Op], chats: &[usize]) -> Vec<Option<usize>> {
        let top = self.top_roots();
        let key = |i: usize| -> (&str, &str) {
            let span = &self.spans[i];
            match span.str("gen_ai.conversation.id") {
                Some(id) => ("conversation", id),
                None => ("trace", span.trace_id.as_str()),
            }
        };
        let mut first_chat: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for &c in chats.iter().filter(|&&c| top[c].is_none()) {
            first_chat.entry(key(c)).or_insert(c);
        }
        (0..ops.len())
            .map(|i| match top[i] {
                Some(t) => Some(t),
                None if matches!(ops[i], Op::Chat | Op::Tool) => first_chat.get(&key(i)).copied(),
                None => None,
            })
            .collect()
    }

    /// The agent span that takes a conversation's messages: the root, unless it is a wrapper
    /// that called no model itself (a crew, a workflow), whose first nested agent span that did
    /// (or that wraps one that did) takes them instead.
    fn working_agent(&self, ops: &[Op], root: usize, work: &[usize]) -> usize {
        let mut at = root;
        // Each step goes one agent span deeper, so at most as many steps as spans.
        for _ in 0..self.spans.len() {
            if work.iter().any(|&i| ops[i] == Op::Chat && self.owner[i] == Some(at)) {
                return at;
            }
            // The earliest agent span directly under `at` that has model calls below it.
            let nested = work
                .iter()
                .filter(|&&i| ops[i] == Op::Chat)
                .filter_map(|&i| {
                    let mut agent = self.owner[i]?;
                    for _ in 0..self.spans.len() {
                        match self.owner[agent] {
                            Some(up) if up == at => return Some(agent),
                            Some(up) => agent = up,
                            None => return None,
                        }
                    }
                    None
                })
                .min();
            match nested {
                Some(next) => at = next,
                None => return root,
            }
        }
        root
    }

    /// The topmost agent span above each span (itself, for a root agent span).
    fn top_roots(&self) -> Vec<Option<usize>> {
        (0..self.spans.len())
            .map(|i| {
                let mut at = if self.spans[i].op() == Op::Agent {
                    Some(i)
                } else {
                    self.owner[i]
                };
                let mut top = None;
                let mut steps = 0;
                while let Some(a) = at {
                    top = Some(a);
                    at = self.owner[a];
                    steps += 1;
                    if steps > self.spans.len() {
                        break;
                    }
                }
                top
            })
            .collect()
    }

    fn dialogue(
        &mut self,
        ops: &[Op],
        roots: Vec<usize>,
        work: &[usize],
        call_of: &[Option<&ChatCall>],
        origin_ns: u64,
        explained: &mut BTreeSet<usize>,
    ) -> Dialogue {
        let first = roots[0];
        let agent = if ops[first] == Op::Agent {
            self.spans[self.working_agent(ops, first, work)].agent_name()
        } else {
            super::build::DEFAULT_AGENT.to_owned()
        };
        // What each root and model call says the user had said by then, in time order.
        let mut seen: Vec<(u64, u64, bool, Option<Vec<String>>)> = roots
            .iter()
            .filter(|&&r| ops[r] == Op::Agent)
            .map(|&r| {
                (
                    self.spans[r].start_ns,
                    self.spans[r].end_ns,
                    true,
                    user_messages(&self.spans[r]),
                )
            })
            .collect();
        seen.extend(work.iter().filter(|&&i| ops[i] == Op::Chat).map(|&i| {
            (
                self.spans[i].start_ns,
                self.spans[i].end_ns,
                false,
                user_messages(&self.spans[i]),
            )
        }));
        seen.sort_by_key(|&(start, _, root, _)| (start, !root));
        let mut messages: Vec<String> = Vec::new();
        let mut gaps_ns = Vec::new();
        let mut last_chat_end_ns = None;
        let mut last_turn_ns = self.spans[first].start_ns;
        for (start_ns, end_ns, root, said) in &seen {
            if let Some(said) = said {
                let known = messages.len();
                let new: Vec<String> = if said.len() > known && said[..known] == messages[..] {
                    said[known..].to_vec()
                } else if *root && known > 0 {
                    // A run of its own per user turn: its input is the new message.
                    said.last().cloned().into_iter().collect()
                } else {
                    Vec::new()
                };
                if !new.is_empty() && known > 0 {
                    last_turn_ns = *start_ns;
                    if let Some(end) = last_chat_end_ns {
                        gaps_ns.push(start_ns.saturating_sub(end));
                    }
                }
                messages.extend(new);
            }
            if !root {
                last_chat_end_ns = Some(*end_ns);
            }
        }
        if messages.is_empty() {
            messages.push(self.user_text(first));
        }
        if seen.iter().all(|(_, _, _, said)| said.is_none()) {
            // No content says when the user spoke: a model call of the agent holding the
            // conversation right after its own plain answer, with nothing run between, can only
            // be the user's next turn (or the app's next run of the agent for the same
            // conversation id).
            for (start_ns, gap_ns) in self.unrecorded_follow_ups(ops, work, call_of, &agent) {
                messages.push(NO_USER_TEXT.to_owned());
                gaps_ns.push(gap_ns);
                last_turn_ns = start_ns;
            }
        }
        gaps_ns.sort_unstable();
        let think_us = gaps_ns
            .get(gaps_ns.len().saturating_sub(1) / 2)
            .map_or(THINK_US_DEFAULT, |ns| (ns / 1_000).max(1));
        let ending = self.ending(ops, &roots, work, call_of, last_turn_ns, explained);
        Dialogue {
            agent,
            at_us: (self.spans[first].start_ns - origin_ns) / 1_000,
            roots,
            messages,
            think_us,
            ending,
        }
    }

    /// The model calls of a conversation without content that open a user's turn, each with its
    /// start and the time since the answer before it: a call of the agent that holds the
    /// conversation (the first, then whoever it was handed to) whose previous call answered in
    /// plain text, with no tool run between.
    fn unrecorded_follow_ups(
        &self,
        ops: &[Op],
        work: &[usize],
        call_of: &[Option<&ChatCall>],
        agent: &str,
    ) -> Vec<(u64, u64)> {
        let mut holder = agent.to_owned();
        let mut answered_at_ns: Option<u64> = None;
        let mut follow_ups = Vec::new();
        for &i in work {
            let span = &self.spans[i];
            if ops[i] == Op::Tool {
                answered_at_ns = None;
                continue;
            }
            let Some(call) = call_of[i] else {
                continue;
            };
            if call.agent != holder {
                continue;
            }
            if let Some(end_ns) = answered_at_ns {
                follow_ups.push((span.start_ns, span.start_ns.saturating_sub(end_ns)));
            }
            let plain = span.error.is_none() && call.tool_calls.is_empty() && call.delegates.is_empty();
            answered_at_ns = (plain && call.handoff.is_none()).then_some(span.end_ns);
            if let Some(to) = &call.handoff {
                holder = to.clone();
            }
        }
        follow_ups
    }

    /// How the conversation ended: the last root's error, when it ended the run; else model
    /// calls that asked for tools and then nothing (out of turns); else normally.
    fn ending(
        &self,
        ops: &[Op],
        roots: &[usize],
        work: &[usize],
        call_of: &[Option<&ChatCall>],
        last_turn_ns: u64,
        explained: &mut BTreeSet<usize>,
    ) -> Ending {
        let calls_in_last_turn = |agent: &str| {
            work.iter()
                .filter(|&&i| ops[i] == Op::Chat && self.spans[i].start_ns >= last_turn_ns)
                .filter(|&&i| {
                    self.owner[i].map_or(super::build::DEFAULT_AGENT.to_owned(), |a| self.spans[a].agent_name())
                        == agent
                })
                .count() as u32
        };
        let last_root = *roots.last().expect("a dialogue has a root");
        let span = &self.spans[last_root];
        if let (Op::Agent, Some(message)) = (ops[last_root], &span.error) {
            let exception = span.events.iter().find(|(name, _, _)| name == "exception");
            let at_ns = exception.map_or(span.end_ns, |(_, t, _)| *t);
            let later_work = work.iter().any(|&i| self.spans[i].start_ns > at_ns);
            if span.end_ns.saturating_sub(at_ns) <= TERMINAL_SLACK_NS && !later_work {
                explained.insert(last_root);
                // The run's last work was a model call that failed: its recorded error (after
                // the retries the policy allows) ends the conversation in the replay.
                let last_work = work.last().copied();
                if last_work.is_some_and(|i| ops[i] == Op::Chat && self.spans[i].error.is_some()) {
                    return Ending::Normal;
                }
                let error_type = exception
                    .and_then(|(_, _, attrs)| attrs.get("exception.type").and_then(Value::as_str))
                    .or_else(|| span.str("error.type"))
                    .map(str::to_owned)
                    .unwrap_or_else(|| message.split(':').next().unwrap_or("").trim().to_owned());
                let agent = span.agent_name();
                let said = format!("{error_type} {message}").to_ascii_lowercase();
                if said.contains("maxturns") || said.contains("max turns") || said.contains("max_turns") {
                    let calls = calls_in_last_turn(&agent);
                    return Ending::OutOfTurns { agent, calls };
                }
                let error = if message.starts_with(&error_type) {
                    message.clone()
                } else {
                    format!("{error_type}: {message}")
                };
                return Ending::Failed { agent, error };
            }
            return Ending::Normal;
        }
        // Tools asked for, and then nothing: the run stopped before its next model call. Not in
        // agentsim's own export, which records why a conversation stopped (a crash, a limit).
        let exported = self.agentsim_export;
        let crashed = roots
            .iter()
            .any(|&r| self.spans[r].events.iter().any(|(name, _, _)| name == "exception"));
        if exported || crashed {
            return Ending::Normal;
        }
        let last_call = work
            .iter()
            .rev()
            .find(|&&i| ops[i] == Op::Chat)
            .and_then(|&i| call_of[i]);
        let asked_for_tools = last_call.filter(|c| {
            !c.tool_calls.is_empty() && c.text.is_none() && c.handoff.is_none() && self.spans[c.span].error.is_none()
        });
        if let Some(call) = asked_for_tools {
            let agent = call.agent.clone();
            let calls = calls_in_last_turn(&agent);
            return Ending::OutOfTurns { agent, calls };
        }
        Ending::Normal
    }
}
