//! Helpers shared by the integration tests: the binary, the repository root, scenario files and
//! trace records.

#![allow(dead_code)]

pub mod server;

use std::io::{BufRead, BufReader, Read as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentsim::run::{self, Flavor, RunOptions, RunOutput};
use agentsim::scenario::Scenario;
use agentsim::trace::TraceMode;

/// The repository root; the binary runs from here so that paths in its output are relative.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `agentsim` with its working directory at the repository root.
pub fn agentsim() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_agentsim"));
    command.current_dir(repo_root());
    command
}

/// Runs `agentsim ARGS` to completion.
pub fn agentsim_output(args: &[&str]) -> Output {
    agentsim().args(args).output().expect("the agentsim binary starts")
}

/// The exit status, which must exist (the process was not killed by a signal).
pub fn status(output: &Output) -> i32 {
    output
        .status
        .code()
        .unwrap_or_else(|| panic!("agentsim was killed by a signal: {output:?}"))
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

/// Every `*.toml` under `scenarios/`, recursively, sorted. Read at test time, never hard-coded,
/// so a scenario added tomorrow is covered without touching the tests.
pub fn scenario_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "toml") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&repo_root().join("scenarios"), &mut found);
    found.sort();
    assert!(
        found.iter().any(|p| p.ends_with("support-desk.toml")),
        "expected scenarios/support-desk.toml among the scenario files, found {found:?}"
    );
    found
}

/// A scenario file's path relative to the repository root, for messages and CLI arguments.
pub fn relative(path: &Path) -> String {
    path.strip_prefix(repo_root()).unwrap_or(path).display().to_string()
}

/// Loads a scenario file, failing the test with agentsim's own error message.
pub fn load(path: &Path) -> Arc<Scenario> {
    match agentsim::scenario::load(path) {
        Ok(scenario) => Arc::new(scenario),
        Err(e) => panic!("{} does not load:\n{e}", relative(path)),
    }
}

/// Parses scenario text, failing the test with agentsim's own error message.
pub fn parse(text: &str) -> Arc<Scenario> {
    match agentsim::scenario::parse("inline.toml", text) {
        Ok(scenario) => Arc::new(scenario),
        Err(e) => panic!("the inline scenario does not parse:\n{e}"),
    }
}

/// Runs a scenario in this process and keeps the trace in memory.
pub fn run_in_memory(scenario: &Arc<Scenario>, seed: u64, flavor: Flavor) -> RunOutput {
    let options = RunOptions {
        seed,
        flavor,
        trace: TraceMode::Memory,
        limits: None,
        replay_command: String::new(),
        cassette: Default::default(),
    };
    run::run(scenario.clone(), &options).unwrap_or_else(|e| panic!("run of {} failed: {e}", scenario.name))
}

/// The trace as parsed JSON records, one per line.
pub fn records(trace: &[u8]) -> Vec<serde_json::Value> {
    let text = std::str::from_utf8(trace).expect("the trace is UTF-8");
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("trace line {} is not JSON ({e}): {line}", i + 1))
        })
        .collect()
}

/// A string field of a record, or "".
pub fn field<'a>(record: &'a serde_json::Value, key: &str) -> &'a str {
    record.get(key).and_then(|v| v.as_str()).unwrap_or("")
}

/// Runs `text` with `agentsim run --out` and returns report.json and the trace's records.
pub fn run_binary(text: &str) -> (serde_json::Value, Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scenario.toml");
    std::fs::write(&file, text).unwrap();
    let out = dir.path().join("run");
    let output = agentsim_output(&["run", file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(
        status(&output) <= 1,
        "agentsim run failed:\n{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    read_run(&out)
}

pub fn read_run(out: &Path) -> (serde_json::Value, Vec<serde_json::Value>) {
    let report = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    (report, records(&std::fs::read(out.join("trace.jsonl")).unwrap()))
}

/// Virtual times of the deliveries whose message starts with `prefix`, to `to`.
pub fn deliveries(records: &[serde_json::Value], to: &str, prefix: &str) -> Vec<u64> {
    records
        .iter()
        .filter(|r| r["kind"] == "deliver" && r["to"] == to && r["msg"].as_str().is_some_and(|m| m.starts_with(prefix)))
        .map(|r| r["t_us"].as_u64().unwrap())
        .collect()
}

/// The entries of the JSON array `list` whose `key` is the string `value`.
pub fn having<'a>(list: &'a serde_json::Value, key: &str, value: &str) -> Vec<&'a serde_json::Value> {
    list.as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry[key] == value)
        .collect()
}

/// `balance_usd` of the first record of the first table at the end of the run.
pub fn final_balance(report: &serde_json::Value) -> f64 {
    report["world"]["tables"][0]["final"][0]["balance_usd"]
        .as_f64()
        .unwrap()
}

/// The proxy binary, running.
pub struct ProxyProcess {
    pub child: Child,
    pub address: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl ProxyProcess {
    pub fn start(args: &[&str]) -> ProxyProcess {
        let mut child = agentsim()
            .arg("proxy")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        lines.read_line(&mut first).unwrap();
        let address = first
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("expected the proxy to say where it listens, got {first:?}"));
        let stderr = Arc::new(Mutex::new(first));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = lines.read_to_string(&mut rest);
            sink.lock().unwrap().push_str(&rest);
        });
        ProxyProcess { child, address, stderr }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// Ctrl-C: the proxy writes its report and ends. Its exit status and everything it said.
    pub fn stop(mut self) -> (i32, String) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let said = self.stderr.lock().unwrap().clone();
        (status.code().unwrap_or(-1), said)
    }
}

/// A test that fails before `stop` does not leave its proxy running.
impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A Python with `module` importable: `AGENTSIM_TEST_PYTHON`, or the checkout's `.venv` (which
/// `.ci/run` makes). `None` (the test skips) unless `AGENTSIM_REQUIRE_PYTHON` is set.
pub fn python_with(module: &str) -> Option<PathBuf> {
    let candidates = std::env::var_os("AGENTSIM_TEST_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([repo_root().join(".venv/bin/python")]);
    for candidate in candidates {
        let works = Command::new(&candidate)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if works {
            return Some(candidate);
        }
    }
    assert!(
        std::env::var_os("AGENTSIM_REQUIRE_PYTHON").is_none(),
        "AGENTSIM_REQUIRE_PYTHON is set but no Python with the {module} package was found"
    );
    eprintln!(
        "skipped: no Python with the `{module}` package (set AGENTSIM_TEST_PYTHON, or make .venv as .ci/run does)"
    );
    None
}
