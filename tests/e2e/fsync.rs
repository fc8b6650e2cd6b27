//! The durable acknowledgement, seen from outside: the real server under `strace` (Debian's package,
//! which `.ci/run` installs) calls fdatasync on its write-ahead log for every request it acknowledges one
//! at a time. A kill -9 keeps the page cache, so no crash test notices a missing sync; this one does.
//! `TACET_SKIP_STRACE=1` skips it where ptrace is not allowed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::Server;
use crate::skeleton::FIREFOX_LINUX;

const CONFIG: &str = r#"
trusted_proxies = ["127.0.0.1/32"]
[ingest]
flush_interval = "60s"

[[tenant]]
id = "a"
ingest_key = "ingest-a"
read_key = "read-a"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_request_was_fdatasynced_to_the_log() {
    if std::env::var_os("TACET_SKIP_STRACE").is_some() {
        eprintln!("TACET_SKIP_STRACE is set: skipping the fdatasync check");
        return;
    }
    let server = Server::start(CONFIG);
    let post = |i: usize| {
        let server = &server;
        async move {
            server
                .post_events(
                    "ingest-a",
                    FIREFOX_LINUX,
                    "198.51.100.9",
                    "application/json",
                    format!(r#"{{"kind":"pageview","url":"https://a.example/{i}"}}"#),
                )
                .await
                .0
        }
    };
    // The first request makes the day's keys (their own syncs); the count starts after it.
    assert_eq!(post(0).await, 202);
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut strace = Command::new("strace")
        .args(["-f", "-y", "-e", "trace=fdatasync", "-o"])
        .arg(out.path())
        .args(["-p", &server.pid().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("this test needs strace (`apt-get install strace`; .ci/run does), or TACET_SKIP_STRACE=1: {e}")
        });
    // Attached once strace has written its first line about the process (or a second has passed).
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::metadata(out.path()).map_or(0, |m| m.len()) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acknowledged = 5;
    for i in 1..=acknowledged {
        assert_eq!(post(i).await, 202);
    }
    Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status()
        .unwrap();
    let status = strace.wait().unwrap();
    let trace = std::fs::read_to_string(out.path()).unwrap();
    let synced = trace
        .lines()
        .filter(|l| l.contains("fdatasync(") && l.contains("/wal/") && l.contains("= 0"))
        .count();
    assert!(
        synced >= acknowledged,
        "{synced} fdatasyncs of the write-ahead log for {acknowledged} acknowledged requests (strace {status}):\n{trace}"
    );
    drop(server);
}
