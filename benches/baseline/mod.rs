//! The raw baselines the benches measure agentsim against in the same run: a tokio runtime built
//! as `agentsim::run::run` builds it, and a bare ractor cast + reply; and the designs they run.
//! Each bench uses part of it.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agentsim::run::{Flavor, RunOptions};
use agentsim::scenario::Scenario;
use agentsim::trace::TraceMode;
use tokio::runtime::Runtime;

/// A runtime built as `agentsim::run::run` builds its own.
pub fn runtime(flavor: Flavor) -> Runtime {
    flavor.runtime().expect("a tokio runtime")
}

/// Raw ractor round trips (see [`agentsim::bench::ractor_round_trips`]): the driver is
/// `block_on`'s future or, with `driver_on_worker`, a task on the runtime, as the scheduler is.
pub fn ractor_round_trips(flavor: Flavor, driver_on_worker: bool, iters: u64) -> Duration {
    agentsim::bench::ractor_round_trips(flavor, driver_on_worker, iters).expect("the ractor baseline runs")
}

/// A design from the crate's root, and the options `run` and `sweep` use for it: its seed,
/// current_thread, the trace encoded and its BLAKE3 digest taken.
pub fn design(path: &str) -> (Arc<Scenario>, RunOptions) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let scenario = Arc::new(agentsim::scenario::load(&file).unwrap_or_else(|e| panic!("{e}")));
    let options = RunOptions {
        trace: TraceMode::Digest,
        flavor: Flavor::CurrentThread,
        ..RunOptions::new(scenario.seed)
    };
    (scenario, options)
}
