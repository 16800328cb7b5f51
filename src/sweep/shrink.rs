//! Shrinking a failing seed: delta debugging over the faults that fired, to the smallest set
//! that still breaks the same invariant.
//!
//! Each fired fault is pinned to where it happened — the same kind and parameters, on the same
//! actor's Nth message — and every other random choice still comes from the same per-actor
//! streams, so removing one fault changes as little as possible of the rest of the run.

use std::sync::Arc;

use crate::report::{FaultRecord, RunReport};
use crate::run::{self, RunError, RunOptions};
use crate::scenario::{Fault, MalformedMode, Scenario, Trigger};

/// What a shrink found.
#[derive(Debug, Clone)]
pub struct Shrunk {
    pub seed: u64,
    /// The invariant (or outcome) the minimal set still breaks.
    pub breaks: String,
    /// Faults that fired in the original run.
    pub before: usize,
    /// The minimal set, pinned.
    pub faults: Vec<Fault>,
    /// Runs it took.
    pub runs: u32,
    /// A standalone scenario with the pinned fault plan.
    pub scenario_text: String,
}

/// Shrinks `seed`; `None` when the seed passes (nothing to shrink).
pub fn shrink(scenario: &Arc<Scenario>, seed: u64) -> Result<Option<Shrunk>, RunError> {
    let original = run::run(scenario.clone(), &RunOptions::new(seed))?.report;
    let Some(breaks) = what_breaks(&original) else {
        return Ok(None);
    };
    let pins: Vec<Fault> = original.faults.iter().map(|record| pin(scenario, record)).collect();
    let mut runs = 0;
    let mut still_fails = |subset: &[Fault]| -> Result<bool, RunError> {
        runs += 1;
        let mut variant = (**scenario).clone();
        variant.faults = subset.to_vec();
        variant.profiles.clear();
        let report = run::run(Arc::new(variant), &RunOptions::new(seed))?.report;
        Ok(breaks_same(&report, &breaks))
    };
    // If the pinned plan does not reproduce the failure, keep every fault as it was.
    let minimal = if still_fails(&pins)? {
        ddmin(pins, &mut still_fails)?
    } else {
        Vec::new()
    };
    let scenario_text = standalone(scenario, &minimal);
    Ok(Some(Shrunk {
        seed,
        breaks,
        before: original.faults.len(),
        faults: minimal,
        runs,
        scenario_text,
    }))
}

/// The first broken invariant's name, or the outcome when no invariant broke.
fn what_breaks(report: &RunReport) -> Option<String> {
    if let Some(invariant) = report.invariants.iter().find(|i| !i.passed) {
        return Some(invariant.name.clone());
    }
    (!report.passed()).then(|| format!("outcome {}", report.outcome.name()))
}

fn breaks_same(report: &RunReport, breaks: &str) -> bool {
    match breaks.strip_prefix("outcome ") {
        Some(outcome) => report.outcome.name() == outcome,
        None => report.invariants.iter().any(|i| i.name == breaks && !i.passed),
    }
}

/// A fired fault pinned to the delivery it fired on.
fn pin(scenario: &Scenario, record: &FaultRecord) -> Fault {
    let original = &scenario.faults[record.fault];
    Fault {
        name: format!("{}#{}", original.name, record.message),
        kind: original.kind,
        target: record.target.clone(),
        trigger: Trigger {
            on_message: Some(record.message),
            count: Some(1),
            ..Trigger::default()
        },
        params: original.params.clone(),
    }
}

/// Zeller's ddmin: a 1-minimal subset of `faults` for which `fails` still holds.
fn ddmin(
    mut faults: Vec<Fault>,
    fails: &mut dyn FnMut(&[Fault]) -> Result<bool, RunError>,
) -> Result<Vec<Fault>, RunError> {
    let mut granularity = 2;
    while faults.len() >= 2 {
        let chunk = faults.len().div_ceil(granularity);
        let chunks: Vec<Vec<Fault>> = faults.chunks(chunk).map(|c| c.to_vec()).collect();
        let mut reduced = false;
        for (i, part) in chunks.iter().enumerate() {
            if fails(part)? {
                faults = part.clone();
                granularity = 2;
                reduced = true;
                break;
            }
            let complement: Vec<Fault> = chunks
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, c)| c.clone())
                .collect();
            if fails(&complement)? {
                faults = complement;
                granularity = (granularity - 1).max(2);
                reduced = true;
                break;
            }
        }
        if !reduced {
            if granularity >= faults.len() {
                break;
            }
            granularity = (granularity * 2).min(faults.len());
        }
    }
    if faults.len() == 1 && fails(&[])? {
        faults.clear();
    }
    Ok(faults)
}

/// The scenario's text with its faults and profiles replaced by the pinned plan.
fn standalone(scenario: &Scenario, faults: &[Fault]) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in scenario.source_text.lines() {
        let header = line.trim_start();
        if header.starts_with('[') {
            skipping = header.starts_with("[[fault]]") || header.starts_with("[[profile]]");
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("\n# Pinned by `agentsim run --shrink`: the smallest set of the faults that fired which still\n");
    out.push_str("# breaks the run, each on the exact message it hit.\n");
    for fault in faults {
        let quote = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
        out.push_str(&format!(
            "\n[[fault]]\nname = {}\nkind = {}\ntarget = {}\n",
            quote(&fault.name),
            quote(fault.kind.name()),
            quote(&fault.target)
        ));
        out.push_str(&format!(
            "on_message = {}\ncount = 1\n",
            fault.trigger.on_message.unwrap_or(1)
        ));
        let p = &fault.params;
        if let Some(us) = p.retry_after_us {
            out.push_str(&format!("retry_after = \"{us}us\"\n"));
        }
        if let Some(us) = p.latency_us {
            out.push_str(&format!("latency = \"{us}us\"\n"));
        }
        for (key, value) in [("text", &p.text), ("tool", &p.tool), ("peer", &p.peer)] {
            if let Some(value) = value {
                out.push_str(&format!("{key} = {}\n", quote(value)));
            }
        }
        if let Some(mode) = p.mode {
            let name = match mode {
                MalformedMode::Truncated => "truncated",
                MalformedMode::TrailingGarbage => "trailing_garbage",
                MalformedMode::WrongType => "wrong_type",
                MalformedMode::MissingField => "missing_field",
            };
            out.push_str(&format!("mode = \"{name}\"\n"));
        }
    }
    out
}
