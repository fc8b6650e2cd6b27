//! Durability: once the server answers 202, the event survives `kill -9` and is stored exactly once.
//!
//! Clients post batches with unique ids and record which were acknowledged; the server is killed with
//! SIGKILL at a random moment (about one time in four before any request) and restarted on the same data
//! directory, round after round (20 by default;
//! `TACET_CRASH_ROUNDS` for more, `TACET_CRASH_SEED` to replay a run, `TACET_CRASH_KEEP=1` to keep the data
//! directory and logs of a failing run for inspection). At the end, through SQL: every
//! acknowledged id is present exactly once, and no id at all is present twice.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::Server;
use crate::skeleton::FIREFOX_LINUX;

const CONFIG: &str = r#"
[ingest]
flush_interval = "50ms"
flush_events = 200

# Small segments, so that kills land in zero-filled (prepared) segments and in half-written spares too.
[wal]
segment_bytes = 65536

[[tenant]]
id = "a"
ingest_key = "ingest-a"
read_key = "read-a"
"#;

/// xorshift64*: enough randomness for kill timings, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9_exactly_once() {
    let rounds = env_u64("TACET_CRASH_ROUNDS").unwrap_or(20);
    let seed = env_u64("TACET_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    });
    println!("crash test: {rounds} rounds, TACET_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let root = tempfile::tempdir().unwrap();
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut sent = 0usize;

    for round in 0..rounds {
        let server = Arc::new(Server::start_in(
            CONFIG,
            root.path(),
            &format!("logs-{round}"),
            tempfile::tempdir().unwrap(),
        ));
        // About one life in four is killed before any request: its new, empty log segment must be
        // reused, not lost, by the next (a double-listed segment once deleted acknowledged records).
        let idle = rng.below(4) == 0;
        let mut clients = Vec::new();
        for client in 0..if idle { 0 } else { 4 } {
            let (server, acked) = (Arc::clone(&server), Arc::clone(&acked));
            clients.push(tokio::spawn(async move {
                let mut attempted = 0;
                for batch in 0.. {
                    let events: Vec<Value> = (0..10)
                        .map(|i| json!({"kind": "event", "name": "crash-test", "url": "https://a.example/",
                            "props": {"id": format!("r{round}-c{client}-b{batch}-e{i}")}}))
                        .collect();
                    attempted += events.len();
                    let resp = server
                        .http
                        .post(format!("{}/v1/events", server.base))
                        .header("x-tacet-key", "ingest-a")
                        .header("user-agent", FIREFOX_LINUX)
                        .header("content-type", "application/json")
                        .body(Value::Array(events.clone()).to_string())
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status().as_u16() == 202 => {
                            let mut a = acked.lock().unwrap();
                            for e in &events {
                                a.insert(e["props"]["id"].as_str().unwrap().to_owned());
                            }
                        }
                        Ok(r) if r.status().as_u16() == 503 => tokio::time::sleep(Duration::from_millis(10)).await,
                        Ok(r) => panic!("unexpected answer {}", r.status()),
                        Err(_) => return attempted, // the server is gone
                    }
                }
                attempted
            }));
        }
        if !idle {
            tokio::time::sleep(Duration::from_millis(30 + rng.below(400))).await;
        }
        server.crash();
        for c in clients {
            sent += c.await.unwrap();
        }
        drop(server); // reaps the killed process
    }

    let server = Server::start_in(
        CONFIG,
        root.path(),
        "logs-final",
        tempfile::tempdir().unwrap(),
    );
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= rounds as usize * 10,
        "too few acknowledged events ({}) to prove anything",
        acked.len()
    );
    let (status, dupes) = server
        .sql("read-a", "SELECT props['id'] AS id, COUNT(*) AS n FROM events GROUP BY props['id'] HAVING COUNT(*) > 1 LIMIT 20")
        .await;
    assert_eq!(status, 200, "{dupes}");
    assert_eq!(dupes, json!([]), "events stored more than once");
    // Fetched round by round, so no answer reaches the server's row limit (query.max_rows).
    let mut stored: HashSet<String> = HashSet::new();
    for round in 0..rounds {
        let sql =
            format!("SELECT props['id'] AS id FROM events WHERE props['id'] LIKE 'r{round}-%'");
        let (status, rows) = server.sql("read-a", &sql).await;
        assert_eq!(status, 200, "{rows}");
        stored.extend(
            rows.as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
    }
    let lost: Vec<&String> = acked.difference(&stored).take(20).collect();
    if !lost.is_empty() && std::env::var_os("TACET_CRASH_KEEP").is_some() {
        println!(
            "crash test: data directory and logs kept in {}",
            root.path().display()
        );
        std::mem::forget(root);
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {lost:?} (seed {seed})",
        acked.difference(&stored).count()
    );
    println!(
        "crash test: {rounds} kills, {sent} events attempted, {} acknowledged, {} stored (unacknowledged ones may or may not be)",
        acked.len(),
        stored.len()
    );
    server.stop();
}
