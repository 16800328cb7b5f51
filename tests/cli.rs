//! The command line, driven through the real binary on real scenario files: `run` (summary,
//! `--json`, `--out`, `--force`, `--check-determinism`, limits), `replay` and `validate`, and
//! their exit statuses (0 ok, 1 run failed, 2 bad input, 3 nondeterminism).

mod common;

use std::path::Path;

use common::*;

const SUPPORT_DESK: &str = "scenarios/support-desk.toml";

/// The value of a summary line such as `  digest         f6e8…`.
fn summary_value<'a>(summary: &'a str, label: &str) -> Option<&'a str> {
    summary.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix(label)?;
        rest.starts_with(' ').then(|| rest.trim())
    })
}

fn is_digest(text: &str) -> bool {
    text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// `run` finished: status 0 (passed) or 1 (an invariant broke or the outcome was not `completed`).
fn assert_run_finished(output: &std::process::Output) {
    let code = status(output);
    assert!(
        code == 0 || code == 1,
        "expected exit status 0 or 1, found {code}; stderr:\n{}",
        stderr(output)
    );
}

fn run_json(args: &[&str]) -> serde_json::Value {
    let output = agentsim_output(args);
    assert_run_finished(&output);
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("--json printed no JSON ({e}):\n{}", stdout(&output)))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `agentsim run SUPPORT_DESK --out DIR` plus `extra` arguments.
fn run_out(dir: &Path, extra: &[&str]) -> std::process::Output {
    let dir = dir.to_str().expect("a UTF-8 temporary path");
    let mut args = vec!["run", SUPPORT_DESK, "--out", dir];
    args.extend_from_slice(extra);
    agentsim_output(&args)
}

fn replay(dir: &Path) -> std::process::Output {
    agentsim_output(&["replay", dir.to_str().expect("a UTF-8 temporary path")])
}

// ---------------------------------------------------------------------------------------------
// run
// ---------------------------------------------------------------------------------------------

#[test]
fn run_prints_a_summary_with_the_outcome_the_digest_and_a_replay_line() {
    let output = agentsim_output(&["run", SUPPORT_DESK]);
    assert_run_finished(&output);
    let summary = stdout(&output);

    let outcome = summary_value(&summary, "outcome").unwrap_or_else(|| panic!("no outcome line in:\n{summary}"));
    assert!(
        ["completed", "stalled", "limit_exceeded", "escalated"]
            .iter()
            .any(|o| outcome.starts_with(o)),
        "unexpected outcome {outcome:?}"
    );
    let digest = summary_value(&summary, "digest").unwrap_or_else(|| panic!("no digest line in:\n{summary}"));
    assert!(is_digest(digest), "expected a 64-hex-digit digest, found {digest:?}");
    let replay = summary_value(&summary, "replay").unwrap_or_else(|| panic!("no replay line in:\n{summary}"));
    assert_eq!(replay, "agentsim run scenarios/support-desk.toml --seed 13");
}

#[test]
fn the_replay_line_of_the_summary_reruns_the_same_run() {
    let first = stdout(&agentsim_output(&["run", SUPPORT_DESK]));
    let replay = summary_value(&first, "replay").expect("a replay line");
    let words: Vec<&str> = replay.split_whitespace().collect();
    assert_eq!(
        words[0], "agentsim",
        "the replay line should start with the command: {replay}"
    );

    let again = stdout(&agentsim_output(&words[1..]));
    assert_eq!(
        summary_value(&again, "digest"),
        summary_value(&first, "digest"),
        "the replay line gave another run"
    );
}

#[test]
fn run_json_prints_the_report_with_its_top_level_keys() {
    let report = run_json(&["run", SUPPORT_DESK, "--json"]);
    let keys = [
        "scenario",
        "seed",
        "outcome",
        "digest",
        "virtual_time_us",
        "events",
        "llm_calls",
        "tokens",
        "cost_usd",
        "faults",
        "restarts",
        "invariants",
    ];
    let missing: Vec<&str> = keys.iter().copied().filter(|k| report.get(k).is_none()).collect();
    assert!(missing.is_empty(), "report.json lacks {missing:?}:\n{report:#}");

    assert_eq!(report["scenario"], "support-desk");
    assert_eq!(report["seed"], 13);
    assert!(
        is_digest(report["digest"].as_str().unwrap_or("")),
        "digest: {}",
        report["digest"]
    );
    for key in ["virtual_time_us", "events", "llm_calls"] {
        assert!(report[key].is_u64(), "{key} should be a count, found {}", report[key]);
    }
    assert!(report["cost_usd"].is_number(), "cost_usd: {}", report["cost_usd"]);
    assert!(report["faults"].is_array() && report["restarts"].is_array());

    let invariants = report["invariants"].as_array().expect("invariants is an array");
    let declared = load(&repo_root().join(SUPPORT_DESK)).invariants.clone();
    assert!(!declared.is_empty(), "support-desk declares invariants");
    assert_eq!(invariants.len(), declared.len(), "one result per declared invariant");
    for (invariant, declared) in invariants.iter().zip(&declared) {
        assert_eq!(
            invariant["name"].as_str(),
            Some(declared.name.as_str()),
            "invariant without its name: {invariant}"
        );
        assert!(
            invariant["passed"].is_boolean(),
            "invariant without passed: {invariant}"
        );
    }
}

#[test]
fn run_json_and_the_summary_agree_on_the_digest() {
    let report = run_json(&["run", SUPPORT_DESK, "--json"]);
    let summary = stdout(&agentsim_output(&["run", SUPPORT_DESK]));
    assert_eq!(report["digest"].as_str(), summary_value(&summary, "digest"));
}

#[test]
fn run_with_max_events_ends_with_limit_exceeded_naming_max_events() {
    let output = agentsim_output(&["run", SUPPORT_DESK, "--max-events", "50", "--json"]);
    assert_eq!(
        status(&output),
        1,
        "a run stopped by a limit did not complete, so it failed"
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["outcome"], "limit_exceeded");
    let detail = report["outcome_detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("max_events"),
        "outcome_detail should name the limit, found {detail:?}"
    );
    assert_eq!(report["events"], 50);
}

#[test]
fn check_determinism_confirms_support_desk_on_stderr() {
    let output = agentsim_output(&["run", SUPPORT_DESK, "--check-determinism"]);
    let code = status(&output);
    assert!(
        code == 0 || code == 1,
        "expected 0 or 1 (never 3), found {code}; stderr:\n{}",
        stderr(&output)
    );
    let err = stderr(&output);
    assert!(err.contains("determinism: OK"), "stderr:\n{err}");
}

#[test]
fn run_of_a_missing_file_exits_2_naming_the_file() {
    let output = agentsim_output(&["run", "scenarios/no-such-scenario.toml"]);
    assert_eq!(status(&output), 2);
    let err = stderr(&output);
    assert!(
        err.contains("scenarios/no-such-scenario.toml"),
        "stderr should name the file:\n{err}"
    );
    assert!(stdout(&output).is_empty(), "nothing on stdout for a failed run");
}

// ---------------------------------------------------------------------------------------------
// run --out and replay
// ---------------------------------------------------------------------------------------------

#[test]
fn run_out_writes_the_trace_the_report_and_a_copy_of_the_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_out(dir.path(), &["--json"]);
    assert_run_finished(&output);

    let trace = read(&dir.path().join("trace.jsonl"));
    let report: serde_json::Value =
        serde_json::from_slice(&read(&dir.path().join("report.json"))).expect("report.json is JSON");
    let scenario = read(&dir.path().join("scenario.toml"));

    let records = records(&trace);
    assert_eq!(field(&records[0], "kind"), "header");
    assert_eq!(records[0]["seed"], 13);
    assert_eq!(field(records.last().unwrap(), "kind"), "end");
    assert_eq!(
        report["digest"].as_str().unwrap(),
        blake3::hash(&trace).to_hex().as_str(),
        "the digest covers trace.jsonl"
    );
    assert_eq!(
        scenario,
        read(&repo_root().join(SUPPORT_DESK)),
        "scenario.toml is a byte copy of the scenario"
    );

    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["report.html", "report.json", "scenario.toml", "trace.jsonl"],
        "no partial files are left behind"
    );
}

#[test]
fn replay_of_an_untouched_run_directory_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    assert_run_finished(&run_out(dir.path(), &[]));

    let output = replay(dir.path());
    assert_eq!(
        status(&output),
        0,
        "stdout:\n{}\nstderr:\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(stdout(&output).contains("replay: OK"), "stdout:\n{}", stdout(&output));
}

#[test]
fn replay_of_a_tampered_trace_exits_3_and_names_the_first_divergent_event() {
    let dir = tempfile::tempdir().unwrap();
    assert_run_finished(&run_out(dir.path(), &[]));
    let trace_path = dir.path().join("trace.jsonl");
    let text = String::from_utf8(read(&trace_path)).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();

    // The first delivery in the middle of the trace.
    let index = (lines.len() / 2..lines.len())
        .find(|i| lines[*i].contains("\"kind\":\"deliver\""))
        .expect("a delivery in the second half of the trace");
    let original = lines[index].clone();
    let record: serde_json::Value = serde_json::from_str(&original).unwrap();
    let tampered = original.replacen("\"msg\":\"", "\"msg\":\"tampered ", 1);
    assert_ne!(tampered, original);
    lines[index] = tampered.clone();
    std::fs::write(&trace_path, lines.join("\n") + "\n").unwrap();

    let output = replay(dir.path());
    assert_eq!(
        status(&output),
        3,
        "stdout:\n{}\nstderr:\n{}",
        stdout(&output),
        stderr(&output)
    );
    let said = format!("{}{}", stdout(&output), stderr(&output));
    let place = format!(
        "first divergence at trace line {}, seq {}, virtual time {}us, actor {}",
        index + 1,
        record["seq"],
        record["t_us"],
        field(&record, "to")
    );
    assert!(said.contains(&place), "expected {place:?} in:\n{said}");
    assert!(
        said.contains(&format!("expected: {tampered}")),
        "the recorded line should be shown as expected:\n{said}"
    );
    assert!(
        said.contains(&format!("found:    {original}")),
        "the rerun's line should be shown as found:\n{said}"
    );
}

#[test]
fn replay_uses_the_limits_the_run_was_given_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(status(&run_out(dir.path(), &["--max-events", "50"])), 1);

    let output = replay(dir.path());
    assert_eq!(
        status(&output),
        0,
        "stdout:\n{}\nstderr:\n{}",
        stdout(&output),
        stderr(&output)
    );
}

#[test]
fn replay_refuses_a_run_directory_whose_scenario_was_edited() {
    let dir = tempfile::tempdir().unwrap();
    assert_run_finished(&run_out(dir.path(), &[]));
    let scenario_path = dir.path().join("scenario.toml");
    let mut text = String::from_utf8(read(&scenario_path)).unwrap();
    text.push_str("\n# edited after the run\n");
    std::fs::write(&scenario_path, text).unwrap();

    let output = replay(dir.path());
    assert_eq!(
        status(&output),
        2,
        "stdout:\n{}\nstderr:\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("changed"),
        "stderr should say the scenario changed:\n{}",
        stderr(&output)
    );
}

#[test]
fn run_out_refuses_a_directory_that_already_holds_a_run_and_leaves_it_untouched() {
    let dir = tempfile::tempdir().unwrap();
    assert_run_finished(&run_out(dir.path(), &[]));
    let names = ["trace.jsonl", "report.json", "report.html", "scenario.toml"];
    let before: Vec<Vec<u8>> = names.iter().map(|n| read(&dir.path().join(n))).collect();

    // Another seed: had anything been overwritten, the bytes would differ.
    let output = run_out(dir.path(), &["--seed", "8"]);
    assert_eq!(
        status(&output),
        2,
        "stdout:\n{}\nstderr:\n{}",
        stdout(&output),
        stderr(&output)
    );
    let err = stderr(&output);
    assert!(err.contains("--force"), "the message should point at --force:\n{err}");

    let after: Vec<Vec<u8>> = names.iter().map(|n| read(&dir.path().join(n))).collect();
    assert!(before == after, "the earlier run's files changed");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        names.len(),
        "no new files appeared"
    );
}

#[test]
fn run_out_refuses_a_directory_holding_any_file_it_would_write() {
    for name in ["report.json", "report.html", "scenario.toml", "cassette.jsonl"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), "my own file\n").unwrap();
        let output = run_out(dir.path(), &[]);
        assert_eq!(status(&output), 2, "{name}: {}", stderr(&output));
        let err = stderr(&output);
        assert!(err.contains(name) && err.contains("--force"), "{err}");
        assert_eq!(read(&dir.path().join(name)), b"my own file\n", "{name} was overwritten");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no new files appeared"
        );
    }
}

#[test]
fn an_output_file_in_a_missing_directory_is_written_and_a_directory_in_its_place_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    // Missing directories are created, as --out creates its own.
    let otlp = dir.path().join("new/deeper/otlp.json");
    let mermaid = dir.path().join("other/run.mmd");
    let output = agentsim_output(&[
        "run",
        SUPPORT_DESK,
        "--otlp",
        otlp.to_str().unwrap(),
        "--mermaid",
        mermaid.to_str().unwrap(),
    ]);
    assert_run_finished(&output);
    assert!(stdout(&output).contains("digest"), "the summary is printed");
    assert!(otlp.is_file() && mermaid.is_file());

    // A directory where the file should go: refused before the run, with the flag named.
    for flag in ["--otlp", "--mermaid"] {
        let output = agentsim_output(&["run", SUPPORT_DESK, flag, dir.path().to_str().unwrap()]);
        assert_eq!(status(&output), 2, "{flag}: {}", stderr(&output));
        assert!(stderr(&output).contains(flag), "{}", stderr(&output));
        assert!(stdout(&output).is_empty(), "refused before the run");
    }
    let output = agentsim_output(&[
        "sweep",
        SUPPORT_DESK,
        "--seeds",
        "2",
        "--junit",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(status(&output), 2, "{}", stderr(&output));
    assert!(stderr(&output).contains("--junit"), "{}", stderr(&output));
}

#[test]
fn sweep_out_refuses_another_sweeps_files_and_force_clears_its_failing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let out_text = out.to_str().unwrap();
    let first = agentsim_output(&["sweep", SUPPORT_DESK, "--seeds", "0..12", "--out", out_text]);
    assert_eq!(status(&first), 1, "{}", stderr(&first));
    let failing_runs = std::fs::read_dir(out.join("runs")).unwrap().count();
    assert!(failing_runs > 0, "support-desk fails some of these seeds");

    // Without the journal, the summary of the earlier sweep is still there: refused.
    std::fs::remove_file(out.join("results.jsonl")).unwrap();
    let summary = read(&out.join("summary.json"));
    let passing = "scenarios/double-refund-idempotent.toml";
    let output = agentsim_output(&["sweep", passing, "--seeds", "3", "--out", out_text]);
    assert_eq!(status(&output), 2, "{}", stderr(&output));
    assert!(stderr(&output).contains("summary.json"), "{}", stderr(&output));
    assert_eq!(read(&out.join("summary.json")), summary, "left untouched");

    // With --force the earlier sweep's failing runs go: none of them belongs to this sweep.
    std::fs::write(out.join("runs/notes.txt"), "mine\n").unwrap();
    let output = agentsim_output(&["sweep", passing, "--seeds", "3", "--out", out_text, "--force"]);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let left: Vec<String> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["notes.txt"], "only the seeds' run directories are removed");
}

#[test]
fn run_out_with_force_overwrites_a_directory_that_already_holds_a_run() {
    let dir = tempfile::tempdir().unwrap();
    assert_run_finished(&run_out(dir.path(), &[]));

    let output = run_out(dir.path(), &["--seed", "8", "--force"]);
    assert_run_finished(&output);
    let report: serde_json::Value = serde_json::from_slice(&read(&dir.path().join("report.json"))).unwrap();
    assert_eq!(report["seed"], 8);
    let trace = read(&dir.path().join("trace.jsonl"));
    assert_eq!(records(&trace)[0]["seed"], 8);
    assert_eq!(status(&replay(dir.path())), 0, "the overwritten directory replays");
}

// ---------------------------------------------------------------------------------------------
// validate
// ---------------------------------------------------------------------------------------------

#[test]
fn validate_prints_ok_for_support_desk_and_exits_0() {
    let output = agentsim_output(&["validate", SUPPORT_DESK]);
    assert_eq!(status(&output), 0, "stderr:\n{}", stderr(&output));
    assert_eq!(stdout(&output), "scenarios/support-desk.toml: OK\n");
}

#[test]
fn validate_accepts_every_scenario_in_the_scenarios_folder_without_a_warning() {
    let files: Vec<String> = scenario_files().iter().map(|p| relative(p)).collect();
    let mut args = vec!["validate", "--deny-warnings"];
    args.extend(files.iter().map(String::as_str));
    let output = agentsim_output(&args);
    assert_eq!(status(&output), 0, "stderr:\n{}", stderr(&output));
    assert_eq!(stderr(&output), "", "no errors and no warnings");
    for file in &files {
        assert!(
            stdout(&output).contains(&format!("{file}: OK")),
            "no OK for {file}:\n{}",
            stdout(&output)
        );
    }
}

#[test]
fn validate_of_a_missing_file_exits_2_naming_the_file() {
    let output = agentsim_output(&["validate", "scenarios/no-such-scenario.toml"]);
    assert_eq!(status(&output), 2);
    let err = stderr(&output);
    assert!(
        err.contains("scenarios/no-such-scenario.toml"),
        "stderr should name the file:\n{err}"
    );
}

const WARNED: &str = "tests/warn-scenarios/handoff-cycle.toml";

#[test]
fn validate_prints_a_warning_to_stderr_and_still_exits_0() {
    let output = agentsim_output(&["validate", WARNED]);
    assert_eq!(status(&output), 0, "stderr:\n{}", stderr(&output));
    assert_eq!(stdout(&output), format!("{WARNED}: OK\n"));
    assert!(
        stderr(&output).starts_with(&format!("{WARNED}:11:13: warning: handoff cycle")),
        "stderr:\n{}",
        stderr(&output)
    );
}

#[test]
fn validate_with_deny_warnings_exits_2_on_a_warning_and_0_without_one() {
    let output = agentsim_output(&["validate", "--deny-warnings", SUPPORT_DESK, WARNED]);
    assert_eq!(status(&output), 2, "stderr:\n{}", stderr(&output));
    assert!(stderr(&output).contains(": warning: "), "stderr:\n{}", stderr(&output));
    let output = agentsim_output(&["validate", "--deny-warnings", SUPPORT_DESK]);
    assert_eq!(status(&output), 0, "stderr:\n{}", stderr(&output));
}

#[test]
fn validate_json_prints_every_error_and_warning_of_every_file_as_one_array() {
    let bad = "tests/bad-scenarios/dangling-llm.toml";
    let output = agentsim_output(&["validate", "--json", WARNED, SUPPORT_DESK, bad]);
    assert_eq!(
        status(&output),
        2,
        "an error still exits 2; stderr:\n{}",
        stderr(&output)
    );
    assert_eq!(stderr(&output), "", "with --json everything goes to stdout");
    let value: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("--json printed no JSON ({e}):\n{}", stdout(&output)));
    let items = value.as_array().expect("a JSON array");
    assert_eq!(items.len(), 2, "one warning and one error:\n{value:#}");
    for item in items {
        let keys: Vec<&str> = item
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["column", "file", "line", "message", "severity"], "{item}");
    }
    assert_eq!(items[0]["file"], WARNED);
    assert_eq!(
        (items[0]["line"].as_u64(), items[0]["column"].as_u64()),
        (Some(11), Some(13))
    );
    assert_eq!(items[0]["severity"], "warning");
    assert_eq!(items[1]["file"], bad);
    assert_eq!(
        (items[1]["line"].as_u64(), items[1]["column"].as_u64()),
        (Some(10), Some(7))
    );
    assert_eq!(items[1]["severity"], "error");
    assert!(
        items[1]["message"].as_str().is_some_and(|m| m.contains("\"gtp\"")),
        "{value:#}"
    );
}

#[test]
fn validate_json_of_clean_files_is_an_empty_array() {
    let output = agentsim_output(&["validate", "--json", SUPPORT_DESK]);
    assert_eq!(status(&output), 0, "stderr:\n{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "[]");
}

#[test]
fn run_prints_warnings_to_stderr_and_runs_anyway() {
    let output = agentsim_output(&["run", "tests/warn-scenarios/traffic-without-conversations.toml"]);
    assert_run_finished(&output);
    assert!(
        stderr(&output).starts_with("tests/warn-scenarios/traffic-without-conversations.toml:16:17: warning: "),
        "stderr:\n{}",
        stderr(&output)
    );
    assert!(
        summary_value(&stdout(&output), "digest").is_some_and(is_digest),
        "a summary with a digest"
    );
}

#[test]
fn validate_checks_every_file_given_and_fails_if_one_is_bad() {
    let output = agentsim_output(&["validate", "tests/bad-scenarios/dangling-llm.toml", SUPPORT_DESK]);
    assert_eq!(status(&output), 2);
    assert!(
        stdout(&output).contains("scenarios/support-desk.toml: OK"),
        "the good file is still checked"
    );
    assert!(
        stderr(&output).starts_with("tests/bad-scenarios/dangling-llm.toml:"),
        "stderr:\n{}",
        stderr(&output)
    );
}

#[test]
fn bench_reports_the_cost_per_event_next_to_a_ractor_round_trip_timed_in_the_same_run() {
    let w1 = "scenarios/bench/w1-pipeline.toml";
    let bench = run_json(&["bench", w1, "--iters", "3", "--warmup", "1", "--trace", "--json"]);
    let run = run_json(&["run", w1, "--json"]);
    // The runs measured are the scenario's own run at its seed.
    assert_eq!(bench["events_per_iter"], run["events"]);
    assert_eq!(bench["digest"], run["digest"]);
    let number = |key: &str| {
        bench[key]
            .as_f64()
            .unwrap_or_else(|| panic!("`{key}` is not a number: {bench}"))
    };
    let (per_event, round_trip, ratio) = (
        number("us_per_event"),
        number("ractor_round_trip_us"),
        number("ractor_ratio"),
    );
    assert!(per_event > 0.0 && round_trip > 0.0, "{bench}");
    assert!(
        (ratio - per_event / round_trip).abs() < 1e-9 * ratio.max(1.0),
        "{ratio} is not {per_event} / {round_trip}"
    );
    // The summary says the same.
    let output = agentsim_output(&["bench", w1, "--iters", "2", "--warmup", "0"]);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let line = summary_value(&stdout(&output), "per event")
        .unwrap_or_default()
        .to_owned();
    assert!(
        line.contains("× a bare ractor cast + reply (") && line.ends_with("µs, same run)"),
        "{line}"
    );
    // A file that is not there is bad input, named.
    let missing = agentsim_output(&["bench", "scenarios/bench/none.toml"]);
    assert_eq!(status(&missing), 2);
    assert!(
        stderr(&missing).contains("scenarios/bench/none.toml"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn options_that_would_do_nothing_are_refused_or_said_so() {
    // A cassette matching policy with no model that reads a cassette.
    let output = agentsim_output(&["run", SUPPORT_DESK, "--cassette-match", "fifo"]);
    assert_eq!(status(&output), 2, "{}", stderr(&output));
    assert!(stderr(&output).contains("--cassette-match"), "{}", stderr(&output));
    // A bench of no iterations.
    let output = agentsim_output(&["bench", SUPPORT_DESK, "--iters", "0"]);
    assert_eq!(status(&output), 2, "{}", stderr(&output));
    // `--shrink` on a run that passed says there is nothing to shrink.
    let output = agentsim_output(&["run", "scenarios/double-refund-idempotent.toml", "--shrink"]);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    assert!(stderr(&output).contains("nothing to shrink"), "{}", stderr(&output));
    // Two designs with no invariant in common: nothing to test, and compare says so.
    let output = agentsim_output(&["compare", SUPPORT_DESK, "scenarios/retry-storm.toml", "--seeds", "2"]);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no invariant of the same name"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn replay_and_report_name_a_sweeps_or_a_proxys_directory_for_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("sweep");
    let output = agentsim_output(&[
        "sweep",
        "scenarios/double-refund.toml",
        "--seeds",
        "2",
        "--out",
        sweep.to_str().unwrap(),
    ]);
    assert_eq!(status(&output), 1, "{}", stderr(&output));
    let proxy = dir.path().join("proxy");
    std::fs::create_dir_all(&proxy).unwrap();
    std::fs::write(
        proxy.join("trace.jsonl"),
        "{\"call\":1,\"event\":\"request\",\"method\":\"POST\",\"seq\":1,\"session\":\"s\",\"t_us\":1}\n",
    )
    .unwrap();
    for command in ["replay", "report"] {
        let output = agentsim_output(&[command, sweep.to_str().unwrap()]);
        assert_eq!(status(&output), 2);
        assert!(stderr(&output).contains("found a sweep's"), "{}", stderr(&output));
        let output = agentsim_output(&[command, proxy.to_str().unwrap()]);
        assert_eq!(status(&output), 2);
        assert!(
            stderr(&output).contains("`agentsim proxy` session's") && stderr(&output).contains("proxy --replay"),
            "{}",
            stderr(&output)
        );
    }
}

/// Runs agentsim with `args`, its stdout's reader gone before anything is printed (`… | head -0`):
/// the run itself takes far longer than closing the pipe.
fn with_stdout_closed(args: &[&str]) -> std::process::Output {
    let mut child = agentsim()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_with_its_own_status() {
    let files: Vec<String> = scenario_files().iter().map(|f| relative(f)).collect();
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let output = with_stdout_closed(&args);
    assert_eq!(status(&output), 141, "{}", stderr(&output));
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
}

#[test]
fn a_sweep_whose_reader_went_away_still_writes_its_files_and_keeps_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let output = with_stdout_closed(&[
        "sweep",
        "scenarios/support-desk.toml",
        "--seeds",
        "0..20",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        status(&output),
        1,
        "support-desk fails on some seeds: {}",
        stderr(&output)
    );
    assert!(out.join("summary.json").exists() && out.join("report.html").exists());
}
