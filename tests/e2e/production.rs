//! A first day in production: what the server refuses to start with, and what its readiness says.

use crate::server::tacet_with_env;

/// Runs `tacet serve` with `config` (it must refuse and exit) and returns its standard error.
fn refused(config: &str, env: &[(&str, &str)]) -> String {
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
    // Refused before anything was written.
    assert!(
        !data.exists(),
        "it wrote {} before refusing",
        data.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
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
