//! Ctrl-C and SIGTERM: the real binary, signalled mid-run, stops at an event boundary, writes a
//! whole trace ending in an `interrupted` record and a report, exits 130, and the partial run
//! replays. A sweep keeps the seeds it finished and `--resume` completes it to the summary an
//! uninterrupted sweep prints.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

const EXIT_INTERRUPTED: i32 = 130;

/// Waits until `ready` holds (polling), failing the test after 60 s.
fn wait_for(what: &str, child: &mut Child, ready: impl Fn() -> bool) {
    let started = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().expect("the child can be polled") {
            panic!("agentsim exited ({status}) before {what}");
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the child to exit after a signal, failing (and killing it) after 30 s.
fn exit_code_after_signal(child: &mut Child) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("the child can be polled") {
            return status
                .code()
                .unwrap_or_else(|| panic!("agentsim died of the signal: {status}"));
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("agentsim did not stop within 30 s of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send(child: &Child, signal: i32) {
    // SAFETY: kill only sends a signal to the child we started.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(sent, 0, "the signal was sent");
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn interrupted_run_stops_cleanly_and_replays(signal: i32, name: &str) {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let out = dir.path().join("run");
    let mut child = agentsim()
        .args([
            "run",
            "tests/runaway/endless.toml",
            "--out",
            out.to_str().expect("UTF-8"),
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agentsim starts");
    // The report printed at the end can outgrow a pipe's buffer: read it as it comes, as a
    // terminal or a shell pipeline would.
    let mut stdout_pipe = child.stdout.take().expect("stdout is piped");
    let stdout_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut stdout_pipe, &mut bytes).map(|_| bytes)
    });
    // Some records reached the file: the run is well under way.
    let partial = out.join(".trace.jsonl.partial");
    wait_for("the trace to grow", &mut child, || size(&partial) > 256 * 1024);
    send(&child, signal);
    let code = exit_code_after_signal(&mut child);
    let output = child.wait_with_output().expect("the output");
    assert_eq!(code, EXIT_INTERRUPTED, "{}", String::from_utf8_lossy(&output.stderr));
    let printed = stdout_reader.join().expect("the reader").expect("stdout is read");

    let report: serde_json::Value = serde_json::from_slice(&printed).expect("the report is printed");
    assert_eq!(report["outcome"], "interrupted");
    assert_eq!(report["outcome_detail"], format!("interrupted by {name}"));
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report.json is written"))
            .expect("report.json is JSON");
    assert_eq!(written, report);

    let trace = std::fs::read(out.join("trace.jsonl")).expect("trace.jsonl is written");
    assert!(!partial.exists(), "the partial trace was renamed into place");
    let records = records(&trace);
    let end = records.last().expect("records");
    assert_eq!(field(end, "kind"), "end");
    assert_eq!(field(end, "outcome"), "interrupted");
    assert_eq!(end["events"], report["events"]);
    assert!(report["events"].as_u64().unwrap_or(0) > 1000, "{report}");
    assert!(
        records[1..records.len() - 1].iter().all(|r| field(r, "kind") != "end"),
        "one end record, at the end"
    );

    let replay = agentsim_output(&["replay", out.to_str().expect("UTF-8")]);
    assert_eq!(status(&replay), 0, "{}{}", stdout(&replay), stderr(&replay));
    assert!(stdout(&replay).contains("replay: OK"), "{}", stdout(&replay));
}

#[test]
fn sigint_stops_a_run_cleanly_and_the_partial_trace_replays() {
    interrupted_run_stops_cleanly_and_replays(libc::SIGINT, "SIGINT");
}

#[test]
fn sigterm_stops_a_run_cleanly_and_the_partial_trace_replays() {
    interrupted_run_stops_cleanly_and_replays(libc::SIGTERM, "SIGTERM");
}

fn result_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count().saturating_sub(1))
}

#[test]
fn an_interrupted_sweep_keeps_finished_seeds_and_resume_gives_the_uninterrupted_summary() {
    const SEEDS: usize = 40;
    let dir = tempfile::tempdir().expect("a scratch directory");
    let out = dir.path().join("sweep");
    let out_arg = out.to_str().expect("UTF-8");
    let args = [
        "sweep",
        "tests/runaway/handoff-loop.toml",
        "--seeds",
        "0..40",
        "--jobs",
        "1",
        "--json",
        "--out",
        out_arg,
    ];
    let mut child = agentsim()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agentsim starts");
    let journal = out.join("results.jsonl");
    wait_for("two finished seeds", &mut child, || result_lines(&journal) >= 2);
    send(&child, libc::SIGINT);
    let code = exit_code_after_signal(&mut child);
    let output = child.wait_with_output().expect("the output");
    let stderr_text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(code, EXIT_INTERRUPTED, "{stderr_text}");
    assert!(stderr_text.contains("--resume"), "{stderr_text}");
    let kept = result_lines(&journal);
    assert!((2..SEEDS).contains(&kept), "{kept} seeds kept");
    assert!(!out.join("summary.json").exists(), "no summary for an unfinished sweep");

    // Without --resume or --force, the results are not thrown away.
    let again = agentsim_output(&args);
    assert_eq!(status(&again), 2);
    assert!(stderr(&again).contains("--resume"), "{}", stderr(&again));

    let mut resumed_args = args.to_vec();
    resumed_args.push("--resume");
    let resumed = agentsim_output(&resumed_args);
    assert_eq!(status(&resumed), 0, "{}", stderr(&resumed));
    assert_eq!(result_lines(&journal), SEEDS);

    let whole_dir = dir.path().join("whole");
    let mut whole_args = args.to_vec();
    let last = whole_args.len() - 1;
    whole_args[last] = whole_dir.to_str().expect("UTF-8");
    let whole = agentsim_output(&whole_args);
    assert_eq!(status(&whole), 0, "{}", stderr(&whole));
    assert_eq!(stdout(&resumed), stdout(&whole));
    assert_eq!(
        std::fs::read(out.join("summary.json")).expect("summary.json"),
        std::fs::read(whole_dir.join("summary.json")).expect("summary.json")
    );
}

#[test]
fn resume_refuses_a_journal_of_another_sweep() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let out = dir.path().join("sweep");
    let out_arg = out.to_str().expect("UTF-8");
    let first = agentsim_output(&[
        "sweep",
        "scenarios/support-desk.toml",
        "--seeds",
        "0..3",
        "--out",
        out_arg,
    ]);
    assert!(matches!(status(&first), 0 | 1), "{}", stderr(&first));
    let other = agentsim_output(&[
        "sweep",
        "scenarios/support-desk.toml",
        "--seeds",
        "0..5",
        "--out",
        out_arg,
        "--resume",
    ]);
    assert_eq!(status(&other), 2);
    assert!(
        stderr(&other).contains("results.jsonl:1:1") && stderr(&other).contains("another sweep"),
        "{}",
        stderr(&other)
    );
    let nothing = agentsim_output(&["sweep", "scenarios/support-desk.toml", "--seeds", "3", "--resume"]);
    assert_eq!(status(&nothing), 2);
    assert!(stderr(&nothing).contains("--out"), "{}", stderr(&nothing));
}

#[test]
fn resume_with_nothing_to_resume_runs_the_whole_sweep() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let fresh = dir.path().join("fresh");
    let args = [
        "sweep",
        "scenarios/support-desk.toml",
        "--seeds",
        "0..4",
        "--json",
        "--out",
    ];
    let resumed = agentsim_output(&[&args[..], &[fresh.to_str().expect("UTF-8"), "--resume"]].concat());
    let whole = agentsim_output(&[&args[..], &[dir.path().join("whole").to_str().expect("UTF-8")]].concat());
    assert!(matches!(status(&resumed), 0 | 1), "{}", stderr(&resumed));
    assert_eq!(stdout(&resumed), stdout(&whole));
    assert_eq!(result_lines(&fresh.join("results.jsonl")), 4);
}

#[test]
fn ctrl_c_during_a_hanging_live_call_stops_the_run_at_once() {
    use common::server::{completion, Canned, FakeOpenAi, Received};
    // The server takes 10 s to answer; the client would wait a minute.
    let server = FakeOpenAi::start(|_, _: &Received| {
        Canned::json(
            200,
            completion(serde_json::json!({"role": "assistant", "content": "late"}), "stop"),
        )
        .slow(Duration::from_secs(10))
    });
    let dir = tempfile::tempdir().expect("a scratch directory");
    let file = dir.path().join("hanging.toml");
    std::fs::write(
        &file,
        format!(
            r#"[scenario]
name = "hanging"

[[llm]]
name = "gpt"
mode = "live"
base_url = "{}"
timeout = "60s"

[[agent]]
name = "a"
llm = "gpt"

[[traffic]]
kind = "script"
to = "a"
script = [{{ at = "0s", message = "hello" }}]
"#,
            server.base_url()
        ),
    )
    .expect("write the scenario");
    let out = dir.path().join("run");
    let mut child = agentsim()
        .args(["run", file.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agentsim starts");
    wait_for("the model call", &mut child, || !server.received().is_empty());
    let signalled = Instant::now();
    send(&child, libc::SIGINT);
    let code = exit_code_after_signal(&mut child);
    let waited = signalled.elapsed();
    let output = child.wait_with_output().expect("the output");
    assert_eq!(code, EXIT_INTERRUPTED, "{}", String::from_utf8_lossy(&output.stderr));
    assert!(waited < Duration::from_secs(5), "stopped {waited:?} after the signal");
    assert!(out.join("trace.jsonl").exists(), "the partial trace is kept");
}
