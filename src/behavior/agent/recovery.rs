//! Recovery after a restart with `durability = "at-least-once"`: the calls a restored
//! conversation still had outstanding are issued again, as the next attempt.
//!
//! The agent cannot know whether a call it made before failing reached the model or the tool,
//! so it makes it again: the model call with the next attempt number, each tool call as it was
//! (same call id and arguments). Answers already on their way are not lost — the agent's
//! mailbox survives a restart — so whichever answer comes first is used and the other is
//! dropped as late; a tool without an idempotency key acts twice.

use super::{AgentBehavior, Conversation, Outstanding, Pending};
use crate::protocol::{ConvId, Effect, ToolCall, ToolRef};

impl Outstanding {
    /// Whether a conversation waits for a model call or a tool call it could make again
    /// (checked every turn, so it allocates nothing).
    pub(super) fn any(state: &Conversation) -> bool {
        state.awaiting.is_some() || state.pending.iter().any(remakeable)
    }

    /// What a conversation is waiting for: a model call, tool calls.
    pub(super) fn of(state: &Conversation) -> Outstanding {
        Outstanding {
            model_call: state.awaiting,
            tool_calls: state
                .pending
                .iter()
                .filter(|p| remakeable(p))
                .filter_map(|p| p.call_id)
                .collect(),
        }
    }
}

/// A tool call with no result yet, kept so that it can be made again.
fn remakeable(pending: &Pending) -> bool {
    pending.output.is_none() && pending.call.is_some()
}

impl AgentBehavior {
    /// Issues again what conversation `conv` had outstanding in the checkpoint, unless it was
    /// answered in the meantime. False when nothing was left to do.
    pub(super) fn resume(&mut self, conv: ConvId, effects: &mut Vec<Effect>) -> bool {
        let Some(outstanding) = self.outstanding.remove(&conv) else {
            return false;
        };
        let Some(state) = self.conversations.get(&conv) else {
            return false;
        };
        if outstanding.model_call.is_some() && state.awaiting == outstanding.model_call {
            // The call again, as the next attempt; the answer to the earlier one is now stale.
            let mut state = self.conversations.remove(&conv).expect("present above");
            state.superseded = state.awaiting.take();
            state.attempt += 1;
            self.retries += 1;
            self.step(conv, state, effects);
            return true;
        }
        let calls: Vec<_> = state
            .pending
            .iter()
            .filter(|p| remakeable(p) && p.call_id.is_some_and(|id| outstanding.tool_calls.contains(&id)))
            .filter_map(|p| match p.call.as_ref()? {
                call @ ToolCall {
                    tool: ToolRef::Known(tool),
                    ..
                } => Some((*tool, call.clone())),
                _ => None,
            })
            .collect();
        let resumed = !calls.is_empty();
        for (tool, call) in calls {
            self.invoke(conv, tool, call, effects);
        }
        resumed
    }
}
