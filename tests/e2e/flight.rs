//! Arrow Flight SQL with a real client, ADBC's Flight SQL driver (PyPI `adbc-driver-flightsql` and
//! `pyarrow`, which `.ci/run` installs): the read key as a bearer token or through the handshake, the same
//! rows as `POST /v1/sql` as Arrow, tenants apart, refusals with their reason, and TLS with the server's
//! certificate.

use serde_json::{Value, json};

use crate::server::{Server, free_port, two_tenant_config};

/// Runs `script` with python3, `args` after it; its stdout as JSON.
fn python(script: &str, args: &[String]) -> Value {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3 -m pip install adbc-driver-flightsql pyarrow (.ci/run does):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

const CLIENT: &str = r#"
import json, sys
import adbc_driver_flightsql.dbapi as flight_sql

uri, auth, extra = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])

def connect(auth):
    return flight_sql.connect(uri, db_kwargs={**auth, **extra}, autocommit=True)

def run(auth, sql):
    try:
        with connect(auth) as conn, conn.cursor() as cur:
            cur.execute(sql)
            table = cur.fetch_arrow_table()
            return {"types": [str(f.type) for f in table.schema], "rows": table.to_pylist()}
    except Exception as e:
        return {"error": str(e)}

out = {}
out["kinds"] = run(auth, "SELECT kind, COUNT(*) AS n, MIN(url_path) AS path FROM events GROUP BY kind ORDER BY kind")
out["types"] = run(auth, "SELECT ts, visitor_id, is_bot, props FROM events WHERE kind = 'event' LIMIT 1").get("types")
out["other_tenant"] = run({"adbc.flight.sql.authorization_header": "Bearer read-b"}, "SELECT COUNT(*) AS n FROM events")
out["handshake"] = run({"username": "a", "password": "read-a"}, "SELECT COUNT(*) AS n FROM events")
out["wrong_key"] = run({"adbc.flight.sql.authorization_header": "Bearer nonsense"}, "SELECT 1")
out["wrong_user"] = run({"username": "b", "password": "read-a"}, "SELECT 1")
out["ddl"] = run(auth, "CREATE TABLE x (a INT)")
out["file"] = run(auth, "SELECT * FROM read_parquet('/etc/passwd')")
if len(sys.argv) > 4:
    out["runaway"] = run(auth, "SELECT COUNT(*) FROM (SELECT * FROM generate_series(1, 100000)) a, "
                               "(SELECT * FROM generate_series(1, 100000)) b")
out["after"] = run(auth, "SELECT 41 + 1 AS answer")
print(json.dumps(out, default=str))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_reads_arrow_with_the_read_key_and_nothing_of_another_tenant() {
    let port = free_port();
    let server = Server::start(&two_tenant_config(&format!(
        "[flight_sql]\nlisten = \"127.0.0.1:{port}\"\n[query]\ntimeout = \"2s\"\n"
    )));
    crate::postgres::ingest_sample(&server).await;
    let args = vec![
        format!("grpc://127.0.0.1:{port}"),
        json!({"adbc.flight.sql.authorization_header": "Bearer read-a"}).to_string(),
        "{}".to_owned(),
        "runaway".to_owned(),
    ];
    let out = tokio::task::spawn_blocking(move || python(CLIENT, &args))
        .await
        .unwrap();
    // The same rows as the HTTP door, as Arrow with the lake's own types.
    let (_, http) = server
        .sql(
            "read-a",
            "SELECT kind, COUNT(*) AS n, MIN(url_path) AS path FROM events GROUP BY kind ORDER BY kind",
        )
        .await;
    assert_eq!(out["kinds"]["rows"], http, "{out}");
    assert_eq!(out["kinds"]["types"], json!(["string", "int64", "string"]));
    assert_eq!(
        out["types"][0].as_str().unwrap(),
        "timestamp[ms, tz=UTC]",
        "{out}"
    );
    assert_eq!(out["types"][2], "bool");
    assert_eq!(out["other_tenant"]["rows"], json!([{"n": 1}]));
    assert_eq!(out["handshake"]["rows"], json!([{"n": 6}]), "{out}");
    for (case, why) in [
        ("wrong_key", "UNAUTHENTICATED: [FlightSQL] unknown read key"),
        (
            "wrong_user",
            "UNAUTHENTICATED: [FlightSQL] that read key is not tenant \"b\"'s",
        ),
        ("ddl", "only read-only queries are allowed"),
        ("file", "table function 'read_parquet' not found"),
        (
            "runaway",
            "the query ran longer than its limit of 2s (query.timeout); narrow the date range or aggregate more (ResourceExhausted",
        ),
    ] {
        let error = out[case]["error"].as_str().unwrap_or_default();
        assert!(error.contains(why), "{case}: {out}");
    }
    assert_eq!(out["after"]["rows"], json!([{"answer": 42}]));
    server
        .assert_metrics(&[
            "tacet_flight_queries_total{tenant=\"a\",outcome=\"ok\"}",
            "tacet_flight_queries_total{tenant=\"a\",outcome=\"error\"}",
        ])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_speaks_tls_with_the_servers_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (crt, key) = crate::security::certificate(certs.path(), "flight");
    let port = free_port();
    let _server = Server::start(&two_tenant_config(&format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n[flight_sql]\nlisten = \"127.0.0.1:{port}\"\n",
        crt.display().to_string(),
        key.display().to_string()
    )));
    crate::server::wait_for_port(port, "flight sql");
    let pem = std::fs::read_to_string(&crt).unwrap();
    let args = vec![
        format!("grpc+tls://localhost:{port}"),
        json!({"adbc.flight.sql.authorization_header": "Bearer read-a"}).to_string(),
        json!({"adbc.flight.sql.client_option.tls_root_certs": pem}).to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || python(CLIENT, &args))
        .await
        .unwrap();
    assert_eq!(out["after"]["rows"], json!([{"answer": 42}]), "{out}");
    assert_eq!(out["other_tenant"]["rows"], json!([{"n": 0}]), "{out}");
    // Plain gRPC to the TLS listener gets nowhere.
    let args = vec![
        format!("grpc://127.0.0.1:{port}"),
        json!({"adbc.flight.sql.authorization_header": "Bearer read-a"}).to_string(),
        "{}".to_owned(),
    ];
    let out = tokio::task::spawn_blocking(move || python(CLIENT, &args))
        .await
        .unwrap();
    assert!(out["after"]["error"].is_string(), "{out}");
}
