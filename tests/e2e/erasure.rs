//! Erasure and objection do not wait for a node that is down (on moto's S3 server, three nodes sharing a
//! key store): the node killed while its log held the person's events applies the erasure record when it
//! restarts, before anything of them is seen, and everyone else's events are stored exactly once.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::s3::{ALICE, AWS_ENV, BOB, Moto, count, post_clicks, s3};
use crate::server::Server;

const CAROL: &str = "carol-s3-0815";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_completes_at_once_while_a_node_is_down_and_reaches_its_log_when_it_returns() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("down").await;
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    let config = |node: u16, flush: &str| {
        format!(
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
            shared = shared.display(),
            storage = s3("down", None, &moto.endpoint),
        )
    };
    let start = |node: u16, flush: &str, logs: &str| {
        let dir = root.path().join(format!("node{node}"));
        std::fs::create_dir_all(&dir).unwrap();
        Server::start_in_with_env(
            &config(node, flush),
            &dir,
            logs,
            tempfile::tempdir().unwrap(),
            &AWS_ENV,
        )
    };
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

    let admin = |server: &Server, path: &str, body: Value| {
        let request = server
            .http
            .post(format!("{}/v1/admin/{path}", server.base))
            .bearer_auth("admin-a")
            .json(&body);
        async move {
            let resp = request.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
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
    for path in crate::server::files_under(root.path()) {
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
    let replay = std::fs::read_to_string(root.path().join("node2/logs-after/stderr.log"))
        .unwrap_or_default()
        + &std::fs::read_to_string(root.path().join("node2/logs-after/stdout.log"))
            .unwrap_or_default();
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
