//! Nodes on one lake: a node whose keys or identity would break the lake refuses to start, and says why.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::{BIN, Server, tacet};

fn config(lake: &Path, extra: &str) -> String {
    format!(
        r#"
insecure_demo = true
{extra}
[storage]
path = "{lake}"
[[tenant]]
id = "a"
ingest_key = "ingest-a"
read_key = "read-a"
"#,
        lake = lake.display()
    )
}

/// Runs `tacet serve` with `config` and its own data directory under `root`; it must exit (refusing) within
/// 30 s. Returns its standard error.
fn refused(root: &Path, name: &str, config: &str) -> String {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tacet.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env_remove("TACET_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "{name} started");
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return err;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("{name} started on a lake it must refuse");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_would_break_the_lake_refuses_to_start() {
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    let first = tempfile::tempdir().unwrap();
    let a = Server::start_in(
        &config(&lake, ""),
        first.path(),
        "logs",
        tempfile::tempdir().unwrap(),
    );
    let (status, _) = a
        .post_events(
            "ingest-a",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "203.0.113.7",
            "application/json",
            r#"{"kind":"pageview","url":"https://a.example/"}"#,
        )
        .await;
    assert_eq!(status, 202);
    a.wait_for_count("read-a", 1).await;
    let claim: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lake.join("_tacet/keystore.json")).unwrap()).unwrap();
    assert_eq!(
        claim["id"].as_str().unwrap(),
        std::fs::read_to_string(a.data_dir.join("keys/store.id"))
            .unwrap()
            .trim()
    );
    assert!(lake.join("_tacet/nodes/single.json").exists());

    // Its own key store: the same person would get two pseudonyms.
    let err = refused(root.path(), "other-keys", &config(&lake, ""));
    assert!(err.contains("another key store"), "{err}");
    assert!(err.contains("shared_dir"), "{err}");

    // The shared key store, but no node ids: the two would overwrite each other's files.
    let shared = format!("shared_dir = \"{}\"", a.data_dir.display());
    let err = refused(root.path(), "no-node-id", &config(&lake, &shared));
    assert!(
        err.contains("a node without node_id from another data directory"),
        "{err}"
    );
    assert!(err.contains("TACET_NODE_ID"), "{err}");

    // A node id beside a node without one: refused too, naming the one to change.
    let err = refused(
        root.path(),
        "beside-single",
        &config(&lake, &format!("{shared}\nnode_id = 2")),
    );
    assert!(err.contains("_tacet/nodes/single.json"), "{err}");
    assert!(
        !lake.join("_tacet/nodes/2.json").exists(),
        "a refused node leaves no claim behind"
    );

    // A retention job in a scratch data directory of its own, with `config`.
    let retention = |name: &str, config: String| {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tacet.toml"), config).unwrap();
        tacet(&[
            "retention",
            "run",
            "--config",
            dir.join("tacet.toml").to_str().unwrap(),
            "--data-dir",
            dir.join("data").to_str().unwrap(),
        ])
    };
    // With the shared key store (the Kubernetes retention CronJob): fine.
    let out = retention("scratch", config(&lake, &shared));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With its own key store: refused.
    let out = retention("own", config(&lake, ""));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another key store"));

    // The first node restarts on its own directory, then as node 1 (its claim as the single node moves).
    let stopped = a.stop();
    let a = Server::start_in(
        &config(&lake, ""),
        first.path(),
        "logs",
        tempfile::tempdir().unwrap(),
    );
    a.wait_for_count("read-a", 1).await;
    drop(a.stop());
    let a = Server::start_in(
        &config(&lake, "node_id = 1"),
        first.path(),
        "logs",
        tempfile::tempdir().unwrap(),
    );
    a.wait_for_count("read-a", 1).await;
    assert!(!lake.join("_tacet/nodes/single.json").exists());
    assert!(lake.join("_tacet/nodes/1.json").exists());
    drop(stopped);
}
