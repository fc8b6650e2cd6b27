//! One admission path for every door: the pixel gets the same origin check and request limits as
//! `POST /v1/events`.

use super::*;

fn pixel(tenant: &str, referer: Option<&str>) -> Request<Body> {
    let mut b = Request::get(format!(
        "/v1/pixel.gif?key=ik-{tenant}&url=https%3A%2F%2Fshop-{tenant}.example%2Fp"
    ))
    .header(header::USER_AGENT, UA);
    if let Some(r) = referer {
        b = b.header(header::REFERER, r);
    }
    b.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn the_pixel_checks_the_tenant_s_origins_like_a_post() {
    let h = default_harness();
    // Tenant b allows only https://shop-b.example: an image on another site is refused, as a POST is.
    let (s, _, b) = send(&h.app, pixel("b", Some("https://evil.example/page"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("https://evil.example"),
        "{b}"
    );
    let mut req = pixel("b", None);
    req.headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_eq!(send(&h.app, req).await.0, StatusCode::FORBIDDEN);
    // From its own pages (the Referer's origin), and without any page (a server), it counts.
    let (s, _, _) = send(
        &h.app,
        pixel("b", Some("https://shop-b.example/checkout?x=1")),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(send(&h.app, pixel("b", None)).await.0, StatusCode::OK);
    h.pipeline.flush().await;
    let (_, _, rows) = send(&h.app, sql("rk-b", "SELECT COUNT(*) AS n FROM events")).await;
    assert_eq!(rows, json!([{"n": 2}]));
}

#[tokio::test]
async fn the_pixel_is_rate_limited_like_a_post_and_another_tenant_is_unaffected() {
    let http = ServerConfig {
        requests_per_second_per_key: 5,
        ..ServerConfig::default()
    };
    let h = harness(IngestConfig::default(), http);
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..40 {
        let (s, headers, b) = send(&h.app, pixel("a", None)).await;
        match s {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                assert!(headers.contains_key(header::RETRY_AFTER), "{b}");
                assert!(b["error"].as_str().unwrap().contains("ingest key"), "{b}");
            }
            other => panic!("{other}: {b}"),
        }
    }
    assert!(limited >= 20 && ok >= 5, "{ok} taken, {limited} limited");
    // Tenant b's pixel is served meanwhile.
    let (s, _, _) = send(&h.app, pixel("b", Some("https://shop-b.example/"))).await;
    assert_eq!(s, StatusCode::OK);
    // Only what was answered 200 is stored.
    h.pipeline.flush().await;
    let (_, _, rows) = send(&h.app, sql("rk-a", "SELECT COUNT(*) AS n FROM events")).await;
    assert_eq!(rows, json!([{"n": ok}]));
}

#[tokio::test]
async fn one_client_is_limited_while_another_is_served() {
    let http = ServerConfig {
        requests_per_second_per_client: 5,
        ..ServerConfig::default()
    };
    let h = harness(IngestConfig::default(), http);
    let one = || pageview("/").to_string();
    let mut codes = Vec::new();
    let mut last = Value::Null;
    for _ in 0..14 {
        let (s, _, b) = send(&h.app, post_events(Some("ik-a"), "application/json", one())).await;
        codes.push(s.as_u16());
        if s == StatusCode::TOO_MANY_REQUESTS {
            last = b;
        }
    }
    assert_eq!(codes.iter().filter(|&&c| c == 202).count(), 10, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 429).count(), 4, "{codes:?}");
    assert!(
        last["error"].as_str().unwrap().contains("this address"),
        "{last}"
    );
    // Another address with the same key, and the pixel from it, are served.
    let other = h.app_for("198.51.100.7:4000");
    let (s, _, b) = send(&other, post_events(Some("ik-a"), "application/json", one())).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(send(&other, pixel("a", None)).await.0, StatusCode::OK);
    // The limited address is refused at the pixel too.
    assert_eq!(
        send(&h.app, pixel("a", None)).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

const DAY_MS: i64 = 86_400_000;

#[tokio::test]
async fn events_outside_the_accept_window_are_refused_one_by_one_and_open_no_files() {
    let h = default_harness();
    let now = now_ms();
    // 3,000 events, one a day back from now: the 7-day window keeps the first days, the rest are refused
    // each with its reason; one from the future too.
    let mut items: Vec<Value> = (0..3000)
        .map(|i| json!({"kind": "pageview", "url": format!("https://a.example/d{i}"), "ts": now - i * DAY_MS}))
        .collect();
    items.push(json!({"kind": "pageview", "url": "https://a.example/f", "ts": now + 3_600_000}));
    let (s, _, b) = send(
        &h.app,
        post_events(
            Some("ik-a"),
            "application/json",
            Value::Array(items).to_string(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let rejected = b["rejected"].as_array().unwrap();
    // Days 0..=6 are inside 7 days (day 7 is exactly on the edge: out, a few ms later).
    assert_eq!(b["accepted"], json!(7), "{}", b["error"]);
    assert_eq!(rejected.len(), 2994);
    assert!(rejected.iter().all(|r| r["field"] == "ts"));
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("accept_past"),
        "{}",
        rejected[0]
    );
    assert!(
        rejected[2993]["reason"]
            .as_str()
            .unwrap()
            .contains("accept_future"),
        "{}",
        rejected[2993]
    );
    let summary = h.pipeline.flush().await;
    assert_eq!(summary.events, 7);
    assert!(summary.files <= 8, "{summary:?}");
}

#[tokio::test]
async fn a_request_that_would_open_too_many_partitions_is_refused_whole() {
    let ingest = IngestConfig {
        max_partitions_per_tenant: 10,
        ..IngestConfig::default()
    };
    let policy = TenantPolicy {
        accept_past: std::time::Duration::from_secs(60 * 86_400),
        ..TenantPolicy::default()
    };
    let h = harness_with(ingest, ServerConfig::default(), policy);
    let now = now_ms();
    let days = |n: i64, from: i64| {
        let items: Vec<Value> = (from..from + n)
            .map(|i| json!({"kind": "pageview", "url": "https://a.example/", "ts": now - i * DAY_MS}))
            .collect();
        Value::Array(items).to_string()
    };
    // 20 days of one kind are 20 partitions: refused whole, with Retry-After, nothing stored.
    let (s, headers, b) = send(
        &h.app,
        post_events(Some("ik-a"), "application/json", days(20, 0)),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("max_partitions_per_tenant"),
        "{b}"
    );
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert_eq!(h.pipeline.buffered(), 0);
    // Ten pass; the next new day waits for a flush, after which it passes.
    let (s, _, b) = send(
        &h.app,
        post_events(Some("ik-a"), "application/json", days(10, 0)),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let (s, _, _) = send(
        &h.app,
        post_events(Some("ik-a"), "application/json", days(1, 30)),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    // Days already open take more events.
    let (s, _, _) = send(
        &h.app,
        post_events(Some("ik-a"), "application/json", days(3, 0)),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    // Another tenant is not affected.
    let (s, _, _) = send(
        &h.app,
        post_events(Some("ik-b"), "application/json", pageview("/").to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(h.pipeline.flush().await.files, 11);
    let (s, _, _) = send(
        &h.app,
        post_events(Some("ik-a"), "application/json", days(1, 30)),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
}
