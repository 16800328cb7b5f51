//! Reading traces back, and finding the first place two traces part.

use serde_json::Value;

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

/// The header of a trace: the first line, parsed.
pub fn header(trace: &[u8]) -> Option<Value> {
    let first = trace.split(|b| *b == b'\n').next()?;
    let value: Value = serde_json::from_slice(first).ok()?;
    (value.get("kind")?.as_str()? == "header").then_some(value)
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
    fn a_shorter_trace_diverges_at_its_end() {
        let d = first_divergence(b"{\"seq\":0}\n{\"seq\":1}\n", b"{\"seq\":0}\n").unwrap();
        assert_eq!(d.line, 2);
        assert_eq!(d.found, "(end of trace)");
    }
}
