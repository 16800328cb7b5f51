//! One run, whole: the engine's event loop with the observer accounting beside it, and the
//! report assembled from both. This is what `agentsim run`, sweeps, benchmarks and the tests
//! call.

use std::sync::Arc;

pub use crate::engine::{Flavor, Interrupt, RunError, RunOptions};
use crate::llm::backend::CassetteOutcome;
use crate::observe::Observer;
use crate::report::RunReport;
use crate::scenario::Scenario;

/// The result of a run: its report, and the trace bytes in `TraceMode::Memory`.
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
    let observer = Observer::new(&scenario);
    let (mut engine, mut observer) = crate::engine::execute(scenario.clone(), options, observer, interrupt)?;
    let trace = std::mem::take(&mut engine.trace);
    let cassette = std::mem::take(&mut engine.cassette);
    let report = crate::report::assemble::assemble(&scenario, engine, &mut observer, options.replay_command.clone());
    Ok(RunOutput {
        report,
        trace,
        cassette,
    })
}
