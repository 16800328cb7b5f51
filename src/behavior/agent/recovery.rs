//! Recovery after a restart with `durability = "at-least-once"`: the calls a restored
//! conversation still had outstanding are issued again, as the next attempt.
//!
//! The agent cannot know whether a call it made before failing reached the model or the tool,
//! so it makes it again: the model call with the next attempt number, each tool call as it was
//! (same call id and arguments). Answers already on their way are not lost — the agent's
//! mailbox survives a restart — so whichever answer comes first is used and the other is
//! dropped as late; a tool without an idempotency key acts twice.

use super::{AgentBehavior, Conversation, Outstanding};
use crate::protocol::{ConvId, Effect, ToolRef};

impl Outstanding {
    /// Whether a conversation waits for a model call or a tool call it could make again
    /// (checked every turn, so it allocates nothing).
    pub(super) fn any(state: &Conversation) -> bool {
        state.awaiting.is_some() || state.pending.iter().any(|p| p.output.is_none() && p.call.is_some())
    }

    /// What a conversation is waiting for: a model call, tool calls.
    pub(super) fn of(state: &Conversation) -> Outstanding {
        Outstanding {
            model_call: state.awaiting,
            tool_calls: state
                .pending
                .iter()
                .filter(|p| p.output.is_none() && p.call.is_some())
                .filter_map(|p| p.call_id)
                .collect(),
        }
    }
}

impl AgentBehavior {
    /// Issues again what conversation `conv` had outstanding in the checkpoint, unless it was
    /// answered in the meantime. False when nothing was left to do.
    pub(super) fn resume(&mut self, conv: ConvId, effects: &mut Vec<Effect>) -> bool {
        let Some(outstanding) = self.outstanding.remove(&conv) else {
            return false;
        };
        let Some(state) = self.conversations.get_mut(&conv) else {
            return false;
        };
        let mut resumed = false;
        if outstanding.model_call.is_some() && state.awaiting == outstanding.model_call {
            // The call again, as the next attempt; the answer to the earlier one is now stale.
            let mut state = self.conversations.remove(&conv).expect("present above");
            state.superseded = state.awaiting.take();
            state.attempt += 1;
            self.retries += 1;
            self.step(conv, state, effects);
            return true;
        }
        let mut calls = Vec::new();
        for pending in &mut state.pending {
            let waiting =
                pending.output.is_none() && pending.call_id.is_some_and(|id| outstanding.tool_calls.contains(&id));
            if let (true, Some(call)) = (waiting, &pending.call) {
                pending.attempt += 1;
                if let ToolRef::Known(tool) = call.tool {
                    calls.push((tool, call.clone()));
                }
            }
        }
        for (tool, call) in calls {
            resumed = true;
            self.invoke(conv, tool, call, effects);
        }
        resumed
    }
}
