//! What BI tools and notebooks need of the Postgres door beyond plain SQL, with real clients: the
//! catalogue psql reads for `\dt` and `\d events` (and `version()`, `current_database()`,
//! `information_schema`), the canned reports as functions with k applied (also for a `reports`-scoped key,
//! which reaches nothing else), TLS with the server's certificate (required once there is one), and idle
//! connections closed; and the PostgreSQL JDBC driver (what DBeaver and Metabase connect with) listing
//! tables and columns from its `DatabaseMetaData`.

use serde_json::{Value, json};

use crate::postgres::psql;
use crate::server::{Server, free_port, two_tenant_config};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";

/// psql with a connection string (`sslmode`, ...): (exit success, stdout, stderr).
fn psql_with(conninfo: &str, password: &str, sql: &str) -> (bool, String, String) {
    let out = std::process::Command::new("psql")
        .args([
            conninfo,
            "-X",
            "-A",
            "-t",
            "-F",
            "|",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(["-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql (apt-get install postgresql-client; .ci/run does)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Tenant a with k = 3 and a reports-only key; b as usual.
fn config(extra: &str) -> String {
    two_tenant_config(extra).replacen(
        "read_key = \"read-a\"",
        "read_key = \"read-a\"\nreports_key = \"reports-a\"\n[tenant.privacy]\nk_threshold = 3",
        1,
    )
}

/// Four visitors on /popular, one on /rare, for tenant a; one page view for b.
async fn ingest(server: &Server) {
    for n in 0..5 {
        let path = if n < 4 { "popular" } else { "rare" };
        let (s, b) = server
            .post_events(
                "ingest-a",
                UA,
                &format!("198.51.100.{}", 20 + n),
                "application/json",
                json!({"kind": "pageview", "url": format!("https://a.example/{path}")}).to_string(),
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
            json!({"kind": "pageview", "url": "https://b.example/secret-b"}).to_string(),
        )
        .await;
    assert_eq!(s, 202);
    server.wait_for_count("read-a", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_and_describes_events_and_calls_the_reports() {
    let port = free_port();
    let server = Server::start(&config(&format!(
        "[postgres]\nlisten = \"127.0.0.1:{port}\"\n[query]\ntimeout = \"2s\"\n"
    )));
    ingest(&server).await;
    // psql's own catalogue queries: \dt lists the one table, \d describes its columns.
    let (ok, out, err) = blocking(move || psql(port, "a", "read-a", "\\dt")).await;
    assert!(ok, "{err}");
    // The session's three tables: the events, the daily rollups that outlive them, and the visits.
    let tables: Vec<&str> = out.lines().collect();
    assert_eq!(tables.len(), 3, "{out}");
    assert!(tables[0].starts_with("public|events|table|"), "{out}");
    assert!(tables[1].starts_with("public|rollups|table|"), "{out}");
    assert!(tables[2].starts_with("public|visits|"), "{out}");
    let (ok, out, err) = blocking(move || psql(port, "a", "read-a", "\\d visits")).await;
    assert!(ok, "{err}");
    for column in ["visitor_id|bigint", "entry_page|text", "bounce|boolean"] {
        assert!(
            out.lines().any(|l| l.starts_with(column)),
            "{column} in\n{out}"
        );
    }
    let (ok, out, err) =
        blocking(move || psql(port, "a", "read-a", "SELECT SUM(events) > 0 FROM visits")).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "t", "visits computed from the events");
    let (ok, out, err) = blocking(move || psql(port, "a", "read-a", "\\d events")).await;
    assert!(ok, "{err}");
    for column in [
        "kind|text",
        "ts|timestamp with time zone",
        "visitor_id|bigint",
        "is_bot|boolean",
        "stack|text[]",
        "url_path|text",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(column)),
            "{column} in\n{out}"
        );
    }
    // What tools ask on connect.
    let (ok, out, err) = blocking(move || {
        psql(
            port,
            "b",
            "read-b",
            "SELECT version(), current_database(), current_schema()",
        )
    })
    .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("PostgreSQL 16.6 (Tacet "), "{out}");
    assert!(out.trim_end().ends_with("|tacet|public"), "{out}");
    let (ok, out, err) = blocking(move || {
        psql(
            port,
            "b",
            "read-b",
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 2",
        )
    })
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, "public|events\npublic|rollups\npublic|visits\n");
    let (ok, out, err) = blocking(move || {
        psql(
            port,
            "b",
            "read-b",
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_name = 'events' AND column_name IN ('kind', 'ts') ORDER BY column_name",
        )
    })
    .await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    // The catalogue names columns, never rows: b's catalogue holds nothing of a's and vice versa.
    let (ok, out, _) = blocking(move || {
        psql(
            port,
            "a",
            "read-a",
            "SELECT COUNT(*) FROM pg_catalog.pg_class WHERE relname LIKE '%secret%'",
        )
    })
    .await;
    assert!(ok);
    assert_eq!(out, "0\n");

    // The canned reports as functions: the HTTP API's rows, k applied (/rare has 1 visitor < 3).
    let http: Value = reqwest::Client::new()
        .get(format!("{}/v1/reports/pages", server.base))
        .bearer_auth("reports-a")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        http,
        json!([{"page": "/popular", "visitors": 4, "pageviews": 4}])
    );
    let call = "SELECT page, visitors, pageviews FROM report_pages() ORDER BY page";
    for key in ["read-a", "reports-a"] {
        let (ok, out, err) = blocking(move || psql(port, "a", key, call)).await;
        assert!(ok, "{key}: {err}");
        assert_eq!(out, "/popular|4|4\n", "{key}");
    }
    // The range by position, the rest by name, and SQL over the rows.
    let today = chrono::Utc::now().date_naive();
    let sql = format!(
        "SELECT SUM(visitors) FROM report_pages('{today}', '{today}', \"limit\" => 10) AS p WHERE p.page LIKE '/pop%'"
    );
    let (ok, out, err) = blocking(move || psql(port, "a", "reports-a", &sql)).await;
    assert!(ok, "{err}");
    assert_eq!(out, "4\n");
    // A reports-only key reaches nothing else, not even through a join; bad calls say what is wrong.
    for (key, sql, why) in [
        (
            "reports-a",
            "SELECT * FROM report_pages() p JOIN events e ON e.url_path = p.page",
            "canned reports only, not events",
        ),
        ("reports-a", "SELECT * FROM events", "canned reports only"),
        (
            "read-a",
            "SELECT * FROM report_nonsense()",
            "report_nonsense",
        ),
        (
            "read-a",
            "SELECT * FROM report_pages('2026-13-01', '2026-11-30')",
            "2026-13-01",
        ),
        ("read-a", "SELECT * FROM report_pages(now())", "constant"),
    ] {
        let (ok, _, err) = blocking(move || psql(port, "a", key, sql)).await;
        assert!(!ok && err.contains(why), "{key} {sql}: {err}");
    }
    // A runaway query is stopped at the query timeout, with the reason.
    let runaway = "SELECT COUNT(*) FROM (SELECT * FROM generate_series(1, 100000)) a, \
                   (SELECT * FROM generate_series(1, 100000)) b";
    let (ok, _, err) = blocking(move || psql(port, "a", "read-a", runaway)).await;
    assert!(!ok && err.contains("ran longer than its limit"), "{err}");
    let (ok, out, _) = blocking(move || psql(port, "a", "read-a", "SELECT 1")).await;
    assert!(ok && out == "1\n", "still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_every_connection_uses_tls_and_idle_ones_are_closed() {
    let certs = tempfile::tempdir().unwrap();
    let (crt, key) = crate::security::certificate(certs.path(), "pg");
    let port = free_port();
    let server = Server::start(&config(&format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n[postgres]\nlisten = \"127.0.0.1:{port}\"\nidle_timeout = \"1s\"\n",
        crt.display().to_string(),
        key.display().to_string()
    )));
    // TLS with the server's own certificate, checked by the client (the HTTP door is HTTPS now, so
    // nothing is ingested here: the query reads the empty lake).
    let conninfo = format!(
        "host=localhost port={port} user=a dbname=tacet sslmode=verify-full sslrootcert={}",
        crt.display()
    );
    let (ok, out, err) = blocking(move || {
        psql_with(
            &conninfo,
            "read-a",
            "SELECT COUNT(*), 41 + 1 FROM events WHERE kind = 'pageview'",
        )
    })
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, "0|42\n");
    // Without TLS the password is never asked for.
    let conninfo = format!("host=127.0.0.1 port={port} user=a dbname=tacet sslmode=disable");
    let (ok, _, err) = blocking(move || psql_with(&conninfo, "read-a", "SELECT 1")).await;
    assert!(!ok && err.contains("sslmode=require"), "{err}");

    // A connection that says nothing for longer than idle_timeout is closed; one that works is not.
    let script = r#"
import sys, time, psycopg
port = int(sys.argv[1])
conn = psycopg.connect(host="localhost", port=port, user="a", password="read-a", dbname="tacet",
                       sslmode="require", autocommit=True)
for _ in range(4):
    conn.execute("SELECT 1").fetchone()
    time.sleep(0.5)
print("busy ok")
time.sleep(2.5)
try:
    conn.execute("SELECT 1").fetchone()
    print("idle still open")
except psycopg.OperationalError:
    print("idle closed")
"#;
    let out = blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", script, &port.to_string()])
            .output()
            .unwrap()
    })
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "busy ok\nidle closed\n"
    );
    // The server says why it closed it.
    let stopped = server.stop();
    let closed: usize = crate::server::files_under(&stopped.logs)
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .matches("postgres connection closed: idle")
                .count()
        })
        .sum();
    assert_eq!(closed, 1);
}

/// What DBeaver and Metabase do on connect, through the same driver they use (Debian's
/// `libpostgresql-jdbc-java`, which `.ci/run` installs): the product version, `getTables`, `getColumns`, a
/// prepared statement with a parameter, a report function.
const JDBC_PROBE: &str = r#"import java.sql.*;

public class Probe {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/tacet";
        try (Connection conn = DriverManager.getConnection(url, args[1], args[2])) {
            DatabaseMetaData md = conn.getMetaData();
            System.out.println("product=" + md.getDatabaseProductName() + " " + md.getDatabaseProductVersion());
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) System.out.println("table=" + rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME"));
            }
            try (ResultSet rs = md.getColumns(null, "public", "events", "%")) {
                while (rs.next()) System.out.println("column=" + rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME"));
            }
            try (PreparedStatement ps = conn.prepareStatement("SELECT COUNT(*) FROM events WHERE kind = ?")) {
                ps.setString(1, "pageview");
                try (ResultSet rs = ps.executeQuery()) { rs.next(); System.out.println("count=" + rs.getLong(1)); }
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT page, visitors FROM report_pages() ORDER BY page")) {
                while (rs.next()) System.out.println("report=" + rs.getString(1) + ":" + rs.getLong(2));
            }
        }
    }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jdbc_driver_lists_tables_and_columns_as_bi_tools_do() {
    let port = free_port();
    let server = Server::start(&config(&format!(
        "[postgres]\nlisten = \"127.0.0.1:{port}\"\n"
    )));
    ingest(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("Probe.java");
    std::fs::write(&probe, JDBC_PROBE).unwrap();
    let out = blocking(move || {
        std::process::Command::new("java")
            .args(["-cp", "/usr/share/java/postgresql.jar"])
            .arg(&probe)
            .args([&port.to_string(), "a", "read-a"])
            .output()
            .expect(
                "java (apt-get install default-jre-headless libpostgresql-jdbc-java; .ci/run does)",
            )
    })
    .await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("product=PostgreSQL 16.6"), "{text}");
    assert_eq!(lines[1..3], ["table=public.events", "table=public.rollups"]);
    for column in [
        "column=ts:timestamptz",
        "column=visitor_id:int8",
        "column=is_bot:bool",
        "column=url_path:text",
        "column=stack:_text",
        "column=kind:text",
    ] {
        assert!(lines.contains(&column), "{column} in\n{text}");
    }
    // Tenant a's five page views; the report with k = 3 leaves /rare (1 visitor) out.
    assert!(lines.contains(&"count=5"), "{text}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("report="))
            .collect::<Vec<_>>(),
        [&"report=/popular:4"]
    );
}
