//! JSON-RPC 2.0 as MCP speaks it, and each MCP fault in the protocol's own shape: a tool error
//! is a successful answer with `isError`, a protocol error is a JSON-RPC `error`, a drifted
//! schema is a changed `tools/list` plus `notifications/tools/list_changed`.

use serde_json::{json, Map, Value};

/// JSON-RPC: invalid params (also what a server answers for an unknown tool).
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC: internal error.
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP SDKs' code for a request that timed out.
pub const REQUEST_TIMEOUT: i64 = -32001;
/// Smallest text an oversized result carries, in bytes.
pub const OVERSIZED_BYTES: usize = 1024 * 1024;

/// What one JSON-RPC message is.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A request: it has a method and an id, and wants an answer.
    Request { id: Value, method: String },
    /// A notification: a method and no id.
    Notification { method: String },
    /// An answer to a request: an id and a `result` or an `error`.
    Response { id: Value },
    /// A batch or something that is not JSON-RPC: passed on untouched.
    Other,
}

/// Tells what a message is.
pub fn kind(message: &Value) -> Kind {
    let Some(object) = message.as_object() else {
        return Kind::Other;
    };
    let id = object.get("id").filter(|id| !id.is_null()).cloned();
    match (object.get("method").and_then(Value::as_str), id) {
        (Some(method), Some(id)) => Kind::Request {
            id,
            method: method.to_owned(),
        },
        (Some(method), None) => Kind::Notification {
            method: method.to_owned(),
        },
        (None, Some(id)) if object.contains_key("result") || object.contains_key("error") => Kind::Response { id },
        _ => Kind::Other,
    }
}

/// The answer `result` to request `id`.
pub fn result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// The JSON-RPC error answer to request `id`.
pub fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// A tool call's failed result: `isError`, with the error as text.
pub fn tool_error(id: &Value, text: &str) -> Value {
    result(
        id,
        json!({"content": [{"type": "text", "text": text}], "isError": true}),
    )
}

/// The notification a server sends when its tool list changes.
pub fn list_changed() -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
}

/// The same answer for another request id (a recorded answer served to a new request).
pub fn with_id(mut answer: Value, id: &Value) -> Value {
    if let Some(object) = answer.as_object_mut() {
        object.insert("id".into(), id.clone());
    }
    answer
}

/// How a tool call was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A result the tool meant as a success.
    Result,
    /// A result with `isError: true`.
    ToolError,
    /// A JSON-RPC error, with its code.
    ProtocolError(i64),
}

impl Outcome {
    pub fn of(answer: &Value) -> Outcome {
        if let Some(error) = answer.get("error") {
            return Outcome::ProtocolError(error.get("code").and_then(Value::as_i64).unwrap_or(0));
        }
        match answer.pointer("/result/isError").and_then(Value::as_bool) {
            Some(true) => Outcome::ToolError,
            _ => Outcome::Result,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Result => "result",
            Outcome::ToolError => "tool_error",
            Outcome::ProtocolError(_) => "protocol_error",
        }
    }
}

/// The text content items of a result, for editing.
fn texts(answer: &mut Value) -> impl Iterator<Item = &mut String> {
    answer
        .pointer_mut("/result/content")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter(|item| item.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|item| match item.get_mut("text") {
            Some(Value::String(text)) => Some(text),
            _ => None,
        })
}

/// Adds `text` to a result as one more text content item (and to its structured content's view
/// of nothing: structured content is left as it was).
pub fn inject(mut answer: Value, text: &str) -> Value {
    if let Some(content) = answer.pointer_mut("/result/content").and_then(Value::as_array_mut) {
        content.push(json!({"type": "text", "text": text}));
    }
    answer
}

/// Cuts each text item of a result, and each string of its `structuredContent`, to its first
/// half: the shapes stay valid, the values are cut off.
pub fn truncate(mut answer: Value) -> Value {
    fn halve(text: &mut String) {
        let half = text.chars().count() / 2;
        *text = text.chars().take(half).collect();
    }
    fn halve_strings(value: &mut Value) {
        match value {
            Value::String(text) => halve(text),
            Value::Array(items) => items.iter_mut().for_each(halve_strings),
            Value::Object(members) => members.values_mut().for_each(halve_strings),
            _ => {}
        }
    }
    texts(&mut answer).for_each(halve);
    if let Some(structured) = answer.pointer_mut("/result/structuredContent") {
        halve_strings(structured);
    }
    answer
}

/// Repeats the first text item of a result until it holds at least [`OVERSIZED_BYTES`].
pub fn oversize(mut answer: Value) -> Value {
    let grown = texts(&mut answer).next().map(|text| {
        let unit = if text.is_empty() {
            "x".to_owned()
        } else {
            format!("{text}\n")
        };
        *text = unit.repeat(OVERSIZED_BYTES.div_ceil(unit.len()));
    });
    if grown.is_none() {
        if let Some(content) = answer.pointer_mut("/result/content").and_then(Value::as_array_mut) {
            content.push(json!({"type": "text", "text": "x".repeat(OVERSIZED_BYTES)}));
        }
    }
    answer
}

/// The property names a drifted schema uses instead of the old ones.
pub fn drifted_name(property: &str) -> String {
    format!("{property}_v2")
}

/// A tool's input schema after drift: every property renamed (`x` becomes `x_v2`), and so every
/// required one.
pub fn drift_schema(schema: &Value) -> Value {
    let mut schema = schema.clone();
    if let Some(object) = schema.as_object_mut() {
        if let Some(Value::Object(properties)) = object.get("properties") {
            let renamed: Map<String, Value> = properties
                .iter()
                .map(|(name, property)| (drifted_name(name), property.clone()))
                .collect();
            object.insert("properties".into(), Value::Object(renamed));
        }
        if let Some(Value::Array(required)) = object.get("required") {
            let renamed: Vec<Value> = required
                .iter()
                .map(|name| {
                    name.as_str()
                        .map_or_else(|| name.clone(), |n| Value::String(drifted_name(n)))
                })
                .collect();
            object.insert("required".into(), Value::Array(renamed));
        }
    }
    schema
}

/// A `tools/list` answer as a session whose server drifted sees it: the `drifted` tools with
/// renamed input schemas, the `removed` ones gone.
pub fn edit_tool_list(mut answer: Value, drifted: &[String], removed: &[String]) -> Value {
    if let Some(tools) = answer.pointer_mut("/result/tools").and_then(Value::as_array_mut) {
        tools.retain(|tool| {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
            !removed.iter().any(|r| r == name)
        });
        for tool in tools.iter_mut() {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            if drifted.contains(&name) {
                if let Some(schema) = tool.get("inputSchema") {
                    let schema = drift_schema(schema);
                    tool["inputSchema"] = schema;
                }
            }
        }
    }
    answer
}

/// What a drifted tool says to a call with the old arguments: the first argument its new schema
/// does not know, or the first new required one missing.
pub fn drift_refusal(tool: &str, arguments: &Value) -> String {
    let given: Vec<&str> = arguments
        .as_object()
        .map(|a| a.keys().map(String::as_str).collect())
        .unwrap_or_default();
    match given.iter().find(|name| !name.ends_with("_v2")) {
        Some(old) => format!(
            "Invalid params: tool \"{tool}\" has no argument \"{old}\" (its input schema changed: expected \"{}\"); list the tools again",
            drifted_name(old)
        ),
        None => format!("Invalid params: tool \"{tool}\"'s input schema changed; list the tools again"),
    }
}

/// The tool name and arguments of a `tools/call` request.
pub fn call_of(request: &Value) -> (String, Value) {
    let params = request.get("params");
    let name = params
        .and_then(|p| p.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let arguments = params
        .and_then(|p| p.get("arguments"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    (name, arguments)
}

/// A request's params without `_meta` (progress tokens and trace context differ run to run).
pub fn comparable_params(request: &Value) -> Value {
    let mut params = request.get("params").cloned().unwrap_or(Value::Null);
    if let Some(object) = params.as_object_mut() {
        object.remove("_meta");
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Value {
        result(
            &json!(7),
            json!({"content": [{"type": "text", "text": text}], "structuredContent": {"result": text}, "isError": false}),
        )
    }

    #[test]
    fn messages_are_told_apart_by_method_and_id() {
        assert_eq!(
            kind(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})),
            Kind::Request {
                id: json!(1),
                method: "tools/list".into()
            }
        );
        assert_eq!(
            kind(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
            Kind::Notification {
                method: "notifications/initialized".into()
            }
        );
        assert_eq!(
            kind(&json!({"jsonrpc": "2.0", "id": "a", "result": {}})),
            Kind::Response { id: json!("a") }
        );
        assert_eq!(kind(&json!([1, 2])), Kind::Other);
    }

    #[test]
    fn result_faults_keep_the_protocol_shape() {
        let cut = truncate(answer("abcdef"));
        assert_eq!(cut["result"]["content"][0]["text"], "abc");
        assert_eq!(cut["result"]["structuredContent"]["result"], "abc");
        let poisoned = inject(answer("ok"), "IGNORE");
        assert_eq!(poisoned["result"]["content"][1]["text"], "IGNORE");
        let big = oversize(answer("row"));
        assert!(big["result"]["content"][0]["text"].as_str().unwrap().len() >= OVERSIZED_BYTES);
        assert_eq!(Outcome::of(&tool_error(&json!(1), "boom")), Outcome::ToolError);
        assert_eq!(
            Outcome::of(&error(&json!(1), INVALID_PARAMS, "x")),
            Outcome::ProtocolError(INVALID_PARAMS)
        );
        assert_eq!(Outcome::of(&answer("ok")), Outcome::Result);
    }

    #[test]
    fn drift_renames_properties_and_removal_drops_the_tool() {
        let list = result(
            &json!(2),
            json!({"tools": [
                {"name": "lookup", "inputSchema": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}},
                {"name": "refund", "inputSchema": {"type": "object"}},
            ]}),
        );
        let edited = edit_tool_list(list, &["lookup".into()], &["refund".into()]);
        let tools = edited["result"]["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 1);
        assert_eq!(tools[0]["inputSchema"]["required"], json!(["order_id_v2"]));
        assert!(tools[0]["inputSchema"]["properties"]["order_id_v2"].is_object());
        assert!(drift_refusal("lookup", &json!({"order_id": "A1"})).contains("\"order_id_v2\""));
    }
}
