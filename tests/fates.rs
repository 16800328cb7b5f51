//! The fate of every conversation: answered, or — when no answer came — lost (the agent holding
//! it crashed or was restarted), orphaned (waiting for ever), or cut (the run stopped first); and
//! the harmed ones listed with the side effects they caused, in the report and the summary.

mod common;

use agentsim::run::Flavor;
use common::*;

/// One agent with a tool that moves money, then answers; conversations scripted at 0 s and 1 s.
fn desk(extra: &str) -> String {
    format!(
        r#"
[scenario]
name = "fates"
seed = 1

[[llm]]
name = "gpt"
latency = "100ms"

[[agent]]
name = "a"
llm = "gpt"
tools = ["pay"]
behavior = [
  {{ when = "turn == 1", then = {{ tool_call = "pay", args = {{ amount = 10 }} }} }},
  {{ otherwise = {{ answer = "paid" }} }},
]

[[tool]]
name = "pay"
latency = "50ms"
effect = "money_moved"

[[traffic]]
kind = "script"
to = "a"
script = [{{ at = "0s", message = "pay" }}, {{ at = "1s", message = "pay" }}]
{extra}
"#
    )
}

fn fates(report: &agentsim::report::RunReport) -> Vec<(u32, &'static str)> {
    report.harmed.iter().map(|h| (h.conversation, h.fate.name())).collect()
}

#[test]
fn a_crash_with_a_paid_conversation_in_hand_is_reported_as_lost_with_its_side_effect_and_the_crash() {
    // The third delivery to `a` is the tool result of conversation 0: the agent crashes with the
    // payment made and no answer given; conversation 1 comes later and is answered.
    let scenario = parse(&desk(
        r#"
[[fault]]
kind = "actor.crash"
target = "agent:a"
on_message = 3
"#,
    ));
    let report = run_in_memory(&scenario, 1, Flavor::CurrentThread).report;
    assert_eq!(fates(&report), [(0, "lost")]);
    let lost = &report.harmed[0];
    assert_eq!(lost.effects.get("money_moved"), Some(&1));
    let cause = lost.cause.as_deref().unwrap_or("");
    assert!(cause.starts_with("agent:a failed at seq"), "{cause}");
    assert!(cause.contains("injected crash"), "{cause}");
    assert_eq!(
        lost.fault.as_deref(),
        Some("actor.crash@agent:a"),
        "the fault that lost it"
    );
    assert_eq!(report.fates["lost"], 1);
    assert_eq!(report.fates["answered"], 1);
    assert_eq!(report.harmed_total, 1);
    let summary = report.summary();
    assert!(
        summary.contains("harmed         1 of 2 conversations: 1 lost; 1 with side effects and no answer; lost to actor.crash@agent:a (1)"),
        "{summary}"
    );
}

#[test]
fn an_opening_message_the_network_lost_leaves_its_conversation_orphaned() {
    let scenario = parse(&desk(
        r#"
[[fault]]
kind = "message.drop"
target = "agent:a"
on_message = 1
"#,
    ));
    let report = run_in_memory(&scenario, 1, Flavor::CurrentThread).report;
    assert_eq!(fates(&report), [(0, "orphaned")]);
    assert!(report.harmed[0].effects.is_empty());
    assert_eq!(report.harmed[0].cause, None);
}

#[test]
fn a_limit_that_stops_the_run_cuts_the_open_conversations_and_names_the_limit() {
    let text = desk("").replace("seed = 1\n", "seed = 1\nmax_events = 4\n");
    let report = run_in_memory(&parse(&text), 1, Flavor::CurrentThread).report;
    assert_eq!(fates(&report), [(0, "cut")]);
    let cause = report.harmed[0].cause.as_deref().unwrap_or("");
    assert!(cause.starts_with("limit_exceeded: max_events (4)"), "{cause}");
}

#[test]
fn a_clean_run_harms_no_one_and_lists_every_fate_with_zero() {
    let report = run_in_memory(&parse(&desk("")), 1, Flavor::CurrentThread).report;
    assert!(report.harmed.is_empty());
    assert_eq!(report.harmed_total, 0);
    assert_eq!(report.fates["answered"], 2);
    assert_eq!(report.fates.len(), 11, "{:?}", report.fates);
    assert!(!report.summary().contains("harmed"));
}

#[test]
fn support_desk_names_every_conversation_it_never_answered_as_harmed_and_why() {
    let scenario = load(&repo_root().join("scenarios/support-desk.toml"));
    let report = run_in_memory(&scenario, scenario.seed, Flavor::CurrentThread).report;
    let unanswered: Vec<u32> = report
        .answered
        .iter()
        .enumerate()
        .filter(|(_, answered)| !**answered)
        .map(|(conv, _)| conv as u32)
        .collect();
    let harmed: Vec<u32> = report.harmed.iter().map(|h| h.conversation).collect();
    assert_eq!(harmed, unanswered);
    assert_eq!(report.fates["lost"], report.conversations.unanswered);
    for h in &report.harmed {
        let cause = h.cause.as_deref().unwrap_or("");
        assert!(
            cause.starts_with("agent:billing failed") || cause.starts_with("agent:triage was restarted"),
            "conversation {}: {cause}",
            h.conversation
        );
    }
}

#[test]
fn the_html_report_leads_with_the_harmed_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = agentsim_output(&["run", "scenarios/support-desk.toml", "--out", out.to_str().unwrap()]);
    assert_eq!(status(&output), 1, "{}", stderr(&output));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let summary = html.find("id=\"summary\"").unwrap();
    let harmed = html.find("Harmed conversations").expect("a harmed list");
    let timeline = html.find("id=\"timeline\"").unwrap_or(html.len());
    assert!(summary < harmed && harmed < timeline);
    // The story says what report.json says.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let harmed = report["harmed_total"].as_u64().unwrap();
    let lost = report["harmed"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["fate"] == "lost")
        .count();
    assert!(harmed > 0 && lost > 0, "support-desk loses conversations: {report:#}");
    let story = format!("{harmed} conversation(s) harmed</b>: {lost} lost");
    assert!(html.contains(&story), "the story names the harm: {story}");
}

#[test]
fn a_sweep_reports_each_fate_as_a_share_of_all_conversations_with_an_interval() {
    let output = agentsim_output(&["sweep", "scenarios/support-desk.toml", "--seeds", "0..10", "--json"]);
    let summary: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("sweep --json");
    let conversations = summary["conversations"].as_u64().unwrap();
    let fates = summary["fates"].as_array().unwrap();
    let total: u64 = fates.iter().map(|f| f["conversations"].as_u64().unwrap()).sum();
    assert_eq!(total, conversations);
    let lost = fates
        .iter()
        .find(|f| f["fate"] == "lost")
        .expect("support-desk loses conversations");
    let share = lost["share"].as_f64().unwrap();
    assert!(lost["ci_low"].as_f64().unwrap() < share && share < lost["ci_high"].as_f64().unwrap());
    let answer = summary["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "every customer gets an answer")
        .unwrap();
    assert!(answer["violations_mean"].as_f64().unwrap() > 1.0, "{answer}");
    // Every unanswered conversation was lost: the invariant's conversations are exactly those.
    assert_eq!(answer["conversations_broken"], lost["conversations"], "{answer}");
    assert_eq!(answer["conversation_share"], lost["share"]);
}

#[test]
fn an_invariant_counts_the_distinct_conversations_that_broke_it() {
    let scenario = load(&repo_root().join("scenarios/support-desk.toml"));
    let report = run_in_memory(&scenario, scenario.seed, Flavor::CurrentThread).report;
    let answer = report
        .invariants
        .iter()
        .find(|i| i.name == "every customer gets an answer")
        .unwrap();
    assert_eq!(answer.conversations_broken, report.harmed_total);
    assert!(report
        .invariants
        .iter()
        .filter(|i| i.passed)
        .all(|i| i.conversations_broken == 0));
}

#[test]
fn the_sweep_page_shows_the_fates_of_all_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("sweep.html");
    let output = agentsim_output(&[
        "sweep",
        "scenarios/support-desk.toml",
        "--seeds",
        "0..6",
        "--html",
        page.to_str().unwrap(),
    ]);
    assert_eq!(status(&output), 1, "{}", stderr(&output));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("<section id=\"fates\"><h2>Fates of the 300 conversations</h2>"),
        "no fates section"
    );
    assert!(html.contains("<tr class=\"fate\"><td>lost</td>"));
}

#[test]
fn a_conversation_its_user_abandoned_is_counted_once_in_the_report_as_in_the_summary() {
    let scenario = parse(&desk(
        r#"
[[fault]]
kind = "user.abandon"
target = "agent:a"
on_message = 1
"#,
    ));
    let report = run_in_memory(&scenario, 1, Flavor::CurrentThread).report;
    let c = &report.conversations;
    assert_eq!((c.started, c.answered, c.abandoned), (2, 1, 1), "{c:?}");
    let counted = c.answered + c.max_turns + c.failed + c.unanswered + c.abandoned + c.blocked + c.halted + c.escalated;
    assert_eq!(counted, c.started, "each conversation counted once: {c:?}");
    // Per conversation too: the abandoned one is not answered.
    assert_eq!(report.answered, [false, true]);
    let summary = report.summary();
    assert!(
        summary.contains("2 started, 1 answered, 0 hit max_turns, 0 failed, 0 unanswered, 1 abandoned"),
        "{summary}"
    );
}

#[test]
fn a_conversation_that_failed_breaks_eventually_answered_at_the_answer_that_ended_it() {
    // The third call to the model is conversation 1's first: it fails for good (401).
    let scenario = parse(&desk(
        r#"
[[fault]]
kind = "llm.auth_error"
target = "llm:gpt"
on_message = 3

[[invariant]]
name = "answered"
eventually = { answered = true }
"#,
    ));
    let output = run_in_memory(&scenario, 1, Flavor::CurrentThread);
    let first = output.report.invariants[0].first_violation.clone().expect("it broke");
    let trace = records(&output.trace);
    let ended = trace
        .iter()
        .find(|r| field(r, "msg").starts_with("answer conv=1 status=failed"))
        .expect("conversation 1 ended failed");
    assert_eq!(
        (first.seq, first.t_us),
        (ended["seq"].as_u64().unwrap(), ended["t_us"].as_u64().unwrap()),
        "{first:?}"
    );
    // Its fate says why: the error the conversation ended with.
    assert_eq!(fates(&output.report), [(1, "failed")]);
    let cause = output.report.harmed[0].cause.as_deref().unwrap_or("");
    assert!(cause.contains("401 invalid_api_key"), "{cause}");
}
