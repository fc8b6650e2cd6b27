//! Share links: a read-only dashboard for whoever holds the link, with the tenant's k, never SQL; revoked
//! or expired, 404.

use std::time::Duration;

use serde_json::{Value, json};

use crate::server::Server;

const CONFIG: &str = r#"
trusted_proxies = ["127.0.0.1/32"]
[ingest]
flush_interval = "100ms"
[[tenant]]
id = "a"
ingest_key = "ingest-a"
read_key = "read-a"
admin_key = "admin-a"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_link_shows_the_reports_view_until_it_is_revoked_or_expires() {
    let server = Server::start(CONFIG);
    // Six visitors on /, one alone on /rare (under the default k of 5).
    for (n, path) in (0..6).map(|n| (n, "/")).chain([(6, "/rare")]) {
        let (s, _) = server
            .post_events(
                "ingest-a",
                "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
                &format!("198.51.100.{}", 20 + n),
                "application/json",
                json!({"kind": "pageview", "url": format!("https://a.example{path}")}).to_string(),
            )
            .await;
        assert_eq!(s, 202);
    }
    server.wait_for_count("read-a", 7).await;
    let client = crate::server::http_client(false);
    let admin = |req: reqwest::RequestBuilder| req.bearer_auth("admin-a");
    let create = |body: Value| {
        admin(client.post(format!("{}/v1/admin/shares", server.base)))
            .body(body.to_string())
            .send()
    };
    let made: Value = create(json!({})).await.unwrap().json().await.unwrap();
    let link = made["link"].as_str().unwrap().to_owned();
    let key = link.strip_prefix("/ui/share/").unwrap().to_owned();

    // The link opens a session and moves on, the key out of the address bar.
    let opened = client
        .get(format!("{}{link}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status().as_u16(), 303);
    assert_eq!(opened.headers()["location"], "/ui/usage");
    let cookie = opened.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = |cookie: String| {
        let client = &client;
        let base = server.base.clone();
        async move {
            let r = client
                .get(format!("{base}/ui/usage"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, usage) = page(cookie.clone()).await;
    assert_eq!(status, 200);
    // The same suppressed rows as a reports view through the API: / shown, /rare held back.
    let api = client
        .get(format!("{}/v1/reports/pages", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(api.headers()["x-tacet-suppressed"], "1");
    let rows: Value = api.json().await.unwrap();
    assert_eq!(rows, json!([{"page": "/", "visitors": 6, "pageviews": 6}]));
    assert!(
        usage.contains(r#"data-value="/""#) && !usage.contains("/rare"),
        "{usage}"
    );
    assert!(usage.contains("1 row hidden"), "{usage}");
    // Read-only: crash triage (a mark, a merge) is refused even with the session's own form token.
    let csrf = usage
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    for path in [
        "/ui/crashes/0123456789abcdef",
        "/ui/crashes/0123456789abcdef/groups",
    ] {
        let refused = client
            .post(format!("{}{path}", server.base))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "csrf={csrf}&state=ignored&op=merge&into=fedcba9876543210"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status().as_u16(), 403, "{path}");
        assert!(refused.text().await.unwrap().contains("read-only"));
    }
    // Never SQL.
    let sql = client
        .post(format!("{}/v1/sql", server.base))
        .bearer_auth(&key)
        .body("SELECT url_path FROM events")
        .send()
        .await
        .unwrap();
    assert_eq!(sql.status().as_u16(), 403);
    // Listed (never the key), and only share keys open share links.
    let list: Value = admin(client.get(format!("{}/v1/admin/shares", server.base)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["id"], made["id"]);
    assert!(!list.to_string().contains(&key));
    let read = client
        .get(format!("{}/ui/share/read-a", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 404);

    // Revoked: the link is 404 and its session ends.
    let id = made["id"].as_str().unwrap();
    let revoked = admin(client.delete(format!("{}/v1/admin/shares/{id}", server.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(2_500)).await; // created keys are re-read every 2 s
    let gone = client
        .get(format!("{}{link}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status().as_u16(), 404);
    let (status, _) = page(cookie).await;
    assert_eq!(status, 303, "the revoked link's session ended");

    // Expired: 404 too.
    let brief: Value = create(json!({"expires_in": "1s"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let expired = client
        .get(format!(
            "{}{}",
            server.base,
            brief["link"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status().as_u16(), 404);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_link_with_a_password_and_links_managed_in_the_dashboard() {
    let server = Server::start(CONFIG);
    let client = crate::server::http_client(false);
    let create = |body: Value| {
        client
            .post(format!("{}/v1/admin/shares", server.base))
            .bearer_auth("admin-a")
            .body(body.to_string())
            .send()
    };
    // Too short a password: 400 that says how long.
    let short = create(json!({"password": "short"})).await.unwrap();
    assert_eq!(short.status().as_u16(), 400);
    assert!(short.text().await.unwrap().contains("8 to 1024"));
    let made: Value = create(json!({"password": "correct horse"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(made["password"], true);
    let link = format!("{}{}", server.base, made["link"].as_str().unwrap());
    // The link asks for the password before it opens anything.
    let asked = client.get(&link).send().await.unwrap();
    assert_eq!(asked.status().as_u16(), 200);
    assert!(asked.headers().get("set-cookie").is_none());
    assert!(asked.text().await.unwrap().contains(r#"name="password""#));
    let post = |password: &str| {
        client
            .post(&link)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("password={password}"))
            .send()
    };
    let wrong = post("wrong+horse").await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let right = post("correct+horse").await.unwrap();
    assert_eq!(right.status().as_u16(), 303);
    assert_eq!(right.headers()["location"], "/ui/usage");
    let shared_cookie = right.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    // A shared dashboard has no share-link page.
    let shares_page = client
        .get(format!("{}/ui/shares", server.base))
        .header("cookie", &shared_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(shares_page.status().as_u16(), 404);
    // The listing says a password is set, never what it is.
    let list = client
        .get(format!("{}/v1/admin/shares", server.base))
        .bearer_auth("admin-a")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        list.contains(r#""password":true"#) && !list.contains("horse"),
        "{list}"
    );

    // The dashboard's own page: the read key's session, and the admin key for every action.
    let (browser, cookie) = crate::server::dashboard_login(&server, "read-a").await;
    let page = browser
        .get(format!("{}/ui/shares", server.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"name="admin_key""#), "{page}");
    let csrf = page
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let act = |form: String| {
        browser
            .post(format!("{}/ui/shares", server.base))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    // The read key is not the admin key; neither is another word.
    for key in ["read-a", "nonsense"] {
        let r = act(format!("csrf={csrf}&op=list&admin_key={key}"))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{key}");
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("share links are made and revoked with it")
        );
    }
    // Without the form token: refused.
    let r = act("op=list&admin_key=admin-a".into()).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // Make one with an expiry: shown once, then listed with the one from the API.
    let r = act(format!(
        "csrf={csrf}&op=create&admin_key=admin-a&expires_in=7d&password="
    ))
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let made_here = r.text().await.unwrap();
    let new_link = made_here
        .split(r#"id="new-link""#)
        .nth(1)
        .and_then(|rest| rest.split(r#"<a href=""#).nth(1))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("{made_here}"))
        .to_owned();
    assert!(new_link.starts_with("/ui/share/tk_share_"), "{new_link}");
    let rows = made_here.matches("<tr data-share=").count();
    assert_eq!(rows, 2, "{made_here}");
    assert!(made_here.contains(made["id"].as_str().unwrap()));
    let opened = client
        .get(format!("{}{new_link}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status().as_u16(), 303);
    // Revoke the API's link from the page: it answers 404, and its session ends.
    let id = made["id"].as_str().unwrap();
    let r = act(format!("csrf={csrf}&op=revoke&admin_key=admin-a&id={id}"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let after = r.text().await.unwrap();
    assert!(after.contains(&format!("Link {id} revoked")), "{after}");
    tokio::time::sleep(Duration::from_millis(2_500)).await; // created keys are re-read every 2 s
    assert_eq!(
        client.get(&link).send().await.unwrap().status().as_u16(),
        404
    );
    let ended = client
        .get(format!("{}/ui/usage", server.base))
        .header("cookie", &shared_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status().as_u16(), 303);
    // Every action is in the audit log, with the dashboard as the actor.
    let audit = client
        .get(format!("{}/v1/admin/audit", server.base))
        .bearer_auth("admin-a")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        audit.contains("share.create")
            && audit.contains("share.revoke")
            && audit.contains(r#""actor":"dashboard""#),
        "{audit}"
    );
    server.stop();
}
