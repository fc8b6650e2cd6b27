//! The tracker in a real browser: headless Chromium loads pages that use `/t.js` from the real server, and
//! the events it sends are checked through SQL.
//!
//! Needs Chromium (`apt-get install chromium`, which `.ci/run` does; or set `TACET_CHROMIUM` to a binary).
//! Without it these tests fail and say so; `TACET_SKIP_BROWSER=1` skips them on purpose.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::response::Html;
use serde_json::{Value, json};

use crate::server::Server;

pub(crate) fn chromium() -> Option<PathBuf> {
    if std::env::var_os("TACET_SKIP_BROWSER").is_some() {
        eprintln!("TACET_SKIP_BROWSER is set: skipping a browser test");
        return None;
    }
    if let Some(p) = std::env::var_os("TACET_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = PathBuf::from(dir).join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    panic!(
        "the browser tests need Chromium: `apt-get install chromium` (.ci/run does), or set TACET_CHROMIUM \
         to a Chromium binary; TACET_SKIP_BROWSER=1 skips them"
    );
}

/// Headless, and quiet: without the background-networking flags Chromium keeps trying Google's hosts,
/// which this machine's closed network refuses.
pub(crate) const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
];

/// Pages for the browser, served from their own origin (not the Tacet server's).
struct Pages {
    addr: SocketAddr,
    tacet: Arc<OnceLock<String>>,
}

fn page(tacet: &str, scenario: &str) -> String {
    let tracker = |key: &str, extra: &str| {
        format!(
            r#"<script src="{tacet}/t.js" data-key="{key}" data-release="web@1.2.3" {extra}></script>"#
        )
    };
    let done = r#"setTimeout(function () { document.body.setAttribute("data-done", "scenario-done"); }, 1500);"#;
    match scenario {
        // Everything the tracker does, in order: page view (and session start) on load, a custom event
        // from an identified user, an SPA navigation, the same uncaught error twice (sent once), and an
        // unhandled rejection.
        "app" => format!(
            r#"<!doctype html><html><head>{}</head><body>
            <a id="out" href="https://example.org/pricing?ref=x">pricing</a><a id="in" href="/app/local">local</a>
            <script>
            tacet.identify("user-42");
            tacet.track("signup", {{ plan: "pro" }});
            history.pushState({{}}, "", "/app/step-2");
            // Outbound clicks are sent (the page keeps the browser here, as a router would).
            document.addEventListener("click", function (e) {{ e.preventDefault(); }});
            document.getElementById("out").click();
            document.getElementById("in").click();
            function fail() {{ throw new TypeError("cart failed for alice@example.com"); }}
            setTimeout(fail, 10);
            setTimeout(fail, 20);
            Promise.reject(new RangeError("quota exceeded"));
            {done}
            </script></body></html>"#,
            tracker("ingest-web", r#"data-outbound="true""#)
        ),
        // The browser signals Global Privacy Control (Chromium has no switch for it; the page sets it as
        // Brave and Firefox do), for a tenant whose policy suppresses such events.
        "gpc" => format!(
            r#"<!doctype html><html><head><script>
            Object.defineProperty(Navigator.prototype, "globalPrivacyControl", {{ get: function () {{ return true; }} }});
            </script>{}</head><body><script>tacet.track("signup"); {done}</script></body></html>"#,
            tracker("ingest-gpc", "")
        ),
        // The same signal with data-signals="block": the tracker sends nothing at all.
        "block" => format!(
            r#"<!doctype html><html><head><script>
            Object.defineProperty(Navigator.prototype, "globalPrivacyControl", {{ get: function () {{ return true; }} }});
            </script>{}</head><body><script>tacet.track("signup"); {done}</script></body></html>"#,
            tracker("ingest-blocked", r#"data-signals="block""#)
        ),
        // A tenant that lists its origins; the test loads this page from an allowed and a refused origin.
        "locked" => format!(
            r#"<!doctype html><html><head>{}</head><body><script>{done}</script></body></html>"#,
            tracker("ingest-locked", "")
        ),
        // Consent required: nothing until the page calls tacet.consent(true), then a page view.
        "consent" => format!(
            r#"<!doctype html><html><head>{}</head><body><script>
            tacet.track("before_consent");
            setTimeout(function () {{ tacet.consent(true); tacet.track("after_consent"); }}, 50);
            {done}
            </script></body></html>"#,
            tracker("ingest-consent", r#"data-consent="required""#)
        ),
        other => format!("<p>no scenario {other}</p>"),
    }
}

async fn serve_pages() -> Pages {
    let tacet: Arc<OnceLock<String>> = Arc::default();
    let app = axum::Router::new()
        .route(
            "/{scenario}/{*rest}",
            axum::routing::get(
                |State(tacet): State<Arc<OnceLock<String>>>,
                 Path((scenario, _)): Path<(String, String)>| async move {
                    Html(page(
                        tacet.get().expect("the tacet address is set"),
                        &scenario,
                    ))
                },
            ),
        )
        .with_state(Arc::clone(&tacet));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Pages { addr, tacet }
}

/// Loads a URL in headless Chromium, lets the page run for a few (virtual) seconds, and returns its DOM
/// and what Chromium printed on stderr.
pub(crate) async fn chromium_dom(chromium: &std::path::Path, url: &str) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(chromium)
        .args(CHROMIUM_FLAGS)
        .args(["--virtual-time-budget=4000", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("Chromium did not finish within 90 s")
        .expect("Chromium could not be started");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs one of the scenario pages to its end.
async fn browse(chromium: &std::path::Path, url: &str) {
    let (dom, stderr) = chromium_dom(chromium, url).await;
    assert!(
        dom.contains("scenario-done"),
        "the page did not finish its scenario; Chromium said:\n{stderr}"
    );
}

async fn rows(server: &Server, key: &str, sql: &str) -> Value {
    let (status, body) = server.sql(key, sql).await;
    assert_eq!(status, 200, "{sql}: {body}");
    body
}

async fn metrics(server: &Server) -> String {
    server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until `sql` answers `expected`, or fails with the last answer.
async fn eventually(server: &Server, key: &str, sql: &str, expected: Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = rows(server, key, sql).await;
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql}\n  got      {got}\n  expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn config(pages: SocketAddr) -> String {
    format!(
        r#"
[ingest]
flush_interval = "100ms"

# Headless Chromium says "HeadlessChrome": kept, flagged as a bot, so the test sees what a browser sends.
[[tenant]]
id = "web"
ingest_key = "ingest-web"
read_key = "read-web"
[tenant.privacy]
bots = "flag"

[[tenant]]
id = "gpc"
ingest_key = "ingest-gpc"
read_key = "read-gpc"
[tenant.privacy]
bots = "flag"
gpc = "suppress"

[[tenant]]
id = "blocked"
ingest_key = "ingest-blocked"
read_key = "read-blocked"
[tenant.privacy]
bots = "flag"

[[tenant]]
id = "locked"
ingest_key = "ingest-locked"
read_key = "read-locked"
origins = ["http://{pages}"]
[tenant.privacy]
bots = "flag"

[[tenant]]
id = "consent"
ingest_key = "ingest-consent"
read_key = "read-consent"
[tenant.privacy]
bots = "flag"
"#
    )
}

#[tokio::test]
async fn the_tracker_in_chromium_sends_exactly_what_the_page_did() {
    let Some(chromium) = chromium() else { return };
    let pages = serve_pages().await;
    let server = Server::start(&config(pages.addr));
    pages.tacet.set(server.base.clone()).unwrap();
    let origin = format!("http://{}", pages.addr);

    browse(&chromium, &format!("{origin}/app/start")).await;
    eventually(
        &server,
        "read-web",
        "SELECT kind, name, url_path, error_type, message FROM events ORDER BY kind, name, url_path, error_type",
        json!([
            {"kind": "crash", "name": null, "url_path": "/app/step-2", "error_type": "RangeError", "message": "quota exceeded"},
            {"kind": "crash", "name": null, "url_path": "/app/step-2", "error_type": "TypeError", "message": "cart failed for [email]"},
            {"kind": "event", "name": "outbound", "url_path": "/app/step-2", "error_type": null, "message": null},
            {"kind": "event", "name": "session_start", "url_path": "/app/start", "error_type": null, "message": null},
            {"kind": "event", "name": "signup", "url_path": "/app/start", "error_type": null, "message": null},
            {"kind": "pageview", "name": null, "url_path": "/app/start", "error_type": null, "message": null},
            {"kind": "pageview", "name": null, "url_path": "/app/step-2", "error_type": null, "message": null},
        ]),
    )
    .await;
    // What the server derived for Chromium, and what the tracker added.
    let derived = rows(
        &server,
        "read-web",
        "SELECT DISTINCT browser, os, device, is_bot, url_host FROM events",
    )
    .await;
    assert_eq!(
        derived,
        // The pages' host is an IP address, which the scrubber replaces wherever it appears.
        json!([{"browser": "Chrome", "os": "Linux", "device": "bot", "is_bot": true, "url_host": "[ip]"}])
    );
    let details = rows(
        &server,
        "read-web",
        "SELECT name, COALESCE(props['plan'], props['url']) AS prop, user_pseudonym IS NOT NULL AS identified, \
         release, fingerprint IS NOT NULL AS grouped, cardinality(stack) > 0 AS has_stack \
         FROM events WHERE kind <> 'pageview' ORDER BY kind, name, error_type",
    )
    .await;
    assert_eq!(
        details,
        json!([
            {"name": null, "prop": null, "identified": true, "release": "web@1.2.3", "grouped": true, "has_stack": true},
            {"name": null, "prop": null, "identified": true, "release": "web@1.2.3", "grouped": true, "has_stack": true},
            {"name": "outbound", "prop": "https://example.org/pricing", "identified": true, "release": "web@1.2.3", "grouped": false, "has_stack": null},
            {"name": "session_start", "prop": null, "identified": false, "release": "web@1.2.3", "grouped": false, "has_stack": null},
            {"name": "signup", "prop": "pro", "identified": true, "release": "web@1.2.3", "grouped": false, "has_stack": null},
        ])
    );

    // GPC, with a tenant that suppresses it: the beacon arrives, nothing is stored.
    browse(&chromium, &format!("{origin}/gpc/start")).await;
    // GPC with data-signals="block": the tracker does not even send.
    browse(&chromium, &format!("{origin}/block/start")).await;
    // The locked tenant allows only the pages' 127.0.0.1 origin: from localhost, refused.
    browse(
        &chromium,
        &format!("http://localhost:{}/locked/start", pages.addr.port()),
    )
    .await;
    browse(&chromium, &format!("{origin}/locked/start")).await;
    // Consent required by the page: only what happens after tacet.consent(true).
    browse(&chromium, &format!("{origin}/consent/start")).await;

    eventually(
        &server,
        "read-locked",
        "SELECT kind, name FROM events ORDER BY kind",
        json!([{"kind": "event", "name": "session_start"}, {"kind": "pageview", "name": null}]),
    )
    .await;
    eventually(
        &server,
        "read-consent",
        "SELECT kind, name FROM events ORDER BY kind, name",
        json!([
            {"kind": "event", "name": "after_consent"},
            {"kind": "event", "name": "session_start"},
            {"kind": "pageview", "name": null},
        ]),
    )
    .await;
    let text = metrics(&server).await;
    for expected in [
        r#"tacet_ingest_events_dropped_total{tenant="gpc",reason="gpc"} 3"#,
        r#"tacet_http_ingest_requests_refused_total{reason="origin"} 1"#,
    ] {
        assert!(
            text.contains(expected),
            "{expected} missing from /metrics:\n{text}"
        );
    }
    assert!(
        !text.contains(r#"tenant="blocked""#),
        "the blocked page sent something:\n{text}"
    );
    for key in ["read-gpc", "read-blocked"] {
        assert_eq!(
            rows(&server, key, "SELECT COUNT(*) AS n FROM events").await,
            json!([{"n": 0}])
        );
    }
}

#[tokio::test]
async fn the_demo_page_works_in_chromium() {
    let Some(chromium) = chromium() else { return };
    // The embedded configuration (demo tenant, demo page) on a free port.
    let server = Server::start_embedded();
    let (dom, _) = chromium_dom(&chromium, &format!("{}/demo", server.base)).await;
    assert!(
        dom.contains("Tacet demo") && dom.contains("demo-read-key"),
        "{dom}"
    );
    // The demo tenant drops bots (the default policy): headless Chromium's page view is dropped and counted.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = metrics(&server).await;
        if text.contains(r#"tacet_ingest_events_dropped_total{tenant="demo",reason="bot"}"#) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no beacon from the demo page arrived:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
