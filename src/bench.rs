//! `agentsim bench`: the orchestration overhead of a scenario, in wall-clock time, next to a
//! bare ractor cast + reply timed in the same process between the iterations.
//!
//! The mock model answers in zero wall-clock time (its latency is virtual), so everything the
//! wall clock sees is orchestration: scheduling, actor messaging, the mock's rule evaluation,
//! tracing. The wall clock is read here, around whole runs, never inside one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

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
    /// A bare ractor cast + reply on the same runtime, timed after each iteration for as many
    /// round trips as the run has events (the median): one event's transport, without its
    /// bookkeeping.
    pub ractor_round_trip_us: f64,
    /// `us_per_event` over `ractor_round_trip_us`: the cost of an event in round trips, the
    /// figure that holds from one machine (or one load) to another.
    pub ractor_ratio: f64,
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
    let mut round_trip_us = Vec::with_capacity(iters as usize);
    let mut last = None;
    for _ in 0..iters {
        let started = Instant::now();
        let output = run::run(scenario.clone(), &run_options)?;
        wall_us.push(started.elapsed().as_secs_f64() * 1e6);
        let trips = output.report.events.max(1);
        round_trip_us.push(ractor_round_trips(options.flavor, true, trips)?.as_secs_f64() * 1e6 / trips as f64);
        last = Some(output.report);
    }
    let Some(report) = last else {
        return Err(RunError::Internal("no iteration ran".to_owned()));
    };
    round_trip_us.sort_by(f64::total_cmp);
    let ractor_round_trip_us = percentile(&round_trip_us, 0.50);
    let mean_us = wall_us.iter().sum::<f64>() / wall_us.len() as f64;
    let mut sorted = wall_us.clone();
    sorted.sort_by(f64::total_cmp);
    let per = |count: u64| (count > 0).then(|| mean_us / count as f64);
    let us_per_event = per(report.events).unwrap_or(0.0);
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
        us_per_event,
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
        ractor_round_trip_us,
        ractor_ratio: if ractor_round_trip_us > 0.0 {
            us_per_event / ractor_round_trip_us
        } else {
            0.0
        },
    })
}

/// A ractor actor that answers each number on the sender it holds.
struct Echo;

impl Actor for Echo {
    type Msg = u64;
    type State = UnboundedSender<u64>;
    type Arguments = UnboundedSender<u64>;

    async fn pre_start(
        &self,
        _myself: ActorRef<u64>,
        reply: UnboundedSender<u64>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(reply)
    }

    async fn handle(
        &self,
        _myself: ActorRef<u64>,
        msg: u64,
        reply: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _ = reply.send(msg + 1);
        Ok(())
    }
}

/// `trips` bare ractor round trips: a driver casts a number to an actor and awaits its reply on a
/// tokio channel, as the scheduler casts a turn and awaits its completion, on a runtime built as
/// a run builds its own. With `driver_on_worker` the driver is a task on the runtime, as the
/// scheduler is (`engine::execute`); without, it is `block_on`'s own future. Returns the time
/// the round trips took (spawning the actor not included).
pub fn ractor_round_trips(flavor: Flavor, driver_on_worker: bool, trips: u64) -> Result<Duration, RunError> {
    let runtime = flavor.runtime()?;
    let internal = |what: String| RunError::Internal(format!("the ractor baseline: {what}"));
    let driver = async move {
        let (reply_tx, mut reply_rx) = unbounded_channel::<u64>();
        let (echo, join) = Actor::spawn(None, Echo, reply_tx)
            .await
            .map_err(|e| internal(e.to_string()))?;
        let started = Instant::now();
        let mut value = 0u64;
        for _ in 0..trips {
            echo.cast(value).map_err(|e| internal(e.to_string()))?;
            value = reply_rx
                .recv()
                .await
                .ok_or_else(|| internal("the echo stopped".to_owned()))?;
        }
        let elapsed = started.elapsed();
        echo.stop(None);
        let _ = join.await;
        Ok::<Duration, RunError>(elapsed)
    };
    let elapsed = if driver_on_worker {
        runtime
            .block_on(runtime.spawn(driver))
            .map_err(|e| internal(e.to_string()))??
    } else {
        runtime.block_on(driver)?
    };
    runtime.shutdown_background();
    Ok(elapsed)
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
             \x20 per event      {:.3} µs · {:.1}× a bare ractor cast + reply ({:.3} µs, same run)\n\
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
            self.ractor_ratio,
            self.ractor_round_trip_us,
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
