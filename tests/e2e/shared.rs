//! Nodes that share nothing but the bucket (`shared_state = "lake"`, moto's S3 server): no shared
//! directory, each node its own data directory and write-ahead log, the keys, the node register, the
//! erasure records and the audit chain sealed in `_tacet/state/` of the lake's bucket.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::erasure::admin;
use crate::s3::{ALICE, AWS_ENV, BOB, CLIENT_IP, Moto, count, post_clicks, s3};
use crate::server::{Server, files_under, tacet_with_env};

const CAROL: &str = "carol-share-nothing";
const DAVE: &str = "dave@share-nothing.example";
/// The key that seals the shared state, the same on every node (`openssl rand -hex 32`).
const STATE_KEY: &str = "8f1c2b7a9e4d3f6a0b5c8d7e2f1a4b3c6d9e8f7a0b1c2d3e4f5a6b7c8d9e0f1a";

/// Nodes on one moto bucket and nothing else.
struct Nothing {
    root: tempfile::TempDir,
    storage: String,
}

impl Nothing {
    async fn new(moto: &Moto, bucket: &str) -> Self {
        moto.create_bucket(bucket).await;
        Self {
            root: tempfile::tempdir().unwrap(),
            storage: s3(bucket, Some("prod"), &moto.endpoint),
        }
    }

    fn config(&self, node: u16, flush: &str) -> String {
        format!(
            r#"
trusted_proxies = ["127.0.0.1/32"]
node_id = {node}
shared_state = "lake"
[storage]
{storage}
[ingest]
flush_interval = "{flush}"
[lifecycle]
compact_interval = "0s"
retention_interval = "0s"

[[tenant]]
id = "a"
ingest_key = "ingest-a"
read_key = "read-a"
admin_key = "admin-a"
"#,
            storage = self.storage,
        )
    }

    fn start(&self, node: u16, flush: &str, logs: &str) -> Server {
        let dir = self.root.path().join(format!("node{node}"));
        std::fs::create_dir_all(&dir).unwrap();
        let env: Vec<(&str, &str)> = AWS_ENV
            .iter()
            .copied()
            .chain([("TACET_STATE_KEY", STATE_KEY)])
            .collect();
        Server::start_in_with_env(
            &self.config(node, flush),
            &dir,
            logs,
            tempfile::tempdir().unwrap(),
            &env,
        )
    }
}

/// What a load balancer's client sees: requests go round-robin to the nodes; one refused with a status is
/// sent to the next node. Counts what was acknowledged, per person, and the requests whose outcome is
/// unknown (the connection broke before an answer: the node may have made them durable just before it was
/// killed), which are not sent again, so that every stored event is either acknowledged or one of those.
struct Load {
    stop: Arc<AtomicBool>,
    unknown: Arc<AtomicU64>,
    anonymous: Arc<AtomicU64>,
    bob: Arc<AtomicU64>,
    dave: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(bases: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let unknown = Arc::new(AtomicU64::new(0));
        let (anonymous, bob, dave) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let task = tokio::spawn({
            let unknown = unknown.clone();
            let (stop, anonymous, bob, dave) =
                (stop.clone(), anonymous.clone(), bob.clone(), dave.clone());
            async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let user = if n.is_multiple_of(2) { BOB } else { DAVE };
                    let body = json!([
                        {"kind": "pageview", "url": format!("https://a.example/load/{n}")},
                        {"kind": "event", "name": "click", "url": "https://a.example/", "user_id": user},
                    ]);
                    for attempt in 0..bases.len() {
                        let base = &bases[(n + attempt) % bases.len()];
                        let sent = http
                            .post(format!("{base}/v1/events"))
                            .header("x-tacet-key", "ingest-a")
                            .header("x-forwarded-for", CLIENT_IP)
                            .header("user-agent", crate::skeleton::FIREFOX_LINUX)
                            .json(&body)
                            .send()
                            .await;
                        match sent {
                            Ok(r) if r.status().as_u16() == 202 => {
                                anonymous.fetch_add(1, Ordering::SeqCst);
                                if user == BOB { &bob } else { &dave }
                                    .fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            // Refused: nothing of it was kept; the next node takes it.
                            Ok(_) => {}
                            // Sent, no answer: kept or not, unknown; not sent twice.
                            Err(e) if !e.is_connect() => {
                                unknown.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            // Nothing listens there (the killed node): the next node takes it.
                            Err(_) => {}
                        }
                    }
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        Self {
            stop,
            unknown,
            anonymous,
            bob,
            dave,
            task,
        }
    }

    /// Stops and answers what was acknowledged: (anonymous, Bob's, Dave's), and how many requests had an
    /// unknown outcome.
    async fn finish(self) -> ((u64, u64, u64), u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        (
            (
                self.anonymous.load(Ordering::SeqCst),
                self.bob.load(Ordering::SeqCst),
                self.dave.load(Ordering::SeqCst),
            ),
            self.unknown.load(Ordering::SeqCst),
        )
    }
}

fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_sharing_only_the_bucket_agree_erase_at_once_and_lose_nothing_acknowledged() {
    let Some(moto) = Moto::start() else { return };
    let nodes = Nothing::new(&moto, "nothing").await;
    // Flushing every second under load: a few dozen small files by the time of the erasure.
    let one = nodes.start(1, "1s", "logs");
    let two = nodes.start(2, "60s", "logs");
    let three = nodes.start(3, "1s", "logs");
    // Node 2 holds Alice's and Carol's events in its log and buffer only (it flushes every minute); the
    // others wrote some of theirs to the lake.
    assert_eq!(post_clicks(&two, Some(ALICE), 3).await, 202);
    assert_eq!(post_clicks(&two, Some(CAROL), 2).await, 202);
    assert_eq!(post_clicks(&three, Some(ALICE), 1).await, 202);
    assert_eq!(post_clicks(&one, Some(CAROL), 1).await, 202);
    let load = Load::start(vec![one.base.clone(), two.base.clone(), three.base.clone()]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    two.crash();
    // Three missed heartbeats and two seconds: node 2 is known to be down. The load goes on through the
    // other two.
    tokio::time::sleep(Duration::from_millis(5_500)).await;

    let started = Instant::now();
    let (status, receipt) = admin(&three, "subjects/erase", json!({"user_id": ALICE})).await;
    eprintln!("the erasure took {:?}: {receipt}", started.elapsed());
    assert_eq!(
        status,
        200,
        "{receipt}\n{}",
        std::fs::read_to_string(nodes.root.path().join("node3/logs/stderr.log"))
            .unwrap_or_default()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the erasure waited: {:?}",
        started.elapsed()
    );
    assert_eq!(receipt["rows"], 1, "{receipt}");
    assert_eq!(receipt["nodes_pending"], json!([2]), "{receipt}");
    // What node 2 held when it was last seen: the records a lost node would take with it.
    let gap = &receipt["gaps"][0];
    assert_eq!(gap["node"], 2, "{receipt}");
    let held = gap["unflushed_records"].as_array().expect("a range");
    assert!(
        held[0].as_u64().unwrap() <= held[1].as_u64().unwrap(),
        "{receipt}"
    );
    assert!(gap["last_seen"].is_string(), "{receipt}");
    let started = Instant::now();
    let (status, body) = admin(&one, "subjects/object", json!({"user_id": CAROL})).await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The record waits in the bucket for node 2, sealed.
    let records: Vec<String> = moto
        .keys("nothing")
        .await
        .into_iter()
        .filter(|k| k.starts_with("prod/_tacet/state/keys/erasures/a/") && k.ends_with(".json"))
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ((anonymous, bob, dave), unknown) = load.finish().await;
    eprintln!(
        "acknowledged: {anonymous} requests ({bob} of Bob's, {dave} of Dave's); unknown: {unknown}"
    );
    assert!(bob > 20 && dave > 20, "the load ran: {bob} {dave}");

    // Node 2 comes back on its data directory and replays its log: the record drops Alice's events before
    // they are seen; everything else it acknowledged reaches the lake once.
    let two = nodes.start(2, "100ms", "logs-after");
    let identified = "WHERE user_pseudonym IS NOT NULL";
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in [&one, &two, &three] {
        loop {
            let seen = (
                count(node, "read-a", identified).await,
                count(node, "read-a", "").await,
            );
            // Carol is hidden by her objection, Alice erased: Bob's and Dave's clicks, and the page views;
            // every acknowledged request once, and of those with an unknown outcome none or once.
            let extra = seen.0.checked_sub(bob + dave);
            if extra.is_some_and(|x| x <= unknown && seen.1 == anonymous + bob + dave + 2 * x) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{seen:?}, expected {:?} and at most {unknown} more requests of two events",
                (bob + dave, anonymous + bob + dave)
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    // One pseudonym per person whichever node took the event: the nodes share their keys.
    let (status, rows) = one
        .sql(
            "read-a",
            "SELECT COUNT(DISTINCT user_pseudonym) AS people, COUNT(DISTINCT visitor_id) AS visitors \
             FROM events WHERE user_pseudonym IS NOT NULL",
        )
        .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(rows[0]["people"], 2, "{rows}");
    assert_eq!(
        rows[0]["visitors"], 1,
        "one browser, one day, one salt: {rows}"
    );
    let (status, export) = admin(&one, "subjects/export", json!({"user_id": ALICE})).await;
    assert_eq!(status, 200, "{export}");
    assert!(!export.to_string().contains("a.example/0"), "{export}");

    // No raw id or address in any object of the bucket or any file of any node; the shared state is
    // sealed (no key, record or register in plain), and the record is gone once node 2 applied it.
    let objects = moto.objects("nothing").await;
    for (key, bytes) in &objects {
        for needle in [ALICE, BOB, CAROL, DAVE, CLIENT_IP] {
            assert!(!holds(bytes, needle), "{needle} in {key}");
        }
        if key.starts_with("prod/_tacet/state/") {
            assert!(bytes.starts_with(b"TSS1"), "{key} is not sealed");
            for plain in ["pseudonyms", "action", "subject"] {
                assert!(!holds(bytes, plain), "{plain} in {key}");
            }
        }
    }
    for kind in [
        "keys/salts/a/",
        "keys/subject/a.v1.key",
        "audit/audit.jsonl",
        "nodes/",
    ] {
        assert!(
            objects
                .iter()
                .any(|(k, _)| k.starts_with(&format!("prod/_tacet/state/{kind}"))),
            "no {kind} in the bucket"
        );
    }
    assert!(
        !objects
            .iter()
            .any(|(k, _)| k.starts_with("prod/_tacet/state/keys/erasures/a/")),
        "the record outlived the erasure"
    );
    for path in files_under(nodes.root.path()) {
        let bytes = std::fs::read(&path).unwrap();
        for needle in [ALICE, BOB, CAROL, DAVE, CLIENT_IP] {
            assert!(!holds(&bytes, needle), "{needle} in {}", path.display());
        }
        // Nothing of the shared state on a node's disk: its data directory holds its log and identity.
        let name = path.to_string_lossy();
        assert!(
            !name.contains("/keys/") && !name.contains("/audit/"),
            "{name} is shared state on a node's disk"
        );
    }
    // The audit chain holds every node's entries in one chain.
    let out = tacet_with_env(
        &[
            "audit",
            "verify",
            "--config",
            nodes.root.path().join("node1/tacet.toml").to_str().unwrap(),
        ],
        &[AWS_ENV.as_slice(), &[("TACET_STATE_KEY", STATE_KEY)]].concat(),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("s3://nothing/prod/_tacet/state/audit/audit.jsonl")
            && said.contains("chain intact"),
        "{said}"
    );
    drop(two);
}

/// A node whose state key differs cannot open the shared state and says so; one without a key is told how
/// to make one; the same key store reached two ways agrees with itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_state_key_refuses_to_start_and_says_what_to_do() {
    let Some(moto) = Moto::start() else { return };
    let nodes = Nothing::new(&moto, "keyed").await;
    let one = nodes.start(1, "100ms", "logs");
    assert_eq!(post_clicks(&one, Some(BOB), 1).await, 202);
    let dir = nodes.root.path().join("node2");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tacet.toml");
    std::fs::write(
        &config,
        format!("insecure_demo = true\n{}", nodes.config(2, "100ms")),
    )
    .unwrap();
    let data = dir.join("data");
    let serve = |key: Option<&str>| {
        let mut env: Vec<(&str, &str)> = AWS_ENV.to_vec();
        if let Some(k) = key {
            env.push(("TACET_STATE_KEY", k));
        }
        env.push(("TACET_DATA_DIR", data.to_str().unwrap()));
        let out = tacet_with_env(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--config",
                config.to_str().unwrap(),
            ],
            &env,
        );
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let other = "1f2e3d4c5b6a79880f1e2d3c4b5a69780a1b2c3d4e5f60718293a4b5c6d7e8f9";
    let said = serve(Some(other));
    assert!(
        said.contains("every node must have the same one")
            && said.contains("s3://keyed/prod/_tacet/state/"),
        "{said}"
    );
    let said = serve(None);
    assert!(said.contains("set TACET_STATE_KEY"), "{said}");
    drop(one);
}

/// The race of two nodes for the same tenant's day salt, subject key and audit entry, on S3 itself: two
/// key stores with their own S3 clients always agree, and the audit chain never forks.
#[test]
fn two_nodes_racing_on_s3_always_agree() {
    let Some(moto) = Moto::start() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(moto.create_bucket("race"));
    let open = || -> tacet_state::Dir {
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(moto.bucket("race"));
        let objects = tacet_state::Objects::new(store, "_tacet/state", "s3://race").unwrap();
        tacet_state::Dir::new(Arc::new(tacet_state::Sealed::new(
            Arc::new(objects),
            &[9; 32],
        )))
    };
    // Fewer rounds than on a directory: each is a dozen requests to moto.
    crate::race_support::race(open, 200);
}

/// From one node to many: a node whose shared state is its data directory moves it into the bucket
/// (`tacet node move-state`) and runs on with `shared_state = "lake"`: the same keys (the same person
/// keeps one pseudonym, the lake's claim accepts the key store), the audit chain goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_moves_its_state_into_the_bucket_and_keeps_its_keys() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("moved").await;
    let root = tempfile::tempdir().unwrap();
    let storage = s3("moved", Some("prod"), &moto.endpoint);
    let config = |state: &str| {
        format!(
            "trusted_proxies = [\"127.0.0.1/32\"]\n{state}\n[storage]\n{storage}\n[ingest]\nflush_interval = \"100ms\"\n\n\
             [[tenant]]\nid = \"a\"\ningest_key = \"ingest-a\"\nread_key = \"read-a\"\nadmin_key = \"admin-a\"\n"
        )
    };
    let env: Vec<(&str, &str)> = AWS_ENV
        .iter()
        .copied()
        .chain([("TACET_STATE_KEY", STATE_KEY)])
        .collect();
    let before = Server::start_in_with_env(
        &config(""),
        root.path(),
        "logs",
        tempfile::tempdir().unwrap(),
        &env,
    );
    assert_eq!(post_clicks(&before, Some(BOB), 2).await, 202);
    before.wait_for_count("read-a", 2).await;
    let (status, _) = admin(&before, "subjects/object", json!({"user_id": CAROL})).await;
    assert_eq!(status, 200);
    drop(before.stop());

    let data = root.path().join("data");
    let move_state = || {
        let mut env = env.clone();
        env.push(("TACET_DATA_DIR", data.to_str().unwrap()));
        tacet_with_env(
            &[
                "node",
                "move-state",
                "--config",
                root.path().join("tacet.toml").to_str().unwrap(),
            ],
            &env,
        )
    };
    let out = move_state();
    let (said, listed) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{said}{listed}");
    assert!(
        said.contains("moved the shared state") && said.contains("s3://moved/prod/_tacet/state"),
        "{said}"
    );
    for name in [
        "keys/store.id",
        "keys/access.key",
        "keys/subject/a.v1.key",
        "keys/objections/a.jsonl",
        "audit/audit.jsonl",
    ] {
        assert!(listed.contains(name), "{name} not copied: {listed}");
    }
    let again = move_state();
    assert!(
        String::from_utf8_lossy(&again.stdout).contains(": 0 objects written"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );

    let after = Server::start_in_with_env(
        &config("shared_state = \"lake\""),
        root.path(),
        "logs-after",
        tempfile::tempdir().unwrap(),
        &env,
    );
    assert_eq!(post_clicks(&after, Some(BOB), 1).await, 202);
    assert_eq!(post_clicks(&after, Some(CAROL), 1).await, 202);
    after.wait_for_count("read-a", 3).await;
    let (status, rows) = after
        .sql(
            "read-a",
            "SELECT COUNT(DISTINCT user_pseudonym) AS people, COUNT(*) AS n FROM events",
        )
        .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(rows[0]["people"], 1, "Bob kept his pseudonym: {rows}");
    assert_eq!(rows[0]["n"], 3, "Carol's objection moved too: {rows}");
    let chain = tacet_with_env(
        &[
            "audit",
            "verify",
            "--config",
            root.path().join("tacet.toml").to_str().unwrap(),
        ],
        &env,
    );
    let said = String::from_utf8_lossy(&chain.stdout);
    assert!(
        chain.status.success() && said.contains("chain intact"),
        "{said}"
    );
    drop(after);
}
