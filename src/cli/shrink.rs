//! Shrinking a failing seed to the fewest faults that still break it, as a standalone scenario.

use std::path::Path;
use std::sync::Arc;

use super::{exit, shell_quote, write_atomic, Failure};
use crate::scenario::Scenario;
use crate::sweep::shrink::ShrinkError;

impl From<ShrinkError> for Failure {
    fn from(e: ShrinkError) -> Failure {
        match e {
            ShrinkError::Run(e) => e.into(),
            ShrinkError::NotBroken { .. } => Failure::new(exit::BAD_INPUT, e.to_string()),
            ShrinkError::CannotReproduce { .. } => Failure::new(exit::INTERNAL, format!("{e}; nothing was written")),
        }
    }
}

/// Where a shrunk scenario goes: this file, or `NAME.shrunk-seedN.toml` in this directory.
pub(super) enum ShrinkOut<'a> {
    File(&'a Path),
    Dir(&'a Path),
}

impl<'a> ShrinkOut<'a> {
    /// `--shrink-out FILE` when given, else the default name in `dir`, else here.
    pub(super) fn pick(file: Option<&'a Path>, dir: Option<&'a Path>) -> ShrinkOut<'a> {
        match (file, dir) {
            (Some(file), _) => ShrinkOut::File(file),
            (None, dir) => ShrinkOut::Dir(dir.unwrap_or(Path::new(""))),
        }
    }
}

/// Shrinks a failing seed for `invariant` (the first broken one when `None`) and writes the
/// standalone scenario, once parsing and running it has shown that it validates and breaks the
/// same invariant at the same conversation; prints what it found on stderr.
pub(super) fn shrink_seed(
    file: &Path,
    scenario: &Arc<Scenario>,
    seed: u64,
    invariant: Option<&str>,
    out: ShrinkOut,
) -> Result<(), Failure> {
    let Some(shrunk) = crate::sweep::shrink::shrink_for(scenario, seed, invariant)? else {
        return Ok(());
    };
    let stem = file
        .file_stem()
        .map_or("scenario".into(), |s| s.to_string_lossy().into_owned());
    let path = match out {
        ShrinkOut::File(path) => path.to_path_buf(),
        ShrinkOut::Dir(dir) => dir.join(format!("{stem}.shrunk-seed{seed}.toml")),
    };
    write_atomic(&path, shrunk.scenario_text.as_bytes())?;
    let kinds: Vec<String> = shrunk
        .faults
        .iter()
        .map(|f| {
            format!(
                "{} on {} (message {})",
                f.kind.name(),
                f.target,
                f.trigger.on_message.unwrap_or(0)
            )
        })
        .collect();
    let at = shrunk
        .conversation
        .map(|c| format!(" at conversation {c}"))
        .unwrap_or_default();
    let needed = if !shrunk.pinned {
        "kept as they were".to_owned()
    } else if kinds.is_empty() {
        "none — it fails without any fault".to_owned()
    } else {
        kinds.join(", ")
    };
    eprintln!(
        "shrink: seed {seed} breaks \"{}\"{at}; {} fault(s) fired, {} needed ({} runs): {needed}",
        shrunk.breaks,
        shrunk.before,
        shrunk.faults.len(),
        shrunk.runs,
    );
    for note in &shrunk.notes {
        eprintln!("  note: {note}");
    }
    eprintln!(
        "  wrote {} (checked: it validates and breaks the same invariant at the same conversation)\n  replay: agentsim run {} --seed {seed}",
        path.display(),
        shell_quote(&path.display().to_string()),
    );
    Ok(())
}
