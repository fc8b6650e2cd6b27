//! Distributed SQL on a Ballista cluster made of Tacet's own processes: `tacet ballista scheduler` and
//! `tacet ballista executor` on loopback, and `tacet serve` with `[query] ballista = "df://…"`. Reports
//! and SQL over HTTP are planned by the scheduler and run by the executor, with exact answers.
//! (The in-process cluster is compared report by report with the local session in
//! `crates/tacet-query/tests/reports/`.)

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{BIN, Server, free_port, wait_for_port};
use crate::skeleton::FIREFOX_LINUX;

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn reports_and_sql_run_on_a_ballista_cluster_of_tacet_processes() {
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    let (scheduler, flight, grpc) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"
trusted_proxies = ["127.0.0.1/32"]
[storage]
path = "{lake}"
[ingest]
flush_interval = "100ms"
[query]
ballista = "df://127.0.0.1:{scheduler}"

[[tenant]]
id = "a"
ingest_key = "ingest-a"
read_key = "read-a"
# One visitor: the exact counts are the point here, so no k-threshold.
[tenant.privacy]
k_threshold = 1
"#,
        lake = lake.display()
    );
    let config_path = root.path().join("cluster.toml");
    std::fs::write(&config_path, &config).unwrap();
    let spawn = |args: &[&str], log: &str| {
        Process(
            Command::new(BIN)
                .arg("--config")
                .arg(&config_path)
                .args(args)
                .env_remove("TACET_CONFIG")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(root.path().join(log)).unwrap())
                .spawn()
                .unwrap(),
        )
    };
    std::fs::create_dir_all(&lake).unwrap();
    let _scheduler = spawn(
        &[
            "ballista",
            "scheduler",
            "--bind",
            &format!("127.0.0.1:{scheduler}"),
        ],
        "scheduler.log",
    );
    wait_for_port(scheduler, "the scheduler");
    let _executor = spawn(
        &[
            "ballista",
            "executor",
            "--scheduler",
            &format!("127.0.0.1:{scheduler}"),
            "--bind",
            "127.0.0.1",
            "--port",
            &flight.to_string(),
            "--grpc-port",
            &grpc.to_string(),
            "--slots",
            "2",
        ],
        "executor.log",
    );
    wait_for_port(flight, "the executor");
    let server = Server::start_in(&config, root.path(), "logs", tempfile::tempdir().unwrap());

    let events: Vec<Value> = (0..7)
        .map(|i| {
            json!({"kind": "pageview", "url": format!("https://a.example/p{}", i % 3),
                "user_id": "ballista-person@example.com"})
        })
        .chain(
            (0..3).map(|_| json!({"kind": "event", "name": "signup", "url": "https://a.example/"})),
        )
        .collect();
    let (status, body) = server
        .post_events(
            "ingest-a",
            FIREFOX_LINUX,
            "198.51.100.9",
            "application/json",
            Value::Array(events).to_string(),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    // Ballista sessions read what is flushed (every 100 ms here), file by file (a flush writes one file per
    // partition, so page views may be counted a moment before events): wait for all of it.
    let daily = |server: &Server| {
        let request = server
            .http
            .get(format!("{}/v1/reports/daily", server.base))
            .bearer_auth("read-a");
        async move {
            let resp = request.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            resp.json::<Value>().await.unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows = daily(&server).await;
        let complete =
            rows[0]["pageviews"].as_u64() == Some(7) && rows[0]["events"].as_u64() == Some(3);
        if complete || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (
            rows[0]["visitors"].as_u64(),
            rows[0]["pageviews"].as_u64(),
            rows[0]["events"].as_u64()
        ),
        (Some(1), Some(7), Some(3)),
        "{rows}"
    );
    let (status, pages) = server
        .sql(
            "read-a",
            "SELECT url_path, COUNT(*) AS n FROM events WHERE kind = 'pageview' GROUP BY url_path ORDER BY url_path",
        )
        .await;
    assert_eq!(status, 200, "{pages}");
    assert_eq!(
        pages,
        json!([{"url_path": "/p0", "n": 3}, {"url_path": "/p1", "n": 2}, {"url_path": "/p2", "n": 2}])
    );
    // The `visits` table: today's visits are computed from raw events when the query runs, on the
    // cluster too. One visitor, seconds apart: one visit of 7 page views among its 10 events, entered on
    // the first page viewed.
    let (status, visits) = server
        .sql(
            "read-a",
            "SELECT pageviews, events, bounce, entry_page, browser FROM visits",
        )
        .await;
    assert_eq!(status, 200, "{visits}");
    assert_eq!(
        visits,
        json!([{"pageviews": 7, "events": 10, "bounce": false, "entry_page": "/p0", "browser": "Firefox"}])
    );
    // Planned by the scheduler into stages, not run in the server's own session: `events`, and `visits`
    // while no day of it is stored, whose plan is deep (explaining it once overflowed the scheduler's stack
    // and killed the cluster for every tenant; the query after it would fail).
    for sql in [
        "EXPLAIN SELECT COUNT(*) FROM visits",
        "EXPLAIN SELECT kind, COUNT(*) FROM events GROUP BY kind",
    ] {
        let (status, plan) = server.sql("read-a", sql).await;
        assert_eq!(status, 200, "{sql}: {plan}");
        assert!(
            plan.as_array()
                .unwrap()
                .iter()
                .any(|r| r["plan_type"] == "distributed_plan"),
            "{sql}: {plan}"
        );
    }
    // A closed day: yesterday's page views (another visitor), rolled up by the CLI, which stores the day's
    // visits.
    let yesterday = chrono::Utc::now() - chrono::Duration::days(1);
    let day = yesterday.date_naive().to_string();
    let earlier: Vec<Value> = (0..2)
        .map(|i| {
            json!({"kind": "pageview", "url": format!("https://a.example/y{i}"),
                "ts": yesterday.timestamp_millis() + i * 60_000})
        })
        .collect();
    let (status, body) = server
        .post_events(
            "ingest-a",
            FIREFOX_LINUX,
            "198.51.100.10",
            "application/json",
            Value::Array(earlier).to_string(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let count = format!("SELECT COUNT(*) AS n FROM events WHERE date = '{day}'");
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.sql("read-a", &count).await.1 != json!([{"n": 2}]) {
        assert!(
            Instant::now() < deadline,
            "yesterday's events never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rolled = Command::new(BIN)
        .args([
            "rollup", "--tenant", "a", "--from", &day, "--to", &day, "--config",
        ])
        .arg(&server.config)
        .arg("--data-dir")
        .arg(&server.data_dir)
        .env_remove("TACET_CONFIG")
        .output()
        .unwrap();
    assert!(
        rolled.status.success(),
        "{}",
        String::from_utf8_lossy(&rolled.stderr)
    );
    // Read from the day's stored visits: a union of that file's scan with the other days, computed from
    // events and empty here. Ballista loses such a union's rows (no rows in 3 of 5 runs) or never
    // finishes, so a plan with a union runs on the server's own session (crate::ballista::has_union).
    let stored = format!(
        "SELECT date, pageviews, bounce, entry_page, exit_page FROM visits WHERE date = '{day}'"
    );
    let (status, plan) = server.sql("read-a", &format!("EXPLAIN {stored}")).await;
    assert_eq!(status, 200, "{plan}");
    assert!(
        plan.to_string().contains("visits.parquet")
            && !plan.to_string().contains("distributed_plan"),
        "the server reads the closed day's stored visits itself: {plan}"
    );
    for _ in 0..3 {
        let (status, visits) = server.sql("read-a", &stored).await;
        assert_eq!(status, 200, "{visits}");
        assert_eq!(
            visits,
            json!([{"date": day, "pageviews": 2, "bounce": false, "entry_page": "/y0", "exit_page": "/y1"}])
        );
    }
    // The same shape in a client's own SQL: a scan beside a join that finds nothing (on the cluster, rows
    // went missing in 1 of 3 runs of 3 reads).
    let union = format!(
        "SELECT url_path FROM events WHERE date = '{day}' \
         UNION ALL SELECT a.url_path FROM events a JOIN events b ON a.visitor_id = b.visitor_id \
         WHERE a.date = '1999-01-01' AND b.date = '1999-01-01'"
    );
    for _ in 0..5 {
        let (status, rows) = server.sql("read-a", &union).await;
        assert_eq!(status, 200, "{rows}");
        let mut paths: Vec<&str> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["url_path"].as_str().unwrap())
            .collect();
        paths.sort_unstable();
        assert_eq!(paths, ["/y0", "/y1"], "{union}");
    }
    // Another tenant's data is not reachable through the cluster either.
    let (status, body) = server
        .sql("read-a", "SELECT * FROM 'events/tenant=b/'")
        .await;
    assert_eq!(status, 400, "{body}");
    // Nothing raw was written: the lake, the server's data and logs, and the scheduler's and executor's
    // logs (which Ballista writes to since they log).
    let written: Vec<_> = crate::server::files_under(root.path())
        .into_iter()
        .chain(crate::server::files_under(&server.data_dir))
        .collect();
    assert!(written.iter().any(|p| p.ends_with("executor.log")));
    for path in written {
        let bytes = std::fs::read(&path).unwrap();
        for raw in [
            "198.51.100.9",
            "198.51.100.10",
            "ballista-person@example.com",
        ] {
            assert!(
                !bytes.windows(raw.len()).any(|w| w == raw.as_bytes()),
                "{raw} in {}",
                path.display()
            );
        }
    }
}
