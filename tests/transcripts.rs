//! Transcripts, as a live model sees them: a local OpenAI-compatible server records every request
//! of a tool loop, a handoff and a delegation, and the tests check that each request carries the
//! whole history with the real call ids and arguments, the tool schemas and `tool_choice`, as an
//! agent framework sends them; that a strict replay of a changed history names the message that
//! changed; and that the compatibility settings and the live details behave.

mod common;

use std::path::{Path, PathBuf};

use common::server::{completion, Canned, FakeOpenAi, Received};
use common::{agentsim, field, records, status, stderr, stdout};
use serde_json::{json, Value};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn run(args: &[&str]) -> std::process::Output {
    agentsim().args(args).output().expect("agentsim starts")
}

/// A live agent with `lookup_order` (with a parameter schema), and whatever `extra` adds.
fn live_scenario(base_url: &str, agent_extra: &str, llm_extra: &str, extra: &str) -> String {
    format!(
        r#"[scenario]
name = "transcripts"
seed = 3
max_virtual_time = "10m"

[[llm]]
name = "gpt"
model = "test-model"
mode = "live"
base_url = "{base_url}"
timeout = "2s"
price = {{ input_per_mtok = 1.0, output_per_mtok = 2.0 }}
{llm_extra}

[[agent]]
name = "support"
llm = "gpt"
instructions = "Answer order questions."
tools = ["lookup_order"]
max_turns = 6
{agent_extra}

[[tool]]
name = "lookup_order"
description = "Look an order up by its id."
parameters = {{ type = "object", properties = {{ order_id = {{ type = "string", description = "The order's id." }} }}, required = ["order_id"] }}
latency = "50ms"
output = "order {{{{args.order_id}}}} shipped"

[[traffic]]
kind = "script"
to = "support"
script = [{{ at = "0s", message = "where are my orders A1 and A2?" }}]
{extra}
"#
    )
}

fn call(id: &str, name: &str, arguments: &str) -> Value {
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
}

fn calls(list: Vec<Value>) -> Value {
    completion(
        json!({"role": "assistant", "content": null, "tool_calls": list}),
        "tool_calls",
    )
}

fn text(content: &str) -> Value {
    completion(json!({"role": "assistant", "content": content}), "stop")
}

/// Two lookups, one per call, with the server's own ids and argument spacing; then an answer.
fn three_step_server() -> FakeOpenAi {
    FakeOpenAi::start(|index, _: &Received| match index {
        0 => Canned::json(
            200,
            calls(vec![call("call_abc", "lookup_order", "{\"order_id\": \"A1\"}")]),
        ),
        1 => Canned::json(
            200,
            calls(vec![call("call_def", "lookup_order", "{ \"order_id\":\"A2\" }")]),
        ),
        _ => Canned::json(200, text("Both orders have shipped.")),
    })
}

fn bodies(server: &FakeOpenAi) -> Vec<Value> {
    server
        .received()
        .iter()
        .map(|r| serde_json::from_str(&r.body).expect("a JSON body"))
        .collect()
}

#[test]
fn a_live_tool_loop_sends_the_whole_history_with_the_real_ids_arguments_and_tool_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let server = three_step_server();
    let file = write(dir.path(), "live.toml", &live_scenario(&server.base_url(), "", "", ""));
    let out = dir.path().join("run");
    let output = run(&["run", p(&file), "--out", p(&out)]);
    assert_eq!(status(&output), 0, "{}\n{}", stdout(&output), stderr(&output));
    let bodies = bodies(&server);
    assert_eq!(bodies.len(), 3, "two tool calls and an answer: the loop ends by itself");

    let system = json!({"role": "system", "content": "Answer order questions."});
    let user = json!({"role": "user", "content": "where are my orders A1 and A2?"});
    let first_call = json!({"role": "assistant", "content": null,
        "tool_calls": [call("call_abc", "lookup_order", "{\"order_id\": \"A1\"}")]});
    let first_result = json!({"role": "tool", "tool_call_id": "call_abc", "content": "order A1 shipped"});
    let second_call = json!({"role": "assistant", "content": null,
        "tool_calls": [call("call_def", "lookup_order", "{ \"order_id\":\"A2\" }")]});
    let second_result = json!({"role": "tool", "tool_call_id": "call_def", "content": "order A2 shipped"});
    assert_eq!(bodies[0]["messages"], json!([system, user]));
    assert_eq!(bodies[1]["messages"], json!([system, user, first_call, first_result]));
    assert_eq!(
        bodies[2]["messages"],
        json!([system, user, first_call, first_result, second_call, second_result])
    );
    for body in &bodies {
        assert_eq!(body["tool_choice"], "auto");
        assert_eq!(
            body["tools"],
            json!([{"type": "function", "function": {
                "name": "lookup_order",
                "description": "Look an order up by its id.",
                "parameters": {"type": "object", "required": ["order_id"],
                    "properties": {"order_id": {"type": "string", "description": "The order's id."}}},
            }}])
        );
    }

    // The trace's model-call records carry the length and a digest of what was sent: three
    // different histories, three digests.
    let trace = std::fs::read(out.join("trace.jsonl")).unwrap();
    let sent: Vec<(String, String)> = records(&trace)
        .iter()
        .filter(|r| field(r, "msg").starts_with("complete "))
        .map(|r| {
            let msg = field(r, "msg");
            let value = |key: &str| {
                msg.split(' ')
                    .find_map(|kv| kv.strip_prefix(key))
                    .unwrap_or_default()
                    .to_owned()
            };
            (value("messages="), value("transcript="))
        })
        .collect();
    assert_eq!(
        sent.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["1", "3", "5"]
    );
    assert!(sent[0].1 != sent[1].1 && sent[1].1 != sent[2].1, "{sent:?}");
}

#[test]
fn a_strict_replay_of_a_changed_history_names_the_message_that_changed_and_shows_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let server = three_step_server();
    let file = write(dir.path(), "live.toml", &live_scenario(&server.base_url(), "", "", ""));
    let out = dir.path().join("run");
    assert_eq!(status(&run(&["run", p(&file), "--out", p(&out)])), 0);
    // The tool now answers differently: the second request's fourth message differs.
    let changed = live_scenario("http://127.0.0.1:9/v1", "", "", "").replace(
        "output = \"order {{args.order_id}} shipped\"",
        "output = \"order {{args.order_id}} shipped, a long way round by the northern route\"",
    );
    let changed = write(dir.path(), "changed.toml", &changed);
    let cassette = out.join("cassette.jsonl");
    let output = run(&["run", p(&changed), "--replay-cassette", p(&cassette)]);
    assert_eq!(status(&output), 3, "{}\n{}", stdout(&output), stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains(
            "call #1 of agent:support in conversation 0 to llm:gpt (incarnation 0) differs from the recording at `messages[3].content`"
        ),
        "{message}"
    );
    assert!(
        message.contains("a long way round"),
        "the difference is shown: {message}"
    );
}

#[test]
fn a_server_that_rejects_null_content_works_with_assistant_content_empty() {
    // Some servers answer an assistant message with `content: null` with HTTP 500.
    let strict_server = || {
        FakeOpenAi::start(|index, request: &Received| {
            let body: Value = serde_json::from_str(&request.body).unwrap();
            let null_content = body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["role"] == "assistant" && m["content"].is_null());
            match index {
                _ if null_content => Canned::json(500, json!({"error": {"message": "content must be a string"}})),
                0 => Canned::json(
                    200,
                    calls(vec![call("call_1", "lookup_order", "{\"order_id\":\"A1\"}")]),
                ),
                _ => Canned::json(200, text("Shipped.")),
            }
        })
    };
    let dir = tempfile::tempdir().unwrap();

    let server = strict_server();
    let file = write(dir.path(), "null.toml", &live_scenario(&server.base_url(), "", "", ""));
    let output = run(&["run", p(&file), "--json"]);
    let report: Value = serde_json::from_slice(&output.stdout).expect("--json prints the report");
    assert_eq!(report["conversations"]["failed"], 1, "{report:#}");

    let server = strict_server();
    let file = write(
        dir.path(),
        "empty.toml",
        &live_scenario(&server.base_url(), "", "assistant_content = \"empty\"", ""),
    );
    let output = run(&["run", p(&file), "--json"]);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let bodies = bodies(&server);
    assert_eq!(bodies[1]["messages"][2]["content"], "");
}

#[test]
fn tool_choice_max_completion_tokens_and_a_named_tool_are_sent_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeOpenAi::start(|_, _: &Received| Canned::json(200, text("ok")));
    let file = write(
        dir.path(),
        "choice.toml",
        &live_scenario(
            &server.base_url(),
            "tool_choice = \"lookup_order\"",
            "max_completion_tokens = 64",
            "",
        ),
    );
    assert_eq!(status(&run(&["run", p(&file)])), 0);
    let body = &bodies(&server)[0];
    assert_eq!(
        body["tool_choice"],
        json!({"type": "function", "function": {"name": "lookup_order"}})
    );
    assert_eq!(body["max_completion_tokens"], 64);
    assert!(body.get("max_tokens").is_none());
}

#[test]
fn a_live_handoff_carries_the_transcript_as_the_agents_sdk_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeOpenAi::start(|index, _: &Received| match index {
        0 => Canned::json(200, calls(vec![call("call_h", "transfer_to_billing", "{}")])),
        _ => Canned::json(200, text("Refunded.")),
    });
    let billing = r#"
[[agent]]
name = "billing"
llm = "gpt"
instructions = "You handle refunds."
"#;
    let file = write(
        dir.path(),
        "handoff.toml",
        &live_scenario(&server.base_url(), "handoffs = [\"billing\"]", "", billing),
    );
    let output = run(&["run", p(&file)]);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let bodies = bodies(&server);
    assert_eq!(bodies.len(), 2);
    let names: Vec<&str> = bodies[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lookup_order", "transfer_to_billing"]);
    // billing gets its own instructions and the whole history, the transfer included.
    assert_eq!(
        bodies[1]["messages"],
        json!([
            {"role": "system", "content": "You handle refunds."},
            {"role": "user", "content": "where are my orders A1 and A2?"},
            {"role": "assistant", "content": null, "tool_calls": [call("call_h", "transfer_to_billing", "{}")]},
            {"role": "tool", "tool_call_id": "call_h", "content": "{\"assistant\":\"billing\"}"},
        ])
    );
}

#[test]
fn a_live_agent_with_delegates_is_offered_an_ask_tool_and_gets_the_answer_as_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeOpenAi::start(|index, _: &Received| match index {
        0 => Canned::json(
            200,
            calls(vec![call("call_q", "ask_warehouse", "{\"input\":\"where is A1?\"}")]),
        ),
        _ => Canned::json(200, text("A1 is on its way.")),
    });
    // The warehouse agent is scripted: it answers with what it was asked.
    let warehouse = r#"
[[agent]]
name = "warehouse"
behavior = [{ otherwise = { answer = "A1 left the dock: {{user}}" } }]
"#;
    let file = write(
        dir.path(),
        "delegate.toml",
        &live_scenario(&server.base_url(), "delegates = [\"warehouse\"]", "", warehouse),
    );
    let output = run(&["run", p(&file)]);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let bodies = bodies(&server);
    let ask = bodies[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == "ask_warehouse")
        .expect("an ask_warehouse tool");
    assert_eq!(ask["function"]["parameters"]["required"], json!(["input"]));
    assert_eq!(
        bodies[1]["messages"][3],
        json!({"role": "tool", "tool_call_id": "call_q", "content": "A1 left the dock: where is A1?"})
    );
}

#[test]
fn a_cut_off_answer_is_not_counted_as_answered_and_cached_tokens_come_from_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeOpenAi::start(|_, _: &Received| {
        let mut body = completion(json!({"role": "assistant", "content": "Your order A1 is"}), "length");
        body["usage"] = json!({"prompt_tokens": 2000, "completion_tokens": 256,
            "prompt_tokens_details": {"cached_tokens": 1536}});
        Canned::json(200, body)
    });
    let llm_extra = "price = { input_per_mtok = 1.0, cached_input_per_mtok = 0.5, output_per_mtok = 2.0 }";
    let text = live_scenario(&server.base_url(), "", "", "")
        .replace("price = { input_per_mtok = 1.0, output_per_mtok = 2.0 }", llm_extra);
    let file = write(dir.path(), "length.toml", &text);
    let out = dir.path().join("run");
    let output = run(&["run", p(&file), "--out", p(&out), "--json"]);
    let report: Value = serde_json::from_slice(&output.stdout).expect("--json prints the report");
    assert_eq!(report["conversations"]["answered"], 0, "{report:#}");
    assert_eq!(report["tokens"]["input"], 2000);
    assert_eq!(report["tokens"]["cached_input"], 1536);
    assert_eq!(
        report["tokens"]["counted_by_server_calls"], 1,
        "the tokens are the server's"
    );
    // 464 input tokens at $1, 1536 cached at $0.50 and 256 output at $2 per million.
    assert_eq!(report["cost_pusd"], 464 * 1_000_000 + 1536 * 500_000 + 256 * 2_000_000);
    let trace = std::fs::read(out.join("trace.jsonl")).unwrap();
    let answer = records(&trace)
        .into_iter()
        .find(|r| field(r, "msg").starts_with("answer "))
        .expect("an answer record");
    assert!(field(&answer, "msg").contains("status=truncated"), "{answer}");
}

#[test]
fn a_guardrails_retry_feedback_reaches_the_live_model_after_the_refused_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeOpenAi::start(|index, _: &Received| match index {
        0 => Canned::json(200, text("Call me at 555-0100, or mail bob@example.com.")),
        _ => Canned::json(200, text("Your orders have shipped.")),
    });
    let guardrail = r#"
[[guardrail]]
name = "no-pii"
stage = "output"
check = { kind = "pii", entities = ["email"] }
action = "retry"
message = "Do not share e-mail addresses."
"#;
    let file = write(
        dir.path(),
        "retry.toml",
        &live_scenario(&server.base_url(), "", "", guardrail),
    );
    let output = run(&["run", p(&file)]);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let bodies = bodies(&server);
    assert_eq!(bodies.len(), 2, "the model is asked again");
    let messages = bodies[1]["messages"].as_array().unwrap();
    assert_eq!(
        messages[messages.len() - 2],
        json!({"role": "assistant", "content": "Call me at 555-0100, or mail bob@example.com."})
    );
    assert_eq!(
        messages[messages.len() - 1],
        json!({"role": "user", "content": "Do not share e-mail addresses."})
    );
}

// ----- Transcripts under the mock model --------------------------------------------------------

use agentsim::run::Flavor;
use common::{parse, run_in_memory};

/// `key=value` of every delivered message whose summary starts with `prefix`.
fn values(trace: &[u8], prefix: &str, key: &str) -> Vec<String> {
    records(trace)
        .iter()
        .filter(|r| r["kind"] == "deliver" && field(r, "msg").starts_with(prefix))
        .filter_map(|r| {
            field(r, "msg")
                .split(' ')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
        })
        .collect()
}

/// triage looks an order up, then hands over to billing; billing answers.
fn handoff_design(billing_extra: &str, fault: &str) -> String {
    format!(
        r#"[scenario]
name = "handoff-history"

[[llm]]
name = "gpt"
latency = "100ms"

[[tool]]
name = "lookup"
output = "order A1: charged twice"

[[agent]]
name = "triage"
llm = "gpt"
tools = ["lookup"]
handoffs = ["billing"]
behavior = [
  {{ when = "tool_calls == 0", then = {{ tool_call = "lookup", args = {{ id = "A1" }} }} }},
  {{ otherwise = {{ handoff = "billing" }} }},
]

[[agent]]
name = "billing"
llm = "gpt"
{billing_extra}
behavior = [
  {{ when = "history contains 'A1: charged'", then = {{ answer = "refunding the double charge" }} }},
  {{ when = "user == ''", then = {{ answer = "what was this about?" }} }},
  {{ otherwise = {{ answer = "how can I help? (turn {{{{user_turn}}}}: {{{{last_user}}}})" }} }},
]

[[traffic]]
kind = "script"
to = "triage"
script = [{{ at = "0s", message = "I was charged twice for A1" }}]
{fault}
"#
    )
}

fn answer_of(trace: &[u8]) -> String {
    records(trace)
        .iter()
        .find(|r| field(r, "msg").starts_with("answer "))
        .map(|r| field(r, "msg").to_owned())
        .expect("an answer")
}

#[test]
fn a_handoff_hands_the_whole_transcript_on_unless_the_receiver_sees_less() {
    // All of it: the user's message, the lookup and its result, the transfer and its result.
    let whole = run_in_memory(&parse(&handoff_design("", "")), 1, Flavor::CurrentThread);
    assert_eq!(values(&whole.trace, "handoff ", "messages"), ["5"]);
    assert!(answer_of(&whole.trace).contains("refunding the double charge"));
    let sent = values(&whole.trace, "complete ", "messages");
    assert_eq!(sent, ["1", "3", "5"], "triage twice, then billing with all five");

    // The last two messages before the transfer (the lookup and its output), then the transfer
    // and its result: the transfer's own messages do not count in N.
    let last = run_in_memory(
        &parse(&handoff_design("handoff_history = 2", "")),
        1,
        Flavor::CurrentThread,
    );
    assert_eq!(values(&last.trace, "complete ", "messages"), ["1", "3", "4"]);
    assert!(answer_of(&last.trace).contains("refunding the double charge"));

    // The last one would be the lookup's output without its call: only the transfer is left.
    let one = run_in_memory(
        &parse(&handoff_design("handoff_history = 1", "")),
        1,
        Flavor::CurrentThread,
    );
    assert_eq!(values(&one.trace, "complete ", "messages"), ["1", "3", "2"]);
    assert!(answer_of(&one.trace).contains("what was this about?"));

    // Only the user's latest message.
    let none = run_in_memory(
        &parse(&handoff_design("handoff_history = \"none\"", "")),
        1,
        Flavor::CurrentThread,
    );
    assert_eq!(values(&none.trace, "complete ", "messages"), ["1", "3", "1"]);
    assert!(
        answer_of(&none.trace).contains("how can I help? (turn 1: I was charged twice for A1)"),
        "{}",
        answer_of(&none.trace)
    );
}

#[test]
fn dropping_the_handoff_context_empties_the_transcript_the_receiver_gets() {
    let fault = "[[fault]]\nkind = \"handoff.drop_context\"\ntarget = \"agent:billing\"\nprobability = 1.0\n";
    let run = run_in_memory(&parse(&handoff_design("", fault)), 1, Flavor::CurrentThread);
    assert_eq!(values(&run.trace, "complete ", "messages"), ["1", "3", "0"]);
    assert!(answer_of(&run.trace).contains("what was this about?"));
}

/// One agent that looks up three times, then answers; `fault` may act on its memory.
fn loop_design(fault: &str) -> String {
    format!(
        r#"[scenario]
name = "memory"

[[llm]]
name = "gpt"
latency = "100ms"

[[tool]]
name = "lookup"
output = "a fairly long result of the lookup, forty-some characters"

[[agent]]
name = "a"
llm = "gpt"
tools = ["lookup"]
max_turns = 10
behavior = [
  {{ when = "tool_calls < 3", then = {{ tool_call = "lookup", args = {{ q = "x" }} }} }},
  {{ otherwise = {{ answer = "done" }} }},
]

[[traffic]]
kind = "script"
to = "a"
script = [{{ at = "0s", message = "look it up" }}]
{fault}
"#
    )
}

fn tokens_in(trace: &[u8]) -> Vec<u64> {
    values(trace, "complete ", "tokens_in")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn memory_faults_act_on_the_transcript_the_model_is_sent() {
    let clean = run_in_memory(&parse(&loop_design("")), 1, Flavor::CurrentThread);
    assert_eq!(values(&clean.trace, "complete ", "messages"), ["1", "3", "5", "7"]);
    let grows = tokens_in(&clean.trace);
    assert!(grows.windows(2).all(|w| w[0] < w[1]), "{grows:?}");

    // Truncation as the model's third reply arrives (the sixth message the agent gets): of the
    // five messages so far the older half is gone, the user's message with it; the third call
    // and its result join the two kept.
    let truncate = "[[fault]]\nkind = \"memory.truncate\"\ntarget = \"agent:a\"\non_message = 6\n";
    let cut = run_in_memory(&parse(&loop_design(truncate)), 1, Flavor::CurrentThread);
    assert_eq!(values(&cut.trace, "complete ", "messages"), ["1", "3", "5", "4"]);
    let shorter = tokens_in(&cut.trace);
    assert!(shorter[3] < grows[3], "{shorter:?} vs {grows:?}");

    // A reset memory at the same moment: back to the opening message; the third call and its
    // result follow it, and the agent, which forgot its two lookups, loops again.
    let reset = "[[fault]]\nkind = \"memory.reset\"\ntarget = \"agent:a\"\non_message = 6\n";
    let again = run_in_memory(&parse(&loop_design(reset)), 1, Flavor::CurrentThread);
    let sent = values(&again.trace, "complete ", "messages");
    assert_eq!(sent, ["1", "3", "5", "3", "5", "7"]);
}

#[test]
fn a_transcript_over_its_limit_ends_the_conversation_naming_the_limit() {
    let text = loop_design("").replace("name = \"memory\"", "name = \"memory\"\nmax_transcript_bytes = 100");
    let run = run_in_memory(&parse(&text), 1, Flavor::CurrentThread);
    let answer = answer_of(&run.trace);
    assert!(answer.contains("status=failed"), "{answer}");
    assert!(answer.contains("max_transcript_bytes (100)"), "{answer}");
}

#[test]
fn the_context_window_fills_with_the_transcript() {
    // Instructions and the first two steps fit in 120 tokens; the third request does not.
    let text = loop_design("").replace("latency = \"100ms\"", "latency = \"100ms\"\ncontext_window = 120");
    let run = run_in_memory(&parse(&text), 1, Flavor::CurrentThread);
    let replies = values(&run.trace, "llm_reply ", "error");
    assert_eq!(replies, ["400"], "one context_length_exceeded answer: {replies:?}");
    assert!(tokens_in(&run.trace).last().copied().unwrap() > 120);
}

#[test]
fn what_happens_in_one_conversation_shifts_no_draw_of_another() {
    // Two conversations; the first one's rules take a longer path when its text says so. The
    // second conversation's latencies must not move.
    let design = |first: &str| {
        format!(
            r#"[scenario]
name = "isolated"

[[llm]]
name = "gpt"
latency = {{ median = "300ms", p99 = "2s" }}

[[tool]]
name = "lookup"
latency = {{ median = "50ms", p99 = "500ms" }}

[[agent]]
name = "a"
llm = "gpt"
tools = ["lookup"]
max_turns = 10
behavior = [
  {{ when = "user contains 'long' && tool_calls < 4", then = {{ tool_call = "lookup" }} }},
  {{ when = "tool_calls < 1", then = {{ tool_call = "lookup" }} }},
  {{ otherwise = {{ answer = "done" }} }},
]

[[traffic]]
kind = "script"
to = "a"
script = [{{ at = "0s", message = "{first}" }}, {{ at = "0s", message = "second" }}]
"#
        )
    };
    let of_conversation_1 = |trace: &[u8]| -> Vec<String> {
        records(trace)
            .iter()
            .filter(|r| field(r, "msg").contains("conv=1 "))
            .filter_map(|r| {
                field(r, "msg")
                    .split(' ')
                    .find(|kv| kv.starts_with("latency_us="))
                    .map(str::to_owned)
            })
            .collect()
    };
    let short = run_in_memory(&parse(&design("short")), 9, Flavor::CurrentThread);
    let long = run_in_memory(&parse(&design("long")), 9, Flavor::CurrentThread);
    assert_ne!(
        values(&short.trace, "complete conv=0", "turn"),
        values(&long.trace, "complete conv=0", "turn")
    );
    let (a, b) = (of_conversation_1(&short.trace), of_conversation_1(&long.trace));
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

/// An agent that looks an order up twice (the second time with a bad id) and then answers;
/// `guardrail` watches it.
fn guarded_design(guardrail: &str) -> String {
    format!(
        r#"[scenario]
name = "guarded"

[[llm]]
name = "gpt"
latency = "100ms"

[[tool]]
name = "lookup"
parameters = {{ type = "object", properties = {{ id = {{ type = "string", maxLength = 4 }} }}, required = ["id"] }}
output = "found"

[[agent]]
name = "a"
llm = "gpt"
tools = ["lookup"]
behavior = [
  {{ when = "tool_calls == 0", then = {{ tool_call = "lookup", args = {{ id = "A1" }} }} }},
  {{ when = "tool_calls == 1", then = {{ tool_call = "lookup", args = {{ id = "A1-and-more" }} }} }},
  {{ otherwise = {{ answer = "done" }} }},
]

[[traffic]]
kind = "script"
to = "a"
script = [{{ at = "0s", message = "my card is 4111 1111 1111 1111, where is A1?" }}]

{guardrail}
"#
    )
}

fn verdicts(trace: &[u8]) -> Vec<String> {
    records(trace)
        .iter()
        .filter(|r| r["kind"] == "guard")
        .map(|r| field(r, "verdict").to_owned())
        .collect()
}

#[test]
fn a_guardrail_with_transcript_scope_reads_the_whole_conversation() {
    let guardrail = |scope: &str| {
        format!(
            "[[guardrail]]\nname = \"no-cards\"\nstage = \"output\"\ncheck = {{ kind = \"pii\", entities = [\"credit_card\"] }}\naction = \"block\"\n{scope}"
        )
    };
    // The answer ("done") carries no card: the message scope lets it through.
    let message = run_in_memory(&parse(&guarded_design(&guardrail(""))), 1, Flavor::CurrentThread);
    assert_eq!(verdicts(&message.trace), ["allow"]);
    // The transcript scope reads the conversation the answer ends, the user's card included.
    let whole = guarded_design(&guardrail("scope = \"transcript\""));
    let transcript = run_in_memory(&parse(&whole), 1, Flavor::CurrentThread);
    assert_eq!(verdicts(&transcript.trace), ["block"]);
}

#[test]
fn a_json_schema_check_without_a_schema_checks_each_tool_against_its_parameters() {
    let guardrail = "[[guardrail]]\nname = \"args\"\nstage = \"tool_call\"\ncheck = { kind = \"json_schema\" }\naction = \"block\"\n";
    let run = run_in_memory(&parse(&guarded_design(guardrail)), 1, Flavor::CurrentThread);
    // The first lookup fits the tool's parameters; the second breaks maxLength.
    assert_eq!(verdicts(&run.trace), ["allow", "block"]);
}
