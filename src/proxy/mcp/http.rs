//! MCP over streamable HTTP: the client POSTs JSON-RPC to the proxy as it would to the server;
//! the proxy forwards it to `--upstream` (the server's MCP endpoint) with the session headers,
//! and passes the answer on as JSON or as an event stream, event by event, bending the one that
//! answers the request. `GET` (the server's own event stream) and `DELETE` (end of session) pass
//! through. In a replay the cassette answers and the proxy hands out its own session ids.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;

use super::books::Source;
use super::relay::{Pending, Plan, Relay, Reply};
use super::wire;
use crate::proxy::server::{Body, SESSION_HEADER};
use crate::proxy::sse::{frame_json, Framer};

/// The streamable HTTP session header.
const SESSION_ID: &str = "mcp-session-id";
/// Request headers passed to the server: the protocol's, content negotiation, and credentials
/// (passed on, never recorded).
const PASSED: &[&str] = &[
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "authorization",
];

struct Shared {
    relay: Arc<Relay>,
    client: reqwest::Client,
    upstream: Option<String>,
    /// The server's session ids, and the proxy's labels for them.
    labels: Mutex<BTreeMap<String, String>>,
    request_bytes_max: usize,
}

pub struct HttpProxy {
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
}

impl HttpProxy {
    pub async fn bind(
        relay: Arc<Relay>,
        listen: SocketAddr,
        upstream: Option<String>,
        request_bytes_max: usize,
    ) -> Result<HttpProxy, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot set up an HTTP client: {e}"))?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("--listen {listen}: cannot bind: {e}"))?;
        Ok(HttpProxy {
            shared: Arc::new(Shared {
                relay,
                client,
                upstream,
                labels: Mutex::new(BTreeMap::new()),
                request_bytes_max,
            }),
            listener,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, String> {
        self.listener.local_addr().map_err(|e| e.to_string())
    }

    /// Serves until `stop` resolves.
    pub async fn serve(self, stop: impl std::future::Future<Output = ()>) {
        crate::proxy::accept_until(&self.listener, stop, self.shared.clone(), handle).await;
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

fn plain(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(full(body))
        .expect("a valid response")
}

fn json_response(status: u16, value: &Value, session_id: Option<&str>) -> Response<Body> {
    let mut response = plain(status, "application/json", value.to_string());
    if let Some(id) = session_id.and_then(|id| id.parse().ok()) {
        response.headers_mut().insert(SESSION_ID, id);
    }
    response
}

/// One event of an MCP event stream.
fn event(message: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {message}\n\n"))
}

fn header<'a>(request: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// An error that makes hyper close the connection without an answer.
fn dropped(why: &str) -> std::io::Error {
    std::io::Error::other(why.to_owned())
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
    if request.uri().path() == "/agentsim/health" {
        return Ok(plain(200, "text/plain", "ok\n"));
    }
    let server_session = header(&request, SESSION_ID).map(str::to_owned);
    let named = header(&request, SESSION_HEADER).map(str::to_owned);
    let label = named.or_else(|| {
        let labels = shared.labels.lock().unwrap_or_else(|p| p.into_inner());
        server_session.as_ref().and_then(|sid| labels.get(sid).cloned())
    });
    let ended = label.as_deref().is_some_and(|l| shared.relay.ended(l));
    match *request.method() {
        _ if ended && request.method() != hyper::Method::POST => Ok(session_gone(&Value::Null)),
        hyper::Method::POST => post(shared, request, label, server_session).await,
        hyper::Method::GET | hyper::Method::DELETE if shared.upstream.is_some() => pass_through(&shared, request).await,
        hyper::Method::DELETE => Ok(plain(200, "text/plain", "")),
        // A replay has no server to stream notifications from.
        _ => Ok(plain(
            405,
            "text/plain",
            "agentsim proxy: no event stream in a replay\n",
        )),
    }
}

async fn post(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    label: Option<String>,
    server_session: Option<String>,
) -> Result<Response<Body>, std::io::Error> {
    let headers: Vec<(String, String)> = PASSED
        .iter()
        .filter_map(|name| header(&request, name).map(|v| ((*name).to_owned(), v.to_owned())))
        .collect();
    let body = match Limited::new(request.into_body(), shared.request_bytes_max)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let error = wire::error(
                &Value::Null,
                -32600,
                &format!("agentsim proxy: cannot read the request: {e}"),
            );
            return Ok(json_response(413, &error, None));
        }
    };
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let relay = &shared.relay;
    let (id, method) = match wire::kind(&message) {
        wire::Kind::Request { id, method } => (id, method),
        kind => {
            if let wire::Kind::Notification { method } = &kind {
                relay.client_notification(label.as_deref().unwrap_or("?"), method);
            }
            return match &shared.upstream {
                Some(_) => forward_raw(&shared, &headers, body).await,
                None => Ok(plain(202, "text/plain", "")),
            };
        }
    };
    let label = match label {
        Some(label) if shared.relay.ended(&label) => {
            // The session is over for the client as for a server that ended it.
            shared.relay.refused(&label, &id, &method, &message, "session_gone");
            return Ok(session_gone(&id));
        }
        Some(label) => label,
        None if method == "initialize" => relay.open_session(),
        None => server_session.unwrap_or_else(|| "?".to_owned()),
    };
    match relay.request(&label, &id, &method, &message) {
        Plan::Forward(pending) => match &shared.upstream {
            None => {
                let answer = relay.replayed(&pending);
                let reply = relay.answered(&pending, answer, Source::Cassette, 0);
                let session_id = (pending.method == "initialize").then(|| {
                    let sid = format!("agentsim-replay-{}", pending.session);
                    remember(&shared, &sid, &pending.session);
                    sid
                });
                Ok(answer_response(relay, pending, reply, Source::Cassette, session_id).await)
            }
            Some(_) => {
                let body = pending.forward.as_ref().map_or(body, |m| Bytes::from(m.to_string()));
                forward(shared.clone(), pending, &headers, body).await
            }
        },
        Plan::Answer {
            pending,
            notify,
            answer,
            delay_us,
        } => {
            let reply = Reply {
                notify,
                answer,
                delay_us,
            };
            Ok(answer_response(relay, pending, reply, Source::Proxy, None).await)
        }
        Plan::Hang(pending) => {
            relay.books.unanswered(&pending.session, pending.seq, "hang");
            // Held open until the client gives up (or the proxy stops).
            std::future::pending::<()>().await;
            Err(dropped("hang"))
        }
        Plan::Expire(pending) => {
            relay.books.unanswered(&pending.session, pending.seq, "session_expired");
            Ok(session_gone(&pending.id))
        }
        Plan::Crash(pending) => {
            relay.books.unanswered(&pending.session, pending.seq, "server_crash");
            Err(dropped("server_crash"))
        }
    }
}

/// What a server answers a request in a session it no longer has: HTTP 404.
fn session_gone(id: &Value) -> Response<Body> {
    json_response(404, &wire::error(id, -32001, "Session not found"), None)
}

fn remember(shared: &Shared, server_session: &str, label: &str) {
    shared
        .labels
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(server_session.to_owned(), label.to_owned());
    shared.relay.books.session_id(label, server_session);
}

/// An answer the proxy has whole: JSON, or an event stream when notifications go first.
async fn answer_response(
    relay: &Relay,
    pending: Pending,
    reply: Reply,
    source: Source,
    session_id: Option<String>,
) -> Response<Body> {
    if reply.delay_us > 0 {
        tokio::time::sleep(Duration::from_micros(reply.delay_us)).await;
    }
    relay.delivered(&pending, &reply.notify, &reply.answer, source, 0);
    if reply.notify.is_empty() {
        return json_response(200, &reply.answer, session_id.as_deref());
    }
    let mut stream = Vec::new();
    for message in reply.notify.iter().chain([&reply.answer]) {
        stream.extend_from_slice(&event(message));
    }
    let mut response = plain(200, "text/event-stream", stream);
    if let Some(id) = session_id.and_then(|id| id.parse().ok()) {
        response.headers_mut().insert(SESSION_ID, id);
    }
    response
}

fn upstream_request(
    shared: &Shared,
    method: reqwest::Method,
    headers: &[(String, String)],
    body: Bytes,
) -> reqwest::RequestBuilder {
    let url = shared.upstream.as_deref().unwrap_or_default();
    let mut builder = shared.client.request(method, url).body(body);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder
}

fn unreachable(e: reqwest::Error) -> Response<Body> {
    let error = wire::error(
        &Value::Null,
        wire::INTERNAL_ERROR,
        &format!("agentsim proxy: the MCP server is unreachable: {}", e.without_url()),
    );
    json_response(502, &error, None)
}

/// Copies the server's status and the headers that matter onto a response.
fn answer_head(upstream: &reqwest::Response) -> hyper::http::response::Builder {
    let mut builder = Response::builder().status(upstream.status().as_u16());
    for name in ["content-type", SESSION_ID, "mcp-protocol-version", "www-authenticate"] {
        if let Some(value) = upstream.headers().get(name) {
            builder = builder.header(name, value.as_bytes());
        }
    }
    builder
}

/// A notification or a response to the server's own request: forwarded, its answer (202)
/// passed back.
async fn forward_raw(
    shared: &Shared,
    headers: &[(String, String)],
    body: Bytes,
) -> Result<Response<Body>, std::io::Error> {
    let upstream = match upstream_request(shared, reqwest::Method::POST, headers, body)
        .send()
        .await
    {
        Ok(upstream) => upstream,
        Err(e) => return Ok(unreachable(e)),
    };
    let head = answer_head(&upstream);
    let bytes = upstream.bytes().await.unwrap_or_default();
    Ok(head.body(full(bytes)).expect("a valid response"))
}

/// `GET` (the server's event stream) and `DELETE`: passed through, streamed.
async fn pass_through(shared: &Shared, request: Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
    let method = if request.method() == hyper::Method::GET {
        reqwest::Method::GET
    } else {
        reqwest::Method::DELETE
    };
    let headers: Vec<(String, String)> = PASSED
        .iter()
        .filter_map(|name| header(&request, name).map(|v| ((*name).to_owned(), v.to_owned())))
        .collect();
    let mut upstream = match upstream_request(shared, method, &headers, Bytes::new()).send().await {
        Ok(upstream) => upstream,
        Err(e) => return Ok(unreachable(e)),
    };
    let head = answer_head(&upstream);
    let (mut sender, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(16);
    tokio::spawn(async move {
        while let Ok(Some(chunk)) = upstream.chunk().await {
            if sender.send_data(chunk).await.is_err() {
                break;
            }
        }
    });
    Ok(head.body(body.boxed()).expect("a valid response"))
}

/// A request forwarded to the server: its answer, JSON or an event stream, bent by the fault.
async fn forward(
    shared: Arc<Shared>,
    pending: Pending,
    headers: &[(String, String)],
    body: Bytes,
) -> Result<Response<Body>, std::io::Error> {
    let sent = Instant::now();
    let mut upstream = match upstream_request(&shared, reqwest::Method::POST, headers, body)
        .send()
        .await
    {
        Ok(upstream) => upstream,
        Err(e) => {
            shared
                .relay
                .books
                .unanswered(&pending.session, pending.seq, "server_unreachable");
            return Ok(unreachable(e));
        }
    };
    if let Some(sid) = upstream.headers().get(SESSION_ID).and_then(|v| v.to_str().ok()) {
        remember(&shared, sid, &pending.session);
    }
    let streamed = upstream
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let head = answer_head(&upstream);
    if !streamed {
        let bytes = upstream.bytes().await.unwrap_or_default();
        let Ok(answer) = serde_json::from_slice::<Value>(&bytes) else {
            // Not a JSON-RPC answer (an HTTP error page): passed on as it came.
            shared
                .relay
                .books
                .unanswered(&pending.session, pending.seq, "server_http_error");
            return Ok(head.body(full(bytes)).expect("a valid response"));
        };
        let latency_us = sent.elapsed().as_micros().min(u64::MAX as u128) as u64;
        let reply = shared.relay.answered(&pending, answer, Source::Server, latency_us);
        if reply.notify.is_empty() {
            if reply.delay_us > 0 {
                tokio::time::sleep(Duration::from_micros(reply.delay_us)).await;
            }
            shared
                .relay
                .delivered(&pending, &reply.notify, &reply.answer, Source::Server, 0);
            return Ok(head.body(full(reply.answer.to_string())).expect("a valid response"));
        }
        let mut response = answer_response(&shared.relay, pending, reply, Source::Server, None).await;
        for name in [SESSION_ID, "mcp-protocol-version"] {
            if let Some(value) = upstream_header(&head, name) {
                response.headers_mut().insert(name, value);
            }
        }
        return Ok(response);
    }
    let (mut sender, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(16);
    let relay = shared.relay.clone();
    tokio::spawn(async move {
        let mut framer = Framer::default();
        let mut answered = false;
        'read: while let Ok(Some(chunk)) = upstream.chunk().await {
            for frame in framer.push(&chunk) {
                let message = frame_json(&frame);
                let is_answer = message
                    .as_ref()
                    .is_some_and(|m| wire::kind(m) == wire::Kind::Response { id: pending.id.clone() });
                if !is_answer {
                    if let Some(wire::Kind::Notification { method }) = message.as_ref().map(wire::kind) {
                        relay.server_notification(&pending.session, &method);
                    }
                    if sender.send_data(Bytes::from(frame)).await.is_err() {
                        break 'read;
                    }
                    continue;
                }
                let latency_us = sent.elapsed().as_micros().min(u64::MAX as u128) as u64;
                let answer = message.unwrap_or(Value::Null);
                let reply = relay.answered(&pending, answer, Source::Server, latency_us);
                if reply.delay_us > 0 {
                    tokio::time::sleep(Duration::from_micros(reply.delay_us)).await;
                }
                relay.delivered(&pending, &reply.notify, &reply.answer, Source::Server, 0);
                answered = true;
                for message in reply.notify.iter().chain([&reply.answer]) {
                    if sender.send_data(event(message)).await.is_err() {
                        break 'read;
                    }
                }
            }
        }
        if !answered {
            relay
                .books
                .unanswered(&pending.session, pending.seq, "server_stream_ended");
        }
    });
    Ok(head.body(body.boxed()).expect("a valid response"))
}

fn upstream_header(head: &hyper::http::response::Builder, name: &str) -> Option<hyper::header::HeaderValue> {
    head.headers_ref().and_then(|h| h.get(name)).cloned()
}
