//! Determinism: one run is a pure function of (scenario, seed). Thread count, runtime flavour and
//! process must not change a byte of the trace, and adding an actor must not shift the random
//! draws of the others.
//!
//! The per-scenario tests walk `scenarios/` at test time and check every file found there; a
//! failure names every scenario that broke the property, not just the first. To keep the suite
//! fast in debug builds, those runs stop after at most [`RUN_EVENTS_MAX`] events: small scenarios
//! run to their natural end, large ones (the 10,000-agent swarm) are checked on a long prefix,
//! which must be just as byte-identical.

mod common;

use std::sync::{Arc, OnceLock};

use agentsim::run::{self, Flavor, RunOptions, RunOutput};
use agentsim::scenario::{Limits, Scenario};
use agentsim::trace::reader::first_divergence;
use agentsim::trace::TraceMode;
use common::*;

/// The most events a per-scenario run delivers (see the module comment).
const RUN_EVENTS_MAX: u64 = 10_000;

/// The scenario's limits, with `max_events` capped at [`RUN_EVENTS_MAX`].
fn capped_limits(scenario: &Scenario) -> Limits {
    Limits {
        max_events: scenario.limits.max_events.min(RUN_EVENTS_MAX),
        ..scenario.limits
    }
}

/// Runs a scenario in this process under the capped limits, keeping the trace in memory.
fn run_capped(scenario: &Arc<Scenario>, flavor: Flavor) -> Result<RunOutput, String> {
    let options = RunOptions {
        seed: scenario.seed,
        flavor,
        trace: TraceMode::Memory,
        limits: Some(capped_limits(scenario)),
        replay_command: String::new(),
        cassette: Default::default(),
    };
    run::run(scenario.clone(), &options).map_err(|e| format!("the {} run failed: {e}", flavor.name()))
}

/// A scenario file, loaded, and its reference run: current_thread, the scenario's own seed.
struct Reference {
    name: String,
    loaded: Result<(Arc<Scenario>, RunOutput), String>,
}

/// The reference run of every scenario file, computed once and shared by the tests below.
fn references() -> &'static [Reference] {
    static REFERENCES: OnceLock<Vec<Reference>> = OnceLock::new();
    REFERENCES.get_or_init(|| {
        scenario_files()
            .iter()
            .map(|path| {
                let loaded = agentsim::scenario::load(path)
                    .map_err(|e| format!("does not load:\n{e}"))
                    .map(Arc::new)
                    .and_then(|scenario| Ok((scenario.clone(), run_capped(&scenario, Flavor::CurrentThread)?)));
                Reference {
                    name: relative(path),
                    loaded,
                }
            })
            .collect()
    })
}

/// Runs `check(name, scenario, reference run)` on every scenario file and fails once, listing
/// every scenario that failed.
fn for_every_scenario(check: impl Fn(&str, &Arc<Scenario>, &RunOutput) -> Result<(), String>) {
    let references = references();
    let mut failures = Vec::new();
    for reference in references {
        let result = match &reference.loaded {
            Ok((scenario, run)) => check(&reference.name, scenario, run),
            Err(e) => Err(e.clone()),
        };
        if let Err(message) = result {
            failures.push(format!("{}: {message}", reference.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n\n{}",
        failures.len(),
        references.len(),
        failures.join("\n\n")
    );
}

/// Fails with the first position where two sequences differ, rather than printing both.
fn assert_same_sequence(expected: &[String], found: &[String], what: &str) {
    if expected == found {
        return;
    }
    let at = expected
        .iter()
        .zip(found)
        .position(|(e, f)| e != f)
        .unwrap_or(expected.len().min(found.len()));
    panic!(
        "{what}: first difference at item {at} of {} (expected) / {} (found)\n  expected: {}\n  found:    {}",
        expected.len(),
        found.len(),
        expected.get(at).map_or("(none)", String::as_str),
        found.get(at).map_or("(none)", String::as_str),
    );
}

fn describe_divergence(expected: &[u8], found: &[u8]) -> String {
    match first_divergence(expected, found) {
        Some(d) => d.to_string(),
        None => "the traces are byte-identical".to_owned(),
    }
}

/// Every scenario's digest at its seed — the one `agentsim run FILE` prints: whole runs, not the
/// capped ones above — pinned in `snapshots/determinism__digests.snap`. The same on every machine
/// the tests run on, and unchanged by work that must not change what a run does or writes
/// (speed work, refactoring). A change that means to change runs shows up here, scenario by
/// scenario, and is reviewed like any snapshot.
#[test]
fn every_scenario_gives_its_pinned_digest() {
    let lines: Vec<String> = scenario_files()
        .iter()
        .map(|path| {
            let digest = agentsim::scenario::load(path)
                .map_err(|e| e.to_string())
                .and_then(|scenario| {
                    let options = RunOptions::new(scenario.seed);
                    run::run(Arc::new(scenario), &options).map_err(|e| e.to_string())
                })
                .map_or_else(|e| format!("failed: {e}"), |output| output.report.digest);
            format!("{} {digest}", relative(path))
        })
        .collect();
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"),
        omit_expression => true,
    }, {
        insta::assert_snapshot!("digests", lines.join("\n"));
    });
}

#[test]
fn every_scenario_gives_the_same_digest_and_trace_bytes_when_run_twice_with_the_same_seed() {
    for_every_scenario(|_, scenario, first| {
        let second = run_capped(scenario, Flavor::CurrentThread)?;
        if first.trace.is_empty() {
            return Err("the memory trace is empty".to_owned());
        }
        if first.trace != second.trace {
            return Err(format!(
                "the second run's trace differs: {}",
                describe_divergence(&first.trace, &second.trace)
            ));
        }
        if first.report.digest != second.report.digest {
            return Err(format!(
                "digests differ: {} then {}",
                first.report.digest, second.report.digest
            ));
        }
        Ok(())
    });
}

#[test]
fn every_scenario_gives_the_same_trace_on_the_current_thread_and_multi_thread_runtimes() {
    for_every_scenario(|_, scenario, current| {
        let multi = run_capped(scenario, Flavor::MultiThread)?;
        if current.trace != multi.trace {
            return Err(format!(
                "multi_thread diverged from current_thread: {}",
                describe_divergence(&current.trace, &multi.trace)
            ));
        }
        if current.report.digest != multi.report.digest {
            return Err(format!(
                "digests differ: {} (current) vs {} (multi)",
                current.report.digest, multi.report.digest
            ));
        }
        Ok(())
    });
}

#[test]
fn every_scenario_prints_the_same_digest_from_two_separate_processes() {
    for_every_scenario(|name, scenario, _| {
        let max_events = capped_limits(scenario).max_events.to_string();
        let spawn = || {
            agentsim()
                .args(["run", name, "--seed", "7", "--json", "--max-events", &max_events])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("the agentsim binary starts")
        };
        // Both processes run at the same time, so they also compete for the machine.
        let (a, b) = (spawn(), spawn());
        let mut digests = Vec::new();
        for child in [a, b] {
            let output = child.wait_with_output().expect("agentsim finishes");
            let code = status(&output);
            if code != 0 && code != 1 {
                return Err(format!("exit status {code}, stderr:\n{}", stderr(&output)));
            }
            let report: serde_json::Value =
                serde_json::from_slice(&output.stdout).map_err(|e| format!("--json printed no JSON ({e})"))?;
            if report["seed"] != 7 {
                return Err(format!("the report says seed {}, expected 7", report["seed"]));
            }
            let digest = report["digest"].as_str().ok_or("the report has no digest")?.to_owned();
            if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("expected a 64-hex-digit digest, found {digest:?}"));
            }
            digests.push(digest);
        }
        if digests[0] != digests[1] {
            return Err(format!(
                "two processes printed different digests: {} and {}",
                digests[0], digests[1]
            ));
        }
        Ok(())
    });
}

#[test]
fn every_scenario_reports_the_digest_of_exactly_the_trace_bytes() {
    for_every_scenario(|_, _, output| {
        let hashed = blake3::hash(&output.trace).to_hex().to_string();
        if output.report.digest != hashed {
            return Err(format!(
                "the report's digest {} is not the BLAKE3 {} of the trace",
                output.report.digest, hashed
            ));
        }
        Ok(())
    });
}

/// The trace without its header line (the header records the seed itself).
fn body(trace: &[u8]) -> &[u8] {
    let newline = trace.iter().position(|b| *b == b'\n').expect("a header line");
    &trace[newline + 1..]
}

#[test]
fn support_desk_runs_differently_under_different_seeds() {
    let scenario = load(&repo_root().join("scenarios/support-desk.toml"));
    let runs: Vec<_> = [1, 2, 3]
        .iter()
        .map(|seed| (seed, run_in_memory(&scenario, *seed, Flavor::CurrentThread)))
        .collect();
    for (i, (seed_a, a)) in runs.iter().enumerate() {
        for (seed_b, b) in &runs[i + 1..] {
            assert_ne!(
                a.report.digest, b.report.digest,
                "seeds {seed_a} and {seed_b} gave the same digest"
            );
            // The header names the seed, so the digests would differ even if the seed reached no
            // random stream; the events themselves must differ too.
            assert_ne!(
                body(&a.trace),
                body(&b.trace),
                "seeds {seed_a} and {seed_b} gave the same events"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Stream independence
// ---------------------------------------------------------------------------------------------

fn support_desk_text() -> String {
    std::fs::read_to_string(repo_root().join("scenarios/support-desk.toml")).expect("support-desk.toml is readable")
}

/// Inserts `block` before the first `[[llm]]` table, so that the new LLM and agent come first in
/// their arrays and every original LLM, tool and agent moves to a new position.
fn insert_before_first_llm(text: &str, block: &str) -> String {
    assert!(
        text.contains("\n[[llm]]\n"),
        "support-desk.toml has no [[llm]] table any more"
    );
    text.replacen("\n[[llm]]\n", &format!("\n{block}\n[[llm]]\n"), 1)
}

/// The `llm_reply` deliveries in a trace, as their raw lines.
fn llm_reply_lines(trace: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(trace).expect("the trace is UTF-8");
    text.lines()
        .zip(records(trace))
        .filter(|(_, r)| field(r, "msg").starts_with("llm_reply"))
        .map(|(line, _)| line.to_owned())
        .collect()
}

#[test]
fn an_idle_agent_with_its_own_llm_changes_no_llm_reply_of_the_original_agents() {
    // The new LLM and agent are declared *before* the original ones, so the original LLM and
    // agents get new declaration indices, and every original LLM, tool and agent a new position
    // in the actor table. This fails if a random stream were keyed by such a position instead of
    // by its stable name. It cannot detect a stream shared between agents, because the idle agent
    // never draws: the next test covers that.
    let original = support_desk_text();
    let extended = insert_before_first_llm(
        &original,
        r#"[[llm]]
name = "other"
latency = { median = "700ms", p99 = "3s" }

[[agent]]
name = "unrelated"
llm = "other"
behavior = [{ otherwise = { answer = "not my department" } }]
"#,
    );
    let base = run_in_memory(&parse(&original), 13, Flavor::CurrentThread);
    let with_idle_agent = run_in_memory(&parse(&extended), 13, Flavor::CurrentThread);

    let (expected, found) = (llm_reply_lines(&base.trace), llm_reply_lines(&with_idle_agent.trace));
    assert!(!expected.is_empty(), "support-desk made no LLM calls");
    assert_same_sequence(
        &expected,
        &found,
        "adding an idle agent changed the original agents' LLM replies",
    );
}

/// The parts of an `llm_reply` delivery that come from random draws and virtual time: when it
/// arrived, to whom, what the model chose, and the drawn latency. Conversation numbers, tool-call
/// ids and token counts are left out: they count conversations and calls across the whole run,
/// so they legitimately shift when another agent's conversations are interleaved.
fn drawn_part_of_reply(record: &serde_json::Value) -> String {
    let msg = field(record, "msg");
    let mut words = msg.split(' ');
    assert_eq!(words.next(), Some("llm_reply"));
    let _conversation = words.next();
    let choice = words.next().unwrap_or("");
    let choice: String = {
        // `tool_calls=[search_kb#3,refund#4]` → `tool_calls=[search_kb,refund]`
        let mut out = String::new();
        let mut skipping = false;
        for c in choice.chars() {
            match c {
                '#' => skipping = true,
                ',' | ']' => {
                    skipping = false;
                    out.push(c);
                }
                _ if !skipping => out.push(c),
                _ => {}
            }
        }
        out
    };
    let latency = words.find(|w| w.starts_with("latency_us=")).unwrap_or("latency_us=?");
    format!("t_us={} to={} {choice} {latency}", record["t_us"], field(record, "to"))
}

#[test]
fn an_extra_agent_calling_the_same_llm_does_not_shift_the_original_agents_draws() {
    // "unrelated" calls the same model, llm:gpt, as triage and billing, and has its own stream of
    // conversations over the same stretch of virtual time, so its calls are interleaved with
    // theirs. Each of its calls draws a latency from gpt's log-normal distribution. If gpt drew
    // from one stream shared by all its callers, those draws would shift every latency triage and
    // billing get afterwards, and with them the arrival times of their replies: this test would
    // fail. With one stream per (model, agent) the original agents' draws are untouched.
    let original = support_desk_text();
    let mut extended = insert_before_first_llm(
        &original,
        r#"[[agent]]
name = "unrelated"
llm = "gpt"
behavior = [{ otherwise = { answer = "not my department" } }]
"#,
    );
    // Appended, so the original traffic source keeps its position.
    extended.push_str(
        r#"
[[traffic]]
kind = "poisson"
to = "unrelated"
rate = "2/s"
conversations = 30
messages = ["is this the right desk?"]
"#,
    );
    let base = run_in_memory(&parse(&original), 13, Flavor::CurrentThread);
    let with_busy_agent = run_in_memory(&parse(&extended), 13, Flavor::CurrentThread);

    let original_agents = ["agent:triage", "agent:billing"];
    let replies_to = |trace: &[u8], agents: &[&str]| -> Vec<serde_json::Value> {
        records(trace)
            .into_iter()
            .filter(|r| field(r, "msg").starts_with("llm_reply") && agents.contains(&field(r, "to")))
            .collect()
    };
    let expected: Vec<String> = replies_to(&base.trace, &original_agents)
        .iter()
        .map(drawn_part_of_reply)
        .collect();
    let found: Vec<String> = replies_to(&with_busy_agent.trace, &original_agents)
        .iter()
        .map(drawn_part_of_reply)
        .collect();

    // The premise: the extra agent's calls really are interleaved with the original ones.
    let times = |records: &[serde_json::Value]| records.iter().map(|r| r["t_us"].as_u64().unwrap()).collect::<Vec<_>>();
    let original_times = times(&replies_to(&with_busy_agent.trace, &original_agents));
    let extra_times = times(&replies_to(&with_busy_agent.trace, &["agent:unrelated"]));
    let (first, last) = (original_times[0], *original_times.last().unwrap());
    let interleaved = extra_times.iter().filter(|t| (first..=last).contains(*t)).count();
    assert!(
        interleaved >= 10,
        "only {interleaved} of the extra agent's LLM replies fall among the original ones"
    );

    assert!(!expected.is_empty(), "support-desk made no LLM calls");
    assert_same_sequence(
        &expected,
        &found,
        "another agent's calls to llm:gpt shifted triage's and billing's draws",
    );
}

#[test]
fn adding_a_fault_aimed_at_another_actor_does_not_change_when_the_existing_fault_fires() {
    // support-desk's crash fault on agent:billing fires by probability, drawing from its own
    // random stream. A new fault, declared first and aimed at a tool, must not move those draws
    // (DESIGN.md, kernel rule 5: "Adding a fault or an agent must not shift other actors' draws").
    let original = support_desk_text();
    assert!(
        original.contains("\n[[fault]]\n"),
        "support-desk.toml has no [[fault]] any more"
    );
    let extended = original.replacen(
        "\n[[fault]]\n",
        "\n[[fault]]\nkind = \"actor.crash\"\ntarget = \"tool:search_kb\"\non_message = 1000000\n\n[[fault]]\n",
        1,
    );
    let crashes = |text: &str| -> Vec<(u64, String)> {
        let output = run_in_memory(&parse(text), 13, Flavor::CurrentThread);
        output
            .report
            .faults
            .iter()
            .map(|f| (f.t_us, f.target.clone()))
            .collect()
    };
    let expected = crashes(&original);
    assert!(
        !expected.is_empty(),
        "support-desk with seed 13 fired no fault; pick a seed that does"
    );
    assert_eq!(
        expected,
        crashes(&extended),
        "declaring another fault first changed when agent:billing crashes"
    );
}

/// The torture test: every scenario × 50 seeds, each seed run in the sweep (current_thread, in
/// process, on worker threads) and again in a fresh process on the multi_thread runtime; all
/// digests must match.
#[test]
fn every_scenario_gives_the_same_digest_for_50_seeds_in_fresh_processes_on_both_runtimes() {
    let mut mismatches = Vec::new();
    for file in scenario_files() {
        let name = relative(&file);
        // The 10,000-agent swarm costs half a second a run; five seeds make the point.
        let seeds = if name.contains("w5-swarm") { "5" } else { "50" };
        let output = agentsim_output(&["sweep", &name, "--seeds", seeds, "--recheck", "1", "--json"]);
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        if status(&output) == 3 || summary["digests_checked"].as_u64() != seeds.parse().ok() {
            mismatches.push(format!("{name}: exit {} — {}", status(&output), stderr(&output)));
        }
    }
    assert!(mismatches.is_empty(), "digest mismatches:\n{}", mismatches.join("\n"));
}
