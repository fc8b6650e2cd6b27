//! The SQL doors compared: `cargo bench --bench doors` (a release build).
//!
//! One `tacet serve` from this build, with the Postgres wire and Flight SQL listeners on, is filled with
//! `TACET_BENCH_ROWS` events (default 1,000,000; NDJSON batches of 1,000), then one query returning all of
//! them (seven columns: a timestamp, five strings, an integer) is fetched through each door by a real
//! client, best of three after a warm-up:
//! 1. `POST /v1/sql`, JSON (reqwest, the whole body read): the baseline;
//! 2. `POST /v1/sql?format=arrow` (Arrow IPC over HTTP);
//! 3. the Postgres wire protocol, psql (text rows, written to a pipe and counted);
//! 4. Arrow Flight SQL, ADBC's driver from Python (`fetch_arrow_table`, timed inside Python).
//!
//! It prints rows/s for each and its ratio to the JSON door. Needs psql and `adbc-driver-flightsql`
//! (`.ci/run` installs both). The client and the server share this machine's cores.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const READ_KEY: &str = "bench-read-key-for-the-harness";
const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const SQL: &str = "SELECT ts, kind, url_path, browser, os, device, visitor_id FROM events ORDER BY ts LIMIT 10000000";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tacet(dir: &std::path::Path, pg: u16, flight: u16) -> (std::process::Child, SocketAddr) {
    let config = dir.join("tacet.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[postgres]
listen = "127.0.0.1:{pg}"
[flight_sql]
listen = "127.0.0.1:{flight}"
[ingest]
flush_interval = "1s"
max_buffered_events = 2000000
[query]
max_rows = 20000000
timeout = "300s"
[http]
max_body_bytes = 8388608
max_decompressed_bytes = 16777216
requests_per_second_per_key = 0
requests_per_second_per_client = 0
events_per_second_per_tenant = 0
[[tenant]]
id = "bench"
ingest_key = "bench-ingest"
read_key = "{READ_KEY}"
"#
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tacet"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("TACET_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tacet serve");
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .expect("the listening address");
    (child, addr)
}

fn event(i: usize) -> String {
    serde_json::json!({
        "kind": if i.is_multiple_of(5) { "event" } else { "pageview" },
        "name": if i.is_multiple_of(5) { Some("signup") } else { None },
        "url": format!("https://bench.example/section-{}/page-{}", i % 37, i % 1009),
        "referrer": "https://www.google.com/",
        "user_id": format!("user-{}", i % 50_000),
    })
    .to_string()
}

/// Best of `runs` after one warm-up: (seconds, rows).
async fn best<F, Fut>(runs: usize, mut f: F) -> (f64, u64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (f64, u64)>,
{
    let _ = f().await;
    let mut best = (f64::MAX, 0);
    for _ in 0..runs {
        let (secs, rows) = f().await;
        if secs < best.0 {
            best = (secs, rows);
        }
    }
    best
}

async fn http(client: &reqwest::Client, addr: SocketAddr, format: &str) -> (f64, u64) {
    let started = Instant::now();
    let resp = client
        .post(format!("http://{addr}/v1/sql?format={format}"))
        .bearer_auth(READ_KEY)
        .body(SQL)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let rows: u64 = resp.headers()["x-tacet-rows"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = resp.bytes().await.unwrap();
    assert!(!body.is_empty());
    (started.elapsed().as_secs_f64(), rows)
}

fn psql(port: u16) -> (f64, u64) {
    let started = Instant::now();
    let mut child = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "bench", "-d", "tacet", "-X", "-A", "-t", "-c", SQL])
        .env("PGPASSWORD", READ_KEY)
        .stdout(Stdio::piped())
        .spawn()
        .expect("psql (apt-get install postgresql-client)");
    let rows = BufReader::new(child.stdout.take().unwrap()).lines().count() as u64;
    assert!(child.wait().unwrap().success());
    (started.elapsed().as_secs_f64(), rows)
}

fn flight(port: u16) -> (f64, u64) {
    let script = r#"
import sys, time
import adbc_driver_flightsql.dbapi as flight_sql
conn = flight_sql.connect(f"grpc://127.0.0.1:{sys.argv[1]}", autocommit=True,
    db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {sys.argv[2]}"})
cur = conn.cursor()
started = time.perf_counter()
cur.execute(sys.argv[3])
table = cur.fetch_arrow_table()
print(time.perf_counter() - started, table.num_rows)
"#;
    let out = Command::new("python3")
        .args(["-c", script, &port.to_string(), READ_KEY, SQL])
        .output()
        .expect("python3 with adbc-driver-flightsql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    (
        parts.next().unwrap().parse().unwrap(),
        parts.next().unwrap().parse().unwrap(),
    )
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench --list
    }
    let rows: usize = std::env::var("TACET_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let (pg, fl) = (free_port(), free_port());
    let (child, addr) = tacet(tmp.path(), pg, fl);
    // The server goes with the harness, also when an assertion fails.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Stop(child);
    let client = reqwest::Client::new();
    println!("tacet SQL doors benchmark: {rows} events, one query returning all of them");
    let filled = Instant::now();
    for start in (0..rows).step_by(1000) {
        let body: String = (start..(start + 1000).min(rows))
            .map(|i| event(i) + "\n")
            .collect();
        let resp = client
            .post(format!("http://{addr}/v1/events"))
            .header("x-tacet-key", "bench-ingest")
            .header("content-type", "application/x-ndjson")
            .header("user-agent", UA)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    // Wait until every event is flushed and counted.
    loop {
        let resp = client
            .post(format!("http://{addr}/v1/sql"))
            .bearer_auth(READ_KEY)
            .body("SELECT COUNT(*) AS n FROM events")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if resp.contains(&format!("\"n\":{rows}")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "filled in {:.1} s; fetching (best of 3 after a warm-up):",
        filled.elapsed().as_secs_f64()
    );
    let json = best(3, || http(&client, addr, "json")).await;
    let arrow = best(3, || http(&client, addr, "arrow")).await;
    let postgres = best(3, || async move {
        tokio::task::spawn_blocking(move || psql(pg)).await.unwrap()
    })
    .await;
    let flight_sql = best(3, || async move {
        tokio::task::spawn_blocking(move || flight(fl))
            .await
            .unwrap()
    })
    .await;
    let base = json.1 as f64 / json.0;
    for (n, (name, (secs, got))) in [
        ("POST /v1/sql, JSON (reqwest)", json),
        ("POST /v1/sql?format=arrow (reqwest)", arrow),
        ("Postgres wire, text rows (psql)", postgres),
        ("Flight SQL, Arrow (ADBC, Python)", flight_sql),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(got as usize, rows, "{name} returned {got} rows");
        let rate = got as f64 / secs;
        println!(
            "{}. {name:<38} {secs:>7.2} s {rate:>12.0} rows/s {:>6.2}x JSON",
            n + 1,
            rate / base
        );
    }
}
