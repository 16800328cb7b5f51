//! What the app did through the proxy: one trace record per request, fault, response and stream,
//! the sessions with their call counters and retry chains, and at the end report.json.
//!
//! Records are in arrival order, stamped with wall time since the proxy started (`t_us`): the
//! app's run is real, so its timing is too. What is the same on every rerun of the same app run
//! with the same seed is each call's (session, call) position and the faults chosen for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

use crate::catalogue::prices;
use crate::proxy::faults::{Check, FaultsFile};
use crate::proxy::journal::{otlp_attribute, otlp_document, Journal};
use crate::proxy::shape::{Api, Tokens};
use crate::scenario::units::{format_usd, usd_from_pusd as usd};

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Upstream,
    Replay,
    /// The proxy answered itself: a provider fault, a replay miss, a refused request.
    Proxy,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Upstream => "upstream",
            Source::Replay => "replay",
            Source::Proxy => "proxy",
        }
    }
}

/// A retry: the same request again, after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The status of the answer it retries (0: a stream cut or no answer).
    pub after_status: u16,
    /// The `retry-after` that answer gave.
    pub retry_after_us: Option<u64>,
    /// How long the app waited, from the end of that answer to this request.
    pub waited_us: u64,
    /// The how-manieth retry of the request, from 1.
    pub attempt: u32,
}

/// A call as it starts.
#[derive(Debug, Clone)]
pub struct Started {
    pub call: u32,
    /// The call's number among the session's calls on the same kind of path: its model calls
    /// (chat completions, Responses, Messages) count apart from its other requests
    /// (`/v1/models`, …), so a listing before the first chat does not move `on_message` or a
    /// fault's draw.
    pub nth: u32,
    pub elapsed_us: u64,
    pub retry: Option<Retry>,
    /// Per fault of the file, how often it fired in this session so far.
    pub fired: Vec<u32>,
}

/// The status of a call whose client closed the connection before its answer (nginx's 499).
pub const CLIENT_CLOSED: u16 = 499;

/// The trace's note on such a call.
pub const CLIENT_CLOSED_MESSAGE: &str = "the client closed the connection before the answer was complete";

/// How a call ended.
#[derive(Debug, Clone, Default)]
pub struct Ended {
    pub status: u16,
    pub retry_after_us: Option<u64>,
    pub source: Option<Source>,
    pub tokens: Option<Tokens>,
    pub streamed: bool,
    pub frames: u32,
    /// The stream was cut or ended with an error frame.
    pub broken: bool,
    pub latency_us: u64,
}

#[derive(Debug, Clone)]
struct Call {
    session: String,
    call: u32,
    model: String,
    path: String,
    /// On a model API (chat completions, Responses, Messages), not `/v1/models` or another path.
    model_api: bool,
    faults: Vec<String>,
    retry: Option<Retry>,
    ended: Option<Ended>,
    cost_pusd: u64,
    /// When the request arrived, since the proxy started.
    started_us: u64,
}

#[derive(Debug, Default)]
struct Session {
    calls: u32,
    /// Of `calls`, those on a model API; the rest went to other paths.
    model_calls: u32,
    started: Option<Instant>,
    fired: Vec<u32>,
    last: Option<Last>,
}

#[derive(Debug, Clone)]
struct Last {
    request_hash: blake3::Hash,
    ended: Option<(Instant, bool, Option<u64>, u16)>,
    attempt: u32,
}

#[derive(Default)]
struct Books {
    seq: u64,
    sessions: BTreeMap<String, Session>,
    calls: Vec<Call>,
    /// Index in `calls` of each (session, call).
    index: BTreeMap<(String, u32), usize>,
}

/// The proxy's books and trace.
pub struct Ledger {
    journal: Journal,
    pub out: Option<PathBuf>,
    books: Mutex<Books>,
}

impl Ledger {
    pub fn new(out: Option<&Path>) -> Result<Ledger, String> {
        Ok(Ledger {
            journal: Journal::create(out)?,
            out: out.map(Path::to_path_buf),
            books: Mutex::new(Books::default()),
        })
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes one trace record; `books` is held so records keep their `seq` order.
    fn record(&self, books: &mut Books, event: &str, fields: Value) {
        books.seq += 1;
        self.journal.write(books.seq, event, fields);
    }

    /// A request arrives: its number in the session, and whether it retries the one before.
    pub fn begin(
        &self,
        session: &str,
        model: &str,
        method: &str,
        path: &str,
        request: &[u8],
        streamed: bool,
    ) -> Started {
        let now = Instant::now();
        // The same request: the same method, path and body (two GETs of different paths are not
        // one request retried).
        let mut hasher = blake3::Hasher::new();
        hasher.update(method.as_bytes());
        hasher.update(b" ");
        hasher.update(path.as_bytes());
        hasher.update(b"\0");
        hasher.update(request);
        let hash = hasher.finalize();
        let mut books = self.books();
        let state = books.sessions.entry(session.to_owned()).or_default();
        state.calls += 1;
        let call = state.calls;
        let model_api = Api::of_path(path) != Api::Other;
        state.model_calls += u32::from(model_api);
        let nth = if model_api {
            state.model_calls
        } else {
            state.calls - state.model_calls
        };
        let first = *state.started.get_or_insert(now);
        let retry = state.last.as_ref().and_then(|last| match last.ended {
            Some((ended, false, retry_after_us, after_status)) if last.request_hash == hash => Some(Retry {
                after_status,
                retry_after_us,
                waited_us: now.saturating_duration_since(ended).as_micros() as u64,
                attempt: last.attempt + 1,
            }),
            _ => None,
        });
        state.last = Some(Last {
            request_hash: hash,
            ended: None,
            attempt: retry.map_or(0, |r| r.attempt),
        });
        let fired = state.fired.clone();
        let elapsed_us = now.saturating_duration_since(first).as_micros() as u64;
        let at = books.calls.len();
        books.index.insert((session.to_owned(), call), at);
        books.calls.push(Call {
            session: session.to_owned(),
            call,
            model: model.to_owned(),
            path: path.to_owned(),
            model_api,
            faults: Vec::new(),
            retry,
            ended: None,
            cost_pusd: 0,
            started_us: now.saturating_duration_since(self.journal.started()).as_micros() as u64,
        });
        let mut fields = json!({"session": session, "call": call, "method": method, "path": path, "model": model, "stream": streamed});
        if let Some(r) = retry {
            fields["retry"] = json!({"attempt": r.attempt, "after_status": r.after_status, "retry_after_us": r.retry_after_us, "waited_us": r.waited_us});
        }
        self.record(&mut books, "request", fields);
        Started {
            call,
            nth,
            elapsed_us,
            retry,
            fired,
        }
    }

    /// The faults chosen for a call, and the session's counts after them.
    pub fn faults(&self, session: &str, call: u32, chosen: &[(&str, &str)], fired: Vec<u32>) {
        let mut books = self.books();
        if let Some(state) = books.sessions.get_mut(session) {
            state.fired = fired;
        }
        if let Some(&at) = books.index.get(&(session.to_owned(), call)) {
            books.calls[at]
                .faults
                .extend(chosen.iter().map(|(_, kind)| (*kind).to_owned()));
        }
        for (name, kind) in chosen {
            self.record(
                &mut books,
                "fault",
                json!({"session": session, "call": call, "name": name, "kind": kind}),
            );
        }
    }

    /// A call ends (for a stream: when its last frame went out, or it was cut).
    pub fn end(&self, session: &str, call: u32, ended: Ended) {
        let now = Instant::now();
        let mut books = self.books();
        let ok = (200..300).contains(&ended.status) && !ended.broken;
        if let Some(state) = books.sessions.get_mut(session) {
            if let Some(last) = &mut state.last {
                last.ended = Some((
                    now,
                    ok,
                    ended.retry_after_us,
                    if ended.broken { 0 } else { ended.status },
                ));
            }
        }
        let Some(&at) = books.index.get(&(session.to_owned(), call)) else {
            return;
        };
        let model = books.calls[at].model.clone();
        let tokens = ended.tokens.unwrap_or_default();
        let cost_pusd = prices::lookup(&model).map_or(0, |p| {
            let clamp = |n: u64| n.min(u32::MAX as u64) as u32;
            p.price()
                .cost_pusd(clamp(tokens.input), clamp(tokens.cached), clamp(tokens.output))
        });
        let mut fields = json!({
            "session": session, "call": call, "status": ended.status,
            "source": ended.source.unwrap_or(Source::Proxy).name(), "latency_us": ended.latency_us,
        });
        if let Some(t) = ended.tokens {
            fields["usage"] =
                json!({"input_tokens": t.input, "cached_input_tokens": t.cached, "output_tokens": t.output});
            fields["cost_usd"] = json!(usd(cost_pusd));
            fields["cost_pusd"] = json!(cost_pusd);
        }
        if ended.streamed {
            fields["frames"] = json!(ended.frames);
            fields["stream_broken"] = json!(ended.broken);
        }
        books.calls[at].cost_pusd = cost_pusd;
        books.calls[at].ended = Some(ended);
        self.record(&mut books, "response", fields);
    }

    /// A content fault chosen for a call found nothing to break (an answer without the tool
    /// calls it breaks, an error answer): it did not fire, so it neither counts nor uses up its
    /// `count`, and the trace says why after the `fault` record of its choice.
    pub fn not_fired(&self, session: &str, call: u32, fault_index: usize, kind: &str, message: &str) {
        let mut books = self.books();
        if let Some(n) = books
            .sessions
            .get_mut(session)
            .and_then(|state| state.fired.get_mut(fault_index))
        {
            *n = n.saturating_sub(1);
        }
        if let Some(&at) = books.index.get(&(session.to_owned(), call)) {
            let faults = &mut books.calls[at].faults;
            if let Some(i) = faults.iter().position(|f| f == kind) {
                faults.remove(i);
            }
        }
        self.record(
            &mut books,
            "fault_not_applicable",
            json!({"session": session, "call": call, "kind": kind, "message": message}),
        );
    }

    /// The client closed its connection before the call ended (its own timeout, most often): the
    /// call ends with status 499 (nginx's "client closed request") after the time the client
    /// waited, so that the app's retry of it counts as a retry after an error.
    pub fn abandoned(&self, session: &str, call: u32, latency_us: u64) {
        let open = {
            let books = self.books();
            books
                .index
                .get(&(session.to_owned(), call))
                .is_some_and(|&at| books.calls[at].ended.is_none())
        };
        if !open {
            return;
        }
        self.note(session, call, "client_closed", CLIENT_CLOSED_MESSAGE);
        self.end(
            session,
            call,
            Ended {
                status: CLIENT_CLOSED,
                source: Some(Source::Proxy),
                latency_us,
                ..Ended::default()
            },
        );
    }

    /// A line for the trace about something else that happened (a replay miss, an upstream
    /// error), with the call it belongs to.
    pub fn note(&self, session: &str, call: u32, event: &str, message: &str) {
        let mut books = self.books();
        self.record(
            &mut books,
            event,
            json!({"session": session, "call": call, "message": message}),
        );
    }

    /// report.json: the calls, tokens, cost, errors, faults, retries, streams and invariants.
    pub fn report(&self, faults: &FaultsFile, seed: u64, mode: &str) -> Value {
        let now_us = self.journal.started().elapsed().as_micros() as u64;
        let books = self.books();
        let calls = &books.calls;
        let ended: Vec<&Ended> = calls.iter().filter_map(|c| c.ended.as_ref()).collect();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for e in &ended {
            if !(200..300).contains(&e.status) {
                *errors.entry(e.status.to_string()).or_default() += 1;
            }
        }
        let mut fault_counts: BTreeMap<&str, u64> = BTreeMap::new();
        for fault in calls.iter().flat_map(|c| &c.faults) {
            *fault_counts.entry(fault).or_default() += 1;
        }
        let retries: Vec<Value> = calls
            .iter()
            .filter_map(|c| {
                let r = c.retry?;
                Some(json!({
                    "session": c.session, "call": c.call, "attempt": r.attempt, "after_status": r.after_status,
                    "retry_after_us": r.retry_after_us, "waited_us": r.waited_us,
                    "honoured": r.retry_after_us.is_none_or(|after| r.waited_us >= after),
                }))
            })
            .collect();
        let early = retries.iter().filter(|r| r["honoured"] == json!(false)).count();
        let mut tokens = Tokens::default();
        let mut by_model: BTreeMap<&str, (u64, Tokens, u64)> = BTreeMap::new();
        for c in calls {
            let t = c.ended.as_ref().and_then(|e| e.tokens).unwrap_or_default();
            tokens = tokens + t;
            let entry = by_model.entry(&c.model).or_default();
            entry.0 += 1;
            entry.1 = entry.1 + t;
            entry.2 = entry.2.saturating_add(c.cost_pusd);
        }
        let cost_pusd: u64 = calls.iter().fold(0, |sum, c| sum.saturating_add(c.cost_pusd));
        let streams: Vec<&&Ended> = ended.iter().filter(|e| e.streamed).collect();
        let mut latencies: Vec<u64> = ended.iter().map(|e| e.latency_us).collect();
        latencies.sort_unstable();
        let pick = |q: f64| {
            latencies
                .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        let sessions: Vec<Value> = books
            .sessions
            .iter()
            .map(|(name, s)| {
                let mine: Vec<&Call> = calls.iter().filter(|c| &c.session == name).collect();
                let last_ok = mine
                    .last()
                    .and_then(|c| c.ended.as_ref())
                    .is_some_and(|e| (200..300).contains(&e.status) && !e.broken);
                json!({
                    "session": name,
                    "calls": s.calls,
                    "errors": mine.iter().filter(|c| c.ended.as_ref().is_some_and(|e| !(200..300).contains(&e.status) || e.broken)).count(),
                    "retries": mine.iter().filter(|c| c.retry.is_some()).count(),
                    "faults": mine.iter().flat_map(|c| c.faults.iter().map(move |f| json!({"call": c.call, "kind": f}))).collect::<Vec<_>>(),
                    "cost_usd": usd(mine.iter().fold(0, |sum, c| sum.saturating_add(c.cost_pusd))),
                    "cost_pusd": mine.iter().fold(0u64, |sum, c| sum.saturating_add(c.cost_pusd)),
                    "last_call_ok": last_ok,
                })
            })
            .collect();
        let usage =
            |t: Tokens| json!({"input_tokens": t.input, "cached_input_tokens": t.cached, "output_tokens": t.output});
        let invariants: Vec<Value> = faults
            .invariants
            .iter()
            .map(|inv| {
                let (holds, detail) = self.check(&inv.check, &books, early);
                json!({"name": inv.name, "holds": holds, "detail": detail})
            })
            .collect();
        json!({
            "agentsim": env!("CARGO_PKG_VERSION"),
            "kind": "proxy",
            "proxy": "llm",
            "seed": seed,
            "mode": mode,
            "faults_file": (!faults.file.is_empty()).then_some(&faults.file),
            "faults_hash": (!faults.hash.is_empty()).then_some(&faults.hash),
            "calls": calls.len(),
            "answered": ended.iter().filter(|e| (200..300).contains(&e.status) && !e.broken).count(),
            // Still in flight when the proxy stopped (Ctrl-C, and the grace period ran out).
            "unfinished": calls.len() - ended.len(),
            "errors": errors,
            "faults": fault_counts,
            "retries": {"count": retries.len(), "early": early, "list": retries},
            "streams": {
                "count": streams.len(),
                "frames": streams.iter().map(|e| u64::from(e.frames)).sum::<u64>(),
                "broken": streams.iter().filter(|e| e.broken).count(),
            },
            "usage": usage(tokens),
            "cost_usd": usd(cost_pusd),
            "cost_pusd": cost_pusd,
            "by_model": by_model.iter().map(|(m, (n, t, c))| (m.to_string(), json!({"calls": n, "usage": usage(*t), "cost_usd": usd(*c), "cost_pusd": c}))).collect::<serde_json::Map<_, _>>(),
            "latency_us": {"p50": pick(0.5), "p95": pick(0.95), "max": latencies.last().copied().unwrap_or(0)},
            "sessions": sessions,
            "exchanges": calls.iter().map(|c| {
                let unfinished = c.ended.is_none();
                let mut e = c.ended.clone().unwrap_or_default();
                if unfinished {
                    // How long it had been waiting when the report was written.
                    e.latency_us = now_us.saturating_sub(c.started_us);
                }
                json!({
                    "session": c.session, "call": c.call, "model": c.model, "path": c.path,
                    "status": if unfinished { Value::Null } else { json!(e.status) },
                    "unfinished": unfinished,
                    "source": e.source.unwrap_or(Source::Proxy).name(),
                    "faults": c.faults, "streamed": e.streamed, "frames": e.frames, "stream_broken": e.broken,
                    "retry": c.retry.map(|r| json!({"attempt": r.attempt, "retry_after_us": r.retry_after_us, "waited_us": r.waited_us})),
                    "usage": e.tokens.map(usage), "cost_usd": usd(c.cost_pusd), "cost_pusd": c.cost_pusd, "latency_us": e.latency_us,
                })
            }).collect::<Vec<_>>(),
            "invariants": invariants,
        })
    }

    /// The calls as OpenTelemetry GenAI client spans (OTLP JSON): one trace per session, one
    /// span per call, with the model, usage, status and the faults the proxy injected.
    pub fn otlp(&self) -> Value {
        let books = self.books();
        let hex = |text: &str, chars: usize| blake3::hash(text.as_bytes()).to_hex()[..chars].to_owned();
        let attribute = otlp_attribute;
        let spans: Vec<Value> = books
            .calls
            .iter()
            .map(|c| {
                let ended = c.ended.clone().unwrap_or_default();
                let start_ns = self.journal.unix_ns(c.started_us);
                let end_ns = start_ns + u128::from(ended.latency_us) * 1000;
                let operation = if c.path.ends_with("/chat/completions") {
                    "chat"
                } else {
                    "generate_content"
                };
                let mut attributes = vec![
                    attribute("gen_ai.operation.name", json!(operation)),
                    attribute("gen_ai.request.model", json!(c.model)),
                    attribute("http.response.status_code", json!(ended.status)),
                    attribute("url.path", json!(c.path)),
                    attribute("agentsim.session", json!(c.session)),
                    attribute("agentsim.call", json!(c.call)),
                ];
                if let Some(t) = ended.tokens {
                    attributes.push(attribute("gen_ai.usage.input_tokens", json!(t.input)));
                    attributes.push(attribute("gen_ai.usage.output_tokens", json!(t.output)));
                }
                if !c.faults.is_empty() {
                    attributes.push(attribute("agentsim.faults", json!(c.faults.join(","))));
                }
                if let Some(r) = c.retry {
                    attributes.push(attribute("agentsim.retry.attempt", json!(r.attempt)));
                    attributes.push(attribute("agentsim.retry.waited_us", json!(r.waited_us)));
                }
                let failed = !(200..300).contains(&ended.status) || ended.broken;
                if failed {
                    let kind = if ended.broken {
                        "stream_broken".to_owned()
                    } else {
                        ended.status.to_string()
                    };
                    attributes.push(attribute("error.type", json!(kind)));
                }
                json!({
                    "traceId": hex(&c.session, 32),
                    "spanId": hex(&format!("{}/{}", c.session, c.call), 16),
                    "name": format!("{operation} {}", c.model),
                    "kind": 3,
                    "startTimeUnixNano": start_ns.to_string(),
                    "endTimeUnixNano": end_ns.to_string(),
                    "attributes": attributes,
                    "status": {"code": if failed { 2 } else { 1 }},
                })
            })
            .collect();
        otlp_document("agentsim-proxy", spans)
    }

    fn check(&self, check: &Check, books: &Books, early: usize) -> (bool, String) {
        match *check {
            Check::EarlyRetry => (
                early == 0,
                match early {
                    0 => "every retry waited at least the retry-after it was given".to_owned(),
                    1 => "1 retry came sooner than the retry-after it was given".to_owned(),
                    n => format!("{n} retries came sooner than the retry-after they were given"),
                },
            ),
            Check::RetryStorm { threshold } => {
                let worst = books
                    .calls
                    .iter()
                    .filter_map(|c| c.retry.map(|r| (r.attempt, c)))
                    .max_by_key(|(a, _)| *a);
                match worst {
                    Some((attempt, c)) if attempt > threshold => (
                        false,
                        format!(
                            "call {} of session {} was retry {attempt} of one request (at most {threshold})",
                            c.call, c.session
                        ),
                    ),
                    _ => (true, format!("no request retried more than {threshold} times")),
                }
            }
            Check::Budget {
                cost_pusd,
                tokens,
                calls,
                per_session,
            } => {
                let mut groups: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
                // A budget of calls counts model calls, as cost and tokens come from them only.
                for c in books.calls.iter().filter(|c| c.model_api) {
                    let key = if per_session { c.session.as_str() } else { "the run" };
                    let t = c.ended.as_ref().and_then(|e| e.tokens).unwrap_or_default();
                    let g = groups.entry(key).or_default();
                    g.0 = g.0.saturating_add(c.cost_pusd);
                    g.1 += t.input + t.output;
                    g.2 += 1;
                }
                for (key, (spent, used, made)) in &groups {
                    let over = if cost_pusd.is_some_and(|max| *spent > max) {
                        Some(format!(
                            "spent {} (at most {})",
                            format_usd(*spent),
                            format_usd(cost_pusd.unwrap_or(0))
                        ))
                    } else if tokens.is_some_and(|max| *used > max) {
                        Some(format!("used {used} tokens (at most {})", tokens.unwrap_or(0)))
                    } else if calls.is_some_and(|max| *made > max) {
                        Some(format!("made {made} calls (at most {})", calls.unwrap_or(0)))
                    } else {
                        None
                    };
                    if let Some(over) = over {
                        let whom = if per_session {
                            format!("session {key}")
                        } else {
                            (*key).to_owned()
                        };
                        return (false, format!("{whom} {over}"));
                    }
                }
                (true, "within budget".to_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_is_the_same_method_path_and_body_after_an_error() {
        let ledger = Ledger::new(None).unwrap();
        let failed = |call| {
            ledger.end(
                "s",
                call,
                Ended {
                    status: 500,
                    ..Ended::default()
                },
            )
        };
        let first = ledger.begin("s", "", "GET", "/v1/models", b"", false);
        assert!(first.retry.is_none());
        failed(first.call);
        let other_path = ledger.begin("s", "", "GET", "/v1/files", b"", false);
        assert!(other_path.retry.is_none(), "another path is another request");
        failed(other_path.call);
        let again = ledger.begin("s", "", "GET", "/v1/files", b"", false);
        assert_eq!(again.retry.map(|r| r.attempt), Some(1));
    }
}
