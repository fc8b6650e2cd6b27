//! The walking skeleton: beacons in, Parquet out, SQL back, with exact numbers and tenant isolation.

use std::io::Write;

use serde_json::{Value, json};

use crate::server::{Server, tacet, two_tenant_config};

pub const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
pub const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
pub const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";

fn ndjson(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

#[tokio::test]
async fn mixed_batches_from_two_tenants_give_exact_answers() {
    // Exact counts of one or two visitors are the point here: no k-threshold.
    let server = Server::start(
        &two_tenant_config("")
            .replace(
                "read_key = \"read-a\"\n",
                "read_key = \"read-a\"\n[tenant.privacy]\nk_threshold = 1\n",
            )
            .replace(
                "ip = \"truncate\"\n",
                "ip = \"truncate\"\nk_threshold = 1\n",
            ),
    );

    // Tenant a, visitor 1 (Chrome on Windows): 3 page views, 2 custom events, 1 crash, as NDJSON.
    let visitor1 = ndjson(&[
        json!({"kind": "pageview", "url": "https://a.example/", "referrer": "https://www.google.com/search?q=x"}),
        json!({"kind": "pageview", "url": "https://a.example/pricing?utm_source=news&utm_campaign=launch"}),
        json!({"kind": "pageview", "url": "https://a.example/signup"}),
        json!({"kind": "event", "name": "signup", "url": "https://a.example/signup", "props": {"plan": "pro", "seats": 3}}),
        json!({"kind": "event", "name": "signup", "url": "https://a.example/signup", "props": {"plan": "free"}}),
        json!({"kind": "crash", "url": "https://a.example/app", "error_type": "TypeError", "message": "x is undefined",
               "stack": ["at render (app.js:10:5)", "at main (app.js:2:1)"], "release": "1.4.2"}),
    ]);
    let (status, body) = server
        .post_events(
            "ingest-a",
            CHROME_WINDOWS,
            "203.0.113.10",
            "application/x-ndjson",
            visitor1,
        )
        .await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (202, Some(6)),
        "{body}"
    );
    // Tenant a, visitor 2 (Safari on iPhone): 1 page view, as one JSON object with an epoch-millisecond ts.
    let now_ms = chrono_now_ms();
    let (status, body) = server
        .post_events(
            "ingest-a",
            SAFARI_IPHONE,
            "203.0.113.20",
            "text/plain",
            json!({"kind": "pageview", "url": "https://a.example/", "ts": now_ms}).to_string(),
        )
        .await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (202, Some(1)),
        "{body}"
    );
    // Tenant b (Firefox on Linux): 3 page views as a gzipped JSON array.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(
        json!([
            {"kind": "pageview", "url": "https://b.example/"},
            {"kind": "pageview", "url": "https://b.example/docs"},
            {"kind": "pageview", "url": "https://b.example/docs"},
        ])
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let resp = server
        .http
        .post(format!("{}/v1/events", server.base))
        .header("x-tacet-key", "ingest-b")
        .header("user-agent", FIREFOX_LINUX)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);

    server.wait_for_count("read-a", 7).await;
    server.wait_for_count("read-b", 3).await;

    let (_, kinds) = server
        .sql(
            "read-a",
            "SELECT kind, COUNT(*) AS n FROM events GROUP BY kind ORDER BY kind",
        )
        .await;
    assert_eq!(
        kinds,
        json!([{"kind": "crash", "n": 1}, {"kind": "event", "n": 2}, {"kind": "pageview", "n": 4}])
    );
    let (_, agents) = server
        .sql(
            "read-a",
            "SELECT browser, os, device, COUNT(*) AS n, COUNT(DISTINCT visitor_id) AS visitors \
                         FROM events GROUP BY browser, os, device ORDER BY browser",
        )
        .await;
    assert_eq!(
        agents,
        json!([
            {"browser": "Chrome", "os": "Windows 10", "device": "desktop", "n": 6, "visitors": 1},
            {"browser": "Safari", "os": "iPhone", "device": "mobile", "n": 1, "visitors": 1},
        ])
    );
    let (_, pages) = server
        .sql(
            "read-a",
            "SELECT url_host, url_path, utm_source, utm_campaign, referrer_host FROM events \
                         WHERE kind = 'pageview' ORDER BY url_path, referrer_host NULLS LAST",
        )
        .await;
    assert_eq!(
        pages,
        json!([
            {"url_host": "a.example", "url_path": "/", "utm_source": null, "utm_campaign": null, "referrer_host": "www.google.com"},
            {"url_host": "a.example", "url_path": "/", "utm_source": null, "utm_campaign": null, "referrer_host": null},
            {"url_host": "a.example", "url_path": "/pricing", "utm_source": "news", "utm_campaign": "launch", "referrer_host": null},
            {"url_host": "a.example", "url_path": "/signup", "utm_source": null, "utm_campaign": null, "referrer_host": null},
        ])
    );
    let (_, props) = server
        .sql("read-a", "SELECT props['plan'] AS plan, props['seats'] AS seats FROM events WHERE kind = 'event' ORDER BY plan")
        .await;
    assert_eq!(
        props,
        json!([{"plan": "free", "seats": null}, {"plan": "pro", "seats": "3"}])
    );
    let (_, crash) = server
        .sql(
            "read-a",
            "SELECT error_type, message, stack, release FROM events WHERE kind = 'crash'",
        )
        .await;
    assert_eq!(
        crash,
        json!([{"error_type": "TypeError", "message": "x is undefined",
        "stack": ["at render (app.js:10:5)", "at main (app.js:2:1)"], "release": "1.4.2"}])
    );
    let (_, ts) = server
        .sql(
            "read-a",
            &format!("SELECT COUNT(*) AS n FROM events WHERE ts = to_timestamp_millis({now_ms})"),
        )
        .await;
    assert_eq!(
        ts[0]["n"], 1,
        "the client's epoch-millisecond ts is stored exactly"
    );

    // Tenant isolation: each read key sees its own rows only, whatever the SQL.
    let (_, hosts_a) = server
        .sql("read-a", "SELECT DISTINCT url_host FROM events")
        .await;
    assert_eq!(hosts_a, json!([{"url_host": "a.example"}]));
    let (_, hosts_b) = server
        .sql(
            "read-b",
            "SELECT url_host, browser, os, COUNT(*) AS n FROM events GROUP BY 1, 2, 3",
        )
        .await;
    assert_eq!(
        hosts_b,
        json!([{"url_host": "b.example", "browser": "Firefox", "os": "Linux", "n": 3}])
    );
    let (_, prefix) = server
        .sql("read-b", "SELECT DISTINCT ip_prefix FROM events")
        .await;
    assert_eq!(
        prefix,
        json!([{"ip_prefix": "127.0.0.0/24"}]),
        "tenant b truncates; its peer was loopback"
    );
    let (status, body) = server
        .sql("read-a", "SELECT * FROM 'events/tenant=b/'")
        .await;
    assert_eq!(status, 400, "{body}");

    // The canned report over HTTP.
    let resp = server
        .http
        .get(format!("{}/v1/reports/daily", server.base))
        .bearer_auth("read-a")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let daily: Value = resp.json().await.unwrap();
    assert_eq!(daily.as_array().unwrap().len(), 1, "{daily}");
    assert_eq!(
        (
            daily[0]["visitors"].as_u64(),
            daily[0]["pageviews"].as_u64(),
            daily[0]["events"].as_u64(),
            daily[0]["crashes"].as_u64()
        ),
        (Some(2), Some(4), Some(2), Some(1))
    );

    // Operators see what happened in /metrics (Prometheus text), per tenant and reason.
    server
        .assert_metrics(&[
            "tacet_ingest_events_accepted_total{tenant=\"a\"} 7",
            "tacet_ingest_events_accepted_total{tenant=\"b\"} 3",
            "tacet_wal_fsync_seconds_bucket",
            "tacet_wal_bytes",
            "tacet_lake_flush_seconds_bucket",
            "tacet_ingest_buffered_events",
        ])
        .await;
    let resp = server
        .http
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    // After a clean stop, the CLI reads the same lake.
    let stopped = server.stop();
    let config = stopped.config.to_str().unwrap();
    let data = stopped.data_dir.to_str().unwrap();
    let out = tacet(&[
        "sql",
        "--config",
        config,
        "--data-dir",
        data,
        "--tenant",
        "a",
        "--format",
        "json",
        "SELECT kind, COUNT(*) AS n FROM events GROUP BY kind ORDER BY kind",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows, kinds);
    let out = tacet(&[
        "report",
        "daily",
        "--tenant",
        "b",
        "--config",
        config,
        "--data-dir",
        data,
        "--format",
        "csv",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(
        csv.starts_with("day,visitors,pageviews,events,crashes,suppressed\n")
            && csv.ends_with(",1,3,0,0,\n"),
        "{csv}"
    );
    // --explain: where the days come from (today is open: raw events) and the plan, without running it.
    let out = tacet(&[
        "report",
        "overview",
        "--tenant",
        "b",
        "--config",
        config,
        "--data-dir",
        data,
        "--explain",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("source: raw; rollup_days=0; expired_days=0; raw_days=1; why=open:1\n")
            && text.contains("logical_plan")
            && text.contains("physical_plan"),
        "{text}"
    );
    // Every report parameter is a flag: the funnel's steps, and each filter.
    let funnel = |extra: &[&str]| {
        let mut args = vec![
            "report",
            "funnel",
            "--tenant",
            "b",
            "--config",
            config,
            "--data-dir",
            data,
            "--format",
            "csv",
        ];
        args.extend_from_slice(extra);
        tacet(&args)
    };
    let out = funnel(&[]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("needs the parameter steps (API: ?steps=…; CLI: --steps …)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = funnel(&[
        "--steps",
        "page:/,page:/x",
        "--browser",
        "Firefox",
        "--referrer-class",
        "direct",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("step,name,visitors,conversion\n"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = tacet(&[
        "sql",
        "--config",
        config,
        "--data-dir",
        data,
        "--tenant",
        "a",
        "SELECT COUNT(*) AS n FROM events",
    ]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("| n |") && table.contains("| 7 |"),
        "{table}"
    );
    // Rollups of today, by hand: one tenant-day for a, then SQL sees them.
    let today = chrono::Utc::now().date_naive().to_string();
    let out = tacet(&[
        "rollup",
        "--tenant",
        "a",
        "--from",
        &today,
        "--to",
        &today,
        "--config",
        config,
        "--data-dir",
        data,
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("rolled up 1 tenant-days with events"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tacet(&[
        "sql",
        "--config",
        config,
        "--data-dir",
        data,
        "--tenant",
        "a",
        "--format",
        "json",
        "SELECT SUM(events) AS n FROM rollups WHERE kind = '*'",
    ]);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows, json!([{"n": 7}]));
    let out = tacet(&[
        "rollup",
        "--from",
        "2026-13-01",
        "--config",
        config,
        "--data-dir",
        data,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a date"));
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn bad_input_over_the_wire_gets_4xx_with_reasons() {
    let server = Server::start(&two_tenant_config(""));
    let ok = json!({"kind": "pageview", "url": "https://a.example/"});
    let (status, body) = server
        .post_events(
            "wrong",
            FIREFOX_LINUX,
            "203.0.113.1",
            "application/json",
            ok.to_string(),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unknown ingest key"))
    );
    let (status, body) = server
        .post_events(
            "ingest-a",
            FIREFOX_LINUX,
            "203.0.113.1",
            "application/json",
            "{\"kind\":",
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("invalid JSON"),
        "{body}"
    );
    let batch = json!([ok, {"kind": "pageview", "url": "https://a.example/", "ts": "noon"}, {"kind": "crash", "url": "u"}]);
    let (status, body) = server
        .post_events(
            "ingest-a",
            FIREFOX_LINUX,
            "203.0.113.1",
            "application/json",
            batch.to_string(),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["accepted"], 1);
    assert_eq!(
        body["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["field"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["ts", "error_type"]
    );
    // Over the default 4 MiB body limit: refused from the Content-Length alone, before the body is read.
    let answer = raw_request(
        &server.base,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Tacet-Key: ingest-a\r\n\
        Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n[",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("body larger than 4194304 bytes"),
        "{answer}"
    );
    // Over the limit without a Content-Length (chunked): refused once the limit is crossed.
    let chunk = format!("{:x}\r\n{}\r\n", 5_000_000, " ".repeat(5_000_000));
    let answer = raw_request(
        &server.base,
        &format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Tacet-Key: ingest-a\r\n\
        Transfer-Encoding: chunked\r\n\r\n{chunk}"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    server.wait_for_count("read-a", 1).await;
    server
        .assert_metrics(&[
            "tacet_ingest_events_dropped_total{tenant=\"a\",reason=\"invalid\"} 2",
            "tacet_http_ingest_requests_refused_total{reason=\"unauthorized\"} 1",
            "tacet_http_ingest_requests_refused_total{reason=\"bad_body\"} 3",
        ])
        .await;
    let (status, body) = server.sql("wrong", "SELECT 1").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unknown read key"))
    );
    let (status, body) = server.sql("read-a", "DROP TABLE events").await;
    assert_eq!(status, 403, "{body}");
    let resp = server
        .http
        .get(format!("{}/nope", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    server.stop();
}

/// Sends raw bytes and returns what the server answered (as much as it sent before closing).
async fn raw_request(base: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    // The server may answer and close before taking everything: a failed write is expected then.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn cli_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = tacet(&["sql", "--data-dir", d, "--tenant", "nope", "SELECT 1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no tenant \"nope\" in the configuration; tenants are: demo")
    );
    let out = tacet(&["sql", "--data-dir", d, "--tenant", "demo", "SELECT 1"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no lake at"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tacet(&["serve", "--config", "/nonexistent/tacet.toml"]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot read the configuration file /nonexistent/tacet.toml")
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "insecure_demo = true\n[[tenant]]\nid = \"x\"\ningest_key = \"k\"\nread_key = \"k\"\n",
    )
    .unwrap();
    let out = tacet(&["serve", "--config", bad.to_str().unwrap(), "--data-dir", d]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("every key must be unique"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tacet(&["report", "--list"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("daily"));
    let out = tacet(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "sql", "report"] {
        assert!(help.contains(cmd), "{help}");
    }
}
