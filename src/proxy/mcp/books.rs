//! The MCP proxy's books: `trace.jsonl` as messages pass, and at the end `report.json` (what
//! the client asked, what it was answered, which faults fired, what it did next) and OTLP spans
//! (`tools/call {tool}`, `execute_tool`, with the MCP attributes of the GenAI conventions).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::wire::Outcome;
use crate::proxy::faults::FaultsFile;
use crate::proxy::journal::{otlp_attribute, otlp_document, Journal};

/// Who answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Server,
    Cassette,
    /// The proxy itself, for a fault.
    Proxy,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Server => "server",
            Source::Cassette => "cassette",
            Source::Proxy => "proxy",
        }
    }
}

/// One request as the books keep it.
#[derive(Debug, Clone)]
struct Row {
    session: String,
    seq: u32,
    /// Its number among the session's `tools/call` requests; 0 for other methods.
    call: u32,
    method: String,
    tool: Option<String>,
    id: Value,
    started_us: u64,
    fault: Option<(String, &'static str)>,
    /// Set once answered.
    answer: Option<(Outcome, Source, u64)>,
    /// Why it was never answered (a hang, a crash, an expired session, the end of the run).
    unanswered: Option<String>,
}

#[derive(Default)]
struct Inner {
    seq: u64,
    rows: Vec<Row>,
    /// Index in `rows` of each (session, seq).
    index: BTreeMap<(String, u32), usize>,
    /// Notifications by direction and method.
    notifications: BTreeMap<(&'static str, String), u64>,
    /// The protocol version and server-given session id of each session.
    protocol: BTreeMap<String, String>,
    session_ids: BTreeMap<String, String>,
}

pub struct Books {
    journal: Journal,
    inner: Mutex<Inner>,
}

impl Books {
    pub fn new(out: Option<&Path>) -> Result<Books, String> {
        Ok(Books {
            journal: Journal::create(out)?,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_us(&self) -> u64 {
        self.journal.now_us()
    }

    /// Writes one trace record; `inner` is held so records keep their `seq` order.
    fn record(&self, inner: &mut Inner, event: &str, fields: Value) {
        inner.seq += 1;
        self.journal.write(inner.seq, event, fields);
    }

    /// A request arrives, with the fault chosen for it.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &self,
        session: &str,
        seq: u32,
        call: u32,
        method: &str,
        tool: Option<&str>,
        id: &Value,
        fault: Option<(&str, &'static str)>,
    ) {
        let mut inner = self.inner();
        let row = Row {
            session: session.to_owned(),
            seq,
            call,
            method: method.to_owned(),
            tool: tool.map(str::to_owned),
            id: id.clone(),
            started_us: self.now_us(),
            fault: fault.map(|(name, kind)| (name.to_owned(), kind)),
            answer: None,
            unanswered: None,
        };
        let fields = json!({
            "session": session, "request": seq, "call": call, "method": method, "tool": tool, "id": id,
            "fault": fault.map(|(name, kind)| json!({"name": name, "kind": kind})),
        });
        self.record(&mut inner, "mcp_request", fields);
        let at = inner.rows.len();
        inner.rows.push(row);
        inner.index.insert((session.to_owned(), seq), at);
    }

    /// A request is answered.
    pub fn answered(&self, session: &str, seq: u32, answer: &Value, source: Source, extra_us: u64) {
        let mut inner = self.inner();
        let Some(&at) = inner.index.get(&(session.to_owned(), seq)) else {
            return;
        };
        let latency_us = self.now_us().saturating_sub(inner.rows[at].started_us) + extra_us;
        let outcome = Outcome::of(answer);
        inner.rows[at].answer = Some((outcome, source, latency_us));
        let code = match outcome {
            Outcome::ProtocolError(code) => Some(code),
            _ => None,
        };
        if inner.rows[at].method == "initialize" {
            if let Some(version) = answer.pointer("/result/protocolVersion").and_then(Value::as_str) {
                inner.protocol.insert(session.to_owned(), version.to_owned());
            }
        }
        let row = &inner.rows[at];
        let fields = json!({
            "session": session, "request": seq, "method": row.method, "tool": row.tool,
            "outcome": outcome.name(), "error_code": code, "source": source.name(), "latency_us": latency_us,
        });
        self.record(&mut inner, "mcp_answer", fields);
    }

    /// A request will never be answered, and why.
    pub fn unanswered(&self, session: &str, seq: u32, why: &str) {
        let mut inner = self.inner();
        let Some(&at) = inner.index.get(&(session.to_owned(), seq)) else {
            return;
        };
        inner.rows[at].unanswered = Some(why.to_owned());
        let fields = json!({"session": session, "request": seq, "why": why});
        self.record(&mut inner, "mcp_unanswered", fields);
    }

    /// A notification passed: `to_client` (from the server, or the proxy's own) or `from_client`.
    pub fn notification(&self, session: &str, direction: &'static str, method: &str, by_proxy: bool) {
        let mut inner = self.inner();
        *inner.notifications.entry((direction, method.to_owned())).or_insert(0) += 1;
        let fields = json!({"session": session, "direction": direction, "method": method, "by_proxy": by_proxy});
        self.record(&mut inner, "mcp_notification", fields);
    }

    /// The server's id of a session (streamable HTTP's `Mcp-Session-Id`).
    pub fn session_id(&self, session: &str, id: &str) {
        self.inner().session_ids.insert(session.to_owned(), id.to_owned());
    }

    /// Something worth a line in the trace (a server that died, a replay miss).
    pub fn note(&self, session: &str, event: &str, message: &str) {
        let mut inner = self.inner();
        self.record(&mut inner, event, json!({"session": session, "message": message}));
    }

    /// `report.json`.
    pub fn report(&self, faults: &FaultsFile, seed: u64, mode: &str, transport: &str) -> Value {
        let inner = self.inner();
        let calls: Vec<&Row> = inner.rows.iter().filter(|r| r.method == "tools/call").collect();
        let count = |rows: &[&Row], f: &dyn Fn(&Row) -> bool| rows.iter().filter(|r| f(r)).count();
        let outcome_is = |r: &Row, name: &str| r.answer.is_some_and(|(o, _, _)| o.name() == name);
        let mut by_tool: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
        for row in &calls {
            by_tool
                .entry(row.tool.clone().unwrap_or_default())
                .or_default()
                .push(row);
        }
        let by_tool: serde_json::Map<String, Value> = by_tool
            .into_iter()
            .map(|(tool, rows)| {
                let latencies: Vec<u64> = rows.iter().filter_map(|r| r.answer.map(|(_, _, l)| l)).collect();
                let value = json!({
                    "calls": rows.len(),
                    "results": count(&rows, &|r| outcome_is(r, "result")),
                    "tool_errors": count(&rows, &|r| outcome_is(r, "tool_error")),
                    "protocol_errors": count(&rows, &|r| outcome_is(r, "protocol_error")),
                    "unanswered": count(&rows, &|r| r.answer.is_none()),
                    "latency_us_max": latencies.iter().max().copied().unwrap_or(0),
                });
                (tool, value)
            })
            .collect();
        let fired = |name: &str| {
            inner
                .rows
                .iter()
                .filter(|r| r.fault.as_ref().is_some_and(|(n, _)| n == name))
                .count()
        };
        let notifications = |direction: &str| -> serde_json::Map<String, Value> {
            inner
                .notifications
                .iter()
                .filter(|((d, _), _)| *d == direction)
                .map(|((_, method), n)| (method.clone(), json!(n)))
                .collect()
        };
        let sessions: std::collections::BTreeSet<&str> = inner.rows.iter().map(|r| r.session.as_str()).collect();
        json!({
            "agentsim": env!("CARGO_PKG_VERSION"),
            "kind": "proxy",
            "proxy": "mcp",
            "mode": mode,
            "transport": transport,
            "seed": seed,
            "faults_file": (!faults.file.is_empty()).then_some(&faults.file),
            "faults_hash": (!faults.hash.is_empty()).then_some(&faults.hash),
            "sessions": sessions.len(),
            "requests": inner.rows.len(),
            "tool_calls": calls.len(),
            "results": count(&calls, &|r| outcome_is(r, "result")),
            "tool_errors": count(&calls, &|r| outcome_is(r, "tool_error")),
            "protocol_errors": count(&calls, &|r| outcome_is(r, "protocol_error")),
            "unanswered": inner.rows.iter().filter(|r| r.answer.is_none()).count(),
            "faults": faults.faults.iter().filter(|f| fired(&f.name) > 0 || f.kind.name().starts_with("mcp.")).map(|f| json!({
                "name": f.name, "kind": f.kind.name(), "fired": fired(&f.name),
            })).collect::<Vec<_>>(),
            "notifications": {"to_client": notifications("to_client"), "from_client": notifications("from_client")},
            "by_tool": by_tool,
            "requests_made": inner.rows.iter().map(|r| json!({
                "session": r.session, "request": r.seq, "call": r.call, "method": r.method, "tool": r.tool,
                "fault": r.fault.as_ref().map(|(name, kind)| json!({"name": name, "kind": kind})),
                "outcome": r.answer.map(|(o, _, _)| o.name()),
                "error_code": r.answer.and_then(|(o, _, _)| match o { Outcome::ProtocolError(c) => Some(c), _ => None }),
                "source": r.answer.map(|(_, s, _)| s.name()),
                "latency_us": r.answer.map(|(_, _, l)| l),
                "unanswered": r.unanswered,
            })).collect::<Vec<_>>(),
        })
    }

    /// The requests as OpenTelemetry MCP client spans (OTLP JSON): one trace per session; a
    /// tool call is `tools/call {tool}` with `gen_ai.operation.name = execute_tool`.
    pub fn otlp(&self, transport: &str) -> Value {
        let inner = self.inner();
        let hex = |text: &str, chars: usize| blake3::hash(text.as_bytes()).to_hex()[..chars].to_owned();
        let attribute = otlp_attribute;
        let network = if transport == "stdio" { "pipe" } else { "tcp" };
        let spans: Vec<Value> = inner
            .rows
            .iter()
            .map(|r| {
                let latency_us = r.answer.map_or(0, |(_, _, l)| l);
                let start_ns = self.journal.unix_ns(r.started_us);
                let end_ns = start_ns + u128::from(latency_us) * 1000;
                let id = r.id.as_str().map_or_else(|| r.id.to_string(), str::to_owned);
                let mut attributes = vec![
                    attribute("mcp.method.name", json!(r.method)),
                    attribute("jsonrpc.request.id", json!(id)),
                    attribute("jsonrpc.protocol.version", json!("2.0")),
                    attribute("network.transport", json!(network)),
                    attribute("agentsim.session", json!(r.session)),
                    attribute("agentsim.request", json!(r.seq)),
                ];
                if let Some(sid) = inner.session_ids.get(&r.session) {
                    attributes.push(attribute("mcp.session.id", json!(sid)));
                }
                if let Some(version) = inner.protocol.get(&r.session) {
                    attributes.push(attribute("mcp.protocol.version", json!(version)));
                }
                if let Some(tool) = &r.tool {
                    attributes.push(attribute("gen_ai.operation.name", json!("execute_tool")));
                    attributes.push(attribute("gen_ai.tool.name", json!(tool)));
                }
                if let Some((name, kind)) = &r.fault {
                    attributes.push(attribute("agentsim.faults", json!(name)));
                    attributes.push(attribute("agentsim.fault.kind", json!(kind)));
                }
                let error = match (r.answer, &r.unanswered) {
                    (Some((Outcome::ToolError, _, _)), _) => Some("tool_error".to_owned()),
                    (Some((Outcome::ProtocolError(code), _, _)), _) => {
                        attributes.push(attribute("rpc.response.status_code", json!(code.to_string())));
                        Some(code.to_string())
                    }
                    (None, _) => Some(r.unanswered.clone().unwrap_or_else(|| "unanswered".to_owned())),
                    _ => None,
                };
                if let Some(kind) = &error {
                    attributes.push(attribute("error.type", json!(kind)));
                }
                let name = match &r.tool {
                    Some(tool) => format!("{} {tool}", r.method),
                    None => r.method.clone(),
                };
                json!({
                    "traceId": hex(&format!("mcp/{}", r.session), 32),
                    "spanId": hex(&format!("mcp/{}/{}", r.session, r.seq), 16),
                    "name": name,
                    "kind": 3,
                    "startTimeUnixNano": start_ns.to_string(),
                    "endTimeUnixNano": end_ns.to_string(),
                    "attributes": attributes,
                    "status": {"code": if error.is_some() { 2 } else { 1 }},
                })
            })
            .collect();
        otlp_document("agentsim-mcp-proxy", spans)
    }
}
