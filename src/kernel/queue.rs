//! The event queue: earliest `(virtual_time_us, seq)` first; `seq` is insertion order.
//!
//! The heap orders small keys `(at_us, seq, slot)`; the envelopes wait in a slab beside it, so
//! sifting the heap moves 24 bytes per step rather than a whole message.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::envelope::{Envelope, Event};

/// Events waiting for delivery. Ties at equal time break by insertion order.
#[derive(Debug)]
pub struct EventQueue<P> {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    /// Envelopes by slot; `None` for a free slot.
    slots: Vec<Option<Envelope<P>>>,
    free: Vec<u32>,
    next_seq: u64,
}

impl<P> Default for EventQueue<P> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            next_seq: 0,
        }
    }
}

impl<P> EventQueue<P> {
    /// Queues `envelope` for `at_us`; returns its `seq`.
    pub fn push(&mut self, at_us: u64, envelope: Envelope<P>) -> u64 {
        let seq = self.take_seq();
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(envelope);
                slot
            }
            None => {
                self.slots.push(Some(envelope));
                (self.slots.len() - 1) as u32
            }
        };
        self.heap.push(Reverse((at_us, seq, slot)));
        seq
    }

    /// Makes room for `additional` more events at once (a turn that queues many), so the queue
    /// grows once instead of doubling its way there.
    pub fn reserve(&mut self, additional: usize) {
        self.heap.reserve(additional);
        self.slots.reserve(additional.saturating_sub(self.free.len()));
    }

    /// Allocates a `seq` for an event delivered without queueing (supervision turns).
    pub fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// The earliest event.
    pub fn pop(&mut self) -> Option<Event<P>> {
        let Reverse((at_us, seq, slot)) = self.heap.pop()?;
        let envelope = self.slots[slot as usize]
            .take()
            .expect("a queued slot holds its envelope");
        self.free.push(slot);
        Some(Event { at_us, seq, envelope })
    }

    /// The time of the earliest event, if any.
    pub fn peek_time_us(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((at_us, _, _))| *at_us)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::ActorIdx;

    fn envelope() -> Envelope<&'static str> {
        Envelope {
            labels: Default::default(),
            from: ActorIdx(0),
            to: ActorIdx(0),
            sent_at_us: 0,
            payload: "begin",
        }
    }

    #[test]
    fn earliest_time_first_and_ties_in_insertion_order() {
        let mut queue = EventQueue::default();
        queue.push(50, envelope());
        queue.push(10, envelope());
        queue.push(50, envelope());
        queue.push(10, envelope());
        let order: Vec<(u64, u64)> = std::iter::from_fn(|| queue.pop().map(|e| (e.at_us, e.seq))).collect();
        assert_eq!(order, vec![(10, 1), (10, 3), (50, 0), (50, 2)]);
    }
}
