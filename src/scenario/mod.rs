//! Scenario files: the TOML model, its validation, and errors that point at `FILE:LINE:COL`.

pub mod endpoint;
pub mod error;
pub mod expr;
pub mod file;
pub mod glob;
pub mod guardrail;
pub mod jsonl;
pub mod mcp;
pub mod model;
pub mod schema;
pub mod units;
pub mod user;
pub mod validate;
pub mod world;

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
    load_data_files(&mut scenario, folder, &file, &text)?;
    load_mcp_tools(&mut scenario, folder, &file, &text)?;
    for llm in &mut scenario.llms {
        if let Some(cassette) = &mut llm.cassette {
            if cassette.is_relative() {
                *cassette = folder.join(&*cassette);
            }
        }
    }
    Ok((scenario, warnings))
}

/// Loads the records of tables that name a data file (relative to `folder`), and mixes the files'
/// bytes into the scenario's hash. An error names the data file, the place in it and what was
/// expected (or, for a file that cannot be read, the setting in the scenario).
pub fn load_data_files(scenario: &mut Scenario, folder: &Path, file: &str, text: &str) -> Result<(), ScenarioError> {
    let mut hasher: Option<blake3::Hasher> = None;
    let mut files = Vec::new();
    for table in &mut scenario.tables {
        let Some((data, span)) = table.data.clone() else {
            continue;
        };
        let at_setting = |message: String| ScenarioError::single(file, text, Diagnostic::at(span.clone(), message));
        let data_path = folder.join(&data);
        let shown = data_path.display().to_string();
        let metadata =
            std::fs::metadata(&data_path).map_err(|e| at_setting(format!("cannot read data file {shown}: {e}")))?;
        if metadata.len() > world::DATA_FILE_BYTES_MAX {
            return Err(at_setting(format!(
                "expected a data file of at most {} bytes, found {} bytes in {shown}",
                world::DATA_FILE_BYTES_MAX,
                metadata.len()
            )));
        }
        let bytes = std::fs::read(&data_path).map_err(|e| at_setting(format!("cannot read data file {shown}: {e}")))?;
        let data_text = String::from_utf8(bytes).map_err(|e| {
            let offset = e.utf8_error().valid_up_to();
            let valid = String::from_utf8_lossy(&e.as_bytes()[..offset]).into_owned();
            ScenarioError::single(
                &shown,
                &valid,
                Diagnostic::at(offset..offset + 1, "expected UTF-8 text, found an invalid byte"),
            )
        })?;
        let mut rows = world::read_rows(table, &data, &data_text)
            .map_err(|e| ScenarioError::single(&shown, &data_text, Diagnostic::at(e.at, e.message)))?;
        let key = table.key;
        rows.sort_by(|a, b| a[key].cmp(&b[key]));
        if let Some(pair) = rows.windows(2).find(|w| w[0][key] == w[1][key]) {
            return Err(ScenarioError::single(
                &shown,
                &data_text,
                Diagnostic::whole_file(format!(
                    "expected each record's key to be unique, found \"{}\" twice",
                    pair[0][key].text()
                )),
            ));
        }
        table.rows = rows;
        files.push((data.clone(), data_text.clone()));
        hasher
            .get_or_insert_with(|| blake3::Hasher::new_derive_key("agentsim 2026 scenario data files v1"))
            .update(data.as_bytes())
            .update(data_text.as_bytes());
    }
    scenario.data_files = files;
    if let Some(mut hasher) = hasher {
        hasher.update(scenario.source_hash.as_bytes());
        scenario.source_hash = hasher.finalize().to_hex().to_string();
    }
    Ok(())
}

/// Reads the MCP cassettes of the tools that name one (relative to `folder`): each such tool takes
/// the server's description and input schema (where the file gives none) and its recorded
/// answers. The cassettes' bytes are mixed into the scenario's hash and kept with the data files,
/// so a run directory's copy of the scenario loads as the original did.
pub fn load_mcp_tools(scenario: &mut Scenario, folder: &Path, file: &str, text: &str) -> Result<(), ScenarioError> {
    let mut hasher: Option<blake3::Hasher> = None;
    for tool in &mut scenario.tools {
        let Some(source) = tool.mcp.as_mut() else {
            continue;
        };
        let at_setting =
            |message: String| ScenarioError::single(file, text, Diagnostic::at(source.span.clone(), message));
        let given = folder.join(&source.cassette);
        let (relative, path) = if given.is_dir() {
            (
                Path::new(&source.cassette).join(mcp::FILE_NAME),
                given.join(mcp::FILE_NAME),
            )
        } else {
            (Path::new(&source.cassette).to_path_buf(), given)
        };
        let shown = path.display().to_string();
        let metadata =
            std::fs::metadata(&path).map_err(|e| at_setting(format!("cannot read MCP cassette {shown}: {e}")))?;
        if metadata.len() > world::DATA_FILE_BYTES_MAX {
            return Err(at_setting(format!(
                "expected an MCP cassette of at most {} bytes, found {} bytes in {shown}",
                world::DATA_FILE_BYTES_MAX,
                metadata.len()
            )));
        }
        let cassette_text =
            std::fs::read_to_string(&path).map_err(|e| at_setting(format!("cannot read MCP cassette {shown}: {e}")))?;
        let (_, takes) = mcp::parse(&shown, &cassette_text).map_err(at_setting)?;
        let listed = mcp::tools(&takes);
        let Some(entry) = listed
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(&source.tool))
        else {
            let names: Vec<&str> = listed.iter().filter_map(|t| t.get("name")?.as_str()).collect();
            return Err(at_setting(format!(
                "expected the server's tools/list in {shown} to have a tool \"{}\", found {}",
                source.tool,
                if names.is_empty() {
                    "no tools/list".to_owned()
                } else {
                    names.join(", ")
                }
            )));
        };
        source.recorded = mcp::calls(&takes, &source.tool);
        if tool.description.is_empty() {
            tool.description = entry
                .get("description")
                .and_then(|d| d.as_str())
                .unwrap_or_default()
                .to_owned();
        }
        if tool.parameters.is_none() {
            tool.parameters = entry.get("inputSchema").map(schema::supported_subset).filter(|s| {
                schema::check_schema(s).is_ok() && s.get("type").and_then(|t| t.as_str()) == Some("object")
            });
        }
        let relative = relative.display().to_string();
        let inside = Path::new(&relative)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir));
        if inside && !scenario.data_files.iter().any(|(name, _)| *name == relative) {
            scenario.data_files.push((relative.clone(), cassette_text.clone()));
        }
        hasher
            .get_or_insert_with(|| blake3::Hasher::new_derive_key("agentsim 2026 scenario MCP cassettes v1"))
            .update(relative.as_bytes())
            .update(cassette_text.as_bytes());
    }
    if let Some(mut hasher) = hasher {
        hasher.update(scenario.source_hash.as_bytes());
        scenario.source_hash = hasher.finalize().to_hex().to_string();
    }
    Ok(())
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
