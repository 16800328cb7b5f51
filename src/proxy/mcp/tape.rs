//! The MCP cassette: one JSON line per request the server answered — the session, the request's
//! position in it, the method, the params, and the server's answer as it came (before any fault
//! of the proxy's). Replay serves a client from it with no server; the faults are drawn again
//! from the same seed, so a strict replay shows the client exactly what it saw.
//!
//! The format itself (`Take`, the header) is `scenario::mcp`'s, which a scenario's MCP tool reads.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use serde_json::Value;

use crate::llm::cassette::first_difference;
use crate::proxy::tape::{read_cassette, Matching, Recorder};
pub use crate::scenario::mcp::Take;
use crate::scenario::mcp::{self, Header, FORMAT};

/// A recorder of MCP takes in `DIR/cassette.jsonl`, its header line written.
pub fn recorder(dir: &Path, seed: u64, transport: &str) -> Result<Recorder, String> {
    let header = Header {
        mcp_cassette_format: FORMAT,
        agentsim: env!("CARGO_PKG_VERSION").to_owned(),
        seed,
        transport: transport.to_owned(),
    };
    Recorder::with_header(dir, &header)
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
        let (file, text) = read_cassette(path, "MCP cassette")?;
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
        Cassette::parse("c.jsonl", &mcp::fixture()).unwrap()
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
