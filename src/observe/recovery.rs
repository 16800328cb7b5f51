//! What recovery did: the compensating calls of sagas (run, succeeded, failed, and what they
//! undid), what cancellation stopped, and the check that no conversation is left with an effect standing and no answer.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{ConversationAccount, Observer};
use crate::protocol::{AnswerStatus, ConvId, UserEnding};
use crate::scenario::{Check, Scenario, ToolIdx};

/// The compensating calls of a run (tools with `compensate`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Compensations {
    /// Compensating calls that reached their tool.
    pub run: u64,
    /// Those that answered without an error.
    pub succeeded: u64,
    /// Those that answered with an error (the refund failed too).
    pub failed: u64,
    /// Conversations at least one compensating call ran for.
    pub conversations: u64,
    /// Succeeded compensations by what they undid: the original tool's effect, or its name.
    pub undone: BTreeMap<String, u64>,
}

/// What cancellation stopped (agents with `cancellation = "cancel"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cancellations {
    /// Cancellations delivered to agents (a user left, a delegator gave up).
    pub conversations: u64,
    /// Tool calls cancelled in flight (delivered to their tool).
    pub calls: u64,
    /// The effects cancelled calls would have had, had they not been cancelled before taking
    /// effect, by effect (not in `effects`).
    pub effects: BTreeMap<String, u64>,
}

/// What a compensation of a call to `of` undoes: the tool's effect, or the tool by name.
pub fn undone_name(scenario: &Scenario, of: ToolIdx) -> &str {
    let tool = &scenario.tools[of];
    tool.effect.as_deref().unwrap_or(&tool.name)
}

impl ConversationAccount {
    /// The conversation ended with its customer served: answered (or resolved, or taken over by
    /// a human), and not left by its user.
    pub fn ended_well(&self) -> bool {
        if self.abandoned {
            return false;
        }
        match self.ending {
            Some(UserEnding::Resolved) => true,
            Some(UserEnding::Abandoned | UserEnding::MaxUserTurns) => false,
            None => matches!(self.status, Some(AnswerStatus::Answered | AnswerStatus::Escalated)),
        }
    }

    /// How many of `effect` still stand: those that happened less those compensated.
    pub fn standing(&self, effect: &str) -> u32 {
        let happened = self.effects.get(effect).copied().unwrap_or(0);
        happened.saturating_sub(self.compensated.get(effect).copied().unwrap_or(0))
    }
}

impl Observer {
    /// A compensating call reached its tool.
    pub(super) fn on_compensate(&mut self, conv: ConvId) {
        let account = self.conversation(conv);
        account.compensations += 1;
        let first = account.compensations == 1;
        let stats = &mut self.compensations;
        stats.run += 1;
        stats.conversations += u64::from(first);
    }

    /// A compensating call answered: an error output is a failed compensation.
    pub(super) fn on_compensated(&mut self, scenario: &Scenario, conv: ConvId, of: ToolIdx, output: &str) {
        let name = undone_name(scenario, of);
        if output.starts_with("error") {
            self.compensations.failed += 1;
            self.conversation(conv).compensations_failed += 1;
            return;
        }
        self.compensations.succeeded += 1;
        *self.compensations.undone.entry(name.to_owned()).or_default() += 1;
        *self.conversation(conv).compensated.entry(name.to_owned()).or_default() += 1;
    }

    /// A call cancelled before it took effect would have had `effect`, `times` times.
    pub(super) fn on_cancelled_effect(&mut self, conv: ConvId, effect: &str, times: u32) {
        *self.cancellations.effects.entry(effect.to_owned()).or_default() += times as u64;
        *self
            .conversation(conv)
            .cancelled_effects
            .entry(effect.to_owned())
            .or_default() += times;
    }

    /// `never = { effect = "charged", unanswered = true }`: no conversation ends without an
    /// answer while one of its `charged` effects stands (not compensated). Checked at the end.
    pub(super) fn check_stranded(&mut self, scenario: &Scenario) {
        let (seq, at_us) = self.last_event;
        for (index, invariant) in scenario.invariants.iter().enumerate() {
            let Check::NeverStranded { effect } = &invariant.check else {
                continue;
            };
            let stranded: Vec<(ConvId, u32)> = self
                .conversations
                .iter()
                .enumerate()
                .filter(|(_, account)| account.started_at_us.is_some() && !account.ended_well())
                .map(|(conv, account)| (conv as ConvId, account.standing(effect)))
                .filter(|(_, standing)| *standing > 0)
                .collect();
            for (conv, standing) in stranded {
                let account = &self.conversations[conv as usize];
                let ended = match (account.abandoned, account.status) {
                    (true, _) => "was abandoned".to_owned(),
                    (false, Some(status)) => format!("ended {}", status.name()),
                    (false, None) => "was never answered".to_owned(),
                };
                let message = format!(
                    "conversation {conv} {ended} with {standing} {effect} effect(s) standing (not compensated)"
                );
                self.violate(index, Some(conv), seq, at_us, "user".to_owned(), message);
            }
        }
    }
}
