//! What the MCP proxy does with each message, whatever the transport: numbers a session's
//! requests, draws the faults of its `tools/call` requests, answers in the fault's protocol shape
//! or lets the server (or the cassette) answer and bends that answer, keeps each session's drifted
//! tool list, records, and keeps the books.
//!
//! A decision depends on the seed, the fault's name, the session and the call's number among its
//! session's `tools/call` requests, never on when it arrived.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use super::books::{Books, Source};
use super::tape::{Cassette, Take};
use super::wire;
use crate::catalogue::faults::FaultKind;
use crate::proxy::faults::{CallFacts, FaultsFile};
use crate::proxy::tape::{Matching, Recorder};

/// How the client reaches the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The client starts the proxy as its server command and speaks on stdin and stdout.
    Stdio,
    /// Streamable HTTP: POSTs of JSON-RPC, answered with JSON or an event stream.
    Http,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Http => "streamable_http",
        }
    }

    /// Whether a fault kind can act on this transport.
    pub fn acts(self, kind: FaultKind) -> bool {
        kind != FaultKind::McpSessionExpired || self == Transport::Http
    }
}

#[derive(Default)]
struct Session {
    requests: u32,
    tool_calls: u32,
    fired: Vec<u32>,
    /// Tools whose input schema drifted, and tools removed, in this session.
    drifted: Vec<String>,
    removed: Vec<String>,
    first_call: Option<Instant>,
    /// The server ended it (an expired session, a crash): requests with its id get a 404.
    ended: bool,
}

/// A request on its way: where it sits in its session and the fault chosen for it.
#[derive(Debug, Clone)]
pub struct Pending {
    pub session: String,
    pub seq: u32,
    pub id: Value,
    pub method: String,
    pub params: Value,
    pub fault: Option<usize>,
    /// What to send the server instead of the client's message (a drifted tool's arguments
    /// renamed back to the names the real server knows).
    pub forward: Option<Value>,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Plan {
    /// Send it to the server (or serve it from the cassette) and hand the answer to
    /// [`Relay::answered`].
    Forward(Pending),
    /// Answer it without the server: send `notify` first, then `answer`, after `delay_us`.
    Answer {
        pending: Pending,
        notify: Vec<Value>,
        answer: Value,
        delay_us: u64,
    },
    /// Never answer it.
    Hang(Pending),
    /// The session is over: HTTP 404 (streamable HTTP only).
    Expire(Pending),
    /// The server dies with the request unanswered.
    Crash(Pending),
}

/// The server's answer as the client gets it.
#[derive(Debug)]
pub struct Reply {
    pub notify: Vec<Value>,
    pub answer: Value,
    pub delay_us: u64,
}

pub struct Relay {
    pub seed: u64,
    pub faults: FaultsFile,
    pub transport: Transport,
    pub matching: Matching,
    pub cassette: Option<Cassette>,
    recorder: Option<Recorder>,
    pub books: Books,
    sessions: Mutex<BTreeMap<String, Session>>,
    opened: Mutex<u32>,
}

impl Relay {
    pub fn new(
        seed: u64,
        faults: FaultsFile,
        transport: Transport,
        (cassette, matching): (Option<Cassette>, Matching),
        recorder: Option<Recorder>,
        books: Books,
    ) -> Relay {
        Relay {
            seed,
            faults,
            transport,
            matching,
            cassette,
            recorder,
            books,
            sessions: Mutex::new(BTreeMap::new()),
            opened: Mutex::new(0),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The label of a new session: "1", "2", … in the order they initialize.
    pub fn open_session(&self) -> String {
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        *opened += 1;
        opened.to_string()
    }

    /// Whether the session was ended by a fault.
    pub fn ended(&self, session: &str) -> bool {
        self.sessions().get(session).is_some_and(|s| s.ended)
    }

    /// A request refused before it reaches the relay's decisions (a session already ended);
    /// a refused `tools/call` is booked under its tool, like any other.
    pub fn refused(&self, session: &str, id: &Value, method: &str, message: &Value, why: &str) {
        let seq = {
            let mut sessions = self.sessions();
            let state = sessions.entry(session.to_owned()).or_default();
            state.requests += 1;
            state.requests
        };
        let tool = (method == "tools/call").then(|| wire::call_of(message).0);
        self.books.request(session, seq, 0, method, tool.as_deref(), id, None);
        self.books.unanswered(session, seq, why);
    }

    /// A request from the client.
    pub fn request(&self, session: &str, id: &Value, method: &str, message: &Value) -> Plan {
        let params = wire::comparable_params(message);
        let mut sessions = self.sessions();
        let state = sessions.entry(session.to_owned()).or_default();
        state.requests += 1;
        let mut pending = Pending {
            session: session.to_owned(),
            seq: state.requests,
            id: id.clone(),
            method: method.to_owned(),
            params,
            fault: None,
            forward: None,
        };
        if method != "tools/call" {
            drop(sessions);
            self.books.request(session, pending.seq, 0, method, None, id, None);
            return Plan::Forward(pending);
        }
        state.tool_calls += 1;
        let first = *state.first_call.get_or_insert_with(Instant::now);
        let (tool, arguments) = wire::call_of(message);
        let text = arguments.to_string();
        let facts = CallFacts {
            session,
            call: state.tool_calls,
            model: &tool,
            route: method,
            text: &text,
            elapsed_us: first.elapsed().as_micros().min(u64::MAX as u128) as u64,
            streamed: false,
        };
        // A tool the session's server already changed answers as the changed server would. That
        // refusal is the earlier drift's doing: no fault is drawn for it, and none counts as fired
        // on a call whose answer the client never gets from the fault.
        let drifted = state.drifted.contains(&tool);
        let refusal = if state.removed.contains(&tool) {
            Some(format!("Unknown tool: {tool}"))
        } else if drifted && !drift_fits(&arguments) {
            Some(wire::drift_refusal(&tool, &arguments))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.books
                .request(session, pending.seq, facts.call, method, Some(&tool), id, None);
            let answer = wire::error(id, wire::INVALID_PARAMS, &refusal);
            return self.answer_now(pending, Vec::new(), answer, 0);
        }
        if drifted {
            pending.forward = Some(undrifted(message));
        }
        let transport = self.transport;
        pending.fault = self
            .faults
            .decide_mcp(self.seed, facts, &mut state.fired, |kind| transport.acts(kind));
        let fault = pending.fault.map(|index| &self.faults.faults[index]);
        self.books.request(
            session,
            pending.seq,
            facts.call,
            method,
            Some(&tool),
            id,
            fault.map(|f| (f.name.as_str(), f.kind.name())),
        );
        let Some(fault) = fault else {
            return Plan::Forward(pending);
        };
        let changed = fault.tool.clone().unwrap_or_else(|| tool.clone());
        let text = fault.kind.text(fault.text.as_deref()).to_owned();
        let latency_us = fault.latency_us.unwrap_or(0);
        match fault.kind {
            FaultKind::McpToolError => self.answer_now(pending, Vec::new(), wire::tool_error(id, &text), 0),
            FaultKind::McpProtocolError => {
                let answer = wire::error(id, wire::INTERNAL_ERROR, &text);
                self.answer_now(pending, Vec::new(), answer, 0)
            }
            FaultKind::McpTimeout => {
                let answer = wire::error(id, wire::REQUEST_TIMEOUT, "Request timed out");
                self.answer_now(pending, Vec::new(), answer, latency_us)
            }
            FaultKind::McpHang => Plan::Hang(pending),
            FaultKind::McpSchemaDrift | FaultKind::McpToolRemoved => {
                let removed = fault.kind == FaultKind::McpToolRemoved;
                let list = if removed {
                    &mut state.removed
                } else {
                    &mut state.drifted
                };
                if !list.contains(&changed) {
                    list.push(changed.clone());
                }
                let refuse = changed == tool && (removed || !drift_fits(&arguments));
                if !refuse {
                    // Another tool changed: this call goes through, the client hears of the change.
                    return Plan::Forward(pending);
                }
                let message = if removed {
                    format!("Unknown tool: {tool}")
                } else {
                    wire::drift_refusal(&tool, &arguments)
                };
                let answer = wire::error(id, wire::INVALID_PARAMS, &message);
                self.answer_now(pending, vec![wire::list_changed()], answer, 0)
            }
            FaultKind::McpSessionExpired | FaultKind::McpServerCrash => {
                state.ended = true;
                if fault.kind == FaultKind::McpSessionExpired {
                    Plan::Expire(pending)
                } else {
                    Plan::Crash(pending)
                }
            }
            _ => Plan::Forward(pending),
        }
    }

    fn answer_now(&self, pending: Pending, notify: Vec<Value>, answer: Value, delay_us: u64) -> Plan {
        Plan::Answer {
            pending,
            notify,
            answer,
            delay_us,
        }
    }

    /// The server's (or the cassette's) answer to a forwarded request, as the client gets it.
    pub fn answered(&self, pending: &Pending, answer: Value, source: Source, latency_us: u64) -> Reply {
        if source == Source::Server {
            if let Some(recorder) = &self.recorder {
                let take = Take {
                    session: pending.session.clone(),
                    seq: pending.seq,
                    method: pending.method.clone(),
                    params: pending.params.clone(),
                    answer: without_id(&answer),
                    latency_us,
                };
                if let Err(e) = recorder.record(&take) {
                    eprintln!("agentsim proxy: {e}");
                }
            }
        }
        let mut answer = wire::with_id(answer, &pending.id);
        let mut notify = Vec::new();
        let mut delay_us = 0;
        let sessions = self.sessions();
        let state = sessions.get(&pending.session);
        if pending.method == "initialize" && self.changes_tools() {
            // A server that can change its tool list says so.
            if let Some(tools) = answer
                .pointer_mut("/result/capabilities/tools")
                .and_then(Value::as_object_mut)
            {
                tools.insert("listChanged".into(), Value::Bool(true));
            }
        }
        if pending.method == "tools/list" {
            if let Some(state) = state.filter(|s| !s.drifted.is_empty() || !s.removed.is_empty()) {
                answer = wire::edit_tool_list(answer, &state.drifted, &state.removed);
            }
        }
        if let Some(fault) = pending.fault.map(|index| &self.faults.faults[index]) {
            let text = fault.kind.text(fault.text.as_deref());
            match fault.kind {
                FaultKind::McpSlow => delay_us = fault.latency_us.unwrap_or(0),
                FaultKind::McpInjection => answer = wire::inject(answer, text),
                FaultKind::McpTruncated => answer = wire::truncate(answer),
                FaultKind::McpOversized => answer = wire::oversize(answer),
                // Another tool drifted or went: the client hears of it with this answer.
                FaultKind::McpSchemaDrift | FaultKind::McpToolRemoved => notify.push(wire::list_changed()),
                _ => {}
            }
        }
        drop(sessions);
        Reply {
            notify,
            answer,
            delay_us,
        }
    }

    /// Whether a fault of the file can change the tool list.
    fn changes_tools(&self) -> bool {
        self.faults
            .faults
            .iter()
            .any(|f| matches!(f.kind, FaultKind::McpSchemaDrift | FaultKind::McpToolRemoved))
    }

    /// The cassette's answer to a request, or a JSON-RPC error that says why there is none.
    pub fn replayed(&self, pending: &Pending) -> Value {
        let Some(cassette) = &self.cassette else {
            return wire::error(&pending.id, wire::INTERNAL_ERROR, "agentsim: no cassette to replay");
        };
        match cassette.find(
            self.matching,
            &pending.session,
            pending.seq,
            &pending.method,
            &pending.params,
        ) {
            Ok(answer) => answer,
            Err(miss) => {
                eprintln!("agentsim proxy: replay miss: {miss}");
                self.books.note(&pending.session, "replay_miss", &miss);
                wire::error(
                    &pending.id,
                    wire::INTERNAL_ERROR,
                    &format!("agentsim replay miss: {miss}"),
                )
            }
        }
    }

    /// The client was sent `reply` for `pending`.
    pub fn delivered(&self, pending: &Pending, notify: &[Value], answer: &Value, source: Source, extra_us: u64) {
        for message in notify {
            if let wire::Kind::Notification { method } = wire::kind(message) {
                self.books.notification(&pending.session, "to_client", &method, true);
            }
        }
        self.books
            .answered(&pending.session, pending.seq, answer, source, extra_us);
    }

    /// A notification from the client (its `notifications/cancelled` says it gave up waiting).
    pub fn client_notification(&self, session: &str, method: &str) {
        self.books.notification(session, "from_client", method, false);
    }

    /// A notification from the server.
    pub fn server_notification(&self, session: &str, method: &str) {
        self.books.notification(session, "to_client", method, false);
    }
}

/// Whether a call's arguments already use the drifted names (a client that listed the tools
/// again and adapted).
fn drift_fits(arguments: &Value) -> bool {
    arguments
        .as_object()
        .is_some_and(|a| a.keys().all(|k| k.ends_with("_v2")))
}

/// A call with drifted argument names, as the real server wants it.
fn undrifted(message: &Value) -> Value {
    let mut message = message.clone();
    if let Some(arguments) = message.pointer_mut("/params/arguments").and_then(Value::as_object_mut) {
        let renamed: serde_json::Map<String, Value> = std::mem::take(arguments)
            .into_iter()
            .map(|(k, v)| (k.strip_suffix("_v2").map_or_else(|| k.clone(), str::to_owned), v))
            .collect();
        *arguments = renamed;
    }
    message
}

fn without_id(answer: &Value) -> Value {
    let mut answer = answer.clone();
    if let Some(object) = answer.as_object_mut() {
        object.remove("id");
    }
    answer
}
