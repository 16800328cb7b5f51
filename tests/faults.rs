//! The fault catalogue: one test per fault kind, each showing the fault's effect in the trace
//! and the report, with exact virtual times where a policy reacts to it.
//!
//! The design under test: one agent `a` on a model with a fixed 100 ms latency. It looks a
//! word up, pays, then answers with the last tool output. Tools take 10 ms. One conversation
//! opens at t = 0.

mod common;

use agentsim::run::{Flavor, RunOutput};
use common::*;
use serde_json::Value;

fn design(agent_extra: &str, faults: &str) -> String {
    format!(
        r#"
[scenario]
name = "faults"
seed = 3

[[llm]]
name = "gpt"
latency = "100ms"
context_window = 128_000

[[agent]]
name = "a"
llm = "gpt"
tools = ["lookup", "pay"]
max_turns = 6
{agent_extra}
behavior = [
  {{ when = "turn == 1", then = {{ tool_call = "lookup", args = {{ q = "{{{{user}}}}" }} }} }},
  {{ when = "last_tool == 'lookup'", then = {{ tool_call = "pay", args = {{ amount = 5 }} }} }},
  {{ otherwise = {{ answer = "done: {{{{last_tool_output}}}}" }} }},
]

[[tool]]
name = "lookup"
latency = "10ms"
output = "found {{{{args.q}}}}"

[[tool]]
name = "pay"
latency = "10ms"
output = "paid"
effect = "money_moved"
idempotent = false

[[traffic]]
kind = "script"
to = "a"
script = [{{ at = "0s", message = "hello" }}]

[[invariant]]
name = "pay at most once"
never = {{ effect = "money_moved", more_than = 1, per = "conversation" }}

{faults}
"#
    )
}

fn run(agent_extra: &str, faults: &str) -> (RunOutput, Vec<Value>) {
    let scenario = parse(&design(agent_extra, faults));
    let output = run_in_memory(&scenario, 3, Flavor::CurrentThread);
    let records = records(&output.trace);
    (output, records)
}

/// Deliveries whose message starts with `prefix`, as (virtual time, message).
fn deliveries(records: &[Value], prefix: &str) -> Vec<(u64, String)> {
    records
        .iter()
        .filter(|r| r["kind"] == "deliver" && r["msg"].as_str().is_some_and(|m| m.starts_with(prefix)))
        .map(|r| (r["t_us"].as_u64().unwrap(), r["msg"].as_str().unwrap().to_owned()))
        .collect()
}

fn fault_records(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["kind"] == "fault")
        .map(|r| r["fault"].as_str().unwrap().to_owned())
        .collect()
}

fn final_answer(records: &[Value]) -> String {
    deliveries(records, "answer")
        .last()
        .map(|(_, m)| m.clone())
        .unwrap_or_default()
}

const RETRY_NO_JITTER: &str =
    r#"retry = { attempts = 3, backoff = "exponential", base = "500ms", max = "8s", jitter = "none" }"#;

#[test]
fn without_faults_the_design_looks_up_pays_once_and_answers() {
    let (output, records) = run("", "");
    assert!(output.report.passed(), "{}", output.report.summary());
    assert_eq!(output.report.effects.get("money_moved"), Some(&1));
    assert!(final_answer(&records).contains("done: paid"));
    assert!(fault_records(&records).is_empty());
}

#[test]
fn actor_crash_fails_the_turn_and_the_supervisor_restarts_the_agent() {
    let (output, records) = run(
        "",
        "[[fault]]\nkind = \"actor.crash\"\ntarget = \"agent:a\"\non_message = 2",
    );
    assert_eq!(fault_records(&records), ["actor.crash"]);
    assert_eq!(output.report.failures.len(), 1);
    assert_eq!(output.report.restarts[0].actor, "agent:a");
    assert_eq!(
        output.report.conversations.unanswered, 1,
        "the restarted agent lost the conversation"
    );
}

#[test]
fn rate_limit_with_retry_after_delays_the_retry_by_exactly_that_long() {
    let faults = "[[fault]]\nkind = \"llm.rate_limit\"\ntarget = \"llm:gpt\"\non_message = 1\nretry_after = \"2s\"";
    let (output, records) = run(RETRY_NO_JITTER, faults);
    let replies = deliveries(&records, "llm_reply");
    let (error_at_us, error) = &replies[0];
    assert!(
        error.contains("error=429 requests rate_limit_exceeded retry_after_us=2000000"),
        "{error}"
    );
    assert!(error.contains("x-ratelimit-remaining-requests=0"), "{error}");
    assert_eq!(*error_at_us, 30_000, "a 429 comes back fast (30 ms by default)");
    let calls = deliveries(&records, "complete");
    assert_eq!(
        calls[1].0,
        error_at_us + 2_000_000,
        "the retry waits exactly the retry-after"
    );
    assert!(output.report.passed(), "{}", output.report.summary());
}

#[test]
fn token_rate_limit_is_a_429_on_tokens_and_is_retried() {
    let faults =
        "[[fault]]\nkind = \"llm.token_rate_limit\"\ntarget = \"llm:gpt\"\non_message = 1\nretry_after = \"6s\"";
    let (output, records) = run(RETRY_NO_JITTER, faults);
    assert!(deliveries(&records, "llm_reply")[0]
        .1
        .contains("error=429 tokens rate_limit_exceeded retry_after_us=6000000"));
    assert_eq!(deliveries(&records, "complete")[1].0, 30_000 + 6_000_000);
    assert!(output.report.passed());
}

#[test]
fn quota_exhausted_is_not_retried_and_fails_the_conversation() {
    let faults = "[[fault]]\nkind = \"llm.quota_exhausted\"\ntarget = \"llm:gpt\"\non_message = 1";
    let (output, records) = run(RETRY_NO_JITTER, faults);
    assert_eq!(deliveries(&records, "complete").len(), 1, "no retry");
    assert_eq!(output.report.conversations.failed, 1);
    assert!(final_answer(&records).contains("status=failed"));
    assert!(final_answer(&records).contains("429 insufficient_quota"));
}

#[test]
fn overloaded_503_is_retried_after_the_exponential_backoff() {
    let faults = "[[fault]]\nkind = \"llm.overloaded\"\ntarget = \"llm:gpt\"\non_message = 1";
    let (output, records) = run(RETRY_NO_JITTER, faults);
    let replies = deliveries(&records, "llm_reply");
    assert!(replies[0]
        .1
        .contains("error=503 service_unavailable_error server_is_overloaded"));
    assert_eq!(replies[0].0, 200_000);
    assert_eq!(
        deliveries(&records, "complete")[1].0,
        200_000 + 500_000,
        "first backoff is `base`"
    );
    assert!(output.report.passed());
}

#[test]
fn overloaded_529_repeated_backs_off_exponentially_until_attempts_run_out() {
    let faults = "[[fault]]\nkind = \"llm.overloaded_529\"\ntarget = \"llm:gpt\"\nprobability = 1.0";
    let (output, records) = run(RETRY_NO_JITTER, faults);
    let calls: Vec<u64> = deliveries(&records, "complete").iter().map(|(t, _)| *t).collect();
    // Each 529 takes 200 ms; then 500 ms, then 1 s of backoff; three attempts in all.
    assert_eq!(calls, [0, 700_000, 1_900_000]);
    assert!(deliveries(&records, "llm_reply")[0]
        .1
        .contains("error=529 overloaded_error"));
    assert_eq!(output.report.conversations.failed, 1);
}

#[test]
fn server_error_without_a_retry_policy_fails_the_conversation() {
    let faults = "[[fault]]\nkind = \"llm.server_error\"\ntarget = \"llm:gpt\"\non_message = 1";
    let (output, records) = run("", faults);
    assert!(deliveries(&records, "llm_reply")[0]
        .1
        .contains("error=500 server_error"));
    assert_eq!(deliveries(&records, "complete").len(), 1);
    assert_eq!(output.report.conversations.failed, 1);
}

#[test]
fn a_hung_model_call_is_abandoned_at_the_agent_timeout_and_retried() {
    let faults = "[[fault]]\nkind = \"llm.timeout\"\ntarget = \"llm:gpt\"\non_message = 1";
    let (output, records) = run(&format!("timeout = \"5s\"\n{RETRY_NO_JITTER}"), faults);
    let timeouts = deliveries(&records, "call_timeout");
    assert_eq!(timeouts[0].0, 5_000_000, "the agent stops waiting after its timeout");
    assert_eq!(
        deliveries(&records, "complete")[1].0,
        5_500_000,
        "then retries after the backoff"
    );
    // The provider's own timeout error arrives at 60 s; the agent has moved on and ignores it.
    assert!(deliveries(&records, "llm_reply")
        .iter()
        .any(|(t, m)| *t == 60_000_000 && m.contains("error=408")));
    assert!(output.report.passed(), "{}", output.report.summary());
}

#[test]
fn auth_error_is_not_retried() {
    let faults = "[[fault]]\nkind = \"llm.auth_error\"\ntarget = \"llm:gpt\"\non_message = 1";
    let (output, records) = run(RETRY_NO_JITTER, faults);
    assert!(deliveries(&records, "llm_reply")[0]
        .1
        .contains("error=401 invalid_request_error invalid_api_key"));
    assert_eq!(deliveries(&records, "complete").len(), 1);
    assert_eq!(output.report.conversations.failed, 1);
}

#[test]
fn content_filter_on_the_prompt_is_a_400_and_not_retried() {
    let faults = "[[fault]]\nkind = \"llm.content_filter\"\ntarget = \"llm:gpt\"\non_message = 1";
    let (output, records) = run(RETRY_NO_JITTER, faults);
    assert!(deliveries(&records, "llm_reply")[0]
        .1
        .contains("error=400 invalid_request_error content_filter"));
    assert_eq!(output.report.conversations.failed, 1);
}

#[test]
fn injected_context_length_exceeded_fails_the_call() {
    let faults = "[[fault]]\nkind = \"llm.context_length_exceeded\"\ntarget = \"llm:gpt\"\non_message = 2";
    let (output, records) = run(RETRY_NO_JITTER, faults);
    assert!(deliveries(&records, "llm_reply")[1]
        .1
        .contains("error=400 invalid_request_error context_length_exceeded"));
    assert_eq!(output.report.conversations.failed, 1);
}

#[test]
fn a_request_larger_than_the_context_window_fails_without_any_fault() {
    let text = design("", "").replace("context_window = 128_000", "context_window = 1");
    let output = run_in_memory(&parse(&text), 3, Flavor::CurrentThread);
    let records = records(&output.trace);
    assert!(fault_records(&records).is_empty());
    assert!(deliveries(&records, "llm_reply")[0]
        .1
        .contains("context_length_exceeded"));
    assert_eq!(output.report.conversations.failed, 1);
}

#[test]
fn empty_answer_reaches_the_user_as_an_empty_answer() {
    let faults = "[[fault]]\nkind = \"llm.empty_answer\"\ntarget = \"llm:gpt\"\non_message = 3";
    let (_, records) = run("", faults);
    assert!(deliveries(&records, "llm_reply")[2].1.contains("text_chars=0"));
    assert!(
        final_answer(&records).ends_with("text=\"\""),
        "{}",
        final_answer(&records)
    );
}

#[test]
fn refusal_answers_with_a_refusal_and_finish_reason_content_filter() {
    let faults = "[[fault]]\nkind = \"llm.refusal\"\ntarget = \"llm:gpt\"\non_message = 1";
    let (_, records) = run("", faults);
    assert!(deliveries(&records, "llm_reply")[0].1.contains("finish=content_filter"));
    assert!(final_answer(&records).contains("can't help"));
}

#[test]
fn a_hallucinated_tool_is_never_run_and_the_model_is_told() {
    let faults =
        "[[fault]]\nkind = \"llm.hallucinated_tool\"\ntarget = \"llm:gpt\"\non_message = 1\ntool = \"delete_db\"";
    let (_, records) = run("", faults);
    assert!(deliveries(&records, "llm_reply")[0]
        .1
        .contains("tool_calls=[?delete_db#"));
    assert!(deliveries(&records, "invoke")
        .iter()
        .all(|(_, m)| !m.contains("delete_db")));
    assert!(
        final_answer(&records).contains("error: tool delete_db does not exist"),
        "{}",
        final_answer(&records)
    );
}

#[test]
fn malformed_tool_arguments_never_reach_the_tool() {
    let faults = "[[fault]]\nkind = \"llm.malformed_tool_args\"\ntarget = \"llm:gpt\"\non_message = 2";
    let (output, records) = run("", faults);
    assert!(deliveries(&records, "llm_reply")[1].1.contains("pay#1(malformed)"));
    assert!(
        deliveries(&records, "invoke")
            .iter()
            .all(|(_, m)| !m.contains("tool=pay")),
        "pay never ran"
    );
    assert_eq!(output.report.effects.get("money_moved"), None);
    assert!(final_answer(&records).contains("not valid JSON"));
}

#[test]
fn malformed_tool_arguments_fire_only_on_answers_that_call_a_tool() {
    // Drawn on every model call: the two calls that answer with a tool call are broken, the
    // final text answer has no arguments to break, so the fault does not fire there.
    let faults = "[[fault]]\nkind = \"llm.malformed_tool_args\"\ntarget = \"llm:gpt\"\nprobability = 1.0";
    let (output, records) = run("", faults);
    let replies = deliveries(&records, "llm_reply");
    let broken = replies.iter().filter(|(_, m)| m.contains("(malformed)")).count();
    assert_eq!(fault_records(&records).len(), broken, "{replies:?}");
    assert!(broken >= 1, "{replies:?}");
    assert!(
        replies.iter().any(|(_, m)| !m.contains("tool_calls=")),
        "a text answer: {replies:?}"
    );
    assert_eq!(output.report.faults.len(), broken);

    // Pinned to the text answer, it never fires, and the report says why.
    let faults = "[[fault]]\nkind = \"llm.malformed_tool_args\"\ntarget = \"llm:gpt\"\non_message = 3";
    let (output, records) = run("", faults);
    assert_eq!(fault_records(&records), Vec::<String>::new());
    assert!(output.report.faults.is_empty());
    let never = &output.report.faults_never_fired;
    assert_eq!(never.len(), 1, "{never:?}");
    assert!(
        never[0]
            .reason
            .contains("none of which carried a tool call for it to break"),
        "{}",
        never[0].reason
    );
    assert!(
        output
            .report
            .blast_radius
            .iter()
            .all(|b| !b.source.starts_with("fault:")),
        "it reached nothing: {:?}",
        output.report.blast_radius
    );
}

#[test]
fn truncation_cuts_tool_arguments_with_finish_reason_length() {
    let faults = "[[fault]]\nkind = \"llm.truncated\"\ntarget = \"llm:gpt\"\non_message = 1";
    let (_, records) = run("", faults);
    let reply = &deliveries(&records, "llm_reply")[0].1;
    assert!(
        reply.contains("(malformed)") && reply.contains("finish=length"),
        "{reply}"
    );
}

#[test]
fn truncation_cuts_a_text_answer_in_half() {
    let faults = "[[fault]]\nkind = \"llm.truncated\"\ntarget = \"llm:gpt\"\non_message = 3";
    let (_, records) = run("", faults);
    assert!(deliveries(&records, "llm_reply")[2].1.contains("finish=length"));
    assert!(
        final_answer(&records).ends_with("text=\"done:\""),
        "{}",
        final_answer(&records)
    );
}

#[test]
fn tool_error_is_fed_back_to_the_model_and_has_no_side_effect() {
    let faults = "[[fault]]\nkind = \"tool.error\"\ntarget = \"tool:pay\"\non_message = 1\ntext = \"card declined\"";
    let (output, records) = run("", faults);
    assert!(deliveries(&records, "tool_result")
        .iter()
        .any(|(_, m)| m.contains("error: card declined")));
    assert_eq!(output.report.effects.get("money_moved"), None);
    assert!(final_answer(&records).contains("error: card declined"));
}

#[test]
fn tool_timeout_moves_money_without_answering_and_the_agent_gives_up_at_its_tool_timeout() {
    let faults = "[[fault]]\nkind = \"tool.timeout\"\ntarget = \"tool:pay\"\non_message = 1";
    let (output, records) = run("tool_timeout = \"1s\"", faults);
    let (invoke_at, invoke) = deliveries(&records, "invoke")
        .into_iter()
        .find(|(_, m)| m.contains("tool=pay"))
        .unwrap();
    let call = invoke
        .split_whitespace()
        .find(|w| w.starts_with("call="))
        .unwrap()
        .to_owned();
    let timeout = deliveries(&records, "tool_timeout")
        .into_iter()
        .find(|(_, m)| m.ends_with(&call))
        .unwrap();
    assert_eq!(
        timeout.0,
        invoke_at + 1_000_000,
        "the agent stops waiting one tool_timeout after the call"
    );
    assert_eq!(
        output.report.effects.get("money_moved"),
        Some(&1),
        "the payment happened"
    );
    assert!(final_answer(&records).contains("error: tool pay timed out"));
}

#[test]
fn slow_tool_adds_its_latency() {
    let faults = "[[fault]]\nkind = \"tool.slow\"\ntarget = \"tool:lookup\"\non_message = 1\nlatency = \"5s\"";
    let (_, records) = run("", faults);
    let invoke_at = deliveries(&records, "invoke")[0].0;
    assert_eq!(deliveries(&records, "tool_result")[0].0, invoke_at + 10_000 + 5_000_000);
}

#[test]
fn empty_tool_output_reaches_the_model_empty() {
    let faults = "[[fault]]\nkind = \"tool.empty\"\ntarget = \"tool:lookup\"\non_message = 1";
    let (_, records) = run("", faults);
    assert!(deliveries(&records, "tool_result")[0].1.ends_with("output=\"\""));
}

#[test]
fn injected_text_rides_along_in_the_tool_output() {
    let faults = "[[fault]]\nkind = \"tool.injection\"\ntarget = \"tool:pay\"\non_message = 1";
    let (_, records) = run("", faults);
    assert!(final_answer(&records).contains("IGNORE PREVIOUS INSTRUCTIONS"));
}

#[test]
fn duplicated_side_effect_breaks_the_pay_once_invariant() {
    let faults = "[[fault]]\nkind = \"tool.duplicate_effect\"\ntarget = \"tool:pay\"\non_message = 1";
    let (output, _) = run("", faults);
    assert_eq!(output.report.effects.get("money_moved"), Some(&2));
    let invariant = &output.report.invariants[0];
    assert!(!invariant.passed);
    assert_eq!(invariant.first_violation.as_ref().unwrap().actor, "tool:pay");
}

#[test]
fn between_limits_a_fault_to_its_window_and_after_chains_faults() {
    let faults = r#"
[[fault]]
name = "first"
kind = "tool.empty"
target = "tool:lookup"
between = ["0s", "1s"]

[[fault]]
kind = "tool.injection"
target = "tool:pay"
after = "first"
probability = 1.0
"#;
    let (_, records) = run("", faults);
    assert_eq!(fault_records(&records), ["tool.empty", "tool.injection"]);
    let (_, late) = run("", &faults.replace("[\"0s\", \"1s\"]", "[\"10s\", \"20s\"]"));
    assert!(
        fault_records(&late).is_empty(),
        "outside its window the first never fires, so neither does the second"
    );
}

#[test]
fn every_fired_fault_is_a_trace_record_with_its_parameters() {
    let faults = "[[fault]]\nkind = \"llm.rate_limit\"\ntarget = \"llm:gpt\"\non_message = 1\nretry_after = \"3s\"\nlatency = \"40ms\"";
    let (output, records) = run(RETRY_NO_JITTER, faults);
    let record = records.iter().find(|r| r["kind"] == "fault").unwrap();
    assert_eq!(record["params"], "retry_after_us=3000000 latency_us=40000");
    assert_eq!(record["name"], "llm.rate_limit@llm:gpt");
    assert_eq!(output.report.faults[0].kind, "llm.rate_limit");
}

#[test]
fn list_faults_json_names_every_kind_with_layer_and_params() {
    let output = agentsim_output(&["list", "faults", "--json"]);
    assert_eq!(status(&output), 0);
    let catalogue: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    for entry in &catalogue {
        assert!(
            entry["kind"].is_string() && entry["layer"].is_string() && entry["params"].is_array(),
            "{entry}"
        );
    }
    let kinds: Vec<&str> = catalogue.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    let source = std::fs::read_to_string(repo_root().join("tests/faults.rs")).unwrap();
    // Stream faults act on HTTP streams, which only the proxy has, and MCP faults on MCP
    // exchanges, which only `proxy --mcp` has: they are tested there.
    let proxy = std::fs::read_to_string(repo_root().join("tests/proxy.rs")).unwrap();
    let mcp = std::fs::read_to_string(repo_root().join("tests/mcp.rs")).unwrap();
    for kind in kinds {
        let (file, text) = if kind.starts_with("stream.") {
            ("tests/proxy.rs", &proxy)
        } else if kind.starts_with("mcp.") {
            ("tests/mcp.rs", &mcp)
        } else {
            ("tests/faults.rs", &source)
        };
        assert!(
            text.contains(&format!("kind = \\\"{kind}\\\"")) || text.contains(&format!("kind = \"{kind}\"\n")),
            "fault kind {kind} has no test in {file}"
        );
    }
}

#[test]
fn a_circuit_breaker_opens_after_its_failures_and_half_opens_after_its_cool_down() {
    let policy = r#"retry = { attempts = 5, backoff = "constant", base = "1s", jitter = "none" }
circuit_breaker = { failures = 2, cool_down = "10s" }"#;
    let faults = "[[fault]]\nkind = \"llm.server_error\"\ntarget = \"llm:gpt\"\nprobability = 1.0";
    let (output, records) = run(policy, faults);
    let calls: Vec<u64> = deliveries(&records, "complete").iter().map(|(t, _)| *t).collect();
    // Two failures (0.5 s each) open the breaker at 2 s until 12 s; the probe at 12 s fails too.
    assert_eq!(calls, [0, 1_500_000, 12_000_000]);
    let rejected: Vec<u64> = deliveries(&records, "call_rejected").iter().map(|(t, _)| *t).collect();
    assert_eq!(
        rejected,
        [3_000_000, 13_500_000],
        "while open, calls fail fast without reaching the model"
    );
    assert_eq!(output.report.conversations.failed, 1);
}

fn run_text(text: &str) -> (RunOutput, Vec<Value>) {
    let output = run_in_memory(&parse(text), 3, Flavor::CurrentThread);
    let records = records(&output.trace);
    (output, records)
}

/// The `tokens_in=` of the Nth model call.
fn tokens_in(records: &[Value], call: usize) -> u64 {
    let (_, msg) = &deliveries(records, "complete")[call];
    msg.split_whitespace()
        .find_map(|w| w.strip_prefix("tokens_in="))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn partial_tool_output_is_cut_short() {
    let faults = "[[fault]]\nkind = \"tool.partial\"\ntarget = \"tool:lookup\"\non_message = 1";
    let (_, records) = run("", faults);
    assert!(
        deliveries(&records, "tool_result")[0].1.ends_with("output=\"found…\""),
        "{:?}",
        deliveries(&records, "tool_result")[0]
    );
}

#[test]
fn stale_tool_output_carries_the_cache_marker() {
    let faults = "[[fault]]\nkind = \"tool.stale\"\ntarget = \"tool:lookup\"\non_message = 1";
    let (_, records) = run("", faults);
    assert!(deliveries(&records, "tool_result")[0]
        .1
        .contains("output=\"[cached 2h ago] found hello\""));
}

#[test]
fn schema_drift_wraps_the_tool_output_in_a_new_envelope() {
    let faults = "[[fault]]\nkind = \"tool.schema_drift\"\ntarget = \"tool:lookup\"\non_message = 1";
    let (_, records) = run("", faults);
    assert!(deliveries(&records, "tool_result")[0].1.contains("result_v2"));
}

#[test]
fn duplicate_tool_call_ids_make_the_framework_run_only_one_of_the_calls() {
    let parallel = design("", "").replace(
        r#"then = { tool_call = "lookup", args = { q = "{{user}}" } }"#,
        r#"then = { tool_calls = [{ tool = "lookup", args = { q = "a" } }, { tool = "pay", args = { amount = 5 } }] }"#,
    );
    let (clean, _) = run_text(&parallel);
    assert_eq!(
        clean.report.effects.get("money_moved"),
        Some(&1),
        "both calls run without the fault"
    );
    let faulty = format!(
        "{parallel}\n[[fault]]\nkind = \"llm.duplicate_tool_call_ids\"\ntarget = \"llm:gpt\"\non_message = 1\n"
    );
    let (output, records) = run_text(&faulty);
    let (replied_at, reply) = deliveries(&records, "llm_reply")[0].clone();
    assert!(reply.contains("tool_calls=[lookup#0,pay#0]"), "{reply}");
    let first_round: Vec<String> = deliveries(&records, "invoke")
        .into_iter()
        .filter(|(t, _)| *t == replied_at)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(first_round.len(), 1, "only one of the two calls ran: {first_round:?}");
    assert!(first_round[0].contains("tool=lookup"));
    // The model, seeing only the lookup's result, asks to pay in its next turn.
    assert_eq!(output.report.llm_calls, clean.report.llm_calls + 1);
}

#[test]
fn a_dropped_opening_message_leaves_the_customer_waiting() {
    let faults = "[[fault]]\nkind = \"message.drop\"\ntarget = \"agent:a\"\non_message = 1";
    let (output, records) = run("", faults);
    assert!(deliveries(&records, "start").is_empty());
    assert_eq!(output.report.conversations.started, 1);
    assert_eq!(output.report.conversations.unanswered, 1);
    assert_eq!(output.report.outcome, agentsim::report::Outcome::Stalled);
}

#[test]
fn a_delayed_message_arrives_exactly_that_much_later() {
    let faults = "[[fault]]\nkind = \"message.delay\"\ntarget = \"tool:pay\"\non_message = 1\nlatency = \"3s\"";
    let (_, records) = run("", faults);
    let asked_at = deliveries(&records, "llm_reply")[1].0;
    let invoked_at = deliveries(&records, "invoke")
        .iter()
        .find(|(_, m)| m.contains("tool=pay"))
        .unwrap()
        .0;
    assert_eq!(invoked_at, asked_at + 3_000_000);
}

#[test]
fn a_duplicated_payment_message_pays_twice() {
    let faults = "[[fault]]\nkind = \"message.duplicate\"\ntarget = \"tool:pay\"\non_message = 1";
    let (output, _) = run("", faults);
    assert_eq!(output.report.effects.get("money_moved"), Some(&2));
    assert!(!output.report.invariants[0].passed);
}

#[test]
fn a_reordered_message_is_overtaken_by_those_in_flight_at_the_same_instant() {
    let two = design("", "").replace(
        r#"script = [{ at = "0s", message = "hello" }]"#,
        r#"script = [{ at = "0s", message = "first" }, { at = "0s", message = "second" }]"#,
    );
    let order = |records: &[Value]| {
        deliveries(records, "start")
            .iter()
            .map(|(_, m)| m.clone())
            .collect::<Vec<_>>()
    };
    let (_, clean) = run_text(&two);
    assert!(order(&clean)[0].contains("first"));
    let faulty = format!("{two}\n[[fault]]\nkind = \"message.reorder\"\ntarget = \"agent:a\"\non_message = 1\n");
    let (_, records) = run_text(&faulty);
    assert!(order(&records)[0].contains("second"), "{:?}", order(&records));
}

#[test]
fn a_partition_cuts_the_agent_off_from_the_tool_until_its_tool_timeout() {
    let faults = "[[fault]]\nkind = \"network.partition\"\ntarget = \"agent:a\"\npeer = \"tool:pay\"\nbetween = [\"0s\", \"10s\"]";
    let (output, records) = run("tool_timeout = \"2s\"", faults);
    assert!(deliveries(&records, "invoke")
        .iter()
        .all(|(_, m)| !m.contains("tool=pay")));
    assert_eq!(output.report.effects.get("money_moved"), None);
    assert!(final_answer(&records).contains("error: tool pay timed out"));
}

#[test]
fn clock_skew_makes_the_provider_bucket_believe_time_has_passed() {
    let limited = design("", "").replace(
        "context_window = 128_000",
        "context_window = 128_000\nrpm = 1\nburst = 1",
    );
    let (clean, _) = run_text(&limited);
    assert_eq!(
        clean.report.conversations.failed, 1,
        "the second call within a minute is refused"
    );
    let skewed = format!(
        "{limited}\n[[fault]]\nkind = \"clock.skew\"\ntarget = \"llm:gpt\"\non_message = 2\nlatency = \"2m\"\n"
    );
    let (output, _) = run_text(&skewed);
    assert_eq!(
        output.report.llm_errors, 1,
        "only the third call is refused: the skewed second call saw a refilled bucket"
    );
}

#[test]
fn truncated_memory_sends_a_smaller_context_to_the_model() {
    let (_, clean) = run("", "");
    let faults = "[[fault]]\nkind = \"memory.truncate\"\ntarget = \"agent:a\"\non_message = 4";
    let (_, records) = run("", faults);
    assert!(
        tokens_in(&records, 2) < tokens_in(&clean, 2),
        "{} vs {}",
        tokens_in(&records, 2),
        tokens_in(&clean, 2)
    );
}

#[test]
fn mutated_memory_makes_the_agent_remember_the_wrong_tool_output() {
    let faults = "[[fault]]\nkind = \"memory.mutate\"\ntarget = \"agent:a\"\non_message = 5";
    let (_, records) = run("", faults);
    assert!(
        final_answer(&records).contains("done: (corrupted)"),
        "{}",
        final_answer(&records)
    );
}

#[test]
fn a_memory_reset_starts_the_conversation_over_at_turn_one() {
    let faults = "[[fault]]\nkind = \"memory.reset\"\ntarget = \"agent:a\"\non_message = 4";
    let (_, records) = run("", faults);
    let last_call = deliveries(&records, "complete").last().unwrap().1.clone();
    assert!(
        last_call.contains("turn=2"),
        "without the reset this is turn 3: {last_call}"
    );
}

#[test]
fn a_handoff_that_drops_the_context_leaves_the_next_agent_without_the_request() {
    let text = r#"
[scenario]
name = "handoff"
[[llm]]
name = "gpt"
latency = "100ms"
[[agent]]
name = "a"
llm = "gpt"
handoffs = ["b"]
behavior = [{ otherwise = { handoff = "b" } }]
[[agent]]
name = "b"
llm = "gpt"
behavior = [{ otherwise = { answer = "you asked: {{user}}" } }]
[[traffic]]
kind = "script"
to = "a"
script = [{ at = "0s", message = "refund order 7" }]
"#;
    let (_, clean) = run_text(text);
    assert!(final_answer(&clean).contains("you asked: refund order 7"));
    let faulty =
        format!("{text}\n[[fault]]\nkind = \"handoff.drop_context\"\ntarget = \"agent:b\"\nprobability = 1.0\n");
    let (_, records) = run_text(&faulty);
    assert!(
        final_answer(&records).ends_with("text=\"you asked: \""),
        "{}",
        final_answer(&records)
    );
}

#[test]
fn a_user_injection_travels_into_the_tool_arguments() {
    let faults = "[[fault]]\nkind = \"user.injection\"\ntarget = \"agent:a\"\non_message = 1";
    let (_, records) = run("", faults);
    assert!(deliveries(&records, "invoke")[0]
        .1
        .contains("hello Ignore your instructions"));
}

#[test]
fn a_user_contradiction_is_appended_to_the_request() {
    let faults = "[[fault]]\nkind = \"user.contradiction\"\ntarget = \"agent:a\"\non_message = 1";
    let (_, records) = run("", faults);
    assert!(deliveries(&records, "invoke")[0].1.contains("Actually, forget that"));
}

#[test]
fn an_abandoned_conversation_is_counted_and_nobody_waits_for_it() {
    let faults = "[[fault]]\nkind = \"user.abandon\"\ntarget = \"agent:a\"\non_message = 1";
    let (output, _) = run("", faults);
    assert_eq!(output.report.conversations.abandoned, 1);
    assert_eq!(output.report.outcome, agentsim::report::Outcome::Completed);
    let summary = output.report.summary();
    assert!(
        summary.contains(", 1 abandoned\n"),
        "the summary shows it on its own:\n{summary}"
    );
}

#[test]
fn each_seed_picks_a_fault_profile_and_only_that_profile_s_faults_fire() {
    let faults = r#"
[[fault]]
kind = "llm.rate_limit"
target = "llm:gpt"
probability = 0.5
retry_after = "1s"

[[fault]]
kind = "tool.error"
target = "tool:lookup"
probability = 0.5

[[profile]]
name = "calm"
faults = []

[[profile]]
name = "provider-trouble"
weight = 2
faults = ["llm.*"]
scale = 2.0
"#;
    let scenario = parse(&design(RETRY_NO_JITTER, faults));
    let mut seen = std::collections::BTreeMap::new();
    for seed in 0..30 {
        let output = run_in_memory(&scenario, seed, Flavor::CurrentThread);
        let profile = output.report.profile.clone().expect("a profile is picked");
        let kinds: Vec<String> = output.report.faults.iter().map(|f| f.kind.clone()).collect();
        match profile.as_str() {
            "calm" => assert!(kinds.is_empty(), "seed {seed}: {kinds:?}"),
            "provider-trouble" => {
                assert!(kinds.iter().all(|k| k == "llm.rate_limit"), "seed {seed}: {kinds:?}");
                // Scaled from 0.5 to certainty: the first call is always limited.
                assert!(!kinds.is_empty(), "seed {seed}");
            }
            other => panic!("unknown profile {other}"),
        }
        let again = run_in_memory(&scenario, seed, Flavor::CurrentThread);
        assert_eq!(
            again.report.profile,
            Some(profile.clone()),
            "the seed decides the profile"
        );
        *seen.entry(profile).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both profiles are explored: {seen:?}");
    assert!(seen["provider-trouble"] > seen["calm"], "weights count: {seen:?}");
}

#[test]
fn each_malformed_mode_breaks_the_arguments_its_own_way() {
    let fault = |mode: &str| {
        format!(
            "[[fault]]\nkind = \"llm.malformed_tool_args\"\ntarget = \"llm:gpt\"\non_message = 2\nmode = \"{mode}\""
        )
    };
    let pay_invokes = |records: &[Value]| {
        deliveries(records, "invoke")
            .into_iter()
            .filter(|(_, m)| m.contains("tool=pay"))
            .map(|(_, m)| m)
            .collect::<Vec<_>>()
    };
    let (_, records) = run("", &fault("trailing_garbage"));
    assert!(
        pay_invokes(&records).is_empty(),
        "not JSON: the framework refuses the call"
    );
    assert!(final_answer(&records).contains("not valid JSON"));
    let (_, records) = run("", &fault("wrong_type"));
    assert!(
        pay_invokes(&records)[0].ends_with(r#"args={"amount":"5"}"#),
        "{:?}",
        pay_invokes(&records)
    );
    let (_, records) = run("", &fault("missing_field"));
    assert!(
        pay_invokes(&records)[0].ends_with("args={}"),
        "{:?}",
        pay_invokes(&records)
    );
}

#[test]
fn a_certain_network_fault_touches_each_message_once_and_cannot_hold_it_back_forever() {
    for kind in ["message.reorder", "message.delay", "message.duplicate"] {
        let faults = format!("[[fault]]\nkind = \"{kind}\"\ntarget = \"agent:a\"\nprobability = 1.0");
        let (output, _) = run("", &faults);
        assert_eq!(
            output.report.outcome,
            agentsim::report::Outcome::Completed,
            "{kind}: {}",
            output.report.summary()
        );
    }
}

/// A guardrail on the `lookup` tool's output that trips on "secret".
const SECRET_GUARD: &str = "[[guardrail]]\nname = \"g\"\nstage = \"tool_output\"\ncheck = { kind = \"deny_list\", words = [\"secret\"] }\ntimeout = \"500ms\"\non_error = \"open\"";

/// What the model saw of the first tool result.
fn first_tool_result(records: &[Value]) -> String {
    records
        .iter()
        .find(|r| {
            r["kind"] == "deliver" && r["to"] == "agent:a" && r["msg"].as_str().unwrap().starts_with("tool_result")
        })
        .map(|r| r["msg"].as_str().unwrap().to_owned())
        .expect("a tool result")
}

fn guard_verdicts(records: &[Value]) -> Vec<(String, String)> {
    records
        .iter()
        .filter(|r| r["kind"] == "guard")
        .map(|r| {
            (
                r["verdict"].as_str().unwrap().to_owned(),
                r["mistake"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn guardrail_false_positive_blocks_an_innocent_tool_output() {
    let faults = format!(
        "{SECRET_GUARD}\n\n[[fault]]\nkind = \"guardrail.false_positive\"\ntarget = \"guardrail:g\"\non_message = 1"
    );
    let (_, records) = run("", &faults);
    assert_eq!(
        guard_verdicts(&records)[0],
        ("block".to_owned(), "false_positive".to_owned())
    );
    assert!(first_tool_result(&records).contains("blocked by guardrail g"));
}

#[test]
fn guardrail_false_negative_lets_what_it_guards_against_through() {
    let faults = format!(
        "{SECRET_GUARD}\n\n[[fault]]\nkind = \"guardrail.false_negative\"\ntarget = \"guardrail:g\"\non_message = 1"
    );
    let design_text = design("", &faults).replace("message = \"hello\"", "message = \"the secret\"");
    let output = run_in_memory(&parse(&design_text), 1, Flavor::CurrentThread);
    let records = records(&output.trace);
    assert_eq!(
        guard_verdicts(&records)[0],
        ("allow".to_owned(), "false_negative".to_owned())
    );
    assert!(first_tool_result(&records).contains("found the secret"));
}

#[test]
fn guardrail_timeout_fails_open_after_the_timeout() {
    let faults =
        format!("{SECRET_GUARD}\n\n[[fault]]\nkind = \"guardrail.timeout\"\ntarget = \"guardrail:g\"\non_message = 1");
    let (_, records) = run("", &faults);
    let guard = records.iter().find(|r| r["kind"] == "guard").unwrap();
    assert_eq!(guard["verdict"], "error");
    assert_eq!(guard["latency_us"], 500_000);
    let result = records
        .iter()
        .find(|r| r["kind"] == "deliver" && r["msg"].as_str().is_some_and(|m| m.starts_with("tool_result")))
        .unwrap();
    assert_eq!(
        result["t_us"].as_u64().unwrap(),
        guard["t_us"].as_u64().unwrap() + 500_000
    );
}

/// A run names each fault that never fired and why: a message that never came, a target that
/// got nothing it acts on, a message an earlier fault took, an `after` that never came true.
#[test]
fn a_run_says_which_faults_never_fired_and_why() {
    let output = agentsim_output(&["run", "tests/fixtures/never-fired/scenario.toml", "--json"]);
    let report: Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    let never: Vec<(String, String)> = report["faults_never_fired"]
        .as_array()
        .expect("faults_never_fired")
        .iter()
        .map(|n| {
            (
                n["fault"].as_str().unwrap().to_owned(),
                n["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let calls = report["llm_calls"].as_u64().unwrap();
    assert_eq!(
        never,
        [
            (
                "late-429".to_owned(),
                format!("on_message = 40, but llm:gpt got only {calls} message(s)")
            ),
            (
                "lookup-error".to_owned(),
                "its target tool:lookup got none of the tool calls it acts on".to_owned()
            ),
            (
                "same-call".to_owned(),
                "on_message = 1: an earlier fault fired on that message (one fault per delivery)".to_owned()
            ),
            (
                "after-late".to_owned(),
                "after = \"late-429\", which never fired".to_owned()
            ),
        ]
    );
    assert_eq!(report["faults"][0]["name"], "first-call");
    let text = stdout(&agentsim_output(&["run", "tests/fixtures/never-fired/scenario.toml"]));
    assert!(
        text.contains("  never fired    late-429 (llm.rate_limit): on_message = 40, but llm:gpt got only"),
        "{text}"
    );
}

/// The world faults' design: a `stock` table with one widget; the tool `take` reads it, refuses
/// when none is left, and otherwise takes one and writes an order. The agent takes twice.
fn world_design(faults: &str) -> String {
    format!(
        r#"
[scenario]
name = "world-faults"
seed = 3

[[llm]]
name = "gpt"
latency = "100ms"

[[agent]]
name = "a"
llm = "gpt"
tools = ["take"]
max_turns = 6
behavior = [
  {{ when = "tool_calls < 2", then = {{ tool_call = "take", args = {{ item = "widget", order = "o{{{{tool_calls}}}}" }} }} }},
  {{ otherwise = {{ answer = "done: {{{{last_tool_output}}}}" }} }},
]

[[table]]
name = "stock"
key = "item"
fields = {{ item = "string", left = "int" }}
rows = [{{ item = "widget", left = 1 }}]

[[table]]
name = "orders"
key = "id"
fields = {{ id = "string", item = "string" }}
rows = []

[[tool]]
name = "take"
latency = "10ms"
read = {{ stock = {{ table = "stock", key = "{{{{args.item}}}}" }} }}
output = "took one, {{{{stock.left}}}} left"
rules = [
  {{ when = "stock.left <= 0", fail = "sold out" }},
  {{ update = {{ stock = {{ left = "stock.left - 1" }} }}, insert = {{ orders = {{ id = "{{{{args.order}}}}", item = "{{{{args.item}}}}" }} }} }},
]

[[traffic]]
kind = "script"
to = "a"
script = [{{ at = "0s", message = "two widgets, please" }}]

[[invariant]]
name = "an order per widget taken"
always = {{ table = "stock", check = "left >= 0" }}

{faults}
"#
    )
}

fn run_world(faults: &str) -> (RunOutput, Vec<Value>) {
    let scenario = parse(&world_design(faults));
    let output = run_in_memory(&scenario, 3, Flavor::CurrentThread);
    let records = records(&output.trace);
    (output, records)
}

fn world_records(records: &[Value]) -> Vec<&Value> {
    records.iter().filter(|r| r["kind"] == "world").collect()
}

#[test]
fn without_world_faults_the_second_take_is_refused() {
    let (_, records) = run_world("");
    let results = deliveries(&records, "tool_result");
    assert!(results[0].1.ends_with("output=\"took one, 0 left\""), "{results:?}");
    assert!(results[1].1.ends_with("output=\"error: sold out\""), "{results:?}");
    assert_eq!(world_records(&records).len(), 2, "one update and one insert");
}

#[test]
fn a_stale_read_serves_the_version_before_the_last_write_and_the_write_on_top_is_a_lost_update() {
    let faults = "[[fault]]\nkind = \"world.stale_read\"\ntarget = \"tool:take\"\non_message = 2";
    let (output, records) = run_world(faults);
    let results = deliveries(&records, "tool_result");
    // The second call reads `left = 1` from before the first take, so it is not refused.
    assert!(results[1].1.ends_with("output=\"took one, 0 left\""), "{results:?}");
    let writes = world_records(&records);
    assert_eq!(writes.len(), 4, "two updates, two orders: {writes:?}");
    assert_eq!(writes[2]["row"]["left"], 0, "written on top of the stale value");
    let world = output.report.world.as_ref().unwrap();
    let orders = world.tables.iter().find(|t| t.name == "orders").unwrap();
    assert_eq!(orders.records_final, 2, "two orders for one widget");
}

#[test]
fn a_lost_write_is_acknowledged_traced_as_lost_and_not_kept() {
    let faults = "[[fault]]\nkind = \"world.lost_write\"\ntarget = \"tool:take\"\non_message = 1";
    let (output, records) = run_world(faults);
    let results = deliveries(&records, "tool_result");
    assert!(
        results[0].1.ends_with("output=\"took one, 0 left\""),
        "the tool says it worked: {results:?}"
    );
    // The store kept nothing, so the second take finds the widget still there.
    assert!(results[1].1.ends_with("output=\"took one, 0 left\""), "{results:?}");
    let writes = world_records(&records);
    assert_eq!(writes[0]["lost"], true);
    assert_eq!(writes[2].get("lost"), None);
    let world = output.report.world.as_ref().unwrap();
    assert_eq!(world.lost_writes, 2);
}

#[test]
fn a_conflict_refuses_the_write_with_a_409_and_changes_nothing() {
    let faults = "[[fault]]\nkind = \"world.conflict\"\ntarget = \"tool:take\"\non_message = 1";
    let (_, records) = run_world(faults);
    let results = deliveries(&records, "tool_result");
    assert!(
        results[0]
            .1
            .contains("error: 409 conflict: stock widget was changed by another request"),
        "{results:?}"
    );
    // Nothing changed, so the retry (the agent's second take) gets the widget.
    assert!(results[1].1.ends_with("output=\"took one, 0 left\""), "{results:?}");
    assert_eq!(world_records(&records).len(), 2);
}

#[test]
fn a_partial_call_leaves_a_half_done_change() {
    let faults = "[[fault]]\nkind = \"tool.partial\"\ntarget = \"tool:take\"\non_message = 1";
    let (output, records) = run_world(faults);
    let writes = world_records(&records);
    // The stock was taken, the order never written.
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0]["table"], "stock");
    let world = output.report.world.as_ref().unwrap();
    let orders = world.tables.iter().find(|t| t.name == "orders").unwrap();
    assert_eq!(orders.records_final, 0);
}

#[test]
fn a_duplicated_effect_on_a_tool_with_rules_applies_its_updates_twice() {
    let faults = "[[fault]]\nkind = \"tool.duplicate_effect\"\ntarget = \"tool:take\"\non_message = 1";
    let (output, records) = run_world(faults);
    let stock: Vec<&Value> = world_records(&records)
        .into_iter()
        .filter(|r| r["table"] == "stock")
        .collect();
    // The one widget taken twice: 1 → 0 → -1, and the stock check breaks.
    assert_eq!(stock[0]["row"]["left"], 0);
    assert_eq!(stock[1]["row"]["left"], -1);
    assert!(!output.report.invariants[0].passed);
}
