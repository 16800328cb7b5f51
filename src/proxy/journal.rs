//! A proxy's `trace.jsonl`, written a flushed line at a time as things happen, and the wall
//! clocks its records and OTLP spans are stamped with. The LLM proxy's ledger and the MCP
//! proxy's books both keep theirs here.
//!
//! These clocks time a real app's calls, outside any simulation: nothing a fault decision depends
//! on reads them (except `between` windows, which are wall time by definition).

use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

pub struct Journal {
    started: Instant,
    /// The wall clock when the proxy started, for OTLP span times.
    started_unix_ns: u128,
    file: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
}

impl Journal {
    /// A journal writing `DIR/trace.jsonl` (creating DIR), or none when `out` is `None`.
    pub fn create(out: Option<&Path>) -> Result<Journal, String> {
        let file = match out {
            None => None,
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("{}: cannot create the directory: {e}", dir.display()))?;
                let path = dir.join("trace.jsonl");
                let file =
                    std::fs::File::create(&path).map_err(|e| format!("{}: cannot create: {e}", path.display()))?;
                Some(Mutex::new(std::io::BufWriter::new(file)))
            }
        };
        Ok(Journal {
            started: Instant::now(),
            started_unix_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            file,
        })
    }

    /// When the proxy started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Wall time since the proxy started.
    pub fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros().min(u64::MAX as u128) as u64
    }

    /// A time since the proxy started, as Unix nanoseconds (an OTLP span's clock).
    pub fn unix_ns(&self, at_us: u64) -> u128 {
        self.started_unix_ns + u128::from(at_us) * 1000
    }

    /// Writes one record, stamped with its `seq`, `t_us` and `event`. The caller holds the lock
    /// that orders `seq`.
    pub fn write(&self, seq: u64, event: &str, mut fields: Value) {
        let Some(file) = &self.file else { return };
        if let Value::Object(map) = &mut fields {
            map.insert("seq".into(), json!(seq));
            map.insert("t_us".into(), json!(self.now_us()));
            map.insert("event".into(), json!(event));
        }
        let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(file, "{fields}").and_then(|_| file.flush());
    }
}

/// One OTLP/JSON span attribute.
pub fn otlp_attribute(key: &str, value: Value) -> Value {
    let value = match value {
        Value::Number(n) => json!({"intValue": n.to_string()}),
        Value::Bool(b) => json!({"boolValue": b}),
        other => json!({"stringValue": other.as_str().map_or_else(|| other.to_string(), str::to_owned)}),
    };
    json!({"key": key, "value": value})
}

/// The OTLP/JSON document of a proxy's spans.
pub fn otlp_document(service: &str, spans: Vec<Value>) -> Value {
    json!({"resourceSpans": [{
        "resource": {"attributes": [otlp_attribute("service.name", json!(service))]},
        "scopeSpans": [{"scope": {"name": "agentsim", "version": env!("CARGO_PKG_VERSION")}, "spans": spans}],
    }]})
}
