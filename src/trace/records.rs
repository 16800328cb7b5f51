//! Trace records read back as data, for the reports and diagrams built from a run directory.

use serde_json::{Map, Value};

/// One line of `trace.jsonl`, parsed.
#[derive(Debug, Clone)]
pub struct TraceRecord {
    fields: Map<String, Value>,
}

impl TraceRecord {
    /// The record's `kind` (`header`, `deliver`, `fault`, `fail`, `restart`, `escalate`, `guard`, `end`, …).
    pub fn kind(&self) -> &str {
        self.str("kind")
    }

    /// A string field, or "" when absent.
    pub fn str(&self, key: &str) -> &str {
        self.fields.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// An integer field.
    pub fn u64(&self, key: &str) -> Option<u64> {
        self.fields.get(key).and_then(Value::as_u64)
    }

    /// The event's sequence number, when the record has one.
    pub fn seq(&self) -> Option<u64> {
        self.u64("seq")
    }

    /// The record's virtual time (0 for the header).
    pub fn t_us(&self) -> u64 {
        self.u64("t_us").unwrap_or(0)
    }

    /// The actor the record is about: the receiver of a delivery, else `actor`.
    pub fn actor(&self) -> &str {
        match self.kind() {
            "deliver" => self.str("to"),
            _ => self.str("actor"),
        }
    }

    /// A `key=value` token of a delivery's message summary (`conv=3`, `latency_us=1200`).
    pub fn msg_field(&self, key: &str) -> Option<&str> {
        msg_field(self.str("msg"), key)
    }
}

/// The value of `key=value` in a message summary such as `llm_reply conv=0 call=1 latency_us=5`.
/// Quoted values are not parsed; only the first token matching `key=` counts.
pub fn msg_field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = msg;
    loop {
        let at = rest.find(key)?;
        let before_ok = at == 0 || rest.as_bytes()[at - 1] == b' ';
        let after = &rest[at + key.len()..];
        if before_ok {
            if let Some(value) = after.strip_prefix('=') {
                return Some(value.split(' ').next().unwrap_or(""));
            }
        }
        rest = after;
    }
}

/// Parses a whole trace; `label` names the file in errors (`FILE:LINE: expected …`).
pub fn parse(label: &str, bytes: &[u8]) -> Result<Vec<TraceRecord>, String> {
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
        records.push(TraceRecord { fields });
    }
    match records.first() {
        Some(first) if first.kind() == "header" => Ok(records),
        _ => Err(format!("{label}:1:1: expected a header record as the first line")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_fields_are_found_by_whole_key() {
        let msg = "llm_reply conv=3 tool_calls=[a#0] call=1 tokens_in=21 latency_us=207258";
        assert_eq!(msg_field(msg, "conv"), Some("3"));
        assert_eq!(msg_field(msg, "latency_us"), Some("207258"));
        assert_eq!(msg_field(msg, "in"), None);
        assert_eq!(msg_field(msg, "call"), Some("1"));
    }

    #[test]
    fn a_trace_without_a_header_is_an_error_naming_the_file() {
        let err = parse("t.jsonl", b"{\"kind\":\"deliver\"}\n").unwrap_err();
        assert!(err.starts_with("t.jsonl:1:1: expected a header"), "{err}");
        let err = parse("t.jsonl", b"{\"kind\":\"header\"}\nnot json\n").unwrap_err();
        assert!(err.starts_with("t.jsonl:2:"), "{err}");
    }
}
