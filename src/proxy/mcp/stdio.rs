//! MCP over stdio: the client starts `agentsim proxy --mcp … -- SERVER COMMAND` as its server;
//! the proxy starts the real server and stands between the two pipes, one JSON-RPC message a
//! line. Without a server command (a replay), the cassette answers.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::books::Source;
use super::relay::{Pending, Plan, Relay};
use super::wire;

/// The one session of a stdio connection.
const SESSION: &str = "1";

/// Lines for the client's stdout, written in order by one task.
type Out = mpsc::UnboundedSender<String>;

/// Requests sent to the server and not yet answered, by JSON id.
type Waiting = Arc<Mutex<BTreeMap<String, (Pending, Instant)>>>;

/// Serves the client on this process's stdin and stdout until it closes its end, the server
/// dies, or `stop` resolves.
pub async fn serve(
    relay: Arc<Relay>,
    command: &[String],
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let (out, mut lines) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = lines.recv().await {
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.write_all(b"\n").await.is_err() {
                break;
            }
            if lines.is_empty() && stdout.flush().await.is_err() {
                break;
            }
        }
        let _ = stdout.flush().await;
    });
    let mut child = match command.split_first() {
        None => None,
        Some((program, args)) => Some(
            tokio::process::Command::new(program)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start the MCP server `{}`: {e}", command.join(" ")))?,
        ),
    };
    let waiting: Waiting = Arc::new(Mutex::new(BTreeMap::new()));
    let (server_gone_tx, mut server_gone) = tokio::sync::watch::channel(false);
    let mut to_server = child.as_mut().and_then(|c| c.stdin.take());
    if let Some(server_out) = child.as_mut().and_then(|c| c.stdout.take()) {
        let (relay, out, waiting) = (relay.clone(), out.clone(), waiting.clone());
        tokio::spawn(async move {
            let mut reader = BufReader::new(server_out).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                from_server(&relay, &out, &waiting, line);
            }
            let _ = server_gone_tx.send(true);
        });
    }
    let mut hung = Vec::new();
    let mut crashed = false;
    let mut client = BufReader::new(tokio::io::stdin()).lines();
    tokio::pin!(stop);
    loop {
        let line = tokio::select! {
            _ = &mut stop => break,
            _ = server_gone.changed() => {
                eprintln!("agentsim proxy: the MCP server closed its output");
                relay.books.note(SESSION, "server_exited", "the MCP server closed its output");
                break;
            }
            line = client.next_line() => match line {
                Ok(Some(line)) => line,
                _ => break,
            },
        };
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            send_server(&mut to_server, &line).await;
            continue;
        };
        match wire::kind(&message) {
            wire::Kind::Request { id, method } => match relay.request(SESSION, &id, &method, &message) {
                Plan::Forward(pending) if to_server.is_none() => {
                    let answer = relay.replayed(&pending);
                    let reply = relay.answered(&pending, answer, Source::Cassette, 0);
                    deliver(
                        &relay,
                        &out,
                        pending,
                        reply.notify,
                        reply.answer,
                        Source::Cassette,
                        reply.delay_us,
                    );
                }
                Plan::Forward(pending) => {
                    let text = pending.forward.as_ref().map_or(line, Value::to_string);
                    let key = pending.id.to_string();
                    lock(&waiting).insert(key, (pending, Instant::now()));
                    send_server(&mut to_server, &text).await;
                }
                Plan::Answer {
                    pending,
                    notify,
                    answer,
                    delay_us,
                } => deliver(&relay, &out, pending, notify, answer, Source::Proxy, delay_us),
                Plan::Hang(pending) => hung.push(pending),
                Plan::Expire(pending) | Plan::Crash(pending) => {
                    relay.books.unanswered(SESSION, pending.seq, "server_crash");
                    eprintln!("agentsim proxy: mcp.server_crash: stopping the MCP server");
                    crashed = true;
                    break;
                }
            },
            wire::Kind::Notification { method } => {
                relay.client_notification(SESSION, &method);
                send_server(&mut to_server, &line).await;
            }
            wire::Kind::Response { .. } | wire::Kind::Other => send_server(&mut to_server, &line).await,
        }
    }
    for pending in hung {
        relay.books.unanswered(SESSION, pending.seq, "hang");
    }
    drop(to_server);
    if let Some(child) = child.as_mut() {
        // A server given its stdin's end has 2 s to exit; a crashed one is killed at once.
        let grace = Duration::from_secs(if crashed { 0 } else { 2 });
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
    for (_, (pending, _)) in std::mem::take(&mut *lock(&waiting)) {
        relay.books.unanswered(SESSION, pending.seq, "server_exited");
    }
    drop(out);
    let _ = writer.await;
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

async fn send_server(to_server: &mut Option<tokio::process::ChildStdin>, line: &str) {
    if let Some(stdin) = to_server {
        let sent = stdin.write_all(line.as_bytes()).await.is_ok()
            && stdin.write_all(b"\n").await.is_ok()
            && stdin.flush().await.is_ok();
        if !sent {
            *to_server = None;
        }
    }
}

/// A line from the server: an answer to a waiting request is bent by its fault; anything else
/// (notifications, the server's own requests) goes to the client as it came.
fn from_server(relay: &Arc<Relay>, out: &Out, waiting: &Waiting, line: String) {
    let Ok(message) = serde_json::from_str::<Value>(&line) else {
        let _ = out.send(line);
        return;
    };
    match wire::kind(&message) {
        wire::Kind::Response { id } => {
            let Some((pending, sent)) = lock(waiting).remove(&id.to_string()) else {
                let _ = out.send(line);
                return;
            };
            let latency_us = sent.elapsed().as_micros().min(u64::MAX as u128) as u64;
            let reply = relay.answered(&pending, message, Source::Server, latency_us);
            deliver(
                relay,
                out,
                pending,
                reply.notify,
                reply.answer,
                Source::Server,
                reply.delay_us,
            );
        }
        wire::Kind::Notification { method } => {
            relay.server_notification(SESSION, &method);
            let _ = out.send(line);
        }
        _ => {
            let _ = out.send(line);
        }
    }
}

/// Sends `notify` then `answer` to the client, after `delay_us`.
fn deliver(
    relay: &Arc<Relay>,
    out: &Out,
    pending: Pending,
    notify: Vec<Value>,
    answer: Value,
    source: Source,
    delay_us: u64,
) {
    let send = {
        let (relay, out) = (relay.clone(), out.clone());
        move || {
            for message in &notify {
                let _ = out.send(message.to_string());
            }
            let _ = out.send(answer.to_string());
            relay.delivered(&pending, &notify, &answer, source, 0);
        }
    };
    if delay_us == 0 {
        send();
    } else {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_micros(delay_us)).await;
            send();
        });
    }
}
