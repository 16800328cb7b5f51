//! The live model: an OpenAI-compatible `/v1/chat/completions` client, and the mapping of what a
//! server answers (a completion, an HTTP error, a timeout, a broken body) onto the same answers
//! and provider errors the mock produces, so the agent's policies treat both alike.
//!
//! This is the only place in a run that reads the wall clock: the measured latency of a call
//! goes into the cassette and becomes the call's virtual duration.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::tokens::estimate_tokens;
use crate::protocol::llm::wire_id;
use crate::protocol::Caller;
use crate::protocol::{
    ChatMessage, Delegation, FinishReason, LlmRequest, ModelAnswer, ProviderError, Role, ToolArgs, ToolCall, ToolRef,
};
use crate::scenario::endpoint::check_base_url;
use crate::scenario::{AgentIdx, Endpoint, LlmIdx, Scenario, ToolChoice};

/// Prefix of the tool a live model calls to hand the conversation to another agent.
pub const HANDOFF_TOOL_PREFIX: &str = "transfer_to_";

/// Response headers worth keeping: they change what a client does next.
const KEPT_HEADERS: [&str; 6] = [
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
];

/// Replaces a secret wherever it appears in recorded text.
pub const REDACTED: &str = "[REDACTED]";

/// Prefix of the tool a live model calls to delegate a task to another agent (agents as tools).
pub const DELEGATE_TOOL_PREFIX: &str = "ask_";

/// The chat-completions request for one model call, as the OpenAI Agents SDK would send it: the
/// agent's instructions as the system message, the whole transcript with the real call ids and
/// arguments, the tools with their descriptions and parameter schemas (and a `transfer_to_<agent>`
/// tool per handoff, an `ask_<agent>` tool per delegate), and `tool_choice`. Canonical JSON (keys
/// sorted, nothing volatile): the same on every run for the same request.
pub fn build_request(scenario: &Scenario, llm: LlmIdx, request: &LlmRequest) -> Value {
    let spec = &scenario.llms[llm];
    let instructions = request.caller.instructions(scenario);
    let mut messages = Vec::with_capacity(request.transcript.len() + 1);
    if !instructions.is_empty() {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    for message in request.transcript.messages() {
        messages.push(chat_message(message, spec.endpoint.assistant_content_empty));
    }
    let tools = tool_definitions(scenario, request.caller);
    let mut body = Map::new();
    body.insert("model".into(), json!(spec.model));
    body.insert("messages".into(), Value::Array(messages));
    if let (false, Some(agent)) = (tools.is_empty(), request.caller.agent()) {
        body.insert("tools".into(), Value::Array(tools));
        let choice = match &scenario.agents[agent].tool_choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
        };
        body.insert("tool_choice".into(), choice);
    }
    if let Some(t) = spec.endpoint.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(n) = spec.endpoint.max_tokens {
        body.insert("max_tokens".into(), json!(n));
    }
    if let Some(n) = spec.endpoint.max_completion_tokens {
        body.insert("max_completion_tokens".into(), json!(n));
    }
    body.insert("stream".into(), json!(false));
    Value::Object(body)
}

/// One transcript message in the chat-completions shape. An assistant message with only tool
/// calls has `content: null`, or `""` for servers that reject null.
fn chat_message(message: &ChatMessage, empty_content: bool) -> Value {
    match message.role {
        Role::User => json!({"role": "user", "content": &*message.content}),
        Role::Tool => json!({
            "role": "tool",
            "tool_call_id": message.tool_call_id.as_deref().unwrap_or(""),
            "content": &*message.content,
        }),
        Role::Assistant if message.tool_calls.is_empty() => json!({"role": "assistant", "content": &*message.content}),
        Role::Assistant => {
            let calls: Vec<Value> = message
                .tool_calls
                .iter()
                .map(|c| json!({"id": &*c.id, "type": "function", "function": {"name": &*c.name, "arguments": &*c.arguments}}))
                .collect();
            let content = match (message.content.is_empty(), empty_content) {
                (false, _) => json!(&*message.content),
                (true, true) => json!(""),
                (true, false) => Value::Null,
            };
            json!({"role": "assistant", "content": content, "tool_calls": calls})
        }
    }
}

/// The tools an agent offers its model: its own, one per handoff, one per delegate. A user
/// simulator has none.
pub fn tool_definitions(scenario: &Scenario, caller: Caller) -> Vec<Value> {
    let Some(agent) = caller.agent() else {
        return Vec::new();
    };
    let agent = &scenario.agents[agent];
    let mut tools = Vec::new();
    for &tool in &agent.tools {
        let tool = &scenario.tools[tool];
        let parameters = tool
            .parameters
            .clone()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}, "additionalProperties": true}));
        tools.push(json!({"type": "function", "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": parameters,
        }}));
    }
    for &to in &agent.handoffs {
        let name = &scenario.agents[to].name;
        tools.push(json!({"type": "function", "function": {
            "name": format!("{HANDOFF_TOOL_PREFIX}{name}"),
            "description": format!("Handoff to the {name} agent to handle the request."),
            "parameters": {"type": "object", "properties": {}, "additionalProperties": false},
        }}));
    }
    for &to in &agent.delegates {
        let name = &scenario.agents[to].name;
        tools.push(json!({"type": "function", "function": {
            "name": format!("{DELEGATE_TOOL_PREFIX}{name}"),
            "description": format!("Ask the {name} agent to do a task and wait for its answer."),
            "parameters": {
                "type": "object",
                "properties": {"input": {"type": "string", "description": "The task, in full."}},
                "required": ["input"],
                "additionalProperties": false,
            },
        }}));
    }
    tools
}

/// What happened on the wire for one call: exactly what a cassette stores and replays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// HTTP status; 0 when no response came (see `transport_error`).
    pub status: u16,
    /// Only the headers that matter (retry-after, rate-limit counters), lower-case names.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The response body, as JSON when it parsed.
    #[serde(default)]
    pub response: Option<Value>,
    /// The response body as text, when it was not JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
    /// `timeout`, `connect`, `too_large` or `io` when the call failed below HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_error: Option<String>,
    /// Wall-clock time from sending the request to the end of the body.
    pub latency_us: u64,
}

/// A client for one live model. Holds the API key, which it never prints, traces or records.
#[derive(Clone)]
pub struct LiveClient {
    url: String,
    endpoint: Endpoint,
    api_key: Option<String>,
}

impl std::fmt::Debug for LiveClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveClient")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| REDACTED))
            .finish()
    }
}

impl LiveClient {
    /// A client for `endpoint`, reading the key from the environment variable it names.
    pub fn new(llm_name: &str, endpoint: &Endpoint) -> Result<LiveClient, String> {
        check_base_url(&endpoint.base_url, endpoint.allow_insecure_http)
            .map_err(|e| format!("llm \"{llm_name}\": {e}"))?;
        let api_key = match &endpoint.api_key_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(key) if !key.is_empty() => Some(key),
                _ => {
                    return Err(format!(
                        "llm \"{llm_name}\": the environment variable {var} (api_key_env) is not set or empty"
                    ))
                }
            },
        };
        Ok(LiveClient {
            url: format!("{}/chat/completions", endpoint.base_url),
            endpoint: endpoint.clone(),
            api_key,
        })
    }

    /// Sends one request and waits for the whole answer. Runs on a thread of its own, outside
    /// the async runtime that carries the actors; the scheduler waits for this turn anyway. Once
    /// `interrupt` is set (Ctrl-C) it stops waiting: the call ends as `interrupted`, and the thread
    /// is left to finish on its own.
    pub fn call(&self, body: &Value, interrupt: Option<&AtomicUsize>) -> Exchange {
        const POLL: Duration = Duration::from_millis(20);
        let (sender, receiver) = std::sync::mpsc::channel();
        let (client, body) = (self.clone(), body.clone());
        let started = Instant::now();
        std::thread::spawn(move || {
            let _ = sender.send(client.call_blocking(&body));
        });
        loop {
            match receiver.recv_timeout(POLL) {
                Ok(exchange) => return exchange,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return failed_exchange("io", 0),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if interrupt.is_some_and(|flag| flag.load(Ordering::SeqCst) != 0) {
                        let elapsed_us = started.elapsed().as_micros().min(u64::MAX as u128) as u64;
                        return failed_exchange("interrupted", elapsed_us);
                    }
                }
            }
        }
    }

    /// Checks the endpoint before a run: `GET {base_url}/models`, which OpenAI-compatible servers
    /// answer. A refused connection, a rejected key or a 404 (a base URL without `/v1`, usually)
    /// is an error that says so; any other answer lets the run go ahead.
    pub fn check(&self) -> Result<(), String> {
        let base = &self.endpoint.base_url;
        let url = format!("{base}/models");
        let timeout = Duration::from_micros(self.endpoint.timeout_us).min(Duration::from_secs(10));
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("agentsim/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up an HTTP client: {e}"))?;
        let mut request = client.get(&url);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        match request.send() {
            Err(e) if e.is_connect() => Err(format!("cannot connect to {base} (is the server running?)")),
            Err(e) if e.is_timeout() => Err(format!("{url} did not answer within {} ms", timeout.as_millis())),
            Err(_) => Err(format!("GET {url} failed before an answer came")),
            Ok(response) => match response.status().as_u16() {
                401 | 403 => Err(format!(
                    "GET {url} answered {}: the server refused the API key",
                    response.status()
                )),
                404 => Err(format!(
                    "GET {url} answered 404 Not Found: base_url must end with the API version, such as {base}/v1"
                )),
                _ => Ok(()),
            },
        }
    }

    fn call_blocking(&self, body: &Value) -> Exchange {
        let timeout = Duration::from_micros(self.endpoint.timeout_us);
        let client = match reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // A redirect could carry the key to another host: follow none.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("agentsim/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(client) => client,
            Err(_) => return failed_exchange("io", 0),
        };
        let mut builder = client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        let started = Instant::now();
        let elapsed_us = || started.elapsed().as_micros().min(u64::MAX as u128) as u64;
        let response = match builder.send() {
            Ok(response) => response,
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "io"
                };
                return failed_exchange(kind, elapsed_us());
            }
        };
        let status = response.status().as_u16();
        let mut headers = BTreeMap::new();
        for name in KEPT_HEADERS {
            if let Some(value) = response.headers().get(name).and_then(|v| v.to_str().ok()) {
                headers.insert(name.to_owned(), value.to_owned());
            }
        }
        let limit = self.endpoint.response_bytes_max;
        let mut bytes = Vec::new();
        let read = response.take(limit.saturating_add(1)).read_to_end(&mut bytes);
        let latency_us = elapsed_us();
        if let Err(e) = read {
            let kind = if is_timeout(&e) { "timeout" } else { "io" };
            return Exchange {
                status,
                headers,
                ..failed_exchange(kind, latency_us)
            };
        }
        if bytes.len() as u64 > limit {
            return Exchange {
                status,
                headers,
                ..failed_exchange("too_large", latency_us)
            };
        }
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(key) = &self.api_key {
            // A server that echoes the key must not get it into a cassette.
            text = text.replace(key.as_str(), REDACTED);
        }
        let (response, body_text) = match serde_json::from_str::<Value>(&text) {
            Ok(value) => (Some(value), None),
            Err(_) => (None, Some(text)),
        };
        Exchange {
            status,
            headers,
            response,
            body_text,
            transport_error: None,
            latency_us,
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut || e.to_string().contains("timed out")
}

fn failed_exchange(kind: &str, latency_us: u64) -> Exchange {
    Exchange {
        status: 0,
        headers: BTreeMap::new(),
        response: None,
        body_text: None,
        transport_error: Some(kind.to_owned()),
        latency_us,
    }
}

/// A model call's outcome in agentsim's terms.
#[derive(Debug, Clone)]
pub struct Interpreted {
    pub answer: ModelAnswer,
    pub finish_reason: FinishReason,
    pub input_tokens: u32,
    /// The part of `input_tokens` the server says it read from its prompt cache.
    pub cached_input_tokens: u32,
    pub output_tokens: u32,
    /// The server reported `usage`; otherwise the tokens are agentsim's estimate.
    pub usage_reported: bool,
}

/// Maps a server's answer onto agentsim's answers and provider errors. A pure function of the
/// exchange, so a replayed call gives exactly what the live one gave.
pub fn interpret(
    scenario: &Scenario,
    request: &LlmRequest,
    exchange: &Exchange,
    next_call_id: &mut u32,
) -> Interpreted {
    let error = |e: ProviderError| Interpreted {
        answer: ModelAnswer::Error(Box::new(e)),
        finish_reason: FinishReason::Stop,
        input_tokens: 0,
        cached_input_tokens: 0,
        output_tokens: 0,
        usage_reported: false,
    };
    if let Some(kind) = &exchange.transport_error {
        let (e, said) = match kind.as_str() {
            "timeout" => (ProviderError::client_timeout(), "no answer within the timeout"),
            "connect" => (
                provider(503, "connection_error", "connection_error", None),
                "could not connect to the server",
            ),
            "too_large" => (
                provider(502, "server_error", "response_too_large", None),
                "the response was larger than max_response_bytes",
            ),
            "interrupted" => (
                provider(499, "interrupted", "interrupted", None),
                "the run was interrupted during the call",
            ),
            _ => (
                provider(502, "server_error", "transport_error", None),
                "the connection failed mid-answer",
            ),
        };
        return error(with_message(e, said.to_owned()));
    }
    if exchange.status != 200 {
        let e = map_http_error(exchange);
        let said = server_message(exchange);
        return error(with_message(e, said));
    }
    match exchange
        .response
        .as_ref()
        .and_then(|r| parse_completion(scenario, request.caller, r, next_call_id))
    {
        Some(mut done) => {
            if done.input_tokens == 0 {
                done.input_tokens = request.input_tokens;
            }
            done
        }
        None => {
            let e = provider(502, "server_error", "malformed_response", None);
            error(with_message(
                e,
                format!("not a chat completion: {}", body_start(exchange)),
            ))
        }
    }
}

fn with_message(mut error: ProviderError, message: String) -> ProviderError {
    error.message = Some(Arc::new(message));
    error
}

/// What a server said about an error: `error.message` (or `error` as text, or `detail`), else the
/// start of its body; with a hint for a 404, the usual sign of a base URL without `/v1`.
fn server_message(exchange: &Exchange) -> String {
    let body = exchange.response.as_ref();
    let said = body
        .and_then(|b| b.get("error"))
        .and_then(|e| e.get("message").and_then(Value::as_str).or(e.as_str()))
        .or_else(|| body.and_then(|b| b.get("detail")).and_then(Value::as_str))
        .map(str::to_owned)
        .unwrap_or_else(|| body_start(exchange));
    if exchange.status == 404 {
        format!("{said} (HTTP 404: check that base_url ends with the API version, such as /v1)")
    } else {
        said
    }
}

/// The first 200 characters of a body, as text.
fn body_start(exchange: &Exchange) -> String {
    const CHARS_MAX: usize = 200;
    let text = match (&exchange.response, &exchange.body_text) {
        (Some(value), _) => value.to_string(),
        (None, Some(text)) => text.clone(),
        (None, None) => String::new(),
    };
    let mut start: String = text.chars().take(CHARS_MAX).collect();
    if text.chars().count() > CHARS_MAX {
        start.push('…');
    }
    if start.is_empty() {
        format!("an empty body (HTTP {})", exchange.status)
    } else {
        start
    }
}

fn provider(status: u16, error_type: &'static str, code: &'static str, retry_after_us: Option<u64>) -> ProviderError {
    ProviderError {
        status,
        error_type,
        code,
        retry_after_us,
        message: None,
    }
}

/// An HTTP error status and body, as the provider error the mock would have produced.
fn map_http_error(exchange: &Exchange) -> ProviderError {
    let body_error = exchange.response.as_ref().and_then(|r| r.get("error"));
    let field = |name: &str| {
        body_error
            .and_then(|e| e.get(name))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let (code, error_type, message) = (field("code"), field("type"), field("message"));
    let retry_after_us = retry_after_us(&exchange.headers);
    match exchange.status {
        429 if code == "insufficient_quota" || error_type == "insufficient_quota" => {
            provider(429, "insufficient_quota", "insufficient_quota", None)
        }
        429 if error_type == "tokens" || message.contains("tokens per min") => {
            provider(429, "tokens", "rate_limit_exceeded", retry_after_us)
        }
        429 => provider(429, "requests", "rate_limit_exceeded", retry_after_us),
        400 if code == "context_length_exceeded" || message.contains("context length") => {
            provider(400, "invalid_request_error", "context_length_exceeded", None)
        }
        400 if code == "content_filter" || code == "content_policy_violation" => {
            provider(400, "invalid_request_error", "content_filter", None)
        }
        401 | 403 => provider(exchange.status, "invalid_request_error", "invalid_api_key", None),
        408 => ProviderError::client_timeout(),
        503 => provider(503, "service_unavailable_error", "server_is_overloaded", retry_after_us),
        529 => provider(529, "overloaded_error", "overloaded_error", retry_after_us),
        s if s >= 500 => provider(s, "server_error", "internal_error", retry_after_us),
        s => provider(s, "invalid_request_error", "invalid_request", None),
    }
}

/// `retry-after-ms`, or `retry-after` in seconds (fractions allowed); HTTP dates are ignored.
fn retry_after_us(headers: &BTreeMap<String, String>) -> Option<u64> {
    const RETRY_AFTER_US_MAX: f64 = 86_400e6;
    let parse = |name: &str, scale: f64| {
        headers
            .get(name)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| (v * scale).min(RETRY_AFTER_US_MAX) as u64)
    };
    parse("retry-after-ms", 1e3).or_else(|| parse("retry-after", 1e6))
}

/// A `200` body: the first choice's tool calls (a `transfer_to_<agent>` call is a handoff, an
/// `ask_<agent>` call a delegation), or its text; its finish reason and usage. `None` when the body
/// is not a chat completion.
fn parse_completion(scenario: &Scenario, caller: Caller, body: &Value, next_call_id: &mut u32) -> Option<Interpreted> {
    let choice = body.get("choices")?.as_array()?.first()?;
    let message = choice.get("message")?.as_object()?;
    let content = message.get("content").and_then(|c| c.as_str()).unwrap_or("");
    let usage = body.get("usage").filter(|u| u.is_object());
    let tokens = |path: &[&str]| {
        let mut value = usage?;
        for name in path {
            value = value.get(name)?;
        }
        value.as_u64().map(|v| v.min(u32::MAX as u64) as u32)
    };
    let none: &[usize] = &[];
    let (tools, handoffs, delegates) = match caller.agent() {
        Some(agent) => {
            let spec = &scenario.agents[agent];
            (&spec.tools[..], &spec.handoffs[..], &spec.delegates[..])
        }
        None => (none, none, none),
    };
    let mut calls = Vec::new();
    let mut delegations = Vec::new();
    let mut handoff = None;
    let raw_calls = message
        .get("tool_calls")
        .and_then(|c| c.as_array())
        .map_or(&[][..], |c| c.as_slice());
    for raw in raw_calls {
        let function = raw.get("function")?;
        let name = function.get("name")?.as_str()?;
        let arguments = match function.get("arguments") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Object(map)) => Value::Object(map.clone()).to_string(),
            _ => String::new(),
        };
        let id = *next_call_id;
        *next_call_id += 1;
        let call_id: Arc<str> = match raw.get("id").and_then(|i| i.as_str()) {
            Some(given) if !given.is_empty() => Arc::from(given),
            _ => wire_id(id),
        };
        let agent_named = |prefix: &str, among: &[AgentIdx]| {
            let target = name.strip_prefix(prefix)?;
            among.iter().copied().find(|&a| scenario.agents[a].name == target)
        };
        if let Some(to) = agent_named(HANDOFF_TOOL_PREFIX, handoffs) {
            handoff.get_or_insert((to, call_id));
            continue;
        }
        let parsed = serde_json::from_str::<Value>(&arguments);
        if let Some(to) = agent_named(DELEGATE_TOOL_PREFIX, delegates) {
            let task = match &parsed {
                Ok(Value::Object(map)) => map.get("input").and_then(|v| v.as_str()).unwrap_or("").to_owned(),
                _ => arguments.clone(),
            };
            delegations.push(Delegation {
                to,
                task: Arc::from(task),
                call_id,
            });
            continue;
        }
        let args = match parsed {
            Ok(Value::Object(map)) => ToolArgs::json(map),
            _ if arguments.trim().is_empty() => ToolArgs::json(Map::new()),
            _ => ToolArgs::Malformed(Arc::from(arguments.as_str())),
        };
        let tool = match tools.iter().find(|&&t| scenario.tools[t].name == name) {
            Some(&t) => ToolRef::Known(t),
            None => ToolRef::Unknown(Arc::from(name)),
        };
        calls.push(ToolCall {
            id,
            wire_id: call_id,
            tool,
            args,
            arguments: Arc::from(arguments),
        });
    }
    let finish = choice.get("finish_reason").and_then(|f| f.as_str()).unwrap_or("");
    // One kind of step at a time, as agent loops take them: tools first, then delegation, then
    // a handoff; calls of another kind in the same message are not run.
    let answer = if !calls.is_empty() {
        ModelAnswer::ToolCalls(calls)
    } else if !delegations.is_empty() {
        ModelAnswer::Delegate(delegations)
    } else if let Some((to, call_id)) = handoff {
        ModelAnswer::Handoff { to, call_id }
    } else {
        ModelAnswer::Text(Arc::from(content))
    };
    let finish_reason = match finish {
        "length" => FinishReason::Length,
        "content_filter" => FinishReason::ContentFilter,
        _ if matches!(answer, ModelAnswer::ToolCalls(_)) => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    };
    let output_tokens = tokens(&["completion_tokens"]).unwrap_or_else(|| estimate_tokens(content).max(1));
    Some(Interpreted {
        answer,
        finish_reason,
        input_tokens: tokens(&["prompt_tokens"]).unwrap_or(0),
        cached_input_tokens: tokens(&["prompt_tokens_details", "cached_tokens"]).unwrap_or(0),
        output_tokens,
        usage_reported: tokens(&["prompt_tokens"]).is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_refused_for_a_remote_host_and_allowed_for_loopback() {
        assert!(check_base_url("http://127.0.0.1:8080/v1", false).is_ok());
        assert!(check_base_url("http://localhost:11434/v1", false).is_ok());
        assert!(check_base_url("http://[::1]:8000/v1", false).is_ok());
        assert!(check_base_url("https://api.openai.com/v1", false).is_ok());
        let refused = check_base_url("http://example.com/v1", false).unwrap_err();
        assert!(refused.contains("allow_insecure_http"), "{refused}");
        assert!(check_base_url("http://example.com/v1", true).is_ok());
        assert!(check_base_url("ftp://example.com/v1", true).is_err());
        assert!(check_base_url("not a url", true).is_err());
    }

    #[test]
    fn retry_after_reads_seconds_fractions_and_milliseconds() {
        let headers = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(retry_after_us(&headers(&[("retry-after", "2")])), Some(2_000_000));
        assert_eq!(retry_after_us(&headers(&[("retry-after", "0.5")])), Some(500_000));
        assert_eq!(
            retry_after_us(&headers(&[("retry-after", "2"), ("retry-after-ms", "150")])),
            Some(150_000)
        );
        assert_eq!(
            retry_after_us(&headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")])),
            None
        );
    }
}
