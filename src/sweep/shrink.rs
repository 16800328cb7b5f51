//! Shrinking a failing seed: delta debugging over the faults that fired, to the smallest set
//! that still breaks the same invariant at the same conversation.
//!
//! Each fired fault is pinned to where it happened — the same kind and parameters, on the same
//! actor's Nth message — and every other random choice still comes from the same per-actor
//! streams, so removing one fault changes as little as possible of the rest of the run.
//!
//! Every candidate is judged by the scenario text that would be written: it is parsed, validated
//! and run, so what is written always validates and reproduces the failure. Invariants that name
//! a fault (`tainted_by`, `output_tainted_by`) are pointed at the pinned faults that remain, or
//! dropped when none remains, and the file says so in a comment.

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

use crate::report::{FaultRecord, RunReport};
use crate::run::{self, RunError, RunOptions};
use crate::scenario::file::RawScenario;
use crate::scenario::glob::glob_match;
use crate::scenario::{Fault, MalformedMode, Scenario, Trigger};

/// What a shrink found.
#[derive(Debug, Clone)]
pub struct Shrunk {
    pub seed: u64,
    /// The invariant (or outcome) the minimal set still breaks.
    pub breaks: String,
    /// The conversation of the invariant's first violation, in the original run and the shrunk one.
    pub conversation: Option<u32>,
    /// Faults that fired in the original run.
    pub before: usize,
    /// The minimal set, pinned (when `pinned`), or the scenario's own faults.
    pub faults: Vec<Fault>,
    /// False when no pinned plan reproduced the failure and the scenario keeps its faults as
    /// they were.
    pub pinned: bool,
    /// Runs it took.
    pub runs: u32,
    /// What the shrunk text changed besides the faults: rewritten or dropped invariants.
    pub notes: Vec<String>,
    /// A standalone scenario with the pinned fault plan; it validates and, run with `seed`,
    /// breaks `breaks` first at `conversation`.
    pub scenario_text: String,
}

/// Why a shrink could not produce a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    #[error(transparent)]
    Run(#[from] RunError),
    /// `--shrink-for` named an invariant the seed did not break.
    #[error("--shrink-for \"{name}\": seed {seed} did not break an invariant of that name; {}", broken_list(.broken))]
    NotBroken {
        name: String,
        seed: u64,
        broken: Vec<String>,
    },
    /// The shrunk text did not validate or did not reproduce the failure.
    #[error("cannot write a shrunk scenario for seed {seed}: {reason}")]
    CannotReproduce { seed: u64, reason: String },
}

/// "it broke: "a", "b"", or that none broke.
pub fn broken_list(broken: &[String]) -> String {
    if broken.is_empty() {
        "no invariant broke".to_owned()
    } else {
        let names: Vec<String> = broken.iter().map(|n| format!("\"{n}\"")).collect();
        format!("the broken invariants are {}", names.join(", "))
    }
}

/// What the failure is: an invariant and the conversation of its first violation, or an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// The invariant's name, or `outcome NAME`.
    breaks: String,
    conversation: Option<u32>,
}

/// Shrinks `seed` for the first broken invariant; `None` when the seed passes.
pub fn shrink(scenario: &Arc<Scenario>, seed: u64) -> Result<Option<Shrunk>, ShrinkError> {
    shrink_for(scenario, seed, None)
}

/// Shrinks `seed` for the broken invariant named `invariant` (the first broken one when `None`);
/// `None` when the seed passes.
pub fn shrink_for(scenario: &Arc<Scenario>, seed: u64, invariant: Option<&str>) -> Result<Option<Shrunk>, ShrinkError> {
    let original = run::run(scenario.clone(), &RunOptions::new(seed))?.report;
    if original.passed() {
        return Ok(None);
    }
    let target = what_breaks(&original, seed, invariant)?;
    let raw: RawScenario = toml::from_str(&scenario.source_text).map_err(|e| ShrinkError::CannotReproduce {
        seed,
        reason: format!("the scenario text does not parse again: {}", e.message()),
    })?;
    let pins: Vec<Fault> = original.faults.iter().map(|record| pin(scenario, record)).collect();
    let mut runs = 0;
    let mut last_reason = String::new();
    let mut still_fails = |subset: &[Fault]| -> Result<bool, RunError> {
        runs += 1;
        let (text, _) = standalone(scenario, &raw, subset, &target, seed);
        match reproduces(scenario, &text, seed, &target)? {
            Ok(()) => Ok(true),
            Err(reason) => {
                last_reason = reason;
                Ok(false)
            }
        }
    };
    let (faults, pinned) = if still_fails(&pins)? {
        (ddmin(pins, &mut still_fails)?, true)
    } else {
        // No pinned plan reproduces the failure: keep every fault (and profile) as it was.
        (scenario.faults.clone(), false)
    };
    let (scenario_text, notes) = if pinned {
        standalone(scenario, &raw, &faults, &target, seed)
    } else {
        let note =
            format!("the pinned faults do not reproduce it ({last_reason}), so the faults are kept as they were");
        (as_it_was(scenario, &raw, &target, seed, &note), vec![note])
    };
    runs += 1;
    if let Err(reason) = reproduces(scenario, &scenario_text, seed, &target)? {
        return Err(ShrinkError::CannotReproduce { seed, reason });
    }
    Ok(Some(Shrunk {
        seed,
        breaks: target.breaks,
        conversation: target.conversation,
        before: original.faults.len(),
        faults,
        pinned,
        runs,
        notes,
        scenario_text,
    }))
}

/// The failure to keep: the named broken invariant, the first broken one, or the outcome.
fn what_breaks(report: &RunReport, seed: u64, wanted: Option<&str>) -> Result<Target, ShrinkError> {
    let broken: Vec<_> = report.invariants.iter().filter(|i| !i.passed).collect();
    let invariant = match wanted {
        Some(name) => match broken.iter().find(|i| i.name == name) {
            Some(invariant) => Some(*invariant),
            None => {
                return Err(ShrinkError::NotBroken {
                    name: name.to_owned(),
                    seed,
                    broken: broken.iter().map(|i| i.name.clone()).collect(),
                })
            }
        },
        None => broken.first().copied(),
    };
    Ok(match invariant {
        Some(invariant) => Target {
            breaks: invariant.name.clone(),
            conversation: invariant
                .first_violation
                .as_ref()
                .and_then(|v| conversation_of(&v.message)),
        },
        None => Target {
            breaks: format!("outcome {}", report.outcome.name()),
            conversation: None,
        },
    })
}

/// The conversation a violation message names (`conversation N: …`).
fn conversation_of(message: &str) -> Option<u32> {
    let rest = message.strip_prefix("conversation ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// What a run's report shows for the target, to compare with the original's.
fn observed(report: &RunReport, target: &Target) -> Result<(), String> {
    if let Some(outcome) = target.breaks.strip_prefix("outcome ") {
        return if report.outcome.name() == outcome {
            Ok(())
        } else {
            Err(format!("the outcome is {}, not {outcome}", report.outcome.name()))
        };
    }
    let Some(invariant) = report.invariants.iter().find(|i| i.name == target.breaks) else {
        return Err(format!("invariant \"{}\" is not in the shrunk scenario", target.breaks));
    };
    if invariant.passed {
        return Err(format!("invariant \"{}\" holds", target.breaks));
    }
    let conversation = invariant
        .first_violation
        .as_ref()
        .and_then(|v| conversation_of(&v.message));
    if conversation != target.conversation {
        let name = |c: Option<u32>| c.map_or("no conversation".to_owned(), |c| format!("conversation {c}"));
        return Err(format!(
            "invariant \"{}\" first breaks at {}, not {}",
            target.breaks,
            name(conversation),
            name(target.conversation)
        ));
    }
    Ok(())
}

/// Parses, validates and runs `text` with `seed`: `Ok(Err(why))` when it does not reproduce.
fn reproduces(scenario: &Scenario, text: &str, seed: u64, target: &Target) -> Result<Result<(), String>, RunError> {
    let mut parsed = match crate::scenario::parse("shrunk scenario", text) {
        Ok(parsed) => parsed,
        Err(e) => return Ok(Err(format!("the shrunk scenario does not validate: {e}"))),
    };
    // Cassettes stay where the original scenario found them, and tables keep the records
    // their data files gave them.
    for (llm, original) in parsed.llms.iter_mut().zip(&scenario.llms) {
        llm.cassette.clone_from(&original.cassette);
    }
    for (table, original) in parsed.tables.iter_mut().zip(&scenario.tables) {
        if original.data.is_some() {
            table.rows.clone_from(&original.rows);
        }
    }
    let report = run::run(Arc::new(parsed), &RunOptions::new(seed))?.report;
    Ok(observed(&report, target))
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

/// The original fault a pinned one came from (`NAME#MESSAGE` → `NAME`).
fn origin(pinned: &Fault) -> &str {
    pinned
        .name
        .rsplit_once('#')
        .map_or(pinned.name.as_str(), |(name, _)| name)
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

/// How the invariants' fault references change when only `faults` (pinned) remain: string
/// literals to replace, invariants (by position) to drop, and a note for each.
#[derive(Default)]
struct Rewrites {
    replace: Vec<(Range<usize>, String)>,
    drop: Vec<usize>,
    notes: Vec<String>,
}

fn rewrite_references(scenario: &Scenario, raw: &RawScenario, faults: &[Fault]) -> Rewrites {
    let sources: Vec<String> = std::iter::once("user".to_owned())
        .chain(raw.tool.iter().map(|t| format!("tool:{}", t.get_ref().name.get_ref())))
        .collect();
    let remaining: Vec<String> = sources
        .iter()
        .cloned()
        .chain(faults.iter().map(|f| format!("fault:{}", f.name)))
        .collect();
    let mut out = Rewrites::default();
    for (index, item) in raw.invariant.iter().enumerate() {
        let invariant = item.get_ref();
        let Some(never) = &invariant.never else { continue };
        let never = never.get_ref();
        let name = invariant.name.get_ref();
        for (key, glob) in [
            ("tainted_by", &never.tainted_by),
            ("output_tainted_by", &never.output_tainted_by),
        ] {
            let Some(glob) = glob else { continue };
            let pattern = glob.get_ref().as_str();
            let named: Vec<&str> = scenario
                .faults
                .iter()
                .map(|f| f.name.as_str())
                .filter(|f| glob_match(pattern, &format!("fault:{f}")))
                .collect();
            if named.is_empty() {
                continue; // it names no fault: nothing the shrink removes
            }
            // What it should match now: the same non-fault sources, and the pins of its faults.
            let wanted: Vec<&String> = remaining
                .iter()
                .filter(|source| match source.strip_prefix("fault:") {
                    None => glob_match(pattern, source),
                    Some(pin) => faults
                        .iter()
                        .find(|f| f.name == pin)
                        .is_some_and(|f| named.contains(&origin(f))),
                })
                .collect();
            let faults_named = named.iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(", ");
            if wanted.is_empty() {
                out.drop.push(index);
                out.notes.push(format!(
                    "dropped invariant \"{name}\": its {key} = \"{pattern}\" names only fault(s) the shrink removed ({faults_named})"
                ));
                break;
            }
            let mut candidates = vec![pattern.to_owned(), format!("{pattern}#*")];
            if let [only] = wanted.as_slice() {
                candidates.push((*only).clone());
            }
            let exact = candidates.into_iter().find(|candidate| {
                remaining
                    .iter()
                    .all(|source| glob_match(candidate, source) == wanted.contains(&source))
            });
            match exact {
                Some(candidate) if candidate == pattern => {}
                Some(candidate) => {
                    out.notes.push(format!(
                        "invariant \"{name}\": {key} = \"{pattern}\" became \"{candidate}\", the pinned fault(s) left of {faults_named}"
                    ));
                    out.replace.push((glob.span(), quote(&candidate)));
                }
                None => {
                    out.drop.push(index);
                    out.notes.push(format!(
                        "dropped invariant \"{name}\": no one {key} names just the pinned faults left of {faults_named}"
                    ));
                    break;
                }
            }
        }
    }
    out
}

fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The header of a shrunk file: what it reproduces, and how that was checked.
fn reproduction_comment(target: &Target, seed: u64) -> String {
    let at = target
        .conversation
        .map(|c| format!(" first at conversation {c}"))
        .unwrap_or_default();
    let what = match target.breaks.strip_prefix("outcome ") {
        Some(outcome) => format!("ends with outcome {outcome}"),
        None => format!("breaks invariant \"{}\"{at}", target.breaks),
    };
    format!("# With --seed {seed} this scenario {what}, as the original run did (checked by running it).\n")
}

/// The original scenario as it was, with a comment saying why nothing was pinned.
fn as_it_was(scenario: &Scenario, raw: &RawScenario, target: &Target, seed: u64, note: &str) -> String {
    let mut out = scenario.source_text.clone();
    let (range, with) = seed_edit(scenario, raw, seed);
    out.replace_range(range, &with);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("\n# Written by `agentsim run --shrink`: ");
    out.push_str(note);
    out.push_str(".\n");
    out.push_str(&reproduction_comment(target, seed));
    out
}

/// The edit that makes `seed` the scenario's own, so that the shrunk file reproduces without
/// `--seed`: its `seed = …` rewritten, or one added under `[scenario]`.
fn seed_edit(scenario: &Scenario, raw: &RawScenario, seed: u64) -> (std::ops::Range<usize>, String) {
    if let Some(old) = &raw.scenario.get_ref().seed {
        return (old.span(), seed.to_string());
    }
    let text = &scenario.source_text;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        offset += line.len();
        let header: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if header.starts_with("[scenario]") {
            let newline = if line.ends_with('\n') { "" } else { "\n" };
            return (offset..offset, format!("{newline}seed = {seed}\n"));
        }
    }
    // A `[scenario]` table written some other way: the header comment still names the seed.
    (0..0, String::new())
}

/// The scenario's text with its faults and profiles replaced by the pinned plan, and its
/// invariants' fault references rewritten to what remains; returns the notes on what changed.
fn standalone(
    scenario: &Scenario,
    raw: &RawScenario,
    faults: &[Fault],
    target: &Target,
    seed: u64,
) -> (String, Vec<String>) {
    let rewrites = rewrite_references(scenario, raw, faults);
    let mut text = scenario.source_text.clone();
    let mut replace = rewrites.replace.clone();
    replace.push(seed_edit(scenario, raw, seed));
    replace.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    for (range, with) in replace {
        text.replace_range(range, &with);
    }
    let mut out = String::new();
    let mut skipping = false;
    let mut invariant = 0;
    for line in text.lines() {
        let header = line.trim_start();
        if header.starts_with('[') {
            skipping = header.starts_with("[[fault]]") || header.starts_with("[[profile]]");
            if header.starts_with("[[invariant]]") {
                if rewrites.drop.contains(&invariant) {
                    skipping = true;
                    let name = raw.invariant[invariant].get_ref().name.get_ref();
                    let _ = writeln!(
                        out,
                        "# [[invariant]] \"{name}\" dropped by --shrink: see the note at the end"
                    );
                }
                invariant += 1;
            }
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("\n# Pinned by `agentsim run --shrink`: the smallest set of the faults that fired which still\n");
    out.push_str("# breaks the run, each on the exact message it hit (named FAULT#MESSAGE).\n");
    out.push_str(&reproduction_comment(target, seed));
    for note in &rewrites.notes {
        let _ = writeln!(out, "# Note: {note}.");
    }
    for fault in faults {
        let _ = write!(
            out,
            "\n[[fault]]\nname = {}\nkind = {}\ntarget = {}\n",
            quote(&fault.name),
            quote(fault.kind.name()),
            quote(&fault.target)
        );
        let _ = writeln!(out, "on_message = {}\ncount = 1", fault.trigger.on_message.unwrap_or(1));
        let p = &fault.params;
        if let Some(us) = p.retry_after_us {
            let _ = writeln!(out, "retry_after = \"{us}us\"");
        }
        if let Some(us) = p.latency_us {
            let _ = writeln!(out, "latency = \"{us}us\"");
        }
        for (key, value) in [("text", &p.text), ("tool", &p.tool), ("peer", &p.peer)] {
            if let Some(value) = value {
                let _ = writeln!(out, "{key} = {}", quote(value));
            }
        }
        if let Some(mode) = p.mode {
            let name = match mode {
                MalformedMode::Truncated => "truncated",
                MalformedMode::TrailingGarbage => "trailing_garbage",
                MalformedMode::WrongType => "wrong_type",
                MalformedMode::MissingField => "missing_field",
            };
            let _ = writeln!(out, "mode = \"{name}\"");
        }
    }
    (out, rewrites.notes)
}
