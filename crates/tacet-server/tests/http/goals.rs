//! The goal filter (`event`): it keeps the visitors who did the event, with everything else they did, as a
//! Plausible user expects; not only the event's own rows.

use super::*;

fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::AUTHORIZATION, "Bearer rpk-a")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn an_event_filter_keeps_the_visitors_who_did_it_and_all_they_did() {
    let h = default_harness();
    // Eight visitors convert: /, /pricing, then signup (with a plan). Six only read the blog.
    for n in 0..8 {
        visitor(
            &h,
            n,
            json!([pageview("/"), pageview("/pricing"),
                {"kind": "event", "name": "signup", "url": "https://a.example/pricing", "props": {"plan": "pro"}}]),
        )
        .await;
    }
    for n in 8..14 {
        visitor(&h, n, json!([pageview("/"), pageview("/blog")])).await;
    }
    h.pipeline.flush().await;

    let (_, _, pages) = send(&h.app, get("/v1/reports/pages?event=signup")).await;
    assert_eq!(
        pages,
        json!([
            {"page": "/", "visitors": 8, "pageviews": 8},
            {"page": "/pricing", "visitors": 8, "pageviews": 8},
        ])
    );
    let (_, _, overview) = send(&h.app, get("/v1/reports/overview?event=signup")).await;
    assert_eq!(
        (
            &overview[0]["visitors"],
            &overview[0]["pageviews"],
            &overview[0]["events"]
        ),
        (&json!(8), &json!(16), &json!(8)),
        "{overview}"
    );
    // Unfiltered, everyone; the property breakdown still counts the event's own rows.
    let (_, _, all) = send(&h.app, get("/v1/reports/pages")).await;
    assert_eq!(
        all[0],
        json!({"page": "/", "visitors": 14, "pageviews": 14})
    );
    let (_, _, plans) = send(
        &h.app,
        get("/v1/reports/event_properties?event=signup&prop=plan"),
    )
    .await;
    assert_eq!(plans, json!([{"value": "pro", "visitors": 8, "events": 8}]));

    // The dashboard: the converters' pages, and the conversion against everyone.
    let cookie = login(&h).await;
    let (status, _, usage) = html(
        &h.app,
        ui("GET", "/ui/usage?event=signup", Some(&cookie), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        usage.contains("Visitors who did signup: 8 of 14 (57.1 %)"),
        "{usage}"
    );
    assert!(
        usage.contains("/pricing") && !usage.contains("/blog"),
        "{usage}"
    );
    // Every card exports its rows as CSV, with the page's filters.
    let csv_link = usage
        .split(r#"<p class="export"><a href=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSV link on the first card")
        .replace("&amp;", "&");
    assert!(
        csv_link.starts_with("/ui/export/pages.csv?") && csv_link.contains("event=signup"),
        "{csv_link}"
    );
    let (status, headers, csv) = html(&h.app, ui("GET", &csv_link, Some(&cookie), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"a-pages-")
    );
    assert_eq!(csv, "page,visitors,pageviews\n/,8,8\n/pricing,8,8\n");
    // Without a session, nothing.
    let (status, _, _) = html(&h.app, ui("GET", &csv_link, None, None)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // The goals page: the conversion rate, and the goal links to its visitors.
    let (status, _, page) = html(&h.app, ui("GET", "/ui/goals", Some(&cookie), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(r#"data-col="conversion_rate" data-value="0.5714""#),
        "{page}"
    );
    assert!(page.contains("/ui/usage?event=signup"), "{page}");
    // The funnel page: visitors per step in order, and who dropped out.
    let (status, _, page) = html(
        &h.app,
        ui(
            "GET",
            "/ui/funnels?steps=page:/,page:/pricing,event:signup",
            Some(&cookie),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let steps: Vec<&str> = page
        .match_indices(r#"data-col="visitors" data-value=""#)
        .map(|(i, m)| page[i + m.len()..].split('"').next().unwrap())
        .collect();
    assert_eq!(steps, ["14", "8", "8"], "{page}");
    assert!(
        page.contains(r#"<td class="num" data-col="dropped">6</td>"#),
        "{page}"
    );
    // Their page views, not zero (before, the filter kept only the event rows).
    assert!(
        usage.contains(
            r#"data-metric="pageviews"><dt>Page views</dt><dd><span class="value" data-value="16">"#
        ),
        "{usage}"
    );
}

/// A bad range gets the API's own words on the page (and the page still shows the last 30 days).
#[tokio::test]
async fn the_dashboard_names_a_bad_range_as_the_api_does() {
    let h = default_harness();
    let cookie = login(&h).await;
    for query in ["from=2026-12-10&to=2026-12-01", "from=garbage"] {
        let (_, _, api) = send(&h.app, get(&format!("/v1/reports/overview?{query}"))).await;
        let said = api["error"].as_str().unwrap().to_owned();
        let uri = format!("/ui/usage?{query}");
        let (_, _, html) = html(&h.app, ui("GET", &uri, Some(&cookie), None)).await;
        let escaped = said.replace('"', "&quot;");
        assert!(
            html.contains(&format!(
                r#"<p class="error" role="alert">{escaped}; showing the last 30 days"#
            )),
            "{query}: the page does not say {said:?}"
        );
    }
}

#[tokio::test]
async fn an_event_lists_its_properties_and_their_values() {
    let h = default_harness();
    for n in 0..9 {
        let plan = if n < 6 { "pro" } else { "team" };
        let mut props = json!({"plan": plan});
        if n < 5 {
            props["seats"] = json!(format!("{}", 1 + n % 2));
        }
        visitor(
            &h,
            n,
            json!([pageview("/"), {"kind": "event", "name": "signup", "url": "https://a.example/", "props": props}]),
        )
        .await;
    }
    h.pipeline.flush().await;
    let (status, _, keys) = send(&h.app, get("/v1/reports/event_property_keys?event=signup")).await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    assert_eq!(
        keys,
        json!([
            {"prop": "plan", "visitors": 9, "events": 9},
            {"prop": "seats", "visitors": 5, "events": 5},
        ])
    );
    let cookie = login(&h).await;
    // The event's page: its properties, each with the values that reached k (team: 3 visitors, withheld).
    let (status, _, page) = html(
        &h.app,
        ui("GET", "/ui/events?event=signup", Some(&cookie), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(r#"data-prop="plan""#) && page.contains(r#"data-prop="seats""#),
        "{page}"
    );
    let plan = page
        .split(r#"data-prop="plan""#)
        .nth(1)
        .and_then(|rest| rest.split("</section>").next())
        .unwrap();
    assert!(
        plan.contains(r#"data-col="value" data-value="pro""#)
            && plan.contains(r#"data-col="visitors" data-value="6""#)
            && !plan.contains("team"),
        "{plan}"
    );
    assert!(plan.contains("fewer than 5"), "{plan}");
    // The list of events links to it, and an event with nothing sent says so.
    let (_, _, usage) = html(&h.app, ui("GET", "/ui/usage", Some(&cookie), None)).await;
    assert!(usage.contains("/ui/events?event=signup"), "{usage}");
    let (status, _, page) = html(
        &h.app,
        ui("GET", "/ui/events?event=nothing", Some(&cookie), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("carried no properties"), "{page}");
    // Without an event: the page lists the events to choose from.
    let (status, _, page) = html(&h.app, ui("GET", "/ui/events", Some(&cookie), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("/ui/events?event=signup"), "{page}");
}

#[tokio::test]
async fn the_retention_page_shows_weekly_cohorts_of_identified_users() {
    use chrono::{Datelike, Duration, Utc};
    let h = harness_with(
        IngestConfig::default(),
        ServerConfig::default(),
        TenantPolicy {
            accept_past: std::time::Duration::from_secs(30 * 86_400),
            ..TenantPolicy::default()
        },
    );
    // Tuesday noon, two weeks before this week: seven users arrive; the next week five come back, the week
    // after two (fewer than k = 5: withheld).
    let today = Utc::now().date_naive();
    let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    let week0 = (monday - Duration::days(13))
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc();
    let at = |weeks: i64| (week0 + Duration::weeks(weeks)).to_rfc3339();
    for n in 0..7 {
        let mut events = vec![json!({"kind": "pageview", "url": "https://a.example/app",
            "user_id": format!("user-{n}@example.com"), "ts": at(0)})];
        if n < 5 {
            events.push(json!({"kind": "pageview", "url": "https://a.example/app",
                "user_id": format!("user-{n}@example.com"), "ts": at(1)}));
        }
        if n < 2 {
            events.push(json!({"kind": "pageview", "url": "https://a.example/app",
                "user_id": format!("user-{n}@example.com"), "ts": at(2)}));
        }
        visitor(&h, n, Value::Array(events)).await;
    }
    h.pipeline.flush().await;
    let cookie = login(&h).await;
    let (status, _, page) = html(
        &h.app,
        ui(
            "GET",
            &format!(
                "/ui/retention?from={}&to={today}",
                monday - Duration::days(14)
            ),
            Some(&cookie),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let cohort = (monday - Duration::days(14)).to_string();
    let row = page
        .split(&format!(r#"<tr data-cohort="{cohort}">"#))
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap_or_else(|| panic!("no cohort {cohort}: {page}"));
    assert!(row.contains(r#"data-week="0" data-value="7""#), "{row}");
    assert!(
        row.contains(r#"data-week="1" data-value="5""#) && row.contains("71.4%"),
        "{row}"
    );
    assert!(row.contains(r#"data-week="2" data-value="">—"#), "{row}");
    assert!(page.contains("fewer than 5"), "{page}");
    // No e-mail reaches the page: the users are pseudonyms, counted.
    assert!(!page.contains("example.com"), "{page}");
    assert!(
        page.contains(r#"href="/ui/retention" aria-current="page""#),
        "{page}"
    );
}

#[tokio::test]
async fn a_referrer_host_is_one_row_whatever_the_links_medium() {
    let h = default_harness();
    // Six visitors from partner.example, three of them through a link tagged utm_medium=newsletter;
    // five with no referrer through a link tagged utm_medium=social.
    for n in 0..6 {
        let url = if n < 3 {
            "https://a.example/?utm_medium=newsletter"
        } else {
            "https://a.example/"
        };
        visitor(
            &h,
            n,
            json!([{"kind": "pageview", "url": url, "referrer": "https://partner.example/post"}]),
        )
        .await;
    }
    for n in 6..11 {
        visitor(
            &h,
            n,
            json!([{"kind": "pageview", "url": "https://a.example/?utm_medium=social"}]),
        )
        .await;
    }
    h.pipeline.flush().await;
    let (_, _, rows) = send(&h.app, get("/v1/reports/referrers")).await;
    assert_eq!(
        rows,
        json!([
            {"referrer_class": "other", "source": null, "host": "partner.example", "visitors": 6, "pageviews": 6},
            {"referrer_class": "social", "source": null, "host": null, "visitors": 5, "pageviews": 5},
        ])
    );
    // The dashboard says where a class without source or host comes from.
    let cookie = login(&h).await;
    let (_, _, page) = html(&h.app, ui("GET", "/ui/usage", Some(&cookie), None)).await;
    assert!(page.contains(r#"data-hint="utm-medium""#), "{page}");
}
