//! A stand-in upstream that speaks OpenAI chat completions, for trying the proxy offline and for
//! its tests and benchmark: answers are a pure function of the request (a tool call when tools
//! are offered and the last message is not a tool result, else a text that names the request),
//! streamed as the real API streams them when asked.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};

type Body = BoxBody<Bytes, Infallible>;

/// How the stub answers.
#[derive(Debug, Clone, Copy)]
pub struct StubConfig {
    /// Time between two frames of a streamed answer.
    pub frame_gap: Duration,
    /// Time before any answer starts.
    pub latency: Duration,
}

impl Default for StubConfig {
    fn default() -> StubConfig {
        StubConfig {
            frame_gap: Duration::from_millis(5),
            latency: Duration::ZERO,
        }
    }
}

/// Serves until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, config: StubConfig) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| answer(request, config));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

fn json_response(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body.to_string()))
        .expect("a valid response")
}

async fn answer(request: Request<Incoming>, config: StubConfig) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    let bytes = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    if path.ends_with("/models") {
        return Ok(json_response(
            200,
            &json!({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "owned_by": "agentsim-stub"}]}),
        ));
    }
    if !path.ends_with("/chat/completions") {
        return Ok(json_response(
            404,
            &json!({"error": {"message": format!("the stub serves /v1/chat/completions, not {path}"), "type": "invalid_request_error", "param": null, "code": "not_found"}}),
        ));
    }
    let Ok(request) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(json_response(
            400,
            &json!({"error": {"message": "expected a JSON body", "type": "invalid_request_error", "param": null, "code": null}}),
        ));
    };
    let reply = Reply::of(&request);
    if request.get("stream") == Some(&Value::Bool(true)) {
        let usage = request.pointer("/stream_options/include_usage") == Some(&Value::Bool(true));
        let frames = reply.frames(usage);
        let (mut sender, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(4);
        let gap = config.frame_gap;
        tokio::spawn(async move {
            for (i, frame) in frames.into_iter().enumerate() {
                if i > 0 && !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
                if sender.send_data(Bytes::from(frame)).await.is_err() {
                    return;
                }
            }
        });
        return Ok(Response::builder()
            .status(200)
            .header("content-type", "text/event-stream")
            .body(body.boxed())
            .expect("a valid response"));
    }
    Ok(json_response(200, &reply.completion()))
}

/// What the stub says to one request.
struct Reply {
    id: String,
    model: String,
    text: Option<String>,
    tool: Option<(String, String)>,
    prompt_tokens: u64,
}

impl Reply {
    fn of(request: &Value) -> Reply {
        let messages = request
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let last = messages.last().cloned().unwrap_or(Value::Null);
        let last_text = last.get("content").and_then(Value::as_str).unwrap_or("").to_owned();
        let tool = request
            .pointer("/tools/0/function/name")
            .and_then(Value::as_str)
            .filter(|_| last.get("role").and_then(Value::as_str) != Some("tool"))
            .map(|name| {
                let property = request
                    .pointer("/tools/0/function/parameters/properties")
                    .and_then(Value::as_object)
                    .and_then(|p| p.keys().next().cloned())
                    .unwrap_or_else(|| "input".to_owned());
                (name.to_owned(), json!({ property: last_text }).to_string())
            });
        let text = tool
            .is_none()
            .then(|| format!("Answer {} to: {last_text}", messages.len()));
        let prompt_chars: usize = messages.iter().map(|m| m.to_string().len()).sum();
        Reply {
            id: format!(
                "chatcmpl-stub-{}",
                &blake3::hash(request.to_string().as_bytes()).to_hex()[..16]
            ),
            model: request
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("gpt-4o-mini")
                .to_owned(),
            text,
            tool,
            prompt_tokens: (prompt_chars as u64).div_ceil(4).max(1),
        }
    }

    fn completion_tokens(&self) -> u64 {
        let chars =
            self.text.as_ref().map_or(0, String::len) + self.tool.as_ref().map_or(0, |(n, a)| n.len() + a.len());
        (chars as u64).div_ceil(4).max(1)
    }

    fn usage(&self) -> Value {
        let out = self.completion_tokens();
        json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": out, "total_tokens": self.prompt_tokens + out})
    }

    fn completion(&self) -> Value {
        let (message, finish) = match (&self.text, &self.tool) {
            (_, Some((name, args))) => (
                json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_stub_1", "type": "function", "function": {"name": name, "arguments": args}}]}),
                "tool_calls",
            ),
            (text, None) => (json!({"role": "assistant", "content": text}), "stop"),
        };
        json!({
            "id": self.id, "object": "chat.completion", "created": 1_700_000_000, "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
            "usage": self.usage(),
        })
    }

    fn frames(&self, usage: bool) -> Vec<String> {
        let chunk = |delta: Value, finish: Value| {
            json!({"id": self.id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}]})
        };
        let mut frames = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
        match (&self.text, &self.tool) {
            (_, Some((name, args))) => {
                frames.push(chunk(
                    json!({"tool_calls": [{"index": 0, "id": "call_stub_1", "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                ));
                let chars: Vec<char> = args.chars().collect();
                for piece in chars.chunks(8) {
                    let piece: String = piece.iter().collect();
                    frames.push(chunk(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                        Value::Null,
                    ));
                }
                frames.push(chunk(json!({}), json!("tool_calls")));
            }
            (text, None) => {
                for word in text.as_deref().unwrap_or("").split_inclusive(' ') {
                    frames.push(chunk(json!({"content": word}), Value::Null));
                }
                frames.push(chunk(json!({}), json!("stop")));
            }
        }
        if usage {
            frames.push(json!({"id": self.id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": self.model, "choices": [], "usage": self.usage()}));
        }
        let mut out: Vec<String> = frames.into_iter().map(|f| format!("data: {f}\n\n")).collect();
        out.push("data: [DONE]\n\n".to_owned());
        out
    }
}
