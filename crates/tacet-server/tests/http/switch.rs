//! One browser, several tenants: "Add a tenant" logs in with another read key and keeps the first session;
//! the header switches between them; logging out ends both.

use super::*;

/// The `name=value` pairs a response sets, by cookie name.
fn set_cookies(headers: &axum::http::HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| {
            let pair = v.to_str().unwrap().split(';').next().unwrap();
            let (n, v) = pair.split_once('=').unwrap();
            (n.to_owned(), v.to_owned())
        })
        .collect()
}

fn jar(cookies: &[(String, String)]) -> String {
    cookies
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Applies a response's cookies to the jar.
fn update(jar_: &mut Vec<(String, String)>, headers: &axum::http::HeaderMap) {
    for (n, v) in set_cookies(headers) {
        jar_.retain(|(m, _)| *m != n);
        jar_.push((n, v));
    }
}

#[tokio::test]
async fn a_browser_switches_between_the_tenants_it_logged_in_to() {
    let h = default_harness();
    let mut cookies = vec![];
    let (_, hd, _) = html(&h.app, ui("POST", "/ui/login", None, Some("key=rk-a"))).await;
    update(&mut cookies, &hd);
    let (_, _, page) = html(&h.app, ui("GET", "/ui/usage", Some(&jar(&cookies)), None)).await;
    assert!(page.contains(r#"<span class="tenant" title="tenant">a</span>"#));
    assert!(
        !page.contains(r#"action="/ui/switch""#),
        "one tenant: no switch"
    );
    // Logged in, the login page goes straight on, unless a tenant is being added.
    let (s, _, _) = html(&h.app, ui("GET", "/ui/login", Some(&jar(&cookies)), None)).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (s, _, form) = html(
        &h.app,
        ui("GET", "/ui/login?add=1", Some(&jar(&cookies)), None),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(form.contains(r#"name="key""#));
    // Add tenant b: b is current, a waits.
    let (s, hd, _) = html(
        &h.app,
        ui("POST", "/ui/login", Some(&jar(&cookies)), Some("key=rk-b")),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    update(&mut cookies, &hd);
    let (_, _, page) = html(&h.app, ui("GET", "/ui/usage", Some(&jar(&cookies)), None)).await;
    assert!(
        page.contains(r#"<span class="tenant" title="tenant">b</span>"#),
        "{page}"
    );
    assert!(page.contains(r#"<option value="a">a</option>"#), "{page}");
    // Switch back to a: a is current, b waits; no login.
    let csrf = input_value(&page, "csrf");
    let (s, _, _) = html(
        &h.app,
        ui("POST", "/ui/switch", Some(&jar(&cookies)), Some("tenant=a")),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "without the form token");
    let (s, hd, _) = html(
        &h.app,
        ui(
            "POST",
            "/ui/switch",
            Some(&jar(&cookies)),
            Some(&format!("tenant=a&csrf={csrf}")),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    update(&mut cookies, &hd);
    let (_, _, page) = html(&h.app, ui("GET", "/ui/usage", Some(&jar(&cookies)), None)).await;
    assert!(
        page.contains(r#"<span class="tenant" title="tenant">a</span>"#),
        "{page}"
    );
    assert!(page.contains(r#"<option value="b">b</option>"#), "{page}");
    // A tenant this browser has no session for: 404, said so.
    let csrf = input_value(&page, "csrf");
    let (s, _, body) = html(
        &h.app,
        ui(
            "POST",
            "/ui/switch",
            Some(&jar(&cookies)),
            Some(&format!("tenant=c&csrf={csrf}")),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains("no live session for tenant"), "{body}");
    // A forged waiting token is dropped, not trusted.
    let mut forged = cookies.clone();
    for (n, v) in forged.iter_mut() {
        if n == "tacet_others" {
            *v = v.replace(".b.", ".c.");
        }
    }
    let (_, _, page) = html(&h.app, ui("GET", "/ui/usage", Some(&jar(&forged)), None)).await;
    assert!(!page.contains(r#"action="/ui/switch""#), "{page}");
    // Logging out ends both sessions: the waiting cookie, kept by a copy, opens nothing.
    let saved = cookies.clone();
    let (s, hd, _) = html(
        &h.app,
        ui(
            "POST",
            "/ui/logout",
            Some(&jar(&cookies)),
            Some(&format!("csrf={csrf}")),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let cleared = set_cookies(&hd);
    assert!(
        cleared
            .iter()
            .any(|(n, v)| n == "tacet_others" && v.is_empty()),
        "{cleared:?}"
    );
    let others = saved
        .iter()
        .find(|(n, _)| n == "tacet_others")
        .unwrap()
        .1
        .clone();
    let (s, _, _) = html(
        &h.app,
        ui(
            "GET",
            "/ui/usage",
            Some(&format!("tacet_session={others}")),
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "the waiting session ended too");
}
