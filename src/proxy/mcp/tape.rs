//! The MCP cassette: one JSON line per request the server answered — the session, the request's
//! position in it, the method, the params, and the server's answer as it came (before any fault
//! of the proxy's). Replay serves a client from it with no server; the faults are drawn again
//! from the same seed, so a strict replay shows the client exactly what it saw.
//!
//! The format itself (`Take`, the header) is `scenario::mcp`'s, which a scenario's MCP tool reads.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

use crate::llm::cassette::first_difference;
use crate::proxy::tape::Matching;
pub use crate::scenario::mcp::Take;
use crate::scenario::mcp::{self, Header, FILE_NAME, FORMAT};

/// Largest cassette read, in bytes.
const FILE_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// Writes takes as they happen, one flushed line each.
pub struct Recorder {
    file: Mutex<std::io::BufWriter<std::fs::File>>,
    pub path: PathBuf,
}

impl Recorder {
    pub fn create(dir: &Path, seed: u64, transport: &str) -> Result<Recorder, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create the directory: {e}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let file = std::fs::File::create(&path).map_err(|e| format!("{}: cannot create: {e}", path.display()))?;
        let recorder = Recorder {
            file: Mutex::new(std::io::BufWriter::new(file)),
            path,
        };
        let header = Header {
            mcp_cassette_format: FORMAT,
            agentsim: env!("CARGO_PKG_VERSION").to_owned(),
            seed,
            transport: transport.to_owned(),
        };
        recorder.line(&serde_json::to_value(header).expect("a header is JSON"))?;
        Ok(recorder)
    }

    pub fn record(&self, take: &Take) -> Result<(), String> {
        self.line(&serde_json::to_value(take).expect("a take is JSON"))
    }

    fn line(&self, value: &Value) -> Result<(), String> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        writeln!(file, "{value}")
            .and_then(|_| file.flush())
            .map_err(|e| format!("{}: cannot write: {e}", self.path.display()))
    }
}

/// A loaded MCP cassette.
pub struct Cassette {
    pub file: String,
    pub seed: u64,
    pub takes: Vec<Take>,
    /// Per (session, method), how many of its takes were served (in-order matching).
    served: Mutex<BTreeMap<(String, String), usize>>,
}

impl Cassette {
    /// Reads `DIR/cassette.jsonl`, or the file itself when `path` is one.
    pub fn load(path: &Path) -> Result<Cassette, String> {
        let path = if path.is_dir() {
            path.join(FILE_NAME)
        } else {
            path.to_path_buf()
        };
        let file = path.display().to_string();
        let size = std::fs::metadata(&path)
            .map_err(|e| format!("{file}: cannot read the MCP cassette: {e}"))?
            .len();
        if size > FILE_BYTES_MAX {
            return Err(format!(
                "{file}: expected an MCP cassette of at most {FILE_BYTES_MAX} bytes, found {size}"
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{file}: cannot read the MCP cassette: {e}"))?;
        Cassette::parse(&file, &text)
    }

    pub fn parse(file: &str, text: &str) -> Result<Cassette, String> {
        let (header, takes) = mcp::parse(file, text)?;
        Ok(Cassette {
            file: file.to_owned(),
            seed: header.seed,
            takes,
            served: Mutex::new(BTreeMap::new()),
        })
    }

    /// The recorded answer for a request, or why there is none.
    pub fn find(
        &self,
        matching: Matching,
        session: &str,
        seq: u32,
        method: &str,
        params: &Value,
    ) -> Result<Value, String> {
        let take = match matching {
            Matching::Strict => self.takes.iter().find(|t| t.session == session && t.seq == seq),
            Matching::InOrder => {
                let mut served = self.served.lock().unwrap_or_else(|p| p.into_inner());
                let next = served.entry((session.to_owned(), method.to_owned())).or_insert(0);
                let take = self
                    .takes
                    .iter()
                    .filter(|t| t.session == session && t.method == method)
                    .nth(*next);
                if take.is_some() {
                    *next += 1;
                }
                take
            }
        };
        let Some(take) = take else {
            return Err(format!(
                "{}: no recorded request {seq} ({method}) in session {session}",
                self.file
            ));
        };
        if matching == Matching::Strict {
            if take.method != method {
                return Err(format!(
                    "{}: request {seq} of session {session} was {} when recorded, now {method}",
                    self.file, take.method
                ));
            }
            // The client's protocol handshake carries its own version and name: not the tool
            // traffic a replay is about.
            if method != "initialize" {
                if let Some(difference) = first_difference(&take.params, params) {
                    return Err(format!(
                        "{}: request {seq} ({method}) of session {session} differs from the recording: {difference}",
                        self.file
                    ));
                }
            }
        }
        Ok(take.answer.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cassette() -> Cassette {
        let take = |seq: u32, method: &str, params: Value, answer: Value| {
            serde_json::to_string(&Take {
                session: "1".into(),
                seq,
                method: method.into(),
                params,
                answer,
                latency_us: 10,
            })
            .unwrap()
        };
        let text = [
            r#"{"mcp_cassette_format":1,"agentsim":"0","seed":4,"transport":"stdio"}"#.to_owned(),
            take(
                1,
                "tools/list",
                json!({}),
                json!({"id": 1, "result": {"tools": [{"name": "lookup"}]}}),
            ),
            take(
                2,
                "tools/call",
                json!({"name": "lookup", "arguments": {"q": "a"}}),
                json!({"id": 2, "result": {"content": []}}),
            ),
        ]
        .join("\n");
        Cassette::parse("c.jsonl", &text).unwrap()
    }

    #[test]
    fn strict_replay_wants_the_same_request_at_the_same_place() {
        let c = cassette();
        assert_eq!(c.seed, 4);
        let params = json!({"name": "lookup", "arguments": {"q": "a"}});
        assert!(c.find(Matching::Strict, "1", 2, "tools/call", &params).is_ok());
        let other = json!({"name": "lookup", "arguments": {"q": "b"}});
        let miss = c.find(Matching::Strict, "1", 2, "tools/call", &other).unwrap_err();
        assert!(miss.contains("arguments.q"), "{miss}");
        assert!(c.find(Matching::InOrder, "1", 9, "tools/call", &other).is_ok());
    }
}
