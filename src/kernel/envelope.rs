//! Logical actor ids, envelopes and the events the scheduler queues.

use std::cmp::Ordering;

use crate::actors::Payload;

/// A logical actor address: an index into the world's actor table. Stable across runs,
/// unlike ractor's `ActorId`, and the only way actors name each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActorIdx(pub u32);

impl ActorIdx {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A message on its way from one actor to another.
#[derive(Debug)]
pub struct Envelope {
    pub from: ActorIdx,
    pub to: ActorIdx,
    pub sent_at_us: u64,
    /// What the message descends from: faults and untrusted sources.
    pub labels: super::taint::Labels,
    pub payload: Payload,
}

/// An envelope waiting in the queue, ordered by `(at_us, seq)`.
#[derive(Debug)]
pub struct Event {
    pub at_us: u64,
    pub seq: u64,
    pub envelope: Envelope,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}

impl Eq for Event {}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Event {
    /// Reversed so that `BinaryHeap` pops the earliest `(at_us, seq)` first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_us, other.seq).cmp(&(self.at_us, self.seq))
    }
}
