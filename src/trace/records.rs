//! A whole trace read back as typed [`Record`]s, for the reports and diagrams built from a run
//! directory.

use serde_json::Value;

use super::Record;

/// Parses a whole trace; `label` names the file in errors (`FILE:LINE:COL: expected …`).
pub fn parse(label: &str, bytes: &[u8]) -> Result<Vec<Record>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("{label}: expected UTF-8 text: {e}"))?;
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| {
            format!(
                "{label}:{}:{}: expected a JSON trace record: {e}",
                index + 1,
                e.column()
            )
        })?;
        let Value::Object(fields) = value else {
            return Err(format!("{label}:{}:1: expected a JSON object", index + 1));
        };
        records.push(Record::read(&fields).map_err(|e| format!("{label}:{}:1: {e}", index + 1))?);
    }
    match records.first() {
        Some(Record::Header { .. }) => Ok(records),
        _ => Err(format!("{label}:1:1: expected a header record as the first line")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_without_a_header_is_an_error_naming_the_file() {
        let err = parse(
            "t.jsonl",
            b"{\"kind\":\"end\",\"t_us\":0,\"events\":0,\"outcome\":\"completed\"}\n",
        )
        .unwrap_err();
        assert!(err.starts_with("t.jsonl:1:1: expected a header"), "{err}");
        let err = parse("t.jsonl", b"{\"kind\":\"header\",\"seed\":1}\nnot json\n").unwrap_err();
        assert!(err.starts_with("t.jsonl:2:"), "{err}");
    }
}
