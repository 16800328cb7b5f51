//! A model call's answer: from its recorded output messages, else from the spans that followed it.

use std::collections::BTreeMap;

use serde_json::Value;

use super::build::Builder;
use super::span::{identifier, Op, Span};
use super::NO_ANSWER_TEXT;
use crate::llm::live::{DELEGATE_TOOL_PREFIX, HANDOFF_TOOL_PREFIX};

/// What a model answered, as the importer reconstructs it.
#[derive(Debug, Clone)]
pub(super) struct ChatCall {
    pub(super) agent: String,
    pub(super) llm: String,
    pub(super) model: String,
    pub(super) span: usize,
    pub(super) tool_calls: Vec<(String, String, String)>,
    pub(super) handoff: Option<String>,
    /// `ask_<agent>` calls (agents as tools): (agent, call id, arguments).
    pub(super) delegates: Vec<(String, String, String)>,
    pub(super) text: Option<String>,
}

impl Builder {
    pub(super) fn chat_call(
        &mut self,
        agent: &str,
        llms: &BTreeMap<String, String>,
        i: usize,
        following: &[usize],
    ) -> ChatCall {
        let span = self.spans[i].clone();
        let model = span.model();
        let mut call = ChatCall {
            agent: agent.to_owned(),
            llm: llms[&model].clone(),
            model,
            span: i,
            tool_calls: Vec::new(),
            handoff: None,
            delegates: Vec::new(),
            text: None,
        };
        if span.error.is_some() {
            return call;
        }
        // Output messages: GenAI (JSON, string or structured) or OpenInference (flattened).
        let mut recorded = genai_output(&span, &mut call);
        for keys in FLATTENED_TOOL_CALLS {
            recorded |= flattened_tool_calls(&span, &mut call, keys);
        }
        if !recorded {
            if let Some(text) = span
                .str("llm.output_messages.0.message.content")
                .or_else(|| span.str("gen_ai.completion.0.content"))
                .or_else(|| span.str("output.value"))
            {
                recorded = true;
                call.text = Some(text.to_owned());
            }
        }
        if recorded {
            self.fill_missing_arguments(&mut call, following);
            self.fill_delegated_tasks(&mut call, following);
            if call.tool_calls.is_empty() && call.handoff.is_none() && call.delegates.is_empty() && call.text.is_none()
            {
                call.text = self.final_text(i, following);
            }
            return call;
        }
        // No content: the spans that followed say what the model must have asked for.
        self.infer_from_following(&mut call, following);
        if call.tool_calls.is_empty() && call.handoff.is_none() {
            call.text = self.final_text(i, following);
        } else {
            self.content_missing = true;
        }
        call
    }

    /// Arguments the answer left out, from the tool span with the same call id.
    fn fill_missing_arguments(&self, call: &mut ChatCall, following: &[usize]) {
        for (name, id, args) in &mut call.tool_calls {
            if args != "{}" {
                continue;
            }
            let ran = following.iter().map(|&j| &self.spans[j]).find(|t| {
                t.op() == Op::Tool && t.tool_name() == *name && t.str("gen_ai.tool.call.id") == Some(id.as_str())
            });
            if let Some(found) = ran.and_then(|t| t.str("gen_ai.tool.call.arguments")) {
                *args = found.to_owned();
            }
        }
    }

    /// The task of each `ask_<agent>` call that left it out: the user message of the delegate's
    /// agent span that followed.
    fn fill_delegated_tasks(&self, call: &mut ChatCall, following: &[usize]) {
        let mut used = std::collections::BTreeSet::new();
        for (to, _, args) in &mut call.delegates {
            if args != "{}" {
                continue;
            }
            let ran = following
                .iter()
                .copied()
                .find(|&j| !used.contains(&j) && self.spans[j].op() == Op::Agent && self.spans[j].agent_name() == *to);
            if let Some(j) = ran {
                used.insert(j);
                let span = &self.spans[j];
                let task = user_messages(span)
                    .and_then(|said| said.last().cloned())
                    .or_else(|| span.str("input.value").map(str::to_owned));
                if let Some(task) = task {
                    *args = serde_json::json!({ "input": task }).to_string();
                }
            }
        }
    }

    /// The tool calls and handoff of an answer without content, from the tool and agent spans
    /// that followed it.
    fn infer_from_following(&self, call: &mut ChatCall, following: &[usize]) {
        for &j in following {
            let next = &self.spans[j];
            match next.op() {
                Op::Tool => {
                    let args = next.tool_arguments().unwrap_or("{}").to_owned();
                    let id = next.str("gen_ai.tool.call.id").unwrap_or("").to_owned();
                    push_call(call, &next.tool_name(), id, args);
                }
                Op::Agent => {
                    call.handoff.get_or_insert_with(|| next.agent_name());
                }
                _ => {}
            }
        }
    }

    /// A text answer's words: the agent's recorded final answer when this is its last model
    /// call, else a placeholder.
    fn final_text(&mut self, chat: usize, following: &[usize]) -> Option<String> {
        let last = following.is_empty();
        let agent_output = self.owner[chat]
            .filter(|_| last)
            .and_then(|a| self.spans[a].agent_output());
        if agent_output.is_none() {
            self.content_missing = true;
        }
        Some(agent_output.unwrap_or_else(|| NO_ANSWER_TEXT.to_owned()))
    }
}

/// GenAI output messages (a JSON string, or structured): their tool calls and text. Returns
/// whether the span recorded any.
fn genai_output(span: &Span, call: &mut ChatCall) -> bool {
    let output = span.attrs.get("gen_ai.output.messages").and_then(|v| match v {
        Value::String(s) => serde_json::from_str::<Value>(s).ok(),
        other => Some(other.clone()),
    });
    let mut recorded = false;
    if let Some(Value::Array(messages)) = output {
        for message in &messages {
            for part in message
                .get("parts")
                .and_then(Value::as_array)
                .map_or(&[][..], |p| p.as_slice())
            {
                match part.get("type").and_then(Value::as_str) {
                    Some("tool_call") => {
                        recorded = true;
                        let name = part.get("name").and_then(Value::as_str).unwrap_or("unknown_tool");
                        let id = part.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
                        let args = match part.get("arguments") {
                            Some(Value::String(s)) => s.clone(),
                            Some(v @ Value::Object(_)) => v.to_string(),
                            _ => "{}".into(),
                        };
                        push_call(call, name, id, args);
                    }
                    Some("text") => {
                        recorded = true;
                        let text = part.get("content").and_then(Value::as_str).unwrap_or("");
                        call.text.get_or_insert_with(String::new).push_str(text);
                    }
                    _ => {}
                }
            }
        }
    }
    recorded
}

/// Where instrumentations that flatten messages into attributes put an answer's tool calls:
/// `(prefix, name, arguments, id)`, each call's keys being `{prefix}.K.{suffix}`. OpenInference,
/// then OpenLLMetry (Traceloop).
const FLATTENED_TOOL_CALLS: [(&str, &str, &str, &str); 2] = [
    (
        "llm.output_messages.0.message.tool_calls",
        "tool_call.function.name",
        "tool_call.function.arguments",
        "tool_call.id",
    ),
    ("gen_ai.completion.0.tool_calls", "name", "arguments", "id"),
];

/// The tool calls an instrumentation flattened into attributes (one of
/// [`FLATTENED_TOOL_CALLS`]). Returns whether the span recorded any.
fn flattened_tool_calls(span: &Span, call: &mut ChatCall, keys: (&str, &str, &str, &str)) -> bool {
    let (prefix, name, arguments, id) = keys;
    let mut recorded = false;
    for k in 0..64 {
        let Some(tool) = span.str(&format!("{prefix}.{k}.{name}")) else {
            break;
        };
        recorded = true;
        let args = span
            .str(&format!("{prefix}.{k}.{arguments}"))
            .unwrap_or("{}")
            .to_owned();
        let id = span.str(&format!("{prefix}.{k}.{id}")).unwrap_or("").to_owned();
        push_call(call, tool, id, args);
    }
    recorded
}

fn push_call(call: &mut ChatCall, name: &str, id: String, args: String) {
    if let Some(to) = name.strip_prefix(HANDOFF_TOOL_PREFIX) {
        call.handoff.get_or_insert_with(|| identifier(to));
        return;
    }
    if let Some(to) = name.strip_prefix(DELEGATE_TOOL_PREFIX) {
        // A delegation when `to` is an agent of the trace; `Builder::build` turns it back into
        // a tool call otherwise.
        let id = if id.is_empty() {
            format!("call_{}_d{}", call.span, call.delegates.len())
        } else {
            id
        };
        call.delegates.push((identifier(to), id, args));
        return;
    }
    let id = if id.is_empty() {
        format!("call_{}_{}", call.span, call.tool_calls.len())
    } else {
        id
    };
    call.tool_calls.push((identifier(name), id, args));
}

/// The texts of every message with `role` in a GenAI messages JSON string, in order: its text
/// parts joined (or a plain `content` string).
pub(super) fn message_texts(json: &str, role: &str) -> Option<Vec<String>> {
    let messages: Value = serde_json::from_str(json).ok()?;
    let texts = messages
        .as_array()?
        .iter()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some(role))
        .map(|m| match (m.get("parts").and_then(Value::as_array), m.get("content")) {
            (Some(parts), _) => {
                let texts: Vec<&str> = parts.iter().filter_map(|p| p.get("content")?.as_str()).collect();
                texts.join("\n")
            }
            (None, Some(Value::String(content))) => content.clone(),
            _ => String::new(),
        })
        .collect();
    Some(texts)
}

/// The user messages a model call was sent, in order: GenAI `gen_ai.input.messages`, or the
/// flattened messages of OpenInference (`llm.input_messages.N.message.role`/`.content`) or of
/// OpenLLMetry (`gen_ai.prompt.N.role`/`.content`). `None` when the span does not record them.
pub(super) fn user_messages(span: &Span) -> Option<Vec<String>> {
    if let Some(texts) = span.str("gen_ai.input.messages").and_then(|m| message_texts(m, "user")) {
        return Some(texts);
    }
    [("llm.input_messages", "message."), ("gen_ai.prompt", "")]
        .into_iter()
        .find_map(|(prefix, inner)| {
            let role = |j: usize| span.str(&format!("{prefix}.{j}.{inner}role"));
            role(0)?;
            let users = (0..4096)
                .map_while(|j| role(j).map(|r| (j, r)))
                .filter(|&(_, r)| r == "user")
                .map(|(j, _)| {
                    span.str(&format!("{prefix}.{j}.{inner}content"))
                        .unwrap_or("")
                        .to_owned()
                });
            Some(users.collect())
        })
}

/// The first text of a message with `role` in a GenAI messages JSON string.
pub(super) fn message_text(json: &str, role: &str) -> Option<String> {
    let messages: Value = serde_json::from_str(json).ok()?;
    messages.as_array()?.iter().find_map(|m| {
        if m.get("role")?.as_str()? != role {
            return None;
        }
        m.get("parts")?
            .as_array()?
            .iter()
            .find_map(|p| p.get("content")?.as_str().map(str::to_owned))
    })
}
