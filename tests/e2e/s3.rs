//! The lake on a real S3-compatible server: moto's server mode (`pip install 'moto[server]'`, which
//! `.ci/run` does), speaking the S3 HTTP protocol on loopback. Without `moto_server` these tests fail and
//! say so; `TACET_SKIP_S3=1` skips them on purpose.
//!
//! - One server on S3, with a tenant pinned to its own bucket: ingestion, flush, SQL, erasure, retention
//!   and (CLI) compaction, each checked in the buckets themselves; no raw identifier in any object.
//! - Two ingestion nodes sharing one bucket and one key store under concurrent load, one of them killed
//!   and restarted midway, each compacting its own files: every acknowledged event is queryable exactly
//!   once, from either node.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value, json};

use crate::server::{Server, files_under, free_port, tacet_with_env, wait_for_port};
use crate::skeleton::FIREFOX_LINUX;

/// Credentials moto accepts (it checks none); the servers read them from the standard AWS variables.
pub const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "tacet-test"),
    ("AWS_SECRET_ACCESS_KEY", "tacet-test-secret"),
    ("AWS_REGION", "us-east-1"),
];

/// moto's server (what `moto_server` runs), with each write handled whole before the next: moto checks
/// `If-None-Match`/`If-Match` and then stores in two steps, so two conditional puts at once can both win,
/// where S3 (and R2, MinIO) lets one win and answers 412 to the other. Reads stay concurrent.
const MOTO_ATOMIC: &str = "\
import sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
writes = threading.Lock()
def serve(environ, start_response):
    if environ.get('REQUEST_METHOD') in ('GET', 'HEAD'):
        return app(environ, start_response)
    with writes:
        return [b''.join(app(environ, start_response))]
run_simple('127.0.0.1', int(sys.argv[1]), serve, threaded=True)
";

/// A moto S3 server on a free loopback port, stopped on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    /// `None` when `TACET_SKIP_S3` is set; panics with what to install when moto is missing.
    pub fn start() -> Option<Moto> {
        if std::env::var_os("TACET_SKIP_S3").is_some() {
            eprintln!("TACET_SKIP_S3 is set: skipping an S3 test");
            return None;
        }
        let port = free_port();
        let child = Command::new("python3")
            .args(["-c", MOTO_ATOMIC, &port.to_string()])
            .env("MOTO_PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the S3 tests need moto's server: `pip install 'moto[server]'` (.ci/run does); \
                     TACET_SKIP_S3=1 skips them ({e})"
                )
            });
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        wait_for_port(port, "moto_server");
        Some(moto)
    }

    pub async fn create_bucket(&self, bucket: &str) {
        // The server may still be starting behind its open port: a few tries.
        let mut tries = 0;
        let resp = loop {
            match reqwest::Client::new()
                .put(format!("{}/{bucket}", self.endpoint))
                .send()
                .await
            {
                Ok(resp) => break resp,
                Err(e) if tries < 20 => {
                    tries += 1;
                    eprintln!("moto not answering yet ({e}); trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(e) => panic!("moto does not answer: {e}"),
            }
        };
        assert!(resp.status().is_success(), "create bucket: {resp:?}");
    }

    pub fn bucket(&self, bucket: &str) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("tacet-test")
            .with_secret_access_key("tacet-test-secret")
            .build()
            .unwrap()
    }

    /// Every key in a bucket, sorted.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .bucket(bucket)
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    /// Every object's key and bytes.
    pub async fn objects(&self, bucket: &str) -> Vec<(String, Vec<u8>)> {
        let store = self.bucket(bucket);
        let mut out = Vec::new();
        for key in self.keys(bucket).await {
            let bytes = store
                .get(&object_store::path::Path::from(key.as_str()))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            out.push((key, bytes.to_vec()));
        }
        out
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn s3(bucket: &str, prefix: Option<&str>, endpoint: &str) -> String {
    let prefix = prefix
        .map(|p| format!("prefix = \"{p}\"\n"))
        .unwrap_or_default();
    format!(
        "backend = \"s3\"\nbucket = \"{bucket}\"\n{prefix}endpoint = \"{endpoint}\"\nallow_http = true\n"
    )
}

pub(crate) const ALICE: &str = "alice.s3@example.com";
pub(crate) const BOB: &str = "bob-s3-4711";
pub(crate) const CLIENT_IP: &str = "198.51.100.77";

/// The one number a query answers (its first row's first column).
async fn scalar(server: &Server, key: &str, sql: &str) -> u64 {
    let (status, body) = server.sql(key, sql).await;
    assert_eq!(status, 200, "{sql}: {body}");
    body[0]
        .as_object()
        .and_then(|row| row.values().next())
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{sql}: {body}"))
}

pub(crate) async fn count(server: &Server, key: &str, filter: &str) -> u64 {
    scalar(
        server,
        key,
        &format!("SELECT COUNT(*) AS n FROM events {filter}"),
    )
    .await
}

fn parts(keys: &[String]) -> Vec<&String> {
    keys.iter()
        .filter(|k| k.contains("/part-") && k.ends_with(".parquet"))
        .collect()
}

#[tokio::test]
async fn a_lake_on_s3_ingests_erases_retains_and_compacts_with_a_tenant_pinned_to_its_own_bucket() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("lake").await;
    moto.create_bucket("lake-eu").await;
    let config = format!(
        r#"
trusted_proxies = ["127.0.0.1/32"]
[storage]
{default}
[ingest]
flush_interval = "100ms"
[lifecycle]
compact_interval = "0s"
retention_interval = "0s"
compact_min_age = "0s"

[[tenant]]
id = "a"
ingest_key = "ingest-a"
read_key = "read-a"
admin_key = "admin-a"
[tenant.privacy]
# The test sends events 40 days old, for retention to drop.
accept_past = "60d"
[tenant.privacy.retention]
event = "30d"

[[tenant]]
id = "eu"
ingest_key = "ingest-eu"
read_key = "read-eu"
[tenant.storage]
{eu}"#,
        default = s3("lake", Some("prod/tacet"), &moto.endpoint),
        eu = s3("lake-eu", None, &moto.endpoint),
    );
    let root = tempfile::tempdir().unwrap();
    let server = Server::start_in_with_env(
        &config,
        root.path(),
        "logs",
        tempfile::tempdir().unwrap(),
        &AWS_ENV,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let old = now - 40 * 86_400_000;
    let event = |user: Option<&str>, ts: i64, i: usize| {
        let mut e = json!({"kind": "event", "name": "click", "url": format!("https://a.example/p{i}"),
            "ts": ts, "props": {"plan": "pro"}});
        if let Some(u) = user {
            e["user_id"] = u.into();
        }
        e
    };
    // Several requests, so several flushes and files.
    let batches: Vec<Vec<Value>> = vec![
        (0..4).map(|i| event(Some(ALICE), now, i)).collect(),
        (0..3).map(|i| event(Some(BOB), now, i)).collect(),
        (0..5).map(|i| event(None, now, i)).collect(),
        (0..6).map(|i| event(None, old, i)).collect(),
        (0..2).map(|i| event(Some(ALICE), now, i)).collect(),
    ];
    for batch in &batches {
        let (status, body) = server
            .post_events(
                "ingest-a",
                FIREFOX_LINUX,
                CLIENT_IP,
                "application/json",
                Value::Array(batch.clone()).to_string(),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let eu: Vec<Value> = (0..3).map(|i| event(None, now, i)).collect();
    let (status, _) = server
        .post_events(
            "ingest-eu",
            FIREFOX_LINUX,
            CLIENT_IP,
            "application/json",
            Value::Array(eu).to_string(),
        )
        .await;
    assert_eq!(status, 202);
    server.wait_for_count("read-a", 20).await;
    server.wait_for_count("read-eu", 3).await;

    // Each tenant's files are in its own bucket, under the layout (and prefix) the docs give.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (lake, lake_eu) = loop {
        let (lake, lake_eu) = (moto.keys("lake").await, moto.keys("lake-eu").await);
        if parts(&lake).len() >= 5 && !parts(&lake_eu).is_empty() || Instant::now() > deadline {
            break (lake, lake_eu);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(parts(&lake).len() >= 5, "one file per flush: {lake:?}");
    // Beside the events, only the lake's record of its writers (the key store, this node), and the pinned
    // tenant's bucket gets its own key store claim.
    let claims = |keys: &[String], prefix: &str| -> Vec<String> {
        keys.iter()
            .filter(|k| k.starts_with(&format!("{prefix}_tacet/")))
            .cloned()
            .collect()
    };
    assert_eq!(
        claims(&lake, "prod/tacet/"),
        [
            "prod/tacet/_tacet/keystore.json",
            "prod/tacet/_tacet/nodes/single.json"
        ]
    );
    assert_eq!(claims(&lake_eu, ""), ["_tacet/tenant=eu/keystore.json"]);
    assert!(
        lake.iter()
            .filter(|k| !k.starts_with("prod/tacet/_tacet/"))
            .all(|k| k.starts_with("prod/tacet/events/tenant=a/kind=event/date=")),
        "{lake:?}"
    );
    assert!(
        !lake_eu.is_empty()
            && lake_eu
                .iter()
                .filter(|k| !k.starts_with("_tacet/"))
                .all(|k| k.starts_with("events/tenant=eu/kind=event/date=")),
        "{lake_eu:?}"
    );

    // Erasure on S3: the person's rows go, their files are replaced by a next generation.
    let admin = |path: &'static str, body: Value| {
        let server = &server;
        async move {
            let resp = server
                .http
                .post(format!("{}/v1/admin/{path}", server.base))
                .bearer_auth("admin-a")
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = admin("subjects/erase", json!({"user_id": ALICE})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(&server, "read-a", "").await, 14);
    assert_eq!(
        count(&server, "read-a", "WHERE user_pseudonym IS NOT NULL").await,
        3
    );
    let lake = moto.keys("lake").await;
    assert!(
        lake.iter().any(|k| k.contains(".g1.parquet")) || parts(&lake).len() < 5,
        "erasure rewrote or deleted Alice's files: {lake:?}"
    );

    // Retention on S3: the 40-day-old partition (6 events) is dropped, whole.
    let old_day = chrono::DateTime::from_timestamp_millis(old)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    let old_partition = format!("events/tenant=a/kind=event/date={old_day}/");
    assert!(lake.iter().any(|k| k.contains(&old_partition)));
    let (status, body) = admin("retention", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(&server, "read-a", "").await, 8);
    let lake = moto.keys("lake").await;
    assert!(!lake.iter().any(|k| k.contains(&old_partition)), "{lake:?}");
    assert!(
        lake.iter()
            .any(|k| k.contains(&format!("rollups/tenant=a/date={old_day}/"))),
        "the day's counts outlive its events: {lake:?}"
    );
    server.stop();

    // Compaction on S3 (CLI, server stopped): the small files of today merge into one, same rows.
    let (config_path, data) = (root.path().join("tacet.toml"), root.path().join("data"));
    let (config_path, data) = (config_path.to_str().unwrap(), data.to_str().unwrap());
    let before = parts(&moto.keys("lake").await).len();
    assert!(before >= 2, "something to compact");
    let out = tacet_with_env(
        &[
            "--config",
            config_path,
            "--data-dir",
            data,
            "compact",
            "--tenant",
            "a",
        ],
        &AWS_ENV,
    );
    assert!(out.status.success(), "{out:?}");
    let lake = moto.keys("lake").await;
    assert_eq!(parts(&lake).len(), 1, "{lake:?}");
    let out = tacet_with_env(
        &[
            "--config",
            config_path,
            "--data-dir",
            data,
            "sql",
            "--tenant",
            "a",
            "--format",
            "json",
            "SELECT COUNT(*) AS n FROM events",
        ],
        &AWS_ENV,
    );
    assert!(out.status.success(), "{out:?}");
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows, json!([{"n": 8}]));

    // No raw identifier reached either bucket.
    for bucket in ["lake", "lake-eu"] {
        for (key, bytes) in moto.objects(bucket).await {
            for needle in [ALICE, BOB, CLIENT_IP] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{needle} in s3://{bucket}/{key}"
                );
            }
        }
    }
}

/// Posts batches of 10 uniquely numbered events until the server goes away or `batches` are sent;
/// returns the ids the server acknowledged.
async fn load(
    server: Arc<Server>,
    phase: u8,
    node: u8,
    client: usize,
    batches: usize,
) -> Vec<String> {
    let mut acked = Vec::new();
    for batch in 0..batches {
        let events: Vec<Value> = (0..10)
            .map(|i| {
                json!({"kind": "event", "name": "load", "url": "https://a.example/",
                "props": {"id": format!("p{phase}-n{node}-c{client}-b{batch}-e{i}")}})
            })
            .collect();
        let resp = server
            .http
            .post(format!("{}/v1/events", server.base))
            .header("x-tacet-key", "ingest-a")
            .header("user-agent", FIREFOX_LINUX)
            .header("x-forwarded-for", CLIENT_IP)
            .header("content-type", "application/json")
            .body(Value::Array(events.clone()).to_string())
            .send()
            .await;
        match resp {
            Ok(r) if r.status().as_u16() == 202 => acked.extend(
                events
                    .iter()
                    .map(|e| e["props"]["id"].as_str().unwrap().to_owned()),
            ),
            Ok(r) if r.status().as_u16() == 503 => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Ok(r) => panic!("unexpected answer {}", r.status()),
            Err(_) => break, // the node was killed
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_bucket_and_every_acknowledged_event_is_queryable_exactly_once() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("shared").await;
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    let config = |node: u16| {
        format!(
            r#"
trusted_proxies = ["127.0.0.1/32"]
node_id = {node}
shared_dir = "{shared}"
[storage]
{storage}
[ingest]
flush_interval = "50ms"
flush_events = 200
[http]
requests_per_second_per_client = 0
requests_per_second_per_key = 0
events_per_second_per_tenant = 0
[query]
max_rows = 1000000
[lifecycle]
compact_interval = "1s"
compact_min_age = "0s"
retention_interval = "0s"

[[tenant]]
id = "a"
ingest_key = "ingest-a"
read_key = "read-a"
"#,
            shared = shared.display(),
            storage = s3("shared", Some("lake"), &moto.endpoint),
        )
    };
    let node_root = |n: u16| {
        let dir = root.path().join(format!("node{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    let start = |n: u16, life: u32| {
        Arc::new(Server::start_in_with_env(
            &config(n),
            &node_root(n),
            &format!("logs-{life}"),
            tempfile::tempdir().unwrap(),
            &AWS_ENV,
        ))
    };
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let run = |phase: u8, servers: Vec<(u8, Arc<Server>)>, batches: usize| {
        let acked = Arc::clone(&acked);
        async move {
            let mut tasks = Vec::new();
            for (node, server) in servers {
                for client in 0..3 {
                    tasks.push(tokio::spawn(load(
                        Arc::clone(&server),
                        phase,
                        node,
                        client,
                        batches,
                    )));
                }
            }
            for t in tasks {
                let ids = t.await.unwrap();
                acked.lock().unwrap().extend(ids);
            }
        }
    };

    // Phase 1: both nodes under load; node 2 is killed (SIGKILL) in the middle of it.
    let one = start(1, 0);
    let two = start(2, 0);
    let killer = {
        let two = Arc::clone(&two);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            two.crash();
        })
    };
    run(1, vec![(1, Arc::clone(&one)), (2, Arc::clone(&two))], 60).await;
    killer.await.unwrap();
    drop(two);
    // Phase 2: node 2 restarts on its own log (its acknowledged events are redone), load on both again.
    let two = start(2, 1);
    run(2, vec![(1, Arc::clone(&one)), (2, Arc::clone(&two))], 30).await;

    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 1000,
        "only {} events acknowledged",
        acked.len()
    );
    // Each node compacts its own files (every second here): wait until each has merged its day into one,
    // then both nodes must still see every acknowledged event exactly once.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let keys = moto.keys("shared").await;
        let per_node = |n: &str| keys.iter().filter(|k| k.contains(n)).count();
        if per_node("part-n1-") == 1 && per_node("part-n2-") == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "compaction did not merge each node's files: {keys:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Both nodes converge on the same answer once every buffer is flushed.
    for server in [&one, &two] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, rows) = server
                .sql("read-a", "SELECT props['id'] AS id FROM events")
                .await;
            assert_eq!(status, 200, "{rows}");
            let ids: Vec<&str> = rows
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap())
                .collect();
            let unique: HashSet<&str> = ids.iter().copied().collect();
            if unique.len() != ids.len() {
                let keys = moto.keys("shared").await;
                panic!(
                    "{} events stored more than once; the bucket holds {keys:#?}",
                    ids.len() - unique.len()
                );
            }
            let missing = acked
                .iter()
                .filter(|id| !unique.contains(id.as_str()))
                .count();
            if missing == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{missing} of {} acknowledged events not queryable from {}",
                acked.len(),
                server.base
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // One shared key store: the same visitor (address, browser, day) has one id on both nodes.
        let visitors = "SELECT COUNT(DISTINCT visitor_id) AS v FROM events";
        assert_eq!(scalar(server, "read-a", visitors).await, 1);
    }
    let keys = moto.keys("shared").await;
    for node in ["part-n1-", "part-n2-"] {
        assert!(
            keys.iter().any(|k| k.contains(node)),
            "no {node} file in {keys:?}"
        );
    }
    drop(one);
    drop(two);
}

/// Posts `n` click events, of `user` if given; the status.
pub(crate) async fn post_clicks(server: &Server, user: Option<&str>, n: usize) -> u16 {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            let mut e =
                json!({"kind": "event", "name": "click", "url": format!("https://a.example/{i}")});
            if let Some(u) = user {
                e["user_id"] = u.into();
            }
            e
        })
        .collect();
    server
        .post_events(
            "ingest-a",
            FIREFOX_LINUX,
            CLIENT_IP,
            "application/json",
            Value::Array(events).to_string(),
        )
        .await
        .0
}

/// An erasure on one node first makes every other registered node persist what it holds: events of the
/// person still in another node's buffer (there for seconds, with a long flush interval) are erased too,
/// not written to the lake after the erasure finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_on_one_node_reaches_the_events_in_another_nodes_buffer() {
    let Some(moto) = Moto::start() else { return };
    let cluster = crate::erasure::Cluster::new(&moto, "erase").await;
    let (root, shared) = (cluster.root.path(), &cluster.shared);
    let start = |node: u16, flush: &str| cluster.start(node, flush, "logs");
    let one = start(1, "100ms");
    let two = start(2, "4s");
    assert_eq!(post_clicks(&two, Some(ALICE), 3).await, 202);
    assert_eq!(post_clicks(&two, Some(BOB), 2).await, 202);
    assert_eq!(post_clicks(&one, None, 4).await, 202);
    // Node 2 flushes only every 4 s: right now Alice's events are in its buffer and log alone.
    let started = Instant::now();
    let (status, body) =
        crate::erasure::admin(&one, "subjects/erase", json!({"user_id": ALICE})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the erasure waited for node 2's next tick, not for ever"
    );
    // Node 2 persisted everything before answering: Bob's events are in the lake already, Alice's nowhere.
    let identified = "WHERE user_pseudonym IS NOT NULL";
    assert_eq!(count(&one, "read-a", identified).await, 2);
    assert_eq!(count(&one, "read-a", "").await, 6);
    // And they never come back: after node 2's next regular flush, the same.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(count(&one, "read-a", identified).await, 2);
    assert_eq!(count(&two, "read-a", identified).await, 2);
    for (key, bytes) in moto.objects("erase").await {
        assert!(
            !bytes.windows(ALICE.len()).any(|w| w == ALICE.as_bytes()),
            "{key}"
        );
    }
    // A cleanly stopped node leaves the register; the running one is all an erasure waits for.
    two.stop();
    // Nothing either node wrote locally (logs, keys, the node register) holds a raw identifier.
    // (Write-ahead logs hold pseudonymised events only; after the erasure none of Alice's.)
    let written = files_under(root);
    assert!(
        written
            .iter()
            .any(|p| p.to_string_lossy().contains("/nodes/"))
    );
    for path in written {
        let bytes = std::fs::read(&path).unwrap();
        for needle in [ALICE, BOB, CLIENT_IP] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} in {}",
                path.display()
            );
        }
    }
    let nodes: Vec<String> = std::fs::read_dir(shared.join("nodes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".alive"))
        .collect();
    assert_eq!(nodes, ["1.alive"]);
}
