//! Ingestion load harness: `cargo bench --bench ingest` (a release build; see the README for its cost).
//!
//! In one run, on this machine, it measures:
//! 1. a bare hyper server that reads a POST body and answers 204: requests/s (the baseline);
//! 2. `tacet serve` with single-event beacons (~500 bytes of JSON, 64 keep-alive connections): events/s,
//!    p50/p99 acknowledgement latency;
//! 3. `tacet serve` with NDJSON batches of 1,000 events: events/s, per core;
//! 4. fdatasync p50/p99 on the same disk (the latency floor of a durable acknowledgement);
//! 5. single beacons again, paced at half of the peak from (2): p50/p99 against the fdatasync p99; then the
//!    bare server paced the same (5b), the p99 this machine and the load generator give any server;
//! 6. the admission path alone (every limit on, an empty batch refused before decoding);
//! 7. replay after a crash: `TACET_BENCH_REPLAY_EVENTS` (5,000,000) events in the log of a server that
//!    never flushed, killed with SIGKILL; the new server's replay rate (read, check, decode, buffer).
//!
//! and prints the ratios the brief aims for. The load generator, the servers and the disk share this
//! machine's cores, so only ratios within one run mean anything. `TACET_BENCH_SECS` sets each phase's length
//! (default 5). Latency is measured from each request's send, so a stalled server under closed-loop load
//! shows up as lower throughput rather than higher latency (no coordinated-omission correction).
//! `TACET_BENCH_TACET=/path/to/tacet` measures another build (an earlier commit's) with the same load, to
//! compare two commits within minutes of each other on a noisy machine.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

fn beacon(i: usize) -> String {
    format!(
        r#"{{"kind":"pageview","url":"https://shop.example.com/catalogue/category-{}/product-{}?utm_source=newsletter&utm_medium=email&utm_campaign=winter-sale&ref=abc","referrer":"https://www.google.com/search?q=winter+boots+waterproof+size+42","user_id":"customer-{:08}","props":{{"plan":"pro","experiment":"checkout-v2","variant":"b","cart_items":"3","screen":"1920x1080","lang":"en-GB","title":"Waterproof winter boots for hiking - Shop Example - free delivery over 50"}},"release":"web-2026.11.3"}}"#,
        i % 37,
        i % 1013,
        i % 50_000
    )
}

/// One phase's answers: how many requests, and each one's latency.
struct Run {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn pct(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut v = samples.to_vec();
    v.sort();
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Drives `conns` keep-alive connections posting `bodies` round-robin for `secs`; with `rate`, each
/// connection is paced to its share of `rate` requests per second.
#[allow(clippy::too_many_arguments)]
async fn load(
    addr: SocketAddr,
    path: &str,
    content_type: &'static str,
    bodies: &[Bytes],
    conns: usize,
    secs: f64,
    rate: Option<f64>,
    expect: Option<u16>,
) -> Run {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for c in 0..conns {
        let bodies = bodies.to_vec();
        let uri = format!("http://{addr}{path}");
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let interval = rate.map(|r| Duration::from_secs_f64(conns as f64 / r));
            let mut latencies = Vec::new();
            let mut i = c;
            loop {
                let scheduled = interval.map(|iv| {
                    started + iv.mul_f64((latencies.len() as f64) + c as f64 / conns as f64)
                });
                if let Some(at) = scheduled {
                    tokio::time::sleep_until(at.into()).await;
                }
                if Instant::now() >= deadline {
                    break;
                }
                let req = Request::post(&uri)
                    .header("content-type", content_type)
                    .header("x-tacet-key", "bench-ingest")
                    .header("user-agent", UA)
                    .body(Full::new(bodies[i % bodies.len()].clone()))
                    .unwrap();
                i += conns;
                let t = Instant::now();
                let resp = sender.send_request(req).await.expect("request");
                let status = resp.status();
                resp.into_body().collect().await.expect("body");
                match expect {
                    None => assert!(status.is_success(), "the server answered {status}"),
                    Some(code) => assert_eq!(status.as_u16(), code, "the server answered {status}"),
                }
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    Run {
        requests: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    }
}

/// The baseline: hyper reading each body and answering 204, on its own two-thread runtime.
fn bare_hyper() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                stream.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        |req: Request<hyper::body::Incoming>| async move {
                            let _ = req.into_body().collect().await;
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(StatusCode::NO_CONTENT)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    addr
}

/// `tacet serve` from this build, on a temporary data directory.
/// The load comes from one address and one key: no rate limits for the main measures.
const NO_LIMITS: &str = "requests_per_second_per_key = 0
requests_per_second_per_client = 0
events_per_second_per_tenant = 0";

/// Every limit on, none reached: what admission costs in production.
const HIGH_LIMITS: &str = "requests_per_second_per_key = 100000000
requests_per_second_per_client = 100000000
events_per_second_per_tenant = 100000000";

fn tacet(dir: &std::path::Path, limits: &str) -> (std::process::Child, SocketAddr) {
    let ingest = "flush_interval = \"1s\"\nmax_buffered_events = 2000000";
    let (child, addr, _) = tacet_with(dir, ingest, limits, "warn");
    (child, addr)
}

/// `tacet serve` with these `[ingest]` settings and log filter; its log lines come back on the receiver.
fn tacet_with(
    dir: &std::path::Path,
    ingest: &str,
    limits: &str,
    log: &str,
) -> (
    std::process::Child,
    SocketAddr,
    std::sync::mpsc::Receiver<String>,
) {
    let config = dir.join("tacet.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[ingest]
{ingest}
[wal]
max_bytes = 17179869184
[http]
max_body_bytes = 8388608
{limits}
max_decompressed_bytes = 16777216
[[tenant]]
id = "bench"
ingest_key = "bench-ingest"
read_key = "bench-read-key-for-the-harness"
origins = ["https://bench.example"]
"#
        ),
    )
    .unwrap();
    // `TACET_BENCH_TACET`: another build of `tacet` (an earlier commit's), to compare on the same machine
    // and minute; this build's by default.
    let binary = std::env::var("TACET_BENCH_TACET")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tacet").to_owned());
    let mut child = Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("TACET_LOG", log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tacet serve");
    let (lines, logged) = std::sync::mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            eprintln!("{line}");
            let _ = lines.send(line);
        }
    });
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    // Keep reading what the server prints, so that it never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .expect("the listening address");
    wait_ready(addr);
    (child, addr, logged)
}

/// Waits until `/readyz` answers 200: the server listens before it has replayed its log, and answers
/// 503 until then.
fn wait_ready(addr: SocketAddr) {
    use std::io::Read;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut answer = String::new();
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ =
                s.write_all(b"GET /readyz HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n");
            let _ = s.read_to_string(&mut answer);
        }
        if answer.starts_with("HTTP/1.1 200") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "tacet at {addr} not ready after 120 s: {answer}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The server's `/metrics` text.
async fn scrape(addr: SocketAddr) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = Request::get(format!("http://{addr}/metrics"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.expect("request");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// A Prometheus histogram's cumulative buckets (upper bound, count).
fn buckets(metrics: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// The bucket bound under which `p` of what was recorded between two scrapes falls, and how many.
fn bucket_quantile(before: &str, after: &str, name: &str, p: f64) -> (f64, f64) {
    let (b, a) = (buckets(before, name), buckets(after, name));
    let count = |bs: &[(f64, f64)], le: f64| bs.iter().find(|(l, _)| *l == le).map_or(0.0, |x| x.1);
    let diff: Vec<(f64, f64)> = a.iter().map(|(le, n)| (*le, n - count(&b, *le))).collect();
    let total = diff.last().map_or(0.0, |x| x.1);
    let bound = diff
        .iter()
        .find(|(_, n)| *n >= p * total)
        .map_or(f64::NAN, |x| x.0);
    (bound, total)
}

/// Posts `count` NDJSON batches from `conns` connections; every one must be acknowledged.
async fn post_batches(addr: SocketAddr, batches: &[Bytes], count: usize, conns: usize) {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (batches, next) = (batches.to_vec(), next.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let req = Request::post(format!("http://{addr}/v1/events"))
                    .header("content-type", "application/x-ndjson")
                    .header("x-tacet-key", "bench-ingest")
                    .header("user-agent", UA)
                    .body(Full::new(batches[i % batches.len()].clone()))
                    .unwrap();
                let resp = sender.send_request(req).await.expect("request");
                let status = resp.status();
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                assert!(
                    status.is_success(),
                    "the server answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Replay after a crash: a server that never flushes takes `events` into its log and is killed with
/// SIGKILL; a new one on the same directory replays them. Returns (events, seconds, events/s) from the
/// new server's log line (reading the segments and decoding every event back into the buffer).
async fn replay(events: usize, batches: &[Bytes]) -> (u64, f64, f64) {
    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let ingest = format!(
        "flush_interval = \"1h\"\nflush_events = {}\nmax_buffered_events = {}",
        events * 2,
        events * 2
    );
    let (mut first, addr, _) = tacet_with(dir.path(), &ingest, NO_LIMITS, "warn");
    post_batches(addr, batches, events.div_ceil(1000), 4).await;
    let _ = Command::new("kill")
        .args(["-KILL", &first.id().to_string()])
        .status();
    let _ = first.wait();
    let (mut second, _, log) = tacet_with(dir.path(), &ingest, NO_LIMITS, "info");
    let line = log
        .iter()
        .find(|l| l.contains("recovered from the write-ahead log"))
        .expect("the replaying server logs what it recovered");
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
    };
    let result = (
        field("events") as u64,
        field("seconds"),
        field("events_per_second"),
    );
    let _ = Command::new("kill")
        .args(["-KILL", &second.id().to_string()])
        .status();
    let _ = second.wait();
    result
}

/// fdatasync latency of 4 KiB appends in `dir`.
fn fsync_latencies(dir: &std::path::Path, n: usize) -> Vec<Duration> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("fsync-probe"))
        .unwrap();
    let block = [0u8; 4096];
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f.write_all(&block).unwrap();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench --list
    }
    let secs: f64 = std::env::var("TACET_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tmp = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let singles: Vec<Bytes> = (0..1000).map(|i| Bytes::from(beacon(i))).collect();
    let avg_single = singles.iter().map(Bytes::len).sum::<usize>() / singles.len();
    let batches: Vec<Bytes> = (0..8)
        .map(|b| {
            Bytes::from(
                (0..1000)
                    .map(|i| beacon(b * 1000 + i) + "\n")
                    .collect::<String>(),
            )
        })
        .collect();
    println!(
        "tacet ingestion benchmark: {secs} s a phase, {cores} cores, single beacon {avg_single} bytes, batch {} bytes",
        batches[0].len()
    );

    let bare = bare_hyper();
    let base = load(
        bare,
        "/",
        "application/json",
        &singles,
        64,
        secs,
        None,
        None,
    )
    .await;
    println!(
        "1. bare hyper, 64 connections:            {:>10.0} requests/s",
        base.per_sec()
    );

    let (mut child, addr) = tacet(tmp.path(), NO_LIMITS);
    let single = load(
        addr,
        "/v1/events",
        "application/json",
        &singles,
        64,
        secs,
        None,
        None,
    )
    .await;
    println!(
        "2. tacet, single beacons, 64 connections: {:>10.0} events/s   p50 {:.2} ms  p99 {:.2} ms",
        single.per_sec(),
        ms(single.pct(0.5)),
        ms(single.pct(0.99))
    );
    let batch = load(
        addr,
        "/v1/events",
        "application/x-ndjson",
        &batches,
        4,
        secs,
        None,
        None,
    )
    .await;
    let batch_eps = batch.per_sec() * 1000.0;
    println!(
        "3. tacet, NDJSON x1000, 4 connections:    {:>10.0} events/s   ({:.0} per core; p50 {:.1} ms a batch)",
        batch_eps,
        batch_eps / cores as f64,
        ms(batch.pct(0.5))
    );
    let fsync = fsync_latencies(tmp.path(), 2000);
    let (fs50, fs99) = (percentile(&fsync, 0.5), percentile(&fsync, 0.99));
    println!(
        "4. fdatasync of 4 KiB, same disk:         p50 {:.3} ms  p99 {:.3} ms",
        ms(fs50),
        ms(fs99)
    );
    let half = single.per_sec() / 2.0;
    // Single beacons from 64 connections paced to `half` in all: to tacet, then to the bare server.
    let at_half = |addr, path| {
        load(
            addr,
            path,
            "application/json",
            &singles,
            64,
            secs,
            Some(half),
            None,
        )
    };
    let before = scrape(addr).await;
    let paced = at_half(addr, "/v1/events").await;
    println!(
        "5. tacet, single beacons at {:.0}/s (half of peak): p50 {:.2} ms  p99 {:.2} ms  ({:.0} events/s achieved)",
        half,
        ms(paced.pct(0.5)),
        ms(paced.pct(0.99)),
        paced.per_sec()
    );
    let after = scrape(addr).await;
    let q = |name: &str, p: f64| bucket_quantile(&before, &after, name, p).0;
    let (_, groups) = bucket_quantile(&before, &after, "tacet_wal_group_records", 0.5);
    println!(
        "   its log: {groups:.0} groups, records a group p50 <= {} p99 <= {}; write+fdatasync p50 <= {:.2} ms p99 <= {:.2} ms; queued to committed p50 <= {:.2} ms p99 <= {:.2} ms",
        q("tacet_wal_group_records", 0.5),
        q("tacet_wal_group_records", 0.99),
        1000.0 * q("tacet_wal_fsync_seconds", 0.5),
        1000.0 * q("tacet_wal_fsync_seconds", 0.99),
        1000.0 * q("tacet_wal_commit_seconds", 0.5),
        1000.0 * q("tacet_wal_commit_seconds", 0.99),
    );
    println!(
        "   in its handler (arrival to answer, the log's commit included): p50 <= {:.2} ms p99 <= {:.2} ms",
        1000.0 * q("tacet_ingest_request_seconds", 0.5),
        1000.0 * q("tacet_ingest_request_seconds", 0.99),
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    // What this machine's scheduling and the load generator cost at that pace: the bare server paced the
    // same (no disk, no tacet), so that (5)'s p99 can be read as floor + sync + tacet.
    let bare_paced = at_half(bare, "/").await;
    println!(
        "5b. bare hyper at the same pace:             p50 {:.2} ms  p99 {:.2} ms  ({:.0} requests/s achieved)",
        ms(bare_paced.pct(0.5)),
        ms(bare_paced.pct(0.99)),
        bare_paced.per_sec()
    );
    // The admission path alone: a server with every limit on (none reached) answers an empty batch,
    // which passes the key, the origin check, the per-key and per-client limits and the body read, and is
    // refused (400) before anything is decoded or logged.
    let gate_dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let (mut gate, gate_addr) = tacet(gate_dir.path(), HIGH_LIMITS);
    let empty = [Bytes::from_static(b"[]")];
    let admitted = load(
        gate_addr,
        "/v1/events",
        "application/json",
        &empty,
        64,
        secs,
        None,
        Some(400),
    )
    .await;
    let per_request = |r: &Run| 1e6 * cores as f64 / r.per_sec();
    println!(
        "6. tacet, admission only (limits on), 64 connections: {:>10.0} requests/s  ({:.1} us of CPU a request, bare hyper {:.1})",
        admitted.per_sec(),
        per_request(&admitted),
        per_request(&base)
    );
    let _ = Command::new("kill")
        .args(["-TERM", &gate.id().to_string()])
        .status();
    let _ = gate.wait();

    let replay_events: usize = std::env::var("TACET_BENCH_REPLAY_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000_000);
    let (replayed, replay_secs, replay_rate) = if replay_events > 0 {
        replay(replay_events, &batches).await
    } else {
        (0, 0.0, 0.0)
    };
    println!(
        "7. replay after kill -9: {replayed} events in {replay_secs:.2} s, {replay_rate:.0} events/s (one thread)"
    );

    println!("\nratios (aims from shared/BRIEF.md and issue #22):");
    println!(
        "  single beacons / bare hyper:         {:.2}x   (aim >= 0.70x)",
        single.per_sec() / base.per_sec()
    );
    println!(
        "  NDJSON batches, events/s per core:   {:.0}   (aim >= 200000)",
        batch_eps / cores as f64
    );
    println!(
        "  p99 at half peak - fdatasync p99:    {:+.2} ms (aim <= +2.00 ms)",
        ms(paced.pct(0.99)) - ms(fs99)
    );
    println!(
        "    of which the bare server's p99 at that pace: {:.2} ms, so tacet adds {:+.2} ms over it and the sync",
        ms(bare_paced.pct(0.99)),
        ms(paced.pct(0.99)) - ms(fs99) - ms(bare_paced.pct(0.99))
    );
    println!("  replay, events/s per core:           {replay_rate:.0}   (aim >= 1000000)");
    println!(
        "  admission over bare hyper:           {:+.1} us a request ({:.2}x the requests/s)",
        per_request(&admitted) - per_request(&base),
        admitted.per_sec() / base.per_sec()
    );
}
