//! `agentsim proxy --mcp`, driven as users drive it: the official MCP Python SDK's client
//! (`tests/mcp/client.py`) talks to the real binary, which stands in front of an MCP server built
//! on the same SDK (`tests/mcp/server.py`), over stdio and over streamable HTTP. Each fault's
//! wire shape is what the client reports; record and strict replay give the client the same
//! transcript with no server; and a scenario's tool answers as its MCP cassette recorded.
//!
//! The Python tests skip when no Python with the `mcp` package is found, unless
//! `AGENTSIM_REQUIRE_PYTHON` is set (as CI sets it).

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{agentsim, having, python_with, repo_root, ProxyProcess};

fn python() -> Option<PathBuf> {
    python_with("mcp")
}

fn server_script() -> String {
    repo_root().join("tests/mcp/server.py").display().to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Runs the test client; what it saw. `target` is `["stdio", command…]` or `["http", url]`.
fn client(python: &Path, target: &[&str], calls: &str, env: &[(&str, &str)]) -> Value {
    let output = Command::new(python)
        .arg(repo_root().join("tests/mcp/client.py"))
        .args(target)
        .env("CLIENT_CALLS", calls)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "client.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "client.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The client's target for the proxy over stdio in front of the test server: `proxy_args`
/// before `--`.
fn stdio_target(python: &Path, proxy_args: &[&str]) -> Vec<String> {
    let mut target = vec![
        "stdio".to_owned(),
        env!("CARGO_BIN_EXE_agentsim").to_owned(),
        "proxy".to_owned(),
        "--mcp".to_owned(),
    ];
    target.extend(proxy_args.iter().map(|a| (*a).to_owned()));
    if !proxy_args.contains(&"--replay") {
        target.extend(["--".to_owned(), python.display().to_string(), server_script()]);
    }
    target
}

fn refs(target: &[String]) -> Vec<&str> {
    target.iter().map(String::as_str).collect()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn trace(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("trace.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The test server over streamable HTTP on a free port; killed when dropped.
struct HttpServer {
    child: Child,
    url: String,
}

impl HttpServer {
    fn start(python: &Path) -> HttpServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python)
            .arg(server_script())
            .arg("streamable-http")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the test MCP server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpServer {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The MCP proxy over streamable HTTP in front of `server`, with a faults file and `--out`.
fn http_proxy(server: &HttpServer, faults: &str, out: &Path) -> ProxyProcess {
    let out = out.display().to_string();
    ProxyProcess::start(&["--mcp", "--upstream", &server.url, "--faults", faults, "--out", &out])
}

fn mcp_url(proxy: &ProxyProcess) -> String {
    format!("http://{}/mcp", proxy.address)
}

/// Every call the client made, in order.
fn calls(seen: &Value) -> &Vec<Value> {
    seen["calls"].as_array().unwrap()
}

const LOOKUPS_8: &str = r#"[["lookup_order",{"order_id":"A1"}],["lookup_order",{"order_id":"A1"}],["lookup_order",{"order_id":"A1"}],["lookup_order",{"order_id":"A1"}],["search_docs",{"query":"returns"}],["lookup_order",{"order_id":"A1"}],["lookup_order",{"order_id":"B7"}],["lookup_order",{"order_id":"A1"}]]"#;

#[test]
fn each_mcp_fault_reaches_a_real_client_in_the_protocols_shape() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let faults = write(
        dir.path(),
        "faults.toml",
        r#"
[[fault]]
kind = "mcp.tool_error"
target = "mcp:lookup_order"
on_message = 1
text = "database unavailable"

[[fault]]
kind = "mcp.protocol_error"
on_message = 2

[[fault]]
kind = "mcp.timeout"
on_message = 3
latency = "50ms"

[[fault]]
kind = "mcp.slow"
on_message = 4
latency = "300ms"

[[fault]]
name = "poison"
kind = "mcp.injection"
target = "mcp:search_docs"
probability = 1.0

[[fault]]
kind = "mcp.truncated"
on_message = 6

[[fault]]
kind = "mcp.oversized"
on_message = 7
"#,
    );
    let out = dir.path().join("out");
    let otlp = dir.path().join("spans.json");
    let (out_arg, otlp_arg) = (out.display().to_string(), otlp.display().to_string());
    let target = stdio_target(&python, &["--faults", &faults, "--out", &out_arg, "--otlp", &otlp_arg]);
    let seen = client(&python, &refs(&target), LOOKUPS_8, &[]);
    let calls = calls(&seen);
    let full = "order A1: 2 items, shipped, total 84.50 USD";
    // A tool error is a result with isError, not an exception.
    assert_eq!(calls[0]["is_error"], true, "{}", calls[0]);
    assert_eq!(calls[0]["text"][0], "database unavailable");
    // A protocol error and a timeout are JSON-RPC errors the SDK raises.
    assert_eq!(calls[1]["error"]["code"], -32603, "{}", calls[1]);
    assert_eq!(calls[2]["error"]["code"], -32001, "{}", calls[2]);
    assert_eq!(calls[2]["error"]["message"], "Request timed out");
    // Slow: the real answer, late.
    assert_eq!(calls[3]["text"][0], full);
    // Injection: one more text item, after the real one.
    assert_eq!(calls[4]["text"].as_array().unwrap().len(), 2, "{}", calls[4]);
    assert!(calls[4]["text"][1]
        .as_str()
        .unwrap()
        .contains("IGNORE PREVIOUS INSTRUCTIONS"));
    // Truncated: the first half, still a valid result (its structured content cut too).
    assert_eq!(calls[5]["is_error"], false, "{}", calls[5]);
    assert_eq!(calls[5]["text"][0], &full[..full.len() / 2]);
    // Oversized: at least a MiB.
    assert!(calls[6]["text"][0].as_str().unwrap().len() >= 1024 * 1024);
    assert_eq!(calls[7]["text"][0], full, "no fault on the 8th call");

    // The report and the trace tell the same story as the client.
    let report = read_json(&out.join("report.json"));
    assert_eq!(report["proxy"], "mcp");
    assert_eq!(report["transport"], "stdio");
    assert_eq!(report["tool_calls"], 8);
    assert_eq!(report["tool_errors"], 1);
    assert_eq!(report["protocol_errors"], 2);
    assert_eq!(report["by_tool"]["search_docs"]["calls"], 1);
    let fired: Vec<(&str, u64)> = report["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap(), f["fired"].as_u64().unwrap()))
        .collect();
    assert_eq!(fired.len(), 7);
    assert!(fired.iter().all(|(_, n)| *n == 1), "{fired:?}");
    let records = trace(&out);
    let faulted: Vec<&str> = records
        .iter()
        .filter(|r| r["event"] == "mcp_request" && !r["fault"].is_null())
        .map(|r| r["fault"]["kind"].as_str().unwrap())
        .collect();
    let mut reported: Vec<&str> = fired.iter().map(|(k, _)| *k).collect();
    let mut traced = faulted.clone();
    reported.sort_unstable();
    traced.sort_unstable();
    assert_eq!(traced, reported);
    let slow = report["requests_made"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["fault"]["kind"] == "mcp.slow")
        .unwrap();
    assert!(slow["latency_us"].as_u64().unwrap() >= 300_000, "{slow}");

    // OTLP: one execute_tool span per tool call, with the MCP attributes.
    let spans = read_json(&otlp);
    let spans = spans["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().unwrap();
    let attribute = |span: &Value, key: &str| -> Option<Value> {
        span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"].clone())
    };
    let tool_spans: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "tools/call lookup_order")
        .collect();
    assert_eq!(tool_spans.len(), 7);
    let first = tool_spans[0];
    assert_eq!(
        attribute(first, "gen_ai.operation.name").unwrap()["stringValue"],
        "execute_tool"
    );
    assert_eq!(
        attribute(first, "mcp.method.name").unwrap()["stringValue"],
        "tools/call"
    );
    assert_eq!(attribute(first, "error.type").unwrap()["stringValue"], "tool_error");
    assert_eq!(attribute(first, "network.transport").unwrap()["stringValue"], "pipe");
    assert!(attribute(first, "mcp.protocol.version").is_some());
}

#[test]
fn a_hanging_tool_times_the_client_out_and_a_dying_server_closes_the_pipe() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let faults = write(
        dir.path(),
        "faults.toml",
        r#"
[[fault]]
name = "stuck"
kind = "mcp.hang"
target = "mcp:search_docs"
on_message = 1

[[fault]]
name = "dies"
kind = "mcp.server_crash"
on_message = 3
"#,
    );
    let out = dir.path().join("out");
    let out_arg = out.display().to_string();
    let target = stdio_target(&python, &["--faults", &faults, "--out", &out_arg]);
    let calls_json = r#"[["search_docs",{"query":"x"}],["lookup_order",{"order_id":"A1"}],["refund",{"order_id":"A1","amount_usd":5}],["lookup_order",{"order_id":"A1"}]]"#;
    let started = Instant::now();
    let seen = client(&python, &refs(&target), calls_json, &[("CLIENT_TIMEOUT", "1")]);
    let calls = calls(&seen);
    // The hang: only the client's own timeout ends it.
    assert!(
        calls[0]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Timed out"),
        "{}",
        calls[0]
    );
    assert_eq!(calls[1]["is_error"], false, "the session goes on after a hang");
    // The crash: the pipe closes under the call, and nothing after it works.
    assert!(
        calls[2].get("error").is_some() || calls[2].get("exception").is_some(),
        "{}",
        calls[2]
    );
    assert!(
        calls[3].get("error").is_some() || calls[3].get("exception").is_some(),
        "{}",
        calls[3]
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let report = read_json(&out.join("report.json"));
    let unanswered: Vec<(&str, &str)> = report["requests_made"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| Some((r["tool"].as_str()?, r["unanswered"].as_str()?)))
        .collect();
    assert_eq!(unanswered, [("search_docs", "hang"), ("refund", "server_crash")]);
    assert_eq!(report["unanswered"], 2);
}

const DRIFT_FAULTS: &str = r#"
[[fault]]
name = "redeployed"
kind = "mcp.schema_drift"
target = "mcp:lookup_order"
on_message = 2

[[fault]]
name = "withdrawn"
kind = "mcp.tool_removed"
target = "mcp:refund"
probability = 1.0
"#;

const DRIFT_CALLS: &str = r#"[["lookup_order",{"order_id":"A1"}],["lookup_order",{"order_id":"B7"}],["refund",{"order_id":"A1","amount_usd":5}],["search_docs",{"query":"returns"}]]"#;

/// What a drifting server did to the client, the same over both transports.
fn assert_drift_seen(seen: &Value) {
    let calls = calls(seen);
    assert!(
        seen["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "notifications/tools/list_changed"),
        "{seen}"
    );
    // The call with the old argument names is refused as invalid params...
    assert_eq!(calls[1]["error"]["code"], -32602, "{}", calls[1]);
    assert!(calls[1]["error"]["message"].as_str().unwrap().contains("order_id_v2"));
    // ...the client lists the tools again, sees the new schema, and retries with it.
    assert_eq!(calls[1]["relisted"]["lookup_order"], serde_json::json!(["order_id_v2"]));
    assert_eq!(
        calls[1]["retried"]["text"][0],
        "order B7: 2 items, shipped, total 12.00 USD"
    );
    // A removed tool is gone from the list and unknown to the server.
    assert_eq!(calls[2]["error"]["code"], -32602, "{}", calls[2]);
    assert!(calls[2]["relisted"].get("refund").is_none(), "{}", calls[2]);
    assert_eq!(calls[3]["is_error"], false);
}

#[test]
fn schema_drift_reaches_the_client_as_list_changed_over_stdio_and_http() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let faults = write(dir.path(), "faults.toml", DRIFT_FAULTS);
    let adapt = [("CLIENT_ADAPT", "1")];
    let target = stdio_target(&python, &["--faults", &faults]);
    let over_stdio = client(&python, &refs(&target), DRIFT_CALLS, &adapt);
    assert_drift_seen(&over_stdio);

    let server = HttpServer::start(&python);
    let out = dir.path().join("out");
    let proxy = http_proxy(&server, &faults, &out);
    let over_http = client(&python, &["http", &mcp_url(&proxy)], DRIFT_CALLS, &adapt);
    let (status, said) = proxy.stop();
    assert_eq!(status, 0, "{said}");
    assert_drift_seen(&over_http);
    assert_eq!(
        over_stdio["calls"], over_http["calls"],
        "the same decisions on both transports"
    );
    let report = read_json(&out.join("report.json"));
    assert_eq!(report["transport"], "streamable_http");
    assert_eq!(
        report["notifications"]["to_client"]["notifications/tools/list_changed"],
        2
    );
}

#[test]
fn a_call_the_drifted_server_refuses_draws_no_fault_and_counts_none_as_fired() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The second call drifts the schema; the third still uses the old names, so the changed
    // server refuses it, and the injection pinned to it never reaches the client.
    let faults = write(
        dir.path(),
        "faults.toml",
        r#"
[[fault]]
name = "redeployed"
kind = "mcp.schema_drift"
target = "mcp:lookup_order"
on_message = 2

[[fault]]
name = "poisoned"
kind = "mcp.injection"
target = "mcp:lookup_order"
on_message = 3
"#,
    );
    let out = dir.path().join("out");
    let out_text = out.display().to_string();
    let target = stdio_target(&python, &["--faults", &faults, "--out", &out_text]);
    let calls =
        r#"[["lookup_order",{"order_id":"A1"}],["lookup_order",{"order_id":"B7"}],["lookup_order",{"order_id":"C3"}]]"#;
    let seen = client(&python, &refs(&target), calls, &[]);
    let calls = self::calls(&seen);
    assert_eq!(calls[2]["error"]["code"], -32602, "{}", calls[2]);
    let report = read_json(&out.join("report.json"));
    let made: Vec<&Value> = report["requests_made"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["tool"] == "lookup_order")
        .collect();
    assert_eq!(made.len(), 3, "{report:#}");
    assert_eq!(made[1]["fault"]["kind"], "mcp.schema_drift", "{}", made[1]);
    assert!(
        made[2]["fault"].is_null(),
        "the refusal is the drift's, no fault of its own: {}",
        made[2]
    );
    let fired = |name: &str| {
        report["faults"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .map(|f| f["fired"].clone())
    };
    assert_eq!(fired("redeployed"), Some(serde_json::json!(1)), "{}", report["faults"]);
    assert_eq!(fired("poisoned"), Some(serde_json::json!(0)), "{}", report["faults"]);
}

#[test]
fn a_recording_replays_strictly_with_no_server_over_either_transport() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let faults = write(dir.path(), "faults.toml", DRIFT_FAULTS);
    let tape = dir.path().join("tape");
    let tape_arg = tape.display().to_string();
    let adapt = [("CLIENT_ADAPT", "1")];
    let recording = stdio_target(&python, &["--faults", &faults, "--record", &tape_arg]);
    let live = client(&python, &refs(&recording), DRIFT_CALLS, &adapt);
    let cassette = std::fs::read_to_string(tape.join("cassette.jsonl")).unwrap();
    assert!(cassette.starts_with("{\"agentsim\""), "{cassette}");

    let replaying = stdio_target(&python, &["--faults", &faults, "--replay", &tape_arg]);
    let replayed = client(&python, &refs(&replaying), DRIFT_CALLS, &adapt);
    assert_eq!(replayed, live, "a strict replay shows the client what it saw live");

    let proxy = ProxyProcess::start(&["--mcp", "--replay", &tape_arg, "--faults", &faults]);
    let over_http = client(&python, &["http", &mcp_url(&proxy)], DRIFT_CALLS, &adapt);
    let _ = proxy.stop();
    assert_eq!(over_http, live, "a stdio recording replays over streamable HTTP too");

    // A request the recording does not have is a miss that names the difference.
    let other = r#"[["lookup_order",{"order_id":"Q5"}]]"#;
    let missed = client(&python, &refs(&replaying), other, &[]);
    let message = calls(&missed)[0]["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("replay miss") && message.contains("arguments.order_id"),
        "{message}"
    );
}

#[test]
fn an_expired_http_session_gets_a_404_and_the_client_reconnects_into_a_new_session() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let faults = write(
        dir.path(),
        "faults.toml",
        "[[fault]]\nname = \"expired\"\nkind = \"mcp.session_expired\"\ntarget = \"mcp:lookup_order\"\non_message = 2\ncount = 1\n",
    );
    let server = HttpServer::start(&python);
    let out = dir.path().join("out");
    let proxy = http_proxy(&server, &faults, &out);
    let three = r#"[["lookup_order",{"order_id":"A1"}],["lookup_order",{"order_id":"B7"}],["search_docs",{"query":"returns"}]]"#;
    let seen = client(
        &python,
        &["http", &mcp_url(&proxy)],
        three,
        &[("CLIENT_RECONNECT", "1")],
    );
    // A call still made on the ended session is refused as the server would, and booked under
    // its tool.
    let late = r#"{"jsonrpc":"2.0","id":99,"method":"tools/call","params":{"name":"lookup_order","arguments":{"order_id":"Z9"}}}"#;
    let answer = raw_post(proxy.address, "/mcp", &[("x-agentsim-session", "1")], late);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let (status, said) = proxy.stop();
    assert_eq!(status, 0, "{said}");
    let calls = calls(&seen);
    assert_eq!(calls[1]["error"]["message"], "Session terminated", "{}", calls[1]);
    assert_eq!(seen["sessions"], 2);
    assert_eq!(calls[2]["text"][0], "order B7: 2 items, shipped, total 12.00 USD");
    assert_eq!(calls[3]["is_error"], false);
    let report = read_json(&out.join("report.json"));
    assert_eq!(report["sessions"], 2);
    let expired = having(&report["requests_made"], "unanswered", "session_expired");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["session"], "1");
    let refused = having(&report["requests_made"], "unanswered", "session_gone");
    assert_eq!(refused.len(), 1, "{}", report["requests_made"]);
    assert_eq!(refused[0]["tool"], "lookup_order");
    assert_eq!(refused[0]["session"], "1");
}

/// One HTTP/1.1 POST of a JSON body, read to the end: the status line, headers and body.
fn raw_post(address: std::net::SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn a_server_dying_over_http_drops_the_connection_and_the_session() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let faults = write(
        dir.path(),
        "faults.toml",
        "[[fault]]\nkind = \"mcp.server_crash\"\ntarget = \"mcp:refund\"\non_message = 2\n",
    );
    let server = HttpServer::start(&python);
    let out = dir.path().join("out");
    let proxy = http_proxy(&server, &faults, &out);
    let three = r#"[["lookup_order",{"order_id":"A1"}],["refund",{"order_id":"A1","amount_usd":5}],["lookup_order",{"order_id":"B7"}]]"#;
    let seen = client(&python, &["http", &mcp_url(&proxy)], three, &[("CLIENT_TIMEOUT", "5")]);
    let (status, said) = proxy.stop();
    assert_eq!(status, 0, "{said}");
    // The SDK's HTTP transport does not survive a connection dropped mid-call: the client dies
    // with it, after the one call that worked.
    assert_eq!(calls(&seen).len(), 1, "{seen}");
    assert_eq!(calls(&seen)[0]["is_error"], false);
    assert_eq!(seen["client_died"]["exception"], "RemoteProtocolError", "{seen}");
    let report = read_json(&out.join("report.json"));
    let gone: Vec<&str> = report["requests_made"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["unanswered"].as_str())
        .collect();
    assert_eq!(gone, ["server_crash"]);
}

#[test]
fn fault_decisions_depend_on_the_seed_and_the_calls_place_only() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let faults = write(
        dir.path(),
        "faults.toml",
        "[[fault]]\nname = \"flaky\"\nkind = \"mcp.tool_error\"\nprobability = 0.5\n",
    );
    let run = |seed: &str| {
        let target = stdio_target(&python, &["--faults", &faults, "--seed", seed]);
        let seen = client(&python, &refs(&target), LOOKUPS_8, &[]);
        calls(&seen)
            .iter()
            .map(|c| c["is_error"] == true)
            .collect::<Vec<bool>>()
    };
    let first = run("1");
    assert_eq!(run("1"), first, "the same seed, the same faults");
    assert!(first.iter().any(|e| *e) && first.iter().any(|e| !e), "{first:?}");
    let others: Vec<Vec<bool>> = ["2", "3", "4"].iter().map(|s| run(s)).collect();
    assert!(others.iter().any(|o| *o != first), "other seeds draw other faults");
}

/// `scenarios/mcp-order-desk.toml` with its cassette named by an absolute path, to be written
/// anywhere.
fn order_desk_elsewhere() -> String {
    let cassette = repo_root().join("scenarios/incidents/mcp-order-desk");
    std::fs::read_to_string(repo_root().join("scenarios/mcp-order-desk.toml"))
        .unwrap()
        .replace("incidents/mcp-order-desk", &cassette.display().to_string())
}

#[test]
fn bad_mcp_proxy_input_is_refused_with_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |args: &[&str], expected: &str| {
        let output = agentsim().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    };
    refused(&["proxy", "--mcp"], "expected the MCP server's command after `--`");
    refused(
        &["proxy", "--mcp", "--upstream", "http://127.0.0.1:1/mcp"],
        "expected --listen ADDRESS",
    );
    refused(
        &["proxy", "--", "python", "server.py"],
        "the MCP server of `agentsim proxy --mcp`",
    );
    let faults = write(
        dir.path(),
        "faults.toml",
        "[[fault]]\nkind = \"mcp.hang\"\ntarget = \"llm:gpt\"\non_message = 1\n",
    );
    refused(
        &["proxy", "--mcp", "--faults", &faults, "--", "true"],
        "faults.toml:3:10: expected `target = \"mcp:…\"` for a mcp.hang fault",
    );
    // The model proxy's kinds never fire on MCP traffic: refused at their place.
    let model_faults = write(
        dir.path(),
        "model.toml",
        "[[fault]]\nkind = \"llm.rate_limit\"\non_message = 1\n",
    );
    refused(
        &["proxy", "--mcp", "--faults", &model_faults, "--", "true"],
        "model.toml:2:8: expected a fault this proxy acts on: `agentsim proxy --mcp` acts on mcp.* faults only",
    );
    let not_cassette = write(dir.path(), "cassette.jsonl", "{\"proxy_cassette_format\":1}\n");
    refused(
        &["proxy", "--mcp", "--replay", &not_cassette],
        "expected the header line of an MCP cassette",
    );
    // A scenario cannot use the proxy's MCP faults: its tools take the tool.* kinds.
    let text = order_desk_elsewhere() + "\n[[fault]]\nkind = \"mcp.hang\"\ntarget = \"tool:refund\"\non_message = 1\n";
    let scenario = write(dir.path(), "s.toml", &text);
    refused(&["validate", &scenario], "only `agentsim proxy --mcp` sees");
}

#[test]
fn a_scenario_tool_answers_as_its_mcp_cassette_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = agentsim()
        .current_dir(repo_root())
        .args(["run", "scenarios/mcp-order-desk.toml", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let records = trace(&out);
    let results: Vec<&str> = records
        .iter()
        .filter_map(|r| r["msg"].as_str())
        .filter(|m| m.starts_with("tool_result"))
        .collect();
    assert_eq!(results.len(), 3, "{results:?}");
    // The recorded answer for the same arguments: A1 found, Z9 the server's isError, A1 refunded.
    assert!(
        results[0].contains("order A1: 2 items, shipped, total 84.50 USD"),
        "{}",
        results[0]
    );
    assert!(
        results[1].contains("error: Error executing tool lookup_order: no order Z9"),
        "{}",
        results[1]
    );
    assert!(results[2].contains("refunded 84.50 USD on order A1"), "{}", results[2]);
    let report = read_json(&out.join("report.json"));
    assert_eq!(report["effects"]["money_moved"], 1, "{}", report["effects"]);
    // The run directory keeps the cassette, so its copy of the scenario replays.
    assert!(out.join("incidents/mcp-order-desk/cassette.jsonl").is_file());
    let replay = agentsim().arg("replay").arg(&out).output().unwrap();
    assert_eq!(
        replay.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    // The tool's schema comes from the server's tools/list: a call without order_id is refused.
    let broken = order_desk_elsewhere().replace("args = { order_id = \"Z9\" }", "args = { order = \"Z9\" }");
    let path = write(dir.path(), "broken.toml", &broken);
    let output = agentsim()
        .args(["run", &path, "--out"])
        .arg(dir.path().join("broken"))
        .output()
        .unwrap();
    let trace_text = std::fs::read_to_string(dir.path().join("broken/trace.jsonl")).unwrap();
    assert!(
        trace_text.contains("400 invalid arguments"),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
}
