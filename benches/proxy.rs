//! The latency `agentsim proxy` adds to a request: the same chat-completions request sent to a
//! stand-in upstream directly and through the proxy, in alternating rounds so both see the same
//! machine, sequentially and at 64 concurrent requests. Prints p50 and p99 of each, and what the
//! proxy adds.
//!
//! `cargo bench --bench proxy` (set `PROXY_BENCH_REQUESTS` for more or fewer requests per side).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agentsim::proxy::{stub, Config, Proxy};

/// The allocator the `agentsim` binary ships with, so that this measures what it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONCURRENCY: usize = 64;

fn body() -> String {
    serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi."}],
    })
    .to_string()
}

async fn one(client: &reqwest::Client, url: &str, body: &str, session: usize) -> Duration {
    let started = Instant::now();
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-agentsim-session", format!("bench-{session}"))
        .body(body.to_owned())
        .send()
        .await
        .expect("the request is answered");
    assert!(response.status().is_success(), "status {}", response.status());
    let _ = response.bytes().await.expect("the body arrives");
    started.elapsed()
}

/// `count` requests, `parallel` at a time; their latencies.
async fn batch(client: &reqwest::Client, url: &str, count: usize, parallel: usize) -> Vec<Duration> {
    let body = body();
    let mut all = Vec::with_capacity(count);
    let per_task = count.div_ceil(parallel);
    let mut tasks = Vec::new();
    for task in 0..parallel {
        let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                mine.push(one(&client, &url, &body, task).await);
            }
            mine
        }));
    }
    for task in tasks {
        all.extend(task.await.expect("a bench task ends"));
    }
    all
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: both run it.
    let requests: usize = std::env::var("PROXY_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the stub");
        let stub_addr = listener.local_addr().expect("an address");
        tokio::spawn(stub::serve(
            listener,
            stub::StubConfig {
                frame_gap: Duration::ZERO,
                latency: Duration::ZERO,
            },
        ));
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        let proxy = Proxy::bind(Config::new(listen, Some(format!("http://{stub_addr}/v1"))))
            .await
            .expect("the proxy binds");
        let proxy_addr = proxy.local_addr();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(proxy.serve(async move {
            let _ = stop_rx.await;
        }));
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY)
            .build()
            .expect("a client");
        let direct = format!("http://{stub_addr}/v1/chat/completions");
        let proxied = format!("http://{proxy_addr}/v1/chat/completions");
        // Warm both paths' connection pools.
        batch(&client, &direct, 2 * CONCURRENCY, CONCURRENCY).await;
        batch(&client, &proxied, 2 * CONCURRENCY, CONCURRENCY).await;

        println!("agentsim proxy: added latency per chat-completions request, stand-in upstream on loopback");
        println!(
            "{requests} requests per side, alternating rounds of {} (direct, then through the proxy)\n",
            requests / 20
        );
        println!(
            "{:<22} {:>12} {:>12} {:>12} {:>12}",
            "", "p50 µs", "p99 µs", "added p50", "added p99"
        );
        for parallel in [1, CONCURRENCY] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let round = (requests / 20).max(parallel);
            while a.len() < requests {
                a.extend(batch(&client, &direct, round, parallel).await);
                b.extend(batch(&client, &proxied, round, parallel).await);
            }
            a.sort_unstable();
            b.sort_unstable();
            let label = if parallel == 1 {
                "sequential".to_owned()
            } else {
                format!("{parallel} concurrent")
            };
            let (a50, a99, b50, b99) = (
                quantile(&a, 0.5),
                quantile(&a, 0.99),
                quantile(&b, 0.5),
                quantile(&b, 0.99),
            );
            println!(
                "{:<22} {:>12.1} {:>12.1}",
                format!("{label} direct"),
                micros(a50),
                micros(a99)
            );
            println!(
                "{:<22} {:>12.1} {:>12.1} {:>12.1} {:>12.1}",
                format!("{label} proxy"),
                micros(b50),
                micros(b99),
                micros(b50) - micros(a50),
                micros(b99) - micros(a99)
            );
        }
        let _ = stop_tx.send(());
        let summary = served.await.expect("the proxy ends").expect("the proxy ends cleanly");
        assert!(summary.report["calls"].as_u64().unwrap_or(0) >= requests as u64 * 2);
    });
}
