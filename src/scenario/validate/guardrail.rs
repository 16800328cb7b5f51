//! Validates `[[guardrail]]` tables: stage, check, action and the settings that fit them.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::{Names, Validator};
use crate::scenario::error::did_you_mean;
use crate::scenario::expr::{Expr, Var};
use crate::scenario::file::{RawArgRule, RawGuardCheck, RawGuardrail};
use crate::scenario::glob::glob_match;
use crate::scenario::guardrail::{
    ArgRule, BudgetScope, GuardAction, GuardCheck, GuardScope, Guardrail, PiiEntity, Stage,
};
use crate::scenario::model::{AgentIdx, Latency, Probability, ToolIdx};

const DEFAULT_MAX_RETRIES: u32 = 2;
const DEFAULT_RESERVE_OUTPUT_TOKENS: u32 = 256;
const DEFAULT_INJECTION_THRESHOLD: u32 = 2;
const DEFAULT_MAX_REPEATS: u32 = 2;

impl Validator<'_> {
    pub(super) fn guardrails(
        &mut self,
        raw: &[Spanned<RawGuardrail>],
        agents: &Names,
        tools: &Names,
    ) -> Vec<Guardrail> {
        let _ = self.names("guardrail", raw.iter().map(|g| &g.get_ref().name));
        raw.iter()
            .filter_map(|g| self.guardrail(g.get_ref(), agents, tools))
            .collect()
    }

    fn guardrail(&mut self, raw: &RawGuardrail, agents: &Names, tools: &Names) -> Option<Guardrail> {
        let stage = self.one_of(&raw.stage, &Stage::ALL, Stage::name, "stage")?;
        let action = match &raw.action {
            Some(action) => self.one_of(action, &GuardAction::ALL, GuardAction::name, "action")?,
            None => GuardAction::Block,
        };
        let check = self.guard_check(&raw.check, stage, tools)?;
        let kind = check.kind();
        self.check_fits(raw, stage, action, kind);
        let parallel = self.guard_mode(raw, stage, action);
        let fail_open = self.fail_open(raw);
        let agent_list = self.globs(&raw.agents, agents, "agent");
        let tool_list = self.guard_tools(raw, stage, tools);
        let escalate_to = self.escalate_to(raw, action, agents);
        let scope = self.guard_scope(raw, stage);
        let rate = |v: &mut Self, value: &Option<Spanned<f64>>| {
            value.as_ref().map_or(Probability::from_f64(0.0), |p| v.probability(p))
        };
        let error_rate = rate(self, &raw.error_rate);
        let false_positive = rate(self, &raw.false_positive);
        let false_negative = rate(self, &raw.false_negative);
        let latency = self.latency(raw.latency.as_ref(), Latency::Fixed { latency_us: 0 });
        let timeout_us = raw.timeout.as_ref().map(|t| self.duration(t));
        let message = raw.message.as_ref().map(|m| m.get_ref().clone()).unwrap_or_else(|| {
            format!(
                "blocked by guardrail {}: the {} did not pass its {kind} check",
                raw.name.get_ref(),
                stage.name().replace('_', " ")
            )
        });
        Some(Guardrail {
            name: raw.name.get_ref().clone(),
            stage,
            check,
            action,
            message,
            agents: agent_list,
            tools: tool_list,
            parallel,
            fail_open,
            latency,
            timeout_us,
            error_rate,
            false_positive,
            false_negative,
            max_retries: raw.max_retries.as_ref().map_or(DEFAULT_MAX_RETRIES, |m| *m.get_ref()),
            escalate_to,
            scope,
        })
    }

    /// Checks that the check kind works at the stage, and the action with the kind and stage.
    fn check_fits(&mut self, raw: &RawGuardrail, stage: Stage, action: GuardAction, kind: &str) {
        let check_span = raw.check.span();
        if !GuardCheck::stages(kind).contains(&stage) {
            let stages: Vec<&str> = GuardCheck::stages(kind).iter().map(|s| s.name()).collect();
            self.error(
                raw.stage.span(),
                format!(
                    "a `{kind}` check works at stage {}, found stage \"{}\"",
                    stages.join(" or "),
                    stage.name()
                ),
            );
        }
        if action == GuardAction::Redact && !GuardCheck::can_redact(kind) {
            self.error(
                raw.action.as_ref().map_or(check_span.clone(), |a| a.span()),
                format!("expected a `regex`, `deny_list` or `pii` check for action \"redact\", found `{kind}`"),
            );
        }
        if action == GuardAction::Retry && !matches!(stage, Stage::Output | Stage::ToolCall) {
            self.error(
                raw.action.as_ref().map_or(check_span.clone(), |a| a.span()),
                format!(
                    "action \"retry\" re-asks the model, so it works at stage output or tool_call, found stage \"{}\"",
                    stage.name()
                ),
            );
        }
    }

    /// `mode = "blocking" | "parallel"`: whether the guardrail runs beside the model call.
    fn guard_mode(&mut self, raw: &RawGuardrail, stage: Stage, action: GuardAction) -> bool {
        let check_span = raw.check.span();
        let parallel = match &raw.mode {
            None => false,
            Some(mode) => match mode.get_ref().as_str() {
                "blocking" => false,
                "parallel" if stage == Stage::Input => true,
                "parallel" => {
                    self.error(
                        mode.span(),
                        "mode \"parallel\" runs beside the model call, so it works at stage input only",
                    );
                    false
                }
                other => {
                    self.error(
                        mode.span(),
                        format!("expected mode \"blocking\" or \"parallel\", found \"{other}\""),
                    );
                    false
                }
            },
        };
        if parallel && !matches!(action, GuardAction::Block | GuardAction::Halt | GuardAction::Allow) {
            self.error(
                raw.action.as_ref().map_or(check_span, |a| a.span()),
                format!(
                    "a parallel guardrail can only allow, block or halt (the model call is already under way), found \"{}\"",
                    action.name()
                ),
            );
        }
        parallel
    }

    /// `on_error = "open" | "closed"`: whether the guardrail lets the message through when it fails.
    fn fail_open(&mut self, raw: &RawGuardrail) -> bool {
        match &raw.on_error {
            None => false,
            Some(value) => match value.get_ref().as_str() {
                "open" => true,
                "closed" => false,
                other => {
                    self.error(
                        value.span(),
                        format!("expected on_error = \"open\" or \"closed\", found \"{other}\""),
                    );
                    false
                }
            },
        }
    }

    /// `tools`: the tools a guardrail at a tool stage watches (`None`: all).
    fn guard_tools(&mut self, raw: &RawGuardrail, stage: Stage, tools: &Names) -> Option<Vec<ToolIdx>> {
        if raw.tools.is_empty() {
            None
        } else {
            if !matches!(stage, Stage::ToolCall | Stage::ToolOutput) {
                self.error(
                    raw.tools[0].span(),
                    format!(
                        "`tools` narrows a guardrail at stage tool_call or tool_output, found stage \"{}\"",
                        stage.name()
                    ),
                );
            }
            Some(self.globs(&raw.tools, tools, "tool"))
        }
    }

    /// `escalate_to`: the agent an escalating guardrail hands the conversation to.
    fn escalate_to(&mut self, raw: &RawGuardrail, action: GuardAction, agents: &Names) -> Option<AgentIdx> {
        match &raw.escalate_to {
            Some(agent) if action == GuardAction::Escalate => self.resolve(agents, agent, "escalate_to"),
            Some(agent) => {
                self.error(agent.span(), "`escalate_to` needs action = \"escalate\"");
                None
            }
            None => None,
        }
    }

    /// Resolves a list of globs over names; an empty list means every name. Each glob must
    /// match something.
    fn globs(&mut self, globs: &[Spanned<String>], names: &Names, kind: &str) -> Vec<usize> {
        if globs.is_empty() {
            return names
                .by_name
                .values()
                .copied()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
        }
        let mut out = std::collections::BTreeSet::new();
        for glob in globs {
            let matched: Vec<usize> = names
                .by_name
                .iter()
                .filter(|(name, _)| glob_match(glob.get_ref(), name))
                .map(|(_, index)| *index)
                .collect();
            if matched.is_empty() {
                let _ = self.resolve(names, glob, &format!("this {kind} pattern"));
            }
            out.extend(matched);
        }
        out.into_iter().collect()
    }

    /// One of a fixed set of names, or an error listing them.
    fn one_of<T: Copy>(
        &mut self,
        value: &Spanned<String>,
        all: &[T],
        name: fn(T) -> &'static str,
        what: &str,
    ) -> Option<T> {
        let text = value.get_ref();
        if let Some(found) = all.iter().copied().find(|v| name(*v) == text) {
            return Some(found);
        }
        let names: Vec<String> = all.iter().map(|v| format!("\"{}\"", name(*v))).collect();
        let hint = did_you_mean(text, all.iter().map(|v| name(*v)))
            .map(|s| format!("; did you mean \"{s}\"?"))
            .unwrap_or_default();
        self.error(
            value.span(),
            format!("expected {what} {}, found \"{text}\"{hint}", names.join(", ")),
        );
        None
    }

    fn guard_check(&mut self, raw: &Spanned<RawGuardCheck>, stage: Stage, tools: &Names) -> Option<GuardCheck> {
        let check = raw.get_ref();
        let kind = check.kind.get_ref().as_str();
        let fields = self.check_kind(check)?;
        self.foreign_fields(check, kind, fields);
        let span = raw.span();
        Some(match kind {
            "regex" => self.regex_check(check, &span)?,
            "deny_list" => GuardCheck::DenyList(
                self.non_empty(&check.words, "words", kind, &span)?
                    .into_iter()
                    .map(|w| w.to_lowercase())
                    .collect(),
            ),
            "pii" => self.pii_check(check),
            "json_schema" => self.json_schema_check(check, &span)?,
            "allow_list" => self.allow_list_check(check, tools, &span),
            "max_tool_calls" => {
                let Some(max) = &check.max else {
                    self.missing(&span, kind, "max");
                    return None;
                };
                GuardCheck::MaxToolCalls(*max.get_ref())
            }
            "budget" => self.budget_check(check, &span),
            "loop" => GuardCheck::Loop {
                max_repeats: check.max_repeats.as_ref().map_or(DEFAULT_MAX_REPEATS, |m| *m.get_ref()),
            },
            "injection" => GuardCheck::Injection {
                threshold: check
                    .threshold
                    .as_ref()
                    .map_or(DEFAULT_INJECTION_THRESHOLD, |t| (*t.get_ref()).max(1)),
            },
            "topic" => self.topic_check(check, &span),
            "script" => self.script_check(check, stage, &span)?,
            _ => unreachable!("kinds are listed in KINDS"),
        })
    }

    /// The fields the check's kind takes (as listed in `GuardCheck::KINDS`), or an error for an
    /// unknown kind.
    fn check_kind(&mut self, check: &RawGuardCheck) -> Option<&'static str> {
        let kind = check.kind.get_ref().as_str();
        let Some((_, fields, _)) = GuardCheck::KINDS.iter().find(|(k, _, _)| *k == kind) else {
            let kinds: Vec<&str> = GuardCheck::KINDS.iter().map(|(k, _, _)| *k).collect();
            let hint = did_you_mean(kind, kinds.iter().copied())
                .map(|s| format!("; did you mean \"{s}\"?"))
                .unwrap_or_default();
            self.error(
                check.kind.span(),
                format!("expected a check kind ({}), found \"{kind}\"{hint}", kinds.join(", ")),
            );
            return None;
        };
        Some(fields)
    }

    /// Reports the fields given that belong to other kinds: mistakes, not silently ignored.
    fn foreign_fields(&mut self, check: &RawGuardCheck, kind: &str, fields: &str) {
        let given: [(&str, Option<std::ops::Range<usize>>); 16] = [
            ("patterns", check.patterns.as_ref().map(|v| v.span())),
            ("words", check.words.as_ref().map(|v| v.span())),
            ("entities", check.entities.as_ref().map(|v| v.span())),
            ("schema", check.schema.as_ref().map(|v| v.span())),
            ("tools", check.tools.as_ref().map(|v| v.span())),
            ("args", check.args.as_ref().map(|v| v.span())),
            ("max", check.max.as_ref().map(|v| v.span())),
            ("max_cost_usd", check.max_cost_usd.as_ref().map(|v| v.span())),
            ("max_tokens", check.max_tokens.as_ref().map(|v| v.span())),
            ("per", check.per.as_ref().map(|v| v.span())),
            (
                "reserve_output_tokens",
                check.reserve_output_tokens.as_ref().map(|v| v.span()),
            ),
            ("max_repeats", check.max_repeats.as_ref().map(|v| v.span())),
            ("threshold", check.threshold.as_ref().map(|v| v.span())),
            ("allow", check.allow.as_ref().map(|v| v.span())),
            ("deny", check.deny.as_ref().map(|v| v.span())),
            ("when", check.when.as_ref().map(|v| v.span())),
        ];
        let allowed: Vec<&str> = fields.split(", ").collect();
        for (field, span) in given {
            if let Some(span) = span {
                if !allowed.contains(&field) {
                    self.error(
                        span,
                        format!("`{field}` does not apply to a `{kind}` check (it takes: {fields})"),
                    );
                }
            }
        }
    }

    fn missing(&mut self, span: &Range<usize>, kind: &str, field: &str) {
        self.error(span.clone(), format!("a `{kind}` check needs `{field}`"));
    }

    fn non_empty(
        &mut self,
        list: &Option<Spanned<Vec<String>>>,
        field: &str,
        kind: &str,
        span: &Range<usize>,
    ) -> Option<Vec<String>> {
        match list {
            Some(l) if !l.get_ref().is_empty() => Some(l.get_ref().clone()),
            Some(l) => {
                self.error(l.span(), format!("expected at least one entry in `{field}`"));
                None
            }
            None => {
                self.missing(span, kind, field);
                None
            }
        }
    }

    fn regex_check(&mut self, check: &RawGuardCheck, span: &Range<usize>) -> Option<GuardCheck> {
        let list = check.patterns.as_ref()?;
        let patterns = self.non_empty(&check.patterns, "patterns", "regex", span)?;
        let mut out = Vec::new();
        for pattern in patterns {
            match regex::RegexBuilder::new(&pattern).size_limit(1 << 20).build() {
                Ok(re) => out.push(re),
                Err(e) => {
                    let first = e.to_string().lines().last().unwrap_or("").trim().to_owned();
                    self.error(
                        list.span(),
                        format!("expected a regular expression, found \"{pattern}\": {first}"),
                    );
                }
            }
        }
        Some(GuardCheck::Regex(out))
    }

    fn pii_check(&mut self, check: &RawGuardCheck) -> GuardCheck {
        match &check.entities {
            None => GuardCheck::Pii(PiiEntity::ALL.to_vec()),
            Some(list) => GuardCheck::Pii(self.pii_entities(list)),
        }
    }

    /// A `json_schema` check: its own `schema`, or, without one, each called tool's `parameters`.
    fn json_schema_check(&mut self, check: &RawGuardCheck, span: &Range<usize>) -> Option<GuardCheck> {
        let Some(schema) = &check.schema else {
            if self.tool_parameters.iter().all(Option::is_none) {
                self.error(
                    span.clone(),
                    "a `json_schema` check without `schema` checks each tool's `parameters`, but no [[tool]] has `parameters`",
                );
                return None;
            }
            return Some(GuardCheck::JsonSchema(None));
        };
        let json = serde_json::to_value(schema.get_ref()).unwrap_or(serde_json::Value::Null);
        if let Err(problem) = crate::scenario::schema::check_schema(&json) {
            self.error(schema.span(), format!("expected a JSON Schema: {problem}"));
        }
        Some(GuardCheck::JsonSchema(Some(json)))
    }

    /// `scope`: `message` (default) or `transcript`, which only the stages that see a whole
    /// conversation have.
    fn guard_scope(&mut self, raw: &RawGuardrail, stage: Stage) -> GuardScope {
        let Some(scope) = &raw.scope else {
            return GuardScope::Message;
        };
        match scope.get_ref().as_str() {
            "message" => GuardScope::Message,
            "transcript" if matches!(stage, Stage::Input | Stage::ModelCall | Stage::Output) => GuardScope::Transcript,
            "transcript" => {
                self.error(
                    scope.span(),
                    format!(
                        "scope = \"transcript\" is for the input, model_call and output stages, not {}",
                        stage.name()
                    ),
                );
                GuardScope::Message
            }
            other => {
                self.error(
                    scope.span(),
                    format!("expected scope \"message\" or \"transcript\", found \"{other}\""),
                );
                GuardScope::Message
            }
        }
    }

    fn allow_list_check(&mut self, check: &RawGuardCheck, tools: &Names, span: &Range<usize>) -> GuardCheck {
        let tool_list = check.tools.as_ref().map(|list| {
            let globs: Vec<Spanned<String>> = list
                .get_ref()
                .iter()
                .map(|t| Spanned::new(list.span(), t.clone()))
                .collect();
            self.globs(&globs, tools, "tool")
        });
        let args = check.args.as_ref().map(|a| self.arg_rules(a)).unwrap_or_default();
        if tool_list.is_none() && args.is_empty() {
            self.error(span.clone(), "an `allow_list` check needs `tools`, `args` or both");
        }
        GuardCheck::AllowList { tools: tool_list, args }
    }

    fn budget_check(&mut self, check: &RawGuardCheck, span: &Range<usize>) -> GuardCheck {
        let max_cost_pusd = check.max_cost_usd.as_ref().map(|c| {
            crate::scenario::units::budget_pusd(*c.get_ref()).unwrap_or_else(|problem| {
                self.error(c.span(), problem);
                0
            })
        });
        let max_tokens = check.max_tokens.as_ref().map(|t| *t.get_ref());
        if max_cost_pusd.is_none() && max_tokens.is_none() {
            self.error(
                span.clone(),
                "a `budget` check needs `max_cost_usd`, `max_tokens` or both",
            );
        }
        let per = match check.per.as_ref().map(|p| (p.get_ref().as_str(), p.span())) {
            None | Some(("conversation", _)) => BudgetScope::Conversation,
            Some(("agent", _)) => BudgetScope::Agent,
            Some(("run", _)) => BudgetScope::Run,
            Some((other, span)) => {
                self.error(
                    span,
                    format!("expected per = \"conversation\", \"agent\" or \"run\", found \"{other}\""),
                );
                BudgetScope::Conversation
            }
        };
        GuardCheck::Budget {
            max_cost_pusd,
            max_tokens,
            per,
            reserve_output_tokens: check
                .reserve_output_tokens
                .as_ref()
                .map_or(DEFAULT_RESERVE_OUTPUT_TOKENS, |r| *r.get_ref()),
        }
    }

    fn topic_check(&mut self, check: &RawGuardCheck, span: &Range<usize>) -> GuardCheck {
        let lower = |l: &Option<Spanned<Vec<String>>>| {
            l.as_ref()
                .map(|l| l.get_ref().iter().map(|w| w.to_lowercase()).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let (allow, deny) = (lower(&check.allow), lower(&check.deny));
        if allow.is_empty() && deny.is_empty() {
            self.error(span.clone(), "a `topic` check needs `allow`, `deny` or both");
        }
        GuardCheck::Topic { allow, deny }
    }

    fn script_check(&mut self, check: &RawGuardCheck, stage: Stage, span: &Range<usize>) -> Option<GuardCheck> {
        let Some(when) = &check.when else {
            self.missing(span, "script", "when");
            return None;
        };
        match Expr::parse(when.get_ref()) {
            Ok(expr) => {
                if stage == Stage::Input && expr_reads(&expr, Var::LastToolOutput) {
                    self.error(when.span(), "at stage input there is no tool output yet");
                }
                Some(GuardCheck::Script(expr))
            }
            Err(e) => {
                self.expr_error(&when.span(), e);
                None
            }
        }
    }

    fn arg_rules(&mut self, raw: &Spanned<BTreeMap<String, RawArgRule>>) -> BTreeMap<String, ArgRule> {
        let mut out = BTreeMap::new();
        for (name, rule) in raw.get_ref() {
            if let (Some(min), Some(max)) = (rule.min, rule.max) {
                if min > max {
                    self.error(
                        raw.span(),
                        format!("argument `{name}`: expected min ≤ max, found min = {min} and max = {max}"),
                    );
                }
            }
            let one_of = rule.one_of.as_ref().map(|values| {
                values
                    .iter()
                    .map(|v| serde_json::to_value(v).unwrap_or(serde_json::Value::Null))
                    .collect()
            });
            out.insert(
                name.clone(),
                ArgRule {
                    min: rule.min,
                    max: rule.max,
                    one_of,
                    required: rule.required.unwrap_or(false),
                },
            );
        }
        out
    }
}

/// Whether an expression reads `var`.
fn expr_reads(expr: &Expr, var: Var) -> bool {
    let reads = |o: &crate::scenario::expr::Operand| o.reads(var);
    match expr {
        Expr::Or(a, b) | Expr::And(a, b) => expr_reads(a, var) || expr_reads(b, var),
        Expr::Not(e) => expr_reads(e, var),
        Expr::Cmp(_, a, b) => reads(a) || reads(b),
        Expr::Truth(o) => reads(o),
    }
}
