//! What a handler asks for (effects), and how a turn ends (a completion: ack or failure).

use ractor::ActorId;

use super::envelope::ActorIdx;
use crate::actors::Payload;

/// Something a handler asks the scheduler to do. Nothing else leaves a handler.
#[derive(Debug)]
pub enum Effect {
    /// Deliver `payload` to `to` after `delay_us` of virtual time (to itself: a timer).
    Send {
        to: ActorIdx,
        delay_us: u64,
        payload: Payload,
    },
    /// A counted side effect happened now (a tool moved money), `times` times.
    SideEffect {
        conv: u32,
        name: std::sync::Arc<str>,
        times: u32,
    },
    /// A checkpoint of the actor's state, handed to its next incarnation (`persist = true`).
    Persist(crate::actors::agent::Checkpoint),
    /// Supervisors only: restart these children (actors or whole supervisor subtrees), in order.
    Restart { children: Vec<ActorIdx> },
    /// Supervisors only: give up and pass the failure to the parent supervisor.
    Escalate { reason: String },
    /// Guardrails only: the verdict of a check. When it contains the message, the sends after
    /// it in the same turn stand in for the message and do not inherit its taint.
    Verdict(Box<crate::actors::guardrail::VerdictRecord>),
}

/// How a turn ended, sent back to the scheduler.
#[derive(Debug)]
pub enum Completion {
    /// The handler finished; here is what it asks for.
    Ack {
        actor: ActorIdx,
        incarnation: u32,
        effects: Vec<Effect>,
    },
    /// A supervised actor panicked or returned an error; reported by its ractor supervisor.
    Failed { actor_id: ActorId, error: String },
}
