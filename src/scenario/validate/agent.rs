//! Validates `[[agent]]` tables: replicas, references, retry policy and behaviour rules.

use std::collections::BTreeMap;

use toml::Spanned;

use super::{Names, Validator};
use crate::scenario::expr::{Expr, Template};
use crate::scenario::file::*;
use crate::scenario::model::*;

const DEFAULT_MAX_TURNS: u32 = 12;

impl Validator<'_> {
    /// Replaces each agent with `replicas = N` by N copies named `NAME-i`; returns the pools
    /// (NAME → the copies' names) for traffic to spread over.
    pub(super) fn expand_replicas(&mut self, mut raw: RawScenario) -> (RawScenario, BTreeMap<String, Vec<String>>) {
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

    pub(super) fn agent(&mut self, raw: &RawAgent, llms: &Names, tools: &Names, agents: &Names) -> Agent {
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
        let max_turns = self.max_turns(raw.max_turns.as_ref());
        let behavior = self.behavior(raw, tools, (&handoffs, &delegates), agents);
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
            tool_timeout_us: raw.tool_timeout.as_ref().map(|t| self.positive_duration(t, "tool_timeout", "every call would time out as it is made")),
            delegation_timeout_us: raw.delegation_timeout.as_ref().map(|t| self.duration(t)),
            delegation_retries: self.retries(
                (&raw.delegation_retries, &raw.delegation_timeout),
                "`delegation_retries` goes with `delegation_timeout`: a task is sent again when its answer is late",
            ),
            handoff_timeout_us: raw.handoff_timeout.as_ref().map(|t| self.duration(t)),
            handoff_retries: self.retries(
                (&raw.handoff_retries, &raw.handoff_timeout),
                "`handoff_retries` goes with `handoff_timeout`: a conversation is handed off again when it is not finished in time",
            ),
            circuit_breaker: raw.circuit_breaker.as_ref().map(|b| self.circuit_breaker(b.get_ref())),
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
            rate_limit: raw.rate_limit.as_ref().map(|r| self.rate_limit(r)),
            durability: self.durability(raw),
            cancellation: self.cancellation(raw),
            tool_choice: self.tool_choice(raw),
            handoff_history: self.handoff_history(raw),
            behavior,
        }
    }

    /// A retry count that needs its timeout (`delegation_retries` with `delegation_timeout`);
    /// without the timeout it is an error, with `message` saying why.
    fn retries(&mut self, (retries, timeout): (&Option<Spanned<u32>>, &Option<Spanned<String>>), message: &str) -> u32 {
        match (retries, timeout) {
            (Some(retries), None) => {
                self.error(retries.span(), message);
                0
            }
            (retries, _) => retries.as_ref().map_or(0, |r| *r.get_ref()),
        }
    }

    /// `cancellation`: `"let-finish"` (default) or `"cancel"`.
    fn cancellation(&mut self, raw: &RawAgent) -> Cancellation {
        let Some(c) = &raw.cancellation else {
            return Cancellation::LetFinish;
        };
        match c.get_ref().as_str() {
            "let-finish" => Cancellation::LetFinish,
            "cancel" => Cancellation::Cancel,
            other => {
                let hint = match other {
                    "let_finish" | "finish" | "none" => "; did you mean \"let-finish\"?",
                    "cancelled" | "abort" => "; did you mean \"cancel\"?",
                    _ => "",
                };
                self.error(
                    c.span(),
                    format!("expected cancellation \"let-finish\" or \"cancel\", found \"{other}\"{hint}"),
                );
                Cancellation::LetFinish
            }
        }
    }

    /// `durability`, or its older spelling `persist = true`.
    fn durability(&mut self, raw: &RawAgent) -> Durability {
        let persist = raw.persist.as_ref().map(|p| *p.get_ref());
        let Some(durability) = &raw.durability else {
            return if persist == Some(true) {
                Durability::Checkpoint
            } else {
                Durability::None
            };
        };
        let chosen = match durability.get_ref().as_str() {
            "none" => Durability::None,
            "checkpoint" => Durability::Checkpoint,
            "at-least-once" => Durability::AtLeastOnce,
            other => {
                let hint = match other {
                    "at_least_once" | "atleastonce" | "redeliver" => "; did you mean \"at-least-once\"?",
                    "checkpointed" | "persist" => "; did you mean \"checkpoint\"?",
                    _ => "",
                };
                self.error(
                    durability.span(),
                    format!(
                        "expected durability \"none\", \"checkpoint\" or \"at-least-once\", found \"{other}\"{hint}"
                    ),
                );
                return Durability::None;
            }
        };
        if let Some(p) = &raw.persist {
            self.error(
                p.span(),
                "expected `durability` or `persist`, found both (`persist = true` is `durability = \"checkpoint\"`)",
            );
        }
        chosen
    }

    /// `tool_choice`: `auto`, `none`, `required`, or one of the agent's tools.
    fn tool_choice(&mut self, raw: &RawAgent) -> ToolChoice {
        let Some(choice) = &raw.tool_choice else {
            return ToolChoice::Auto;
        };
        match choice.get_ref().as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            tool if raw.tools.iter().any(|t| t.get_ref() == tool) => ToolChoice::Tool(tool.to_owned()),
            other => {
                let tools: Vec<&str> = raw.tools.iter().map(|t| t.get_ref().as_str()).collect();
                self.error(
                    choice.span(),
                    format!(
                        "expected tool_choice \"auto\", \"none\", \"required\" or one of the agent's tools ({}), found \"{other}\"",
                        if tools.is_empty() { "it has none".to_owned() } else { tools.join(", ") }
                    ),
                );
                ToolChoice::Auto
            }
        }
    }

    /// `handoff_history`: `"all"`, `"none"` or a number of messages.
    fn handoff_history(&mut self, raw: &RawAgent) -> HandoffHistory {
        let Some(value) = &raw.handoff_history else {
            return HandoffHistory::All;
        };
        match value.get_ref() {
            toml::Value::String(s) if s == "all" => HandoffHistory::All,
            toml::Value::String(s) if s == "none" => HandoffHistory::None,
            toml::Value::Integer(n) if *n >= 1 && *n <= u32::MAX as i64 => HandoffHistory::Last(*n as u32),
            other => {
                self.error(
                    value.span(),
                    format!("expected handoff_history \"all\", \"none\" or a number of messages (at least 1), found {other}"),
                );
                HandoffHistory::All
            }
        }
    }

    fn max_turns(&mut self, raw: Option<&Spanned<u32>>) -> u32 {
        match raw {
            Some(t) if *t.get_ref() == 0 => {
                self.error(t.span(), "expected max_turns of at least 1, found 0");
                DEFAULT_MAX_TURNS
            }
            Some(t) => *t.get_ref(),
            None => DEFAULT_MAX_TURNS,
        }
    }

    /// The agent's behaviour rules, in order; `otherwise` must come last.
    fn behavior(
        &mut self,
        raw: &RawAgent,
        tools: &Names,
        peers: (&[AgentIdx], &[AgentIdx]),
        agents: &Names,
    ) -> Vec<Rule> {
        let name = raw.name.get_ref();
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
            if let Some(parsed) = self.rule(rule, &raw.tools, tools, peers, agents, name) {
                behavior.push(parsed);
            }
        }
        behavior
    }

    fn circuit_breaker(&mut self, b: &RawBreaker) -> BreakerPolicy {
        if *b.failures.get_ref() == 0 {
            self.error(b.failures.span(), "expected failures of at least 1, found 0");
        }
        BreakerPolicy {
            failures: (*b.failures.get_ref()).max(1),
            cool_down_us: self.duration(&b.cool_down),
        }
    }

    fn rate_limit(&mut self, spanned: &Spanned<RawRateLimit>) -> RateLimit {
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

    pub(super) fn rule(
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
        if !self.action_shape(action) {
            return None;
        }
        let caller = Caller {
            agent_tools,
            tools,
            agent_name,
        };
        if let Some(tool) = &raw.tool_call {
            return self
                .tool_call(&caller, tool, &raw.args)
                .map(|c| Action::ToolCalls(vec![c]));
        }
        if let Some(calls) = &raw.tool_calls {
            if calls.is_empty() {
                self.error(action.span(), "expected at least one entry in `tool_calls`");
                return None;
            }
            let parsed: Vec<ToolCallSpec> = calls
                .iter()
                .filter_map(|c| self.tool_call(&caller, &c.get_ref().tool, &c.get_ref().args))
                .collect();
            return (parsed.len() == calls.len()).then_some(Action::ToolCalls(parsed));
        }
        if let Some(answer) = &raw.answer {
            let text = self.template(answer, false);
            return Some(Action::Answer { text });
        }
        if let (Some(targets), Some(task)) = (&raw.delegate, &raw.task) {
            return self.delegation(action.span(), targets, task, agents, delegates, agent_name);
        }
        let target = raw.handoff.as_ref()?;
        self.handoff(target, agents, handoffs, agent_name)
    }

    /// Whether the action names exactly one kind, with only the keys that go with it (an
    /// `args` without `tool_call` is reported but not fatal).
    fn action_shape(&mut self, action: &Spanned<RawAction>) -> bool {
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
            return false;
        }
        if raw.task.is_some() != raw.delegate.is_some() {
            self.error(action.span(), "`delegate = [...]` and `task = \"...\"` go together");
            return false;
        }
        if raw.args.is_some() && raw.tool_call.is_none() {
            self.error(action.span(), "`args` goes with `tool_call`");
        }
        true
    }

    /// One tool call of a rule: the tool must exist and be listed in the agent's `tools`.
    fn tool_call(
        &mut self,
        caller: &Caller,
        tool: &Spanned<String>,
        args: &Option<toml::Table>,
    ) -> Option<ToolCallSpec> {
        let agent_name = caller.agent_name;
        let index = self.resolve(caller.tools, tool, &format!("a rule of agent \"{agent_name}\""))?;
        if !caller.agent_tools.iter().any(|t| t.get_ref() == tool.get_ref()) {
            self.error(
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
                        self.error(tool.span(), format!("in argument `{key}`: {}", e.message));
                        continue;
                    }
                },
                other => ArgValue::Json(serde_json::to_value(other).unwrap_or(serde_json::Value::Null)),
            };
            parsed.push((key.clone(), arg));
        }
        parsed.sort_by(|a, b| a.0.cmp(&b.0));
        self.args_fit_parameters(tool, index, &parsed);
        Some(ToolCallSpec {
            tool: index,
            args: parsed,
        })
    }

    /// A rule's arguments against the tool's `parameters`: every argument is a property the
    /// schema names (unless it allows others), every required one is given, and a fixed value
    /// fits its property's schema.
    fn args_fit_parameters(&mut self, tool: &Spanned<String>, index: ToolIdx, args: &[(String, ArgValue)]) {
        let Some(Some(schema)) = self.tool_parameters.get(index).cloned() else {
            return;
        };
        let name = tool.get_ref();
        let properties = schema.get("properties").and_then(|p| p.as_object());
        let open = schema.get("additionalProperties").and_then(|a| a.as_bool()) == Some(true);
        for (key, value) in args {
            let property = properties.and_then(|p| p.get(key));
            match (property, value) {
                (None, _) if !open => {
                    let known: Vec<&str> = properties
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    self.error(
                        tool.span(),
                        format!(
                            "argument `{key}` is not in the `parameters` of tool \"{name}\" (it takes: {})",
                            if known.is_empty() {
                                "no arguments".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
                (Some(property), ArgValue::Json(json)) => {
                    if let Err(problem) = crate::scenario::schema::validate(property, json) {
                        self.error(
                            tool.span(),
                            format!("argument `{key}` of tool \"{name}\" does not fit its `parameters`: {problem}"),
                        );
                    }
                }
                _ => {}
            }
        }
        for required in schema.get("required").and_then(|r| r.as_array()).into_iter().flatten() {
            let Some(required) = required.as_str() else { continue };
            if !args.iter().any(|(key, _)| key == required) {
                self.error(
                    tool.span(),
                    format!("tool \"{name}\" requires the argument `{required}` (its `parameters` say so), which this call does not give"),
                );
            }
        }
    }

    /// A `delegate = [...]` action: each target listed in the agent's `delegates`, once.
    fn delegation(
        &mut self,
        span: std::ops::Range<usize>,
        targets: &[Spanned<String>],
        task: &Spanned<String>,
        agents: &Names,
        delegates: &[AgentIdx],
        agent_name: &str,
    ) -> Option<Action> {
        if targets.is_empty() {
            self.error(span, "expected at least one agent in `delegate`");
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
        Some(Action::Delegate { to, task })
    }

    /// A `handoff = "AGENT"` action: the target listed in the agent's `handoffs`.
    fn handoff(
        &mut self,
        target: &Spanned<String>,
        agents: &Names,
        handoffs: &[AgentIdx],
        agent_name: &str,
    ) -> Option<Action> {
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
}

/// The agent a rule belongs to, for checking its tool calls.
struct Caller<'a> {
    agent_tools: &'a [Spanned<String>],
    tools: &'a Names,
    agent_name: &'a str,
}
