//! How a model's faults are acted: the error a provider answers with for a provider fault, and
//! a good answer broken the way real models break it for a content fault.

use std::sync::Arc;

use crate::catalogue::faults::FaultKind;
use crate::protocol::{FinishReason, ModelAnswer, ProviderError, ToolArgs, ToolCall, ToolRef};
use crate::scenario::{FaultParams, MalformedMode, Scenario};

/// The provider error a fault kind answers with, and how long it takes by default.
pub fn provider_error(kind: FaultKind, retry_after_us: Option<u64>) -> (ProviderError, u64) {
    let retry_after = Some(retry_after_us.unwrap_or(2_000_000));
    let e = |status, error_type, code, retry_after_us| ProviderError {
        status,
        error_type,
        code,
        retry_after_us,
        message: None,
    };
    match kind {
        FaultKind::LlmRateLimit => (e(429, "requests", "rate_limit_exceeded", retry_after), 30_000),
        FaultKind::LlmTokenRateLimit => (e(429, "tokens", "rate_limit_exceeded", retry_after), 30_000),
        FaultKind::LlmQuotaExhausted => (e(429, "insufficient_quota", "insufficient_quota", None), 30_000),
        FaultKind::LlmOverloaded => (
            e(503, "service_unavailable_error", "server_is_overloaded", None),
            200_000,
        ),
        FaultKind::LlmOverloaded529 => (e(529, "overloaded_error", "overloaded_error", None), 200_000),
        FaultKind::LlmServerError => (e(500, "server_error", "internal_error", None), 500_000),
        FaultKind::LlmTimeout => (ProviderError::client_timeout(), 60_000_000),
        FaultKind::LlmAuthError => (e(401, "invalid_request_error", "invalid_api_key", None), 50_000),
        FaultKind::LlmContentFilter => (e(400, "invalid_request_error", "content_filter", None), 50_000),
        _ => (e(400, "invalid_request_error", "context_length_exceeded", None), 50_000),
    }
}

/// Applies a content fault to a good answer.
pub fn break_answer(
    scenario: &Scenario,
    kind: FaultKind,
    answer: ModelAnswer,
    params: &FaultParams,
    next_call_id: &mut u32,
) -> (ModelAnswer, FinishReason, Option<u32>) {
    let tool = params.tool.as_deref();
    match (kind, answer) {
        (FaultKind::LlmEmptyAnswer, _) => (ModelAnswer::Text(Arc::from("")), FinishReason::Stop, Some(2)),
        (FaultKind::LlmRefusal, _) => (
            ModelAnswer::Text(Arc::from("I'm sorry, but I can't help with that.")),
            FinishReason::ContentFilter,
            Some(10),
        ),
        (FaultKind::LlmHallucinatedTool, _) => {
            let id = *next_call_id;
            *next_call_id += 1;
            let name: Arc<str> = Arc::from(tool.unwrap_or("lookup_everything"));
            // A tool the scenario has (given to another agent) is real: frameworks with one
            // shared tool registry run it, whoever asks.
            let tool = match scenario.tools.iter().position(|t| *t.name == *name) {
                Some(t) => ToolRef::Known(t),
                None => ToolRef::Unknown(name),
            };
            let call = ToolCall::with_json(id, tool, serde_json::Map::new());
            (ModelAnswer::ToolCalls(vec![call]), FinishReason::ToolCalls, None)
        }
        (FaultKind::LlmMalformedToolArgs | FaultKind::LlmTruncated, ModelAnswer::ToolCalls(mut calls)) => {
            if let Some(first) = calls.first_mut() {
                let mode = if kind == FaultKind::LlmTruncated {
                    None
                } else {
                    params.mode
                };
                let broken = malformed(first, mode.unwrap_or(MalformedMode::Truncated));
                first.set_args(broken);
            }
            let finish = if kind == FaultKind::LlmTruncated {
                FinishReason::Length
            } else {
                FinishReason::ToolCalls
            };
            (ModelAnswer::ToolCalls(calls), finish, None)
        }
        (FaultKind::LlmDuplicateToolCallIds, ModelAnswer::ToolCalls(mut calls)) => {
            let first = calls.first().map(|c| (c.id, c.wire_id.clone()));
            if let Some((id, wire_id)) = first {
                for call in &mut calls {
                    call.id = id;
                    call.wire_id = wire_id.clone();
                }
            }
            (ModelAnswer::ToolCalls(calls), FinishReason::ToolCalls, None)
        }
        (FaultKind::LlmTruncated, ModelAnswer::Text(text)) => {
            let cut: String = text.chars().take(text.chars().count() / 2).collect();
            (ModelAnswer::Text(Arc::from(cut)), FinishReason::Length, None)
        }
        (_, answer) => {
            let finish = finish_reason(&answer);
            (answer, finish, None)
        }
    }
}

/// A call's arguments, broken the given way.
pub fn malformed(call: &ToolCall, mode: MalformedMode) -> ToolArgs {
    let text = call.args_text();
    let ToolArgs::Json(map) = &call.args else {
        return call.args.clone();
    };
    match mode {
        MalformedMode::Truncated => ToolArgs::Malformed(Arc::from(
            text.chars().take(text.chars().count() / 2).collect::<String>(),
        )),
        MalformedMode::TrailingGarbage => ToolArgs::Malformed(Arc::from(format!("{text}}}\n```"))),
        MalformedMode::WrongType => {
            let wrong = map
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => serde_json::json!([s]),
                        other => serde_json::Value::String(other.to_string()),
                    };
                    (k.clone(), v)
                })
                .collect();
            ToolArgs::json(wrong)
        }
        MalformedMode::MissingField => {
            let mut fewer = map.map().clone();
            if let Some(first) = fewer.keys().next().cloned() {
                fewer.remove(&first);
            }
            ToolArgs::json(fewer)
        }
    }
}

pub fn finish_reason(answer: &ModelAnswer) -> FinishReason {
    match answer {
        ModelAnswer::ToolCalls(_) => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> ToolCall {
        let mut args = serde_json::Map::new();
        args.insert("city".to_owned(), serde_json::json!("Paris"));
        args.insert("days".to_owned(), serde_json::json!(3));
        ToolCall::with_json(0, ToolRef::Unknown(Arc::from("weather")), args)
    }

    #[test]
    fn rate_limits_carry_retry_after_and_quota_does_not() {
        let (limited, _) = provider_error(FaultKind::LlmRateLimit, None);
        assert_eq!((limited.status, limited.retry_after_us), (429, Some(2_000_000)));
        let (limited, _) = provider_error(FaultKind::LlmTokenRateLimit, Some(5));
        assert_eq!(limited.retry_after_us, Some(5));
        let (quota, _) = provider_error(FaultKind::LlmQuotaExhausted, Some(5));
        assert_eq!((quota.status, quota.retry_after_us), (429, None));
    }

    #[test]
    fn malformed_arguments_break_the_way_asked() {
        assert!(matches!(
            malformed(&call(), MalformedMode::Truncated),
            ToolArgs::Malformed(_)
        ));
        assert!(matches!(
            malformed(&call(), MalformedMode::TrailingGarbage),
            ToolArgs::Malformed(_)
        ));
        let ToolArgs::Json(fewer) = malformed(&call(), MalformedMode::MissingField) else {
            panic!("a missing field is still JSON");
        };
        assert_eq!(fewer.len(), 1);
        let ToolArgs::Json(wrong) = malformed(&call(), MalformedMode::WrongType) else {
            panic!("a wrong type is still JSON");
        };
        assert_eq!(wrong["city"], serde_json::json!(["Paris"]));
        assert_eq!(wrong["days"], serde_json::json!("3"));
    }
}
