//! SQL over the Postgres wire protocol with a real client, psql (Debian's `postgresql-client`, which
//! `.ci/run` installs): the user is the tenant, the password its read key; the same rows as `POST /v1/sql`;
//! tenants apart; a wrong key, a reports-only key's SQL, DDL and a file function each get a clear error and
//! the server keeps serving. The catalogue, report functions, TLS and idle connections: pgtools.rs.

use serde_json::json;

use crate::server::{Server, free_port, two_tenant_config};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";

/// Runs psql against `port` as `user` with `password`: (exit success, stdout, stderr).
pub(crate) fn psql(port: u16, user: &str, password: &str, sql: &str) -> (bool, String, String) {
    let out = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            "tacet",
            "-X",
            "-A",
            "-t",
            "-F",
            "|",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .output()
        .expect("psql (apt-get install postgresql-client; .ci/run does)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Tenant a: three visitors, each a page view and a `signup` event with `{"plan": "pro"}`; tenant b: one
/// page view. Returns once a's six are queryable.
pub(crate) async fn ingest_sample(server: &Server) {
    for n in 0..3 {
        let (s, b) = server
            .post_events(
                "ingest-a",
                UA,
                &format!("198.51.100.{}", 10 + n),
                "application/json",
                json!([{"kind": "pageview", "url": "https://a.example/?q=1"},
                    {"kind": "event", "name": "signup", "url": "https://a.example/", "props": {"plan": "pro"}}])
                .to_string(),
            )
            .await;
        assert_eq!(s, 202, "{b}");
    }
    let (s, _) = server
        .post_events(
            "ingest-b",
            UA,
            "203.0.113.9",
            "application/json",
            json!({"kind": "pageview", "url": "https://shop-b.example/"}).to_string(),
        )
        .await;
    assert_eq!(s, 202);
    server.wait_for_count("read-a", 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_reads_a_tenants_events_with_its_read_key_and_nothing_else() {
    let port = free_port();
    let config = two_tenant_config(&format!("[postgres]\nlisten = \"127.0.0.1:{port}\"\n"))
        .replace(
            "read_key = \"read-a\"",
            "read_key = \"read-a\"\nreports_key = \"reports-a\"",
        );
    let server = Server::start(&config);
    ingest_sample(&server).await;
    let sql =
        "SELECT kind, COUNT(*) AS n, MIN(url_path) AS path FROM events GROUP BY kind ORDER BY kind";
    let ps = tokio::task::spawn_blocking(move || psql(port, "a", "read-a", sql));
    let (ok, out, err) = ps.await.unwrap();
    assert!(ok, "{err}");
    // The same rows as the HTTP door.
    let (_, http) = server.sql("read-a", sql).await;
    assert_eq!(
        http,
        json!([{"kind": "event", "n": 3, "path": "/"}, {"kind": "pageview", "n": 3, "path": "/"}])
    );
    assert_eq!(out, "event|3|/\npageview|3|/\n");
    // Types as Postgres has them: a timestamp with time zone, the props map as JSON, a boolean.
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        psql(
            port,
            "a",
            "read-a",
            "SET client_encoding = 'UTF8'; SELECT pg_typeof(x) FROM (SELECT 1) t(x) LIMIT 0; \
             SELECT props, ts > '2000-01-01' AS recent, COUNT(*) OVER () AS n FROM events WHERE kind = 'event' LIMIT 1",
        )
    })
    .await
    .unwrap();
    // pg_typeof is no DataFusion function: an error that names it, and nothing else ran.
    assert!(!ok && err.contains("pg_typeof"), "{out}{err}");
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        psql(
            port,
            "a",
            "read-a",
            "SELECT props, ts > TIMESTAMP '2000-01-01 00:00:00' AS recent FROM events WHERE kind = 'event' LIMIT 1",
        )
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, "{\"plan\":\"pro\"}|t\n");
    // Tenant b sees its one event, never a's.
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        psql(port, "b", "read-b", "SELECT COUNT(*) FROM events")
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, "1\n");
    // Wrong keys, another tenant's key, a reports-only key: the client's usual message, with the reason.
    for (user, password, why) in [
        ("a", "nonsense", "not a read key of this tenant"),
        ("b", "read-a", "another tenant's"),
        ("a", "ingest-a", "not a read key"),
    ] {
        let (ok, _, err) =
            tokio::task::spawn_blocking(move || psql(port, user, password, "SELECT 1"))
                .await
                .unwrap();
        assert!(!ok, "{user}/{password}");
        assert!(
            err.contains(&format!(
                "password authentication failed for user \"{user}\""
            )) && err.contains(why),
            "{user}/{password}: {err}"
        );
    }
    // A reports-only key logs in, and reaches the report functions only (tests/e2e/pgtools.rs).
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        psql(port, "a", "reports-a", "SELECT COUNT(*) FROM events")
    })
    .await
    .unwrap();
    assert!(!ok && err.contains("canned reports only"), "{err}");
    // Another database name is named.
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "a",
                "-d",
                "postgres",
                "-c",
                "SELECT 1",
            ])
            .env("PGPASSWORD", "read-a")
            .output()
            .map(|o| {
                (
                    o.status.success(),
                    String::new(),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                )
            })
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        !ok && err.contains("connect to database \"tacet\""),
        "{err}"
    );
    // Read-only, and no files: refused with the reason, as over HTTP.
    for statement in [
        "CREATE TABLE x (a INT)",
        "INSERT INTO events (kind) VALUES ('pageview')",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "COPY events TO '/tmp/out.csv'",
    ] {
        let (ok, _, err) =
            tokio::task::spawn_blocking(move || psql(port, "a", "read-a", statement))
                .await
                .unwrap();
        assert!(!ok && err.contains("ERROR"), "{statement}: {err}");
    }
    // And the server still serves both doors.
    let (ok, out, _) =
        tokio::task::spawn_blocking(move || psql(port, "a", "read-a", "SELECT 41 + 1"))
            .await
            .unwrap();
    assert!(ok);
    assert_eq!(out, "42\n");
    server.wait_for_count("read-a", 6).await;
    // No password sent (the keys, right or wrong) reached a log.
    let stopped = server.stop();
    let mut logins = 0;
    for file in crate::server::files_under(&stopped.logs) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        logins += text.matches("postgres login").count();
        for secret in ["read-a", "reports-a", "nonsense"] {
            assert!(
                !text.contains(secret),
                "{} holds {secret:?}",
                file.display()
            );
        }
    }
    assert!(logins > 5, "the logins and refusals are logged: {logins}");
}

#[test]
fn a_postgres_listener_off_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tacet.toml");
    std::fs::write(
        &config,
        format!(
            "insecure_demo = true\n{}",
            two_tenant_config("[postgres]\nlisten = \"0.0.0.0:0\"\n")
        ),
    )
    .unwrap();
    let out = crate::server::tacet_with_env(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
        ],
        &[("E2E_READ_KEY_B", "read-b")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listens on loopback only"), "{err}");
}

/// psycopg (PyPI; `.ci/run` installs it) speaks the extended protocol: Parse, Bind with parameters,
/// Describe, Execute, in a transaction it opens itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_runs_parameterised_queries_over_the_extended_protocol() {
    let port = free_port();
    let server = Server::start(&two_tenant_config(&format!(
        "[postgres]\nlisten = \"127.0.0.1:{port}\"\n"
    )));
    for n in 0..4 {
        let (s, _) = server
            .post_events(
                "ingest-a",
                UA,
                &format!("198.51.100.{}", 10 + n),
                "application/json",
                json!([{"kind": "pageview", "url": format!("https://a.example/p{}", n % 2)},
                    {"kind": "event", "name": "it's", "url": "https://a.example/", "props": {"plan": "pro"}}])
                .to_string(),
            )
            .await;
        assert_eq!(s, 202);
    }
    server.wait_for_count("read-a", 8).await;
    let script = r#"
import json, sys, psycopg
port = int(sys.argv[1])
out = {}
with psycopg.connect(host="127.0.0.1", port=port, user="a", password="read-a", dbname="tacet") as conn:
    cur = conn.execute(
        "SELECT url_path, COUNT(*) AS n FROM events WHERE kind = %s AND url_path <> %s GROUP BY url_path ORDER BY url_path",
        ("pageview", "/none"))
    out["columns"] = [d.name for d in cur.description]
    out["rows"] = cur.fetchall()
    # A quote in a parameter stays a value; a number parameter is a number.
    out["quoted"] = conn.execute("SELECT COUNT(*) FROM events WHERE name = %s", ("it's",)).fetchone()[0]
    out["injected"] = conn.execute("SELECT COUNT(*) FROM events WHERE name = %s", ("x' OR '1'='1",)).fetchone()[0]
    out["backslash"] = conn.execute("SELECT COUNT(*) FROM events WHERE name = %s", ("x\\' OR '1'='1",)).fetchone()[0]
    out["limited"] = len(conn.execute("SELECT kind FROM events LIMIT %s", (3,)).fetchall())
    out["typed"] = [type(v).__name__ for v in conn.execute(
        "SELECT ts, props, COUNT(*) OVER () AS n FROM events WHERE kind = %s LIMIT 1", ("event",)).fetchone()]
    try:
        conn.execute("CREATE TABLE x (a INT)")
    except psycopg.Error as e:
        out["refused"] = e.sqlstate
print(json.dumps(out, default=str))
"#;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", script, &port.to_string()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "psycopg (python3 -m pip install 'psycopg[binary]'; .ci/run does):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["columns"], json!(["url_path", "n"]));
    assert_eq!(got["rows"], json!([["/p0", 2], ["/p1", 2]]));
    assert_eq!(got["quoted"], 4);
    // A parameter is a value, never SQL.
    assert_eq!(
        (&got["injected"], &got["backslash"]),
        (&json!(0), &json!(0))
    );
    assert_eq!(got["limited"], 3);
    assert_eq!(got["typed"], json!(["datetime", "dict", "int"]));
    assert_eq!(got["refused"], "42501");
    server.stop();
}

/// One tenant's tool cannot take every connection: past `max_connections_per_tenant` a login is refused
/// with the reason, another tenant still gets in, and a closed connection frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_limited_per_tenant() {
    let port = free_port();
    let server = Server::start(&two_tenant_config(&format!(
        "[postgres]\nlisten = \"127.0.0.1:{port}\"\nmax_connections_per_tenant = 1\n"
    )));
    // An open session of tenant a: psql reading statements from its standard input; its first answer
    // says it is in.
    let mut held = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "a",
            "-d",
            "tacet",
            "-X",
            "-A",
            "-t",
        ])
        .env("PGPASSWORD", "read-a")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("psql");
    {
        use std::io::{BufRead, Write};
        let stdin = held.stdin.as_mut().unwrap();
        stdin.write_all(b"SELECT 'held';\n").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(held.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "held\n");
    }
    let (ok, _, refused) =
        tokio::task::spawn_blocking(move || psql(port, "a", "read-a", "SELECT 1"))
            .await
            .unwrap();
    assert!(!ok, "a second session of a is refused");
    assert!(
        refused.contains("too many connections for tenant \"a\"") && refused.contains("at most 1"),
        "{refused}"
    );
    let (ok, out, err) = tokio::task::spawn_blocking(move || psql(port, "b", "read-b", "SELECT 7"))
        .await
        .unwrap();
    assert!(ok, "another tenant gets in: {err}");
    assert_eq!(out, "7\n");
    // Closing the held session frees its place.
    drop(held.stdin.take());
    held.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (ok, out, _) =
            tokio::task::spawn_blocking(move || psql(port, "a", "read-a", "SELECT 8"))
                .await
                .unwrap();
        if ok {
            assert_eq!(out, "8\n");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the place was never freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server
        .assert_metrics(&[
            "tacet_postgres_connections_total{tenant=\"a\"}",
            "tacet_postgres_queries_total",
        ])
        .await;
    server.stop();
}
