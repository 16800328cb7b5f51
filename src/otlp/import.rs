//! OTLP/JSON import: a production trace (GenAI semantic conventions, or OpenInference attributes
//! as Phoenix and many Python SDKs emit them) becomes a scenario and a cassette that replay it.
//!
//! Agents and handoffs come from agent spans, model answers from chat spans (their output
//! messages when the trace has them, else the tool and agent spans that followed), tool latency
//! and outputs from tool spans, errors as recorded error answers (model calls) or faults at the
//! call where they happened (tool calls). Without message content the structure is reproduced —
//! call graph, timing, tokens, errors — and the scenario says so.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::llm::cassette::{Cassette, Entry, Position};
use crate::llm::live::{Exchange, HANDOFF_TOOL_PREFIX};

/// Largest trace file read, in bytes.
pub const FILE_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// Most spans one import handles.
pub const SPANS_MAX: usize = 1_000_000;

/// What the placeholders say where the trace had no content.
const NO_USER_TEXT: &str = "[user message not recorded in the trace]";
const NO_ANSWER_TEXT: &str = "[answer not recorded in the trace]";
const NO_TOOL_OUTPUT: &str = "[tool output not recorded in the trace]";

/// A trace that cannot be imported: the file, the place in it, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{place}: {message}")]
pub struct ImportError {
    pub file: String,
    /// `LINE:COLUMN` for JSON syntax, `LINE: path.to[3].field` for structure.
    pub place: String,
    pub message: String,
}

/// An imported incident: the files to write and what they hold.
#[derive(Debug, Clone)]
pub struct Imported {
    pub scenario: String,
    pub cassette: String,
    pub agents: usize,
    pub chat_calls: usize,
    pub tool_calls: usize,
    pub errors: usize,
    /// The trace carried no message content; answers and outputs are placeholders.
    pub content_missing: bool,
}

/// One span, with its attributes as plain JSON values.
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent: Option<String>,
    name: String,
    start_ns: u64,
    end_ns: u64,
    attrs: BTreeMap<String, Value>,
    error: Option<String>,
    /// Span events: name, time, attributes.
    events: Vec<(String, u64, BTreeMap<String, Value>)>,
}

impl Span {
    fn str(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    fn u64(&self, keys: &[&str]) -> Option<u64> {
        keys.iter().find_map(|k| match self.attrs.get(*k)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        })
    }

    fn duration_us(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns) / 1_000
    }

    fn op(&self) -> Op {
        let by_op = match self.str("gen_ai.operation.name") {
            Some("invoke_agent" | "create_agent") => Some(Op::Agent),
            Some("chat" | "text_completion" | "generate_content") => Some(Op::Chat),
            Some("execute_tool") => Some(Op::Tool),
            Some(_) => Some(Op::Other),
            None => None,
        };
        let by_kind = || match self.str("openinference.span.kind").map(|k| k.to_ascii_uppercase()) {
            Some(k) if k == "AGENT" => Some(Op::Agent),
            Some(k) if k == "LLM" => Some(Op::Chat),
            Some(k) if k == "TOOL" => Some(Op::Tool),
            Some(_) => Some(Op::Other),
            None => None,
        };
        let by_name = || {
            if self.name.starts_with("invoke_agent") {
                Op::Agent
            } else if self.name.starts_with("chat ") {
                Op::Chat
            } else if self.name.starts_with("execute_tool ") {
                Op::Tool
            } else {
                Op::Other
            }
        };
        by_op.or_else(by_kind).unwrap_or_else(by_name)
    }

    fn suffix(&self, prefix: &str) -> Option<&str> {
        self.name.strip_prefix(prefix).map(str::trim).filter(|s| !s.is_empty())
    }

    fn agent_name(&self) -> String {
        let name = self
            .str("gen_ai.agent.name")
            .or_else(|| self.str("agent.name"))
            .or_else(|| self.suffix("invoke_agent"))
            .unwrap_or(&self.name);
        identifier(name)
    }

    fn tool_name(&self) -> String {
        let name = self
            .str("gen_ai.tool.name")
            .or_else(|| self.str("tool.name"))
            .or_else(|| self.suffix("execute_tool"))
            .unwrap_or(&self.name);
        identifier(name)
    }

    fn model(&self) -> String {
        self.str("gen_ai.request.model")
            .or_else(|| self.str("gen_ai.response.model"))
            .or_else(|| self.str("llm.model_name"))
            .or_else(|| self.suffix("chat"))
            .unwrap_or("unknown-model")
            .to_owned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Agent,
    Chat,
    Tool,
    Other,
}

/// A name usable in a scenario: letters, digits, `-` and `_`.
fn identifier(text: &str) -> String {
    let cleaned: String = text
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "unnamed".into()
    } else {
        cleaned
    }
}

/// Reads and imports an OTLP/JSON file.
pub fn import_file(path: &Path) -> Result<Imported, ImportError> {
    let file = path.display().to_string();
    let whole = |message: String| ImportError {
        file: file.clone(),
        place: "0".into(),
        message,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| whole(format!("cannot read the trace: {e}")))?
        .len();
    if size > FILE_BYTES_MAX {
        return Err(whole(format!("expected at most {FILE_BYTES_MAX} bytes, found {size}")));
    }
    let bytes = std::fs::read(path).map_err(|e| whole(format!("cannot read the trace: {e}")))?;
    import_bytes(&file, &bytes)
}

/// Imports OTLP/JSON bytes: one `TracesData` object, or one per line (the file exporter's
/// JSON Lines). `file` names them in errors.
pub fn import_bytes(file: &str, bytes: &[u8]) -> Result<Imported, ImportError> {
    let error = |place: String, message: String| ImportError {
        file: file.to_owned(),
        place,
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
        error(line.to_string(), "expected UTF-8 text, found an invalid byte".into())
    })?;
    let mut documents = Vec::new();
    match serde_json::from_str::<Value>(text) {
        Ok(value) => documents.push((1, value)),
        Err(whole) => {
            for (index, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let value = serde_json::from_str::<Value>(line).map_err(|e| {
                    if documents.is_empty() && index == 0 {
                        error(
                            format!("{}:{}", whole.line(), whole.column()),
                            format!("expected OTLP/JSON (one object, or one per line): {whole}"),
                        )
                    } else {
                        error(
                            format!("{}:{}", index + 1, e.column()),
                            format!("expected a JSON object: {e}"),
                        )
                    }
                })?;
                documents.push((index + 1, value));
            }
        }
    }
    let mut spans = Vec::new();
    for (line, document) in &documents {
        read_document(document, &mut spans).map_err(|(path, message)| error(format!("{line}: {path}"), message))?;
    }
    if spans.is_empty() {
        return Err(error(
            "1".into(),
            "expected at least one span in `resourceSpans`, found none".into(),
        ));
    }
    Builder::new(spans)
        .build(file)
        .map_err(|message| error("1".into(), message))
}

type Place = (String, String);

fn read_document(document: &Value, spans: &mut Vec<Span>) -> Result<(), Place> {
    let expected =
        |path: &str, what: &str, found: &Value| (path.to_owned(), format!("expected {what}, found {}", kind_of(found)));
    let object = document
        .as_object()
        .ok_or_else(|| expected("(document)", "an object with `resourceSpans`", document))?;
    let resource_spans = match object.get("resourceSpans") {
        Some(Value::Array(items)) => items,
        Some(other) => return Err(expected("resourceSpans", "an array", other)),
        None => {
            return Err((
                "resourceSpans".into(),
                "expected a `resourceSpans` array, found none".into(),
            ))
        }
    };
    for (r, resource) in resource_spans.iter().enumerate() {
        let path = format!("resourceSpans[{r}]");
        let scopes = match resource
            .get("scopeSpans")
            .or_else(|| resource.get("instrumentationLibrarySpans"))
        {
            Some(Value::Array(items)) => items.as_slice(),
            Some(other) => return Err(expected(&format!("{path}.scopeSpans"), "an array", other)),
            None => &[],
        };
        for (s, scope) in scopes.iter().enumerate() {
            let path = format!("{path}.scopeSpans[{s}]");
            let items = match scope.get("spans") {
                Some(Value::Array(items)) => items.as_slice(),
                Some(other) => return Err(expected(&format!("{path}.spans"), "an array", other)),
                None => &[],
            };
            for (i, raw) in items.iter().enumerate() {
                if spans.len() >= SPANS_MAX {
                    return Err((path, format!("expected at most {SPANS_MAX} spans")));
                }
                spans.push(read_span(raw, &format!("{path}.spans[{i}]"))?);
            }
        }
    }
    Ok(())
}

fn kind_of(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {:?}", s.chars().take(40).collect::<String>()),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn read_span(raw: &Value, path: &str) -> Result<Span, Place> {
    let object = raw.as_object().ok_or_else(|| {
        (
            path.to_owned(),
            format!("expected a span object, found {}", kind_of(raw)),
        )
    })?;
    let id = |key: &str, hex_len: usize, required: bool| -> Result<Option<String>, Place> {
        match object.get(key) {
            None | Some(Value::Null) if !required => Ok(None),
            Some(Value::String(s)) if s.is_empty() && !required => Ok(None),
            Some(Value::String(s)) if s.len() == hex_len && s.chars().all(|c| c.is_ascii_hexdigit()) => {
                Ok(Some(s.to_ascii_lowercase()))
            }
            Some(other) => Err((
                format!("{path}.{key}"),
                format!("expected {hex_len} hex digits, found {}", kind_of(other)),
            )),
            None => Err((
                format!("{path}.{key}"),
                format!("expected {hex_len} hex digits, found nothing"),
            )),
        }
    };
    let time = |key: &str| -> Result<u64, Place> {
        match object.get(key) {
            Some(Value::String(s)) => s.parse::<u64>().map_err(|_| {
                (
                    format!("{path}.{key}"),
                    format!("expected nanoseconds as a decimal string, found {s:?}"),
                )
            }),
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
                (
                    format!("{path}.{key}"),
                    format!("expected non-negative nanoseconds, found {n}"),
                )
            }),
            Some(other) => Err((
                format!("{path}.{key}"),
                format!("expected nanoseconds as a decimal string, found {}", kind_of(other)),
            )),
            None => Err((format!("{path}.{key}"), "expected nanoseconds, found nothing".into())),
        }
    };
    let trace_id = id("traceId", 32, true)?.unwrap_or_default();
    let span_id = id("spanId", 16, true)?.unwrap_or_default();
    let parent = id("parentSpanId", 16, false)?;
    let name = match object.get("name") {
        Some(Value::String(s)) => s.clone(),
        None => String::new(),
        Some(other) => {
            return Err((
                format!("{path}.name"),
                format!("expected a string, found {}", kind_of(other)),
            ))
        }
    };
    let start_ns = time("startTimeUnixNano")?;
    let end_ns = time("endTimeUnixNano")?.max(start_ns);
    let attrs = read_attributes(object.get("attributes"), path)?;
    let mut events = Vec::new();
    if let Some(list) = object.get("events") {
        let list = list.as_array().ok_or_else(|| {
            (
                format!("{path}.events"),
                format!("expected an array of events, found {}", kind_of(list)),
            )
        })?;
        for (e, event) in list.iter().enumerate() {
            let at = format!("{path}.events[{e}]");
            let name = event.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
            let time_ns = match event.get("timeUnixNano") {
                Some(Value::String(s)) => s.parse::<u64>().ok(),
                Some(Value::Number(n)) => n.as_u64(),
                _ => None,
            }
            .ok_or_else(|| {
                (
                    format!("{at}.timeUnixNano"),
                    "expected nanoseconds as a decimal string".to_owned(),
                )
            })?;
            events.push((name, time_ns, read_attributes(event.get("attributes"), &at)?));
        }
    }
    let status = object.get("status");
    let code = match status.and_then(|s| s.get("code")) {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) if s == "STATUS_CODE_ERROR" => 2,
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(other) => {
            return Err((
                format!("{path}.status.code"),
                format!("expected 0, 1 or 2, found {}", kind_of(other)),
            ))
        }
    };
    let error = (code == 2).then(|| {
        status
            .and_then(|s| s.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_owned()
    });
    Ok(Span {
        trace_id,
        span_id,
        parent,
        name,
        start_ns,
        end_ns,
        attrs,
        error,
        events,
    })
}

/// An OTLP attribute list as a map of plain JSON values.
fn read_attributes(list: Option<&Value>, path: &str) -> Result<BTreeMap<String, Value>, Place> {
    let mut attrs = BTreeMap::new();
    let Some(list) = list else {
        return Ok(attrs);
    };
    let list = list.as_array().ok_or_else(|| {
        (
            format!("{path}.attributes"),
            format!("expected an array of key-value pairs, found {}", kind_of(list)),
        )
    })?;
    for (a, pair) in list.iter().enumerate() {
        let at = format!("{path}.attributes[{a}]");
        let key = pair
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| (format!("{at}.key"), "expected a string key".to_owned()))?;
        let value = match pair.get("value") {
            Some(v) => plain(v, &format!("{at}.value"), 0)?,
            None => Value::Null,
        };
        attrs.insert(key.to_owned(), value);
    }
    Ok(attrs)
}

/// An OTLP `AnyValue` as plain JSON.
fn plain(value: &Value, path: &str, depth: u32) -> Result<Value, Place> {
    const DEPTH_MAX: u32 = 32;
    if depth > DEPTH_MAX {
        return Err((
            path.to_owned(),
            format!("expected values nested at most {DEPTH_MAX} deep"),
        ));
    }
    let object = value.as_object().ok_or_else(|| {
        (
            path.to_owned(),
            format!("expected an AnyValue object, found {}", kind_of(value)),
        )
    })?;
    let Some((kind, inner)) = object.iter().next() else {
        return Ok(Value::Null);
    };
    Ok(match (kind.as_str(), inner) {
        ("stringValue" | "bytesValue", Value::String(s)) => Value::String(s.clone()),
        ("boolValue", Value::Bool(b)) => Value::Bool(*b),
        ("intValue", Value::String(s)) => s.parse::<i64>().map(Value::from).map_err(|_| {
            (
                format!("{path}.intValue"),
                format!("expected a decimal integer, found {s:?}"),
            )
        })?,
        ("intValue" | "doubleValue", Value::Number(n)) => Value::Number(n.clone()),
        ("doubleValue", Value::String(s)) => s.parse::<f64>().ok().map(Value::from).unwrap_or(Value::Null),
        ("arrayValue", inner) => {
            let values = inner
                .get("values")
                .and_then(Value::as_array)
                .map_or(&[][..], |v| v.as_slice());
            let mut out = Vec::with_capacity(values.len());
            for (i, v) in values.iter().enumerate() {
                out.push(plain(v, &format!("{path}.arrayValue.values[{i}]"), depth + 1)?);
            }
            Value::Array(out)
        }
        ("kvlistValue", inner) => {
            let values = inner
                .get("values")
                .and_then(Value::as_array)
                .map_or(&[][..], |v| v.as_slice());
            let mut out = Map::new();
            for (i, pair) in values.iter().enumerate() {
                let at = format!("{path}.kvlistValue.values[{i}]");
                let key = pair
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or_else(|| (format!("{at}.key"), "expected a string key".to_owned()))?;
                let v = match pair.get("value") {
                    Some(v) => plain(v, &format!("{at}.value"), depth + 1)?,
                    None => Value::Null,
                };
                out.insert(key.to_owned(), v);
            }
            Value::Object(out)
        }
        (other, found) => {
            return Err((
                format!("{path}.{other}"),
                format!(
                    "expected one of stringValue, intValue, doubleValue, boolValue, arrayValue, kvlistValue, \
                     bytesValue with a matching value, found {}",
                    kind_of(found)
                ),
            ))
        }
    })
}

/// What a model answered, as the importer reconstructs it.
#[derive(Debug, Clone)]
struct ChatCall {
    agent: String,
    llm: String,
    model: String,
    span: usize,
    tool_calls: Vec<(String, String, String)>,
    handoff: Option<String>,
    text: Option<String>,
}

struct Builder {
    spans: Vec<Span>,
    children: BTreeMap<usize, Vec<usize>>,
    /// Nearest agent-span ancestor of each span.
    owner: Vec<Option<usize>>,
    content_missing: bool,
}

impl Builder {
    fn new(mut spans: Vec<Span>) -> Builder {
        spans.sort_by(|a, b| (a.start_ns, &a.trace_id, &a.span_id).cmp(&(b.start_ns, &b.trace_id, &b.span_id)));
        let index: BTreeMap<(String, String), usize> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.trace_id.clone(), s.span_id.clone()), i))
            .collect();
        let parent_of: Vec<Option<usize>> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let p = s
                    .parent
                    .as_ref()
                    .and_then(|p| index.get(&(s.trace_id.clone(), p.clone())).copied());
                p.filter(|&p| p != i)
            })
            .collect();
        let mut children: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, p) in parent_of.iter().enumerate() {
            if let Some(p) = p {
                children.entry(*p).or_default().push(i);
            }
        }
        let mut owner = vec![None; spans.len()];
        for i in 0..spans.len() {
            // Walk up at most as many steps as there are spans: a cycle cannot hang the import.
            let mut at = parent_of[i];
            let mut steps = 0;
            while let Some(p) = at {
                if spans[p].op() == Op::Agent {
                    owner[i] = Some(p);
                    break;
                }
                steps += 1;
                if steps > spans.len() {
                    break;
                }
                at = parent_of[p];
            }
        }
        Builder {
            spans,
            children,
            owner,
            content_missing: false,
        }
    }

    fn build(mut self, file: &str) -> Result<Imported, String> {
        let n = self.spans.len();
        let ops: Vec<Op> = self.spans.iter().map(Span::op).collect();
        let chats: Vec<usize> = (0..n).filter(|&i| ops[i] == Op::Chat).collect();
        if chats.is_empty() {
            return Err(
                "expected at least one model call (a `chat` span, or an OpenInference LLM span), found none".into(),
            );
        }
        let default_agent = "assistant".to_owned();
        let agent_of = |b: &Builder, i: usize| b.owner[i].map_or(default_agent.clone(), |a| b.spans[a].agent_name());

        // The work items of each agent span (or of the implicit agent), in time order.
        let mut work: BTreeMap<Option<usize>, Vec<usize>> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            if matches!(op, Op::Chat | Op::Tool) || (*op == Op::Agent && self.owner[i].is_some()) {
                work.entry(self.owner[i]).or_default().push(i);
            }
        }

        // Models, named after themselves.
        let mut llms: BTreeMap<String, String> = BTreeMap::new();
        for &c in &chats {
            let model = self.spans[c].model();
            let name = identifier(&model);
            llms.entry(model).or_insert(name);
        }

        // Agents, in order of first appearance.
        let mut agents: Vec<String> = Vec::new();
        let mut agent_llm: BTreeMap<String, String> = BTreeMap::new();
        let mut agent_tools: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut handoffs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut chat_count: BTreeMap<Option<usize>, u32> = BTreeMap::new();
        for (i, &op) in ops.iter().enumerate() {
            let name = match op {
                Op::Agent => self.spans[i].agent_name(),
                Op::Chat | Op::Tool => agent_of(&self, i),
                Op::Other => continue,
            };
            if !agents.contains(&name) {
                agents.push(name.clone());
            }
            match op {
                Op::Chat => {
                    let model = self.spans[i].model();
                    agent_llm.entry(name).or_insert_with(|| llms[&model].clone());
                    *chat_count.entry(self.owner[i]).or_default() += 1;
                }
                Op::Tool => {
                    agent_tools.entry(name).or_default().insert(self.spans[i].tool_name());
                }
                Op::Agent => {
                    if let Some(parent) = self.owner[i] {
                        let from = self.spans[parent].agent_name();
                        if from != name {
                            handoffs.entry(from).or_default().insert(name);
                        }
                    }
                }
                Op::Other => {}
            }
        }

        // Model answers, tool outputs and latencies, tool errors, agent timeouts.
        let mut calls: Vec<ChatCall> = Vec::new();
        let mut tool_latency: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut tool_output: BTreeMap<String, String> = BTreeMap::new();
        let mut tool_calls_total = 0;
        let mut tool_index: BTreeMap<String, u32> = BTreeMap::new();
        let mut faults = String::new();
        let mut tool_timeout_us: BTreeMap<String, u64> = BTreeMap::new();
        let mut retry_gap_us: BTreeMap<String, u64> = BTreeMap::new();
        let mut errors = 0;
        for (owner, items) in &work {
            let agent = owner.map_or(default_agent.clone(), |a| self.spans[a].agent_name());
            for (k, &i) in items.iter().enumerate() {
                let span = self.spans[i].clone();
                match ops[i] {
                    Op::Chat => {
                        let following: Vec<usize> = items[k + 1..]
                            .iter()
                            .copied()
                            .take_while(|&j| ops[j] != Op::Chat)
                            .collect();
                        let call = self.chat_call(&agent, &llms, i, &following);
                        calls.push(call);
                        if span.error.is_some() {
                            errors += 1;
                            if let Some(&next) = items[k + 1..].iter().find(|&&j| ops[j] == Op::Chat) {
                                let gap = self.spans[next].start_ns.saturating_sub(span.end_ns) / 1_000;
                                let slot = retry_gap_us.entry(agent.clone()).or_insert(gap);
                                *slot = (*slot).min(gap);
                            }
                        }
                    }
                    Op::Tool => {
                        tool_calls_total += 1;
                        let tool = span.tool_name();
                        if span.error.is_none() {
                            tool_latency.entry(tool.clone()).or_default().push(span.duration_us());
                        } else {
                            tool_latency.entry(tool.clone()).or_default();
                        }
                        let count = tool_index.entry(tool.clone()).or_insert(0);
                        *count += 1;
                        let result = span
                            .str("gen_ai.tool.call.result")
                            .or_else(|| span.str("output.value"))
                            .map(str::to_owned);
                        match &result {
                            Some(text) if span.error.is_none() => {
                                tool_output.entry(tool.clone()).or_insert_with(|| text.clone());
                            }
                            None => self.content_missing = true,
                            _ => {}
                        }
                        if let Some(message) = &span.error {
                            errors += 1;
                            let timeout = message.to_ascii_lowercase().contains("timeout")
                                || span
                                    .str("error.type")
                                    .is_some_and(|t| t.to_ascii_lowercase().contains("timeout"));
                            let next_chat = items[k + 1..].iter().find(|&&j| ops[j] == Op::Chat);
                            if let Some(&next) = next_chat {
                                if self.spans[next].start_ns < span.end_ns {
                                    // The agent stopped waiting before the tool answered.
                                    let waited = self.spans[next].start_ns.saturating_sub(span.start_ns) / 1_000;
                                    let slot = tool_timeout_us.entry(agent.clone()).or_insert(waited);
                                    *slot = (*slot).min(waited).max(1_000);
                                }
                            }
                            let _ = writeln!(faults, "\n# {tool} call {count} failed in the trace: {message}");
                            let _ = writeln!(faults, "[[fault]]");
                            if timeout {
                                let _ = writeln!(faults, "kind = \"tool.timeout\"");
                                let _ = writeln!(faults, "latency = \"{}us\"", span.duration_us().max(1));
                            } else {
                                let _ = writeln!(faults, "kind = \"tool.error\"");
                                let _ = writeln!(faults, "text = {}", toml_string(message));
                            }
                            let _ = writeln!(faults, "target = \"tool:{tool}\"");
                            let _ = writeln!(faults, "on_message = {count}");
                        }
                    }
                    _ => {}
                }
            }
        }
        let chat_calls = calls.len();

        // Conversations: each top-level agent span (or top-level chat, without agents) starts one.
        let roots: Vec<usize> = if ops.contains(&Op::Agent) {
            (0..n)
                .filter(|&i| ops[i] == Op::Agent && self.owner[i].is_none())
                .collect()
        } else {
            chats.iter().copied().take(1).collect()
        };
        let origin_ns = self.spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
        let end_ns = self.spans.iter().map(|s| s.end_ns).max().unwrap_or(origin_ns);
        let mut traffic: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
        for &r in &roots {
            let agent = if ops[r] == Op::Agent {
                self.spans[r].agent_name()
            } else {
                default_agent.clone()
            };
            let text = self.user_text(r);
            let at_us = (self.spans[r].start_ns - origin_ns) / 1_000;
            traffic.entry(agent).or_default().push((at_us, text));
        }

        self.crashes_and_other_faults(origin_ns, &mut faults);

        // The cassette: one recorded answer per chat span, positions in call order per agent.
        let mut entries = Vec::new();
        let mut index: BTreeMap<(String, String), u32> = BTreeMap::new();
        let mut ordered = calls.clone();
        ordered.sort_by_key(|c| (self.spans[c.span].start_ns, c.span));
        for call in &ordered {
            let slot = index.entry((call.llm.clone(), call.agent.clone())).or_insert(0);
            let position = Position {
                llm: call.llm.clone(),
                actor: format!("agent:{}", call.agent),
                incarnation: 0,
                call_index: *slot,
            };
            *slot += 1;
            entries.push(Entry {
                position,
                request: Value::Null,
                exchange: self.exchange(call),
            });
        }

        let scenario = self.scenario_text(
            file,
            &ScenarioParts {
                agents: &agents,
                agent_llm: &agent_llm,
                agent_tools: &agent_tools,
                handoffs: &handoffs,
                llms: &llms,
                tool_latency: &tool_latency,
                tool_output: &tool_output,
                traffic: &traffic,
                faults: &faults,
                tool_timeout_us: &tool_timeout_us,
                retry_gap_us: &retry_gap_us,
                chat_count: &chat_count,
                duration_us: (end_ns - origin_ns) / 1_000,
                errors,
            },
        );
        let name = scenario_name(file);
        Ok(Imported {
            scenario,
            cassette: Cassette::to_jsonl(&name, &entries),
            agents: agents.len(),
            chat_calls,
            tool_calls: tool_calls_total,
            errors,
            content_missing: self.content_missing,
        })
    }

    /// Faults that are not model or tool errors (those come from chat and tool spans): the
    /// `agentsim.fault` events of an agentsim export, else `exception` events on agent spans as
    /// crashes of that agent, each at the time it happened.
    fn crashes_and_other_faults(&self, origin_ns: u64, out: &mut String) {
        let events = || self.spans.iter().flat_map(|s| s.events.iter().map(move |e| (s, e)));
        let text = |attrs: &BTreeMap<String, Value>, key: &str| {
            attrs.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
        };
        let mut found: Vec<(u64, String, String, String)> = Vec::new();
        if events().any(|(_, (name, _, _))| name == "agentsim.fault") {
            for (_, (name, time_ns, attrs)) in events() {
                let kind = text(attrs, "agentsim.fault.kind");
                if name != "agentsim.fault" || kind.starts_with("llm.") || kind.starts_with("tool.") {
                    continue;
                }
                let why = format!("fault {} in the trace", text(attrs, "agentsim.fault.name"));
                found.push((*time_ns, kind, text(attrs, "agentsim.fault.target"), why));
            }
        } else {
            for (span, (name, time_ns, attrs)) in events() {
                if name == "exception" && span.op() == Op::Agent {
                    let why = format!("exception in the trace: {}", text(attrs, "exception.type"));
                    found.push((
                        *time_ns,
                        "actor.crash".into(),
                        format!("agent:{}", span.agent_name()),
                        why,
                    ));
                }
            }
        }
        found.sort();
        for (time_ns, kind, target, why) in found {
            if target.is_empty()
                || !kind
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_' || c.is_ascii_digit())
            {
                continue;
            }
            let _ = writeln!(out, "\n# {}", why.replace('\n', " "));
            let _ = writeln!(out, "[[fault]]");
            let _ = writeln!(out, "kind = {}", toml_string(&kind));
            let _ = writeln!(out, "target = {}", toml_string(&target));
            let _ = writeln!(out, "at = \"{}us\"", time_ns.saturating_sub(origin_ns) / 1_000);
            let _ = writeln!(out, "count = 1");
        }
    }

    /// The user's message that opened a conversation, from the agent span or its first chat.
    fn user_text(&mut self, root: usize) -> String {
        // The agent span's own input, else the first model call's user message.
        let mut candidates = vec![root];
        candidates.extend(
            self.children
                .get(&root)
                .map_or(&[][..], |c| c.as_slice())
                .iter()
                .copied()
                .filter(|&c| self.spans[c].op() == Op::Chat)
                .take(1),
        );
        for i in candidates {
            let span = &self.spans[i];
            if let Some(text) = span.str("gen_ai.input.messages").and_then(|m| message_text(m, "user")) {
                return text;
            }
            for j in 0..64 {
                let role = span.str(&format!("llm.input_messages.{j}.message.role"));
                match role {
                    Some("user") => {
                        if let Some(text) = span.str(&format!("llm.input_messages.{j}.message.content")) {
                            return text.to_owned();
                        }
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            if i == root {
                if let Some(text) = span.str("input.value") {
                    return text.to_owned();
                }
            }
        }
        self.content_missing = true;
        NO_USER_TEXT.to_owned()
    }

    fn chat_call(&mut self, agent: &str, llms: &BTreeMap<String, String>, i: usize, following: &[usize]) -> ChatCall {
        let span = self.spans[i].clone();
        let model = span.model();
        let mut call = ChatCall {
            agent: agent.to_owned(),
            llm: llms[&model].clone(),
            model,
            span: i,
            tool_calls: Vec::new(),
            handoff: None,
            text: None,
        };
        if span.error.is_some() {
            return call;
        }
        // Output messages: GenAI (JSON, string or structured) or OpenInference (flattened).
        let output = span.attrs.get("gen_ai.output.messages").and_then(|v| match v {
            Value::String(s) => serde_json::from_str::<Value>(s).ok(),
            other => Some(other.clone()),
        });
        let mut recorded = false;
        if let Some(Value::Array(messages)) = output {
            for message in &messages {
                for part in message
                    .get("parts")
                    .and_then(Value::as_array)
                    .map_or(&[][..], |p| p.as_slice())
                {
                    match part.get("type").and_then(Value::as_str) {
                        Some("tool_call") => {
                            recorded = true;
                            let name = part.get("name").and_then(Value::as_str).unwrap_or("unknown_tool");
                            let id = part.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
                            let args = match part.get("arguments") {
                                Some(Value::String(s)) => s.clone(),
                                Some(v @ Value::Object(_)) => v.to_string(),
                                _ => "{}".into(),
                            };
                            push_call(&mut call, name, id, args);
                        }
                        Some("text") => {
                            recorded = true;
                            let text = part.get("content").and_then(Value::as_str).unwrap_or("");
                            call.text.get_or_insert_with(String::new).push_str(text);
                        }
                        _ => {}
                    }
                }
            }
        }
        for k in 0..64 {
            let prefix = format!("llm.output_messages.0.message.tool_calls.{k}.tool_call");
            let Some(name) = span.str(&format!("{prefix}.function.name")) else {
                break;
            };
            recorded = true;
            let args = span
                .str(&format!("{prefix}.function.arguments"))
                .unwrap_or("{}")
                .to_owned();
            let id = span.str(&format!("{prefix}.id")).unwrap_or("").to_owned();
            push_call(&mut call, name, id, args);
        }
        if !recorded {
            if let Some(text) = span
                .str("llm.output_messages.0.message.content")
                .or_else(|| span.str("output.value"))
            {
                recorded = true;
                call.text = Some(text.to_owned());
            }
        }
        if recorded {
            // Arguments the answer left out, from the tool span with the same call id.
            for (name, id, args) in &mut call.tool_calls {
                if args != "{}" {
                    continue;
                }
                let ran = following.iter().map(|&j| &self.spans[j]).find(|t| {
                    t.op() == Op::Tool && t.tool_name() == *name && t.str("gen_ai.tool.call.id") == Some(id.as_str())
                });
                if let Some(found) = ran.and_then(|t| t.str("gen_ai.tool.call.arguments")) {
                    *args = found.to_owned();
                }
            }
            if call.tool_calls.is_empty() && call.handoff.is_none() && call.text.is_none() {
                call.text = self.final_text(i, following);
            }
            return call;
        }
        // No content: the spans that followed say what the model must have asked for.
        for &j in following {
            let next = &self.spans[j];
            match next.op() {
                Op::Tool => {
                    let args = next
                        .str("gen_ai.tool.call.arguments")
                        .or_else(|| next.str("input.value"))
                        .unwrap_or("{}")
                        .to_owned();
                    let id = next.str("gen_ai.tool.call.id").unwrap_or("").to_owned();
                    push_call(&mut call, &next.tool_name(), id, args);
                }
                Op::Agent => {
                    call.handoff.get_or_insert_with(|| next.agent_name());
                }
                _ => {}
            }
        }
        if call.tool_calls.is_empty() && call.handoff.is_none() {
            call.text = self.final_text(i, following);
        } else {
            self.content_missing = true;
        }
        call
    }

    /// A text answer's words: the agent's recorded final answer when this is its last model
    /// call, else a placeholder.
    fn final_text(&mut self, chat: usize, following: &[usize]) -> Option<String> {
        let last = following.is_empty();
        let agent_output = self.owner[chat].filter(|_| last).and_then(|a| {
            let span = &self.spans[a];
            span.str("gen_ai.output.messages")
                .and_then(|m| message_text(m, "assistant"))
                .or_else(|| span.str("output.value").map(str::to_owned))
        });
        if agent_output.is_none() {
            self.content_missing = true;
        }
        Some(agent_output.unwrap_or_else(|| NO_ANSWER_TEXT.to_owned()))
    }

    fn exchange(&self, call: &ChatCall) -> Exchange {
        let span = &self.spans[call.span];
        let latency_us = span.duration_us();
        if let Some(message) = &span.error {
            return error_exchange(span, message, latency_us);
        }
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert("content".into(), call.text.as_ref().map_or(Value::Null, |t| json!(t)));
        let mut tool_calls: Vec<Value> = call
            .tool_calls
            .iter()
            .map(
                |(name, id, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}),
            )
            .collect();
        if let Some(to) = &call.handoff {
            tool_calls.push(json!({"id": format!("call_handoff_{}", call.span), "type": "function",
                "function": {"name": format!("{HANDOFF_TOOL_PREFIX}{to}"), "arguments": "{}"}}));
        }
        let finish = if tool_calls.is_empty() { "stop" } else { "tool_calls" };
        if !tool_calls.is_empty() {
            message.insert("tool_calls".into(), Value::Array(tool_calls));
        }
        let finish = match span.attrs.get("gen_ai.response.finish_reasons") {
            Some(Value::Array(reasons)) if reasons.first().and_then(Value::as_str) == Some("length") => "length",
            _ => finish,
        };
        let mut response = json!({
            "object": "chat.completion",
            "model": call.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        });
        let input = span.u64(&[
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.prompt_tokens",
            "llm.token_count.prompt",
        ]);
        let output = span.u64(&[
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.token_count.completion",
        ]);
        if input.is_some() || output.is_some() {
            response["usage"] = json!({"prompt_tokens": input.unwrap_or(0), "completion_tokens": output.unwrap_or(0)});
        }
        Exchange {
            status: 200,
            headers: BTreeMap::new(),
            response: Some(response),
            body_text: None,
            transport_error: None,
            latency_us,
        }
    }

    fn scenario_text(&self, file: &str, parts: &ScenarioParts) -> String {
        let source = Path::new(file)
            .file_name()
            .map_or(file.to_owned(), |n| n.to_string_lossy().into_owned());
        let mut out = String::new();
        let _ = writeln!(out, "# Imported by `agentsim import` from {source}.");
        let _ = writeln!(
            out,
            "# Model answers come from cassette.jsonl (replayed in order per agent); tool latency is the"
        );
        let _ = writeln!(
            out,
            "# median of the recorded calls; failed tool calls are faults on the call where they failed."
        );
        if self.content_missing {
            let _ = writeln!(
                out,
                "# The trace did not carry all message content: this scenario reproduces the structure"
            );
            let _ = writeln!(
                out,
                "# (call graph, timing, tokens, errors); texts in [brackets] are placeholders."
            );
        }
        let _ = writeln!(out, "\n[scenario]");
        let _ = writeln!(out, "name = {}", toml_string(&scenario_name(file)));
        let description = if self.content_missing {
            format!("Imported from {source}; message content was not in the trace, so the structure is reproduced, not the words.")
        } else {
            format!("Imported from {source}.")
        };
        let _ = writeln!(out, "description = {}", toml_string(&description));
        let limit_us = (parts.duration_us.saturating_mul(4)).max(600_000_000);
        let _ = writeln!(out, "max_virtual_time = \"{limit_us}us\"");
        for (model, name) in parts.llms {
            let _ = writeln!(out, "\n[[llm]]");
            let _ = writeln!(out, "name = {}", toml_string(name));
            let _ = writeln!(out, "model = {}", toml_string(model));
            if crate::catalogue::prices::lookup(model).is_none() {
                // Without a price a model outside the price table does not validate.
                let _ = writeln!(
                    out,
                    "# Not in agentsim's price table (`agentsim list prices`): set its price."
                );
                let _ = writeln!(out, "price = {{ input_per_mtok = 0.0, output_per_mtok = 0.0 }}");
            }
            let _ = writeln!(out, "mode = \"replay\"");
            let _ = writeln!(out, "cassette = \"cassette.jsonl\"");
        }
        for agent in parts.agents {
            let _ = writeln!(out, "\n[[agent]]");
            let _ = writeln!(out, "name = {}", toml_string(agent));
            let llm = parts
                .agent_llm
                .get(agent)
                .or_else(|| parts.llms.values().next())
                .cloned()
                .unwrap_or_default();
            let _ = writeln!(out, "llm = {}", toml_string(&llm));
            let list = |set: Option<&BTreeSet<String>>| {
                set.map_or(String::new(), |s| {
                    s.iter().map(|t| toml_string(t)).collect::<Vec<_>>().join(", ")
                })
            };
            if let Some(tools) = parts.agent_tools.get(agent) {
                let _ = writeln!(out, "tools = [{}]", list(Some(tools)));
            }
            if let Some(to) = parts.handoffs.get(agent) {
                let _ = writeln!(out, "handoffs = [{}]", list(Some(to)));
            }
            let turns = parts
                .chat_count
                .iter()
                .filter(|(owner, _)| owner.map_or("assistant".to_owned(), |o| self.spans[o].agent_name()) == *agent)
                .map(|(_, c)| *c)
                .max()
                .unwrap_or(1);
            let _ = writeln!(out, "max_turns = {}", turns + 2);
            if let Some(us) = parts.tool_timeout_us.get(agent) {
                let _ = writeln!(out, "tool_timeout = \"{us}us\"");
            }
            if let Some(gap) = parts.retry_gap_us.get(agent) {
                let _ = writeln!(
                    out,
                    "retry = {{ attempts = {}, backoff = \"constant\", base = \"{}us\", jitter = \"none\", honor_retry_after = false }}",
                    parts.errors + 1,
                    gap.max(&1)
                );
            }
        }
        for (tool, latencies) in parts.tool_latency {
            let mut sorted = latencies.clone();
            sorted.sort_unstable();
            // The median of the calls that succeeded; failed ones are faults of their own.
            let median = sorted.get(sorted.len().saturating_sub(1) / 2).copied().unwrap_or(0);
            let _ = writeln!(out, "\n[[tool]]");
            let _ = writeln!(out, "name = {}", toml_string(tool));
            let _ = writeln!(out, "latency = \"{median}us\"");
            let output = parts.tool_output.get(tool).map_or(NO_TOOL_OUTPUT, String::as_str);
            // Tool outputs are templates: recorded braces must not open one.
            let _ = writeln!(
                out,
                "output = {}",
                toml_string(&output.replace("{{", "{ {").replace("}}", "} }"))
            );
        }
        for (agent, script) in parts.traffic {
            let _ = writeln!(out, "\n[[traffic]]");
            let _ = writeln!(out, "kind = \"script\"");
            let _ = writeln!(out, "to = {}", toml_string(agent));
            let _ = writeln!(out, "script = [");
            for (at_us, message) in script {
                let _ = writeln!(out, "  {{ at = \"{at_us}us\", message = {} }},", toml_string(message));
            }
            let _ = writeln!(out, "]");
        }
        out.push_str(parts.faults);
        out
    }
}

struct ScenarioParts<'a> {
    agents: &'a [String],
    agent_llm: &'a BTreeMap<String, String>,
    agent_tools: &'a BTreeMap<String, BTreeSet<String>>,
    handoffs: &'a BTreeMap<String, BTreeSet<String>>,
    llms: &'a BTreeMap<String, String>,
    tool_latency: &'a BTreeMap<String, Vec<u64>>,
    tool_output: &'a BTreeMap<String, String>,
    traffic: &'a BTreeMap<String, Vec<(u64, String)>>,
    faults: &'a str,
    tool_timeout_us: &'a BTreeMap<String, u64>,
    retry_gap_us: &'a BTreeMap<String, u64>,
    chat_count: &'a BTreeMap<Option<usize>, u32>,
    duration_us: u64,
    errors: usize,
}

fn push_call(call: &mut ChatCall, name: &str, id: String, args: String) {
    if let Some(to) = name.strip_prefix(HANDOFF_TOOL_PREFIX) {
        call.handoff.get_or_insert_with(|| identifier(to));
        return;
    }
    let id = if id.is_empty() {
        format!("call_{}_{}", call.span, call.tool_calls.len())
    } else {
        id
    };
    call.tool_calls.push((identifier(name), id, args));
}

/// The first text of a message with `role` in a GenAI messages JSON string.
fn message_text(json: &str, role: &str) -> Option<String> {
    let messages: Value = serde_json::from_str(json).ok()?;
    messages.as_array()?.iter().find_map(|m| {
        if m.get("role")?.as_str()? != role {
            return None;
        }
        m.get("parts")?
            .as_array()?
            .iter()
            .find_map(|p| p.get("content")?.as_str().map(str::to_owned))
    })
}

/// A failed chat span as the error a provider would have answered.
fn error_exchange(span: &Span, message: &str, latency_us: u64) -> Exchange {
    let error_type = span.str("error.type").unwrap_or("").to_owned();
    let lower = format!("{} {}", error_type, message).to_ascii_lowercase();
    let status = span
        .u64(&["http.response.status_code", "http.status_code"])
        .map(|s| s as u16);
    let mut headers = BTreeMap::new();
    if let Some(us) = span.u64(&["agentsim.retry_after_us"]) {
        headers.insert("retry-after-ms".to_owned(), (us / 1_000).to_string());
    }
    let timeout = status.is_none() && lower.contains("timeout");
    if timeout {
        return Exchange {
            status: 0,
            headers,
            response: None,
            body_text: None,
            transport_error: Some("timeout".into()),
            latency_us,
        };
    }
    let status = status.unwrap_or(if lower.contains("rate") || lower.contains("429") {
        429
    } else if lower.contains("context") {
        400
    } else {
        500
    });
    let code = if lower.contains("context_length") || lower.contains("context length") {
        "context_length_exceeded"
    } else if lower.contains("insufficient_quota") {
        "insufficient_quota"
    } else if status == 429 {
        "rate_limit_exceeded"
    } else {
        "server_error"
    };
    Exchange {
        status,
        headers,
        response: Some(json!({"error": {"message": message, "type": error_type, "code": code}})),
        body_text: None,
        transport_error: None,
        latency_us,
    }
}

fn scenario_name(file: &str) -> String {
    let stem = Path::new(file)
        .file_stem()
        .map_or("incident".into(), |s| s.to_string_lossy().into_owned());
    format!("imported-{}", identifier(&stem))
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}
