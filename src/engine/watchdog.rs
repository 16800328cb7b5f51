//! The runaway limits that need memory of their own: tool calls waiting for an answer
//! (`max_tool_wait`), restarts across the whole run (`max_restarts_total`), and the size of one
//! message (`max_message_bytes`). The scheduler asks; the watchdog answers with the limit's name
//! and what tripped it, which becomes the `limit_exceeded` outcome's detail.
//!
//! A signal (SIGINT, SIGTERM) ends a run from outside through [`Interrupt`], at an event
//! boundary, so that every record before it is the one an uninterrupted run writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::kernel::ActorIdx;
use crate::protocol::{AgentMsg, ConvId, LlmMsg, ModelAnswer, Payload, ToolArgs, ToolCall, ToolMsg};
use crate::scenario::Limits;

/// A tool call in flight: (calling agent, conversation, call id).
type CallKey = (ActorIdx, ConvId, u32);

/// Tracks what the runaway limits need between events.
#[derive(Debug)]
pub struct Watchdog {
    limits: Limits,
    /// Each watched call's deadline and the tool it went to.
    pending: BTreeMap<CallKey, (u64, ActorIdx)>,
    /// The same calls ordered by deadline, earliest first.
    deadlines: BTreeSet<(u64, CallKey)>,
    restarts_total: u64,
}

/// A watched tool call that waited longer than `max_tool_wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overdue {
    pub agent: ActorIdx,
    pub tool: ActorIdx,
    pub conv: ConvId,
    pub call_id: u32,
}

impl Watchdog {
    pub fn new(limits: Limits) -> Watchdog {
        Watchdog {
            limits,
            pending: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            restarts_total: 0,
        }
    }

    /// `agent` sent `call` to `tool` at `now_us`: it waits from now on.
    pub fn on_tool_call(&mut self, now_us: u64, agent: ActorIdx, tool: ActorIdx, conv: ConvId, call_id: u32) {
        let key = (agent, conv, call_id);
        let deadline_us = now_us.saturating_add(self.limits.max_tool_wait_us);
        if let Some((old, _)) = self.pending.insert(key, (deadline_us, tool)) {
            self.deadlines.remove(&(old, key));
        }
        self.deadlines.insert((deadline_us, key));
    }

    /// A delivery to `to`: a tool result, or the agent's own tool timeout, ends that call's wait;
    /// so does its cancellation reaching the tool (nobody waits for a cancelled call).
    pub fn on_deliver(&mut self, from: ActorIdx, to: ActorIdx, payload: &Payload) {
        let (agent, conv, call_id) = match payload {
            Payload::Agent(AgentMsg::ToolResult { conv, call_id, .. })
            | Payload::Agent(AgentMsg::ToolTimeout { conv, call_id }) => (to, *conv, *call_id),
            Payload::Tool(crate::protocol::ToolMsg::Cancel(key)) => (from, key.conv, key.call_id),
            _ => return,
        };
        if let Some((deadline_us, _)) = self.pending.remove(&(agent, conv, call_id)) {
            self.deadlines.remove(&(deadline_us, (agent, conv, call_id)));
        }
    }

    /// The first watched call whose deadline comes before `next_at_us` — or, when nothing is left
    /// to happen (`None`), the first one still waiting: it would wait forever.
    pub fn overdue(&self, next_at_us: Option<u64>) -> Option<Overdue> {
        let &(deadline_us, (agent, conv, call_id)) = self.deadlines.first()?;
        if next_at_us.is_some_and(|at_us| at_us <= deadline_us || deadline_us > self.limits.max_virtual_time_us) {
            return None;
        }
        let tool = self.pending.get(&(agent, conv, call_id)).map(|(_, tool)| *tool)?;
        Some(Overdue {
            agent,
            tool,
            conv,
            call_id,
        })
    }

    /// The text of `payload` is over `max_message_bytes`: its size.
    pub fn too_big(&self, payload: &Payload) -> Option<u64> {
        let size = message_bytes(payload);
        (size > self.limits.max_message_bytes).then_some(size)
    }

    /// One more restart; true when it is over `max_restarts_total`.
    pub fn restart_exceeds(&mut self) -> bool {
        self.restarts_total += 1;
        self.restarts_total > self.limits.max_restarts_total
    }
}

/// Bytes of free text a message carries: what a model wrote, what a tool returned, what an agent
/// passed on. Fixed-size fields do not count.
pub fn message_bytes(payload: &Payload) -> u64 {
    let calls = |calls: &[ToolCall]| calls.iter().map(|c| args_bytes(&c.args)).sum::<u64>();
    match payload {
        // A request's newest message: the transcript as a whole has its own limit, which the
        // agent holding it enforces (`max_transcript_bytes`).
        Payload::Llm(LlmMsg::Complete(request)) => request.transcript.last().map_or(0, |m| m.bytes()),
        Payload::Agent(AgentMsg::LlmReply { reply, .. }) => match &reply.answer {
            ModelAnswer::Text(text) => text.len() as u64,
            ModelAnswer::Delegate(tasks) => tasks.iter().map(|d| d.task.len() as u64).sum(),
            ModelAnswer::ToolCalls(list) => calls(list),
            ModelAnswer::Handoff { .. } | ModelAnswer::Error(_) => 0,
        },
        Payload::Tool(ToolMsg::Invoke { call, .. }) => args_bytes(&call.args),
        other => other.text().map_or(0, |t| t.len() as u64),
    }
}

/// The string content of a call's arguments, without serialising them.
fn args_bytes(args: &ToolArgs) -> u64 {
    fn value_bytes(value: &serde_json::Value) -> u64 {
        match value {
            serde_json::Value::String(s) => s.len() as u64,
            serde_json::Value::Array(items) => items.iter().map(value_bytes).sum(),
            serde_json::Value::Object(map) => map.iter().map(|(k, v)| k.len() as u64 + value_bytes(v)).sum(),
            _ => 8,
        }
    }
    match args {
        ToolArgs::Json(map) => map.iter().map(|(k, v)| k.len() as u64 + value_bytes(v)).sum(),
        ToolArgs::Malformed(text) => text.len() as u64,
    }
}

/// What can stop a run from outside: a signal, or — when replaying an interrupted run — the
/// event count at which it stopped.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    /// Holds 0, or the number of the signal that arrived (set by a signal handler).
    pub signal: Option<Arc<AtomicUsize>>,
    /// Stop once this many events were delivered, with this detail (an interrupted run's end).
    pub after_events: Option<(u64, String)>,
}

impl Interrupt {
    /// The detail to end the run with, if it must stop now, `events` events in.
    pub fn check(&self, events: u64) -> Option<String> {
        if let Some((after, detail)) = &self.after_events {
            if events >= *after {
                return Some(detail.clone());
            }
        }
        let signal = self.signal.as_ref()?.load(Ordering::Relaxed);
        (signal != 0).then(|| format!("interrupted by {}", signal_name(signal)))
    }
}

fn signal_name(signal: usize) -> String {
    match signal {
        2 => "SIGINT".to_owned(),
        15 => "SIGTERM".to_owned(),
        other => format!("signal {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_tool_wait_us: 100,
            ..Limits::DEFAULT
        }
    }

    #[test]
    fn a_call_is_overdue_only_once_its_deadline_passes_or_nothing_is_left() {
        let mut dog = Watchdog::new(limits());
        dog.on_tool_call(10, ActorIdx(3), ActorIdx(5), 0, 1);
        assert_eq!(dog.overdue(Some(110)), None);
        assert_eq!(dog.overdue(Some(111)).map(|o| o.tool), Some(ActorIdx(5)));
        assert_eq!(dog.overdue(None).map(|o| o.call_id), Some(1));
    }

    #[test]
    fn a_result_or_the_agents_own_timeout_ends_the_wait() {
        let mut dog = Watchdog::new(limits());
        dog.on_tool_call(0, ActorIdx(3), ActorIdx(5), 0, 1);
        dog.on_tool_call(0, ActorIdx(3), ActorIdx(5), 0, 2);
        dog.on_deliver(
            ActorIdx(3),
            ActorIdx(3),
            &Payload::Agent(AgentMsg::ToolTimeout { conv: 0, call_id: 1 }),
        );
        assert_eq!(dog.overdue(None).map(|o| o.call_id), Some(2));
        dog.on_deliver(
            ActorIdx(5),
            ActorIdx(3),
            &Payload::Agent(AgentMsg::ToolResult {
                conv: 0,
                call_id: 2,
                tool: 0,
                output: Arc::from("ok"),
            }),
        );
        assert_eq!(dog.overdue(None), None);
    }

    #[test]
    fn a_cancelled_call_is_waited_for_no_more() {
        let mut dog = Watchdog::new(limits());
        dog.on_tool_call(0, ActorIdx(3), ActorIdx(5), 0, 1);
        dog.on_tool_call(0, ActorIdx(4), ActorIdx(5), 0, 1);
        let key = crate::protocol::CallKey {
            conv: 0,
            agent: 0,
            call_id: 1,
        };
        dog.on_deliver(
            ActorIdx(3),
            ActorIdx(5),
            &Payload::Tool(crate::protocol::ToolMsg::Cancel(key)),
        );
        // Only the cancelling agent's call: the other agent's call of the same number still waits.
        assert_eq!(dog.overdue(None).map(|o| o.agent), Some(ActorIdx(4)));
    }

    #[test]
    fn restarts_trip_one_past_the_cap() {
        let mut dog = Watchdog::new(Limits {
            max_restarts_total: 2,
            ..Limits::DEFAULT
        });
        assert_eq!(
            [dog.restart_exceeds(), dog.restart_exceeds(), dog.restart_exceeds()],
            [false, false, true]
        );
    }

    #[test]
    fn a_replayed_interruption_stops_at_the_recorded_event_count() {
        let interrupt = Interrupt {
            signal: None,
            after_events: Some((5, "interrupted by SIGINT".to_owned())),
        };
        assert_eq!(interrupt.check(4), None);
        assert_eq!(interrupt.check(5).as_deref(), Some("interrupted by SIGINT"));
        let flag = Arc::new(AtomicUsize::new(0));
        let live = Interrupt {
            signal: Some(flag.clone()),
            after_events: None,
        };
        assert_eq!(live.check(1), None);
        flag.store(15, Ordering::Relaxed);
        assert_eq!(live.check(1).as_deref(), Some("interrupted by SIGTERM"));
    }
}
