//! `agentsim sweep`, `compare` and `merge`: many seeds, summarised.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::shrink::shrink_seed;
use super::{
    exit, finish_run_dir, interrupt_flag, load, pretty_json, shell_quote, write_atomic, CompareArgs, Failure, SweepArgs,
};
use crate::scenario::{self, Scenario};

pub(super) fn sweep(args: &SweepArgs) -> Result<u8, Failure> {
    let scenario = load(&args.file)?;
    if args.impact {
        super::impact_needs_mock_models(&scenario, &args.file, "each seed once per fault that fired")?;
    }
    let seeds = parse_seed_range(&args.seeds).map_err(|e| Failure::new(exit::BAD_INPUT, e))?;
    if !(0.0..=1.0).contains(&args.recheck) {
        return Err(Failure::new(
            exit::BAD_INPUT,
            format!("--recheck: expected a fraction between 0 and 1, found {}", args.recheck),
        ));
    }
    let jobs = args.jobs.unwrap_or_else(default_jobs);
    super::prepare_output_files(
        &[&args.file],
        &[("--junit", args.junit.as_deref()), ("--html", args.html.as_deref())],
    )?;
    let file = shell_quote(&args.file.display().to_string());
    let shard = args
        .shard
        .as_deref()
        .map(parse_shard)
        .transpose()
        .map_err(|e| Failure::new(exit::BAD_INPUT, e))?;
    if shard.is_some() && args.out.is_none() {
        return Err(Failure::new(
            exit::BAD_INPUT,
            "--shard needs --out DIR to write its partial result",
        ));
    }
    let (index, count) = shard.unwrap_or((0, 1));
    check_seed_count(crate::sweep::shard_len(&seeds, index, count), shard.is_some())?;
    let seed_list = crate::sweep::shard_seeds(&seeds, index, count);
    let total = seed_list.len() as u64;
    let (results, stopped) = run_unfinished_seeds(args, &scenario, &seeds, shard, seed_list, jobs)?;
    if stopped {
        let kept = match &args.out {
            Some(dir) => format!(
                "; they are kept in {} and `--resume` (same arguments) runs the rest",
                dir.join(crate::sweep::journal::file_name(shard)).display()
            ),
            None => "; with --out DIR they would be kept for --resume".to_owned(),
        };
        eprintln!("\ninterrupted: {} of {total} seeds finished{kept}", results.len());
        return Ok(exit::INTERRUPTED);
    }
    if let (Some(dir), Some((index, count))) = (&args.out, shard) {
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
    let mut summary = crate::sweep::summarize(&scenario, &file, &results, &seeds);
    if args.recheck > 0.0 {
        if let Some(status) = recheck_digests(args, &file, &results, &mut summary)? {
            return Ok(status);
        }
    }
    let text = if args.json {
        let mut text = pretty_json(&summary)?;
        text.push('\n');
        text
    } else {
        summary.text()
    };
    // The result first: a file that cannot be written after all must not hide it (and a reader
    // that went away does not stop the files).
    super::print_result(&text);
    write_sweep_files(args, shard, &summary, &scenario, &results)?;
    if args.shrink {
        if let Some(seed) = seed_to_shrink(args.shrink_for.as_deref(), &scenario, &results)? {
            let out = super::shrink::ShrinkOut::pick(args.shrink_out.as_deref(), args.out.as_deref());
            shrink_seed(&args.file, &scenario, seed, args.shrink_for.as_deref(), out)?;
        }
    }
    let min_pass_rate = args.min_pass_rate.unwrap_or(1.0);
    let held = summary.invariants.iter().all(|i| i.pass_rate >= min_pass_rate);
    Ok(if held { exit::OK } else { exit::RUN_FAILED })
}

/// The first failing seed, or with `--shrink-for NAME` the first seed that broke NAME; an error
/// listing the broken invariants when no seed broke NAME.
fn seed_to_shrink(
    invariant: Option<&str>,
    scenario: &Scenario,
    results: &[crate::sweep::SeedResult],
) -> Result<Option<u64>, Failure> {
    let Some(name) = invariant else {
        return Ok(results.iter().find(|r| !r.passed).map(|r| r.seed));
    };
    let broke = |index: usize| results.iter().find(|r| r.invariants.get(index) == Some(&false));
    let index = scenario.invariants.iter().position(|i| i.name == name);
    if let Some(first) = index.and_then(broke) {
        return Ok(Some(first.seed));
    }
    let broken: Vec<String> = (0..scenario.invariants.len())
        .filter(|index| broke(*index).is_some())
        .map(|index| scenario.invariants[index].name.clone())
        .collect();
    Err(Failure::new(
        exit::BAD_INPUT,
        format!(
            "--shrink-for \"{name}\": no seed broke an invariant of that name; {}",
            crate::sweep::shrink::broken_list(&broken)
        ),
    ))
}

/// Runs the seeds of `seed_list` the journal does not already hold, showing progress on a
/// terminal and journalling each result; returns all results in seed order, and whether a
/// signal stopped the sweep.
fn run_unfinished_seeds(
    args: &SweepArgs,
    scenario: &Arc<Scenario>,
    seeds: &std::ops::Range<u64>,
    shard: Option<(u64, u64)>,
    seed_list: Vec<u64>,
    jobs: usize,
) -> Result<(Vec<crate::sweep::SeedResult>, bool), Failure> {
    use std::io::IsTerminal;
    let total = seed_list.len() as u64;
    let show_progress = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let mut reruns = 0u64;
    let mut progress = |done: u64, failed: u64, impact_reruns: u64| {
        reruns += impact_reruns;
        if show_progress && (done % 50 == 0 || done == total || args.impact) {
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let impact = if args.impact {
                format!(" · {reruns} impact reruns")
            } else {
                String::new()
            };
            eprint!("\r  {done}/{total} seeds · {rate:.0} seeds/s · {failed} failing{impact}   ");
            if done == total {
                eprintln!();
            }
        }
    };
    let (mut journal, done) = open_journal(args, scenario, seeds, shard)?;
    let done_seeds: std::collections::BTreeSet<u64> = done.iter().map(|r| r.seed).collect();
    let remaining: Vec<u64> = seed_list.into_iter().filter(|s| !done_seeds.contains(s)).collect();
    let already = done.len() as u64;
    let failed_before = done.iter().filter(|r| !r.passed).count() as u64;
    let mut on_result = |result: &crate::sweep::SeedResult, finished: u64, failed: u64| {
        progress(already + finished, failed_before + failed, result.impact.len() as u64);
        match &mut journal {
            Some(journal) => journal.append(result).map_err(crate::run::RunError::Internal),
            None => Ok(()),
        }
    };
    let (new_results, stopped) = crate::sweep::run_seeds_until(
        scenario,
        remaining,
        jobs,
        args.impact,
        Some(interrupt_flag()),
        &mut on_result,
    )?;
    if let Some(journal) = &mut journal {
        journal.sync().map_err(|e| Failure::new(exit::INTERNAL, e))?;
    }
    let mut results = done;
    results.extend(new_results);
    results.sort_by_key(|r| r.seed);
    Ok((results, stopped))
}

/// `--recheck`: reruns a fraction of the seeds in fresh processes on the other runtime and
/// counts the digests that match; returns the exit status when one does not.
fn recheck_digests(
    args: &SweepArgs,
    file: &str,
    results: &[crate::sweep::SeedResult],
    summary: &mut crate::sweep::SweepSummary,
) -> Result<Option<u8>, Failure> {
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
            return Ok(Some(exit::NONDETERMINISM));
        }
        summary.digests_checked += 1;
    }
    Ok(None)
}

/// The files a sweep writes: `--junit`, and with `--out` (not for a shard) the summary, the
/// failing runs and the report; `--html`.
fn write_sweep_files(
    args: &SweepArgs,
    shard: Option<(u64, u64)>,
    summary: &crate::sweep::SweepSummary,
    scenario: &Arc<Scenario>,
    results: &[crate::sweep::SeedResult],
) -> Result<(), Failure> {
    if let Some(path) = &args.junit {
        write_atomic(path, summary.junit().as_bytes())?;
    }
    if let (Some(dir), None) = (&args.out, shard) {
        let json = pretty_json(summary)?;
        write_atomic(&dir.join("summary.json"), format!("{json}\n").as_bytes())?;
        let run_reports = write_failing_runs(dir, scenario, results)?;
        let html = crate::render::html::render_sweep(summary, results, &run_reports);
        write_atomic(&dir.join("report.html"), html.as_bytes())?;
    }
    if let Some(path) = &args.html {
        let html = crate::render::html::render_sweep(summary, results, &BTreeMap::new());
        write_atomic(path, html.as_bytes())?;
    }
    Ok(())
}

/// With `--out`, the sweep's journal: a fresh one, or with `--resume` the one already there and
/// the results it holds.
#[allow(clippy::type_complexity)]
fn open_journal(
    args: &SweepArgs,
    scenario: &Scenario,
    seeds: &std::ops::Range<u64>,
    shard: Option<(u64, u64)>,
) -> Result<(Option<crate::sweep::journal::Journal>, Vec<crate::sweep::SeedResult>), Failure> {
    use crate::sweep::journal::{file_name, Journal, JournalHeader, JOURNAL_FORMAT};
    let Some(dir) = &args.out else {
        if args.resume {
            return Err(Failure::new(
                exit::BAD_INPUT,
                "--resume needs --out DIR, where the sweep keeps its results",
            ));
        }
        return Ok((None, Vec::new()));
    };
    let path = dir.join(file_name(shard));
    let header = JournalHeader {
        format: JOURNAL_FORMAT.to_owned(),
        agentsim_version: env!("CARGO_PKG_VERSION").to_owned(),
        scenario_hash: scenario.source_hash.clone(),
        seeds: format!("{}..{}", seeds.start, seeds.end),
        shard: shard.map(|(index, count)| format!("{index}/{count}")),
        impact: args.impact,
    };
    // With nothing to resume, --resume starts the sweep: a retried batch job can always pass it.
    if args.resume && path.exists() {
        let (journal, results) = Journal::resume(&path, &header).map_err(|e| Failure::new(exit::BAD_INPUT, e))?;
        return Ok((Some(journal), results));
    }
    if path.exists() && !args.force {
        return Err(Failure::new(
            exit::BAD_INPUT,
            format!(
                "{} already holds the results of a sweep (results.jsonl); pass --resume to finish it, --force to start over, or choose another --out",
                dir.display()
            ),
        ));
    }
    if shard.is_none() {
        clear_sweep_dir(dir, args.force)?;
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::new(exit::BAD_INPUT, format!("cannot create {}: {e}", dir.display())))?;
    let journal = Journal::create(&path, &header).map_err(|e| Failure::new(exit::INTERNAL, e))?;
    Ok((Some(journal), Vec::new()))
}

/// A new sweep in `dir` (not a shard): the summary, the report and the failing runs of an
/// earlier sweep there are refused without `--force`, and removed with it, so that none of them
/// is taken for this sweep's.
fn clear_sweep_dir(dir: &Path, force: bool) -> Result<(), Failure> {
    let runs = dir.join("runs");
    let held: Vec<&str> = [
        ("summary.json", dir.join("summary.json")),
        ("report.html", dir.join("report.html")),
        ("runs/", runs.clone()),
    ]
    .iter()
    .filter(|(_, path)| path.exists())
    .map(|(name, _)| *name)
    .collect();
    if held.is_empty() {
        return Ok(());
    }
    if !force {
        return Err(Failure::new(
            exit::BAD_INPUT,
            format!(
                "{} already holds {} of another sweep, which this one would overwrite; pass --force to start over, or choose another --out",
                dir.display(),
                held.join(", ")
            ),
        ));
    }
    let fail = |e: std::io::Error| Failure::new(exit::BAD_INPUT, format!("cannot clear {}: {e}", runs.display()));
    if runs.is_dir() {
        // Only the seeds' run directories this command writes; anything else stays.
        for entry in std::fs::read_dir(&runs).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            if entry.file_name().to_string_lossy().starts_with("seed-") && entry.path().is_dir() {
                std::fs::remove_dir_all(entry.path()).map_err(fail)?;
            }
        }
    }
    Ok(())
}

pub(super) fn compare(args: &CompareArgs) -> Result<u8, Failure> {
    let seeds = parse_seed_range(&args.seeds).map_err(|e| Failure::new(exit::BAD_INPUT, e))?;
    check_seed_count(seeds.end - seeds.start, false)?;
    super::prepare_output_files(&[&args.a, &args.b], &[("--html", args.html.as_deref())])?;
    let jobs = args.jobs.unwrap_or_else(default_jobs);
    let mut summaries = Vec::new();
    let mut all_results = Vec::new();
    for file in [&args.a, &args.b] {
        let scenario = load(file)?;
        let results = crate::sweep::run_seeds(&scenario, seeds.clone().collect(), jobs, &mut |_, _| {})?;
        summaries.push(crate::sweep::summarize(
            &scenario,
            &shell_quote(&file.display().to_string()),
            &results,
            &seeds,
        ));
        all_results.push(results);
    }
    let b = summaries.pop().expect("two summaries");
    let a = summaries.pop().expect("two summaries");
    let comparison = crate::sweep::compare::Comparison::new(a, b);
    if comparison.invariants.is_empty() {
        eprintln!(
            "compare: {} and {} have no invariant of the same name, so no pass rate is compared (and the exit status cannot say B is worse); give both designs the invariants you compare them on",
            args.a.display(),
            args.b.display()
        );
    }
    if let Some(path) = &args.html {
        let html = crate::render::html::render_comparison(&comparison, &all_results[0], &all_results[1]);
        write_atomic(path, html.as_bytes())?;
    }
    if args.json {
        let text = pretty_json(&comparison)?;
        println!("{text}");
    } else {
        print!("{}", comparison.text());
    }
    // B significantly worse than A on an invariant is a failed comparison, as a broken invariant
    // is a failed run.
    Ok(if comparison.b_significantly_worse {
        exit::RUN_FAILED
    } else {
        exit::OK
    })
}

pub(super) fn merge(paths: &[PathBuf], json: bool, html: Option<&Path>) -> Result<u8, Failure> {
    let inputs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    super::prepare_output_files(&inputs, &[("--html", html)])?;
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
    if let Some(path) = html {
        let page = crate::render::html::render_sweep(&summary, &results, &BTreeMap::new());
        write_atomic(path, page.as_bytes())?;
    }
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

/// Failing seeds whose runs `sweep --out DIR` writes to `DIR/runs/seed-N/`, at most.
pub const FAILING_RUNS_WRITTEN_MAX: usize = 10;

/// Reruns the first failing seeds with their traces into `DIR/runs/seed-N/` (each a run
/// directory with its own report.html); returns seed → the report's path relative to `dir`.
/// The sweep owns `DIR/runs/`: a seed's directory is replaced by this sweep's run of it.
fn write_failing_runs(
    dir: &Path,
    scenario: &Arc<Scenario>,
    results: &[crate::sweep::SeedResult],
) -> Result<BTreeMap<u64, String>, Failure> {
    let mut links = BTreeMap::new();
    for result in results.iter().filter(|r| !r.passed).take(FAILING_RUNS_WRITTEN_MAX) {
        let relative = format!("runs/seed-{}", result.seed);
        let run_dir = dir.join(&relative);
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| Failure::new(exit::INTERNAL, format!("cannot create {}: {e}", run_dir.display())))?;
        let options = crate::run::RunOptions {
            seed: result.seed,
            flavor: crate::run::Flavor::CurrentThread,
            trace: crate::trace::TraceMode::File(run_dir.join(".trace.jsonl.partial")),
            limits: None,
            replay_command: format!("agentsim replay {}", shell_quote(&run_dir.display().to_string())),
            cassette: Default::default(),
        };
        let output = crate::run::run(scenario.clone(), &options)?;
        if output.report.digest != result.digest {
            return Err(Failure::new(
                exit::NONDETERMINISM,
                format!(
                    "seed {} gave digest {} in the sweep and {} when rerun for its report",
                    result.seed, result.digest, output.report.digest
                ),
            ));
        }
        finish_run_dir(&run_dir, scenario, &output.report)?;
        links.insert(result.seed, format!("{relative}/report.html"));
    }
    Ok(links)
}

/// Parses `I/N` (shard I of N, from 0).
pub(super) fn parse_shard(text: &str) -> Result<(u64, u64), String> {
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

/// A process runs at most [`crate::sweep::SWEEP_SEEDS_MAX`] seeds: the results it keeps grow
/// with them.
fn check_seed_count(count: u64, sharded: bool) -> Result<(), Failure> {
    let max = crate::sweep::SWEEP_SEEDS_MAX;
    if count <= max {
        return Ok(());
    }
    let hint = if sharded {
        "use more shards"
    } else {
        "split the range into shards with --shard I/N --out DIR, then `agentsim merge`"
    };
    Err(Failure::new(
        exit::BAD_INPUT,
        format!(
            "--seeds: expected at most {max} seeds in one process (a sweep keeps about 1 KB per seed), found {count}; {hint}"
        ),
    ))
}

/// Parallel seeds when `--jobs` is not given: one per core.
fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
