//! Validates `[[invariant]]` tables: never, always, eventually, budget and detect checks.

use std::ops::Range;

use toml::Spanned;

use super::Validator;
use crate::scenario::error::did_you_mean;
use crate::scenario::file::*;
use crate::scenario::glob::glob_match;
use crate::scenario::model::*;

impl Validator<'_> {
    pub(super) fn invariants(
        &mut self,
        raw: &[Spanned<RawInvariant>],
        label_names: &[String],
        tables: &[Table],
        tasks: &[String],
    ) -> Vec<Invariant> {
        let _ = self.names("invariant", raw.iter().map(|i| &i.get_ref().name));
        let mut out = Vec::new();
        for item in raw {
            let inv = item.get_ref();
            let chosen = [
                inv.never.is_some(),
                inv.always.is_some(),
                inv.eventually.is_some(),
                inv.budget.is_some(),
                inv.detect.is_some(),
                inv.goal.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if chosen != 1 {
                self.error(
                    item.span(),
                    format!(
                        "expected exactly one of `never`, `always`, `eventually`, `budget`, `goal` or `detect`, found {chosen}"
                    ),
                );
                continue;
            }
            if let (Some(threshold), None) = (&inv.threshold, &inv.detect) {
                self.error(threshold.span(), "`threshold` goes with `detect`");
            }
            let check = if let Some(never) = &inv.never {
                match self.never(never, label_names, tables) {
                    Some(check) => check,
                    None => continue,
                }
            } else if let Some(goal) = &inv.goal {
                match self.goal(goal, tables, tasks) {
                    Some(check) => check,
                    None => continue,
                }
            } else if let Some(always) = inv
                .always
                .as_ref()
                .filter(|a| a.get_ref().table.is_some() || a.get_ref().check.is_some())
            {
                let a = always.get_ref();
                if a.cost_usd_max.is_some() || a.tokens_max.is_some() || a.per.is_some() {
                    self.error(
                        always.span(),
                        "expected either a world check (`table`, `check`) or a spend limit, found both",
                    );
                }
                match self.world_always(a, always.span(), tables) {
                    Some(check) => check,
                    None => continue,
                }
            } else if let Some(always) = &inv.always {
                let a = always.get_ref();
                match self.spend_limit(
                    always.span(),
                    a.cost_usd_max.as_ref(),
                    a.tokens_max.as_ref(),
                    a.per.as_ref(),
                ) {
                    Some(check) => check,
                    None => continue,
                }
            } else if let Some(budget) = &inv.budget {
                let b = budget.get_ref();
                match self.spend_limit(budget.span(), b.cost_usd.as_ref(), b.tokens.as_ref(), b.per.as_ref()) {
                    Some(check) => check,
                    None => continue,
                }
            } else if let Some(detect) = &inv.detect {
                match self.detect(detect, inv.threshold.as_ref()) {
                    Some(check) => check,
                    None => continue,
                }
            } else {
                let eventually = inv.eventually.as_ref().expect("one of five is set");
                match self.eventually(eventually) {
                    Some(check) => check,
                    None => continue,
                }
            };
            out.push(Invariant {
                name: inv.name.get_ref().clone(),
                check,
            });
        }
        out
    }

    /// A `detect` invariant: a failure-mode detector by name.
    fn detect(&mut self, detect: &Spanned<String>, threshold: Option<&Spanned<u32>>) -> Option<Check> {
        let name = detect.get_ref();
        let Some(detector) = Detector::ALL.into_iter().find(|d| d.name() == name) else {
            let all: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
            let hint = did_you_mean(name, all.iter().copied())
                .map(|s| format!("; did you mean \"{s}\"?"))
                .unwrap_or_default();
            self.error(
                detect.span(),
                format!("expected a detector ({}), found \"{name}\"{hint}", all.join(", ")),
            );
            return None;
        };
        if let Some(t) = threshold.filter(|t| *t.get_ref() < 2) {
            self.error(
                t.span(),
                format!(
                    "expected a threshold of at least 2 (a pattern is a repeat), found {}",
                    t.get_ref()
                ),
            );
        }
        Some(Check::Detect {
            detector,
            threshold: threshold.map_or(3, |t| (*t.get_ref()).max(2)),
        })
    }

    /// An `eventually` invariant: every conversation is answered, or has a side effect.
    fn eventually(&mut self, eventually: &Spanned<RawEventually>) -> Option<Check> {
        let e = eventually.get_ref();
        let within_us = e.within.as_ref().map(|w| self.duration(w));
        match (&e.answered, &e.resolved, &e.effect) {
            (Some(answered), None, None) => {
                if !*answered.get_ref() {
                    self.error(answered.span(), "expected `answered = true`");
                }
                Some(Check::EventuallyAnswered { within_us })
            }
            (None, Some(resolved), None) => {
                if !*resolved.get_ref() {
                    self.error(resolved.span(), "expected `resolved = true`");
                }
                Some(Check::EventuallyResolved { within_us })
            }
            (None, None, Some(effect)) => Some(Check::EventuallyEffect {
                effect: effect.get_ref().clone(),
                within_us,
            }),
            _ => {
                self.error(
                    eventually.span(),
                    "expected exactly one of `answered = true`, `resolved = true` or `effect = \"NAME\"`",
                );
                None
            }
        }
    }

    /// A `never` invariant: over side effects, or over user-visible answers.
    fn never(&mut self, never: &Spanned<RawNever>, label_names: &[String], tables: &[Table]) -> Option<Check> {
        let n = never.get_ref();
        if n.table.is_some() || n.when.is_some() {
            if n.effect.is_some()
                || n.output_pii.is_some()
                || n.output_matches.is_some()
                || n.output_tainted_by.is_some()
            {
                self.error(
                    never.span(),
                    "expected either a world check (`table`, `when`) or an effect or answer check, found both",
                );
            }
            return self.world_never(n, never.span(), tables);
        }
        if let (Some(effect), Some(unanswered)) = (&n.effect, &n.unanswered) {
            if !*unanswered.get_ref() {
                self.error(unanswered.span(), "expected `unanswered = true`");
            }
            if n.more_than.is_some() || n.per.is_some() || n.tainted_by.is_some() {
                self.error(
                    never.span(),
                    "`unanswered = true` goes alone with `effect`: any standing effect in a conversation left without an answer breaks it",
                );
            }
            return Some(Check::NeverStranded {
                effect: effect.get_ref().clone(),
            });
        }
        if let (Some(effect), true) = (&n.effect, n.amount_more_than.is_some() || n.total_more_than.is_some()) {
            if n.more_than.is_some() || (n.amount_more_than.is_some() && n.total_more_than.is_some()) {
                self.error(
                    never.span(),
                    "expected one bound: `more_than` (a count), `amount_more_than` (each amount) or `total_more_than` (a sum)",
                );
                return None;
            }
            if let Some(t) = &n.tainted_by {
                self.error(t.span(), "`tainted_by` goes with counts (`more_than`), not amounts");
            }
            return self.amount_bound(n, effect);
        }
        let tainted_by = n.tainted_by.as_ref().map(|t| self.label_glob(t, label_names));
        let outputs = [
            n.output_pii.is_some(),
            n.output_matches.is_some(),
            n.output_tainted_by.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        match (&n.effect, outputs) {
            (Some(effect), 0) => Some(Check::NeverEffect {
                effect: effect.get_ref().clone(),
                more_than: n.more_than.unwrap_or(0),
                per: self.per(n.per.as_ref()),
                tainted_by,
            }),
            (None, 1) => {
                if let Some(per) = &n.per {
                    self.error(
                        per.span(),
                        "`per` goes with `effect`; an answer check counts every answer",
                    );
                }
                let (test, tainted_by) = if let Some(list) = &n.output_pii {
                    (OutputTest::Pii(self.pii_entities(list)), tainted_by)
                } else if let Some(pattern) = &n.output_matches {
                    match regex::RegexBuilder::new(pattern.get_ref()).size_limit(1 << 20).build() {
                        Ok(re) => (OutputTest::Matches(re), tainted_by),
                        Err(e) => {
                            let last = e.to_string().lines().last().unwrap_or("").trim().to_owned();
                            self.error(pattern.span(), format!("expected a regular expression: {last}"));
                            return None;
                        }
                    }
                } else {
                    let source = n.output_tainted_by.as_ref().expect("counted above");
                    if let Some(t) = &n.tainted_by {
                        self.error(t.span(), "`output_tainted_by` already names the source");
                    }
                    (OutputTest::Any, Some(self.label_glob(source, label_names)))
                };
                Some(Check::NeverOutput { test, tainted_by })
            }
            _ => {
                self.error(
                    never.span(),
                    "expected exactly one of `effect`, `output_pii`, `output_matches` or `output_tainted_by`",
                );
                None
            }
        }
    }

    /// A taint source glob (`fault:*`, `tool:web_search`, `user`) that must match some source.
    fn label_glob(&mut self, glob: &Spanned<String>, label_names: &[String]) -> String {
        let text = glob.get_ref();
        if !label_names.iter().any(|name| glob_match(text, name)) {
            let hint = did_you_mean(text, label_names.iter().map(String::as_str))
                .map(|s| format!("; did you mean \"{s}\"?"))
                .unwrap_or_default();
            self.error(
                glob.span(),
                format!(
                    "expected a taint source (`user`, `tool:NAME` or `fault:NAME`, globs allowed) that the scenario has, found \"{text}\"{hint}"
                ),
            );
        }
        text.clone()
    }

    /// A cost or token limit per scope (`always` and `budget` invariants).
    fn spend_limit(
        &mut self,
        span: Range<usize>,
        cost_usd: Option<&Spanned<f64>>,
        tokens: Option<&Spanned<u64>>,
        per: Option<&Spanned<String>>,
    ) -> Option<Check> {
        let per = self.per(per);
        match (cost_usd, tokens) {
            (Some(cost), None) => {
                let cost_pusd_max = crate::scenario::units::budget_pusd(*cost.get_ref()).unwrap_or_else(|problem| {
                    self.error(cost.span(), problem);
                    0
                });
                Some(Check::CostMax { cost_pusd_max, per })
            }
            (None, Some(tokens)) => Some(Check::TokensMax {
                tokens_max: *tokens.get_ref(),
                per,
            }),
            _ => {
                self.error(span, "expected exactly one cost limit or one token limit");
                None
            }
        }
    }

    pub(super) fn per(&mut self, per: Option<&Spanned<String>>) -> Per {
        match per.map(|p| (p.get_ref().as_str(), p.span())) {
            None | Some(("run", _)) => Per::Run,
            Some(("conversation", _)) => Per::Conversation,
            Some((other, span)) => {
                self.error(
                    span,
                    format!("expected per = \"conversation\" or \"run\", found \"{other}\""),
                );
                Per::Run
            }
        }
    }
}

/// Names of the taint sources a scenario has: `user`, `tool:NAME`, `fault:NAME`.
pub(super) fn label_names(raw: &RawScenario, faults: &[Fault]) -> Vec<String> {
    let mut names = vec!["user".to_owned()];
    names.extend(raw.tool.iter().map(|t| format!("tool:{}", t.get_ref().name.get_ref())));
    names.extend(faults.iter().map(|f| format!("fault:{}", f.name)));
    names
}
