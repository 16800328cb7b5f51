//! Scenario errors that point at `FILE:LINE:COL` and say what was expected and what was found.

use std::fmt;
use std::ops::Range;

/// One problem in a scenario file, located by a byte span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Byte range in the source; `None` when the problem is about the file as a whole.
    pub span: Option<Range<usize>>,
    /// What was expected, and what was found.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at `span`.
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        Diagnostic {
            span: Some(span),
            message: message.into(),
        }
    }

    /// A diagnostic about the whole file.
    pub fn whole_file(message: impl Into<String>) -> Self {
        Diagnostic {
            span: None,
            message: message.into(),
        }
    }
}

/// Everything wrong with one scenario file, ready to print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    /// The file as the user named it.
    pub file: String,
    /// The problems, in file order.
    pub diagnostics: Vec<Diagnostic>,
    /// The source text, kept to render line and column.
    pub source_text: String,
}

impl ScenarioError {
    /// An error with a single diagnostic.
    pub fn single(file: &str, source_text: &str, diagnostic: Diagnostic) -> Self {
        ScenarioError {
            file: file.to_owned(),
            diagnostics: vec![diagnostic],
            source_text: source_text.to_owned(),
        }
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_diagnostics(f, &self.file, &self.source_text, &self.diagnostics, "")
    }
}

/// Settings in a valid scenario file that do nothing, ready to print as
/// `FILE:LINE:COL: warning: …`. They never make the file invalid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScenarioWarnings {
    /// The file as the user named it.
    pub file: String,
    /// The warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
    /// The source text, kept to render line and column.
    pub source_text: String,
}

impl ScenarioWarnings {
    /// Whether there is nothing to warn about.
    pub fn is_empty(&self) -> bool {
        self.diagnostics.is_empty()
    }
}

impl fmt::Display for ScenarioWarnings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_diagnostics(f, &self.file, &self.source_text, &self.diagnostics, "warning: ")
    }
}

/// How bad a diagnostic is: an error makes the file invalid, a warning does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One diagnostic with its place resolved, for machine-readable output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Located {
    pub file: String,
    /// 1-based; `None` when the diagnostic is about the whole file.
    pub line: Option<usize>,
    /// 1-based, in characters; `None` when the diagnostic is about the whole file.
    pub column: Option<usize>,
    pub severity: Severity,
    pub message: String,
}

/// `diagnostics` of `file` with line and column resolved against `source`.
pub fn locate(file: &str, source: &str, diagnostics: &[Diagnostic], severity: Severity) -> Vec<Located> {
    diagnostics
        .iter()
        .map(|d| {
            let place = d.span.as_ref().map(|span| line_column(source, span.start));
            Located {
                file: file.to_owned(),
                line: place.map(|(line, _)| line),
                column: place.map(|(_, column)| column),
                severity,
                message: d.message.clone(),
            }
        })
        .collect()
}

fn write_diagnostics(
    f: &mut fmt::Formatter<'_>,
    file: &str,
    source: &str,
    diagnostics: &[Diagnostic],
    label: &str,
) -> fmt::Result {
    for (index, diagnostic) in diagnostics.iter().enumerate() {
        if index > 0 {
            writeln!(f)?;
        }
        match &diagnostic.span {
            Some(span) => {
                let (line, column) = line_column(source, span.start);
                write!(f, "{file}:{line}:{column}: {label}{}", diagnostic.message)?;
                write_excerpt(f, source, span, line, column)?;
            }
            None => write!(f, "{file}: {label}{}", diagnostic.message)?,
        }
    }
    Ok(())
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..offset].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(source: &str, mut offset: usize) -> usize {
    while offset > 0 && !source.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

fn write_excerpt(
    f: &mut fmt::Formatter<'_>,
    source: &str,
    span: &Range<usize>,
    line: usize,
    column: usize,
) -> fmt::Result {
    let Some(text) = source.lines().nth(line - 1) else {
        return Ok(());
    };
    const EXCERPT_CHARS_MAX: usize = 120;
    // A control byte (a binary file) is shown as one replacement character, so the caret
    // below stays under its column and the terminal is not sent the byte.
    let shown: String = text
        .chars()
        .take(EXCERPT_CHARS_MAX)
        .map(|c| if c.is_control() && c != '\t' { '\u{FFFD}' } else { c })
        .collect();
    let span_chars = source
        .get(span.start..span.end.min(source.len()))
        .map_or(1, |s| s.lines().next().unwrap_or("").chars().count().max(1));
    let width = span_chars.min(shown.chars().count().saturating_sub(column - 1).max(1));
    let gutter = line.to_string().len();
    write!(
        f,
        "\n{:gutter$} |\n{line} | {shown}\n{:gutter$} | {}{}",
        "",
        "",
        " ".repeat(column - 1),
        "^".repeat(width),
    )
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, candidate)| (*distance, *candidate))
        .map(|(_, candidate)| candidate)
}

pub use crate::catalogue::edit_distance;

/// Rewrites a TOML or serde message into the form "expected …, found …", adding a "did you mean"
/// to unknown keys.
pub fn humanize_toml_message(message: &str) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, tail)) = rest.split_once('`') {
            let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
            let hint = did_you_mean(field, expected.iter().copied())
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            let list = expected.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ");
            return if list.is_empty() {
                format!("unknown key `{field}`: this table takes no keys")
            } else {
                format!("unknown key `{field}`; {hint}expected one of {list}")
            };
        }
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        if let Some((field, _)) = rest.split_once('`') {
            if field == "scenario" {
                return "expected a `[scenario]` table with at least `name = \"...\"`, found none".to_owned();
            }
            return format!("missing key `{field}`: expected `{field} = ...` in this table");
        }
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            // An integer too large for TOML's i64 arrives as i128.
            if let Some(number) = found
                .strip_prefix("integer `")
                .and_then(|f| f.strip_suffix("` as i128"))
            {
                let max = if expected == "u32" { u32::MAX as u64 } else { u64::MAX };
                return format!("expected a whole number from 0 to {max}, found {number}");
            }
            let expected = match expected {
                "u32" | "u64" | "i64" | "usize" => "a whole number",
                "f64" | "f32" => "a number",
                "a boolean" => "true or false",
                other => other,
            };
            return format!("expected {expected}, found {found}");
        }
    }
    if let Some(rest) = message.strip_prefix("invalid value: integer `") {
        if let Some((found, expected)) = rest.split_once("`, expected ") {
            let max = match expected {
                "u32" => Some(u32::MAX as u64),
                "u64" | "usize" => Some(u64::MAX),
                _ => None,
            };
            if let Some(max) = max {
                return format!("expected a whole number from 0 to {max}, found {found}");
            }
        }
    }
    message.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_from_one() {
        let source = "a = 1\nbb = 2\n";
        assert_eq!(line_column(source, 0), (1, 1));
        assert_eq!(line_column(source, 6), (2, 1));
        assert_eq!(line_column(source, 11), (2, 6));
    }

    #[test]
    fn an_excerpt_shows_control_bytes_as_replacement_characters_under_the_same_caret() {
        let source = "\u{7f}ELF\u{1}\u{0} = 1\n";
        let error = ScenarioError::single("x.toml", source, Diagnostic::at(5..6, "expected a key"));
        let text = error.to_string();
        assert!(text.contains("1 | \u{FFFD}ELF\u{FFFD}\u{FFFD} = 1"), "{text}");
        assert!(text.ends_with("  |      ^"), "{text:?}");
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
    }

    #[test]
    fn typos_get_a_suggestion_and_unrelated_words_do_not() {
        let keys = ["latency", "model", "name"];
        assert_eq!(did_you_mean("latncy", keys), Some("latency"));
        assert_eq!(did_you_mean("colour", keys), None);
    }

    #[test]
    fn unknown_field_messages_become_did_you_mean() {
        let text = humanize_toml_message("unknown field `latncy`, expected one of `name`, `latency`");
        assert_eq!(
            text,
            "unknown key `latncy`; did you mean `latency`? expected one of `name`, `latency`"
        );
    }
}
