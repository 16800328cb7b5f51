//! Kernel overhead per delivered event, next to baselines measured in the same group.
//!
//! Run: `cargo bench --bench kernel` (under a minute of measuring on 2 cores; no plots, no HTML).
//!
//! Measurements, all in the criterion group `kernel`:
//!
//! - `baseline/tokio_round_trip/{two_tasks,main_future}`: a raw tokio unbounded-mpsc ping-pong of a
//!   `u64` on a current_thread runtime, per round trip. `two_tasks` spawns both ends;
//!   `main_future` drives the ping from `block_on`'s future, as the kernel's scheduler does.
//! - `baseline/ractor_round_trip/{current,multi}_driver_on_worker`: a ractor actor that answers
//!   each `u64` on a tokio unbounded sender it holds; the driver casts one message and awaits the
//!   reply, per round trip. This is the transport the kernel uses for one turn (`cast` of a
//!   `Turn`, `Completion` back on an unbounded channel) without the kernel's bookkeeping, and the
//!   driver is a task on the runtime, as the scheduler is (`engine::execute` spawns it): the
//!   baselines the ratios are stated against. `baseline/ractor_round_trip/{current,multi}` drive
//!   from `block_on`'s own future instead, slower on current_thread (about 360 against 300 ns).
//! - `scheduler/{current,multi}/{trace_off,digest}/n{N}`: `agentsim::run::run` of a scenario
//!   built in code: one agent without `llm` (it answers the user at once with the user's text) and
//!   N scripted conversations. Each conversation is 2 deliveries (user→agent start, agent→user
//!   answer), plus one initial `begin`: 2N + 1 events, checked before measuring. Throughput is
//!   `Elements(events)`: criterion's `thrpt` is delivered events per second, and `time / events`
//!   is the cost per event. All N conversations are scripted at `0s`, so the `begin` turn queues
//!   N starts at once and the event queue holds up to N events.
//!
//! Fixed cost: every `run::run` builds a tokio runtime, spawns the actors (the user, the root
//! supervisor, the agent) and tears them down; the scenario is parsed once, outside the loop. The
//! `n1` runs (3 events) are almost only that fixed cost. Measured on a loaded 2-core box:
//! current_thread about 30 µs per run (trace off) and 40 µs (digest), i.e. 3–4 ns of each event's
//! ~1.4–2.1 µs in an `n5000` run (10,001 events), 0.2 %; multi_thread about 250 µs per run (it
//! starts two worker threads), i.e. ~25 ns of each event's ~10–16 µs. So `n5000` per-event figures
//! are the marginal per-event cost, within noise.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentsim::report::Outcome;
use agentsim::run::{run, Flavor, RunOptions};
use agentsim::scenario::{parse, Scenario};
use agentsim::trace::TraceMode;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::sync::mpsc::unbounded_channel;

mod baseline;
use baseline::{ractor_round_trips, runtime};

/// The allocator the `agentsim` binary ships with, so that this measures what it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Conversations in the main kernel measurement.
const CONVERSATIONS: usize = 5_000;

/// Raw tokio: ping and pong, both spawned tasks; returns the time of `iters` round trips.
fn tokio_two_tasks(iters: u64) -> Duration {
    let rt = runtime(Flavor::CurrentThread);
    rt.block_on(async move {
        let (to_pong, mut pong_rx) = unbounded_channel::<u64>();
        let (to_ping, mut ping_rx) = unbounded_channel::<u64>();
        let pong = tokio::spawn(async move {
            while let Some(v) = pong_rx.recv().await {
                if to_ping.send(v + 1).is_err() {
                    break;
                }
            }
        });
        let ping = tokio::spawn(async move {
            let start = Instant::now();
            let mut v = 0u64;
            for _ in 0..iters {
                to_pong.send(v).expect("pong is alive");
                v = ping_rx.recv().await.expect("pong answers");
            }
            let elapsed = start.elapsed();
            assert_eq!(v, iters);
            elapsed
        });
        let elapsed = ping.await.expect("ping task");
        pong.await.expect("pong task");
        elapsed
    })
}

/// Raw tokio: ping in `block_on`'s future, pong spawned.
fn tokio_main_future(iters: u64) -> Duration {
    let rt = runtime(Flavor::CurrentThread);
    rt.block_on(async move {
        let (to_pong, mut pong_rx) = unbounded_channel::<u64>();
        let (to_ping, mut ping_rx) = unbounded_channel::<u64>();
        let pong = tokio::spawn(async move {
            while let Some(v) = pong_rx.recv().await {
                if to_ping.send(v + 1).is_err() {
                    break;
                }
            }
        });
        let start = Instant::now();
        let mut v = 0u64;
        for _ in 0..iters {
            to_pong.send(v).expect("pong is alive");
            v = ping_rx.recv().await.expect("pong answers");
        }
        let elapsed = start.elapsed();
        assert_eq!(v, iters);
        drop(to_pong);
        pong.await.expect("pong task");
        elapsed
    })
}

/// One agent without `llm`, `n` scripted conversations at `0s`.
fn echo_scenario(n: usize) -> Arc<Scenario> {
    let mut text = String::from(
        "[scenario]\nname = \"bench\"\nseed = 1\n\n[[agent]]\nname = \"echo\"\n\n[[traffic]]\nkind = \"script\"\nto = \"echo\"\nscript = [\n",
    );
    for _ in 0..n {
        text.push_str("  { at = \"0s\", message = \"hi\" },\n");
    }
    text.push_str("]\n");
    let scenario = parse("bench.toml", &text).unwrap_or_else(|e| panic!("the bench scenario is invalid:\n{e}"));
    Arc::new(scenario)
}

fn options(flavor: Flavor, trace: TraceMode) -> RunOptions {
    RunOptions {
        trace,
        flavor,
        ..RunOptions::new(0)
    }
}

/// Runs once and checks the run is what we mean to measure; returns its event count.
fn events_of(scenario: &Arc<Scenario>, options: &RunOptions, conversations: usize) -> u64 {
    let report = run(scenario.clone(), options).expect("the bench scenario runs").report;
    let expected = 2 * conversations as u64 + 1;
    assert_eq!(report.outcome, Outcome::Completed, "{}", report.summary());
    assert_eq!(
        report.events,
        expected,
        "expected 2 deliveries per conversation plus `begin`:\n{}",
        report.summary()
    );
    assert_eq!(
        report.conversations.answered,
        conversations as u64,
        "{}",
        report.summary()
    );
    assert_eq!(
        report.digest == "off",
        options.trace == TraceMode::Off,
        "{}",
        report.summary()
    );
    report.events
}

fn bench_kernel(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernel");
    group.warm_up_time(Duration::from_millis(500));

    // Baselines: one iteration = one round trip.
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    group.bench_function("baseline/tokio_round_trip/two_tasks", |b| {
        b.iter_custom(tokio_two_tasks)
    });
    group.bench_function("baseline/tokio_round_trip/main_future", |b| {
        b.iter_custom(tokio_main_future)
    });
    let ractor_cases = [
        ("current_driver_on_worker", Flavor::CurrentThread, true),
        ("current", Flavor::CurrentThread, false),
        ("multi_driver_on_worker", Flavor::MultiThread, true),
        ("multi", Flavor::MultiThread, false),
    ];
    for (name, flavor, driver_on_worker) in ractor_cases {
        group.bench_function(format!("baseline/ractor_round_trip/{name}"), |b| {
            b.iter_custom(|iters| ractor_round_trips(flavor, driver_on_worker, iters))
        });
    }

    // The kernel: one iteration = one whole run; throughput = its delivered events.
    group.sample_size(10).measurement_time(Duration::from_secs(3));
    let cases = [
        (Flavor::CurrentThread, TraceMode::Off, "trace_off"),
        (Flavor::CurrentThread, TraceMode::Digest, "digest"),
        (Flavor::MultiThread, TraceMode::Off, "trace_off"),
    ];
    for n in [CONVERSATIONS, 1] {
        let scenario = echo_scenario(n);
        for (flavor, trace, trace_name) in &cases {
            let options = options(*flavor, trace.clone());
            let events = events_of(&scenario, &options, n);
            group.throughput(Throughput::Elements(events));
            let id = format!("scheduler/{}/{trace_name}/n{n}", flavor.name());
            group.bench_function(id, |b| {
                b.iter(|| black_box(run(scenario.clone(), &options).expect("run")).report.events)
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_kernel);
criterion_main!(benches);
