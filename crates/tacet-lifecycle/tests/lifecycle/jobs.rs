//! Retention with a moved clock, offboarding, objection, rectification, export and compaction, on a real
//! pipeline over local disk.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::fixture::{DAY, Env, START, UA, lake_files, tenant};
use serde_json::json;
use tacet_model::{Kind, TenantId, parse_event};
use tacet_privacy::{RequestContext, TenantPolicy};
use tacet_query::{Report, ReportParams};

fn policy(toml_text: &str) -> TenantPolicy {
    toml::from_str(toml_text).unwrap()
}

fn date(day: i64) -> String {
    chrono::DateTime::from_timestamp_millis(START + day * DAY)
        .unwrap()
        .date_naive()
        .to_string()
}

async fn daily(env: &Env, t: &TenantId, from: i64, to: i64) -> Vec<serde_json::Value> {
    daily_in(env, t, from, to, chrono_tz::UTC).await
}

/// `daily` for a tenant whose days are those of `zone`.
async fn daily_in(
    env: &Env,
    t: &TenantId,
    from: i64,
    to: i64,
    zone: chrono_tz::Tz,
) -> Vec<serde_json::Value> {
    let params = ReportParams::parse(
        &BTreeMap::from([
            ("from".to_owned(), date(from)),
            ("to".to_owned(), date(to)),
            ("limit".to_owned(), "1000".to_owned()),
        ]),
        chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
    )
    .unwrap();
    let out = env
        .query
        .report(
            t,
            Report::find("daily").unwrap(),
            &params,
            &tacet_query::ReportScope {
                zone,
                ..tacet_query::ReportScope::utc(1)
            },
        )
        .await
        .unwrap();
    let bytes =
        tacet_query::format::encode(tacet_query::format::Format::Json, &out.schema, &out.batches)
            .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Accepts events through the pipeline (policy, log, buffer) and flushes them.
async fn ingest(env: &Env, t: &TenantId, events: Vec<serde_json::Value>) -> tacet_ingest::Accepted {
    let now = env.clock.now_millis();
    let raw = events
        .into_iter()
        .map(|e| parse_event(e, now).unwrap())
        .collect();
    let ctx = RequestContext::new("198.51.100.7".parse().unwrap(), UA);
    let accepted = env
        .pipeline
        .accept(t, &TenantPolicy::default(), ctx, raw)
        .await
        .unwrap();
    env.pipeline.flush().await;
    accepted
}

use tacet_model::Clock;

/// Source maps go with the crashes they explain: a release's maps stay while crashes of it are in the lake
/// or while they are younger than the crash retention, then the retention job deletes them.
#[tokio::test]
async fn a_releases_source_maps_go_when_its_crashes_have_and_they_are_old() {
    let env = Env::new(START + 3_600_000);
    let t = tenant("acme");
    ingest(
        &env,
        &t,
        vec![json!({"kind": "crash", "url": "https://a.example/", "release": "1.0.0",
            "error_type": "Error", "message": "boom", "stack": ["at f (https://a.example/app.js:1:1)"]})],
    )
    .await;
    let map = bytes::Bytes::from_static(
        br#"{"version":3,"sources":["src/a.js"],"names":[],"mappings":"AAAA"}"#,
    );
    let maps = env.pipeline.sourcemaps();
    for release in ["1.0.0", "2.0.0"] {
        maps.put(&t, release, "https://a.example/app.js", map.clone())
            .await
            .unwrap();
    }
    let tenants = vec![(t.clone(), policy("[retention]\ncrash = \"10d\""))];
    let run = |dry: bool| {
        let env = &env;
        let tenants = tenants.clone();
        async move {
            env.steward
                .retention_run(&tenants, dry, "test", &tacet_lifecycle::quiet)
                .await
                .unwrap()
        }
    };
    let releases = |report: &tacet_lifecycle::RetentionReport| -> Vec<String> {
        report
            .expired
            .iter()
            .filter_map(|e| match &e.target {
                tacet_lifecycle::Target::SourceMaps { release } => Some(release.clone()),
                _ => None,
            })
            .collect()
    };
    // Today: the maps are new, nothing of them expires.
    assert!(releases(&run(true).await).is_empty());
    // Eleven days after the upload (the clock of the real world, as the upload's): 2.0.0 never crashed,
    // its maps go; 1.0.0's crash is still in the lake this run (its partition goes in the same run).
    let now = chrono::Utc::now().timestamp_millis();
    env.clock.set(now + 11 * DAY);
    let first = run(false).await;
    assert_eq!(releases(&first), ["2.0.0"]);
    let left: Vec<String> = maps
        .list(&t, None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.release)
        .collect();
    assert_eq!(left, ["1.0.0"]);
    // The next run: no crash of 1.0.0 left, its maps go too; each drop is audited.
    assert_eq!(releases(&run(false).await), ["1.0.0"]);
    assert!(maps.list(&t, None).await.unwrap().is_empty());
    let audit = env.steward.audit().read().unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.entry.action == "retention.drop"
                && e.entry.detail.to_string().contains("source_maps"))
            .count(),
        2
    );
}

#[tokio::test]
async fn retention_drops_exactly_the_expired_partitions_and_rollups_answer_for_them() {
    let today = 60;
    let env = Env::new(START + today * DAY + 3_600_000);
    let t = tenant("acme");
    // 60 days of page views and crashes, 20 events per day each.
    env.generate(&t, &[Kind::Pageview, Kind::Crash], 60, 1, 20, 5, &[])
        .await;
    let p = policy(
        "[retention]\npageview = \"30d\"\nevent = \"30d\"\ncrash = \"10d\"\nrollups = \"90d\"",
    );
    let tenants = vec![(t.clone(), p)];
    let before = daily(&env, &t, 0, 59).await;
    assert_eq!(before.len(), 60);
    assert_eq!(
        before[0],
        json!({"day": date(0), "visitors": 20, "pageviews": 20, "events": 0, "crashes": 20, "suppressed": null})
    );

    // The dry run lists exactly what goes: page views before day 30, crashes before day 50.
    let dry = env
        .steward
        .retention_run(&tenants, true, "test", &tacet_lifecycle::quiet)
        .await
        .unwrap();
    let mut listed: Vec<(String, String)> = dry
        .expired
        .iter()
        .map(|e| match &e.target {
            tacet_lifecycle::Target::Partition { kind, date } => (kind.clone(), date.clone()),
            tacet_lifecycle::Target::Rollup { date } => ("rollup".into(), date.clone()),
            tacet_lifecycle::Target::Visits { date } => ("visits".into(), date.clone()),
            tacet_lifecycle::Target::SourceMaps { release } => ("maps".into(), release.clone()),
        })
        .collect();
    listed.sort();
    let mut expected: Vec<(String, String)> = (0..30)
        .map(|d| ("pageview".to_owned(), date(d)))
        .chain((0..50).map(|d| ("crash".to_owned(), date(d))))
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
    let files = lake_files(&env);
    assert_eq!(files.len(), 120, "a dry run deletes nothing");

    let run = env
        .steward
        .retention_run(&tenants, false, "test", &tacet_lifecycle::quiet)
        .await
        .unwrap();
    // 80 partitions, and the stored visits the rollups below wrote for the 30 days whose page views went.
    assert_eq!(run.files_deleted, 110);
    // One rollup per day that lost a partition, written before the first drop of that day.
    assert_eq!(run.rollups_written, 50);
    let left = lake_files(&env);
    let raw_left: Vec<&String> = left.iter().filter(|f| f.starts_with("events/")).collect();
    assert_eq!(raw_left.len(), 40);
    // Stored visits stay exactly as long as the day's page views.
    let visits: Vec<String> = left
        .iter()
        .filter(|f| f.starts_with("visits/"))
        .cloned()
        .collect();
    let expected: Vec<String> = (30..50)
        .map(|d| format!("visits/tenant={t}/date={}/visits.parquet", date(d)))
        .collect();
    assert_eq!(visits, expected);
    for d in 0..60 {
        let pv = left
            .iter()
            .any(|f| f.contains(&format!("kind=pageview/date={}/", date(d))));
        let cr = left
            .iter()
            .any(|f| f.contains(&format!("kind=crash/date={}/", date(d))));
        assert_eq!((pv, cr), (d >= 30, d >= 50), "day {d}");
    }
    // The daily report still answers every day, from rollups where raw events are gone.
    assert_eq!(daily(&env, &t, 0, 59).await, before);
    // The audit log has one entry per drop.
    let audit = env.steward.audit().read().unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.entry.action == "retention.drop")
            .count(),
        110
    );

    // At day 125 the rest of the raw events expire (their days get rollups first), and the rollups of
    // days before day 35 (older than 90 days) go.
    env.clock.set(START + 125 * DAY);
    let run = env
        .steward
        .retention_run(&tenants, false, "test", &tacet_lifecycle::quiet)
        .await
        .unwrap();
    let rollups_dropped = run
        .expired
        .iter()
        .filter(|e| matches!(e.target, tacet_lifecycle::Target::Rollup { .. }))
        .count();
    assert_eq!(
        rollups_dropped, 35,
        "rollups of days 0..35 are older than 90 days"
    );
    let days: Vec<String> = daily(&env, &t, 0, 59)
        .await
        .iter()
        .map(|r| r["day"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(days, (35..60).map(date).collect::<Vec<_>>());
    assert_eq!(run.rollups_written, 10, "days 50..59 had no rollup yet");
    assert!(lake_files(&env).iter().all(|f| f.starts_with("rollups/")));
}

/// A tenant in Berlin (UTC+2 in June): its days run 22:00 to 22:00 UTC, so dropping a UTC date takes most of
/// one local day and the last two hours of the next. Retention writes a rollup of both local days before the
/// drop, and the daily report answers every Berlin day as before.
#[tokio::test]
async fn retention_rolls_up_the_local_days_a_dropped_utc_date_runs_over() {
    let today = 12;
    let env = Env::new(START + today * DAY + 3_600_000);
    let t = tenant("berlin");
    env.generate(&t, &[Kind::Pageview], 12, 1, 20, 5, &[]).await;
    // And three page views at 23:00 UTC on day 3: 01:00 on Berlin's day 4, filed under UTC date 3.
    let night: Vec<_> = (0..3)
        .map(|i| {
            let mut e = env.event(&t, Kind::Pageview, None, START + 3 * DAY + 23 * 3_600_000);
            e.visitor_id = Some(900 + i);
            e
        })
        .collect();
    let key = tacet_lake::PartitionKey::for_event(t.clone(), Kind::Pageview, START + 3 * DAY);
    let batch = tacet_privacy::EventBatch::from_events(night.iter()).unwrap();
    env.lake().write(&key, (1, 1), &batch).await.unwrap();
    let p = policy("timezone = \"Europe/Berlin\"\n[retention]\npageview = \"5d\"");
    let tenants = vec![(t.clone(), p)];
    let berlin = chrono_tz::Europe::Berlin;
    let before = daily_in(&env, &t, 0, 11, berlin).await;
    assert_eq!(before.len(), 12);
    assert_eq!(before[4]["pageviews"], 23, "{before:?}");
    let run = env
        .steward
        .retention_run(&tenants, false, "test", &tacet_lifecycle::quiet)
        .await
        .unwrap();
    // UTC dates 0..7 go, one file each and two on day 3; local days 0 to 7 each run over one of them (day
    // 4 keeps 20 of its 23 page views in the lake until UTC date 4 goes).
    // And the stored visits those rollups wrote for local days 0 to 6, before the page view cutoff (day 7
    // keeps its own: its page views are in the lake until UTC date 7's go).
    assert_eq!(run.files_deleted, 8 + 7);
    assert_eq!(run.rollups_written, 8, "local days 0 to 7, once each");
    let visits: Vec<String> = lake_files(&env)
        .into_iter()
        .filter(|f| f.starts_with("visits/"))
        .collect();
    assert_eq!(
        visits,
        [format!("visits/tenant={t}/date={}/visits.parquet", date(7))]
    );
    let rollups: Vec<String> = lake_files(&env)
        .into_iter()
        .filter(|f| f.starts_with("rollups/") && f.ends_with("/rollup.parquet"))
        .collect();
    assert_eq!(rollups.len(), 8, "{rollups:?}");
    assert_eq!(daily_in(&env, &t, 0, 11, berlin).await, before);
}

#[tokio::test]
async fn offboarding_removes_raw_events_and_keys_and_keeps_rollups() {
    let env = Env::new(START + 10 * DAY);
    let (a, b) = (tenant("acme"), tenant("globex"));
    env.generate(&a, &[Kind::Pageview, Kind::Event], 5, 2, 30, 3, &[])
        .await;
    env.generate(&b, &[Kind::Pageview], 5, 1, 10, 3, &[]).await;
    // Something still in the log and buffer, not yet flushed.
    let ctx = RequestContext::new("198.51.100.7".parse().unwrap(), UA);
    let raw = vec![parse_event(json!({"kind": "pageview", "url": "https://a.example/late", "ts": START + 4 * DAY, "user_id": "carol"}), env.clock.now_millis()).unwrap()];
    env.pipeline
        .accept(&a, &TenantPolicy::default(), ctx, raw)
        .await
        .unwrap();
    for d in 0..5 {
        let day = chrono::DateTime::from_timestamp_millis(START + d * DAY)
            .unwrap()
            .date_naive();
        env.query.rollup_day(&a, day, chrono_tz::UTC).await.unwrap();
    }
    let before = daily(&env, &a, 0, 4).await;
    assert_eq!(before.len(), 5);
    let b_before = daily(&env, &b, 0, 4).await;

    let cert = env
        .steward
        .offboard(&a, "test", &tacet_lifecycle::quiet)
        .await
        .unwrap();
    assert_eq!(cert.files_removed, 5 * 2 * 2 + 1);
    assert_eq!(cert.partitions_removed, 10);
    assert!(cert.keys_destroyed >= 2, "{cert:?}");
    // Each day's rollup and its rows per filter value; its stored visits went.
    assert_eq!(cert.rollup_files_kept, 5 * 2);
    assert_eq!(cert.visit_files_removed, 5);

    // Nothing of the tenant's raw data or keys is left anywhere in the data directory.
    let files = crate::fixture::all_files(env.dir.path());
    for (path, bytes) in &files {
        let rel = path
            .strip_prefix(env.dir.path())
            .unwrap()
            .display()
            .to_string();
        assert!(
            !rel.starts_with("lake/events/tenant=acme")
                && !rel.starts_with("lake/visits/tenant=acme")
                && !rel.contains("keys/salts/acme")
                && !rel.contains("keys/subject/acme"),
            "{rel} is left"
        );
        assert!(!bytes.windows(5).any(|w| w == b"carol"), "{rel}");
        if rel.starts_with("wal/") {
            assert!(
                !bytes.windows(4).any(|w| w == b"late"),
                "{rel} still holds the tenant's events"
            );
        }
    }
    // Rollups still answer for the tenant; the other tenant is untouched.
    assert_eq!(daily(&env, &a, 0, 4).await, before);
    assert_eq!(daily(&env, &b, 0, 4).await, b_before);
    let audit = env.steward.audit().read().unwrap();
    assert_eq!(audit.last().unwrap().hash, cert.audit_hash);
    assert_eq!(audit.last().unwrap().entry.action, "tenant.offboard");
    assert!(audit.iter().any(|e| e.entry.action == "key.destroyed"));
}

#[tokio::test]
async fn an_objection_drops_new_events_and_hides_stored_ones_until_withdrawn() {
    let env = Env::new(START + DAY);
    let t = tenant("acme");
    let ev = |user: &str| json!({"kind": "pageview", "url": "https://a.example/", "user_id": user});
    let got = ingest(&env, &t, vec![ev("bob"), ev("bob"), ev("eve")]).await;
    assert_eq!(got.stored, 3);
    assert_eq!(env.count(&t, "SELECT COUNT(*) FROM events").await, 3);

    assert_eq!(
        env.steward.object(&t, "bob", "test").unwrap(),
        tacet_ingest::Change::Added
    );
    assert_eq!(
        env.steward.object(&t, "bob", "test").unwrap(),
        tacet_ingest::Change::AlreadyThere
    );
    // New events of bob are dropped with reason `objected`, eve's are kept.
    let got = ingest(&env, &t, vec![ev("bob"), ev("eve")]).await;
    assert_eq!(got.stored, 1);
    assert_eq!(got.dropped, vec![(tacet_privacy::DropReason::Objected, 1)]);
    // His stored events are out of queries and reports (restriction), but his own export has them.
    assert_eq!(env.count(&t, "SELECT COUNT(*) FROM events").await, 2);
    let export = env.steward.export(&t, "bob", "json", "test").await.unwrap();
    assert_eq!(export.rows.num_rows(), 2);
    assert_eq!(export.manifest["rows"], 2);
    // A key rotation does not lift the objection.
    env.pipeline.keys().rotate_subject(&t).unwrap();
    env.clock.advance(20_000);
    let got = ingest(&env, &t, vec![ev("bob")]).await;
    assert_eq!(got.stored, 0);

    assert_eq!(
        env.steward.withdraw(&t, "bob", "test").unwrap(),
        tacet_ingest::Change::Removed
    );
    env.clock.advance(20_000);
    let got = ingest(&env, &t, vec![ev("bob")]).await;
    assert_eq!(got.stored, 1);
    assert_eq!(env.count(&t, "SELECT COUNT(*) FROM events").await, 5);
    let actions: Vec<String> = env
        .steward
        .audit()
        .read()
        .unwrap()
        .iter()
        .map(|e| e.entry.action.clone())
        .collect();
    assert!(
        actions.contains(&"subject.object".to_owned())
            && actions.contains(&"subject.withdraw".to_owned())
    );
    // Neither the objection list nor the audit log holds the user id.
    for (path, bytes) in crate::fixture::all_files(env.dir.path()) {
        assert!(!bytes.windows(3).any(|w| w == b"bob"), "{}", path.display());
    }
}

#[tokio::test]
async fn export_and_rectification_cover_every_key_version() {
    let env = Env::new(START + DAY);
    let t = tenant("acme");
    let ev = |user: &str, page: &str| json!({"kind": "event", "name": "signup", "url": format!("https://a.example/{page}"), "user_id": user, "props": {"plan": "free"}});
    ingest(&env, &t, vec![ev("dana", "a"), ev("erin", "a")]).await;
    // After a rotation dana's new events carry another pseudonym; both are hers.
    env.pipeline.keys().rotate_subject(&t).unwrap();
    env.clock.advance(20_000);
    ingest(&env, &t, vec![ev("dana", "b"), ev("erin", "b")]).await;

    let export = env.steward.export(&t, "dana", "csv", "test").await.unwrap();
    assert_eq!(export.rows.num_rows(), 2);
    let csv = tacet_query::format::encode(
        tacet_query::format::Format::Csv,
        &export.rows.schema,
        &export.rows.batches,
    )
    .unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.contains("/a") && csv.contains("/b"), "{csv}");
    assert!(
        export.manifest["not_included"][0]
            .as_str()
            .unwrap()
            .contains("daily visitor id")
    );

    let changes = [tacet_lifecycle::PropChange::parse("plan=pro").unwrap()];
    let report = env
        .steward
        .rectify(
            &t,
            &TenantPolicy::default(),
            "dana",
            &changes,
            "test",
            &tacet_lifecycle::quiet,
        )
        .await
        .unwrap();
    assert_eq!(report.rows, 2);
    let plans = env
        .query
        .sql(&t, "SELECT url_path, props['plan'] AS plan, user_pseudonym IS NOT NULL AS identified FROM events ORDER BY url_path, plan")
        .await
        .unwrap();
    let bytes = tacet_query::format::encode(
        tacet_query::format::Format::Json,
        &plans.schema,
        &plans.batches,
    )
    .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        rows,
        json!([
            {"url_path": "/a", "plan": "free", "identified": true},
            {"url_path": "/a", "plan": "pro", "identified": true},
            {"url_path": "/b", "plan": "free", "identified": true},
            {"url_path": "/b", "plan": "pro", "identified": true},
        ])
    );
    // A property outside the allow-list is refused.
    let strict = policy("props = [\"plan\"]");
    let bad = [tacet_lifecycle::PropChange::parse("email=x").unwrap()];
    let e = env
        .steward
        .rectify(&t, &strict, "dana", &bad, "test", &tacet_lifecycle::quiet)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("allow-list"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_merges_small_files_while_queries_see_every_row_once() {
    let env = Env::new(START + DAY);
    let t = tenant("acme");
    // Twelve flushes: twelve small files in each of two partitions.
    for i in 0..12 {
        let events = (0..10)
            .map(|j| if j % 2 == 0 {
                json!({"kind": "pageview", "url": format!("https://a.example/{i}/{j}")})
            } else {
                json!({"kind": "event", "name": "click", "url": format!("https://a.example/{i}/{j}")})
            })
            .collect();
        ingest(&env, &t, events).await;
    }
    let before = lake_files(&env);
    assert_eq!(before.len(), 24);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (query, t, stop) = (Arc::clone(&env.query), t.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut seen = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let out = query
                    .sql(&t, "SELECT COUNT(*) AS n FROM events")
                    .await
                    .unwrap();
                let n = out.batches[0]
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .unwrap()
                    .value(0);
                assert_eq!(n, 120, "a query during compaction saw {n} rows");
                seen += 1;
            }
            seen
        })
    };
    let options = tacet_lifecycle::CompactOptions {
        min_age: std::time::Duration::ZERO,
        target_bytes: 64 << 20,
    };
    let report = env
        .steward
        .compact(&t, options, "test", &tacet_lifecycle::quiet)
        .await
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let queries = watcher.await.unwrap();
    assert!(queries > 0);
    assert_eq!(
        (report.files_merged, report.files_written, report.rows),
        (24, 2, 120)
    );
    let after = lake_files(&env);
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(env.count(&t, "SELECT COUNT(*) FROM events").await, 120);
    assert_eq!(
        env.count(&t, "SELECT COUNT(DISTINCT url_path) FROM events")
            .await,
        120
    );
    // Compacting again has nothing to do; new flushes after it are files of their own.
    let again = env
        .steward
        .compact(&t, options, "test", &tacet_lifecycle::quiet)
        .await
        .unwrap();
    assert_eq!(again.files_merged, 0);
    ingest(
        &env,
        &t,
        vec![json!({"kind": "pageview", "url": "https://a.example/new"})],
    )
    .await;
    assert_eq!(env.count(&t, "SELECT COUNT(*) FROM events").await, 121);
}

#[tokio::test]
async fn erasure_and_compaction_work_on_an_encrypted_lake() {
    let env = Env::encrypted(START + DAY);
    let t = tenant("acme");
    for i in 0..4 {
        let events = (0..5)
            .map(|j| json!({"kind": "event", "name": "click", "url": format!("https://a.example/{i}/{j}"),
                "user_id": if j == 0 { "frank".to_owned() } else { format!("u{i}{j}") }}))
            .collect();
        ingest(&env, &t, events).await;
    }
    assert_eq!(env.count(&t, "SELECT COUNT(*) FROM events").await, 20);
    // The day's stored visits (written with its rollup) are encrypted too (checked below with every file),
    // and go with the erasure: they were computed from the person's events.
    let day = chrono::DateTime::from_timestamp_millis(START + DAY)
        .unwrap()
        .date_naive();
    let visit_files = |env: &Env| {
        lake_files(env)
            .into_iter()
            .filter(|f| f.starts_with("visits/tenant=acme/"))
            .count()
    };
    env.query.rollup_day(&t, day, chrono_tz::UTC).await.unwrap();
    assert_eq!(visit_files(&env), 1);
    let report = env
        .steward
        .erase(&t, "frank", "test", &tacet_lifecycle::quiet)
        .await
        .unwrap();
    assert_eq!((report.rows, report.files_rewritten), (4, 4));
    assert_eq!(report.visit_files_deleted, 1);
    assert_eq!(visit_files(&env), 0);
    // Written again from what is left, and read back through `visits` with the tenant's key.
    env.query.rollup_day(&t, day, chrono_tz::UTC).await.unwrap();
    assert_eq!(visit_files(&env), 1);
    let stored = env
        .query
        .stored_visit_days(&t, chrono_tz::UTC, true)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(env.count(&t, "SELECT SUM(events) FROM visits").await, 16);
    let options = tacet_lifecycle::CompactOptions {
        min_age: std::time::Duration::ZERO,
        target_bytes: 64 << 20,
    };
    let compacted = env
        .steward
        .compact(&t, options, "test", &tacet_lifecycle::quiet)
        .await
        .unwrap();
    assert_eq!((compacted.files_merged, compacted.files_written), (4, 1));
    assert_eq!(env.count(&t, "SELECT COUNT(*) FROM events").await, 16);
    // Every file of events or visits is still encrypted: a reader without the key fails on it (rollups,
    // counts without pseudonyms, are not).
    let files = lake_files(&env);
    assert!(files.iter().any(|f| f.starts_with("visits/")));
    for f in files.into_iter().filter(|f| !f.starts_with("rollups/")) {
        let path = env.dir.path().join("lake").join(&f);
        let plain =
            parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&path).unwrap());
        assert!(plain.is_err(), "{f} reads without the key");
    }
}

/// Retention runs once for all nodes: while another holder (a node's schedule, a CronJob pod) has the lease
/// `leases/retention`, a run does nothing and names the holder; once released, it runs and gives the lease
/// back.
#[tokio::test]
async fn retention_runs_once_for_all_nodes_under_its_lease() {
    let env = Env::new(START + 40 * DAY + 3_600_000);
    let t = tenant("acme");
    env.generate(&t, &[Kind::Pageview], 40, 1, 5, 5, &[]).await;
    let tenants = vec![(t.clone(), policy("[retention]\npageview = \"30d\""))];
    let leases = tacet_state::Dir::from(&env.dir.path().join("leases"));
    env.steward
        .set_leases(leases.clone(), "tacet serve node 1".into());
    let ttl = std::time::Duration::from_secs(600);
    let other = leases
        .acquire("retention", "tacet cli on tacet-retention-29 (pid 7)", ttl)
        .unwrap()
        .unwrap();
    let before = lake_files(&env);
    let refused = env
        .steward
        .retention_run(&tenants, false, "test", &tacet_lifecycle::quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("retention is running elsewhere (tacet cli on tacet-retention-29 (pid 7)")
            && refused.contains("nothing was done"),
        "{refused}"
    );
    assert_eq!(lake_files(&env), before, "a refused run changed the lake");
    other.release().unwrap();
    let report = env
        .steward
        .retention_run(&tenants, false, "test", &tacet_lifecycle::quiet)
        .await
        .unwrap();
    let partitions = report
        .expired
        .iter()
        .filter(|e| matches!(e.target, tacet_lifecycle::Target::Partition { .. }))
        .count();
    assert_eq!(partitions, 10, "days 0 to 9 of 40");
    // With the visits their rollups wrote, dropped in the same run.
    assert_eq!(report.expired.len(), 20);
    // Given back: the next holder takes it at once.
    assert!(
        leases
            .acquire("retention", "tacet serve node 2", ttl)
            .unwrap()
            .is_ok()
    );
}

/// From the moment an erasure is requested (its record written), queries on every node leave the person
/// out, before the lake is rewritten; once the record is settled, nothing is hidden for it any more.
#[tokio::test]
async fn a_pending_erasure_hides_the_person_from_queries_at_once() {
    let env = Env::new(START + DAY);
    let t = tenant("acme");
    let ev = |user: &str| json!({"kind": "pageview", "url": "https://a.example/", "user_id": user});
    let got = ingest(&env, &t, vec![ev("bob"), ev("bob"), ev("eve")]).await;
    assert_eq!(got.stored, 3);
    assert_eq!(env.count(&t, "SELECT COUNT(*) FROM events").await, 3);
    let keys = env.pipeline.keys();
    let id = keys.record_erasure(&t, "bob").unwrap().unwrap();
    // The record only (as while the erasure waits for nodes or rewrites files): bob is out already.
    assert_eq!(env.count(&t, "SELECT COUNT(*) FROM events").await, 1);
    // Another process sharing the key store sees it within a second.
    let other = tacet_ingest::KeyStore::open(keys.dir(), env.clock.clone()).unwrap();
    assert_eq!(
        other.erasing(&t).unwrap().len(),
        keys.subject_keys(&t).unwrap().len()
    );
    keys.settle_erasure(&t, &id, &[]).unwrap();
    env.clock.advance(1_000);
    assert_eq!(env.count(&t, "SELECT COUNT(*) FROM events").await, 3);
}

/// An erasure whose node stopped after writing the record (the request was answered in the background,
/// or the node crashed mid-way) is finished by `resume_erasures` once it is old enough: the lake loses the
/// person's rows, the receipt is kept, the record goes; a fresh one is left to its node.
#[tokio::test]
async fn an_erasure_left_unfinished_is_finished_later_with_its_receipt() {
    let env = Env::new(START + DAY);
    let t = tenant("acme");
    let ev = |user: &str| json!({"kind": "pageview", "url": "https://a.example/", "user_id": user});
    let got = ingest(&env, &t, vec![ev("bob"), ev("bob"), ev("eve")]).await;
    assert_eq!(got.stored, 3);
    env.pipeline.flush().await;
    let begun = env.steward.begin_erasure(&t, "bob").unwrap();
    let id = begun.record.clone().unwrap();
    drop(begun); // the node that began it is gone
    let fresh = env.steward.begin_erasure(&t, "eve").unwrap();
    let late = std::time::Duration::from_secs(600);
    // Too fresh to be taken from its node yet... and this process is finishing "eve" itself.
    assert_eq!(env.steward.resume_erasures(late, "test").await.unwrap(), 0);
    env.clock.advance(11 * 60_000);
    assert_eq!(env.steward.resume_erasures(late, "test").await.unwrap(), 1);
    let keys = env.pipeline.keys();
    let receipt = keys.receipt(&t, &id).unwrap().unwrap();
    assert_eq!(receipt["done"], true, "{receipt}");
    assert_eq!(receipt["receipt"]["rows"], 2, "{receipt}");
    let left: Vec<String> = keys
        .erasures(&t)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, [fresh.record.clone().unwrap()]);
    let export = env.steward.export(&t, "bob", "json", "test").await.unwrap();
    assert_eq!(export.rows.num_rows(), 0);
    // Its own node finishes the other.
    let report = env
        .steward
        .finish_erasure(&t, fresh, "test", &tacet_lifecycle::quiet)
        .await
        .unwrap();
    assert_eq!(report.rows, 1);
    assert!(keys.erasures(&t).unwrap().is_empty());
}
