//! The dashboard in headless Chromium, driven like a person would (cdp.rs): log in with the keyboard, read
//! the usage page, filter by clicking a row, triage a crash group, watch realtime, log out. Every number
//! read from the page is compared with the report API's answer. Screenshots of each page are kept as
//! test artefacts in `$TACET_ARTEFACTS` (default `<target>/tmp/artefacts/dashboard/`).
//!
//! Needs Chromium, like browser.rs (`TACET_SKIP_BROWSER=1` skips).

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::browser::chromium;
use crate::cdp::Browser;
use crate::server::{Server, files_under};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
const READ_KEY: &str = "read-shop-0f3a9c2e";
const EMAIL: &str = "alice@example.com";

fn artefacts() -> PathBuf {
    std::env::var_os("TACET_ARTEFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artefacts"))
        .join("dashboard")
}

fn config() -> String {
    format!(
        r#"
trusted_proxies = ["127.0.0.1/32", "::1/128"]
[ingest]
flush_interval = "100ms"

[[tenant]]
id = "shop"
ingest_key = "ingest-shop"
read_key = "{READ_KEY}"
[tenant.privacy]
k_threshold = 2
k_threshold_crashes = 2

[[tenant]]
id = "other"
ingest_key = "ingest-other"
read_key = "read-other"
"#
    )
}

/// Six visitors: four see `/` and `/pricing`, two of them `/docs` as well; one sees `/secret` alone (below
/// k = 2, so it must show as hidden); three sign up; three hit the same crash, one another (hidden).
async fn fixture(server: &Server) -> usize {
    let mut sent = 0;
    for v in 1..=6u8 {
        let ip = format!("198.51.100.{v}");
        let ua = if v % 2 == 0 { IPHONE } else { FIREFOX };
        let mut events = vec![];
        let pv =
            |path: &str| json!({"kind": "pageview", "url": format!("https://shop.example{path}")});
        if v <= 4 {
            events.push(pv("/"));
            events.push(pv("/pricing"));
        }
        if v <= 2 {
            events.push(pv("/docs"));
        }
        if v == 5 {
            events.push(pv("/secret"));
        }
        if v == 6 {
            events.push(pv("/?utm_source=newsletter&utm_campaign=winter"));
        }
        if v <= 3 {
            events.push(
                json!({"kind": "event", "name": "signup", "url": "https://shop.example/pricing",
                "user_id": format!("user-{v}"), "props": {"plan": "pro"}}),
            );
            events.push(json!({"kind": "crash", "url": "https://shop.example/cart", "release": "web@1.2.3",
                "error_type": "TypeError", "message": format!("cart failed for {EMAIL}"),
                "stack": ["at pay (https://shop.example/app.js:10:5)", "at main (https://shop.example/app.js:1:1)"]}));
        }
        if v == 4 {
            events.push(json!({"kind": "crash", "url": "https://shop.example/", "release": "web@1.2.4",
                "error_type": "RangeError", "message": "quota exceeded", "stack": ["at q (https://shop.example/q.js:3:3)"]}));
        }
        sent += events.len();
        let (status, body) = server
            .post_events(
                "ingest-shop",
                ua,
                &ip,
                "application/json",
                Value::from(events).to_string(),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    sent
}

/// A report through the API, with the header that counts hidden rows.
async fn api(server: &Server, report: &str, query: &str) -> (Value, usize) {
    let resp = server
        .http
        .get(format!("{}/v1/reports/{report}?{query}", server.base))
        .bearer_auth(READ_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{report}?{query}");
    let hidden = resp.headers()["x-tacet-suppressed"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (resp.json().await.unwrap(), hidden)
}

/// The headline numbers as the page shows them (`data-value`, the API's raw value).
const HEADLINE: &str = "Object.fromEntries([...document.querySelectorAll('[data-metric]')].map(m => [m.dataset.metric, m.querySelector('.value').dataset.value]))";

/// The rows of a report card, cell by cell (`data-value`).
fn card_rows(report: &str) -> String {
    format!(
        "[...document.querySelectorAll('[data-report={report}] tbody tr')].filter(tr => !tr.querySelector('.empty')).map(tr => [...tr.querySelectorAll('td')].map(td => td.dataset.value))"
    )
}

/// The API's rows as the page's cells: every value as text, in column order.
fn as_cells(rows: &Value, columns: &[&str]) -> Value {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| match &r[*c] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .into()
}

/// Every address the page loaded or refers to is on the server's own origin.
/// What breaks a page's layout: the page scrolling sideways, or a word in a table cell, a state badge or a
/// heading broken across lines.
/// `WIDTH` is replaced by the viewport's width: a phone's browser widens its layout viewport (and
/// `innerWidth`) to fit content that overflows, so the page is measured against the width asked for.
const LAYOUT_PROBLEMS: &str = r#"(() => {
  const bad = [];
  if (document.documentElement.scrollWidth > WIDTH)
    bad.push('the page scrolls sideways: ' + document.documentElement.scrollWidth + ' > WIDTH');
  for (const el of document.querySelectorAll('td, th, .state, h1, h2, dt')) {
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    let n;
    while ((n = walker.nextNode())) {
      const re = /\S+/g; let m;
      while ((m = re.exec(n.data))) {
        const r = document.createRange();
        r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
        const tops = new Set([...r.getClientRects()].filter(x => x.width > 0).map(x => Math.round(x.top)));
        if (tops.size > 1) bad.push('a word broken across lines in <' + el.tagName.toLowerCase() + '>: ' + m[0]);
      }
    }
  }
  return bad;
})()"#;

/// Loads `url` at 1366 px (a laptop) and at 390 px (a phone): the layout holds at both, and each is
/// screenshot as `<name>-<width>.png`.
async fn layout_holds(b: &mut Browser, url: &str, name: &str, shots: &std::path::Path) {
    for (width, mobile) in [(1366, false), (390, true)] {
        b.viewport(width, mobile).await;
        b.goto(url).await;
        let problems = b
            .eval(&LAYOUT_PROBLEMS.replace("WIDTH", &width.to_string()))
            .await;
        assert_eq!(problems, json!([]), "{name} at {width} px");
        b.screenshot(&shots.join(format!("{name}-{width}.png")))
            .await;
    }
    b.phone(None).await;
}

async fn only_own_host(b: &mut Browser, base: &str, page: &str) {
    let refs = b
        .eval(
            "[location.href, ...performance.getEntriesByType('resource').map(e => e.name), \
              ...[...document.querySelectorAll('[src]')].map(e => e.src), \
              ...[...document.querySelectorAll('[href]:not([rel~=external])')].map(e => e.href), \
              ...[...document.querySelectorAll('form')].map(f => f.action)]",
        )
        .await;
    let refs = refs.as_array().unwrap();
    assert!(refs.len() > 3, "{page}: {refs:?}");
    for r in refs {
        let r = r.as_str().unwrap();
        assert!(
            r.starts_with(&format!("{base}/")),
            "{page} refers to {r}, not to {base}"
        );
    }
}

#[tokio::test]
async fn the_dashboard_in_chromium_shows_what_the_api_answers() {
    let Some(chromium) = chromium() else { return };
    let server = Server::start(&config());
    let sent = fixture(&server).await;
    server.wait_for_count(READ_KEY, sent as u64).await;
    let base = server.base.clone();
    let shots = artefacts();
    let mut b = Browser::launch(&chromium).await;

    // Not logged in: the dashboard sends the browser to the login form.
    b.goto(&format!("{base}/ui/usage")).await;
    assert_eq!(b.eval("location.pathname").await, "/ui/login");
    b.screenshot(&shots.join("login.png")).await;
    let login = format!("{base}/ui/login");
    layout_holds(&mut b, &login, "login", &shots).await;
    // A wrong key: the form says so, and nothing opens.
    b.eval("document.getElementById('key').focus()").await;
    b.type_text("read-wrong").await;
    b.press_and_wait("Enter").await;
    let alert = b
        .eval("document.querySelector('[role=alert]').textContent")
        .await;
    assert!(
        alert.as_str().unwrap().contains("not a read key"),
        "{alert}"
    );
    // Log in with the keyboard only: focus the field, type the key, press Enter.
    b.eval("document.getElementById('key').focus()").await;
    b.type_text(READ_KEY).await;
    b.press_and_wait("Enter").await;
    assert_eq!(b.eval("location.pathname").await, "/ui/usage");
    // The key is in no address, and scripts cannot read the session cookie (HttpOnly).
    let href = b.eval("location.href").await;
    assert!(!href.as_str().unwrap().contains(READ_KEY), "{href}");
    assert_eq!(b.eval("document.cookie").await, "");
    assert_eq!(
        b.eval("document.querySelector('.tenant').textContent")
            .await,
        "shop"
    );

    // Headline numbers: exactly the overview report's, and its previous period's change.
    let (overview, _) = api(&server, "overview", "").await;
    let shown = b.eval(HEADLINE).await;
    for m in [
        "visitors",
        "visits",
        "pageviews",
        "bounce_rate",
        "visit_seconds",
    ] {
        let want = match &overview[0][m] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(shown[m], want.as_str(), "headline {m}");
    }
    assert_eq!(shown["visitors"], "6");
    assert_eq!(shown["pageviews"], "12");
    // The previous 30 days had nothing: fewer than k visitors, so its numbers are withheld and no change
    // is computed against them (saying "new" would tell that the period had none).
    assert_eq!(
        b.eval("document.querySelector('[data-metric=visitors] .change').dataset.change")
            .await,
        "—"
    );
    // Top pages: the rows the API gives, and the one hidden row (/secret, one visitor) said to be hidden.
    let (pages, hidden) = api(&server, "pages", "limit=10").await;
    assert_eq!(hidden, 1);
    assert_eq!(
        b.eval(&card_rows("pages")).await,
        as_cells(&pages, &["page", "visitors", "pageviews"])
    );
    assert_eq!(b.eval(&card_rows("pages")).await[0], json!(["/", "5", "5"]));
    assert_eq!(
        b.eval("document.querySelector('[data-report=pages] .suppressed').dataset.suppressed")
            .await,
        "1"
    );
    let page_text = b.eval("document.body.innerText").await;
    assert!(!page_text.as_str().unwrap().contains("/secret"));
    // Every other list matches its report too.
    for (report, columns) in [
        ("browsers", &["browser", "visitors", "pageviews"][..]),
        ("devices", &["device", "visitors", "pageviews"]),
        ("events", &["event", "visitors", "events"]),
    ] {
        let (rows, _) = api(&server, report, "limit=10").await;
        assert!(!rows.as_array().unwrap().is_empty(), "{report}");
        assert_eq!(
            b.eval(&card_rows(report)).await,
            as_cells(&rows, columns),
            "{report}"
        );
    }
    // The stylesheet loaded under the page's CSP (it is the only asset), and nothing came from elsewhere.
    assert_eq!(
        b.eval("getComputedStyle(document.querySelector('.metric')).borderTopStyle")
            .await,
        "solid"
    );
    only_own_host(&mut b, &base, "usage").await;
    b.screenshot(&shots.join("usage.png")).await;
    let here = b.eval("location.href").await.as_str().unwrap().to_owned();
    layout_holds(&mut b, &here, "usage", &shots).await;
    // At phone width nothing spills sideways.
    b.phone(Some(390)).await;
    b.goto(&format!("{base}/ui/usage")).await;
    assert_eq!(
        b.eval("document.documentElement.scrollWidth <= window.innerWidth")
            .await,
        true,
        "the usage page is wider than a phone"
    );
    b.screenshot(&shots.join("usage-phone.png")).await;
    b.phone(None).await;

    // One day is drawn hour by hour: 24 buckets whose page views add up to the day's.
    b.navigate_by(
        "[...document.querySelectorAll('.presets a')].find(a => a.textContent === 'Today').click()",
    )
    .await;
    let hours = b
        .eval("[...document.querySelectorAll('[aria-labelledby=h-series] details tbody tr')].map(tr => Number(tr.cells[2].textContent))")
        .await;
    let hours: Vec<u64> = serde_json::from_value(hours).unwrap();
    assert_eq!((hours.len(), hours.iter().sum::<u64>()), (24, 12));

    // Clicking a row filters by it: /docs, seen by two visitors.
    b.goto(&format!("{base}/ui/usage")).await;
    b.navigate_by("[...document.querySelectorAll('[data-report=pages] a')].find(a => a.textContent === '/docs').click()")
        .await;
    assert!(
        b.eval("location.search")
            .await
            .as_str()
            .unwrap()
            .contains("page=%2Fdocs")
    );
    let (filtered, _) = api(&server, "overview", "page=/docs").await;
    let shown = b.eval(HEADLINE).await;
    assert_eq!(
        shown["visitors"],
        filtered[0]["visitors"].to_string().as_str()
    );
    assert_eq!(shown["visitors"], "2");
    assert_eq!(
        b.eval("document.querySelector('.chip').dataset.filter")
            .await,
        "page"
    );
    b.screenshot(&shots.join("usage-filtered.png")).await;
    // And the filter form: device = mobile (the iPhone visitors 2, 4 and 6).
    b.goto(&format!("{base}/ui/usage")).await;
    b.navigate_by("document.getElementById('f-device').value = 'mobile'; document.querySelector('form.controls button').click()")
        .await;
    let (mobile, _) = api(&server, "overview", "device=mobile").await;
    assert_eq!(
        b.eval(HEADLINE).await["visitors"],
        mobile[0]["visitors"].to_string().as_str()
    );
    assert_eq!(mobile[0]["visitors"], 3);

    // Crash triage: the TypeError group (three visitors), the RangeError one hidden (one visitor).
    b.goto(&format!("{base}/ui/crashes")).await;
    let (groups, hidden) = api(&server, "crash_groups", "").await;
    assert_eq!(hidden, 1);
    let fp = groups[0]["fingerprint"].as_str().unwrap().to_owned();
    let rows = b
        .eval("[...document.querySelectorAll('tr[data-fingerprint]')].map(tr => [tr.dataset.fingerprint, tr.querySelector('[data-col=crashes]').dataset.value, tr.querySelector('[data-col=visitors]').dataset.value, !!tr.querySelector('svg.spark polyline')])")
        .await;
    assert_eq!(rows, json!([[fp, "3", "3", true]]));
    assert_eq!(
        b.eval("document.querySelector('.suppressed').dataset.suppressed")
            .await,
        "1"
    );
    only_own_host(&mut b, &base, "crashes").await;
    b.screenshot(&shots.join("crashes.png")).await;
    let here = b.eval("location.href").await.as_str().unwrap().to_owned();
    layout_holds(&mut b, &here, "crashes", &shots).await;

    // The group's page: scrubbed message and stack, trend, crash-free rate per release.
    b.navigate_by("document.querySelector('tr[data-fingerprint] a').click()")
        .await;
    assert_eq!(
        b.eval("location.pathname").await,
        format!("/ui/crashes/{fp}")
    );
    let message = b
        .eval("document.getElementById('message').textContent")
        .await;
    assert_eq!(message, "cart failed for [email]");
    let stack = b.eval("document.getElementById('stack').textContent").await;
    assert!(stack.as_str().unwrap().starts_with("at pay ("), "{stack}");
    assert!(stack.as_str().unwrap().contains("at main ("), "{stack}");
    // And normalised, as the fingerprint groups it: no host, no line or column.
    assert_eq!(
        b.eval("[...document.querySelectorAll('#frames li.grouped code')].map(c => c.textContent)")
            .await,
        json!(["pay (/app.js)", "main (/app.js)"])
    );
    let (trend, _) = api(&server, "crash_trend", &format!("fingerprint={fp}")).await;
    assert_eq!(trend[0]["crashes"], 3);
    // Release by release: the group's crashes (crash_releases), the release's visits and all groups'
    // crash-free rate (release_health), and the group's own rate from both.
    let (health, _) = api(&server, "release_health", "").await;
    let (releases, _) = api(&server, "crash_releases", &format!("fingerprint={fp}")).await;
    assert_eq!(releases[0]["crashes"], 3);
    let visits = health[0]["visits"].as_f64().unwrap();
    let own = 1.0 - releases[0]["crashed_visits"].as_f64().unwrap() / visits;
    assert_eq!(
        b.eval("[...document.querySelectorAll('#releases tbody tr')].map(tr => ['release', 'crashes', 'visits', 'crash_free_visits', 'crash_free_all'].map(c => tr.querySelector(`td[data-col=${c}]`).dataset.value))").await,
        json!([[
            releases[0]["release"].as_str().unwrap(),
            "3",
            visits.to_string(),
            Value::from(own).to_string(),
            health[0]["crash_free_visits"].to_string(),
        ]])
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#releases svg.timeline rect').length")
            .await,
        1
    );
    assert!(
        !b.eval("document.body.innerHTML")
            .await
            .as_str()
            .unwrap()
            .contains(EMAIL)
    );
    only_own_host(&mut b, &base, "crash group").await;
    b.screenshot(&shots.join("crash-group.png")).await;
    let here = b.eval("location.href").await.as_str().unwrap().to_owned();
    layout_holds(&mut b, &here, "crash-group", &shots).await;
    // Mark it resolved: it leaves the open list and is listed as resolved, kept in the tenant's file.
    b.navigate_by("document.querySelector('button[value=resolved]').click()")
        .await;
    assert_eq!(
        b.eval("document.getElementById('state').textContent").await,
        "resolved"
    );
    b.goto(&format!("{base}/ui/crashes")).await;
    assert_eq!(
        b.eval("document.querySelectorAll('tr[data-fingerprint]').length")
            .await,
        0
    );
    b.goto(&format!("{base}/ui/crashes?state=resolved")).await;
    assert_eq!(
        b.eval("document.querySelectorAll('tr[data-fingerprint]').length")
            .await,
        1
    );
    let marks: Value =
        serde_json::from_slice(&std::fs::read(server.data_dir.join("triage/shop.json")).unwrap())
            .unwrap();
    assert_eq!(marks[&fp]["state"], "resolved");

    // Realtime: the last 30 minutes, the same counts as the realtime report, reloading itself.
    b.goto(&format!("{base}/ui/realtime")).await;
    let (realtime, _) = api(&server, "realtime", "").await;
    let pageviews: u64 = realtime
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pageviews"].as_u64().unwrap())
        .sum();
    assert_eq!(pageviews, 12);
    assert_eq!(
        b.eval(HEADLINE).await["pageviews"],
        pageviews.to_string().as_str()
    );
    assert_eq!(
        b.eval("document.querySelector('meta[http-equiv=refresh]').content")
            .await,
        "30"
    );
    only_own_host(&mut b, &base, "realtime").await;
    b.screenshot(&shots.join("realtime.png")).await;
    let here = b.eval("location.href").await.as_str().unwrap().to_owned();
    layout_holds(&mut b, &here, "realtime", &shots).await;
    let goals = format!("{base}/ui/goals");
    layout_holds(&mut b, &goals, "goals", &shots).await;
    let funnel = format!("{base}/ui/funnels?steps=page:/,event:signup");
    layout_holds(&mut b, &funnel, "funnels", &shots).await;
    let event = format!("{base}/ui/events?event=signup");
    layout_holds(&mut b, &event, "events", &shots).await;
    let retention = format!("{base}/ui/retention");
    layout_holds(&mut b, &retention, "retention", &shots).await;
    let shares = format!("{base}/ui/shares");
    layout_holds(&mut b, &shares, "shares", &shots).await;

    // Keyboard: the first Tab reaches the skip link.
    b.press("Tab").await;
    assert_eq!(b.eval("document.activeElement.className").await, "skip");

    // Log out: the pages refuse the browser again.
    b.navigate_by("document.querySelector('form.logout button').click()")
        .await;
    assert_eq!(b.eval("location.pathname").await, "/ui/login");
    for page in [
        "/ui/usage",
        "/ui/crashes",
        &format!("/ui/crashes/{fp}"),
        "/ui/realtime",
    ] {
        b.goto(&format!("{base}{page}")).await;
        assert_eq!(b.eval("location.pathname").await, "/ui/login", "{page}");
        assert_eq!(
            b.eval("document.querySelectorAll('[data-metric]').length")
                .await,
            0
        );
    }
    drop(b);

    // Nothing the server wrote holds the raw addresses, the e-mail, the user ids, or the read key.
    let stopped = server.stop();
    let mut scanned = 0;
    let written = files_under(&stopped.data_dir)
        .into_iter()
        .chain(files_under(&stopped.logs));
    for file in written {
        let bytes = std::fs::read(&file).unwrap();
        scanned += 1;
        let text = String::from_utf8_lossy(&bytes);
        for secret in [EMAIL, "198.51.100.", "user-1", "user-2", "user-3", READ_KEY] {
            assert!(
                !text.contains(secret),
                "{} holds {secret:?}",
                file.display()
            );
        }
    }
    assert!(scanned > 5, "scanned only {scanned} files");
    eprintln!("screenshots of the dashboard: {}", shots.display());
}
