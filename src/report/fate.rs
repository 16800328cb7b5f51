//! The fate of every conversation: how it ended, from the customer's side. A conversation that
//! was never answered is told apart by why: the agent holding it crashed (`lost`), it waits for
//! ever on a delegate, tool or model (`orphaned`), or the run stopped first (`cut`). The harmed
//! ones are listed with the side effects they caused, since money moved with no answer is the
//! worst outcome a support design can have.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::{EngineRun, FailureRecord, Outcome, RestartRecord};
use crate::observe::{ConversationAccount, Observer};
use crate::protocol::{AnswerStatus, UserEnding};

/// Harmed conversations listed in `report.json` at most; `harmed_total` counts them all.
pub const HARMED_LISTED_MAX: usize = 100;

/// How one conversation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// The agent answered (and the user, if one talks back, had nothing more to say).
    Answered,
    /// The user said the matter is settled.
    Resolved,
    /// The user left: before the answer (`user.abandon`), or gave up on the dialogue.
    Abandoned,
    /// A model call failed for good.
    Failed,
    /// The agent ran out of turns, or the user of `max_user_turns`.
    OutOfTurns,
    /// A guardrail blocked its input or answer.
    Blocked,
    /// A guardrail's trip-wire stopped it.
    Halted,
    /// A guardrail passed it to a human.
    Escalated,
    /// The agent holding it crashed, and nothing resumed it.
    Lost,
    /// It waits for ever: on a delegate, a tool, a model, or a message the network lost.
    Orphaned,
    /// The run stopped (a limit, a signal, an escalation past the root) while it was open.
    Cut,
}

impl Fate {
    pub fn name(self) -> &'static str {
        match self {
            Fate::Answered => "answered",
            Fate::Resolved => "resolved",
            Fate::Abandoned => "abandoned",
            Fate::Failed => "failed",
            Fate::OutOfTurns => "out_of_turns",
            Fate::Blocked => "blocked",
            Fate::Halted => "halted",
            Fate::Escalated => "escalated",
            Fate::Lost => "lost",
            Fate::Orphaned => "orphaned",
            Fate::Cut => "cut",
        }
    }

    /// The customer was let down by the design, not protected by it: no answer came, and no
    /// guardrail chose to stop the conversation.
    pub fn is_harm(self) -> bool {
        matches!(
            self,
            Fate::Failed | Fate::OutOfTurns | Fate::Lost | Fate::Orphaned | Fate::Cut
        )
    }
}

/// A conversation that ended badly, with what it left behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HarmedConversation {
    pub conversation: u32,
    pub fate: Fate,
    pub started_at_us: u64,
    /// Side effects the conversation caused (`money_moved` → 1).
    pub effects: BTreeMap<String, u32>,
    /// Of those, the ones a compensation undid (`charged` → 1: refunded), by effect.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub compensated: BTreeMap<String, u32>,
    /// Compensating calls that failed (the refund failed too).
    #[serde(skip_serializing_if = "is_zero")]
    pub compensations_failed: u32,
    /// User messages it had, the opening one included.
    pub user_turns: u32,
    /// What ended it, when the trace says: the crash that lost it, the limit that cut it.
    pub cause: Option<String>,
    /// The injected fault that ended it directly, when one did (the crash that lost it). What
    /// changed its ending, by counterfactual, is `changed_by`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// With `run --impact`: the faults without which it would have ended otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<Vec<String>>,
}

/// How one started conversation ended: what a counterfactual run is compared on (its fate and
/// side effects; cost and latency are reported as deltas, not as changes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConversationOutcome {
    pub fate: Fate,
    /// Side effects it caused.
    pub effects: BTreeMap<String, u32>,
    /// Those a compensation undid, by effect.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub compensated: BTreeMap<String, u32>,
    /// The amounts those effects carried, per effect (tools with `amount`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", with = "crate::scenario::world::dec_map")]
    pub amounts: BTreeMap<String, i64>,
    /// What its model calls cost.
    pub cost_pusd: u64,
    /// From its start to its last answer, if one came.
    pub latency_us: Option<u64>,
}

impl ConversationOutcome {
    /// The same ending: fate and side effects (with their amounts).
    pub fn same_ending(&self, other: &ConversationOutcome) -> bool {
        self.fate == other.fate
            && self.effects == other.effects
            && self.amounts == other.amounts
            && self.compensated == other.compensated
    }
}

/// Every started conversation's fate, and the harmed ones (in conversation order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fates {
    /// Every started conversation's outcome, by conversation.
    pub outcomes: BTreeMap<u32, ConversationOutcome>,
    /// Count per fate; every fate is listed, zeros included, so the keys are stable.
    pub counts: BTreeMap<&'static str, u64>,
    pub harmed: Vec<HarmedConversation>,
    pub harmed_total: u64,
}

const ALL: [Fate; 11] = [
    Fate::Answered,
    Fate::Resolved,
    Fate::Abandoned,
    Fate::Failed,
    Fate::OutOfTurns,
    Fate::Blocked,
    Fate::Halted,
    Fate::Escalated,
    Fate::Lost,
    Fate::Orphaned,
    Fate::Cut,
];

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The fate of each started conversation of a run.
pub fn fates(run: &EngineRun, observer: &Observer) -> Fates {
    let mut out = Fates {
        counts: ALL.iter().map(|f| (f.name(), 0)).collect(),
        ..Fates::default()
    };
    // In conversation order, so the map is built in one pass instead of by insertions.
    let mut outcomes = Vec::with_capacity(observer.conversations.len());
    for (conv, account) in observer.conversations.iter().enumerate() {
        let Some(started_at_us) = account.started_at_us else {
            continue;
        };
        let (fate, cause) = fate_of(account, run);
        *out.counts.entry(fate.name()).or_default() += 1;
        outcomes.push((
            conv as u32,
            ConversationOutcome {
                fate,
                effects: account.effects.clone(),
                compensated: account.compensated.clone(),
                amounts: account.amounts.clone(),
                cost_pusd: account.cost_pusd,
                latency_us: account.last_answered_at_us.map(|at| at.saturating_sub(started_at_us)),
            },
        ));
        if fate.is_harm() {
            out.harmed_total += 1;
            if out.harmed.len() < HARMED_LISTED_MAX {
                out.harmed.push(HarmedConversation {
                    conversation: conv as u32,
                    fate,
                    started_at_us,
                    effects: account.effects.clone(),
                    compensated: account.compensated.clone(),
                    compensations_failed: account.compensations_failed,
                    user_turns: account.user_turns,
                    fault: (fate == Fate::Lost).then(|| injected_crash(account, run)).flatten(),
                    cause,
                    changed_by: None,
                });
            }
        }
    }
    out.outcomes = outcomes.into_iter().collect();
    out
}

fn fate_of(account: &ConversationAccount, run: &EngineRun) -> (Fate, Option<String>) {
    if account.abandoned {
        return (Fate::Abandoned, None);
    }
    match account.ending {
        Some(UserEnding::Resolved) => return (Fate::Resolved, None),
        Some(UserEnding::MaxUserTurns) => {
            let cause = format!(
                "max_user_turns: the user wanted to say more after {} messages",
                account.user_turns
            );
            return (Fate::OutOfTurns, Some(cause));
        }
        Some(UserEnding::Abandoned) | None => {}
    }
    if let Some(status) = account.status {
        let fate = match status {
            AnswerStatus::Answered => Fate::Answered,
            AnswerStatus::MaxTurns | AnswerStatus::MaxHandoffs => Fate::OutOfTurns,
            AnswerStatus::Failed | AnswerStatus::Truncated => Fate::Failed,
            AnswerStatus::Blocked => Fate::Blocked,
            AnswerStatus::Halted => Fate::Halted,
            AnswerStatus::Escalated => Fate::Escalated,
        };
        // What the answer that ended it otherwise said (the error, the refusal).
        let cause = match fate {
            Fate::Answered => None,
            _ => account.ended_text.as_deref().map(|text| {
                const CAUSE_CHARS_MAX: usize = 200;
                match text.char_indices().nth(CAUSE_CHARS_MAX) {
                    Some((end, _)) => format!("{}…", &text[..end]),
                    None => text.to_owned(),
                }
            }),
        };
        return (fate, cause);
    }
    if let Some(crash) = crash_of_a_holder(account, run) {
        let cause = format!(
            "{} failed at seq {} (t = {}us): {}",
            crash.actor, crash.seq, crash.t_us, crash.error
        );
        return (Fate::Lost, Some(cause));
    }
    if let Some(restart) = restart_of_a_holder(account, run) {
        let cause = format!(
            "{} was restarted by {} at t = {}us (incarnation {}), with the conversation in hand",
            restart.actor, restart.supervisor, restart.t_us, restart.incarnation
        );
        return (Fate::Lost, Some(cause));
    }
    match run.outcome {
        Outcome::LimitExceeded | Outcome::Interrupted | Outcome::Escalated => {
            let cause = run
                .outcome_detail
                .clone()
                .unwrap_or_else(|| run.outcome.name().to_owned());
            (Fate::Cut, Some(format!("{}: {cause}", run.outcome.name())))
        }
        Outcome::Completed | Outcome::Stalled => (Fate::Orphaned, None),
    }
}

/// Whether `agent` (by index) is the actor a record names, holding the conversation since `since_us`.
fn held_by(run: &EngineRun, account: &ConversationAccount, actor: &str, at_us: u64) -> bool {
    account.holders.iter().any(|(agent, since_us)| {
        at_us >= *since_us && run.logical_ids.get(agent.index()).is_some_and(|id| **id == *actor)
    })
}

/// The first restart (a supervisor's, of a sibling that failed) of an agent holding the
/// conversation, at or after its last delivery of it: the new incarnation starts afresh.
fn restart_of_a_holder<'r>(account: &ConversationAccount, run: &'r EngineRun) -> Option<&'r RestartRecord> {
    run.restarts
        .iter()
        .find(|restart| held_by(run, account, &restart.actor, restart.t_us))
}

/// The name of the injected fault behind the crash that lost this conversation, if any.
fn injected_crash(account: &ConversationAccount, run: &EngineRun) -> Option<String> {
    let crash = crash_of_a_holder(account, run)?;
    run.faults
        .iter()
        .find(|f| f.seq == crash.seq && f.target == crash.actor)
        .map(|f| f.name.clone())
}

/// The first failure of an agent holding the conversation, at or after its last delivery of it.
fn crash_of_a_holder<'r>(account: &ConversationAccount, run: &'r EngineRun) -> Option<&'r FailureRecord> {
    run.failures
        .iter()
        .find(|failure| held_by(run, account, &failure.actor, failure.t_us))
}
