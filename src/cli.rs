//! The command line: `validate`, `run` and `replay`, over the library.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use crate::kernel::{self, Flavor, RunOptions};
use crate::report::RunReport;
use crate::scenario::{self, units::parse_duration_us, Scenario};
use crate::trace::{reader, TraceMode};

/// Exit statuses, documented in the README.
pub mod exit {
    /// The run completed and every invariant held (or: the file is valid, the replay matched).
    pub const OK: u8 = 0;
    /// The run finished but failed: an invariant broke, or the outcome was not `completed`.
    pub const RUN_FAILED: u8 = 1;
    /// Bad input: a scenario error, a bad flag, a missing file.
    pub const BAD_INPUT: u8 = 2;
    /// Determinism error: a rerun or replay gave a different trace.
    pub const NONDETERMINISM: u8 = 3;
    /// agentsim itself failed (I/O, internal error).
    pub const INTERNAL: u8 = 4;
}

#[derive(Parser, Debug)]
#[command(
    name = "agentsim",
    version,
    about = "A deterministic, actor-based simulator for LLM agent systems"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check scenario files; prints OK or FILE:LINE:COL errors.
    Validate {
        /// Scenario files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run a scenario once and print its summary.
    Run(RunArgs),
    /// List what agentsim knows: `agentsim list faults [--json]`.
    List {
        /// What to list.
        #[arg(value_enum)]
        what: ListWhat,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run many seeds in parallel: pass rates, percentiles, fault coverage, failing seeds.
    Sweep(SweepArgs),
    /// Combine the partial results of `sweep --shard` into the summary an unsharded sweep gives.
    Merge {
        /// Shard files, or directories holding shard-*-of-*.json files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare two designs under the same seeds and the same chaos.
    Compare(CompareArgs),
    /// Measure orchestration overhead: run a scenario repeatedly and time it (wall clock).
    Bench(BenchArgs),
    /// Rerun the run recorded in a directory written by `run --out` and compare traces.
    Replay {
        /// A directory written by `agentsim run --out DIR`.
        dir: PathBuf,
        /// Tokio runtime to replay on.
        #[arg(long, value_enum, default_value_t = RuntimeFlavor::Current)]
        runtime: RuntimeFlavor,
    },
}

/// Arguments of `agentsim run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Scenario file (TOML).
    pub file: PathBuf,
    /// Seed; the scenario's `seed` when omitted.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write trace.jsonl, report.json and scenario.toml to this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Overwrite an existing run in --out.
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Rerun the seed in a fresh process, on the other runtime flavour, and compare traces.
    #[arg(long)]
    pub check_determinism: bool,
    /// Tokio runtime that carries the actors (the trace must not depend on it).
    #[arg(long, value_enum, default_value_t = RuntimeFlavor::Current)]
    pub runtime: RuntimeFlavor,
    /// Stop after this many events (overrides the scenario's max_events).
    #[arg(long)]
    pub max_events: Option<u64>,
    /// Stop at this virtual time, e.g. "30m" (overrides the scenario's max_virtual_time).
    #[arg(long)]
    pub max_virtual_time: Option<String>,
    /// Stop when this many events are queued (overrides the scenario's max_queue_len).
    #[arg(long)]
    pub max_queue_len: Option<u64>,
    /// If the run fails, shrink its faults to a minimal set that still fails, and write it as a
    /// standalone scenario.
    #[arg(long)]
    pub shrink: bool,
    /// Where `--shrink` writes the scenario (default: NAME.shrunk-seedN.toml here).
    #[arg(long)]
    pub shrink_out: Option<PathBuf>,
}

/// Arguments of `agentsim sweep`.
#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// Scenario file (TOML).
    pub file: PathBuf,
    /// Seeds: `A..B` (B exclusive) or `N` for `0..N`.
    #[arg(long)]
    pub seeds: String,
    /// Parallel seeds (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write JUnit XML here (one test case per invariant).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Rerun this fraction of the seeds in fresh processes and compare digests.
    #[arg(long, default_value_t = 0.0)]
    pub recheck: f64,
    /// Pass when every invariant holds in at least this fraction of runs (default: all).
    #[arg(long)]
    pub min_pass_rate: Option<f64>,
    /// Shrink the first failing seed to a minimal fault set (see `run --shrink`).
    #[arg(long)]
    pub shrink: bool,
    /// Run only shard I of N (every Nth seed from the I-th) and write a partial result to --out.
    #[arg(long)]
    pub shard: Option<String>,
    /// Write summary.json (or, with --shard, shard-I-of-N.json) to this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Arguments of `agentsim compare`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Design A (scenario file).
    pub a: PathBuf,
    /// Design B (scenario file).
    pub b: PathBuf,
    /// Seeds: `A..B` (B exclusive) or `N` for `0..N`.
    #[arg(long)]
    pub seeds: String,
    /// Parallel seeds (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Print the comparison as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `agentsim bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Scenario file (TOML).
    pub file: PathBuf,
    /// Measured iterations.
    #[arg(long, default_value_t = 20)]
    pub iters: u32,
    /// Unmeasured iterations first.
    #[arg(long, default_value_t = 3)]
    pub warmup: u32,
    /// Encode and hash the trace, as `run` does (off by default: the kernel alone).
    #[arg(long)]
    pub trace: bool,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Seed; the scenario's `seed` when omitted.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Tokio runtime that carries the actors.
    #[arg(long, value_enum, default_value_t = RuntimeFlavor::Current)]
    pub runtime: RuntimeFlavor,
}

/// What `agentsim list` lists.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListWhat {
    /// The fault catalogue: kind, layer, parameters, the real behaviour it models.
    Faults,
}

/// `--runtime` values.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeFlavor {
    /// tokio current_thread
    Current,
    /// tokio multi_thread with 2 workers
    Multi,
}

impl RuntimeFlavor {
    fn flavor(self) -> Flavor {
        match self {
            RuntimeFlavor::Current => Flavor::CurrentThread,
            RuntimeFlavor::Multi => Flavor::MultiThread,
        }
    }

    fn other(self) -> RuntimeFlavor {
        match self {
            RuntimeFlavor::Current => RuntimeFlavor::Multi,
            RuntimeFlavor::Multi => RuntimeFlavor::Current,
        }
    }

    fn arg(self) -> &'static str {
        match self {
            RuntimeFlavor::Current => "current",
            RuntimeFlavor::Multi => "multi",
        }
    }
}

/// A failure with its exit status and message.
struct Failure {
    status: u8,
    message: String,
}

impl Failure {
    fn new(status: u8, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl From<kernel::RunError> for Failure {
    fn from(e: kernel::RunError) -> Failure {
        Failure::new(exit::INTERNAL, e.to_string())
    }
}

/// Runs the CLI; returns the process exit status.
pub fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Run(args) => run(&args),
        Command::Replay { dir, runtime } => replay(&dir, runtime),
        Command::Bench(args) => bench(&args),
        Command::Sweep(args) => sweep(&args),
        Command::Compare(args) => compare(&args),
        Command::Merge { paths, json } => merge(&paths, json),
        Command::List {
            what: ListWhat::Faults,
            json,
        } => list_faults(json),
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.status)
        }
    }
}

/// Pretty JSON of a report or summary (serialising our own types cannot fail on user input).
fn pretty_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(value).map_err(|e| Failure::new(exit::INTERNAL, e.to_string()))
}

fn load(path: &Path) -> Result<Arc<Scenario>, Failure> {
    scenario::load(path)
        .map(Arc::new)
        .map_err(|e| Failure::new(exit::BAD_INPUT, e.to_string()))
}

fn validate(files: &[PathBuf]) -> Result<u8, Failure> {
    let mut status = exit::OK;
    for file in files {
        match scenario::load(file) {
            Ok(_) => println!("{}: OK", file.display()),
            Err(e) => {
                eprintln!("{e}");
                status = exit::BAD_INPUT;
            }
        }
    }
    Ok(status)
}

fn shell_quote(text: &str) -> String {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@".contains(c)) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn run(args: &RunArgs) -> Result<u8, Failure> {
    let scenario = load(&args.file)?;
    let seed = args.seed.unwrap_or(scenario.seed);
    let mut limits = scenario.limits;
    if let Some(n) = args.max_events {
        limits.max_events = n;
    }
    if let Some(n) = args.max_queue_len {
        limits.max_queue_len = n;
    }
    if let Some(t) = &args.max_virtual_time {
        limits.max_virtual_time_us =
            parse_duration_us(t).map_err(|e| Failure::new(exit::BAD_INPUT, format!("--max-virtual-time: {e}")))?;
    }
    let mut replay_command = format!(
        "agentsim run {} --seed {seed}",
        shell_quote(&args.file.display().to_string())
    );
    if args.max_events.is_some() || args.max_queue_len.is_some() || args.max_virtual_time.is_some() {
        for (flag, value) in [
            ("--max-events", args.max_events.map(|n| n.to_string())),
            ("--max-queue-len", args.max_queue_len.map(|n| n.to_string())),
            ("--max-virtual-time", args.max_virtual_time.clone()),
        ] {
            if let Some(value) = value {
                replay_command.push_str(&format!(" {flag} {}", shell_quote(&value)));
            }
        }
    }

    let out_dir = args
        .out
        .as_deref()
        .map(|dir| prepare_out_dir(dir, args.force))
        .transpose()?;
    let trace_mode = match &out_dir {
        Some(dir) => TraceMode::File(dir.join(".trace.jsonl.partial")),
        None if args.check_determinism => TraceMode::Memory,
        None => TraceMode::Digest,
    };
    if let Some(dir) = &out_dir {
        replay_command = format!("agentsim replay {}", shell_quote(&dir.display().to_string()));
    }
    let options = RunOptions {
        seed,
        flavor: args.runtime.flavor(),
        trace: trace_mode,
        limits: Some(limits),
        replay_command,
    };
    let output = kernel::run(scenario.clone(), &options)?;
    let report = output.report;

    let mut trace_bytes = output.trace;
    if let Some(dir) = &out_dir {
        std::fs::rename(dir.join(".trace.jsonl.partial"), dir.join("trace.jsonl")).map_err(|e| {
            Failure::new(
                exit::INTERNAL,
                format!("cannot write {}: {e}", dir.join("trace.jsonl").display()),
            )
        })?;
        write_atomic(&dir.join("scenario.toml"), scenario.source_text.as_bytes())?;
        let json = pretty_json(&report)?;
        write_atomic(&dir.join("report.json"), format!("{json}\n").as_bytes())?;
        if args.check_determinism {
            trace_bytes =
                std::fs::read(dir.join("trace.jsonl")).map_err(|e| Failure::new(exit::INTERNAL, e.to_string()))?;
        }
    }

    print_report(&report, args.json)?;
    if args.shrink && !report.passed() {
        shrink_seed(&args.file, &scenario, seed, args.shrink_out.as_deref())?;
    }
    if args.check_determinism {
        let status = check_determinism(args, seed, &report, &trace_bytes)?;
        if status != exit::OK {
            return Ok(status);
        }
    }
    Ok(if report.passed() { exit::OK } else { exit::RUN_FAILED })
}

fn print_report(report: &RunReport, json: bool) -> Result<(), Failure> {
    let text = if json {
        let mut text = pretty_json(report)?;
        text.push('\n');
        text
    } else {
        report.summary()
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    Ok(())
}

/// Reruns the seed in a fresh process on the other runtime flavour and compares the traces.
fn check_determinism(args: &RunArgs, seed: u64, report: &RunReport, trace: &[u8]) -> Result<u8, Failure> {
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
    for (flag, value) in [
        ("--max-events", args.max_events.map(|n| n.to_string())),
        ("--max-queue-len", args.max_queue_len.map(|n| n.to_string())),
        ("--max-virtual-time", args.max_virtual_time.clone()),
    ] {
        if let Some(value) = value {
            command.arg(flag).arg(value);
        }
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

fn compare(args: &CompareArgs) -> Result<u8, Failure> {
    let seeds = parse_seed_range(&args.seeds).map_err(|e| Failure::new(exit::BAD_INPUT, e))?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut summaries = Vec::new();
    for file in [&args.a, &args.b] {
        let scenario = load(file)?;
        let results = crate::sweep::run_seeds(&scenario, seeds.clone().collect(), jobs, &mut |_, _| {})?;
        summaries.push(crate::sweep::summarize(
            &scenario,
            &shell_quote(&file.display().to_string()),
            &results,
            &seeds,
        ));
    }
    let b = summaries.pop().expect("two summaries");
    let a = summaries.pop().expect("two summaries");
    let comparison = crate::sweep::compare::Comparison::new(a, b);
    if args.json {
        let text = pretty_json(&comparison)?;
        println!("{text}");
    } else {
        print!("{}", comparison.text());
    }
    Ok(exit::OK)
}

/// Shrinks a failing seed and writes the standalone scenario; prints what it found on stderr.
fn shrink_seed(file: &Path, scenario: &Arc<Scenario>, seed: u64, out: Option<&Path>) -> Result<(), Failure> {
    let Some(shrunk) = crate::sweep::shrink::shrink(scenario, seed)? else {
        return Ok(());
    };
    let stem = file
        .file_stem()
        .map_or("scenario".into(), |s| s.to_string_lossy().into_owned());
    let path = out.map_or_else(
        || PathBuf::from(format!("{stem}.shrunk-seed{seed}.toml")),
        Path::to_path_buf,
    );
    write_atomic(&path, shrunk.scenario_text.as_bytes())?;
    let kinds: Vec<String> = shrunk
        .faults
        .iter()
        .map(|f| {
            format!(
                "{} on {} (message {})",
                f.kind.name(),
                f.target,
                f.trigger.on_message.unwrap_or(0)
            )
        })
        .collect();
    eprintln!(
        "shrink: seed {seed} breaks \"{}\"; {} fault(s) fired, {} needed ({} runs): {}\n  wrote {}\n  replay: agentsim run {} --seed {seed}",
        shrunk.breaks,
        shrunk.before,
        shrunk.faults.len(),
        shrunk.runs,
        if kinds.is_empty() { "none — it fails without any fault".to_owned() } else { kinds.join(", ") },
        path.display(),
        shell_quote(&path.display().to_string()),
    );
    Ok(())
}

/// Parses `I/N` (shard I of N, from 0).
fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let expected = || format!("--shard: expected I/N with 0 <= I < N, such as 0/4, found \"{text}\"");
    let (i, n) = text.split_once('/').ok_or_else(expected)?;
    let (i, n): (u64, u64) = (
        i.trim().parse().map_err(|_| expected())?,
        n.trim().parse().map_err(|_| expected())?,
    );
    if n == 0 || i >= n {
        return Err(expected());
    }
    Ok((i, n))
}

fn merge(paths: &[PathBuf], json: bool) -> Result<u8, Failure> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path)
                .map_err(|e| Failure::new(exit::BAD_INPUT, format!("{}: {e}", path.display())))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("shard-") && n.ends_with(".json"))
                })
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut shards: Vec<crate::sweep::Shard> = Vec::new();
    for file in &files {
        let bytes =
            std::fs::read(file).map_err(|e| Failure::new(exit::BAD_INPUT, format!("{}: {e}", file.display())))?;
        let shard: crate::sweep::Shard = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::new(
                exit::BAD_INPUT,
                format!(
                    "{}:{}:{}: expected a shard written by `agentsim sweep --shard`: {e}",
                    file.display(),
                    e.line(),
                    e.column()
                ),
            )
        })?;
        if shard.format != crate::sweep::SHARD_FORMAT {
            return Err(Failure::new(
                exit::BAD_INPUT,
                format!(
                    "{}: expected format {}, found {}",
                    file.display(),
                    crate::sweep::SHARD_FORMAT,
                    shard.format
                ),
            ));
        }
        shards.push(shard);
    }
    let Some(first) = shards.first() else {
        return Err(Failure::new(
            exit::BAD_INPUT,
            "no shard files found (expected shard-I-of-N.json)",
        ));
    };
    let (count, seeds_text, hash) = (first.count, first.seeds.clone(), first.scenario_hash.clone());
    let mut present = vec![false; count as usize];
    for shard in &shards {
        if shard.count != count || shard.seeds != seeds_text || shard.scenario_hash != hash {
            return Err(Failure::new(
                exit::BAD_INPUT,
                "the shards belong to different sweeps (scenario, seed range or shard count differ)",
            ));
        }
        if std::mem::replace(&mut present[shard.index as usize], true) {
            return Err(Failure::new(
                exit::BAD_INPUT,
                format!("shard {}/{count} appears twice", shard.index),
            ));
        }
    }
    if let Some(missing) = present.iter().position(|p| !p) {
        return Err(Failure::new(
            exit::BAD_INPUT,
            format!("shard {missing}/{count} is missing"),
        ));
    }
    let seeds = parse_seed_range(&seeds_text).map_err(|e| Failure::new(exit::BAD_INPUT, e))?;
    let scenario =
        scenario::parse(&first.file, &first.scenario_text).map_err(|e| Failure::new(exit::BAD_INPUT, e.to_string()))?;
    let file = first.file.clone();
    let mut results: Vec<crate::sweep::SeedResult> = shards.into_iter().flat_map(|s| s.results).collect();
    results.sort_by_key(|r| r.seed);
    let summary = crate::sweep::summarize(&scenario, &file, &results, &seeds);
    if json {
        let text = pretty_json(&summary)?;
        println!("{text}");
    } else {
        print!("{}", summary.text());
    }
    Ok(if summary.invariants.iter().all(|i| i.pass_rate >= 1.0) {
        exit::OK
    } else {
        exit::RUN_FAILED
    })
}

/// Parses `A..B` (B exclusive) or `N` (for `0..N`).
pub fn parse_seed_range(text: &str) -> Result<std::ops::Range<u64>, String> {
    let expected = || format!("--seeds: expected a range such as 0..1000 or a count such as 1000, found \"{text}\"");
    let range = match text.split_once("..") {
        Some((a, b)) => a.trim().parse().map_err(|_| expected())?..b.trim().parse().map_err(|_| expected())?,
        None => 0..text.trim().parse().map_err(|_| expected())?,
    };
    if range.start >= range.end {
        return Err(format!("--seeds: expected a non-empty range, found \"{text}\""));
    }
    Ok(range)
}

fn sweep(args: &SweepArgs) -> Result<u8, Failure> {
    use std::io::IsTerminal;
    let scenario = load(&args.file)?;
    let seeds = parse_seed_range(&args.seeds).map_err(|e| Failure::new(exit::BAD_INPUT, e))?;
    if !(0.0..=1.0).contains(&args.recheck) {
        return Err(Failure::new(
            exit::BAD_INPUT,
            format!("--recheck: expected a fraction between 0 and 1, found {}", args.recheck),
        ));
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let file = shell_quote(&args.file.display().to_string());
    let shard = args
        .shard
        .as_deref()
        .map(parse_shard)
        .transpose()
        .map_err(|e| Failure::new(exit::BAD_INPUT, e))?;
    let seed_list = match shard {
        Some((index, count)) => {
            if args.out.is_none() {
                return Err(Failure::new(
                    exit::BAD_INPUT,
                    "--shard needs --out DIR to write its partial result",
                ));
            }
            crate::sweep::shard_seeds(&seeds, index, count)
        }
        None => seeds.clone().collect(),
    };
    let total = seed_list.len() as u64;
    let show_progress = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let mut progress = |done: u64, failed: u64| {
        if show_progress && (done % 50 == 0 || done == total) {
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
            eprint!("\r  {done}/{total} seeds · {rate:.0} seeds/s · {failed} failing   ");
            if done == total {
                eprintln!();
            }
        }
    };
    let results = crate::sweep::run_seeds(&scenario, seed_list, jobs, &mut progress)?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::new(exit::BAD_INPUT, format!("cannot create {}: {e}", dir.display())))?;
        if let Some((index, count)) = shard {
            let partial = crate::sweep::Shard {
                format: crate::sweep::SHARD_FORMAT.to_owned(),
                agentsim_version: env!("CARGO_PKG_VERSION").to_owned(),
                file: file.clone(),
                scenario_hash: scenario.source_hash.clone(),
                scenario_text: scenario.source_text.clone(),
                seeds: format!("{}..{}", seeds.start, seeds.end),
                index,
                count,
                results: results.clone(),
            };
            let json = serde_json::to_string(&partial).map_err(|e| Failure::new(exit::INTERNAL, e.to_string()))?;
            write_atomic(&dir.join(format!("shard-{index}-of-{count}.json")), json.as_bytes())?;
        }
    }
    let mut summary = crate::sweep::summarize(&scenario, &file, &results, &seeds);
    if args.recheck > 0.0 {
        let step = (1.0 / args.recheck).round().max(1.0) as usize;
        for result in results.iter().step_by(step) {
            let output = std::process::Command::new(
                std::env::current_exe().map_err(|e| Failure::new(exit::INTERNAL, e.to_string()))?,
            )
            .args([
                "run",
                &args.file.display().to_string(),
                "--seed",
                &result.seed.to_string(),
                "--json",
                "--runtime",
                "multi",
            ])
            .output()
            .map_err(|e| Failure::new(exit::INTERNAL, format!("cannot start a recheck: {e}")))?;
            let report: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|_| {
                Failure::new(
                    exit::INTERNAL,
                    format!("the recheck of seed {} printed no report", result.seed),
                )
            })?;
            if report["digest"].as_str() != Some(result.digest.as_str()) {
                eprintln!(
                    "determinism: MISMATCH — seed {} gave digest {} in the sweep and {} in a fresh process\n  replay: agentsim run {file} --seed {} --check-determinism",
                    result.seed, result.digest, report["digest"], result.seed
                );
                return Ok(exit::NONDETERMINISM);
            }
            summary.digests_checked += 1;
        }
    }
    if let Some(path) = &args.junit {
        write_atomic(path, summary.junit().as_bytes())?;
    }
    if let (Some(dir), None) = (&args.out, shard) {
        let json = pretty_json(&summary)?;
        write_atomic(&dir.join("summary.json"), format!("{json}\n").as_bytes())?;
    }
    let text = if args.json {
        let mut text = pretty_json(&summary)?;
        text.push('\n');
        text
    } else {
        summary.text()
    };
    print!("{text}");
    if args.shrink {
        if let Some(first) = results.iter().find(|r| !r.passed) {
            shrink_seed(&args.file, &scenario, first.seed, None)?;
        }
    }
    let min_pass_rate = args.min_pass_rate.unwrap_or(1.0);
    let held = summary.invariants.iter().all(|i| i.pass_rate >= min_pass_rate);
    Ok(if held { exit::OK } else { exit::RUN_FAILED })
}

fn list_faults(json: bool) -> Result<u8, Failure> {
    use crate::faults::catalogue::{CATALOGUE, TRIGGER_PARAMS};
    if json {
        let text = pretty_json(CATALOGUE)?;
        println!("{text}");
        return Ok(exit::OK);
    }
    let mut out = String::new();
    for entry in CATALOGUE {
        let layer = serde_json::to_value(entry.layer)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        out.push_str(&format!("{:<28} {:<9} {}\n", entry.kind, layer, entry.models));
        for p in entry.params {
            out.push_str(&format!(
                "{:<28} {:<9}   {} = {} — {}\n",
                "", "", p.name, p.default, p.meaning
            ));
        }
    }
    out.push_str("\nEvery fault also takes these trigger settings:\n");
    for p in TRIGGER_PARAMS {
        out.push_str(&format!("  {:<12} {:<10} {}\n", p.name, p.default, p.meaning));
    }
    print!("{out}");
    Ok(exit::OK)
}

fn bench(args: &BenchArgs) -> Result<u8, Failure> {
    let scenario = load(&args.file)?;
    let options = crate::bench::BenchOptions {
        iters: args.iters,
        warmup: args.warmup,
        trace: args.trace,
        flavor: args.runtime.flavor(),
        seed: args.seed.unwrap_or(scenario.seed),
    };
    let report = crate::bench::bench(scenario, &options)?;
    let text = if args.json {
        let mut text = pretty_json(&report)?;
        text.push('\n');
        text
    } else {
        report.summary()
    };
    print!("{text}");
    Ok(exit::OK)
}

fn replay(dir: &Path, runtime: RuntimeFlavor) -> Result<u8, Failure> {
    let trace_path = dir.join("trace.jsonl");
    let recorded = std::fs::read(&trace_path).map_err(|e| {
        Failure::new(
            exit::BAD_INPUT,
            format!("{}: cannot read the recorded trace: {e}", trace_path.display()),
        )
    })?;
    let header = reader::header(&recorded).ok_or_else(|| {
        Failure::new(
            exit::BAD_INPUT,
            format!(
                "{}:1:1: expected a header record as the first line",
                trace_path.display()
            ),
        )
    })?;
    let seed = header.get("seed").and_then(|s| s.as_u64()).ok_or_else(|| {
        Failure::new(
            exit::BAD_INPUT,
            format!("{}:1:1: expected a numeric `seed` in the header", trace_path.display()),
        )
    })?;
    let scenario = load(&dir.join("scenario.toml"))?;
    let recorded_hash = header.get("scenario_hash").and_then(|h| h.as_str()).unwrap_or("");
    if recorded_hash != scenario.source_hash {
        return Err(Failure::new(
            exit::BAD_INPUT,
            format!(
                "{}: the scenario file changed since the run (hash {} in the trace, {} now)",
                dir.join("scenario.toml").display(),
                recorded_hash,
                scenario.source_hash
            ),
        ));
    }
    let limits = read_limits(&header).unwrap_or(scenario.limits);
    let options = RunOptions {
        seed,
        flavor: runtime.flavor(),
        trace: TraceMode::Memory,
        limits: Some(limits),
        replay_command: format!("agentsim replay {}", shell_quote(&dir.display().to_string())),
    };
    let output = kernel::run(scenario, &options)?;
    match reader::first_divergence(&recorded, &output.trace) {
        None => {
            println!(
                "replay: OK — {} records, digest {} matches",
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
fn read_limits(header: &serde_json::Value) -> Option<scenario::Limits> {
    let field = |key: &str| header.get(key).and_then(|v| v.as_u64());
    Some(scenario::Limits {
        max_events: field("max_events")?,
        max_virtual_time_us: field("max_virtual_time_us")?,
        max_queue_len: field("max_queue_len")?,
    })
}

fn prepare_out_dir(dir: &Path, force: bool) -> Result<PathBuf, Failure> {
    if dir.join("trace.jsonl").exists() && !force {
        return Err(Failure::new(
            exit::BAD_INPUT,
            format!(
                "{} already holds a run; pass --force to overwrite it, or choose another --out",
                dir.display()
            ),
        ));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::new(exit::BAD_INPUT, format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir.to_path_buf())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let partial = path.with_extension("partial");
    let fail = |e: std::io::Error| Failure::new(exit::INTERNAL, format!("cannot write {}: {e}", path.display()));
    std::fs::write(&partial, bytes).map_err(fail)?;
    std::fs::rename(&partial, path).map_err(fail)
}
