//! MCP cassettes as a scenario reads them: `agentsim proxy --mcp --record DIR` writes one JSON
//! line per request a tool server answered; a `[[tool]]` with `mcp = { cassette = "DIR" }` takes
//! its description and input schema from the server's `tools/list`, and its results from the
//! recorded `tools/call` answers. The proxy reads and writes the same format.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the MCP cassette format, in its header line.
pub const FORMAT: u64 = 1;
/// The cassette's file name inside a recording directory.
pub const FILE_NAME: &str = "cassette.jsonl";

/// One recorded request and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Take {
    pub session: String,
    /// The request's position in its session, from 1.
    pub seq: u32,
    pub method: String,
    /// The request's params, without `_meta`.
    pub params: Value,
    /// The server's answer: a JSON-RPC message with `result` or `error`.
    pub answer: Value,
    /// Time from sending the request to its answer.
    pub latency_us: u64,
}

/// The first line of an MCP cassette.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub mcp_cassette_format: u64,
    pub agentsim: String,
    pub seed: u64,
    pub transport: String,
}

/// A recorded tool call's answer as a simulated tool gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    /// The call's arguments, a JSON object.
    pub arguments: Value,
    /// The result's text content (joined by new lines), or the error's message.
    pub text: String,
    /// `isError`, or a JSON-RPC error.
    pub is_error: bool,
}

/// Reads a cassette's text: its header and takes. Errors name the line.
pub fn parse(file: &str, text: &str) -> Result<(Header, Vec<Take>), String> {
    let (header, takes): (Header, Vec<Take>) = super::jsonl::header_and_records(
        file,
        text,
        "an MCP cassette",
        &format!("{{\"mcp_cassette_format\": {FORMAT}, …}}, written by `agentsim proxy --mcp --record DIR`"),
        "a recorded MCP exchange",
    )?;
    if header.mcp_cassette_format != FORMAT {
        return Err(format!(
            "{file}:1: expected MCP cassette format {FORMAT}, found {}",
            header.mcp_cassette_format
        ));
    }
    Ok((header, takes))
}

/// The tools the server listed first.
pub fn tools(takes: &[Take]) -> Vec<Value> {
    takes
        .iter()
        .find(|t| t.method == "tools/list")
        .and_then(|t| t.answer.pointer("/result/tools"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The recorded calls of tool `name`, in recorded order.
pub fn calls(takes: &[Take], name: &str) -> Vec<RecordedCall> {
    takes
        .iter()
        .filter(|t| t.method == "tools/call" && t.params.get("name").and_then(Value::as_str) == Some(name))
        .map(|t| {
            let arguments = t
                .params
                .get("arguments")
                .cloned()
                .unwrap_or_else(|| Value::Object(Default::default()));
            let (text, is_error) = match t.answer.get("error") {
                Some(error) => (
                    error
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("error")
                        .to_owned(),
                    true,
                ),
                None => {
                    let texts: Vec<&str> = t
                        .answer
                        .pointer("/result/content")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|item| item.get("text").and_then(Value::as_str))
                        .collect();
                    let is_error = t.answer.pointer("/result/isError").and_then(Value::as_bool) == Some(true);
                    (texts.join("\n"), is_error)
                }
            };
            RecordedCall {
                arguments,
                text,
                is_error,
            }
        })
        .collect()
}

/// A small cassette for tests: a tools/list, a call of `lookup` with `{"q": "a"}` that found
/// something, and one with `{"q": "b"}` answered with a JSON-RPC error. Recorded with seed 4.
#[cfg(test)]
pub(crate) fn fixture() -> String {
    use serde_json::json;
    let take = |seq: u32, method: &str, params: Value, answer: Value| {
        serde_json::to_string(&Take {
            session: "1".into(),
            seq,
            method: method.into(),
            params,
            answer,
            latency_us: 10,
        })
        .expect("a take is JSON")
    };
    [
        r#"{"mcp_cassette_format":1,"agentsim":"0","seed":4,"transport":"stdio"}"#.to_owned(),
        take(
            1,
            "tools/list",
            json!({}),
            json!({"result": {"tools": [{"name": "lookup"}]}}),
        ),
        take(
            2,
            "tools/call",
            json!({"name": "lookup", "arguments": {"q": "a"}}),
            json!({"result": {"content": [{"type": "text", "text": "found"}]}}),
        ),
        take(
            3,
            "tools/call",
            json!({"name": "lookup", "arguments": {"q": "b"}}),
            json!({"error": {"code": -32603, "message": "down"}}),
        ),
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cassette_gives_the_tools_and_each_calls_answer() {
        let text = fixture();
        let (header, takes) = parse("c.jsonl", &text).unwrap();
        assert_eq!(header.seed, 4);
        assert_eq!(tools(&takes)[0]["name"], "lookup");
        let calls = calls(&takes, "lookup");
        assert_eq!((calls[0].text.as_str(), calls[0].is_error), ("found", false));
        assert_eq!((calls[1].text.as_str(), calls[1].is_error), ("down", true));
    }

    #[test]
    fn a_file_that_is_not_an_mcp_cassette_says_so() {
        let error = parse("x.jsonl", "{\"proxy_cassette_format\":1}").err().unwrap();
        assert!(
            error.contains("x.jsonl:1: expected the header line of an MCP cassette"),
            "{error}"
        );
    }
}
