//! Live mode against a local OpenAI-compatible server (no external network): provider errors
//! map onto the mock's error types, every call is recorded to a cassette, a replay gives the
//! same digest, a changed request fails strict replay naming the field, and the API key never
//! reaches a written file.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::server::{completion, Canned, FakeOpenAi, Received};
use common::{agentsim, field, records, status, stderr, stdout};
use serde_json::json;

/// A recognisable fake key: no file agentsim writes may contain it.
const FAKE_KEY: &str = "sk-agentsim-test-7f3c9a1e5b2d4c6f8a0e";
const KEY_VAR: &str = "AGENTSIM_TEST_API_KEY";

fn scenario(base_url: &str, instructions: &str, llm_extra: &str, retry_attempts: u32) -> String {
    format!(
        r#"[scenario]
name = "live-test"
seed = 7
max_virtual_time = "10m"

[[llm]]
name = "gpt"
model = "test-model"
mode = "live"
base_url = "{base_url}"
api_key_env = "{KEY_VAR}"
temperature = 0.0
max_tokens = 256
timeout = "1s"
price = {{ input_per_mtok = 0.15, output_per_mtok = 0.60 }}
{llm_extra}

[[agent]]
name = "support"
llm = "gpt"
instructions = "{instructions}"
tools = ["lookup_order"]
max_turns = 12
retry = {{ attempts = {retry_attempts}, backoff = "constant", base = "100ms", jitter = "none", honor_retry_after = true }}

[[tool]]
name = "lookup_order"
description = "Look an order up by its id."
latency = "50ms"
output = "order {{{{args.order_id}}}} shipped"

[[traffic]]
kind = "script"
to = "support"
script = [{{ at = "0s", message = "where is my order A1?" }}]
"#
    )
}

fn tool_call(arguments: &str) -> serde_json::Value {
    completion(
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_x", "type": "function", "function": {"name": "lookup_order", "arguments": arguments}}]}),
        "tool_calls",
    )
}

/// 429 with retry-after, 500 (echoing the key, as a careless proxy might), a slow answer past
/// the client timeout, malformed tool-call JSON, a good tool call, then a text answer with no
/// `usage` and extra fields.
fn troubled_server() -> FakeOpenAi {
    FakeOpenAi::start(|index, request: &Received| {
        match index {
        0 => Canned::json(
            429,
            json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}}),
        )
        .header("retry-after", "2")
        .header("x-ratelimit-remaining-requests", "0"),
        1 => Canned::json(
            500,
            json!({"error": {"message": format!("upstream rejected {}", request.header("authorization").unwrap_or("")),
                "type": "server_error"}}),
        ),
        2 => Canned::json(200, completion(json!({"role": "assistant", "content": "too late"}), "stop"))
            .slow(Duration::from_millis(2_500)),
        3 => Canned::json(200, tool_call("{\"order_id\": \"A1")),
        4 => Canned::json(200, tool_call("{\"order_id\":\"A1\"}")),
        _ => {
            let mut body = completion(
                json!({"role": "assistant", "content": "Order A1 has shipped.", "refusal": null, "annotations": []}),
                "stop",
            );
            body.as_object_mut().unwrap().remove("usage");
            body["service_tier"] = json!("default");
            Canned::json(200, body)
        }
    }
    })
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str], with_key: bool) -> std::process::Output {
    let mut command = agentsim();
    command.args(args).env_remove(KEY_VAR);
    if with_key {
        command.env(KEY_VAR, FAKE_KEY);
    }
    command.output().expect("agentsim starts")
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// The `llm_reply` summaries of a trace, in order.
fn replies(trace: &[u8]) -> Vec<String> {
    records(trace)
        .iter()
        .filter(|r| field(r, "msg").starts_with("llm_reply"))
        .map(|r| field(r, "msg").to_owned())
        .collect()
}

#[test]
fn live_failures_map_to_provider_errors_and_the_recorded_run_replays_offline_with_the_same_digest() {
    let dir = tempfile::tempdir().unwrap();
    let server = troubled_server();
    let file = write(
        dir.path(),
        "live.toml",
        &scenario(&server.base_url(), "Answer order questions.", "", 5),
    );
    let out = dir.path().join("run");
    let otlp = out.join("otlp.json");
    let output = run(&["run", p(&file), "--out", p(&out), "--otlp", p(&otlp)], true);
    assert_eq!(status(&output), 0, "{}\n{}", stdout(&output), stderr(&output));

    // What the server saw: the key as a bearer token, the scenario's model and parameters.
    let received = server.received();
    drop(server);
    assert_eq!(received.len(), 6, "{received:#?}");
    assert_eq!(received[0].path, "/v1/chat/completions");
    assert_eq!(
        received[0].header("authorization"),
        Some(format!("Bearer {FAKE_KEY}").as_str())
    );
    let body: serde_json::Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["max_tokens"], 256);
    assert_eq!(body["tools"][0]["function"]["name"], "lookup_order");
    assert_eq!(body["messages"][0]["content"], "Answer order questions.");

    // Each failure became the error the mock would have produced; the policies handled them.
    let trace = std::fs::read(out.join("trace.jsonl")).unwrap();
    let replies = replies(&trace);
    assert!(
        replies[0].contains("error=429 requests rate_limit_exceeded retry_after_us=2000000"),
        "{replies:#?}"
    );
    assert!(
        replies[1].contains("error=500 server_error internal_error"),
        "{replies:#?}"
    );
    assert!(replies[2].contains("error=408 timeout timeout"), "{replies:#?}");
    assert!(
        replies[3].contains("tool_calls=[lookup_order#0(malformed)]"),
        "{replies:#?}"
    );
    assert!(replies[4].contains("tool_calls=[lookup_order#1]"), "{replies:#?}");
    assert!(replies[5].contains("text_chars=21"), "{replies:#?}");
    assert!(
        replies[4].contains("tokens_in=30 tokens_out=7"),
        "usage is read: {replies:#?}"
    );

    // The retry after the 429 waited exactly its retry-after in virtual time.
    let all = records(&trace);
    let at = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        all.iter()
            .filter(|r| pred(r))
            .map(|r| r["t_us"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    let reply_times = at(&|r| field(r, "msg").starts_with("llm_reply"));
    let call_times = at(&|r| field(r, "msg").starts_with("complete"));
    assert_eq!(call_times[1] - reply_times[0], 2_000_000);
    // The answer came at the call's start plus its measured latency.
    let latency: u64 = replies[0].split("latency_us=").nth(1).unwrap().parse().unwrap();
    assert_eq!(reply_times[0], call_times[0] + latency);
    let answers: Vec<_> = all.iter().filter(|r| field(r, "msg").starts_with("answer")).collect();
    assert!(field(answers[0], "msg").contains("status=answered text=\"Order A1 has shipped.\""));

    // The cassette holds every call; secrets never reach a written file.
    let cassette = std::fs::read_to_string(out.join("cassette.jsonl")).unwrap();
    assert_eq!(cassette.lines().count(), 7, "a header and six calls:\n{cassette}");
    assert!(cassette.contains("[REDACTED]"), "the echoed key is replaced");
    assert!(cassette.contains("\"retry-after\":\"2\""));
    assert!(otlp.exists());
    let written = files_under(dir.path());
    assert!(written.len() >= 5, "{written:?}");
    for path in &written {
        let bytes = std::fs::read(path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(FAKE_KEY), "{} contains the API key", path.display());
    }

    // Offline, without the key: replaying the cassette gives the same trace, byte for byte.
    let replayed = dir.path().join("replayed");
    let cassette_path = out.join("cassette.jsonl");
    let output = run(
        &[
            "run",
            p(&file),
            "--replay-cassette",
            p(&cassette_path),
            "--out",
            p(&replayed),
        ],
        false,
    );
    assert_eq!(status(&output), 0, "{}\n{}", stdout(&output), stderr(&output));
    assert_eq!(std::fs::read(replayed.join("trace.jsonl")).unwrap(), trace);
    let digest = |dir: &Path| {
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
        report["digest"].as_str().unwrap().to_owned()
    };
    assert_eq!(digest(&replayed), digest(&out));
    let output = run(&["replay", p(&out)], false);
    assert_eq!(status(&output), 0, "{}\n{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("replay: OK"));
}

fn record_simple_run(dir: &Path) -> (PathBuf, PathBuf) {
    let server = FakeOpenAi::start(|index, _: &Received| match index {
        0 => Canned::json(200, tool_call("{\"order_id\":\"A1\"}")),
        _ => Canned::json(
            200,
            completion(json!({"role": "assistant", "content": "Shipped."}), "stop"),
        ),
    });
    let file = write(
        dir,
        "live.toml",
        &scenario(&server.base_url(), "Answer order questions.", "", 2),
    );
    let out = dir.join("run");
    let output = run(&["run", p(&file), "--out", p(&out)], true);
    assert_eq!(status(&output), 0, "{}\n{}", stdout(&output), stderr(&output));
    (file, out.join("cassette.jsonl"))
}

#[test]
fn a_changed_prompt_fails_strict_replay_naming_the_field_and_drifts_under_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cassette) = record_simple_run(dir.path());
    let changed = write(
        dir.path(),
        "changed.toml",
        &scenario("http://127.0.0.1:9/v1", "Answer order questions politely.", "", 2),
    );
    let output = run(&["run", p(&changed), "--replay-cassette", p(&cassette)], false);
    assert_eq!(status(&output), 3, "{}\n{}", stdout(&output), stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains(
            "call #0 of agent:support in conversation 0 to llm:gpt (incarnation 0) differs from the recording at `messages[0].content`"
        ),
        "{message}"
    );

    let output = run(
        &[
            "run",
            p(&changed),
            "--replay-cassette",
            p(&cassette),
            "--cassette-match",
            "fifo",
        ],
        false,
    );
    assert_eq!(status(&output), 0, "{}\n{}", stdout(&output), stderr(&output));
    assert!(
        stderr(&output).contains("2 of 2 replayed request(s) drifted"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_unused_recording_fails_strict_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (file, cassette) = record_simple_run(dir.path());
    let mut text = std::fs::read_to_string(&cassette).unwrap();
    let last = text
        .lines()
        .last()
        .unwrap()
        .replace("\"call_index\":1", "\"call_index\":2");
    text.push_str(&last);
    text.push('\n');
    let longer = write(dir.path(), "longer.jsonl", &text);
    let output = run(&["run", p(&file), "--replay-cassette", p(&longer)], false);
    assert_eq!(status(&output), 3, "{}\n{}", stdout(&output), stderr(&output));
    assert!(stderr(&output).contains("1 recording(s)"), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("call #2 of agent:support"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn plain_http_to_a_remote_host_is_refused_unless_the_scenario_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let refused = write(
        dir.path(),
        "remote.toml",
        &scenario("http://models.example.com/v1", "x", "", 1),
    );
    let output = agentsim().args(["validate", p(&refused)]).output().unwrap();
    assert_eq!(status(&output), 2);
    let message = format!("{}{}", stdout(&output), stderr(&output));
    assert!(message.contains("remote.toml:"), "{message}");
    assert!(message.contains("allow_insecure_http"), "{message}");
    let allowed = write(
        dir.path(),
        "allowed.toml",
        &scenario("http://models.example.com/v1", "x", "allow_insecure_http = true", 1),
    );
    let output = agentsim().args(["validate", p(&allowed)]).output().unwrap();
    assert_eq!(status(&output), 0, "{}{}", stdout(&output), stderr(&output));
}

#[test]
fn a_missing_key_variable_is_a_clear_error_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "live.toml", &scenario("http://127.0.0.1:9/v1", "x", "", 1));
    let output = run(&["run", p(&file)], false);
    assert_eq!(status(&output), 2);
    assert!(stderr(&output).contains(KEY_VAR), "{}", stderr(&output));
}

#[test]
fn redirects_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeOpenAi::start(|_, _: &Received| {
        Canned::json(307, json!({})).header("location", "http://127.0.0.1:9/v1/chat/completions")
    });
    let file = write(dir.path(), "live.toml", &scenario(&server.base_url(), "x", "", 1));
    let out = dir.path().join("run");
    let output = run(&["run", p(&file), "--out", p(&out)], true);
    assert_eq!(status(&output), 0, "{}\n{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("1 failed"), "{}", stdout(&output));
    assert_eq!(server.received().len(), 1);
    let trace = std::fs::read(out.join("trace.jsonl")).unwrap();
    assert!(replies(&trace)[0].contains("error=307"), "{:?}", replies(&trace));
}

#[test]
fn a_response_larger_than_the_cap_is_cut_off_and_treated_as_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeOpenAi::start(|_, _: &Received| {
        Canned::json(
            200,
            completion(json!({"role": "assistant", "content": "x".repeat(5_000)}), "stop"),
        )
    });
    let file = write(
        dir.path(),
        "live.toml",
        &scenario(&server.base_url(), "x", "max_response_bytes = 1000", 1),
    );
    let out = dir.path().join("run");
    let output = run(&["run", p(&file), "--out", p(&out)], true);
    assert_eq!(status(&output), 0, "{}\n{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("1 failed"), "{}", stdout(&output));
    let trace = std::fs::read(out.join("trace.jsonl")).unwrap();
    assert!(
        replies(&trace)[0].contains("error=502 server_error response_too_large"),
        "{:?}",
        replies(&trace)
    );
}

#[test]
fn check_determinism_on_a_live_run_answers_the_rerun_from_the_recorded_calls() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeOpenAi::start(|index, _: &Received| match index {
        0 => Canned::json(200, tool_call("{\"order_id\":\"A1\"}")),
        _ => Canned::json(
            200,
            completion(json!({"role": "assistant", "content": "Shipped."}), "stop"),
        ),
    });
    let file = write(dir.path(), "live.toml", &scenario(&server.base_url(), "Answer.", "", 2));
    let output = run(&["run", p(&file), "--check-determinism"], true);
    assert_eq!(status(&output), 0, "{}\n{}", stdout(&output), stderr(&output));
    assert!(stderr(&output).contains("determinism: OK"), "{}", stderr(&output));
    assert_eq!(server.received().len(), 2, "the rerun did not call the server again");
}

#[test]
fn a_refused_connection_is_a_retryable_503() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was free a moment ago: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = write(
        dir.path(),
        "live.toml",
        &scenario(&format!("http://127.0.0.1:{port}/v1"), "x", "", 2),
    );
    // Before the run, the endpoint check says the server is not there, and nothing is written.
    let out = dir.path().join("run");
    let output = run(&["run", p(&file), "--out", p(&out)], true);
    assert_eq!(status(&output), 2, "{}\n{}", stdout(&output), stderr(&output));
    assert!(
        stderr(&output).contains(&format!("llm \"gpt\": cannot connect to http://127.0.0.1:{port}/v1")),
        "{}",
        stderr(&output)
    );
    assert!(!out.join("trace.jsonl").exists());

    // Without the check, the run goes ahead and each call fails as a retryable 503, whose text
    // the trace and the summary carry.
    let output = run(&["run", p(&file), "--out", p(&out), "--no-endpoint-check"], true);
    assert_eq!(status(&output), 0, "{}\n{}", stdout(&output), stderr(&output));
    let trace = std::fs::read(out.join("trace.jsonl")).unwrap();
    let replies = replies(&trace);
    assert_eq!(replies.len(), 2, "retried once: {replies:?}");
    assert!(
        replies
            .iter()
            .all(|r| r
                .contains("error=503 connection_error connection_error server=\"could not connect to the server\"")),
        "{replies:?}"
    );
    assert!(
        stdout(&output)
            .contains("first error    503 connection_error to agent:support in conversation 0: could not connect"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn a_base_url_without_v1_is_caught_before_the_run_and_a_servers_error_text_reaches_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeOpenAi::start(|_, _: &Received| {
        Canned::json(
            500,
            json!({"error": {"message": "model 'test-model' is not loaded", "type": "server_error"}}),
        )
    });
    let without_v1 = server.base_url().trim_end_matches("/v1").to_owned();
    let file = write(dir.path(), "no-v1.toml", &scenario(&without_v1, "x", "", 1));
    let output = run(&["run", p(&file)], true);
    assert_eq!(status(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("answered 404 Not Found: base_url must end with the API version"),
        "{}",
        stderr(&output)
    );
    assert!(server.received().is_empty(), "no model call was made");

    let file = write(dir.path(), "v1.toml", &scenario(&server.base_url(), "x", "", 1));
    let out = dir.path().join("run");
    let output = run(&["run", p(&file), "--out", p(&out)], true);
    let text = stdout(&output);
    assert!(
        text.contains(
            "first error    500 internal_error to agent:support in conversation 0: model 'test-model' is not loaded"
        ),
        "{text}"
    );
    let trace = std::fs::read(out.join("trace.jsonl")).unwrap();
    assert!(replies(&trace)[0].contains("server=\"model 'test-model' is not loaded\""));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert!(report["first_server_error"].as_str().unwrap().contains("is not loaded"));
}

#[test]
fn a_live_run_without_a_directory_does_not_offer_a_replay_that_would_call_the_server_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeOpenAi::start(|_, _: &Received| {
        Canned::json(
            200,
            completion(json!({"role": "assistant", "content": "Shipped."}), "stop"),
        )
    });
    let file = write(dir.path(), "live.toml", &scenario(&server.base_url(), "x", "", 1));
    let output = run(&["run", p(&file)], true);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("replay         none: the live calls were not recorded; run again with --out DIR"),
        "{text}"
    );
}

#[test]
fn a_run_replayed_under_fifo_replays_from_its_directory_with_the_same_matching() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cassette) = record_simple_run(dir.path());
    let changed = write(
        dir.path(),
        "changed.toml",
        &scenario("http://127.0.0.1:9/v1", "Answer order questions politely.", "", 2),
    );
    let out = dir.path().join("fifo-run");
    let output = run(
        &[
            "run",
            p(&changed),
            "--replay-cassette",
            p(&cassette),
            "--cassette-match",
            "fifo",
            "--out",
            p(&out),
        ],
        false,
    );
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let replay_line = format!("agentsim replay {} --cassette-match fifo", out.display());
    assert!(stdout(&output).contains(&replay_line), "{}", stdout(&output));
    let replayed = run(&["replay", p(&out), "--cassette-match", "fifo"], false);
    assert_eq!(status(&replayed), 0, "{}", stderr(&replayed));
    assert!(stdout(&replayed).contains("replay: OK"), "{}", stdout(&replayed));
}

#[test]
fn impact_is_refused_for_a_live_model_before_anything_is_called() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "live.toml", &scenario("http://127.0.0.1:9/v1", "x", "", 1));
    let output = run(&["run", p(&file), "--impact"], true);
    assert_eq!(status(&output), 2, "{}", stderr(&output));
    assert!(stderr(&output).contains("--impact"), "{}", stderr(&output));
    assert!(stderr(&output).contains("only mock models"), "{}", stderr(&output));
}

#[test]
fn a_live_user_simulator_gets_its_persona_and_the_dialogue_role_swapped_and_replays_offline() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeOpenAi::start(|index, _: &Received| {
        let said = match index {
            0 => "It is order A1.",
            _ => "Thank you! ###STOP###",
        };
        Canned::json(200, completion(json!({"role": "assistant", "content": said}), "stop"))
    });
    let text = format!(
        r#"[scenario]
name = "live-user"
seed = 3

[[llm]]
name = "desk-model"
latency = "500ms"

[[llm]]
name = "customer"
model = "test-model"
mode = "live"
base_url = "{}"
api_key_env = "{KEY_VAR}"
timeout = "1s"
price = {{ input_per_mtok = 0.15, output_per_mtok = 0.60 }}

[[agent]]
name = "support"
llm = "desk-model"
behavior = [
  {{ when = "user_turn == 1", then = {{ answer = "Which order?" }} }},
  {{ otherwise = {{ answer = "Order {{{{last_user}}}} has shipped." }} }},
]

[[user]]
name = "mia"
kind = "model"
llm = "customer"
instructions = "You are Mia. Your order A1 is late. Say ###STOP### when you have an answer."

[[traffic]]
kind = "script"
to = "support"
user = "mia"
script = [{{ at = "0s", message = "Where is my order?" }}]
"#,
        server.base_url()
    );
    let file = write(dir.path(), "live-user.toml", &text);
    let out = dir.path().join("run");
    let output = run(&["run", p(&file), "--out", p(&out), "--no-endpoint-check"], true);
    assert!(status(&output) <= 1, "{}\n{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("1 resolved"), "{}", stdout(&output));

    let received = server.received();
    assert_eq!(received.len(), 2, "the simulator asked twice: after each answer");
    let first: serde_json::Value = serde_json::from_str(&received[0].body).unwrap();
    assert!(first.get("tools").is_none(), "a user simulator has no tools: {first}");
    let messages = first["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert!(messages[0]["content"].as_str().unwrap().starts_with("You are Mia"));
    // To the simulator, its own messages are the assistant's and the agent's are the user's.
    assert_eq!(
        messages[1],
        json!({"role": "assistant", "content": "Where is my order?"})
    );
    assert_eq!(messages[2], json!({"role": "user", "content": "Which order?"}));
    let second: serde_json::Value = serde_json::from_str(&received[1].body).unwrap();
    assert_eq!(second["messages"].as_array().unwrap().len(), 5);

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["user_simulator"]["llm_calls"], 2);
    assert_eq!(
        report["llm_calls"], 2,
        "the agent's two mock calls, not the simulator's"
    );
    let cassette = std::fs::read_to_string(out.join("cassette.jsonl")).unwrap();
    assert!(cassette.contains("\"actor\":\"user:mia\""), "{cassette}");

    let output = run(&["replay", p(&out)], false);
    assert_eq!(status(&output), 0, "{}\n{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("replay: OK"));
}
