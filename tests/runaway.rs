//! Runaway scenarios (tests/runaway/): an infinite handoff loop, a message explosion, a restart
//! storm, a tool that never answers and an answer that doubles forever. Each must end the real
//! binary's run with outcome `limit_exceeded` naming its limit, in bounded wall time and memory,
//! with a whole trace that `agentsim replay` matches.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Generous bounds: a runaway that is caught ends in well under a second in release builds.
const WALL_TIME_MAX: Duration = Duration::from_secs(60);
const CHILD_RSS_MAX_BYTES: u64 = 512 * 1024 * 1024;

/// The largest resident set of any child process this test binary has waited for.
fn children_max_rss_bytes() -> u64 {
    // SAFETY: getrusage only writes into the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        assert_eq!(libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage), 0);
        usage
    };
    // Linux reports kilobytes.
    usage.ru_maxrss as u64 * 1024
}

/// Runs a runaway fixture with `--out`, checks outcome, detail, bounds and the trace; returns the
/// report.
fn runs_into(fixture: &str, limit: &str, extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let out = dir.path().join("run");
    let path = format!("tests/runaway/{fixture}");
    let mut args = vec!["run", &path, "--json", "--out", out.to_str().expect("a UTF-8 path")];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let output = agentsim_output(&args);
    let wall = started.elapsed();
    assert_eq!(
        status(&output),
        1,
        "{fixture}: expected exit 1 (run failed)\n{}",
        stderr(&output)
    );
    assert!(wall < WALL_TIME_MAX, "{fixture} took {wall:?}");
    let rss = children_max_rss_bytes();
    assert!(
        rss < CHILD_RSS_MAX_BYTES,
        "{fixture}: a child reached {rss} bytes resident"
    );

    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("--json prints the report");
    assert_eq!(report["outcome"], "limit_exceeded", "{fixture}: {report:#}");
    let detail = report["outcome_detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with(limit),
        "{fixture}: expected the detail to name {limit}, found {detail:?}"
    );

    let trace = std::fs::read(out.join("trace.jsonl")).expect("the run wrote its trace");
    let records = records(&trace);
    let header = &records[0];
    assert_eq!(field(header, "kind"), "header");
    for key in [
        "max_events",
        "max_virtual_time_us",
        "max_queue_len",
        "max_message_bytes",
        "max_restarts_total",
        "max_tool_wait_us",
    ] {
        assert!(header[key].is_u64(), "{fixture}: the header lacks {key}: {header}");
    }
    let end = records.last().expect("records");
    assert_eq!(field(end, "kind"), "end");
    assert_eq!(field(end, "outcome"), "limit_exceeded");
    assert_eq!(field(end, "detail"), detail);

    let replay = agentsim_output(&["replay", out.to_str().expect("a UTF-8 path")]);
    assert_eq!(
        status(&replay),
        0,
        "{fixture}: replay\n{}{}",
        stdout(&replay),
        stderr(&replay)
    );
    report
}

#[test]
fn an_infinite_handoff_loop_ends_at_max_events() {
    let report = runs_into("handoff-loop.toml", "max_events (20000)", &[]);
    assert_eq!(report["events"], 20_000);
}

#[test]
fn a_handoff_loop_ends_its_conversation_at_the_default_max_handoffs() {
    let text = std::fs::read_to_string(repo_root().join("tests/runaway/handoff-loop.toml"))
        .unwrap()
        .replace("max_handoffs = 4_000_000_000\n", "");
    let scenario = parse(&text);
    assert_eq!(scenario.max_handoffs, agentsim::scenario::MAX_HANDOFFS_DEFAULT);
    let report = run_in_memory(&scenario, 1, agentsim::run::Flavor::CurrentThread).report;
    assert_eq!(report.outcome, agentsim::report::Outcome::Completed);
    assert_eq!(report.conversations.max_turns, 1);
    assert_eq!(report.fates["out_of_turns"], 1);
    // The opening turn plus one model call per handoff, then the one that would hand off again.
    assert_eq!(
        report.llm_calls,
        u64::from(agentsim::scenario::MAX_HANDOFFS_DEFAULT) + 1
    );
}

#[test]
fn a_message_explosion_ends_at_max_queue_len() {
    runs_into("message-explosion.toml", "max_queue_len (5000)", &[]);
}

#[test]
fn a_restart_storm_ends_at_the_default_max_restarts_total() {
    let report = runs_into("restart-storm.toml", "max_restarts_total (1000)", &[]);
    assert_eq!(report["restarts"].as_array().map(Vec::len), Some(1000));
}

#[test]
fn a_restart_storm_ends_at_a_lower_cap_from_the_command_line() {
    let report = runs_into(
        "restart-storm.toml",
        "max_restarts_total (7)",
        &["--max-restarts-total", "7"],
    );
    assert_eq!(report["restarts"].as_array().map(Vec::len), Some(7));
}

#[test]
fn a_tool_that_never_answers_ends_at_the_default_max_tool_wait() {
    let report = runs_into("silent-tool.toml", "max_tool_wait (3600000000us)", &[]);
    let detail = report["outcome_detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("tool:pay did not answer call") && detail.contains("agent:billing"),
        "{detail}"
    );
}

#[test]
fn an_answer_held_past_max_virtual_time_names_itself_and_that_every_conversation_had_ended() {
    let report = runs_into(
        "../warn-scenarios/fault-latency-past-the-run-end.toml",
        "max_virtual_time (3600000000us): the next event was due at 2h00m00s: tool:lookup → agent:helper: tool_result conv=0",
        &[],
    );
    let detail = report["outcome_detail"].as_str().unwrap();
    assert!(detail.ends_with("; every conversation had ended"), "{detail}");
    assert_eq!(report["conversations"]["answered"], 1, "{report:#}");
}

#[test]
fn a_tool_wait_from_the_command_line_replaces_the_default() {
    runs_into(
        "silent-tool.toml",
        "max_tool_wait (30000000us)",
        &["--max-tool-wait", "30s"],
    );
}

#[test]
fn an_answer_that_doubles_every_turn_ends_at_the_default_max_message_bytes() {
    let report = runs_into("huge-answer.toml", "max_message_bytes (1048576)", &[]);
    let detail = report["outcome_detail"].as_str().unwrap_or_default();
    assert!(detail.contains("bytes to"), "{detail}");
}

#[test]
fn a_message_size_cap_from_the_command_line_trips_sooner() {
    let small = runs_into(
        "huge-answer.toml",
        "max_message_bytes (4096)",
        &["--max-message-bytes", "4096"],
    );
    let large = runs_into("huge-answer.toml", "max_message_bytes (1048576)", &[]);
    assert!(small["events"].as_u64() < large["events"].as_u64());
}

#[test]
fn a_limit_of_zero_is_rejected_with_its_place() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let path = dir.path().join("zero.toml");
    let text = std::fs::read_to_string(repo_root().join("tests/runaway/huge-answer.toml")).expect("fixture");
    std::fs::write(&path, text.replace("seed = 1\n", "seed = 1\nmax_message_bytes = 0\n")).expect("write");
    let output = agentsim_output(&["validate", path.to_str().expect("a UTF-8 path")]);
    assert_eq!(status(&output), 2);
    assert!(
        stderr(&output).contains("zero.toml:") && stderr(&output).contains("expected a limit of at least 1"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_limit_of_zero_is_rejected_in_every_key_and_every_flag() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let fixture = std::fs::read_to_string(repo_root().join("tests/runaway/huge-answer.toml")).expect("fixture");
    for key in ["max_virtual_time = \"0s\"", "max_tool_wait = \"0ms\""] {
        let path = dir.path().join("zero.toml");
        std::fs::write(&path, fixture.replace("seed = 1\n", &format!("seed = 1\n{key}\n"))).expect("write");
        let output = agentsim_output(&["validate", path.to_str().expect("a UTF-8 path")]);
        assert_eq!(status(&output), 2, "{key}");
        assert!(
            stderr(&output).contains("expected a limit longer than 0"),
            "{key}: {}",
            stderr(&output)
        );
    }
    let file = "tests/runaway/huge-answer.toml";
    for (flag, value) in [
        ("--max-events", "0"),
        ("--max-queue-len", "0"),
        ("--max-message-bytes", "0"),
        ("--max-virtual-time", "0s"),
        ("--max-tool-wait", "0us"),
    ] {
        let output = agentsim_output(&["run", file, flag, value]);
        assert_eq!(status(&output), 2, "{flag} {value}: {}", stderr(&output));
        assert!(stderr(&output).contains(flag), "{}", stderr(&output));
        assert!(stdout(&output).is_empty(), "{flag}: refused before the run");
    }
    // Zero restarts is a real choice: any restart ends the run.
    let output = agentsim_output(&["run", file, "--max-restarts-total", "0"]);
    assert!(status(&output) <= 1, "{}", stderr(&output));
}
