//! The tool actor: admits a call under the limits of the API behind it, runs it after a latency
//! drawn from its distribution (reading and changing the world by its rules), performs its side
//! effect (reported to the scheduler as an effect, with its amount), and returns its output.
//! Tool and world faults fail, slow, empty, poison, double or half-apply the call here, where
//! they happen in reality.

use std::sync::Arc;

mod approval;

use super::bucket::TokenBucket;
use super::route::GuardRoute;
use super::tool_world::{self, CallView, Decision};
use crate::catalogue::faults::FaultKind;
use crate::kernel::{Behavior, HandlerError, RngStream, StreamFamily};
use crate::protocol::{
    AgentMsg, CallKey, ConvId, Directory, Effect, Injection, Payload, Queued, SharedWorld, ToolArgs, ToolCall,
    ToolCaller, ToolMsg, TurnContext, UserMsg,
};
use crate::scenario::expr::operand_value;
use crate::scenario::guardrail::Stage;
use crate::scenario::{Cancellation, Scenario, ToolIdx};

/// Extra latency of `tool.slow` when the fault gives none.
const SLOW_LATENCY_US: u64 = 10_000_000;
/// How long an API takes to refuse a call it has no room for (a 429).
const REJECT_LATENCY_US: u64 = 5_000;

/// The tool's state: a random stream per conversation, so that what happens in one conversation
/// shifts no draw of another; and the load on the API behind it.
pub struct ToolBehavior {
    scenario: Arc<Scenario>,
    directory: Directory,
    tool: ToolIdx,
    family: StreamFamily,
    streams: std::collections::BTreeMap<ConvId, RngStream>,
    /// Calls already executed (conversation, arguments), for idempotent tools, with what the
    /// API answered them: a repeat gets that answer again.
    executed: std::collections::BTreeMap<(ConvId, String), String>,
    world: SharedWorld,
    /// `max_concurrent`: when each of the API's slots is free again (virtual time).
    slots_free_at_us: Vec<u64>,
    /// `rate_limit`: the API's token bucket.
    bucket: Option<TokenBucket>,
    /// Runs of an agent's call still to come (`Run` after a wait, `Commit` after the latency),
    /// and how many of them its agent cancelled (`cancellation = "cancel"`): those take no
    /// effect.
    in_flight: std::collections::BTreeMap<CallKey, u32>,
    cancelled: std::collections::BTreeMap<CallKey, u32>,
    /// Calls waiting for a reviewer's decision (`approval`), with the fault their delivery
    /// carried.
    awaiting_approval: std::collections::BTreeMap<CallKey, (ToolCaller, ToolCall, Option<Injection>)>,
    /// An MCP tool: the recorded answer its next call without a recorded twin gets.
    recorded_next: usize,
    /// A tool with `recorded` calls: how many calls each conversation has made.
    recorded_seen: std::collections::BTreeMap<ConvId, usize>,
}

/// The key of an agent's call (compensations are neither cancelled nor approved).
fn key_of(conv: ConvId, caller: ToolCaller, call_id: u32) -> Option<CallKey> {
    match caller {
        ToolCaller::Agent(agent) => Some(CallKey { conv, agent, call_id }),
        ToolCaller::Compensation { .. } => None,
    }
}

/// When and where a call arrived, and the fault its delivery carried.
#[derive(Debug, Clone, Copy)]
pub(super) struct Arrival {
    pub now_us: u64,
    pub me: crate::kernel::ActorIdx,
    pub injection: Option<Injection>,
}

impl Arrival {
    fn of(context: &TurnContext) -> Arrival {
        Arrival {
            now_us: context.now_us,
            me: context.me,
            injection: context.injection,
        }
    }
}

impl ToolBehavior {
    pub fn new(
        scenario: Arc<Scenario>,
        directory: Directory,
        tool: ToolIdx,
        seed: u64,
        incarnation: u32,
        world: SharedWorld,
    ) -> ToolBehavior {
        let spec = &scenario.tools[tool];
        let family = StreamFamily::new(seed, &format!("tool:{}#{incarnation}", spec.name));
        let load = spec.load;
        ToolBehavior {
            slots_free_at_us: vec![0; load.max_concurrent.unwrap_or(0) as usize],
            // A second's worth of calls may come at once.
            bucket: load
                .per_minute
                .map(|per_minute| TokenBucket::new(per_minute, (per_minute / 60).max(1))),
            scenario,
            directory,
            tool,
            family,
            streams: Default::default(),
            executed: Default::default(),
            world,
            in_flight: Default::default(),
            cancelled: Default::default(),
            awaiting_approval: Default::default(),
            recorded_next: 0,
            recorded_seen: Default::default(),
        }
    }

    /// When the call may start: now, later (it waits its turn), or never (the API answers 429).
    fn admit(&mut self, now_us: u64, latency_us: Option<u64>) -> Result<u64, String> {
        let spec = &self.scenario.tools[self.tool];
        let load = spec.load;
        let mut start_us = now_us;
        if let Some(bucket) = &mut self.bucket {
            if let Err(wait_us) = bucket.take(now_us) {
                if !load.queue {
                    return Err(format!(
                        "429 Too Many Requests: {} allows {} calls a minute (retry after {}ms)",
                        spec.name,
                        load.per_minute.unwrap_or(0),
                        wait_us.div_ceil(1000)
                    ));
                }
                // Wait for a token, after the calls queued before this one.
                start_us = bucket.reserve(now_us);
            }
        }
        if let Some((slot, &free_us)) = self.slots_free_at_us.iter().enumerate().min_by_key(|(_, free)| **free) {
            if free_us > start_us {
                if !load.queue {
                    return Err(format!(
                        "429 Too Many Requests: {} is handling {} calls at once",
                        spec.name,
                        self.slots_free_at_us.len()
                    ));
                }
                start_us = free_us;
            }
            // A call that never answers holds its slot for good (a hung connection).
            self.slots_free_at_us[slot] = latency_us.map_or(u64::MAX, |l| start_us.saturating_add(l));
        }
        Ok(start_us)
    }

    /// Runs a call now, or — for an agent that cancels calls — has it take effect at the end of
    /// its latency (a hung call, which never answers, takes effect now).
    fn run_or_defer(&mut self, queued: Queued, effects: &mut Vec<Effect>) -> Result<(), HandlerError> {
        let cancels = matches!(queued.caller,
            ToolCaller::Agent(a) if self.scenario.agents[a].cancellation == Cancellation::Cancel);
        match injected_latency(&self.scenario, queued.latency_us, queued.injection) {
            Some(delay_us) if cancels && delay_us > 0 => {
                self.expect_run(&queued);
                effects.push(Effect::Send {
                    to: self.directory.tool(self.tool),
                    delay_us,
                    payload: Payload::Tool(ToolMsg::Commit(Box::new(queued))),
                });
                Ok(())
            }
            _ => self.run_queued(queued, None, effects),
        }
    }

    /// A run of this call is scheduled (after a wait, or at the end of its latency).
    fn expect_run(&mut self, queued: &Queued) {
        if let Some(key) = key_of(queued.conv, queued.caller, queued.call.id) {
            *self.in_flight.entry(key).or_default() += 1;
        }
    }

    /// A scheduled run of this call is here: whether it was cancelled (then it counts as one
    /// cancelled call).
    fn arrived(&mut self, queued: &Queued, effects: &mut Vec<Effect>) -> bool {
        let Some(key) = key_of(queued.conv, queued.caller, queued.call.id) else {
            return false;
        };
        if let Some(runs) = self.in_flight.get_mut(&key) {
            *runs -= 1;
            if *runs == 0 {
                self.in_flight.remove(&key);
            }
        }
        let Some(cancelled) = self.cancelled.get_mut(&key) else {
            return false;
        };
        *cancelled -= 1;
        if *cancelled == 0 {
            self.cancelled.remove(&key);
        }
        effects.push(Effect::CallCancelled { conv: key.conv });
        true
    }

    /// Runs a call that waited (see [`ToolBehavior::run`] for `committed`).
    fn run_queued(
        &mut self,
        queued: Queued,
        committed: Option<bool>,
        effects: &mut Vec<Effect>,
    ) -> Result<(), HandlerError> {
        let recorded_output = queued.recorded_output.clone();
        let Queued {
            conv,
            caller,
            call,
            injection,
            latency_us,
            ..
        } = queued;
        self.run(
            conv,
            caller,
            call,
            (injection, latency_us, recorded_output),
            committed,
            effects,
        )
    }

    /// Runs a call: the world by the tool's rules, the faults, the effect and the answer.
    /// `committed`: the call's latency is already over (`Some`), and it was cancelled meanwhile
    /// (`Some(true)`): then nothing changes, its effect is counted as cancelled, and nobody hears.
    fn run(
        &mut self,
        conv: ConvId,
        caller: ToolCaller,
        call: ToolCall,
        (injection, latency_us, recorded_output): (Option<Injection>, Option<u64>, Option<Arc<str>>),
        committed: Option<bool>,
        effects: &mut Vec<Effect>,
    ) -> Result<(), HandlerError> {
        let scenario = self.scenario.clone();
        let spec = &scenario.tools[self.tool];
        let ToolArgs::Json(args) = &call.args else {
            return Err(HandlerError(format!("tool {} got unparsed arguments", spec.name)));
        };
        let arg = |name: &str| {
            args.get(name).map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        // A call whose arguments break the tool's schema gets the error a real API returns.
        if let Some(schema) = &spec.parameters {
            if let Err(problem) = crate::scenario::schema::validate_object(schema, args) {
                let output = format!("error: 400 invalid arguments: {problem}");
                if committed == Some(true) {
                    return Ok(());
                }
                let latency_us = if committed.is_some() { Some(0) } else { latency_us };
                self.answer(conv, caller, call.id, output, latency_us, effects);
                return Ok(());
            }
        }
        let kind = injection.map(|i| i.kind);
        let mut view = CallView {
            conv,
            args: tool_world::call_args(spec, args),
            records: Vec::new(),
            tool: spec,
            scenario: &scenario,
        };
        if !spec.lookups.is_empty() {
            let world = self
                .world
                .read()
                .map_err(|_| HandlerError("the world's lock is poisoned".to_owned()))?;
            tool_world::look_up(&mut view, &world, kind == Some(FaultKind::WorldStaleRead));
        }
        // The amount and subject see the records as read, before the call's own changes.
        let amount = spec.amount.as_ref().map(|a| match operand_value(a, &view) {
            crate::scenario::expr::Value::Int(i) => i.saturating_mul(crate::scenario::expr::DEC_ONE),
            crate::scenario::expr::Value::Dec(d) => d,
            _ => 0,
        });
        let subject = spec.subject.as_ref().map(|s| s.render_shared(&view, &arg));
        let family = &self.family;
        let stream = self
            .streams
            .entry(conv)
            .or_insert_with(|| family.member(scenario.conversation_key(conv)));
        let decision = match spec.rules.is_empty() {
            true => Decision::Plain,
            false => tool_world::decide(&view, stream),
        };
        let recorded = spec.mcp.as_ref().and_then(|mcp| {
            let same = mcp.recorded.iter().find(|r| r.arguments.as_object() == Some(&**args));
            same.or_else(|| {
                let next = mcp.recorded.get(self.recorded_next % mcp.recorded.len().max(1));
                self.recorded_next += 1;
                next
            })
        });
        // A duplicated execution the store refused (a number out of range): it had no effect.
        let mut second_execution_refused = false;
        let (mut output, mut changes, mut effect_times) = match (decision, recorded) {
            (Decision::Plain, Some(call)) if call.is_error => (format!("error: {}", call.text), Vec::new(), 0),
            (Decision::Plain, Some(call)) => (call.text.clone(), Vec::new(), 1),
            (Decision::Plain, None) => match recorded_output {
                Some(text) => (text.to_string(), Vec::new(), 1),
                None => (spec.output.render(&view, &arg), Vec::new(), 1),
            },
            (Decision::Fail(text), _) => (format!("error: {text}"), Vec::new(), 0),
            (Decision::Change { rule, changes }, _) => {
                let world = self
                    .world
                    .read()
                    .map_err(|_| HandlerError("the world's lock is poisoned".to_owned()))?;
                let refused = tool_world::duplicate_insert(&changes, &world, &scenario).or_else(|| {
                    let first = changes.first().filter(|_| kind == Some(FaultKind::WorldConflict))?;
                    Some(format!(
                        "409 conflict: {} {} was changed by another request; read it again and retry",
                        scenario.tables[first.table].name,
                        first.key.text()
                    ))
                });
                drop(world);
                match refused {
                    Some(error) => (format!("error: {error}"), Vec::new(), 0),
                    None => {
                        let mut changes = changes;
                        tool_world::after_changes(&mut view, &changes);
                        let template = spec.rules[rule].output.as_ref().unwrap_or(&spec.output);
                        let output = template.render(&view, &arg);
                        if kind == Some(FaultKind::ToolDuplicateEffect) {
                            // Executed twice: the rule's updates again, on top of the first
                            // (a second insert of the same key or delete of a gone record is
                            // refused by the store, so only updates repeat).
                            match tool_world::changes(&view, rule) {
                                Ok(again) => changes
                                    .extend(again.into_iter().filter(|c| c.op == crate::protocol::ChangeOp::Update)),
                                Err(_) => second_execution_refused = true,
                            }
                        }
                        (output, changes, 1)
                    }
                }
            }
        };
        let cancelled = committed == Some(true);
        // A compensation undoes one step: its own key, so undoing two equal steps refunds twice.
        let idempotency_key = spec.idempotent.then(|| match caller {
            ToolCaller::Agent(_) => call.args_text().to_string(),
            ToolCaller::Compensation { of, step } => format!("undo {of}#{step}: {}", call.args_text()),
        });
        // The same call again: an idempotent operation (or an idempotency key) changes nothing
        // new, and the API answers what it answered the first time.
        let repeat = idempotency_key
            .as_ref()
            .and_then(|key| self.executed.get(&(conv, key.clone())))
            .cloned();
        if let Some(first) = &repeat {
            output.clone_from(first);
            changes.clear();
        }
        let answer_as_executed = idempotency_key.is_some().then(|| output.clone());
        let mut latency_us = latency_us;
        if let Some(injection) = injection {
            let params = &scenario.faults[injection.fault].params;
            match injection.kind {
                FaultKind::ToolError => {
                    output = format!("error: {}", injection.kind.text(params.text.as_deref()));
                    effect_times = 0;
                    changes.clear();
                }
                FaultKind::ToolTimeout | FaultKind::ToolSlow if committed.is_none() => {
                    latency_us = injected_latency(&scenario, latency_us, Some(injection));
                }
                FaultKind::ToolEmpty => output.clear(),
                FaultKind::ToolInjection => {
                    output = format!("{output} {}", injection.kind.text(params.text.as_deref()));
                }
                FaultKind::ToolPartial => {
                    let half = output.chars().count() / 2;
                    output = format!("{}…", output.chars().take(half).collect::<String>());
                    // A half-done change: the first half of the writes happened, the rest did not.
                    changes.truncate(changes.len() / 2);
                }
                FaultKind::ToolStale => {
                    output = format!("{} {output}", injection.kind.text(params.text.as_deref()));
                }
                FaultKind::ToolSchemaDrift => {
                    output = format!("{{\"data\":{{\"result_v2\":{}}}}}", serde_json::Value::String(output));
                }
                FaultKind::ToolDuplicateEffect if !second_execution_refused => effect_times *= 2,
                _ => {}
            }
        }
        if let (Some(key), true) = (idempotency_key, effect_times > 0 && !cancelled) {
            match repeat {
                Some(_) => {
                    effect_times = 0;
                    changes.clear();
                }
                None => {
                    self.executed
                        .insert((conv, key), answer_as_executed.unwrap_or_default());
                }
            }
        }
        if committed.is_some() {
            // The latency was waited for before the call took effect: the answer is immediate.
            latency_us = Some(0);
        }
        let side_effect = match (&spec.effect, effect_times > 0) {
            (Some(effect), true) => Some(Effect::SideEffect {
                conv,
                name: Arc::from(effect.as_str()),
                times: effect_times,
                amount,
                subject,
                cancelled,
            }),
            _ => None,
        };
        if cancelled {
            // What the call would have done, counted apart; the world is left as it was.
            effects.extend(side_effect);
            return Ok(());
        }
        if !changes.is_empty() {
            effects.push(Effect::World {
                conv,
                changes,
                lost: kind == Some(FaultKind::WorldLostWrite),
            });
        }
        effects.extend(side_effect);
        let call_id = call.id;
        if let (Some(_), true, ToolCaller::Agent(_)) = (spec.compensation, effect_times > 0, caller) {
            // A step of the conversation's saga: the front door logs it, to undo it if need be.
            effects.push(Effect::Send {
                to: Directory::USER,
                delay_us: 0,
                payload: Payload::User(UserMsg::Compensable {
                    conv,
                    tool: self.tool,
                    call: Box::new(call),
                }),
            });
        }
        self.answer(conv, caller, call_id, output, latency_us, effects);
        Ok(())
    }

    /// Sends the call's result to its agent after `delay_us` (through the tool-output
    /// guardrails), or a compensation's to the front door; a timed-out call (`None`) never
    /// answers.
    fn answer(
        &self,
        conv: ConvId,
        caller: ToolCaller,
        call_id: u32,
        output: String,
        delay_us: Option<u64>,
        effects: &mut Vec<Effect>,
    ) {
        let Some(delay_us) = delay_us else { return };
        let agent = match caller {
            ToolCaller::Agent(agent) => agent,
            ToolCaller::Compensation { of, .. } => {
                let payload = Payload::User(UserMsg::Compensated {
                    conv,
                    tool: self.tool,
                    of,
                    call_id,
                    output: Arc::from(output),
                });
                effects.push(Effect::Send {
                    to: Directory::USER,
                    delay_us,
                    payload,
                });
                return;
            }
        };
        let result = Payload::Agent(AgentMsg::ToolResult {
            conv,
            call_id,
            tool: self.tool,
            output: Arc::from(output),
        });
        GuardRoute {
            stage: Stage::ToolOutput,
            conv,
            agent,
            tool: Some(self.tool),
            dest: self.directory.agent(agent),
        }
        .send(&self.scenario, &self.directory, result, None, delay_us, effects);
    }

    /// A call arrives: its latency is drawn, and it runs now, waits for the API, or is refused.
    pub(super) fn start(
        &mut self,
        at: Arrival,
        conv: ConvId,
        caller: ToolCaller,
        call: ToolCall,
        effects: &mut Vec<Effect>,
    ) -> Result<(), HandlerError> {
        let spec = &self.scenario.tools[self.tool];
        let family = &self.family;
        let stream = self
            .streams
            .entry(conv)
            .or_insert_with(|| family.member(self.scenario.conversation_key(conv)));
        // A recorded call answers after the latency the trace recorded, with its result.
        let recording = spec.recorded.get(&conv).and_then(|calls| {
            let seen = self.recorded_seen.entry(conv).or_default();
            *seen += 1;
            calls.get(*seen - 1)
        });
        let latency_us = Some(recording.map_or_else(|| spec.latency.sample_us(stream), |r| r.latency_us));
        let recorded_output = recording.and_then(|r| r.output.clone());
        // A `tool.error` is the call failing on its way (the fault takes the API's place): it
        // takes no slot and no token of the API's limits, and its error is the answer.
        let fails_on_the_way = at.injection.is_some_and(|i| i.kind == FaultKind::ToolError);
        let limited = (spec.load.max_concurrent.is_some() || spec.load.per_minute.is_some()) && !fails_on_the_way;
        let start_us = match limited {
            false => at.now_us,
            // The API is busy for as long as the call really takes (a hung one, for good).
            true => match self.admit(at.now_us, injected_latency(&self.scenario, latency_us, at.injection)) {
                Ok(start_us) => start_us,
                Err(error) => {
                    let output = format!("error: {error}");
                    self.answer(conv, caller, call.id, output, Some(REJECT_LATENCY_US), effects);
                    return Ok(());
                }
            },
        };
        let queued = Queued {
            conv,
            caller,
            call,
            injection: at.injection,
            latency_us,
            queued_at_us: at.now_us,
            recorded_output,
        };
        if start_us > at.now_us {
            self.expect_run(&queued);
            effects.push(Effect::Send {
                to: at.me,
                delay_us: start_us - at.now_us,
                payload: Payload::Tool(ToolMsg::Run(Box::new(queued))),
            });
            return Ok(());
        }
        self.run_or_defer(queued, effects)
    }
}

/// A call's latency under the fault it suffers: `tool.timeout` answers late or never (`None`),
/// `tool.slow` adds its latency.
fn injected_latency(scenario: &Scenario, latency_us: Option<u64>, injection: Option<Injection>) -> Option<u64> {
    let Some(injection) = injection else {
        return latency_us;
    };
    let params = &scenario.faults[injection.fault].params;
    match injection.kind {
        FaultKind::ToolTimeout => params.latency_us,
        FaultKind::ToolSlow => latency_us.map(|l| l.saturating_add(params.latency_us.unwrap_or(SLOW_LATENCY_US))),
        _ => latency_us,
    }
}

impl Behavior for ToolBehavior {
    type Msg = ToolMsg;
    type Effect = Effect;
    type Injection = Injection;

    fn handle(&mut self, context: &TurnContext, msg: ToolMsg, effects: &mut Vec<Effect>) -> Result<(), HandlerError> {
        match msg {
            ToolMsg::Invoke { conv, agent, call } => {
                let caller = ToolCaller::Agent(agent);
                if self.needs_approval(conv, &call)? {
                    self.ask_approval(
                        context,
                        CallKey {
                            conv,
                            agent,
                            call_id: call.id,
                        },
                        call,
                        effects,
                    );
                    return Ok(());
                }
                self.start(Arrival::of(context), conv, caller, call, effects)
            }
            ToolMsg::Compensate { conv, of, call, step } => self.start(
                Arrival::of(context),
                conv,
                ToolCaller::Compensation { of, step },
                *call,
                effects,
            ),
            ToolMsg::Reviewed { key, approved } => self.on_reviewed(context, key, approved, effects),
            ToolMsg::ApprovalTimeout(key) => self.on_approval_timeout(context, key, effects),
            ToolMsg::Run(queued) => {
                // A queued call cancelled before its turn takes no effect, and nobody hears.
                if self.arrived(&queued, effects) {
                    return self.run_queued(*queued, Some(true), effects);
                }
                self.run_or_defer(*queued, effects)
            }
            ToolMsg::Commit(queued) => {
                let cancelled = self.arrived(&queued, effects);
                self.run_queued(*queued, Some(cancelled), effects)
            }
            ToolMsg::Cancel(key) => {
                // A call still waiting for its approval is withdrawn; one under way is stopped
                // before it takes effect; one already done stays done.
                if !self.withdraw(key, effects) {
                    if let Some(&runs) = self.in_flight.get(&key) {
                        self.cancelled.insert(key, runs);
                    }
                }
                Ok(())
            }
        }
    }
}
