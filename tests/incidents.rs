//! The incidents in `scenarios/incidents/`: each trace imports to exactly the committed scenario
//! and cassette, replays, reproduces its incident, and its counterfactual prevents it.

mod common;

use std::path::Path;

use common::{agentsim_output, field, records, repo_root, status, stderr, stdout};

/// (folder, trace file) of each incident.
const INCIDENTS: [(&str, &str); 2] = [
    ("double-refund", "double-refund.otlp.json"),
    ("prompt-injection", "prompt-injection.otlp.jsonl"),
];

fn folder(name: &str) -> std::path::PathBuf {
    repo_root().join("scenarios/incidents").join(name)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn each_incident_trace_imports_to_the_committed_scenario_and_cassette() {
    for (name, trace) in INCIDENTS {
        let out = tempfile::tempdir().unwrap();
        let output = common::agentsim()
            .current_dir(folder(name))
            .args(["import", trace, "--out", out.path().to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(status(&output), 0, "{name}: {}", stderr(&output));
        assert_eq!(
            read(&out.path().join("scenario.toml")),
            read(&folder(name).join("imported.toml")),
            "{name}: imported.toml is what `agentsim import {trace}` writes"
        );
        assert_eq!(
            read(&out.path().join("cassette.jsonl")),
            read(&folder(name).join("cassette.jsonl")),
            "{name}: cassette.jsonl is what `agentsim import {trace}` writes"
        );
    }
}

#[test]
fn the_agentsim_incident_trace_is_agentsims_own_export_of_the_double_refund_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let otlp = dir.path().join("export.json");
    let output = agentsim_output(&["run", "scenarios/double-refund.toml", "--otlp", otlp.to_str().unwrap()]);
    assert_eq!(
        status(&output),
        1,
        "the incident breaks its invariant: {}",
        stderr(&output)
    );
    assert_eq!(
        read(&otlp),
        read(&folder("double-refund").join("double-refund.otlp.json")),
        "regenerate with: agentsim run scenarios/double-refund.toml --otlp \
         scenarios/incidents/double-refund/double-refund.otlp.json"
    );
}

#[test]
fn the_python_incident_trace_lacks_message_content_and_the_imported_scenario_says_so() {
    let imported = read(&folder("prompt-injection").join("imported.toml"));
    assert!(imported.contains("did not carry all message content"), "{imported}");
    assert!(imported.contains("[user message not recorded in the trace]"));
    let trace = read(&folder("prompt-injection").join("prompt-injection.otlp.jsonl"));
    assert!(trace.contains("openinference.span.kind"));
    assert!(
        !trace.contains("llm.output_messages"),
        "the model's answers are not in the trace"
    );
}

/// Runs a scenario with `--out`; returns its exit status, trace and report.
fn run(path: &Path) -> (i32, Vec<serde_json::Value>, serde_json::Value) {
    let out = tempfile::tempdir().unwrap();
    let output = agentsim_output(&[
        "run",
        path.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--json",
    ]);
    assert!(
        !stderr(&output).contains("cassette:"),
        "{}: the cassette was replayed exactly: {}",
        path.display(),
        stderr(&output)
    );
    let trace = std::fs::read(out.path().join("trace.jsonl")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    (status(&output), records(&trace), report)
}

fn invariant_passed(report: &serde_json::Value) -> bool {
    report["invariants"][0]["passed"]
        .as_bool()
        .expect("one invariant with `passed`")
}

fn invocations(trace: &[serde_json::Value], tool: &str) -> usize {
    trace
        .iter()
        .filter(|r| field(r, "to") == tool && field(r, "msg").starts_with("invoke "))
        .count()
}

#[test]
fn the_imported_incidents_replay_their_cassettes_exactly() {
    for (name, _) in INCIDENTS {
        let (code, trace, report) = run(&folder(name).join("imported.toml"));
        assert_eq!(code, 0, "{name}");
        assert_eq!(report["outcome"], "completed", "{name}");
        assert!(trace.iter().any(|r| field(r, "msg").starts_with("answer")), "{name}");
    }
}

#[test]
fn an_idempotent_refund_prevents_the_double_refund_that_the_reproduction_shows() {
    let (code, reproduced, report) = run(&folder("double-refund").join("reproduced.toml"));
    assert_eq!(code, 1);
    assert!(!invariant_passed(&report));
    assert_eq!(invocations(&reproduced, "tool:refund"), 2);
    // It breaks at the virtual time the original run broke, as the incident's README says.
    let (_, _, original) = run(Path::new("scenarios/double-refund.toml"));
    let first = |r: &serde_json::Value| r["invariants"][0]["first_violation"]["t_us"].clone();
    assert_eq!(first(&report), first(&original));
    assert_eq!(first(&report), 7_996_110, "the README says 7.996 s");

    let (code, fixed, report) = run(&folder("double-refund").join("counterfactual.toml"));
    assert_eq!(code, 0);
    assert!(invariant_passed(&report));
    // The same recorded model still retries the refund; the fix is that it moves no money.
    assert_eq!(invocations(&fixed, "tool:refund"), 2);
}

#[test]
fn a_tool_allow_list_prevents_the_account_deletion_that_the_reproduction_shows() {
    let (code, reproduced, report) = run(&folder("prompt-injection").join("reproduced.toml"));
    assert_eq!(code, 1);
    assert!(!invariant_passed(&report));
    assert_eq!(invocations(&reproduced, "tool:delete_account"), 1);

    let (code, fixed, report) = run(&folder("prompt-injection").join("counterfactual.toml"));
    assert_eq!(code, 0);
    assert!(invariant_passed(&report));
    assert_eq!(invocations(&fixed, "tool:delete_account"), 0);
    assert!(
        fixed
            .iter()
            .any(|r| field(r, "msg").contains("tool_calls=[?delete_account#1]")),
        "the model still asked for it, for a tool the agent no longer has"
    );
    assert_eq!(invocations(&fixed, "tool:fetch_ticket"), 1);
}

#[test]
fn a_replayed_incident_does_not_suggest_impact_which_needs_mock_models() {
    let file = folder("double-refund").join("reproduced.toml");
    let output = agentsim_output(&["run", file.to_str().unwrap()]);
    let summary = stdout(&output);
    let reached = summary
        .lines()
        .find(|l| l.trim_start().starts_with("reached"))
        .unwrap_or_else(|| panic!("a reached line: {summary}"));
    assert!(reached.ends_with("(where its data flowed)"), "{reached}");
    assert!(!summary.contains("--impact"), "{summary}");
    // The mock design it came from does suggest it, and --impact runs there.
    let mocked = agentsim_output(&["run", "scenarios/double-refund.toml"]);
    assert!(
        stdout(&mocked).contains("--impact says what it changed"),
        "{}",
        stdout(&mocked)
    );
}
