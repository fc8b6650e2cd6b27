//! A crash group release by release (`crash_releases`, the crash page's timeline and per-group crash-free
//! rate) and finding groups in the crash list by text and release.

use super::*;

fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::AUTHORIZATION, "Bearer rpk-a")
        .body(Body::empty())
        .unwrap()
}

fn crash(release: &str, error: &str, message: &str, frame: &str) -> Value {
    json!({"kind": "crash", "url": "https://a.example/cart", "release": release,
        "error_type": error, "message": message, "stack": [frame]})
}

fn visit(release: &str) -> Value {
    json!({"kind": "pageview", "url": "https://a.example/cart", "release": release})
}

#[tokio::test]
async fn a_group_release_by_release_and_the_crash_list_found_by_text_and_release() {
    let h = default_harness();
    let cart = |r: &str| crash(r, "TypeError", "cart is undefined", "at pay (app.js:10:5)");
    // 1.0.0: six visitors, two hit by the cart bug, one by another bug. 1.1.0: five visitors, one hit.
    // 1.2.0: two visitors (fewer than k = 5), one hit.
    let mut n = 0;
    for (release, visitors, hit) in [("1.0.0", 6, 2), ("1.1.0", 5, 1), ("1.2.0", 2, 1)] {
        for i in 0..visitors {
            let mut events = vec![visit(release)];
            if i < hit {
                events.push(cart(release));
            }
            if release == "1.0.0" && i == visitors - 1 {
                events.push(crash(
                    release,
                    "RangeError",
                    "stack too deep",
                    "at walk (tree.js:3:1)",
                ));
            }
            visitor(&h, n, Value::Array(events)).await;
            n += 1;
        }
        // Let the releases' first crashes fall on distinct milliseconds.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    h.pipeline.flush().await;

    let (_, _, groups) = send(&h.app, get("/v1/reports/crash_groups")).await;
    let fp = |ty: &str| {
        groups
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["error_type"] == ty)
            .unwrap()["fingerprint"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (cart_fp, tree_fp) = (fp("TypeError"), fp("RangeError"));
    let (status, _, releases) = send(
        &h.app,
        get(&format!("/v1/reports/crash_releases?fingerprint={cart_fp}")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{releases}");
    let rows: Vec<(&str, i64, i64, i64)> = releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["release"].as_str().unwrap(),
                r["crashes"].as_i64().unwrap(),
                r["visitors"].as_i64().unwrap(),
                r["crashed_visits"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [("1.0.0", 2, 2, 2), ("1.1.0", 1, 1, 1), ("1.2.0", 1, 1, 1)]
    );
    assert!(
        releases[0]["first_seen"].as_str().unwrap() <= releases[0]["last_seen"].as_str().unwrap()
    );
    // The other group crashed in one release only.
    let (_, _, other) = send(
        &h.app,
        get(&format!("/v1/reports/crash_releases?fingerprint={tree_fp}")),
    )
    .await;
    assert_eq!(other.as_array().unwrap().len(), 1, "{other}");
    assert_eq!(other[0]["release"], "1.0.0");
    // A release filter selects the visits compared.
    let (_, _, one) = send(
        &h.app,
        get(&format!(
            "/v1/reports/crash_releases?fingerprint={cart_fp}&release=1.1.0"
        )),
    )
    .await;
    assert_eq!(one.as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one[0]["release"], "1.1.0");
    // Without its fingerprint: a 400 that says so.
    let (status, _, body) = send(&h.app, get("/v1/reports/crash_releases")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_string().contains("fingerprint"), "{body}");

    // The crash page: the group's crash-free rate per release against the release's visits (1 - 2/6,
    // 1 - 1/5); 1.2.0 had fewer than k visitors, so its rate is not shown; all groups' rate beside it.
    let cookie = login(&h).await;
    let (status, _, page) = html(
        &h.app,
        ui(
            "GET",
            &format!("/ui/crashes/{cart_fp}"),
            Some(&cookie),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let card = page
        .split(r#"id="releases""#)
        .nth(1)
        .and_then(|rest| rest.split("</section>").next())
        .expect("the releases card");
    let row = |release: &str| {
        card.split("<tr>")
            .find(|r| r.contains(&format!(r#"data-col="release" data-value="{release}""#)))
            .unwrap_or_else(|| panic!("no row for {release}: {card}"))
            .to_owned()
    };
    assert!(
        row("1.0.0").contains(r#"data-col="visits" data-value="6""#)
            && row("1.0.0").contains(r#"data-col="crash_free_visits" data-value="0.6667""#)
            && row("1.0.0").contains(r#"data-col="crash_free_all" data-value="0.5""#),
        "{}",
        row("1.0.0")
    );
    assert!(
        row("1.1.0").contains(r#"data-col="crash_free_visits" data-value="0.8""#),
        "{}",
        row("1.1.0")
    );
    assert!(
        row("1.2.0").contains(r#"data-col="crash_free_visits" data-value="null""#)
            && row("1.2.0").contains(r#"data-col="crashes" data-value="1""#),
        "{}",
        row("1.2.0")
    );
    // The timeline draws one bar per release.
    assert_eq!(card.matches("<rect").count(), 3, "{card}");
    assert!(card.contains(r#"<g data-release="1.2.0">"#));

    // The crash list: found by text (any case) in the type or message, and by release.
    let list = |query: &str| {
        let h = &h;
        let cookie = cookie.clone();
        let query = query.to_owned();
        async move {
            let (status, _, page) = html(
                &h.app,
                ui(
                    "GET",
                    &format!("/ui/crashes?state=all{query}"),
                    Some(&cookie),
                    None,
                ),
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            let mut fps: Vec<String> = page
                .split(r#"<tr data-fingerprint=""#)
                .skip(1)
                .map(|r| r.split('"').next().unwrap().to_owned())
                .collect();
            fps.sort();
            (fps, page)
        }
    };
    let mut both = vec![cart_fp.clone(), tree_fp.clone()];
    both.sort();
    assert_eq!(list("").await.0, both);
    assert_eq!(list("&q=CART").await.0, vec![cart_fp.clone()]);
    assert_eq!(list("&q=rangeerror").await.0, vec![tree_fp.clone()]);
    assert_eq!(
        list(&format!("&q={}", &tree_fp[..6])).await.0,
        vec![tree_fp.clone()]
    );
    let (none, page) = list("&q=nothing+like+it").await;
    assert!(
        none.is_empty() && page.contains("matches that text"),
        "{page}"
    );
    // The text stays when the tab changes, and the search form keeps the range and tab.
    let (_, page) = list("&q=cart").await;
    assert!(page.contains("q=cart&amp;state=open"), "{page}");
    assert!(
        page.contains(r#"<input type="hidden" name="state" value="all">"#),
        "{page}"
    );
    assert_eq!(list("&release=1.1.0").await.0, vec![cart_fp.clone()]);
}

#[tokio::test]
async fn merged_and_split_groups_in_every_crash_report_and_undone() {
    let h = default_harness();
    let stack = |frames: &[&str]| -> Vec<String> {
        frames
            .iter()
            .map(|f| format!("at {f} (https://a.example/app.js:1:1)"))
            .collect()
    };
    let crash = |frames: &[&str]| {
        json!({"kind": "crash", "url": "https://a.example/cart", "release": "1.0.0",
            "error_type": "TypeError", "message": "cart is undefined", "stack": stack(frames)})
    };
    // Group A (pay) three times, group B (pay2, the same bug minified differently) twice; group C (the
    // five frames below) four times, two of them through checkout beyond the frames that group.
    let deep = ["a", "b", "c", "d", "e"];
    for (n, events) in [
        vec![crash(&["pay"])],
        vec![crash(&["pay"])],
        vec![crash(&["pay"])],
        vec![crash(&["pay2"])],
        vec![crash(&["pay2"])],
        vec![crash(&[&deep[..], &["checkout"]].concat())],
        vec![crash(&[&deep[..], &["checkout"]].concat())],
        vec![crash(&[&deep[..], &["other"]].concat())],
        vec![crash(&[&deep[..], &["other"]].concat())],
    ]
    .into_iter()
    .enumerate()
    {
        visitor(&h, n, Value::Array(events)).await;
    }
    h.pipeline.flush().await;
    let groups = || async {
        let (_, _, g) = send(&h.app, get("/v1/reports/crash_groups")).await;
        let mut rows: Vec<(String, i64)> = g
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["fingerprint"].as_str().unwrap().to_owned(),
                    r["crashes"].as_i64().unwrap(),
                )
            })
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        rows
    };
    let before = groups().await;
    assert_eq!(before.iter().map(|r| r.1).collect::<Vec<_>>(), [4, 3, 2]);
    let (c, a, b) = (
        before[0].0.clone(),
        before[1].0.clone(),
        before[2].0.clone(),
    );

    // Merge B into A from the crash page: A has 5 crashes in every report, B none.
    let cookie = login(&h).await;
    let (_, _, page) = html(
        &h.app,
        ui("GET", &format!("/ui/crashes/{b}"), Some(&cookie), None),
    )
    .await;
    let csrf = input_value(&page, "csrf");
    let act = |fp: String, form: String| {
        let cookie = cookie.clone();
        let app = h.app.clone();
        async move {
            html(
                &app,
                ui(
                    "POST",
                    &format!("/ui/crashes/{fp}/groups"),
                    Some(&cookie),
                    Some(&form),
                ),
            )
            .await
        }
    };
    let (s, hd, _) = act(b.clone(), format!("csrf={csrf}&op=merge&into={a}")).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(hd[header::LOCATION], format!("/ui/crashes/{a}"));
    assert_eq!(groups().await, [(a.clone(), 5), (c.clone(), 4)]);
    let (_, _, trend) = send(
        &h.app,
        get(&format!("/v1/reports/crash_trend?fingerprint={a}")),
    )
    .await;
    assert_eq!(trend[0]["crashes"], 5, "{trend}");
    let (_, _, one) = send(
        &h.app,
        get(&format!("/v1/reports/crash_group?fingerprint={a}")),
    )
    .await;
    assert_eq!(one[0]["crashes"], 5, "{one}");
    let (_, _, rel) = send(
        &h.app,
        get(&format!("/v1/reports/crash_releases?fingerprint={a}")),
    )
    .await;
    assert_eq!(rel[0]["crashes"], 5, "{rel}");
    // The group's page lists what was merged into it; the old one says where it went.
    let (_, _, page_a) = html(
        &h.app,
        ui("GET", &format!("/ui/crashes/{a}"), Some(&cookie), None),
    )
    .await;
    assert!(
        page_a.contains(&format!(r#"<li><code>{b}</code>"#)),
        "{page_a}"
    );
    let (_, _, page_b) = html(
        &h.app,
        ui("GET", &format!("/ui/crashes/{b}"), Some(&cookie), None),
    )
    .await;
    assert!(page_b.contains(r#"id="merged-away""#), "{page_b}");
    // A cycle is refused.
    let (s, _, body) = act(a.clone(), format!("csrf={csrf}&op=merge&into={b}")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");

    // Split C by the frame beyond its fingerprint: two groups of two.
    let (s, hd, _) = act(c.clone(), format!("csrf={csrf}&op=split&frame=at+checkout")).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let split = hd[header::LOCATION]
        .to_str()
        .unwrap()
        .trim_start_matches("/ui/crashes/")
        .to_owned();
    assert_eq!(
        split,
        tacet_query::groups::split_fingerprint(&c, "at checkout")
    );
    let mut expected = vec![(a.clone(), 5), (c.clone(), 2), (split.clone(), 2)];
    expected.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    assert_eq!(groups().await, expected);
    let (_, _, occurrences) = send(
        &h.app,
        get(&format!(
            "/v1/reports/crash_occurrences?fingerprint={split}"
        )),
    )
    .await;
    assert_eq!(occurrences.as_array().unwrap().len(), 2, "{occurrences}");
    // Bad input is named.
    let (s, _, _) = act(c.clone(), format!("csrf={csrf}&op=split&frame=")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = act(c.clone(), format!("csrf={csrf}&op=merge&into=nothex")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = act(c.clone(), "op=split&frame=x".into()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "without the form token");

    // Both undone: the groups as they came.
    act(
        c.clone(),
        format!("csrf={csrf}&op=unsplit&frame=at+checkout"),
    )
    .await;
    act(a.clone(), format!("csrf={csrf}&op=unmerge&from={b}")).await;
    assert_eq!(groups().await, before);
}
