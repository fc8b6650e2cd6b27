//! Handler tests through the real router, without a socket: a real pipeline and query engine over an
//! in-memory object store.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use object_store::memory::InMemory;
use serde_json::{Value, json};
use tacet_ingest::{IngestConfig, KeyStore, Pipeline};
use tacet_lake::Lake;
use tacet_model::{Clock, SystemClock, TenantId};
use tacet_privacy::{Privacy, TenantPolicy};
use tacet_query::{QueryConfig, QueryEngine};
use tacet_server::{AppState, ServerConfig, TenantEntry, Tenants, router};
use tacet_wal::{Wal, WalConfig};
use tower::ServiceExt;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";

struct Harness {
    app: axum::Router,
    state: AppState,
    ready: Arc<AtomicBool>,
    pipeline: Arc<Pipeline>,
    _dir: tempfile::TempDir,
}

fn harness(ingest: IngestConfig, http: ServerConfig) -> Harness {
    harness_with(ingest, http, TenantPolicy::default())
}

impl Harness {
    /// The same server as seen from another client address.
    fn app_for(&self, peer: &str) -> axum::Router {
        router(self.state.clone()).layer(MockConnectInfo(peer.parse::<SocketAddr>().unwrap()))
    }
}

/// Tenant a with `policy`, tenant b with the default one.
fn harness_with(ingest: IngestConfig, http: ServerConfig, policy: TenantPolicy) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(InMemory::new());
    let keys = KeyStore::open(&dir.path().join("keys"), clock.clone()).unwrap();
    let (wal, _) = Wal::open(&dir.path().join("wal"), WalConfig::default()).unwrap();
    let pipeline = Arc::new(Pipeline::new(
        Privacy::default(),
        keys,
        Lake::new(store.clone()),
        Arc::new(wal),
        clock,
        ingest,
    ));
    let query = Arc::new(QueryEngine::new(store, QueryConfig::default()).unwrap());
    query.set_fresh(Arc::new(tacet_server::PipelineFresh(pipeline.clone())));
    let tenant = |id: &str| TenantEntry {
        id: TenantId::new(id).unwrap(),
        policy: if id == "a" {
            policy.clone()
        } else {
            TenantPolicy::default()
        },
        ingest_key: format!("ik-{id}"),
        read_key: format!("rk-{id}"),
        reports_key: Some(format!("rpk-{id}")),
        admin_key: None,
        origins: if id == "b" {
            vec!["https://shop-b.example".to_owned()]
        } else {
            vec![]
        },
    };
    let state: AppState = tacet_server::Shared {
        pipeline: pipeline.clone(),
        query,
        tenants: Arc::new(Tenants::new(vec![tenant("a"), tenant("b")]).unwrap()),
        config: Arc::new(http.clone()),
        trusted_proxies: Arc::new(vec![]),
        ready: Arc::new(AtomicBool::new(true)),
        metrics: None,
        demo: None,
        steward: None,
        dashboard: Some(Arc::new(tacet_server::ui::Dashboard::new(
            &Default::default(),
            None,
            false,
            [7; 32],
            None,
        ))),
        limits: Arc::new(tacet_server::limits::RateLimits::new(&http)),
    }
    .into();
    let peer: SocketAddr = "203.0.113.50:5000".parse().unwrap();
    Harness {
        ready: state.ready.clone(),
        app: router(state.clone()).layer(MockConnectInfo(peer)),
        state,
        pipeline,
        _dir: dir,
    }
}

fn default_harness() -> Harness {
    harness(IngestConfig::default(), ServerConfig::default())
}

async fn send(
    app: &axum::Router,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, body)
}

fn post_events(key: Option<&str>, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post("/v1/events")
        .header(header::CONTENT_TYPE, content_type)
        .header(header::USER_AGENT, UA);
    if let Some(k) = key {
        b = b.header("x-tacet-key", k);
    }
    b.body(body.into()).unwrap()
}

fn sql(key: &str, q: &str) -> Request<Body> {
    Request::post("/v1/sql")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::from(q.to_owned()))
        .unwrap()
}

fn pageview(path: &str) -> Value {
    json!({"kind": "pageview", "url": format!("https://a.example{path}")})
}

#[tokio::test]
async fn keys_are_required_and_checked() {
    let h = default_harness();
    let (s, _, b) = send(
        &h.app,
        post_events(None, "application/json", pageview("/").to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(b["error"].as_str().unwrap().contains("X-Tacet-Key"), "{b}");
    let (s, _, b) = send(
        &h.app,
        post_events(Some("nope"), "application/json", pageview("/").to_string()),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str().unwrap()),
        (StatusCode::UNAUTHORIZED, "unknown ingest key")
    );
    // A read key cannot write, an ingest key cannot read.
    // Each is named as what it is.
    let (s, _, b) = send(
        &h.app,
        post_events(Some("rk-a"), "application/json", pageview("/").to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .starts_with("this is a secret read key, not an ingest key"),
        "{b}"
    );
    let (s, _, b) = send(&h.app, sql("ik-a", "SELECT 1")).await;
    assert_eq!(
        (s, b["error"].as_str().unwrap()),
        (
            StatusCode::FORBIDDEN,
            "this is the tenant's ingest key; this endpoint needs its read key"
        )
    );
    let report = Request::get("/v1/reports/pages")
        .header(header::AUTHORIZATION, "Bearer ik-a")
        .body(Body::empty())
        .unwrap();
    let (s, _, b) = send(&h.app, report).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(b["error"].as_str().unwrap().contains("ingest key"), "{b}");
    // The key may come as a query parameter (beacons and pixels cannot set headers).
    let req = Request::post("/v1/events?key=ik-a")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(pageview("/").to_string()))
        .unwrap();
    let (s, h2, b) = send(&h.app, req).await;
    assert_eq!((s, b["accepted"].as_u64()), (StatusCode::ACCEPTED, Some(1)));
    assert_eq!(h2.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(), "*");
    assert_eq!(h.pipeline.buffered(), 1);
}

#[tokio::test]
async fn bad_events_are_named_and_good_ones_in_the_same_batch_are_stored() {
    let h = default_harness();
    let batch = json!([
        pageview("/one"),
        {"kind": "pageview"},
        {"kind": "click", "url": "https://a.example/"},
        {"kind": "pageview", "url": 42},
        {"kind": "event", "name": "signup", "url": "https://a.example/", "props": {"plan": "pro"}},
        "not an object",
    ]);
    let (s, _, b) = send(
        &h.app,
        post_events(Some("ik-a"), "application/json", batch.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["accepted"], 2);
    let rejected: Vec<(u64, &str)> = b["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rejected,
        [(1, "url"), (2, "kind"), (3, "url"), (5, "(event)")]
    );
    assert_eq!(b["rejected"][0]["reason"], "required");
    assert!(
        b["rejected"][2]["reason"]
            .as_str()
            .unwrap()
            .contains("expected a string, got a number")
    );
    assert_eq!(h.pipeline.buffered(), 2);

    // NDJSON with one broken line: the other lines are stored.
    let nd = format!("{}\n{{broken\n{}\n", pageview("/x"), pageview("/y"));
    let (s, _, b) = send(
        &h.app,
        post_events(Some("ik-a"), "application/x-ndjson", nd),
    )
    .await;
    assert_eq!(
        (s, b["accepted"].as_u64()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some(2))
    );
    assert_eq!(b["rejected"][0]["index"], 1);
    assert!(
        b["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON")
    );
    assert_eq!(h.pipeline.buffered(), 4);
}

#[tokio::test]
async fn whole_body_problems_are_4xx_and_store_nothing() {
    let h = harness(
        IngestConfig::default(),
        ServerConfig {
            max_body_bytes: 10_000,
            max_decompressed_bytes: 100_000,
            ..ServerConfig::default()
        },
    );
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            post_events(Some("ik-a"), "application/json", "{\"kind\": \"pageview\","),
            StatusCode::BAD_REQUEST,
            "invalid JSON",
        ),
        (
            post_events(Some("ik-a"), "application/json", ""),
            StatusCode::BAD_REQUEST,
            "empty body",
        ),
        (
            post_events(
                Some("ik-a"),
                "application/json",
                format!("[{}]", vec![pageview("/").to_string(); 400].join(",")),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than 10000 bytes",
        ),
        (
            post_events(
                Some("ik-a"),
                "application/x-www-form-urlencoded",
                "kind=pageview",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type",
        ),
    ];
    for (req, status, reason) in cases {
        let (s, _, b) = send(&h.app, req).await;
        assert_eq!(s, status, "{b}");
        assert!(b["error"].as_str().unwrap().contains(reason), "{b}");
    }
    // A gzip bomb: 8 MB of spaces after one event is under 8 KB compressed (within the 10 KB body limit)
    // and must be stopped at the 100 KB decompression cap.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(pageview("/").to_string().as_bytes()).unwrap();
    gz.write_all(&vec![b' '; 8_000_000]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 10_000, "{}", bomb.len());
    let req = Request::post("/v1/events")
        .header("x-tacet-key", "ik-a")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(bomb))
        .unwrap();
    let (s, _, b) = send(&h.app, req).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(b["error"].as_str().unwrap().contains("decompressed"), "{b}");
    assert_eq!(h.pipeline.buffered(), 0);
}

#[tokio::test]
async fn a_full_buffer_answers_503_with_retry_after_then_recovers() {
    let h = harness(
        IngestConfig {
            max_buffered_events: 3,
            ..IngestConfig::default()
        },
        ServerConfig::default(),
    );
    let two = json!([pageview("/1"), pageview("/2")]).to_string();
    let (s, _, _) = send(
        &h.app,
        post_events(Some("ik-a"), "application/json", two.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, headers, b) = send(
        &h.app,
        post_events(Some("ik-a"), "application/json", two.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
    assert_eq!(h.pipeline.buffered(), 2);
    h.pipeline.flush().await;
    let (s, _, _) = send(&h.app, post_events(Some("ik-a"), "application/json", two)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn sql_and_reports_over_http() {
    let h = default_harness();
    let batch = json!([pageview("/"), pageview("/pricing"), {"kind": "crash", "url": "https://a.example/", "message": "boom"}]);
    send(
        &h.app,
        post_events(Some("ik-a"), "application/json", batch.to_string()),
    )
    .await;
    send(
        &h.app,
        post_events(
            Some("ik-b"),
            "application/json",
            json!([pageview("/b")]).to_string(),
        ),
    )
    .await;
    h.pipeline.flush().await;

    let (s, headers, b) = send(
        &h.app,
        sql(
            "rk-a",
            "SELECT kind, COUNT(*) AS n FROM events GROUP BY kind ORDER BY kind",
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b,
        json!([{"kind": "crash", "n": 1}, {"kind": "pageview", "n": 2}])
    );
    assert_eq!(headers.get("x-tacet-rows").unwrap(), "2");
    let req = Request::post("/v1/sql")
        .header(header::AUTHORIZATION, "Bearer rk-b")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"sql": "SELECT url_path, browser, os FROM events"}).to_string(),
        ))
        .unwrap();
    let (s, _, b) = send(&h.app, req).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::OK,
            json!([{"url_path": "/b", "browser": "Firefox", "os": "Linux"}])
        )
    );
    let req = Request::post("/v1/sql?format=csv")
        .header(header::AUTHORIZATION, "Bearer rk-a")
        .body(Body::from("SELECT COUNT(*) AS n FROM events"))
        .unwrap();
    let (_, _, b) = send(&h.app, req).await;
    assert_eq!(b, Value::String("n\n3\n".into()));

    let (s, _, b) = send(
        &h.app,
        sql(
            "rk-a",
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/'",
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, _, b) = send(&h.app, sql("rk-a", "SELECT nope FROM events")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["error"].as_str().unwrap().contains("nope"), "{b}");

    let report = |uri: &str| {
        Request::get(uri)
            .header(header::AUTHORIZATION, "Bearer rk-a")
            .body(Body::empty())
            .unwrap()
    };
    // One visitor is fewer than the default k of 5: the day is there, its numbers withheld.
    let (s, _, b) = send(&h.app, report("/v1/reports/daily")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b.as_array().unwrap().len(), 1, "{b}");
    let today = b.as_array().unwrap().last().unwrap();
    assert_eq!(today["pageviews"], Value::Null);
    assert_eq!(today["suppressed"], "fewer than 5 visitors");
    let (s, _, _) = send(&h.app, report("/v1/reports/nope")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, b) = send(&h.app, report("/v1/reports/daily?from=yesterday")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b["error"].as_str().unwrap().contains("YYYY-MM-DD"));
}

#[tokio::test]
async fn not_ready_while_replaying() {
    let h = default_harness();
    h.ready.store(false, Ordering::SeqCst);
    let req = Request::get("/readyz").body(Body::empty()).unwrap();
    let (s, headers, _) = send(&h.app, req).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
    let (s, _, b) = send(
        &h.app,
        post_events(Some("ik-a"), "application/json", pageview("/").to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(b["error"].as_str().unwrap().contains("replaying"), "{b}");
    h.ready.store(true, Ordering::SeqCst);
    let (s, _, _) = send(&h.app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn dnt_and_gpc_headers_reach_the_policy_and_the_answer_says_what_happened() {
    let h = default_harness();
    for (header_name, value, anonymised) in [
        ("dnt", "0", None),
        ("dnt", "1", Some(1)),
        ("sec-gpc", "1", Some(1)),
        ("sec-gpc", "yes", None),
    ] {
        let mut req = post_events(Some("ik-a"), "application/json", pageview("/").to_string());
        req.headers_mut()
            .insert(header_name, value.parse().unwrap());
        let (s, _, b) = send(&h.app, req).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        assert_eq!(
            b["anonymised"].as_u64(),
            anonymised,
            "{header_name}: {value}: {b}"
        );
    }
    // A crawler's events are taken (no retry storm) but not stored, and the answer says so.
    let mut req = post_events(Some("ik-a"), "application/json", pageview("/").to_string());
    req.headers_mut()
        .insert(header::USER_AGENT, "curl/8.5.0".parse().unwrap());
    let (s, _, b) = send(&h.app, req).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::ACCEPTED,
            json!({"accepted": 1, "dropped": {"bot": 1}, "rejected": []})
        )
    );
    assert_eq!(h.pipeline.buffered(), 4);
}

#[tokio::test]
async fn the_tracker_is_small_cacheable_and_its_integrity_hash_is_published() {
    let h = default_harness();
    // The size budget: 2 KB gzipped.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(tacet_server::TRACKER.as_bytes()).unwrap();
    let gzipped = gz.finish().unwrap().len();
    assert!(
        gzipped <= 2048,
        "t.js is {gzipped} bytes gzipped; the budget is 2048"
    );
    // The README publishes the snippet of exactly this script: its version and its integrity hash.
    let readme = include_str!("../../../../README.md");
    let snippet = tacet_server::tracker_snippet("https://tacet.example.com", "demo-ingest-key");
    assert!(
        readme.contains(&snippet),
        "README.md must show the snippet of the current t.js:\n{snippet}"
    );
    // Every released version is listed, and every one but the current is archived under its version.
    let listed: Vec<&str> = tacet_server::VERSIONS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    let current = tacet_server::tracker_version();
    assert!(
        listed.contains(&current.as_str()),
        "assets/tracker/VERSIONS must list the current t.js ({current}); it says how to release a new one"
    );
    let archived: Vec<String> = tacet_server::ARCHIVED
        .iter()
        .map(|s| tacet_server::tracker_version_of(s))
        .collect();
    for v in listed.iter().filter(|v| **v != current) {
        assert!(
            archived.iter().any(|a| a == v),
            "tracker version {v} is released but not archived in ARCHIVED (web.rs)"
        );
    }

    let req = |encoding: Option<&str>, etag: Option<&str>| {
        let mut b = Request::get("/t.js");
        if let Some(e) = encoding {
            b = b.header(header::ACCEPT_ENCODING, e);
        }
        if let Some(e) = etag {
            b = b.header(header::IF_NONE_MATCH, e);
        }
        b.body(Body::empty()).unwrap()
    };
    let resp = h
        .app
        .clone()
        .oneshot(req(Some("gzip, br"), None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let headers = resp.headers().clone();
    assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=300");
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(body.len(), gzipped);
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let (s, plain_headers, _) = send(&h.app, req(None, None)).await;
    assert_eq!(
        (s, plain_headers.get(header::CONTENT_ENCODING)),
        (StatusCode::OK, None)
    );
    let resp = h.app.clone().oneshot(req(None, Some(&etag))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    // Pinned: every version a snippet may name answers its own script, for a year; its integrity holds.
    for script in
        std::iter::once(tacet_server::TRACKER).chain(tacet_server::ARCHIVED.iter().copied())
    {
        let uri = format!("/t.js?v={}", tacet_server::tracker_version_of(script));
        let resp = h
            .app
            .clone()
            .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        assert_eq!(
            resp.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            tacet_server::integrity_of(std::str::from_utf8(&body).unwrap()),
            tacet_server::integrity_of(script),
            "{uri}"
        );
    }
    let (s, _, b) = send(
        &h.app,
        Request::get("/t.js?v=0123456789abcdef")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains(&format!("/t.js?v={current}")),
        "{b}"
    );
}

#[tokio::test]
async fn the_pixel_counts_a_page_view_without_javascript() {
    let h = default_harness();
    let get = |uri: &str, referer: Option<&str>| {
        let mut b = Request::get(uri).header(header::USER_AGENT, UA);
        if let Some(r) = referer {
            b = b.header(header::REFERER, r);
        }
        b.body(Body::empty()).unwrap()
    };
    let resp = h
        .app
        .clone()
        .oneshot(get("/v1/pixel.gif?key=ik-a&url=https%3A%2F%2Fa.example%2Fnojs&ref=https%3A%2F%2Fwww.bing.com%2F", None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "image/gif");
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(body.starts_with(b"GIF89a"));
    // The page from the Referer header when there is no url parameter.
    let (s, _, _) = send(
        &h.app,
        get(
            "/v1/pixel.gif?key=ik-a",
            Some("https://a.example/from-referer"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, b) = send(&h.app, get("/v1/pixel.gif?key=ik-a", None)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b["error"].as_str().unwrap().contains("Referer"), "{b}");
    let (s, _, _) = send(&h.app, get("/v1/pixel.gif?key=nope&url=x", None)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    h.pipeline.flush().await;
    let (s, _, rows) = send(
        &h.app,
        sql(
            "rk-a",
            "SELECT url_path, referrer_class, referrer_source FROM events ORDER BY url_path",
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{rows}");
    assert_eq!(
        rows,
        json!([
            {"url_path": "/from-referer", "referrer_class": "direct", "referrer_source": null},
            {"url_path": "/nojs", "referrer_class": "search", "referrer_source": "Bing"}
        ])
    );
}

#[tokio::test]
async fn a_tenant_with_origins_refuses_other_pages() {
    let h = default_harness();
    let post = |key: &str, origin: Option<&str>| {
        let mut req = post_events(Some(key), "text/plain", pageview("/").to_string());
        if let Some(o) = origin {
            req.headers_mut().insert(header::ORIGIN, o.parse().unwrap());
        }
        req
    };
    // b lists https://shop-b.example: that origin is echoed, another is refused, no Origin is allowed.
    let (s, headers, _) = send(&h.app, post("ik-b", Some("https://shop-b.example"))).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://shop-b.example"
    );
    let (s, _, b) = send(&h.app, post("ik-b", Some("https://evil.example"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("\"https://evil.example\" may not post"),
        "{b}"
    );
    let (s, _, _) = send(&h.app, post("ik-b", None)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    // a lists none: any origin, answered with `*`.
    let (s, headers, _) = send(&h.app, post("ik-a", Some("https://anywhere.example"))).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert_eq!(h.pipeline.buffered(), 3);
    // No demo page outside the embedded configuration.
    let (s, _, _) = send(&h.app, Request::get("/demo").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn reports_take_typed_parameters_and_answer_in_every_format() {
    let h = default_harness();
    for path in ["/a", "/a", "/b"] {
        let (s, _, _) = send(
            &h.app,
            post_events(Some("ik-a"), "application/json", pageview(path).to_string()),
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    h.pipeline.flush().await;
    let get = |uri: &str, accept: Option<&str>| {
        let mut b = Request::get(uri).header(header::AUTHORIZATION, "Bearer rk-a");
        if let Some(a) = accept {
            b = b.header(header::ACCEPT, a);
        }
        b.body(Body::empty()).unwrap()
    };
    // One visitor: below the default k = 5, so the pages report leaves both rows out and says so, and the
    // overview withholds its numbers (privacy.rs checks every format).
    let (s, headers, body) = send(&h.app, get("/v1/reports/pages", None)).await;
    assert_eq!((s, body), (StatusCode::OK, json!([])));
    assert_eq!(headers["x-tacet-suppressed"], "2");
    let (s, headers, body) = send(&h.app, get("/v1/reports/overview", None)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body[0]["pageviews"], Value::Null);
    assert_eq!(body[0]["suppressed"], "fewer than 5 visitors");
    assert_eq!(headers["x-tacet-suppressed"], "1");
    // Where the days came from: today is open, so raw events (tacet_query::source); a filter with rollup
    // rows of its own plans the same days and names itself; a goal filter (none) or two filters read raw.
    assert_eq!(
        headers["x-tacet-source"],
        "raw; rollup_days=0; expired_days=0; raw_days=1; why=open:1"
    );
    let (_, headers, _) = send(&h.app, get("/v1/reports/pages?page=/a", None)).await;
    assert_eq!(
        headers["x-tacet-source"],
        "raw; filter=page; rollup_days=0; expired_days=0; raw_days=1; why=open:1"
    );
    for filtered in ["pages?event=signup", "pages?page=/a&country=DE"] {
        let (_, headers, _) = send(&h.app, get(&format!("/v1/reports/{filtered}"), None)).await;
        assert_eq!(
            headers["x-tacet-source"],
            "raw; rollup_days=0; expired_days=0; raw_days=0; why=filtered",
            "{filtered}"
        );
    }
    let (_, headers, _) = send(&h.app, get("/v1/reports/crash_groups", None)).await;
    assert_eq!(
        headers["x-tacet-source"],
        "raw; rollup_days=0; expired_days=0; raw_days=0; why=no-rollup-path"
    );
    for (uri, accept, content_type) in [
        (
            "/v1/reports/overview?format=arrow",
            None,
            "application/vnd.apache.arrow.stream",
        ),
        (
            "/v1/reports/overview",
            Some("application/vnd.apache.parquet"),
            "application/vnd.apache.parquet",
        ),
        (
            "/v1/reports/overview?format=csv",
            Some("application/vnd.apache.parquet"),
            "text/csv; charset=utf-8",
        ),
    ] {
        let resp = h.app.clone().oneshot(get(uri, accept)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], content_type, "{uri}");
    }
    for (uri, expected) in [
        ("/v1/reports/pages?limit=0", "limit"),
        ("/v1/reports/timeseries?interval=week", "interval"),
        (
            "/v1/reports/pages?colour=red",
            "unknown report parameter \"colour\"",
        ),
        ("/v1/reports/crash_trend", "needs the parameter fingerprint"),
        ("/v1/reports/pages?format=xml", "format \"xml\""),
    ] {
        let (s, _, b) = send(&h.app, get(uri, None)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {b}");
        assert!(
            b["error"].as_str().unwrap().contains(expected),
            "{uri}: {b}"
        );
    }
}

#[tokio::test]
async fn accepted_events_are_queryable_before_the_flush_and_never_twice() {
    let h = default_harness();
    let count = || {
        sql(
            "rk-a",
            "SELECT kind, COUNT(*) AS n FROM events GROUP BY kind ORDER BY kind",
        )
    };
    let batch = json!([pageview("/x"), pageview("/y"), {"kind": "event", "name": "e", "url": "https://a.example/"}]);
    let (s, _, _) = send(
        &h.app,
        post_events(Some("ik-a"), "application/json", batch.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let expected = json!([{"kind": "event", "n": 1}, {"kind": "pageview", "n": 2}]);
    // Not flushed yet: from the buffer.
    assert_eq!(h.pipeline.buffered(), 3);
    assert_eq!(send(&h.app, count()).await.2, expected);
    // Flushed: from Parquet, and not from the buffer as well.
    h.pipeline.flush().await;
    assert_eq!(h.pipeline.buffered(), 0);
    assert_eq!(send(&h.app, count()).await.2, expected);
    // Both at once, and the other tenant sees none of it.
    let (s, _, _) = send(
        &h.app,
        post_events(Some("ik-a"), "application/json", pageview("/z").to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(
        send(&h.app, count()).await.2,
        json!([{"kind": "event", "n": 1}, {"kind": "pageview", "n": 3}])
    );
    let (_, _, other) = send(&h.app, sql("rk-b", "SELECT COUNT(*) AS n FROM events")).await;
    assert_eq!(other, json!([{"n": 0}]));
    // Map access with a filter, over rows from both halves (DataFusion 55 once got this wrong).
    let batch = json!([{"kind": "event", "name": "e2", "url": "https://a.example/", "props": {"plan": "free"}}]);
    let (s, _, _) = send(
        &h.app,
        post_events(Some("ik-a"), "application/json", batch.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (_, _, props) = send(
        &h.app,
        sql(
            "rk-a",
            "SELECT name, props['plan'] AS plan FROM events WHERE kind = 'event' ORDER BY name",
        ),
    )
    .await;
    assert_eq!(
        props,
        json!([{"name": "e", "plan": null}, {"name": "e2", "plan": "free"}])
    );
    // Reports see the buffer too: /x and /y from Parquet, /z from the buffer, each one visitor, so three
    // rows held back by the k-threshold.
    let (_, headers, _) = send(
        &h.app,
        Request::get("/v1/reports/pages")
            .header(header::AUTHORIZATION, "Bearer rk-a")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(headers["x-tacet-suppressed"], "3");
}

#[tokio::test]
async fn a_burst_over_the_limit_gets_429_while_another_tenant_is_unaffected() {
    let http = ServerConfig {
        requests_per_second_per_key: 5,
        events_per_second_per_tenant: 20,
        ..ServerConfig::default()
    };
    let h = harness(IngestConfig::default(), http);
    let one = || pageview("/").to_string();
    // Tenant a's key: a burst of 10 (twice the rate) passes, the rest of the flood is refused.
    let mut codes = Vec::new();
    let mut retry_after = None;
    for _ in 0..14 {
        let (s, headers, _) =
            send(&h.app, post_events(Some("ik-a"), "application/json", one())).await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            retry_after = headers.get(header::RETRY_AFTER).cloned();
        }
        codes.push(s.as_u16());
    }
    assert_eq!(codes.iter().filter(|&&c| c == 202).count(), 10, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 429).count(), 4, "{codes:?}");
    assert_eq!(retry_after.unwrap(), "1");
    // Tenant b, from the same address, is not affected.
    let (s, _, b) = send(&h.app, post_events(Some("ik-b"), "application/json", one())).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");

    // Tenant b's event quota (20 a second, bursts of 40): a batch of 41 can never pass; 30 then 30 is
    // one batch too many, and nothing of the refused batch is stored.
    let batch = |n: usize| {
        let items: Vec<Value> = (0..n).map(|i| pageview(&format!("/q{i}"))).collect();
        Value::Array(items).to_string()
    };
    let (s, _, b) = send(
        &h.app,
        post_events(Some("ik-b"), "application/json", batch(41)),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    let (s, _, _) = send(
        &h.app,
        post_events(Some("ik-b"), "application/json", batch(30)),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, headers, b) = send(
        &h.app,
        post_events(Some("ik-b"), "application/json", batch(30)),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert!(b["error"].as_str().unwrap().contains("quota"), "{b}");
    assert!(headers.contains_key(header::RETRY_AFTER));
    h.pipeline.flush().await;
    let (_, _, rows) = send(&h.app, sql("rk-b", "SELECT COUNT(*) AS n FROM events")).await;
    assert_eq!(rows, json!([{"n": 31}]));
}

#[tokio::test]
async fn hostile_bodies_get_their_4xx() {
    let h = default_harness();
    // Deep nesting: the array is read item by item, and its one item stops serde_json at 128 levels: that
    // item is refused, nothing is stored.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let (s, _, b) = send(&h.app, post_events(Some("ik-a"), "application/json", deep)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["accepted"], json!(0));
    assert!(
        b["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("recursion limit"),
        "{b}"
    );
    // A deep single object, the same.
    let deep_object = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let (s, _, b) = send(
        &h.app,
        post_events(Some("ik-a"), "application/json", deep_object),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let deep_props = format!(
        r#"{{"kind":"event","name":"x","url":"https://a.example/","props":{{"a":{}1{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let (s, _, b) = send(
        &h.app,
        post_events(Some("ik-a"), "application/json", deep_props),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["accepted"], json!(0));
    // A long string: the event is refused with the field named, nothing stored.
    let long =
        json!({"kind": "pageview", "url": format!("https://a.example/{}", "x".repeat(100_000))});
    let (s, _, b) = send(
        &h.app,
        post_events(Some("ik-a"), "application/json", long.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["rejected"][0]["field"], "url");
    // An event over max_event_bytes (512 KiB) is refused by its size before it is parsed.
    let huge =
        json!({"kind": "pageview", "url": format!("https://a.example/{}", "x".repeat(1 << 20))});
    let (s, _, b) = send(
        &h.app,
        post_events(Some("ik-a"), "application/json", huge.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("at most 524288"),
        "{b}"
    );
    // Invalid UTF-8.
    let mut bad = br#"{"kind":"pageview","url":"https://a.example/"#.to_vec();
    bad.extend_from_slice(&[0xff, 0xfe]);
    bad.extend_from_slice(br#""}"#);
    let (s, _, b) = send(&h.app, post_events(Some("ik-a"), "application/json", bad)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    // Too many properties on one event.
    let props: serde_json::Map<String, Value> =
        (0..100).map(|i| (format!("k{i}"), json!(i))).collect();
    let many = json!({"kind": "event", "name": "x", "url": "https://a.example/", "props": props});
    let (s, _, b) = send(
        &h.app,
        post_events(Some("ik-a"), "application/json", many.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["rejected"][0]["field"], "props");
    h.pipeline.flush().await;
    let (_, _, rows) = send(&h.app, sql("rk-a", "SELECT COUNT(*) AS n FROM events")).await;
    assert_eq!(rows, json!([{"n": 0}]));
}

/// A dashboard request, with the session cookie if any.
fn ui(method: &str, uri: &str, cookie: Option<&str>, form: Option<&str>) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "tacet.example");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    match form {
        Some(f) => b
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(f.to_owned()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

async fn html(
    app: &axum::Router,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

/// The value of the first `name="…" value="…"` input of a page.
fn input_value(page: &str, name: &str) -> String {
    let at = page
        .find(&format!(r#"name="{name}" value=""#))
        .unwrap_or_else(|| panic!("no input {name} in {page}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The `data-value` of the headline metric `metric`.
fn metric(page: &str, metric: &str) -> String {
    let at = page
        .find(&format!(r#"data-metric="{metric}""#))
        .unwrap_or_else(|| panic!("no metric {metric}"));
    let rest = &page[at..];
    let v = &rest[rest.find("data-value=\"").unwrap() + 12..];
    v[..v.find('"').unwrap()].to_owned()
}

/// Every address a page refers to (src, href, action), for the no-third-party-host check.
fn references(page: &str) -> Vec<String> {
    let mut out = vec![];
    for attr in ["src=\"", "href=\"", "action=\""] {
        let mut rest = page;
        while let Some(i) = rest.find(attr) {
            let v = &rest[i + attr.len()..];
            let end = v.find('"').unwrap();
            out.push(v[..end].to_owned());
            rest = &v[end..];
        }
    }
    out
}

#[tokio::test]
async fn the_dashboard_logs_in_with_the_read_key_shows_the_api_numbers_and_logs_out() {
    let h = default_harness();
    let crash = json!({"kind": "crash", "url": "https://a.example/cart", "error_type": "TypeError",
        "message": "cart failed for alice@example.com", "stack": ["at pay (app.js:10:5)"]});
    // Five browsers (five visitors, k = 5) on the home page; one of them also saw /pricing and crashed.
    for v in 0..5 {
        let batch = if v == 0 {
            json!([pageview("/"), pageview("/pricing"), crash])
        } else {
            json!([pageview("/")])
        };
        let req = Request::post("/v1/events")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, format!("{UA} Probe/{v}"))
            .header("x-tacet-key", "ik-a")
            .body(Body::from(batch.to_string()))
            .unwrap();
        assert_eq!(send(&h.app, req).await.0, StatusCode::ACCEPTED);
    }
    send(
        &h.app,
        post_events(
            Some("ik-b"),
            "application/json",
            json!([pageview("/b")]).to_string(),
        ),
    )
    .await;

    // Without a session every page sends the browser to the login form, remembering where it was going.
    for path in [
        "/ui/usage?from=2020-01-01",
        "/ui/realtime",
        "/ui/crashes",
        "/ui/crashes/0123456789abcdef",
    ] {
        let (s, hd, _) = html(&h.app, ui("GET", path, None, None)).await;
        assert_eq!(s, StatusCode::SEE_OTHER, "{path}");
        let to = hd[header::LOCATION].to_str().unwrap();
        assert!(to.starts_with("/ui/login?next=%2Fui%2F"), "{to}");
    }
    let (s, hd, page) = html(
        &h.app,
        ui("GET", "/ui/login?next=%2Fui%2Fcrashes", None, None),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        hd[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    assert!(
        page.contains(r#"type="password""#) && page.contains(r#"value="/ui/crashes""#),
        "{page}"
    );

    // Wrong keys are refused with a reason; the ingest key is public, so never a login.
    for (key, status, says) in [
        ("nope", StatusCode::UNAUTHORIZED, "not a read key"),
        (
            "ik-a",
            StatusCode::FORBIDDEN,
            "That is the tenant&#39;s ingest key; the dashboard takes its read key.",
        ),
        ("", StatusCode::BAD_REQUEST, "Enter your tenant"),
    ] {
        let (s, hd, page) = html(
            &h.app,
            ui("POST", "/ui/login", None, Some(&format!("key={key}"))),
        )
        .await;
        assert_eq!(s, status, "{key}: {page}");
        assert!(page.contains(says), "{page}");
        assert!(hd.get(header::SET_COOKIE).is_none());
    }
    // A login posted from another site is refused.
    let mut req = ui("POST", "/ui/login", None, Some("key=rk-a"));
    req.headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_eq!(html(&h.app, req).await.0, StatusCode::FORBIDDEN);

    // The read key opens a session: an HttpOnly, SameSite=Strict cookie (no Secure without TLS) holding a
    // random token, never the key.
    let (s, hd, _) = html(
        &h.app,
        ui(
            "POST",
            "/ui/login",
            None,
            Some("key=rk-a&next=%2Fui%2Fcrashes"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(hd[header::LOCATION], "/ui/crashes");
    let set = hd[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set.ends_with("; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200"),
        "{set}"
    );
    assert!(!set.contains("rk-a") && !set.contains("Secure"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    // A signed token: nonce, tenant, the key's keyed hash (never the key), times, MAC.
    let token = cookie.strip_prefix("tacet_session=").unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 6, "{token}");
    assert_eq!(
        (parts[0].len(), parts[1], parts[2].len(), parts[5].len()),
        (32, "a", 64, 64)
    );
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.')
    );
    // An open redirect is not: the next page must be the dashboard's.
    let (_, hd, _) = html(
        &h.app,
        ui(
            "POST",
            "/ui/login",
            None,
            Some("key=rk-a&next=https%3A%2F%2Fevil.example"),
        ),
    )
    .await;
    assert_eq!(hd[header::LOCATION], "/ui/usage");

    // The usage page shows what the report API answers, for this tenant only.
    let (s, hd, page) = html(&h.app, ui("GET", "/ui/usage", Some(&cookie), None)).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(hd[header::CACHE_CONTROL], "no-store");
    assert_eq!(hd[header::X_FRAME_OPTIONS], "DENY");
    let api = |uri: &str| {
        Request::get(uri)
            .header(header::AUTHORIZATION, "Bearer rk-a")
            .body(Body::empty())
            .unwrap()
    };
    let (_, _, overview) = send(&h.app, api("/v1/reports/overview")).await;
    for m in [
        "visitors",
        "visits",
        "pageviews",
        "bounce_rate",
        "visit_seconds",
    ] {
        assert_eq!(
            metric(&page, m),
            overview[0][m].to_string().trim_matches('"'),
            "{m}"
        );
    }
    assert_eq!(metric(&page, "pageviews"), "6");
    // One visitor is below the default k of 5: the lists say their rows are hidden, never silently empty.
    assert!(page.contains(r#"data-report="pages""#));
    assert!(
        page.contains("1 row hidden: each describes fewer than 5 visitors"),
        "{page}"
    );
    // Nothing from anywhere else: every reference is a path of this server.
    for r in references(&page) {
        assert!(
            r.starts_with('/') && !r.starts_with("//") || r.starts_with('#'),
            "{r}"
        );
    }
    // Another tenant's session sees its own numbers.
    let (_, hd, _) = html(&h.app, ui("POST", "/ui/login", None, Some("key=rk-b"))).await;
    let cookie_b = hd[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    // Its one visitor is fewer than k: the headline says so instead of a number.
    let (_, _, page_b) = html(&h.app, ui("GET", "/ui/usage", Some(&cookie_b), None)).await;
    assert_eq!(metric(&page_b, "pageviews"), "");
    assert!(page_b.contains("fewer than 5"), "{page_b}");
    assert!(
        page_b.contains(">b</span>"),
        "the tenant is named in the header"
    );

    // Crash triage: a mark needs the session's form token; with it, the group is resolved.
    let csrf = input_value(&page, "csrf");
    let fp = "0123456789abcdef";
    let (s, _, _) = html(
        &h.app,
        ui(
            "POST",
            &format!("/ui/crashes/{fp}"),
            Some(&cookie),
            Some("state=resolved"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, hd, _) = html(
        &h.app,
        ui(
            "POST",
            &format!("/ui/crashes/{fp}"),
            Some(&cookie),
            Some(&format!("state=resolved&csrf={csrf}")),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(hd[header::LOCATION], format!("/ui/crashes/{fp}"));
    let (s, _, _) = html(
        &h.app,
        ui("GET", "/ui/crashes/not-a-fingerprint", Some(&cookie), None),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, page) = html(
        &h.app,
        ui("GET", "/ui/crashes?state=bogus", Some(&cookie), None),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{page}");
    // The chosen tab stays chosen through the range presets and the filter form.
    let (_, _, page) = html(
        &h.app,
        ui("GET", "/ui/crashes?state=resolved", Some(&cookie), None),
    )
    .await;
    assert!(
        page.contains(r#"<input type="hidden" name="state" value="resolved">"#),
        "{page}"
    );
    assert!(page.contains("state=resolved&amp;to="), "{page}");
    // The crash group has one affected visitor: crash triage has its own threshold (default 1), so it is
    // listed, its message scrubbed.
    let (s, _, page) = html(
        &h.app,
        ui("GET", "/ui/crashes?state=all", Some(&cookie), None),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        !page.contains("row hidden") && page.contains("TypeError"),
        "{page}"
    );
    assert!(!page.contains("alice@example.com"));

    // Logout needs the form token too, then ends the session on the server: the old cookie opens nothing.
    let (s, _, _) = html(&h.app, ui("POST", "/ui/logout", Some(&cookie), Some(""))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, hd, _) = html(
        &h.app,
        ui(
            "POST",
            "/ui/logout",
            Some(&cookie),
            Some(&format!("csrf={csrf}")),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(hd[header::LOCATION], "/ui/login");
    assert!(
        hd[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (s, hd, _) = html(&h.app, ui("GET", "/ui/usage", Some(&cookie), None)).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(
        hd[header::LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/ui/login")
    );
    // The other session is untouched.
    assert_eq!(
        html(&h.app, ui("GET", "/ui/usage", Some(&cookie_b), None))
            .await
            .0,
        StatusCode::OK
    );
}

/// Posts `events` as the visitor at 198.51.100.(10 + n).
async fn visitor(h: &Harness, n: usize, events: Value) {
    let (s, _, b) = send(
        &h.app_for(&format!("198.51.100.{}:4000", 10 + n)),
        post_events(Some("ik-a"), "application/json", events.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
}

/// Logs in to the dashboard with the read key; the session cookie.
async fn login(h: &Harness) -> String {
    let (_, headers, _) = html(&h.app, ui("POST", "/ui/login", None, Some("key=rk-a"))).await;
    headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

mod admission;
mod connections;
mod crashes;
mod goals;
mod order;
mod privacy;
mod realtime;
mod switch;
