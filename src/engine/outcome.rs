//! How a run ended, and the engine's own records of what happened to its actors: the faults
//! that fired, the failures and the restarts. `report.json` carries them as they are.

use serde::Serialize;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The queue drained and every conversation ended (answered, failed or out of turns).
    Completed,
    /// The queue drained but some conversations never got an answer (lost state, dead ends).
    Stalled,
    /// A limit ended the run (`limit` names it).
    LimitExceeded,
    /// A failure escalated past the root supervisor.
    Escalated,
    /// A signal (SIGINT, SIGTERM) stopped the run at an event boundary.
    Interrupted,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Stalled => "stalled",
            Outcome::LimitExceeded => "limit_exceeded",
            Outcome::Escalated => "escalated",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// A fault that fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultRecord {
    pub seq: u64,
    pub t_us: u64,
    pub kind: String,
    /// The fault's name in the scenario (`KIND@TARGET` unless named).
    pub name: String,
    pub target: String,
    /// Index of the fault in the scenario.
    pub fault: usize,
    /// The target's message count at this delivery (what `on_message` pins).
    pub message: u64,
    /// The conversation of the message it hit, if that message belongs to one.
    pub conversation: Option<u32>,
}

/// An actor restarted by its supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestartRecord {
    pub t_us: u64,
    pub actor: String,
    pub incarnation: u32,
    pub supervisor: String,
}

/// A handler that panicked or returned an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureRecord {
    pub seq: u64,
    pub t_us: u64,
    pub actor: String,
    pub incarnation: u32,
    pub error: String,
}
