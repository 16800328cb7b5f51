//! Cassettes: every live model call recorded as one JSON line (the canonical request, its
//! logical position, and what came back), and the replayer that answers from them.
//!
//! The key of a call is its logical position — model, calling agent, conversation, the model
//! actor's incarnation and the call's index among that agent's calls in that conversation — plus
//! its canonical request. `strict` replay demands both; `fifo` serves each agent's recordings of a
//! conversation in order and reports the requests that drifted. Recordings without a
//! conversation (older cassettes) are keyed by the call's index among all the agent's calls.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::live::Exchange;
use crate::scenario::CassetteMatch;

/// Version of the cassette format; written in the header line.
pub const FORMAT: u64 = 1;
/// Largest cassette file read, in bytes.
pub const FILE_BYTES_MAX: u64 = 512 * 1024 * 1024;

/// Where a call sits in a run, independent of timing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// The model's name in the scenario.
    pub llm: String,
    /// The calling agent, `agent:NAME`.
    pub actor: String,
    /// The conversation the call belongs to (absent in cassettes that predate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv: Option<u32>,
    /// The model actor's incarnation (0 until it is restarted).
    pub incarnation: u32,
    /// Index of the call among this agent's calls to this model incarnation in the conversation
    /// (among all its calls, without `conv`), from 0.
    pub call_index: u32,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.conv {
            Some(conv) => write!(
                f,
                "call #{} of {} in conversation {conv} to llm:{} (incarnation {})",
                self.call_index, self.actor, self.llm, self.incarnation
            ),
            None => write!(
                f,
                "call #{} of {} to llm:{} (incarnation {})",
                self.call_index, self.actor, self.llm, self.incarnation
            ),
        }
    }
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub position: Position,
    /// The canonical request body (sorted keys, no credentials).
    pub request: Value,
    #[serde(flatten)]
    pub exchange: Exchange,
}

/// The first line of a cassette file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    cassette_format: u64,
    agentsim: String,
    scenario: String,
}

/// A cassette read from a file.
#[derive(Debug, Clone, Default)]
pub struct Cassette {
    /// The file it came from, for messages.
    pub file: PathBuf,
    pub entries: Vec<Entry>,
    /// BLAKE3 of the file's bytes, hex.
    pub hash: String,
}

/// A cassette file that cannot be used, with the place and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CassetteError {
    pub file: String,
    /// From 1; 0 when the error is about the whole file.
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for CassetteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file, self.message),
            line => write!(f, "{}:{line}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for CassetteError {}

impl Cassette {
    /// Reads a cassette file.
    pub fn load(path: &Path) -> Result<Cassette, CassetteError> {
        let file = path.display().to_string();
        let whole = |message: String| CassetteError {
            file: file.clone(),
            line: 0,
            message,
        };
        let size = std::fs::metadata(path)
            .map_err(|e| whole(format!("cannot read the cassette: {e}")))?
            .len();
        if size > FILE_BYTES_MAX {
            return Err(whole(format!(
                "expected a cassette of at most {FILE_BYTES_MAX} bytes, found {size} bytes"
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| whole(format!("cannot read the cassette: {e}")))?;
        let mut cassette = Cassette::parse(&file, &bytes)?;
        cassette.file = path.to_path_buf();
        Ok(cassette)
    }

    /// Parses cassette bytes; `file` names them in errors.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Cassette, CassetteError> {
        let error = |line: usize, message: String| CassetteError {
            file: file.to_owned(),
            line,
            message,
        };
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
            error(line, "expected UTF-8 text, found an invalid byte".into())
        })?;
        let mut entries = Vec::new();
        let mut seen_header = false;
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            if line.trim().is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(line)
                .map_err(|e| error(number, format!("expected one JSON object per line: {e}")))?;
            if !value.is_object() {
                return Err(error(number, "expected a JSON object".into()));
            }
            if value.get("cassette_format").is_some() {
                if seen_header || !entries.is_empty() {
                    return Err(error(number, "expected the header only on the first line".into()));
                }
                let header: Header =
                    serde_json::from_value(value).map_err(|e| error(number, format!("in the header: {e}")))?;
                if header.cassette_format != FORMAT {
                    return Err(error(
                        number,
                        format!(
                            "field `cassette_format`: expected {FORMAT}, found {}",
                            header.cassette_format
                        ),
                    ));
                }
                seen_header = true;
                continue;
            }
            let entry: Entry =
                serde_json::from_value(value).map_err(|e| error(number, format!("expected a recorded call: {e}")))?;
            entries.push(entry);
        }
        Ok(Cassette {
            file: PathBuf::from(file),
            entries,
            hash: blake3::hash(bytes).to_hex().to_string(),
        })
    }

    /// The cassette as JSONL: a header line, then one line per call, in call order.
    pub fn to_jsonl(scenario: &str, entries: &[Entry]) -> String {
        let header = Header {
            cassette_format: FORMAT,
            agentsim: env!("CARGO_PKG_VERSION").to_owned(),
            scenario: scenario.to_owned(),
        };
        let mut out = serde_json::to_string(&header).unwrap_or_default();
        out.push('\n');
        for entry in entries {
            out.push_str(&serde_json::to_string(entry).unwrap_or_default());
            out.push('\n');
        }
        out
    }
}

/// The first place where two JSON values differ, as a path (`messages[1].content`), with both
/// values; `None` when they are equal.
pub fn first_difference(recorded: &Value, now: &Value) -> Option<String> {
    /// A member of an object or array at `path`, present on either side or both.
    fn child(path: &mut String, a: Option<&Value>, b: Option<&Value>) -> Option<String> {
        match (a, b) {
            (Some(a), Some(b)) => walk(path, a, b),
            (Some(a), None) => Some(format!("`{path}`: recorded {}, now absent", clip(a))),
            (None, Some(b)) => Some(format!("`{path}`: not recorded, now {}", clip(b))),
            (None, None) => None,
        }
    }

    fn walk(path: &mut String, a: &Value, b: &Value) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for key in keys {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    let found = child(path, x.get(key), y.get(key));
                    if found.is_some() {
                        return found;
                    }
                    path.truncate(len);
                }
                None
            }
            (Value::Array(x), Value::Array(y)) => {
                for i in 0..x.len().max(y.len()) {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    let found = child(path, x.get(i), y.get(i));
                    if found.is_some() {
                        return found;
                    }
                    path.truncate(len);
                }
                None
            }
            (a, b) if a == b => None,
            (Value::String(a), Value::String(b)) => {
                // Long texts that share a start: both are shown from a little before the first
                // character that differs, so the difference is on screen.
                let same = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
                let short = a.chars().count().max(b.chars().count()) <= 2 * CONTEXT_CHARS;
                let from = if short { 0 } else { same.saturating_sub(CONTEXT_CHARS) };
                Some(format!(
                    "`{}`: recorded {}, now {}",
                    if path.is_empty() { "(root)" } else { path },
                    clip_text(a, from),
                    clip_text(b, from)
                ))
            }
            (a, b) => Some(format!(
                "`{}`: recorded {}, now {}",
                if path.is_empty() { "(root)" } else { path },
                clip(a),
                clip(b)
            )),
        }
    }
    walk(&mut String::new(), recorded, now)
}

fn difference(recorded: &Value, now: &Value) -> Option<String> {
    if recorded.is_null() {
        None
    } else {
        first_difference(recorded, now)
    }
}

/// Characters shown before the first difference of two texts.
const CONTEXT_CHARS: usize = 20;

/// A text as JSON, from character `from` on (with `…` for what is left out), at most 80 characters.
fn clip_text(text: &str, from: usize) -> String {
    const CHARS_MAX: usize = 80;
    let rest: String = text.chars().skip(from).collect();
    let shown = serde_json::Value::String(rest).to_string();
    let body: String = shown.chars().take(CHARS_MAX).collect();
    let more = if shown.chars().count() > CHARS_MAX { "…" } else { "" };
    let less = if from > 0 { "…" } else { "" };
    format!("{less}{body}{more}")
}

fn clip(value: &Value) -> String {
    const CHARS_MAX: usize = 80;
    let text = value.to_string();
    if text.chars().count() <= CHARS_MAX {
        text
    } else {
        format!("{}…", text.chars().take(CHARS_MAX).collect::<String>())
    }
}

/// What a replay found besides the answers: the first mismatch (strict), drift (fifo) and
/// recordings nobody asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// `strict`: the first request that had no matching recording. A run with one is invalid.
    pub mismatch: Option<String>,
    /// `fifo`: requests served although they differ from the recording, first difference each.
    pub drift: Vec<String>,
    /// Recordings no call used.
    pub unused: Vec<Position>,
    pub served: u64,
    /// Some model was replayed under `strict`.
    pub strict: bool,
}

impl ReplaySummary {
    /// The error a strict replay ends with, if any.
    pub fn strict_error(&self, file: &str) -> Option<String> {
        if let Some(mismatch) = &self.mismatch {
            return Some(format!("{file}: strict replay: {mismatch}"));
        }
        self.unused.first().map(|p| {
            format!(
                "{file}: strict replay: {} recording(s) unused, the first is {p}",
                self.unused.len()
            )
        })
    }
}

struct ReplayState {
    /// Entries by (llm, actor), in recorded order, each with a used flag.
    queues: BTreeMap<(String, String), Vec<(Entry, bool)>>,
    summary: ReplaySummary,
    /// The policy each model is replayed under (models not listed: strict).
    policies: BTreeMap<String, CassetteMatch>,
}

/// Answers calls from a cassette. Shared by every incarnation of every model actor of a run.
pub struct Replayer {
    file: String,
    state: Mutex<ReplayState>,
}

impl Replayer {
    /// A replayer over `cassette`, each model under its policy.
    pub fn new(cassette: &Cassette, policies: BTreeMap<String, CassetteMatch>) -> Replayer {
        let mut queues: BTreeMap<(String, String), Vec<(Entry, bool)>> = BTreeMap::new();
        for entry in &cassette.entries {
            queues
                .entry((entry.position.llm.clone(), entry.position.actor.clone()))
                .or_default()
                .push((entry.clone(), false));
        }
        Replayer {
            file: cassette.file.display().to_string(),
            state: Mutex::new(ReplayState {
                queues,
                summary: ReplaySummary::default(),
                policies,
            }),
        }
    }

    /// The recorded exchange for this call, or why there is none. `agent_call_index` is the call's
    /// index among all of the agent's calls, for recordings without a conversation.
    pub fn answer(&self, position: &Position, agent_call_index: u32, request: &Value) -> Result<Exchange, String> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        let legacy = state
            .queues
            .get(&(position.llm.clone(), position.actor.clone()))
            .is_some_and(|q| q.iter().any(|(e, _)| e.position.conv.is_none()));
        let legacy_position;
        let position = if legacy {
            legacy_position = Position {
                conv: None,
                call_index: agent_call_index,
                ..position.clone()
            };
            &legacy_position
        } else {
            position
        };
        let policy = state
            .policies
            .get(&position.llm)
            .copied()
            .unwrap_or(CassetteMatch::Strict);
        let queue = state
            .queues
            .get_mut(&(position.llm.clone(), position.actor.clone()))
            .map_or(&mut [][..], |q| q.as_mut_slice());
        let result = match policy {
            CassetteMatch::Strict => match queue.iter_mut().find(|(e, _)| e.position == *position) {
                None => Err(format!("unexpected request: no recording for {position}")),
                // A recording without a request (imported from a trace) matches any request.
                Some((entry, used)) => match difference(&entry.request, request) {
                    None => {
                        *used = true;
                        Ok(entry.exchange.clone())
                    }
                    Some(diff) => Err(format!(
                        "the request for {position} differs from the recording at {diff}"
                    )),
                },
            },
            CassetteMatch::Fifo => match queue
                .iter_mut()
                .find(|(e, used)| !*used && e.position.conv == position.conv)
            {
                None => Err(format!("no recording left for {position}: the cassette is exhausted")),
                Some((entry, used)) => {
                    *used = true;
                    if let Some(diff) = difference(&entry.request, request) {
                        state.summary.drift.push(format!("{position}: {diff}"));
                    }
                    Ok(entry.exchange.clone())
                }
            },
        };
        match &result {
            Ok(_) => state.summary.served += 1,
            Err(message) if state.summary.mismatch.is_none() => state.summary.mismatch = Some(message.clone()),
            Err(_) => {}
        }
        result
    }

    /// What the replay found; unused recordings are listed in cassette order per agent.
    pub fn summary(&self) -> ReplaySummary {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut summary = state.summary.clone();
        summary.strict = state.policies.values().any(|p| *p == CassetteMatch::Strict);
        summary.unused = state
            .queues
            .values()
            .flat_map(|q| q.iter().filter(|(_, used)| !used).map(|(e, _)| e.position.clone()))
            .collect();
        summary
    }

    /// The cassette file, for messages.
    pub fn file(&self) -> &str {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_difference_deep_in_a_long_text_is_shown() {
        let start = "x".repeat(200);
        let a = serde_json::json!({ "content": format!("{start} shipped") });
        let b = serde_json::json!({ "content": format!("{start} delayed") });
        let found = first_difference(&a, &b).unwrap();
        assert!(found.contains("shipped") && found.contains("delayed"), "{found}");
    }

    #[test]
    fn first_difference_names_the_path_of_the_first_differing_field() {
        let a = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let b = json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]});
        let diff = first_difference(&a, &b).unwrap();
        assert!(diff.starts_with("`messages[0].content`"), "{diff}");
        assert_eq!(first_difference(&a, &a), None);
        let c = json!({"model": "m"});
        assert!(first_difference(&a, &c).unwrap().starts_with("`messages`: recorded"));
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number() {
        let text = b"{\"cassette_format\":1,\"agentsim\":\"0\",\"scenario\":\"s\"}\n{\"llm\":\"gpt\"}\n";
        let error = Cassette::parse("c.jsonl", text).unwrap_err();
        assert_eq!(error.line, 2);
        assert!(
            error.to_string().starts_with("c.jsonl:2: expected a recorded call"),
            "{error}"
        );
    }
}
