//! `agentsim sweep`: many seeds in parallel, summarised; driven through the real binary.

mod common;

use agentsim::run::Flavor;
use common::*;
use serde_json::Value;

fn sweep_json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["sweep"];
    all.extend_from_slice(args);
    all.push("--json");
    let output = agentsim_output(&all);
    let summary = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (status(&output), summary)
}

#[test]
fn the_json_summary_has_pass_rates_with_intervals_and_the_failing_seeds() {
    let (code, summary) = sweep_json(&["scenarios/support-desk.toml", "--seeds", "0..30"]);
    assert_eq!(code, 1, "support-desk loses conversations on some seeds");
    assert_eq!(summary["runs"], 30);
    for key in [
        "invariants",
        "failing_seeds",
        "fault_coverage",
        "digests_checked",
        "outcomes",
        "makespan_us",
    ] {
        assert!(!summary[key].is_null(), "missing {key}");
    }
    for invariant in summary["invariants"].as_array().unwrap() {
        let (rate, low, high) = (
            invariant["pass_rate"].as_f64().unwrap(),
            invariant["ci_low"].as_f64().unwrap(),
            invariant["ci_high"].as_f64().unwrap(),
        );
        assert!(low <= rate && rate <= high, "{invariant}");
    }
    let failing = summary["failing_seeds"].as_array().unwrap();
    assert!(!failing.is_empty());
    // The list is capped; the total says how many it left out.
    let total = summary["failing_seeds_total"].as_u64().unwrap();
    assert_eq!(total, 30 - summary["passed_runs"].as_u64().unwrap());
    assert!(total > 20, "enough failing seeds to hit the cap: {total}");
    assert_eq!(failing.len(), 20);
    for invariant in summary["invariants"].as_array().unwrap() {
        let broke = invariant["runs"].as_u64().unwrap() - invariant["passed"].as_u64().unwrap();
        assert_eq!(invariant["failing_seeds_total"], broke, "{invariant}");
        assert_eq!(
            invariant["failing_seeds"].as_array().unwrap().len() as u64,
            broke.min(10)
        );
    }
    assert!(failing[0]["replay"]
        .as_str()
        .unwrap()
        .starts_with("agentsim run scenarios/support-desk.toml --seed "));
}

#[test]
fn pass_rates_agree_with_running_each_seed_alone() {
    let (_, summary) = sweep_json(&["scenarios/support-desk.toml", "--seeds", "5..15"]);
    let scenario = load(&repo_root().join("scenarios/support-desk.toml"));
    let answered = (5..15)
        .filter(|seed| run_in_memory(&scenario, *seed, Flavor::CurrentThread).report.invariants[2].passed)
        .count() as u64;
    let invariant = &summary["invariants"][2];
    assert_eq!(invariant["name"], "every customer gets an answer");
    assert_eq!(invariant["passed"], answered);
    assert_eq!(invariant["pass_rate"].as_f64().unwrap(), answered as f64 / 10.0);
}

#[test]
fn the_summary_does_not_depend_on_the_number_of_jobs() {
    let one = agentsim_output(&[
        "sweep",
        "scenarios/research-pipeline.toml",
        "--seeds",
        "12",
        "--jobs",
        "1",
        "--json",
    ]);
    let two = agentsim_output(&[
        "sweep",
        "scenarios/research-pipeline.toml",
        "--seeds",
        "12",
        "--jobs",
        "2",
        "--json",
    ]);
    assert_eq!(stdout(&one), stdout(&two));
}

#[test]
fn a_sweep_where_every_invariant_holds_exits_0_and_min_pass_rate_relaxes_the_gate() {
    let (code, summary) = sweep_json(&["scenarios/double-refund-idempotent.toml", "--seeds", "10"]);
    assert_eq!(code, 0, "{summary}");
    let (code, _) = sweep_json(&["scenarios/support-desk.toml", "--seeds", "10", "--min-pass-rate", "0"]);
    assert_eq!(code, 0);
}

#[test]
fn recheck_reruns_a_fraction_of_seeds_in_fresh_processes() {
    let (_, summary) = sweep_json(&["scenarios/coding-agent.toml", "--seeds", "0..10", "--recheck", "0.2"]);
    assert_eq!(summary["digests_checked"], 2, "a fifth of 10 seeds: every 5th");
}

#[test]
fn fault_coverage_counts_runs_and_flags_enabled_faults_that_never_fired() {
    let (_, summary) = sweep_json(&["scenarios/fallback-outage.toml", "--seeds", "3"]);
    let coverage = summary["fault_coverage"].as_array().unwrap();
    assert_eq!(coverage[0]["kind"], "llm.overloaded");
    assert_eq!(coverage[0]["runs"], 3);
    // A fault that can never fire (a window past the end of the run) is flagged.
    let text = std::fs::read_to_string(repo_root().join("scenarios/fallback-outage.toml")).unwrap();
    let never = text.replace("between = [\"20s\", \"80s\"]", "between = [\"20h\", \"21h\"]");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("never.toml");
    std::fs::write(&path, never).unwrap();
    let (_, summary) = sweep_json(&[path.to_str().unwrap(), "--seeds", "3"]);
    assert_eq!(summary["faults_never_fired"][0], "llm.overloaded");
}

#[test]
fn junit_has_one_test_case_per_invariant_with_replay_commands_in_failures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sweep.xml");
    let output = agentsim_output(&[
        "sweep",
        "scenarios/support-desk.toml",
        "--seeds",
        "8",
        "--junit",
        path.to_str().unwrap(),
    ]);
    assert_eq!(status(&output), 1);
    let xml = std::fs::read_to_string(&path).unwrap();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>"));
    assert!(xml.contains("<testsuite name=\"support-desk\" tests=\"4\""));
    assert_eq!(xml.matches("<testcase ").count(), 4);
    assert!(xml.contains("name=\"every customer gets an answer\">\n      <failure message="));
    assert!(xml.contains("agentsim run scenarios/support-desk.toml --seed "));
    assert_eq!(xml.matches("<testcase").count(), xml.matches("</testcase>").count());
}

#[test]
fn bad_seed_ranges_are_usage_errors() {
    for seeds in ["10..5", "x", "3..", ""] {
        let output = agentsim_output(&["sweep", "scenarios/support-desk.toml", "--seeds", seeds]);
        assert_eq!(status(&output), 2, "--seeds {seeds:?}");
        assert!(stderr(&output).contains("--seeds"), "{}", stderr(&output));
    }
}

#[test]
fn a_seed_range_too_large_for_one_process_is_refused_before_any_work() {
    let output = agentsim_output(&[
        "sweep",
        "scenarios/double-refund.toml",
        "--seeds",
        "18446744073709551615",
    ]);
    assert_eq!(status(&output), 2);
    let text = stderr(&output);
    assert!(
        text.contains("at most 10000000 seeds") && text.contains("--shard"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");

    // A shard of a huge range lists only its own seeds: every Nth from the I-th.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shard");
    let output = agentsim_output(&[
        "sweep",
        "scenarios/double-refund.toml",
        "--seeds",
        "0..1000000000000",
        "--shard",
        "3/100000000000",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(status(&output) <= 1, "{}", stderr(&output));
    let shard: Value =
        serde_json::from_slice(&std::fs::read(out.join("shard-3-of-100000000000.json")).unwrap()).unwrap();
    let seeds: Vec<u64> = shard["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seed"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (0..10).map(|k| 3 + k * 100_000_000_000).collect();
    assert_eq!(seeds, expected);
}

#[test]
fn min_pass_rate_is_a_fraction_from_0_to_1() {
    for rate in ["1.5", "-1", "nan", "x"] {
        let output = agentsim_output(&[
            "sweep",
            "scenarios/double-refund.toml",
            "--seeds",
            "2",
            &format!("--min-pass-rate={rate}"),
        ]);
        assert_eq!(status(&output), 2, "--min-pass-rate {rate}");
        assert!(
            stderr(&output).contains("expected a fraction from 0 to 1"),
            "{}",
            stderr(&output)
        );
    }
    let (code, _) = sweep_json(&["scenarios/double-refund.toml", "--seeds", "2", "--min-pass-rate", "0"]);
    assert_eq!(code, 0, "a pass rate of 0 passes every sweep");
}

#[test]
fn jobs_are_checked_and_never_outnumber_the_seeds() {
    for jobs in ["0", "100000", "x"] {
        let output = agentsim_output(&["sweep", "scenarios/double-refund.toml", "--seeds", "3", "--jobs", jobs]);
        assert_eq!(status(&output), 2, "--jobs {jobs}");
        assert!(stderr(&output).contains("--jobs"), "{}", stderr(&output));
    }
    let (code, few) = sweep_json(&["scenarios/double-refund.toml", "--seeds", "3", "--jobs", "1024"]);
    let (_, one) = sweep_json(&["scenarios/double-refund.toml", "--seeds", "3", "--jobs", "1"]);
    assert_eq!(code, 1, "double-refund breaks its invariant");
    assert_eq!(few, one);
}

/// A design whose "pay at most once" breaks only because of `tool.duplicate_effect`; a slow
/// lookup (twice) and a delayed opening message fire too but are harmless.
const KNOWN_CAUSE: &str = r#"
[scenario]
name = "known-cause"
seed = 4

[[llm]]
name = "gpt"
latency = "100ms"

[[agent]]
name = "a"
llm = "gpt"
tools = ["lookup", "pay"]
behavior = [
  { when = "turn == 1", then = { tool_call = "lookup", args = { q = "{{user}}" } } },
  { when = "last_tool == 'lookup'", then = { tool_call = "pay", args = { amount = 5 } } },
  { otherwise = { answer = "done" } },
]

[[tool]]
name = "lookup"
latency = "10ms"
output = "found"

[[tool]]
name = "pay"
latency = "10ms"
output = "paid"
effect = "money_moved"

[[traffic]]
kind = "script"
to = "a"
script = [{ at = "0s", message = "hello" }, { at = "5s", message = "again" }]

[[fault]]
kind = "tool.slow"
target = "tool:lookup"
probability = 1.0
latency = "2s"

[[fault]]
kind = "message.delay"
target = "agent:a"
on_message = 1
latency = "1s"

[[fault]]
kind = "tool.duplicate_effect"
target = "tool:pay"
on_message = 2

[[invariant]]
name = "pay at most once"
never = { effect = "money_moved", more_than = 1, per = "conversation" }
"#;

#[test]
fn shrink_finds_the_one_fault_that_breaks_the_invariant() {
    let scenario = parse(KNOWN_CAUSE);
    let shrunk = agentsim::sweep::shrink::shrink(&scenario, 4)
        .unwrap()
        .expect("the seed fails");
    assert_eq!(shrunk.breaks, "pay at most once");
    assert_eq!(shrunk.before, 4, "slow lookup twice, one delay, one duplicate");
    let kinds: Vec<(&str, &str)> = shrunk
        .faults
        .iter()
        .map(|f| (f.kind.name(), f.target.as_str()))
        .collect();
    assert_eq!(kinds, [("tool.duplicate_effect", "tool:pay")]);
    assert_eq!(shrunk.faults[0].trigger.on_message, Some(2));
}

#[test]
fn run_shrink_writes_a_standalone_scenario_that_still_fails_with_only_the_minimal_faults() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("known.toml");
    std::fs::write(&original, KNOWN_CAUSE).unwrap();
    let shrunk = dir.path().join("known.min.toml");
    let output = agentsim_output(&[
        "run",
        original.to_str().unwrap(),
        "--shrink",
        "--shrink-out",
        shrunk.to_str().unwrap(),
    ]);
    assert_eq!(status(&output), 1);
    let err = stderr(&output);
    assert!(err.contains("1 needed"), "{err}");
    assert!(
        err.contains(&format!("replay: agentsim run {} --seed 4", shrunk.display())),
        "{err}"
    );
    let replay = agentsim_output(&["run", shrunk.to_str().unwrap(), "--seed", "4", "--json"]);
    let report: Value = serde_json::from_slice(&replay.stdout).unwrap();
    assert_eq!(report["faults"].as_array().unwrap().len(), 1);
    assert_eq!(report["invariants"][0]["passed"], false);
    assert_eq!(
        agentsim_output(&["validate", shrunk.to_str().unwrap()]).status.code(),
        Some(0)
    );
}

#[test]
fn compare_shows_a_significant_cure_and_no_difference_between_a_design_and_itself() {
    let output = agentsim_output(&[
        "compare",
        "scenarios/retry-storm.toml",
        "scenarios/retry-storm-jitter.toml",
        "--seeds",
        "10",
        "--json",
    ]);
    assert_eq!(status(&output), 0, "B is better: the comparison passes");
    let comparison: Value = serde_json::from_slice(&output.stdout).unwrap();
    let cure = &comparison["invariants"][0];
    assert_eq!(cure["a_pass_rate"], 0.0);
    assert_eq!(cure["b_pass_rate"], 1.0);
    assert_eq!(cure["significant"], true);
    assert_eq!(cure["b_significantly_worse"], false);
    assert_eq!(cure["test"], "two-proportion z-test");
    assert_eq!(
        (cure["a_passed"].as_u64(), cure["b_passed"].as_u64()),
        (Some(0), Some(10))
    );
    assert_eq!(comparison["b_significantly_worse"], false);
    assert!(comparison["a"]["llm_calls"]["p50"].as_u64() > comparison["b"]["llm_calls"]["p50"].as_u64());

    let same = agentsim_output(&[
        "compare",
        "scenarios/support-desk.toml",
        "scenarios/support-desk.toml",
        "--seeds",
        "6",
        "--json",
    ]);
    assert_eq!(status(&same), 0, "a design is not worse than itself");
    let same: Value = serde_json::from_slice(&same.stdout).unwrap();
    for difference in same["invariants"].as_array().unwrap() {
        assert_eq!(difference["difference_points"], 0.0);
        assert_eq!(difference["significant"], false);
    }
}

#[test]
fn compare_exits_1_when_b_is_significantly_worse_on_an_invariant() {
    let args = |json: bool| {
        let mut args = vec![
            "compare",
            "scenarios/retry-storm-jitter.toml",
            "scenarios/retry-storm.toml",
            "--seeds",
            "10",
        ];
        if json {
            args.push("--json");
        }
        agentsim_output(&args)
    };
    let output = args(true);
    assert_eq!(status(&output), 1, "{}", stderr(&output));
    let comparison: Value = serde_json::from_slice(&output.stdout).unwrap();
    let worse = &comparison["invariants"][0];
    assert_eq!(worse["significant"], true);
    assert_eq!(worse["b_significantly_worse"], true);
    assert!(worse["p_value"].as_f64().unwrap() < comparison["significance_level"].as_f64().unwrap());
    assert_eq!(comparison["b_significantly_worse"], true);
    let output = args(false);
    assert_eq!(status(&output), 1);
    assert!(
        stdout(&output).contains("B is significantly worse than A (p < 0.05) on: "),
        "{}",
        stdout(&output)
    );
}

#[test]
fn merging_every_shard_gives_exactly_the_unsharded_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    for shard in ["0/3", "1/3", "2/3"] {
        let output = agentsim_output(&[
            "sweep",
            "scenarios/support-desk.toml",
            "--seeds",
            "3..25",
            "--shard",
            shard,
            "--out",
            out,
        ]);
        assert!(matches!(status(&output), 0 | 1), "{}", stderr(&output));
    }
    let merged = agentsim_output(&["merge", out, "--json"]);
    let whole = agentsim_output(&["sweep", "scenarios/support-desk.toml", "--seeds", "3..25", "--json"]);
    assert_eq!(stdout(&merged), stdout(&whole));
    assert_eq!(status(&merged), status(&whole));
}

#[test]
fn a_merge_with_a_missing_shard_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    agentsim_output(&[
        "sweep",
        "scenarios/support-desk.toml",
        "--seeds",
        "6",
        "--shard",
        "0/2",
        "--out",
        out,
    ]);
    let merged = agentsim_output(&["merge", out]);
    assert_eq!(status(&merged), 2);
    assert!(stderr(&merged).contains("shard 1/2 is missing"), "{}", stderr(&merged));
    let no_out = agentsim_output(&["sweep", "scenarios/support-desk.toml", "--seeds", "6", "--shard", "0/2"]);
    assert_eq!(status(&no_out), 2);
    assert!(stderr(&no_out).contains("--out"));
}

#[test]
fn pass_hat_k_is_given_only_where_each_conversation_is_the_same_task_in_every_seed() {
    // Scripted traffic: conversation i is the same message at the same time in every seed.
    let (_, scripted) = sweep_json(&["scenarios/crash-loop.toml", "--seeds", "0..8"]);
    assert!(!scripted["pass_hat_k"].as_array().unwrap().is_empty(), "{scripted}");
    assert!(scripted.get("pass_hat_k_note").is_none());
    // Poisson arrivals drawing among two messages: conversation i differs from seed to seed.
    let (_, poisson) = sweep_json(&["scenarios/support-desk.toml", "--seeds", "0..8"]);
    assert!(poisson["pass_hat_k"].as_array().unwrap().is_empty(), "{poisson}");
    assert!(poisson["pass_hat_k_note"].as_str().unwrap().starts_with("not computed"));
}
