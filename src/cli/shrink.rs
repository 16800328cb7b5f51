//! Shrinking a failing seed to the fewest faults that still break it, as a standalone scenario.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{shell_quote, write_atomic, Failure};
use crate::scenario::Scenario;

/// Shrinks a failing seed and writes the standalone scenario; prints what it found on stderr.
pub(super) fn shrink_seed(file: &Path, scenario: &Arc<Scenario>, seed: u64, out: Option<&Path>) -> Result<(), Failure> {
    let Some(shrunk) = crate::sweep::shrink::shrink(scenario, seed)? else {
        return Ok(());
    };
    let stem = file
        .file_stem()
        .map_or("scenario".into(), |s| s.to_string_lossy().into_owned());
    let path = out.map_or_else(
        || PathBuf::from(format!("{stem}.shrunk-seed{seed}.toml")),
        Path::to_path_buf,
    );
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
    eprintln!(
        "shrink: seed {seed} breaks \"{}\"; {} fault(s) fired, {} needed ({} runs): {}\n  wrote {}\n  replay: agentsim run {} --seed {seed}",
        shrunk.breaks,
        shrunk.before,
        shrunk.faults.len(),
        shrunk.runs,
        if kinds.is_empty() { "none — it fails without any fault".to_owned() } else { kinds.join(", ") },
        path.display(),
        shell_quote(&path.display().to_string()),
    );
    Ok(())
}
