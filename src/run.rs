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

/// What each fault of a run changed, and each of its firings: per fault that fired (at most
/// [`FAULTS_PER_SEED_MAX`](crate::report::impact::FAULTS_PER_SEED_MAX)) the run again with all
/// its firings left out, and for each of the run's first
/// [`FIRINGS_MAX`](crate::report::impact::FIRINGS_MAX) firings the run again with only that
/// firing left out; then the conversations whose fate or side effects differ. `report` is the
/// run's own report, made with `options`. Mock models only: a live or replayed model would be
/// asked what it was not asked before.
pub fn impact(
    scenario: Arc<Scenario>,
    options: &RunOptions,
    report: &RunReport,
) -> Result<crate::report::impact::Impact, RunError> {
    use crate::report::impact::{changes, FaultChanges, FiringImpact, Impact, CHANGES_LISTED_MAX, FIRINGS_MAX};
    let mut faults = Vec::new();
    for (impact, without) in by_fault(&scenario, options, report)? {
        let mut changed = changes(&report.outcomes, &without.outcomes);
        let changed_conversations = changed.iter().map(|c| c.conversation).collect();
        let harm = |o: &Option<crate::report::fate::ConversationOutcome>| o.as_ref().is_some_and(|o| o.fate.is_harm());
        let harm_caused = changed.iter().filter(|c| harm(&c.with) && !harm(&c.without)).count() as u64;
        let changed_total = changed.len() as u64;
        changed.truncate(CHANGES_LISTED_MAX);
        faults.push(FaultChanges {
            impact,
            changed_total,
            changed,
            outcome_without: without.outcome.name().to_owned(),
            changed_conversations,
            harm_caused,
        });
    }
    faults.sort_by_key(|f| std::cmp::Reverse(f.changed_total));
    let mut firings_so_far: std::collections::BTreeMap<usize, u32> = std::collections::BTreeMap::new();
    let mut firings = Vec::new();
    for record in report.faults.iter().take(FIRINGS_MAX) {
        let count = firings_so_far.entry(record.fault).or_default();
        let firing = *count;
        *count += 1;
        let without = rerun_without(&scenario, options, (record.fault, Some(firing)))?;
        let hit = record.conversation.into_iter().collect();
        let deltas = crate::report::impact::Deltas::between(&report.outcomes, &without.outcomes, &hit);
        let mut changed = changes(&report.outcomes, &without.outcomes);
        let changed_total = changed.len() as u64;
        changed.truncate(CHANGES_LISTED_MAX);
        firings.push(FiringImpact {
            fault: record.name.clone(),
            kind: record.kind.clone(),
            firing: firing + 1,
            seq: record.seq,
            t_us: record.t_us,
            conversation: record.conversation,
            changed_total,
            changed,
            deltas,
            outcome_without: without.outcome.name().to_owned(),
        });
    }
    Ok(Impact {
        faults,
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
    Ok(by_fault(&scenario, options, report)?
        .into_iter()
        .map(|(impact, _)| impact)
        .collect())
}

/// Per fault that fired, in scenario order: its impact, and the report of the run without it.
fn by_fault(
    scenario: &Arc<Scenario>,
    options: &RunOptions,
    report: &RunReport,
) -> Result<Vec<(crate::report::impact::FaultImpact, RunReport)>, RunError> {
    use crate::report::impact::{Deltas, FaultImpact, FAULTS_PER_SEED_MAX};
    struct Fired {
        name: String,
        kind: String,
        firings: u64,
        hit: std::collections::BTreeSet<u32>,
    }
    let mut fired: std::collections::BTreeMap<usize, Fired> = Default::default();
    for record in &report.faults {
        let entry = fired.entry(record.fault).or_insert_with(|| Fired {
            name: record.name.clone(),
            kind: record.kind.clone(),
            firings: 0,
            hit: Default::default(),
        });
        entry.firings += 1;
        entry.hit.extend(record.conversation);
    }
    let mut out = Vec::new();
    for (fault, fired) in fired.into_iter().take(FAULTS_PER_SEED_MAX) {
        let without = rerun_without(scenario, options, (fault, None))?;
        let impact = FaultImpact {
            fault: fired.name,
            kind: fired.kind,
            firings: fired.firings,
            deltas: Deltas::between(&report.outcomes, &without.outcomes, &fired.hit),
        };
        out.push((impact, without));
    }
    Ok(out)
}

/// The report of the run made with `options` but with `left_out` (a fault, and one of its
/// firings or all of them) not firing; every draw is still made.
fn rerun_without(
    scenario: &Arc<Scenario>,
    options: &RunOptions,
    left_out: (usize, Option<u32>),
) -> Result<RunReport, RunError> {
    // Impact compares reports, never traces: the rerun does not encode one.
    let counterfactual = RunOptions {
        trace: crate::trace::TraceMode::Off,
        replay_command: String::new(),
        ..options.clone()
    };
    let (engine, mut observer) = crate::engine::execute_without(
        scenario.clone(),
        &counterfactual,
        Observer::new(scenario),
        Interrupt::default(),
        Some(left_out),
    )?;
    Ok(crate::report::assemble::assemble(
        scenario,
        engine,
        &mut observer,
        String::new(),
    ))
}
