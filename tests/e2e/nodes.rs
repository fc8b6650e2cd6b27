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

/// A dashboard page with `cookie`: its status, its `Location` and its body.
async fn page(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    cookie: &str,
) -> (u16, String, String) {
    let resp = client
        .get(format!("{}{path}", server.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (resp.status().as_u16(), location, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_session_from_one_node_is_good_on_the_other_until_logout() {
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    let shared = root.path().join("shared");
    let node = |n: u16| {
        Server::start_in(
            &config(
                &lake,
                &format!("shared_dir = \"{}\"\nnode_id = {n}", shared.display()),
            ),
            &root.path().join(format!("node{n}")),
            "logs",
            tempfile::tempdir().unwrap(),
        )
    };
    let (one, two) = (node(1), node(2));
    let (client, cookie) = crate::server::dashboard_login(&one, "read-a").await;
    // The other node knows the session: no load balancer affinity needed.
    let (status, _, body) = page(&client, &two, "/ui/usage", &cookie).await;
    assert_eq!(status, 200, "{body}");
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a form token on the page")
        .to_owned();
    let (status, _, first_csrf) = page(&client, &one, "/ui/usage", &cookie).await;
    assert_eq!(status, 200);
    assert!(
        first_csrf.contains(&csrf),
        "both nodes give the session one form token"
    );
    // A forged cookie is nobody's.
    let forged = cookie.replacen(".a.", ".b.", 1);
    let (status, location, _) = page(&client, &two, "/ui/usage", &forged).await;
    assert_eq!((status, location.starts_with("/ui/login")), (303, true));

    // Logging out on the second node ends the session on the first.
    let out = client
        .post(format!("{}/ui/logout", two.base))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    let (status, location, _) = page(&client, &one, "/ui/usage", &cookie).await;
    assert_eq!((status, location.starts_with("/ui/login")), (303, true));
    drop((one.stop(), two.stop()));
}
