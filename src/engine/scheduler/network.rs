//! Faults the network acts out on a delivery: the message is lost, held back, reordered or
//! repeated, or the receiver's clock is skewed. The actors never know.

use super::Scheduler;
use crate::engine::observe::Observe;
use crate::protocol::{AgentMsg, Directory, Envelope, Injection, Payload, UserEnding, UserMsg};
use crate::scenario::{ActorKind, Cancellation, FaultKind};

/// Default hold-back of `network.delay` when the fault gives no latency.
const DELAY_US_DEFAULT: u64 = 5_000_000;
/// Default skew of `clock.skew` when the fault gives no latency.
const SKEW_US_DEFAULT: u64 = 30_000_000;

/// What is left of a delivery once the network has acted.
pub(super) enum Delivery {
    /// Lost, or requeued for later: nothing is delivered now.
    Gone,
    /// Deliver it now; the receiver's clock reads `skew_us` ahead.
    Deliver { envelope: Envelope, skew_us: u64 },
}

impl<O: Observe> Scheduler<O> {
    /// Acts out the network's part of a fault that fired on this delivery (other faults pass
    /// through untouched, to be acted out by the receiver).
    pub(super) fn act_on_network(&mut self, seq: u64, envelope: Envelope, fired: Injection) -> Delivery {
        let params = &self.scenario.faults[fired.fault].params;
        let mut skew_us = 0;
        match fired.kind {
            FaultKind::MessageDrop | FaultKind::NetworkPartition => {
                self.observer.on_lost(seq, self.now_us, &envelope);
                return Delivery::Gone;
            }
            FaultKind::MessageDelay | FaultKind::MessageReorder => {
                let delay_us = match fired.kind {
                    FaultKind::MessageDelay => params.latency_us.unwrap_or(DELAY_US_DEFAULT),
                    _ => 0,
                };
                let mut envelope = envelope;
                envelope.labels.insert(self.labels.fault(fired.fault));
                let requeued = self.queue.push(self.now_us + delay_us, envelope);
                self.network_touched.insert(requeued);
                return Delivery::Gone;
            }
            FaultKind::MessageDuplicate => {
                let mut copy = envelope.clone();
                copy.labels.insert(self.labels.fault(fired.fault));
                let requeued = self.queue.push(self.now_us, copy);
                self.network_touched.insert(requeued);
            }
            FaultKind::ClockSkew => skew_us = params.latency_us.unwrap_or(SKEW_US_DEFAULT),
            FaultKind::UserAbandon => {
                if let Payload::Agent(AgentMsg::Start { conv, history, .. }) = &envelope.payload {
                    self.observer.on_abandon(*conv);
                    // An agent that cancels hears that nobody waits any more, right after the
                    // message it is given.
                    if let (ActorKind::Agent, agent) = self.directory.locate(envelope.to) {
                        if self.scenario.agents[agent].cancellation == Cancellation::Cancel {
                            let cancel = Payload::Agent(AgentMsg::Cancel { conv: *conv });
                            self.user_leaves(&envelope, fired.fault, envelope.to, cancel);
                        }
                    }
                    // A user who talks back leaves too: it says nothing more; and what the
                    // conversation did is undone when its tools say how.
                    if self.scenario.hears_abandon(*conv) {
                        let leave = Payload::User(UserMsg::End {
                            conv: *conv,
                            ending: UserEnding::Abandoned,
                            turns: history.user_turns() + 1,
                        });
                        self.user_leaves(&envelope, fired.fault, Directory::USER, leave);
                    }
                }
            }
            _ => {}
        }
        Delivery::Deliver { envelope, skew_us }
    }

    /// What the user's leaving (fault `fault`, on `left`) sends now, from the user to `to`,
    /// descending from what it left and from the fault.
    fn user_leaves(&mut self, left: &Envelope, fault: usize, to: crate::kernel::ActorIdx, payload: Payload) {
        let mut labels = left.labels.clone();
        labels.insert(self.labels.fault(fault));
        let notice = Envelope {
            from: Directory::USER,
            to,
            sent_at_us: self.now_us,
            payload,
            labels,
        };
        self.queue.push(self.now_us, notice);
    }
}
