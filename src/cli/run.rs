//! `agentsim run` and `agentsim replay`: one run, its output files, and the determinism checks.

use std::path::{Path, PathBuf};

use super::shrink::shrink_seed;
use super::{
    exit, finish_run_dir, interrupt_flag, load, load_and_warn, pretty_json, shell_quote, write_atomic,
    CassetteMatchArg, Failure, RunArgs, RuntimeFlavor,
};
use crate::llm::backend::{CassetteOptions, CassetteOutcome};
use crate::llm::cassette::Cassette;
use crate::report::RunReport;
use crate::run::{self, RunOptions};
use crate::scenario::{self, units::parse_duration_us, Scenario};
use crate::trace::{reader, HeaderLimits, Record, TraceMode};

pub(super) fn run(args: &RunArgs) -> Result<u8, Failure> {
    let scenario = load_and_warn(&args.file)?;
    let seed = args.seed.unwrap_or(scenario.seed);
    let limits = limits_with_flags(args, scenario.limits)?;
    let mut inputs: Vec<&Path> = vec![&args.file];
    inputs.extend(args.replay_cassette.as_deref());
    super::prepare_output_files(
        &inputs,
        &[
            ("--mermaid", args.mermaid.as_deref()),
            ("--otlp", args.otlp.as_deref()),
            ("--shrink-out", args.shrink_out.as_deref()),
        ],
    )?;
    let out_dir = args
        .out
        .as_deref()
        .map(|dir| prepare_out_dir(dir, args.force))
        .transpose()?;
    let trace_mode = match &out_dir {
        Some(dir) => TraceMode::File(dir.join(".trace.jsonl.partial")),
        None if args.check_determinism || args.mermaid.is_some() || args.otlp.is_some() => TraceMode::Memory,
        None => TraceMode::Digest,
    };
    let all_mock = scenario.llms.iter().all(|l| l.mode == scenario::LlmMode::Mock);
    if args.cassette_match.is_some() && args.replay_cassette.is_none() && all_mock {
        return Err(Failure::new(
            exit::BAD_INPUT,
            format!(
                "--cassette-match: {} has no live or replay model, so no cassette is matched",
                args.file.display()
            ),
        ));
    }
    if args.replay_cassette.is_some() && all_mock {
        return Err(Failure::new(
            exit::BAD_INPUT,
            format!(
                "--replay-cassette: {} has no live or replay model to answer from a cassette",
                args.file.display()
            ),
        ));
    }
    if args.impact {
        super::impact_needs_mock_models(&scenario, &args.file, "the seed once per fault and per firing")?;
    }
    if args.replay_cassette.is_none() && !args.no_endpoint_check {
        check_endpoints(&scenario)?;
    }
    let cassette = CassetteOptions {
        replay: args.replay_cassette.as_deref().map(load_cassette).transpose()?,
        matching: args.cassette_match.map(|m| m.policy()),
    };
    let options = RunOptions {
        seed,
        flavor: args.runtime.flavor(),
        trace: trace_mode,
        limits: Some(limits),
        replay_command: replay_command(args, seed, out_dir.as_deref(), &scenario),
        cassette,
    };
    let interrupt = run::Interrupt {
        signal: Some(interrupt_flag()),
        after_events: None,
    };
    let output = run::run_interruptible(scenario.clone(), &options, interrupt)?;
    let mut report = output.report;
    if args.impact && report.outcome != crate::engine::Outcome::Interrupted {
        let impact = run::impact(scenario.clone(), &options, &report)?;
        report.attach_impact(impact);
    }
    let cassette_status = cassette_outcome(&output.cassette, &scenario, out_dir.as_deref())?;

    let mut trace_bytes = output.trace;
    if let Some(dir) = &out_dir {
        finish_run_dir(dir, &scenario, &report)?;
        if args.check_determinism || args.mermaid.is_some() || args.otlp.is_some() {
            trace_bytes =
                std::fs::read(dir.join("trace.jsonl")).map_err(|e| Failure::new(exit::INTERNAL, e.to_string()))?;
        }
    }
    // The result first: a file that cannot be written after all must not hide it.
    print_report(&report, args.json)?;
    write_diagram_and_otlp(args, &trace_bytes, &report, &scenario)?;
    if report.outcome == crate::report::Outcome::Interrupted {
        if let Some(dir) = &out_dir {
            eprintln!(
                "interrupted: the trace up to this point is in {}; `agentsim replay {}` replays it",
                dir.join("trace.jsonl").display(),
                shell_quote(&dir.display().to_string())
            );
        }
        return Ok(exit::INTERRUPTED);
    }
    if cassette_status != exit::OK {
        return Ok(cassette_status);
    }
    if args.shrink && report.passed() {
        eprintln!("shrink: the run passed, so there is nothing to shrink");
    }
    if args.shrink && !report.passed() {
        shrink_seed(
            &args.file,
            &scenario,
            seed,
            args.shrink_for.as_deref(),
            super::shrink::ShrinkOut::pick(args.shrink_out.as_deref(), None),
        )?;
    }
    if args.check_determinism {
        let status = rerun_for_determinism(
            args,
            seed,
            &report,
            &trace_bytes,
            out_dir.as_deref(),
            &output.cassette,
            &scenario,
        )?;
        if status != exit::OK {
            return Ok(status);
        }
    }
    Ok(if report.passed() { exit::OK } else { exit::RUN_FAILED })
}

/// The scenario's limits with the limit flags given on the command line applied.
fn limits_with_flags(args: &RunArgs, mut limits: scenario::Limits) -> Result<scenario::Limits, Failure> {
    if let Some(n) = args.max_events {
        limits.max_events = n;
    }
    if let Some(n) = args.max_queue_len {
        limits.max_queue_len = n;
    }
    if let Some(n) = args.max_message_bytes {
        limits.max_message_bytes = n;
    }
    if let Some(n) = args.max_restarts_total {
        limits.max_restarts_total = n;
    }
    for (flag, text, slot) in [
        (
            "--max-virtual-time",
            &args.max_virtual_time,
            &mut limits.max_virtual_time_us,
        ),
        ("--max-tool-wait", &args.max_tool_wait, &mut limits.max_tool_wait_us),
    ] {
        if let Some(t) = text {
            *slot = parse_duration_us(t).map_err(|e| Failure::new(exit::BAD_INPUT, format!("{flag}: {e}")))?;
            if *slot == 0 {
                return Err(Failure::new(
                    exit::BAD_INPUT,
                    format!("{flag}: expected a limit longer than 0, found \"{t}\""),
                ));
            }
        }
    }
    Ok(limits)
}

/// Asks every live model's server whether it is there before the run starts.
fn check_endpoints(scenario: &Scenario) -> Result<(), Failure> {
    for llm in scenario.llms.iter().filter(|l| l.mode == scenario::LlmMode::Live) {
        let client = crate::llm::live::LiveClient::new(&llm.name, &llm.endpoint)
            .map_err(|e| Failure::new(exit::BAD_INPUT, e))?;
        client.check().map_err(|e| {
            Failure::new(
                exit::BAD_INPUT,
                format!("llm \"{}\": {e} (--no-endpoint-check skips this check)", llm.name),
            )
        })?;
    }
    Ok(())
}

/// The command that replays this run: `agentsim replay DIR` for a run directory (with the
/// cassette matching it ran under), else the run itself with its seed, limit flags and cassette.
/// A live run without a directory kept no recording: rerunning it would call the server again.
fn replay_command(args: &RunArgs, seed: u64, out_dir: Option<&Path>, scenario: &Scenario) -> String {
    let matching = match args.cassette_match {
        Some(CassetteMatchArg::Fifo) => " --cassette-match fifo",
        Some(CassetteMatchArg::Strict) | None => "",
    };
    if let Some(dir) = out_dir {
        return format!("agentsim replay {}{matching}", shell_quote(&dir.display().to_string()));
    }
    let live = scenario.llms.iter().any(|l| l.mode == scenario::LlmMode::Live);
    if live && args.replay_cassette.is_none() {
        return "none: the live calls were not recorded; run again with --out DIR to keep them".to_owned();
    }
    let mut command = format!(
        "agentsim run {} --seed {seed}",
        shell_quote(&args.file.display().to_string())
    );
    for (flag, value) in limit_flags(args) {
        command.push_str(&format!(" {flag} {}", shell_quote(&value)));
    }
    if let Some(file) = &args.replay_cassette {
        command.push_str(&format!(
            " --replay-cassette {}",
            shell_quote(&file.display().to_string())
        ));
    }
    command.push_str(matching);
    command
}

/// Writes the Mermaid diagram (`--mermaid`) and the OTLP export (`--otlp`) of a run's trace.
fn write_diagram_and_otlp(
    args: &RunArgs,
    trace_bytes: &[u8],
    report: &RunReport,
    scenario: &Scenario,
) -> Result<(), Failure> {
    if let Some(path) = &args.mermaid {
        let records =
            crate::trace::records::parse("the trace", trace_bytes).map_err(|e| Failure::new(exit::INTERNAL, e))?;
        let report_json = serde_json::to_value(report).map_err(|e| Failure::new(exit::INTERNAL, e.to_string()))?;
        let diagram = crate::render::mermaid::sequence_diagram(&records, Some(&report_json));
        write_atomic(path, diagram.as_bytes())?;
    }

    if let Some(path) = &args.otlp {
        let json = crate::otlp::export::export(trace_bytes, scenario)
            .map_err(|e| Failure::new(exit::INTERNAL, format!("cannot export OTLP: {e}")))?;
        write_atomic(path, json.as_bytes())?;
    }
    Ok(())
}

/// `--check-determinism`: reruns the seed in a fresh process and compares the traces. Live calls
/// are not made twice: without --out, the rerun answers from a scratch copy of the cassette this
/// run recorded.
fn rerun_for_determinism(
    args: &RunArgs,
    seed: u64,
    report: &RunReport,
    trace_bytes: &[u8],
    out_dir: Option<&Path>,
    cassette: &CassetteOutcome,
    scenario: &Scenario,
) -> Result<u8, Failure> {
    let scratch = tempfile::tempdir()
        .map_err(|e| Failure::new(exit::INTERNAL, format!("cannot create a scratch directory: {e}")))?;
    let recorded = match out_dir {
        Some(dir) => Some(dir.join("cassette.jsonl")).filter(|p| p.exists()),
        None if !cassette.recorded.is_empty() => {
            let path = scratch.path().join("cassette.jsonl");
            write_atomic(&path, Cassette::to_jsonl(&scenario.name, &cassette.recorded).as_bytes())?;
            Some(path)
        }
        None => None,
    };
    check_determinism(args, seed, report, trace_bytes, recorded.as_deref())
}

/// `agentsim report DIR`: writes DIR/report.html (and a Mermaid diagram) from a run directory.
/// `report` and `replay` take a run's directory: a sweep's or a proxy's is named for what it is.
fn check_run_dir(dir: &Path, command: &str) -> Result<(), Failure> {
    let trace = dir.join("trace.jsonl");
    let refuse = |what: String| Err(Failure::new(exit::BAD_INPUT, what));
    if !trace.exists() && dir.join("summary.json").exists() {
        return refuse(format!(
            "{}: expected a run's directory, found a sweep's (summary.json); `agentsim {command}` takes one of its failing runs, such as {}",
            dir.display(),
            dir.join("runs/seed-N").display()
        ));
    }
    let first_line = std::fs::File::open(&trace).ok().and_then(|file| {
        use std::io::BufRead;
        std::io::BufReader::new(file).lines().next().and_then(Result::ok)
    });
    let first: Option<serde_json::Value> = first_line.and_then(|line| serde_json::from_str(&line).ok());
    if first
        .as_ref()
        .is_some_and(|r| r.get("event").is_some() && r.get("kind").is_none())
    {
        return refuse(format!(
            "{}: expected a run's directory, found an `agentsim proxy` session's (its trace records `event`s); a proxy session replays with `agentsim proxy --replay REC` from the recording its `--record REC` made, and writes its report.html when it ends",
            dir.display()
        ));
    }
    Ok(())
}

pub(super) fn report(dir: &Path, mermaid: Option<&Path>) -> Result<u8, Failure> {
    check_run_dir(dir, "report")?;
    let html = crate::render::html::render_run_dir(dir).map_err(|e| Failure::new(exit::BAD_INPUT, e))?;
    let path = dir.join("report.html");
    write_atomic(&path, html.as_bytes())?;
    println!("wrote {}", path.display());
    if let Some(out) = mermaid {
        let trace_path = dir.join("trace.jsonl");
        let bytes = std::fs::read(&trace_path)
            .map_err(|e| Failure::new(exit::BAD_INPUT, format!("{}: {e}", trace_path.display())))?;
        let records = crate::trace::records::parse(&trace_path.display().to_string(), &bytes)
            .map_err(|e| Failure::new(exit::BAD_INPUT, e))?;
        let report_json: Option<serde_json::Value> = std::fs::read(dir.join("report.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        write_atomic(
            out,
            crate::render::mermaid::sequence_diagram(&records, report_json.as_ref()).as_bytes(),
        )?;
        println!("wrote {}", out.display());
    }
    Ok(exit::OK)
}

pub(super) fn print_report(report: &RunReport, json: bool) -> Result<(), Failure> {
    let text = if json {
        let mut text = pretty_json(report)?;
        text.push('\n');
        text
    } else {
        report.summary()
    };
    super::print_result(&text);
    Ok(())
}

/// Reruns the seed in a fresh process on the other runtime flavour and compares the traces.
pub(super) fn check_determinism(
    args: &RunArgs,
    seed: u64,
    report: &RunReport,
    trace: &[u8],
    recorded: Option<&Path>,
) -> Result<u8, Failure> {
    let scratch = tempfile::tempdir()
        .map_err(|e| Failure::new(exit::INTERNAL, format!("cannot create a scratch directory: {e}")))?;
    let rerun_dir = scratch.path().join("rerun");
    let exe = std::env::current_exe().map_err(|e| Failure::new(exit::INTERNAL, e.to_string()))?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("run")
        .arg(&args.file)
        .arg("--seed")
        .arg(seed.to_string())
        .arg("--out")
        .arg(&rerun_dir)
        .arg("--json");
    command.arg("--runtime").arg(args.runtime.other().arg());
    for (flag, value) in limit_flags(args) {
        command.arg(flag).arg(value);
    }
    if let Some(file) = args.replay_cassette.as_deref().or(recorded) {
        command.arg("--replay-cassette").arg(file);
    }
    if let Some(policy) = args.cassette_match {
        command.arg("--cassette-match").arg(match policy {
            CassetteMatchArg::Strict => "strict",
            CassetteMatchArg::Fifo => "fifo",
        });
    }
    let output = command
        .output()
        .map_err(|e| Failure::new(exit::INTERNAL, format!("cannot start the rerun: {e}")))?;
    let rerun_trace = std::fs::read(rerun_dir.join("trace.jsonl")).map_err(|_| {
        Failure::new(
            exit::INTERNAL,
            format!("the rerun wrote no trace: {}", String::from_utf8_lossy(&output.stderr)),
        )
    })?;
    match reader::first_divergence(trace, &rerun_trace) {
        None => {
            eprintln!(
                "determinism: OK — a fresh process on the {} runtime gave the same digest {}",
                args.runtime.other().arg(),
                report.digest
            );
            Ok(exit::OK)
        }
        Some(divergence) => {
            eprintln!(
                "determinism: MISMATCH — a fresh process on the {} runtime diverged\n{divergence}",
                args.runtime.other().arg()
            );
            Ok(exit::NONDETERMINISM)
        }
    }
}

/// The limit flags given on the command line, as (flag, value), for replay lines and reruns.
fn limit_flags(args: &RunArgs) -> Vec<(&'static str, String)> {
    [
        ("--max-events", args.max_events.map(|n| n.to_string())),
        ("--max-queue-len", args.max_queue_len.map(|n| n.to_string())),
        ("--max-virtual-time", args.max_virtual_time.clone()),
        ("--max-message-bytes", args.max_message_bytes.map(|n| n.to_string())),
        ("--max-restarts-total", args.max_restarts_total.map(|n| n.to_string())),
        ("--max-tool-wait", args.max_tool_wait.clone()),
    ]
    .into_iter()
    .filter_map(|(flag, value)| value.map(|v| (flag, v)))
    .collect()
}

pub(super) fn replay(dir: &Path, runtime: RuntimeFlavor, matching: Option<CassetteMatchArg>) -> Result<u8, Failure> {
    check_run_dir(dir, "replay")?;
    let trace_path = dir.join("trace.jsonl");
    let recorded = std::fs::read(&trace_path).map_err(|e| {
        Failure::new(
            exit::BAD_INPUT,
            format!("{}: cannot read the recorded trace: {e}", trace_path.display()),
        )
    })?;
    let checked = reader::read(&trace_path.display().to_string(), &recorded)
        .map_err(|e| Failure::new(exit::BAD_INPUT, e.to_string()))?;
    let Record::Header {
        seed,
        scenario_hash: recorded_hash,
        limits: recorded_limits,
        ..
    } = checked.header
    else {
        return Err(Failure::new(
            exit::INTERNAL,
            "a checked trace starts with its header".to_owned(),
        ));
    };
    // An interrupted run replays up to the event it stopped at, and ends the same way.
    let after_events = match checked.end {
        Record::End {
            events,
            outcome,
            detail,
            ..
        } if outcome == "interrupted" => Some((events, detail.unwrap_or_else(|| "interrupted".to_owned()))),
        _ => None,
    };
    let interrupt = run::Interrupt {
        signal: None,
        after_events,
    };
    let scenario = load(&dir.join("scenario.toml"))?;
    if recorded_hash != scenario.source_hash {
        // The hash covers the data files the scenario reads too: any of them may be the change.
        let read: Vec<&str> = scenario.data_files.iter().map(|(name, _)| name.as_str()).collect();
        let what = match read.is_empty() {
            true => "the scenario file changed".to_owned(),
            false => format!("the scenario file or a file it reads ({}) changed", read.join(", ")),
        };
        return Err(Failure::new(
            exit::BAD_INPUT,
            format!(
                "{}: {what} since the run (hash {} in the trace, {} now)",
                dir.join("scenario.toml").display(),
                recorded_hash,
                scenario.source_hash
            ),
        ));
    }
    let limits = recorded_limits.map_or(scenario.limits, recorded_run_limits);
    let cassette_path = dir.join("cassette.jsonl");
    let options = RunOptions {
        seed,
        flavor: runtime.flavor(),
        trace: TraceMode::Memory,
        limits: Some(limits),
        replay_command: format!("agentsim replay {}", shell_quote(&dir.display().to_string())),
        cassette: CassetteOptions {
            replay: cassette_path
                .exists()
                .then(|| load_cassette(&cassette_path))
                .transpose()?,
            matching: matching.map(|m| m.policy()),
        },
    };
    let output = run::run_interruptible(scenario.clone(), &options, interrupt)?;
    let cassette_status = cassette_outcome(&output.cassette, &scenario, None)?;
    if cassette_status != exit::OK {
        return Ok(cassette_status);
    }
    match reader::first_divergence(&recorded, &output.trace) {
        None => {
            println!(
                "replay: OK — {} events ({} trace records: deliveries, faults, failures, restarts, guardrail checks, world changes, header and end), digest {} matches",
                output.report.events,
                recorded.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count(),
                output.report.digest
            );
            Ok(exit::OK)
        }
        Some(divergence) => {
            println!(
                "replay: MISMATCH — the rerun diverged from {}\n{divergence}",
                trace_path.display()
            );
            Ok(exit::NONDETERMINISM)
        }
    }
}

/// The limits a recorded run used, from its trace header (CLI overrides are not in the scenario).
fn recorded_run_limits(l: HeaderLimits) -> scenario::Limits {
    scenario::Limits {
        max_events: l.max_events,
        max_virtual_time_us: l.max_virtual_time_us,
        max_queue_len: l.max_queue_len,
        max_message_bytes: l.max_message_bytes,
        max_transcript_bytes: l.max_transcript_bytes,
        max_restarts_total: l.max_restarts_total,
        max_tool_wait_us: l.max_tool_wait_us,
    }
}

/// The files `run --out DIR` writes (besides copies of the scenario's data files).
const RUN_DIR_FILES: [&str; 5] = [
    "trace.jsonl",
    "report.json",
    "report.html",
    "scenario.toml",
    "cassette.jsonl",
];

pub(super) fn prepare_out_dir(dir: &Path, force: bool) -> Result<PathBuf, Failure> {
    // The trace first: a directory that holds one holds a run.
    super::refuse_overwrite("--out", dir, &RUN_DIR_FILES, force, "the run")?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::new(exit::BAD_INPUT, format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir.to_path_buf())
}

fn load_cassette(path: &Path) -> Result<std::sync::Arc<Cassette>, Failure> {
    Cassette::load(path)
        .map(std::sync::Arc::new)
        .map_err(|e| Failure::new(exit::BAD_INPUT, e.to_string()))
}

/// Writes the calls a live run recorded (or the cassette a replay used) beside the trace, and
/// reports what a replay found. Returns the exit status the cassette asks for.
fn cassette_outcome(outcome: &CassetteOutcome, scenario: &Scenario, out_dir: Option<&Path>) -> Result<u8, Failure> {
    if let Some(dir) = out_dir {
        let path = dir.join("cassette.jsonl");
        if !outcome.recorded.is_empty() {
            write_atomic(&path, Cassette::to_jsonl(&scenario.name, &outcome.recorded).as_bytes())?;
        } else if let Some((file, _)) = &outcome.replay {
            if Path::new(file) != path {
                let bytes = std::fs::read(file)
                    .map_err(|e| Failure::new(exit::INTERNAL, format!("cannot copy the cassette {file}: {e}")))?;
                write_atomic(&path, &bytes)?;
            }
        }
    } else if !outcome.recorded.is_empty() {
        eprintln!(
            "cassette: {} live call(s) were not recorded to a file; pass --out DIR to keep DIR/cassette.jsonl",
            outcome.recorded.len()
        );
    }
    let Some((file, summary)) = &outcome.replay else {
        return Ok(exit::OK);
    };
    if let Some(mismatch) = &summary.mismatch {
        eprintln!("cassette: replay from {file} failed: {mismatch}");
        return Ok(exit::NONDETERMINISM);
    }
    if !summary.drift.is_empty() {
        eprintln!(
            "cassette: {} of {} replayed request(s) drifted from the recording; first: {}",
            summary.drift.len(),
            summary.served,
            summary.drift[0]
        );
    }
    if let Some(first) = summary.unused.first() {
        eprintln!(
            "cassette: {} recording(s) in {file} were not used; first: {first}",
            summary.unused.len()
        );
        if summary.strict {
            return Ok(exit::NONDETERMINISM);
        }
    }
    Ok(exit::OK)
}

/// What `import` writes in its `--out` directory.
const IMPORT_FILES: [&str; 2] = ["scenario.toml", "cassette.jsonl"];

pub(super) fn import(trace: &Path, out: &Path, force: bool) -> Result<u8, Failure> {
    for file in IMPORT_FILES {
        super::refuse_input_as_output("--out", &out.join(file), &[trace])?;
    }
    super::refuse_overwrite("--out", out, &IMPORT_FILES, force, "the import")?;
    let imported = crate::otlp::import::import_file(trace).map_err(|e| Failure::new(exit::BAD_INPUT, e.to_string()))?;
    std::fs::create_dir_all(out)
        .map_err(|e| Failure::new(exit::BAD_INPUT, format!("cannot create {}: {e}", out.display())))?;
    write_atomic(&out.join("cassette.jsonl"), imported.cassette.as_bytes())?;
    write_atomic(&out.join("scenario.toml"), imported.scenario.as_bytes())?;
    println!(
        "imported {}: {} agent(s), {} model call(s), {} tool call(s), {} error(s){}\nwrote {}",
        trace.display(),
        imported.agents,
        imported.chat_calls,
        imported.tool_calls,
        imported.errors,
        if imported.content_missing {
            "; message content was not in the trace, so the structure is reproduced, not the words"
        } else {
            ""
        },
        out.join("scenario.toml").display()
    );
    Ok(exit::OK)
}
