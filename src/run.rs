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

/// What each fault firing of a run changed: for each of its first
/// [`FIRINGS_MAX`](crate::report::impact::FIRINGS_MAX) firings, the run again with only that
/// firing left out, and the conversations whose fate or side effects differ. `report` is the
/// run's own report, made with `options`. Mock models only: a live or replayed model would be
/// asked what it was not asked before.
pub fn impact(
    scenario: Arc<Scenario>,
    options: &RunOptions,
    report: &RunReport,
) -> Result<crate::report::impact::Impact, RunError> {
    use crate::report::impact::{changes, FiringImpact, Impact, CHANGES_LISTED_MAX, FIRINGS_MAX};
    let counterfactual = RunOptions {
        trace: crate::trace::TraceMode::Digest,
        replay_command: String::new(),
        ..options.clone()
    };
    let mut firings_so_far: std::collections::BTreeMap<usize, u32> = std::collections::BTreeMap::new();
    let mut firings = Vec::new();
    for record in report.faults.iter().take(FIRINGS_MAX) {
        let count = firings_so_far.entry(record.fault).or_default();
        let firing = *count;
        *count += 1;
        let observer = Observer::new(&scenario);
        let (engine, mut observer) = crate::engine::execute_without(
            scenario.clone(),
            &counterfactual,
            observer,
            Interrupt::default(),
            Some((record.fault, Some(firing))),
        )?;
        let without = crate::report::assemble::assemble(&scenario, engine, &mut observer, String::new());
        let deltas = crate::report::impact::Deltas::between(&report.outcomes, &without.outcomes);
        let mut changed = changes(&report.outcomes, &without.outcomes);
        let changed_total = changed.len() as u64;
        changed.truncate(CHANGES_LISTED_MAX);
        firings.push(FiringImpact {
            fault: record.name.clone(),
            kind: record.kind.clone(),
            firing: firing + 1,
            seq: record.seq,
            t_us: record.t_us,
            changed_total,
            changed,
            deltas,
            outcome_without: without.outcome.name().to_owned(),
        });
    }
    Ok(Impact {
        firings,
        firings_total: report.faults.len() as u64,
    })
}

/// What each fault that fired changed, with every firing of it left out at once: one rerun per
/// fault (at most [`FAULTS_PER_SEED_MAX`](crate::report::impact::FAULTS_PER_SEED_MAX)), what a
/// sweep's `--impact` aggregates over its seeds.
pub fn impact_by_fault(
    scenario: Arc<Scenario>,
    options: &RunOptions,
    report: &RunReport,
) -> Result<Vec<crate::report::impact::FaultImpact>, RunError> {
    use crate::report::impact::{Deltas, FaultImpact, FAULTS_PER_SEED_MAX};
    let counterfactual = RunOptions {
        trace: crate::trace::TraceMode::Digest,
        replay_command: String::new(),
        ..options.clone()
    };
    let mut fired: std::collections::BTreeMap<usize, (String, String, u64)> = Default::default();
    for record in &report.faults {
        let entry = fired
            .entry(record.fault)
            .or_insert_with(|| (record.name.clone(), record.kind.clone(), 0));
        entry.2 += 1;
    }
    let mut out = Vec::new();
    for (fault, (name, kind, firings)) in fired.into_iter().take(FAULTS_PER_SEED_MAX) {
        let (engine, mut observer) = crate::engine::execute_without(
            scenario.clone(),
            &counterfactual,
            Observer::new(&scenario),
            Interrupt::default(),
            Some((fault, None)),
        )?;
        let without = crate::report::assemble::assemble(&scenario, engine, &mut observer, String::new());
        out.push(FaultImpact {
            fault: name,
            kind,
            firings,
            deltas: Deltas::between(&report.outcomes, &without.outcomes),
        });
    }
    Ok(out)
}
