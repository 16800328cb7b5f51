//! Sweeps: many seeds of one scenario, run in parallel (one scheduler per seed), summarised
//! into pass rates with confidence intervals, percentiles, fault coverage and failing seeds.

pub mod compare;
pub mod journal;
pub mod shrink;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use serde::Serialize;

use crate::catalogue::faults::CATALOGUE;
use crate::report::stats::{percentile_u64, wilson_95};
use crate::report::{Outcome, RunReport};
use crate::run::{self, RunError, RunOptions};
use crate::scenario::{Scenario, Traffic};

/// What one seed left behind: only what the summary needs, so memory stays small.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SeedResult {
    pub seed: u64,
    pub outcome: Outcome,
    pub passed: bool,
    /// One flag per invariant, in scenario order.
    pub invariants: Vec<bool>,
    pub virtual_time_us: u64,
    pub llm_calls: u64,
    pub tokens: u64,
    pub cost_pusd: u64,
    /// Fault kinds that fired, each once.
    pub faults: Vec<String>,
    pub digest: String,
    /// For each conversation, in order: answered? (the trials of pass^k)
    pub answered: Vec<bool>,
    /// Conversations per fate (`answered`, `lost`, …) in name order, fates with none left out;
    /// a JSON object in journals, absent in those of older versions. A vector, not a map: a
    /// sweep keeps one result per seed, and a map node has room for eleven.
    #[serde(default, with = "fate_counts")]
    pub fates: Vec<(String, u64)>,
    /// Violations per invariant, in scenario order; absent in journals of older versions.
    #[serde(default)]
    pub violations: Vec<u64>,
    /// Conversations that broke each invariant, in scenario order; absent in older journals.
    #[serde(default)]
    pub conversations_broken: Vec<u64>,
    /// User messages in all, and in the longest conversation; absent in older journals.
    #[serde(default)]
    pub user_turns_total: u64,
    #[serde(default)]
    pub user_turns_max: u64,
    /// With `--impact`: what each fault that fired changed, from a rerun without it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub impact: Vec<crate::report::impact::FaultImpact>,
    /// Per invariant, in scenario order: the conversations a goal checked (0 for other
    /// invariants); absent in older journals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goal_checked: Vec<u64>,
}

/// A seed's fate counts, written as a JSON object as the map they once were.
mod fate_counts {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(counts: &[(String, u64)], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(counts.iter().map(|(fate, n)| (fate, n)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<(String, u64)>, D::Error> {
        let counts = std::collections::BTreeMap::<String, u64>::deserialize(deserializer)?;
        Ok(counts.into_iter().collect())
    }
}

impl SeedResult {
    fn from_report(report: &RunReport) -> SeedResult {
        let mut faults: Vec<String> = report.faults.iter().map(|f| f.kind.clone()).collect();
        faults.sort();
        faults.dedup();
        SeedResult {
            seed: report.seed,
            outcome: report.outcome,
            passed: report.passed(),
            invariants: report.invariants.iter().map(|i| i.passed).collect(),
            virtual_time_us: report.virtual_time_us,
            llm_calls: report.llm_calls,
            tokens: report.tokens.total,
            cost_pusd: report.cost_pusd,
            faults,
            digest: report.digest.clone(),
            answered: report.answered.clone(),
            // Only the fates that happened: a sweep keeps one result per seed, and the summary
            // leaves out fates that never happened anyway.
            fates: report
                .fates
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            violations: report.invariants.iter().map(|i| i.violations).collect(),
            conversations_broken: report.invariants.iter().map(|i| i.conversations_broken).collect(),
            user_turns_total: report.user_turns.total,
            user_turns_max: report.user_turns.max as u64,
            impact: Vec::new(),
            goal_checked: match report.invariants.iter().any(|i| i.checked.is_some()) {
                true => report.invariants.iter().map(|i| i.checked.unwrap_or(0)).collect(),
                false => Vec::new(),
            },
        }
    }
}

/// Runs `seeds` on `jobs` threads; `progress` is called after each seed with (done, failed).
pub fn run_seeds(
    scenario: &Arc<Scenario>,
    seeds: Vec<u64>,
    jobs: usize,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<SeedResult>, RunError> {
    let mut on_result = |_: &SeedResult, done: u64, failed: u64| {
        progress(done, failed);
        Ok(())
    };
    Ok(run_seeds_until(scenario, seeds, jobs, false, None, &mut on_result)?.0)
}

/// [`run_seeds`] that stops taking new seeds once `stop` is non-zero (a signal arrived); seeds
/// already running finish. `on_result` sees each result as it comes, in completion order, with
/// (done, failed) so far — the place to persist it. Returns the results sorted by seed, and
/// whether the sweep stopped early.
pub fn run_seeds_until(
    scenario: &Arc<Scenario>,
    seeds: Vec<u64>,
    jobs: usize,
    impact: bool,
    stop: Option<Arc<AtomicUsize>>,
    on_result: &mut dyn FnMut(&SeedResult, u64, u64) -> Result<(), RunError>,
) -> Result<(Vec<SeedResult>, bool), RunError> {
    let total = seeds.len();
    let seeds = Arc::new(seeds);
    let next = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel::<Result<SeedResult, RunError>>();
    let mut workers = Vec::new();
    // More threads than seeds would only wait.
    for _ in 0..jobs.clamp(1, total.max(1)) {
        let (next, tx, scenario, seeds, stop) =
            (next.clone(), tx.clone(), scenario.clone(), seeds.clone(), stop.clone());
        // Seeds run in parallel on plain threads; each run has its own runtime and scheduler,
        // so the threads share nothing that reaches a trace.
        workers.push(std::thread::spawn(move || loop {
            if stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed) != 0) {
                return;
            }
            let index = next.fetch_add(1, Ordering::Relaxed) as usize;
            let Some(&seed) = seeds.get(index) else {
                return;
            };
            let options = RunOptions::new(seed);
            let result = run::run(scenario.clone(), &options).and_then(|o| {
                let mut result = SeedResult::from_report(&o.report);
                if impact {
                    result.impact = run::impact_by_fault(scenario.clone(), &options, &o.report)?;
                }
                Ok(result)
            });
            if tx.send(result).is_err() {
                return;
            }
        }));
    }
    drop(tx);
    let mut results = Vec::with_capacity(total);
    let mut failed = 0;
    for result in rx {
        // Copied on this thread, so that what the sweep keeps lies packed in this thread's
        // heap instead of pinning pages amid the workers' freed runs.
        let result = result?.clone();
        failed += u64::from(!result.passed);
        results.push(result);
        on_result(results.last().expect("just pushed"), results.len() as u64, failed)?;
    }
    for worker in workers {
        let _ = worker.join();
    }
    results.sort_by_key(|r| r.seed);
    let stopped = results.len() < total;
    Ok((results, stopped))
}

/// One invariant over the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct InvariantSummary {
    pub name: String,
    pub passed: u64,
    pub runs: u64,
    pub pass_rate: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Up to [`INVARIANT_FAILING_SEEDS_MAX`] seeds that broke it.
    pub failing_seeds: Vec<u64>,
    /// How many seeds broke it (`failing_seeds` lists at most the first few).
    pub failing_seeds_total: u64,
    /// Violations in one run: mean and 95th percentile over the runs (a run that breaks an
    /// invariant once and one that breaks it in every conversation are both "failed").
    pub violations_mean: f64,
    pub violations_p95: u64,
    /// Conversations that broke it over the sweep, and their share of all conversations
    /// started, with the 95 % Wilson interval (next to the share of runs above).
    pub conversations_broken: u64,
    pub conversation_share: f64,
    pub conversation_ci_low: f64,
    pub conversation_ci_high: f64,
}

/// One fate over every conversation of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct FateSummary {
    pub fate: String,
    pub conversations: u64,
    /// Its share of all conversations started in the sweep, with the 95 % Wilson interval.
    pub share: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// One fault over a sweep with `--impact`: in how many runs it fired and changed something, and
/// the sum of what it changed there.
#[derive(Debug, Clone, Serialize)]
pub struct SweepFaultImpact {
    pub fault: String,
    pub kind: String,
    pub runs_fired: u64,
    /// Runs where leaving it out changed at least one conversation's ending.
    pub runs_changed: u64,
    pub firings: u64,
    pub deltas: crate::report::impact::Deltas,
}

/// Per fault name, the impact of the seeds where it fired: most conversations changed first,
/// then by name.
fn impact_summary(results: &[SeedResult]) -> Vec<SweepFaultImpact> {
    let mut by_fault: BTreeMap<String, SweepFaultImpact> = BTreeMap::new();
    for impact in results.iter().flat_map(|r| &r.impact) {
        let entry = by_fault
            .entry(impact.fault.clone())
            .or_insert_with(|| SweepFaultImpact {
                fault: impact.fault.clone(),
                kind: impact.kind.clone(),
                runs_fired: 0,
                runs_changed: 0,
                firings: 0,
                deltas: Default::default(),
            });
        entry.runs_fired += 1;
        entry.runs_changed += u64::from(impact.deltas.conversations_changed > 0);
        entry.firings += impact.firings;
        entry.deltas.add(&impact.deltas);
    }
    let mut out: Vec<SweepFaultImpact> = by_fault.into_values().collect();
    // Most conversations changed first.
    out.sort_by(|a, b| {
        b.deltas
            .conversations_changed
            .cmp(&a.deltas.conversations_changed)
            .then_with(|| a.fault.cmp(&b.fault))
    });
    out
}

/// User messages per conversation over a sweep: the mean, and the longest dialogue of each run.
#[derive(Debug, Clone, Serialize)]
pub struct UserTurnsSummary {
    pub mean_per_conversation: f64,
    pub max_per_run: Spread,
}

/// p50 / p95 / p99 / max of one measure.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

impl Spread {
    fn of(mut values: Vec<u64>) -> Spread {
        values.sort_unstable();
        Spread {
            p50: percentile_u64(&values, 0.50),
            p95: percentile_u64(&values, 0.95),
            p99: percentile_u64(&values, 0.99),
            max: values.last().copied().unwrap_or(0),
        }
    }
}

/// How often one fault kind fired.
#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    pub kind: String,
    /// Runs in which it fired at least once.
    pub runs: u64,
}

/// A failing seed and how to replay it.
#[derive(Debug, Clone, Serialize)]
pub struct FailingSeed {
    pub seed: u64,
    pub outcome: Outcome,
    pub broken: Vec<String>,
    pub replay: String,
}

/// The summary of a sweep; `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct SweepSummary {
    pub scenario: String,
    /// The scenario file as the user named it (for replay commands).
    #[serde(skip)]
    pub file: String,
    pub seeds: String,
    pub runs: u64,
    pub passed_runs: u64,
    pub outcomes: BTreeMap<String, u64>,
    pub invariants: Vec<InvariantSummary>,
    pub makespan_us: Spread,
    pub llm_calls: Spread,
    pub tokens: Spread,
    pub cost_pusd: Spread,
    /// With `--impact`: per fault, what leaving it out changed, over the seeds where it fired.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub impact: Vec<SweepFaultImpact>,
    /// How long the dialogues went on, when the scenario has users who talk back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_turns: Option<UserTurnsSummary>,
    pub fault_coverage: Vec<Coverage>,
    /// Fault kinds the scenario enables that never fired in the sweep.
    pub faults_never_fired: Vec<String>,
    /// The first [`FAILING_SEEDS_SHOWN_MAX`] failing seeds.
    pub failing_seeds: Vec<FailingSeed>,
    /// How many seeds failed in all (`failing_seeds` stops at [`FAILING_SEEDS_SHOWN_MAX`]).
    pub failing_seeds_total: u64,
    pub digests_checked: u64,
    /// Conversations started over all runs, and how they ended, per fate (fates with none left
    /// out), with intervals.
    pub conversations: u64,
    pub fates: Vec<FateSummary>,
    /// pass^k (τ-bench): each conversation of the scenario is a task and each seed a trial;
    /// the share of tasks answered in all k of k trials drawn from the seeds, for k = 1, 2, 4, ….
    pub pass_hat_k: Vec<PassHatK>,
    /// Per goal invariant: its task's trials and pass^k.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub goals: Vec<GoalSummary>,
    /// Why `pass_hat_k` is empty when the sweep's conversations are not the same tasks in every
    /// seed (Poisson traffic drawing among several messages, several traffic sources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass_hat_k_note: Option<String>,
}

/// A goal over the sweep: its task's trials (every conversation it checked, in every seed), how
/// many ended in the expected state, and pass^k over them — keyed by the task, not the seed.
#[derive(Debug, Clone, Serialize)]
pub struct GoalSummary {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    pub trials: u64,
    pub successes: u64,
    pub pass_hat_k: Vec<PassHatK>,
}

/// Each goal's trials and pass^k: k = 1, 2, 4, … up to the trials (at most 64).
fn goal_summaries(scenario: &Scenario, results: &[SeedResult]) -> Vec<GoalSummary> {
    scenario
        .invariants
        .iter()
        .enumerate()
        .filter_map(|(i, invariant)| {
            let crate::scenario::Check::Goal { task, .. } = &invariant.check else {
                return None;
            };
            let trials: u64 = results
                .iter()
                .map(|r| r.goal_checked.get(i).copied().unwrap_or(0))
                .sum();
            let broken: u64 = results
                .iter()
                .map(|r| r.conversations_broken.get(i).copied().unwrap_or(0))
                .sum();
            let successes = trials.saturating_sub(broken);
            let pass_hat_k = std::iter::successors(Some(1u64), |k| Some(k * 2))
                .take_while(|k| *k <= trials.min(64))
                .map(|k| PassHatK {
                    k,
                    value: pass_hat_k(&[successes], trials, k),
                })
                .collect();
            Some(GoalSummary {
                name: invariant.name.clone(),
                task: task.clone(),
                trials,
                successes,
                pass_hat_k,
            })
        })
        .collect()
}

/// One point of the pass^k curve.
#[derive(Debug, Clone, Serialize)]
pub struct PassHatK {
    pub k: u64,
    pub value: f64,
}

/// pass^k over tasks with `successes[t]` of `trials` each: the mean of C(s, k) / C(n, k).
pub fn pass_hat_k(successes: &[u64], trials: u64, k: u64) -> f64 {
    if successes.is_empty() || k == 0 || k > trials {
        return 0.0;
    }
    let per_task = |s: u64| {
        (0..k)
            .map(|i| s.saturating_sub(i) as f64 / (trials - i) as f64)
            .product::<f64>()
    };
    successes.iter().map(|s| per_task(*s)).sum::<f64>() / successes.len() as f64
}

/// Why conversation `i` is not the same task in every seed, if it is not: pass^k treats each
/// conversation number as one task tried once per seed, which holds for scripted traffic and for
/// one Poisson source with one message, not when each arrival draws its own message or several
/// sources interleave by random arrival times.
fn tasks_differ(scenario: &Scenario) -> Option<String> {
    let all_scripted = scenario.traffic.iter().all(|t| matches!(t, Traffic::Script { .. }));
    let one_message = matches!(scenario.traffic.as_slice(), [Traffic::Poisson { messages, .. }] if messages.len() <= 1);
    if all_scripted || one_message {
        return None;
    }
    Some(
        "not computed: conversation i is a different task in each seed (arrivals draw their message, or several \
         traffic sources interleave at random times); pass^k needs the same tasks in every trial"
            .to_owned(),
    )
}

fn pass_hat_k_curve(results: &[SeedResult]) -> Vec<PassHatK> {
    let trials = results.len() as u64;
    // Tasks: conversation numbers every run opened (the same task in every trial).
    let tasks = results.iter().map(|r| r.answered.len()).min().unwrap_or(0);
    if tasks == 0 {
        return Vec::new();
    }
    let successes: Vec<u64> = (0..tasks)
        .map(|t| results.iter().filter(|r| r.answered[t]).count() as u64)
        .collect();
    std::iter::successors(Some(1u64), |k| Some(k * 2))
        .take_while(|k| *k <= trials.min(64))
        .map(|k| PassHatK {
            k,
            value: pass_hat_k(&successes, trials, k),
        })
        .collect()
}

/// Failing seeds listed in the summary, at most.
pub const FAILING_SEEDS_SHOWN_MAX: usize = 20;
/// Seeds listed per invariant in the summary.
pub const INVARIANT_FAILING_SEEDS_MAX: usize = 10;

/// A shard's partial result: `agentsim merge` combines shards into the unsharded summary.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Shard {
    pub format: String,
    pub agentsim_version: String,
    /// The scenario file as named on the command line (for replay commands).
    pub file: String,
    pub scenario_hash: String,
    /// The scenario's text, so a merge needs nothing else.
    pub scenario_text: String,
    pub seeds: String,
    pub index: u64,
    pub count: u64,
    pub results: Vec<SeedResult>,
}

/// The `format` field of shard files.
pub const SHARD_FORMAT: &str = "agentsim-sweep-shard-v1";

/// Seeds one sweep process runs, at most: a sweep keeps about 1 KB per seed (see the README's
/// Performance section), so this many take about 10 GB. A larger range runs in shards.
pub const SWEEP_SEEDS_MAX: u64 = 10_000_000;

/// How many seeds shard `index` of `count` holds: every `count`-th seed of the range, from
/// `index` (`count` = 1 for the whole range).
pub fn shard_len(seeds: &std::ops::Range<u64>, index: u64, count: u64) -> u64 {
    let first = seeds.start.saturating_add(index);
    if first >= seeds.end {
        return 0;
    }
    (seeds.end - first - 1) / count.max(1) + 1
}

/// The seeds of shard `index` of `count`: every `count`-th seed of the range, from `index`.
/// They are listed, so check [`shard_len`] against [`SWEEP_SEEDS_MAX`] first.
pub fn shard_seeds(seeds: &std::ops::Range<u64>, index: u64, count: u64) -> Vec<u64> {
    let first = seeds.start.saturating_add(index);
    let step = usize::try_from(count.max(1)).unwrap_or(usize::MAX);
    (first..seeds.end).step_by(step).collect()
}

/// Summarises the results of a sweep.
pub fn summarize(
    scenario: &Scenario,
    file: &str,
    results: &[SeedResult],
    seeds: &std::ops::Range<u64>,
) -> SweepSummary {
    let runs = results.len() as u64;
    let fate_counts = fate_totals(results);
    let conversations: u64 = fate_counts.values().sum();
    let pass_hat_k_note = tasks_differ(scenario);
    let mut outcomes = BTreeMap::new();
    for r in results {
        *outcomes.entry(r.outcome.name().to_owned()).or_insert(0) += 1;
    }
    let invariants = scenario
        .invariants
        .iter()
        .enumerate()
        .map(|(i, invariant)| {
            let passed = results
                .iter()
                .filter(|r| r.invariants.get(i).copied().unwrap_or(true))
                .count() as u64;
            let (ci_low, ci_high) = wilson_95(passed, runs);
            let mut violations: Vec<u64> = results
                .iter()
                .map(|r| r.violations.get(i).copied().unwrap_or(0))
                .collect();
            violations.sort_unstable();
            let violations_mean = if runs == 0 {
                0.0
            } else {
                violations.iter().sum::<u64>() as f64 / runs as f64
            };
            let conversations_broken: u64 = results
                .iter()
                .map(|r| r.conversations_broken.get(i).copied().unwrap_or(0))
                .sum();
            let (conversation_ci_low, conversation_ci_high) = wilson_95(conversations_broken, conversations);
            InvariantSummary {
                conversations_broken,
                conversation_share: if conversations == 0 {
                    0.0
                } else {
                    conversations_broken as f64 / conversations as f64
                },
                conversation_ci_low,
                conversation_ci_high,
                violations_mean,
                violations_p95: percentile_u64(&violations, 0.95),
                name: invariant.name.clone(),
                passed,
                runs,
                pass_rate: if runs == 0 { 0.0 } else { passed as f64 / runs as f64 },
                ci_low,
                ci_high,
                failing_seeds: results
                    .iter()
                    .filter(|r| !r.invariants[i])
                    .map(|r| r.seed)
                    .take(INVARIANT_FAILING_SEEDS_MAX)
                    .collect(),
                failing_seeds_total: runs - passed,
            }
        })
        .collect();
    let mut fired: BTreeMap<String, u64> = BTreeMap::new();
    for r in results {
        for kind in &r.faults {
            *fired.entry(kind.clone()).or_insert(0) += 1;
        }
    }
    let enabled: std::collections::BTreeSet<&str> = scenario.faults.iter().map(|f| f.kind.name()).collect();
    let faults_never_fired = enabled
        .iter()
        .filter(|k| !fired.contains_key(**k))
        .map(|k| k.to_string())
        .collect();
    let order = |kind: &str| CATALOGUE.iter().position(|e| e.kind == kind).unwrap_or(usize::MAX);
    let mut fault_coverage: Vec<Coverage> = fired.into_iter().map(|(kind, runs)| Coverage { kind, runs }).collect();
    fault_coverage.sort_by_key(|c| order(&c.kind));
    let failing_seeds = results
        .iter()
        .filter(|r| !r.passed)
        .take(FAILING_SEEDS_SHOWN_MAX)
        .map(|r| FailingSeed {
            seed: r.seed,
            outcome: r.outcome,
            broken: scenario
                .invariants
                .iter()
                .zip(&r.invariants)
                .filter(|(_, ok)| !**ok)
                .map(|(i, _)| i.name.clone())
                .collect(),
            replay: format!("agentsim run {file} --seed {}", r.seed),
        })
        .collect();
    SweepSummary {
        scenario: scenario.name.clone(),
        file: file.to_owned(),
        seeds: format!("{}..{}", seeds.start, seeds.end),
        runs,
        passed_runs: results.iter().filter(|r| r.passed).count() as u64,
        outcomes,
        invariants,
        makespan_us: Spread::of(results.iter().map(|r| r.virtual_time_us).collect()),
        llm_calls: Spread::of(results.iter().map(|r| r.llm_calls).collect()),
        tokens: Spread::of(results.iter().map(|r| r.tokens).collect()),
        cost_pusd: Spread::of(results.iter().map(|r| r.cost_pusd).collect()),
        impact: impact_summary(results),
        user_turns: (!scenario.users.is_empty()).then(|| UserTurnsSummary {
            mean_per_conversation: match conversations {
                0 => 0.0,
                n => results.iter().map(|r| r.user_turns_total).sum::<u64>() as f64 / n as f64,
            },
            max_per_run: Spread::of(results.iter().map(|r| r.user_turns_max).collect()),
        }),
        fault_coverage,
        faults_never_fired,
        failing_seeds,
        failing_seeds_total: results.iter().filter(|r| !r.passed).count() as u64,
        digests_checked: 0,
        conversations,
        fates: fate_summaries(fate_counts),
        pass_hat_k: match pass_hat_k_note {
            None => pass_hat_k_curve(results),
            Some(_) => Vec::new(),
        },
        goals: goal_summaries(scenario, results),
        pass_hat_k_note,
    }
}

fn fate_totals(results: &[SeedResult]) -> BTreeMap<String, u64> {
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for r in results {
        for (fate, n) in &r.fates {
            *totals.entry(fate.clone()).or_default() += n;
        }
    }
    totals
}

/// Each fate's share of the sweep's conversations; fates that never happened are left out.
fn fate_summaries(totals: BTreeMap<String, u64>) -> Vec<FateSummary> {
    let conversations: u64 = totals.values().sum();
    totals
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(fate, n)| {
            let (ci_low, ci_high) = wilson_95(n, conversations);
            FateSummary {
                fate,
                conversations: n,
                share: n as f64 / conversations as f64,
                ci_low,
                ci_high,
            }
        })
        .collect()
}

impl SweepSummary {
    /// The human summary.
    pub fn text(&self) -> String {
        use crate::scenario::units::format_duration_us;
        use crate::scenario::units::format_usd;
        let mut out = format!(
            "agentsim sweep · {} · seeds {} · {} runs, {} passed\n",
            self.scenario, self.seeds, self.runs, self.passed_runs
        );
        let outcomes: Vec<String> = self.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!("  outcomes       {}\n", outcomes.join(", ")));
        out.push_str("  invariants     pass rate (95% Wilson interval)\n");
        for i in &self.invariants {
            let violations = if i.violations_mean > 0.0 {
                format!(
                    "  (violations per run: mean {:.2}, p95 {}; {:.2}% [{:.2}%, {:.2}%] of conversations)",
                    i.violations_mean,
                    i.violations_p95,
                    i.conversation_share * 100.0,
                    i.conversation_ci_low * 100.0,
                    i.conversation_ci_high * 100.0
                )
            } else {
                String::new()
            };
            out.push_str(&format!(
                "    {:>6.2}%  [{:.2}%, {:.2}%]  {}{violations}\n",
                i.pass_rate * 100.0,
                i.ci_low * 100.0,
                i.ci_high * 100.0,
                i.name
            ));
        }
        if !self.fates.is_empty() {
            out.push_str(&format!(
                "  fates          of {} conversations (95% Wilson interval)\n",
                self.conversations
            ));
            for f in &self.fates {
                out.push_str(&format!(
                    "    {:>6.2}%  [{:.2}%, {:.2}%]  {} ({})\n",
                    f.share * 100.0,
                    f.ci_low * 100.0,
                    f.ci_high * 100.0,
                    f.fate,
                    f.conversations
                ));
            }
        }
        let spread = |name: &str, s: &Spread, f: &dyn Fn(u64) -> String| {
            format!(
                "  {name:<14} p50 {} · p95 {} · p99 {} · max {}\n",
                f(s.p50),
                f(s.p95),
                f(s.p99),
                f(s.max)
            )
        };
        out.push_str(&spread("makespan", &self.makespan_us, &format_duration_us));
        out.push_str(&spread("llm calls", &self.llm_calls, &|v| v.to_string()));
        out.push_str(&spread("tokens", &self.tokens, &|v| v.to_string()));
        out.push_str(&spread("cost", &self.cost_pusd, &format_usd));
        if let Some(turns) = &self.user_turns {
            out.push_str(&format!(
                "  user turns     mean {:.1} per conversation; longest per run: {}",
                turns.mean_per_conversation,
                spread("", &turns.max_per_run, &|v| v.to_string()).trim_start()
            ));
        }
        for impact in &self.impact {
            out.push_str(&format!(
                "  impact         {} ({}): fired in {} runs, changed an ending in {}; {}\n",
                impact.fault,
                impact.kind,
                impact.runs_fired,
                impact.runs_changed,
                impact.deltas.describe()
            ));
        }
        if let Some(note) = &self.pass_hat_k_note {
            out.push_str(&format!("  pass^k         {note}\n"));
        }
        if !self.pass_hat_k.is_empty() {
            let points: Vec<String> = self
                .pass_hat_k
                .iter()
                .map(|p| format!("k={} {:.3}", p.k, p.value))
                .collect();
            out.push_str(&format!(
                "  pass^k         {} (conversations as tasks, seeds as trials)\n",
                points.join(" · ")
            ));
        }
        for goal in &self.goals {
            let points: Vec<String> = goal
                .pass_hat_k
                .iter()
                .map(|p| format!("k={} {:.3}", p.k, p.value))
                .collect();
            let task = goal.task.as_ref().map(|t| format!(" (task {t})")).unwrap_or_default();
            out.push_str(&format!(
                "  goal           {}{task}: {} of {} trials ended in the expected state; pass^k {}\n",
                goal.name,
                goal.successes,
                goal.trials,
                if points.is_empty() {
                    "—".to_owned()
                } else {
                    points.join(" · ")
                }
            ));
        }
        if self.fault_coverage.is_empty() && self.faults_never_fired.is_empty() {
            out.push_str("  faults         none declared\n");
        } else {
            let fired: Vec<String> = self
                .fault_coverage
                .iter()
                .map(|c| format!("{} in {} runs", c.kind, c.runs))
                .collect();
            out.push_str(&format!(
                "  faults fired   {}\n",
                if fired.is_empty() {
                    "none".to_owned()
                } else {
                    fired.join(", ")
                }
            ));
            if !self.faults_never_fired.is_empty() {
                out.push_str(&format!(
                    "  NEVER FIRED    {} (enabled but never triggered: check their triggers)\n",
                    self.faults_never_fired.join(", ")
                ));
            }
        }
        if self.digests_checked > 0 {
            out.push_str(&format!(
                "  determinism    {} seeds rerun in fresh processes: same digests\n",
                self.digests_checked
            ));
        }
        if !self.failing_seeds.is_empty() {
            let failing = self.runs - self.passed_runs;
            out.push_str(&format!(
                "  failing seeds  {failing} (first {} below; `--json` lists the first {})\n",
                self.failing_seeds.len().min(10),
                self.failing_seeds.len()
            ));
            for f in self.failing_seeds.iter().take(10) {
                let why = if f.broken.is_empty() {
                    String::new()
                } else {
                    format!(": {}", f.broken.join(", "))
                };
                out.push_str(&format!("    {}   # {}{why}\n", f.replay, f.outcome.name()));
            }
            let shown = self.failing_seeds.len().min(10) as u64;
            if failing > shown {
                out.push_str(&format!("    … {} more\n", failing - shown));
            }
        }
        out
    }

    /// JUnit XML: one test case per invariant (and one for the outcome), failures carrying the
    /// seeds and their replay commands.
    pub fn junit(&self) -> String {
        let escape = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let mut cases = String::new();
        let mut failures = 0;
        for i in &self.invariants {
            cases.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\">\n",
                escape(&self.scenario),
                escape(&i.name)
            ));
            if i.passed < i.runs {
                failures += 1;
                let replays: Vec<String> = i
                    .failing_seeds
                    .iter()
                    .map(|s| format!("agentsim run {} --seed {s}", self.file))
                    .collect();
                cases.push_str(&format!(
                    "      <failure message=\"{} of {} seeds broke it (pass rate {:.2}%)\">{}</failure>\n",
                    i.runs - i.passed,
                    i.runs,
                    i.pass_rate * 100.0,
                    escape(&replays.join("\n"))
                ));
            }
            cases.push_str("    </testcase>\n");
        }
        let completed = self.outcomes.get("completed").copied().unwrap_or(0);
        cases.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"every run completes\">\n",
            escape(&self.scenario)
        ));
        if completed < self.runs {
            failures += 1;
            let replays: Vec<String> = self
                .failing_seeds
                .iter()
                .map(|f| format!("{} # {}", f.replay, f.outcome.name()))
                .collect();
            cases.push_str(&format!(
                "      <failure message=\"{} of {} runs did not complete\">{}</failure>\n",
                self.runs - completed,
                self.runs,
                escape(&replays.join("\n"))
            ));
        }
        cases.push_str("    </testcase>\n");
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\">\n{cases}  </testsuite>\n</testsuites>\n",
            escape(&self.scenario),
            self.invariants.len() + 1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::pass_hat_k;

    #[test]
    fn pass_hat_k_matches_hand_computed_values() {
        // Two tasks over 4 trials: one always succeeds, one succeeds in 2 of 4.
        // k=1: (1 + 2/4) / 2 = 0.75; k=2: (1 + (2·1)/(4·3)) / 2 = 0.5833; k=4: (1 + 0) / 2 = 0.5.
        let successes = [4, 2];
        assert!((pass_hat_k(&successes, 4, 1) - 0.75).abs() < 1e-12);
        assert!((pass_hat_k(&successes, 4, 2) - 7.0 / 12.0).abs() < 1e-12);
        assert!((pass_hat_k(&successes, 4, 4) - 0.5).abs() < 1e-12);
        assert_eq!(pass_hat_k(&successes, 4, 5), 0.0);
    }
}
