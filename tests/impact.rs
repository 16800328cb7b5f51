//! Causal impact by counterfactual: a run again without one fault firing. Conversations that
//! share nothing with the one the firing hit (no rate limit, bulkhead or breaker between them)
//! must come out byte-identical, because every draw that belongs to a conversation comes from a
//! stream of its own.

mod common;

use agentsim::engine::{execute_without, Interrupt};
use agentsim::observe::Observer;
use agentsim::run::RunOptions;
use agentsim::trace::TraceMode;
use common::{field, parse, records};

/// Six conversations of a tool loop whose tool fails now and then; nothing couples them.
const DESIGN: &str = r#"[scenario]
name = "independent"

[[llm]]
name = "gpt"
latency = { median = "300ms", p99 = "2s" }

[[tool]]
name = "lookup"
latency = { median = "80ms", p99 = "600ms" }
output = "found {{args.q}}"

[[agent]]
name = "a"
llm = "gpt"
tools = ["lookup"]
max_turns = 6
behavior = [
  { when = "last_tool_output contains 'error'", then = { answer = "sorry, the lookup failed" } },
  { when = "tool_calls < 2", then = { tool_call = "lookup", args = { q = "item {{conversation}}" } }, p = 0.8 },
  { otherwise = { answer = "found it" } },
]

[[traffic]]
kind = "script"
to = "a"
script = [
  { at = "0s", message = "one" }, { at = "100ms", message = "two" }, { at = "200ms", message = "three" },
  { at = "300ms", message = "four" }, { at = "400ms", message = "five" }, { at = "500ms", message = "six" },
]

[[fault]]
kind = "tool.error"
target = "tool:lookup"
probability = 0.3
"#;

fn trace(seed: u64, suppressed: Option<(usize, u32)>) -> Vec<u8> {
    let suppressed = suppressed.map(|(fault, firing)| (fault, Some(firing)));
    let scenario = parse(DESIGN);
    let options = RunOptions {
        trace: TraceMode::Memory,
        ..RunOptions::new(seed)
    };
    let observer = Observer::new(&scenario);
    let (run, _) = execute_without(scenario, &options, observer, Interrupt::default(), suppressed).expect("the run");
    run.trace
}

/// Each conversation's deliveries: time, receiver and message, in order.
fn by_conversation(trace: &[u8]) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for r in records(trace).iter().filter(|r| r["kind"] == "deliver") {
        let msg = field(r, "msg");
        if let Some(conv) = msg.split(' ').find(|kv| kv.starts_with("conv=")) {
            out.entry(conv.to_owned())
                .or_default()
                .push(format!("{} {} {msg}", r["t_us"], field(r, "to")));
        }
    }
    out
}

#[test]
fn leaving_out_one_firing_changes_its_conversation_and_no_other() {
    // A seed where the fault fires at least once.
    let (seed, base) = (0..50)
        .map(|seed| (seed, trace(seed, None)))
        .find(|(_, t)| records(t).iter().any(|r| r["kind"] == "fault"))
        .expect("some seed fires the fault");
    let fault = records(&base)
        .into_iter()
        .find(|r| r["kind"] == "fault")
        .expect("a fault record");
    // The conversation of the delivery the fault fired on.
    let hit = records(&base)
        .into_iter()
        .find(|r| r["kind"] == "deliver" && r["seq"] == fault["seq"])
        .and_then(|r| {
            field(&r, "msg")
                .split(' ')
                .find(|kv| kv.starts_with("conv="))
                .map(str::to_owned)
        })
        .expect("the fault fired on a conversation's message");

    let without = trace(seed, Some((0, 0)));
    let (before, after) = (by_conversation(&base), by_conversation(&without));
    assert_ne!(
        before[&hit], after[&hit],
        "the firing changed its own conversation ({hit})"
    );
    for (conv, deliveries) in &before {
        if *conv != hit {
            assert_eq!(Some(deliveries), after.get(conv), "{conv} must not move");
        }
    }
    assert_eq!(before.len(), after.len());
}

/// Three conversations; a 429 that the agent retries, and a crash that loses what it hits.
const RETRIED_AND_CRASHED: &str = r#"[scenario]
name = "retried-and-crashed"

[[llm]]
name = "gpt"
latency = "200ms"

[[tool]]
name = "pay"
latency = "50ms"
effect = "money_moved"

[[agent]]
name = "a"
llm = "gpt"
tools = ["pay"]
retry = { attempts = 3, backoff = "constant", base = "1s", jitter = "none" }
behavior = [
  { when = "tool_calls == 0", then = { tool_call = "pay", args = { amount = 5 } } },
  { otherwise = { answer = "paid" } },
]

[[traffic]]
kind = "script"
to = "a"
script = [{ at = "0s", message = "one" }, { at = "10s", message = "two" }, { at = "20s", message = "three" }]

[[fault]]
name = "retried-429"
kind = "llm.rate_limit"
target = "llm:gpt"
on_message = 1

[[fault]]
name = "crash"
kind = "actor.crash"
target = "agent:a"
between = ["10s", "11s"]
count = 1
"#;

#[test]
fn a_sweep_with_impact_says_per_fault_what_it_changed_and_a_retried_429_changed_no_ending() {
    let dir = tempfile::tempdir().expect("scratch");
    let file = dir.path().join("design.toml");
    std::fs::write(&file, RETRIED_AND_CRASHED).expect("write");
    let output = common::agentsim_output(&["sweep", file.to_str().unwrap(), "--seeds", "0..4", "--impact", "--json"]);
    assert!(common::status(&output) <= 1, "{}", common::stderr(&output));
    let summary: serde_json::Value = serde_json::from_str(&common::stdout(&output)).expect("JSON");
    let impact = summary["impact"].as_array().expect("impact per fault");
    let of = |name: &str| {
        impact
            .iter()
            .find(|i| i["fault"] == name)
            .unwrap_or_else(|| panic!("{impact:?}"))
    };
    let retried = of("retried-429");
    assert_eq!(retried["runs_fired"], 4);
    assert_eq!(retried["runs_changed"], 0, "reached, but changed nothing: {retried}");
    assert_eq!(retried["deltas"]["conversations_changed"], 0);
    assert!(
        retried["deltas"]["latency_us"].as_i64().unwrap() > 0,
        "the retry waited: {retried}"
    );
    let crash = of("crash");
    assert_eq!(crash["runs_fired"], 4);
    assert_eq!(crash["runs_changed"], 4);
    assert_eq!(crash["deltas"]["transitions"]["answered → lost"], 4, "{crash}");
    let text = common::stdout(&common::agentsim_output(&[
        "sweep",
        file.to_str().unwrap(),
        "--seeds",
        "0..4",
        "--impact",
    ]));
    assert!(text.contains("impact         retried-429 (llm.rate_limit): fired in 4 runs, changed an ending in 0; changed no conversation's ending"), "{text}");
}

/// Two conversations share one model slot (a bulkhead of one): a call that hangs in the first
/// makes the second wait past its deadline.
const COUPLED: &str = r#"[scenario]
name = "coupled"

[[llm]]
name = "gpt"
latency = "200ms"

[[agent]]
name = "a"
llm = "gpt"
max_concurrent_calls = 1
deadline = "1s"
behavior = [{ otherwise = { answer = "done" } }]

[[traffic]]
kind = "script"
to = "a"
script = [{ at = "0s", message = "one" }, { at = "100ms", message = "two" }, { at = "5s", message = "three" }]

[[fault]]
name = "hang"
kind = "llm.timeout"
target = "llm:gpt"
on_message = 1
"#;

/// Two conversations share a client-side rate limit of one call a second: a 429 retried in the
/// first takes the token the second was waiting for, and the second runs past its deadline.
const COUPLED_BY_A_RATE_LIMIT: &str = r#"[scenario]
name = "coupled-by-a-rate-limit"

[[llm]]
name = "gpt"
latency = "200ms"

[[agent]]
name = "a"
llm = "gpt"
rate_limit = { rpm = 60, burst = 1 }
retry = { attempts = 3, backoff = "constant", base = "100ms", jitter = "none" }
deadline = "1500ms"
behavior = [{ otherwise = { answer = "done" } }]

[[traffic]]
kind = "script"
to = "a"
script = [{ at = "0s", message = "one" }, { at = "200ms", message = "two" }]

[[fault]]
name = "throttled"
kind = "llm.rate_limit"
target = "llm:gpt"
on_message = 1
retry_after = "100ms"
"#;

#[test]
fn a_retried_429_that_takes_another_conversations_rate_limit_token_is_a_knock_on() {
    let (report, text) = run_impact_json(COUPLED_BY_A_RATE_LIMIT);
    assert_eq!(report["impact"]["firings"][0]["conversation"], 0);
    let fault = &report["impact"]["faults"][0];
    assert_eq!(fault["changed_total"], 1, "{fault}");
    assert_eq!(
        fault["changed"][0]["conversation"], 1,
        "the conversation it never hit: {fault}"
    );
    assert_eq!(fault["changed"][0]["without"]["fate"], "answered");
    assert_eq!(fault["changed"][0]["with"]["fate"], "failed");
    assert_eq!(fault["deltas"]["knock_on"], 1);
    assert!(text.contains("1 of them beyond the conversations it hit"), "{text}");
}

fn run_impact_json(design: &str) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().expect("scratch");
    let file = dir.path().join("design.toml");
    std::fs::write(&file, design).expect("write");
    let file = file.to_str().expect("UTF-8");
    let json = common::agentsim_output(&["run", file, "--impact", "--json"]);
    assert!(common::status(&json) <= 1, "{}", common::stderr(&json));
    let text = common::stdout(&common::agentsim_output(&["run", file, "--impact"]));
    (serde_json::from_str(&common::stdout(&json)).expect("JSON"), text)
}

#[test]
fn a_fault_that_couples_conversations_through_a_shared_bulkhead_is_reported_as_a_knock_on() {
    let (report, text) = run_impact_json(COUPLED);
    let firing = &report["impact"]["firings"][0];
    assert_eq!(firing["conversation"], 0, "the hang hit conversation 0: {firing}");
    let fault = &report["impact"]["faults"][0];
    assert_eq!(fault["fault"], "hang");
    assert_eq!(fault["changed_total"], 2, "{fault}");
    assert_eq!(fault["deltas"]["transitions"]["answered → failed"], 2, "{fault}");
    assert_eq!(
        fault["deltas"]["knock_on"], 1,
        "conversation 1 failed only through the bulkhead: {fault}"
    );
    let changed: Vec<u64> = fault["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["conversation"].as_u64().unwrap())
        .collect();
    assert_eq!(changed, [0, 1]);
    for harmed in report["harmed"].as_array().unwrap() {
        assert_eq!(harmed["changed_by"], serde_json::json!(["hang"]), "{harmed}");
    }
    assert!(
        text.contains("impact         hang (llm.timeout, 1 firing): changed 2 conversation(s) (2 answered → failed); 1 of them beyond the conversations it hit"),
        "{text}"
    );
    assert!(text.contains("accounts for 2 of the 2 harmed"), "{text}");
}

#[test]
fn a_crash_with_conversations_in_hand_names_each_lost_one_and_without_it_they_are_answered() {
    let output = common::agentsim_output(&["run", "scenarios/support-desk.toml", "--impact", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&common::stdout(&output)).expect("JSON");
    let crash = report["impact"]["faults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "actor.crash")
        .expect("the crash is analysed");
    let lost: Vec<&serde_json::Value> = report["harmed"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["fate"] == "lost")
        .collect();
    assert!(!lost.is_empty());
    for harmed in &lost {
        let conv = &harmed["conversation"];
        assert_eq!(harmed["changed_by"], serde_json::json!([crash["fault"]]), "{harmed}");
        assert!(harmed["cause"].as_str().unwrap().contains("injected crash"), "{harmed}");
        let change = crash["changed"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| &c["conversation"] == conv)
            .unwrap_or_else(|| panic!("conversation {conv} is among those the crash changed: {crash}"));
        assert_eq!(change["with"]["fate"], "lost");
        assert_eq!(change["without"]["fate"], "answered", "{change}");
        assert_eq!(
            change["with"]["effects"], harmed["effects"],
            "the side effects it left behind"
        );
    }
    let with_effects = lost
        .iter()
        .filter(|h| h["effects"].as_object().is_some_and(|e| !e.is_empty()))
        .count();
    let text = common::stdout(&common::agentsim_output(&[
        "run",
        "scenarios/support-desk.toml",
        "--impact",
    ]));
    assert!(
        text.contains(&format!(
            "{} lost; {with_effects} with side effects and no answer",
            lost.len()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("accounts for {} of the {} harmed", lost.len(), lost.len())),
        "{text}"
    );
}

#[test]
fn impact_with_a_live_model_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("scratch");
    let file = dir.path().join("live.toml");
    std::fs::write(
        &file,
        r#"[scenario]
name = "live"

[[llm]]
name = "gpt"
mode = "live"
model = "gpt-4o-mini"
base_url = "http://127.0.0.1:9/v1"
allow_insecure_http = true

[[agent]]
name = "a"
llm = "gpt"

[[traffic]]
kind = "script"
to = "a"
script = [{ at = "0s", message = "one" }]
"#,
    )
    .expect("write");
    let file = file.to_str().expect("UTF-8");
    for args in [
        vec!["run", file, "--impact"],
        vec!["sweep", file, "--seeds", "0..2", "--impact"],
    ] {
        let output = common::agentsim_output(&args);
        assert_eq!(common::status(&output), 2, "{args:?}");
        assert!(
            common::stderr(&output).contains("has a live or replayed model")
                && common::stderr(&output).contains("only mock models can answer"),
            "{}",
            common::stderr(&output)
        );
    }
}
