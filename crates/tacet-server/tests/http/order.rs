//! The order of a visitor's events does not depend on how files are read: events of one request share
//! their timestamp (none was sent, or the client stamped them in the same millisecond), and every report
//! that looks at order still sees them in the order they were sent.

use super::*;

const VISITORS: usize = 60;

/// Sixty visitors each send `/c`, then `/d`, then the event `signup`, in one request and without
/// timestamps: the server stamps all three with the same instant. With `flush_every`, every so many
/// visitors go to a file of their own, so the rows reach the sort from several streams.
async fn visitors_in_one_millisecond(h: &Harness, flush_every: Option<usize>) {
    for v in 0..VISITORS {
        if flush_every.is_some_and(|n| v > 0 && v % n == 0) {
            h.pipeline.flush().await;
        }
        let batch = json!([
            pageview("/c"),
            pageview("/d"),
            {"kind": "event", "name": "signup", "url": "https://a.example/d"},
        ]);
        let (s, _, b) = send(
            &h.app_for(&format!("198.51.100.{}:4000", 10 + v)),
            post_events(Some("ik-a"), "application/json", batch.to_string()),
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    }
}

fn report(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::AUTHORIZATION, "Bearer rpk-a")
        .body(Body::empty())
        .unwrap()
}

/// Every order-dependent report, asked `times` times: always the same, right answer.
async fn answers_follow_the_order_sent(h: &Harness, times: usize) {
    let cases = [
        (
            "/v1/reports/entry_pages",
            json!([{"page": "/c", "visitors": 60, "visits": 60}]),
        ),
        (
            "/v1/reports/exit_pages",
            json!([{"page": "/d", "visitors": 60, "visits": 60}]),
        ),
        (
            "/v1/reports/funnel?steps=page:/c,page:/d,event:signup",
            json!([
                {"step": 1, "name": "page:/c", "visitors": 60, "conversion": 1.0},
                {"step": 2, "name": "page:/d", "visitors": 60, "conversion": 1.0},
                {"step": 3, "name": "event:signup", "visitors": 60, "conversion": 1.0},
            ]),
        ),
        // Backwards, nobody: /c was never viewed after /d (and a step of 0 visitors is under k).
        (
            "/v1/reports/funnel?steps=page:/d,page:/c",
            json!([{"step": 1, "name": "page:/d", "visitors": 60, "conversion": 1.0}]),
        ),
    ];
    for _ in 0..times {
        for (uri, expected) in &cases {
            let (s, _, b) = send(&h.app, report(uri)).await;
            assert_eq!(s, StatusCode::OK, "{uri}: {b}");
            assert_eq!(&b, expected, "{uri}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_with_one_timestamp_keep_the_order_they_were_sent_in() {
    let h = default_harness();
    visitors_in_one_millisecond(&h, None).await;
    // From the buffer (not yet in Parquet)...
    answers_follow_the_order_sent(&h, 2).await;
    // ...and from the files, however their rows are read.
    h.pipeline.flush().await;
    assert_eq!(h.pipeline.buffered(), 0);
    answers_follow_the_order_sent(&h, 8).await;

    // The order is a column: the log record's sequence number and the index in the request, so the three
    // events of a request are consecutive and in the order sent.
    let (s, _, rows) = send(
        &h.app,
        sql(
            "rk-a",
            "SELECT COUNT(*) AS n, COUNT(DISTINCT arrival) AS distinct_arrivals, \
             COUNT(DISTINCT ts) AS instants_per_visitor_max FROM events GROUP BY visitor_id \
             ORDER BY n LIMIT 1",
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{rows}");
    assert_eq!(
        rows,
        json!([{"n": 3, "distinct_arrivals": 3, "instants_per_visitor_max": 1}])
    );
    let (_, _, rows) = send(
        &h.app,
        sql(
            "rk-a",
            "SELECT string_agg(COALESCE(name, url_path), ' ' ORDER BY arrival) AS sent \
             FROM events GROUP BY visitor_id",
        ),
    )
    .await;
    let sent: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sent"].as_str().unwrap())
        .collect();
    assert_eq!(sent, vec!["/c /d signup"; VISITORS]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_holds_across_many_files() {
    let h = default_harness();
    visitors_in_one_millisecond(&h, Some(6)).await;
    h.pipeline.flush().await;
    answers_follow_the_order_sent(&h, 8).await;
}
