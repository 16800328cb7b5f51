//! `agentsim proxy` and `agentsim stub-upstream`: real agent apps under seeded chaos.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{exit, interrupt_flag, Failure};
use crate::proxy::{self, Config, FaultsFile, Matching};

/// Arguments of `agentsim proxy`.
#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    /// Address to listen on (default 127.0.0.1:8089); loopback unless --allow-remote. Port 0
    /// picks a free port. With --mcp: serve streamable HTTP here (without it, stdio).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Accept connections from other machines (binding a non-loopback address).
    #[arg(long)]
    pub allow_remote: bool,
    /// Where requests go: the provider (`https://api.openai.com/v1`), a local llama.cpp, vLLM or
    /// Ollama server, or another proxy. Required, except for a replay without --fork-at.
    #[arg(long)]
    pub upstream: Option<String>,
    /// A faults file: [[fault]] and [[invariant]] tables (see the README).
    #[arg(long)]
    pub faults: Option<PathBuf>,
    /// Seed of every fault decision (a replay's recorded seed when omitted, else 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Record every exchange into DIR/cassette.jsonl (no request headers, so no API key).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Serve the app from the cassette in DIR, offline.
    #[arg(long, value_name = "DIR")]
    pub replay: Option<PathBuf>,
    /// With --replay: how it matches requests: strict (same request at the same session and
    /// call) or in-order (each session's recordings in turn).
    #[arg(long, value_enum, default_value_t = MatchArg::Strict, requires = "replay")]
    pub replay_match: MatchArg,
    /// With --replay: serve each session's first N calls from the cassette, then go to the
    /// upstream.
    #[arg(long, value_name = "N", requires = "replay")]
    pub fork_at: Option<u32>,
    /// With --replay: replay streams at this multiple of their recorded timing (0: at once).
    #[arg(long, default_value_t = 1.0, requires = "replay")]
    pub replay_speed: f64,
    /// Write trace.jsonl as calls happen, and report.json and report.html at the end.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Write the calls as OTLP/JSON GenAI spans to this file at the end.
    #[arg(long, value_name = "FILE")]
    pub otlp: Option<PathBuf>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Largest answer passed on, in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub max_response_bytes: usize,
    /// Overwrite the files an earlier proxy wrote in --out or --record.
    #[arg(long)]
    pub force: bool,
    /// Proxy the Model Context Protocol instead of a model API: over stdio, start the server
    /// command given after `--`; over streamable HTTP, --listen and --upstream (its endpoint).
    #[arg(long)]
    pub mcp: bool,
    /// With --mcp over stdio: the MCP server's command and arguments, after `--`.
    #[arg(last = true, value_name = "SERVER COMMAND")]
    pub command: Vec<String>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchArg {
    Strict,
    InOrder,
}

/// Arguments of `agentsim stub-upstream`.
#[derive(clap::Args, Debug)]
pub struct StubArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Time between two frames of a streamed answer, e.g. "5ms".
    #[arg(long, default_value = "5ms")]
    pub frame_gap: String,
    /// Time before every answer, e.g. "0ms".
    #[arg(long, default_value = "0ms")]
    pub latency: String,
}

/// The files a proxy writes into `--out`.
const OUT_FILES: [&str; 3] = ["trace.jsonl", "report.json", "report.html"];

/// Refuses, before the proxy starts, outputs that would overwrite an earlier recording or run
/// without `--force` (or the cassette being replayed, even with it), and an `--otlp` file that
/// cannot be written.
fn check_outputs(args: &ProxyArgs) -> Result<(), Failure> {
    let bad = |message: String| Failure::new(exit::BAD_INPUT, message);
    if let (Some(record), Some(replay)) = (&args.record, &args.replay) {
        let same = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        // `--replay` names the cassette's directory, or the file itself.
        let replay_dir = match replay.parent() {
            Some(parent) if replay.is_file() => parent,
            _ => replay.as_path(),
        };
        if same(record, replay_dir) {
            return Err(bad(format!(
                "--record {}: expected another directory than --replay's: recording there would overwrite the cassette being replayed",
                record.display()
            )));
        }
    }
    if let Some(dir) = &args.record {
        super::refuse_overwrite("--record", dir, &["cassette.jsonl"], args.force, "the proxy")?;
    }
    if let Some(dir) = &args.out {
        super::refuse_overwrite("--out", dir, &OUT_FILES, args.force, "the proxy")?;
    }
    super::prepare_output_files(&[], &[("--otlp", args.otlp.as_deref())])
}

pub(super) fn proxy(args: &ProxyArgs) -> Result<u8, Failure> {
    let bad = |message: String| Failure::new(exit::BAD_INPUT, message);
    if let Some(listen) = args.listen.filter(|l| !l.ip().is_loopback() && !args.allow_remote) {
        return Err(bad(format!(
            "--listen {listen}: expected a loopback address (127.0.0.1, ::1); the proxy forwards API keys, so \
             listening beyond this machine needs --allow-remote"
        )));
    }
    check_outputs(args)?;
    if args.mcp {
        return mcp(args);
    }
    if !args.command.is_empty() {
        return Err(bad(format!(
            "unexpected server command `{}`: a command after `--` is the MCP server of `agentsim proxy --mcp`",
            args.command.join(" ")
        )));
    }
    let listen = args.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8089)));
    if !(0.0..=1000.0).contains(&args.replay_speed) {
        return Err(bad(format!(
            "--replay-speed: expected 0 to 1000, found {}",
            args.replay_speed
        )));
    }
    if let (Some(_), Some(upstream), None) = (&args.replay, &args.upstream, args.fork_at) {
        return Err(bad(format!(
            "--upstream {upstream} with --replay: expected --fork-at N as well (each session's first N calls from \
             the cassette, the rest forwarded); a replay without it never forwards, so drop --upstream"
        )));
    }
    if let Some(upstream) = args.upstream.as_deref().filter(|u| plain_http_to_another_machine(u)) {
        eprintln!(
            "agentsim proxy: warning: --upstream {upstream} is plain HTTP to another machine: the API keys the app \
             sends cross the network unencrypted"
        );
    }
    let faults = match &args.faults {
        Some(path) => FaultsFile::load(path, false).map_err(bad)?,
        None => FaultsFile::default(),
    };
    let mut config = Config::new(listen, args.upstream.clone());
    config.faults = faults;
    config.seed = args.seed;
    config.record = args.record.clone();
    config.replay = args.replay.clone();
    config.matching = match args.replay_match {
        MatchArg::Strict => Matching::Strict,
        MatchArg::InOrder => Matching::InOrder,
    };
    config.fork_at = args.fork_at;
    config.replay_speed = args.replay_speed;
    config.out = args.out.clone();
    config.otlp = args.otlp.clone();
    config.request_bytes_max = args.max_request_bytes;
    config.response_bytes_max = args.max_response_bytes;
    let mode = config.mode();
    let upstream = args.upstream.clone();
    let interrupt = interrupt_flag();
    let summary = proxy::run(config, interrupt, |p| {
        let target = match (&upstream, mode) {
            (Some(u), "live") => format!("forwarding to {u}"),
            (Some(u), _) => format!("{mode} from the cassette, then forwarding to {u}"),
            (None, _) => "replaying from the cassette".to_owned(),
        };
        eprintln!(
            "agentsim proxy listening on http://{} ({target}; seed {}); Ctrl-C ends it and writes the report",
            p.local_addr(),
            p.seed()
        );
    })
    .map_err(bad)?;
    let r = &summary.report;
    let count = |value: &serde_json::Value| value.as_u64().unwrap_or(0);
    let counted = crate::scenario::units::counted;
    eprintln!(
        "agentsim proxy: {}, {} answered{}, {}, {} ({} early), cost {}{}",
        counted(count(&r["calls"]), "call", "calls"),
        r["answered"],
        match count(&r["unfinished"]) {
            0 => String::new(),
            n => format!(", {n} unfinished (in flight when it stopped)"),
        },
        counted(
            r["faults"]
                .as_object()
                .map_or(0, |f| f.values().filter_map(|v| v.as_u64()).sum::<u64>()),
            "fault",
            "faults"
        ),
        counted(count(&r["retries"]["count"]), "retry", "retries"),
        r["retries"]["early"],
        crate::scenario::units::format_usd(count(&r["cost_pusd"])),
        args.out
            .as_ref()
            .map(|d| format!("; report in {}", d.join("report.html").display()))
            .unwrap_or_default()
    );
    for invariant in r["invariants"].as_array().into_iter().flatten() {
        let mark = if invariant["holds"] == serde_json::Value::Bool(true) {
            "✓"
        } else {
            "✗"
        };
        eprintln!(
            "  {mark} {}: {}",
            invariant["name"].as_str().unwrap_or(""),
            invariant["detail"].as_str().unwrap_or("")
        );
    }
    Ok(if summary.held { exit::OK } else { exit::RUN_FAILED })
}

/// `agentsim proxy --mcp`.
fn mcp(args: &ProxyArgs) -> Result<u8, Failure> {
    let bad = |message: String| Failure::new(exit::BAD_INPUT, message);
    if args.fork_at.is_some() {
        return Err(bad(
            "--fork-at: not available with --mcp yet; replay the whole recording".to_owned(),
        ));
    }
    if args.listen.is_none() && args.upstream.is_some() {
        return Err(bad(
            "--upstream with --mcp is a streamable HTTP server: expected --listen ADDRESS for the client to reach the proxy".to_owned(),
        ));
    }
    if args.listen.is_some() && !args.command.is_empty() {
        return Err(bad(
            "with --listen the MCP proxy serves streamable HTTP and forwards to --upstream: expected no server command after `--`".to_owned(),
        ));
    }
    let faults = match &args.faults {
        Some(path) => FaultsFile::load(path, true).map_err(bad)?,
        None => FaultsFile::default(),
    };
    let config = proxy::mcp::McpConfig {
        listen: args.listen,
        upstream: args.upstream.clone(),
        command: args.command.clone(),
        faults,
        seed: args.seed,
        record: args.record.clone(),
        replay: args.replay.clone(),
        matching: match args.replay_match {
            MatchArg::Strict => Matching::Strict,
            MatchArg::InOrder => Matching::InOrder,
        },
        out: args.out.clone(),
        otlp: args.otlp.clone(),
        request_bytes_max: args.max_request_bytes,
    };
    let interrupt = interrupt_flag();
    let stop = async move {
        while interrupt.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let upstream = args.upstream.clone();
    let report = proxy::mcp::run(&config, stop, |address| {
        let target = match &upstream {
            Some(u) => format!("forwarding to {u}"),
            None => "replaying from the cassette".to_owned(),
        };
        eprintln!(
            "agentsim proxy --mcp listening on http://{address}/mcp ({target}); Ctrl-C ends it and writes the report"
        );
    })
    .map_err(bad)?;
    // Stdout is the MCP channel over stdio: the summary goes to stderr.
    eprintln!(
        "agentsim proxy --mcp: {} requests, {} tool calls ({} results, {} tool errors, {} protocol errors, {} unanswered){}",
        report["requests"],
        report["tool_calls"],
        report["results"],
        report["tool_errors"],
        report["protocol_errors"],
        report["unanswered"],
        args.out
            .as_ref()
            .map(|d| format!("; report in {}", d.join("report.json").display()))
            .unwrap_or_default()
    );
    Ok(exit::OK)
}

pub(super) fn stub(args: &StubArgs) -> Result<u8, Failure> {
    let bad = |message: String| Failure::new(exit::BAD_INPUT, message);
    let duration = |flag: &str, text: &str| {
        crate::scenario::units::parse_duration_us(text)
            .map(std::time::Duration::from_micros)
            .map_err(|e| bad(format!("--{flag}: {e}")))
    };
    let config = proxy::stub::StubConfig {
        frame_gap: duration("frame-gap", &args.frame_gap)?,
        latency: duration("latency", &args.latency)?,
    };
    let runtime = proxy::runtime().map_err(|e| Failure::new(exit::INTERNAL, e))?;
    let interrupt = interrupt_flag();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| bad(format!("--listen {}: cannot bind: {e}", args.listen)))?;
        let address = listener.local_addr().unwrap_or(args.listen);
        eprintln!("agentsim stub-upstream listening on http://{address}/v1 (OpenAI chat completions); Ctrl-C ends it");
        tokio::select! {
            _ = proxy::stub::serve(listener, config) => {}
            _ = async {
                while interrupt.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            } => {}
        }
        Ok(exit::OK)
    })
}

/// `http://` to a host that is not this machine (`localhost`, `127.0.0.1`, `::1`).
fn plain_http_to_another_machine(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    let loopback = host
        .parse::<std::net::IpAddr>()
        .map_or(host.eq_ignore_ascii_case("localhost"), |ip| ip.is_loopback());
    !loopback
}

#[cfg(test)]
mod tests {
    use super::plain_http_to_another_machine as remote;

    #[test]
    fn plain_http_is_flagged_only_beyond_this_machine() {
        assert!(remote("http://example.com/v1"));
        assert!(remote("http://10.0.0.5:8000/v1"));
        assert!(!remote("http://127.0.0.1:8080/v1"));
        assert!(!remote("http://localhost:11434/v1"));
        assert!(!remote("http://[::1]:8000/v1"));
        assert!(!remote("https://api.openai.com/v1"));
    }
}
