//! Taint stamping: labels arise where faults fire and where untrusted data enters (the user's
//! messages, tools' outputs), and every send of a turn inherits the labels of what it consumed;
//! an agent's turns also inherit what it absorbed of the conversation before.

use super::Scheduler;
use crate::engine::observe::Observe;
use crate::kernel::{ActorIdx, Labels};
use crate::protocol::{Envelope, Injection, LabelSpace};
use crate::scenario::{ActorKind, FaultKind};

impl<O: Observe> Scheduler<O> {
    /// Works out the taint of the turn about to run: the message's labels, the fault that fired
    /// on it, and — for an agent — everything it has absorbed of the conversation so far.
    pub(super) fn taint_turn(&mut self, seq: u64, envelope: &Envelope, injection: Option<Injection>) {
        let mut labels = envelope.labels.clone();
        // A fault that breaks tool calls taints the answer once it is known to have fired
        // (`settle_tool_call_fault`).
        if let Some(fired) = injection.filter(|i| i.kind.tool_calls_needed().is_none()) {
            // A network fault's label travels with the message (added where it was requeued).
            if !matches!(
                fired.kind,
                FaultKind::MessageDelay | FaultKind::MessageReorder | FaultKind::MessageDuplicate
            ) {
                let id = self.labels.fault(fired.fault);
                self.observer.on_taint_source(id, seq, self.now_us, envelope.to);
                labels.insert(id);
            }
        }
        let to = envelope.to;
        if self.slots[to.index()].kind == ActorKind::Agent {
            if let Some(conv) = envelope.payload.conv() {
                if labels.is_empty() {
                    // Nothing new to absorb. A conversation that never carried taint keeps no
                    // entry: the map holds the tainted conversations, not every one.
                    if let Some(absorbed) = self.absorbed.get(&(to, conv)) {
                        labels = absorbed.clone();
                    }
                } else {
                    let absorbed = self.absorbed.entry((to, conv)).or_default();
                    absorbed.union_with(&labels);
                    labels = absorbed.clone();
                }
            }
        }
        if !labels.is_empty() {
            self.observer
                .on_taint_reach(&labels, seq, self.now_us, to, &envelope.payload);
        }
        self.turn_labels = labels;
    }

    /// The labels of a message `from` sends: the turn's, plus the sender's own stamp when it is
    /// an untrusted source (the user, a tool) sending to someone else.
    pub(super) fn send_labels(&mut self, from: ActorIdx, to: ActorIdx) -> Labels {
        let mut labels = self.turn_labels.clone();
        let stamp = match self.slots[from.index()].kind {
            _ if to == from => None,
            ActorKind::User => Some(LabelSpace::USER),
            ActorKind::Tool => Some(self.labels.tool(self.slots[from.index()].index)),
            _ => None,
        };
        if let Some(id) = stamp {
            labels.insert(id);
            self.observer.on_taint_source(id, self.current_seq, self.now_us, from);
        }
        labels
    }

    /// A guardrail contained the turn's message: its substitute sends descend from nothing.
    pub(super) fn contain(&mut self, guardrail: usize) {
        let labels = std::mem::take(&mut self.turn_labels);
        let name = &self.scenario.guardrails[guardrail].name;
        self.observer
            .on_taint_stopped(&labels, name, self.current_seq, self.now_us);
    }
}
