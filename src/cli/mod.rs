//! The command line, over the library: argument types, dispatch, exit statuses and the helpers
//! the commands share. Each family of commands lives in its own module.

mod info;
mod proxy;
mod run;
mod shrink;
mod sweep;

pub use sweep::parse_seed_range;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use crate::report::RunReport;
use crate::run::{Flavor, RunError};
use crate::scenario::{self, Scenario};

/// Exit statuses, documented in the README.
pub mod exit {
    /// The run completed and every invariant held (or: the file is valid, the replay matched).
    pub const OK: u8 = 0;
    /// The run finished but failed: an invariant broke, or the outcome was not `completed`.
    pub const RUN_FAILED: u8 = 1;
    /// Bad input: a scenario error, a bad flag, a missing file (or, with `validate
    /// --deny-warnings`, a warning).
    pub const BAD_INPUT: u8 = 2;
    /// Determinism error: a rerun or replay gave a different trace.
    pub const NONDETERMINISM: u8 = 3;
    /// agentsim itself failed (I/O, internal error).
    pub const INTERNAL: u8 = 4;
    /// SIGINT or SIGTERM stopped the run (or sweep) cleanly; what it wrote is whole (128 + SIGINT).
    pub const INTERRUPTED: u8 = 130;
    /// Whoever read the output stopped reading (`agentsim validate … | head`): nothing more is
    /// printed, and the files already written are whole (128 + SIGPIPE, as a shell reports it).
    pub const OUTPUT_CLOSED: u8 = 141;
}

/// Prints a command's result on stdout, come what may: a reader that went away must not stop
/// the files still to be written, nor change the command's status.
pub(crate) fn print_result(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Printing to a closed pipe ends the process quietly with [`exit::OUTPUT_CLOSED`] instead of
/// a panic's message and status: the standard library panics when `println!` meets `EPIPE`
/// (it ignores SIGPIPE, so that sockets and child pipes report errors instead of killing the
/// process). Files are written whole or not at all (`write_atomic`), so none is left half done.
pub fn end_quietly_when_output_closes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        let closed = message.starts_with("failed printing to std") && message.contains("Broken pipe");
        if closed {
            std::process::exit(i32::from(exit::OUTPUT_CLOSED));
        }
        default(info);
    }));
}

/// A flag that SIGINT and SIGTERM set to their signal number. A second signal ends the process
/// at once (status 130), for a run that does not reach its next event boundary.
pub(crate) fn interrupt_flag() -> Arc<std::sync::atomic::AtomicUsize> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let signal = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for number in [SIGINT, SIGTERM] {
        // Registration order is call order: the shutdown check sees the flag of an earlier signal.
        let registered = signal_hook::flag::register_conditional_shutdown(number, 130, seen.clone())
            .and_then(|_| signal_hook::flag::register(number, seen.clone()))
            .and_then(|_| signal_hook::flag::register_usize(number, signal.clone(), number as usize));
        if let Err(e) = registered {
            eprintln!("warning: cannot catch signal {number} ({e}); an interrupted run will lose its trace");
        }
    }
    signal
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
    /// Check scenario files; prints OK or FILE:LINE:COL errors, and warnings about settings
    /// that do nothing.
    Validate {
        /// Scenario files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Exit with status 2 when any file has a warning.
        #[arg(long)]
        deny_warnings: bool,
        /// Print every error and warning as a JSON array of {file, line, column, severity,
        /// message} on stdout, instead of OK lines and messages on stderr.
        #[arg(long)]
        json: bool,
    },
    /// Run a scenario once and print its summary.
    Run(RunArgs),
    /// List what agentsim knows: `agentsim list faults|prices|guardrails [--json]`.
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
        /// Also write the sweep's HTML report to this file.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Compare two designs under the same seeds and the same chaos.
    Compare(CompareArgs),
    /// Measure orchestration overhead: run a scenario repeatedly and time it (wall clock).
    Bench(BenchArgs),
    /// Write DIR/report.html (and, with --mermaid, a sequence diagram) for a run directory.
    Report {
        /// A directory written by `agentsim run --out DIR`.
        dir: PathBuf,
        /// Also write a Mermaid sequence diagram of the run to this file.
        #[arg(long)]
        mermaid: Option<PathBuf>,
    },
    /// Turn an OTLP/JSON trace (GenAI or OpenInference spans) into a scenario and a cassette
    /// that replay it.
    Import {
        /// An OTLP/JSON file (`{"resourceSpans": [...]}`, or one such object per line).
        trace: PathBuf,
        /// Directory to write scenario.toml and cassette.jsonl into.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite an existing import in --out.
        #[arg(long)]
        force: bool,
    },
    /// Put a real agent app under seeded chaos: an OpenAI-compatible HTTP proxy that injects the
    /// faults file's faults, records, replays and forks, and writes a trace and a report.
    Proxy(proxy::ProxyArgs),
    /// A stand-in OpenAI-compatible upstream (deterministic answers, tool calls, streams), for
    /// trying the proxy offline.
    StubUpstream(proxy::StubArgs),
    /// Rerun the run recorded in a directory written by `run --out` and compare traces.
    Replay {
        /// A directory written by `agentsim run --out DIR`.
        dir: PathBuf,
        /// Tokio runtime to replay on.
        #[arg(long, value_enum, default_value_t = RuntimeFlavor::Current)]
        runtime: RuntimeFlavor,
        /// How the run's cassette answers: strict (default) or fifo, as the run was made with
        /// `run --cassette-match fifo`.
        #[arg(long, value_enum)]
        cassette_match: Option<CassetteMatchArg>,
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
    /// Write trace.jsonl, report.json, report.html and scenario.toml to this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write a Mermaid sequence diagram of the run to this file (trimmed to a window on long runs).
    #[arg(long)]
    pub mermaid: Option<PathBuf>,
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
    #[arg(long, value_parser = parse_limit)]
    pub max_events: Option<u64>,
    /// Stop at this virtual time, e.g. "30m" (overrides the scenario's max_virtual_time).
    #[arg(long)]
    pub max_virtual_time: Option<String>,
    /// Stop when this many events are queued (overrides the scenario's max_queue_len).
    #[arg(long, value_parser = parse_limit)]
    pub max_queue_len: Option<u64>,
    /// Stop when one message carries more text than this many bytes (overrides max_message_bytes).
    #[arg(long, value_parser = parse_limit)]
    pub max_message_bytes: Option<u64>,
    /// Stop at the restart past this many, over all supervisors (overrides max_restarts_total).
    #[arg(long)]
    pub max_restarts_total: Option<u64>,
    /// Stop when a tool call without a tool_timeout waits this long, e.g. "10m" (overrides max_tool_wait).
    #[arg(long)]
    pub max_tool_wait: Option<String>,
    /// If the run fails, shrink its faults to a minimal set that still fails, and write it as a
    /// standalone scenario.
    #[arg(long)]
    pub shrink: bool,
    /// Where `--shrink` writes the scenario (default: NAME.shrunk-seedN.toml here).
    #[arg(long, requires = "shrink")]
    pub shrink_out: Option<PathBuf>,
    /// With `--shrink`: the broken invariant to shrink for (default: the first broken one).
    #[arg(long, value_name = "INVARIANT", requires = "shrink")]
    pub shrink_for: Option<String>,
    /// Answer live (and replay) models from this cassette instead of the network.
    #[arg(long, value_name = "FILE")]
    pub replay_cassette: Option<PathBuf>,
    /// How replayed requests are matched: strict (default: the scenario's) or fifo.
    #[arg(long, value_enum)]
    pub cassette_match: Option<CassetteMatchArg>,
    /// Also write the run as OTLP/JSON spans (OpenTelemetry GenAI conventions) to this file.
    #[arg(long, value_name = "FILE")]
    pub otlp: Option<PathBuf>,
    /// Do not ask live servers for `GET /models` before the run.
    #[arg(long)]
    pub no_endpoint_check: bool,
    /// After the run, rerun it once per fault firing with only that firing left out, and report
    /// what each one changed (mock models only).
    #[arg(long)]
    pub impact: bool,
}

/// `--cassette-match`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CassetteMatchArg {
    Strict,
    Fifo,
}

impl CassetteMatchArg {
    pub fn policy(self) -> scenario::CassetteMatch {
        match self {
            CassetteMatchArg::Strict => scenario::CassetteMatch::Strict,
            CassetteMatchArg::Fifo => scenario::CassetteMatch::Fifo,
        }
    }
}

/// Arguments of `agentsim sweep`.
#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// Scenario file (TOML).
    pub file: PathBuf,
    /// Seeds: `A..B` (B exclusive) or `N` for `0..N`.
    #[arg(long)]
    pub seeds: String,
    /// Parallel seeds, 1 to 1024 (default: the number of cores).
    #[arg(long, value_parser = parse_jobs)]
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
    /// Pass when every invariant holds in at least this fraction of runs, 0 to 1 (default: all).
    #[arg(long, value_parser = parse_fraction)]
    pub min_pass_rate: Option<f64>,
    /// Shrink the first failing seed to a minimal fault set (see `run --shrink`).
    #[arg(long)]
    pub shrink: bool,
    /// With `--shrink`: shrink the first seed that broke this invariant, for this invariant.
    #[arg(long, value_name = "INVARIANT", requires = "shrink")]
    pub shrink_for: Option<String>,
    /// Where `--shrink` writes the scenario (default: NAME.shrunk-seedN.toml in --out DIR when
    /// given, here otherwise).
    #[arg(long, requires = "shrink")]
    pub shrink_out: Option<PathBuf>,
    /// Run only shard I of N (every Nth seed from the I-th) and write a partial result to --out.
    #[arg(long)]
    pub shard: Option<String>,
    /// Write summary.json, report.html and the runs of the first failing seeds (runs/seed-N/,
    /// each with its own report.html) to this directory (with --shard, only shard-I-of-N.json),
    /// and each seed's result to results.jsonl as it finishes.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Finish an interrupted sweep: skip the seeds already in --out's results.jsonl (with none
    /// there, start the sweep).
    #[arg(long)]
    pub resume: bool,
    /// Start over in an --out directory that already holds a sweep's results.
    #[arg(long)]
    pub force: bool,
    /// Also write the sweep's HTML report to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Per fault that fired in a seed, rerun the seed without it and report, over the sweep,
    /// what each fault changed (one extra run per fault per seed, at most 20).
    #[arg(long)]
    pub impact: bool,
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
    /// Parallel seeds, 1 to 1024 (default: the number of cores).
    #[arg(long, value_parser = parse_jobs)]
    pub jobs: Option<usize>,
    /// Print the comparison as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the comparison as an HTML report (the two designs side by side) to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// Arguments of `agentsim bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Scenario file (TOML).
    pub file: PathBuf,
    /// Measured iterations (at least 1).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
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
    /// The price table: USD per million tokens (input, cached input, output) and its date.
    Prices,
    /// Guardrail check kinds (with the stages they work at), stages, actions and the
    /// failure-mode detectors invariants can use.
    Guardrails,
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
pub(crate) struct Failure {
    status: u8,
    message: String,
}

impl Failure {
    pub(crate) fn new(status: u8, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Failure {
        let status = match e {
            RunError::Setup(_) => exit::BAD_INPUT,
            _ => exit::INTERNAL,
        };
        Failure::new(status, e.to_string())
    }
}

/// Runs the CLI; returns the process exit status.
pub fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Validate {
            files,
            deny_warnings,
            json,
        } => info::validate(&files, deny_warnings, json),
        Command::Run(args) => run::run(&args),
        Command::Replay {
            dir,
            runtime,
            cassette_match,
        } => run::replay(&dir, runtime, cassette_match),
        Command::Report { dir, mermaid } => run::report(&dir, mermaid.as_deref()),
        Command::Import { trace, out, force } => run::import(&trace, &out, force),
        Command::Bench(args) => info::bench(&args),
        Command::Proxy(args) => proxy::proxy(&args),
        Command::StubUpstream(args) => proxy::stub(&args),
        Command::Sweep(args) => sweep::sweep(&args),
        Command::Compare(args) => sweep::compare(&args),
        Command::Merge { paths, json, html } => sweep::merge(&paths, json, html.as_deref()),
        Command::List {
            what: ListWhat::Faults,
            json,
        } => info::list_faults(json),
        Command::List {
            what: ListWhat::Prices,
            json,
        } => info::list_prices(json),
        Command::List {
            what: ListWhat::Guardrails,
            json,
        } => info::list_guardrails(json),
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
pub(crate) fn pretty_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(value).map_err(|e| Failure::new(exit::INTERNAL, e.to_string()))
}

/// `--impact` asks the models again what they were asked before: only mock models can answer.
pub(crate) fn impact_needs_mock_models(scenario: &Scenario, file: &Path, reruns: &str) -> Result<(), Failure> {
    if scenario.llms.iter().all(|l| l.mode == scenario::LlmMode::Mock) {
        return Ok(());
    }
    Err(Failure::new(
        exit::BAD_INPUT,
        format!(
            "--impact: {} has a live or replayed model; impact reruns {reruns}, which only mock models can answer",
            file.display()
        ),
    ))
}

pub(crate) fn load(path: &Path) -> Result<Arc<Scenario>, Failure> {
    scenario::load(path)
        .map(Arc::new)
        .map_err(|e| Failure::new(exit::BAD_INPUT, e.to_string()))
}

/// [`load`], printing the file's warnings to stderr (they do not stop anything).
pub(crate) fn load_and_warn(path: &Path) -> Result<Arc<Scenario>, Failure> {
    let (scenario, warnings) =
        scenario::load_with_warnings(path).map_err(|e| Failure::new(exit::BAD_INPUT, e.to_string()))?;
    if !warnings.is_empty() {
        eprintln!("{warnings}");
    }
    Ok(Arc::new(scenario))
}

pub(crate) fn shell_quote(text: &str) -> String {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@".contains(c)) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Checks an output file given by `flag` before any work: its directory is created if missing
/// (as `--out` is), and the path must not be a directory. A run then loses no result to a path
/// it could never have written.
pub(crate) fn prepare_output_file(flag: &str, path: &Path) -> Result<(), Failure> {
    if path.is_dir() {
        return Err(Failure::new(
            exit::BAD_INPUT,
            format!(
                "{flag}: expected a file to write, found the directory {}",
                path.display()
            ),
        ));
    }
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent).map_err(|e| {
            Failure::new(
                exit::BAD_INPUT,
                format!("{flag}: cannot create the directory {}: {e}", parent.display()),
            )
        }),
        _ => Ok(()),
    }
}

/// Refuses, without `force`, the directory given by `flag` when it holds one of `files`, which
/// `writer` would overwrite (a `trace.jsonl` means it holds a run), and a file in the
/// directory's place.
pub(crate) fn refuse_overwrite(
    flag: &str,
    dir: &Path,
    files: &[&str],
    force: bool,
    writer: &str,
) -> Result<(), Failure> {
    if dir.is_file() {
        return Err(Failure::new(
            exit::BAD_INPUT,
            format!("{flag}: expected a directory, found the file {}", dir.display()),
        ));
    }
    match files.iter().find(|f| dir.join(f).exists()) {
        Some(file) if !force => {
            let held = match *file {
                "trace.jsonl" => "a run".to_owned(),
                other => format!("{other}, which {writer} would overwrite"),
            };
            Err(Failure::new(
                exit::BAD_INPUT,
                format!(
                    "{} already holds {held}; pass --force to overwrite it, or choose another {flag}",
                    dir.display()
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// Checks each output file a command was given (see [`prepare_output_file`]), and refuses one
/// that is one of the command's `inputs`: writing there would destroy what it reads.
pub(crate) fn prepare_output_files(inputs: &[&Path], files: &[(&str, Option<&Path>)]) -> Result<(), Failure> {
    for (flag, path) in files {
        if let Some(path) = path {
            refuse_input_as_output(flag, path, inputs)?;
            prepare_output_file(flag, path)?;
        }
    }
    Ok(())
}

/// Refuses `path`, the file `flag` writes, when it is one of `inputs` (however either is
/// spelt), even with `--force`.
pub(crate) fn refuse_input_as_output(flag: &str, path: &Path, inputs: &[&Path]) -> Result<(), Failure> {
    let Ok(target) = path.canonicalize() else {
        return Ok(()); // not there yet: it cannot be an input
    };
    match inputs
        .iter()
        .find(|input| input.canonicalize().is_ok_and(|i| i == target))
    {
        Some(input) => {
            let same = if *input == path {
                String::new()
            } else {
                format!(" (as {})", input.display())
            };
            Err(Failure::new(
                exit::BAD_INPUT,
                format!(
                    "{flag} would write {}, which this command reads{same}: that would destroy it; choose another path",
                    path.display()
                ),
            ))
        }
        None => Ok(()),
    }
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let partial = path.with_extension("partial");
    let fail = |e: std::io::Error| Failure::new(exit::INTERNAL, format!("cannot write {}: {e}", path.display()));
    std::fs::write(&partial, bytes).map_err(fail)?;
    std::fs::rename(&partial, path).map_err(fail)
}

/// Completes a run directory whose trace the kernel wrote to `.trace.jsonl.partial`: the trace,
/// a copy of the scenario, report.json and report.html, each written atomically.
fn finish_run_dir(dir: &Path, scenario: &Scenario, report: &RunReport) -> Result<(), Failure> {
    std::fs::rename(dir.join(".trace.jsonl.partial"), dir.join("trace.jsonl")).map_err(|e| {
        Failure::new(
            exit::INTERNAL,
            format!("cannot write {}: {e}", dir.join("trace.jsonl").display()),
        )
    })?;
    write_atomic(&dir.join("scenario.toml"), scenario.source_text.as_bytes())?;
    // The tables' data files, so that the copy loads as the original did.
    for (relative, text) in &scenario.data_files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Failure::new(exit::INTERNAL, format!("cannot write {}: {e}", path.display())))?;
        }
        write_atomic(&path, text.as_bytes())?;
    }
    let json = pretty_json(report)?;
    write_atomic(&dir.join("report.json"), format!("{json}\n").as_bytes())?;
    let html = crate::render::html::render_run_dir(dir).map_err(|e| Failure::new(exit::INTERNAL, e))?;
    write_atomic(&dir.join("report.html"), html.as_bytes())
}

/// `--jobs`: one thread each, so a count the machine cannot start is refused up front.
fn parse_jobs(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(jobs @ 1..=1024) => Ok(jobs),
        _ => Err(format!(
            "expected a number of parallel seeds from 1 to 1024, found \"{text}\""
        )),
    }
}

/// A fraction from 0 to 1 (`--min-pass-rate`).
fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("expected a fraction from 0 to 1, found \"{text}\"")),
    }
}

/// A limit flag's count: at least 1, as the scenario's keys are.
fn parse_limit(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n @ 1..) => Ok(n),
        _ => Err(format!("expected a limit of at least 1, found \"{text}\"")),
    }
}
