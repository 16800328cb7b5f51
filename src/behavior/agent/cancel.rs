//! Cancellation (`cancellation = "cancel"`): a conversation whose user left, whose delegator
//! gave up on it, or whose `deadline` passed is dropped, and what it has in flight is cancelled —
//! each tool call by a message to its tool (a call takes effect at the end of its latency, so a
//! cancelled one moves nothing), each delegation by a cancel to the delegate, which does the
//! same if it cancels too. A model call in flight is not stopped: its answer, billed as usual,
//! finds no conversation and is dropped. Like AutoGen's cancellation token passed down a call.

use super::{AgentBehavior, Conversation};
use crate::protocol::{AgentMsg, CallKey, ConvId, Effect, Payload, ToolMsg};
use crate::scenario::Cancellation;

impl AgentBehavior {
    /// Whether this agent cancels calls in flight (`cancellation = "cancel"`).
    pub(super) fn cancels(&self) -> bool {
        self.scenario.agents[self.agent].cancellation == Cancellation::Cancel
    }

    /// `Cancel`: drops the conversation and cancels what it has in flight. False when the agent
    /// lets calls finish, or does not hold the conversation.
    pub(super) fn on_cancel(&mut self, conv: ConvId, effects: &mut Vec<Effect>) -> bool {
        if !self.cancels() {
            return false;
        }
        let Some(state) = self.conversations.remove(&conv) else {
            return false;
        };
        self.waiting.retain(|c| *c != conv);
        self.outstanding.remove(&conv);
        self.cancel_in_flight(conv, &state, effects);
        self.finished(conv, (state.origin, state.handoffs), effects);
        true
    }

    /// Cancels the tool calls and delegations of the conversation's step still out. (A call an
    /// earlier step gave up on, at its `tool_timeout`, was cancelled then.)
    pub(super) fn cancel_in_flight(&self, conv: ConvId, state: &Conversation, effects: &mut Vec<Effect>) {
        for pending in state.pending.iter().filter(|p| p.output.is_none()) {
            match (pending.call_id, pending.delegate) {
                (Some(call_id), _) => self.cancel_call(conv, &pending.name, call_id, effects),
                (None, Some(delegate)) => effects.push(Effect::Send {
                    to: self.directory.agent(delegate),
                    delay_us: 0,
                    payload: Payload::Agent(AgentMsg::Cancel { conv }),
                }),
                (None, None) => {}
            }
        }
    }

    /// Tells the tool named `tool` that call `call_id` of `conv` must not take effect.
    pub(super) fn cancel_call(&self, conv: ConvId, tool: &str, call_id: u32, effects: &mut Vec<Effect>) {
        let Some(tool) = self.scenario.tools.iter().position(|t| t.name == tool) else {
            return;
        };
        let key = CallKey {
            conv,
            agent: self.agent,
            call_id,
        };
        effects.push(Effect::Send {
            to: self.directory.tool(tool),
            delay_us: 0,
            payload: Payload::Tool(ToolMsg::Cancel(key)),
        });
    }
}
