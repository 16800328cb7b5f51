//! `agentsim proxy --mcp`: a Model Context Protocol proxy between an agent (the MCP client) and
//! its tool server, over stdio or streamable HTTP. It numbers each session's requests, injects
//! the faults file's seeded `mcp.*` faults in the protocol's own shapes, records every exchange,
//! replays a recording with no server, and writes the same kind of trace, report and OTLP spans
//! as the LLM proxy.
//!
//! The proxy speaks JSON-RPC itself rather than through an MCP SDK's typed service layer: it must
//! pass on byte for byte what it does not bend (protocol versions and methods newer than any SDK
//! it could link, the server's own requests, `_meta`), and it must produce what a conforming SDK
//! refuses to send (an answer that never comes, a session that vanishes, a server that dies
//! mid-call).
//!
//! `wire.rs` JSON-RPC and the faults' shapes; `relay.rs` the decisions and sessions; `tape.rs`
//! the cassette; `books.rs` the trace, report and spans; `stdio.rs` and `http.rs` the transports.

pub mod books;
pub mod http;
pub mod relay;
pub mod stdio;
pub mod tape;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use crate::proxy::faults::FaultsFile;
use crate::proxy::tape::Matching;
use books::Books;
use relay::{Relay, Transport};
use tape::Cassette;

/// How the MCP proxy is set up.
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// Streamable HTTP: where to listen. `None`: stdio.
    pub listen: Option<SocketAddr>,
    /// Streamable HTTP: the server's MCP endpoint (`http://127.0.0.1:8000/mcp`).
    pub upstream: Option<String>,
    /// Stdio: the server command to start.
    pub command: Vec<String>,
    pub faults: FaultsFile,
    /// The seed faults are drawn with; `None`: a replay's recorded seed, else 0.
    pub seed: Option<u64>,
    pub record: Option<PathBuf>,
    pub replay: Option<PathBuf>,
    pub matching: Matching,
    pub out: Option<PathBuf>,
    pub otlp: Option<PathBuf>,
    pub request_bytes_max: usize,
}

impl McpConfig {
    pub fn transport(&self) -> Transport {
        match self.listen {
            Some(_) => Transport::Http,
            None => Transport::Stdio,
        }
    }

    fn mode(&self) -> &'static str {
        match (&self.record, &self.replay) {
            (_, Some(_)) => "replay",
            (Some(_), None) => "record",
            (None, None) => "live",
        }
    }

    /// Checks the config and opens the cassettes.
    pub fn relay(&self) -> Result<Relay, String> {
        let transport = self.transport();
        let cassette = match &self.replay {
            Some(path) => Some(Cassette::load(path)?),
            None => None,
        };
        match transport {
            Transport::Stdio if cassette.is_none() && self.command.is_empty() => {
                return Err(
                    "expected the MCP server's command after `--` (`agentsim proxy --mcp -- python server.py`), \
                     or --listen with --upstream for streamable HTTP, or --replay DIR"
                        .to_owned(),
                )
            }
            Transport::Http if cassette.is_none() && self.upstream.is_none() => {
                return Err(
                    "expected --upstream URL (the MCP server's endpoint, such as \"http://127.0.0.1:8000/mcp\") with --listen"
                        .to_owned(),
                )
            }
            _ => {}
        }
        if cassette.is_some() && (!self.command.is_empty() || self.upstream.is_some()) {
            return Err(
                "--replay serves the client from the cassette alone: expected no server command and no --upstream"
                    .to_owned(),
            );
        }
        if let Some(url) = &self.upstream {
            let parsed = reqwest::Url::parse(url).map_err(|e| {
                format!("--upstream: expected a URL such as \"http://127.0.0.1:8000/mcp\", found \"{url}\" ({e})")
            })?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(format!(
                    "--upstream: expected an http or https URL with a host, found \"{url}\""
                ));
            }
        }
        let seed = self.seed.or(cassette.as_ref().map(|c| c.seed)).unwrap_or(0);
        let recorder = match &self.record {
            Some(dir) => Some(tape::recorder(dir, seed, transport.name())?),
            None => None,
        };
        let books = Books::new(self.out.as_deref())?;
        Ok(Relay::new(
            seed,
            self.faults.clone(),
            transport,
            (cassette, self.matching),
            recorder,
            books,
        ))
    }

    /// Writes report.json (into `--out`) and the OTLP spans; returns the report.
    pub fn finish(&self, relay: &Relay) -> Result<Value, String> {
        let transport = relay.transport.name();
        let report = relay.books.report(&relay.faults, relay.seed, self.mode(), transport);
        if let Some(dir) = &self.out {
            let path = dir.join("report.json");
            let json = serde_json::to_string_pretty(&report).expect("a report is JSON");
            std::fs::write(&path, format!("{json}\n")).map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
        }
        if let Some(path) = &self.otlp {
            let spans = relay.books.otlp(transport);
            std::fs::write(path, format!("{spans}\n")).map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
        }
        Ok(report)
    }
}

/// Runs the MCP proxy until the client goes (stdio) or `stop` resolves; `ready` hears where a
/// streamable HTTP proxy listens.
pub fn run(
    config: &McpConfig,
    stop: impl std::future::Future<Output = ()> + Send,
    ready: impl FnOnce(SocketAddr),
) -> Result<Value, String> {
    let relay = Arc::new(config.relay()?);
    let runtime = crate::proxy::runtime()?;
    runtime.block_on(async {
        match config.listen {
            None => stdio::serve(relay.clone(), &config.command, stop).await,
            Some(listen) => {
                let proxy =
                    http::HttpProxy::bind(relay.clone(), listen, config.upstream.clone(), config.request_bytes_max)
                        .await?;
                ready(proxy.local_addr()?);
                proxy.serve(stop).await;
                Ok(())
            }
        }
    })?;
    // Hung requests keep their tasks; the runtime is dropped without waiting for them.
    runtime.shutdown_background();
    config.finish(&relay)
}
