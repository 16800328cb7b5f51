//! Warnings for settings that validate and then do nothing: an argument rule on an argument no
//! watched tool takes, a tool template reading an argument no call passes, a `never` invariant on an effect no tool has, traffic that starts no
//! conversation (or scripts one after the run ends), a handoff cycle, a timeout on a model that answers at once, and a fault that
//! can never fire (its time is after the run's end, or no agent uses its target).
//!
//! These run only on a scenario without errors, over the validated [`Scenario`] and the raw file
//! (for the spans). They never fail validation; the CLI can (`--deny-warnings`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Range;

use super::Validator;
use crate::scenario::error::{did_you_mean, Diagnostic};
use crate::scenario::file::*;
use crate::scenario::guardrail::GuardCheck;
use crate::scenario::model::*;
use crate::scenario::{glob, units};

impl Validator<'_> {
    pub(super) fn warn(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.warnings.push(Diagnostic::at(span, message));
    }

    /// Every warning about `scenario`, which validated without errors from `raw`.
    pub(super) fn noops(&mut self, raw: &RawScenario, scenario: &Scenario) {
        self.unused_arg_rules(raw, scenario);
        self.template_args_no_call_passes(raw, scenario);
        self.effects_no_tool_has(raw, scenario);
        self.traffic_without_conversations(raw, scenario);
        self.handoff_cycles(raw, scenario);
        self.delegation_cycles(raw, scenario);
        self.timeouts_that_cannot_fire(raw, scenario);
        self.faults_that_cannot_fire(raw, scenario);
        self.pinned_faults_that_cannot_fire(raw, scenario);
        self.resolution_nobody_can_give(raw, scenario);
        self.world_noops(raw, scenario);
        self.recovery_noops(raw, scenario);
    }

    /// Recovery settings nothing sets off: a reviewer no tool asks, a handoff timeout on an
    /// agent that hands nothing off, cancellation on an agent nothing cancels.
    fn recovery_noops(&mut self, raw: &RawScenario, scenario: &Scenario) {
        for (index, human) in raw.human.iter().enumerate() {
            if !scenario
                .tools
                .iter()
                .any(|t| t.approval.as_ref().is_some_and(|a| a.human == index))
            {
                let name = &human.get_ref().name;
                self.warn(
                    name.span(),
                    format!(
                        "human \"{}\": expected a tool with `approval = {{ by = \"{}\" }}`, found none; this reviewer is never asked",
                        name.get_ref(),
                        name.get_ref()
                    ),
                );
            }
        }
        let abandons = scenario.faults.iter().any(|f| f.kind == FaultKind::UserAbandon);
        for (agent, raw_agent) in scenario.agents.iter().zip(&raw.agent) {
            let raw_agent = raw_agent.get_ref();
            if let (Some(timeout), true) = (&raw_agent.handoff_timeout, agent.handoffs.is_empty()) {
                self.warn(
                    timeout.span(),
                    format!(
                        "agent \"{}\": expected `handoffs` with `handoff_timeout`, found none; it hands nothing off, so the timeout never fires",
                        agent.name
                    ),
                );
            }
            for &tool in &agent.tools {
                let (Some(approval), Some(timeout_us), Some(span)) = (
                    scenario.tools[tool].approval.as_ref(),
                    agent.tool_timeout_us,
                    raw_agent.tool_timeout.as_ref().map(|t| t.span()),
                ) else {
                    continue;
                };
                let reviewer = &scenario.humans[approval.human];
                if timeout_us < reviewer.timeout_us {
                    self.warn(
                        span,
                        format!(
                            "agent \"{}\": expected a tool_timeout of at least {} (reviewer \"{}\"'s timeout for tool \"{}\"), found {}; the agent gives up on a call its reviewer may still approve, and the approved call then runs anyway",
                            agent.name,
                            units::format_duration_us(reviewer.timeout_us),
                            reviewer.name,
                            scenario.tools[tool].name,
                            units::format_duration_us(timeout_us)
                        ),
                    );
                }
            }
            let cancels = agent.cancellation == Cancellation::Cancel;
            if let (Some(cancellation), true) = (
                &raw_agent.cancellation,
                cancels && agent.deadline_us.is_none() && !abandons,
            ) {
                self.warn(
                    cancellation.span(),
                    format!(
                        "agent \"{}\": expected a `deadline` or a `user.abandon` fault with `cancellation = \"cancel\"`, found neither; nothing cancels its conversations",
                        agent.name
                    ),
                );
            }
        }
    }

    /// `eventually = { resolved = true }` where no traffic names a `[[user]]`: only a user who
    /// talks back can say the matter is settled, so every conversation breaks it.
    fn resolution_nobody_can_give(&mut self, raw: &RawScenario, scenario: &Scenario) {
        if scenario.traffic.iter().any(|t| t.user().is_some()) {
            return;
        }
        for invariant in &raw.invariant {
            let invariant = invariant.get_ref();
            let Some(resolved) = invariant
                .eventually
                .as_ref()
                .and_then(|e| e.get_ref().resolved.as_ref())
            else {
                continue;
            };
            self.warn(
                resolved.span(),
                format!(
                    "invariant \"{}\": expected a [[traffic]] with `user = \"NAME\"`, found none; only a user who talks back can resolve a conversation, so every conversation breaks this check",
                    invariant.name.get_ref()
                ),
            );
        }
    }

    /// A fault whose time trigger comes after the run's `max_virtual_time`, or whose targets
    /// (tools, models) no agent uses, so nothing is ever delivered where it waits.
    fn faults_that_cannot_fire(&mut self, raw: &RawScenario, scenario: &Scenario) {
        let end_us = scenario.limits.max_virtual_time_us;
        let used_tools: BTreeSet<&str> = scenario
            .agents
            .iter()
            .flat_map(|a| a.tools.iter().map(|t| scenario.tools[*t].name.as_str()))
            .collect();
        let used_llms: BTreeSet<&str> = scenario
            .agents
            .iter()
            .flat_map(|a| a.llm.into_iter().chain(a.fallback))
            .map(|l| scenario.llms[l].name.as_str())
            .collect();
        let tools: Vec<&str> = scenario.tools.iter().map(|t| t.name.as_str()).collect();
        let llms: Vec<&str> = scenario.llms.iter().map(|l| l.name.as_str()).collect();
        for (fault, raw_fault) in scenario.faults.iter().zip(&raw.fault) {
            let raw_fault = raw_fault.get_ref();
            let starts_us = fault
                .trigger
                .at_us
                .into_iter()
                .chain(fault.trigger.between_us.map(|(from, _)| from));
            if let Some(late_us) = starts_us.max().filter(|at| *at > end_us) {
                let span = raw_fault
                    .at
                    .as_ref()
                    .map(|a| a.span())
                    .or_else(|| raw_fault.between.as_ref().map(|b| b.span()))
                    .unwrap_or_else(|| raw_fault.kind.span());
                self.warn(
                    span,
                    format!(
                        "expected a time within the run's max_virtual_time ({}), found {}; this fault can never fire because the run ends first",
                        units::format_duration_us(end_us),
                        units::format_duration_us(late_us)
                    ),
                );
                continue;
            }
            if let (Some(latency_us), Some(latency)) = (fault.params.latency_us, &raw_fault.latency) {
                if latency_us > end_us {
                    self.warn(
                        latency.span(),
                        format!(
                            "expected a latency within the run's max_virtual_time ({}), found {}; what this fault holds back is due after the run ends, so a run it fires in ends limit_exceeded",
                            units::format_duration_us(end_us),
                            units::format_duration_us(latency_us)
                        ),
                    );
                }
            }
            let idle = idle_targets(&fault.target, "tool", &used_tools, &tools)
                .map(|m| ("tool", m))
                .or_else(|| idle_targets(&fault.target, "llm", &used_llms, &llms).map(|m| ("llm", m)));
            if let Some((kind, matched)) = idle {
                let span = raw_fault
                    .target
                    .as_ref()
                    .map_or_else(|| raw_fault.kind.span(), |t| t.span());
                let names: Vec<String> = matched.iter().map(|m| format!("{kind}:{m}")).collect();
                self.warn(
                    span,
                    format!(
                        "expected a target some agent calls, found {} that no agent uses (no agent lists it in `{}`); this fault can never fire",
                        names.join(", "),
                        if kind == "tool" { "tools" } else { "llm` or `fallback" }
                    ),
                );
            }
        }
    }

    /// Faults pinned to a message that never comes, or that an earlier fault always takes: an
    /// `on_message` beyond `max_events`, a tool fault on tools that no rule of the (all mock)
    /// agents using them ever calls, and a fault pinned to the same message of the same target
    /// as an earlier unconditional one (one fault fires per delivery, the first in file order).
    fn pinned_faults_that_cannot_fire(&mut self, raw: &RawScenario, scenario: &Scenario) {
        let max_events = scenario.limits.max_events;
        let called = tools_rules_call(raw, scenario);
        for (index, (fault, raw_fault)) in scenario.faults.iter().zip(&raw.fault).enumerate() {
            let raw_fault = raw_fault.get_ref();
            let span = raw_fault
                .on_message
                .as_ref()
                .map_or_else(|| raw_fault.kind.span(), |m| m.span());
            if let Some(n) = fault.trigger.on_message.filter(|n| *n > max_events) {
                self.warn(
                    span,
                    format!(
                        "expected an on_message within the run's max_events ({max_events}), found {n}; this fault can never fire because the run ends first"
                    ),
                );
                continue;
            }
            if fault.kind.layer() == crate::catalogue::faults::Layer::Tool {
                if let Some(called) = &called {
                    // Tools no agent lists are warned about above.
                    let listed: BTreeSet<usize> =
                        scenario.agents.iter().flat_map(|a| a.tools.iter().copied()).collect();
                    let targets: Vec<&str> = scenario
                        .tools
                        .iter()
                        .enumerate()
                        .filter(|(i, t)| {
                            listed.contains(i) && glob::glob_match(&fault.target, &format!("tool:{}", t.name))
                        })
                        .map(|(_, t)| t.name.as_str())
                        .collect();
                    if !targets.is_empty() && targets.iter().all(|t| !called.contains(t)) {
                        let span = raw_fault
                            .target
                            .as_ref()
                            .map_or_else(|| raw_fault.kind.span(), |t| t.span());
                        self.warn(
                            span,
                            format!(
                                "expected a tool some rule calls, found {} that the agents list but no `tool_call` of their mock models' rules calls; this fault can never fire",
                                targets.iter().map(|t| format!("tool:{t}")).collect::<Vec<_>>().join(", ")
                            ),
                        );
                        continue;
                    }
                }
            }
            let Some(n) = fault.trigger.on_message else {
                continue;
            };
            let taken_by = scenario.faults[..index].iter().find(|earlier| {
                let t = &earlier.trigger;
                earlier.target == fault.target
                    && t.on_message == Some(n)
                    && t.probability.is_none()
                    && t.at_us.is_none()
                    && t.between_us.is_none()
                    && t.after.is_none()
                    && t.message_contains.is_none()
                    && t.count.is_none()
                    && scenario.profiles.is_empty()
                    && acts_on_all_of(earlier.kind.layer(), fault.kind.layer())
            });
            if let Some(earlier) = taken_by {
                self.warn(
                    span,
                    format!(
                        "expected a message no earlier fault takes, found on_message = {n} on {}, which fault \"{}\" above always fires on (one fault fires per delivery, the first in file order); this fault can never fire",
                        fault.target, earlier.name
                    ),
                );
            }
        }
    }

    /// An `allow_list` argument rule on an argument that none of the tools it watches is called
    /// with. Only where every watched tool's arguments are known from the mock models' rules.
    fn unused_arg_rules(&mut self, raw: &RawScenario, scenario: &Scenario) {
        let known = known_tool_args(raw, scenario);
        for (guardrail, raw_guardrail) in scenario.guardrails.iter().zip(&raw.guardrail) {
            let GuardCheck::AllowList { tools: allowed, args } = &guardrail.check else {
                continue;
            };
            let Some(args_table) = &raw_guardrail.get_ref().check.get_ref().args else {
                continue;
            };
            let watched: BTreeSet<ToolIdx> = guardrail
                .agents
                .iter()
                .flat_map(|&agent| scenario.agents[agent].tools.iter().copied())
                .filter(|tool| guardrail.tools.as_ref().is_none_or(|tools| tools.contains(tool)))
                .filter(|tool| allowed.as_ref().is_none_or(|tools| tools.contains(tool)))
                .collect();
            let Some(taken) = watched
                .iter()
                .map(|tool| known.get(tool).map(|args| (*tool, args)))
                .collect::<Option<Vec<_>>>()
            else {
                continue;
            };
            if taken.is_empty() {
                continue;
            }
            let all_taken: BTreeSet<&str> = taken
                .iter()
                .flat_map(|(_, args)| args.iter().map(String::as_str))
                .collect();
            let described: Vec<String> = taken
                .iter()
                .map(|(tool, args)| {
                    let list: Vec<String> = args.iter().map(|a| format!("`{a}`")).collect();
                    format!("\"{}\" takes {}", scenario.tools[*tool].name, list.join(", "))
                })
                .collect();
            for (name, rule) in args {
                if rule.required || all_taken.contains(name.as_str()) {
                    continue;
                }
                let hint = did_you_mean(name, all_taken.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                self.warn(
                    key_span(self.source, &args_table.span(), name),
                    format!(
                        "guardrail \"{}\": expected a rule on an argument its tools take ({}), found `{name}`{hint}; this rule does nothing because no call it checks carries `{name}`",
                        guardrail.name,
                        described.join("; ")
                    ),
                );
            }
        }
    }

    /// A `never = { effect = ... }` invariant on an effect that no `[[tool]]` has.
    fn effects_no_tool_has(&mut self, raw: &RawScenario, scenario: &Scenario) {
        let effects: BTreeSet<&str> = scenario.tools.iter().filter_map(|t| t.effect.as_deref()).collect();
        for invariant in &raw.invariant {
            let invariant = invariant.get_ref();
            let Some(effect) = invariant.never.as_ref().and_then(|n| n.get_ref().effect.as_ref()) else {
                continue;
            };
            let name = effect.get_ref();
            if effects.contains(name.as_str()) {
                continue;
            }
            let hint = did_you_mean(name, effects.iter().copied())
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            let expected = if effects.is_empty() {
                "expected an effect that a [[tool]] has, but no [[tool]] has an `effect`".to_owned()
            } else {
                let list: Vec<String> = effects.iter().map(|e| format!("\"{e}\"")).collect();
                format!("expected an effect that a [[tool]] has ({})", list.join(", "))
            };
            self.warn(
                effect.span(),
                format!(
                    "invariant \"{}\": {expected}, found \"{name}\"{hint}; this check does nothing because no tool has effect = \"{name}\", so it can never break",
                    invariant.name.get_ref()
                ),
            );
        }
    }

    /// Poisson traffic of `conversations = 0`, and scripted conversations timed after the run's
    /// `max_virtual_time`. (An empty script is already an error.)
    fn traffic_without_conversations(&mut self, raw: &RawScenario, scenario: &Scenario) {
        let end_us = scenario.limits.max_virtual_time_us;
        for (traffic, validated) in raw.traffic.iter().zip(&scenario.traffic) {
            let raw_script = &traffic.get_ref().script;
            if let Traffic::Script { items, .. } = validated {
                let late = items.iter().filter(|(at_us, _)| *at_us > end_us).count();
                let first_late = items.iter().position(|(at_us, _)| *at_us > end_us);
                let item = first_late.and_then(|i| raw_script.get(i)).or(raw_script.first());
                if let (true, Some(item)) = (late > 0, item) {
                    self.warn(
                        item.span(),
                        format!(
                            "expected scripted conversations within the run's max_virtual_time ({}), found {late} of {} after it; they never start because the run ends first",
                            units::format_duration_us(end_us),
                            items.len()
                        ),
                    );
                }
            }
        }
        for traffic in &raw.traffic {
            let t = traffic.get_ref();
            if let Some(conversations) = t.conversations.as_ref().filter(|c| *c.get_ref() == 0) {
                self.warn(
                    conversations.span(),
                    "expected conversations of at least 1, found 0; this traffic does nothing because it starts no conversation",
                );
            }
        }
    }

    /// Agents that can hand a conversation round in a circle. One warning per circle of agents,
    /// at the first handoff on it, naming the shortest cycle through its first agent.
    fn handoff_cycles(&mut self, raw: &RawScenario, scenario: &Scenario) {
        let mut reported: BTreeSet<AgentIdx> = BTreeSet::new();
        for start in 0..scenario.agents.len() {
            if reported.contains(&start) {
                continue;
            }
            let Some(cycle) = shortest_cycle(scenario, start, handoffs_of) else {
                continue;
            };
            reported.extend(strongly_connected(scenario, start, handoffs_of));
            let next = cycle[1];
            let Some(handoff) = raw.agent[start]
                .get_ref()
                .handoffs
                .iter()
                .find(|h| *h.get_ref() == scenario.agents[next].name)
            else {
                continue;
            };
            let names: Vec<&str> = cycle.iter().map(|&a| scenario.agents[a].name.as_str()).collect();
            self.warn(
                handoff.span(),
                format!(
                    "handoff cycle {}: expected handoffs that lead on to an agent that answers, found a way back to \"{}\"; a conversation can be handed round this cycle without ever being answered, until `max_handoffs` ({}) ends it",
                    names.join(" → "),
                    names[0],
                    scenario.max_handoffs
                ),
            );
        }
    }

    /// Agents that can delegate a conversation's work round in a circle. One warning per circle
    /// of agents, at the first delegate on it.
    fn delegation_cycles(&mut self, raw: &RawScenario, scenario: &Scenario) {
        let mut reported: BTreeSet<AgentIdx> = BTreeSet::new();
        for start in 0..scenario.agents.len() {
            if reported.contains(&start) {
                continue;
            }
            let Some(cycle) = shortest_cycle(scenario, start, delegates_of) else {
                continue;
            };
            reported.extend(strongly_connected(scenario, start, delegates_of));
            let next = &scenario.agents[cycle[1]].name;
            let Some(delegate) = raw.agent[start]
                .get_ref()
                .delegates
                .iter()
                .find(|d| d.get_ref() == next)
            else {
                continue;
            };
            let names: Vec<&str> = cycle.iter().map(|&a| scenario.agents[a].name.as_str()).collect();
            self.warn(
                delegate.span(),
                format!(
                    "delegation cycle {}: expected delegates that answer, found a way back to \"{}\"; an agent cannot work on a conversation twice, so a task delegated back to it is refused with an error",
                    names.join(" → "),
                    names[0]
                ),
            );
        }
    }

    /// An agent's `timeout` or `deadline` while its models answer in no time and nothing in the
    /// scenario can make time pass: no fault, no provider or client rate limit, no slow guardrail
    /// (and, for a deadline, no slow tool and no delegate to wait for).
    fn timeouts_that_cannot_fire(&mut self, raw: &RawScenario, scenario: &Scenario) {
        if !scenario.faults.is_empty() || scenario.guardrails.iter().any(|g| latency_max_us(&g.latency) > 0) {
            return;
        }
        let instant = |llm: LlmIdx| {
            let llm = &scenario.llms[llm];
            llm.mode == LlmMode::Mock && latency_max_us(&llm.latency) == 0 && llm.rpm.is_none()
        };
        for (agent, raw_agent) in scenario.agents.iter().zip(&raw.agent) {
            let Some(llm) = agent.llm else { continue };
            if !instant(llm) || agent.fallback.is_some_and(|f| !instant(f)) || agent.rate_limit.is_some() {
                continue;
            }
            let llm_name = &scenario.llms[llm].name;
            let why = if raw.llm[llm].get_ref().latency.is_none() {
                "a mock model's latency when `latency` is absent"
            } else {
                "its `latency`"
            };
            let raw_agent = raw_agent.get_ref();
            let waits = !agent.delegates.is_empty()
                || agent
                    .tools
                    .iter()
                    .any(|&t| latency_max_us(&scenario.tools[t].latency) > 0);
            let settings = [
                ("timeout", raw_agent.timeout.as_ref(), "gives up on a model call", true),
                ("deadline", raw_agent.deadline.as_ref(), "ends the conversation", !waits),
            ];
            for (key, value, what, applies) in settings {
                let Some(value) = value.filter(|_| applies) else {
                    continue;
                };
                self.warn(
                    value.span(),
                    format!(
                        "agent \"{}\": `{key}` {what} after {}, but llm \"{llm_name}\" answers in 0s ({why}) and nothing in the scenario delays it; expected a `latency` above 0 on llm \"{llm_name}\"; this {key} does nothing because it can never fire",
                        agent.name,
                        value.get_ref()
                    ),
                );
            }
        }
    }
}

/// Whether an unconditional fault of layer `earlier` fires on every message a fault of layer
/// `later` could fire on.
fn acts_on_all_of(earlier: crate::catalogue::faults::Layer, later: crate::catalogue::faults::Layer) -> bool {
    use crate::catalogue::faults::Layer;
    let class = |layer: Layer| match layer {
        Layer::Provider | Layer::Content => Some("llm"),
        Layer::Tool => Some("tool"),
        Layer::Guardrail => Some("guardrail"),
        _ => None,
    };
    earlier == Layer::Actor || (class(earlier).is_some() && class(earlier) == class(later))
}

/// The tools some rule of a mock model calls, when every agent that lists a tool has a mock
/// model (else `None`: a live model may call any tool it is offered).
fn tools_rules_call<'s>(raw: &'s RawScenario, scenario: &Scenario) -> Option<BTreeSet<&'s str>> {
    let mut called = BTreeSet::new();
    for (agent, raw_agent) in scenario.agents.iter().zip(&raw.agent) {
        let mocked = agent.llm.is_some_and(|l| scenario.llms[l].mode == LlmMode::Mock)
            && agent.fallback.is_none_or(|l| scenario.llms[l].mode == LlmMode::Mock);
        if !mocked && !agent.tools.is_empty() {
            return None;
        }
        for rule in &raw_agent.get_ref().behavior {
            let rule = rule.get_ref();
            for action in rule.then.iter().chain(&rule.otherwise) {
                let action = action.get_ref();
                called.extend(action.tool_call.iter().map(|t| t.get_ref().as_str()));
                called.extend(
                    action
                        .tool_calls
                        .iter()
                        .flatten()
                        .map(|c| c.get_ref().tool.get_ref().as_str()),
                );
            }
        }
    }
    // A model that invents a call to a tool (`llm.hallucinated_tool`) calls it too.
    called.extend(
        raw.fault
            .iter()
            .filter(|f| f.get_ref().kind.get_ref() == "llm.hallucinated_tool")
            .filter_map(|f| f.get_ref().tool.as_ref().map(|t| t.get_ref().as_str())),
    );
    Some(called)
}

impl Validator<'_> {
    /// `{{args.NAME}}` in a tool's output, subject or a rule's output, where every call of the
    /// tool comes from a mock model's rules and none passes NAME: it would render empty.
    fn template_args_no_call_passes(&mut self, raw: &RawScenario, scenario: &Scenario) {
        let mut known = known_tool_args(raw, scenario);
        // A compensating tool runs with the arguments of the call it undoes.
        for (undone, tool) in scenario.tools.iter().enumerate() {
            let Some(compensation) = &tool.compensation else {
                continue;
            };
            let called_directly = scenario.agents.iter().any(|a| a.tools.contains(&compensation.tool));
            if called_directly && !known.contains_key(&compensation.tool) {
                continue; // a live model calls it too: its arguments are not known
            }
            if let Some(passed) = known.get(&undone).cloned() {
                known.entry(compensation.tool).or_default().extend(passed);
            }
        }
        for (index, (tool, raw_tool)) in scenario.tools.iter().zip(&raw.tool).enumerate() {
            let Some(passed) = known.get(&index) else {
                continue;
            };
            if tool.mcp.is_some() {
                continue;
            }
            let raw_tool = raw_tool.get_ref();
            let templates = [
                (Some(&tool.output), raw_tool.output.as_ref()),
                (tool.subject.as_ref(), raw_tool.subject.as_ref()),
            ]
            .into_iter()
            .chain(
                tool.rules
                    .iter()
                    .zip(&raw_tool.rules)
                    .map(|(rule, raw_rule)| (rule.output.as_ref(), raw_rule.get_ref().output.as_ref())),
            );
            let mut warnings = Vec::new();
            for (template, text) in templates {
                let (Some(template), Some(text)) = (template, text) else {
                    continue;
                };
                for segment in &template.segments {
                    let name = match segment {
                        crate::scenario::expr::Segment::Arg(name) => name,
                        crate::scenario::expr::Segment::Path(path) if path.slot == ARGS_SLOT => {
                            match tool.args.get(path.field as usize) {
                                Some((name, _)) => name,
                                None => continue,
                            }
                        }
                        _ => continue,
                    };
                    if passed.contains(name) {
                        continue;
                    }
                    let list: Vec<String> = passed.iter().map(|a| format!("`{a}`")).collect();
                    let hint = did_you_mean(name, passed.iter().map(String::as_str))
                        .map(|d| format!("; did you mean `{d}`?"))
                        .unwrap_or_default();
                    warnings.push((
                        text.span(),
                        format!(
                            "tool \"{}\": expected `{{{{args.NAME}}}}` to name an argument its calls pass ({}), found `args.{name}`, which no call passes, so it renders empty{hint}",
                            tool.name,
                            list.join(", ")
                        ),
                    ));
                }
            }
            for (span, message) in warnings {
                self.warn(span, message);
            }
        }
    }
}

/// The argument names each tool is called with by the mock models' rules; a tool is missing when
/// its arguments are not all known (no rule passes it `args`, or a live or replayed model may call it).
fn known_tool_args(raw: &RawScenario, scenario: &Scenario) -> BTreeMap<ToolIdx, BTreeSet<String>> {
    let tool_index: BTreeMap<&str, ToolIdx> = scenario
        .tools
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let mut known: BTreeMap<ToolIdx, BTreeSet<String>> = BTreeMap::new();
    let mut unknown: BTreeSet<ToolIdx> = BTreeSet::new();
    for (agent, raw_agent) in scenario.agents.iter().zip(&raw.agent) {
        let mocked = agent.llm.is_some_and(|l| scenario.llms[l].mode == LlmMode::Mock)
            && agent.fallback.is_none_or(|l| scenario.llms[l].mode == LlmMode::Mock);
        if !mocked {
            unknown.extend(agent.tools.iter().copied());
            continue;
        }
        let actions = raw_agent
            .get_ref()
            .behavior
            .iter()
            .filter_map(|rule| rule.get_ref().then.as_ref().or(rule.get_ref().otherwise.as_ref()));
        for action in actions {
            let action = action.get_ref();
            let calls = action
                .tool_call
                .iter()
                .map(|tool| (tool.get_ref(), action.args.as_ref()))
                .chain(
                    action
                        .tool_calls
                        .iter()
                        .flatten()
                        .map(|c| (c.get_ref().tool.get_ref(), c.get_ref().args.as_ref())),
                );
            for (tool, args) in calls {
                let Some(&tool) = tool_index.get(tool.as_str()) else {
                    continue;
                };
                if let Some(args) = args.filter(|a| !a.is_empty()) {
                    known.entry(tool).or_default().extend(args.keys().cloned());
                }
            }
        }
    }
    known.retain(|tool, _| !unknown.contains(tool));
    known
}

/// The largest latency a distribution can give (log-normal: unbounded unless both are zero).
/// The entities of one kind (`tool`, `llm`) that `target` matches, when it matches some and
/// none of them is `used`.
fn idle_targets<'a>(target: &str, prefix: &str, used: &BTreeSet<&str>, all: &[&'a str]) -> Option<Vec<&'a str>> {
    let matched: Vec<&'a str> = all
        .iter()
        .copied()
        .filter(|name| glob::glob_match(target, &format!("{prefix}:{name}")))
        .collect();
    (!matched.is_empty() && matched.iter().all(|m| !used.contains(m))).then_some(matched)
}

fn latency_max_us(latency: &Latency) -> u64 {
    match *latency {
        Latency::Fixed { latency_us } => latency_us,
        Latency::Uniform { max_us, .. } => max_us,
        Latency::LogNormal { median_us, p99_us } => median_us.max(p99_us),
    }
}

/// The agents an agent passes work to: by handoff or by delegation.
type Edges = fn(&crate::scenario::Agent) -> &[AgentIdx];

fn handoffs_of(agent: &crate::scenario::Agent) -> &[AgentIdx] {
    &agent.handoffs
}

fn delegates_of(agent: &crate::scenario::Agent) -> &[AgentIdx] {
    &agent.delegates
}

/// The shortest path along `edges` from `start` back to `start`, both ends included.
fn shortest_cycle(scenario: &Scenario, start: AgentIdx, edges: Edges) -> Option<Vec<AgentIdx>> {
    let mut came_from: BTreeMap<AgentIdx, AgentIdx> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(agent) = queue.pop_front() {
        for &next in edges(&scenario.agents[agent]) {
            if next == start {
                let mut path = vec![];
                let mut at = agent;
                while at != start {
                    path.push(at);
                    at = came_from[&at];
                }
                path.push(start);
                path.reverse();
                path.push(start);
                return Some(path);
            }
            if let std::collections::btree_map::Entry::Vacant(e) = came_from.entry(next) {
                e.insert(agent);
                queue.push_back(next);
            }
        }
    }
    None
}

/// The agents on some cycle along `edges` through `start`.
fn strongly_connected(scenario: &Scenario, start: AgentIdx, edges: Edges) -> BTreeSet<AgentIdx> {
    let reach = |from: AgentIdx| {
        let mut seen = BTreeSet::from([from]);
        let mut stack = vec![from];
        while let Some(agent) = stack.pop() {
            for &next in edges(&scenario.agents[agent]) {
                if seen.insert(next) {
                    stack.push(next);
                }
            }
        }
        seen
    };
    reach(start)
        .into_iter()
        .filter(|&a| reach(a).contains(&start))
        .collect()
}

/// The span of key `name` inside the inline table at `table`, or the table when it is not found.
fn key_span(source: &str, table: &Range<usize>, name: &str) -> Range<usize> {
    let text = source.get(table.clone()).unwrap_or("");
    let bytes = text.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let found = text.match_indices(name).map(|(at, _)| at).find(|&at| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + name.len()).copied();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    });
    match found {
        Some(at) => table.start + at..table.start + at + name.len(),
        None => table.clone(),
    }
}
