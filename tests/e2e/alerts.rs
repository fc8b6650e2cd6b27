//! Crash alerts against a small local webhook receiver: a new group, a regression after "resolved in
//! 1.2.0" with a crash from 1.3.0, and a spike each deliver exactly one signed POST; a receiver that fails
//! twice gets the third attempt; one that keeps failing leaves a dead letter.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::server::{Server, tacet_with_env};

const SECRET: &str = "alert-secret-for-the-test";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";

#[derive(Default)]
struct Receiver {
    /// Every request: the alert id, whether its signature checked out, the body, and what was answered.
    seen: Mutex<Vec<(String, bool, Value, u16)>>,
    /// Requests to refuse (500) before accepting again.
    fail: AtomicU32,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let id = headers["x-tacet-alert"].to_str().unwrap().to_owned();
    let signed = headers["x-tacet-signature"].to_str().unwrap()
        == tacet_server::alerts::signature(SECRET.as_bytes(), &body);
    let failing = r
        .fail
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    r.seen.lock().unwrap().push((
        id,
        signed,
        serde_json::from_slice(&body).unwrap(),
        status.as_u16(),
    ));
    status
}

impl Receiver {
    /// The accepted alerts of `kind`, waiting up to 30 s for `n` of them.
    async fn accepted(&self, kind: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got: Vec<Value> = self
                .seen
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, _, b, s)| b["kind"] == kind && *s == 204)
                .map(|(_, _, b, _)| b.clone())
                .collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} {kind} alerts after 30 s",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn crash(error_type: &str, release: &str, ts: Option<i64>) -> Value {
    let mut c = json!({"kind": "crash", "url": "https://app.example/", "error_type": error_type,
        "message": "failed for carol@example.com", "release": release,
        "stack": [format!("at {error_type}Handler (https://app.example/app.js:1:1)")]});
    if let Some(ts) = ts {
        c["ts"] = json!(ts);
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_groups_regressions_and_spikes_each_send_one_signed_alert() {
    let receiver = Arc::new(Receiver::default());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(Arc::clone(&receiver));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = format!(
        r#"
alert_interval = "200ms"
[ingest]
flush_interval = "100ms"
[[tenant]]
id = "a"
ingest_key = "ingest-a"
read_key = "read-a"
admin_key = "admin-a"
[tenant.privacy]
k_threshold_crashes = 1
[tenant.alerts]
webhook = "{hook}"
secret = "{SECRET}"
spike_factor = 5
spike_min_crashes = 10
"#
    );
    let server = Server::start(&config);
    let post = |events: Value| {
        let server = &server;
        async move {
            let (s, b) = server
                .post_events(
                    "ingest-a",
                    UA,
                    "203.0.113.9",
                    "application/json",
                    events.to_string(),
                )
                .await;
            assert_eq!(s, 202, "{b}");
        }
    };
    // Let the first check record that there is nothing yet.
    tokio::time::sleep(Duration::from_millis(600)).await;

    // A new group: one alert, signed, with the scrubbed message and no identifier.
    post(json!([crash("CartError", "1.2.0", None)])).await;
    let new = receiver.accepted("new", 1).await;
    assert_eq!(new[0]["error_type"], "CartError");
    assert_eq!(new[0]["example_message"], "failed for [email]");
    let fp = new[0]["fingerprint"].as_str().unwrap().to_owned();
    assert!(!new[0].to_string().contains("carol"), "{}", new[0]);

    // Resolved in 1.2.0: a crash from 1.2.0 does not reopen it, one from 1.3.0 does, once.
    let resp = server
        .http
        .post(format!("{}/v1/admin/crashes/{fp}", server.base))
        .bearer_auth("admin-a")
        .body(json!({"state": "resolved", "release": "1.2.0"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    post(json!([crash("CartError", "1.2.0", None)])).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        receiver.accepted("regression", 0).await.is_empty(),
        "no regression from the old release"
    );
    post(json!([crash("CartError", "1.3.0", None)])).await;
    let regressions = receiver.accepted("regression", 1).await;
    assert_eq!(regressions[0]["fingerprint"], fp.as_str());

    // A spike: a crash an hour for 8 hours, then 12 in this hour.
    let now = chrono::Utc::now().timestamp_millis();
    let mut burst: Vec<Value> = (2..10)
        .map(|h| crash("QuotaError", "1.3.0", Some(now - h * 3_600_000)))
        .collect();
    burst.extend((0..12).map(|_| crash("QuotaError", "1.3.0", None)));
    post(Value::Array(burst)).await;
    let spikes = receiver.accepted("spike", 1).await;
    assert_eq!(spikes[0]["error_type"], "QuotaError");
    assert_eq!(spikes[0]["last_hour"], 12);

    // A receiver that fails twice: the third attempt delivers.
    receiver.fail.store(2, Ordering::SeqCst);
    post(json!([crash("FlakyError", "1.3.0", None)])).await;
    let flaky = receiver.accepted("new", 3).await;
    let flaky_id = flaky
        .iter()
        .find(|b| b["error_type"] == "FlakyError")
        .unwrap()["alert"]
        .as_str()
        .unwrap()
        .to_owned();
    let attempts: Vec<u16> = receiver
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, ..)| *id == flaky_id)
        .map(|(.., s)| *s)
        .collect();
    assert_eq!(attempts, [500, 500, 204]);

    // One that keeps failing: a dead letter.
    receiver.fail.store(100, Ordering::SeqCst);
    post(json!([crash("DeadError", "1.3.0", None)])).await;
    let dead = server.data_dir.join("alerts/a/dead");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&dead).map_or(true, |d| d.count() == 0) {
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    receiver.fail.store(0, Ordering::SeqCst);

    // Exactly one of each, all signed.
    let seen = receiver.seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|(_, signed, ..)| *signed),
        "every alert is signed"
    );
    let accepted = |kind: &str| {
        seen.iter()
            .filter(|(_, _, b, s)| b["kind"] == kind && *s == 204)
            .count()
    };
    assert_eq!(
        (accepted("new"), accepted("regression"), accepted("spike")),
        (3, 1, 1)
    );

    // `tacet alerts test` sends one through the same path.
    let out = tacet_with_env(
        &[
            "--config",
            server.config.to_str().unwrap(),
            "alerts",
            "test",
            "--tenant",
            "a",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(receiver.accepted("test", 1).await.len(), 1);
    server.stop();
}
