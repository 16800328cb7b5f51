//! Blast radius: how far each fault and each untrusted source spread through a run — the actors
//! its labels reached, the side effects and user-visible answers they touched, the guardrails
//! that stopped them, and how long the spread took in virtual time.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::kernel::{ActorIdx, Labels};
use crate::protocol::{LabelSource, LabelSpace, Payload, UserMsg};
use crate::scenario::Scenario;

/// Hits of one kind kept per source in the report; the totals count them all.
const HITS_KEPT: usize = 50;

/// A side effect a source touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SideEffectHit {
    pub seq: u64,
    pub t_us: u64,
    pub actor: String,
    pub effect: String,
}

/// A user-visible answer a source touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputHit {
    pub seq: u64,
    pub t_us: u64,
    pub conversation: u32,
}

/// A guardrail that stopped a source's messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StopHit {
    pub guardrail: String,
    /// The first stop.
    pub seq: u64,
    pub t_us: u64,
    pub times: u64,
}

/// The blast radius of one source, as `report.json` has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlastRadius {
    /// `fault:NAME`, `tool:NAME` or `user`.
    pub source: String,
    /// `fault`, or `untrusted` (user input, tool output).
    pub kind: &'static str,
    pub first_seq: u64,
    pub first_t_us: u64,
    /// Actors reached, in the order they were first reached.
    pub actors: Vec<String>,
    pub side_effects: Vec<SideEffectHit>,
    pub side_effects_total: u64,
    /// The amounts of the side effects it reached, per effect (tools with `amount`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", with = "crate::scenario::world::dec_map")]
    pub amounts: BTreeMap<String, i64>,
    pub outputs: Vec<OutputHit>,
    pub outputs_total: u64,
    pub stopped_by: Vec<StopHit>,
    /// From the source's first appearance to the moment it reached its last new actor.
    pub spread_us: u64,
}

#[derive(Debug, Default, Clone)]
struct Spread {
    first: Option<(u64, u64)>,
    last_t_us: u64,
    /// Actors reached, as a bit set by actor index (checked on every delivery) …
    reached_bits: Vec<u64>,
    /// … and in the order they were first reached: (time, seq, actor).
    reached: Vec<(u64, u64, ActorIdx)>,
    side_effects: Vec<SideEffectHit>,
    side_effects_total: u64,
    amounts: BTreeMap<String, i64>,
    outputs: Vec<OutputHit>,
    outputs_total: u64,
    stopped: BTreeMap<String, StopHit>,
}

impl Spread {
    /// `actor` got a message carrying the label at `t_us` (the first time counts).
    fn reach(&mut self, actor: ActorIdx, t_us: u64, seq: u64) {
        let (word, bit) = (actor.index() / 64, actor.index() % 64);
        if self.reached_bits.len() <= word {
            self.reached_bits.resize(word + 1, 0);
        }
        if self.reached_bits[word] & (1 << bit) == 0 {
            self.reached_bits[word] |= 1 << bit;
            self.reached.push((t_us, seq, actor));
            self.last_t_us = self.last_t_us.max(t_us);
        }
    }
}

/// Follows every label through the run.
#[derive(Debug, Default)]
pub struct BlastTracker {
    spreads: Vec<Spread>,
}

impl BlastTracker {
    pub fn new(space: &LabelSpace) -> BlastTracker {
        BlastTracker {
            spreads: vec![Spread::default(); space.len() as usize],
        }
    }

    fn spread(&mut self, id: u32) -> &mut Spread {
        let index = id as usize;
        if self.spreads.len() <= index {
            self.spreads.resize_with(index + 1, Spread::default);
        }
        &mut self.spreads[index]
    }

    /// A source emits its label (a fault fires, a tool answers, the user speaks).
    pub fn on_source(&mut self, id: u32, seq: u64, t_us: u64, actor: ActorIdx) {
        let spread = self.spread(id);
        if spread.first.is_none() {
            spread.first = Some((seq, t_us));
        }
        spread.reach(actor, t_us, seq);
    }

    /// A message carrying `labels` reached `to`.
    pub fn on_reach(&mut self, labels: &Labels, seq: u64, t_us: u64, to: ActorIdx, payload: &Payload) {
        let output = match payload {
            Payload::User(UserMsg::Answer { conv, .. }) => Some(*conv),
            _ => None,
        };
        for id in labels.iter() {
            let spread = self.spread(id);
            spread.reach(to, t_us, seq);
            if let Some(conversation) = output {
                spread.outputs_total += 1;
                if spread.outputs.len() < HITS_KEPT {
                    spread.outputs.push(OutputHit {
                        seq,
                        t_us,
                        conversation,
                    });
                }
            }
        }
    }

    /// A side effect happened in a turn carrying `labels`.
    /// A side effect (with its amount, all times counted) happened in a turn carrying `labels`.
    pub fn on_side_effect(
        &mut self,
        labels: &Labels,
        seq: u64,
        t_us: u64,
        actor: &str,
        effect: &str,
        amount: Option<i64>,
    ) {
        for id in labels.iter() {
            let spread = self.spread(id);
            spread.side_effects_total += 1;
            if let Some(amount) = amount {
                let total = spread.amounts.entry(effect.to_owned()).or_default();
                *total = total.saturating_add(amount);
            }
            if spread.side_effects.len() < HITS_KEPT {
                spread.side_effects.push(SideEffectHit {
                    seq,
                    t_us,
                    actor: actor.to_owned(),
                    effect: effect.to_owned(),
                });
            }
        }
    }

    /// A guardrail stopped a message carrying `labels`.
    pub fn on_stopped(&mut self, labels: &Labels, guardrail: &str, seq: u64, t_us: u64) {
        for id in labels.iter() {
            let stop = self.spread(id).stopped.entry(guardrail.to_owned()).or_insert(StopHit {
                guardrail: guardrail.to_owned(),
                seq,
                t_us,
                times: 0,
            });
            stop.times += 1;
        }
    }

    /// The blast radius of every source that appeared: faults first, then untrusted sources,
    /// each in scenario order.
    pub fn report(
        &self,
        scenario: &Scenario,
        space: &LabelSpace,
        name_of: &dyn Fn(ActorIdx) -> String,
    ) -> Vec<BlastRadius> {
        let mut out: Vec<(u8, BlastRadius)> = Vec::new();
        for (id, spread) in self.spreads.iter().enumerate() {
            let Some((first_seq, first_t_us)) = spread.first else {
                continue;
            };
            let id = id as u32;
            let (rank, kind) = match space.source(id) {
                LabelSource::Fault(_) => (0, "fault"),
                LabelSource::Tool(_) => (1, "untrusted"),
                LabelSource::User => (2, "untrusted"),
            };
            let mut reached = spread.reached.clone();
            reached.sort();
            let mut stopped_by: Vec<StopHit> = spread.stopped.values().cloned().collect();
            stopped_by.sort_by_key(|s| (s.seq, s.guardrail.clone()));
            out.push((
                rank,
                BlastRadius {
                    source: space.name(scenario, id),
                    kind,
                    first_seq,
                    first_t_us,
                    actors: reached.into_iter().map(|(_, _, a)| name_of(a)).collect(),
                    side_effects: spread.side_effects.clone(),
                    side_effects_total: spread.side_effects_total,
                    amounts: spread.amounts.clone(),
                    outputs: spread.outputs.clone(),
                    outputs_total: spread.outputs_total,
                    stopped_by,
                    spread_us: spread.last_t_us.saturating_sub(first_t_us),
                },
            ));
        }
        out.sort_by_key(|(rank, _)| *rank);
        out.into_iter().map(|(_, b)| b).collect()
    }
}
