//! `agentsim proxy`: an HTTP proxy between a real agent app and its model provider. It numbers
//! each call in its session, injects the faults file's seeded faults in the provider's own wire
//! shape, passes streams on frame by frame, records and replays exchanges, and writes the same
//! kind of trace, report and OTLP spans a simulated run writes.
//!
//! `faults.rs` the faults file and the decisions; `shape.rs` the providers' wire formats;
//! `sse.rs` event-stream frames; `tape.rs` the cassette; `ledger.rs` the trace, sessions and
//! report.json; `page.rs` report.html; `server.rs` the server; `stub.rs` a stand-in upstream;
//! `mcp/` the Model Context Protocol proxy (`--mcp`).

pub mod faults;
pub mod ledger;
pub mod mcp;
pub mod page;
pub mod server;
pub mod shape;
pub mod sse;
pub mod stub;
pub mod tape;

pub use faults::FaultsFile;
pub use server::{Config, Proxy, Summary, SESSION_HEADER};
pub use tape::Matching;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A runtime for the proxy: a few worker threads are plenty for one app's calls.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Binds, says where it listens (to `ready`), and serves until `interrupt` is set (Ctrl-C).
pub fn run(config: Config, interrupt: Arc<AtomicUsize>, ready: impl FnOnce(&Proxy)) -> Result<Summary, String> {
    let runtime = runtime()?;
    runtime.block_on(async move {
        let proxy = Proxy::bind(config).await?;
        ready(&proxy);
        let stop = async move {
            while interrupt.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        proxy.serve(stop).await
    })
}
