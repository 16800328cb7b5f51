//! A small OpenAI-compatible HTTP/1.1 server on loopback for the live-mode tests: it answers
//! each request from a script, records what it received, and stops by itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering (a slow server).
    pub delay: Duration,
}

impl Canned {
    pub fn json(status: u16, body: serde_json::Value) -> Canned {
        Canned {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Canned {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn slow(mut self, delay: Duration) -> Canned {
        self.delay = delay;
        self
    }
}

/// A chat completion whose message carries `message` (content and/or tool_calls).
pub fn completion(message: serde_json::Value, finish_reason: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1,
        "model": "test-model",
        "system_fingerprint": "fp_test",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": null}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37},
    })
}

/// How the server answers request number `i` (from 0).
type Script = dyn Fn(usize, &Received) -> Canned + Send + Sync;

/// The server; dropped, it stops.
pub struct FakeOpenAi {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The server never runs longer than this, whatever the test does.
const LIFETIME_MAX: Duration = Duration::from_secs(120);
/// Connections served at most; later ones are closed unanswered.
const CONNECTIONS_MAX: usize = 1_000;

impl FakeOpenAi {
    /// Starts a server that answers request number `i` (from 0) with `script(i, &request)`.
    pub fn start(script: impl Fn(usize, &Received) -> Canned + Send + Sync + 'static) -> FakeOpenAi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().expect("local address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (received2, stop2) = (received.clone(), stop.clone());
        let script: Arc<Script> = Arc::new(script);
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut connections = Vec::new();
            while !stop2.load(Ordering::SeqCst) && started.elapsed() < LIFETIME_MAX {
                match listener.accept() {
                    // One thread per connection, so a slow answer does not hold up the next call.
                    Ok((stream, _)) if connections.len() < CONNECTIONS_MAX => {
                        let (received, script) = (received2.clone(), script.clone());
                        connections.push(std::thread::spawn(move || {
                            let _ = serve(stream, &received, &*script);
                        }));
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            for connection in connections {
                let _ = connection.join();
            }
        });
        FakeOpenAi {
            port,
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    received: &Mutex<Vec<Received>>,
    script: &dyn Fn(usize, &Received) -> Canned,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(16 * 1024 * 1024)];
    reader.read_exact(&mut body)?;
    let request = Received {
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    // The endpoint check before a run: a model list under /v1, nothing elsewhere. It does not
    // count as a scripted request.
    if request_line.starts_with("GET ") {
        let (status, body) = if request.path.starts_with("/v1/") {
            (
                200,
                r#"{"object":"list","data":[{"id":"test-model","object":"model"}]}"#,
            )
        } else {
            (404, r#"{"error":"not found"}"#)
        };
        let mut out = stream;
        let head = format!(
            "HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        out.write_all(head.as_bytes())?;
        out.write_all(body.as_bytes())?;
        return out.flush();
    }
    let index = {
        let mut all = received.lock().unwrap();
        all.push(request.clone());
        all.len() - 1
    };
    let answer = script(index, &request);
    std::thread::sleep(answer.delay);
    let mut out = stream;
    let mut head = format!(
        "HTTP/1.1 {} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        answer.status,
        answer.body.len()
    );
    for (k, v) in &answer.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(answer.body.as_bytes())?;
    out.flush()
}
