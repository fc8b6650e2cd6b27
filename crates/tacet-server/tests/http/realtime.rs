//! The realtime page: visitors of the last 5 minutes, and the pages and sources they are on, with k.

use super::*;

#[tokio::test]
async fn realtime_shows_visitors_now_and_their_pages_and_sources() {
    let h = default_harness();
    for n in 0..6 {
        visitor(
            &h,
            n,
            json!([{"kind": "pageview", "url": "https://a.example/now", "referrer": "https://www.google.com/"}]),
        )
        .await;
    }
    // Not flushed: the page sees the buffer.
    let get = |uri: &str| {
        Request::get(uri)
            .header(header::AUTHORIZATION, "Bearer rpk-a")
            .body(Body::empty())
            .unwrap()
    };
    let (_, _, now) = send(&h.app, get("/v1/reports/realtime_now")).await;
    assert_eq!(
        now,
        json!([{"visitors": 6, "pageviews": 6, "suppressed": null}])
    );
    let (_, _, pages) = send(&h.app, get("/v1/reports/realtime_pages")).await;
    assert_eq!(
        pages,
        json!([{"page": "/now", "visitors": 6, "pageviews": 6}])
    );
    let (_, _, sources) = send(&h.app, get("/v1/reports/realtime_sources")).await;
    assert_eq!(
        sources,
        json!([{"referrer_class": "search", "source": "Google", "visitors": 6, "pageviews": 6}])
    );
    // Source and host filter like any other (and the referrers report's cells link to them).
    for (query, n) in [
        ("source=Google", 6),
        ("host=www.google.com", 6),
        ("source=Bing", 0),
    ] {
        let (s, _, b) = send(&h.app, get(&format!("/v1/reports/pages?{query}"))).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let got = b
            .as_array()
            .unwrap()
            .first()
            .map_or(0, |r| r["visitors"].as_u64().unwrap());
        assert_eq!(got, n, "{query}: {b}");
    }
    // Under k, the number is withheld, here and on the page.
    let (_, _, few) = send(&h.app, get("/v1/reports/realtime_now?page=/nowhere")).await;
    assert_eq!(few[0]["visitors"], Value::Null);

    let cookie = login(&h).await;
    let (status, _, page) = html(&h.app, ui("GET", "/ui/realtime", Some(&cookie), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(r#"<dt>Visitors in the last 5 minutes</dt><dd><span class="value" data-value="6">6</span>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"data-report="realtime_pages""#) && page.contains(r#"data-value="/now""#),
        "{page}"
    );
    assert!(
        page.contains(r#"data-report="realtime_sources""#) && page.contains("Google"),
        "{page}"
    );
}
