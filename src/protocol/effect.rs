//! What a handler asks for (effects), and the fault injection a delivery carries.

use super::agent::Checkpoint;
use super::guardrail::VerdictRecord;
use super::Payload;
use crate::kernel::ActorIdx;
use crate::scenario::FaultKind;

/// Something a handler asks the scheduler to do. Nothing else leaves a handler.
#[derive(Debug)]
pub enum Effect {
    /// Deliver `payload` to `to` after `delay_us` of virtual time (to itself: a timer).
    Send {
        to: ActorIdx,
        delay_us: u64,
        payload: Payload,
    },
    /// A counted side effect happened now (a tool moved money), `times` times, each of
    /// `amount` (a decimal in millionths) for `subject` when the tool says; or, `cancelled`, it
    /// would have, had its call not been cancelled first (counted apart).
    SideEffect {
        conv: u32,
        name: std::sync::Arc<str>,
        times: u32,
        amount: Option<i64>,
        subject: Option<std::sync::Arc<str>>,
        cancelled: bool,
    },
    /// A tool changed the world (`lost`: it says it did, but the write was lost).
    World {
        conv: u32,
        changes: Vec<super::WorldChange>,
        lost: bool,
    },
    /// An answer came that nobody waits for any more — a model reply, tool result or
    /// delegate's answer (`kind`) after a timeout, a retry, another attempt's answer, or the end
    /// of the conversation here — and was dropped.
    Stale { conv: u32, kind: &'static str },
    /// A tool stopped a call its agent had cancelled before the call took effect.
    CallCancelled { conv: u32 },
    /// A checkpoint of the actor's state, handed to its next incarnation (`persist = true`).
    Persist(Checkpoint),
    /// Supervisors only: restart these children (actors or whole supervisor subtrees), in order.
    Restart { children: Vec<ActorIdx> },
    /// Supervisors only: give up and pass the failure to the parent supervisor.
    Escalate { reason: String },
    /// Guardrails only: the verdict of a check. When it contains the message, the sends after
    /// it in the same turn stand in for the message and do not inherit its taint.
    Verdict(Box<VerdictRecord>),
}

/// A fault that fired on a delivery: which one (index into the scenario's faults) and its kind.
/// The scheduler decides; the receiving actor acts it out where it happens in reality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injection {
    pub fault: usize,
    pub kind: FaultKind,
}
