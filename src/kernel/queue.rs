//! The event queue: earliest `(virtual_time_us, seq)` first; `seq` is insertion order.
//!
//! Keys `(at_us, seq, slot)` are ordered; the envelopes wait in a slab beside them, so ordering
//! moves 24 bytes per step rather than a whole message. A key that comes no earlier than the
//! last one queued in order joins the end of a sorted run in O(1), which is what zero-latency
//! chains and bursts at one instant do; any other key goes to a heap. The earliest event is the
//! smaller of the run's first key and the heap's top.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::envelope::{Envelope, Event};

/// Events waiting for delivery. Ties at equal time break by insertion order.
#[derive(Debug)]
pub struct EventQueue<P> {
    /// Keys in increasing order (each pushed after the one before it in key order), from
    /// `run_head` on; the keys before it are popped. Emptied when all are popped.
    run: Vec<(u64, u64, u32)>,
    run_head: usize,
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    /// Envelopes by slot; `None` for a free slot.
    slots: Vec<Option<Envelope<P>>>,
    free: Vec<u32>,
    next_seq: u64,
}

impl<P> Default for EventQueue<P> {
    fn default() -> Self {
        EventQueue {
            run: Vec::new(),
            run_head: 0,
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
        // `seq` grows with every push, so a key is past the run's last one iff its time is.
        match self.run.last() {
            Some(&(last_us, _, _)) if at_us < last_us => self.heap.push(Reverse((at_us, seq, slot))),
            _ => self.run.push((at_us, seq, slot)),
        }
        seq
    }

    /// Makes room for `additional` more events at once (a turn that queues many), so the queue
    /// grows once instead of doubling its way there.
    pub fn reserve(&mut self, additional: usize) {
        self.run.reserve(additional);
        self.slots.reserve(additional.saturating_sub(self.free.len()));
    }

    /// Allocates a `seq` for an event delivered without queueing (supervision turns).
    /// The seq the next push will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// The earliest key, and whether it heads the run (else the heap).
    fn head(&self) -> Option<((u64, u64, u32), bool)> {
        match (self.run.get(self.run_head), self.heap.peek()) {
            (Some(first), Some(Reverse(top))) if top < first => Some((*top, false)),
            (Some(first), _) => Some((*first, true)),
            (None, top) => top.map(|Reverse(top)| (*top, false)),
        }
    }

    /// The earliest event.
    pub fn pop(&mut self) -> Option<Event<P>> {
        let ((at_us, seq, slot), in_run) = self.head()?;
        if in_run {
            self.run_head += 1;
            if self.run_head == self.run.len() {
                self.run.clear();
                self.run_head = 0;
            } else if self.run_head >= 1024 && self.run_head * 2 >= self.run.len() {
                // A run that never empties: drop its popped half now and then.
                self.run.drain(..self.run_head);
                self.run_head = 0;
            }
        } else {
            self.heap.pop();
        }
        let envelope = self.slots[slot as usize]
            .take()
            .expect("a queued slot holds its envelope");
        self.free.push(slot);
        Some(Event { at_us, seq, envelope })
    }

    /// The time of the earliest event, if any.
    pub fn peek_time_us(&self) -> Option<u64> {
        self.head().map(|((at_us, _, _), _)| at_us)
    }

    pub fn len(&self) -> usize {
        self.run.len() - self.run_head + self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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

    #[test]
    fn a_run_that_never_empties_keeps_its_order_and_sheds_popped_keys() {
        let mut queue = EventQueue::default();
        let mut waiting = std::collections::BTreeSet::new();
        for round in 0..50_000u64 {
            // One push per pop, and one more every hundredth round: the run never empties.
            // Every seventh round, one more key out of order, and one more pop.
            let mut times = vec![round + 1];
            if round % 100 == 0 {
                times.push(round + 2);
            }
            if round % 7 == 0 {
                times.push(round);
            }
            let pops = times.len() - usize::from(round % 100 == 0);
            for at_us in times {
                waiting.insert((at_us, queue.push(at_us, envelope())));
            }
            for _ in 0..pops {
                let popped = queue.pop().map(|e| (e.at_us, e.seq));
                assert_eq!(popped, waiting.pop_first());
            }
        }
        assert_eq!(queue.len(), 500);
        // About 500 keys wait in the run; had it kept its popped keys, it would hold 50,000.
        assert!(queue.run.capacity() <= 4_096, "run capacity {}", queue.run.capacity());
        while let Some(event) = queue.pop() {
            assert_eq!(Some((event.at_us, event.seq)), waiting.pop_first());
        }
        assert!(waiting.is_empty());
    }

    proptest! {
        /// Pushes and pops interleaved at random, against a plain sort of the keys: the run and
        /// the heap together pop exactly in `(at_us, seq)` order.
        #[test]
        fn pops_in_time_then_insertion_order(
            steps in prop::collection::vec((any::<bool>(), any::<bool>(), 0u64..6), 0..200)
        ) {
            let mut queue = EventQueue::default();
            let mut waiting: Vec<(u64, u64)> = Vec::new();
            let mut now_us = 0;
            for (pop, absolute, delay_us) in steps {
                if pop {
                    waiting.sort_unstable();
                    let expected = (!waiting.is_empty()).then(|| waiting.remove(0));
                    prop_assert_eq!(queue.peek_time_us(), expected.map(|(at_us, _)| at_us));
                    let got = queue.pop().map(|e| (e.at_us, e.seq));
                    prop_assert_eq!(got, expected);
                    if let Some((at_us, _)) = got {
                        now_us = at_us;
                    }
                } else {
                    // Mostly after the present, as the scheduler queues; sometimes anywhere.
                    let at_us = if absolute { delay_us } else { now_us + delay_us };
                    let seq = queue.push(at_us, envelope());
                    waiting.push((at_us, seq));
                }
                prop_assert_eq!(queue.len(), waiting.len());
            }
        }
    }
}
