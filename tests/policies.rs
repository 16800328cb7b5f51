//! Resilience policies and supervision settings, each checked at exact virtual times:
//! restart backoff, persisted state, deadlines, bulkheads, client-side rate limits and retry
//! budgets.

mod common;

use agentsim::run::{Flavor, RunOutput};
use common::*;
use serde_json::Value;

/// One model with a fixed latency and one agent `a` that answers at once; `agent_extra` adds
/// policy keys to the agent, `rest` adds tables; conversations open at the `script` times.
fn design(latency: &str, agent_extra: &str, script: &str, rest: &str) -> String {
    format!(
        r#"
[scenario]
name = "policies"

[[llm]]
name = "gpt"
latency = "{latency}"

[[agent]]
name = "a"
llm = "gpt"
{agent_extra}
behavior = [{{ otherwise = {{ answer = "done" }} }}]

[[traffic]]
kind = "script"
to = "a"
script = [{script}]

{rest}
"#
    )
}

fn run(text: &str) -> (RunOutput, Vec<Value>) {
    let output = run_in_memory(&parse(text), 1, Flavor::CurrentThread);
    let records = records(&output.trace);
    (output, records)
}

fn times(records: &[Value], prefix: &str) -> Vec<u64> {
    records
        .iter()
        .filter(|r| r["kind"] == "deliver" && r["msg"].as_str().is_some_and(|m| m.starts_with(prefix)))
        .map(|r| r["t_us"].as_u64().unwrap())
        .collect()
}

const THREE_AT_ONCE: &str =
    r#"{ at = "0s", message = "x" }, { at = "0s", message = "y" }, { at = "0s", message = "z" }"#;

#[test]
fn a_restarted_agent_stays_down_for_the_restart_backoff_and_its_messages_wait() {
    let supervisor = r#"
[[supervisor]]
name = "sup"
restart_backoff = "5s"
children = ["a"]

[[fault]]
kind = "actor.crash"
target = "agent:a"
on_message = 1
"#;
    let text = design(
        "100ms",
        "",
        r#"{ at = "0s", message = "x" }, { at = "1s", message = "y" }"#,
        supervisor,
    );
    let (output, records) = run(&text);
    assert_eq!(output.report.restarts.len(), 1);
    assert_eq!(
        times(&records, "start"),
        [0, 5_000_000],
        "the second conversation waited for the agent"
    );
    assert_eq!(output.report.conversations.answered, 1);
}

#[test]
fn a_persisted_agent_keeps_its_conversations_across_a_restart() {
    // Conversation 0 waits on a 1 s model call; conversation 1's opening crashes the agent.
    let crash = "[[fault]]\nkind = \"actor.crash\"\ntarget = \"agent:a\"\non_message = 2\n";
    let script = r#"{ at = "0s", message = "x" }, { at = "500ms", message = "y" }"#;
    let (lost, _) = run(&design("1s", "", script, crash));
    assert_eq!(
        lost.report.conversations.answered, 0,
        "fresh state: conversation 0 is forgotten"
    );
    let (kept, _) = run(&design("1s", "persist = true", script, crash));
    assert_eq!(
        kept.report.conversations.answered, 1,
        "the checkpoint carried conversation 0 over"
    );
    assert_eq!(kept.report.restarts.len(), 1);
}

#[test]
fn a_conversation_past_the_agent_deadline_fails_and_the_late_answer_is_ignored() {
    let (output, records) = run(&design(
        "5s",
        "deadline = \"2s\"",
        r#"{ at = "0s", message = "x" }"#,
        "",
    ));
    assert_eq!(times(&records, "deadline"), [2_000_000]);
    assert_eq!(output.report.conversations.failed, 1);
    let answer = records
        .iter()
        .find(|r| r["msg"].as_str().is_some_and(|m| m.starts_with("answer")))
        .unwrap();
    assert_eq!(answer["t_us"], 2_000_000);
    assert!(answer["msg"].as_str().unwrap().contains("deadline"));
}

#[test]
fn a_bulkhead_lets_one_call_at_a_time_through() {
    let (output, records) = run(&design("1s", "max_concurrent_calls = 1", THREE_AT_ONCE, ""));
    assert_eq!(times(&records, "complete"), [0, 1_000_000, 2_000_000]);
    assert_eq!(output.report.conversations.answered, 3);
}

#[test]
fn a_client_side_rate_limiter_spaces_calls_by_its_rate() {
    let limiter = "rate_limit = { rpm = 60, burst = 1 }";
    let (output, records) = run(&design("100ms", limiter, THREE_AT_ONCE, ""));
    assert_eq!(times(&records, "complete"), [0, 1_000_000, 2_000_000]);
    assert_eq!(output.report.llm_errors, 0, "waiting for a token is not an error");
}

#[test]
fn a_retry_budget_caps_retries_across_the_whole_agent() {
    let failing = "[[fault]]\nkind = \"llm.server_error\"\ntarget = \"llm:gpt\"\nprobability = 1.0\n";
    let retry = |budget: &str| {
        format!(r#"retry = {{ attempts = 10, backoff = "constant", base = "1s", jitter = "none"{budget} }}"#)
    };
    let (unbounded, _) = run(&design("100ms", &retry(""), r#"{ at = "0s", message = "x" }"#, failing));
    assert_eq!(unbounded.report.llm_calls, 10);
    let (budgeted, _) = run(&design(
        "100ms",
        &retry(", budget = 0.0"),
        r#"{ at = "0s", message = "x" }"#,
        failing,
    ));
    assert_eq!(
        budgeted.report.llm_calls, 4,
        "a zero budget still allows the first 3 retries"
    );
}

#[test]
fn a_tokens_per_minute_limiter_holds_calls_until_their_tokens_refill() {
    // "x" is one message: 3 tokens of framing and 1 of text, plus 3 to prime the reply, so each
    // call asks for 7 input tokens. 180 tokens a minute refill three a second, and the bucket
    // holds 30: three calls fit at once.
    let (fits, records) = run(&design("100ms", "rate_limit = { tpm = 180 }", THREE_AT_ONCE, ""));
    assert_eq!(times(&records, "complete"), [0, 0, 0]);
    assert_eq!(fits.report.conversations.answered, 3);
    // With long instructions (a system message of 3 + 25 tokens) each call asks for 35 tokens,
    // more than the bucket holds: it takes a full bucket (30), so calls go one per ten seconds.
    let long = format!(
        "instructions = \"{}\"\nrate_limit = {{ tpm = 180 }}",
        "word ".repeat(20)
    );
    let (_, records) = run(&design("100ms", &long, THREE_AT_ONCE, ""));
    assert_eq!(times(&records, "complete"), [0, 10_000_000, 20_000_000]);
}
