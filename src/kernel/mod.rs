//! The deterministic kernel: scheduler, virtual clock, event queue, random streams, envelopes and
//! the turn/ack protocol between the scheduler and the ractor actors.
//!
//! Invariants kept here (see ARCHITECTURE.md): the scheduler owns all nondeterminism; one turn
//! is in flight at a time; virtual time jumps; ties break by `seq`; every random draw comes from
//! a named stream; only logical ids reach the trace; failures are events.

mod actor;
mod effect;
mod envelope;
mod queue;
mod rng;
mod scheduler;
pub mod taint;
mod watchdog;

pub use actor::{Behavior, HandlerError, Identity, SimActor, Turn, TurnContext};
pub use effect::{Completion, Effect};
pub use envelope::{ActorIdx, Envelope, Event};
pub use queue::EventQueue;
pub use rng::{number_duplicates, RngStream};
pub use scheduler::Scheduler;
pub use watchdog::{message_bytes, Interrupt, Watchdog};

use std::sync::{Arc, Once};

use crate::llm::backend::{Backends, CassetteOptions, CassetteOutcome};
use crate::report::RunReport;
use crate::scenario::{Limits, LlmMode, Scenario};
use crate::trace::{Trace, TraceMode};

/// Which tokio runtime carries the actors. The trace must not depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    CurrentThread,
    MultiThread,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::CurrentThread => "current",
            Flavor::MultiThread => "multi",
        }
    }
}

/// How to run a scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub seed: u64,
    pub flavor: Flavor,
    pub trace: TraceMode,
    /// Limits; the scenario's own when `None`.
    pub limits: Option<Limits>,
    /// The command that replays this run, printed in the report.
    pub replay_command: String,
    /// Live models: answer from a cassette instead of the network.
    pub cassette: CassetteOptions,
}

impl RunOptions {
    /// Defaults: current-thread runtime, digest only, the scenario's limits.
    pub fn new(seed: u64) -> RunOptions {
        RunOptions {
            seed,
            flavor: Flavor::CurrentThread,
            trace: TraceMode::Digest,
            limits: None,
            replay_command: String::new(),
            cassette: CassetteOptions::default(),
        }
    }
}

/// What can stop a run from producing a report.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot write the trace: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Setup(String),
    #[error("internal error (a bug in agentsim, please report it): {0}")]
    Internal(String),
}

/// The result of a run: its report, and the trace bytes in [`TraceMode::Memory`].
#[derive(Debug)]
pub struct RunOutput {
    pub report: RunReport,
    pub trace: Vec<u8>,
    /// Live calls recorded, and what a replay found.
    pub cassette: CassetteOutcome,
}

/// Runs `scenario` once. Same scenario, same options → same trace, byte for byte.
pub fn run(scenario: Arc<Scenario>, options: &RunOptions) -> Result<RunOutput, RunError> {
    run_interruptible(scenario, options, Interrupt::default())
}

/// [`run`], stopping at the next event boundary once `interrupt` says so: the outcome is then
/// `interrupted` and every record before the end is the one an uninterrupted run writes.
pub fn run_interruptible(
    scenario: Arc<Scenario>,
    options: &RunOptions,
    interrupt: Interrupt,
) -> Result<RunOutput, RunError> {
    quiet_injected_panics();
    let runtime = match options.flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread().build()?,
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread().worker_threads(2).build()?,
    };
    let limits = options.limits.unwrap_or(scenario.limits);
    let trace = Trace::open(options.trace.clone())?;
    let backends = if scenario.llms.iter().all(|l| l.mode == LlmMode::Mock) {
        Backends::mock_only()
    } else {
        Backends::new(&scenario, &options.cassette).map_err(RunError::Setup)?
    };
    let backends = Arc::new(backends);
    let mut scheduler = Scheduler::new(
        scenario,
        options.seed,
        limits,
        trace,
        options.replay_command.clone(),
        backends.clone(),
    );
    scheduler.interrupt_on(interrupt);
    // The scheduler runs as a task on the runtime, next to the actors, so that on the
    // multi-thread flavour a turn does not cross from the calling thread to a worker and back.
    let (report, trace) = runtime
        .block_on(runtime.spawn(scheduler.run()))
        .map_err(|e| RunError::Internal(format!("the scheduler task failed: {e}")))??;
    runtime.shutdown_background();
    Ok(RunOutput {
        report,
        trace,
        cassette: backends.outcome(),
    })
}

/// Injected crashes are expected; keep their panic messages off the terminal. Other panics print.
fn quiet_injected_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|s| s.starts_with(INJECTED_CRASH_PREFIX))
            {
                return;
            }
            previous(info);
        }));
    });
}

/// Every injected crash's panic message starts with this.
pub const INJECTED_CRASH_PREFIX: &str = "injected crash";
