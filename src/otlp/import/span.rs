//! One span, and what its GenAI or OpenInference attributes say: its kind, agent, tool and model.

use std::collections::BTreeMap;

use serde_json::Value;

/// A span event: name, time, attributes.
pub(super) type Event = (String, u64, BTreeMap<String, Value>);

/// One span, with its attributes as plain JSON values.
#[derive(Debug, Clone)]
pub(super) struct Span {
    pub(super) trace_id: String,
    pub(super) span_id: String,
    pub(super) parent: Option<String>,
    pub(super) name: String,
    pub(super) start_ns: u64,
    pub(super) end_ns: u64,
    pub(super) attrs: BTreeMap<String, Value>,
    pub(super) error: Option<String>,
    pub(super) events: Vec<Event>,
}

impl Span {
    pub(super) fn str(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    pub(super) fn u64(&self, keys: &[&str]) -> Option<u64> {
        keys.iter().find_map(|k| match self.attrs.get(*k)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        })
    }

    pub(super) fn duration_us(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns) / 1_000
    }

    pub(super) fn op(&self) -> Op {
        let by_op = match self.str("gen_ai.operation.name") {
            Some("invoke_agent" | "create_agent") => Some(Op::Agent),
            Some("chat" | "text_completion" | "generate_content") => Some(Op::Chat),
            Some("execute_tool") => Some(Op::Tool),
            Some(_) => Some(Op::Other),
            None => None,
        };
        // OpenInference's span kinds, OpenLLMetry's (Traceloop: `traceloop.span.kind` for the
        // app's own spans, `llm.request.type` for model calls).
        let by_kind = || {
            let kind = self
                .str("openinference.span.kind")
                .or_else(|| self.str("traceloop.span.kind"))
                .or_else(|| self.str("llm.request.type").map(|_| "llm"))?;
            Some(match kind.to_ascii_uppercase().as_str() {
                "AGENT" => Op::Agent,
                "LLM" => Op::Chat,
                "TOOL" => Op::Tool,
                _ => Op::Other,
            })
        };
        let by_name = || {
            if self.name.starts_with("invoke_agent") {
                Op::Agent
            } else if self.name.starts_with("chat ") {
                Op::Chat
            } else if self.name.starts_with("execute_tool ") {
                Op::Tool
            } else {
                Op::Other
            }
        };
        by_op.or_else(by_kind).unwrap_or_else(by_name)
    }

    pub(super) fn suffix(&self, prefix: &str) -> Option<&str> {
        self.name.strip_prefix(prefix).map(str::trim).filter(|s| !s.is_empty())
    }

    pub(super) fn agent_name(&self) -> String {
        let name = self
            .str("gen_ai.agent.name")
            .or_else(|| self.str("agent.name"))
            .or_else(|| self.str("traceloop.entity.name"))
            .or_else(|| self.suffix("invoke_agent"))
            .unwrap_or(&self.name);
        identifier(name)
    }

    /// What a tool call returned, as GenAI, OpenInference or OpenLLMetry records it.
    pub(super) fn tool_result(&self) -> Option<String> {
        self.str("gen_ai.tool.call.result")
            .or_else(|| self.str("output.value"))
            .map(str::to_owned)
            .or_else(|| self.str("traceloop.entity.output").map(traceloop_value))
    }

    /// The arguments a tool was called with, as GenAI, OpenInference or OpenLLMetry records them.
    pub(super) fn tool_arguments(&self) -> Option<&str> {
        self.str("gen_ai.tool.call.arguments")
            .or_else(|| self.str("input.value"))
            .or_else(|| self.str("traceloop.entity.input"))
    }

    /// An agent's final answer, as GenAI, OpenInference or OpenLLMetry records it.
    pub(super) fn agent_output(&self) -> Option<String> {
        self.str("gen_ai.output.messages")
            .and_then(|m| super::chat::message_text(m, "assistant"))
            .or_else(|| self.str("output.value").map(str::to_owned))
            .or_else(|| self.str("traceloop.entity.output").map(traceloop_value))
    }

    pub(super) fn tool_name(&self) -> String {
        let name = self
            .str("gen_ai.tool.name")
            .or_else(|| self.str("tool.name"))
            .or_else(|| self.str("traceloop.entity.name"))
            .or_else(|| self.suffix("execute_tool"))
            .unwrap_or(&self.name);
        identifier(name)
    }

    pub(super) fn model(&self) -> String {
        self.str("gen_ai.request.model")
            .or_else(|| self.str("gen_ai.response.model"))
            .or_else(|| self.str("llm.model_name"))
            .or_else(|| self.suffix("chat"))
            .unwrap_or("unknown-model")
            .to_owned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Agent,
    Chat,
    Tool,
    Other,
}

/// A name usable in a scenario: letters, digits, `-` and `_`.
pub(super) fn identifier(text: &str) -> String {
    let cleaned: String = text
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "unnamed".into()
    } else {
        cleaned
    }
}

/// A value OpenLLMetry recorded as `json.dumps` of what the function returned: a returned string
/// (a tool's usual output) is that string again, not its JSON literal with quotes and escapes;
/// anything else (an object, a list) stays the JSON it is.
fn traceloop_value(recorded: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(recorded) {
        Ok(serde_json::Value::String(text)) => text,
        _ => recorded.to_owned(),
    }
}
