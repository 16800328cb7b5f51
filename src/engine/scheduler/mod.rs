//! The scheduler: the single owner of the virtual clock, the event queue, the fault plan and the
//! trace. It delivers one event at a time to one actor, waits for that actor's completion, applies
//! the effects, and moves on. Failures come back as completions too, and go to the supervisor.
//!
//! The loop is here; what happens around one delivery has a file each: `network` (faults the
//! network acts out), `taint` (labels stamped and inherited), `supervision` (failures, restarts,
//! spawning), `records` (what the trace writes).

mod network;
mod records;
mod supervision;
mod taint;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::fault_plan::{pick_profile, FaultPlan, MessageClass};
use super::observe::{Observe, ReplyFor};
use super::slots::{build_slots, Handle, Slot};
use super::watchdog::{Interrupt, Overdue, Watchdog};
use super::{EngineRun, FailureRecord, FaultRecord, Outcome, RestartRecord, RunError};
use crate::kernel::{mailbox, ActorIdx, EventQueue, Labels, Mailbox, Poster};
use crate::llm::backend::Backends;
use crate::protocol::{
    Completion, Directory, Effect, Envelope, Injection, LabelSpace, Payload, SharedWorld, ToolMsg, Turn, UserMsg,
    WorldChange, WorldState,
};
use crate::scenario::{ActorKind, Limits, Scenario};
use crate::trace::{Record, Trace};

/// How a turn ended, from the scheduler's side.
pub(super) enum TurnEnd {
    Acked(Vec<Effect>),
    Failed(String),
}

/// One run in progress.
pub struct Scheduler<O> {
    scenario: Arc<Scenario>,
    directory: Directory,
    seed: u64,
    limits: Limits,
    queue: EventQueue<Payload>,
    now_us: u64,
    events: u64,
    messages: u64,
    /// Seq of the event being handled (for effects recorded during its turn).
    current_seq: u64,
    /// Events the network already delayed, reordered or duplicated: not faulted again, so a
    /// certain (`probability = 1.0`) network fault cannot hold a message back forever.
    network_touched: BTreeSet<u64>,
    slots: Vec<Slot>,
    completions_tx: Poster<Completion>,
    completions_rx: Mailbox<Completion>,
    trace: Trace,
    observer: O,
    faults: FaultPlan,
    fault_log: Vec<FaultRecord>,
    failure_log: Vec<FailureRecord>,
    restart_log: Vec<RestartRecord>,
    /// The fault profile this seed runs under, if the scenario has profiles.
    profile_name: Option<String>,
    labels: LabelSpace,
    /// What each agent has absorbed of each conversation it holds: its answers descend from it.
    /// Only tainted conversations have an entry. (Ordered by key and never hashed: no
    /// per-process hash seed, and no rehashing as it grows.)
    absorbed: BTreeMap<(ActorIdx, u32), Labels>,
    /// The taint of the turn being handled, inherited by its sends and side effects.
    turn_labels: Labels,
    /// While a failure is being handled: the message the failed actor had in hand, when its
    /// `durability` is `"at-least-once"` (its restart delivers it again).
    redeliver: Option<Envelope>,
    watchdog: Watchdog,
    interrupt: Interrupt,
    /// Where live and replayed models get their answers.
    backends: Arc<Backends>,
    /// The world the tools act on: read by tools in their turn, written here between turns.
    world: SharedWorld,
    /// Emptied effect vectors, handed to the next turns to fill (see [`Turn::effects`]).
    spare_effects: Vec<Vec<Effect>>,
}

/// How many emptied effect vectors are kept for reuse: one turn is in flight at a time, so a
/// few cover every turn.
const SPARE_EFFECTS: usize = 4;

impl<O: Observe> Scheduler<O> {
    /// Prepares a run; nothing is spawned until [`Scheduler::run`].
    pub fn new(
        scenario: Arc<Scenario>,
        seed: u64,
        limits: Limits,
        trace: Trace,
        observer: O,
        backends: Arc<Backends>,
    ) -> Scheduler<O> {
        let directory = Directory::new(&scenario);
        let slots = build_slots(&scenario, &directory);
        let logical_ids: Vec<String> = slots.iter().map(|s| s.logical_id.to_string()).collect();
        let profile = pick_profile(&scenario, seed);
        let profile_name = profile.map(|p| p.name.clone());
        let faults = FaultPlan::new(&scenario.faults, profile, seed, &logical_ids);
        let (completions_tx, completions_rx) = mailbox();
        let labels = LabelSpace::new(&scenario);
        let scenario_for_world = scenario.clone();
        Scheduler {
            scenario,
            directory,
            seed,
            limits,
            queue: EventQueue::default(),
            now_us: 0,
            events: 0,
            messages: 0,
            current_seq: 0,
            network_touched: BTreeSet::new(),
            slots,
            completions_tx,
            completions_rx,
            trace,
            observer,
            faults,
            fault_log: Vec::new(),
            failure_log: Vec::new(),
            restart_log: Vec::new(),
            profile_name,
            labels,
            absorbed: BTreeMap::new(),
            turn_labels: Labels::EMPTY,
            redeliver: None,
            watchdog: Watchdog::new(limits),
            interrupt: Interrupt::default(),
            world: Arc::new(std::sync::RwLock::new(WorldState::new(&scenario_for_world))),
            backends,
            spare_effects: Vec::new(),
        }
    }

    /// Lets a signal (or a replayed interruption) end the run at the next event boundary.
    pub fn interrupt_on(&mut self, interrupt: Interrupt) {
        self.interrupt = interrupt;
    }

    /// A counterfactual run: firing `firing` (from 0) of fault `fault` does not happen (no firing
    /// of it, for `None`).
    pub fn suppress_firing(&mut self, (fault, firing): (usize, Option<u32>)) {
        self.faults.suppress(fault, firing);
    }

    /// Runs to the end; returns what the engine knows and the observer.
    pub async fn run(mut self) -> Result<(EngineRun, O), RunError> {
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
        let (outcome, outcome_detail) = self.event_loop().await?;
        self.stop_all();
        self.write_end(outcome, outcome_detail.as_deref())?;
        let (digest, trace) = self.trace.finish()?;
        let logical_ids: Vec<_> = self.slots.iter().map(|s| s.logical_id.clone()).collect();
        let received: Vec<u64> = self.slots.iter().map(|s| s.received).collect();
        let never_fired = self.faults.never_fired(&received, &logical_ids);
        let run = EngineRun {
            seed: self.seed,
            profile: self.profile_name,
            outcome,
            outcome_detail,
            digest,
            virtual_time_us: self.now_us,
            events: self.events,
            messages: self.messages,
            faults: self.fault_log,
            never_fired,
            failures: self.failure_log,
            restarts: self.restart_log,
            logical_ids,
            labels: self.labels,
            trace,
            cassette: Default::default(),
        };
        Ok((run, self.observer))
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
                let outcome = if self.observer.has_unanswered() {
                    Outcome::Stalled
                } else {
                    Outcome::Completed
                };
                return Ok((outcome, None));
            };
            if event.at_us > self.limits.max_virtual_time_us {
                return Ok((Outcome::LimitExceeded, Some(self.late_detail(&event))));
            }
            if self.events >= self.limits.max_events {
                let detail = format!("max_events ({})", self.limits.max_events);
                return Ok((Outcome::LimitExceeded, Some(detail)));
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
            self.watchdog.on_deliver(envelope.from, to, &envelope.payload);
            self.messages += u64::from(envelope.from != to);
            self.slots[to.index()].received += 1;

            let injection = self.draw_fault(seq, &envelope);
            let mut envelope = envelope;
            let mut turn_now_us = self.now_us;
            // A fault that breaks tool calls is traced when the answer shows it had some to break.
            if let Some(fired) = injection.filter(|i| i.kind.tool_calls_needed().is_none()) {
                self.trace_fault(seq, to, fired, envelope.payload.conv())?;
                match self.act_on_network(seq, envelope, fired) {
                    network::Delivery::Gone => continue,
                    network::Delivery::Deliver {
                        envelope: kept,
                        skew_us,
                    } => {
                        envelope = kept;
                        turn_now_us += skew_us;
                    }
                }
            }
            // Only the small completion future is awaited on every event; a failure's handling
            // (a bigger future) is built only when a turn fails.
            let conv = envelope.payload.conv();
            let (to, copy) = self.start_turn(seq, turn_now_us, envelope, injection)?;
            match self.await_completion(to).await {
                TurnEnd::Acked(effects) => {
                    if self.faults.has_pending() {
                        self.settle_tool_call_fault(seq, to, conv, &effects)?;
                    }
                    if let Some(limit) = self.apply(to, effects)? {
                        return Ok((Outcome::LimitExceeded, Some(limit)));
                    }
                }
                TurnEnd::Failed(error) => {
                    self.faults.settle(None);
                    if let Some(end) = self.turn_failed(seq, to, error, copy).await? {
                        return Ok(end);
                    }
                }
            }
        }
    }

    /// A fault that breaks tool calls, drawn on the model call that just ran: it fires if the
    /// answer carried the calls it breaks (the model actor broke them), and is then traced and
    /// taints the answer as any fault does; otherwise it never happened.
    fn settle_tool_call_fault(
        &mut self,
        seq: u64,
        to: ActorIdx,
        conv: Option<crate::protocol::ConvId>,
        effects: &[Effect],
    ) -> Result<(), RunError> {
        let calls = effects.iter().find_map(|effect| match effect {
            Effect::Send { payload, .. } => payload.model_reply().map(|reply| match &reply.answer {
                crate::protocol::ModelAnswer::ToolCalls(calls) => calls.len(),
                _ => 0,
            }),
            _ => None,
        });
        let Some(fired) = self.faults.settle(calls) else {
            return Ok(());
        };
        self.trace_fault(seq, to, fired, conv)?;
        let id = self.labels.fault(fired.fault);
        self.observer.on_taint_source(id, seq, self.now_us, to);
        self.turn_labels.insert(id);
        Ok(())
    }

    /// Asks the fault plan whether a fault fires on this delivery. A message the network already
    /// delayed, reordered or duplicated is not faulted again.
    fn draw_fault(&mut self, seq: u64, envelope: &Envelope) -> Option<Injection> {
        if self.network_touched.remove(&seq) {
            return None;
        }
        let to = envelope.to;
        let ids = (
            &*self.slots[envelope.from.index()].logical_id,
            &*self.slots[to.index()].logical_id,
        );
        let received = self.slots[to.index()].received;
        let class = MessageClass::of(envelope);
        let conversation_key = envelope.payload.conv().map(|c| self.scenario.conversation_key(c));
        self.faults.on_deliver(
            self.now_us,
            to,
            received,
            class,
            envelope.payload.text(),
            ids,
            conversation_key,
        )
    }

    /// Traces, taints and accounts one delivery and casts its turn to the receiver. Returns the
    /// receiver, and the copy of the message a crash must not lose (`durability =
    /// "at-least-once"`).
    fn start_turn(
        &mut self,
        seq: u64,
        turn_now_us: u64,
        envelope: Envelope,
        injection: Option<Injection>,
    ) -> Result<(ActorIdx, Option<Box<Envelope>>), RunError> {
        let to = envelope.to;
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
        let copy = self.redelivery_copy(&envelope);
        self.cast_turn(seq, turn_now_us, envelope, injection)?;
        Ok((to, copy))
    }

    /// A turn failed: its supervisor decides, and a message that must not be lost waits for the
    /// restarted actor. Returns how the run ends, when this ends it.
    async fn turn_failed(
        &mut self,
        seq: u64,
        to: ActorIdx,
        error: String,
        copy: Option<Box<Envelope>>,
    ) -> Result<Option<(Outcome, Option<String>)>, RunError> {
        self.redeliver = copy.map(|c| *c);
        let end = self.on_failure(seq, to, error).await?;
        self.redeliver = None;
        Ok(end.map(|(outcome, detail)| (outcome, Some(detail))))
    }

    /// A copy of a message to an agent that must not lose it to a crash (`durability =
    /// "at-least-once"`): the message is acknowledged only when the turn completes.
    fn redelivery_copy(&self, envelope: &Envelope) -> Option<Box<Envelope>> {
        let slot = &self.slots[envelope.to.index()];
        let durable = slot.kind == ActorKind::Agent
            && self.scenario.agents[slot.index].durability == crate::scenario::Durability::AtLeastOnce;
        durable.then(|| Box::new(envelope.clone()))
    }

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
        self.cast_turn(seq, now_us, envelope, injection)?;
        Ok(self.await_completion(to).await)
    }

    /// Casts one turn to its receiver, without waiting.
    fn cast_turn(
        &mut self,
        seq: u64,
        now_us: u64,
        envelope: Envelope,
        injection: Option<Injection>,
    ) -> Result<(), RunError> {
        let to = envelope.to;
        let effects = self.spare_effects.pop().unwrap_or_default();
        let slot = &self.slots[to.index()];
        let from = envelope.from;
        let crash = injection
            .filter(|i| i.kind == crate::scenario::FaultKind::ActorCrash)
            .map(|i| {
                format!(
                    "{}: fault #{} (actor.crash) at seq {seq}",
                    super::INJECTED_CRASH_PREFIX,
                    i.fault
                )
            });
        macro_rules! turn {
            ($msg:expr) => {
                Turn {
                    now_us,
                    seq,
                    from,
                    injection,
                    crash,
                    msg: $msg,
                    effects,
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
            (Some(Handle::Human(r)), Payload::Human(m)) => r.cast(turn!(m)).is_ok(),
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
        Ok(())
    }

    async fn await_completion(&mut self, actor: ActorIdx) -> TurnEnd {
        let slot = &self.slots[actor.index()];
        loop {
            match self.completions_rx.recv().await {
                Completion::Ack {
                    actor: from,
                    incarnation,
                    effects,
                } if from == actor && incarnation == slot.incarnation => {
                    return TurnEnd::Acked(effects);
                }
                Completion::Failed { actor_id, error } if Some(actor_id) == slot.cell_id => {
                    return TurnEnd::Failed(error);
                }
                // Late news from an earlier incarnation: not part of this run's story.
                _ => continue,
            }
        }
    }

    /// Queues the effects of a turn. Returns the limit that was hit, if one was. The emptied
    /// vector is kept for a later turn.
    fn apply(&mut self, from: ActorIdx, mut effects: Vec<Effect>) -> Result<Option<String>, RunError> {
        self.queue.reserve(effects.len());
        let limit = self.apply_each(from, &mut effects);
        if effects.capacity() > 0 && self.spare_effects.len() < SPARE_EFFECTS {
            effects.clear();
            self.spare_effects.push(effects);
        }
        limit
    }

    fn apply_each(&mut self, from: ActorIdx, effects: &mut Vec<Effect>) -> Result<Option<String>, RunError> {
        for effect in effects.drain(..) {
            match effect {
                Effect::Persist(checkpoint) => self.slots[from.index()].checkpoint = Some(checkpoint),
                Effect::Send { to, delay_us, payload } => {
                    if let Some(limit) = self.send(from, to, delay_us, payload) {
                        return Ok(Some(limit));
                    }
                }
                Effect::Verdict(record) => {
                    self.trace_verdict(&record)?;
                    self.observer.on_verdict(&record);
                    if record.contained {
                        self.contain(record.guardrail);
                    }
                }
                Effect::SideEffect {
                    conv,
                    name,
                    times,
                    amount,
                    subject,
                    cancelled,
                } => {
                    let actor = self.slots[from.index()].logical_id.clone();
                    self.observer.on_side_effect(
                        &self.scenario,
                        self.current_seq,
                        self.now_us,
                        &actor,
                        crate::engine::observe::SideEffect {
                            conv,
                            effect: &name,
                            times,
                            amount,
                            subject: subject.as_deref(),
                            cancelled,
                        },
                        &self.turn_labels,
                    );
                }
                Effect::World { conv, changes, lost } => self.change_world(from, conv, &changes, lost)?,
                Effect::Stale { conv, kind } => self.observer.on_stale(conv, kind),
                Effect::CallCancelled { conv } => self.observer.on_call_cancelled(conv),
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

    /// Applies a tool's changes to the world (unless the write was lost), traces each one and
    /// tells the observer.
    fn change_world(&mut self, from: ActorIdx, conv: u32, changes: &[WorldChange], lost: bool) -> Result<(), RunError> {
        let actor = self.slots[from.index()].logical_id.clone();
        for change in changes {
            if !lost {
                self.world
                    .write()
                    .map_err(|_| RunError::Internal("the world's lock is poisoned".to_owned()))?
                    .apply(change);
            }
            let key = change.key.text();
            let row = change.row_json(&self.scenario);
            self.trace.write(&Record::World {
                seq: self.current_seq,
                t_us: self.now_us,
                actor: &*actor,
                conv: conv as u64,
                op: change.op.name(),
                table: self.scenario.tables[change.table].name.as_str(),
                key: key.as_str(),
                row: row.as_deref(),
                lost,
            })?;
            self.observer.on_world(
                &self.scenario,
                self.current_seq,
                self.now_us,
                &actor,
                conv,
                change,
                lost,
                &self.turn_labels,
            );
        }
        Ok(())
    }

    /// Queues one message, unless a limit forbids it (then returns the limit's detail).
    fn send(&mut self, from: ActorIdx, to: ActorIdx, delay_us: u64, payload: Payload) -> Option<String> {
        if self.queue.len() as u64 >= self.limits.max_queue_len {
            return Some(format!("max_queue_len ({})", self.limits.max_queue_len));
        }
        if let Some(size) = self.watchdog.too_big(&payload) {
            return Some(format!(
                "max_message_bytes ({}): {} sent {size} bytes to {}",
                self.limits.max_message_bytes,
                self.slots[from.index()].logical_id,
                self.slots[to.index()].logical_id
            ));
        }
        if let Payload::Tool(ToolMsg::Invoke { conv, agent, call }) = &payload {
            // The agent that made the call (a guardrail may be the one passing it on).
            self.watch_tool_call(self.directory.agent(*agent), to, *conv, call.id);
        }
        let at_us = self.now_us.saturating_add(delay_us);
        if self.directory.locate(from).0 == ActorKind::Llm {
            // Billed as the answer leaves the model: the reply's own seq and time.
            self.bill_model_reply(to, &payload, (self.queue.next_seq(), at_us));
        }
        let labels = self.send_labels(from, to);
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
        None
    }

    /// A model's reply leaves the model: its call is billed once, here, whatever then becomes of
    /// the reply (lost, delivered twice, blocked by a budget guardrail on the way back).
    fn bill_model_reply(&mut self, to: ActorIdx, payload: &Payload, (seq, at_us): (u64, u64)) {
        let (conv, caller, reply) = match payload {
            Payload::Agent(crate::protocol::AgentMsg::LlmReply { conv, reply }) => match self.directory.locate(to) {
                (ActorKind::Agent, agent) => (*conv, ReplyFor::Agent(agent), reply),
                _ => return,
            },
            Payload::Guardrail(crate::protocol::GuardrailMsg::Reply(routed)) => {
                (routed.conv, ReplyFor::Agent(routed.agent), &routed.reply)
            }
            Payload::User(UserMsg::LlmReply { conv, reply }) => (*conv, ReplyFor::User, reply),
            _ => return,
        };
        let slots = &self.slots;
        self.observer
            .on_model_reply(&self.scenario, seq, at_us, conv, caller, reply, &|a: ActorIdx| {
                slots[a.index()].logical_id.to_string()
            });
    }

    /// Watches a tool call for `max_tool_wait`, unless its agent bounds the wait itself.
    fn watch_tool_call(&mut self, agent: ActorIdx, tool: ActorIdx, conv: crate::protocol::ConvId, call_id: u32) {
        let (kind, index) = self.directory.locate(agent);
        if kind == ActorKind::Agent && self.scenario.agents[index].tool_timeout_us.is_none() {
            self.watchdog.on_tool_call(self.now_us, agent, tool, conv, call_id);
        }
    }

    /// What was still to come when the next event fell past `max_virtual_time`: that event,
    /// and whether any conversation was still open.
    fn late_detail(&self, event: &crate::kernel::Event<Payload>) -> String {
        let mut message = String::new();
        event.envelope.payload.summarize(&self.scenario, &mut message);
        let open = match self.observer.has_unanswered() {
            true => "conversations were still open",
            false => "every conversation had ended",
        };
        format!(
            "max_virtual_time ({}us): the next event was due at {}: {} → {}: {message}; {open}",
            self.limits.max_virtual_time_us,
            crate::scenario::units::format_duration_us(event.at_us),
            self.slots[event.envelope.from.index()].logical_id,
            self.slots[event.envelope.to.index()].logical_id,
        )
    }

    fn overdue_detail(&self, overdue: Overdue) -> String {
        format!(
            "max_tool_wait ({}us): {} did not answer call {} of {} in conversation {}",
            self.limits.max_tool_wait_us,
            self.slots[overdue.tool.index()].logical_id,
            overdue.call_id,
            self.slots[overdue.agent.index()].logical_id,
            overdue.conv
        )
    }
}
