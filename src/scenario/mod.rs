//! Scenario files: the TOML model, its validation, and errors that point at `FILE:LINE:COL`.

pub mod endpoint;
pub mod error;
pub mod expr;
pub mod file;
pub mod glob;
pub mod guardrail;
pub mod model;
pub mod schema;
pub mod units;
pub mod user;
pub mod validate;

pub use error::{Diagnostic, ScenarioError, ScenarioWarnings};
pub use model::*;
pub use user::{User, UserIdx, UserKind};

use std::path::Path;

/// Largest scenario file accepted, in bytes.
pub const FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Reads and validates the scenario file at `path`.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    load_with_warnings(path).map(|(scenario, _)| scenario)
}

/// Reads and validates the scenario file at `path`, with the warnings about settings in it that
/// do nothing.
pub fn load_with_warnings(path: &Path) -> Result<(Scenario, ScenarioWarnings), ScenarioError> {
    let file = path.display().to_string();
    let whole = |message: String| ScenarioError::single(&file, "", Diagnostic::whole_file(message));
    let metadata = std::fs::metadata(path).map_err(|e| whole(format!("cannot read the scenario file: {e}")))?;
    if metadata.len() > FILE_BYTES_MAX {
        return Err(whole(format!(
            "expected a scenario file of at most {FILE_BYTES_MAX} bytes, found {} bytes",
            metadata.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| whole(format!("cannot read the scenario file: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let valid = String::from_utf8_lossy(&e.as_bytes()[..offset]).into_owned();
        ScenarioError::single(
            &file,
            &valid,
            Diagnostic::at(offset..offset + 1, "expected UTF-8 text, found an invalid byte"),
        )
    })?;
    let (mut scenario, warnings) = parse_with_warnings(&file, &text)?;
    // A cassette path is relative to the scenario file's folder.
    let folder = path.parent().unwrap_or(Path::new(""));
    for llm in &mut scenario.llms {
        if let Some(cassette) = &mut llm.cassette {
            if cassette.is_relative() {
                *cassette = folder.join(&*cassette);
            }
        }
    }
    Ok((scenario, warnings))
}

/// Parses and validates scenario `text`; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
    parse_with_warnings(file, text).map(|(scenario, _)| scenario)
}

/// Parses and validates scenario `text`, with its warnings; `file` names it in both.
pub fn parse_with_warnings(file: &str, text: &str) -> Result<(Scenario, ScenarioWarnings), ScenarioError> {
    let raw: file::RawScenario = toml::from_str(text).map_err(|e| {
        let message = error::humanize_toml_message(e.message());
        let diagnostic = match e.span() {
            Some(span) => Diagnostic::at(span, message),
            None => Diagnostic::whole_file(message),
        };
        ScenarioError::single(file, text, diagnostic)
    })?;
    match validate::validate(raw, text) {
        Ok((scenario, diagnostics)) => Ok((
            scenario,
            ScenarioWarnings {
                file: file.to_owned(),
                // The text is only kept to render warnings; most files have none.
                source_text: if diagnostics.is_empty() {
                    String::new()
                } else {
                    text.to_owned()
                },
                diagnostics,
            },
        )),
        Err(diagnostics) => Err(ScenarioError {
            file: file.to_owned(),
            diagnostics,
            source_text: text.to_owned(),
        }),
    }
}
