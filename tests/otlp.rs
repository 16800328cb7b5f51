//! OTLP/JSON export (GenAI semantic conventions) and import: exports are deterministic and
//! well-formed, and an export imports back into a scenario that replays the same run.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{agentsim_output, field, records, status, stderr, stdout};
use serde_json::Value;

fn export(scenario: &str, out: &Path) -> (Vec<u8>, Vec<u8>) {
    let otlp = out.join("otlp.json");
    let output = agentsim_output(&[
        "run",
        scenario,
        "--out",
        out.to_str().unwrap(),
        "--force",
        "--otlp",
        otlp.to_str().unwrap(),
    ]);
    assert!(status(&output) <= 1, "{}\n{}", stdout(&output), stderr(&output));
    (
        std::fs::read(otlp).unwrap(),
        std::fs::read(out.join("trace.jsonl")).unwrap(),
    )
}

/// `agentsim import TRACE --out OUT`.
fn import(trace: &Path, out: &Path) -> std::process::Output {
    agentsim_output(&["import", trace.to_str().unwrap(), "--out", out.to_str().unwrap()])
}

fn spans(otlp: &[u8]) -> Vec<Value> {
    let document: Value = serde_json::from_slice(otlp).expect("the export is one JSON document");
    document["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array()
        .expect("spans")
        .clone()
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.chars().all(|c| c.is_ascii_hexdigit())
}

#[test]
fn export_is_deterministic_and_follows_the_genai_conventions() {
    let dir = tempfile::tempdir().unwrap();
    let (first, trace) = export("scenarios/support-desk.toml", &dir.path().join("a"));
    let (second, _) = export("scenarios/support-desk.toml", &dir.path().join("b"));
    assert_eq!(first, second, "same run, same export bytes");

    let document: Value = serde_json::from_slice(&first).unwrap();
    assert!(document["resourceSpans"][0]["schemaUrl"]
        .as_str()
        .unwrap()
        .ends_with("/1.37.0"));
    let spans = spans(&first);
    let ids: BTreeSet<&str> = spans.iter().map(|s| s["spanId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), spans.len(), "span ids are unique");
    for span in &spans {
        assert!(is_hex(span["traceId"].as_str().unwrap(), 32), "{span}");
        assert!(is_hex(span["spanId"].as_str().unwrap(), 16), "{span}");
        if let Some(parent) = span.get("parentSpanId") {
            assert!(ids.contains(parent.as_str().unwrap()), "a parent that exists: {span}");
        }
        let start: u64 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
        let end: u64 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
        assert!(start <= end, "{span}");
    }

    let records = records(&trace);
    let count = |prefix: &str| records.iter().filter(|r| field(r, "msg").starts_with(prefix)).count();
    let named = |prefix: &str| {
        spans
            .iter()
            .filter(|s| s["name"].as_str().unwrap().starts_with(prefix))
            .count()
    };
    assert_eq!(named("chat gpt-4o-mini"), count("llm_reply"));
    assert_eq!(named("execute_tool "), count("invoke "));
    assert_eq!(named("invoke_agent "), count("start ") + count("handoff "));
    assert_eq!(named("invoke_workflow support-desk"), 1);

    let chat = spans
        .iter()
        .find(|s| s["name"] == "chat gpt-4o-mini" && s["status"].get("code").is_none())
        .unwrap();
    assert_eq!(attr(chat, "gen_ai.operation.name").unwrap()["stringValue"], "chat");
    assert_eq!(
        attr(chat, "gen_ai.provider.name").unwrap()["stringValue"],
        "agentsim.mock"
    );
    assert_eq!(
        attr(chat, "gen_ai.request.model").unwrap()["stringValue"],
        "gpt-4o-mini"
    );
    assert!(attr(chat, "gen_ai.usage.input_tokens").unwrap()["intValue"].is_string());
    assert!(attr(chat, "gen_ai.response.finish_reasons").unwrap()["arrayValue"].is_object());
    let tool = spans.iter().find(|s| s["name"] == "execute_tool search_kb").unwrap();
    assert!(attr(tool, "gen_ai.tool.call.id").unwrap()["stringValue"]
        .as_str()
        .unwrap()
        .starts_with("call_"));

    // Errors are span status; faults and failures are events.
    let errors = records
        .iter()
        .filter(|r| field(r, "msg").starts_with("llm_reply") && field(r, "msg").contains("error="))
        .count();
    let failed_chats = spans
        .iter()
        .filter(|s| s["name"] == "chat gpt-4o-mini" && s["status"]["code"] == 2)
        .count();
    assert_eq!(failed_chats, errors);
    let events = |name: &str| {
        spans
            .iter()
            .flat_map(|s| s["events"].as_array().unwrap().iter())
            .filter(|e| e["name"] == name)
            .count()
    };
    let faults = records.iter().filter(|r| field(r, "kind") == "fault").count();
    assert!(faults > 0, "support-desk injects faults");
    assert_eq!(events("agentsim.fault"), faults);
    assert_eq!(
        events("exception"),
        records.iter().filter(|r| field(r, "kind") == "fail").count()
    );
}

/// The sequence of what the agents did: model answers (kind only) and tools invoked.
fn steps(trace: &[u8]) -> Vec<String> {
    records(trace)
        .iter()
        .filter_map(|r| {
            let msg = field(r, "msg");
            if msg.starts_with("invoke ") {
                Some(format!("tool {}", field(r, "to")))
            } else if msg.starts_with("llm_reply") {
                let what = msg.split(' ').nth(2).unwrap_or("");
                Some(format!("model {}", what.split('=').next().unwrap_or("")))
            } else if msg.starts_with("answer") {
                Some(format!("answer {}", msg.split(' ').nth(2).unwrap_or("")))
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn an_export_imports_into_a_scenario_that_replays_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let (otlp, trace) = export("scenarios/double-refund.toml", &dir.path().join("run"));
    let otlp_path = dir.path().join("double-refund.otlp.json");
    std::fs::write(&otlp_path, &otlp).unwrap();
    let imported = dir.path().join("imported");
    let output = import(&otlp_path, &imported);
    assert_eq!(status(&output), 0, "{}\n{}", stdout(&output), stderr(&output));
    assert!(
        stdout(&output).contains("1 agent(s), 4 model call(s), 3 tool call(s), 1 error(s)"),
        "{}",
        stdout(&output)
    );

    let scenario = imported.join("scenario.toml");
    let validate = agentsim_output(&["validate", scenario.to_str().unwrap()]);
    assert_eq!(status(&validate), 0, "{}{}", stdout(&validate), stderr(&validate));
    let rerun = imported.join("rerun");
    let output = agentsim_output(&["run", scenario.to_str().unwrap(), "--out", rerun.to_str().unwrap()]);
    assert_eq!(
        status(&output),
        0,
        "strict replay uses every recording: {}\n{}",
        stdout(&output),
        stderr(&output)
    );
    let replayed = std::fs::read(rerun.join("trace.jsonl")).unwrap();
    assert_eq!(steps(&replayed), steps(&trace));
    assert_eq!(
        steps(&trace).iter().filter(|s| *s == "tool tool:refund").count(),
        2,
        "the incident: two refunds"
    );

    // The same virtual makespan: model latencies come from the cassette, tool latencies and the
    // timed-out refund from the spans.
    let end = |t: &[u8]| records(t).last().unwrap()["t_us"].as_u64().unwrap();
    let (original, again) = (end(&trace), end(&replayed));
    assert!(original.abs_diff(again) < 1_000_000, "{original} vs {again}");

    // The import of a re-export is the same scenario: the round trip is stable.
    let (otlp2, _) = {
        let out = dir.path().join("rerun2");
        let otlp = out.join("otlp.json");
        let output = agentsim_output(&[
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--otlp",
            otlp.to_str().unwrap(),
        ]);
        assert_eq!(status(&output), 0, "{}", stderr(&output));
        (std::fs::read(&otlp).unwrap(), ())
    };
    let spans2 = spans(&otlp2);
    let names = |s: &[Value]| {
        s.iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let first_names: Vec<String> = names(&spans(&otlp))
        .into_iter()
        .map(|n| n.replace("invoke_workflow double-refund", "workflow"))
        .collect();
    let second_names: Vec<String> = names(&spans2)
        .into_iter()
        .map(|n| n.replace("invoke_workflow imported-double-refund_otlp", "workflow"))
        .collect();
    assert_eq!(first_names, second_names);
}

/// A minimal GenAI trace from another instrumentation: deprecated usage names, no content, an
/// agent that crashed once.
fn foreign_trace() -> Value {
    let kv = |k: &str, v: Value| serde_json::json!({"key": k, "value": v});
    let s = |v: &str| serde_json::json!({"stringValue": v});
    let i = |v: u64| serde_json::json!({"intValue": v.to_string()});
    let t = |ms: u64| (1_700_000_000_000_000_000u64 + ms * 1_000_000).to_string();
    let trace = "0123456789abcdef0123456789abcdef";
    serde_json::json!({"resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {"name": "x"}, "spans": [
        {"traceId": trace, "spanId": "aaaaaaaaaaaaaaaa", "name": "invoke_agent planner",
         "startTimeUnixNano": t(0), "endTimeUnixNano": t(3_000),
         "attributes": [kv("gen_ai.operation.name", s("invoke_agent")), kv("gen_ai.agent.name", s("planner"))],
         "events": [{"timeUnixNano": t(1_500), "name": "exception",
                     "attributes": [kv("exception.type", s("KeyError"))]}],
         "status": {"code": 2, "message": "KeyError"}},
        {"traceId": trace, "spanId": "bbbbbbbbbbbbbbbb", "parentSpanId": "aaaaaaaaaaaaaaaa", "name": "chat gpt-4.1",
         "startTimeUnixNano": t(100), "endTimeUnixNano": t(900),
         "attributes": [kv("gen_ai.system", s("openai")), kv("gen_ai.request.model", s("gpt-4.1")),
                        kv("gen_ai.usage.prompt_tokens", i(120)), kv("gen_ai.usage.completion_tokens", i(9))]},
        {"traceId": trace, "spanId": "cccccccccccccccc", "parentSpanId": "aaaaaaaaaaaaaaaa", "name": "execute_tool search",
         "startTimeUnixNano": t(950), "endTimeUnixNano": t(1_200),
         "attributes": [kv("gen_ai.operation.name", s("execute_tool")), kv("gen_ai.tool.name", s("search"))]},
        {"traceId": trace, "spanId": "dddddddddddddddd", "parentSpanId": "aaaaaaaaaaaaaaaa", "name": "chat gpt-4.1",
         "startTimeUnixNano": t(1_250), "endTimeUnixNano": t(2_000),
         "attributes": [kv("gen_ai.request.model", s("gpt-4.1"))]}
    ]}]}]})
}

#[test]
fn a_foreign_trace_without_content_imports_its_structure_tokens_and_crash() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("foreign.json");
    std::fs::write(&trace, foreign_trace().to_string()).unwrap();
    let out = dir.path().join("imported");
    let output = import(&trace, &out);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    assert!(stdout(&output).contains("the structure is reproduced, not the words"));
    let scenario = std::fs::read_to_string(out.join("scenario.toml")).unwrap();
    assert!(scenario.contains("name = \"planner\""), "{scenario}");
    assert!(scenario.contains("tools = [\"search\"]"), "{scenario}");
    assert!(
        scenario.contains("kind = \"actor.crash\"\ntarget = \"agent:planner\"\nat = \"1500000us\""),
        "{scenario}"
    );
    let cassette = std::fs::read_to_string(out.join("cassette.jsonl")).unwrap();
    assert!(
        cassette.contains("\"prompt_tokens\":120"),
        "deprecated usage names are read: {cassette}"
    );
    assert!(
        cassette.contains("\"name\":\"search\""),
        "the tool span says what the model called"
    );
    let validate = agentsim_output(&["validate", out.join("scenario.toml").to_str().unwrap()]);
    assert_eq!(status(&validate), 0, "{}{}", stdout(&validate), stderr(&validate));
}

#[test]
fn a_tool_call_that_failed_with_a_timeout_times_out_in_the_replay_as_it_did_in_the_trace() {
    let mut trace = foreign_trace();
    let spans = &mut trace["resourceSpans"][0]["scopeSpans"][0]["spans"];
    spans[0]["events"] = serde_json::json!([]);
    spans[0]["status"] = serde_json::json!({"code": 0});
    // The search ran 250 ms and failed with the wrapper's timeout; the model was told, then answered.
    spans[2]["status"] = serde_json::json!({"code": 2, "message": "TimeoutError: search did not respond within 250ms"});
    spans[2]["attributes"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"key": "error.type", "value": {"stringValue": "TimeoutError"}}));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timeout.json");
    std::fs::write(&path, trace.to_string()).unwrap();
    let out = dir.path().join("imported");
    let output = import(&path, &out);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let scenario = std::fs::read_to_string(out.join("scenario.toml")).unwrap();
    assert!(scenario.contains("tool_timeout = \"250000us\""), "{scenario}");
    let fault = &scenario[scenario.find("[[fault]]").expect("a fault")..];
    assert!(
        fault.starts_with("[[fault]]\nkind = \"tool.timeout\"\ntarget"),
        "never answers: {scenario}"
    );

    let run_dir = dir.path().join("run");
    let run = agentsim_output(&[
        "run",
        out.join("scenario.toml").to_str().unwrap(),
        "--out",
        run_dir.to_str().unwrap(),
    ]);
    assert!(status(&run) <= 1, "{}", stderr(&run));
    let records = records(&std::fs::read(run_dir.join("trace.jsonl")).unwrap());
    let at = |prefix: &str| {
        records
            .iter()
            .find(|r| r["kind"] == "deliver" && r["msg"].as_str().is_some_and(|m| m.starts_with(prefix)))
            .and_then(|r| r["t_us"].as_u64())
    };
    let invoked = at("invoke ").expect("the search is called");
    assert_eq!(
        at("tool_timeout "),
        Some(invoked + 250_000),
        "the agent gives up when the trace's call failed"
    );
    assert_eq!(at("tool_result "), None, "the model never sees a result for it");
}

#[test]
fn a_tool_span_that_lost_its_parent_works_for_the_agent_whose_model_asked_for_it() {
    let mut trace = foreign_trace();
    let spans = &mut trace["resourceSpans"][0]["scopeSpans"][0]["spans"];
    // The tool ran on another thread: its span has no parent.
    spans[2].as_object_mut().unwrap().remove("parentSpanId");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orphan.json");
    std::fs::write(&path, trace.to_string()).unwrap();
    let out = dir.path().join("imported");
    let output = import(&path, &out);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    assert!(stdout(&output).contains(": 1 agent(s)"), "{}", stdout(&output));
    let scenario = std::fs::read_to_string(out.join("scenario.toml")).unwrap();
    assert_eq!(scenario.matches("[[agent]]").count(), 1, "{scenario}");
    assert!(scenario.contains("name = \"planner\""), "{scenario}");
    assert!(scenario.contains("tools = [\"search\"]"), "{scenario}");
}

#[test]
fn a_tool_span_that_names_no_tool_is_named_after_the_call_its_id_answers() {
    let kv = |k: &str, v: &str| serde_json::json!({"key": k, "value": {"stringValue": v}});
    let mut trace = foreign_trace();
    let spans = &mut trace["resourceSpans"][0]["scopeSpans"][0]["spans"];
    let asked =
        r#"[{"role":"assistant","parts":[{"type":"tool_call","id":"call_9","name":"search","arguments":{"q":"x"}}]}]"#;
    spans[1]["attributes"]
        .as_array_mut()
        .unwrap()
        .push(kv("gen_ai.output.messages", asked));
    spans[2]["name"] = serde_json::json!("execute_tool");
    spans[2]["attributes"] = serde_json::json!([
        kv("gen_ai.operation.name", "execute_tool"),
        kv("gen_ai.tool.call.id", "call_9")
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unnamed.json");
    std::fs::write(&path, trace.to_string()).unwrap();
    let out = dir.path().join("imported");
    let output = import(&path, &out);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let scenario = std::fs::read_to_string(out.join("scenario.toml")).unwrap();
    assert!(scenario.contains("tools = [\"search\"]"), "{scenario}");
    assert!(!scenario.contains("execute_tool"), "{scenario}");
}

#[test]
fn a_trace_with_a_byte_order_mark_imports_and_a_bad_line_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let bom = dir.path().join("bom.json");
    std::fs::write(&bom, format!("\u{feff}{}", foreign_trace())).unwrap();
    let output = import(&bom, &dir.path().join("a"));
    assert_eq!(status(&output), 0, "{}", stderr(&output));

    // JSON Lines with a broken second line: the place is that line, and no other line is named.
    let lines = dir.path().join("two.jsonl");
    std::fs::write(&lines, format!("{}\n{{\"resourceSpans\": [}}\n", foreign_trace())).unwrap();
    let output = import(&lines, &dir.path().join("b"));
    assert_eq!(status(&output), 2, "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("two.jsonl:2:"), "{message}");
    assert!(!message.contains("at line"), "{message}");
}

#[test]
fn a_malformed_trace_is_an_error_naming_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut trace = foreign_trace();
    trace["resourceSpans"][0]["scopeSpans"][0]["spans"][2]["startTimeUnixNano"] = serde_json::json!("soon");
    let path = dir.path().join("broken.json");
    std::fs::write(&path, trace.to_string()).unwrap();
    let output = import(&path, &dir.path().join("x"));
    assert_eq!(status(&output), 2);
    let message = stderr(&output);
    assert!(
        message
            .contains("broken.json:1: resourceSpans[0].scopeSpans[0].spans[2].startTimeUnixNano: expected nanoseconds"),
        "{message}"
    );
}

/// The tool calls of a trace: conversation and arguments, in order.
fn invocations(trace: &[u8]) -> Vec<(String, String)> {
    records(trace)
        .iter()
        .filter(|r| r["kind"] == "deliver" && field(r, "msg").starts_with("invoke "))
        .map(|r| {
            let msg = field(r, "msg");
            let conv = msg
                .split(' ')
                .find(|kv| kv.starts_with("conv="))
                .unwrap_or("")
                .to_owned();
            let args = msg.split_once(" args=").map_or("", |(_, a)| a).to_owned();
            (conv, args)
        })
        .collect()
}

#[test]
fn an_agentsim_export_imported_back_replays_to_the_same_calls_tool_calls_and_cost() {
    let dir = tempfile::tempdir().unwrap();
    let (otlp_path, original) = (dir.path().join("run.otlp.json"), dir.path().join("original"));
    let output = agentsim_output(&[
        "run",
        "tests/fixtures/round-trip.toml",
        "--otlp",
        otlp_path.to_str().unwrap(),
        "--out",
        original.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let before: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(
        before["llm_errors"].as_u64().unwrap() > 0,
        "the fixture retries server errors"
    );

    let imported = dir.path().join("imported");
    let output = import(&otlp_path, &imported);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let replayed = dir.path().join("replayed");
    let output = agentsim_output(&[
        "run",
        imported.join("scenario.toml").to_str().unwrap(),
        "--out",
        replayed.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let after: Value = serde_json::from_str(&stdout(&output)).unwrap();
    for key in ["llm_calls", "llm_errors", "tool_calls", "cost_pusd"] {
        assert_eq!(before[key], after[key], "{key}");
    }
    assert_eq!(before["tokens"]["input"], after["tokens"]["input"]);
    assert_eq!(before["conversations"], after["conversations"]);
    let read = |dir: &Path| std::fs::read(dir.join("trace.jsonl")).unwrap();
    let (mut a, mut b) = (invocations(&read(&original)), invocations(&read(&replayed)));
    // Each conversation makes the same calls with the same arguments (the replay's timing is the
    // recorded medians, so calls of different conversations may interleave otherwise).
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn an_import_of_a_file_that_cannot_be_read_names_the_file_without_a_place() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let out = dir.path().join("out");
    let output = import(&missing, &out);
    assert_eq!(status(&output), 2);
    let err = stderr(&output);
    assert!(
        err.contains(&format!("{}: cannot read the trace", missing.display())),
        "{err}"
    );
    assert!(!err.contains(":0:"), "{err}");
}

#[test]
fn no_output_overwrites_an_input_and_an_import_keeps_what_its_out_dir_holds() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.json");
    let scenario = dir.path().join("design.toml");
    std::fs::copy(common::repo_root().join("scenarios/double-refund.toml"), &scenario).unwrap();
    let original = std::fs::read(&scenario).unwrap();
    let run = agentsim_output(&["run", scenario.to_str().unwrap(), "--otlp", trace.to_str().unwrap()]);
    assert!(trace.exists(), "{}", stderr(&run));

    // --otlp (or --mermaid) onto the scenario it runs: refused, the scenario intact.
    for flag in ["--otlp", "--mermaid"] {
        let output = agentsim_output(&["run", scenario.to_str().unwrap(), flag, scenario.to_str().unwrap()]);
        assert_eq!(status(&output), 2, "{flag}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("which this command reads"),
            "{}",
            stderr(&output)
        );
        assert_eq!(std::fs::read(&scenario).unwrap(), original);
    }

    // An import into the directory holding its own trace as cassette.jsonl: refused, --force or not.
    let held = dir.path().join("held");
    std::fs::create_dir(&held).unwrap();
    std::fs::copy(&trace, held.join("cassette.jsonl")).unwrap();
    let before = std::fs::read(held.join("cassette.jsonl")).unwrap();
    let input = held.join("cassette.jsonl");
    for force in [false, true] {
        let mut args = vec!["import", input.to_str().unwrap(), "--out", held.to_str().unwrap()];
        if force {
            args.push("--force");
        }
        let output = agentsim_output(&args);
        assert_eq!(status(&output), 2, "{}", stderr(&output));
        assert_eq!(std::fs::read(held.join("cassette.jsonl")).unwrap(), before);
    }

    // A cassette already there (no scenario.toml beside it) is not replaced without --force.
    let output = import(&trace, &held);
    assert_eq!(status(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("already holds cassette.jsonl, which the import would overwrite"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read(held.join("cassette.jsonl")).unwrap(), before);
    let output = agentsim_output(&[
        "import",
        trace.to_str().unwrap(),
        "--out",
        held.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    assert!(held.join("scenario.toml").exists());
}

/// What a run did, as far as a trace can tell: calls, tokens, cost and how each conversation
/// ended.
fn course(report: &Value) -> Value {
    serde_json::json!({
        "virtual_time_us": report["virtual_time_us"],
        "llm_calls": report["llm_calls"],
        "llm_errors": report["llm_errors"],
        "tool_calls": report["tool_calls"],
        "tokens": report["tokens"]["total"],
        "cost_pusd": report["cost_pusd"],
        "fates": report["fate_by_conversation"],
    })
}

#[test]
fn shipped_scenarios_exported_and_imported_back_replay_the_same_course() {
    // Tool calls are imported one by one (latency and result in order per conversation), so a
    // course that hangs on exact tool timings replays too: support-desk's crashes land on the
    // same messages, and the same seven conversations are lost. The retry policy is exported
    // whole, so retry-storm's exponential backoff ends at the same virtual time. Delegation is
    // exported as agents-as-tools (`ask_<agent>` calls) and imported back as `delegates`, so
    // research-pipeline's fan-out to three researchers replays call for call. (Guardrails are
    // the design's, not in a trace: pii-leak's output guardrail takes time the import cannot
    // know, so its run ends 23 ms sooner.)
    for name in [
        "support-desk",
        "downstream-retry-storm",
        "prompt-injection",
        "travel-desk",
        "coding-agent",
        "double-refund",
        "hotel-last-room",
        "retry-storm",
        "crash-loop",
        "mcp-order-desk",
        "prompt-injection-guarded",
        "research-pipeline",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let scenario = format!("scenarios/{name}.toml");
        let (otlp, trace) = export(&scenario, &dir.path().join("original"));
        let otlp_path = dir.path().join("run.otlp.json");
        std::fs::write(&otlp_path, otlp).unwrap();
        let imported = dir.path().join("imported");
        let output = import(&otlp_path, &imported);
        assert_eq!(status(&output), 0, "{name}: {}", stderr(&output));
        let replayed = dir.path().join("replayed");
        let output = agentsim_output(&[
            "run",
            imported.join("scenario.toml").to_str().unwrap(),
            "--out",
            replayed.to_str().unwrap(),
        ]);
        assert!(status(&output) <= 1, "{name}: {}", stderr(&output));
        assert!(!stderr(&output).contains("cassette"), "{name}: {}", stderr(&output));
        let report =
            |dir: &Path| -> Value { serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap() };
        assert_eq!(
            course(&report(&dir.path().join("original"))),
            course(&report(&replayed)),
            "{name}"
        );
        // The same tool calls with the same arguments in the same order, across conversations.
        let replayed_trace = std::fs::read(replayed.join("trace.jsonl")).unwrap();
        assert_eq!(invocations(&trace), invocations(&replayed_trace), "{name}");
    }
}

/// An OTLP document of `spans`, each `(trace, id, parent, name, start_ms, end_ms, attributes,
/// status)`.
#[allow(clippy::type_complexity)]
fn document(
    spans: &[(
        &str,
        &str,
        Option<&str>,
        &str,
        u64,
        u64,
        Vec<(&str, Value)>,
        Option<&str>,
    )],
) -> Value {
    let t = |ms: u64| (1_700_000_000_000_000_000u64 + ms * 1_000_000).to_string();
    let spans: Vec<Value> = spans
        .iter()
        .map(|(trace, id, parent, name, start, end, attributes, error)| {
            let attributes: Vec<Value> = attributes
                .iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::Number(n) => serde_json::json!({"intValue": n.to_string()}),
                        other => serde_json::json!({"stringValue": other.as_str().unwrap_or("")}),
                    };
                    serde_json::json!({"key": k, "value": value})
                })
                .collect();
            let mut span = serde_json::json!({"traceId": format!("{trace:0>32}"), "spanId": format!("{id:0>16}"),
                "name": name, "startTimeUnixNano": t(*start), "endTimeUnixNano": t(*end), "attributes": attributes});
            if let Some(parent) = parent {
                span["parentSpanId"] = serde_json::json!(format!("{parent:0>16}"));
            }
            if let Some(message) = error {
                span["status"] = serde_json::json!({"code": 2, "message": message});
            }
            span
        })
        .collect();
    serde_json::json!({"resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {"name": "app"}, "spans": spans}]}]})
}

/// Imports `trace` and runs the import: the scenario and cassette written, the run's report
/// and what the run said on stderr.
fn import_and_run(trace: &Value) -> (String, String, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.json");
    std::fs::write(&path, trace.to_string()).unwrap();
    let out = dir.path().join("imported");
    let output = import(&path, &out);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let scenario = std::fs::read_to_string(out.join("scenario.toml")).unwrap();
    let cassette = std::fs::read_to_string(out.join("cassette.jsonl")).unwrap();
    let output = agentsim_output(&["run", out.join("scenario.toml").to_str().unwrap(), "--json"]);
    assert!(status(&output) <= 1, "{}", stderr(&output));
    let report = serde_json::from_str(&stdout(&output)).unwrap();
    (scenario, cassette, report, stderr(&output))
}

fn chat(model: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("gen_ai.operation.name", Value::from("chat")),
        ("gen_ai.request.model", Value::from(model.to_owned())),
        ("gen_ai.usage.input_tokens", Value::from(10)),
        ("gen_ai.usage.output_tokens", Value::from(2)),
    ]
}

#[test]
fn an_app_without_agent_spans_imports_one_conversation_per_trace_or_conversation_id() {
    // Three requests, each a trace of one model call.
    let lone = document(&[
        ("a1", "1", None, "chat gpt-4o", 0, 100, chat("gpt-4o"), None),
        ("a2", "2", None, "chat gpt-4o", 1_000, 1_100, chat("gpt-4o"), None),
        ("a3", "3", None, "chat gpt-4o", 2_000, 2_100, chat("gpt-4o"), None),
    ]);
    let (_, _, report, said) = import_and_run(&lone);
    assert_eq!(report["conversations"]["started"], 3, "{report:#}");
    assert_eq!(report["llm_calls"], 3);
    assert!(!said.contains("cassette"), "{said}");
    // Two conversations in one trace, told apart by their conversation ids.
    let with_ids = |id: &str| {
        let mut attributes = chat("gpt-4o");
        attributes.push(("gen_ai.conversation.id", Value::from(id.to_owned())));
        attributes
    };
    let two = document(&[
        ("b1", "1", None, "chat gpt-4o", 0, 100, with_ids("c-1"), None),
        ("b1", "2", None, "chat gpt-4o", 500, 600, with_ids("c-2"), None),
    ]);
    let (_, _, report, said) = import_and_run(&two);
    assert_eq!(report["conversations"]["started"], 2, "{report:#}");
    assert!(!said.contains("cassette"), "{said}");
}

#[test]
fn a_run_that_gave_up_after_three_429s_replays_three_failed_calls_and_no_more() {
    let mut limited = chat("gpt-4o-mini");
    limited.push(("http.response.status_code", Value::from(429)));
    limited.push(("error.type", Value::from("RateLimitError")));
    let agent = vec![
        ("gen_ai.operation.name", Value::from("invoke_agent")),
        ("gen_ai.agent.name", Value::from("a")),
    ];
    let trace = document(&[
        (
            "c",
            "a",
            None,
            "invoke_agent a",
            0,
            3_000,
            agent,
            Some("RateLimitError"),
        ),
        (
            "c",
            "1",
            Some("a"),
            "chat gpt-4o-mini",
            10,
            110,
            limited.clone(),
            Some("RateLimitError"),
        ),
        (
            "c",
            "2",
            Some("a"),
            "chat gpt-4o-mini",
            1_110,
            1_210,
            limited.clone(),
            Some("RateLimitError"),
        ),
        (
            "c",
            "3",
            Some("a"),
            "chat gpt-4o-mini",
            2_210,
            2_310,
            limited,
            Some("RateLimitError"),
        ),
    ]);
    let (scenario, _, report, said) = import_and_run(&trace);
    assert!(scenario.contains("retry = { attempts = 3,"), "{scenario}");
    assert_eq!(
        (report["llm_calls"].as_u64(), report["llm_errors"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(report["conversations"]["failed"], 1, "{report:#}");
    // The 429s are the failure: no stand-in error is recorded after them.
    assert!(!said.contains("cassette"), "{said}");
}

#[test]
fn an_error_message_that_names_its_status_is_imported_with_that_status() {
    let mut overloaded = chat("gpt-4o");
    overloaded.push(("error.type", Value::from("InternalServerError")));
    let agent = vec![
        ("gen_ai.operation.name", Value::from("invoke_agent")),
        ("gen_ai.agent.name", Value::from("a")),
    ];
    let trace = document(&[
        ("d", "a", None, "invoke_agent a", 0, 3_000, agent, None),
        (
            "d",
            "1",
            Some("a"),
            "chat gpt-4o",
            10,
            110,
            overloaded,
            Some("Error code: 503 - overloaded"),
        ),
        ("d", "2", Some("a"), "chat gpt-4o", 1_110, 1_210, chat("gpt-4o"), None),
    ]);
    let (_, cassette, report, said) = import_and_run(&trace);
    assert!(!said.contains("cassette"), "{said}");
    assert_eq!(report["llm_errors"], 1);
    assert!(cassette.contains(r#""status":503"#), "{cassette}");
    assert!(cassette.contains(r#""code":"server_is_overloaded""#), "{cassette}");
}

#[test]
fn a_model_answer_a_guardrail_checked_is_exported_under_its_model() {
    let dir = tempfile::tempdir().unwrap();
    let (otlp, _) = export("scenarios/runaway-cost.toml", dir.path());
    let chats: Vec<Value> = spans(&otlp)
        .into_iter()
        .filter(|s| attr(s, "gen_ai.operation.name").and_then(|v| v["stringValue"].as_str()) == Some("chat"))
        .collect();
    assert!(!chats.is_empty());
    for span in &chats {
        let model = attr(span, "gen_ai.request.model").unwrap()["stringValue"]
            .as_str()
            .unwrap();
        assert!(!model.starts_with("guardrail:"), "{span}");
    }
}

#[test]
fn an_agent_that_turned_to_a_second_model_after_failures_imports_it_as_its_fallback() {
    let mut overloaded = chat("gpt-4o");
    overloaded.push(("http.response.status_code", Value::from(503)));
    let agent = vec![
        ("gen_ai.operation.name", Value::from("invoke_agent")),
        ("gen_ai.agent.name", Value::from("a")),
    ];
    let trace = document(&[
        ("e", "a", None, "invoke_agent a", 0, 3_000, agent, None),
        (
            "e",
            "1",
            Some("a"),
            "chat gpt-4o",
            10,
            110,
            overloaded,
            Some("overloaded"),
        ),
        (
            "e",
            "2",
            Some("a"),
            "chat claude-3-5-haiku",
            610,
            900,
            chat("claude-3-5-haiku"),
            None,
        ),
    ]);
    let (scenario, _, report, said) = import_and_run(&trace);
    assert!(scenario.contains("fallback = \"claude-3-5-haiku\""), "{scenario}");
    assert!(!said.contains("cassette"), "{said}");
    assert_eq!(
        (report["llm_calls"].as_u64(), report["llm_errors"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(report["conversations"]["answered"], 1, "{report:#}");
    // Two models by design (no failure before the second): not a fallback.
    let agent = vec![
        ("gen_ai.operation.name", Value::from("invoke_agent")),
        ("gen_ai.agent.name", Value::from("a")),
    ];
    let router = document(&[
        ("e", "a", None, "invoke_agent a", 0, 3_000, agent, None),
        ("e", "1", Some("a"), "chat gpt-4o", 10, 110, chat("gpt-4o"), None),
        (
            "e",
            "2",
            Some("a"),
            "chat claude-3-5-haiku",
            610,
            900,
            chat("claude-3-5-haiku"),
            None,
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.json");
    std::fs::write(&path, router.to_string()).unwrap();
    let out = dir.path().join("imported");
    let output = import(&path, &out);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let scenario = std::fs::read_to_string(out.join("scenario.toml")).unwrap();
    assert!(!scenario.contains("fallback ="), "{scenario}");
    // agentsim's own export names the fallback and the breaker.
    let dir = tempfile::tempdir().unwrap();
    let (otlp, _) = export("scenarios/fallback-outage.toml", dir.path());
    let path = dir.path().join("fallback.otlp.json");
    std::fs::write(&path, otlp).unwrap();
    let out = dir.path().join("imported");
    let output = import(&path, &out);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let scenario = std::fs::read_to_string(out.join("scenario.toml")).unwrap();
    assert!(scenario.contains("fallback = \"claude-3-5-haiku\""), "{scenario}");
    assert!(
        scenario.contains("circuit_breaker = { failures = 3, cool_down = \"15000000us\" }"),
        "{scenario}"
    );
}

#[test]
fn a_wrapper_agent_that_called_no_model_hands_its_conversation_to_the_agent_that_did() {
    let agent = |name: &str| {
        vec![
            ("gen_ai.operation.name", Value::from("invoke_agent")),
            ("gen_ai.agent.name", Value::from(name.to_owned())),
        ]
    };
    // A crew (a workflow span that is an agent span) runs its worker, which calls the model.
    let trace = document(&[
        ("f", "c", None, "invoke_agent crew", 0, 2_000, agent("crew"), None),
        (
            "f",
            "d",
            Some("c"),
            "invoke_agent worker",
            5,
            1_900,
            agent("worker"),
            None,
        ),
        ("f", "1", Some("d"), "chat gpt-4o", 10, 110, chat("gpt-4o"), None),
    ]);
    let (scenario, _, report, said) = import_and_run(&trace);
    assert!(scenario.contains("to = \"worker\""), "{scenario}");
    assert!(!said.contains("cassette"), "{said}");
    assert_eq!(report["conversations"]["answered"], 1, "{report:#}");
}

#[test]
fn a_trace_without_content_replays_every_model_call_of_an_agent_that_answered_twice() {
    let agent = |name: &str, conversation: Option<&str>| {
        let mut attributes = vec![
            ("gen_ai.operation.name", Value::from("invoke_agent")),
            ("gen_ai.agent.name", Value::from(name.to_owned())),
        ];
        if let Some(id) = conversation {
            attributes.push(("gen_ai.conversation.id", Value::from(id.to_owned())));
        }
        attributes
    };
    let tool = vec![
        ("gen_ai.operation.name", Value::from("execute_tool")),
        ("gen_ai.tool.name", Value::from("lookup")),
    ];
    // Three model calls in one agent span with nothing between: each answer was final, so the
    // two later calls open the user's next turns.
    let one_span = document(&[
        (
            "a",
            "a",
            None,
            "invoke_agent helper",
            0,
            4_000,
            agent("helper", None),
            None,
        ),
        ("a", "1", Some("a"), "chat gpt-4o", 10, 1_000, chat("gpt-4o"), None),
        ("a", "2", Some("a"), "chat gpt-4o", 1_500, 2_500, chat("gpt-4o"), None),
        ("a", "3", Some("a"), "chat gpt-4o", 3_000, 3_900, chat("gpt-4o"), None),
    ]);
    let (scenario, _, report, said) = import_and_run(&one_span);
    assert!(scenario.contains("max_turns = 3"), "{scenario}");
    assert!(!said.contains("cassette"), "{said}");
    assert_eq!(report["llm_calls"], 3, "{report:#}");
    assert_eq!(report["user_turns"]["total"], 3, "{report:#}");
    assert_eq!(report["conversations"]["answered"], 1, "{report:#}");
    // Three runs of the agent under one conversation id; the second ran a tool between its two
    // calls, which is one turn, not two.
    let runs = document(&[
        (
            "b1",
            "a",
            None,
            "invoke_agent helper",
            0,
            1_100,
            agent("helper", Some("c-1")),
            None,
        ),
        ("b1", "1", Some("a"), "chat gpt-4o", 10, 1_000, chat("gpt-4o"), None),
        (
            "b2",
            "b",
            None,
            "invoke_agent helper",
            5_000,
            7_100,
            agent("helper", Some("c-1")),
            None,
        ),
        ("b2", "2", Some("b"), "chat gpt-4o", 5_010, 5_500, chat("gpt-4o"), None),
        (
            "b2",
            "3",
            Some("b"),
            "execute_tool lookup",
            5_600,
            5_900,
            tool.clone(),
            None,
        ),
        ("b2", "4", Some("b"), "chat gpt-4o", 6_000, 7_000, chat("gpt-4o"), None),
        (
            "b3",
            "c",
            None,
            "invoke_agent helper",
            10_000,
            11_100,
            agent("helper", Some("c-1")),
            None,
        ),
        (
            "b3",
            "5",
            Some("c"),
            "chat gpt-4o",
            10_010,
            11_000,
            chat("gpt-4o"),
            None,
        ),
    ]);
    let (scenario, _, report, said) = import_and_run(&runs);
    assert!(scenario.contains("max_turns = 3"), "{scenario}");
    assert!(!said.contains("cassette"), "{said}");
    assert_eq!(report["conversations"]["started"], 1, "{report:#}");
    assert_eq!(report["llm_calls"], 4, "{report:#}");
    assert_eq!(report["tool_calls"], 1, "{report:#}");
    assert_eq!(report["user_turns"]["total"], 3, "{report:#}");
}

#[test]
fn an_openllmetry_trace_imports_its_agent_messages_tool_calls_and_results() {
    // OpenLLMetry (Traceloop) flattens messages into `gen_ai.prompt.N.*` and
    // `gen_ai.completion.0.*`, names its model spans `openai.chat` with `llm.request.type`, and
    // marks the app's own spans with `traceloop.span.kind`.
    let traceloop = |kind: &str, name: &str| {
        vec![
            ("traceloop.span.kind", Value::from(kind.to_owned())),
            ("traceloop.entity.name", Value::from(name.to_owned())),
        ]
    };
    let chat = |prompt: &[(&str, &str)], completion: Vec<(&'static str, Value)>| {
        let mut attributes = vec![
            ("llm.request.type", Value::from("chat")),
            ("gen_ai.system", Value::from("openai")),
            ("gen_ai.request.model", Value::from("gpt-4o-mini")),
            ("gen_ai.usage.prompt_tokens", Value::from(40)),
            ("gen_ai.usage.completion_tokens", Value::from(9)),
        ];
        for (j, (role, content)) in prompt.iter().enumerate() {
            let role_key: &'static str = Box::leak(format!("gen_ai.prompt.{j}.role").into_boxed_str());
            let content_key: &'static str = Box::leak(format!("gen_ai.prompt.{j}.content").into_boxed_str());
            attributes.push((role_key, Value::from(role.to_string())));
            attributes.push((content_key, Value::from(content.to_string())));
        }
        attributes.extend(completion);
        attributes
    };
    let asked = vec![
        ("gen_ai.completion.0.role", Value::from("assistant")),
        ("gen_ai.completion.0.finish_reason", Value::from("tool_calls")),
        ("gen_ai.completion.0.tool_calls.0.id", Value::from("call_1")),
        ("gen_ai.completion.0.tool_calls.0.name", Value::from("lookup_order")),
        (
            "gen_ai.completion.0.tool_calls.0.arguments",
            Value::from(r#"{"order_id":"A-7"}"#),
        ),
    ];
    let answered = vec![
        ("gen_ai.completion.0.role", Value::from("assistant")),
        ("gen_ai.completion.0.finish_reason", Value::from("stop")),
        (
            "gen_ai.completion.0.content",
            Value::from("Order A-7 shipped on Monday."),
        ),
    ];
    let mut tool = traceloop("tool", "lookup_order");
    // OpenLLMetry records `json.dumps` of what the tool returned: a returned string is quoted
    // and escaped once more, and the import reads the string itself.
    tool.push((
        "traceloop.entity.output",
        Value::from(serde_json::to_string(r#"{"status":"shipped"}"#).unwrap()),
    ));
    let user = [
        ("system", "You are a support agent."),
        ("user", "Where is my order A-7?"),
    ];
    let workflow = |tool: Vec<(&'static str, Value)>, tool_error: Option<&'static str>| {
        document(&[
            (
                "e",
                "e0",
                None,
                "support_flow.workflow",
                0,
                3_000,
                traceloop("workflow", "support_flow"),
                None,
            ),
            (
                "e",
                "a0",
                Some("e0"),
                "support.agent",
                5,
                2_900,
                traceloop("agent", "support"),
                None,
            ),
            (
                "e",
                "1",
                Some("a0"),
                "openai.chat",
                10,
                800,
                chat(&user, asked.clone()),
                None,
            ),
            ("e", "2", Some("a0"), "lookup_order.tool", 900, 1_200, tool, tool_error),
            (
                "e",
                "3",
                Some("a0"),
                "openai.chat",
                1_300,
                2_800,
                chat(&user, answered.clone()),
                None,
            ),
        ])
    };
    let (scenario, cassette, report, said) = import_and_run(&workflow(tool, None));
    assert!(scenario.contains("name = \"support\""), "{scenario}");
    assert!(scenario.contains("to = \"support\""), "{scenario}");
    assert!(scenario.contains("Where is my order A-7?"), "{scenario}");
    assert!(scenario.contains(r#"output = '{"status":"shipped"}'"#), "{scenario}");
    assert!(!scenario.contains("placeholders"), "{scenario}");
    assert!(cassette.contains(r#"\"order_id\":\"A-7\""#), "{cassette}");
    assert!(cassette.contains("Order A-7 shipped on Monday."), "{cassette}");
    assert!(!said.contains("cassette"), "{said}");
    assert_eq!(report["llm_calls"], 2, "{report:#}");
    assert_eq!(report["tool_calls"], 1, "{report:#}");
    assert_eq!(report["tokens"]["input"], 80, "{report:#}");
    assert_eq!(report["conversations"]["answered"], 1, "{report:#}");

    // A tool call that failed has no result to record: no content is missing for it.
    let (scenario, _, _, _) = import_and_run(&workflow(traceloop("tool", "lookup_order"), Some("ConnectionError")));
    assert!(scenario.contains("kind = \"tool.error\""), "{scenario}");
    assert!(!scenario.contains("placeholders"), "{scenario}");
}
