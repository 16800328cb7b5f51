//! Logical actor ids, envelopes and the events the scheduler queues.

use super::labels::Labels;

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
#[derive(Debug, Clone)]
pub struct Envelope<P> {
    pub from: ActorIdx,
    pub to: ActorIdx,
    pub sent_at_us: u64,
    /// What the message descends from: faults and untrusted sources.
    pub labels: Labels,
    pub payload: P,
}

/// An envelope taken from the queue, with the time and `seq` it was queued under.
#[derive(Debug)]
pub struct Event<P> {
    pub at_us: u64,
    pub seq: u64,
    pub envelope: Envelope<P>,
}
