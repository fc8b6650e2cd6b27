//! The privacy promises at the HTTP door: the k-threshold in every output format and on the dashboard,
//! and read keys with a `reports` scope that reach reports and the dashboard but never rows.

use super::*;

/// Posts `batch` as one of several browsers (the visitor id is keyed on the address and the user agent).
fn post_as(visitor: u32, batch: &Value) -> Request<Body> {
    Request::post("/v1/events")
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            format!("Mozilla/5.0 (X11; Linux x86_64; rv:12{visitor}.0) Gecko/20100101 Firefox/12{visitor}.0"),
        )
        .header("x-tacet-key", "ik-a")
        .body(Body::from(batch.to_string()))
        .unwrap()
}

/// Five visitors on `/`; the last also on `/rare-page` twice.
async fn five_visitors_one_rare(h: &Harness) {
    for v in 0..5 {
        let mut batch = vec![pageview("/")];
        if v == 4 {
            batch.extend([pageview("/rare-page"), pageview("/rare-page")]);
        }
        let (s, _, b) = send(&h.app, post_as(v, &json!(batch))).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    }
    h.pipeline.flush().await;
}

fn get(uri: &str, key: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap()
}

async fn bytes(h: &Harness, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let resp = h.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let b = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, b.to_vec())
}

/// `(pageviews is null, suppressed)` of the one row of an Arrow batch list.
fn withheld_row(batches: &[arrow::array::RecordBatch]) -> (bool, String) {
    use arrow::array::{Array, AsArray};
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let b = &batches[0];
    let pageviews = b.column_by_name("pageviews").unwrap();
    let suppressed = b.column_by_name("suppressed").unwrap().as_string::<i32>();
    (pageviews.is_null(0), suppressed.value(0).to_owned())
}

#[tokio::test]
async fn a_filter_never_reveals_fewer_than_k_visitors_in_any_format() {
    let h = default_harness();
    five_visitors_one_rare(&h).await;
    // Unfiltered: five visitors, shown.
    let (s, headers, body) = send(&h.app, get("/v1/reports/overview", "rk-a")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        (body[0]["visitors"].clone(), body[0]["pageviews"].clone()),
        (json!(5), json!(7))
    );
    assert_eq!(body[0]["suppressed"], Value::Null);
    assert_eq!(headers["x-tacet-suppressed"], "0");
    // Filtered to the rare page: one visitor, withheld, in each format.
    let uri = "/v1/reports/overview?page=/rare-page";
    let (s, headers, body) = send(&h.app, get(uri, "rk-a")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers["x-tacet-suppressed"], "1");
    assert_eq!(
        body,
        json!([{"visitors": null, "visits": null, "pageviews": null, "views_per_visit": null,
            "bounce_rate": null, "visit_seconds": null, "events": null, "crashes": null,
            "suppressed": "fewer than 5 visitors"}])
    );
    let (_, csv) = bytes(&h, get(&format!("{uri}&format=csv"), "rk-a")).await;
    let csv = String::from_utf8(csv).unwrap();
    assert_eq!(
        csv,
        "visitors,visits,pageviews,views_per_visit,bounce_rate,visit_seconds,events,crashes,suppressed\n\
         ,,,,,,,,fewer than 5 visitors\n"
    );
    let (_, arrow_bytes) = bytes(&h, get(&format!("{uri}&format=arrow"), "rk-a")).await;
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow_bytes), None).unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    assert_eq!(
        withheld_row(&batches),
        (true, "fewer than 5 visitors".to_owned())
    );
    let (_, parquet_bytes) = bytes(&h, get(&format!("{uri}&format=parquet"), "rk-a")).await;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(parquet_bytes),
    )
    .unwrap()
    .build()
    .unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    assert_eq!(
        withheld_row(&batches),
        (true, "fewer than 5 visitors".to_owned())
    );
    // A series withholds its buckets: the daily counts for the rare page are withheld too.
    let (_, _, daily) = send(&h.app, get("/v1/reports/daily?page=/rare-page", "rk-a")).await;
    for row in daily.as_array().unwrap() {
        assert_eq!(
            (row["visitors"].clone(), row["pageviews"].clone()),
            (Value::Null, Value::Null),
            "{row}"
        );
        assert_eq!(row["suppressed"], "fewer than 5 visitors");
    }
    let (_, _, realtime) = send(&h.app, get("/v1/reports/realtime?page=/rare-page", "rk-a")).await;
    assert!(
        realtime
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["pageviews"].is_null()),
        "{realtime}"
    );
}

#[tokio::test]
async fn a_reports_key_reaches_the_reports_and_the_dashboard_but_never_rows() {
    let h = default_harness();
    five_visitors_one_rare(&h).await;
    // Refused on SQL with a clear 403 that says what to use instead.
    let (s, _, b) = send(&h.app, sql("rpk-a", "SELECT COUNT(*) AS n FROM events")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["error"].as_str().unwrap().contains("scope is reports"),
        "{b}"
    );
    // The sql-scoped read key still runs SQL; an admin-less tenant's reports key is not an admin key.
    let (s, _, b) = send(&h.app, sql("rk-a", "SELECT COUNT(*) AS n FROM events")).await;
    assert_eq!((s, b), (StatusCode::OK, json!([{"n": 7}])));
    // Every report answers, with the same numbers as the sql-scoped key's.
    for report in tacet_query::REPORTS {
        let mut uri = format!("/v1/reports/{}", report.name);
        for r in report.required() {
            uri.push_str(match r.as_str() {
                "fingerprint" => "?fingerprint=0123456789abcdef",
                "steps" => "?steps=page:/,page:/rare-page",
                "event" => "?event=signup",
                "prop" => "&prop=plan",
                _ => "",
            });
        }
        let (s, _, with_reports) = send(&h.app, get(&uri, "rpk-a")).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {with_reports}");
        let (_, _, with_sql) = send(&h.app, get(&uri, "rk-a")).await;
        if report.name != "realtime" {
            assert_eq!(with_reports, with_sql, "{uri}");
        }
    }
    // The other tenant's reports key sees its own tenant only.
    let (_, _, b) = send(&h.app, get("/v1/reports/overview", "rpk-b")).await;
    assert_eq!(b[0]["suppressed"], "fewer than 5 visitors");
    // The dashboard takes it: the overview shows, a rare filter says "fewer than 5", never the number.
    let (s, hd, page) = html(&h.app, ui("POST", "/ui/login", None, Some("key=rpk-a"))).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{page}");
    let cookie = hd[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let (s, _, page) = html(&h.app, ui("GET", "/ui/usage", Some(&cookie), None)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (metric(&page, "visitors"), metric(&page, "pageviews")),
        ("5".into(), "7".into())
    );
    let (s, _, page) = html(
        &h.app,
        ui("GET", "/ui/usage?page=%2Frare-page", Some(&cookie), None),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (metric(&page, "visitors"), metric(&page, "pageviews")),
        (String::new(), String::new())
    );
    assert!(
        page.contains("fewer than 5") && page.contains(r#"data-withheld="true""#),
        "{page}"
    );
    assert!(!page.contains(r#"data-value="2""#), "{page}");
}
