//! The lifecycle through the real binary: the admin API (subject export, objection, erasure,
//! rectification, retention, audit), the CLI refusing to run beside a server, and with the server stopped
//! retention, the audit chain check and offboarding. No raw user id reaches any file.

use serde_json::{Value, json};

use crate::server::{Server, files_under, tacet};
use crate::skeleton::FIREFOX_LINUX;

const CONFIG: &str = r#"
trusted_proxies = ["127.0.0.1/32"]
[ingest]
flush_interval = "100ms"

[[tenant]]
id = "a"
ingest_key = "ingest-a"
read_key = "read-a"
admin_key = "admin-a"

[[tenant]]
id = "b"
ingest_key = "ingest-b"
read_key = "read-b"
"#;

const ALICE: &str = "alice.lifecycle@example.com";
const BOB: &str = "bob-4711";

async fn admin(server: &Server, key: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = server
        .http
        .post(format!("{}/v1/admin/{path}", server.base))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn events(user: Option<&str>, n: usize) -> String {
    (0..n)
        .map(|i| {
            let mut e = json!({"kind": "event", "name": "click", "url": format!("https://a.example/p{i}"), "props": {"plan": "free"}});
            if let Some(u) = user {
                e["user_id"] = u.into();
            }
            e.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn subject_rights_retention_audit_and_offboarding_end_to_end() {
    let server = Server::start(CONFIG);
    let post = |user: Option<&'static str>, n: usize| {
        let server = &server;
        async move {
            server
                .post_events(
                    "ingest-a",
                    FIREFOX_LINUX,
                    "198.51.100.20",
                    "application/x-ndjson",
                    events(user, n),
                )
                .await
        }
    };
    assert_eq!(post(Some(ALICE), 3).await.0, 202);
    assert_eq!(post(Some(BOB), 2).await.0, 202);
    assert_eq!(post(None, 4).await.0, 202);
    server.wait_for_count("read-a", 9).await;

    // Keys: the read key is not an admin key; tenant b has no admin API.
    let (status, body) = admin(
        &server,
        "read-a",
        "subjects/export",
        json!({"user_id": ALICE}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = admin(
        &server,
        "nope",
        "subjects/export",
        json!({"user_id": ALICE}),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = admin(
        &server,
        "admin-a",
        "subjects/export",
        json!({"userid": ALICE}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("user_id"),
        "{body}"
    );

    // Access: her three events, with a manifest.
    let (status, body) = admin(
        &server,
        "admin-a",
        "subjects/export",
        json!({"user_id": ALICE}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["manifest"]["rows"], 3);
    assert_eq!(body["events"].as_array().unwrap().len(), 3);
    assert!(body["events"][0]["user_pseudonym"].is_string());
    let resp = server
        .http
        .post(format!("{}/v1/admin/subjects/export", server.base))
        .bearer_auth("admin-a")
        .json(&json!({"user_id": ALICE, "format": "csv"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let manifest: Value =
        serde_json::from_str(resp.headers()["x-tacet-manifest"].to_str().unwrap()).unwrap();
    assert_eq!(manifest["rows"], 3);
    let csv = resp.text().await.unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    // Portability in Parquet: read back, the same rows as the JSON export, value for value.
    let resp = server
        .http
        .post(format!("{}/v1/admin/subjects/export", server.base))
        .bearer_auth("admin-a")
        .json(&json!({"user_id": ALICE, "format": "parquet"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let parquet = resp.bytes().await.unwrap();
    assert_eq!(&parquet[..4], b"PAR1");
    let batches: Vec<_> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(parquet)
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let mut rows = Vec::new();
    {
        let mut w = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(&mut rows);
        for b in &batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
    }
    let from_parquet: Value = serde_json::from_slice(&rows).unwrap();
    assert_eq!(
        from_parquet, body["events"],
        "the Parquet export differs from the JSON one"
    );

    // Objection: bob's new events are dropped, his stored ones leave the reports.
    let (status, body) = admin(
        &server,
        "admin-a",
        "subjects/object",
        json!({"user_id": BOB}),
    )
    .await;
    assert_eq!(
        (status, body["change"].as_str()),
        (200, Some("added")),
        "{body}"
    );
    let (status, body) = post(Some(BOB), 1).await;
    assert_eq!(status, 202);
    assert_eq!(body["dropped"]["objected"], 1, "{body}");
    server.wait_for_count("read-a", 7).await;

    // Rectification, then erasure of alice.
    let (status, body) = admin(
        &server,
        "admin-a",
        "subjects/rectify",
        json!({"user_id": ALICE, "set": {"plan": "pro"}}),
    )
    .await;
    assert_eq!((status, body["rows"].as_u64()), (200, Some(3)), "{body}");
    let (_, rows) = server
        .sql(
            "read-a",
            "SELECT props['plan'] AS plan, COUNT(*) AS n FROM events GROUP BY 1 ORDER BY 1",
        )
        .await;
    assert_eq!(
        rows,
        json!([{"plan": "free", "n": 4}, {"plan": "pro", "n": 3}])
    );
    let (status, body) = admin(
        &server,
        "admin-a",
        "subjects/erase",
        json!({"user_id": ALICE}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], 3);
    server.wait_for_count("read-a", 4).await;
    let (_, body) = admin(
        &server,
        "admin-a",
        "subjects/export",
        json!({"user_id": ALICE}),
    )
    .await;
    assert_eq!(body["manifest"]["rows"], 0);

    // Retention through the API (nothing is old enough), and the audit log as JSON and as SQL.
    let (status, body) = admin(&server, "admin-a", "retention", json!({"dry_run": true})).await;
    assert_eq!(
        (status, body["expired"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{body}"
    );
    let resp = server
        .http
        .get(format!("{}/v1/admin/audit", server.base))
        .bearer_auth("admin-a")
        .send()
        .await
        .unwrap();
    let audit: Value = resp.json().await.unwrap();
    assert_eq!(audit["verified"], true);
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"]["action"].as_str().unwrap())
        .collect();
    for a in [
        "admin.login",
        "subject.export",
        "subject.object",
        "subject.rectify",
        "subject.erase",
        "key.created",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let (status, rows) = admin(
        &server,
        "admin-a",
        "sql",
        json!({"sql": "SELECT action, COUNT(*) AS n FROM audit WHERE action LIKE 'subject.%' GROUP BY action ORDER BY action"}),
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(
        rows,
        json!([
            {"action": "subject.erase", "n": 1},
            {"action": "subject.export", "n": 4},
            {"action": "subject.object", "n": 1},
            {"action": "subject.rectify", "n": 1},
        ])
    );
    // The audit table is not there for the read key.
    let (status, _) = server.sql("read-a", "SELECT * FROM audit").await;
    assert_eq!(status, 400);

    // A CLI job beside the running server is refused.
    let config = server.config.to_str().unwrap().to_owned();
    let data = server.data_dir.to_str().unwrap().to_owned();
    let out = tacet(&[
        "--config",
        &config,
        "--data-dir",
        &data,
        "subject",
        "erase",
        "--tenant",
        "a",
        "--user-id",
        BOB,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("admin API"),
        "{out:?}"
    );

    let stopped = server.stop();
    // No raw user id in any byte the server wrote (lake, log, keys, objections, audit, logs).
    for path in files_under(stopped.data_dir.parent().unwrap()) {
        if path == stopped.config {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for id in [ALICE, BOB] {
            assert!(
                !bytes.windows(id.len()).any(|w| w == id.as_bytes()),
                "{} holds {id}",
                path.display()
            );
        }
    }

    // With the server stopped: retention planned for a far day, the audit chain, offboarding.
    let out = tacet(&[
        "--config",
        &config,
        "--data-dir",
        &data,
        "retention",
        "run",
        "--dry-run",
        "--as-of",
        "2099-01-01",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("would drop a events kind=event date="),
        "{stdout}"
    );
    let out = tacet(&["--config", &config, "--data-dir", &data, "audit", "verify"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("chain intact"));
    let log = stopped.data_dir.join("audit/audit.jsonl");
    let original = std::fs::read(&log).unwrap();
    let mut edited = original.clone();
    let second_line = original.iter().position(|&b| b == b'\n').unwrap() + 10;
    edited[second_line] ^= 0x01;
    std::fs::write(&log, &edited).unwrap();
    let out = tacet(&["--config", &config, "--data-dir", &data, "audit", "verify"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("entry 2"),
        "{out:?}"
    );
    std::fs::write(&log, &original).unwrap();

    // The CLI export: bob objected, but his own export still has his two stored events.
    let dir = stopped.data_dir.parent().unwrap().join("export-bob");
    let out = tacet(&[
        "--config",
        &config,
        "--data-dir",
        &data,
        "subject",
        "export",
        "--tenant",
        "a",
        "--user-id",
        BOB,
        "--format",
        "csv",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["rows"], 2);
    assert_eq!(
        std::fs::read_to_string(dir.join("events.csv"))
            .unwrap()
            .lines()
            .count(),
        3
    );

    let out = tacet(&[
        "--config",
        &config,
        "--data-dir",
        &data,
        "tenant",
        "offboard",
        "a",
    ]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--yes"));
    // The dashboard's crash triage marks of the tenant go too (another tenant's stay).
    let triage = stopped.data_dir.join("triage");
    std::fs::create_dir_all(&triage).unwrap();
    for t in ["a", "b"] {
        std::fs::write(triage.join(format!("{t}.json")), "{}").unwrap();
    }
    let out = tacet(&[
        "--config",
        &config,
        "--data-dir",
        &data,
        "tenant",
        "offboard",
        "a",
        "--yes",
    ]);
    assert!(out.status.success(), "{out:?}");
    let certificate: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        certificate["files_removed"].as_u64().unwrap() >= 1,
        "{certificate}"
    );
    assert!(
        certificate["keys_destroyed"].as_u64().unwrap() >= 2,
        "{certificate}"
    );
    let left: Vec<String> = files_under(&stopped.data_dir)
        .iter()
        .map(|p| {
            p.strip_prefix(&stopped.data_dir)
                .unwrap()
                .display()
                .to_string()
        })
        .filter(|p| {
            p.contains("tenant=a/") && p.starts_with("lake/events")
                || p.contains("salts/a/")
                || p.starts_with("keys/subject/a.")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!triage.join("a.json").exists() && triage.join("b.json").exists());
    let out = tacet(&["--config", &config, "--data-dir", &data, "audit", "verify"]);
    assert!(out.status.success(), "{out:?}");
}

/// An erasure in the background: answered once its record is written (the person already out of every
/// query), its receipt at the status address once the lake is rewritten; an unknown or malformed record
/// id is refused with what to send.
#[tokio::test]
async fn a_background_erasure_answers_at_once_and_its_receipt_follows() {
    let server = Server::start(CONFIG);
    let (status, _) = server
        .post_events(
            "ingest-a",
            FIREFOX_LINUX,
            "198.51.100.20",
            "application/x-ndjson",
            events(Some(ALICE), 3) + "\n" + &events(None, 2),
        )
        .await;
    assert_eq!(status, 202);
    server.wait_for_count("read-a", 5).await;
    // In the lake (flushed every 100 ms), not only in the buffer, which the record empties at once.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let (status, body) = admin(
        &server,
        "admin-a",
        "subjects/erase",
        json!({"user_id": ALICE, "background": true}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let record = body["erasure_record"].as_str().unwrap().to_owned();
    assert_eq!(
        body["status"],
        format!("/v1/admin/subjects/erasures/{record}")
    );
    let get = |path: String| {
        let server = &server;
        async move {
            let resp = server
                .http
                .get(format!("{}{path}", server.base))
                .bearer_auth("admin-a")
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let receipt = loop {
        let (status, body) = get(format!("/v1/admin/subjects/erasures/{record}")).await;
        assert_eq!(status, 200, "{body}");
        if body["done"] == true {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(receipt["receipt"]["rows"], 3, "{receipt}");
    assert_eq!(receipt["receipt"]["erasure_record"], record, "{receipt}");
    assert!(receipt["finished_at"].is_string(), "{receipt}");
    server.wait_for_count("read-a", 2).await;
    let (_, body) = admin(
        &server,
        "admin-a",
        "subjects/export",
        json!({"user_id": ALICE}),
    )
    .await;
    assert_eq!(body["manifest"]["rows"], 0);
    let (status, body) =
        get("/v1/admin/subjects/erasures/20990101T000000.000000Z-00000000".into()).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get("/v1/admin/subjects/erasures/a%2Fb".into()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("erasure_record"),
        "{body}"
    );
    // Another tenant's admin key does not reach it.
    let resp = server
        .http
        .get(format!(
            "{}/v1/admin/subjects/erasures/{record}",
            server.base
        ))
        .bearer_auth("read-b")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error());
}
