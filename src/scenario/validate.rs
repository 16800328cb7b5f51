//! Turns a [`RawScenario`] into a [`Scenario`]: every name unique, every reference resolved,
//! every unit parsed, every rule type-checked. All problems are collected, not just the first.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::error::{did_you_mean, Diagnostic};
use super::expr::{Expr, ExprError, Template};
use super::file::*;
use super::glob::glob_match;
use super::model::*;
use super::units::{parse_duration_us, parse_rate_milli_per_hour};
use crate::kernel::number_duplicates;

const DEFAULT_MAX_TURNS: u32 = 12;
const DEFAULT_CONTEXT_WINDOW_TOKENS: u64 = 128_000;
const DEFAULT_MAX_RESTARTS: u32 = 3;
const DEFAULT_WITHIN_US: u64 = 60_000_000;
const ROOT_SUPERVISOR: &str = "root";

/// Validates `raw`; `source_text` is the file's text (for hashing and for string offsets).
pub fn validate(raw: RawScenario, source_text: &str) -> Result<Scenario, Vec<Diagnostic>> {
    let mut v = Validator {
        diagnostics: Vec::new(),
        source: source_text,
    };
    let scenario = v.scenario(raw, source_text);
    if v.diagnostics.is_empty() {
        Ok(scenario)
    } else {
        v.diagnostics.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
        Err(v.diagnostics)
    }
}

pub(super) struct Validator<'s> {
    pub(super) diagnostics: Vec<Diagnostic>,
    source: &'s str,
}

/// Names of one kind of actor, for resolving references.
pub(super) struct Names {
    kind: &'static str,
    pub(super) by_name: BTreeMap<String, usize>,
}

impl Names {
    pub(super) fn get(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }
}

impl Validator<'_> {
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
                self.error(
                    name.span(),
                    format!("expected unique {kind} names, found a second {kind} named \"{text}\""),
                );
            }
        }
        Names { kind, by_name }
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

    fn template(&mut self, value: &Spanned<String>, allow_args: bool) -> Template {
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
        let mut limits = Limits::DEFAULT;
        if let Some(t) = &meta.max_virtual_time {
            limits.max_virtual_time_us = self.duration(t);
        }
        if let Some(t) = &meta.max_tool_wait {
            limits.max_tool_wait_us = self.duration(t);
        }
        for (value, slot) in [
            (&meta.max_events, &mut limits.max_events),
            (&meta.max_queue_len, &mut limits.max_queue_len),
            (&meta.max_message_bytes, &mut limits.max_message_bytes),
        ] {
            if let Some(value) = value {
                if *value.get_ref() == 0 {
                    self.diagnostics
                        .push(Diagnostic::at(value.span(), "expected a limit of at least 1, found 0"));
                }
                *slot = *value.get_ref();
            }
        }
        // Zero restarts is a real choice: any restart ends the run.
        if let Some(value) = &meta.max_restarts_total {
            limits.max_restarts_total = *value.get_ref();
        }

        let llm_names = self.names("llm", raw.llm.iter().map(|l| &l.get_ref().name));
        let agent_names = self.names("agent", raw.agent.iter().map(|a| &a.get_ref().name));
        let tool_names = self.names("tool", raw.tool.iter().map(|t| &t.get_ref().name));
        let supervisor_names = self.names("supervisor", raw.supervisor.iter().map(|s| &s.get_ref().name));

        if raw.agent.is_empty() {
            self.error(
                raw.scenario.span(),
                "expected at least one [[agent]] in the scenario, found none",
            );
        }

        let llms = raw.llm.iter().map(|l| self.llm(l.get_ref())).collect();
        let tools = raw.tool.iter().map(|t| self.tool(t.get_ref())).collect();
        let agents = raw
            .agent
            .iter()
            .map(|a| self.agent(a.get_ref(), &llm_names, &tool_names, &agent_names))
            .collect();
        let supervisors = self.supervisors(&raw, &supervisor_names, &agent_names, &tool_names, &llm_names);
        let traffic = raw
            .traffic
            .iter()
            .map(|t| self.traffic(t, &agent_names, &pools))
            .collect::<Vec<_>>()
            .into_iter()
            .flatten()
            .collect();
        let logical_ids = logical_ids(&raw);
        let faults = self.faults(&raw.fault, &logical_ids);
        let profiles = self.profiles(&raw.profile, &faults);
        let label_names = label_names(&raw, &faults);
        let invariants = self.invariants(&raw.invariant, &label_names);
        let guardrails = self.guardrails(&raw.guardrail, &agent_names, &tool_names);

        Scenario {
            name: meta.name.get_ref().clone(),
            description: meta.description.clone().unwrap_or_default(),
            seed: meta.seed.unwrap_or(0),
            limits,
            llms,
            agents,
            tools,
            supervisors,
            traffic,
            faults,
            profiles,
            invariants,
            guardrails,
            source_hash: blake3::hash(source_text.as_bytes()).to_hex().to_string(),
            source_text: source_text.to_owned(),
        }
    }

    /// Replaces each agent with `replicas = N` by N copies named `NAME-i`; returns the pools
    /// (NAME → the copies' names) for traffic to spread over.
    fn expand_replicas(&mut self, mut raw: RawScenario) -> (RawScenario, BTreeMap<String, Vec<String>>) {
        const REPLICAS_MAX: u32 = 1_000_000;
        let mut pools = BTreeMap::new();
        let mut agents = Vec::with_capacity(raw.agent.len());
        for agent in std::mem::take(&mut raw.agent) {
            let Some(replicas) = agent.get_ref().replicas.clone() else {
                agents.push(agent);
                continue;
            };
            let count = *replicas.get_ref();
            if count == 0 || count > REPLICAS_MAX {
                self.error(
                    replicas.span(),
                    format!("expected replicas between 1 and {REPLICAS_MAX}, found {count}"),
                );
                agents.push(agent);
                continue;
            }
            let base = agent.get_ref().name.clone();
            let mut names = Vec::with_capacity(count as usize);
            for i in 0..count {
                let mut copy = agent.clone();
                let name = format!("{}-{i}", base.get_ref());
                copy.get_mut().name = Spanned::new(base.span(), name.clone());
                copy.get_mut().replicas = None;
                names.push(name);
                agents.push(copy);
            }
            pools.insert(base.get_ref().clone(), names);
        }
        raw.agent = agents;
        (raw, pools)
    }

    fn llm(&mut self, raw: &RawLlm) -> Llm {
        let name = raw.name.get_ref();
        let mode = match &raw.mode {
            None => LlmMode::Mock,
            Some(mode) => match mode.get_ref().as_str() {
                "mock" => LlmMode::Mock,
                "live" => LlmMode::Live,
                "replay" => LlmMode::Replay,
                other => {
                    self.error(
                        mode.span(),
                        format!("expected mode \"mock\", \"live\" or \"replay\", found \"{other}\""),
                    );
                    LlmMode::Mock
                }
            },
        };
        let endpoint = self.endpoint(raw, mode);
        let cassette = raw.cassette.as_ref().map(|c| std::path::PathBuf::from(c.get_ref()));
        if mode == LlmMode::Replay && cassette.is_none() {
            self.error(
                raw.mode.as_ref().map_or(raw.name.span(), |m| m.span()),
                format!("expected `cassette = \"FILE\"` for llm \"{name}\" in mode \"replay\""),
            );
        }
        let cassette_match = match &raw.cassette_match {
            None => CassetteMatch::Strict,
            Some(m) => match m.get_ref().as_str() {
                "strict" => CassetteMatch::Strict,
                "fifo" => CassetteMatch::Fifo,
                other => {
                    self.error(
                        m.span(),
                        format!("expected cassette_match \"strict\" or \"fifo\", found \"{other}\""),
                    );
                    CassetteMatch::Strict
                }
            },
        };
        let (price, price_source) = self.price(raw);
        let cache_min_tokens = raw
            .cache_min_tokens
            .as_ref()
            .map_or(DEFAULT_CACHE_MIN_TOKENS, |min| *min.get_ref());
        let context_window_tokens = match &raw.context_window {
            Some(w) if *w.get_ref() == 0 => {
                self.error(w.span(), "expected a context window of at least 1 token, found 0");
                DEFAULT_CONTEXT_WINDOW_TOKENS
            }
            Some(w) => *w.get_ref(),
            None => DEFAULT_CONTEXT_WINDOW_TOKENS,
        };
        Llm {
            name: raw.name.get_ref().clone(),
            model: raw
                .model
                .as_ref()
                .map_or_else(|| raw.name.get_ref().clone(), |m| m.get_ref().clone()),
            latency: self.latency(raw.latency.as_ref(), Latency::Fixed { latency_us: 0 }),
            price,
            price_source,
            cache_min_tokens,
            context_window_tokens,
            rpm: raw.rpm.as_ref().map(|r| {
                if *r.get_ref() == 0 {
                    self.error(r.span(), "expected rpm of at least 1, found 0");
                }
                (*r.get_ref()).max(1)
            }),
            burst: raw.burst.as_ref().map_or_else(
                || raw.rpm.as_ref().map_or(1, |r| (*r.get_ref() / 6).max(1)),
                |b| (*b.get_ref()).max(1),
            ),
            retry_after_header: raw.retry_after_header.unwrap_or(true),
            mode,
            endpoint,
            cassette,
            cassette_match,
        }
    }

    /// The live endpoint: a URL that is https, or http to loopback (or allowed explicitly).
    fn endpoint(&mut self, raw: &RawLlm, mode: LlmMode) -> Endpoint {
        const TIMEOUT_US_DEFAULT: u64 = 60_000_000;
        const RESPONSE_BYTES_DEFAULT: u64 = 8 * 1024 * 1024;
        let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);
        let base_url = match &raw.base_url {
            Some(url) => {
                let text = url.get_ref().trim_end_matches('/').to_owned();
                match super::endpoint::check_base_url(&text, allow_insecure_http) {
                    Ok(()) => {}
                    Err(message) => self.error(url.span(), message),
                }
                text
            }
            None => {
                if mode == LlmMode::Live {
                    self.error(
                        raw.mode.as_ref().map_or(raw.name.span(), |m| m.span()),
                        format!(
                            "expected `base_url = \"https://…/v1\"` for llm \"{}\" in mode \"live\"",
                            raw.name.get_ref()
                        ),
                    );
                }
                String::new()
            }
        };
        if let Some(env) = &raw.api_key_env {
            let ok = !env.get_ref().is_empty() && env.get_ref().chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                self.error(
                    env.span(),
                    format!(
                        "expected the name of an environment variable (letters, digits, _), found \"{}\"",
                        env.get_ref()
                    ),
                );
            }
        }
        let temperature = raw.temperature.as_ref().map(|t| {
            let value = *t.get_ref();
            if !(0.0..=2.0).contains(&value) {
                self.error(
                    t.span(),
                    format!("expected a temperature between 0 and 2, found {value}"),
                );
            }
            value
        });
        let timeout_us = match &raw.timeout {
            Some(t) => {
                let us = self.duration(t);
                if us == 0 {
                    self.error(t.span(), "expected a timeout above zero");
                }
                us
            }
            None => TIMEOUT_US_DEFAULT,
        };
        let response_bytes_max = match &raw.max_response_bytes {
            Some(n) if *n.get_ref() == 0 => {
                self.error(n.span(), "expected max_response_bytes of at least 1, found 0");
                RESPONSE_BYTES_DEFAULT
            }
            Some(n) => *n.get_ref(),
            None => RESPONSE_BYTES_DEFAULT,
        };
        Endpoint {
            base_url,
            api_key_env: raw.api_key_env.as_ref().map(|e| e.get_ref().clone()),
            temperature,
            max_tokens: raw.max_tokens.as_ref().map(|m| *m.get_ref()),
            timeout_us,
            allow_insecure_http,
            response_bytes_max,
        }
    }

    /// The LLM's price: `price` if given, else the price table's row for `model`, else nothing
    /// (a stand-in model without `model` costs nothing).
    fn price(&mut self, raw: &RawLlm) -> (Price, PriceSource) {
        if let Some(price) = &raw.price {
            let mut per_token = |value: &Spanned<f64>| {
                let usd_per_mtok = *value.get_ref();
                if !usd_per_mtok.is_finite() || !(0.0..=1_000_000.0).contains(&usd_per_mtok) {
                    self.diagnostics.push(Diagnostic::at(
                        value.span(),
                        format!(
                            "expected a price in USD per million tokens between 0 and 1000000, found {usd_per_mtok}"
                        ),
                    ));
                    return 0;
                }
                (usd_per_mtok * 1_000_000.0).round() as u64
            };
            let p = price.get_ref();
            let price = Price {
                input_pusd_per_token: per_token(&p.input_per_mtok),
                cached_input_pusd_per_token: p.cached_input_per_mtok.as_ref().map(&mut per_token),
                output_pusd_per_token: per_token(&p.output_per_mtok),
            };
            return (price, PriceSource::Scenario);
        }
        let Some(model) = &raw.model else {
            return (Price::default(), PriceSource::Unpriced);
        };
        if let Some(row) = crate::catalogue::prices::lookup(model.get_ref()) {
            return (row.price(), PriceSource::Table);
        }
        let suggestions = crate::catalogue::prices::closest_models(model.get_ref());
        let hint = match suggestions.as_slice() {
            [] => String::new(),
            [one] => format!("did you mean \"{one}\"? "),
            many => format!(
                "did you mean one of {}? ",
                many.iter().map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(", ")
            ),
        };
        self.error(
            model.span(),
            format!(
                "expected a model in the price table (taken {}; `agentsim list prices` shows it), found \"{}\"; \
                 {hint}{}give this [[llm]] its price: price = {{ input_per_mtok = ..., output_per_mtok = ... }}",
                crate::catalogue::prices::PRICES_TAKEN_ON,
                model.get_ref(),
                if hint.is_empty() { "" } else { "otherwise " },
            ),
        );
        (Price::default(), PriceSource::Unpriced)
    }

    fn tool(&mut self, raw: &RawTool) -> Tool {
        let output = match &raw.output {
            Some(text) => self.template(text, true),
            None => Template::literal("ok"),
        };
        if let Some(effect) = &raw.effect {
            if effect.get_ref().is_empty() {
                self.error(
                    effect.span(),
                    "expected the name of a side effect, such as \"money_moved\", found an empty string",
                );
            }
        }
        Tool {
            name: raw.name.get_ref().clone(),
            description: raw.description.clone().unwrap_or_default(),
            latency: self.latency(raw.latency.as_ref(), Latency::Fixed { latency_us: 0 }),
            output,
            effect: raw.effect.as_ref().map(|e| e.get_ref().clone()),
            idempotent: raw.idempotent.unwrap_or(false),
        }
    }

    fn agent(&mut self, raw: &RawAgent, llms: &Names, tools: &Names, agents: &Names) -> Agent {
        let name = raw.name.get_ref();
        let llm = raw
            .llm
            .as_ref()
            .and_then(|l| self.resolve(llms, l, &format!("agent \"{name}\"")));
        let tool_idxs: Vec<ToolIdx> = raw
            .tools
            .iter()
            .filter_map(|t| self.resolve(tools, t, &format!("agent \"{name}\"")))
            .collect();
        let handoffs: Vec<AgentIdx> = raw
            .handoffs
            .iter()
            .filter_map(|h| self.resolve(agents, h, &format!("agent \"{name}\"")))
            .collect();
        let delegates: Vec<AgentIdx> = raw
            .delegates
            .iter()
            .filter_map(|d| self.resolve(agents, d, &format!("agent \"{name}\"")))
            .collect();
        for d in &raw.delegates {
            if d.get_ref() == name {
                self.error(d.span(), format!("agent \"{name}\" cannot delegate to itself"));
            }
        }
        let max_turns = match &raw.max_turns {
            Some(t) if *t.get_ref() == 0 => {
                self.error(t.span(), "expected max_turns of at least 1, found 0");
                DEFAULT_MAX_TURNS
            }
            Some(t) => *t.get_ref(),
            None => DEFAULT_MAX_TURNS,
        };
        let mut behavior = Vec::new();
        let mut seen_otherwise = false;
        for rule in &raw.behavior {
            if seen_otherwise {
                self.error(
                    rule.span(),
                    "expected `otherwise` to be the last rule; this rule can never fire",
                );
            }
            seen_otherwise |= rule.get_ref().otherwise.is_some();
            if let Some(parsed) = self.rule(rule, &raw.tools, tools, (&handoffs, &delegates), agents, name) {
                behavior.push(parsed);
            }
        }
        Agent {
            name: name.clone(),
            llm,
            instructions: raw.instructions.clone().unwrap_or_default(),
            tools: tool_idxs,
            handoffs,
            delegates,
            max_turns,
            retry: raw.retry.as_ref().map(|r| self.retry(r)),
            timeout_us: raw.timeout.as_ref().map(|t| self.duration(t)),
            tool_timeout_us: raw.tool_timeout.as_ref().map(|t| self.duration(t)),
            circuit_breaker: raw.circuit_breaker.as_ref().map(|b| {
                let b = b.get_ref();
                if *b.failures.get_ref() == 0 {
                    self.error(b.failures.span(), "expected failures of at least 1, found 0");
                }
                BreakerPolicy {
                    failures: (*b.failures.get_ref()).max(1),
                    cool_down_us: self.duration(&b.cool_down),
                }
            }),
            fallback: raw
                .fallback
                .as_ref()
                .and_then(|f| self.resolve(llms, f, &format!("agent \"{name}\" (fallback)"))),
            deadline_us: raw.deadline.as_ref().map(|d| self.duration(d)),
            max_concurrent_calls: raw.max_concurrent_calls.as_ref().map(|m| {
                if *m.get_ref() == 0 {
                    self.error(m.span(), "expected max_concurrent_calls of at least 1, found 0");
                }
                (*m.get_ref()).max(1)
            }),
            rate_limit: raw.rate_limit.as_ref().map(|spanned| {
                let r = spanned.get_ref();
                if r.rpm.is_none() && r.tpm.is_none() {
                    self.error(
                        spanned.span(),
                        "expected `rpm = N` (requests per minute) and/or `tpm = N` (tokens per minute)",
                    );
                }
                let rpm = r.rpm.as_ref().map(|rpm| {
                    let rpm = (*rpm.get_ref()).max(1);
                    (
                        rpm,
                        r.burst.as_ref().map_or((rpm / 6).max(1), |b| (*b.get_ref()).max(1)),
                    )
                });
                RateLimit {
                    rpm,
                    tpm: r.tpm.as_ref().map(|t| (*t.get_ref()).max(1)),
                }
            }),
            persist: raw.persist.unwrap_or(false),
            behavior,
        }
    }

    fn retry(&mut self, raw: &Spanned<RawRetry>) -> RetryPolicy {
        let r = raw.get_ref();
        let attempts = match &r.attempts {
            Some(a) if *a.get_ref() == 0 => {
                self.error(
                    a.span(),
                    "expected attempts of at least 1 (the first call counts), found 0",
                );
                1
            }
            Some(a) => *a.get_ref(),
            None => 3,
        };
        let backoff = match r.backoff.as_ref().map(|b| (b.get_ref().as_str(), b.span())) {
            None | Some(("exponential", _)) => Backoff::Exponential,
            Some(("constant", _)) => Backoff::Constant,
            Some((other, span)) => {
                self.error(
                    span,
                    format!("expected backoff \"exponential\" or \"constant\", found \"{other}\""),
                );
                Backoff::Exponential
            }
        };
        let jitter = match r.jitter.as_ref().map(|j| (j.get_ref().as_str(), j.span())) {
            None | Some(("full", _)) => Jitter::Full,
            Some(("none", _)) => Jitter::None,
            Some(("equal", _)) => Jitter::Equal,
            Some(("decorrelated", _)) => Jitter::Decorrelated,
            Some((other, span)) => {
                self.error(
                    span,
                    format!("expected jitter \"none\", \"full\", \"equal\" or \"decorrelated\", found \"{other}\""),
                );
                Jitter::Full
            }
        };
        let base_us = r.base.as_ref().map_or(500_000, |b| self.duration(b));
        let max_us = r.max.as_ref().map_or(8_000_000, |m| self.duration(m));
        if max_us < base_us {
            self.error(raw.span(), "expected `max` at least as long as `base`");
        }
        RetryPolicy {
            attempts,
            backoff,
            base_us,
            max_us,
            jitter,
            honor_retry_after: r.honor_retry_after.unwrap_or(true),
            max_retry_after_us: r.max_retry_after.as_ref().map_or(120_000_000, |m| self.duration(m)),
            budget: r.budget.as_ref().map(|b| {
                let value = *b.get_ref();
                if !(0.0..=10.0).contains(&value) {
                    self.error(
                        b.span(),
                        format!("expected a retry budget between 0 and 10 (a fraction of calls), found {value}"),
                    );
                }
                value
            }),
        }
    }

    fn rule(
        &mut self,
        rule: &Spanned<RawRule>,
        agent_tools: &[Spanned<String>],
        tools: &Names,
        peers: (&[AgentIdx], &[AgentIdx]),
        agents: &Names,
        agent_name: &str,
    ) -> Option<Rule> {
        let raw = rule.get_ref();
        let (action, when) = match (&raw.then, &raw.otherwise, &raw.when) {
            (Some(then), None, Some(when)) => (then, Some(when)),
            (None, Some(otherwise), None) => (otherwise, None),
            (Some(_), None, None) => {
                self.error(
                    rule.span(),
                    "expected `when = \"condition\"` with `then`, or `otherwise = {...}` alone",
                );
                return None;
            }
            _ => {
                self.error(
                    rule.span(),
                    "expected a rule of the form { when = \"condition\", then = {...} } or { otherwise = {...} }",
                );
                return None;
            }
        };
        let when = when.and_then(|w| match Expr::parse(w.get_ref()) {
            Ok(expr) => Some(expr),
            Err(e) => {
                self.expr_error(&w.span(), e);
                None
            }
        });
        let probability = raw.p.as_ref().map(|p| self.probability(p));
        let output_tokens = action.get_ref().tokens.as_ref().map(|t| *t.get_ref());
        let action = self.action(action, agent_tools, tools, peers, agents, agent_name)?;
        Some(Rule {
            when,
            probability,
            action,
            output_tokens,
        })
    }

    fn action(
        &mut self,
        action: &Spanned<RawAction>,
        agent_tools: &[Spanned<String>],
        tools: &Names,
        (handoffs, delegates): (&[AgentIdx], &[AgentIdx]),
        agents: &Names,
        agent_name: &str,
    ) -> Option<Action> {
        let raw = action.get_ref();
        let chosen = [
            raw.tool_call.is_some(),
            raw.tool_calls.is_some(),
            raw.answer.is_some(),
            raw.handoff.is_some(),
            raw.delegate.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if chosen != 1 {
            self.error(
                action.span(),
                format!("expected exactly one of `tool_call`, `tool_calls`, `answer`, `handoff` or `delegate`, found {chosen}"),
            );
            return None;
        }
        if raw.task.is_some() != raw.delegate.is_some() {
            self.error(action.span(), "`delegate = [...]` and `task = \"...\"` go together");
            return None;
        }
        if raw.args.is_some() && raw.tool_call.is_none() {
            self.error(action.span(), "`args` goes with `tool_call`");
        }
        let call = |v: &mut Self, tool: &Spanned<String>, args: &Option<toml::Table>| -> Option<ToolCallSpec> {
            let index = v.resolve(tools, tool, &format!("a rule of agent \"{agent_name}\""))?;
            if !agent_tools.iter().any(|t| t.get_ref() == tool.get_ref()) {
                v.error(
                    tool.span(),
                    format!(
                        "agent \"{agent_name}\" calls tool \"{}\" but does not list it in `tools`",
                        tool.get_ref()
                    ),
                );
            }
            let mut parsed = Vec::new();
            for (key, value) in args.iter().flatten() {
                let arg = match value {
                    toml::Value::String(text) => match Template::parse(text, false) {
                        Ok(t) => ArgValue::Text(t),
                        Err(e) => {
                            v.error(tool.span(), format!("in argument `{key}`: {}", e.message));
                            continue;
                        }
                    },
                    other => ArgValue::Json(serde_json::to_value(other).unwrap_or(serde_json::Value::Null)),
                };
                parsed.push((key.clone(), arg));
            }
            parsed.sort_by(|a, b| a.0.cmp(&b.0));
            Some(ToolCallSpec {
                tool: index,
                args: parsed,
            })
        };
        if let Some(tool) = &raw.tool_call {
            return call(self, tool, &raw.args).map(|c| Action::ToolCalls(vec![c]));
        }
        if let Some(calls) = &raw.tool_calls {
            if calls.is_empty() {
                self.error(action.span(), "expected at least one entry in `tool_calls`");
                return None;
            }
            let parsed: Vec<ToolCallSpec> = calls
                .iter()
                .filter_map(|c| call(self, &c.get_ref().tool, &c.get_ref().args))
                .collect();
            return (parsed.len() == calls.len()).then_some(Action::ToolCalls(parsed));
        }
        if let Some(answer) = &raw.answer {
            let text = self.template(answer, false);
            return Some(Action::Answer { text });
        }
        if let (Some(targets), Some(task)) = (&raw.delegate, &raw.task) {
            if targets.is_empty() {
                self.error(action.span(), "expected at least one agent in `delegate`");
                return None;
            }
            let mut to = Vec::new();
            for target in targets {
                let index = self.resolve(agents, target, &format!("a rule of agent \"{agent_name}\""))?;
                if !delegates.contains(&index) {
                    self.error(
                        target.span(),
                        format!(
                            "agent \"{agent_name}\" delegates to \"{}\" but does not list it in `delegates`",
                            target.get_ref()
                        ),
                    );
                }
                if to.contains(&index) {
                    self.error(
                        target.span(),
                        format!("\"{}\" appears twice in this delegation", target.get_ref()),
                    );
                }
                to.push(index);
            }
            let task = self.template(task, false);
            return Some(Action::Delegate { to, task });
        }
        let target = raw.handoff.as_ref()?;
        let to = self.resolve(agents, target, &format!("a rule of agent \"{agent_name}\""))?;
        if !handoffs.contains(&to) {
            self.error(
                target.span(),
                format!(
                    "agent \"{agent_name}\" hands off to \"{}\" but does not list it in `handoffs`",
                    target.get_ref()
                ),
            );
        }
        Some(Action::Handoff { to })
    }

    fn supervisors(
        &mut self,
        raw: &RawScenario,
        names: &Names,
        agents: &Names,
        tools: &Names,
        llms: &Names,
    ) -> Vec<Supervisor> {
        // Index 0 is the root: the user's "root" if declared, otherwise an implicit one.
        let declared_root = names.get(ROOT_SUPERVISOR);
        let mut order: Vec<Option<usize>> = vec![declared_root];
        order.extend(
            (0..raw.supervisor.len())
                .filter(|i| Some(*i) != declared_root)
                .map(Some),
        );
        let position_of = |raw_index: usize| order.iter().position(|o| *o == Some(raw_index)).unwrap_or(0);

        let mut supervisors: Vec<Supervisor> = order
            .iter()
            .map(|raw_index| match raw_index {
                None => Supervisor {
                    name: ROOT_SUPERVISOR.to_owned(),
                    strategy: Strategy::OneForOne,
                    max_restarts: DEFAULT_MAX_RESTARTS,
                    within_us: DEFAULT_WITHIN_US,
                    restart_backoff_us: 0,
                    children: Vec::new(),
                    parent: None,
                },
                Some(i) => {
                    let s = raw.supervisor[*i].get_ref();
                    let strategy = match s.strategy.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
                        None | Some(("one_for_one", _)) => Strategy::OneForOne,
                        Some(("one_for_all", _)) => Strategy::OneForAll,
                        Some(("rest_for_one", _)) => Strategy::RestForOne,
                        Some((other, span)) => {
                            self.error(
                                span,
                                format!("expected strategy \"one_for_one\", \"one_for_all\" or \"rest_for_one\", found \"{other}\""),
                            );
                            Strategy::OneForOne
                        }
                    };
                    Supervisor {
                        name: s.name.get_ref().clone(),
                        strategy,
                        max_restarts: s.max_restarts.as_ref().map_or(DEFAULT_MAX_RESTARTS, |m| *m.get_ref()),
                        within_us: s.within.as_ref().map_or(DEFAULT_WITHIN_US, |w| self.duration(w)),
                        restart_backoff_us: s.restart_backoff.as_ref().map_or(0, |b| self.duration(b)),
                        children: Vec::new(),
                        parent: None,
                    }
                }
            })
            .collect();

        let mut supervised: BTreeMap<(ActorKind, usize), String> = BTreeMap::new();
        for (raw_index, s) in raw.supervisor.iter().enumerate() {
            let s = s.get_ref();
            let me = position_of(raw_index);
            for child in &s.children {
                let resolved = self.child(child, names, agents, tools, llms);
                let Some(resolved) = resolved else { continue };
                let key = match resolved {
                    Child::Actor { kind, index } => (kind, index),
                    Child::Supervisor(i) => (ActorKind::Supervisor, i),
                };
                if let Some(previous) = supervised.insert(key, s.name.get_ref().clone()) {
                    self.error(
                        child.span(),
                        format!(
                            "\"{}\" is already supervised by \"{previous}\"; expected each actor under one supervisor",
                            child.get_ref()
                        ),
                    );
                    continue;
                }
                let resolved = match resolved {
                    Child::Supervisor(i) => {
                        let position = position_of(i);
                        if position == 0 {
                            self.error(
                                child.span(),
                                "the root supervisor cannot be the child of another supervisor",
                            );
                            continue;
                        }
                        supervisors[position].parent = Some(me);
                        Child::Supervisor(position)
                    }
                    actor => actor,
                };
                supervisors[me].children.push(resolved);
            }
        }
        // Cycles: walking up from any supervisor must reach the root.
        for start in 1..supervisors.len() {
            let mut at = start;
            let mut steps = 0;
            while let Some(parent) = supervisors[at].parent {
                at = parent;
                steps += 1;
                if steps > supervisors.len() {
                    let raw_index = order[start].unwrap_or(0);
                    self.error(
                        raw.supervisor[raw_index].get_ref().name.span(),
                        format!(
                            "supervisor \"{}\" is part of a supervision cycle; expected a tree",
                            supervisors[start].name
                        ),
                    );
                    break;
                }
            }
        }
        // Everything without a supervisor goes under the root, in declaration order.
        let mut orphans = Vec::new();
        for (index, supervisor) in supervisors.iter_mut().enumerate().skip(1) {
            if supervisor.parent.is_none() {
                supervisor.parent = Some(0);
                orphans.push(Child::Supervisor(index));
            }
        }
        for (kind, count) in [
            (ActorKind::Llm, raw.llm.len()),
            (ActorKind::Tool, raw.tool.len()),
            (ActorKind::Agent, raw.agent.len()),
            (ActorKind::Guardrail, raw.guardrail.len()),
        ] {
            for index in 0..count {
                if !supervised.contains_key(&(kind, index)) {
                    orphans.push(Child::Actor { kind, index });
                }
            }
        }
        supervisors[0].children.extend(orphans);
        supervisors
    }

    fn child(
        &mut self,
        child: &Spanned<String>,
        supervisors: &Names,
        agents: &Names,
        tools: &Names,
        llms: &Names,
    ) -> Option<Child> {
        let text = child.get_ref();
        let (prefix, name) = match text.split_once(':') {
            Some((p, n)) => (Some(p), n),
            None => (None, text.as_str()),
        };
        let mut found = Vec::new();
        for (kind_name, names, make) in [
            (
                "agent",
                agents,
                (|i| Child::Actor {
                    kind: ActorKind::Agent,
                    index: i,
                }) as fn(usize) -> Child,
            ),
            ("tool", tools, |i| Child::Actor {
                kind: ActorKind::Tool,
                index: i,
            }),
            ("llm", llms, |i| Child::Actor {
                kind: ActorKind::Llm,
                index: i,
            }),
            ("supervisor", supervisors, Child::Supervisor),
        ] {
            if prefix.is_some_and(|p| p != kind_name) {
                continue;
            }
            if let Some(index) = names.get(name) {
                found.push((kind_name, make(index)));
            }
        }
        match found.len() {
            1 => Some(found[0].1),
            0 => {
                self.error(
                    child.span(),
                    format!("supervisor child \"{text}\" does not exist; expected the name of an agent, tool, llm or supervisor"),
                );
                None
            }
            _ => {
                let kinds: Vec<String> = found.iter().map(|(k, _)| format!("\"{k}:{name}\"")).collect();
                self.error(
                    child.span(),
                    format!(
                        "supervisor child \"{text}\" is ambiguous; write one of {}",
                        kinds.join(" or ")
                    ),
                );
                None
            }
        }
    }

    fn traffic(
        &mut self,
        raw: &Spanned<RawTraffic>,
        agents: &Names,
        pools: &BTreeMap<String, Vec<String>>,
    ) -> Option<Traffic> {
        let t = raw.get_ref();
        let Some(to_name) = &t.to else {
            self.error(
                raw.span(),
                "expected `to = \"AGENT\"`: the agent that receives the conversations",
            );
            return None;
        };
        let to = match pools.get(to_name.get_ref()) {
            Some(replicas) => replicas.iter().filter_map(|name| agents.get(name)).collect(),
            None => vec![self.resolve(agents, to_name, "traffic")?],
        };
        match t.kind.get_ref().as_str() {
            "poisson" => {
                let rate = match &t.rate {
                    Some(rate) => match parse_rate_milli_per_hour(rate.get_ref()) {
                        Ok(r) => r,
                        Err(message) => {
                            self.error(rate.span(), message);
                            return None;
                        }
                    },
                    None => {
                        self.error(raw.span(), "expected `rate = \"2/s\"` for poisson traffic");
                        return None;
                    }
                };
                let conversations = match &t.conversations {
                    Some(c) => *c.get_ref(),
                    None => {
                        self.error(raw.span(), "expected `conversations = N` for poisson traffic");
                        return None;
                    }
                };
                if t.messages.is_empty() {
                    self.error(
                        raw.span(),
                        "expected `messages = [\"...\"]`: at least one opening message",
                    );
                    return None;
                }
                if !t.script.is_empty() {
                    self.error(raw.span(), "`script` goes with kind = \"script\", not \"poisson\"");
                }
                Some(Traffic::Poisson {
                    to: to.clone(),
                    rate_milli_per_hour: rate,
                    conversations,
                    messages: t.messages.iter().map(|m| m.get_ref().clone()).collect(),
                    start_us: t.start.as_ref().map_or(0, |s| self.duration(s)),
                })
            }
            "script" => {
                if t.script.is_empty() {
                    self.error(
                        raw.span(),
                        "expected `script = [{ at = \"0s\", message = \"...\" }, ...]` for script traffic",
                    );
                    return None;
                }
                for key in [
                    t.rate.as_ref().map(|r| r.span()),
                    t.conversations.as_ref().map(|c| c.span()),
                ]
                .into_iter()
                .flatten()
                {
                    self.error(
                        key,
                        "`rate` and `conversations` go with kind = \"poisson\", not \"script\"",
                    );
                }
                let items = t
                    .script
                    .iter()
                    .map(|item| {
                        let item = item.get_ref();
                        (
                            item.at.as_ref().map_or(0, |a| self.duration(a)),
                            item.message.get_ref().clone(),
                        )
                    })
                    .collect();
                Some(Traffic::Script { to, items })
            }
            other => {
                self.error(
                    t.kind.span(),
                    format!("expected traffic kind \"poisson\" or \"script\", found \"{other}\""),
                );
                None
            }
        }
    }

    fn faults(&mut self, raw: &[Spanned<RawFault>], logical_ids: &[String]) -> Vec<Fault> {
        let names = fault_stream_names(raw.iter().map(|f| {
            let f = f.get_ref();
            (
                f.name.as_ref().map(|n| n.get_ref().clone()),
                f.kind.get_ref().clone(),
                f.target.as_ref().map_or(String::new(), |t| t.get_ref().clone()),
            )
        }));
        let mut faults = Vec::new();
        for (index, fault) in raw.iter().enumerate() {
            if let Some(parsed) = self.fault(fault.get_ref(), logical_ids, &names, index) {
                faults.push(parsed);
            }
        }
        faults
    }

    fn fault(&mut self, raw: &RawFault, logical_ids: &[String], names: &[String], index: usize) -> Option<Fault> {
        use crate::catalogue::faults::{Layer, CATALOGUE};
        let Some(kind) = FaultKind::from_name(raw.kind.get_ref()) else {
            let kinds = CATALOGUE.iter().map(|e| e.kind);
            let hint = did_you_mean(raw.kind.get_ref(), kinds)
                .map(|s| format!("did you mean \"{s}\"? "))
                .unwrap_or_default();
            self.error(
                raw.kind.span(),
                format!(
                    "unknown fault kind \"{}\"; {hint}`agentsim list faults` shows the catalogue",
                    raw.kind.get_ref()
                ),
            );
            return None;
        };
        let Some(target) = &raw.target else {
            self.error(
                raw.kind.span(),
                "expected `target = \"agent:NAME\"` (globs such as \"agent:*\" allowed) for this fault",
            );
            return None;
        };
        let (prefixes, example): (&[&str], &str) = match kind.layer() {
            Layer::Actor | Layer::Network => (
                &["agent:", "tool:", "llm:", "guardrail:"],
                "agent:NAME, tool:NAME, llm:NAME or guardrail:NAME",
            ),
            Layer::Provider | Layer::Content => (&["llm:"], "llm:NAME"),
            Layer::Tool => (&["tool:"], "tool:NAME"),
            Layer::Memory | Layer::User => (&["agent:"], "agent:NAME"),
            Layer::Guardrail => (&["guardrail:"], "guardrail:NAME"),
        };
        let eligible: Vec<&String> = logical_ids
            .iter()
            .filter(|id| prefixes.iter().any(|p| id.starts_with(p)))
            .collect();
        if !eligible.iter().any(|id| glob_match(target.get_ref(), id)) {
            let known: Vec<&str> = eligible.iter().map(|s| s.as_str()).take(6).collect();
            self.error(
                target.span(),
                format!(
                    "fault target \"{}\" matches no actor this kind applies to; expected {example} (here: {})",
                    target.get_ref(),
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        let between_us = raw.between.as_ref().and_then(|b| match b.get_ref().as_slice() {
            [from, to] => match (parse_duration_us(from), parse_duration_us(to)) {
                (Ok(from), Ok(to)) if from < to => Some((from, to)),
                (Ok(_), Ok(_)) => {
                    self.error(b.span(), "expected `between = [FROM, TO]` with FROM before TO");
                    None
                }
                (Err(message), _) | (_, Err(message)) => {
                    self.error(b.span(), message);
                    None
                }
            },
            _ => {
                self.error(b.span(), "expected `between = [\"10s\", \"20s\"]`: two durations");
                None
            }
        });
        let after = raw.after.as_ref().and_then(|a| {
            let position = names.iter().position(|n| n == a.get_ref());
            match position {
                Some(p) if p != index => Some(p),
                Some(_) => {
                    self.error(a.span(), "a fault cannot wait for itself");
                    None
                }
                None => {
                    let hint = did_you_mean(a.get_ref(), names.iter().map(String::as_str)).map(|s| format!("did you mean \"{s}\"? ")).unwrap_or_default();
                    self.error(a.span(), format!("`after` names fault \"{}\", which does not exist; {hint}faults are named by `name`, or KIND@TARGET", a.get_ref()));
                    None
                }
            }
        });
        let mut trigger = Trigger {
            probability: raw.probability.as_ref().map(|p| self.probability(p)),
            at_us: raw.at.as_ref().map(|a| self.duration(a)),
            on_message: raw.on_message.as_ref().map(|n| {
                if *n.get_ref() == 0 {
                    self.error(n.span(), "expected on_message counted from 1, found 0");
                }
                *n.get_ref()
            }),
            count: raw.count.as_ref().map(|c| *c.get_ref()),
            between_us,
            after,
            message_contains: raw.message_contains.as_ref().map(|m| m.get_ref().clone()),
        };
        if trigger.at_us.is_some() && trigger.probability.is_none() && trigger.count.is_none() {
            // "at 12s" means once, at the first eligible message from 12s on.
            trigger.count = Some(1);
        }
        if trigger.probability.is_none()
            && trigger.at_us.is_none()
            && trigger.on_message.is_none()
            && trigger.between_us.is_none()
            && trigger.after.is_none()
            && trigger.message_contains.is_none()
        {
            self.error(
                raw.kind.span(),
                "expected a trigger: `probability`, `at`, `between`, `on_message`, `after` or `message_contains`",
            );
        }
        let mut params = FaultParams::default();
        let check = |v: &mut Self, name: &str, span: Range<usize>| -> bool {
            if kind.takes(name) {
                return true;
            }
            let takes: Vec<&str> = kind.entry().params.iter().map(|p| p.name).collect();
            let list = if takes.is_empty() {
                "no parameters".to_owned()
            } else {
                takes.join(", ")
            };
            v.error(
                span,
                format!(
                    "`{name}` does not apply to fault kind \"{}\", which takes {list}",
                    kind.name()
                ),
            );
            false
        };
        if let Some(d) = &raw.retry_after {
            if check(self, "retry_after", d.span()) {
                params.retry_after_us = Some(self.duration(d));
            }
        }
        if let Some(d) = &raw.latency {
            if check(self, "latency", d.span()) {
                params.latency_us = Some(self.duration(d));
            }
        }
        if let Some(t) = &raw.text {
            if check(self, "text", t.span()) {
                params.text = Some(t.get_ref().clone());
            }
        }
        if let Some(t) = &raw.tool {
            if check(self, "tool", t.span()) {
                params.tool = Some(t.get_ref().clone());
            }
        }
        if let Some(m) = &raw.mode {
            if check(self, "mode", m.span()) {
                params.mode = match m.get_ref().as_str() {
                    "truncated" => Some(MalformedMode::Truncated),
                    "trailing_garbage" => Some(MalformedMode::TrailingGarbage),
                    "wrong_type" => Some(MalformedMode::WrongType),
                    "missing_field" => Some(MalformedMode::MissingField),
                    other => {
                        self.error(
                            m.span(),
                            format!("expected mode \"truncated\", \"trailing_garbage\", \"wrong_type\" or \"missing_field\", found \"{other}\""),
                        );
                        None
                    }
                };
            }
        }
        if let Some(p) = &raw.peer {
            if check(self, "peer", p.span()) {
                if !logical_ids.iter().any(|id| glob_match(p.get_ref(), id)) {
                    self.error(p.span(), format!("partition peer \"{}\" matches no actor", p.get_ref()));
                }
                params.peer = Some(p.get_ref().clone());
            }
        } else if kind == FaultKind::NetworkPartition {
            self.error(
                raw.kind.span(),
                "expected `peer = \"agent:NAME\"`: the other side of the partition",
            );
        }
        Some(Fault {
            name: names[index].clone(),
            kind,
            target: target.get_ref().clone(),
            trigger,
            params,
        })
    }

    fn profiles(&mut self, raw: &[Spanned<RawProfile>], faults: &[Fault]) -> Vec<Profile> {
        let _ = self.names("profile", raw.iter().map(|p| &p.get_ref().name));
        raw.iter()
            .map(|p| {
                let p = p.get_ref();
                for pattern in &p.faults {
                    if !faults.iter().any(|f| glob_match(pattern.get_ref(), &f.name)) {
                        let names: Vec<&str> = faults.iter().map(|f| f.name.as_str()).collect();
                        self.error(
                            pattern.span(),
                            format!(
                                "profile fault \"{}\" matches no fault; expected a fault name such as {}",
                                pattern.get_ref(),
                                names.first().unwrap_or(&"KIND@TARGET")
                            ),
                        );
                    }
                }
                let scale = p.scale.as_ref().map_or(1.0, |s| {
                    let value = *s.get_ref();
                    if !(0.0..=1000.0).contains(&value) {
                        self.error(s.span(), format!("expected a scale between 0 and 1000, found {value}"));
                    }
                    value
                });
                Profile {
                    name: p.name.get_ref().clone(),
                    weight: p.weight.as_ref().map_or(1, |w| *w.get_ref()),
                    faults: p.faults.iter().map(|f| f.get_ref().clone()).collect(),
                    scale,
                }
            })
            .collect()
    }

    fn invariants(&mut self, raw: &[Spanned<RawInvariant>], label_names: &[String]) -> Vec<Invariant> {
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
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if chosen != 1 {
                self.error(
                    item.span(),
                    format!(
                        "expected exactly one of `never`, `always`, `eventually`, `budget` or `detect`, found {chosen}"
                    ),
                );
                continue;
            }
            if let (Some(threshold), None) = (&inv.threshold, &inv.detect) {
                self.error(threshold.span(), "`threshold` goes with `detect`");
            }
            let check = if let Some(never) = &inv.never {
                match self.never(never, label_names) {
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
                    continue;
                };
                Check::Detect {
                    detector,
                    threshold: inv.threshold.as_ref().map_or(3, |t| (*t.get_ref()).max(2)),
                }
            } else {
                let eventually = inv.eventually.as_ref().expect("one of five is set");
                let e = eventually.get_ref();
                let within_us = e.within.as_ref().map(|w| self.duration(w));
                match (&e.answered, &e.effect) {
                    (Some(answered), None) => {
                        if !*answered.get_ref() {
                            self.error(answered.span(), "expected `answered = true`");
                        }
                        Check::EventuallyAnswered { within_us }
                    }
                    (None, Some(effect)) => Check::EventuallyEffect {
                        effect: effect.get_ref().clone(),
                        within_us,
                    },
                    _ => {
                        self.error(
                            eventually.span(),
                            "expected exactly one of `answered = true` or `effect = \"NAME\"`",
                        );
                        continue;
                    }
                }
            };
            out.push(Invariant {
                name: inv.name.get_ref().clone(),
                check,
            });
        }
        out
    }

    /// A `never` invariant: over side effects, or over user-visible answers.
    fn never(&mut self, never: &Spanned<RawNever>, label_names: &[String]) -> Option<Check> {
        let n = never.get_ref();
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
                    let mut entities = Vec::new();
                    for name in list.get_ref() {
                        match super::guardrail::PiiEntity::parse(name) {
                            Some(e) => entities.push(e),
                            None => {
                                let all: Vec<&str> =
                                    super::guardrail::PiiEntity::ALL.iter().map(|e| e.name()).collect();
                                self.error(
                                    list.span(),
                                    format!("expected PII entities among {}, found \"{name}\"", all.join(", ")),
                                );
                            }
                        }
                    }
                    (OutputTest::Pii(entities), tainted_by)
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
                let usd = *cost.get_ref();
                if !usd.is_finite() || usd < 0.0 {
                    self.error(cost.span(), format!("expected a non-negative cost in USD, found {usd}"));
                }
                Some(Check::CostMax {
                    cost_pusd_max: (usd.max(0.0) * 1e12).round() as u64,
                    per,
                })
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
fn label_names(raw: &RawScenario, faults: &[Fault]) -> Vec<String> {
    let mut names = vec!["user".to_owned()];
    names.extend(raw.tool.iter().map(|t| format!("tool:{}", t.get_ref().name.get_ref())));
    names.extend(faults.iter().map(|f| format!("fault:{}", f.name)));
    names
}

/// Logical ids of every actor a raw scenario will have (for fault targets).
fn logical_ids(raw: &RawScenario) -> Vec<String> {
    let mut ids = Vec::new();
    ids.extend(
        raw.agent
            .iter()
            .map(|a| format!("agent:{}", a.get_ref().name.get_ref())),
    );
    ids.extend(raw.tool.iter().map(|t| format!("tool:{}", t.get_ref().name.get_ref())));
    ids.extend(raw.llm.iter().map(|l| format!("llm:{}", l.get_ref().name.get_ref())));
    ids.extend(
        raw.guardrail
            .iter()
            .map(|g| format!("guardrail:{}", g.get_ref().name.get_ref())),
    );
    ids
}

/// A stable name per fault, also its random stream's name: its `name`, or `KIND@TARGET` with
/// `#N` for the Nth fault of the same kind and target. Adding or reordering other faults does not
/// rename a fault.
fn fault_stream_names(faults: impl Iterator<Item = (Option<String>, String, String)>) -> Vec<String> {
    number_duplicates(faults.map(|(name, kind, target)| name.unwrap_or_else(|| format!("{kind}@{target}"))))
}
