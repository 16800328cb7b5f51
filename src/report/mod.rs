//! The report of one run: what `run` prints, and what `report.json` holds (a stable schema);
//! `assemble` builds it, `stats` holds the statistics reports and sweeps share.

pub mod assemble;
pub mod fate;
pub mod impact;
pub mod stats;
mod summary;
pub mod world;

use serde::Serialize;

use std::collections::BTreeMap;

pub use crate::engine::{FailureRecord, FaultRecord, Outcome, RestartRecord};
use crate::observe::{AgentAccount, InvariantResult};
use stats::percentile_u64;

/// Version of the `report.json` schema; bumped on any incompatible change.
pub const REPORT_SCHEMA_VERSION: u32 = 2;

/// Token totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tokens {
    /// All input tokens, cached ones included.
    pub input: u64,
    /// The part of `input` read from the provider's prompt cache, billed at the cached price.
    pub cached_input: u64,
    pub output: u64,
    pub total: u64,
    /// Model calls whose tokens a live server counted (its `usage`); the others' are agentsim's
    /// estimate from the messages sent.
    pub counted_by_server_calls: u64,
}

/// What one agent's model calls used and cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AgentCost {
    /// Replies the agent received, provider errors included.
    pub llm_calls: u64,
    pub input_tokens: u64,
    /// The part of `input_tokens` billed at the cached price.
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub cost_pusd: u64,
}

impl AgentCost {
    /// The report's view of an agent's account.
    pub fn from_account(account: &AgentAccount) -> AgentCost {
        AgentCost {
            llm_calls: account.llm_calls,
            input_tokens: account.input_tokens,
            cached_input_tokens: account.cached_input_tokens,
            output_tokens: account.output_tokens,
            cost_usd: crate::scenario::units::usd_from_pusd(account.cost_pusd),
            cost_pusd: account.cost_pusd,
        }
    }
}

/// The spread of cost over the conversations users started (sub-tasks count in their
/// conversation). Percentiles are nearest-rank.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ConversationCost {
    pub conversations: u64,
    pub mean_usd: f64,
    pub p50_usd: f64,
    pub p95_usd: f64,
    pub max_usd: f64,
    /// The most expensive conversation (the first one, on a tie); `None` without conversations.
    pub max_conversation: Option<u32>,
}

impl ConversationCost {
    /// Statistics over `(conversation, cost in pico-USD)` pairs.
    pub fn from_costs(costs: &[(u32, u64)]) -> ConversationCost {
        let mut sorted: Vec<u64> = costs.iter().map(|(_, cost)| *cost).collect();
        sorted.sort_unstable();
        let dollars = |pusd: u64| pusd as f64 / 1e12;
        let total_pusd: u128 = sorted.iter().map(|&c| c as u128).sum();
        let mean_usd = if sorted.is_empty() {
            0.0
        } else {
            total_pusd as f64 / sorted.len() as f64 / 1e12
        };
        let max_conversation = costs
            .iter()
            .max_by(|(conv_a, cost_a), (conv_b, cost_b)| cost_a.cmp(cost_b).then(conv_b.cmp(conv_a)))
            .map(|(conv, _)| *conv);
        ConversationCost {
            conversations: sorted.len() as u64,
            mean_usd,
            p50_usd: dollars(percentile_u64(&sorted, 0.5)),
            p95_usd: dollars(percentile_u64(&sorted, 0.95)),
            max_usd: dollars(sorted.last().copied().unwrap_or(0)),
            max_conversation,
        }
    }
}

/// User messages per started conversation, the opening one included: 1 each unless a user
/// talks back.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UserTurns {
    pub total: u64,
    pub mean: f64,
    pub max: u32,
    /// Conversations whose user talks back (a `[[user]]` on their traffic).
    pub dialogues: u64,
}

/// The spread of some waits: nearest-rank percentiles and the longest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WaitSpread {
    pub p50: u64,
    pub p95: u64,
    pub max: u64,
}

impl WaitSpread {
    pub fn of(waits_us: &[u64]) -> WaitSpread {
        let mut sorted = waits_us.to_vec();
        sorted.sort_unstable();
        WaitSpread {
            p50: percentile_u64(&sorted, 0.5),
            p95: percentile_u64(&sorted, 0.95),
            max: sorted.last().copied().unwrap_or(0),
        }
    }
}

/// One reviewer's approvals (`[[human]]`), as `report.json` has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalReport {
    pub human: String,
    pub requests: u64,
    pub approved: u64,
    pub rejected: u64,
    /// No decision within the reviewer's `timeout`.
    pub timed_out: u64,
    /// Withdrawn before a decision (the call was cancelled).
    pub withdrawn: u64,
    /// Decisions that came after their request had timed out.
    pub late_decisions: u64,
    /// Requests waiting to be taken up, at most at once.
    pub queue_max: u64,
    /// How long conversations waited for a decision (or the timeout), in µs.
    pub wait_us: WaitSpread,
    /// How long requests waited in the queue before the reviewer took them up, in µs.
    pub queue_wait_us: WaitSpread,
}

impl ApprovalReport {
    pub fn from_account(account: &crate::observe::approval::ApprovalAccount) -> ApprovalReport {
        ApprovalReport {
            human: account.name.clone(),
            requests: account.requests,
            approved: account.approved,
            rejected: account.rejected,
            timed_out: account.timed_out,
            withdrawn: account.withdrawn,
            late_decisions: account.late_decisions,
            queue_max: account.queue_max,
            wait_us: WaitSpread::of(&account.waits_us),
            queue_wait_us: WaitSpread::of(&account.queue_waits_us),
        }
    }
}

/// Conversation totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Conversations {
    pub started: u64,
    pub answered: u64,
    pub max_turns: u64,
    /// Ended because a model call failed for good.
    pub failed: u64,
    /// Never ended.
    pub unanswered: u64,
    /// The user left before the answer (not counted under the ending the conversation reached:
    /// the counts add up to `started`).
    pub abandoned: u64,
    /// A guardrail blocked the input or the answer.
    pub blocked: u64,
    /// A guardrail's trip-wire stopped the conversation.
    pub halted: u64,
    /// A guardrail passed the conversation to a human.
    pub escalated: u64,
}

/// Everything `run` reports. Field order is the JSON order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub schema_version: u32,
    pub agentsim_version: String,
    pub scenario: String,
    pub scenario_hash: String,
    pub seed: u64,
    /// The fault profile this seed ran under (swarm testing), if the scenario has profiles.
    pub profile: Option<String>,
    pub outcome: Outcome,
    /// For `limit_exceeded`, the limit; for `escalated`, the failure; for `interrupted`, the signal.
    pub outcome_detail: Option<String>,
    pub digest: String,
    pub virtual_time_us: u64,
    pub events: u64,
    /// Deliveries between two different actors (events less self-sent timers).
    pub messages: u64,
    pub llm_calls: u64,
    /// Model calls answered with a provider error.
    pub llm_errors: u64,
    /// What a live server said about the first error it answered (`500 internal_error from
    /// llm:gpt: …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_server_error: Option<String>,
    pub tool_calls: u64,
    /// Per tool: calls, errors by status, calls that waited for the API's limits.
    pub tools: Vec<crate::observe::ToolStats>,
    pub tokens: Tokens,
    pub cost_usd: f64,
    pub cost_pusd: u64,
    /// Per agent (by name) that made at least one model call.
    pub cost_by_agent: BTreeMap<String, AgentCost>,
    pub cost_per_conversation: ConversationCost,
    pub conversations: Conversations,
    pub user_turns: UserTurns,
    /// The user simulators' model calls (model-driven users), counted apart: they are not in
    /// `llm_calls`, `tokens` or `cost_usd`, which are the design's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_simulator: Option<AgentCost>,
    /// How every started conversation ended, by fate (`lost`, `orphaned`, …; every fate listed).
    pub fates: BTreeMap<&'static str, u64>,
    /// The conversations the design let down (failed, out of turns, lost, orphaned, cut), with
    /// the side effects they caused: at most `fate::HARMED_LISTED_MAX`, in conversation order.
    pub harmed: Vec<fate::HarmedConversation>,
    /// All harmed conversations, listed or not.
    pub harmed_total: u64,
    pub effects: std::collections::BTreeMap<String, u64>,
    /// The sagas' compensating calls (tools with `compensate`): run, succeeded, failed, and
    /// what they undid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compensations: Option<crate::observe::recovery::Compensations>,
    /// What cancellation stopped (agents with `cancellation = "cancel"`): conversations and
    /// calls cancelled, and the effects the cancelled calls would have had (not in `effects`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancellations: Option<crate::observe::recovery::Cancellations>,
    /// Answers agents dropped because nobody waited for them any more (after a timeout, a
    /// retry, another attempt's answer, or the end of the conversation at that agent), by kind:
    /// `model_reply`, `tool_result`, `delegate_result`.
    pub stale_answers: BTreeMap<&'static str, u64>,
    /// Per reviewer (`[[human]]`): approval requests, decisions, timeouts, the queue's length
    /// and the waits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalReport>,
    /// The amounts effects carried (tools with `amount`), in total and per subject.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub amounts: BTreeMap<String, world::AmountReport>,
    /// The world's tables: their records at the start and the end, and what changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world: Option<world::WorldReport>,
    pub faults: Vec<FaultRecord>,
    /// The scenario's faults that never fired in this run, and why (a fault pinned to a message
    /// that never comes, a target that got none of what it acts on, …).
    pub faults_never_fired: Vec<crate::engine::fault_plan::NeverFired>,
    pub failures: Vec<FailureRecord>,
    pub restarts: Vec<RestartRecord>,
    pub invariants: Vec<InvariantResult>,
    /// Each guardrail's checks, trips, mistakes and latency.
    pub guardrails: Vec<crate::observe::GuardrailStats>,
    /// How far each fault and each untrusted source spread.
    pub blast_radius: Vec<crate::observe::blast::BlastRadius>,
    /// For each conversation, in order: did it end answered, its user still there (as
    /// `conversations.answered` counts it)?
    pub answered: Vec<bool>,
    /// For each conversation, in order: its fate (`resolved`, `abandoned`, `lost`, …), or null
    /// for one that never started.
    pub fate_by_conversation: Vec<Option<fate::Fate>>,
    /// What each fault and each firing changed, with `run --impact` (see
    /// [`RunReport::attach_impact`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impact: Option<crate::report::impact::Impact>,
    /// Every started conversation's outcome (not in report.json: `fates` and `harmed` say it).
    #[serde(skip)]
    pub outcomes: BTreeMap<u32, fate::ConversationOutcome>,
    /// Whether `--impact` can rerun this run (every model is a mock): the summary suggests it
    /// only then.
    #[serde(skip)]
    pub impact_possible: bool,
    /// A command that reruns exactly this run.
    pub replay: String,
}

impl RunReport {
    /// True when the run completed and every invariant held.
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Completed && self.invariants.iter().all(|i| i.passed)
    }

    /// Adds what `run --impact` found, and names on each harmed conversation the faults without
    /// which it would have ended otherwise.
    pub fn attach_impact(&mut self, impact: crate::report::impact::Impact) {
        for harmed in &mut self.harmed {
            harmed.changed_by = Some(impact.changed_by(harmed.conversation));
        }
        self.impact = Some(impact);
    }
}

#[cfg(test)]
mod tests {
    use super::ConversationCost;

    #[test]
    fn the_first_of_equally_expensive_conversations_is_the_most_expensive() {
        let stats = ConversationCost::from_costs(&[(0, 5), (1, 9), (2, 9), (3, 1)]);
        assert_eq!(stats.max_conversation, Some(1));
        assert_eq!(stats.conversations, 4);
    }

    #[test]
    fn no_conversations_give_zeros_and_no_most_expensive_one() {
        let stats = ConversationCost::from_costs(&[]);
        assert_eq!(stats.max_conversation, None);
        assert_eq!((stats.mean_usd, stats.p50_usd, stats.max_usd), (0.0, 0.0, 0.0));
    }
}
