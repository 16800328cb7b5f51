//! JSON Lines files of one header line and then records, as the cassettes are written: read
//! with errors that name the file, the line and what was expected there. Blank lines are skipped.

use serde::de::DeserializeOwned;

/// The header and the records of `text` (the file `file`). `what` names the file's kind for the
/// errors ("an MCP cassette"), `header` describes its header line, `record` one record.
pub fn header_and_records<H: DeserializeOwned, R: DeserializeOwned>(
    file: &str,
    text: &str,
    what: &str,
    header: &str,
    record: &str,
) -> Result<(H, Vec<R>), String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, first)) = lines.next() else {
        return Err(format!("{file}: expected {what}, found an empty file"));
    };
    let parsed: H = serde_json::from_str(first)
        .map_err(|_| format!("{file}:1: expected the header line of {what} ({header}), found something else"))?;
    let mut records = Vec::new();
    for (index, line) in lines {
        let parsed: R =
            serde_json::from_str(line).map_err(|e| format!("{file}:{}: expected {record}: {e}", index + 1))?;
        records.push(parsed);
    }
    Ok((parsed, records))
}
