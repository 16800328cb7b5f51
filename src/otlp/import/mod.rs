//! OTLP/JSON import: a production trace (GenAI semantic conventions, or OpenInference attributes
//! as Phoenix and many Python SDKs emit them) becomes a scenario and a cassette that replay it.
//!
//! Agents and handoffs come from agent spans, model answers from chat spans (their output
//! messages when the trace has them, else the tool and agent spans that followed), tool latency
//! and outputs from tool spans, errors as recorded error answers (model calls) or faults at the
//! call where they happened (tool calls). Without message content the structure is reproduced —
//! call graph, timing, tokens, errors — and the scenario says so.

mod build;
mod cassette;
mod chat;
mod dialogue;
mod read;
mod scenario;
mod span;

use std::path::Path;

use serde_json::Value;

use build::Builder;

/// Largest trace file read, in bytes.
pub const FILE_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// Most spans one import handles.
pub const SPANS_MAX: usize = 1_000_000;

/// What the placeholders say where the trace had no content.
const NO_USER_TEXT: &str = "[user message not recorded in the trace]";
const NO_ANSWER_TEXT: &str = "[answer not recorded in the trace]";
const NO_TOOL_OUTPUT: &str = "[tool output not recorded in the trace]";

/// A trace that cannot be imported: the file, the place in it, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", place_suffix(.place))]
pub struct ImportError {
    pub file: String,
    /// `LINE:COLUMN` for JSON syntax, `LINE: path.to[3].field` for structure; empty for an
    /// error about the whole file (it cannot be read, it is too big).
    pub place: String,
    pub message: String,
}

/// An imported incident: the files to write and what they hold.
#[derive(Debug, Clone)]
pub struct Imported {
    pub scenario: String,
    pub cassette: String,
    pub agents: usize,
    pub chat_calls: usize,
    pub tool_calls: usize,
    pub errors: usize,
    /// The trace carried no message content; answers and outputs are placeholders.
    pub content_missing: bool,
}

/// `:PLACE`, or nothing for an error about the whole file.
fn place_suffix(place: &str) -> String {
    if place.is_empty() {
        String::new()
    } else {
        format!(":{place}")
    }
}

/// Reads and imports an OTLP/JSON file.
pub fn import_file(path: &Path) -> Result<Imported, ImportError> {
    let file = path.display().to_string();
    let whole = |message: String| ImportError {
        file: file.clone(),
        place: String::new(),
        message,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| whole(format!("cannot read the trace: {e}")))?
        .len();
    if size > FILE_BYTES_MAX {
        return Err(whole(format!("expected at most {FILE_BYTES_MAX} bytes, found {size}")));
    }
    let bytes = std::fs::read(path).map_err(|e| whole(format!("cannot read the trace: {e}")))?;
    import_bytes(&file, &bytes)
}

/// A JSON error without serde's "at line L column C", for a line the error's place already
/// names (serde counts lines within that one line).
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Imports OTLP/JSON bytes: one `TracesData` object, or one per line (the file exporter's
/// JSON Lines). `file` names them in errors.
pub fn import_bytes(file: &str, bytes: &[u8]) -> Result<Imported, ImportError> {
    let error = |place: String, message: String| ImportError {
        file: file.to_owned(),
        place,
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
        error(line.to_string(), "expected UTF-8 text, found an invalid byte".into())
    })?;
    // A byte-order mark (as some Windows tools write one) is no part of the JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut documents = Vec::new();
    match serde_json::from_str::<Value>(text) {
        Ok(value) => documents.push((1, value)),
        Err(whole) => {
            for (index, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let value = serde_json::from_str::<Value>(line).map_err(|e| {
                    if documents.is_empty() && index == 0 {
                        error(
                            format!("{}:{}", whole.line(), whole.column()),
                            format!("expected OTLP/JSON (one object, or one per line): {whole}"),
                        )
                    } else {
                        error(
                            format!("{}:{}", index + 1, e.column()),
                            format!("expected a JSON object: {}", without_position(&e)),
                        )
                    }
                })?;
                documents.push((index + 1, value));
            }
        }
    }
    let mut spans = Vec::new();
    for (line, document) in &documents {
        read::read_document(document, &mut spans)
            .map_err(|(path, message)| error(format!("{line}: {path}"), message))?;
    }
    // The parsed documents are many times the file's size: gone before the spans are worked on.
    drop(documents);
    if spans.is_empty() {
        return Err(error(
            "1".into(),
            "expected at least one span in `resourceSpans`, found none".into(),
        ));
    }
    Builder::new(spans)
        .build(file)
        .map_err(|message| error("1".into(), message))
}
