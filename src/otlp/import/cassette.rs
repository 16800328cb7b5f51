//! The cassette: each model call's recorded answer, or its error, as the exchange a replay serves.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::build::Builder;
use super::chat::ChatCall;
use super::span::Span;
use crate::llm::cassette::{Entry, Position};
use crate::llm::live::{Exchange, DELEGATE_TOOL_PREFIX, HANDOFF_TOOL_PREFIX};

impl Builder {
    /// One recorded answer per chat span, positions in call order per agent and conversation,
    /// so that each conversation of the replay gets its own answers.
    pub(super) fn cassette_entries(&self, calls: &[ChatCall], conversations: &BTreeMap<usize, u32>) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut index: BTreeMap<(String, String, u32), u32> = BTreeMap::new();
        let mut ordered = calls.to_vec();
        ordered.sort_by_key(|c| (self.spans[c.span].start_ns, c.span));
        for call in &ordered {
            let conv = self.conversation_of(call.span, conversations).unwrap_or(0);
            let slot = index.entry((call.llm.clone(), call.agent.clone(), conv)).or_insert(0);
            let position = Position {
                llm: call.llm.clone(),
                actor: format!("agent:{}", call.agent),
                conv: Some(conv),
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
        entries
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
        for (to, id, args) in &call.delegates {
            tool_calls.push(json!({"id": id, "type": "function",
                "function": {"name": format!("{DELEGATE_TOOL_PREFIX}{to}"), "arguments": args}}));
        }
        if let Some(to) = &call.handoff {
            tool_calls.push(json!({"id": format!("call_handoff_{}", call.span), "type": "function",
                "function": {"name": format!("{HANDOFF_TOOL_PREFIX}{to}"), "arguments": "{}"}}));
        }
        let finish = if tool_calls.is_empty() { "stop" } else { "tool_calls" };
        if !tool_calls.is_empty() {
            message.insert("tool_calls".into(), Value::Array(tool_calls));
        }
        let finish = match (
            span.attrs.get("gen_ai.response.finish_reasons"),
            span.str("gen_ai.completion.0.finish_reason"),
        ) {
            (Some(Value::Array(reasons)), _) if reasons.first().and_then(Value::as_str) == Some("length") => "length",
            (_, Some("length")) => "length",
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
}

/// The model call a run that ended in a framework error (`ModelBehaviorError`, …) did not get to
/// make: it fails for good (400, not retried), so the replay's conversation ends failed with the
/// error's type and message in its trace.
pub(super) fn failure_entry(entries: &[Entry], llm: &str, agent: &str, conv: u32, error: &str) -> Entry {
    let actor = format!("agent:{agent}");
    let call_index = entries
        .iter()
        .filter(|e| e.position.llm == llm && e.position.actor == actor && e.position.conv == Some(conv))
        .count() as u32;
    Entry {
        position: Position {
            llm: llm.to_owned(),
            actor,
            conv: Some(conv),
            incarnation: 0,
            call_index,
        },
        request: Value::Null,
        exchange: Exchange {
            status: 400,
            headers: BTreeMap::new(),
            response: Some(json!({"error": {"message": error, "type": "invalid_request_error", "code": null}})),
            body_text: None,
            transport_error: None,
            latency_us: 0,
        },
    }
}

/// The HTTP status an error message names, as SDKs write it (`Error code: 503 - …`,
/// `status code 502`, `status_code=500`).
fn status_in(lower: &str) -> Option<u16> {
    [
        "error code: ",
        "error code ",
        "status code: ",
        "status code ",
        "status_code=",
        "status: ",
    ]
    .iter()
    .find_map(|marker| {
        let at = lower.find(marker)? + marker.len();
        let digits: String = lower[at..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u16>().ok().filter(|s| (400..600).contains(s))
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
    let status = status
        .or_else(|| status_in(&lower))
        .unwrap_or(if lower.contains("rate") || lower.contains("429") {
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
    } else if status == 503 || status == 529 || lower.contains("overloaded") {
        "server_is_overloaded"
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
