//! The kernel: what every deterministic run is made of, and nothing about what is simulated.
//!
//! Logical actor ids, envelopes generic over their payload, the event queue ordered by
//! `(virtual_time_us, seq)`, named random streams and their samplers over plain numbers, taint
//! label sets, the completion mailbox, and the bridge to ractor: the [`Behavior`] trait and the
//! generic [`SimActor`] that runs one turn at a time and answers with its effects.
//!
//! The kernel knows nothing of agents, models, scenarios or traces: it imports nothing from the
//! rest of the crate (a test in `tests/layers.rs` holds this).

mod actor;
mod envelope;
mod labels;
mod mailbox;
mod queue;
mod rng;

pub use actor::{Behavior, Completion, HandlerError, Identity, SimActor, Turn, TurnContext};
pub use envelope::{ActorIdx, Envelope, Event};
pub use labels::Labels;
pub use mailbox::{mailbox, Mailbox, Poster};
pub use queue::EventQueue;
pub use rng::{number_duplicates, RngStream, StreamFamily};
