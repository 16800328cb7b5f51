//! The HTTP server: each request is numbered in its session, given its seeded faults, answered
//! from the upstream, the cassette or the fault itself, and accounted in the ledger. Streams are
//! passed on frame by frame as they arrive.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;

use crate::catalogue::faults::{FaultKind, Layer};
use crate::proxy::faults::{CallFacts, FaultsFile, ProxyFault};
use crate::proxy::ledger::{Ended, Ledger, Source, CLIENT_CLOSED_MESSAGE};
use crate::proxy::shape::{self, Answer, Api, Tokens};
use crate::proxy::sse::{frame_json, Framer};
use crate::proxy::tape::{self, Frame, Matching, Recorder, Take, Tape};

/// The header an app sets to name its session; without it, a session is told by its first
/// messages.
pub const SESSION_HEADER: &str = "x-agentsim-session";

/// A response body: whole, or streamed as it arrives.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// How the proxy is set up.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The provider, local server or proxy requests go to; `None` only for a strict or in-order
    /// replay without a fork.
    pub upstream: Option<String>,
    pub faults: FaultsFile,
    /// The seed faults are drawn with; `None`: a replay's recorded seed, else 0.
    pub seed: Option<u64>,
    pub record: Option<PathBuf>,
    pub replay: Option<PathBuf>,
    pub matching: Matching,
    /// Serve each session's first N calls from the cassette, the rest from the upstream.
    pub fork_at: Option<u32>,
    /// Replayed streams keep their recorded frame timing times this (0: as fast as possible).
    pub replay_speed: f64,
    pub out: Option<PathBuf>,
    pub otlp: Option<PathBuf>,
    pub request_bytes_max: usize,
    pub response_bytes_max: usize,
    pub upstream_timeout: Duration,
}

impl Config {
    /// A config with the defaults: no faults, seed 0, live, 8 MiB requests, 64 MiB answers.
    pub fn new(listen: SocketAddr, upstream: Option<String>) -> Config {
        Config {
            listen,
            upstream,
            faults: FaultsFile::default(),
            seed: None,
            record: None,
            replay: None,
            matching: Matching::Strict,
            fork_at: None,
            replay_speed: 1.0,
            out: None,
            otlp: None,
            request_bytes_max: 8 * 1024 * 1024,
            response_bytes_max: 64 * 1024 * 1024,
            upstream_timeout: Duration::from_secs(600),
        }
    }

    /// What the proxy does with requests: `live`, `replay` or `fork`.
    pub fn mode(&self) -> &'static str {
        match (&self.replay, self.fork_at) {
            (None, _) => "live",
            (Some(_), None) => "replay",
            (Some(_), Some(_)) => "fork",
        }
    }
}

struct Shared {
    config: Config,
    client: reqwest::Client,
    /// The upstream's base, without a trailing slash, and its path (`/v1`).
    upstream: Option<(String, String)>,
    tape: Option<Tape>,
    seed: u64,
    recorder: Option<Recorder>,
    ledger: Ledger,
    in_flight: AtomicUsize,
    /// Set when the proxy stops: a call still open then is unfinished, not abandoned.
    stopped: std::sync::atomic::AtomicBool,
}

/// A bound proxy, ready to serve.
pub struct Proxy {
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
}

/// What a finished proxy leaves: report.json's value, and whether its invariants held.
#[derive(Debug, Clone)]
pub struct Summary {
    pub report: Value,
    pub held: bool,
}

impl Proxy {
    /// Checks the config, opens the cassettes and binds the address.
    pub async fn bind(config: Config) -> Result<Proxy, String> {
        let upstream = match &config.upstream {
            Some(url) => {
                let parsed = reqwest::Url::parse(url).map_err(|e| {
                    format!("--upstream: expected a URL such as \"https://api.openai.com/v1\", found \"{url}\" ({e})")
                })?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                    return Err(format!(
                        "--upstream: expected an http or https URL with a host, found \"{url}\""
                    ));
                }
                let path = parsed.path().trim_end_matches('/').to_owned();
                Some((url.trim_end_matches('/').to_owned(), path))
            }
            None => None,
        };
        let tape = match &config.replay {
            Some(dir) => Some(Tape::load(dir)?),
            None => None,
        };
        if upstream.is_none() && (tape.is_none() || config.fork_at.is_some()) {
            return Err(
                "expected --upstream URL (the provider or server to forward to): the proxy forwards only to an upstream named explicitly"
                    .to_owned(),
            );
        }
        let seed = config.seed.or(tape.as_ref().map(|t| t.seed)).unwrap_or(0);
        let recorder = match &config.record {
            Some(dir) => Some(Recorder::create(dir, seed)?),
            None => None,
        };
        let ledger = Ledger::new(config.out.as_deref())?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(config.upstream_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot set up an HTTP client: {e}"))?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("--listen {}: cannot bind: {e}", config.listen))?;
        Ok(Proxy {
            shared: Arc::new(Shared {
                config,
                client,
                upstream,
                tape,
                seed,
                recorder,
                ledger,
                in_flight: AtomicUsize::new(0),
                stopped: std::sync::atomic::AtomicBool::new(false),
            }),
            listener,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.shared.config.listen)
    }

    /// The seed faults are drawn with (a replay's own unless one was given).
    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// Serves until `stop` resolves, lets calls in flight finish (up to 5 s), then writes the
    /// report into `--out`.
    pub async fn serve(self, stop: impl std::future::Future<Output = ()>) -> Result<Summary, String> {
        crate::proxy::accept_until(&self.listener, stop, self.shared.clone(), handle).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.shared.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.finish()
    }

    fn finish(&self) -> Result<Summary, String> {
        let config = &self.shared.config;
        let report = self
            .shared
            .ledger
            .report(&config.faults, self.shared.seed, config.mode());
        let held = report["invariants"]
            .as_array()
            .is_none_or(|all| all.iter().all(|i| i["holds"] == Value::Bool(true)));
        if let Some(dir) = &config.out {
            let json = serde_json::to_string_pretty(&report).expect("a report is JSON");
            let write = |name: &str, text: &str| {
                let path = dir.join(name);
                std::fs::write(&path, text).map_err(|e| format!("{}: cannot write: {e}", path.display()))
            };
            write("report.json", &format!("{json}\n"))?;
            write("report.html", &crate::proxy::page::render(&report))?;
        }
        if let Some(path) = &config.otlp {
            let spans = self.shared.ledger.otlp();
            std::fs::write(path, format!("{spans}\n")).map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
        }
        Ok(Summary { report, held })
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

fn respond(answer: &Answer, tags: &[(&str, String)]) -> Response<Body> {
    let body = serde_json::to_vec(&answer.body).expect("JSON");
    response(answer.status, &answer.headers, tags, full(body))
}

/// A response with `headers` (but their content-length: the body may have changed) and the
/// proxy's own `tags`.
fn response(status: u16, headers: &[(String, String)], tags: &[(&str, String)], body: Body) -> Response<Body> {
    let mut builder = Response::builder().status(status);
    for (k, v) in headers.iter().filter(|(k, _)| k != "content-length") {
        builder = builder.header(k, v);
    }
    for (k, v) in tags {
        builder = builder.header(*k, v);
    }
    builder.body(body).expect("a valid response")
}

/// Counts a call in flight until dropped. Dropped before its call ended (hyper drops a
/// request's future when its client hangs up), it ends the call as abandoned by the client.
struct InFlight {
    shared: Arc<Shared>,
    /// The call's session, number and arrival, once it has them.
    call: Option<(String, u32, Instant)>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some((session, call, started)) = self.call.take() {
            if !self.shared.stopped.load(Ordering::SeqCst) {
                let latency_us = started.elapsed().as_micros() as u64;
                self.shared.ledger.abandoned(&session, call, latency_us);
            }
        }
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if path == "/agentsim/health" {
        return Ok(Response::new(full("ok\n")));
    }
    shared.in_flight.fetch_add(1, Ordering::SeqCst);
    let mut guard = InFlight {
        shared: shared.clone(),
        call: None,
    };
    let api = Api::of_path(&path);
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, shared.config.request_bytes_max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let message = format!("request body larger than {} bytes", shared.config.request_bytes_max);
            return Ok(respond(
                &shape::proxy_error(api, 413, "request_too_large", &message),
                &[],
            ));
        }
    };
    let request_json: Value =
        serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let model = request_json
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let streamed = request_json.get("stream") == Some(&Value::Bool(true));
    let session = parts
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .map_or_else(|| shape::session_of(&request_json), str::to_owned);
    let method = parts.method.as_str().to_owned();
    let ledger = &shared.ledger;
    let started = Instant::now();
    let begun = ledger.begin(&session, &model, &method, &path, &body, streamed);
    let call = begun.call;
    guard.call = Some((session.clone(), call, started));
    let text = shape::latest_text(&request_json);
    let route = path.split('?').next().unwrap_or(&path);
    let faults = &shared.config.faults;
    let mut fired = begun.fired;
    let decision = faults.decide(
        shared.seed,
        CallFacts {
            session: &session,
            call: begun.nth,
            model: &model,
            route,
            text: &text,
            elapsed_us: begun.elapsed_us,
            streamed,
        },
        &mut fired,
    );
    let chosen: Vec<&ProxyFault> = [decision.answer, decision.stream]
        .into_iter()
        .flatten()
        .map(|i| &faults.faults[i])
        .collect();
    let names: Vec<(&str, &str)> = chosen.iter().map(|f| (f.name.as_str(), f.kind.name())).collect();
    ledger.faults(&session, call, &names, fired);
    let tags = [
        ("x-agentsim-session", session.clone()),
        ("x-agentsim-call", call.to_string()),
    ];
    let latency_us = |from: Instant| from.elapsed().as_micros() as u64;

    let answer_fault = decision.answer.map(|i| &faults.faults[i]);
    if let Some(fault) = answer_fault.filter(|f| f.kind.layer() == Layer::Provider) {
        tokio::time::sleep(Duration::from_micros(fault.latency_us.unwrap_or(0))).await;
        let answer = shape::fault_answer(api, fault, &format!("req_agentsim_{session}_{call}"));
        let retry_after_us = header_retry_after(&answer.headers);
        ledger.end(
            &session,
            call,
            Ended {
                status: answer.status,
                retry_after_us,
                source: Some(Source::Proxy),
                latency_us: latency_us(started),
                ..Ended::default()
            },
        );
        return Ok(respond(&answer, &tags));
    }
    let refuse = |status: u16, code: &str, message: String| {
        eprintln!("agentsim proxy: call {call} of session {session}: {message}");
        ledger.note(&session, call, code, &message);
        ledger.end(
            &session,
            call,
            Ended {
                status,
                source: Some(Source::Proxy),
                latency_us: latency_us(started),
                ..Ended::default()
            },
        );
        Ok(respond(&shape::proxy_error(api, status, code, &message), &tags))
    };

    let from_tape = shared
        .tape
        .as_ref()
        .filter(|_| shared.config.fork_at.is_none_or(|n| call <= n));
    let stream_fault = decision.stream.map(|i| faults.faults[i].clone());
    let key = Key {
        session: session.clone(),
        call,
        method,
        path: path.clone(),
        request: request_json.clone(),
    };
    if let Some(tape) = from_tape {
        let take = match tape.find(shared.config.matching, &session, call, route_of(&path), &request_json) {
            Ok(take) => take,
            Err(miss) => return refuse(400, "replay_miss", miss.message),
        };
        let headers: Vec<(String, String)> = take.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if let Some(frames) = take.frames.clone() {
            let source = Frames::Taped {
                frames: frames.into(),
                start: Instant::now(),
                speed: shared.config.replay_speed,
            };
            return Ok(stream_response(
                shared.clone(),
                guard,
                key,
                take.status,
                headers,
                source,
                answer_fault.cloned(),
                stream_fault,
                api,
                started,
                Source::Replay,
                &tags,
            ));
        }
        let body = take.body.clone().unwrap_or(Value::Null);
        return Ok(plain_response(
            &shared,
            key,
            take.status,
            headers,
            body,
            answer_fault,
            started,
            Source::Replay,
            &tags,
        ));
    }
    let Some((base, base_path)) = &shared.upstream else {
        return refuse(502, "no_upstream", "no upstream to forward to".to_owned());
    };
    let suffix = path
        .strip_prefix(base_path.as_str())
        .filter(|_| !base_path.is_empty())
        .unwrap_or(&path);
    let url = format!("{base}{suffix}");
    let mut forward = shared.client.request(parts.method.clone(), &url).body(body.clone());
    for (name, value) in &parts.headers {
        if !hop_by_hop(name.as_str()) {
            forward = forward.header(name, value);
        }
    }
    let upstream_started = Instant::now();
    let response = match forward.send().await {
        Ok(r) => r,
        Err(e) => {
            let what = if e.is_timeout() {
                "timed out"
            } else {
                "cannot be reached"
            };
            return refuse(
                502,
                "upstream_unreachable",
                format!("the upstream {what}: {}", without_url(e)),
            );
        }
    };
    let status = response.status().as_u16();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(k, _)| !hop_by_hop(k.as_str()) && k.as_str() != "content-length")
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let event_stream = headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream"));
    if event_stream {
        let source = Frames::Live {
            response,
            framer: Framer::default(),
            queue: VecDeque::new(),
            sent_at: upstream_started,
            done: false,
            bytes: 0,
            bytes_max: shared.config.response_bytes_max,
        };
        return Ok(stream_response(
            shared.clone(),
            guard,
            key,
            status,
            headers,
            source,
            answer_fault.cloned(),
            stream_fault,
            api,
            started,
            Source::Upstream,
            &tags,
        ));
    }
    let mut response = response;
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > shared.config.response_bytes_max {
                    let message = format!("upstream answer larger than {} bytes", shared.config.response_bytes_max);
                    return refuse(502, "response_too_large", message);
                }
            }
            Ok(None) => break,
            Err(e) => {
                return refuse(
                    502,
                    "upstream_broke_off",
                    format!("the upstream answer broke off: {}", without_url(e)),
                )
            }
        }
    }
    let body: Value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok(plain_response(
        &shared,
        key,
        status,
        headers,
        body,
        answer_fault,
        started,
        Source::Upstream,
        &tags,
    ))
}

/// A request's place and body, as the cassette keeps them.
struct Key {
    session: String,
    call: u32,
    method: String,
    path: String,
    request: Value,
}

impl Key {
    fn take(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: Option<Value>,
        frames: Option<Vec<Frame>>,
        latency_us: u64,
    ) -> Take {
        Take {
            session: self.session.clone(),
            call: self.call,
            method: self.method.clone(),
            path: route_of(&self.path).to_owned(),
            request: self.request.clone(),
            status,
            headers: headers.iter().filter(|(k, _)| tape::kept_header(k)).cloned().collect(),
            body,
            frames,
            latency_us,
        }
    }
}

/// A content fault that found nothing to break did not fire (see [`Ledger::not_fired`]).
fn not_fired(shared: &Shared, key: &Key, fault: &ProxyFault, what: &str) {
    let index = shared
        .config
        .faults
        .faults
        .iter()
        .position(|f| f.name == fault.name)
        .unwrap_or(usize::MAX);
    let message = format!("{} found nothing to break in {what}", fault.kind.name());
    shared
        .ledger
        .not_fired(&key.session, key.call, index, fault.kind.name(), &message);
}

fn route_of(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

fn record(shared: &Shared, take: &Take) {
    if let Some(recorder) = &shared.recorder {
        if let Err(e) = recorder.record(take) {
            eprintln!("agentsim proxy: {e}");
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn plain_response(
    shared: &Shared,
    key: Key,
    status: u16,
    headers: Vec<(String, String)>,
    mut body: Value,
    fault: Option<&ProxyFault>,
    started: Instant,
    source: Source,
    tags: &[(&str, String)],
) -> Response<Body> {
    let latency_us = started.elapsed().as_micros() as u64;
    record(
        shared,
        &key.take(status, &headers, Some(body.clone()), None, latency_us),
    );
    if let Some(fault) = fault {
        if !(200..300).contains(&status) {
            not_fired(shared, &key, fault, "an error answer");
        } else if !shape::break_answer(&mut body, fault) {
            not_fired(shared, &key, fault, "this answer");
        }
    }
    let retry_after_us = header_retry_after(&headers);
    shared.ledger.end(
        &key.session,
        key.call,
        Ended {
            status,
            retry_after_us,
            source: Some(source),
            tokens: Tokens::of(&body),
            latency_us,
            ..Ended::default()
        },
    );
    let bytes = match &body {
        Value::String(text) => text.clone().into_bytes(),
        other => serde_json::to_vec(other).expect("JSON"),
    };
    response(status, &headers, tags, full(bytes))
}

/// Where a stream's frames come from.
enum Frames {
    Live {
        response: reqwest::Response,
        framer: Framer,
        queue: VecDeque<Vec<u8>>,
        sent_at: Instant,
        done: bool,
        bytes: usize,
        bytes_max: usize,
    },
    Taped {
        frames: VecDeque<Frame>,
        start: Instant,
        speed: f64,
    },
    /// Frames already read (a whole stream held back for a content fault), then the error the
    /// source broke off with, if it did.
    Held {
        frames: VecDeque<(u64, Vec<u8>)>,
        error: Option<String>,
    },
}

impl Frames {
    /// The next frame and its time offset; `Err` when the upstream broke off.
    async fn next(&mut self) -> Option<Result<(u64, Vec<u8>), String>> {
        match self {
            Frames::Live {
                response,
                framer,
                queue,
                sent_at,
                done,
                bytes,
                bytes_max,
            } => loop {
                if let Some(frame) = queue.pop_front() {
                    return Some(Ok((sent_at.elapsed().as_micros() as u64, frame)));
                }
                if *done {
                    return None;
                }
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        *bytes += chunk.len();
                        if *bytes > *bytes_max {
                            *done = true;
                            return Some(Err(format!("upstream stream larger than {bytes_max} bytes")));
                        }
                        queue.extend(framer.push(&chunk));
                    }
                    Ok(None) => {
                        *done = true;
                        queue.extend(framer.finish());
                    }
                    Err(e) => {
                        *done = true;
                        return Some(Err(format!("the upstream stream broke off: {}", without_url(e))));
                    }
                }
            },
            Frames::Taped { frames, start, speed } => {
                let frame = frames.pop_front()?;
                if *speed > 0.0 {
                    let due = start.checked_add(Duration::from_secs_f64(frame.at_us as f64 * *speed / 1e6));
                    if let Some(due) = due {
                        tokio::time::sleep_until(due.into()).await;
                    }
                }
                Some(Ok((frame.at_us, frame.data.into_bytes())))
            }
            Frames::Held { frames, error } => match frames.pop_front() {
                Some(frame) => Some(Ok(frame)),
                None => error.take().map(Err),
            },
        }
    }

    /// Reads the whole stream, then applies `fault` to it (see [`shape::break_stream`]):
    /// the frames the source sent, for the cassette, and the source of what to send instead.
    async fn broken_by(mut self, fault: &ProxyFault, shared: &Shared, key: &Key) -> (Vec<Frame>, Frames) {
        let mut read = Vec::new();
        let mut error = None;
        while let Some(item) = self.next().await {
            match item {
                Ok(frame) => read.push(frame),
                Err(message) => {
                    error = Some(message);
                    break;
                }
            }
        }
        let original: Vec<Frame> = read
            .iter()
            .map(|(at_us, data)| Frame {
                at_us: *at_us,
                data: String::from_utf8_lossy(data).into_owned(),
            })
            .collect();
        let data = read.iter().map(|(_, d)| d.as_slice());
        let broken = error.is_none().then(|| shape::break_stream(data, fault)).flatten();
        let frames = match broken {
            Some(frames) => {
                let at_us = read.last().map_or(0, |(at, _)| *at);
                frames.into_iter().map(|f| (at_us, f)).collect()
            }
            None => {
                let what = if error.is_some() {
                    "a stream that broke off"
                } else {
                    "this stream"
                };
                not_fired(shared, key, fault, what);
                read.into()
            }
        };
        (original, Frames::Held { frames, error })
    }
}

#[allow(clippy::too_many_arguments)]
fn stream_response(
    shared: Arc<Shared>,
    guard: InFlight,
    key: Key,
    status: u16,
    headers: Vec<(String, String)>,
    mut frames: Frames,
    content_fault: Option<ProxyFault>,
    fault: Option<ProxyFault>,
    api: Api,
    started: Instant,
    source: Source,
    tags: &[(&str, String)],
) -> Response<Body> {
    let (sender, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(16);
    let answer = response(status, &headers, tags, body.boxed());
    tokio::spawn(async move {
        let _guard = guard;
        let mut sender = Some(sender);
        let (mut sent, mut broken, mut tokens) = (0u32, false, None::<Tokens>);
        let mut duplicated = false;
        // A content fault needs the whole answer: the stream is read first, kept for the
        // cassette as the source sent it, and its broken version sent on.
        let mut recorded = Vec::new();
        let mut held = false;
        let content_fault = content_fault.filter(|fault| {
            let answered = (200..300).contains(&status);
            if !answered {
                not_fired(&shared, &key, fault, "an error answer");
            }
            answered
        });
        if let Some(content_fault) = &content_fault {
            (recorded, frames) = frames.broken_by(content_fault, &shared, &key).await;
            held = true;
        }
        let kind = fault.as_ref().map(|f| f.kind);
        let after = fault.as_ref().map_or(0, |f| f.after_frames);
        let pause = Duration::from_micros(fault.as_ref().and_then(|f| f.latency_us).unwrap_or(0));
        if kind == Some(FaultKind::StreamSlowFirstToken) {
            tokio::time::sleep(pause).await;
        }
        while let Some(item) = frames.next().await {
            let (at_us, data) = match item {
                Ok(frame) => frame,
                Err(message) => {
                    shared
                        .ledger
                        .note(&key.session, key.call, "upstream_broke_off", &message);
                    broken = true;
                    if let Some(s) = sender.take() {
                        s.abort(std::io::Error::other(message));
                    }
                    break;
                }
            };
            if let Some(t) = frame_json(&data).as_ref().and_then(Tokens::of) {
                tokens = Some(tokens.unwrap_or_default().max(t));
            }
            if !held {
                recorded.push(Frame {
                    at_us,
                    data: String::from_utf8_lossy(&data).into_owned(),
                });
            }
            let Some(out) = sender.as_mut() else { continue };
            let number = sent + 1;
            match kind {
                Some(FaultKind::StreamCut) if number > after => {
                    broken = true;
                    if let Some(s) = sender.take() {
                        s.abort(std::io::Error::other("stream cut by agentsim proxy"));
                    }
                    continue;
                }
                Some(FaultKind::StreamErrorEvent) if number > after => {
                    broken = true;
                    let _ = out.send_data(Bytes::from(shape::stream_error_frame(api))).await;
                    sender = None;
                    continue;
                }
                Some(FaultKind::StreamStall) if number == after + 1 => tokio::time::sleep(pause).await,
                _ => {}
            }
            let data = Bytes::from(data);
            if out.send_data(data.clone()).await.is_err() {
                // The client hung up (its own timeout, most often): the stream is broken for
                // it, and the rest is read for the cassette only.
                shared
                    .ledger
                    .note(&key.session, key.call, "client_closed", CLIENT_CLOSED_MESSAGE);
                broken = true;
                sender = None;
                continue;
            }
            sent += 1;
            // The first frame from `after_frames` on that carries text or arguments, so the
            // duplicate doubles a piece of the answer, not a header.
            if kind == Some(FaultKind::StreamDuplicateFrames)
                && !duplicated
                && number >= after.max(1)
                && shape::frame_carries_text(&data)
            {
                duplicated = true;
                if out.send_data(data).await.is_ok() {
                    sent += 1;
                }
            }
        }
        drop(sender);
        let latency_us = started.elapsed().as_micros() as u64;
        record(&shared, &key.take(status, &headers, None, Some(recorded), latency_us));
        shared.ledger.end(
            &key.session,
            key.call,
            Ended {
                status,
                retry_after_us: header_retry_after(&headers),
                source: Some(source),
                tokens,
                streamed: true,
                frames: sent,
                broken,
                latency_us,
            },
        );
    });
    answer
}

/// Headers that belong to one connection, or that the proxy must not pass on.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authorization"
            | "proxy-connection"
            | "content-length"
            | "accept-encoding"
            | SESSION_HEADER
    )
}

fn header_retry_after(headers: &[(String, String)]) -> Option<u64> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    get("retry-after-ms")
        .and_then(|ms| ms.parse::<f64>().ok())
        .map(|ms| (ms * 1000.0) as u64)
        .or_else(|| {
            get("retry-after")
                .and_then(|s| s.parse::<f64>().ok())
                .map(|s| (s * 1e6) as u64)
        })
}

/// A reqwest error without the URL (which may carry a key in its query), with its cause.
fn without_url(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    if let Some(source) = std::error::Error::source(&error) {
        text.push_str(&format!(" ({source})"));
    }
    text
}
