//! Starting and stopping the real server, and talking to it.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_tacet");

/// A running `tacet serve`, with its stdout and stderr captured to files in `logs`.
pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub logs: PathBuf,
    pub config: PathBuf,
    pub http: reqwest::Client,
    _tmp: tempfile::TempDir,
}

/// A configuration with tenants `a` and `b`, a fast flush, and loopback as a trusted proxy so tests can set
/// the client address with `X-Forwarded-For`.
pub fn two_tenant_config(extra: &str) -> String {
    format!(
        r#"
trusted_proxies = ["127.0.0.1/32", "::1/128"]
{extra}
[ingest]
flush_interval = "200ms"

[[tenant]]
id = "a"
ingest_key = "ingest-a"
read_key = "read-a"

[[tenant]]
id = "b"
ingest_key = "ingest-b"
read_key_env = "E2E_READ_KEY_B"
[tenant.privacy]
ip = "truncate"
"#
    )
}

impl Server {
    pub fn start(config: &str) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        Self::start_in(config, &root, "logs", tmp)
    }

    /// Starts the embedded default configuration (no --config), on a free port and a temporary directory.
    pub fn start_embedded() -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        Self::spawn(None, &root, "logs", tmp)
    }

    /// Starts the embedded default with its data directory at `root/data` (which a test may fill first).
    pub fn start_embedded_in(root: &Path, tmp: tempfile::TempDir) -> Server {
        Self::spawn(None, root, "logs", tmp)
    }

    /// Starts a server whose data directory is `root/data` (kept across restarts), logging to `root/<logs>`;
    /// `tmp` is dropped with the server.
    pub fn start_in(config: &str, root: &Path, logs: &str, tmp: tempfile::TempDir) -> Server {
        Self::spawn(Some(config), root, logs, tmp)
    }

    /// Like `start_in`, with extra environment variables (S3 credentials).
    pub fn start_in_with_env(
        config: &str,
        root: &Path,
        logs: &str,
        tmp: tempfile::TempDir,
        env: &[(&str, &str)],
    ) -> Server {
        Self::spawn_with_env(Some(config), root, logs, tmp, env)
    }

    fn spawn(config: Option<&str>, root: &Path, logs: &str, tmp: tempfile::TempDir) -> Server {
        Self::spawn_with_env(config, root, logs, tmp, &[])
    }

    fn spawn_with_env(
        config: Option<&str>,
        root: &Path,
        logs: &str,
        tmp: tempfile::TempDir,
        env: &[(&str, &str)],
    ) -> Server {
        let data_dir = root.join("data");
        let logs = root.join(logs);
        std::fs::create_dir_all(&logs).unwrap();
        let config_path = root.join("tacet.toml");
        let mut command = Command::new(BIN);
        command.args(["serve", "--listen", "127.0.0.1:0"]);
        if let Some(config) = config {
            // Test keys are short and written here: a demo, as far as the key checks go.
            let config = if config.contains("insecure_demo") {
                config.to_owned()
            } else {
                format!("insecure_demo = true\n{config}")
            };
            std::fs::write(&config_path, config).unwrap();
            command.arg("--config").arg(&config_path);
        }
        let mut child = command
            .env_remove("TACET_CONFIG")
            .arg("--data-dir")
            .arg(&data_dir)
            .env("E2E_READ_KEY_B", "read-b")
            .env("TACET_LOG", "debug")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(File::create(logs.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        // The first stdout line names the address; the rest of stdout is copied to a log file.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .rsplit("://")
            .next()
            .filter(|_| line.contains("listening on"))
            .unwrap_or_else(|| panic!("unexpected first line from tacet serve: {line:?}"))
            .to_owned();
        if line.contains("https://") {
            wait_ready_tls(&addr);
        } else {
            wait_ready(&addr);
        }
        let mut out = File::create(logs.join("stdout.log")).unwrap();
        out.write_all(line.as_bytes()).unwrap();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut stdout, &mut out);
        });
        Server {
            child,
            base: format!("http://{addr}"),
            data_dir,
            logs,
            config: config_path,
            http: http_client(true),
            _tmp: tmp,
        }
    }

    /// Posts a body to `/v1/events` with an ingest key, a user agent and a client address.
    pub async fn post_events(
        &self,
        key: &str,
        ua: &str,
        client_ip: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        self.post_with_headers(key, ua, client_ip, &[("content-type", content_type)], body)
            .await
    }

    /// Like `post_events`, with any extra headers (`DNT`, `Sec-GPC`...).
    pub async fn post_with_headers(
        &self,
        key: &str,
        ua: &str,
        client_ip: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/events", self.base))
            .header("x-tacet-key", key)
            .header("user-agent", ua)
            .header("x-forwarded-for", client_ip);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn sql(&self, read_key: &str, sql: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/v1/sql", self.base))
            .bearer_auth(read_key)
            .body(sql.to_owned())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Waits until `SELECT COUNT(*)` for a tenant reaches `n` (the flush runs every 200 ms).
    pub async fn wait_for_count(&self, read_key: &str, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = self.sql(read_key, "SELECT COUNT(*) AS n FROM events").await;
            assert_eq!(status, 200, "{body}");
            let got = body[0]["n"].as_u64().unwrap();
            if got == n {
                return;
            }
            assert!(got < n, "more rows than sent: {got} > {n}");
            assert!(
                Instant::now() < deadline,
                "only {got} of {n} events became queryable within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server with SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> Stopped {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        let exit = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "tacet serve did not stop within 15 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = std::fs::read_to_string(self.logs.join("stderr.log")).unwrap();
        assert!(exit.success(), "tacet serve exited with {exit}: {stderr}");
        Stopped {
            data_dir: self.data_dir.clone(),
            logs: self.logs.clone(),
            config: self.config.clone(),
            _tmp: std::mem::replace(&mut self._tmp, tempfile::tempdir().unwrap()),
        }
    }
}

impl Server {
    /// The server's resident memory in kB (from /proc).
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server with SIGKILL, as a crash or power cut would (usable while clients hold it).
    pub fn crash(&self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Fetches `/metrics` until each fragment is in it (10 s at most: some, like the flush histogram,
    /// appear only once the next flush has run, and events are queryable before that).
    pub async fn assert_metrics(&self, expected: &[&str]) {
        let url = format!("{}/metrics", self.base);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self
                .http
                .get(&url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let missing = expected.iter().find(|e| !text.contains(**e));
            match missing {
                None => return,
                Some(e) if Instant::now() >= deadline => {
                    panic!("{e:?} missing from /metrics:\n{text}")
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `/readyz` answers 200: the write-ahead log is replayed and flushed.
fn wait_ready(addr: &str) {
    use std::io::Read;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut answer = String::new();
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n");
            let _ = s.read_to_string(&mut answer);
        }
        if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "tacet serve was not ready within 30 s: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `/readyz` answers 200 over TLS (curl, certificate not checked: the test checks it).
fn wait_ready_tls(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("https://{addr}/readyz"))
            .output()
            .expect("curl runs");
        if out.stdout == b"200" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "tacet serve (TLS) was not ready within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a stopped server left behind.
pub struct Stopped {
    pub data_dir: PathBuf,
    pub logs: PathBuf,
    pub config: PathBuf,
    _tmp: tempfile::TempDir,
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A port nothing listens on now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits up to 30 s until something accepts connections on a loopback port.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the `tacet` binary to completion.
pub fn tacet(args: &[&str]) -> std::process::Output {
    tacet_with_env(args, &[])
}

/// Runs the `tacet` binary to completion with extra environment variables.
pub fn tacet_with_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("TACET_CONFIG")
        .env_remove("TACET_DATA_DIR")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// An HTTP client for the test servers, following redirects or not. It drops a pooled connection after
/// 500 ms unused: the server closes a kept-alive connection after `http.header_timeout` without a request (1 s
/// in the shortest test configuration), and a request sent on one just as the server closes it fails with
/// `IncompleteMessage` (seen in CI after a `tacet rollup` that ran for about the default 10 s).
pub fn http_client(follow_redirects: bool) -> reqwest::Client {
    let redirects = if follow_redirects {
        reqwest::redirect::Policy::default()
    } else {
        reqwest::redirect::Policy::none()
    };
    reqwest::Client::builder()
        .redirect(redirects)
        .pool_idle_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

/// A browser that does not follow redirects (so each answer is seen), logged in to `server`'s dashboard with
/// `key`: the client and the session cookie (`tacet_session=…`).
pub async fn dashboard_login(server: &Server, key: &str) -> (reqwest::Client, String) {
    let browser = http_client(false);
    let login = browser
        .post(format!("{}/ui/login", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        login.status().as_u16(),
        303,
        "the dashboard login with {key}"
    );
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (browser, cookie)
}
