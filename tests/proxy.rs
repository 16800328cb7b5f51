//! `agentsim proxy` driven as users drive it: the real binary between a real client (the official
//! `openai` Python package, and plain HTTP) and a stand-in upstream started by the test.
//!
//! The Python tests need a Python with `openai` installed: `AGENTSIM_TEST_PYTHON`, else
//! `.venv/bin/python` in the repository (`.ci/run` makes it). Without one they say so and pass,
//! unless `AGENTSIM_REQUIRE_PYTHON` is set (as CI sets it).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use common::{agentsim, python_with, repo_root, ProxyProcess};

fn python() -> Option<PathBuf> {
    python_with("openai")
}

/// The stand-in upstream, on a runtime of its own; dropping it takes the upstream down.
struct Upstream {
    address: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Upstream {
    fn start() -> Upstream {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let address = listener.local_addr().unwrap();
        let config = agentsim::proxy::stub::StubConfig {
            frame_gap: Duration::from_millis(2),
            latency: Duration::ZERO,
        };
        runtime.spawn(agentsim::proxy::stub::serve(listener, config));
        Upstream {
            address,
            runtime: Some(runtime),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/v1", self.address)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs tests/proxy/app.py in `mode` against `base_url`; what it printed.
fn app(python: &Path, base_url: &str, mode: &str, env: &[(&str, &str)]) -> Value {
    let output = Command::new(python)
        .arg(repo_root().join("tests/proxy/app.py"))
        .arg(mode)
        .env("OPENAI_BASE_URL", base_url)
        .env("OPENAI_API_KEY", "sk-test-SECRET-KEY-123")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "app.py {mode} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn faults_file(dir: &Path, text: &str) -> String {
    let path = dir.join("faults.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A stand-in upstream, and a proxy in front of it with a faults file of `text` writing into
/// `out`: the proxy, `out`, the faults file's path, and what must stay alive while it runs.
fn proxied(text: &str) -> (ProxyProcess, PathBuf, String, (Upstream, tempfile::TempDir)) {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let faults = faults_file(dir.path(), text);
    let proxy = ProxyProcess::start(&["--upstream", &upstream.url(), "--faults", &faults, "--out", path(&out)]);
    (proxy, out, faults, (upstream, dir))
}

fn report(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_openai_client_runs_its_tool_loop_and_streams_through_the_proxy() {
    let Some(python) = python() else { return };
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let (rec, out) = (dir.path().join("rec"), dir.path().join("out"));
    let proxy = ProxyProcess::start(&[
        "--upstream",
        &upstream.url(),
        "--record",
        path(&rec),
        "--out",
        path(&out),
    ]);
    let agent = app(&python, &proxy.base_url(), "agent", &[]);
    let streamed = app(&python, &proxy.base_url(), "stream", &[]);
    let (status, said) = proxy.stop();
    assert_eq!(status, 0, "{said}");

    // The tool loop: a call to lookup_order with the question, then an answer.
    let first = &agent["answers"][0];
    assert_eq!(first["steps"][0]["tool"], "lookup_order");
    assert_eq!(first["steps"][0]["arguments"]["order_id"], "Where is order 17?");
    assert!(first["answer"].as_str().unwrap().starts_with("Answer 4 to:"), "{agent}");
    // Streams reassembled by the SDK: tool-call arguments from fragments, text from deltas.
    assert_eq!(
        streamed["with_tools"]["steps"][0]["arguments"]["order_id"],
        "Where is order 9?"
    );
    assert_eq!(streamed["plain"]["answer"], "Answer 2 to: Tell me a story.");

    let report = report(&out);
    // Two questions of two calls each, then a streamed tool loop (two) and a streamed answer.
    assert_eq!(report["calls"], 7, "{report:#}");
    assert_eq!(report["answered"], 7);
    assert_eq!(report["streams"]["count"], 3);
    assert_eq!(report["streams"]["broken"], 0);
    assert!(report["usage"]["input_tokens"].as_u64().unwrap() > 0);
    // Money as a run's report writes it: dollars as a number beside the exact pico-dollars,
    // and the exchanges add up to the total.
    let cost_pusd = report["cost_pusd"].as_u64().unwrap();
    assert!(cost_pusd > 0, "gpt-4o-mini is priced");
    assert_eq!(report["cost_usd"].as_f64().unwrap(), cost_pusd as f64 / 1e12);
    let by_call: u64 = report["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["cost_pusd"].as_u64().unwrap())
        .sum();
    assert_eq!(by_call, cost_pusd);
    assert_eq!(report["faults_file"], Value::Null);
    // One record per request and per response in the trace, as the report counts them.
    let trace = std::fs::read_to_string(out.join("trace.jsonl")).unwrap();
    let events: Vec<Value> = trace.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.iter().filter(|e| e["event"] == "request").count(), 7);
    assert_eq!(events.iter().filter(|e| e["event"] == "response").count(), 7);
    // The cassette holds every exchange, the frames of the streams, and never the API key.
    let cassette = std::fs::read_to_string(rec.join("cassette.jsonl")).unwrap();
    assert_eq!(cassette.lines().count(), 1 + 7);
    assert!(cassette.contains("\"frames\""));
    for file in [
        cassette.as_str(),
        trace.as_str(),
        &std::fs::read_to_string(out.join("report.json")).unwrap(),
    ] {
        assert!(!file.contains("SECRET"), "the API key leaked");
    }
    assert!(std::fs::read_to_string(out.join("report.html"))
        .unwrap()
        .contains("What the app did"));
}

#[test]
fn a_429_with_retry_after_2s_is_retried_by_the_openai_client_after_about_2s() {
    let Some(python) = python() else { return };
    let (proxy, out, faults, _running) = proxied(
        "[[fault]]\nkind = \"llm.rate_limit\"\non_message = 1\nretry_after = \"2s\"\n\n\
         [[invariant]]\nname = \"retries honour retry-after\"\ndetect = \"early_retry\"\n",
    );
    let result = app(&python, &proxy.base_url(), "retry", &[]);
    let (status, said) = proxy.stop();
    assert_eq!(status, 0, "{said}");
    let elapsed = result["elapsed_s"].as_f64().unwrap();
    assert!((2.0..4.0).contains(&elapsed), "the client waited {elapsed} s");
    assert_eq!(result["answer"]["answer"], "Answer 2 to: Hello there.");
    let report = report(&out);
    assert_eq!(report["faults"]["llm.rate_limit"], 1);
    // The faults file is named as a run's report names its scenario, with its hash beside it.
    assert_eq!(report["faults_file"], faults.as_str());
    assert_eq!(report["faults_hash"].as_str().map(str::len), Some(64));
    assert_eq!(report["errors"]["429"], 1);
    assert_eq!(report["retries"]["count"], 1);
    let retry = &report["retries"]["list"][0];
    assert_eq!(
        (retry["call"].as_u64(), retry["after_status"].as_u64()),
        (Some(2), Some(429))
    );
    assert_eq!(retry["retry_after_us"], 2_000_000);
    assert!(retry["waited_us"].as_u64().unwrap() >= 2_000_000, "{retry}");
    assert_eq!(report["invariants"][0]["holds"], true);
}

#[test]
fn a_stream_cut_mid_way_breaks_the_apps_call_and_the_report_says_after_which_frame() {
    let Some(python) = python() else { return };
    let (proxy, out, _, _running) = proxied("[[fault]]\nkind = \"stream.cut\"\non_message = 1\nafter_frames = 2\n");
    let result = app(&python, &proxy.base_url(), "cut", &[]);
    let (status, said) = proxy.stop();
    assert_eq!(status, 0, "{said}");
    assert!(result["error"].is_string(), "the SDK raised: {result}");
    let report = report(&out);
    assert_eq!(report["streams"]["broken"], 1, "{report:#}");
    let exchange = &report["exchanges"][0];
    assert_eq!(
        (exchange["frames"].as_u64(), exchange["stream_broken"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(exchange["faults"], json!(["stream.cut"]));
}

#[test]
fn strict_replay_serves_identical_answers_with_the_upstream_gone_and_names_a_miss() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let faults = faults_file(
        dir.path(),
        "[[fault]]\nkind = \"llm.server_error\"\nprobability = 0.3\n",
    );
    let recorded = {
        let upstream = Upstream::start();
        let proxy = ProxyProcess::start(&[
            "--upstream",
            &upstream.url(),
            "--faults",
            &faults,
            "--seed",
            "4",
            "--record",
            path(&rec),
        ]);
        let agent = app(&python, &proxy.base_url(), "agent", &[]);
        let streamed = app(&python, &proxy.base_url(), "stream", &[]);
        assert_eq!(proxy.stop().0, 0);
        (agent, streamed)
    };
    // No upstream now: the cassette (and the recorded seed, for the same faults) serve it all.
    let out = dir.path().join("out");
    let proxy = ProxyProcess::start(&["--replay", path(&rec), "--faults", &faults, "--out", path(&out)]);
    let replayed = (
        app(&python, &proxy.base_url(), "agent", &[]),
        app(&python, &proxy.base_url(), "stream", &[]),
    );
    assert_eq!(replayed, recorded);
    // A request the recording does not have gets an error, and the log names the nearest one.
    let output = Command::new(&python)
        .arg(repo_root().join("tests/proxy/app.py"))
        .arg("agent")
        .env("OPENAI_BASE_URL", proxy.base_url())
        .env("APP_QUESTIONS", "Where is order 18?")
        .output()
        .unwrap();
    assert!(!output.status.success(), "a replay miss is an error for the app");
    let (status, said) = proxy.stop();
    assert_eq!(status, 0, "{said}");
    assert!(said.contains("nearest recorded request"), "{said}");
    assert!(
        said.contains("`messages[1].content`: recorded \"Where is order 17?\", now \"Where is order 18?\""),
        "{said}"
    );
    let report = report(&out);
    assert_eq!(report["mode"], "replay");
    assert_eq!(report["seed"], 4);
}

#[test]
fn fork_at_3_serves_a_sessions_first_three_calls_from_the_cassette_then_goes_live() {
    let Some(python) = python() else { return };
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let session = [
        ("APP_SESSION", "support-1"),
        ("APP_QUESTIONS", "Order 1?|Order 2?|Order 3?"),
    ];
    let proxy = ProxyProcess::start(&["--upstream", &upstream.url(), "--record", path(&rec)]);
    let recorded = app(&python, &proxy.base_url(), "agent", &session);
    assert_eq!(proxy.stop().0, 0);

    let out = dir.path().join("out");
    let proxy = ProxyProcess::start(&[
        "--replay",
        path(&rec),
        "--fork-at",
        "3",
        "--upstream",
        &upstream.url(),
        "--out",
        path(&out),
    ]);
    let forked = app(&python, &proxy.base_url(), "agent", &session);
    assert_eq!(proxy.stop().0, 0);
    assert_eq!(forked, recorded);
    let report = report(&out);
    let sources: Vec<&str> = report["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        ["replay", "replay", "replay", "upstream", "upstream", "upstream"]
    );
    assert_eq!(report["mode"], "fork");
}

/// Sends one chat request in its own session; the status.
fn call(client: &reqwest::blocking::Client, base: &str, session: &str) -> u16 {
    client
        .post(format!("{base}/chat/completions"))
        .header("x-agentsim-session", session)
        .header("content-type", "application/json")
        .body(json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).to_string())
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// The faults each (session, call) got, from report.json.
fn faults_by_call(out: &Path) -> Vec<(String, u64, Value)> {
    let mut all: Vec<(String, u64, Value)> = report(out)["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["session"].as_str().unwrap().to_owned(),
                x["call"].as_u64().unwrap(),
                x["faults"].clone(),
            )
        })
        .collect();
    all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    all
}

#[test]
fn the_same_seed_gives_the_same_faults_at_the_same_calls_whatever_the_arrival_order() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let faults = faults_file(
        dir.path(),
        "[[fault]]\nkind = \"llm.overloaded\"\nprobability = 0.5\nlatency = \"0ms\"\n",
    );
    let client = reqwest::blocking::Client::new();
    let sessions: Vec<String> = (0..12).map(|i| format!("s{i:02}")).collect();
    let run = |seed: &str, out: &str, reverse: bool| {
        let out = dir.path().join(out);
        let proxy = ProxyProcess::start(&[
            "--upstream",
            &upstream.url(),
            "--faults",
            &faults,
            "--seed",
            seed,
            "--out",
            path(&out),
        ]);
        let mut order: Vec<&String> = sessions.iter().collect();
        if reverse {
            order.reverse();
        }
        for _round in 0..3 {
            for s in &order {
                let status = call(&client, &proxy.base_url(), s);
                assert!(status == 200 || status == 503, "status {status}");
            }
        }
        assert_eq!(proxy.stop().0, 0);
        faults_by_call(&out)
    };
    let first = run("1", "a", false);
    let again = run("1", "b", true);
    let other = run("2", "c", false);
    assert_eq!(first.len(), 36);
    assert_eq!(first, again, "the same seed, requests in the opposite order");
    assert_ne!(first, other, "another seed");
    let fired = first
        .iter()
        .filter(|(_, _, f)| f.as_array().is_some_and(|a| !a.is_empty()))
        .count();
    assert!((6..30).contains(&fired), "about half of 36 calls: {fired}");
}

#[test]
fn a_models_listing_before_the_first_chat_neither_takes_on_message_1_nor_counts_in_a_call_budget() {
    let (proxy, out, _, _running) = proxied(
        "[[fault]]\nname = \"first\"\nkind = \"llm.rate_limit\"\non_message = 1\nretry_after = \"0s\"\n\n\
         [[invariant]]\nname = \"one chat a session\"\nbudget = { calls = 2, per = \"session\" }\n",
    );
    let client = reqwest::blocking::Client::new();
    let listing = client
        .get(format!("{}/models", proxy.base_url()))
        .header("x-agentsim-session", "s")
        .send()
        .unwrap();
    assert_eq!(listing.status().as_u16(), 200, "the listing is forwarded untouched");
    assert_eq!(call(&client, &proxy.base_url(), "s"), 429, "the session's first chat");
    assert_eq!(call(&client, &proxy.base_url(), "s"), 200, "its second");
    assert_eq!(proxy.stop().0, 0);
    let by_call = faults_by_call(&out);
    assert_eq!(
        by_call,
        [
            ("s".to_owned(), 1, json!([])),
            ("s".to_owned(), 2, json!(["llm.rate_limit"])),
            ("s".to_owned(), 3, json!([]))
        ],
        "numbered in arrival order, the fault on the first chat"
    );
    let invariant = &report(&out)["invariants"][0];
    assert_eq!(
        invariant["holds"], true,
        "two chats, the listing not among them: {invariant}"
    );
}

#[test]
fn bad_flags_and_faults_files_are_refused_with_the_place_and_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let faults = faults_file(dir.path(), "[[fault]]\nkind = \"llm.rate_limt\"\non_message = 1\n");
    let output = agentsim()
        .args(["proxy", "--upstream", "http://127.0.0.1:9/v1", "--faults", &faults])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("faults.toml:2:8") && said.contains("did you mean \"llm.rate_limit\""),
        "{said}"
    );

    let output = agentsim()
        .args(["proxy", "--listen", "0.0.0.0:0", "--upstream", "http://127.0.0.1:9/v1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--allow-remote"));

    let output = agentsim().args(["proxy", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("expected --upstream URL"));

    // Refused before the proxy starts: nothing it would write can clobber an earlier recording
    // or run, or be lost at the end.
    let refused = |args: &[&str], expected: &str| {
        let mut all = vec![
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:9/v1",
        ];
        all.extend_from_slice(args);
        let output = agentsim().args(&all).output().unwrap();
        let said = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {said}");
        assert!(said.contains(expected), "{args:?}: {said}");
    };
    let mcp_faults = dir.path().join("mcp.toml");
    std::fs::write(&mcp_faults, "[[fault]]\nkind = \"mcp.hang\"\non_message = 1\n").unwrap();
    refused(
        &["--faults", path(&mcp_faults)],
        "mcp.toml:2:8: expected a fault this proxy acts on: `agentsim proxy` acts on llm.* and stream.* faults only",
    );
    let (rec, out) = (dir.path().join("rec"), dir.path().join("out"));
    std::fs::create_dir_all(&rec).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(rec.join("cassette.jsonl"), "kept\n").unwrap();
    std::fs::write(out.join("trace.jsonl"), "kept\n").unwrap();
    refused(&["--record", path(&rec)], "already holds cassette.jsonl");
    refused(&["--out", path(&out)], "pass --force to overwrite it");
    refused(
        &["--replay", path(&rec), "--record", path(&rec), "--force"],
        "would overwrite the cassette being replayed",
    );
    refused(
        &["--otlp", path(dir.path())],
        "--otlp: expected a file to write, found the directory",
    );
    let recorded = dir.path().join("recorded");
    std::fs::create_dir_all(&recorded).unwrap();
    std::fs::write(recorded.join("cassette.jsonl"), "{}\n").unwrap();
    refused(
        &["--replay", path(&recorded)],
        "with --replay: expected --fork-at N as well",
    );
    let output = agentsim()
        .args([
            "proxy",
            "--upstream",
            "http://127.0.0.1:9/v1",
            "--replay-match",
            "in-order",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--replay <DIR>"),
        "{output:?}"
    );
    assert_eq!(std::fs::read_to_string(rec.join("cassette.jsonl")).unwrap(), "kept\n");
    assert_eq!(std::fs::read_to_string(out.join("trace.jsonl")).unwrap(), "kept\n");

    let scenario = dir.path().join("s.toml");
    let text = std::fs::read_to_string(repo_root().join("scenarios/support-desk.toml")).unwrap()
        + "\n[[fault]]\nkind = \"stream.cut\"\ntarget = \"llm:*\"\nprobability = 0.5\n";
    std::fs::write(&scenario, text).unwrap();
    let output = agentsim().args(["validate", path(&scenario)]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("agentsim proxy --faults"));

    // A faults file is checked by `validate` as a faults file, not as a scenario.
    let good = faults_file(
        dir.path(),
        "[[fault]]\nkind = \"stream.cut\"\nprobability = 0.2\nafter_frames = 3\n",
    );
    let output = agentsim().args(["validate", &good]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("OK (a faults file for agentsim proxy)"));
    let untriggered = faults_file(dir.path(), "[[fault]]\nkind = \"stream.cut\"\nafter_frames = 3\n");
    let output = agentsim().args(["validate", &untriggered]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("faults.toml:1:1: expected a trigger for this fault"),
        "{output:?}"
    );
}

/// Streams one chat request in `session` with `text` as the question: the time to the first
/// byte, the time to the end, the body, and whether it ended cleanly.
fn stream(base: &str, text: &str) -> (Duration, Duration, String, bool) {
    use std::io::Read as _;
    let started = std::time::Instant::now();
    let mut response = reqwest::blocking::Client::new()
        .post(format!("{base}/chat/completions"))
        .header("content-type", "application/json")
        .body(
            json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": text}]})
                .to_string(),
        )
        .send()
        .unwrap();
    let mut first = [0u8; 1];
    response.read_exact(&mut first).unwrap();
    let to_first = started.elapsed();
    let mut rest = Vec::new();
    let clean = response.read_to_end(&mut rest).is_ok();
    let body = String::from_utf8_lossy(&[first.to_vec(), rest].concat()).into_owned();
    (to_first, started.elapsed(), body, clean)
}

#[test]
fn each_stream_fault_acts_on_the_frames_as_the_catalogue_says() {
    let (proxy, out, _, _running) = proxied(
        "[[fault]]\nkind = \"stream.slow_first_token\"\nmessage_contains = \"slow\"\nlatency = \"400ms\"\n\
         [[fault]]\nkind = \"stream.stall\"\nmessage_contains = \"stall\"\nafter_frames = 2\nlatency = \"400ms\"\n\
         [[fault]]\nkind = \"stream.duplicate_frames\"\nmessage_contains = \"twice\"\nafter_frames = 2\n\
         [[fault]]\nkind = \"stream.error_event\"\nmessage_contains = \"error\"\nafter_frames = 2\n\
         [[fault]]\nkind = \"stream.cut\"\nmessage_contains = \"cut\"\nafter_frames = 2\n",
    );
    let base = proxy.base_url();
    let data_lines = |body: &str| body.lines().filter(|l| l.starts_with("data: ")).count();
    let (_, _, normal, clean) = stream(&base, "plain one two three");
    assert!(clean && normal.ends_with("data: [DONE]\n\n"), "{normal}");

    let (to_first, _, body, clean) = stream(&base, "slow one two three");
    assert!(
        to_first >= Duration::from_millis(400) && clean,
        "first byte after {to_first:?}"
    );
    assert!(body.ends_with("data: [DONE]\n\n"));

    let (to_first, to_end, body, clean) = stream(&base, "stall one two");
    assert!(
        to_first < Duration::from_millis(300),
        "the first frames are not held: {to_first:?}"
    );
    assert!(
        to_end >= Duration::from_millis(400) && clean && body.ends_with("data: [DONE]\n\n"),
        "{to_end:?}"
    );

    let (_, _, body, clean) = stream(&base, "twice one two three");
    let frames: Vec<&str> = body.split("\n\n").filter(|f| !f.is_empty()).collect();
    assert!(clean && frames[1] == frames[2], "frame 2 twice: {body}");
    assert_eq!(data_lines(&body), data_lines(&normal) + 1);

    let (_, _, body, clean) = stream(&base, "error one two three");
    let frames: Vec<&str> = body.split("\n\n").filter(|f| !f.is_empty()).collect();
    assert!(clean && frames.len() == 3 && frames[2].contains("\"error\""), "{body}");
    assert!(!body.contains("[DONE]"));

    let (_, _, body, clean) = stream(&base, "cut one two three");
    assert!(!clean, "a cut stream does not end cleanly: {body}");
    assert_eq!(data_lines(&body), 2);
    assert!(!body.contains("[DONE]"));

    let (status, said) = proxy.stop();
    assert_eq!(status, 0, "{said}");
    let faults: Vec<Value> = report(&out)["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["faults"].clone())
        .collect();
    assert_eq!(
        faults,
        [
            json!([]),
            json!(["stream.slow_first_token"]),
            json!(["stream.stall"]),
            json!(["stream.duplicate_frames"]),
            json!(["stream.error_event"]),
            json!(["stream.cut"])
        ]
    );
}

#[test]
fn a_call_still_in_flight_when_the_proxy_stops_is_reported_unfinished_with_its_wait() {
    let (proxy, out, _, _running) =
        proxied("[[fault]]\nkind = \"llm.timeout\"\nlatency = \"60s\"\nprobability = 1.0\n");
    let base = proxy.base_url();
    let caller = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::new();
        client
            .post(format!("{base}/chat/completions"))
            .header("x-agentsim-session", "s")
            .header("content-type", "application/json")
            .body(json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).to_string())
            .send()
            .map(|r| r.status().as_u16())
    });
    std::thread::sleep(std::time::Duration::from_millis(800));
    let (status, said) = proxy.stop();
    assert_eq!(status, 0, "{said}");
    let _ = caller.join();
    let report = report(&out);
    assert_eq!(
        (report["calls"].as_u64(), report["answered"].as_u64()),
        (Some(1), Some(0)),
        "{report:#}"
    );
    assert_eq!(report["unfinished"], 1, "{report:#}");
    let exchange = &report["exchanges"][0];
    assert_eq!(exchange["unfinished"], true, "{exchange}");
    assert!(exchange["status"].is_null(), "no status was ever sent: {exchange}");
    assert!(
        exchange["latency_us"].as_u64().unwrap() >= 800_000,
        "it waited: {exchange}"
    );
    assert!(said.contains("1 unfinished"), "{said}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("unfinished (in flight when the proxy stopped)"));
}

#[test]
fn a_call_the_client_gives_up_on_ends_499_after_its_wait_and_its_retry_counts_as_one() {
    let (proxy, out, _, _running) = proxied(
        "[[fault]]\nkind = \"llm.timeout\"\nlatency = \"60s\"\non_message = 1\ntarget = \"llm:gpt-4o-mini\"\n\n\
         [[fault]]\nkind = \"stream.stall\"\nlatency = \"1s\"\nafter_frames = 1\non_message = 1\nroute = \"*\"\ntarget = \"llm:gpt-4o\"\n",
    );
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let ask = |model: &str, streamed: bool| {
        client
            .post(format!("{}/chat/completions", proxy.base_url()))
            .header("x-agentsim-session", model)
            .header("content-type", "application/json")
            .body(
                json!({"model": model, "stream": streamed, "messages": [{"role": "user", "content": "hi"}]})
                    .to_string(),
            )
            .send()
            .and_then(|r| r.text())
    };
    // The app's own timeout, then its retry of the same request.
    assert!(ask("gpt-4o-mini", false).unwrap_err().is_timeout());
    assert!(ask("gpt-4o-mini", false).is_ok());
    // A stream that stalls after its first frame: the app stops reading, the proxy sees it hung
    // up when the next frame cannot go out.
    assert!(ask("gpt-4o", true).is_err());
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(proxy.stop().0, 0);
    let report = report(&out);
    let exchanges = report["exchanges"].as_array().unwrap();
    let gave_up = &exchanges[0];
    assert_eq!(gave_up["status"], 499, "{gave_up}");
    let waited_us = gave_up["latency_us"].as_u64().unwrap();
    assert!(
        (250_000..5_000_000).contains(&waited_us),
        "the app's wait, not the fault's: {gave_up}"
    );
    assert_eq!(report["retries"]["count"], 1, "{:#}", report["retries"]);
    assert_eq!(report["retries"]["list"][0]["after_status"], 499);
    assert_eq!(report["errors"]["499"], 1);
    let stalled = &exchanges[2];
    assert_eq!(
        (stalled["status"].as_u64(), stalled["stream_broken"].as_bool()),
        (Some(200), Some(true)),
        "{stalled}"
    );
    assert_eq!(report["answered"], 1, "only the retry was answered: {report:#}");
    assert_eq!(report["unfinished"], 0);
    let trace = std::fs::read_to_string(out.join("trace.jsonl")).unwrap();
    assert_eq!(trace.matches("\"event\":\"client_closed\"").count(), 2, "{trace}");
}

#[test]
fn a_content_fault_with_nothing_to_break_neither_counts_nor_uses_up_its_count() {
    let (proxy, out, _, _running) =
        proxied("[[fault]]\nkind = \"llm.malformed_tool_args\"\nprobability = 1.0\ncount = 1\n");
    let client = reqwest::blocking::Client::new();
    // No tools: a text answer, nothing for the fault to break.
    assert_eq!(call(&client, &proxy.base_url(), "s"), 200);
    let with_tools = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "order 17"}],
        "tools": [{"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}]});
    let answer = client
        .post(format!("{}/chat/completions", proxy.base_url()))
        .header("x-agentsim-session", "s")
        .header("content-type", "application/json")
        .body(with_tools.to_string())
        .send()
        .unwrap()
        .text()
        .unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let arguments = answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    assert!(
        serde_json::from_str::<Value>(arguments).is_err(),
        "broken on the call that has tool calls: {arguments}"
    );
    assert_eq!(proxy.stop().0, 0);
    assert_eq!(
        faults_by_call(&out),
        [
            ("s".to_owned(), 1, json!([])),
            ("s".to_owned(), 2, json!(["llm.malformed_tool_args"]))
        ]
    );
    assert_eq!(report(&out)["faults"], json!({"llm.malformed_tool_args": 1}));
    let trace = std::fs::read_to_string(out.join("trace.jsonl")).unwrap();
    let note = trace
        .lines()
        .find(|l| l.contains("fault_not_applicable"))
        .expect("a note");
    assert!(
        note.contains("\"call\":1") && note.contains("found nothing to break"),
        "{note}"
    );
}

/// One chat request with the lookup tool, streamed or not: what the app would put together —
/// `(text, refusal, tool calls as (name, arguments), finish reason)`.
fn ask_with_tools(base: &str, text: &str, streamed: bool) -> (String, String, Vec<(String, String)>, String) {
    let body = json!({"model": "gpt-4o-mini", "stream": streamed, "messages": [{"role": "user", "content": text}],
        "tools": [{"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}]});
    let answer = reqwest::blocking::Client::new()
        .post(format!("{base}/chat/completions"))
        .header("content-type", "application/json")
        .header("x-agentsim-session", format!("{text}-{streamed}"))
        .body(body.to_string())
        .send()
        .unwrap()
        .text()
        .unwrap();
    let as_text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    if !streamed {
        let answer: Value = serde_json::from_str(&answer).unwrap();
        let message = &answer["choices"][0]["message"];
        let calls = message["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| (as_text(&c["function"]["name"]), as_text(&c["function"]["arguments"])))
            .collect();
        let finish = as_text(&answer["choices"][0]["finish_reason"]);
        return (
            as_text(&message["content"]),
            as_text(&message["refusal"]),
            calls,
            finish,
        );
    }
    let (mut content, mut refusal, mut calls, mut finish) = (String::new(), String::new(), Vec::new(), String::new());
    assert!(answer.ends_with("data: [DONE]\n\n"), "{answer}");
    for data in answer
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
    {
        let chunk: Value = serde_json::from_str(data).unwrap();
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        let delta = &choice["delta"];
        content += &as_text(&delta["content"]);
        refusal += &as_text(&delta["refusal"]);
        for part in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = part["index"].as_u64().unwrap() as usize;
            if calls.len() <= index {
                calls.push((String::new(), String::new()));
            }
            calls[index].0 += &as_text(&part["function"]["name"]);
            calls[index].1 += &as_text(&part["function"]["arguments"]);
        }
        if !choice["finish_reason"].is_null() {
            finish = as_text(&choice["finish_reason"]);
        }
    }
    (content, refusal, calls, finish)
}

#[test]
fn content_faults_break_a_streamed_answer_as_they_break_a_whole_one() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let faults = faults_file(
        dir.path(),
        "[[fault]]\nkind = \"llm.malformed_tool_args\"\nmessage_contains = \"malformed\"\n\
         [[fault]]\nkind = \"llm.refusal\"\nmessage_contains = \"refuse\"\n\
         [[fault]]\nkind = \"llm.truncated\"\nmessage_contains = \"truncate\"\n\
         [[fault]]\nkind = \"llm.hallucinated_tool\"\nmessage_contains = \"invent\"\n\
         [[fault]]\nkind = \"stream.duplicate_frames\"\nmessage_contains = \"twice\"\n",
    );
    let out = dir.path().join("out");
    let rec = dir.path().join("rec");
    let proxy = ProxyProcess::start(&[
        "--upstream",
        &upstream.url(),
        "--faults",
        &faults,
        "--out",
        path(&out),
        "--record",
        path(&rec),
    ]);
    let base = proxy.base_url();
    let intact = ask_with_tools(&base, "order 17 please", true);
    assert_eq!(intact.2[0].1, r#"{"input":"order 17 please"}"#, "{intact:?}");
    for question in [
        "malformed order 17",
        "refuse order 17",
        "truncate order 17",
        "invent order 17",
    ] {
        let whole = ask_with_tools(&base, question, false);
        let streamed = ask_with_tools(&base, question, true);
        assert_eq!(streamed, whole, "{question}");
    }
    let malformed = ask_with_tools(&base, "malformed order 18", true);
    assert_eq!(malformed.2[0].1, r#"{"input":"malfo"#, "{malformed:?}");
    let refused = ask_with_tools(&base, "refuse order 18", true);
    assert!(refused.0.is_empty() && refused.1.contains("can't help") && refused.2.is_empty());
    // A duplicated frame doubles a piece of the arguments, not the tool call's header.
    let (_, _, doubled, _) = ask_with_tools(&base, "twice order 17", true);
    assert_eq!(doubled[0].0, "lookup_order");
    assert_ne!(doubled[0].1, r#"{"input":"twice order 17"}"#);
    assert!(
        doubled[0].1.len() > r#"{"input":"twice order 17"}"#.len(),
        "{doubled:?}"
    );
    let (status, said) = proxy.stop();
    assert_eq!(status, 0, "{said}");
    // The cassette keeps the stream as the upstream sent it; the report names the fault.
    let cassette = std::fs::read_to_string(rec.join("cassette.jsonl")).unwrap();
    let taped: Value = cassette
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|x| x["session"] == "malformed order 18-true")
        .unwrap();
    let arguments: String = taped["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["data"].as_str()?.strip_prefix("data: ")?.trim().parse::<Value>().ok())
        .filter_map(|c| {
            c.pointer("/choices/0/delta/tool_calls/0/function/arguments")?
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        arguments, r#"{"input":"malformed order 18"}"#,
        "the upstream's own frames"
    );
    let exchanges = report(&out)["exchanges"].as_array().unwrap().clone();
    assert_eq!(exchanges.len(), 12);
    assert_eq!(exchanges[9]["faults"], json!(["llm.malformed_tool_args"]));
    assert_eq!(exchanges[11]["faults"], json!(["stream.duplicate_frames"]));
}
