//! Handoff timeouts (`handoff_timeout`, `handoff_retries`): an agent that hands a conversation
//! off keeps watching it until the receiver finishes it — answers it, or hands it on — which
//! the receiver says with `HandoffDone`. If that does not come in time, the conversation is
//! handed off again (a restarted receiver that lost it takes it up); once the retries are spent,
//! the agent answers it as failed. A receiver that finishes after that answers too late.

use std::sync::Arc;

use super::{AgentBehavior, Conversation};
use crate::protocol::{AgentMsg, AnswerStatus, ConvId, Effect, Origin, Payload, Transcript};
use crate::scenario::AgentIdx;

/// A conversation handed off and watched: the receiver, the attempt, the conversation as it was
/// handed over (its transcript ends with the transfer).
pub(super) struct Handed {
    pub to: AgentIdx,
    pub attempt: u32,
    pub state: Conversation,
}

impl AgentBehavior {
    /// The `Start` that hands a conversation (`state`, with `history` its transcript) to
    /// another agent.
    pub(super) fn handoff_start(&self, conv: ConvId, state: &Conversation, history: Transcript) -> AgentMsg {
        AgentMsg::Start {
            conv,
            text: self.texts.empty.clone(),
            origin: Origin::Handoff(self.agent),
            reply_to: state.reply_to,
            history,
            handoffs: state.handoffs + 1,
        }
    }

    /// Starts watching a conversation just handed to `to`, if this agent bounds handoffs.
    pub(super) fn watch_handoff(&mut self, conv: ConvId, to: AgentIdx, state: Conversation, effects: &mut Vec<Effect>) {
        let Some(timeout_us) = self.scenario.agents[self.agent].handoff_timeout_us else {
            return;
        };
        effects.push(self.timer(timeout_us, AgentMsg::HandoffTimeout { conv, to, attempt: 1 }));
        self.handed.insert(conv, Handed { to, attempt: 1, state });
    }

    /// The receiver did not finish in time: hand it off again, or fail it. False for a timer
    /// that no longer applies.
    pub(super) fn on_handoff_timeout(
        &mut self,
        conv: ConvId,
        to: AgentIdx,
        attempt: u32,
        effects: &mut Vec<Effect>,
    ) -> bool {
        let spec = &self.scenario.agents[self.agent];
        let (timeout_us, retries) = (spec.handoff_timeout_us.unwrap_or(0), spec.handoff_retries);
        if !self
            .handed
            .get(&conv)
            .is_some_and(|h| h.to == to && h.attempt == attempt)
        {
            return false;
        }
        if attempt <= retries {
            let handed = self.handed.get_mut(&conv).expect("checked above");
            handed.attempt += 1;
            let state = &self.handed[&conv].state;
            let start = self.handoff_start(conv, state, state.transcript.clone());
            let due = AgentMsg::HandoffTimeout {
                conv,
                to,
                attempt: attempt + 1,
            };
            effects.push(self.timer(timeout_us, due));
            self.hand_over(conv, to, start, effects);
            return true;
        }
        let Some(mut handed) = self.handed.remove(&conv) else {
            return false;
        };
        let text = Arc::from(format!(
            "error: agent {} did not finish the conversation within {} ({attempt} attempt(s))",
            self.scenario.agents[to].name,
            crate::scenario::units::format_duration_us(timeout_us)
        ));
        // The receiver may still hold it: it is told to stop (if it cancels), and the
        // conversation fails here.
        effects.push(Effect::Send {
            to: self.directory.agent(to),
            delay_us: 0,
            payload: Payload::Agent(AgentMsg::Cancel { conv }),
        });
        self.answer(conv, &mut handed.state, text, AnswerStatus::Failed, effects);
        true
    }

    /// This agent is done with a conversation handed to it (`handoffs` handoffs in): the agent
    /// that handed it off, if it watches its handoffs, stops watching.
    pub(super) fn finished(&mut self, conv: ConvId, (origin, handoffs): (Origin, u32), effects: &mut Vec<Effect>) {
        let Origin::Handoff(from) = origin else {
            return;
        };
        if self.scenario.agents[from].handoff_timeout_us.is_none() {
            return;
        }
        self.finished_handoffs.insert(conv, handoffs);
        self.say_done(conv, from, effects);
    }

    /// A handoff from an agent that watches its handoffs that is the same as one this agent
    /// holds or has finished (same sender and `handoffs` count), made again because the
    /// watcher's timeout passed first: not taken up twice. A finished one is confirmed again.
    pub(super) fn handoff_again(
        &mut self,
        conv: ConvId,
        from: AgentIdx,
        handoffs: u32,
        effects: &mut Vec<Effect>,
    ) -> bool {
        if self.scenario.agents[from].handoff_timeout_us.is_none() {
            return false;
        }
        if self
            .conversations
            .get(&conv)
            .is_some_and(|s| s.origin == Origin::Handoff(from) && s.handoffs == handoffs)
        {
            return true;
        }
        if self.finished_handoffs.get(&conv) == Some(&handoffs) {
            self.say_done(conv, from, effects);
            return true;
        }
        false
    }

    fn say_done(&self, conv: ConvId, from: AgentIdx, effects: &mut Vec<Effect>) {
        effects.push(Effect::Send {
            to: self.directory.agent(from),
            delay_us: 0,
            payload: Payload::Agent(AgentMsg::HandoffDone {
                conv,
                from_agent: self.agent,
            }),
        });
    }
}
