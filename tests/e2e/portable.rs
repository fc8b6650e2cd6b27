//! The lake stays readable by engines we did not write: DuckDB (PyPI's `duckdb`, which `.ci/run` installs)
//! reads an unencrypted lake's Parquet files with hive partitioning and finds the same rows and counts as
//! Tacet's own SQL and reports.

use serde_json::{Value, json};

use crate::server::{Server, two_tenant_config};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";

/// Runs `sql` in DuckDB (Python) and answers its rows as JSON objects.
fn duckdb(sql: &str) -> Value {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import duckdb, json, sys\n\
             con = duckdb.connect()\n\
             cur = con.execute(sys.argv[1])\n\
             cols = [d[0] for d in cur.description]\n\
             print(json.dumps([dict(zip(cols, r)) for r in cur.fetchall()], default=str))",
            sql,
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "DuckDB failed (is it installed? `python3 -m pip install duckdb`; .ci/run does):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_reads_the_lake_and_finds_what_tacet_finds() {
    let server = Server::start(&two_tenant_config(""));
    // Tenant a: seven visitors on / and /pricing, two sign-ups, one crash; tenant b: three page views.
    for n in 0..7 {
        let mut events = vec![
            json!({"kind": "pageview", "url": "https://a.example/"}),
            json!({"kind": "pageview", "url": "https://a.example/pricing"}),
        ];
        if n < 2 {
            events.push(json!({"kind": "event", "name": "signup", "url": "https://a.example/pricing", "props": {"plan": "pro"}}));
        }
        if n == 0 {
            events.push(
                json!({"kind": "crash", "url": "https://a.example/", "error_type": "TypeError",
                "message": "x is undefined", "stack": ["at f (https://a.example/app.js:1:1)"]}),
            );
        }
        let (s, b) = server
            .post_events(
                "ingest-a",
                UA,
                &format!("198.51.100.{}", 10 + n),
                "application/json",
                Value::Array(events).to_string(),
            )
            .await;
        assert_eq!(s, 202, "{b}");
    }
    for n in 0..3 {
        let (s, _) = server
            .post_events(
                "ingest-b",
                UA,
                &format!("203.0.113.{}", 10 + n),
                "application/json",
                json!({"kind": "pageview", "url": "https://shop-b.example/"}).to_string(),
            )
            .await;
        assert_eq!(s, 202);
    }
    server.wait_for_count("read-a", 17).await;
    server.wait_for_count("read-b", 3).await;
    let by_kind = "SELECT kind, COUNT(*) AS n, COUNT(DISTINCT visitor_id) AS visitors, \
                   COUNT(DISTINCT url_path) AS paths FROM events GROUP BY kind ORDER BY kind";
    let (_, tacet) = server.sql("read-a", by_kind).await;
    let daily: Value = server
        .http
        .get(format!("{}/v1/reports/daily", server.base))
        .bearer_auth("read-a")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Stopped: everything is in Parquet files.
    let stopped = server.stop();
    let lake = stopped.data_dir.join("lake/events");
    let files = |tenant: &str| {
        format!(
            "read_parquet('{}/tenant={tenant}/**/*.parquet', hive_partitioning = true)",
            lake.display()
        )
    };
    // The same rows, by kind, as Tacet's SQL answered.
    let duck = duckdb(&by_kind.replace("FROM events", &format!("FROM {}", files("a"))));
    assert_eq!(duck, tacet);
    assert_eq!(
        duck,
        json!([
            {"kind": "crash", "n": 1, "visitors": 1, "paths": 1},
            {"kind": "event", "n": 2, "visitors": 2, "paths": 1},
            {"kind": "pageview", "n": 14, "visitors": 7, "paths": 2},
        ])
    );
    // The daily report's numbers from DuckDB, the partition columns (tenant, kind, date) read from the
    // paths; the other tenant's folder holds only its own rows.
    let day = daily[0]["day"].as_str().unwrap().to_owned();
    let duck_daily = duckdb(&format!(
        "SELECT CAST(date AS VARCHAR) AS day, COUNT(DISTINCT visitor_id) AS visitors, \
         COUNT(*) FILTER (WHERE kind = 'pageview') AS pageviews, \
         COUNT(*) FILTER (WHERE kind = 'event') AS events, \
         COUNT(*) FILTER (WHERE kind = 'crash') AS crashes, \
         COUNT(DISTINCT tenant) AS tenants FROM {} GROUP BY 1",
        files("a")
    ));
    assert_eq!(
        duck_daily,
        json!([{"day": day, "visitors": daily[0]["visitors"], "pageviews": daily[0]["pageviews"],
            "events": daily[0]["events"], "crashes": daily[0]["crashes"], "tenants": 1}])
    );
    let b = duckdb(&format!(
        "SELECT COUNT(*) AS n, MIN(tenant) AS tenant FROM {}",
        files("b")
    ));
    assert_eq!(b, json!([{"n": 3, "tenant": "b"}]));
}
