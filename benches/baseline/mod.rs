//! The raw baselines the benches measure agentsim against in the same run: a tokio runtime built
//! as `agentsim::run::run` builds it, and a bare ractor cast + reply; and the designs they run.
//! Each bench uses part of it.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use std::path::Path;
use std::sync::Arc;

use agentsim::run::{Flavor, RunOptions};
use agentsim::scenario::Scenario;
use agentsim::trace::TraceMode;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::runtime::Runtime;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

pub fn runtime(flavor: Flavor) -> Runtime {
    // Same builders as `agentsim::run::run`: no I/O or time driver.
    match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread().build(),
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread().worker_threads(2).build(),
    }
    .expect("a tokio runtime")
}

/// A ractor actor that answers each message on the tokio sender it holds.
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

/// Raw ractor: a driver casts one `u64` to the actor, awaits the reply, repeats. The driver is
/// `block_on`'s future (as in `agentsim::run::run`) or, with `driver_on_worker`, a task spawned
/// onto the runtime; on multi_thread that keeps it off the caller thread.
pub fn ractor_round_trips(flavor: Flavor, driver_on_worker: bool, iters: u64) -> Duration {
    let rt = runtime(flavor);
    let driver = async move {
        let (reply_tx, mut reply_rx) = unbounded_channel::<u64>();
        let (echo, join) = Actor::spawn(None, Echo, reply_tx).await.expect("echo starts");
        let start = Instant::now();
        let mut v = 0u64;
        for _ in 0..iters {
            echo.cast(v).expect("echo is alive");
            v = reply_rx.recv().await.expect("echo answers");
        }
        let elapsed = start.elapsed();
        assert_eq!(v, iters);
        echo.stop(None);
        join.await.expect("echo stops");
        elapsed
    };
    if driver_on_worker {
        rt.block_on(rt.spawn(driver)).expect("driver task")
    } else {
        rt.block_on(driver)
    }
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
