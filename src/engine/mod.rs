//! The engine: one run's event loop. The [`Scheduler`] owns the virtual clock, the event queue,
//! the actor table (spawn, restart, supervision), the fault plan, network faults, taint stamping,
//! the runaway watchdog and the trace writer; it delivers one event at a time to one actor,
//! waits for its completion and applies its effects.
//!
//! Invariants kept here (see ARCHITECTURE.md): the scheduler owns all nondeterminism; one turn
//! is in flight at a time; virtual time jumps; ties break by `seq`; every random draw comes from
//! a named stream; only logical ids reach the trace; failures are events.
//!
//! The engine knows nothing of reports, HTML or the CLI: it tells an [`Observe`] what happens
//! and returns an [`EngineRun`]; the report layer makes `report.json` of the two.

pub mod fault_plan;
mod observe;
mod outcome;
mod scheduler;
mod slots;
pub mod watchdog;

pub use observe::{Observe, ReplyFor, SideEffect};
pub use outcome::{FailureRecord, FaultRecord, Outcome, RestartRecord};
pub use scheduler::Scheduler;
pub use watchdog::{message_bytes, Interrupt, Watchdog};

use std::sync::{Arc, Once};

use crate::llm::backend::{Backends, CassetteOptions, CassetteOutcome};
use crate::protocol::LabelSpace;
use crate::scenario::{Limits, LlmMode, Scenario};
use crate::trace::{Trace, TraceMode};

/// Which tokio runtime carries the actors. The trace must not depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    CurrentThread,
    MultiThread,
}

impl Flavor {
    /// A runtime of this flavour, as every run builds its own: no I/O or time driver (nothing in
    /// a run waits on either), two workers for multi_thread.
    pub fn runtime(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread().build(),
            Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread().worker_threads(2).build(),
        }
    }

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

/// What the engine knows at the end of a run; the report layer adds the observer's accounts.
#[derive(Debug)]
pub struct EngineRun {
    pub seed: u64,
    /// The fault profile this seed ran under, if the scenario has profiles.
    pub profile: Option<String>,
    pub outcome: Outcome,
    pub outcome_detail: Option<String>,
    pub digest: String,
    /// Virtual time of the last event.
    pub virtual_time_us: u64,
    pub events: u64,
    /// Deliveries from one actor to another (timers not counted).
    pub messages: u64,
    pub faults: Vec<FaultRecord>,
    /// The scenario's faults that never fired, and why.
    pub never_fired: Vec<fault_plan::NeverFired>,
    pub failures: Vec<FailureRecord>,
    pub restarts: Vec<RestartRecord>,
    /// Logical ids of the actor table, by `ActorIdx`.
    pub logical_ids: Vec<Arc<str>>,
    pub labels: LabelSpace,
    /// The trace bytes in [`TraceMode::Memory`], else empty.
    pub trace: Vec<u8>,
    /// Live calls recorded, and what a replay found.
    pub cassette: CassetteOutcome,
}

/// Runs `scenario` once, telling `observer` what happens, stopping at the next event boundary
/// once `interrupt` says so. Same scenario, same options → same trace, byte for byte.
pub fn execute<O: Observe + Send + 'static>(
    scenario: Arc<Scenario>,
    options: &RunOptions,
    observer: O,
    interrupt: Interrupt,
) -> Result<(EngineRun, O), RunError> {
    execute_without(scenario, options, observer, interrupt, None)
}

/// [`execute`], with one fault firing (fault index, firing number from 0) left out — or every
/// firing of that fault, for no firing number: the counterfactual run that shows what it changed.
pub fn execute_without<O: Observe + Send + 'static>(
    scenario: Arc<Scenario>,
    options: &RunOptions,
    observer: O,
    interrupt: Interrupt,
    suppressed: Option<(usize, Option<u32>)>,
) -> Result<(EngineRun, O), RunError> {
    quiet_injected_panics();
    let runtime = options.flavor.runtime()?;
    let limits = options.limits.unwrap_or(scenario.limits);
    let trace = Trace::open(options.trace.clone())?;
    let backends = if scenario.llms.iter().all(|l| l.mode == LlmMode::Mock) {
        Backends::mock_only()
    } else {
        Backends::new(&scenario, &options.cassette)
            .map_err(RunError::Setup)?
            .interrupted_by(interrupt.signal.clone())
    };
    let backends = Arc::new(backends);
    let mut scheduler = Scheduler::new(scenario, options.seed, limits, trace, observer, backends.clone());
    scheduler.interrupt_on(interrupt);
    if let Some(firing) = suppressed {
        scheduler.suppress_firing(firing);
    }
    // The scheduler runs as a task on the runtime, next to the actors, so that on the
    // multi-thread flavour a turn does not cross from the calling thread to a worker and back.
    // Its output is boxed: tokio moves a task's `Poll<Output>` on every poll, and the run's
    // result (the observer, the logs) is large.
    let finished = runtime
        .block_on(runtime.spawn(async move { scheduler.run().await.map(Box::new) }))
        .map_err(|e| RunError::Internal(format!("the scheduler task failed: {e}")))??;
    let (mut run, observer) = *finished;
    runtime.shutdown_background();
    run.cassette = backends.outcome();
    Ok((run, observer))
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
