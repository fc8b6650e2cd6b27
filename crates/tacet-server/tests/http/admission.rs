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
