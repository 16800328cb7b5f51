//! The fault plan: decides, delivery by delivery, whether a scenario's fault fires.
//!
//! Each fault draws from its own stream (`fault:N`), and only when its other conditions hold,
//! so adding a fault never changes when another one fires.

use crate::kernel::{number_duplicates, ActorIdx, RngStream};
use crate::scenario::validate::glob_match;
use crate::scenario::{Fault, FaultKind};

/// A fault that fired, as the trace and report show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiredFault {
    /// Index of the fault in the scenario.
    pub fault: usize,
    pub kind: FaultKind,
}

/// A stable stream name per fault: `fault:KIND@TARGET`, with `#N` for the Nth fault of the same
/// kind and target. Adding or reordering other faults does not rename a fault's stream.
pub fn stream_names(faults: &[Fault]) -> Vec<String> {
    number_duplicates(faults.iter().map(|fault| format!("fault:{}@{}", fault.kind.name(), fault.target)))
}

/// Per-run fault state.
pub struct FaultPlan {
    faults: Vec<Fault>,
    streams: Vec<RngStream>,
    fired_counts: Vec<u32>,
    /// For each actor, the faults whose target matches it, in scenario order.
    by_actor: Vec<Vec<usize>>,
}

impl FaultPlan {
    /// Builds the plan; `logical_ids[i]` is the id of actor `i`.
    pub fn new(faults: &[Fault], seed: u64, logical_ids: &[String]) -> FaultPlan {
        let by_actor = logical_ids
            .iter()
            .map(|id| {
                let crashable = ["agent:", "tool:", "llm:"].iter().any(|p| id.starts_with(p));
                (0..faults.len()).filter(|i| crashable && glob_match(&faults[*i].target, id)).collect()
            })
            .collect();
        FaultPlan {
            faults: faults.to_vec(),
            streams: stream_names(faults).iter().map(|name| RngStream::new(seed, name)).collect(),
            fired_counts: vec![0; faults.len()],
            by_actor,
        }
    }

    /// Decides for one delivery to `actor` at `now_us`; `received` counts this actor's deliveries,
    /// this one included.
    pub fn on_deliver(&mut self, now_us: u64, actor: ActorIdx, received: u64) -> Option<FiredFault> {
        let candidates = self.by_actor.get(actor.index())?;
        for &index in candidates {
            let fault = &self.faults[index];
            let trigger = &fault.trigger;
            if trigger.count.is_some_and(|max| self.fired_counts[index] >= max) {
                continue;
            }
            if trigger.at_us.is_some_and(|at| now_us < at) {
                continue;
            }
            if trigger.on_message.is_some_and(|n| received != n) {
                continue;
            }
            if let Some(p) = trigger.probability {
                if !self.streams[index].chance(p) {
                    continue;
                }
            }
            self.fired_counts[index] += 1;
            return Some(FiredFault { fault: index, kind: fault.kind });
        }
        None
    }
}
