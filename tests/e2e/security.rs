//! Access keys through the real binary: created keys work at once on a running server, an expired or
//! revoked key is refused, roles are kept apart, and no file holds a key.

use std::time::{Duration, Instant};

use crate::server::{Server, files_under, tacet};

const CONFIG: &str = r#"
[[tenant]]
id = "a"
ingest_key = "ingest-a"
read_key = "config-read-a"

[[tenant]]
id = "b"
ingest_key = "ingest-b"
read_key = "config-read-b"
"#;

async fn status(server: &Server, key: &str, path: &str) -> (u16, String) {
    let req = if path == "/v1/sql" {
        server
            .http
            .post(format!("{}{path}", server.base))
            .body("SELECT COUNT(*) AS n FROM events")
    } else {
        server.http.get(format!("{}{path}", server.base))
    };
    let resp = req.bearer_auth(key).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Waits (the server re-reads the key file at most every two seconds) until `key` on `path` answers
/// `want`.
async fn eventually(server: &Server, key: &str, path: &str, want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (got, body) = status(server, key, path).await;
        if got == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} answered {got}, not {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn created_keys_work_expire_and_are_revoked_and_no_file_holds_one() {
    let server = Server::start(CONFIG);
    let config = server.config.to_str().unwrap().to_owned();
    let data = server.data_dir.to_str().unwrap().to_owned();
    let cli = |args: &[&str]| {
        let mut all = vec![
            "--config",
            config.as_str(),
            "--data-dir",
            data.as_str(),
            "tenant",
            "key",
        ];
        all.extend_from_slice(args);
        let out = tacet(&all);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let read = cli(&["create", "a", "--role", "read"]).trim().to_owned();
    let admin = cli(&["create", "a", "--role", "admin", "--expires-in", "10s"])
        .trim()
        .to_owned();
    assert!(
        read.starts_with("tk_read_") && admin.starts_with("tk_admin_"),
        "{read} {admin}"
    );

    // The running server accepts the new keys, each for its own role only.
    eventually(&server, &read, "/v1/sql", 200).await;
    // The read key opens a dashboard session (an admin key does not).
    let browser = crate::server::http_client(false);
    let login = |key: String| {
        browser
            .post(format!("{}/ui/login", server.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("key={key}"))
            .send()
    };
    assert_eq!(login(admin.clone()).await.unwrap().status(), 403);
    let resp = login(read.clone()).await.unwrap();
    assert_eq!(resp.status(), 303);
    let session = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let usage = || {
        browser
            .get(format!("{}/ui/usage", server.base))
            .header("cookie", session.as_str())
            .send()
    };
    assert_eq!(usage().await.unwrap().status(), 200);
    eventually(&server, &admin, "/v1/admin/audit", 200).await;
    let (code, body) = status(&server, &read, "/v1/admin/audit").await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("read key"), "{body}");
    let (code, _) = status(&server, &admin, "/v1/sql").await;
    assert_eq!(code, 403);
    // Configured keys still work; a key of tenant a is not one of tenant b's.
    assert_eq!(status(&server, "config-read-b", "/v1/sql").await.0, 200);
    assert_eq!(status(&server, "tk_read_0000", "/v1/sql").await.0, 401);

    // Expiry, then revocation.
    let body = eventually(&server, &admin, "/v1/admin/audit", 401).await;
    assert!(body.contains("expired"), "{body}");
    let listed = cli(&["list", "--tenant", "a"]);
    let id = listed
        .lines()
        .find(|l| l.contains(" read "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(
        listed.contains("expired") && listed.contains("active"),
        "{listed}"
    );
    assert!(
        !listed.contains(&read[8..]),
        "the list shows a key: {listed}"
    );
    cli(&["revoke", &id]);
    let body = eventually(&server, &read, "/v1/sql", 401).await;
    assert!(body.contains("revoked"), "{body}");
    // Revoking the key ended the session it opened: the dashboard sends the browser to log in again.
    let resp = usage().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert!(
        resp.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/ui/login")
    );

    // No file under the data directory holds either key (only keyed hashes); the audit log has the events.
    for path in files_under(&server.data_dir) {
        let bytes = std::fs::read(&path).unwrap();
        for key in [&read, &admin] {
            let secret = &key.as_bytes()[key.len() - 64..];
            assert!(
                !bytes.windows(64).any(|w| w == secret),
                "{} holds a key",
                path.display()
            );
        }
    }
    let audit = std::fs::read_to_string(server.data_dir.join("audit/audit.jsonl")).unwrap();
    assert!(audit.contains("access.created") && audit.contains("access.revoked"));
}

/// A self-signed certificate for localhost and 127.0.0.1 (openssl), written to `dir/<name>.{crt,key}`.
pub(crate) fn certificate(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(out.status.success(), "{out:?}");
    (crt, key)
}

/// `curl` over HTTPS trusting only `ca`: (exit code, response head and body).
fn curl(ca: &std::path::Path, url: &str, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-i", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(args)
        .arg(url)
        .output()
        .expect("curl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn beacons_over_https_with_hsts_and_a_renewed_certificate_is_loaded() {
    let certs = tempfile::tempdir().unwrap();
    let (crt, key) = certificate(certs.path(), "live");
    let config = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nreload_interval = \"200ms\"\n{CONFIG}",
        crt.display().to_string(),
        key.display().to_string()
    );
    let server = Server::start(&config);
    let https = server.base.replace("http://", "https://");
    let beacon = r#"{"kind":"pageview","url":"https://a.example/tls"}"#;
    let post = |ca: &std::path::Path| {
        curl(
            ca,
            &format!("{https}/v1/events"),
            &[
                "-H",
                "x-tacet-key: ingest-a",
                "-H",
                "content-type: application/json",
                "-d",
                beacon,
            ],
        )
    };
    let (code, answer) = post(&crt);
    assert_eq!(code, 0, "{answer}");
    assert!(
        answer.starts_with("HTTP/1.1 202") || answer.starts_with("HTTP/2 202"),
        "{answer}"
    );
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{answer}"
    );
    // The dashboard's session cookie over TLS: Secure, and __Host- (no Domain, Path=/, never over HTTP).
    let (code, answer) = curl(
        &crt,
        &format!("{https}/ui/login"),
        &["-d", "key=config-read-a"],
    );
    assert_eq!(code, 0, "{answer}");
    let cookie = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no session cookie: {answer}"));
    assert!(cookie.contains(" __Host-tacet_session="), "{cookie}");
    assert!(
        cookie.contains("; Path=/; HttpOnly; SameSite=Strict; Secure;"),
        "{cookie}"
    );
    // Plain HTTP to the TLS port gets no answer.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg(format!("{}/healthz", server.base))
        .output()
        .unwrap();
    assert_ne!(out.stdout, b"200");

    // Renew: new key and certificate in place of the old; the server loads them without a restart.
    let old = certs.path().join("old.crt");
    std::fs::copy(&crt, &old).unwrap();
    let (new_crt, new_key) = certificate(certs.path(), "next");
    std::fs::copy(&new_key, &key).unwrap();
    std::fs::copy(&new_crt, &crt).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, answer) = post(&new_crt);
        if code == 0 && answer.contains(" 202") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not loaded: {code} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = post(&old);
    assert_ne!(code, 0, "the old certificate is still served");
    let stopped = server.stop();
    let stderr = std::fs::read_to_string(stopped.logs.join("stderr.log")).unwrap();
    assert!(stderr.contains("TLS certificate reloaded"), "{stderr}");
}

#[tokio::test]
async fn slow_senders_are_cut_off() {
    let server = Server::start(&format!(
        "[http]\nheader_timeout = \"1s\"\nbody_timeout = \"1s\"\n{CONFIG}"
    ));
    let addr = server.base.trim_start_matches("http://").to_owned();
    let exchange = move |first: &'static [u8]| {
        let addr = addr.clone();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(first).unwrap();
            let started = Instant::now();
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            (
                started.elapsed(),
                String::from_utf8_lossy(&answer).into_owned(),
            )
        })
    };
    // Headers that never finish: the connection is closed after the header timeout.
    let (took, answer) =
        exchange(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Tacet-Key: ingest-a\r\n")
            .join()
            .unwrap();
    assert!(took < Duration::from_secs(5), "{took:?}: {answer}");
    assert!(!answer.contains("202"), "{answer}");
    // A body that never finishes: 408 after the body timeout, nothing stored.
    let (took, answer) = exchange(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Tacet-Key: ingest-a\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\nConnection: close\r\n\r\n{\"kind\":",
    )
    .join()
    .unwrap();
    assert!(took < Duration::from_secs(5), "{took:?}: {answer}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(status(&server, "config-read-a", "/v1/sql").await.0, 200);
    let (_, body) = server
        .sql("config-read-a", "SELECT COUNT(*) AS n FROM events")
        .await;
    assert_eq!(body[0]["n"], 0);
}

#[tokio::test]
async fn an_encrypted_lake_reads_through_tacet_only_and_offboarding_shreds_it() {
    let secrets = tempfile::tempdir().unwrap();
    let master = secrets.path().join("master.key");
    std::fs::write(
        &master,
        "7cbcce99600b9ebd7a04eb4fd0d5053ea995365c4fe7f2b22bfbc82761dfacc1",
    )
    .unwrap();
    let config = format!(
        "[encryption]\nmaster_key_file = {:?}\n[ingest]\nflush_interval = \"100ms\"\n{CONFIG}",
        master.display().to_string()
    );
    let server = Server::start(&config);
    let body: String = (0..5)
        .map(|i| {
            format!(
                "{{\"kind\":\"event\",\"name\":\"signup\",\"url\":\"https://a.example/enc{i}\",\"user_id\":\"user-{i}\"}}\n"
            )
        })
        .collect();
    let (code, answer) = server
        .post_events(
            "ingest-a",
            crate::skeleton::FIREFOX_LINUX,
            "198.51.100.9",
            "application/x-ndjson",
            body,
        )
        .await;
    assert_eq!(code, 202, "{answer}");
    server.wait_for_count("config-read-a", 5).await;
    let cfg = server.config.to_str().unwrap().to_owned();
    let data = server.data_dir.to_str().unwrap().to_owned();
    let stopped = server.stop();

    // A Parquet reader without the key reads nothing; the pseudonyms are not in the bytes either.
    let files: Vec<_> = files_under(&stopped.data_dir.join("lake/events"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(!files.is_empty());
    for f in &files {
        let opened =
            parquet::file::reader::SerializedFileReader::new(std::fs::File::open(f).unwrap());
        assert!(opened.is_err(), "{} opened without the key", f.display());
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !bytes.windows(6).any(|w| w == b"signup"),
            "{} holds plain text",
            f.display()
        );
    }
    // Through Tacet (the CLI, same master key) it reads normally.
    let out = tacet(&[
        "--config",
        &cfg,
        "--data-dir",
        &data,
        "sql",
        "--tenant",
        "a",
        "--format",
        "csv",
        "SELECT COUNT(*) AS n, COUNT(DISTINCT user_pseudonym) AS users FROM events",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "n,users\n5,5");
    // With another master key, the tenant's data key cannot be unwrapped: a clear error, no data.
    let wrong = secrets.path().join("wrong.key");
    std::fs::write(
        &wrong,
        "492684423d2165fccd4b7707f967ca676fb3a83f17931aa3db52863853e50a96",
    )
    .unwrap();
    let other = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&master.display().to_string(), &wrong.display().to_string());
    let other_cfg = secrets.path().join("other.toml");
    std::fs::write(&other_cfg, other).unwrap();
    let out = tacet(&[
        "--config",
        other_cfg.to_str().unwrap(),
        "--data-dir",
        &data,
        "sql",
        "--tenant",
        "a",
        "SELECT COUNT(*) FROM events",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("master key"),
        "{out:?}"
    );

    // Crypto-shredding: keep a copy of a file, offboard the tenant: its data key is gone, so the copy is
    // unreadable by anyone.
    let copy = secrets.path().join("copy.parquet");
    std::fs::copy(&files[0], &copy).unwrap();
    let data_key = stopped.data_dir.join("keys/data/a.key");
    assert!(data_key.exists());
    let out = tacet(&[
        "--config",
        &cfg,
        "--data-dir",
        &data,
        "tenant",
        "offboard",
        "a",
        "--yes",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !data_key.exists(),
        "the tenant's data key survived offboarding"
    );
    let log = std::fs::read_to_string(stopped.data_dir.join("keys/lifecycle.jsonl")).unwrap();
    assert!(log.contains("data/a"), "{log}");
}

#[tokio::test]
async fn hostile_bodies_get_4xx_and_memory_stays_bounded() {
    use std::io::Write;
    let server = Server::start(CONFIG);
    // A gzip bomb: 15 MB of spaces (under the 16 MiB decompression cap) compresses to about 15 KB; the
    // rest of it past the cap is refused. 64 MB would be refused outright.
    let bomb = |mb: usize| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(b"{\"kind\":\"pageview\",\"url\":\"https://a.example/\"}")
            .unwrap();
        gz.write_all(&vec![b' '; mb << 20]).unwrap();
        gz.finish().unwrap()
    };
    let (small, big) = (bomb(15), bomb(64));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let post = |body: Vec<u8>, gzip: bool| {
        let mut req = server
            .http
            .post(format!("{}/v1/events", server.base))
            .header("x-tacet-key", "ingest-a")
            .header("content-type", "application/json");
        if gzip {
            req = req.header("content-encoding", "gzip");
        }
        async move { req.body(body).send().await.unwrap().status().as_u16() }
    };
    let before = server.rss_kb();
    for _ in 0..20 {
        assert_eq!(post(big.clone(), true).await, 413);
        // The array is read item by item: the one nested item is refused alone, at the parser's depth limit.
        assert_eq!(post(deep.clone().into_bytes(), false).await, 422);
        assert_eq!(post(b"\xff\xfe{".to_vec(), false).await, 400);
    }
    assert_eq!(post(small.clone(), true).await, 202);
    // 16 KB of gzip that inflates to a 16 MiB array of small values: refused as too many events after the
    // first 10,001 (the array is counted as it is read, never built).
    let array_bomb = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(b"[").unwrap();
        gz.write_all(&b"1,".repeat(8 << 20)).unwrap();
        gz.write_all(b"1]").unwrap();
        gz.finish().unwrap()
    };
    assert!(array_bomb.len() < 64 << 10, "{}", array_bomb.len());
    let started = Instant::now();
    assert_eq!(post(array_bomb.clone(), true).await, 413);
    let one_bomb = started.elapsed();
    eprintln!(
        "rss before {before} kB, after the plain bombs and one array bomb {} kB",
        server.rss_kb()
    );
    // Four clients looping on it with tenant a's key do not hold up tenant b's beacons: a's bodies are
    // decoded one at a time, off the threads that answer b.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let (stop, body, url, http) = (
                stop.clone(),
                array_bomb.clone(),
                format!("{}/v1/events", server.base),
                server.http.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let status = http
                        .post(&url)
                        .header("x-tacet-key", "ingest-a")
                        .header("content-encoding", "gzip")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16();
                    assert!(status == 413 || status == 503, "{status}");
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let status = server
            .http
            .post(format!("{}/v1/events", server.base))
            .header("x-tacet-key", "ingest-b")
            .body(r#"{"kind":"pageview","url":"https://b.example/"}"#)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, 202);
        slowest = slowest.max(started.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }
    eprintln!(
        "rss after the loops {} kB; tenant b's slowest beacon {slowest:?}",
        server.rss_kb()
    );
    assert!(
        slowest < Duration::from_millis(500),
        "tenant b waited {slowest:?} for a beacon while tenant a sent array bombs (one took {one_bomb:?})"
    );
    let after = server.rss_kb();
    // Twenty 64 MB bombs and deep nestings later, the server holds at most a few of its caps more.
    assert!(
        after < before + 128 * 1024,
        "resident memory grew from {before} kB to {after} kB"
    );
}
