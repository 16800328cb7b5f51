//! The cost per event of realistic designs, next to a bare ractor cast + reply measured in the
//! same criterion group: the ratio the speed targets are stated in.
//!
//! Run: `cargo bench --bench realistic` (about a minute of measuring on 2 cores).
//!
//! Measurements, all in the criterion group `realistic`:
//!
//! - `baseline/ractor_round_trip/current_driver_on_worker`: a ractor actor that answers each
//!   `u64` on a tokio unbounded sender; the driver, a task on a current_thread runtime as the
//!   scheduler is, casts and awaits the reply. One iteration is one round trip: the transport of
//!   one kernel turn, without its bookkeeping.
//! - `design/{support-desk,retry-storm,desk-200}`: `agentsim::run::run` of a whole design at its
//!   seed, current_thread, with the trace encoded and its BLAKE3 digest taken (as `run` and
//!   `sweep` do). One iteration is one run; its throughput is `Elements(events)`, so criterion's
//!   `time` divided by the events (or its `thrpt`) is the cost per event, and that over the
//!   baseline's time is the ratio. `support-desk` is the README's example, `retry-storm` the
//!   example with the most events, `desk-200` (`benches/scenarios/`) 200 conversations with
//!   handoffs, delegation, guardrails, retries and faults. The event counts are checked against
//!   each run's report before measuring.

use std::hint::black_box;
use std::time::Duration;

use agentsim::run::{run, Flavor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod baseline;
use baseline::{design, ractor_round_trips};

/// The allocator the `agentsim` binary ships with, so that this measures what it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The designs measured: a name and a path from the crate's root.
const DESIGNS: [(&str, &str); 3] = [
    ("support-desk", "scenarios/support-desk.toml"),
    ("retry-storm", "scenarios/retry-storm.toml"),
    ("desk-200", "benches/scenarios/desk-200.toml"),
];

fn bench_realistic(c: &mut Criterion) {
    let mut group = c.benchmark_group("realistic");
    group.warm_up_time(Duration::from_millis(500));
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    group.bench_function("baseline/ractor_round_trip/current_driver_on_worker", |b| {
        b.iter_custom(|iters| ractor_round_trips(Flavor::CurrentThread, true, iters))
    });

    group.sample_size(20).measurement_time(Duration::from_secs(4));
    for (name, path) in DESIGNS {
        let (scenario, options) = design(path);
        let report = run(scenario.clone(), &options).expect("the design runs").report;
        assert!(
            report.events > 500,
            "{name}: expected a realistic run, found {} events",
            report.events
        );
        assert_ne!(report.digest, "off");
        group.throughput(Throughput::Elements(report.events));
        group.bench_function(format!("design/{name}"), |b| {
            b.iter(|| black_box(run(scenario.clone(), &options).expect("run")).report.events)
        });
    }
    group.finish();
}

criterion_group!(benches, bench_realistic);
criterion_main!(benches);
