//! The report of one run: what `run` prints, and what `report.json` holds (a stable schema);
//! `assemble` builds it, `stats` holds the statistics reports and sweeps share.

pub mod assemble;
pub mod stats;

use serde::Serialize;

use std::collections::BTreeMap;

pub use crate::engine::{FailureRecord, FaultRecord, Outcome, RestartRecord};
use crate::observe::{AgentAccount, InvariantResult};
use crate::scenario::units::format_duration_us;
use crate::scenario::units::format_usd;
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
            cost_usd: account.cost_pusd as f64 / 1e12,
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
    /// The user left before the answer (counted in the totals above too).
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
    pub tool_calls: u64,
    pub tokens: Tokens,
    pub cost_usd: f64,
    pub cost_pusd: u64,
    /// Per agent (by name) that made at least one model call.
    pub cost_by_agent: BTreeMap<String, AgentCost>,
    pub cost_per_conversation: ConversationCost,
    pub conversations: Conversations,
    pub effects: std::collections::BTreeMap<String, u64>,
    pub faults: Vec<FaultRecord>,
    pub failures: Vec<FailureRecord>,
    pub restarts: Vec<RestartRecord>,
    pub invariants: Vec<InvariantResult>,
    /// Each guardrail's checks, trips, mistakes and latency.
    pub guardrails: Vec<crate::observe::GuardrailStats>,
    /// How far each fault and each untrusted source spread.
    pub blast_radius: Vec<crate::observe::blast::BlastRadius>,
    /// For each conversation, in order: did it end answered?
    pub answered: Vec<bool>,
    /// A command that reruns exactly this run.
    pub replay: String,
}

impl RunReport {
    /// True when the run completed and every invariant held.
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Completed && self.invariants.iter().all(|i| i.passed)
    }

    /// The human summary `run` prints.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, label: &str, value: String| {
            out.push_str(&format!("  {label:<15}{value}\n"));
        };
        out.push_str(&format!(
            "agentsim {} · {} · seed {}\n",
            self.agentsim_version, self.scenario, self.seed
        ));
        if let Some(profile) = &self.profile {
            line(&mut out, "profile", profile.clone());
        }
        let outcome = match &self.outcome_detail {
            Some(detail) => format!("{} ({detail})", self.outcome.name()),
            None => self.outcome.name().to_owned(),
        };
        line(&mut out, "outcome", outcome);
        line(
            &mut out,
            "makespan",
            format!("{} virtual", format_duration_us(self.virtual_time_us)),
        );
        line(&mut out, "events", self.events.to_string());
        let c = &self.conversations;
        line(
            &mut out,
            "conversations",
            format!(
                "{} started, {} answered, {} hit max_turns, {} failed, {} unanswered",
                c.started, c.answered, c.max_turns, c.failed, c.unanswered
            ) + &guarded_endings(c),
        );
        line(
            &mut out,
            "llm calls",
            format!("{} ({} errors)", self.llm_calls, self.llm_errors),
        );
        line(&mut out, "tool calls", self.tool_calls.to_string());
        line(
            &mut out,
            "tokens",
            format!(
                "{} ({} in, of which {} cached; {} out)",
                self.tokens.total, self.tokens.input, self.tokens.cached_input, self.tokens.output
            ),
        );
        line(&mut out, "cost", format_usd(self.cost_pusd));
        if !self.cost_by_agent.is_empty() {
            line(&mut out, "cost by agent", self.cost_by_agent_line());
        }
        let c = &self.cost_per_conversation;
        if let Some(max_conversation) = c.max_conversation {
            line(
                &mut out,
                "cost per conv",
                format!(
                    "mean {}, p50 {}, p95 {}, max {} (conversation {max_conversation})",
                    usd_f64(c.mean_usd),
                    usd_f64(c.p50_usd),
                    usd_f64(c.p95_usd),
                    usd_f64(c.max_usd)
                ),
            );
        }
        if !self.effects.is_empty() {
            let effects: Vec<String> = self.effects.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
            line(&mut out, "effects", effects.join(", "));
        }
        line(&mut out, "faults", format!("{} fired", self.faults.len()));
        for g in &self.guardrails {
            let verdicts: Vec<String> = g.verdicts.iter().map(|(v, n)| format!("{v} {n}")).collect();
            let mistakes = if g.false_positives + g.false_negatives > 0 {
                format!(
                    " ({} false positive, {} false negative)",
                    g.false_positives, g.false_negatives
                )
            } else {
                String::new()
            };
            line(
                &mut out,
                "guardrail",
                format!(
                    "{} [{} {}]: {} checks, {}{mistakes}",
                    g.name,
                    g.stage,
                    g.kind,
                    g.checks,
                    if verdicts.is_empty() {
                        "-".to_owned()
                    } else {
                        verdicts.join(", ")
                    }
                ),
            );
        }
        for b in self.blast_radius.iter().filter(|b| b.kind == "fault") {
            let stopped: Vec<&str> = b.stopped_by.iter().map(|s| s.guardrail.as_str()).collect();
            line(
                &mut out,
                "blast radius",
                format!(
                    "{}: {} actors, {} side effects, {} answers{}",
                    b.source,
                    b.actors.len(),
                    b.side_effects_total,
                    b.outputs_total,
                    if stopped.is_empty() {
                        String::new()
                    } else {
                        format!(", stopped by {}", stopped.join(", "))
                    }
                ),
            );
        }
        line(&mut out, "failures", self.failures.len().to_string());
        line(&mut out, "restarts", self.restarts.len().to_string());
        if self.invariants.is_empty() {
            line(&mut out, "invariants", "none declared".to_owned());
        } else {
            let passed = self.invariants.iter().filter(|i| i.passed).count();
            line(
                &mut out,
                "invariants",
                format!("{passed}/{} passed", self.invariants.len()),
            );
            for invariant in &self.invariants {
                match &invariant.first_violation {
                    None => out.push_str(&format!("    pass  {}\n", invariant.name)),
                    Some(v) => out.push_str(&format!(
                        "    FAIL  {} — {}×, first at seq {}, t={}, {}: {}\n",
                        invariant.name,
                        invariant.violations,
                        v.seq,
                        format_duration_us(v.t_us),
                        v.actor,
                        v.message
                    )),
                }
            }
        }
        line(&mut out, "digest", self.digest.clone());
        line(&mut out, "replay", self.replay.clone());
        out
    }

    /// The dearest agents first (at most five), with their call counts.
    fn cost_by_agent_line(&self) -> String {
        const AGENTS_SHOWN_MAX: usize = 5;
        let mut agents: Vec<(&String, &AgentCost)> = self.cost_by_agent.iter().collect();
        agents.sort_by(|(name_a, a), (name_b, b)| b.cost_pusd.cmp(&a.cost_pusd).then(name_a.cmp(name_b)));
        let mut parts: Vec<String> = agents
            .iter()
            .take(AGENTS_SHOWN_MAX)
            .map(|(name, cost)| {
                let calls = if cost.llm_calls == 1 { "call" } else { "calls" };
                format!("{name} {} ({} {calls})", format_usd(cost.cost_pusd), cost.llm_calls)
            })
            .collect();
        if agents.len() > AGENTS_SHOWN_MAX {
            parts.push(format!("{} more", agents.len() - AGENTS_SHOWN_MAX));
        }
        parts.join(", ")
    }
}

/// Dollars with six decimals, from a float (statistics that are not whole pico-USD).
fn usd_f64(dollars: f64) -> String {
    format!("${dollars:.6}")
}

/// The guardrail endings of conversations, when there are any (`, 2 blocked`).
fn guarded_endings(c: &Conversations) -> String {
    [("blocked", c.blocked), ("halted", c.halted), ("escalated", c.escalated)]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!(", {n} {what}"))
        .collect()
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
