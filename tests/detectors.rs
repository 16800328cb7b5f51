//! The failure-mode detectors (after the MAST taxonomy) and the invariants over effects, answers,
//! taint and budgets: each on a run where it must fire and on one where it must not.

mod common;

use agentsim::observe::InvariantResult;
use agentsim::run::Flavor;
use common::*;

/// Agent `a` (tools `lookup` and, given to nobody, `admin`) with `rules`; `b` answers handoffs.
fn design(rules: &str, rest: &str) -> String {
    format!(
        r#"
[scenario]
name = "detectors"

[[llm]]
name = "gpt"
latency = "100ms"

[[agent]]
name = "a"
llm = "gpt"
tools = ["lookup"]
handoffs = ["b"]
max_turns = 10
behavior = {rules}

[[agent]]
name = "b"
llm = "gpt"
behavior = [{{ otherwise = {{ answer = "b: {{{{user}}}}" }} }}]

[[agent]]
name = "ops"
llm = "gpt"
tools = ["admin"]
behavior = [{{ otherwise = {{ answer = "ok" }} }}]

[[tool]]
name = "lookup"
latency = "50ms"
output = "record {{{{args.q}}}}"

[[tool]]
name = "admin"
latency = "50ms"
output = "done"
effect = "config_changed"

[[traffic]]
kind = "script"
to = "a"
script = [{{ at = "0s", message = "hello" }}]

{rest}
"#
    )
}

const LOOKUP_THEN_ANSWER: &str = r#"[
  { when = "turn == 1", then = { tool_call = "lookup", args = { q = "x" } } },
  { otherwise = { answer = "done: {{last_tool_output}}" } },
]"#;

fn invariant(text: &str) -> InvariantResult {
    let output = run_in_memory(&parse(text), 1, Flavor::CurrentThread);
    assert_eq!(output.report.invariants.len(), 1, "{text}");
    output.report.invariants[0].clone()
}

fn detect(name: &str) -> String {
    format!("[[invariant]]\nname = \"{name}\"\ndetect = \"{name}\"\n")
}

fn assert_fires(rules: &str, rest: &str, check: &str) {
    let result = invariant(&design(rules, &format!("{rest}\n{check}")));
    assert!(!result.passed, "expected a violation of {check}");
    let violation = result.first_violation.expect("a first violation");
    assert!(violation.seq > 0 && !violation.actor.is_empty(), "{violation:?}");
    assert!(result.violations >= 1);
}

fn assert_quiet(rules: &str, rest: &str, check: &str) {
    let result = invariant(&design(rules, &format!("{rest}\n{check}")));
    assert!(result.passed, "{check} fired: {:?}", result.first_violation);
    assert_eq!(result.violations, 0);
}

#[test]
fn step_repetition() {
    let looping = r#"[{ otherwise = { tool_call = "lookup", args = { q = "same" } } }]"#;
    let varied = r#"[
  { when = "turn < 5", then = { tool_call = "lookup", args = { q = "q{{turn}}" } } },
  { otherwise = { answer = "done" } },
]"#;
    assert_fires(looping, "", &detect("step_repetition"));
    assert_quiet(varied, "", &detect("step_repetition"));
}

#[test]
fn ignored_tool_error() {
    let fault = "[[fault]]\nkind = \"tool.error\"\ntarget = \"tool:lookup\"\non_message = 1\n";
    assert_fires(LOOKUP_THEN_ANSWER, fault, &detect("ignored_tool_error"));
    assert_quiet(LOOKUP_THEN_ANSWER, "", &detect("ignored_tool_error"));
    // Trying again after the error is not ignoring it.
    let retry = r#"[
  { when = "last_tool_output contains 'error'", then = { tool_call = "lookup", args = { q = "again" } } },
  { when = "turn == 1", then = { tool_call = "lookup", args = { q = "x" } } },
  { otherwise = { answer = "done" } },
]"#;
    assert_quiet(retry, fault, &detect("ignored_tool_error"));
}

#[test]
fn conversation_reset() {
    let rounds = r#"[
  { when = "turn < 5", then = { tool_call = "lookup", args = { q = "q{{turn}}" } } },
  { otherwise = { answer = "done" } },
]"#;
    // The agent's 7th message is the result of its third tool call: its memory resets there.
    let fault = "[[fault]]\nkind = \"memory.reset\"\ntarget = \"agent:a\"\non_message = 7\n";
    assert_fires(rounds, fault, &detect("conversation_reset"));
    assert_quiet(rounds, "", &detect("conversation_reset"));
}

#[test]
fn premature_termination() {
    let answers_at_once = r#"[{ otherwise = { answer = "I think it is fine." } }]"#;
    assert_fires(answers_at_once, "", &detect("premature_termination"));
    assert_quiet(LOOKUP_THEN_ANSWER, "", &detect("premature_termination"));
}

#[test]
fn unverified_answer() {
    let stale = "[[fault]]\nkind = \"tool.stale\"\ntarget = \"tool:lookup\"\non_message = 1\n";
    assert_fires(LOOKUP_THEN_ANSWER, stale, &detect("unverified_answer"));
    assert_quiet(LOOKUP_THEN_ANSWER, "", &detect("unverified_answer"));
    // A fault that corrupts nothing the answer is built on does not count.
    let slow = "[[fault]]\nkind = \"tool.slow\"\ntarget = \"tool:lookup\"\non_message = 1\n";
    assert_quiet(LOOKUP_THEN_ANSWER, slow, &detect("unverified_answer"));
}

#[test]
fn lost_handoff_context() {
    let hands_off = r#"[{ otherwise = { handoff = "b" } }]"#;
    let fault = "[[fault]]\nkind = \"handoff.drop_context\"\ntarget = \"agent:b\"\non_message = 1\n";
    assert_fires(hands_off, fault, &detect("lost_handoff_context"));
    assert_quiet(hands_off, "", &detect("lost_handoff_context"));
}

#[test]
fn disobeyed_role() {
    // The model calls `admin`, a tool of the ops agent, not of `a`.
    let fault = "[[fault]]\nkind = \"llm.hallucinated_tool\"\ntarget = \"llm:gpt\"\non_message = 1\ntool = \"admin\"\n";
    assert_fires(LOOKUP_THEN_ANSWER, fault, &detect("disobeyed_role"));
    assert_quiet(LOOKUP_THEN_ANSWER, "", &detect("disobeyed_role"));
    // An invented tool is refused by the framework: no role is broken.
    let invented = "[[fault]]\nkind = \"llm.hallucinated_tool\"\ntarget = \"llm:gpt\"\non_message = 1\n";
    assert_quiet(LOOKUP_THEN_ANSWER, invented, &detect("disobeyed_role"));
}

#[test]
fn never_counts_only_effects_that_descend_from_the_source() {
    let fault = "[[fault]]\nname = \"rogue\"\nkind = \"llm.hallucinated_tool\"\ntarget = \"llm:gpt\"\non_message = 1\ntool = \"admin\"\n";
    let tainted = "[[invariant]]\nname = \"no rogue change\"\nnever = { effect = \"config_changed\", tainted_by = \"fault:*\" }\n";
    assert_fires(LOOKUP_THEN_ANSWER, fault, tainted);
    let from_user =
        "[[invariant]]\nname = \"x\"\nnever = { effect = \"config_changed\", tainted_by = \"tool:lookup\" }\n";
    assert_quiet(LOOKUP_THEN_ANSWER, fault, from_user);
}

#[test]
fn answers_are_checked_for_personal_data_patterns_and_sources() {
    let leaky = r#"[{ otherwise = { answer = "card 4111 1111 1111 1111, mail bo@example.org" } }]"#;
    let pii = "[[invariant]]\nname = \"no card\"\nnever = { output_pii = [\"credit_card\"] }\n";
    let pattern = "[[invariant]]\nname = \"no mail\"\nnever = { output_matches = \"@example\\\\.org\" }\n";
    assert_fires(leaky, "", pii);
    assert_fires(leaky, "", pattern);
    assert_quiet(LOOKUP_THEN_ANSWER, "", pii);
    let from_tool = "[[invariant]]\nname = \"no tool text\"\nnever = { output_tainted_by = \"tool:lookup\" }\n";
    assert_fires(LOOKUP_THEN_ANSWER, "", from_tool);
    assert_quiet(leaky, "", from_tool);
}

#[test]
fn eventually_an_effect_and_budgets() {
    let effect = "[[invariant]]\nname = \"looked up\"\neventually = { effect = \"config_changed\", within = \"1m\" }\n";
    assert_fires(LOOKUP_THEN_ANSWER, "", effect);
    let budget = "[[invariant]]\nname = \"tokens\"\nbudget = { tokens = 5, per = \"conversation\" }\n";
    assert_fires(LOOKUP_THEN_ANSWER, "", budget);
    let roomy = "[[invariant]]\nname = \"tokens\"\nbudget = { tokens = 100000, per = \"run\" }\n";
    assert_quiet(LOOKUP_THEN_ANSWER, "", roomy);
}

#[test]
fn a_late_answer_breaks_its_deadline_when_the_deadline_passes_not_when_the_conversation_starts() {
    // Start at 0, model 100 ms, tool 50 ms, model 100 ms: answered at 250 ms.
    let late = "[[invariant]]\nname = \"fast\"\neventually = { answered = true, within = \"200ms\" }\n";
    let result = invariant(&design(LOOKUP_THEN_ANSWER, late));
    let violation = result.first_violation.expect("answered after the deadline");
    assert_eq!(violation.t_us, 200_000, "{violation:?}");
    assert!(
        violation
            .message
            .contains("answered 250ms after it started, later than 200ms"),
        "{violation:?}"
    );
    // Marked at the first event after the deadline: the second model reply, at 250 ms.
    let trace = run_in_memory(&parse(&design(LOOKUP_THEN_ANSWER, late)), 1, Flavor::CurrentThread).trace;
    let at = records(&trace)
        .into_iter()
        .find(|r| r["seq"].as_u64() == Some(violation.seq) && r["kind"] == "deliver")
        .expect("the violation's seq is a delivery");
    assert_eq!(at["t_us"].as_u64(), Some(250_000), "{at}");
    let roomy = "[[invariant]]\nname = \"fast\"\neventually = { answered = true, within = \"300ms\" }\n";
    assert_quiet(LOOKUP_THEN_ANSWER, "", roomy);
}

#[test]
fn an_answer_that_never_comes_before_the_run_ends_breaks_its_deadline_at_the_last_event() {
    // The opening message is lost: nothing is left to happen long before the 1 h deadline.
    let lost = "[[fault]]\nkind = \"message.drop\"\ntarget = \"agent:a\"\non_message = 1\n\n\
                [[invariant]]\nname = \"answered in time\"\neventually = { answered = true, within = \"1h\" }\n";
    let output = run_in_memory(&parse(&design(LOOKUP_THEN_ANSWER, lost)), 1, Flavor::CurrentThread);
    let violation = output.report.invariants[0]
        .first_violation
        .clone()
        .expect("never answered");
    assert_eq!(violation.t_us, output.report.virtual_time_us, "{violation:?}");
    assert!(violation.message.ends_with("was never answered"), "{violation:?}");
}
