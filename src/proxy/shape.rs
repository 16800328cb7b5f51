//! What the providers' wire formats look like: which API a request speaks, the error a fault
//! answers with in that API's own shape (status, body, `retry-after` and rate-limit headers), the
//! error frame a stream carries after HTTP 200, content faults on an answer, and the usage an
//! answer reports.

use serde_json::{json, Value};

use crate::behavior::llm_faults::provider_error;
use crate::catalogue::faults::FaultKind;
use crate::proxy::faults::ProxyFault;

/// The API a request speaks, told by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI chat completions (`…/chat/completions`), also llama.cpp, vLLM, Ollama.
    ChatCompletions,
    /// OpenAI Responses (`…/responses`).
    Responses,
    /// Anthropic Messages (`…/messages`).
    AnthropicMessages,
    /// Anything else: forwarded and recorded, errors in the OpenAI shape.
    Other,
}

impl Api {
    pub fn of_path(path: &str) -> Api {
        let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Api::ChatCompletions
        } else if path.ends_with("/responses") {
            Api::Responses
        } else if path.ends_with("/messages") {
            Api::AnthropicMessages
        } else {
            Api::Other
        }
    }
}

/// An HTTP answer the proxy makes itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

/// The error a provider fault answers with, in the shape of `api`.
pub fn fault_answer(api: Api, fault: &ProxyFault, request_id: &str) -> Answer {
    let (error, _) = provider_error(fault.kind, fault.retry_after_us);
    let message = match fault.kind {
        FaultKind::LlmRateLimit => "Rate limit reached for requests. Please try again later.",
        FaultKind::LlmTokenRateLimit => "Rate limit reached for tokens per min. Please try again later.",
        FaultKind::LlmQuotaExhausted => "You exceeded your current quota, please check your plan and billing details.",
        FaultKind::LlmOverloaded | FaultKind::LlmOverloaded529 => "The server is overloaded. Please try again later.",
        FaultKind::LlmServerError => "The server had an error while processing your request.",
        FaultKind::LlmAuthError => "Incorrect API key provided.",
        FaultKind::LlmContentFilter => {
            "The response was filtered due to the prompt triggering the content management policy."
        }
        FaultKind::LlmTimeout => "Request timed out.",
        _ => "This model's maximum context length is exceeded. Please reduce the length of the messages.",
    };
    let status = if fault.kind == FaultKind::LlmTimeout {
        504
    } else {
        error.status
    };
    let mut headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("x-agentsim-fault".to_owned(), fault.kind.name().to_owned()),
    ];
    if let Some(after_us) = error.retry_after_us {
        // Whole seconds in `retry-after` (what RFC 9110 allows), milliseconds in OpenAI's own.
        headers.push(("retry-after".to_owned(), after_us.div_ceil(1_000_000).to_string()));
        headers.push(("retry-after-ms".to_owned(), after_us.div_ceil(1000).to_string()));
    }
    let limited = matches!(fault.kind, FaultKind::LlmRateLimit | FaultKind::LlmTokenRateLimit);
    let body = match api {
        Api::AnthropicMessages => {
            headers.push(("request-id".to_owned(), request_id.to_owned()));
            if limited {
                headers.push(("anthropic-ratelimit-requests-remaining".to_owned(), "0".to_owned()));
                headers.push(("anthropic-ratelimit-tokens-remaining".to_owned(), "0".to_owned()));
            }
            let error_type = match status {
                429 => "rate_limit_error",
                529 => "overloaded_error",
                401 => "authentication_error",
                400 => "invalid_request_error",
                504 => "timeout_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id})
        }
        _ => {
            headers.push(("x-request-id".to_owned(), request_id.to_owned()));
            if limited {
                let (scope, limit) = if fault.kind == FaultKind::LlmTokenRateLimit {
                    ("tokens", "30000")
                } else {
                    ("requests", "500")
                };
                let reset = format!("{}s", error.retry_after_us.unwrap_or(0).div_ceil(1_000_000));
                headers.push((format!("x-ratelimit-limit-{scope}"), limit.to_owned()));
                headers.push((format!("x-ratelimit-remaining-{scope}"), "0".to_owned()));
                headers.push((format!("x-ratelimit-reset-{scope}"), reset));
            }
            json!({"error": {"message": message, "type": error.error_type, "param": null, "code": error.code}})
        }
    };
    Answer { status, headers, body }
}

/// An answer the proxy gives when it cannot serve a request (a replay miss, a body too large,
/// an upstream that cannot be reached). `x-should-retry: false` keeps SDKs from retrying it.
pub fn proxy_error(api: Api, status: u16, code: &str, message: &str) -> Answer {
    let body = match api {
        Api::AnthropicMessages => {
            json!({"type": "error", "error": {"type": code, "message": message}})
        }
        _ => json!({"error": {"message": message, "type": "agentsim_proxy_error", "param": null, "code": code}}),
    };
    Answer {
        status,
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("x-should-retry".to_owned(), "false".to_owned()),
        ],
        body,
    }
}

/// The error frame a `stream.error_event` fault sends after HTTP 200, in the shape of `api`.
pub fn stream_error_frame(api: Api) -> String {
    match api {
        Api::AnthropicMessages => format!(
            "event: error\ndata: {}\n\n",
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        ),
        Api::Responses => format!(
            "event: error\ndata: {}\n\n",
            json!({"type": "error", "code": "server_is_overloaded", "message": "The server is overloaded.", "param": null})
        ),
        _ => format!(
            "data: {}\n\n",
            json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": "internal_error"}})
        ),
    }
}

/// Applies a content fault to a chat-completions answer; `false` when the answer has no place
/// for it (another API, no choices, a text fault on tool calls).
pub fn break_answer(body: &mut Value, fault: &ProxyFault) -> bool {
    let Some(message) = body.pointer_mut("/choices/0/message") else {
        return false;
    };
    let mut finish = None;
    let done = match fault.kind {
        FaultKind::LlmEmptyAnswer => {
            message["content"] = json!("");
            message.as_object_mut().map(|m| m.remove("tool_calls"));
            finish = Some("stop");
            true
        }
        FaultKind::LlmRefusal => {
            message["content"] = Value::Null;
            message["refusal"] = json!("I'm sorry, but I can't help with that.");
            message.as_object_mut().map(|m| m.remove("tool_calls"));
            finish = Some("stop");
            true
        }
        FaultKind::LlmTruncated => {
            if let Some(text) = message.get("content").and_then(Value::as_str) {
                let cut: String = text.chars().take(text.chars().count() / 2).collect();
                message["content"] = json!(cut);
            }
            if let Some(args) = message.pointer_mut("/tool_calls/0/function/arguments") {
                *args = json!(half(args.as_str().unwrap_or("")));
            }
            finish = Some("length");
            true
        }
        FaultKind::LlmMalformedToolArgs => match message.pointer_mut("/tool_calls/0/function/arguments") {
            Some(args) => {
                let text = args.as_str().unwrap_or("").to_owned();
                *args = json!(match fault.mode {
                    Some(crate::scenario::MalformedMode::TrailingGarbage) => format!("{text}}}\n```"),
                    _ => half(&text),
                });
                true
            }
            None => false,
        },
        FaultKind::LlmDuplicateToolCallIds => match message.get_mut("tool_calls").and_then(Value::as_array_mut) {
            Some(calls) if calls.len() > 1 => {
                let id = calls[0]["id"].clone();
                for call in calls.iter_mut() {
                    call["id"] = id.clone();
                }
                true
            }
            _ => false,
        },
        FaultKind::LlmHallucinatedTool => {
            let name = fault.tool.clone().unwrap_or_else(|| "lookup_everything".to_owned());
            message["content"] = Value::Null;
            message["tool_calls"] = json!([{
                "id": "call_agentsim_hallucinated",
                "type": "function",
                "function": {"name": name, "arguments": "{}"},
            }]);
            finish = Some("tool_calls");
            true
        }
        _ => false,
    };
    if let Some(reason) = finish {
        if let Some(choice) = body.pointer_mut("/choices/0") {
            choice["finish_reason"] = json!(reason);
        }
    }
    done
}

/// Applies a content fault to a chat-completions stream: its chunks put together into the whole
/// answer, [`break_answer`] on that, and the broken answer cut into chunks again (its text in
/// one, each tool call in one, the finish reason, the upstream's usage, `[DONE]`). `None` when
/// the frames are not a chat-completions stream or the answer has no place for the fault.
pub fn break_stream<'a>(frames: impl IntoIterator<Item = &'a [u8]>, fault: &ProxyFault) -> Option<Vec<Vec<u8>>> {
    let chunks: Vec<Value> = frames.into_iter().filter_map(crate::proxy::sse::frame_json).collect();
    let first = chunks
        .iter()
        .find(|c| c.get("object").and_then(Value::as_str) == Some("chat.completion.chunk"))?;
    let mut content: Option<String> = None;
    let mut refusal: Option<String> = None;
    let mut calls: Vec<Value> = Vec::new();
    let mut finish = Value::Null;
    let mut usage = None;
    for chunk in &chunks {
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            usage = Some(u.clone());
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            continue;
        };
        if let Some(reason) = choice.get("finish_reason").filter(|r| !r.is_null()) {
            finish = reason.clone();
        }
        let Some(delta) = choice.get("delta") else {
            continue;
        };
        let append = |into: &mut Option<String>, key: &str| {
            if let Some(text) = delta.get(key).and_then(Value::as_str) {
                into.get_or_insert_with(String::new).push_str(text);
            }
        };
        append(&mut content, "content");
        append(&mut refusal, "refusal");
        for part in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let index = part.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            if index >= 128 {
                continue;
            }
            while calls.len() <= index {
                calls.push(json!({"id": "", "type": "function", "function": {"name": "", "arguments": ""}}));
            }
            let call = &mut calls[index];
            if let Some(id) = part.get("id").and_then(Value::as_str) {
                call["id"] = json!(id);
            }
            for key in ["name", "arguments"] {
                if let Some(more) = part.pointer(&format!("/function/{key}")).and_then(Value::as_str) {
                    let so_far = call["function"][key].as_str().unwrap_or("").to_owned();
                    call["function"][key] = json!(so_far + more);
                }
            }
        }
    }
    let mut message = json!({"role": "assistant", "content": content});
    if let Some(refusal) = refusal {
        message["refusal"] = json!(refusal);
    }
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let mut answer = json!({"choices": [{"index": 0, "message": message, "finish_reason": finish}]});
    if !break_answer(&mut answer, fault) {
        return None;
    }
    let message = &answer["choices"][0]["message"];
    let chunk = |choices: Value| {
        let mut chunk = json!({"object": "chat.completion.chunk", "choices": choices});
        for key in ["id", "created", "model", "system_fingerprint"] {
            if let Some(value) = first.get(key) {
                chunk[key] = value.clone();
            }
        }
        chunk
    };
    let frame = |chunk: Value| format!("data: {chunk}\n\n").into_bytes();
    let mut delta = json!({"role": "assistant", "content": message["content"]});
    if let Some(refusal) = message.get("refusal") {
        delta["refusal"] = refusal.clone();
    }
    let mut out = vec![frame(chunk(
        json!([{"index": 0, "delta": delta, "finish_reason": null}]),
    ))];
    for (index, call) in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mut part = call.clone();
        part["index"] = json!(index);
        out.push(frame(chunk(
            json!([{"index": 0, "delta": {"tool_calls": [part]}, "finish_reason": null}]),
        )));
    }
    let finish = &answer["choices"][0]["finish_reason"];
    out.push(frame(chunk(
        json!([{"index": 0, "delta": {}, "finish_reason": finish}]),
    )));
    if let Some(usage) = usage {
        let mut last = chunk(json!([]));
        last["usage"] = usage;
        out.push(frame(last));
    }
    out.push(b"data: [DONE]\n\n".to_vec());
    Some(out)
}

/// Whether a stream frame carries a piece of the answer — text or tool-call arguments — in any
/// of the APIs' chunk shapes (chat completions' `delta`, Responses' `delta`, Anthropic's
/// `text_delta` and `input_json_delta`): the frames a duplicate doubles in the reassembly.
pub fn frame_carries_text(frame: &[u8]) -> bool {
    let Some(chunk) = crate::proxy::sse::frame_json(frame) else {
        return false;
    };
    let piece = |pointer: &str| {
        chunk
            .pointer(pointer)
            .and_then(Value::as_str)
            .is_some_and(|text| !text.is_empty())
    };
    let arguments = chunk
        .pointer("/choices/0/delta/tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|call| {
            call.pointer("/function/arguments")
                .and_then(Value::as_str)
                .is_some_and(|a| !a.is_empty())
        });
    arguments
        || [
            "/choices/0/delta/content",
            "/delta",
            "/delta/text",
            "/delta/partial_json",
        ]
        .into_iter()
        .any(piece)
}

fn half(text: &str) -> String {
    text.chars().take(text.chars().count() / 2).collect()
}

/// Tokens an answer reports, summed over its parts: `(input, cached input, output)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub cached: u64,
    pub output: u64,
}

impl std::ops::Add for Tokens {
    type Output = Tokens;

    fn add(self, other: Tokens) -> Tokens {
        Tokens {
            input: self.input + other.input,
            cached: self.cached + other.cached,
            output: self.output + other.output,
        }
    }
}

impl Tokens {
    /// The usage in one JSON answer or stream frame, where it has one: OpenAI's `usage`
    /// (`prompt_tokens`, `completion_tokens`), the Responses API's and Anthropic's
    /// (`input_tokens`, `output_tokens`), also under `response` or `message`.
    pub fn of(value: &Value) -> Option<Tokens> {
        let usage = value
            .get("usage")
            .or_else(|| value.pointer("/response/usage"))
            .or_else(|| value.pointer("/message/usage"))
            .filter(|u| u.is_object())?;
        let n = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| usage.pointer(k).and_then(Value::as_u64))
                .unwrap_or(0)
        };
        Some(Tokens {
            input: n(&["/prompt_tokens", "/input_tokens"]),
            cached: n(&[
                "/prompt_tokens_details/cached_tokens",
                "/input_tokens_details/cached_tokens",
                "/cache_read_input_tokens",
            ]),
            output: n(&["/completion_tokens", "/output_tokens"]),
        })
    }

    /// The larger of each count: stream frames repeat running totals (Anthropic's
    /// `message_delta`) or give them once (OpenAI's last chunk).
    pub fn max(self, other: Tokens) -> Tokens {
        Tokens {
            input: self.input.max(other.input),
            cached: self.cached.max(other.cached),
            output: self.output.max(other.output),
        }
    }
}

/// The text of a request's latest message (what `message_contains` looks at).
pub fn latest_text(request: &Value) -> String {
    let last = request
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .or_else(|| {
            request
                .get("input")
                .and_then(|i| i.as_array().and_then(|a| a.last()).or(Some(i)))
        });
    match last {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(message) => match message.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        },
    }
}

/// The session a request belongs to when the app does not say: a hash of its instructions and
/// its first user message, which every later call of the same conversation repeats.
pub fn session_of(request: &Value) -> String {
    let first = |role: &str| -> Value {
        request
            .get("messages")
            .or_else(|| request.get("input"))
            .and_then(Value::as_array)
            .and_then(|m| m.iter().find(|x| x.get("role").and_then(Value::as_str) == Some(role)))
            .and_then(|m| m.get("content"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let instructions = request
        .get("system")
        .or_else(|| request.get("instructions"))
        .cloned()
        .unwrap_or_else(|| {
            let system = first("system");
            if system.is_null() {
                first("developer")
            } else {
                system
            }
        });
    let mut user = first("user");
    if user.is_null() {
        if let Some(Value::String(input)) = request.get("input") {
            user = Value::String(input.clone());
        }
    }
    let key = json!([instructions, user]).to_string();
    format!("s-{}", &blake3::hash(key.as_bytes()).to_hex()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::faults::FaultsFile;

    fn fault(kind: &str) -> ProxyFault {
        let text = format!("[[fault]]\nkind = \"{kind}\"\non_message = 1\n");
        FaultsFile::parse("f.toml", &text).unwrap().faults.remove(0)
    }

    #[test]
    fn a_rate_limit_speaks_each_providers_shape() {
        let openai = fault_answer(Api::ChatCompletions, &fault("llm.rate_limit"), "req_1");
        assert_eq!(openai.status, 429);
        assert_eq!(openai.body["error"]["code"], "rate_limit_exceeded");
        assert!(openai.headers.contains(&("retry-after".to_owned(), "2".to_owned())));
        assert!(openai
            .headers
            .iter()
            .any(|(k, v)| k == "x-ratelimit-remaining-requests" && v == "0"));
        let anthropic = fault_answer(Api::AnthropicMessages, &fault("llm.overloaded_529"), "req_2");
        assert_eq!(anthropic.status, 529);
        assert_eq!(anthropic.body["error"]["type"], "overloaded_error");
    }

    #[test]
    fn sessions_are_the_same_for_later_calls_of_one_conversation() {
        let first =
            json!({"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]});
        let later = json!({"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yes"}, {"role": "user", "content": "more"}]});
        let other =
            json!({"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "bye"}]});
        assert_eq!(session_of(&first), session_of(&later));
        assert_ne!(session_of(&first), session_of(&other));
        assert_eq!(latest_text(&later), "more");
    }

    #[test]
    fn usage_is_read_from_each_shape() {
        let openai = json!({"usage": {"prompt_tokens": 10, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}}});
        assert_eq!(
            Tokens::of(&openai),
            Some(Tokens {
                input: 10,
                cached: 4,
                output: 3
            })
        );
        let anthropic = json!({"type": "message_start", "message": {"usage": {"input_tokens": 7, "output_tokens": 1}}});
        assert_eq!(
            Tokens::of(&anthropic),
            Some(Tokens {
                input: 7,
                cached: 0,
                output: 1
            })
        );
        assert_eq!(Tokens::of(&json!({"usage": null})), None);
    }
}
