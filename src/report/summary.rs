//! The terminal summary of one run: what `agentsim run` prints.

use super::fate::Fate;
use super::{AgentCost, Conversations, RunReport};
use crate::observe::blast::BlastRadius;
use crate::observe::GuardrailStats;
use crate::scenario::units::{counted, format_duration_us, format_usd};

/// Changed conversations shown under each fault's `impact` line.
const IMPACT_CHANGES_SHOWN: usize = 5;
/// Subjects an amounts line names before it says "N more".
const SUBJECTS_LISTED: usize = 4;

impl RunReport {
    /// The human summary `run` prints.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "agentsim {} · {} · seed {}\n",
            self.agentsim_version, self.scenario, self.seed
        ));
        self.run_lines(&mut out);
        self.spend_lines(&mut out);
        line(&mut out, "faults", format!("{} fired", self.faults.len()));
        for never in &self.faults_never_fired {
            line(
                &mut out,
                "never fired",
                format!("{} ({}): {}", never.fault, never.kind, never.reason),
            );
        }
        for g in &self.guardrails {
            line(&mut out, "guardrail", guardrail_line(g));
        }
        for b in self.blast_radius.iter().filter(|b| b.kind == "fault") {
            line(
                &mut out,
                "reached",
                blast_line(b, self.impact.is_some(), self.impact_possible),
            );
        }
        if let Some(impact) = &self.impact {
            self.firing_lines(impact, &mut out);
        }
        line(&mut out, "failures", self.failures.len().to_string());
        line(&mut out, "restarts", self.restarts.len().to_string());
        self.invariant_lines(&mut out);
        line(&mut out, "digest", self.digest.clone());
        line(&mut out, "replay", self.replay.clone());
        out
    }

    /// What each fault changed (`run --impact`), in the first screen: one line per fault, most
    /// conversations changed first, with how many of the harmed conversations it accounts for.
    fn impact_lines(&self, impact: &crate::report::impact::Impact, out: &mut String) {
        for f in &impact.faults {
            let harmed = f.harm_caused;
            let firings = match f.impact.firings {
                1 => "1 firing".to_owned(),
                n => format!("{n} firings"),
            };
            let accounts = if harmed > 0 {
                format!("; accounts for {harmed} of the {} harmed", self.harmed_total)
            } else {
                String::new()
            };
            line(
                out,
                "impact",
                format!(
                    "{} ({}, {firings}): {}{accounts}",
                    f.impact.fault,
                    f.impact.kind,
                    f.impact.deltas.describe()
                ),
            );
            if f.changed_total > 0 {
                let listed: Vec<String> = f
                    .changed
                    .iter()
                    .take(IMPACT_CHANGES_SHOWN)
                    .map(|c| c.describe())
                    .collect();
                let more = f.changed_total.saturating_sub(listed.len() as u64);
                let more = if more > 0 {
                    format!("; {more} more")
                } else {
                    String::new()
                };
                line(out, "", format!("  {}{more}", listed.join("; ")));
            }
        }
    }

    /// What each firing of a fault that fired more than once changed (`run --impact`).
    fn firing_lines(&self, impact: &crate::report::impact::Impact, out: &mut String) {
        let repeated = |name: &str| {
            impact
                .faults
                .iter()
                .any(|f| f.impact.fault == name && f.impact.firings > 1)
        };
        for f in impact.firings.iter().filter(|f| repeated(&f.fault)) {
            let what = match f.changed_total {
                0 => "changed nothing".to_owned(),
                n => {
                    let listed: Vec<String> = f.changed.iter().map(|c| c.describe()).collect();
                    let more = n.saturating_sub(f.changed.len() as u64);
                    let more = if more > 0 {
                        format!("; {more} more")
                    } else {
                        String::new()
                    };
                    format!("changed {n} conversation(s): {}{more}", listed.join("; "))
                }
            };
            let hit = f.conversation.map_or(String::new(), |c| format!(" (conversation {c})"));
            line(
                out,
                "firing",
                format!("{} #{} at seq {}{hit}: {what}", f.fault, f.firing, f.seq),
            );
        }
        let skipped = impact.firings_total.saturating_sub(impact.firings.len() as u64);
        if skipped > 0 {
            line(
                out,
                "firing",
                format!("{skipped} later firing(s) not analysed one by one"),
            );
        }
    }

    /// Profile, outcome, makespan, events, conversations, calls.
    fn run_lines(&self, out: &mut String) {
        if let Some(profile) = &self.profile {
            line(out, "profile", profile.clone());
        }
        let outcome = match &self.outcome_detail {
            Some(detail) => format!("{} ({detail})", self.outcome.name()),
            None => self.outcome.name().to_owned(),
        };
        line(out, "outcome", outcome);
        line(
            out,
            "makespan",
            format!("{} virtual", format_duration_us(self.virtual_time_us)),
        );
        line(out, "events", self.events.to_string());
        let c = &self.conversations;
        line(out, "conversations", conversations_line(c));
        if self.user_turns.dialogues > 0 {
            line(out, "dialogues", self.dialogue_line());
        }
        if self.harmed_total > 0 {
            line(out, "harmed", self.harm_line());
        }
        if let Some(impact) = &self.impact {
            self.impact_lines(impact, out);
        }
        line(
            out,
            "llm calls",
            format!("{} ({} errors)", self.llm_calls, self.llm_errors),
        );
        if let Some(said) = &self.first_server_error {
            line(out, "first error", said.clone());
        }
        if let Some(sim) = &self.user_simulator {
            line(
                out,
                "user simulator",
                format!(
                    "{} model calls, {} tokens, {} (not in the design's calls or cost)",
                    sim.llm_calls,
                    sim.input_tokens + sim.output_tokens,
                    format_usd(sim.cost_pusd)
                ),
            );
        }
        line(out, "tool calls", self.tool_calls.to_string());
        for tool in self.tools.iter().filter(|t| t.errors > 0 || t.queued > 0) {
            let mut parts = vec![counted(tool.calls, "call", "calls")];
            if tool.errors > 0 {
                let by: Vec<String> = tool.errors_by_status.iter().map(|(s, n)| format!("{n}× {s}")).collect();
                parts.push(format!(
                    "{} ({})",
                    counted(tool.errors, "error", "errors"),
                    by.join(", ")
                ));
            }
            if tool.queued > 0 {
                parts.push(format!(
                    "{} waited for the API, {} in all",
                    tool.queued,
                    format_duration_us(tool.queue_wait_us_total)
                ));
            }
            line(out, "  tool", format!("{}: {}", tool.name, parts.join("; ")));
        }
    }

    /// How the conversations whose user talks back ended, and how long they went on:
    /// `12 with a user who talks back: 5 resolved, 3 abandoned; 3.4 user turns on average (max 6)`.
    fn dialogue_line(&self) -> String {
        let t = &self.user_turns;
        let endings: Vec<String> = [Fate::Resolved, Fate::Abandoned, Fate::OutOfTurns]
            .iter()
            .filter_map(|f| {
                let n = self.fates.get(f.name()).copied().unwrap_or(0);
                (n > 0).then(|| format!("{n} {}", f.name().replace('_', " ")))
            })
            .collect();
        let endings = if endings.is_empty() {
            "none resolved".to_owned()
        } else {
            endings.join(", ")
        };
        format!(
            "{} with a user who talks back: {endings}; {:.1} user turns on average (max {})",
            t.dialogues, t.mean, t.max
        )
    }

    /// The conversations the design let down, by fate, and how many of them moved something
    /// (a side effect) without an answer: `12 lost, 7 orphaned; 19 with side effects and no answer`.
    fn harm_line(&self) -> String {
        let fates: Vec<String> = [Fate::Lost, Fate::Orphaned, Fate::Cut, Fate::Failed, Fate::OutOfTurns]
            .iter()
            .filter_map(|f| {
                let n = self.fates.get(f.name()).copied().unwrap_or(0);
                (n > 0).then(|| format!("{n} {}", f.name().replace('_', " ")))
            })
            .collect();
        let silent = self.harmed.iter().filter(|h| !h.effects.is_empty()).count();
        // Those a compensation undid something for (a refund).
        let undone = match self.harmed.iter().filter(|h| !h.compensated.is_empty()).count() {
            0 => String::new(),
            n => format!(" ({n} of them compensated)"),
        };
        let listed_note = if (self.harmed.len() as u64) < self.harmed_total {
            format!(" (of the first {} listed)", self.harmed.len())
        } else {
            String::new()
        };
        // Without --impact, the faults that ended them directly (the crash that lost them).
        let mut direct: std::collections::BTreeMap<&str, u64> = Default::default();
        if self.impact.is_none() {
            for name in self.harmed.iter().filter_map(|h| h.fault.as_deref()) {
                *direct.entry(name).or_default() += 1;
            }
        }
        let direct = if direct.is_empty() {
            String::new()
        } else {
            let named: Vec<String> = direct.iter().map(|(name, n)| format!("{name} ({n})")).collect();
            let hint = if self.impact_possible {
                " (--impact says what each fault changed)"
            } else {
                ""
            };
            format!("; lost to {}{hint}", named.join(", "))
        };
        format!(
            "{} of {} conversations: {}; {silent} with side effects and no answer{undone}{listed_note}{direct}",
            self.harmed_total,
            self.conversations.started,
            fates.join(", ")
        )
    }

    /// Tokens, cost (total, by agent, per conversation) and side effects.
    fn spend_lines(&self, out: &mut String) {
        line(
            out,
            "tokens",
            format!(
                "{} ({} in, of which {} cached; {} out){}",
                self.tokens.total,
                self.tokens.input,
                self.tokens.cached_input,
                self.tokens.output,
                match self.tokens.counted_by_server_calls {
                    0 => String::new(),
                    n => format!(
                        "; counted by the server in {n} of {} calls, estimated in the rest",
                        self.llm_calls
                    ),
                }
            ),
        );
        line(out, "cost", format_usd(self.cost_pusd));
        if !self.cost_by_agent.is_empty() {
            line(out, "cost by agent", self.cost_by_agent_line());
        }
        let c = &self.cost_per_conversation;
        if let Some(max_conversation) = c.max_conversation {
            line(
                out,
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
            line(out, "effects", tally(&self.effects));
        }
        if let Some(c) = &self.compensations {
            let undone = match c.undone.is_empty() {
                true => String::new(),
                false => format!(" (undid {})", tally(&c.undone)),
            };
            line(
                out,
                "compensated",
                format!(
                    "{} call(s) in {} conversation(s): {} succeeded{undone}, {} failed",
                    c.run, c.conversations, c.succeeded, c.failed
                ),
            );
        }
        for a in &self.approvals {
            line(
                out,
                "approvals",
                format!(
                    "{}: {} requested, {} approved, {} rejected, {} timed out; queue at most {}, waits p50 {} / max {}",
                    a.human,
                    a.requests,
                    a.approved,
                    a.rejected,
                    a.timed_out,
                    a.queue_max,
                    crate::scenario::units::format_duration_us(a.wait_us.p50),
                    crate::scenario::units::format_duration_us(a.wait_us.max)
                ),
            );
        }
        if let Some(c) = &self.cancellations {
            let stopped = match c.effects.is_empty() {
                true => String::new(),
                false => format!("; they would have had {}", tally(&c.effects)),
            };
            line(
                out,
                "cancelled",
                format!("{} conversation(s), {} tool call(s){stopped}", c.conversations, c.calls),
            );
        }
        for (effect, amount) in &self.amounts {
            let mut subjects: Vec<String> = amount
                .by_subject
                .iter()
                .take(SUBJECTS_LISTED)
                .map(|(subject, s)| format!("{subject} {}", s.total))
                .collect();
            if amount.by_subject.len() > SUBJECTS_LISTED {
                subjects.push(format!("{} more", amount.by_subject.len() - SUBJECTS_LISTED));
            }
            let by = if subjects.is_empty() {
                String::new()
            } else {
                format!(" ({})", subjects.join(", "))
            };
            line(
                out,
                "amounts",
                format!("{effect} {} over {} effects{by}", amount.total, amount.count),
            );
        }
        if let Some(world) = &self.world {
            line(out, "world", world.summary());
        }
    }

    /// The invariants: how many passed, then one line each (goals with their trials).
    fn invariant_lines(&self, out: &mut String) {
        if self.invariants.is_empty() {
            line(out, "invariants", "none declared".to_owned());
            return;
        }
        let passed = self.invariants.iter().filter(|i| i.passed).count();
        line(out, "invariants", format!("{passed}/{} passed", self.invariants.len()));
        for invariant in &self.invariants {
            let trials = invariant.checked.map(|checked| {
                let ok = checked.saturating_sub(invariant.conversations_broken);
                format!(" (goal: {ok} of {checked} conversation(s) ended in the expected state)")
            });
            match &invariant.first_violation {
                None => out.push_str(&format!("    pass  {}{}\n", invariant.name, trials.unwrap_or_default())),
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
            parts.push(format!("… {} more", agents.len() - AGENTS_SHOWN_MAX));
        }
        parts.join(", ")
    }
}

/// Dollars with six decimals, from a float (statistics that are not whole pico-USD).
fn usd_f64(dollars: f64) -> String {
    format!("${dollars:.6}")
}

/// How the conversations ended, each counted once, as the report counts them.
fn conversations_line(c: &Conversations) -> String {
    let mut line = format!(
        "{} started, {} answered, {} hit max_turns, {} failed, {} unanswered",
        c.started, c.answered, c.max_turns, c.failed, c.unanswered
    );
    // The guardrail endings and abandoned conversations, when there are any (`, 2 blocked`).
    for (what, n) in [
        ("blocked", c.blocked),
        ("halted", c.halted),
        ("escalated", c.escalated),
        ("abandoned", c.abandoned),
    ] {
        if n > 0 {
            line.push_str(&format!(", {n} {what}"));
        }
    }
    line
}

/// One labelled line of the summary.
/// Counts by name, as the summary shows them: `charged ×2, refunded ×1`.
fn tally<V: std::fmt::Display>(counts: &std::collections::BTreeMap<String, V>) -> String {
    let items: Vec<String> = counts.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
    items.join(", ")
}

fn line(out: &mut String, label: &str, value: String) {
    out.push_str(&format!("  {label:<15}{value}\n"));
}

/// A guardrail's checks and verdicts.
fn guardrail_line(g: &GuardrailStats) -> String {
    let verdicts: Vec<String> = g.verdicts.iter().map(|(v, n)| format!("{v} {n}")).collect();
    let mistakes = if g.false_positives + g.false_negatives > 0 {
        format!(
            " ({} false positive, {} false negative)",
            g.false_positives, g.false_negatives
        )
    } else {
        String::new()
    };
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
    )
}

/// How far a fault spread, and what stopped it.
/// `with_impact`: the `impact` lines are printed too, so no hint to ask for them; nor is there
/// one when `--impact` cannot rerun the run (`impact_possible` false: a live or replayed model).
fn blast_line(b: &BlastRadius, with_impact: bool, impact_possible: bool) -> String {
    let stopped: Vec<&str> = b.stopped_by.iter().map(|s| s.guardrail.as_str()).collect();
    let amounts: Vec<String> = b
        .amounts
        .iter()
        .map(|(effect, total)| format!("{effect} {}", crate::scenario::expr::format_dec(*total)))
        .collect();
    let amounts = match amounts.is_empty() {
        true => String::new(),
        false => format!(" ({})", amounts.join(", ")),
    };
    format!(
        "{} reached {}, {}{amounts}, {}{} (where its data flowed{})",
        b.source,
        counted(b.actors.len() as u64, "actor", "actors"),
        counted(b.side_effects_total, "side effect", "side effects"),
        counted(b.outputs_total, "answer", "answers"),
        if stopped.is_empty() {
            String::new()
        } else {
            format!(", stopped by {}", stopped.join(", "))
        },
        if with_impact {
            "; the impact lines say what it changed"
        } else if impact_possible {
            "; --impact says what it changed"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::conversations_line;
    use crate::report::Conversations;

    #[test]
    fn abandoned_conversations_are_shown_on_their_own_and_counted_once() {
        let c = Conversations {
            started: 10,
            answered: 5,
            max_turns: 0,
            failed: 1,
            unanswered: 0,
            abandoned: 3,
            blocked: 1,
            halted: 0,
            escalated: 0,
        };
        let line = conversations_line(&c);
        assert_eq!(
            line,
            "10 started, 5 answered, 0 hit max_turns, 1 failed, 0 unanswered, 1 blocked, 3 abandoned"
        );
        let counted: u64 = line
            .split(", ")
            .skip(1)
            .map(|part| part.split(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(counted, c.started, "every conversation counted once: {line}");
    }
}
