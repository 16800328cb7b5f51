//! The scheduler: the single owner of the virtual clock, the event queue, the fault plan and the
//! trace. It delivers one event at a time to one actor, waits for that actor's completion, applies
//! the effects, and moves on. Failures come back as completions too, and go to the supervisor.

use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorId, ActorRef};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::actor::{Identity, SimActor, Turn};
use super::effect::{Completion, Effect};
use super::envelope::{ActorIdx, Envelope};
use super::queue::EventQueue;
use super::taint::{LabelSpace, Labels};
use super::watchdog::{Interrupt, Watchdog};
use super::RunError;
use crate::actors::Origin;
use crate::actors::{
    AgentBehavior, AgentMsg, Directory, GuardrailBehavior, GuardrailMsg, LlmBehavior, LlmMsg, Payload, SupervisorActor,
    SupervisorMsg, SupervisorState, ToolBehavior, ToolMsg, UserBehavior, UserMsg,
};
use crate::faults::catalogue::FaultKind;
use crate::faults::{FaultPlan, Injection, MessageClass};
use crate::llm::backend::Backends;
use crate::observer::Observer;
use crate::report::{
    AgentCost, ConversationCost, Conversations, FailureRecord, FaultRecord, Outcome, RestartRecord, RunReport, Tokens,
    REPORT_SCHEMA_VERSION,
};
use crate::scenario::{ActorKind, Child, Limits, Scenario};
use crate::trace::Trace;

/// A live ractor handle, typed by actor kind.
enum Handle {
    Agent(ActorRef<Turn<AgentMsg>>),
    Llm(ActorRef<Turn<LlmMsg>>),
    Tool(ActorRef<Turn<ToolMsg>>),
    User(ActorRef<Turn<UserMsg>>),
    Supervisor(ActorRef<Turn<SupervisorMsg>>),
    Guardrail(ActorRef<Turn<GuardrailMsg>>),
}

impl Handle {
    fn cell(&self) -> ActorCell {
        match self {
            Handle::Agent(r) => r.get_cell(),
            Handle::Llm(r) => r.get_cell(),
            Handle::Tool(r) => r.get_cell(),
            Handle::User(r) => r.get_cell(),
            Handle::Supervisor(r) => r.get_cell(),
            Handle::Guardrail(r) => r.get_cell(),
        }
    }
}

/// One logical actor and its current incarnation.
struct Slot {
    logical_id: Arc<str>,
    kind: ActorKind,
    index: usize,
    handle: Option<Handle>,
    cell_id: Option<ActorId>,
    incarnation: u32,
    supervisor: Option<ActorIdx>,
    /// For supervisors: children in start order.
    children: Vec<ActorIdx>,
    received: u64,
    /// The last checkpoint of a `persist = true` agent, for its next incarnation.
    checkpoint: Option<crate::actors::agent::Checkpoint>,
    /// A restarted actor is down until then (its supervisor's restart backoff).
    down_until_us: u64,
}

/// How a turn ended, from the scheduler's side.
enum TurnEnd {
    Acked(Vec<Effect>),
    Failed(String),
}

/// One run in progress.
pub struct Scheduler {
    scenario: Arc<Scenario>,
    directory: Directory,
    seed: u64,
    limits: Limits,
    queue: EventQueue,
    now_us: u64,
    events: u64,
    messages: u64,
    /// Seq of the event being handled (for effects recorded during its turn).
    current_seq: u64,
    /// Events the network already delayed, reordered or duplicated: not faulted again, so a
    /// certain (`probability = 1.0`) network fault cannot hold a message back forever.
    network_touched: std::collections::BTreeSet<u64>,
    slots: Vec<Slot>,
    completions_tx: UnboundedSender<Completion>,
    completions_rx: UnboundedReceiver<Completion>,
    trace: Trace,
    observer: Observer,
    faults: FaultPlan,
    summary: String,
    fault_log: Vec<FaultRecord>,
    failure_log: Vec<FailureRecord>,
    restart_log: Vec<RestartRecord>,
    replay_command: String,
    /// The fault profile this seed runs under, if the scenario has profiles.
    profile_name: Option<String>,
    labels: LabelSpace,
    /// What each agent has absorbed of each conversation it holds: its answers descend from it.
    /// (Looked up and cleared only, never iterated into anything observable.)
    absorbed: std::collections::HashMap<(ActorIdx, u32), Labels>,
    /// The taint of the turn being handled, inherited by its sends and side effects.
    turn_labels: Labels,
    watchdog: Watchdog,
    interrupt: Interrupt,
    /// Where live and replayed models get their answers.
    backends: Arc<Backends>,
}

impl Scheduler {
    /// Prepares a run; nothing is spawned until [`Scheduler::run`].
    pub fn new(
        scenario: Arc<Scenario>,
        seed: u64,
        limits: Limits,
        trace: Trace,
        replay_command: String,
        backends: Arc<Backends>,
    ) -> Scheduler {
        let directory = Directory::new(&scenario);
        let slots = build_slots(&scenario, &directory);
        let logical_ids: Vec<String> = slots.iter().map(|s| s.logical_id.to_string()).collect();
        let profile = crate::faults::pick_profile(&scenario, seed);
        let profile_name = profile.map(|p| p.name.clone());
        let faults = FaultPlan::new(&scenario.faults, profile, seed, &logical_ids);
        let (completions_tx, completions_rx) = unbounded_channel();
        let scenario_for_labels = scenario.clone();
        Scheduler {
            observer: Observer::new(&scenario),
            scenario,
            directory,
            seed,
            limits,
            queue: EventQueue::default(),
            now_us: 0,
            events: 0,
            messages: 0,
            current_seq: 0,
            network_touched: Default::default(),
            slots,
            completions_tx,
            completions_rx,
            trace,
            faults,
            summary: String::new(),
            fault_log: Vec::new(),
            failure_log: Vec::new(),
            restart_log: Vec::new(),
            replay_command,
            profile_name,
            labels: LabelSpace::new(&scenario_for_labels),
            absorbed: Default::default(),
            turn_labels: Labels::EMPTY,
            watchdog: Watchdog::new(limits),
            interrupt: Interrupt::default(),
            backends,
        }
    }

    /// Lets a signal (or a replayed interruption) end the run at the next event boundary.
    pub fn interrupt_on(&mut self, interrupt: Interrupt) {
        self.interrupt = interrupt;
    }

    /// Runs to the end; returns the report and, in memory mode, the trace bytes.
    pub async fn run(mut self) -> Result<(RunReport, Vec<u8>), RunError> {
        self.write_header()?;
        self.spawn_all().await?;
        self.queue.push(
            0,
            Envelope {
                from: Directory::USER,
                to: Directory::USER,
                sent_at_us: 0,
                labels: Labels::EMPTY,
                payload: Payload::User(UserMsg::Begin),
            },
        );
        let (outcome, detail) = self.event_loop().await?;
        self.stop_all();
        self.trace.record(|r| {
            r.str("kind", "end")
                .u64("t_us", self.now_us)
                .u64("events", self.events)
                .str("outcome", outcome.name());
            if let Some(detail) = &detail {
                r.str("detail", detail);
            }
        })?;
        let (digest, bytes) =
            std::mem::replace(&mut self.trace, Trace::open(crate::trace::TraceMode::Off)?).finish()?;
        let scenario = self.scenario.clone();
        let invariants = self.observer.finish(&scenario);
        let mut report = self.report(outcome, detail, digest);
        report.invariants = invariants;
        Ok((report, bytes))
    }

    fn write_header(&mut self) -> Result<(), RunError> {
        let scenario = &self.scenario;
        self.trace.record(|r| {
            r.str("kind", "header")
                .str("agentsim", env!("CARGO_PKG_VERSION"))
                .u64("trace_format", 1)
                .str("scenario", &scenario.name)
                .str("scenario_hash", &scenario.source_hash)
                .u64("seed", self.seed)
                .u64("max_events", self.limits.max_events)
                .u64("max_virtual_time_us", self.limits.max_virtual_time_us)
                .u64("max_queue_len", self.limits.max_queue_len)
                .u64("max_message_bytes", self.limits.max_message_bytes)
                .u64("max_restarts_total", self.limits.max_restarts_total)
                .u64("max_tool_wait_us", self.limits.max_tool_wait_us)
                .raw(
                    "profile",
                    &self.profile_name.as_deref().map_or("null".to_owned(), |p| {
                        let mut quoted = Vec::new();
                        crate::trace::escape_json_into(p, &mut quoted);
                        String::from_utf8_lossy(&quoted).into_owned()
                    }),
                )
                .raw("cassette", "null");
        })?;
        Ok(())
    }

    async fn event_loop(&mut self) -> Result<(Outcome, Option<String>), RunError> {
        loop {
            if let Some(detail) = self.interrupt.check(self.events) {
                return Ok((Outcome::Interrupted, Some(detail)));
            }
            if let Some(overdue) = self.watchdog.overdue(self.queue.peek_time_us()) {
                return Ok((Outcome::LimitExceeded, Some(self.overdue_detail(overdue))));
            }
            let Some(event) = self.queue.pop() else {
                let unanswered = self
                    .observer
                    .conversations
                    .iter()
                    .any(|c| c.started_at_us.is_some() && c.answered_at_us.is_none() && !c.abandoned);
                return Ok(if unanswered {
                    (Outcome::Stalled, None)
                } else {
                    (Outcome::Completed, None)
                });
            };
            if event.at_us > self.limits.max_virtual_time_us {
                return Ok((
                    Outcome::LimitExceeded,
                    Some(format!("max_virtual_time ({}us)", self.limits.max_virtual_time_us)),
                ));
            }
            if self.events >= self.limits.max_events {
                return Ok((
                    Outcome::LimitExceeded,
                    Some(format!("max_events ({})", self.limits.max_events)),
                ));
            }
            let down_until_us = self.slots[event.envelope.to.index()].down_until_us;
            if event.at_us < down_until_us {
                // The receiver is down (restart backoff): the message waits in its mailbox.
                self.queue.push(down_until_us, event.envelope);
                continue;
            }
            self.now_us = event.at_us;
            self.events += 1;
            let seq = event.seq;
            self.current_seq = seq;
            let envelope = event.envelope;
            let to = envelope.to;
            self.watchdog.on_deliver(to, &envelope.payload);
            self.messages += u64::from(envelope.from != to);
            self.slots[to.index()].received += 1;
            let received = self.slots[to.index()].received;

            let class = match &envelope.payload {
                _ if envelope.from == to => MessageClass::Other,
                Payload::Llm(_) => MessageClass::LlmCall,
                Payload::Tool(_) => MessageClass::ToolCall,
                Payload::Agent(AgentMsg::Start {
                    origin: Origin::User, ..
                }) => MessageClass::UserOpening,
                Payload::Agent(AgentMsg::Start {
                    origin: Origin::Handoff(_),
                    ..
                }) => MessageClass::Handoff,
                Payload::Agent(_) => MessageClass::AgentMessage,
                Payload::Guardrail(GuardrailMsg::Check(_)) => MessageClass::GuardCheck,
                _ => MessageClass::Other,
            };
            let ids = (
                &*self.slots[envelope.from.index()].logical_id,
                &*self.slots[to.index()].logical_id,
            );
            let injection = if self.network_touched.remove(&seq) {
                None
            } else {
                self.faults
                    .on_deliver(self.now_us, to, received, class, envelope.payload.text(), ids)
            };
            let mut turn_now_us = self.now_us;
            if let Some(fired) = injection {
                self.trace_fault(seq, to, fired)?;
                let params = &self.scenario.faults[fired.fault].params;
                match fired.kind {
                    // The network loses, holds back or repeats the message; the actor never knows.
                    FaultKind::MessageDrop | FaultKind::NetworkPartition => {
                        self.observer.on_lost(seq, self.now_us, &envelope);
                        continue;
                    }
                    FaultKind::MessageDelay | FaultKind::MessageReorder => {
                        let delay_us = match fired.kind {
                            FaultKind::MessageDelay => params.latency_us.unwrap_or(5_000_000),
                            _ => 0,
                        };
                        let mut envelope = envelope;
                        envelope.labels.insert(self.labels.fault(fired.fault));
                        let requeued = self.queue.push(self.now_us + delay_us, envelope);
                        self.network_touched.insert(requeued);
                        continue;
                    }
                    FaultKind::MessageDuplicate => {
                        let mut labels = envelope.labels.clone();
                        labels.insert(self.labels.fault(fired.fault));
                        let copy = Envelope {
                            payload: envelope.payload.clone(),
                            labels,
                            ..envelope
                        };
                        let requeued = self.queue.push(self.now_us, copy);
                        self.network_touched.insert(requeued);
                    }
                    FaultKind::ClockSkew => turn_now_us += params.latency_us.unwrap_or(30_000_000),
                    FaultKind::UserAbandon => {
                        if let Payload::Agent(AgentMsg::Start { conv, .. }) = &envelope.payload {
                            self.observer.abandon(*conv);
                        }
                    }
                    _ => {}
                }
            }

            self.trace_delivery(seq, &envelope)?;
            self.taint_turn(seq, &envelope, injection);
            let slots = &self.slots;
            self.observer.on_deliver(
                &self.scenario,
                seq,
                self.now_us,
                &envelope,
                &self.turn_labels,
                &|a: ActorIdx| slots[a.index()].logical_id.to_string(),
            );

            let turn_end = self.deliver(seq, turn_now_us, envelope, injection).await?;
            match turn_end {
                TurnEnd::Acked(effects) => {
                    if let Some(limit) = self.apply(to, effects)? {
                        return Ok((Outcome::LimitExceeded, Some(limit)));
                    }
                }
                TurnEnd::Failed(error) => {
                    if let Some((outcome, detail)) = self.on_failure(seq, to, error).await? {
                        return Ok((outcome, Some(detail)));
                    }
                }
            }
        }
    }

    /// Works out the taint of the turn about to run: the message's labels, the fault that fired
    /// on it, and — for an agent — everything it has absorbed of the conversation so far.
    fn taint_turn(&mut self, seq: u64, envelope: &Envelope, injection: Option<Injection>) {
        let mut labels = envelope.labels.clone();
        if let Some(fired) = injection {
            // A network fault's label travels with the message (added where it was requeued).
            if !matches!(
                fired.kind,
                FaultKind::MessageDelay | FaultKind::MessageReorder | FaultKind::MessageDuplicate
            ) {
                let id = self.labels.fault(fired.fault);
                self.observer.taint.on_source(id, seq, self.now_us, envelope.to);
                labels.insert(id);
            }
        }
        let to = envelope.to;
        if self.slots[to.index()].kind == ActorKind::Agent {
            if let Some(conv) = envelope.payload.conv() {
                let absorbed = self.absorbed.entry((to, conv)).or_default();
                absorbed.union_with(&labels);
                labels = absorbed.clone();
            }
        }
        if !labels.is_empty() {
            self.observer
                .taint
                .on_reach(&labels, seq, self.now_us, to, &envelope.payload);
        }
        self.turn_labels = labels;
    }

    fn trace_fault(&mut self, seq: u64, to: ActorIdx, fired: Injection) -> Result<(), RunError> {
        let target = self.slots[to.index()].logical_id.clone();
        let fault = &self.scenario.faults[fired.fault];
        let mut params = String::new();
        let p = &fault.params;
        for (name, value) in [("retry_after_us", p.retry_after_us), ("latency_us", p.latency_us)] {
            if let Some(value) = value {
                params.push_str(&format!("{}{name}={value}", if params.is_empty() { "" } else { " " }));
            }
        }
        for (name, value) in [("text", &p.text), ("tool", &p.tool)] {
            if let Some(value) = value {
                params.push_str(&format!("{}{name}={value:?}", if params.is_empty() { "" } else { " " }));
            }
        }
        let now_us = self.now_us;
        self.trace.record(|r| {
            r.str("kind", "fault")
                .u64("seq", seq)
                .u64("t_us", now_us)
                .str("fault", fired.kind.name())
                .str("name", &fault.name)
                .str("actor", &target)
                .str("params", &params);
        })?;
        self.fault_log.push(FaultRecord {
            seq,
            t_us: now_us,
            kind: fired.kind.name().to_owned(),
            name: fault.name.clone(),
            target: target.to_string(),
            fault: fired.fault,
            message: self.slots[to.index()].received,
        });
        Ok(())
    }

    fn trace_verdict(&mut self, record: &crate::actors::guardrail::VerdictRecord) -> Result<(), RunError> {
        let guardrail = &self.scenario.guardrails[record.guardrail].name;
        let agent = &self.slots[self.directory.agent(record.agent).index()].logical_id;
        let (seq, now_us) = (self.current_seq, self.now_us);
        self.trace.record(|r| {
            r.str("kind", "guard")
                .u64("seq", seq)
                .u64("t_us", now_us)
                .str("guardrail", guardrail)
                .str("stage", record.stage.name())
                .str("actor", agent)
                .u64("conv", record.conv as u64)
                .str("verdict", record.verdict.name())
                .u64("latency_us", record.latency_us);
            if let Some(mistake) = record.mistake {
                r.str("mistake", mistake.name());
            }
            if !record.detail.is_empty() {
                r.str("detail", &record.detail);
            }
        })?;
        Ok(())
    }

    fn trace_delivery(&mut self, seq: u64, envelope: &Envelope) -> Result<(), RunError> {
        if !self.trace.is_on() {
            return Ok(());
        }
        self.summary.clear();
        envelope.payload.summarize(&self.scenario, &mut self.summary);
        let (from, to) = (
            &self.slots[envelope.from.index()].logical_id,
            &self.slots[envelope.to.index()].logical_id,
        );
        let summary = &self.summary;
        let now_us = self.now_us;
        self.trace.record(|r| {
            r.u64("seq", seq)
                .u64("t_us", now_us)
                .str("kind", "deliver")
                .str("from", from)
                .str("to", to)
                .str("msg", summary);
        })?;
        Ok(())
    }

    /// Delivers one turn and waits for its completion.
    /// Delivers one turn and waits for its completion. `now_us` is the time the actor sees
    /// (skewed by `clock.skew`); effects are scheduled from the scheduler's own clock.
    async fn deliver(
        &mut self,
        seq: u64,
        now_us: u64,
        envelope: Envelope,
        injection: Option<Injection>,
    ) -> Result<TurnEnd, RunError> {
        let to = envelope.to;
        let slot = &self.slots[to.index()];
        let from = envelope.from;
        macro_rules! turn {
            ($msg:expr) => {
                Turn {
                    now_us,
                    seq,
                    from,
                    injection,
                    msg: $msg,
                }
            };
        }
        let sent = match (&slot.handle, envelope.payload) {
            (Some(Handle::Agent(r)), Payload::Agent(m)) => r.cast(turn!(m)).is_ok(),
            (Some(Handle::Llm(r)), Payload::Llm(m)) => r.cast(turn!(m)).is_ok(),
            (Some(Handle::Tool(r)), Payload::Tool(m)) => r.cast(turn!(m)).is_ok(),
            (Some(Handle::User(r)), Payload::User(m)) => r.cast(turn!(m)).is_ok(),
            (Some(Handle::Supervisor(r)), Payload::Supervisor(m)) => r.cast(turn!(m)).is_ok(),
            (Some(Handle::Guardrail(r)), Payload::Guardrail(m)) => r.cast(turn!(m)).is_ok(),
            (_, payload) => {
                return Err(RunError::Internal(format!(
                    "a {payload:?} message was addressed to {}",
                    slot.logical_id
                )));
            }
        };
        if !sent {
            return Err(RunError::Internal(format!("{} is not running", slot.logical_id)));
        }
        self.await_completion(to).await
    }

    async fn await_completion(&mut self, actor: ActorIdx) -> Result<TurnEnd, RunError> {
        let slot = &self.slots[actor.index()];
        loop {
            match self.completions_rx.recv().await {
                Some(Completion::Ack {
                    actor: from,
                    incarnation,
                    effects,
                }) if from == actor && incarnation == slot.incarnation => {
                    return Ok(TurnEnd::Acked(effects));
                }
                Some(Completion::Failed { actor_id, error }) if Some(actor_id) == slot.cell_id => {
                    return Ok(TurnEnd::Failed(error));
                }
                // Late news from an earlier incarnation: not part of this run's story.
                Some(_) => continue,
                None => return Err(RunError::Internal("the completion channel closed".to_owned())),
            }
        }
    }

    /// Queues the effects of a turn. Returns the limit that was hit, if one was.
    fn apply(&mut self, from: ActorIdx, effects: Vec<Effect>) -> Result<Option<String>, RunError> {
        for effect in effects {
            match effect {
                Effect::Persist(checkpoint) => self.slots[from.index()].checkpoint = Some(checkpoint),
                Effect::Send { to, delay_us, payload } => {
                    if self.queue.len() as u64 >= self.limits.max_queue_len {
                        return Ok(Some(format!("max_queue_len ({})", self.limits.max_queue_len)));
                    }
                    if let Some(size) = self.watchdog.too_big(&payload) {
                        return Ok(Some(format!(
                            "max_message_bytes ({}): {} sent {size} bytes to {}",
                            self.limits.max_message_bytes,
                            self.slots[from.index()].logical_id,
                            self.slots[to.index()].logical_id
                        )));
                    }
                    if let Payload::Tool(ToolMsg::Invoke { conv, agent, call }) = &payload {
                        // The agent that made the call (a guardrail may be the one passing it on).
                        self.watch_tool_call(self.directory.agent(*agent), to, *conv, call.id);
                    }
                    let at_us = self.now_us.saturating_add(delay_us);
                    let mut labels = self.turn_labels.clone();
                    // Untrusted sources stamp what they emit: the user's messages, tools' outputs.
                    let stamp = match self.slots[from.index()].kind {
                        _ if to == from => None,
                        ActorKind::User => Some(LabelSpace::USER),
                        ActorKind::Tool => Some(self.labels.tool(self.slots[from.index()].index)),
                        _ => None,
                    };
                    if let Some(id) = stamp {
                        labels.insert(id);
                        self.observer.taint.on_source(id, self.current_seq, self.now_us, from);
                    }
                    self.queue.push(
                        at_us,
                        Envelope {
                            from,
                            to,
                            sent_at_us: self.now_us,
                            labels,
                            payload,
                        },
                    );
                }
                Effect::Verdict(record) => {
                    self.trace_verdict(&record)?;
                    let guardrail = self.scenario.guardrails[record.guardrail].name.clone();
                    self.observer.on_verdict(&record);
                    if record.contained {
                        let labels = std::mem::take(&mut self.turn_labels);
                        self.observer
                            .taint
                            .on_stopped(&labels, &guardrail, self.current_seq, self.now_us);
                    }
                }
                Effect::SideEffect { conv, name, times } => {
                    let actor = self.slots[from.index()].logical_id.clone();
                    self.observer
                        .taint
                        .on_side_effect(&self.turn_labels, self.current_seq, self.now_us, &actor, &name);
                    self.observer.on_side_effect(
                        &self.scenario,
                        self.current_seq,
                        self.now_us,
                        &actor,
                        conv,
                        &name,
                        times,
                        &self.turn_labels,
                    );
                }
                Effect::Restart { .. } | Effect::Escalate { .. } => {
                    return Err(RunError::Internal(format!(
                        "{} asked for a supervision effect outside a supervision turn",
                        self.slots[from.index()].logical_id
                    )));
                }
            }
        }
        Ok(None)
    }

    /// Watches a tool call for `max_tool_wait`, unless its agent bounds the wait itself.
    fn watch_tool_call(&mut self, agent: ActorIdx, tool: ActorIdx, conv: crate::actors::ConvId, call_id: u32) {
        let (kind, index) = self.directory.locate(agent);
        if kind == ActorKind::Agent && self.scenario.agents[index].tool_timeout_us.is_none() {
            self.watchdog.on_tool_call(self.now_us, agent, tool, conv, call_id);
        }
    }

    fn overdue_detail(&self, overdue: super::watchdog::Overdue) -> String {
        format!(
            "max_tool_wait ({}us): {} did not answer call {} of {} in conversation {}",
            self.limits.max_tool_wait_us,
            self.slots[overdue.tool.index()].logical_id,
            overdue.call_id,
            self.slots[overdue.agent.index()].logical_id,
            overdue.conv
        )
    }

    /// Handles a failed turn: the supervisor decides, restarts happen, or the failure escalates.
    /// Returns how the run ends when the failure passes the root or the restarts pass their cap.
    async fn on_failure(
        &mut self,
        seq: u64,
        failed: ActorIdx,
        error: String,
    ) -> Result<Option<(Outcome, String)>, RunError> {
        let slot = &self.slots[failed.index()];
        let (actor, incarnation) = (slot.logical_id.clone(), slot.incarnation);
        let now_us = self.now_us;
        self.trace.record(|r| {
            r.str("kind", "fail")
                .u64("seq", seq)
                .u64("t_us", now_us)
                .str("actor", &actor)
                .u64("incarnation", incarnation as u64)
                .str("error", &error);
        })?;
        self.failure_log.push(FailureRecord {
            seq,
            t_us: now_us,
            actor: actor.to_string(),
            incarnation,
            error: error.clone(),
        });
        if failed == Directory::USER {
            return Err(RunError::Internal(format!("the traffic source failed: {error}")));
        }
        let mut child = failed;
        let mut error: Arc<str> = Arc::from(error);
        loop {
            let Some(supervisor) = self.slots[child.index()].supervisor else {
                return Ok(Some((Outcome::Escalated, error.to_string())));
            };
            let turn_seq = self.queue.take_seq();
            let child_id = self.slots[child.index()].logical_id.clone();
            let envelope = Envelope {
                from: child,
                to: supervisor,
                sent_at_us: now_us,
                labels: Labels::EMPTY,
                payload: Payload::Supervisor(SupervisorMsg::ChildFailed {
                    child,
                    child_id: child_id.clone(),
                    error: error.clone(),
                }),
            };
            self.trace_delivery(turn_seq, &envelope)?;
            let effects = match self.deliver(turn_seq, now_us, envelope, None).await? {
                TurnEnd::Acked(effects) => effects,
                TurnEnd::Failed(e) => return Err(RunError::Internal(format!("supervisor failed: {e}"))),
            };
            for effect in effects {
                match effect {
                    Effect::Restart { children } => {
                        for c in children {
                            if self.watchdog.restart_exceeds() {
                                return Ok(Some((
                                    Outcome::LimitExceeded,
                                    format!(
                                        "max_restarts_total ({}): {} would restart {} again",
                                        self.limits.max_restarts_total,
                                        self.slots[supervisor.index()].logical_id,
                                        self.slots[c.index()].logical_id
                                    ),
                                )));
                            }
                            self.restart(c, supervisor).await?;
                        }
                        return Ok(None);
                    }
                    Effect::Escalate { reason } => {
                        let supervisor_id = self.slots[supervisor.index()].logical_id.clone();
                        self.trace.record(|r| {
                            r.str("kind", "escalate")
                                .u64("t_us", now_us)
                                .str("actor", &supervisor_id)
                                .str("reason", &reason);
                        })?;
                        error = Arc::from(format!(
                            "{supervisor_id} gave up ({reason}) after {child_id} failed: {error}"
                        ));
                        child = supervisor;
                    }
                    Effect::Persist(_) => {}
                    Effect::Send { .. } | Effect::SideEffect { .. } | Effect::Verdict(_) => {
                        return Err(RunError::Internal("a supervisor sent a message".to_owned()))
                    }
                }
            }
        }
    }

    /// Restarts `actor` (and, for a supervisor, its whole subtree) with fresh state.
    async fn restart(&mut self, actor: ActorIdx, supervisor: ActorIdx) -> Result<(), RunError> {
        if let Some(handle) = self.slots[actor.index()].handle.take() {
            // Stopping a supervisor stops its subtree too.
            handle.cell().stop(None);
        }
        let mut order = vec![actor];
        let mut at = 0;
        while at < order.len() {
            let children = self.slots[order[at].index()].children.clone();
            order.extend(children);
            at += 1;
        }
        for idx in order {
            if self.slots[idx.index()].checkpoint.is_none() {
                // Fresh state: the new incarnation remembers nothing it absorbed.
                self.absorbed.retain(|(actor, _), _| *actor != idx);
            }
            let slot = &mut self.slots[idx.index()];
            slot.incarnation += 1;
            slot.down_until_us =
                self.now_us + self.scenario.supervisors[self.directory.locate(supervisor).1].restart_backoff_us;
            slot.handle = None;
            let (logical_id, incarnation) = (slot.logical_id.clone(), slot.incarnation);
            self.spawn(idx).await?;
            let supervisor_id = self.slots[self.slots[idx.index()].supervisor.unwrap_or(supervisor).index()]
                .logical_id
                .clone();
            let now_us = self.now_us;
            self.trace.record(|r| {
                r.str("kind", "restart")
                    .u64("t_us", now_us)
                    .str("actor", &logical_id)
                    .u64("incarnation", incarnation as u64)
                    .str("supervisor", &supervisor_id);
            })?;
            self.restart_log.push(RestartRecord {
                t_us: now_us,
                actor: logical_id.to_string(),
                incarnation,
                supervisor: supervisor_id.to_string(),
            });
        }
        Ok(())
    }

    /// Spawns every actor: supervisors top-down, then the user, LLMs, tools and agents.
    async fn spawn_all(&mut self) -> Result<(), RunError> {
        let mut order = vec![self.directory.supervisor(0)];
        let mut at = 0;
        while at < order.len() {
            let children = self.slots[order[at].index()].children.clone();
            order.extend(
                children
                    .into_iter()
                    .filter(|c| self.slots[c.index()].kind == ActorKind::Supervisor),
            );
            at += 1;
        }
        order.push(Directory::USER);
        for kind in [ActorKind::Llm, ActorKind::Tool, ActorKind::Agent, ActorKind::Guardrail] {
            order.extend(
                (0..self.slots.len())
                    .filter(|i| self.slots[*i].kind == kind)
                    .map(|i| ActorIdx(i as u32)),
            );
        }
        for idx in order {
            self.spawn(idx).await?;
        }
        Ok(())
    }

    async fn spawn(&mut self, idx: ActorIdx) -> Result<(), RunError> {
        let slot = &self.slots[idx.index()];
        let parent = slot
            .supervisor
            .and_then(|s| self.slots[s.index()].handle.as_ref().map(Handle::cell));
        let identity = Identity {
            me: idx,
            incarnation: slot.incarnation,
            completions: self.completions_tx.clone(),
        };
        let (scenario, directory, seed, incarnation, index) = (
            self.scenario.clone(),
            self.directory,
            self.seed,
            slot.incarnation,
            slot.index,
        );
        let handle = match slot.kind {
            ActorKind::Agent => Handle::Agent(
                start(
                    SimActor::default(),
                    (
                        AgentBehavior::new(scenario, directory, index, seed, incarnation, slot.checkpoint.clone()),
                        identity,
                    ),
                    parent,
                )
                .await?,
            ),
            ActorKind::Llm => Handle::Llm(
                start(
                    SimActor::default(),
                    (
                        LlmBehavior::new(scenario, directory, index, seed, incarnation, self.backends.clone()),
                        identity,
                    ),
                    parent,
                )
                .await?,
            ),
            ActorKind::Tool => Handle::Tool(
                start(
                    SimActor::default(),
                    (
                        ToolBehavior::new(scenario, directory, index, seed, incarnation),
                        identity,
                    ),
                    parent,
                )
                .await?,
            ),
            ActorKind::Guardrail => Handle::Guardrail(
                start(
                    SimActor::default(),
                    (
                        GuardrailBehavior::new(scenario, directory, index, seed, incarnation),
                        identity,
                    ),
                    parent,
                )
                .await?,
            ),
            ActorKind::User => Handle::User(
                start(
                    SimActor::default(),
                    (UserBehavior::new(scenario, directory, seed), identity),
                    parent,
                )
                .await?,
            ),
            ActorKind::Supervisor => {
                let spec = &scenario.supervisors[index];
                let state = SupervisorState::new(
                    identity,
                    spec.strategy,
                    spec.max_restarts,
                    spec.within_us,
                    slot.children.clone(),
                );
                Handle::Supervisor(start(SupervisorActor, state, parent).await?)
            }
        };
        let slot = &mut self.slots[idx.index()];
        slot.cell_id = Some(handle.cell().get_id());
        slot.handle = Some(handle);
        Ok(())
    }

    fn stop_all(&mut self) {
        for slot in self.slots.iter_mut().rev() {
            if let Some(handle) = slot.handle.take() {
                handle.cell().stop(None);
            }
        }
    }

    fn report(&self, outcome: Outcome, outcome_detail: Option<String>, digest: String) -> RunReport {
        let o = &self.observer;
        let started: Vec<_> = o.conversations.iter().filter(|c| c.started_at_us.is_some()).collect();
        let answered = started
            .iter()
            .filter(|c| c.status == Some(crate::actors::AnswerStatus::Answered))
            .count() as u64;
        let max_turns = started
            .iter()
            .filter(|c| c.status == Some(crate::actors::AnswerStatus::MaxTurns))
            .count() as u64;
        let ended =
            |status: crate::actors::AnswerStatus| started.iter().filter(|c| c.status == Some(status)).count() as u64;
        let failed = ended(crate::actors::AnswerStatus::Failed);
        let (blocked, halted, escalated) = (
            ended(crate::actors::AnswerStatus::Blocked),
            ended(crate::actors::AnswerStatus::Halted),
            ended(crate::actors::AnswerStatus::Escalated),
        );
        RunReport {
            schema_version: REPORT_SCHEMA_VERSION,
            agentsim_version: env!("CARGO_PKG_VERSION").to_owned(),
            scenario: self.scenario.name.clone(),
            scenario_hash: self.scenario.source_hash.clone(),
            seed: self.seed,
            profile: self.profile_name.clone(),
            outcome,
            outcome_detail,
            digest,
            virtual_time_us: self.now_us,
            events: self.events,
            messages: self.messages,
            llm_calls: o.llm_calls,
            llm_errors: o.llm_errors,
            tool_calls: o.tool_calls,
            tokens: Tokens {
                input: o.input_tokens,
                cached_input: o.cached_input_tokens,
                output: o.output_tokens,
                total: o.input_tokens + o.output_tokens,
            },
            cost_usd: o.cost_pusd as f64 / 1e12,
            cost_pusd: o.cost_pusd,
            cost_by_agent: self
                .scenario
                .agents
                .iter()
                .zip(&o.agents)
                .filter(|(_, account)| account.llm_calls > 0)
                .map(|(agent, account)| (agent.name.clone(), AgentCost::from_account(account)))
                .collect(),
            cost_per_conversation: ConversationCost::from_costs(
                &o.conversations
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.started_at_us.is_some())
                    .map(|(conv, c)| (conv as u32, c.cost_pusd))
                    .collect::<Vec<_>>(),
            ),
            conversations: Conversations {
                started: started.len() as u64,
                answered,
                max_turns,
                failed,
                unanswered: started.len() as u64 - answered - max_turns - failed - blocked - halted - escalated,
                abandoned: started.iter().filter(|c| c.abandoned).count() as u64,
                blocked,
                halted,
                escalated,
            },
            effects: o.effects.clone(),
            faults: self.fault_log.clone(),
            failures: self.failure_log.clone(),
            restarts: self.restart_log.clone(),
            invariants: Vec::new(),
            guardrails: o.guardrails.clone(),
            blast_radius: o.taint.report(&self.scenario, &self.labels, &|a: ActorIdx| {
                self.slots[a.index()].logical_id.to_string()
            }),
            answered: o
                .conversations
                .iter()
                .map(|c| c.status == Some(crate::actors::AnswerStatus::Answered))
                .collect(),
            replay: self.replay_command.clone(),
        }
    }
}

async fn start<A: Actor>(
    actor: A,
    args: A::Arguments,
    parent: Option<ActorCell>,
) -> Result<ActorRef<A::Msg>, RunError> {
    let spawned = match parent {
        Some(parent) => Actor::spawn_linked(None, actor, args, parent).await,
        None => Actor::spawn(None, actor, args).await,
    };
    spawned
        .map(|(actor_ref, _join)| actor_ref)
        .map_err(|e| RunError::Internal(format!("an actor failed to start: {e}")))
}

/// The actor table: logical ids, kinds and the supervision tree.
fn build_slots(scenario: &Scenario, directory: &Directory) -> Vec<Slot> {
    let mut slots: Vec<Slot> = (0..directory.total)
        .map(|i| {
            let idx = ActorIdx(i);
            let (kind, index) = directory.locate(idx);
            Slot {
                logical_id: Arc::from(directory.logical_id(scenario, idx)),
                kind,
                index,
                handle: None,
                cell_id: None,
                incarnation: 0,
                supervisor: None,
                children: Vec::new(),
                received: 0,
                checkpoint: None,
                down_until_us: 0,
            }
        })
        .collect();
    let root = directory.supervisor(0);
    slots[Directory::USER.index()].supervisor = Some(root);
    for (s, spec) in scenario.supervisors.iter().enumerate() {
        let me = directory.supervisor(s);
        for child in &spec.children {
            let idx = match *child {
                Child::Actor { kind, index } => directory.actor(kind, index),
                Child::Supervisor(index) => directory.supervisor(index),
            };
            slots[idx.index()].supervisor = Some(me);
            slots[me.index()].children.push(idx);
        }
    }
    slots
}
