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
    let deadline = Instant::now() + Duration::from_secs(6);
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
    let admin = cli(&["create", "a", "--role", "admin", "--expires-in", "3s"])
        .trim()
        .to_owned();
    assert!(
        read.starts_with("tk_read_") && admin.starts_with("tk_admin_"),
        "{read} {admin}"
    );

    // The running server accepts the new keys, each for its own role only.
    eventually(&server, &read, "/v1/sql", 200).await;
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
