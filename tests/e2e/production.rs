//! A first day in production: what the server refuses to start with, and what its readiness says.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::s3::{AWS_ENV, Moto};
use crate::server::{Server, tacet_with_env};

/// Runs `tacet serve` with `config` (it must refuse and exit) and returns its standard error and whether it
/// made its data directory.
pub fn refused_after(config: &str, env: &[(&str, &str)]) -> (String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tacet.toml");
    std::fs::write(&path, config).unwrap();
    let data = dir.path().join("data");
    let out = tacet_with_env(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            path.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        env,
    );
    assert!(!out.status.success(), "it started with:\n{config}");
    (
        String::from_utf8_lossy(&out.stderr).into_owned(),
        data.exists(),
    )
}

/// [`refused_after`] for what is refused before anything is written.
fn refused(config: &str, env: &[(&str, &str)]) -> String {
    let (err, wrote) = refused_after(config, env);
    assert!(!wrote, "it made its data directory before refusing:\n{err}");
    err
}

#[test]
fn weak_and_placeholder_keys_stop_the_server_by_name() {
    let config = r#"
[[tenant]]
id = "acme"
ingest_key = "replace-me"
read_key = "read-acme"
admin_key_env = "ACME_ADMIN_KEY"
[[tenant]]
id = "shop"
ingest_key = "shop-public-ingest"
read_key = "aaaaaaaabbbbbbbbaaaaaaaabbbbbbbb"
reports_key = "9f2c41d87e0b5a36c1f4e8d2b7a90c5e"
"#;
    let err = refused(config, &[("ACME_ADMIN_KEY", "changeme-please-now")]);
    for expected in [
        "tenant \"acme\": ingest_key looks like a placeholder (it contains \"replace\")",
        "tenant \"acme\": read_key is 9 characters; secret keys need at least 16",
        "tenant \"acme\": admin_key (from ACME_ADMIN_KEY) looks like a placeholder (it contains \"changeme\")",
        "tenant \"shop\": read_key uses only 2 different characters",
        "openssl rand -hex 16",
        "insecure_demo = true",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    // The good keys are not named.
    assert!(
        !err.contains("reports_key") && !err.contains("shop-public-ingest"),
        "{err}"
    );

    // A master key copied from an example: every byte the same.
    let strong = "[[tenant]]\nid = \"acme\"\ningest_key = \"acme-ingest\"\nread_key = \"4f0d9a7c2e81b356d4c9e07a1b2f3c8d\"\n";
    let zeros = "0".repeat(64);
    let err = refused(strong, &[("TACET_MASTER_KEY", &zeros)]);
    assert!(
        err.contains("TACET_MASTER_KEY: the master key has only 1 different byte value(s)")
            && err.contains("openssl rand -hex 32"),
        "{err}"
    );
}

/// A TCP proxy in front of the S3 server that can be cut off: connections refused and open ones dropped.
struct Switch {
    port: u16,
    up: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Switch {
    async fn to(target: &str) -> Switch {
        let target: std::net::SocketAddr = target.trim_start_matches("http://").parse().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (flag, cuts) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is reset
                }
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Switch { port, up, cut }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn readyz(server: &Server) -> (u16, String) {
    let resp = server
        .http
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Polls `/readyz` until it answers `status`; its body.
async fn readyz_becomes(server: &Server, status: u16) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (got, body) = readyz(server).await;
        if got == status {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz still answers {got} ({body}), not {status}, after 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn s3_config(endpoint: &str, bucket: &str) -> String {
    format!(
        r#"
insecure_demo = true
[storage]
backend = "s3"
bucket = "{bucket}"
endpoint = "{endpoint}"
allow_http = true
retry_timeout = "1s"
[ingest]
flush_interval = "200ms"
[[tenant]]
id = "a"
ingest_key = "ingest-a"
read_key = "read-a"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_lake_and_a_missing_bucket_stops_the_start() {
    let Some(moto) = Moto::start() else {
        return;
    };
    moto.create_bucket("lake").await;

    // A bucket that does not exist: refused at start, saying what to check.
    let (err, _) = refused_after(&s3_config(&moto.endpoint, "no-such-bucket"), &AWS_ENV);
    assert!(
        err.contains("cannot write to the lake at s3://no-such-bucket/")
            && err.contains("check that the bucket exists"),
        "{err}"
    );

    let switch = Switch::to(&moto.endpoint).await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let server = Server::start_in_with_env(
        &s3_config(&switch.endpoint(), "lake"),
        &root,
        "logs",
        tmp,
        &AWS_ENV,
    );
    assert_eq!(readyz(&server).await, (200, "ready\n".to_owned()));
    let page = |path: &str| format!(r#"{{"kind":"pageview","url":"https://a.example{path}"}}"#);
    let post = |body: String| async {
        server
            .post_events("ingest-a", UA, "198.51.100.7", "application/json", body)
            .await
            .0
    };
    assert_eq!(post(format!("[{},{}]", page("/1"), page("/2"))).await, 202);
    server.wait_for_count("read-a", 2).await;

    // The store goes away: events are still taken (into the log), and readiness says why it fails.
    switch.down();
    assert_eq!(post(page("/3")).await, 202);
    let body = readyz_becomes(&server, 503).await;
    assert!(
        body.contains("not ready: the lake cannot be written")
            && body.contains("the object store cannot be reached")
            && body.contains("events wait in the write-ahead log"),
        "{body}\n{}",
        std::fs::read_to_string(server.logs.join("stderr.log"))
            .unwrap()
            .lines()
            .filter(|l| l.contains("failed"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !body.contains("tenant=") && !body.contains("127.0.0.1"),
        "{body}"
    );

    // It comes back: the pending flush goes through, readiness returns, nothing was lost.
    switch.up();
    assert_eq!(readyz_becomes(&server, 200).await, "ready\n");
    server.wait_for_count("read-a", 3).await;
    let parquet = moto
        .keys("lake")
        .await
        .into_iter()
        .filter(|k| k.starts_with("events/tenant=a/") && k.ends_with(".parquet"))
        .count();
    assert!(parquet >= 1, "{parquet} files");
    server.stop();
}

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
