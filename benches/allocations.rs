//! Heap allocations per event, counted by a counting global allocator, next to a bare ractor
//! cast + reply counted the same way in the same run.
//!
//! Run: `cargo bench --bench allocations` (a few seconds; counts, not times, so the figures do
//! not drift with the machine's load).
//!
//! - `ractor cast + reply`: the allocations of 10,000 round trips minus those of 1,000, over
//!   9,000: what one kernel turn's transport allocates, without its bookkeeping.
//! - Each design: one whole `agentsim::run::run` at its seed (current_thread, trace encoded and
//!   digested as `run` and `sweep` do), after one warm-up run (lazily built tables, compiled
//!   patterns); everything the run allocates, spawning its actors and building its runtime
//!   included, over its events. `peak live` is how far the heap grew during the run.

use agentsim::run::{run, Flavor};

#[path = "counting/mod.rs"]
mod counting;
use counting::{counting, Counting};

mod baseline;
use baseline::{design, ractor_round_trips};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const DESIGNS: [&str; 8] = [
    "scenarios/support-desk.toml",
    "scenarios/retry-storm.toml",
    "benches/scenarios/desk-200.toml",
    "scenarios/bench/w1-pipeline.toml",
    "scenarios/bench/w2-tool-loop.toml",
    "scenarios/bench/w3-fan-out.toml",
    "scenarios/bench/w4-ping-pong.toml",
    "scenarios/bench/w5-swarm.toml",
];

fn main() {
    // `cargo bench` passes `--bench`; a filter argument, if any, picks designs by substring.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let (_, short) = counting(|| ractor_round_trips(Flavor::CurrentThread, true, 1_000));
    let (_, long) = counting(|| ractor_round_trips(Flavor::CurrentThread, true, 10_000));
    let per_trip = |a: u64, b: u64| (b - a) as f64 / 9_000.0;
    println!(
        "{:<34} {:>10} {:>14} {:>12} {:>14}",
        "measure", "events", "allocs/event", "bytes/event", "peak live KiB"
    );
    println!(
        "{:<34} {:>10} {:>14.2} {:>12.1} {:>14}",
        "ractor cast + reply (baseline)",
        9_000,
        per_trip(short.allocations, long.allocations),
        per_trip(short.bytes, long.bytes),
        "-"
    );
    for path in DESIGNS {
        if filter.as_deref().is_some_and(|f| !path.contains(f)) {
            continue;
        }
        let (scenario, options) = design(path);
        let warm = run(scenario.clone(), &options).expect("the design runs").report;
        let (output, allocated) = counting(|| run(scenario.clone(), &options).expect("the design runs"));
        let events = output.report.events;
        assert_eq!(output.report.digest, warm.digest, "{path}: the same run twice");
        println!(
            "{:<34} {:>10} {:>14.2} {:>12.1} {:>14}",
            path.rsplit('/').next().unwrap_or(path),
            events,
            allocated.allocations as f64 / events as f64,
            allocated.bytes as f64 / events as f64,
            allocated.peak_live_bytes / 1024
        );
    }
}
