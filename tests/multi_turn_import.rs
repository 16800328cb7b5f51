//! Multi-turn incidents: a trace with several user messages imports as a scripted user who says
//! each of them in order, and the replay makes the same model calls and tool calls in the same
//! order as the trace. A run that ran out of turns replays with exactly its calls and ends out of
//! turns; a run that ended in a framework error ends failed with that error.
//!
//! The fixtures are in `tests/fixtures/multi-turn/` (see its PROVENANCE.md): a τ-bench airline
//! trajectory (35 messages), a support dialogue, and small traces for the endings.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// The spans of an OTLP/JSON file, in start order: (name, attributes as a key → value map).
fn spans(path: &Path) -> Vec<(String, serde_json::Map<String, Value>)> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
    let mut out: Vec<(u64, String, serde_json::Map<String, Value>)> = Vec::new();
    for rs in doc["resourceSpans"].as_array().expect("resourceSpans") {
        for ss in rs["scopeSpans"].as_array().expect("scopeSpans") {
            for span in ss["spans"].as_array().expect("spans") {
                let start: u64 = span["startTimeUnixNano"].as_str().expect("start").parse().expect("ns");
                let mut attrs = serde_json::Map::new();
                for kv in span["attributes"].as_array().into_iter().flatten() {
                    let value = &kv["value"];
                    let v = value
                        .get("stringValue")
                        .or_else(|| value.get("intValue"))
                        .cloned()
                        .unwrap_or(Value::Null);
                    attrs.insert(kv["key"].as_str().expect("key").to_owned(), v);
                }
                out.push((start, span["name"].as_str().expect("name").to_owned(), attrs));
            }
        }
    }
    out.sort_by_key(|s| s.0);
    out.into_iter().map(|(_, name, attrs)| (name, attrs)).collect()
}

/// The trace's tool calls in order: (tool, arguments as JSON).
fn recorded_tool_calls(path: &Path) -> Vec<(String, Value)> {
    spans(path)
        .into_iter()
        .filter(|(name, _)| name.starts_with("execute_tool "))
        .map(|(_, attrs)| {
            let tool = attrs["gen_ai.tool.name"].as_str().expect("tool name").to_owned();
            let args = serde_json::from_str(attrs["gen_ai.tool.call.arguments"].as_str().expect("args")).expect("JSON");
            (tool, args)
        })
        .collect()
}

/// The user's messages as the trace's last model call saw them.
fn recorded_user_messages(path: &Path) -> Vec<String> {
    let chats: Vec<_> = spans(path)
        .into_iter()
        .filter(|(name, _)| name.starts_with("chat "))
        .collect();
    let last = &chats.last().expect("a chat span").1;
    let messages: Value = serde_json::from_str(last["gen_ai.input.messages"].as_str().expect("input")).expect("JSON");
    messages
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["parts"][0]["content"].as_str().expect("text").to_owned())
        .collect()
}

/// `agentsim import` of a fixture, then a run of what it wrote: the run's trace records.
fn import_and_replay(fixture: &str) -> (tempfile::TempDir, String, Vec<Value>) {
    let dir = tempfile::tempdir().expect("scratch");
    let out = dir.path().join("imported");
    let path = repo_root().join("tests/fixtures/multi-turn").join(fixture);
    let import = agentsim_output(&["import", path.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(status(&import), 0, "{}", stderr(&import));
    let scenario = std::fs::read_to_string(out.join("scenario.toml")).expect("scenario");
    let run_dir = dir.path().join("run");
    let run = agentsim_output(&[
        "run",
        out.join("scenario.toml").to_str().unwrap(),
        "--out",
        run_dir.to_str().unwrap(),
    ]);
    assert!(status(&run) <= 1, "{}{}", stdout(&run), stderr(&run));
    let trace = std::fs::read(run_dir.join("trace.jsonl")).expect("trace");
    (dir, scenario, records(&trace))
}

fn replayed_tool_calls(records: &[Value]) -> Vec<(String, Value)> {
    records
        .iter()
        .filter(|r| field(r, "kind") == "deliver" && field(r, "to").starts_with("tool:"))
        .map(|r| {
            let msg = field(r, "msg");
            let tool = field(r, "to").trim_start_matches("tool:").to_owned();
            let args = &msg[msg.find(" args=").expect("args") + 6..];
            (tool, serde_json::from_str(args).expect("JSON arguments"))
        })
        .collect()
}

fn replayed_user_messages(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter(|r| field(r, "from") == "user" && field(r, "msg").starts_with("start conv=0 user="))
        .map(|r| {
            let msg = field(r, "msg");
            let quoted = &msg["start conv=0 user=".len()..];
            let text: Value = serde_json::from_str(quoted.split(" messages=").next().unwrap()).expect("quoted");
            text.as_str().expect("text").to_owned()
        })
        .collect()
}

fn model_calls(records: &[Value]) -> usize {
    records
        .iter()
        .filter(|r| field(r, "kind") == "deliver" && field(r, "to").starts_with("llm:"))
        .count()
}

fn report(dir: &tempfile::TempDir) -> Value {
    let text = std::fs::read_to_string(dir.path().join("run/report.json")).expect("report");
    serde_json::from_str(&text).expect("JSON")
}

fn check_turn_for_turn(fixture: &str, chat_spans: usize, user_turns: usize) {
    let path = repo_root().join("tests/fixtures/multi-turn").join(fixture);
    let (dir, scenario, records) = import_and_replay(fixture);
    assert!(
        scenario.contains("[[user]]\nname = \"recorded-0\"\nkind = \"scripted\""),
        "{scenario}"
    );
    let said = replayed_user_messages(&records);
    let recorded = recorded_user_messages(&path);
    assert_eq!(said.len(), user_turns);
    for (replayed, original) in said.iter().zip(&recorded) {
        assert!(
            original.starts_with(replayed.as_str()),
            "{replayed:?} is not {original:?}"
        );
    }
    assert_eq!(
        model_calls(&records),
        chat_spans,
        "one model call per chat span of the trace"
    );
    assert_eq!(replayed_tool_calls(&records), recorded_tool_calls(&path));
    let report = report(&dir);
    assert_eq!(report["user_turns"]["max"], user_turns);
    assert_eq!(report["fates"]["answered"], 1);
}

#[test]
fn a_tau_bench_airline_dialogue_of_35_messages_replays_turn_for_turn() {
    check_turn_for_turn("tau-airline.otlp.json", 17, 7);
}

#[test]
fn a_five_turn_support_dialogue_replays_turn_for_turn() {
    check_turn_for_turn("support-dialogue.otlp.json", 8, 5);
}

#[test]
fn tool_call_ids_reused_across_turns_are_kept_apart() {
    check_turn_for_turn("reused-call-ids.otlp.json", 5, 2);
}

#[test]
fn a_run_that_ran_out_of_turns_replays_with_exactly_its_calls_and_ends_out_of_turns() {
    let (dir, scenario, records) = import_and_replay("out-of-turns.otlp.json");
    assert!(scenario.contains("max_turns = 4\n"), "{scenario}");
    assert!(
        !scenario.contains("actor.crash"),
        "the error is the ending, not a crash: {scenario}"
    );
    assert_eq!(model_calls(&records), 4);
    assert_eq!(replayed_tool_calls(&records).len(), 4);
    let report = report(&dir);
    assert_eq!(report["fates"]["out_of_turns"], 1);
    assert_eq!(report["conversations"]["max_turns"], 1);
}

#[test]
fn a_run_that_ended_in_a_framework_error_ends_failed_with_that_error() {
    let (dir, scenario, records) = import_and_replay("agent-error.otlp.json");
    assert!(!scenario.contains("actor.crash"), "{scenario}");
    assert_eq!(replayed_tool_calls(&records).len(), 1);
    let failed = records
        .iter()
        .find(|r| field(r, "msg").contains("ModelBehaviorError"))
        .expect("the error's type is in the trace");
    assert_eq!(field(failed, "to"), "agent:support");
    let report = report(&dir);
    assert_eq!(report["fates"]["failed"], 1);
}

#[test]
fn an_exported_dialogue_imports_back_with_the_same_user_messages_model_calls_and_tool_calls() {
    let dir = tempfile::tempdir().expect("scratch");
    let otlp = dir.path().join("airline.otlp.json");
    let first = dir.path().join("first");
    let run = agentsim_output(&[
        "run",
        "scenarios/airline-dialogue.toml",
        "--otlp",
        otlp.to_str().unwrap(),
        "--out",
        first.to_str().unwrap(),
    ]);
    assert!(status(&run) <= 1, "{}", stderr(&run));
    let imported = dir.path().join("imported");
    let import = agentsim_output(&["import", otlp.to_str().unwrap(), "--out", imported.to_str().unwrap()]);
    assert_eq!(status(&import), 0, "{}", stderr(&import));
    let second = dir.path().join("second");
    let replay = agentsim_output(&[
        "run",
        imported.join("scenario.toml").to_str().unwrap(),
        "--out",
        second.to_str().unwrap(),
    ]);
    assert!(status(&replay) <= 1, "{}", stderr(&replay));
    let read = |d: &Path| records(&std::fs::read(d.join("trace.jsonl")).expect("trace"));
    let (a, b) = (read(&first), read(&second));
    let agent_calls = |r: &[Value]| {
        r.iter()
            .filter(|r| field(r, "from") == "agent:airline" && field(r, "to").starts_with("llm:"))
            .count()
    };
    assert_eq!(agent_calls(&a), agent_calls(&b));
    // Conversations interleave by the users' think times (the import keeps their median), and
    // are numbered in the order they opened: compare each conversation's sequence of user
    // messages and of tool calls, as a sorted list of sequences.
    let per_conversation = |r: &[Value], keep: &dyn Fn(&Value) -> Option<String>| -> Vec<Vec<String>> {
        let mut by_conv: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for record in r {
            if let Some(what) = keep(record) {
                let conv = field(record, "msg").split(' ').nth(1).unwrap_or("").to_owned();
                by_conv.entry(conv).or_default().push(what);
            }
        }
        let mut sequences: Vec<Vec<String>> = by_conv.into_values().collect();
        sequences.sort();
        sequences
    };
    let tool_calls = |r: &Value| {
        let msg = field(r, "msg");
        field(r, "to")
            .starts_with("tool:")
            .then(|| msg.split(" tool=").nth(1).unwrap_or("").to_owned())
    };
    let said = |r: &Value| {
        let msg = field(r, "msg");
        (field(r, "from") == "user" && msg.starts_with("start ")).then(|| {
            let text = msg.split(" user=").nth(1).unwrap_or("");
            text.split(" messages=").next().unwrap_or("").to_owned()
        })
    };
    assert_eq!(per_conversation(&a, &tool_calls), per_conversation(&b, &tool_calls));
    assert_eq!(per_conversation(&a, &said), per_conversation(&b, &said));
}
