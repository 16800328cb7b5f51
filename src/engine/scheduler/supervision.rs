//! Supervision: a failed turn goes to the actor's supervisor, whose decision (restart which
//! children, or escalate) is applied before the next event; actors are spawned top-down under
//! their supervisors and restarted with fresh state and a fresh incarnation.

use std::sync::Arc;

use super::{Scheduler, TurnEnd};
use crate::engine::observe::Observe;
use crate::engine::slots::{self, Handle, SpawnContext};
use crate::engine::{FailureRecord, Outcome, RestartRecord, RunError};
use crate::kernel::{ActorIdx, Labels};
use crate::protocol::{Directory, Effect, Envelope, Identity, Payload, SupervisorMsg};
use crate::scenario::ActorKind;
use crate::trace::Record;

impl<O: Observe> Scheduler<O> {
    /// Handles a failed turn: the supervisor decides, restarts happen, or the failure escalates.
    /// Returns how the run ends when the failure passes the root or the restarts pass their cap.
    pub(super) async fn on_failure(
        &mut self,
        seq: u64,
        failed: ActorIdx,
        error: String,
    ) -> Result<Option<(Outcome, String)>, RunError> {
        let slot = &self.slots[failed.index()];
        let (actor, incarnation) = (slot.logical_id.clone(), slot.incarnation);
        let now_us = self.now_us;
        self.trace.write(&Record::Fail {
            seq,
            t_us: now_us,
            actor: &actor,
            incarnation: u64::from(incarnation),
            error: &error,
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
                        self.trace.write(&Record::Escalate {
                            t_us: now_us,
                            actor: &supervisor_id,
                            reason: &reason,
                        })?;
                        error = Arc::from(format!(
                            "{supervisor_id} gave up ({reason}) after {child_id} failed: {error}"
                        ));
                        child = supervisor;
                    }
                    Effect::Persist(_) => {}
                    Effect::Send { .. }
                    | Effect::SideEffect { .. }
                    | Effect::World { .. }
                    | Effect::Verdict(_)
                    | Effect::Stale { .. }
                    | Effect::CallCancelled { .. } => {
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
            self.queue_resumption(idx);
            let supervisor_id = self.slots[self.slots[idx.index()].supervisor.unwrap_or(supervisor).index()]
                .logical_id
                .clone();
            let now_us = self.now_us;
            self.trace.write(&Record::Restart {
                t_us: now_us,
                actor: &logical_id,
                incarnation: u64::from(incarnation),
                supervisor: &supervisor_id,
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

    /// For an agent back from a restart with `durability = "at-least-once"`: the message it had
    /// in hand is delivered again, then each conversation with calls outstanding in its
    /// checkpoint resumes, all when the agent is up again.
    fn queue_resumption(&mut self, idx: ActorIdx) {
        let up_us = self.slots[idx.index()].down_until_us;
        if let Some(envelope) = self.redeliver.take_if(|e| e.to == idx) {
            self.queue.push(up_us, envelope);
        }
        let resume = match &self.slots[idx.index()].checkpoint {
            Some(checkpoint) => checkpoint.resume.clone(),
            None => return,
        };
        for &conv in resume.iter() {
            let envelope = Envelope {
                from: idx,
                to: idx,
                sent_at_us: self.now_us,
                labels: Labels::EMPTY,
                payload: Payload::Agent(crate::protocol::AgentMsg::Resume { conv }),
            };
            self.queue.push(up_us, envelope);
        }
    }

    /// Spawns every actor: supervisors top-down, then the user, LLMs, tools and agents.
    pub(super) async fn spawn_all(&mut self) -> Result<(), RunError> {
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
        for kind in [
            ActorKind::Llm,
            ActorKind::Tool,
            ActorKind::Agent,
            ActorKind::Guardrail,
            ActorKind::Human,
        ] {
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
        let context = SpawnContext {
            scenario: &self.scenario,
            directory: self.directory,
            seed: self.seed,
            backends: &self.backends,
            world: &self.world,
        };
        let handle = slots::spawn(&context, slot, identity, parent).await?;
        let slot = &mut self.slots[idx.index()];
        slot.cell_id = Some(handle.cell().get_id());
        slot.handle = Some(handle);
        Ok(())
    }

    pub(super) fn stop_all(&mut self) {
        for slot in self.slots.iter_mut().rev() {
            if let Some(handle) = slot.handle.take() {
                handle.cell().stop(None);
            }
        }
    }
}
