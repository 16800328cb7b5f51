//! `agentsim bench`: the orchestration overhead of a scenario, in wall-clock time.
//!
//! The mock model answers in zero wall-clock time (its latency is virtual), so everything the
//! wall clock sees is orchestration: scheduling, actor messaging, the mock's rule evaluation,
//! tracing. The wall clock is read here, around whole runs, never inside one.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::run::{self, Flavor, RunError, RunOptions};
use crate::scenario::Scenario;
use crate::trace::TraceMode;

/// How to benchmark.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub iters: u32,
    pub warmup: u32,
    pub trace: bool,
    pub flavor: Flavor,
    pub seed: u64,
}

/// What `agentsim bench` reports. Times are wall-clock.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub scenario: String,
    pub iters: u32,
    pub warmup: u32,
    pub trace: bool,
    pub runtime: String,
    pub events_per_iter: u64,
    pub messages_per_iter: u64,
    /// Agent steps: model calls (one model call and what it leads to).
    pub steps_per_iter: u64,
    pub tool_calls_per_iter: u64,
    pub us_per_event: f64,
    pub us_per_message: f64,
    /// `null` when the scenario makes no model calls.
    pub us_per_step: Option<f64>,
    pub us_per_tool_call: Option<f64>,
    pub msgs_per_s: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub rss_mb: f64,
    pub digest: String,
}

/// Runs `scenario` `warmup + iters` times and measures the last `iters`.
pub fn bench(scenario: Arc<Scenario>, options: &BenchOptions) -> Result<BenchReport, RunError> {
    let run_options = RunOptions {
        trace: if options.trace {
            TraceMode::Digest
        } else {
            TraceMode::Off
        },
        flavor: options.flavor,
        ..RunOptions::new(options.seed)
    };
    for _ in 0..options.warmup {
        run::run(scenario.clone(), &run_options)?;
    }
    let iters = options.iters.max(1);
    let mut wall_us = Vec::with_capacity(iters as usize);
    let mut last = None;
    for _ in 0..iters {
        let started = Instant::now();
        let output = run::run(scenario.clone(), &run_options)?;
        wall_us.push(started.elapsed().as_secs_f64() * 1e6);
        last = Some(output.report);
    }
    let report = last.expect("at least one iteration");
    let mean_us = wall_us.iter().sum::<f64>() / wall_us.len() as f64;
    let mut sorted = wall_us.clone();
    sorted.sort_by(f64::total_cmp);
    let per = |count: u64| (count > 0).then(|| mean_us / count as f64);
    Ok(BenchReport {
        scenario: scenario.name.clone(),
        iters,
        warmup: options.warmup,
        trace: options.trace,
        runtime: options.flavor.name().to_owned(),
        events_per_iter: report.events,
        messages_per_iter: report.messages,
        steps_per_iter: report.llm_calls,
        tool_calls_per_iter: report.tool_calls,
        us_per_event: per(report.events).unwrap_or(0.0),
        us_per_message: per(report.messages).unwrap_or(0.0),
        us_per_step: per(report.llm_calls),
        us_per_tool_call: per(report.tool_calls),
        msgs_per_s: if mean_us > 0.0 {
            report.messages as f64 / (mean_us / 1e6)
        } else {
            0.0
        },
        mean_us,
        p50_us: percentile(&sorted, 0.50),
        p99_us: percentile(&sorted, 0.99),
        rss_mb: peak_rss_mb(),
        digest: report.digest,
    })
}

/// The nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Peak resident memory of this process in MB (Linux `VmHWM`; 0 where unavailable).
pub fn peak_rss_mb() -> f64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0.0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

impl BenchReport {
    /// The human summary.
    pub fn summary(&self) -> String {
        let optional = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.2} µs"));
        format!(
            "agentsim bench · {} · {} iterations ({} warm-up) · trace {} · {} runtime\n\
             \x20 per iteration  {} events · {} messages · {} steps (model calls) · {} tool calls\n\
             \x20 wall           mean {:.0} µs · p50 {:.0} µs · p99 {:.0} µs\n\
             \x20 per event      {:.3} µs\n\
             \x20 per message    {:.3} µs\n\
             \x20 per step       {}\n\
             \x20 per tool call  {}\n\
             \x20 throughput     {:.0} messages/s\n\
             \x20 peak RSS       {:.1} MB\n",
            self.scenario,
            self.iters,
            self.warmup,
            if self.trace { "on" } else { "off" },
            self.runtime,
            self.events_per_iter,
            self.messages_per_iter,
            self.steps_per_iter,
            self.tool_calls_per_iter,
            self.mean_us,
            self.p50_us,
            self.p99_us,
            self.us_per_event,
            self.us_per_message,
            optional(self.us_per_step),
            optional(self.us_per_tool_call),
            self.msgs_per_s,
            self.rss_mb,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.50), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&values, 1.0), 100.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }
}
