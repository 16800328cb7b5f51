//! The bridge between simulated behaviour and ractor: every simulated actor is a ractor actor that
//! receives one [`Turn`] at a time and answers with a [`Completion::Ack`].

use std::marker::PhantomData;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc::UnboundedSender;

use super::effect::{Completion, Effect};
use super::envelope::ActorIdx;
use super::INJECTED_CRASH_PREFIX;
use crate::faults::catalogue::FaultKind;
use crate::faults::Injection;

/// One delivery: the message and the virtual time it arrives at.
#[derive(Debug)]
pub struct Turn<M> {
    pub now_us: u64,
    pub seq: u64,
    pub from: ActorIdx,
    /// A fault that fired on this delivery; `actor.crash` makes the handler panic.
    pub injection: Option<Injection>,
    pub msg: M,
}

/// What a handler may read besides its message.
#[derive(Debug, Clone, Copy)]
pub struct TurnContext {
    pub me: ActorIdx,
    pub from: ActorIdx,
    pub now_us: u64,
    pub seq: u64,
    pub incarnation: u32,
    /// A fault that fired on this delivery, for the handler to act out.
    pub injection: Option<Injection>,
}

/// An error a handler returns; it fails the actor exactly like a panic.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

/// The behaviour of one kind of simulated actor: a state machine over typed messages.
///
/// `handle` must be a pure function of the state, the message and the context: no clock, no
/// I/O, no randomness but the actor's own [`super::RngStream`].
pub trait Behavior: Send + 'static {
    type Msg: Send + 'static;

    fn handle(&mut self, context: &TurnContext, msg: Self::Msg, effects: &mut Vec<Effect>) -> Result<(), HandlerError>;
}

/// Fixed facts about an actor incarnation.
pub struct Identity {
    pub me: ActorIdx,
    pub incarnation: u32,
    pub completions: UnboundedSender<Completion>,
}

/// The ractor actor that runs a [`Behavior`].
pub struct SimActor<B>(PhantomData<fn() -> B>);

impl<B> Default for SimActor<B> {
    fn default() -> Self {
        SimActor(PhantomData)
    }
}

impl<B: Behavior> Actor for SimActor<B> {
    type Msg = Turn<B::Msg>;
    type State = (B, Identity);
    type Arguments = (B, Identity);

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
        if let Some(injection) = turn.injection.filter(|i| i.kind == FaultKind::ActorCrash) {
            // A String payload, so ractor reports the text as the failure.
            std::panic::panic_any(format!(
                "{INJECTED_CRASH_PREFIX}: fault #{} (actor.crash) at seq {}",
                injection.fault, turn.seq
            ));
        }
        let context = TurnContext {
            me: identity.me,
            from: turn.from,
            now_us: turn.now_us,
            seq: turn.seq,
            incarnation: identity.incarnation,
            injection: turn.injection,
        };
        let mut effects = Vec::new();
        behavior.handle(&context, turn.msg, &mut effects)?;
        // A closed channel means the run is over; nothing is waiting for this ack.
        let _ = identity.completions.send(Completion::Ack {
            actor: identity.me,
            incarnation: identity.incarnation,
            effects,
        });
        Ok(())
    }
}
