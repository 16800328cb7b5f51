//! Bad input never panics: thousands of mutated scenario files are parsed (and, when they still
//! parse, run with tight limits); every one ends in a scenario or an error, never a crash.

mod common;

use agentsim::kernel::RngStream;
use agentsim::run::{self, RunOptions};
use agentsim::scenario::{self, Limits};
use common::*;
use std::sync::Arc;

/// Characters that matter to TOML and to our expressions and templates.
const ALPHABET: &[u8] = b"[]{}=\"'.,:#\n 0123456789_-abcdeflmnorstuxyz*/{}()<>!&|";

fn mutate(text: &str, stream: &mut RngStream) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..=stream.below(3) {
        let len = bytes.len().max(1) as u64;
        let at = stream.below(len) as usize;
        match stream.below(5) {
            0 => {
                let end = (at + 1 + stream.below(40) as usize).min(bytes.len());
                bytes.drain(at.min(bytes.len())..end);
            }
            1 => {
                for _ in 0..=stream.below(6) {
                    let c = ALPHABET[stream.below(ALPHABET.len() as u64) as usize];
                    bytes.insert(at.min(bytes.len()), c);
                }
            }
            2 if !bytes.is_empty() => {
                let index = at.min(bytes.len() - 1);
                bytes[index] = ALPHABET[stream.below(ALPHABET.len() as u64) as usize];
            }
            3 => {
                // Duplicate a line (duplicate keys, tables, names).
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let line = lines[stream.below(lines.len() as u64) as usize];
                    bytes.splice(
                        at.min(bytes.len())..at.min(bytes.len()),
                        format!("\n{line}\n").into_bytes(),
                    );
                }
            }
            _ => {
                // Numbers at the edges.
                let numbers = [
                    "0",
                    "-1",
                    "1e309",
                    "18446744073709551616",
                    "4294967296",
                    "0.0000001",
                    "nan",
                ];
                let n = numbers[stream.below(numbers.len() as u64) as usize];
                bytes.splice(at.min(bytes.len())..at.min(bytes.len()), n.bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn mutated_scenarios_are_rejected_with_an_error_or_run_to_an_outcome_and_never_panic() {
    let mut stream = RngStream::new(2026, "robustness");
    let mut parsed = 0;
    let mut ran = 0;
    for file in scenario_files().iter().filter(|f| !relative(f).contains("bench/w5")) {
        let original = std::fs::read_to_string(file).unwrap();
        for _ in 0..300 {
            let text = mutate(&original, &mut stream);
            let result = std::panic::catch_unwind(|| scenario::parse("mutant.toml", &text));
            let Ok(result) = result else {
                panic!("the parser panicked on a mutant of {}:\n{text}", relative(file));
            };
            match result {
                Err(error) => assert!(error.to_string().starts_with("mutant.toml"), "{error}"),
                Ok(scenario) => {
                    parsed += 1;
                    if ran < 150 {
                        ran += 1;
                        let limits = Limits {
                            max_events: 3_000,
                            max_virtual_time_us: 3_600_000_000,
                            max_queue_len: 10_000,
                            ..Limits::DEFAULT
                        };
                        let options = RunOptions {
                            limits: Some(limits),
                            ..RunOptions::new(1)
                        };
                        let output = match run::run(Arc::new(scenario), &options) {
                            Ok(output) => output,
                            // A mutant whose cassette cannot be read stops with a clear error
                            // before it starts (a relative cassette path here names no file).
                            Err(run::RunError::Setup(message)) if message.contains("cassette") => continue,
                            Err(error) => panic!("a mutant of {} failed to run: {error:?}\n{text}", relative(file)),
                        };
                        // A handler that panics on its own (not by an injected crash) is a bug,
                        // even though supervision would restart it.
                        for failure in &output.report.failures {
                            assert!(
                                failure.error.starts_with(agentsim::engine::INJECTED_CRASH_PREFIX),
                                "a handler failed by itself on a mutant of {}: {}\n{text}",
                                relative(file),
                                failure.error
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(
        parsed > 50,
        "some mutants must still parse, or the test exercises too little ({parsed})"
    );
}

#[test]
fn a_task_delegated_back_round_a_cycle_is_refused_and_the_conversation_is_still_answered() {
    let output = agentsim_output(&["run", "tests/warn-scenarios/delegation-cycle.toml", "--json"]);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["outcome"], "completed");
    assert_eq!(report["conversations"]["answered"], 1, "{:#}", report["conversations"]);
    // Two model calls each: the delegation, then the answer with the refusal in it.
    assert_eq!(report["llm_calls"], 4);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    agentsim_output(&[
        "run",
        "tests/warn-scenarios/delegation-cycle.toml",
        "--out",
        out.to_str().unwrap(),
    ]);
    let trace = records(&std::fs::read(out.join("trace.jsonl")).unwrap());
    assert!(trace.iter().any(|r| field(r, "msg").starts_with(
        "delegate_result conv=0 from=planner text=\"error: delegation cycle: planner is already working on conversation 0\""
    )));
}
