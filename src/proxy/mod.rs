//! `agentsim proxy`: an HTTP proxy between a real agent app and its model provider. It numbers
//! each call in its session, injects the faults file's seeded faults in the provider's own wire
//! shape, passes streams on frame by frame, records and replays exchanges, and writes the same
//! kind of trace, report and OTLP spans a simulated run writes.
//!
//! `faults.rs` the faults file and the decisions; `shape.rs` the providers' wire formats;
//! `sse.rs` event-stream frames; `tape.rs` the cassette; `ledger.rs` the sessions and
//! report.json; `journal.rs` the trace file and its clocks; `page.rs` report.html; `server.rs` the server; `stub.rs` a stand-in upstream;
//! `mcp/` the Model Context Protocol proxy (`--mcp`).

pub mod faults;
pub mod journal;
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

/// Accepts connections on `listener` until `stop` resolves, serving each over HTTP/1.1 with
/// keep-alive: every request goes to `handle` with `shared`.
pub async fn accept_until<S, F, E>(
    listener: &tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()>,
    shared: Arc<S>,
    handle: fn(Arc<S>, hyper::Request<hyper::body::Incoming>) -> F,
) where
    S: Send + Sync + 'static,
    F: std::future::Future<Output = Result<hyper::Response<server::Body>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| handle(shared.clone(), request));
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(io, service)
                        .await;
                });
            }
        }
    }
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
