//! The privacy scan: raw IPs, user ids, e-mail addresses and user-agent strings sent to the server must
//! appear nowhere it wrote (lake, write-ahead log, keys, logs, crash alerts' dead letters, dashboard logouts),
//! neither as bytes nor inside decoded Parquet values.
//!
//! Extend `NEEDLES` and the places scanned whenever the server gains a new place that writes.

use std::fs::File;

use arrow::util::pretty::pretty_format_batches;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;

use crate::server::{Server, files_under, tacet, two_tenant_config};

const IPS: [&str; 4] = [
    "198.51.100.23",
    "203.0.113.199",
    "2001:db8:85a3::8a2e:370:7334",
    "192.0.2.77",
];
const USER_IDS: [&str; 2] = ["user-7f3a9c2e-private-id", "carol.danvers@example.org"];
const EMAILS: [&str; 5] = [
    "dave.probe@example.net",
    "erin.probe@example.com",
    "frank.probe@example.com",
    "grace.probe@example.org",
    "heidi.probe@example.co.uk",
];
const UAS: [&str; 2] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) TacetPrivacyProbe/9.8.7 Chrome/121.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7; ProbeBuild/4242) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
];

/// Planted where the scrubber's value rules must find them: a US social security number (in the URL, a
/// property, the release, the message and the stack) and telephone numbers (both tenants opt in to `phone`).
const NUMBERS: [&str; 3] = ["078-05-1120", "+1 415 555 0123", "+44 20 7946 0958"];

/// Secrets planted in crash messages, stack frames, properties and URLs: each must be scrubbed.
const SECRETS: [&str; 10] = [
    "4539 1488 0343 6467",
    "DE89370400440532013000",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwcm9iZS11c2VyIn0.c2lnbmF0dXJlLXByb2Jl",
    "probe-bearer-9f8e7d6c5b4a",
    "ghp_ProbeToken0123456789abcdefghijklmnopqr",
    "probe-db-pass-77",
    "probeuser-home",
    "MIIEprobeKEYbody0123456789",
    "probe-api-key-5150",
    "hunter2-probe",
];

/// A person erased through the admin API (never sent as an event): the erasure record holds pseudonyms,
/// the audit log the request, and neither the id.
const ERASED: &str = "erased.probe@example.com";

fn needles() -> Vec<&'static str> {
    IPS.iter()
        .chain(&USER_IDS)
        .chain(&[ERASED])
        .chain(&EMAILS)
        .chain(&UAS)
        .chain(&SECRETS)
        .chain(&NUMBERS)
        .copied()
        .collect()
}

#[tokio::test]
async fn no_raw_identifier_reaches_disk_or_logs() {
    // Tenant a sends crash alerts to a webhook that is not there: each new group's alert ends as a dead
    // letter on disk, a place that writes (its payload carries the stored crash message).
    let config = two_tenant_config("alert_interval = \"100ms\"")
        .replace(
            "read_key = \"read-a\"\n",
            "read_key = \"read-a\"\nadmin_key = \"admin-a\"\n[tenant.privacy]\nscrub_opt_in = [\"phone\"]\n\
             [tenant.alerts]\nwebhook = \"http://127.0.0.1:9/hook\"\nsecret = \"privacy-scan-alert-secret\"\n",
        )
        .replace(
            "ip = \"truncate\"\n",
            "ip = \"truncate\"\nscrub_opt_in = [\"phone\"]\n",
        );
    assert_eq!(config.matches("scrub_opt_in").count(), 2, "{config}");
    // Small log segments, so that the log writes into zero-filled (prepared) segments and spares too.
    let config = format!("{config}\n[wal]\nsegment_bytes = 16384\n");
    let server = Server::start(&config);
    let mut sent = 0u64;
    for (i, ip) in IPS.iter().enumerate() {
        let ua = UAS[i % UAS.len()];
        let user = USER_IDS[i % USER_IDS.len()];
        let batch = json!([
            {"kind": "pageview", "user_id": user,
             "url": format!("https://a.example/u/{}/profile?email={}&utm_source=probe", EMAILS[1], EMAILS[0]),
             "referrer": format!("https://mail.example/?to={}", EMAILS[0])},
            {"kind": "event", "name": "contact", "user_id": user, "url": "https://a.example/contact",
             "props": {"contact": EMAILS[2], "password": "hunter2-probe", "note": format!("from {ip}")}},
            {"kind": "crash", "user_id": user, "url": "https://a.example/app", "error_type": "AuthError",
             "message": format!("login failed for {} from {ip}", EMAILS[3]),
             "stack": [format!("at login ({}:1:1)", EMAILS[4]), "at main (app.js:2:1)"], "release": "2.0.0"},
            {"kind": "crash", "url": format!("https://a.example/pay/{}", SECRETS[0]), "error_type": "PaymentError",
             "message": format!("card {} declined; refund to {}; token {}; Authorization: Bearer {}; \
                 postgres://app:{}@db.internal/app; -----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----",
                 SECRETS[0], SECRETS[1], SECRETS[2], SECRETS[3], SECRETS[5], SECRETS[7]),
             "stack": [format!("at pay (/home/{}/app/pay.js:3:1)", SECRETS[6]), format!("at git ({})", SECRETS[4])]},
            {"kind": "event", "name": "checkout", "url": "https://a.example/checkout",
             "props": {"iban": SECRETS[1], "api_key": SECRETS[8], "note": format!("paid with {}", SECRETS[0])}},
            // The event's own user id inside its free text, an SSN everywhere, phone numbers.
            {"kind": "crash", "user_id": user, "url": format!("https://a.example/u/{}/ssn/{}", user, NUMBERS[0]),
             "error_type": "CartError", "release": format!("3.1.0 {}", NUMBERS[0]),
             "message": format!("cart failed for user {user}, ssn {}, call {} or {}", NUMBERS[0], NUMBERS[1], NUMBERS[2]),
             "stack": [format!("at cart (/u/{user}/cart.js:1:1) {}", NUMBERS[0])],
             "props": {"note": format!("{user} {} {}", NUMBERS[0], NUMBERS[1])}},
        ]);
        for key in ["ingest-a", "ingest-b"] {
            let (status, body) = server
                .post_events(key, ua, ip, "application/json", batch.to_string())
                .await;
            assert_eq!(status, 202, "{body}");
            sent += 6;
        }
    }
    server.wait_for_count("read-a", sent / 2).await;
    server.wait_for_count("read-b", sent / 2).await;
    // Known users are kept as pseudonyms: one per user id, on every event that carried one.
    let (_, users) = server
        .sql(
            "read-a",
            "SELECT COUNT(user_pseudonym) AS n, COUNT(DISTINCT user_pseudonym) AS d FROM events",
        )
        .await;
    assert_eq!(users, json!([{"n": sent / 2 * 4 / 6, "d": USER_IDS.len()}]));
    // The dashboard's logout is recorded on disk for every node: log in and out once.
    let (browser, cookie) = crate::server::dashboard_login(&server, "read-a").await;
    let page = browser
        .get(format!("{}/ui/usage", server.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let out = browser
        .post(format!("{}/ui/logout", server.base))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    // Wait for the alerts' dead letters (four attempts each, about two seconds).
    let dead = server.data_dir.join("alerts/a/dead");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_dir(&dead).map_or(0, |d| d.count()) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "no dead letters in {}",
            dead.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // An erasure writes its record (keys/erasures/) and an audit entry, places that write too.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/admin/subjects/erase", server.base))
        .bearer_auth("admin-a")
        .json(&json!({"user_id": ERASED}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let stopped = server.stop();
    // The daily rollups are a place that writes too (the server makes them hourly): make today's here.
    let today = chrono::Utc::now().date_naive().to_string();
    let out = tacet(&[
        "rollup",
        "--from",
        &today,
        "--to",
        &today,
        "--config",
        stopped.config.to_str().unwrap(),
        "--data-dir",
        stopped.data_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut places = files_under(&stopped.data_dir);
    places.extend(files_under(&stopped.logs));
    let parquet_files: Vec<_> = places
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .cloned()
        .collect();
    assert!(
        parquet_files.len() >= 8,
        "expected Parquet files for 2 tenants x 3 kinds, and 2 rollups: {places:?}"
    );
    // A day's rollup, beside it its rows per filter value (pages, countries, …), and the day's stored
    // visits (one row per visit, written with the rollup): all scanned.
    for (dir, name) in [
        ("rollups/tenant=a", "rollup.parquet"),
        ("rollups/tenant=a", "filters.parquet"),
        ("visits/tenant=a", "visits.parquet"),
    ] {
        assert!(
            parquet_files
                .iter()
                .any(|p| { p.to_string_lossy().contains(dir) && p.ends_with(name) }),
            "{name}: {parquet_files:?}"
        );
    }
    assert!(
        places.iter().any(|p| p.ends_with("stderr.log"))
            && places.iter().any(|p| p.ends_with("lifecycle.jsonl"))
    );
    // The places this scan must reach: alerts' dead letters and the record of a dashboard logout.
    let under = |dir: &str| {
        places
            .iter()
            .any(|p| p.starts_with(stopped.data_dir.join(dir)))
    };
    assert!(under("alerts/a/dead") && under("sessions"), "{places:?}");
    // And the erasure's receipt (kept so that any node can say when the last byte went).
    assert!(under("keys/receipts/a"), "{places:?}");
    // The erasure's record (pseudonyms) went as soon as the erasure ended: no other node needed it.
    // (Where a record stays, for a node that was down, tests/e2e/erasure.rs scans it.)
    assert!(!under("keys/erasures/a/"), "{places:?}");

    // 1. Raw bytes of every file the server wrote, logs included.
    for path in &places {
        let bytes = std::fs::read(path).unwrap();
        for needle in needles() {
            assert!(
                !contains(&bytes, needle.as_bytes()),
                "{needle:?} found in the raw bytes of {}",
                path.display()
            );
        }
    }

    // 2. Decoded values of every Parquet file (compression hides strings from a byte search).
    let mut rows = 0;
    let mut decoded = String::new();
    for path in &parquet_files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<_> = reader.map(Result::unwrap).collect();
        if path.to_string_lossy().contains("/events/") {
            rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
        }
        decoded.push_str(&pretty_format_batches(&batches).unwrap().to_string());
    }
    assert_eq!(rows as u64, sent, "every event sent is stored");
    for needle in needles() {
        assert!(
            !decoded.contains(needle),
            "{needle:?} found in decoded Parquet values"
        );
    }
    assert!(
        !decoded.contains("hunter2-probe"),
        "a value under a secret-named property key was stored"
    );

    // The scan must be able to see what is there: scrubbed placeholders and pseudonyms are stored.
    for expected in [
        "AuthError",
        "[email]",
        "[ip]",
        "[secret]",
        "[card]",
        "[iban]",
        "[jwt]",
        "Bearer [token]",
        "[token]",
        "postgres://[credentials]@db.internal/app",
        "[private_key]",
        "/home/[user]/app/pay.js",
        "/u/[email]/profile",
        "cart failed for user [user], ssn [ssn], call [phone] or [phone]",
        "3.1.0 [ssn]",
        "probe",
        "198.51.100.0/24",
    ] {
        assert!(
            decoded.contains(expected),
            "{expected:?} should be in the decoded data"
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
