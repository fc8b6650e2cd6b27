//! Crash stacks from minified bundles: a source map uploaded through the admin API (by the CLI, as release
//! tooling does) turns a release's minified frames into original files, lines and functions at ingest, so
//! the fingerprint groups on original code and the scrubber sees the symbolicated text.

use serde_json::{Value, json};

use crate::server::{Server, tacet_with_env};

const CONFIG: &str = r#"
trusted_proxies = ["127.0.0.1/32"]
[ingest]
flush_interval = "100ms"
[[tenant]]
id = "a"
ingest_key = "ingest-a"
read_key = "read-a"
admin_key = "admin-a"
[tenant.privacy]
k_threshold_crashes = 1
"#;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
const BUNDLE: &str = "https://app.example/static/app.3f9c.js";

/// `tacet sourcemaps upload` of one map for `release`, as release tooling runs it (admin key `admin-a`).
fn upload(
    server: &Server,
    release: &str,
    url_prefix: &str,
    map: &std::path::Path,
) -> std::process::Output {
    tacet_with_env(
        &[
            "sourcemaps",
            "upload",
            "--server",
            &server.base,
            "--release",
            release,
            "--url-prefix",
            url_prefix,
            map.to_str().unwrap(),
        ],
        &[("TACET_ADMIN_KEY", "admin-a")],
    )
}

/// The map of a one-line bundle made from two modules: `src/cart.js` (`loadCart` throws on line 3,
/// `render` calls it on line 7) and, under a directory named after a person, `src/users/bob@example.com/
/// profile.js` (`showProfile` throws on line 2).
fn bundle_map() -> Vec<u8> {
    let cart = "// owner: alice@example.com\nexport function loadCart(id) {\n  throw new Error(\"cart \" + id + \" is undefined\");\n}\n\nexport const render = () => {\n  loadCart(7);\n};\n";
    let profile = "export function showProfile() {\n  throw new TypeError(\"no profile\");\n}\n";
    let mut b = sourcemap::SourceMapBuilder::new(Some("app.3f9c.js"));
    let c = b.add_source("src/cart.js");
    b.set_source_contents(c, Some(cart));
    let p = b.add_source("src/users/bob@example.com/profile.js");
    b.set_source_contents(p, Some(profile));
    b.add(0, 13, 2, 2, Some("src/cart.js"), None, false);
    b.add(0, 45, 6, 2, Some("src/cart.js"), None, false);
    b.add(
        0,
        80,
        1,
        2,
        Some("src/users/bob@example.com/profile.js"),
        None,
        false,
    );
    let mut out = Vec::new();
    b.into_sourcemap().to_writer(&mut out).unwrap();
    out
}

fn crash(release: &str, error_type: &str, stack: &[&str]) -> Value {
    json!({"kind": "crash", "url": "https://app.example/cart", "release": release,
        "error_type": error_type, "message": "boom", "stack": stack})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minified_frames_become_original_ones_and_group_by_them() {
    let server = Server::start(CONFIG);
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("app.3f9c.js.map");
    std::fs::write(&map, bundle_map()).unwrap();
    let admin = [("TACET_ADMIN_KEY", "admin-a")];

    // Crashes from before the upload keep their minified frames.
    let chrome = [
        "    at n (https://app.example/static/app.3f9c.js:1:14)",
        "    at r (https://app.example/static/app.3f9c.js:1:46)",
    ];
    let post = |events: Value| {
        let server = &server;
        async move {
            let (s, b) = server
                .post_events(
                    "ingest-a",
                    UA,
                    "203.0.113.9",
                    "application/json",
                    events.to_string(),
                )
                .await;
            assert_eq!(s, 202, "{b}");
        }
    };
    post(json!([crash("2.0.0", "Error", &chrome)])).await;

    // The CLI uploads the release's maps, as release tooling would.
    let out = upload(&server, "2.0.0", "https://app.example/static/", &map);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("uploaded 1 source map(s)"));
    // The crash from before the upload is symbolicated now, fingerprinted again and its group merged.
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("1 crash group(s) of 2.0.0 from before the upload merged"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = tacet_with_env(&["sourcemaps", "list", "--server", &server.base], &admin);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("2.0.0\t{BUNDLE}\t")));
    // What is no source map is refused with the reason; a read key is not an admin key.
    let bad = dir.path().join("junk.js.map");
    std::fs::write(&bad, "not json").unwrap();
    let out = upload(&server, "2.0.0", "https://x/", &bad);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("400 Bad Request: not a source map"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tacet_with_env(
        &["sourcemaps", "list", "--server", &server.base],
        &[("TACET_ADMIN_KEY", "read-a")],
    );
    assert!(!out.status.success());

    // Now Chrome's and Firefox's stacks of the same error are the same original frames and one group; another
    // error in the same bundle is another group; another release (no map) stays minified.
    let firefox = [
        "n@https://app.example/static/app.3f9c.js?cache=1:1:14",
        "r@https://app.example/static/app.3f9c.js?cache=1:1:46",
    ];
    let profile = ["    at o (https://app.example/static/app.3f9c.js:1:81)"];
    post(json!([
        crash("2.0.0", "Error", &chrome),
        crash("2.0.0", "Error", &firefox),
        crash("2.0.0", "TypeError", &profile),
        crash("1.9.0", "Error", &chrome),
    ]))
    .await;
    server.wait_for_count("read-a", 5).await;
    let (_, rows) = server
        .sql(
            "read-a",
            "SELECT release, stack, fingerprint FROM events WHERE kind = 'crash' ORDER BY ts, arrival",
        )
        .await;
    let rows = rows.as_array().unwrap();
    let stack = |i: usize| -> Vec<&str> {
        rows[i]["stack"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect()
    };
    assert_eq!(stack(0), chrome, "before the upload");
    let original = [
        "at loadCart (src/cart.js:3:3)",
        "at render (src/cart.js:7:3)",
    ];
    assert_eq!(stack(1), original);
    assert_eq!(stack(2), original, "Firefox's format, the same frames");
    assert_eq!(rows[1]["fingerprint"], rows[2]["fingerprint"]);
    // The person's name in a source path is scrubbed like any other text.
    assert_eq!(
        stack(3),
        ["at showProfile (src/users/[email]/profile.js:2:3)"]
    );
    assert_ne!(rows[3]["fingerprint"], rows[1]["fingerprint"]);
    assert_eq!(stack(4), chrome, "release 1.9.0 has no map");
    // Stored as it came, the crash from before the upload counts in the symbolicated group: one group of
    // three crashes for the bug, in the crash reports.
    assert_ne!(rows[0]["fingerprint"], rows[1]["fingerprint"]);
    let groups: Value = server
        .http
        .get(format!(
            "{}/v1/reports/crash_groups?release=2.0.0",
            server.base
        ))
        .bearer_auth("read-a")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let of = |fp: &Value| {
        groups
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["fingerprint"] == *fp)
            .map(|g| g["crashes"].clone())
    };
    assert_eq!(of(&rows[1]["fingerprint"]), Some(json!(3)), "{groups}");
    assert_eq!(of(&rows[0]["fingerprint"]), None, "{groups}");
    // Uploading again merges nothing more.
    let again = upload(&server, "2.0.0", "https://app.example/static/", &map);
    assert!(!String::from_utf8_lossy(&again.stdout).contains("merged"));

    // The crash page shows the original source around the top frames, scrubbed like everything else.
    let (client, cookie) = crate::server::dashboard_login(&server, "read-a").await;
    let fp = rows[1]["fingerprint"].as_str().unwrap();
    let page = client
        .get(format!("{}/ui/crashes/{fp}", server.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Source (release 2.0.0, from its source maps; scrubbed)"),
        "{page}"
    );
    assert!(
        page.contains(
            "&gt; 3 |   throw new Error(&quot;cart &quot; + id + &quot; is undefined&quot;);"
        ),
        "{page}"
    );
    assert!(
        page.contains("  1 | // owner: [email]") && !page.contains("alice@example.com"),
        "{page}"
    );
    // Where it happens: by release, browser, OS and page. The group holds its two symbolicated crashes,
    // the one from before the upload, and 1.9.0's, whose minified frames are the same bundle's (the same
    // file and positions: the same code), so its group was merged too.
    let by = |dimension: &str| {
        page.split(&format!(r#"data-breakdown="{dimension}""#))
            .nth(1)
            .and_then(|rest| rest.split("</section>").next())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        by("release").contains(r#"data-value="2.0.0""#)
            && by("release").contains(r#"data-col="crashes" data-value="3""#)
            && by("release").contains(r#"data-value="1.9.0""#),
        "{}",
        by("release")
    );
    assert!(by("browser").contains("Firefox"), "{}", by("browser"));
    assert!(
        by("page").contains(r#"data-value="/cart""#),
        "{}",
        by("page")
    );
    // Its latest crashes, one row each, without an identifier.
    let latest = page
        .split(r#"id="occurrences""#)
        .nth(1)
        .and_then(|rest| rest.split("</section>").next())
        .unwrap_or_default();
    assert_eq!(
        latest.matches("<tr").count(),
        5,
        "a header and four crashes: {latest}"
    );
    assert!(
        latest.contains("boom") && !latest.contains("visitor_id") && !latest.contains("pseudonym"),
        "{latest}"
    );

    // Deleting the release's maps: later crashes stay minified.
    let out = tacet_with_env(
        &[
            "sourcemaps",
            "delete",
            "--server",
            &server.base,
            "--release",
            "2.0.0",
        ],
        &admin,
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deleted 1 source map(s)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    post(json!([crash("2.0.0", "Error", &chrome)])).await;
    server.wait_for_count("read-a", 6).await;
    let (_, last) = server
        .sql(
            "read-a",
            "SELECT stack FROM events WHERE kind = 'crash' ORDER BY ts DESC, arrival DESC LIMIT 1",
        )
        .await;
    assert_eq!(last[0]["stack"], json!(chrome));
    // That minified crash is now its group's latest example: with the map back, the crash page shows
    // its stack symbolicated at display (the stored row stays as it came).
    let out = upload(&server, "2.0.0", "https://app.example/static/", &map);
    assert!(out.status.success());
    let page = client
        .get(format!("{}/ui/crashes/{fp}", server.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let shown = page
        .split(r#"<pre id="symbolicated">"#)
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("no symbolicated stack: {page}"));
    assert_eq!(shown, original.join("\n"));

    // Offboarding removes a tenant's maps with its data.
    let out = upload(&server, "2.1.0", "https://app.example/static/", &map);
    assert!(out.status.success());
    let (config, data) = (server.config.clone(), server.data_dir.clone());
    let stopped = server.stop();
    let out = tacet_with_env(
        &[
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "tenant",
            "offboard",
            "a",
            "--yes",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let certificate: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(certificate["sourcemaps_removed"], 2, "{certificate}");
    assert!(
        !data.join("lake/sourcemaps/tenant=a").exists()
            || crate::server::files_under(&data.join("lake/sourcemaps")).is_empty()
    );
    drop(stopped);
}

/// esbuild, the bundler: `TACET_ESBUILD`, else `esbuild` on the PATH, else the copy `.ci/run` installs
/// with npm under `$TACET_CI_CACHE/npm` (default `~/.cache/tacet-ci/npm`).
fn esbuild() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("TACET_ESBUILD") {
        return p.into();
    }
    let cache = std::env::var_os("TACET_CI_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/tacet-ci")
        });
    let candidates = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| std::path::PathBuf::from(d).join("esbuild"))
        .chain([cache.join("npm/node_modules/.bin/esbuild")])
        .collect::<Vec<_>>();
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "this browser test bundles an app with esbuild: `npm install --prefix ~/.cache/tacet-ci/npm esbuild` \
             (.ci/run does) or set TACET_ESBUILD; TACET_SKIP_BROWSER=1 skips it"
        )
    })
}

/// A real bundle: two modules minified into one file by esbuild, with its source map; two different errors
/// thrown from it in Chromium, through the tracker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_a_bundled_app_names_the_original_function_in_chromium() {
    let Some(chromium) = crate::browser::chromium() else {
        return;
    };
    let app = tempfile::tempdir().unwrap();
    let src = app.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("cart.js"),
        "export function loadCart(id) {\n  throw new Error(\"cart \" + id + \" is undefined\");\n}\n",
    )
    .unwrap();
    std::fs::write(
        src.join("profile.js"),
        "export function showProfile(name) {\n  throw new TypeError(\"no profile for \" + name);\n}\n",
    )
    .unwrap();
    std::fs::write(
        src.join("main.js"),
        "import { loadCart } from \"./cart.js\";\nimport { showProfile } from \"./profile.js\";\n\
         window.runCart = function () { loadCart(7); };\nwindow.runProfile = function () { showProfile(\"x\"); };\n",
    )
    .unwrap();
    let out = std::process::Command::new(esbuild())
        .current_dir(app.path())
        .args([
            "src/main.js",
            "--bundle",
            "--minify",
            "--sourcemap",
            "--format=iife",
            "--outfile=dist/app.min.js",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "esbuild: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = std::fs::read_to_string(app.path().join("dist/app.min.js")).unwrap();
    assert!(!bundle.contains("loadCart"), "the bundle is minified");

    // Headless Chromium says "HeadlessChrome": kept (flagged as a bot) so the test sees what it sends.
    let server = Server::start(&CONFIG.replace(
        "k_threshold_crashes = 1",
        "k_threshold_crashes = 1\nbots = \"flag\"",
    ));
    // The app's own origin: the page and its bundle.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let page = format!(
        r#"<!doctype html><html><head><script src="{}/t.js" data-key="ingest-a" data-release="shop@3.1.0"></script>
        <script src="/static/app.min.js"></script></head><body><script>
        setTimeout(function () {{ runCart(); }}, 10);
        setTimeout(function () {{ runProfile(); }}, 20);
        setTimeout(function () {{ document.body.setAttribute("data-done", "scenario-done"); }}, 1500);
        </script></body></html>"#,
        server.base
    );
    let routes = axum::Router::new()
        .route(
            "/",
            axum::routing::get(move || async move { axum::response::Html(page) }),
        )
        .route(
            "/static/app.min.js",
            axum::routing::get(
                move || async move { ([("content-type", "text/javascript")], bundle) },
            ),
        );
    tokio::spawn(async move { axum::serve(listener, routes).await.unwrap() });

    let out = upload(
        &server,
        "shop@3.1.0",
        &format!("{origin}/static/"),
        &app.path().join("dist/app.min.js.map"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (dom, said) = crate::browser::chromium_dom(&chromium, &format!("{origin}/")).await;
    assert!(
        dom.contains("scenario-done"),
        "the page did not run; Chromium said:\n{said}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, n) = server
            .sql(
                "read-a",
                "SELECT COUNT(*) AS n FROM events WHERE kind = 'crash'",
            )
            .await;
        if n[0]["n"] == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the two crashes did not arrive: {n}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (_, rows) = server
        .sql(
            "read-a",
            "SELECT error_type, stack[1] AS top, fingerprint FROM events WHERE kind = 'crash' ORDER BY error_type",
        )
        .await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let top = |i: usize| rows[i]["top"].as_str().unwrap().to_owned();
    assert_eq!(rows[0]["error_type"], "Error");
    assert!(
        top(0).starts_with("at loadCart (") && top(0).contains("src/cart.js:2:"),
        "the top frame names the original function, file and line: {}",
        top(0)
    );
    assert!(
        top(1).starts_with("at showProfile (") && top(1).contains("src/profile.js:2:"),
        "{}",
        top(1)
    );
    assert_ne!(
        rows[0]["fingerprint"], rows[1]["fingerprint"],
        "two bugs in one bundle, two groups"
    );
    server.stop();
}

/// Crash groups as issues through the admin API: resolved in a release, the mark in the audit log, and a
/// wrong request named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_group_is_resolved_in_a_release_through_the_admin_api() {
    let server = Server::start(CONFIG);
    let (s, b) = server
        .post_events(
            "ingest-a",
            UA,
            "203.0.113.9",
            "application/json",
            json!([crash(
                "2.0.0",
                "Error",
                &["at f (https://app.example/a.js:1:1)"]
            )])
            .to_string(),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    server.wait_for_count("read-a", 1).await;
    let (_, fp) = server
        .sql(
            "read-a",
            "SELECT fingerprint FROM events WHERE kind = 'crash'",
        )
        .await;
    let fp = fp[0]["fingerprint"].as_str().unwrap().to_owned();
    let admin = |method: reqwest::Method, path: &str| {
        server
            .http
            .request(method, format!("{}{path}", server.base))
            .bearer_auth("admin-a")
    };
    let resp = admin(reqwest::Method::POST, &format!("/v1/admin/crashes/{fp}"))
        .body(json!({"state": "resolved", "release": "2.1.0"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let marks: Value = admin(reqwest::Method::GET, "/v1/admin/crashes")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(marks[&fp]["state"], "resolved");
    assert_eq!(marks[&fp]["release"], "2.1.0");
    // Named mistakes.
    let resp = admin(reqwest::Method::POST, &format!("/v1/admin/crashes/{fp}"))
        .body(json!({"state": "ignored", "release": "2.1.0"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("release goes with state resolved")
    );
    let resp = admin(reqwest::Method::POST, "/v1/admin/crashes/not-a-fingerprint")
        .body(json!({"state": "open"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    // The mark is in the audit log.
    let audit: Value = admin(reqwest::Method::GET, "/v1/admin/audit")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = audit.to_string();
    assert!(
        text.contains("triage.mark") && text.contains(&fp) && text.contains("2.1.0"),
        "{text}"
    );

    // Merge and split through the API: another group merged into this one, then split off again by a frame.
    let (s, b) = server
        .post_events(
            "ingest-a",
            UA,
            "203.0.113.9",
            "application/json",
            json!([crash(
                "2.0.0",
                "Error",
                &["at g (https://app.example/b.js:1:1)"]
            )])
            .to_string(),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    server.wait_for_count("read-a", 2).await;
    let (_, other) = server
        .sql(
            "read-a",
            &format!(
                "SELECT fingerprint FROM events WHERE kind = 'crash' AND fingerprint <> '{fp}'"
            ),
        )
        .await;
    let other = other[0]["fingerprint"].as_str().unwrap().to_owned();
    let groups = || async {
        let g: Value = server
            .http
            .get(format!("{}/v1/reports/crash_groups", server.base))
            .bearer_auth("read-a")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        g.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["fingerprint"].as_str().unwrap().to_owned(),
                    r["crashes"].as_i64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let resp = admin(
        reqwest::Method::POST,
        &format!("/v1/admin/crashes/{other}/merge"),
    )
    .body(json!({"into": fp}).to_string())
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(groups().await, [(fp.clone(), 2)]);
    let resp = admin(
        reqwest::Method::POST,
        &format!("/v1/admin/crashes/{fp}/merge"),
    )
    .body(json!({"into": other}).to_string())
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 400, "a cycle");
    let split: Value = admin(
        reqwest::Method::POST,
        &format!("/v1/admin/crashes/{fp}/split"),
    )
    .body(json!({"frame": "b.js"}).to_string())
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    // The split applies to the group as merged: the merged-in crash (the one with b.js) is split off.
    let mut now = groups().await;
    now.sort();
    let mut expected = vec![
        (fp.clone(), 1),
        (split["group"].as_str().unwrap().to_owned(), 1),
    ];
    expected.sort();
    assert_eq!(now, expected);
    let resp = admin(
        reqwest::Method::POST,
        &format!("/v1/admin/crashes/{other}/merge"),
    )
    .body(json!({"into": null}).to_string())
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let audit = admin(reqwest::Method::GET, "/v1/admin/audit")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        audit.contains("triage.merge") && audit.contains("triage.split"),
        "{audit}"
    );
    server.stop();
}
