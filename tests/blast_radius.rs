//! Taint and blast radius: labels travel through handoffs and into side effects and answers;
//! a guardrail that stops a fault shows in the report; and the three example scenarios of
//! guardrails (prompt injection, PII leak, runaway cost) hold their stories, through the binary.

mod common;

use agentsim::run::Flavor;
use common::*;
use serde_json::Value;

/// Runs a scenario file through the binary with `--json`; returns the report.
fn report_of(file: &str) -> Value {
    let output = agentsim_output(&["run", file, "--json"]);
    let code = status(&output);
    assert!(code == 0 || code == 1, "{file}: exit {code}: {}", stderr(&output));
    serde_json::from_str(&stdout(&output)).unwrap_or_else(|e| panic!("{file}: --json is not JSON: {e}"))
}

fn source<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["blast_radius"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["source"] == name)
        .unwrap_or_else(|| panic!("no blast radius for {name}: {:#}", report["blast_radius"]))
}

fn invariant<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no invariant {name}"))
}

fn strings(value: &Value) -> Vec<&str> {
    value.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect()
}

#[test]
fn a_poisoned_tool_output_is_followed_across_two_handoffs_into_the_answer() {
    let text = r#"
[scenario]
name = "two-handoffs"

[[llm]]
name = "gpt"
latency = "100ms"

[[agent]]
name = "a"
llm = "gpt"
tools = ["fetch"]
handoffs = ["b"]
behavior = [
  { when = "turn == 1", then = { tool_call = "fetch", args = { q = "x" } } },
  { otherwise = { handoff = "b" } },
]

[[agent]]
name = "b"
llm = "gpt"
handoffs = ["c"]
behavior = [{ otherwise = { handoff = "c" } }]

[[agent]]
name = "c"
llm = "gpt"
behavior = [{ otherwise = { answer = "summary" } }]

[[agent]]
name = "bystander"
llm = "gpt"
behavior = [{ otherwise = { answer = "hi" } }]

[[tool]]
name = "fetch"
latency = "50ms"
output = "page"

[[traffic]]
kind = "script"
to = "a"
script = [{ at = "0s", message = "go" }]

[[traffic]]
kind = "script"
to = "bystander"
script = [{ at = "0s", message = "hello" }]

[[fault]]
name = "poison"
kind = "tool.injection"
target = "tool:fetch"
on_message = 1
"#;
    let output = run_in_memory(&parse(text), 1, Flavor::CurrentThread);
    let report = serde_json::to_value(&output.report).unwrap();
    let poison = source(&report, "fault:poison");
    assert_eq!(poison["kind"], "fault");
    let actors = strings(&poison["actors"]);
    for actor in ["tool:fetch", "agent:a", "agent:b", "agent:c", "user"] {
        assert!(actors.contains(&actor), "{actor} not reached: {actors:?}");
    }
    assert!(
        !actors.contains(&"agent:bystander"),
        "the other conversation is untouched: {actors:?}"
    );
    assert_eq!(
        poison["outputs_total"], 1,
        "one answer descends from the poisoned output"
    );
    assert_eq!(poison["outputs"][0]["conversation"], 0);
    assert!(poison["spread_us"].as_u64().unwrap() > 0);
    // The order of first reach follows the flow.
    let position = |a: &str| actors.iter().position(|x| *x == a).unwrap();
    assert!(position("agent:a") < position("agent:b") && position("agent:b") < position("agent:c"));
    let fetch = source(&report, "tool:fetch");
    assert_eq!(fetch["kind"], "untrusted");
}

#[test]
fn prompt_injection_reaches_the_transfer_tool_and_the_guardrail_stops_it() {
    let open = report_of("scenarios/prompt-injection.toml");
    let guarded = report_of("scenarios/prompt-injection-guarded.toml");

    let open_fault = source(&open, "fault:poisoned-email");
    assert!(strings(&open_fault["actors"]).contains(&"tool:transfer"));
    assert!(open_fault["side_effects_total"].as_u64().unwrap() > 0);
    assert_eq!(open_fault["side_effects"][0]["effect"], "money_moved");
    assert!(open_fault["stopped_by"].as_array().unwrap().is_empty());
    assert_eq!(
        invariant(&open, "no money moves on an injected instruction")["passed"],
        false
    );

    let fired = open["faults"].as_array().unwrap().len();
    assert!(fired > 0);
    assert_eq!(
        guarded["faults"].as_array().unwrap().len(),
        fired,
        "the same faults fire in both"
    );
    let guarded_fault = source(&guarded, "fault:poisoned-email");
    let actors = strings(&guarded_fault["actors"]);
    assert!(
        !actors.contains(&"tool:transfer") && !actors.contains(&"agent:inbox-assistant"),
        "{actors:?}"
    );
    assert_eq!(guarded_fault["side_effects_total"], 0);
    assert_eq!(guarded_fault["outputs_total"], 0);
    assert_eq!(guarded_fault["stopped_by"][0]["guardrail"], "injection-filter");
    assert_eq!(
        guarded_fault["stopped_by"][0]["times"].as_u64().unwrap() as usize,
        fired
    );
    for i in guarded["invariants"].as_array().unwrap() {
        assert_eq!(i["passed"], true, "{i}");
    }
    // The legitimate payments still happen.
    assert!(guarded["effects"]["money_moved"].as_u64().unwrap() > 0);
    let g = &guarded["guardrails"][0];
    assert_eq!(g["verdicts"]["block"].as_u64().unwrap() as usize, fired);
}

#[test]
fn pii_leak_counts_exactly_the_answers_the_guardrail_missed() {
    let report = report_of("scenarios/pii-leak.toml");
    let guardrail = &report["guardrails"][0];
    let missed = guardrail["false_negatives"].as_u64().unwrap();
    let leaks = invariant(&report, "no card number reaches a customer");
    assert!(missed > 0, "the scenario's miss rate lets some through");
    assert_eq!(leaks["passed"], false);
    assert_eq!(leaks["violations"], missed, "one violation per missed card number");
    assert_eq!(
        guardrail["verdicts"]["redact"].as_u64().unwrap() + missed,
        guardrail["checks"].as_u64().unwrap()
    );
    assert_eq!(invariant(&report, "every customer gets an answer")["passed"], true);
}

#[test]
fn runaway_cost_is_stopped_by_the_loop_detector_early_and_by_the_budget_at_its_limit() {
    let report = report_of("scenarios/runaway-cost.toml");
    let stats = |name: &str| {
        report["guardrails"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(stats("loop-detector")["verdicts"]["halt"], 1);
    assert_eq!(stats("conversation-budget")["verdicts"]["block"], 1);
    assert_eq!(report["conversations"]["halted"], 1);
    assert_eq!(report["conversations"]["blocked"], 1);
    // The budget holds before the spend: no conversation goes past a cent.
    assert_eq!(
        invariant(&report, "no conversation costs more than a cent")["passed"],
        true
    );
    // The loop detector stopped its agent after 4 model calls, the budget let the other run on.
    let loop_checks = stats("loop-detector")["checks"].as_u64().unwrap();
    let budget_checks = stats("conversation-budget")["checks"].as_u64().unwrap();
    assert_eq!(loop_checks, 4);
    assert!(
        budget_checks > loop_checks + 2,
        "{budget_checks} model calls under the budget"
    );
    assert_eq!(
        invariant(&report, "no step repetition")["violations"],
        2,
        "both loops are flagged"
    );
}
