//! The bridge between simulated behaviour and ractor: every simulated actor is a ractor actor that
//! receives one [`Turn`] at a time and answers with a [`Completion::Ack`] carrying its effects.
//!
//! Generic over what is simulated: the message type, the effect type and the fault injection a
//! delivery may carry are the behaviour's own (see `protocol` for agentsim's).

use std::marker::PhantomData;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef};

use super::envelope::ActorIdx;
use super::mailbox::Poster;

/// One delivery: the message and the virtual time it arrives at.
#[derive(Debug)]
pub struct Turn<M, J, E> {
    pub now_us: u64,
    pub seq: u64,
    pub from: ActorIdx,
    /// A fault that fired on this delivery, for the handler to act out.
    pub injection: Option<J>,
    /// The scheduler crashes the actor on this delivery: the handler does not run, the actor
    /// panics with this message (a supervised failure, like any other).
    pub crash: Option<String>,
    pub msg: M,
    /// An empty vector for the turn's effects, handed back full in the [`Completion::Ack`]: the
    /// scheduler passes the same few buffers round, so a turn does not allocate one.
    pub effects: Vec<E>,
}

/// What a handler may read besides its message.
#[derive(Debug, Clone, Copy)]
pub struct TurnContext<J> {
    pub me: ActorIdx,
    pub from: ActorIdx,
    pub now_us: u64,
    pub seq: u64,
    pub incarnation: u32,
    /// A fault that fired on this delivery, for the handler to act out.
    pub injection: Option<J>,
}

/// An error a handler returns; it fails the actor exactly like a panic.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

/// How a turn ended, sent back to the scheduler.
#[derive(Debug)]
pub enum Completion<E> {
    /// The handler finished; here is what it asks for.
    Ack {
        actor: ActorIdx,
        incarnation: u32,
        effects: Vec<E>,
    },
    /// A supervised actor panicked or returned an error; reported by its ractor supervisor.
    Failed { actor_id: ActorId, error: String },
}

/// The behaviour of one kind of simulated actor: a state machine over typed messages.
///
/// `handle` is a function of the state, the message and the context: no clock, no randomness
/// but the actor's own [`super::RngStream`], no messages to peers (everything it wants done is
/// an effect). The one I/O allowed is a live model's call, made inside its turn while the
/// scheduler waits for that turn anyway; its measured latency becomes the answer's delay and
/// the exchange is recorded, so a replay takes the same path without the network.
pub trait Behavior: Send + 'static {
    type Msg: Send + 'static;
    type Effect: Send + 'static;
    type Injection: Copy + Send + 'static;

    fn handle(
        &mut self,
        context: &TurnContext<Self::Injection>,
        msg: Self::Msg,
        effects: &mut Vec<Self::Effect>,
    ) -> Result<(), HandlerError>;
}

/// Fixed facts about an actor incarnation.
pub struct Identity<E> {
    pub me: ActorIdx,
    pub incarnation: u32,
    pub completions: Poster<Completion<E>>,
}

/// The ractor actor that runs a [`Behavior`].
pub struct SimActor<B>(PhantomData<fn() -> B>);

impl<B> Default for SimActor<B> {
    fn default() -> Self {
        SimActor(PhantomData)
    }
}

impl<B: Behavior> Actor for SimActor<B> {
    type Msg = Turn<B::Msg, B::Injection, B::Effect>;
    type State = (B, Identity<B::Effect>);
    type Arguments = (B, Identity<B::Effect>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        turn: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (behavior, identity) = state;
        if let Some(message) = turn.crash {
            // A String payload, so ractor reports the text as the failure.
            std::panic::panic_any(message);
        }
        let context = TurnContext {
            me: identity.me,
            from: turn.from,
            now_us: turn.now_us,
            seq: turn.seq,
            incarnation: identity.incarnation,
            injection: turn.injection,
        };
        let mut effects = turn.effects;
        behavior.handle(&context, turn.msg, &mut effects)?;
        identity.completions.post(Completion::Ack {
            actor: identity.me,
            incarnation: identity.incarnation,
            effects,
        });
        Ok(())
    }
}
