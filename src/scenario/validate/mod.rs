//! Turns a [`RawScenario`] into a [`Scenario`]: every name unique, every reference resolved,
//! every unit parsed, every rule type-checked. All problems are collected, not just the first.

mod agent;
mod fault;
pub use fault::unknown_fault_kind;
mod guardrail;
mod human;
mod invariant;
mod limits;
mod llm;
mod noop;
mod profile;
mod supervisor;
mod tool;
mod traffic;
mod user;
mod world;

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::error::{did_you_mean, Diagnostic};
use super::expr::{ExprError, Template};
use super::file::*;
use super::guardrail::PiiEntity;
use super::model::*;
use super::units::parse_duration_us;

/// Validates `raw`; `source_text` is the file's text (for hashing and for string offsets).
/// A valid scenario comes with its warnings (settings that do nothing), in file order.
pub fn validate(raw: RawScenario, source_text: &str) -> Result<(Scenario, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut v = Validator {
        diagnostics: Vec::new(),
        warnings: Vec::new(),
        source: source_text,
        tool_parameters: Vec::new(),
    };
    let scenario = v.scenario(raw, source_text);
    if v.diagnostics.is_empty() {
        v.warnings.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
        Ok((scenario, v.warnings))
    } else {
        v.diagnostics.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
        Err(v.diagnostics)
    }
}

pub(super) struct Validator<'s> {
    pub(super) diagnostics: Vec<Diagnostic>,
    /// Settings that validate but do nothing; only collected for a file without errors.
    warnings: Vec<Diagnostic>,
    source: &'s str,
    /// Each tool's `parameters`, once the tools are read: rules' arguments are checked against them.
    tool_parameters: Vec<Option<serde_json::Value>>,
}

/// Names of one kind of actor, for resolving references.
pub(super) struct Names {
    kind: &'static str,
    pub(super) by_name: BTreeMap<String, usize>,
}

impl Names {
    /// No names of this kind.
    pub(super) fn empty(kind: &'static str) -> Names {
        Names {
            kind,
            by_name: BTreeMap::new(),
        }
    }

    pub(super) fn get(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }
}

impl Validator<'_> {
    /// A list of PII entity names (`["email", "credit_card"]`), each unknown one an error.
    pub(super) fn pii_entities(&mut self, list: &Spanned<Vec<String>>) -> Vec<PiiEntity> {
        let mut entities = Vec::new();
        for name in list.get_ref() {
            match PiiEntity::parse(name) {
                Some(e) => entities.push(e),
                None => {
                    let all: Vec<&str> = PiiEntity::ALL.iter().map(|e| e.name()).collect();
                    self.error(
                        list.span(),
                        format!("expected PII entities among {}, found \"{name}\"", all.join(", ")),
                    );
                }
            }
        }
        entities
    }

    pub(super) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::at(span, message));
    }

    pub(super) fn duration(&mut self, value: &Spanned<String>) -> u64 {
        match parse_duration_us(value.get_ref()) {
            Ok(us) => us,
            Err(message) => {
                self.error(value.span(), message);
                0
            }
        }
    }

    /// A duration that must be above zero: `key` names it, `why` says what zero would do.
    pub(super) fn positive_duration(&mut self, value: &Spanned<String>, key: &str, why: &str) -> u64 {
        match parse_duration_us(value.get_ref()) {
            Ok(0) => self.error(
                value.span(),
                format!("expected a {key} above 0 ({why}), found \"{}\"", value.get_ref()),
            ),
            Ok(us) => return us,
            Err(message) => self.error(value.span(), message),
        }
        0
    }

    pub(super) fn probability(&mut self, value: &Spanned<f64>) -> Probability {
        let p = *value.get_ref();
        if !(0.0..=1.0).contains(&p) {
            self.error(
                value.span(),
                format!("expected a probability between 0 and 1, found {p}"),
            );
            return Probability::ALWAYS;
        }
        Probability::from_f64(p)
    }

    /// Collects names of one kind, reporting duplicates and malformed names.
    pub(super) fn names<'a>(&mut self, kind: &'static str, items: impl Iterator<Item = &'a Spanned<String>>) -> Names {
        let mut by_name = BTreeMap::new();
        // Invariant names are prose; actor names become logical ids (`agent:NAME`).
        let free_text = kind == "invariant";
        for (index, name) in items.enumerate() {
            let text = name.get_ref();
            if text.trim().is_empty()
                || (!free_text && !text.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
            {
                self.error(
                    name.span(),
                    format!("expected a {kind} name of letters, digits, `-`, `_` or `.`, found \"{text}\""),
                );
            }
            if by_name.insert(text.clone(), index).is_some() {
                self.second_name(kind, name);
            }
        }
        Names { kind, by_name }
    }

    /// `name` is the second of its `kind` to be called that.
    pub(super) fn second_name(&mut self, kind: &str, name: &Spanned<String>) {
        let text = name.get_ref();
        self.error(
            name.span(),
            format!("expected unique {kind} names, found a second {kind} named \"{text}\""),
        );
    }

    pub(super) fn resolve(&mut self, names: &Names, reference: &Spanned<String>, context: &str) -> Option<usize> {
        let name = reference.get_ref();
        if let Some(index) = names.get(name) {
            return Some(index);
        }
        let hint = did_you_mean(name, names.by_name.keys().map(String::as_str))
            .map(|s| format!("; did you mean \"{s}\"?"))
            .unwrap_or_default();
        let known = if names.by_name.is_empty() {
            format!("there is no [[{}]]", names.kind)
        } else {
            let list: Vec<String> = names.by_name.keys().map(|s| format!("\"{s}\"")).collect();
            format!("expected one of {}", list.join(", "))
        };
        self.error(
            reference.span(),
            format!(
                "{context} names {} \"{name}\", which does not exist{hint} ({known})",
                names.kind
            ),
        );
        None
    }

    /// The byte offset, in the file, of `offset` within the string value at `span`.
    fn offset_in_string(&self, span: &Range<usize>, offset: usize) -> Range<usize> {
        let quote = self.source.get(span.start..span.start + 1);
        let skip = match quote {
            Some("\"") | Some("'") => {
                if self
                    .source
                    .get(span.start..span.start + 3)
                    .is_some_and(|q| q == "\"\"\"" || q == "'''")
                {
                    3
                } else {
                    1
                }
            }
            _ => 0,
        };
        let start = (span.start + skip + offset).min(span.end.saturating_sub(1).max(span.start));
        start..start + 1
    }

    pub(super) fn expr_error(&mut self, span: &Range<usize>, error: ExprError) {
        let at = self.offset_in_string(span, error.offset);
        self.error(at, error.message);
    }

    pub(super) fn template(&mut self, value: &Spanned<String>, allow_args: bool) -> Template {
        match Template::parse(value.get_ref(), allow_args) {
            Ok(t) => t,
            Err(e) => {
                self.expr_error(&value.span(), e);
                Template::default()
            }
        }
    }

    pub(super) fn latency(&mut self, value: Option<&Spanned<RawLatency>>, default: Latency) -> Latency {
        let Some(value) = value else { return default };
        let span = value.span();
        match value.get_ref() {
            RawLatency::Fixed(text) => match parse_duration_us(text) {
                Ok(latency_us) => Latency::Fixed { latency_us },
                Err(message) => {
                    self.error(span, message);
                    default
                }
            },
            RawLatency::Table(table) => {
                let mut parse = |text: &Option<String>| -> Option<u64> {
                    let text = text.as_ref()?;
                    match parse_duration_us(text) {
                        Ok(us) => Some(us),
                        Err(message) => {
                            self.diagnostics.push(Diagnostic::at(span.clone(), message));
                            None
                        }
                    }
                };
                let (median, p99, min, max) = (
                    parse(&table.median),
                    parse(&table.p99),
                    parse(&table.min),
                    parse(&table.max),
                );
                match (median, p99, min, max) {
                    (Some(median_us), Some(p99_us), None, None) => {
                        if p99_us < median_us {
                            self.error(span, "expected p99 at least as large as the median");
                        }
                        Latency::LogNormal { median_us, p99_us }
                    }
                    (None, None, Some(min_us), Some(max_us)) => {
                        if max_us < min_us {
                            self.error(span, "expected max at least as large as min");
                        }
                        Latency::Uniform { min_us, max_us }
                    }
                    _ => {
                        if !self.diagnostics.iter().any(|d| d.span.as_ref() == Some(&span)) {
                            self.error(
                                span,
                                "expected a latency table with either `median` and `p99`, or `min` and `max`",
                            );
                        }
                        default
                    }
                }
            }
        }
    }

    fn scenario(&mut self, raw: RawScenario, source_text: &str) -> Scenario {
        let (raw, pools) = self.expand_replicas(raw);
        let meta = raw.scenario.get_ref();
        let limits = self.limits(meta);

        let llm_names = self.names("llm", raw.llm.iter().map(|l| &l.get_ref().name));
        let agent_names = self.names("agent", raw.agent.iter().map(|a| &a.get_ref().name));
        let tool_names = self.names("tool", raw.tool.iter().map(|t| &t.get_ref().name));
        let human_names = self.names("human", raw.human.iter().map(|h| &h.get_ref().name));
        let humans = raw.human.iter().map(|h| self.human(h)).collect();
        let supervisor_names = self.names("supervisor", raw.supervisor.iter().map(|s| &s.get_ref().name));

        if raw.agent.is_empty() {
            self.error(
                raw.scenario.span(),
                "expected at least one [[agent]] in the scenario, found none",
            );
        }

        let llms = raw.llm.iter().map(|l| self.llm(l.get_ref())).collect();
        let (tables, table_names) = self.tables(&raw.table);
        let tools: Vec<Tool> = raw
            .tool
            .iter()
            .map(|t| self.tool(t.get_ref(), &tables, (&table_names, &tool_names, &human_names)))
            .collect();
        self.tool_parameters = tools.iter().map(|t| t.parameters.clone()).collect();
        let agents = raw
            .agent
            .iter()
            .map(|a| self.agent(a.get_ref(), &llm_names, &tool_names, &agent_names))
            .collect();
        let supervisors = self.supervisors(&raw, &supervisor_names, &agent_names, &tool_names, &llm_names);
        let max_user_turns = match &meta.max_user_turns {
            Some(t) if *t.get_ref() == 0 => {
                self.error(
                    t.span(),
                    "expected max_user_turns of at least 1 (the opening message), found 0",
                );
                crate::scenario::user::MAX_USER_TURNS_DEFAULT
            }
            Some(t) => *t.get_ref(),
            None => crate::scenario::user::MAX_USER_TURNS_DEFAULT,
        };
        let user_names = self.names("user", raw.user.iter().map(|u| &u.get_ref().name));
        let users = raw
            .user
            .iter()
            .filter_map(|u| self.user(u, &llm_names, max_user_turns))
            .collect();
        let traffic = raw
            .traffic
            .iter()
            .map(|t| self.traffic(t, &agent_names, &user_names, &pools))
            .collect::<Vec<_>>()
            .into_iter()
            .flatten()
            .collect();
        let logical_ids = fault::logical_ids(&raw);
        let faults = self.faults(&raw.fault, &logical_ids);
        let profiles = self.profiles(&raw.profile, &faults);
        let label_names = invariant::label_names(&raw, &faults);
        let tasks = world::task_names(&raw);
        let invariants = self.invariants(&raw.invariant, &label_names, &tables, &tasks);
        let guardrails = self.guardrails(&raw.guardrail, &agent_names, &tool_names);

        let scenario = Scenario {
            derived: Default::default(),
            name: meta.name.get_ref().clone(),
            description: meta.description.clone().unwrap_or_default(),
            seed: meta.seed.as_ref().map_or(0, |s| *s.get_ref()),
            limits,
            max_handoffs: meta
                .max_handoffs
                .as_ref()
                .map_or(MAX_HANDOFFS_DEFAULT, |m| *m.get_ref()),
            llms,
            agents,
            tools,
            supervisors,
            traffic,
            users,
            faults,
            profiles,
            invariants,
            guardrails,
            tables,
            humans,
            source_hash: blake3::hash(source_text.as_bytes()).to_hex().to_string(),
            source_text: source_text.to_owned(),
            data_files: Vec::new(),
            conversation_blocks: Vec::new(),
        };
        let mut scenario = scenario;
        scenario.conversation_blocks = Scenario::blocks(&scenario.traffic, &scenario.traffic_names());
        if self.diagnostics.is_empty() {
            self.noops(&raw, &scenario);
        }
        scenario
    }
}
