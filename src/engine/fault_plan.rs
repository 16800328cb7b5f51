//! The fault plan: decides, delivery by delivery, whether a scenario's fault fires. The fault
//! then takes effect where it happens in reality: the scheduler crashes the actor, the LLM actor
//! answers with a provider-shaped error or a broken answer, the tool actor fails the call.
//!
//! Each fault draws from its own streams (`fault:NAME`, one per conversation for a delivery that
//! belongs to one), and only when its other conditions hold, so adding a fault never changes when
//! another one fires, and what happens in one conversation never moves a draw in another.

use crate::catalogue::faults::Layer;
use crate::kernel::{ActorIdx, RngStream, StreamFamily};
use crate::protocol::{AgentMsg, Envelope, GuardrailMsg, Injection, Origin, Payload};
use crate::scenario::glob::glob_match;
use crate::scenario::{Fault, FaultKind, Probability, Profile, Scenario};

/// The profile a seed runs under: a weighted draw from the `profiles` stream, or none when the
/// scenario has no profiles.
pub fn pick_profile(scenario: &Scenario, seed: u64) -> Option<&Profile> {
    let total: u64 = scenario.profiles.iter().map(|p| p.weight as u64).sum();
    if total == 0 {
        return None;
    }
    let mut ticket = RngStream::new(seed, "profiles").below(total);
    scenario.profiles.iter().find(|p| {
        let hit = ticket < p.weight as u64;
        ticket = ticket.saturating_sub(p.weight as u64);
        hit
    })
}

/// What kind of message a delivery carries, as far as fault eligibility goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageClass {
    /// A completion request to a model.
    LlmCall,
    /// A call to a tool.
    ToolCall,
    /// A conversation's opening message, from the user to an agent.
    UserOpening,
    /// A handoff of a conversation to an agent.
    Handoff,
    /// Another message from one actor to another agent.
    AgentMessage,
    /// A message on its way through a guardrail.
    GuardCheck,
    /// A timer (an actor's message to itself) or a message to the user.
    Other,
}

impl MessageClass {
    /// The class of the message in `envelope`.
    pub fn of(envelope: &Envelope) -> MessageClass {
        match &envelope.payload {
            _ if envelope.from == envelope.to => MessageClass::Other,
            Payload::Llm(_) => MessageClass::LlmCall,
            Payload::Tool(_) => MessageClass::ToolCall,
            Payload::Agent(AgentMsg::Start {
                origin: Origin::User, ..
            }) => MessageClass::UserOpening,
            Payload::Agent(AgentMsg::Start {
                origin: Origin::Handoff(_),
                ..
            }) => MessageClass::Handoff,
            Payload::Agent(_) => MessageClass::AgentMessage,
            Payload::Guardrail(GuardrailMsg::Check(_)) => MessageClass::GuardCheck,
            _ => MessageClass::Other,
        }
    }
}

/// Per-run fault state.
pub struct FaultPlan {
    faults: Vec<Fault>,
    /// Per fault: the stream of deliveries that belong to no conversation, and one per
    /// conversation (by its key) from the fault's family.
    streams: Vec<RngStream>,
    families: Vec<StreamFamily>,
    conversation_streams: Vec<std::collections::BTreeMap<u64, RngStream>>,
    fired_counts: Vec<u32>,
    /// For each actor, the faults whose target matches it, in scenario order.
    by_actor: Vec<Vec<usize>>,
    /// A counterfactual: this firing (fault index, firing number from 0) does not happen; with
    /// no firing number, no firing of that fault does.
    suppressed: Option<(usize, Option<u32>)>,
    /// Per fault: what its deliveries looked like, to say why one never fired.
    watch: Vec<Watch>,
    /// Per fault: off under the seed's profile.
    off_by_profile: Vec<bool>,
    /// A fault that breaks tool calls, drawn on the model call being delivered: it fires only if
    /// the answer carries the calls it needs, which the scheduler learns when the turn ends
    /// ([`FaultPlan::settle`]).
    pending: Option<PendingFiring>,
}

/// A tool-call fault drawn on a model call, waiting for the answer.
#[derive(Debug, Clone, Copy)]
pub struct PendingFiring {
    pub injection: Injection,
    /// The counterfactual leaves this firing out: the answer is not broken, but the firing
    /// still counts if it would have fired, so that no later firing is renumbered.
    pub suppressed: bool,
}

/// What a fault saw of its deliveries: enough to say why it never fired.
#[derive(Debug, Clone, Copy, Default)]
struct Watch {
    /// Deliveries to its targets of a message it acts on.
    eligible: u64,
    /// Of those, the ones its probability was drawn on (every other condition held).
    drawn: u64,
    /// For `on_message = N`: whether the N-th message to a target was one it acts on, when one
    /// came.
    nth_eligible: Option<bool>,
    /// For `on_message = N`: the N-th message went to an earlier fault that fired on it.
    nth_taken: bool,
    /// A tool-call fault drawn on answers without the tool calls it breaks.
    void: u64,
}

/// Why a fault of the scenario never fired in a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NeverFired {
    pub fault: String,
    pub kind: String,
    pub reason: String,
}

impl FaultPlan {
    /// Builds the plan; `logical_ids[i]` is the id of actor `i`.
    pub fn new(faults: &[Fault], profile: Option<&Profile>, seed: u64, logical_ids: &[String]) -> FaultPlan {
        // Swarm testing: under a profile, only its faults are on, with scaled probabilities.
        let off_by_profile: Vec<bool> = faults
            .iter()
            .map(|fault| profile.is_some_and(|p| !p.faults.iter().any(|pattern| glob_match(pattern, &fault.name))))
            .collect();
        let faults: Vec<Fault> = faults
            .iter()
            .zip(&off_by_profile)
            .map(|(fault, off)| {
                let mut fault = fault.clone();
                if *off {
                    fault.trigger.count = Some(0);
                } else if let Some(profile) = profile {
                    fault.trigger.probability = fault
                        .trigger
                        .probability
                        .map(|p| Probability::from_f64((p.as_f64() * profile.scale).min(1.0)));
                }
                fault
            })
            .collect();
        let faults = &faults[..];
        let by_actor = logical_ids
            .iter()
            .map(|id| (0..faults.len()).filter(|i| applies_to(&faults[*i], id)).collect())
            .collect();
        FaultPlan {
            faults: faults.to_vec(),
            streams: faults
                .iter()
                .map(|f| RngStream::new(seed, &format!("fault:{}", f.name)))
                .collect(),
            families: faults
                .iter()
                .map(|f| StreamFamily::new(seed, &format!("fault:{}", f.name)))
                .collect(),
            conversation_streams: vec![Default::default(); faults.len()],
            fired_counts: vec![0; faults.len()],
            by_actor,
            suppressed: None,
            watch: vec![Watch::default(); faults.len()],
            off_by_profile,
            pending: None,
        }
    }

    /// Makes firing `firing` (from 0) of fault `fault` not happen — every firing of it, for
    /// `None`. Every draw is still made and the firing still counts, so no other firing moves:
    /// the run differs only by what that fault would have done there.
    pub fn suppress(&mut self, fault: usize, firing: Option<u32>) {
        self.suppressed = Some((fault, firing));
    }

    /// Decides for one delivery of a `class` message to `actor` at `now_us`; `received` counts
    /// this actor's deliveries, this one included. At most one fault fires per delivery: the
    /// first eligible one in scenario order.
    #[allow(clippy::too_many_arguments)]
    pub fn on_deliver(
        &mut self,
        now_us: u64,
        actor: ActorIdx,
        received: u64,
        class: MessageClass,
        text: Option<&str>,
        (from_id, to_id): (&str, &str),
        conversation_key: Option<u64>,
    ) -> Option<Injection> {
        let candidates = self.by_actor.get(actor.index())?;
        for &index in candidates {
            let fault = &self.faults[index];
            let eligible = match fault.kind.layer() {
                Layer::Actor => true,
                Layer::Provider | Layer::Content => class == MessageClass::LlmCall,
                Layer::Tool => class == MessageClass::ToolCall,
                Layer::Network => match &fault.params.peer {
                    Some(peer) => {
                        let (target, to, from) = (&fault.target, to_id, from_id);
                        class != MessageClass::Other
                            && ((glob_match(target, to) && glob_match(peer, from))
                                || (glob_match(peer, to) && glob_match(target, from)))
                    }
                    None => class != MessageClass::Other,
                },
                Layer::User => class == MessageClass::UserOpening,
                Layer::Guardrail => class == MessageClass::GuardCheck,
                Layer::Stream | Layer::Mcp => false,
                Layer::Memory => match fault.kind {
                    FaultKind::HandoffDropContext => class == MessageClass::Handoff,
                    _ => class != MessageClass::Other && class != MessageClass::UserOpening,
                },
            };
            let trigger = &fault.trigger;
            if trigger.on_message == Some(received) {
                self.watch[index].nth_eligible.get_or_insert(eligible);
            }
            self.watch[index].eligible += u64::from(eligible);
            if !eligible
                || trigger.count.is_some_and(|max| self.fired_counts[index] >= max)
                || trigger.at_us.is_some_and(|at| now_us < at)
                || trigger
                    .between_us
                    .is_some_and(|(from, to)| now_us < from || now_us >= to)
                || trigger.after.is_some_and(|other| self.fired_counts[other] == 0)
                || trigger.on_message.is_some_and(|n| received != n)
                || trigger
                    .message_contains
                    .as_deref()
                    .is_some_and(|needle| !text.is_some_and(|t| t.contains(needle)))
            {
                continue;
            }
            if let Some(p) = trigger.probability {
                self.watch[index].drawn += 1;
                let stream = match conversation_key {
                    None => &mut self.streams[index],
                    Some(key) => {
                        let family = &self.families[index];
                        self.conversation_streams[index]
                            .entry(key)
                            .or_insert_with(|| family.member(key))
                    }
                };
                if !p.draw(stream) {
                    continue;
                }
            }
            let firing = self.fired_counts[index];
            self.fired_counts[index] += 1;
            // At most one fault fires per delivery: a later fault pinned to this very message
            // loses it.
            for &later in candidates.iter().skip_while(|c| **c != index).skip(1) {
                if self.faults[later].trigger.on_message == Some(received) {
                    self.watch[later].nth_taken = true;
                }
            }
            let suppressed = self
                .suppressed
                .is_some_and(|(suppressed, which)| suppressed == index && which.is_none_or(|w| w == firing));
            let injection = Injection {
                fault: index,
                kind: fault.kind,
            };
            if fault.kind.tool_calls_needed().is_some() {
                self.pending = Some(PendingFiring { injection, suppressed });
            }
            return (!suppressed).then_some(injection);
        }
        None
    }
}

impl FaultPlan {
    /// The tool-call fault drawn on the model call just delivered, if one was, now that its
    /// answer is known: `calls` is how many tool calls the answer carries (`None`: the call
    /// failed or gave no answer). Returns the firing if it happened and is not left out; a
    /// firing with too few calls to break is undone, as if never drawn a hit.
    pub fn settle(&mut self, calls: Option<usize>) -> Option<Injection> {
        let pending = self.pending.take()?;
        let index = pending.injection.fault;
        let needed = pending.injection.kind.tool_calls_needed().unwrap_or(0);
        if calls.is_none_or(|calls| calls < needed) {
            self.fired_counts[index] -= 1;
            self.watch[index].void += 1;
            return None;
        }
        (!pending.suppressed).then_some(pending.injection)
    }

    /// Whether a tool-call fault waits for the answer of the model call just delivered.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }
}

impl FaultPlan {
    /// Each fault that never fired in the run, and why, as far as the run shows:
    /// `received[i]` is how many messages actor `i` (of `logical_ids`) got.
    pub fn never_fired(&self, received: &[u64], logical_ids: &[std::sync::Arc<str>]) -> Vec<NeverFired> {
        let mut out = Vec::new();
        for (index, fault) in self.faults.iter().enumerate() {
            if self.fired_counts[index] > 0 {
                continue;
            }
            let watch = self.watch[index];
            let trigger = &fault.trigger;
            let targets: Vec<usize> = (0..self.by_actor.len())
                .filter(|a| self.by_actor[*a].contains(&index))
                .collect();
            let acts_on = match fault.kind.layer() {
                Layer::Actor => "messages",
                Layer::Provider | Layer::Content => "model calls",
                Layer::Tool => "tool calls",
                Layer::Network => "messages between actors",
                Layer::User => "user messages (openings and follow-ups)",
                Layer::Guardrail => "guardrail checks",
                Layer::Stream => "streamed answers",
                Layer::Mcp => "MCP tool calls",
                Layer::Memory => match fault.kind {
                    FaultKind::HandoffDropContext => "handoffs",
                    _ => "messages to agents",
                },
            };
            let most = targets
                .iter()
                .max_by_key(|a| received.get(**a).copied().unwrap_or(0))
                .map(|a| {
                    (
                        logical_ids.get(*a).map_or("?", |id| id),
                        received.get(*a).copied().unwrap_or(0),
                    )
                });
            let reason = if self.off_by_profile[index] {
                "it is off under this seed's profile".to_owned()
            } else if trigger.count == Some(0) {
                "count = 0".to_owned()
            } else if targets.is_empty() {
                format!("its target {} matches no actor it can act on", fault.target)
            } else if watch.eligible == 0 {
                format!("its target {} got none of the {acts_on} it acts on", fault.target)
            } else if watch.void > 0 {
                let needed = match fault.kind.tool_calls_needed() {
                    Some(n) if n > 1 => format!("{n} tool calls"),
                    _ => "a tool call".to_owned(),
                };
                format!(
                    "it was drawn on {} model answer(s), none of which carried {needed} for it to break",
                    watch.void
                )
            } else if let Some(n) = trigger.on_message {
                match (most, watch.nth_eligible) {
                    (Some((id, got)), None) if got < n => {
                        format!("on_message = {n}, but {id} got only {got} message(s)")
                    }
                    (_, Some(false)) => {
                        format!("on_message = {n}: that message was not one of the {acts_on} it acts on")
                    }
                    _ if watch.nth_taken => {
                        format!("on_message = {n}: an earlier fault fired on that message (one fault per delivery)")
                    }
                    _ => format!("on_message = {n}: its other conditions did not hold on that message"),
                }
            } else if let Some(other) = trigger.after.filter(|o| self.fired_counts[*o] == 0) {
                format!("after = \"{}\", which never fired", self.faults[other].name)
            } else if let Some(p) = trigger
                .probability
                .filter(|_| trigger.at_us.is_none() && trigger.between_us.is_none())
            {
                format!(
                    "probability {} drew no hit over the {} {acts_on} it was drawn on",
                    short_number(p.as_f64()),
                    watch.drawn
                )
            } else {
                format!(
                    "its conditions (time, message_contains, probability) never held on the {} {acts_on} it could act on",
                    watch.eligible
                )
            };
            out.push(NeverFired {
                fault: fault.name.clone(),
                kind: fault.kind.name().to_owned(),
                reason,
            });
        }
        out
    }
}

/// `0.004` for 0.0039999999999998925: a probability as a person wrote it.
fn short_number(value: f64) -> String {
    let text = format!("{value:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Whether `fault` can ever fire on the actor with this logical id.
fn applies_to(fault: &Fault, id: &str) -> bool {
    let prefixes: &[&str] = match fault.kind.layer() {
        Layer::Actor | Layer::Network => &["agent:", "tool:", "llm:", "guardrail:"],
        Layer::Provider | Layer::Content => &["llm:"],
        Layer::Tool => &["tool:"],
        Layer::Memory | Layer::User => &["agent:"],
        Layer::Guardrail => &["guardrail:"],
        Layer::Stream | Layer::Mcp => &[],
    };
    let target_side = prefixes.iter().any(|p| id.starts_with(p)) && glob_match(&fault.target, id);
    // A partition cuts both ways: the peer's side receives nothing from the target either.
    let peer_side =
        fault.kind == FaultKind::NetworkPartition && fault.params.peer.as_deref().is_some_and(|p| glob_match(p, id));
    target_side || peer_side
}
