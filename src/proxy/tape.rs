//! The proxy's cassette: one JSON line per exchange the upstream answered — the session, the
//! call's number in it, the request body, and the answer (status, the headers that matter, the
//! body or the stream's frames with their time offsets). Request headers are never stored, so an
//! API key never reaches the file.
//!
//! Replay serves the app from it: `strict` wants the same request at the same (session, call);
//! `in-order` serves each session's recordings in turn whatever the requests say.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::llm::cassette::first_difference;

/// Version of the proxy cassette format, in its header line.
pub const FORMAT: u64 = 1;
/// The cassette's file name inside a `--record` or `--replay` directory.
pub const FILE_NAME: &str = "cassette.jsonl";
/// Largest cassette read, in bytes.
const FILE_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// Response headers worth keeping: what SDKs and apps react to.
pub fn kept_header(name: &str) -> bool {
    matches!(
        name,
        "content-type" | "retry-after" | "retry-after-ms" | "x-should-retry" | "openai-model" | "openai-processing-ms"
    ) || name.starts_with("x-ratelimit-")
        || name.starts_with("anthropic-ratelimit-")
}

/// One frame of a streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// Time since the request went upstream.
    pub at_us: u64,
    pub data: String,
}

/// One recorded exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Take {
    pub session: String,
    /// The call's number in its session, from 1.
    pub call: u32,
    pub method: String,
    pub path: String,
    /// The request body (JSON, or a string when it was not JSON).
    pub request: Value,
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The whole body of an answer that was not streamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The frames of a streamed answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<Vec<Frame>>,
    /// Time from sending the request to the end of the answer.
    pub latency_us: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    proxy_cassette_format: u64,
    agentsim: String,
    seed: u64,
}

/// Writes takes as they happen, one flushed line each, so a killed proxy loses at most a line.
pub struct Recorder {
    file: Mutex<std::io::BufWriter<std::fs::File>>,
    pub path: PathBuf,
}

impl Recorder {
    /// A proxy cassette in `DIR/cassette.jsonl`, its header line written.
    pub fn create(dir: &Path, seed: u64) -> Result<Recorder, String> {
        let header = Header {
            proxy_cassette_format: FORMAT,
            agentsim: env!("CARGO_PKG_VERSION").to_owned(),
            seed,
        };
        Recorder::with_header(dir, &header)
    }

    /// A cassette in `DIR/cassette.jsonl` that starts with `header` (the MCP proxy's has its own).
    pub fn with_header(dir: &Path, header: &impl Serialize) -> Result<Recorder, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create the directory: {e}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let file = std::fs::File::create(&path).map_err(|e| format!("{}: cannot create: {e}", path.display()))?;
        let recorder = Recorder {
            file: Mutex::new(std::io::BufWriter::new(file)),
            path,
        };
        recorder.record(header)?;
        Ok(recorder)
    }

    /// Writes one line and flushes it.
    pub fn record(&self, line: &impl Serialize) -> Result<(), String> {
        let value = serde_json::to_value(line).expect("a cassette line is JSON");
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        writeln!(file, "{value}")
            .and_then(|_| file.flush())
            .map_err(|e| format!("{}: cannot write: {e}", self.path.display()))
    }
}

/// Reads `DIR/cassette.jsonl` (or the file itself when `path` is one), up to 1 GiB: its name
/// for errors, and its text. `what` names the kind of cassette in errors.
pub fn read_cassette(path: &Path, what: &str) -> Result<(String, String), String> {
    let path = if path.is_dir() {
        path.join(FILE_NAME)
    } else {
        path.to_path_buf()
    };
    let file = path.display().to_string();
    let size = std::fs::metadata(&path)
        .map_err(|e| format!("{file}: cannot read the {what}: {e}"))?
        .len();
    if size > FILE_BYTES_MAX {
        return Err(format!(
            "{file}: expected a {what} of at most {FILE_BYTES_MAX} bytes, found {size}"
        ));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{file}: cannot read the {what}: {e}"))?;
    Ok((file, text))
}

/// How a replay matches requests to takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    /// The same request at the same (session, call).
    Strict,
    /// Each session's takes in turn.
    InOrder,
}

/// A cassette being served.
pub struct Tape {
    pub file: String,
    pub seed: u64,
    takes: Vec<Take>,
    /// Per session, how many of its takes were served (in-order matching).
    served: Mutex<BTreeMap<String, usize>>,
}

/// Why a request has no take.
#[derive(Debug, Clone, PartialEq)]
pub struct Miss {
    pub message: String,
}

impl Tape {
    pub fn load(dir: &Path) -> Result<Tape, String> {
        let (file, text) = read_cassette(dir, "cassette")?;
        Tape::parse(&file, &text)
    }

    pub fn parse(file: &str, text: &str) -> Result<Tape, String> {
        let (header, takes): (Header, Vec<Take>) = crate::scenario::jsonl::header_and_records(
            file,
            text,
            "a proxy cassette",
            &format!("{{\"proxy_cassette_format\": {FORMAT}, …}}"),
            "a recorded exchange",
        )?;
        if header.proxy_cassette_format != FORMAT {
            return Err(format!(
                "{file}:1: expected proxy cassette format {FORMAT}, found {}",
                header.proxy_cassette_format
            ));
        }
        Ok(Tape {
            file: file.to_owned(),
            seed: header.seed,
            takes,
            served: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn len(&self) -> usize {
        self.takes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.takes.is_empty()
    }

    /// The take for a request.
    pub fn find(
        &self,
        matching: Matching,
        session: &str,
        call: u32,
        path: &str,
        request: &Value,
    ) -> Result<Take, Miss> {
        match matching {
            Matching::Strict => {
                let found = self
                    .takes
                    .iter()
                    .find(|t| t.session == session && t.call == call && t.path == path);
                match found {
                    Some(take) if take.request == *request => Ok(take.clone()),
                    Some(take) => Err(self.miss(session, call, Some(take), request)),
                    None => Err(self.miss(session, call, self.nearest(path, request), request)),
                }
            }
            Matching::InOrder => {
                let mut served = self.served.lock().unwrap_or_else(|p| p.into_inner());
                let next = served.entry(session.to_owned()).or_insert(0);
                let take = self.takes.iter().filter(|t| t.session == session).nth(*next).cloned();
                match take {
                    Some(take) => {
                        *next += 1;
                        Ok(take)
                    }
                    None => Err(self.miss(session, call, self.nearest(path, request), request)),
                }
            }
        }
    }

    /// The recorded request most like `request`: the one sharing the longest run of leading
    /// messages, then the longest start of the next message, then the earliest call.
    fn nearest(&self, path: &str, request: &Value) -> Option<&Take> {
        let messages = |v: &Value| {
            v.get("messages")
                .or_else(|| v.get("input"))
                .and_then(Value::as_array)
                .cloned()
        };
        let now = messages(request).unwrap_or_default();
        self.takes.iter().filter(|t| t.path == path).max_by_key(|t| {
            let recorded = messages(&t.request).unwrap_or_default();
            let shared = recorded.iter().zip(&now).take_while(|(a, b)| a == b).count();
            let next = match (recorded.get(shared), now.get(shared)) {
                (Some(a), Some(b)) => {
                    let (a, b) = (a.to_string(), b.to_string());
                    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
                }
                _ => 0,
            };
            (shared, next, std::cmp::Reverse(t.call))
        })
    }

    fn miss(&self, session: &str, call: u32, nearest: Option<&Take>, request: &Value) -> Miss {
        let message = match nearest {
            None => format!(
                "replay of {}: no recorded request for call {call} of session {session}, and none on this route",
                self.file
            ),
            Some(take) => {
                let difference =
                    first_difference(&take.request, request).unwrap_or_else(|| "the same request".to_owned());
                format!(
                    "replay of {}: no recorded answer for call {call} of session {session}; nearest recorded request: \
                     call {} of session {}, first difference {difference}",
                    self.file, take.call, take.session
                )
            }
        };
        Miss { message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn take(session: &str, call: u32, content: &str) -> Take {
        Take {
            session: session.to_owned(),
            call,
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            request: json!({"model": "m", "messages": [{"role": "user", "content": content}]}),
            status: 200,
            headers: BTreeMap::new(),
            body: Some(json!({"ok": content})),
            frames: None,
            latency_us: 5,
        }
    }

    fn tape() -> Tape {
        let header = json!({"proxy_cassette_format": 1, "agentsim": "0", "seed": 9});
        let text = format!(
            "{header}\n{}\n{}\n",
            serde_json::to_string(&take("s-a", 1, "hello")).unwrap(),
            serde_json::to_string(&take("s-a", 2, "again")).unwrap()
        );
        Tape::parse("c.jsonl", &text).unwrap()
    }

    #[test]
    fn strict_replay_names_the_nearest_request_and_the_first_difference() {
        let tape = tape();
        assert_eq!(tape.seed, 9);
        let same = take("s-a", 1, "hello").request;
        assert_eq!(
            tape.find(Matching::Strict, "s-a", 1, "/v1/chat/completions", &same)
                .unwrap()
                .call,
            1
        );
        let other = json!({"model": "m", "messages": [{"role": "user", "content": "hellp"}]});
        let miss = tape
            .find(Matching::Strict, "s-a", 1, "/v1/chat/completions", &other)
            .unwrap_err();
        assert!(miss.message.contains("messages[0].content"), "{}", miss.message);
        assert!(miss.message.contains("call 1 of session s-a"), "{}", miss.message);
    }

    #[test]
    fn in_order_replay_serves_a_sessions_takes_in_turn() {
        let tape = tape();
        let any = json!({});
        assert_eq!(
            tape.find(Matching::InOrder, "s-a", 7, "/v1/chat/completions", &any)
                .unwrap()
                .call,
            1
        );
        assert_eq!(
            tape.find(Matching::InOrder, "s-a", 8, "/v1/chat/completions", &any)
                .unwrap()
                .call,
            2
        );
        assert!(tape
            .find(Matching::InOrder, "s-a", 9, "/v1/chat/completions", &any)
            .is_err());
    }

    #[test]
    fn a_file_that_is_not_a_cassette_says_so() {
        let error = Tape::parse("c.jsonl", "{\"x\": 1}\n").err().unwrap();
        assert!(error.starts_with("c.jsonl:1: expected the header line"), "{error}");
    }
}
