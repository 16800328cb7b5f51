//! Reading traces back, and finding the first place two traces part.

use serde_json::Value;

use super::Record;

/// The first record where two traces differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// 1-based line number.
    pub line: usize,
    pub seq: Option<u64>,
    pub virtual_time_us: Option<u64>,
    pub actor: Option<String>,
    pub expected: String,
    pub found: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "first divergence at trace line {}", self.line)?;
        if let Some(seq) = self.seq {
            write!(f, ", seq {seq}")?;
        }
        if let Some(t) = self.virtual_time_us {
            write!(f, ", virtual time {t}us")?;
        }
        if let Some(actor) = &self.actor {
            write!(f, ", actor {actor}")?;
        }
        write!(f, "\n  expected: {}\n  found:    {}", self.expected, self.found)
    }
}

/// Compares two traces line by line; `None` when they are identical.
pub fn first_divergence(expected: &[u8], found: &[u8]) -> Option<Divergence> {
    let mut expected_lines = expected.split(|b| *b == b'\n');
    let mut found_lines = found.split(|b| *b == b'\n');
    let mut line = 0;
    loop {
        line += 1;
        let (e, f) = (expected_lines.next(), found_lines.next());
        if e == f {
            e?;
            continue;
        }
        let shown = |l: Option<&[u8]>| match l {
            None | Some(b"") => "(end of trace)".to_owned(),
            Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        };
        let parsed = |l: Option<&[u8]>| l.and_then(|b| serde_json::from_slice::<Value>(b).ok());
        let reference = parsed(e).or_else(|| parsed(f));
        let field = |key: &str| reference.as_ref().and_then(|v| v.get(key)).cloned();
        return Some(Divergence {
            line,
            seq: field("seq").and_then(|v| v.as_u64()),
            virtual_time_us: field("t_us").and_then(|v| v.as_u64()),
            actor: field("to")
                .or_else(|| field("actor"))
                .and_then(|v| v.as_str().map(str::to_owned)),
            expected: shown(e),
            found: shown(f),
        });
    }
}

/// A recorded trace, checked: every line a typed record, a header first, an end record last.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub header: Record,
    pub end: Record,
    /// Records, header and end included.
    pub records: usize,
}

/// Why a file is not a trace agentsim wrote: the file, the place and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {expected}")]
pub struct ReadError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub expected: String,
}

/// Reads and checks a whole trace; `file` names it in errors. Never panics, whatever the bytes.
pub fn read(file: &str, bytes: &[u8]) -> Result<Recorded, ReadError> {
    let error = |line: usize, column: usize, expected: String| ReadError {
        file: file.to_owned(),
        line,
        column,
        expected,
    };
    if let Err(e) = std::str::from_utf8(bytes) {
        let before = &bytes[..e.valid_up_to()];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let column = before.len() - before.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) + 1;
        return Err(error(
            line,
            column,
            "expected UTF-8 text, found an invalid byte".to_owned(),
        ));
    }
    if bytes.is_empty() {
        return Err(error(1, 1, "expected a header record, found an empty file".to_owned()));
    }
    let mut header = None;
    let mut end: Option<Record> = None;
    let mut records = 0;
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let last = lines.len() - 1;
    for (i, line) in lines.iter().enumerate() {
        let number = i + 1;
        if i == last {
            if !line.is_empty() {
                return Err(error(
                    number,
                    line.len() + 1,
                    "expected a newline at the end of the last record (the trace was cut short)".to_owned(),
                ));
            }
            break;
        }
        if end.is_some() {
            return Err(error(number, 1, "expected nothing after the `end` record".to_owned()));
        }
        let value: Value = serde_json::from_slice(line)
            .map_err(|e| error(number, e.column().max(1), format!("expected a JSON record: {e}")))?;
        let Some(kind) = value.as_object().and_then(|o| o.get("kind")).and_then(Value::as_str) else {
            return Err(error(
                number,
                1,
                "expected a JSON object with a string `kind`".to_owned(),
            ));
        };
        let record = value
            .as_object()
            .map(Record::read)
            .transpose()
            .map_err(|expected| error(number, 1, expected))?;
        match (i, kind) {
            (0, "header") => {
                if value.get("seed").and_then(Value::as_u64).is_none() {
                    return Err(error(number, 1, "expected a numeric `seed` in the header".to_owned()));
                }
                header = record;
            }
            (0, other) => {
                return Err(error(
                    number,
                    1,
                    format!("expected a header record first, found `{other}`"),
                ));
            }
            (_, "header") => {
                return Err(error(
                    number,
                    1,
                    "expected one header record, found a second".to_owned(),
                ))
            }
            (_, "end") => {
                if value.get("events").and_then(Value::as_u64).is_none()
                    || value.get("outcome").and_then(Value::as_str).is_none()
                {
                    return Err(error(
                        number,
                        1,
                        "expected numeric `events` and a string `outcome` in the end record".to_owned(),
                    ));
                }
                end = record;
            }
            _ => {}
        }
        records += 1;
    }
    let (Some(header), Some(end)) = (header, end) else {
        return Err(error(
            last + 1,
            1,
            "expected an `end` record as the last line (the run was killed before it could finish its trace)"
                .to_owned(),
        ));
    };
    Ok(Recorded { header, end, records })
}

/// The header of a trace: the first line, read.
pub fn header(trace: &[u8]) -> Option<Record> {
    let first = trace.split(|b| *b == b'\n').next()?;
    let value: Value = serde_json::from_slice(first).ok()?;
    let record = Record::read(value.as_object()?).ok()?;
    matches!(record, Record::Header { .. }).then_some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_traces_have_no_divergence() {
        let trace = b"{\"seq\":0}\n{\"seq\":1}\n";
        assert_eq!(first_divergence(trace, trace), None);
    }

    #[test]
    fn the_first_differing_record_is_named() {
        let a = b"{\"kind\":\"header\"}\n{\"seq\":1,\"t_us\":5,\"to\":\"agent:a\",\"msg\":\"x\"}\n";
        let b = b"{\"kind\":\"header\"}\n{\"seq\":1,\"t_us\":5,\"to\":\"agent:a\",\"msg\":\"y\"}\n";
        let d = first_divergence(a, b).unwrap();
        assert_eq!(
            (d.line, d.seq, d.virtual_time_us, d.actor.as_deref()),
            (2, Some(1), Some(5), Some("agent:a"))
        );
    }

    #[test]
    fn a_whole_trace_reads_and_a_cut_one_names_the_place() {
        let good = b"{\"kind\":\"header\",\"seed\":1}\n{\"seq\":0,\"t_us\":0,\"kind\":\"deliver\",\"from\":\"user\",\"to\":\"agent:a\",\"msg\":\"start conv=0\"}\n{\"kind\":\"end\",\"t_us\":0,\"events\":1,\"outcome\":\"completed\"}\n";
        let recorded = read("t.jsonl", good).unwrap();
        assert_eq!(recorded.records, 3);
        let cut = &good[..good.len() - 10];
        let e = read("t.jsonl", cut).unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("t.jsonl", 3));
        let no_end = &good[..good.iter().position(|b| *b == b'\n').unwrap() + 1];
        assert!(read("t.jsonl", no_end)
            .unwrap_err()
            .to_string()
            .contains("`end` record"));
        let no_field = b"{\"kind\":\"header\",\"seed\":1}\n{\"seq\":0,\"kind\":\"deliver\"}\n";
        let e = read("t.jsonl", no_field).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.expected.contains("`t_us`"), "{e}");
    }

    #[test]
    fn a_shorter_trace_diverges_at_its_end() {
        let d = first_divergence(b"{\"seq\":0}\n{\"seq\":1}\n", b"{\"seq\":0}\n").unwrap();
        assert_eq!(d.line, 2);
        assert_eq!(d.found, "(end of trace)");
    }
}
