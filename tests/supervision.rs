//! Supervision: an injected `actor.crash` fails an actor's turn; its supervisor restarts it (or
//! its siblings, by strategy) with a new incarnation and fresh state, or gives up and escalates.
//!
//! The scenarios are small and inline: three agents `a`, `b`, `c` on one model with a fixed
//! latency, conversations scripted at exact virtual times, and crashes on exact deliveries.

mod common;

use agentsim::report::Outcome;
use agentsim::run::{Flavor, RunOutput};
use common::*;

/// Three agents that answer after one 100 ms model call.
const AGENTS: &str = r#"
[scenario]
name = "supervision"
seed = 1

[[llm]]
name = "gpt"
latency = "100ms"

[[agent]]
name = "a"
llm = "gpt"
behavior = [{ otherwise = { answer = "done" } }]

[[agent]]
name = "b"
llm = "gpt"
behavior = [{ otherwise = { answer = "done" } }]

[[agent]]
name = "c"
llm = "gpt"
behavior = [{ otherwise = { answer = "done" } }]
"#;

/// Two conversations for `b`, at 0 s and 1 s; `b` crashes on the first delivery it receives.
const CRASH_B_ON_FIRST_MESSAGE: &str = r#"
[[traffic]]
kind = "script"
to = "b"
script = [{ at = "0s", message = "hello" }, { at = "1s", message = "again" }]

[[fault]]
kind = "actor.crash"
target = "agent:b"
on_message = 1
"#;

/// A supervisor `team` over a, b, c (in that start order) with the given strategy.
fn team(strategy: &str) -> String {
    format!("\n[[supervisor]]\nname = \"team\"\nstrategy = \"{strategy}\"\nchildren = [\"a\", \"b\", \"c\"]\n")
}

fn run(text: &str) -> RunOutput {
    run_in_memory(&parse(text), 1, Flavor::CurrentThread)
}

/// `(actor, incarnation, supervisor)` of every restart, in order.
fn restarts(output: &RunOutput) -> Vec<(String, u32, String)> {
    output
        .report
        .restarts
        .iter()
        .map(|r| (r.actor.clone(), r.incarnation, r.supervisor.clone()))
        .collect()
}

fn restart(actor: &str, incarnation: u32, supervisor: &str) -> (String, u32, String) {
    (actor.to_owned(), incarnation, supervisor.to_owned())
}

fn trace_records_of_kind(output: &RunOutput, kind: &str) -> Vec<serde_json::Value> {
    records(&output.trace)
        .into_iter()
        .filter(|r| field(r, "kind") == kind)
        .collect()
}

#[test]
fn a_crashed_agent_is_restarted_by_its_supervisor_with_incarnation_1() {
    let output = run(&format!("{AGENTS}{}{CRASH_B_ON_FIRST_MESSAGE}", team("one_for_one")));

    assert_eq!(restarts(&output), [restart("agent:b", 1, "supervisor:team")]);
    let failure = &output.report.failures[..];
    assert_eq!(failure.len(), 1);
    assert_eq!(
        (failure[0].actor.as_str(), failure[0].incarnation),
        ("agent:b", 0),
        "incarnation 0 is the one that failed"
    );

    let traced = trace_records_of_kind(&output, "restart");
    assert_eq!(traced.len(), 1, "one restart record in the trace: {traced:?}");
    assert_eq!(field(&traced[0], "actor"), "agent:b");
    assert_eq!(traced[0]["incarnation"], 1);
    assert_eq!(field(&traced[0], "supervisor"), "supervisor:team");
    assert_eq!(
        traced[0]["t_us"], 0,
        "the restart happens at the virtual time of the crash"
    );
}

#[test]
fn a_restarted_agent_answers_the_conversations_that_come_after_the_crash() {
    let output = run(&format!("{AGENTS}{}{CRASH_B_ON_FIRST_MESSAGE}", team("one_for_one")));

    let answers: Vec<String> = records(&output.trace)
        .iter()
        .filter(|r| field(r, "msg").starts_with("answer "))
        .map(|r| field(r, "msg").to_owned())
        .collect();
    assert_eq!(answers, ["answer conv=1 status=answered text=\"done\""]);
    assert_eq!(output.report.conversations.answered, 1);
}

#[test]
fn one_for_one_restarts_only_the_failed_child() {
    let output = run(&format!("{AGENTS}{}{CRASH_B_ON_FIRST_MESSAGE}", team("one_for_one")));
    let actors: Vec<String> = restarts(&output).into_iter().map(|r| r.0).collect();
    assert_eq!(actors, ["agent:b"]);
}

#[test]
fn one_for_all_restarts_every_child_of_the_supervisor() {
    let output = run(&format!("{AGENTS}{}{CRASH_B_ON_FIRST_MESSAGE}", team("one_for_all")));
    assert_eq!(
        restarts(&output),
        [
            restart("agent:a", 1, "supervisor:team"),
            restart("agent:b", 1, "supervisor:team"),
            restart("agent:c", 1, "supervisor:team"),
        ],
        "every child of team, and nothing outside it (llm:gpt is under the root)"
    );
}

#[test]
fn rest_for_one_restarts_the_failed_child_and_the_children_started_after_it() {
    let output = run(&format!("{AGENTS}{}{CRASH_B_ON_FIRST_MESSAGE}", team("rest_for_one")));
    assert_eq!(
        restarts(&output),
        [
            restart("agent:b", 1, "supervisor:team"),
            restart("agent:c", 1, "supervisor:team")
        ],
        "b failed; c started after b; a started before b and keeps running"
    );
}

#[test]
fn a_root_supervisor_with_max_restarts_0_escalates_and_the_run_ends_escalated() {
    let root = "\n[[supervisor]]\nname = \"root\"\nmax_restarts = 0\nchildren = [\"a\", \"b\", \"c\"]\n";
    let output = run(&format!("{AGENTS}{root}{CRASH_B_ON_FIRST_MESSAGE}"));

    assert_eq!(output.report.outcome, Outcome::Escalated);
    let detail = output.report.outcome_detail.clone().unwrap_or_default();
    assert!(
        detail.contains("agent:b"),
        "the outcome should name the actor that failed: {detail:?}"
    );
    assert!(
        output.report.restarts.is_empty(),
        "nothing is restarted: {:?}",
        output.report.restarts
    );
    let end = records(&output.trace).pop().unwrap();
    assert_eq!((field(&end, "kind"), field(&end, "outcome")), ("end", "escalated"));
    assert_eq!(
        end["t_us"], 0,
        "the run stops at the crash; the conversation at 1s never starts"
    );
}

#[test]
fn a_child_supervisor_that_gives_up_escalates_to_the_root_which_restarts_its_whole_subtree() {
    let team = "\n[[supervisor]]\nname = \"team\"\nmax_restarts = 0\nchildren = [\"a\", \"b\", \"c\"]\n";
    let output = run(&format!("{AGENTS}{team}{CRASH_B_ON_FIRST_MESSAGE}"));

    assert_ne!(
        output.report.outcome,
        Outcome::Escalated,
        "the root still had restarts to spend"
    );
    assert_eq!(
        trace_records_of_kind(&output, "escalate").len(),
        1,
        "team escalates once"
    );
    assert_eq!(
        restarts(&output),
        [
            restart("supervisor:team", 1, "supervisor:root"),
            restart("agent:a", 1, "supervisor:team"),
            restart("agent:b", 1, "supervisor:team"),
            restart("agent:c", 1, "supervisor:team"),
        ]
    );
}

/// A root allowing one restart per second, over `b`, which crashes on its first two deliveries:
/// conversations at 0 s and at `second`.
fn two_crashes(second: &str) -> String {
    format!(
        r#"{AGENTS}
[[supervisor]]
name = "root"
max_restarts = 1
within = "1s"
children = ["a", "b", "c"]

[[traffic]]
kind = "script"
to = "b"
script = [{{ at = "0s", message = "first" }}, {{ at = "{second}", message = "second" }}]

[[fault]]
kind = "actor.crash"
target = "agent:b"
probability = 1.0
count = 2
"#
    )
}

#[test]
fn crashes_further_apart_than_the_restart_window_are_each_restarted() {
    let output = run(&two_crashes("2s"));
    assert_eq!(output.report.faults.len(), 2);
    assert_eq!(
        restarts(&output),
        [
            restart("agent:b", 1, "supervisor:root"),
            restart("agent:b", 2, "supervisor:root")
        ]
    );
    assert_ne!(output.report.outcome, Outcome::Escalated);
}

#[test]
fn more_crashes_than_max_restarts_within_the_window_escalate() {
    let output = run(&two_crashes("500ms"));
    assert_eq!(output.report.faults.len(), 2);
    assert_eq!(
        restarts(&output),
        [restart("agent:b", 1, "supervisor:root")],
        "only the first crash is restarted"
    );
    assert_eq!(output.report.outcome, Outcome::Escalated);
}

#[test]
fn a_crash_loses_the_conversations_the_agent_was_holding() {
    // b takes conversation 0 at 0 s and waits 100 ms for its model; conversation 1 arrives at
    // 10 ms and b crashes on it. The model's reply for conversation 0 reaches a fresh b that
    // knows nothing of it. Conversation 2, at 1 s, is answered.
    let text = format!(
        r#"{AGENTS}{}
[[traffic]]
kind = "script"
to = "b"
script = [{{ at = "0s", message = "one" }}, {{ at = "10ms", message = "two" }}, {{ at = "1s", message = "three" }}]

[[fault]]
kind = "actor.crash"
target = "agent:b"
on_message = 2
"#,
        team("one_for_one")
    );
    let output = run(&text);

    assert_eq!(output.report.outcome, Outcome::Stalled);
    let conversations = output.report.conversations;
    assert_eq!(
        (conversations.started, conversations.answered, conversations.unanswered),
        (3, 1, 2)
    );
    let answered: Vec<String> = records(&output.trace)
        .iter()
        .filter(|r| field(r, "msg").starts_with("answer "))
        .map(|r| field(r, "msg").split(' ').nth(1).unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        answered,
        ["conv=2"],
        "the conversation b held when it crashed is never answered"
    );
    let late_reply = records(&output.trace)
        .into_iter()
        .any(|r| field(&r, "to") == "agent:b" && field(&r, "msg").starts_with("llm_reply conv=0"));
    assert!(
        late_reply,
        "the model's reply for conversation 0 is still delivered, to the new incarnation"
    );
}

#[test]
fn supervision_gives_the_same_trace_on_both_runtime_flavours() {
    let scenarios = [
        format!("{AGENTS}{}{CRASH_B_ON_FIRST_MESSAGE}", team("one_for_all")),
        format!("{AGENTS}{}{CRASH_B_ON_FIRST_MESSAGE}", team("rest_for_one")),
        two_crashes("2s"),
        two_crashes("500ms"),
    ];
    for text in &scenarios {
        let scenario = parse(text);
        let current = run_in_memory(&scenario, 1, Flavor::CurrentThread);
        let multi = run_in_memory(&scenario, 1, Flavor::MultiThread);
        if let Some(divergence) = agentsim::trace::reader::first_divergence(&current.trace, &multi.trace) {
            panic!("multi_thread diverged from current_thread:\n{divergence}\nscenario:\n{text}");
        }
    }
}

/// A planner that delegates to one worker, which crashes on the task; `extra` goes into the
/// planner's table (a delegation timeout).
fn delegating_planner(extra: &str) -> String {
    format!(
        r#"
[scenario]
name = "delegation-timeout"
seed = 1

[[llm]]
name = "gpt"
latency = "100ms"

[[agent]]
name = "planner"
llm = "gpt"
delegates = ["worker"]
{extra}
behavior = [
  {{ when = "delegations == 0", then = {{ delegate = ["worker"], task = "look it up" }} }},
  {{ otherwise = {{ answer = "{{{{results}}}}" }} }},
]

[[agent]]
name = "worker"
llm = "gpt"
behavior = [{{ otherwise = {{ answer = "found it" }} }}]

[[supervisor]]
name = "root"
children = ["planner", "worker"]

[[traffic]]
kind = "script"
to = "planner"
script = [{{ at = "0s", message = "find it" }}]

[[fault]]
kind = "actor.crash"
target = "agent:worker"
on_message = 1
"#
    )
}

#[test]
fn a_delegation_timeout_sends_the_task_again_at_exactly_its_limit_and_the_restarted_delegate_answers() {
    // Without a timeout, the planner waits for ever for the crashed worker's answer.
    let stalled = run_in_memory(&parse(&delegating_planner("")), 1, Flavor::CurrentThread);
    assert_eq!(stalled.report.outcome, Outcome::Stalled);

    let output = run_in_memory(
        &parse(&delegating_planner(
            "delegation_timeout = \"10s\"\ndelegation_retries = 1",
        )),
        1,
        Flavor::CurrentThread,
    );
    assert_eq!(output.report.outcome, Outcome::Completed);
    let records = records(&output.trace);
    let at = |prefix: &str| -> Vec<u64> {
        records
            .iter()
            .filter(|r| field(r, "msg").starts_with(prefix))
            .map(|r| r["t_us"].as_u64().unwrap())
            .collect()
    };
    // The planner delegates after its 100 ms model call; the worker crashes on the task.
    assert_eq!(
        at("delegate conv=0"),
        vec![100_000, 10_100_000],
        "sent at 100 ms and again at the timeout"
    );
    assert_eq!(
        at("delegation_timeout conv=0 delegate=worker attempt=1"),
        vec![10_100_000]
    );
    // The restarted worker answers after its own 100 ms call; the planner answers 100 ms later.
    assert_eq!(at("delegate_result conv=0"), vec![10_200_000]);
    assert_eq!(at("answer conv=0"), vec![10_300_000]);
    assert_eq!(output.report.conversations.answered, 1);
}

#[test]
fn a_delegation_that_times_out_for_good_gives_the_model_an_error_and_a_late_answer_is_dropped() {
    let output = run_in_memory(
        &parse(
            &delegating_planner("delegation_timeout = \"10s\"")
                .replace(
                    "[[fault]]\nkind = \"actor.crash\"\ntarget = \"agent:worker\"\non_message = 1\n",
                    "",
                )
                .replace("name = \"worker\"\nllm = \"gpt\"", "name = \"worker\"\nllm = \"slow\"")
                .replace(
                    "[[agent]]\nname = \"planner\"",
                    "[[llm]]\nname = \"slow\"\nlatency = \"30s\"\n\n[[agent]]\nname = \"planner\"",
                ),
        ),
        1,
        Flavor::CurrentThread,
    );
    let records = records(&output.trace);
    let answer = records
        .iter()
        .find(|r| field(r, "msg").starts_with("answer conv=0"))
        .expect("the planner answers");
    assert_eq!(answer["t_us"], 10_200_000, "the timeout at 10.1 s, then one model call");
    assert!(
        field(answer, "msg").contains("error: agent worker did not answer within 10s (1 attempt(s))"),
        "{}",
        field(answer, "msg")
    );
    // The worker's answer comes at 30.1 s, to a step that has moved on: dropped.
    let late = records
        .iter()
        .find(|r| field(r, "msg").starts_with("delegate_result conv=0"))
        .expect("the late answer is delivered");
    assert_eq!(late["t_us"], 30_100_000);
    let answers = records
        .iter()
        .filter(|r| field(r, "msg").starts_with("answer conv=0"))
        .count();
    assert_eq!(answers, 1, "the planner does not answer twice");
    assert_eq!(
        output.report.stale_answers.get("delegate_result"),
        Some(&1),
        "the report counts the late answer as stale"
    );
}

/// Triage hands every conversation to billing (after its 100 ms model call); billing crashes on
/// the first handoff it gets and is restarted at once, with nothing.
fn handing_off_triage(extra: &str) -> String {
    format!(
        r#"
[scenario]
name = "handoff-timeout"
seed = 1

[[llm]]
name = "gpt"
latency = "100ms"

[[agent]]
name = "triage"
llm = "gpt"
handoffs = ["billing"]
{extra}
behavior = [{{ otherwise = {{ handoff = "billing" }} }}]

[[agent]]
name = "billing"
llm = "gpt"
behavior = [{{ otherwise = {{ answer = "refund sent" }} }}]

[[supervisor]]
name = "root"
children = ["triage", "billing"]

[[traffic]]
kind = "script"
to = "triage"
script = [{{ at = "0s", message = "refund me" }}]

[[fault]]
kind = "actor.crash"
target = "agent:billing"
on_message = 1
"#
    )
}

#[test]
fn a_handoff_timeout_hands_the_conversation_off_again_at_exactly_its_limit() {
    // Without a timeout the handed-off conversation is lost with billing's state.
    let lost = run_in_memory(&parse(&handing_off_triage("")), 1, Flavor::CurrentThread);
    assert_eq!(lost.report.conversations.answered, 0);

    let output = run_in_memory(
        &parse(&handing_off_triage("handoff_timeout = \"10s\"\nhandoff_retries = 1")),
        1,
        Flavor::CurrentThread,
    );
    let records = records(&output.trace);
    let at = |prefix: &str| -> Vec<u64> {
        records
            .iter()
            .filter(|r| field(r, "msg").starts_with(prefix))
            .map(|r| r["t_us"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(at("handoff conv=0 from=triage"), vec![100_000, 10_100_000]);
    assert_eq!(at("handoff_timeout conv=0 to=billing attempt=1"), vec![10_100_000]);
    // The restarted billing answers after its 100 ms call and tells triage it is done.
    assert_eq!(at("answer conv=0 status=answered"), vec![10_200_000]);
    assert_eq!(at("handoff_done conv=0 from=billing"), vec![10_200_000]);
    assert_eq!(output.report.conversations.answered, 1);

    // Without retries, triage fails the conversation at the timeout.
    let output = run_in_memory(
        &parse(&handing_off_triage("handoff_timeout = \"10s\"")),
        1,
        Flavor::CurrentThread,
    );
    let failed = common::records(&output.trace);
    let failed = failed
        .iter()
        .find(|r| field(r, "msg").starts_with("answer conv=0"))
        .expect("triage answers");
    assert_eq!(failed["t_us"], 10_100_000);
    assert!(
        field(failed, "msg").contains("error: agent billing did not finish the conversation within 10s"),
        "{}",
        field(failed, "msg")
    );
}
