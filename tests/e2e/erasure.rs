//! Erasure and objection do not wait for a node that is down (on moto's S3 server, three nodes sharing a
//! key store): the node killed while its log held the person's events applies the erasure record when it
//! restarts, before anything of them is seen, and everyone else's events are stored exactly once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::s3::{ALICE, AWS_ENV, BOB, Moto, count, post_clicks, s3};
use crate::server::{Server, tacet_with_env};

const CAROL: &str = "carol-s3-0815";

/// Nodes on one moto bucket sharing a key store (`shared_dir`), each with its own data directory.
pub(crate) struct Cluster {
    pub root: tempfile::TempDir,
    pub shared: PathBuf,
    storage: String,
}

impl Cluster {
    pub async fn new(moto: &Moto, bucket: &str) -> Self {
        moto.create_bucket(bucket).await;
        let root = tempfile::tempdir().unwrap();
        let shared = root.path().join("shared");
        Self {
            storage: s3(bucket, None, &moto.endpoint),
            root,
            shared,
        }
    }

    pub fn dir(&self, node: u16) -> PathBuf {
        self.root.path().join(format!("node{node}"))
    }

    /// Starts node `node` (again, on the same data directory), its output under `logs`.
    pub fn start(&self, node: u16, flush: &str, logs: &str) -> Server {
        let config = format!(
            r#"
trusted_proxies = ["127.0.0.1/32"]
node_id = {node}
shared_dir = "{shared}"
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
            shared = self.shared.display(),
            storage = self.storage,
        );
        let dir = self.dir(node);
        std::fs::create_dir_all(&dir).unwrap();
        Server::start_in_with_env(&config, &dir, logs, tempfile::tempdir().unwrap(), &AWS_ENV)
    }
}

/// `POST /v1/admin/<path>` with tenant a's admin key: the status and the JSON answer.
pub(crate) async fn admin(server: &Server, path: &str, body: Value) -> (u16, Value) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_completes_at_once_while_a_node_is_down_and_reaches_its_log_when_it_returns() {
    let Some(moto) = Moto::start() else { return };
    let cluster = Cluster::new(&moto, "down").await;
    let (root, shared) = (cluster.root.path(), &cluster.shared);
    let start = |node: u16, flush: &str, logs: &str| cluster.start(node, flush, logs);
    let one = start(1, "100ms", "logs");
    let two = start(2, "60s", "logs");
    let three = start(3, "100ms", "logs");
    // Node 2 holds Alice's, Bob's and Carol's events in its log and buffer only (it flushes every minute).
    assert_eq!(post_clicks(&two, Some(ALICE), 3).await, 202);
    assert_eq!(post_clicks(&two, Some(BOB), 2).await, 202);
    assert_eq!(post_clicks(&two, Some(CAROL), 2).await, 202);
    assert_eq!(post_clicks(&one, None, 4).await, 202);
    assert_eq!(post_clicks(&three, Some(BOB), 1).await, 202);
    assert_eq!(post_clicks(&three, Some(ALICE), 1).await, 202);
    two.crash();
    // Three missed heartbeats and two seconds: node 2 is known to be down.
    tokio::time::sleep(Duration::from_millis(5_500)).await;

    let started = Instant::now();
    let (status, receipt) = admin(&three, "subjects/erase", json!({"user_id": ALICE})).await;
    assert_eq!(status, 200, "{receipt}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the erasure did not wait for the node that is down: {:?}",
        started.elapsed()
    );
    // The receipt says what was removed from the lake now, and which node's log the record reaches later.
    assert_eq!(receipt["rows"], 1, "{receipt}");
    assert!(receipt["erasure_record"].is_string(), "{receipt}");
    assert_eq!(receipt["nodes_pending"], json!([2]), "{receipt}");
    let started = Instant::now();
    let (status, body) = admin(&one, "subjects/object", json!({"user_id": CAROL})).await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Until node 2 has applied it, the record holds Alice's pseudonyms, never her id: every file the
    // nodes wrote (data directories, logs, the shared key store with the record) is free of raw ids.
    assert_eq!(
        std::fs::read_dir(shared.join("keys/erasures/a"))
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json"))
            .count(),
        1
    );
    for path in crate::server::files_under(root) {
        let bytes = std::fs::read(&path).unwrap();
        for needle in [ALICE, BOB, CAROL, crate::s3::CLIENT_IP] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} in {}",
                path.display()
            );
        }
    }

    // Node 2 comes back on its data directory and replays its log: the record drops Alice's three events
    // before they can be flushed; Bob's and Carol's are written (Carol's hidden by her objection).
    let two = start(2, "100ms", "logs-after");
    let identified = "WHERE user_pseudonym IS NOT NULL";
    // Every node: Bob's 3 (Carol hidden from every node within a second of her objection), and 7 in all,
    // each event once.
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in [&one, &two, &three] {
        loop {
            let seen = (
                count(node, "read-a", identified).await,
                count(node, "read-a", "").await,
            );
            if seen == (3, 7) {
                break;
            }
            assert!(Instant::now() < deadline, "{seen:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let replay = std::fs::read_to_string(root.join("node2/logs-after/stderr.log"))
        .unwrap_or_default()
        + &std::fs::read_to_string(root.join("node2/logs-after/stdout.log")).unwrap_or_default();
    assert!(
        replay.contains("events of erased people dropped before they reached the lake"),
        "{replay}"
    );
    // Every file in the bucket: Alice's pseudonym appears nowhere (her export finds nothing).
    let (status, export) = admin(&one, "subjects/export", json!({"user_id": ALICE})).await;
    assert_eq!(status, 200, "{export}");
    assert!(
        !export.to_string().contains("a.example/0"),
        "Alice's events are gone: {export}"
    );
    for (key, bytes) in moto.objects("down").await {
        for needle in [ALICE, BOB, CAROL] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} in {key}"
            );
        }
    }
    // The record (Alice's pseudonyms) outlived the erasure only until node 2 applied it.
    let records = shared.join("keys/erasures/a");
    let left: Vec<_> = std::fs::read_dir(&records)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    drop(two);
}

/// `tacet node drain` on a node removed for good: what its log held reaches the lake (an erased person's
/// events dropped), it leaves the register and the lake's claims, and erasures no longer name it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_removed_for_good_is_drained_and_no_longer_named() {
    let Some(moto) = Moto::start() else { return };
    let cluster = Cluster::new(&moto, "drain").await;
    let (root, shared) = (cluster.root.path(), &cluster.shared);
    let start = |node: u16, flush: &str| cluster.start(node, flush, "logs");
    let one = start(1, "100ms");
    let two = start(2, "60s");
    assert_eq!(post_clicks(&two, Some(ALICE), 2).await, 202);
    assert_eq!(post_clicks(&two, Some(BOB), 3).await, 202);
    two.crash();
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let erase = |user: &'static str| {
        let one = &one;
        async move {
            let (status, receipt) = admin(one, "subjects/erase", json!({"user_id": user})).await;
            assert_eq!(status, 200, "{receipt}");
            receipt
        }
    };
    let receipt = erase(ALICE).await;
    assert_eq!(receipt["nodes_pending"], json!([2]), "{receipt}");

    // Node 2 is not coming back: drain its data directory.
    let dir = cluster.dir(2);
    let out = tacet_with_env(
        &[
            "node",
            "drain",
            "--config",
            dir.join("tacet.toml").to_str().unwrap(),
            "--data-dir",
            dir.join("data").to_str().unwrap(),
        ],
        &AWS_ENV,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr
            .contains("held 5 events in 2 records; 2 of them of people erased meanwhile, dropped"),
        "{stderr}"
    );
    assert!(
        stdout.contains("node 2 drained: 3 events written to the lake")
            && stdout.contains("can be deleted"),
        "{stdout}"
    );
    // Bob's three are in the lake, Alice's nowhere; the record, the register entry and the claim are gone.
    assert_eq!(
        count(&one, "read-a", "WHERE user_pseudonym IS NOT NULL").await,
        3
    );
    assert!(!shared.join("nodes/2.alive").exists());
    let left: Vec<_> = std::fs::read_dir(shared.join("keys/erasures/a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let keys: Vec<String> = moto
        .objects("drain")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(
        keys.iter().any(|k| k.ends_with("_tacet/nodes/1.json"))
            && !keys.iter().any(|k| k.ends_with("_tacet/nodes/2.json")),
        "{keys:?}"
    );
    // The next erasure names no node.
    let started = Instant::now();
    let receipt = erase(BOB).await;
    assert!(receipt.get("nodes_pending").is_none(), "{receipt}");
    assert_eq!(receipt["rows"], 3, "{receipt}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A single node has nothing to drain, and says so.
    let out = tacet_with_env(
        &[
            "node",
            "drain",
            "--data-dir",
            root.join("solo").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("a single node needs no draining"));
}
