//! Users who talk back: who goes on after the agent answers, and how. A `[[user]]` is declared
//! once and named by traffic; each conversation of that traffic continues, turn by turn, until
//! the user ends it, gives up, or runs out of turns.

use super::expr::{Expr, Template};
use super::model::{Latency, LlmIdx, Probability, Rule};

/// Index of a user in [`super::Scenario::users`].
pub type UserIdx = usize;

/// User messages a conversation may have, the opening one included, when neither the user nor
/// the `[scenario]` table says (`max_user_turns`).
pub const MAX_USER_TURNS_DEFAULT: u32 = 20;

/// The text a model-driven user writes to end the dialogue satisfied (τ-bench's convention).
pub const STOP_MARKER_DEFAULT: &str = "###STOP###";

/// How long a scripted or rules user takes before each follow-up, when it does not say.
pub const THINK_US_DEFAULT: u64 = 1_000_000;

/// A simulated customer.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    /// User messages one conversation may have, the opening one included; wanting to say one
    /// more ends it out of turns (`max_user_turns`).
    pub max_turns: u32,
    /// How long the user takes before each follow-up (a model-driven user takes its model's
    /// latency on top).
    pub think: Latency,
    pub kind: UserKind,
}

/// How a user decides what to say next.
#[derive(Debug, Clone)]
pub enum UserKind {
    /// Follow-ups in order; a step whose condition does not hold is skipped. When the script runs
    /// out, the user has nothing more to say and the conversation ends with the last answer.
    Scripted(Vec<UserStep>),
    /// Rules over the conversation, first match wins, every turn; no match: nothing more to say.
    Rules(Vec<UserStep>),
    /// A user simulator backed by a model: its instructions are the persona and the goal; it
    /// sees the conversation with the roles swapped (the agent's answers are its input) and ends
    /// the dialogue by writing a marker.
    Model {
        llm: LlmIdx,
        instructions: String,
        /// The mock model's rules when `llm` is a mock (answers only).
        behavior: Vec<Rule>,
        /// Ends the conversation resolved.
        stop: String,
        /// Ends the conversation abandoned, when set.
        give_up: Option<String>,
    },
}

/// One step of a scripted or rules user.
#[derive(Debug, Clone)]
pub struct UserStep {
    pub when: Option<Expr>,
    /// Chance the step is taken when its condition holds; drawn from the user's stream.
    pub probability: Option<Probability>,
    pub act: UserAct,
}

/// What the user does after an answer.
#[derive(Debug, Clone)]
pub enum UserAct {
    /// Says this (a reply).
    Say(Template),
    /// Says its previous message again.
    Insist,
    /// Takes back what it said.
    Contradict(String),
    /// Leaves unsatisfied: the conversation ends abandoned.
    GiveUp,
    /// Declares the matter settled: the conversation ends resolved.
    Done,
}

impl UserKind {
    pub fn name(&self) -> &'static str {
        match self {
            UserKind::Scripted(_) => "scripted",
            UserKind::Rules(_) => "rules",
            UserKind::Model { .. } => "model",
        }
    }
}
