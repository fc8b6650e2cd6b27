//! Closed days answered from their rollups (tacet_query::source): every report with a rollup path gives the
//! same rows as from raw events, report by report, filter by filter, through late events, visitor ids
//! shared across days, objections, files deleted (an erasure's rewrite), buffered events, expired days and
//! a tenant in another time zone; and the answer says which days came from where.

use std::sync::Mutex;

use tacet_query::source::{RawReason, ReportSource};
use tacet_query::{FreshEvents, Restrictions};

use super::*;

/// The reports with a rollup path (a `-- rollups:` header): every one the planner may roll.
fn rolled_reports() -> Vec<&'static str> {
    let names: Vec<&'static str> = tacet_query::REPORTS
        .iter()
        .filter(|r| r.rollup().is_some() || r.rollup_visits())
        .map(|r| r.name)
        .collect();
    assert_eq!(names.len(), 13, "{names:?}");
    names
}

/// One filter of each kind the issue names: page, country, browser, referrer class, UTM source.
const FILTERS: &[(&str, &str)] = &[
    ("page", "/docs"),
    ("country", "DE"),
    ("browser", "Firefox"),
    ("referrer_class", "search"),
    ("utm_source", "ads"),
];

#[derive(Debug, Default)]
struct Objections(Mutex<Vec<String>>);

impl Restrictions for Objections {
    fn restricted(&self, _tenant: &TenantId) -> Result<Vec<String>, String> {
        Ok(self.0.lock().unwrap().clone())
    }
}

/// A buffer holding nothing queries could see, but saying it holds events of some days; of node `.1` (one
/// of several writing the lake) or of the only server.
#[derive(Debug, Default)]
struct Buffer(Mutex<BTreeSet<NaiveDate>>, Option<u16>);

impl FreshEvents for Buffer {
    fn snapshot(
        &self,
        _tenant: &TenantId,
    ) -> Result<(Vec<arrow::array::RecordBatch>, u64), String> {
        Ok((Vec::new(), u64::MAX))
    }

    fn days(&self, _tenant: &TenantId) -> Result<Option<BTreeSet<NaiveDate>>, String> {
        Ok(Some(self.0.lock().unwrap().clone()))
    }

    fn node(&self) -> Option<u16> {
        self.1
    }
}

struct Pair {
    /// The tenant compared, and the range its reports ask for (`from`, `to`; none: `run_on`'s).
    tenant: &'static str,
    range: &'static [(&'static str, &'static str)],
    /// Reads closed days from rollups when it may.
    rolled: QueryEngine,
    /// `from_rollups = false`: raw events for every day that has them.
    raw: QueryEngine,
    objections: Arc<Objections>,
    buffer: Arc<Buffer>,
}

impl Pair {
    fn new(lake: &Lake, node: Option<u16>) -> Self {
        let engine = |from_rollups| {
            QueryEngine::new(
                Arc::clone(lake.store()),
                QueryConfig {
                    from_rollups,
                    ..QueryConfig::default()
                },
            )
            .unwrap()
        };
        let pair = Self {
            tenant: "shop",
            range: &[],
            rolled: engine(true),
            raw: engine(false),
            objections: Arc::default(),
            buffer: Arc::new(Buffer(Mutex::default(), node)),
        };
        for e in [&pair.rolled, &pair.raw] {
            e.set_restrictions(pair.objections.clone());
            e.set_fresh(pair.buffer.clone());
        }
        pair
    }

    async fn answer(
        engine: &QueryEngine,
        report: &str,
        params: &[(&str, &str)],
        scope: &ReportScope,
    ) -> (Value, ReportSource) {
        let out = run_on(engine, "shop", report, params, scope).await;
        let rows = canonical(serde_json::from_slice(&to_json(&out.batches).unwrap()).unwrap());
        (rows, out.source.expect("a report says its source"))
    }

    /// [`Pair::answer`] for this pair's tenant and range.
    async fn ask(
        &self,
        engine: &QueryEngine,
        report: &str,
        params: &[(&str, &str)],
        scope: &ReportScope,
    ) -> (Value, ReportSource) {
        let mut all = self.range.to_vec();
        all.extend_from_slice(params);
        let out = run_on(engine, self.tenant, report, &all, scope).await;
        let rows = canonical(serde_json::from_slice(&to_json(&out.batches).unwrap()).unwrap());
        (rows, out.source.expect("a report says its source"))
    }

    /// Every rolled report gives the raw answer, unfiltered and with each filter (which plans the same days
    /// from its own rollup rows); with a filter that has none, or two filters, raw. Returns the unfiltered
    /// reports' sources.
    async fn same_as_raw_filtered(&self, scope: &ReportScope, step: &str) -> Vec<ReportSource> {
        self.compare(scope, step, true).await
    }

    /// [`Pair::same_as_raw_filtered`] without filters.
    async fn same_as_raw(&self, scope: &ReportScope, step: &str) -> Vec<ReportSource> {
        self.compare(scope, step, false).await
    }

    async fn compare(&self, scope: &ReportScope, step: &str, filtered: bool) -> Vec<ReportSource> {
        let mut sources = Vec::new();
        for report in rolled_reports() {
            let (rows, source) = self.ask(&self.rolled, report, &[], scope).await;
            let (expected, _) = self.ask(&self.raw, report, &[], scope).await;
            assert!(
                !rows.as_array().unwrap().is_empty(),
                "{step}: {report} answers rows"
            );
            assert_eq!(rows, expected, "{step}: {report} ({source})");
            for filter in FILTERS.iter().filter(|_| filtered) {
                let (rows, filtered) = self.ask(&self.rolled, report, &[*filter], scope).await;
                let (expected, _) = self.ask(&self.raw, report, &[*filter], scope).await;
                assert_eq!(
                    rows, expected,
                    "{step}: {report} with {filter:?} ({filtered})"
                );
                assert_eq!(
                    (&filtered.rolled, &filtered.raw, filtered.whole),
                    (&source.rolled, &source.raw, source.whole),
                    "{step}: {report} with {filter:?} plans the days as without"
                );
                assert_eq!(
                    filtered.filter,
                    Some((filter.0.to_owned(), filter.1.to_owned()))
                );
            }
            // Not rolled per value (a goal), or two filters: raw, the same answers.
            let others = [&[("event", "signup")][..], &FILTERS[..2]];
            for filters in others.iter().filter(|_| filtered) {
                let (rows, filtered) = self.ask(&self.rolled, report, filters, scope).await;
                let (expected, _) = self.ask(&self.raw, report, filters, scope).await;
                assert_eq!(rows, expected, "{step}: {report} with {filters:?}");
                assert_eq!(
                    (filtered.kind(), filtered.whole),
                    ("raw", Some(RawReason::Filtered))
                );
            }
            sources.push(source);
        }
        sources
    }

    /// The `visits` table as client SQL reads it: the rolled engine (stored days where they are current)
    /// gives the raw engine's rows (every day computed from events), column by column. Returns the days
    /// read from stored visits.
    async fn visits_same_as_raw(&self, step: &str) -> Vec<String> {
        let tenant = TenantId::new(self.tenant).unwrap();
        let sql = "SELECT * FROM visits ORDER BY date, visitor_id, started";
        let rows = |o: &QueryOutput| -> Value {
            serde_json::from_slice(&to_json(&o.batches).unwrap()).unwrap()
        };
        let types = |o: &QueryOutput| -> Vec<(String, arrow::datatypes::DataType)> {
            o.schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect()
        };
        let stored = self.rolled.sql(&tenant, sql).await.unwrap();
        let raw = self.raw.sql(&tenant, sql).await.unwrap();
        assert_eq!(types(&stored), types(&raw), "{step}: visits' columns");
        assert_eq!(
            types(&stored),
            tacet_query::visits::visits_schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect::<Vec<_>>()
        );
        assert!(raw.num_rows() > 0, "{step}: visits has rows");
        assert_eq!(rows(&stored), rows(&raw), "{step}: visits");
        let days: Vec<String> = self
            .rolled
            .stored_visit_days(&tenant, self.rolled.zone_of(&tenant), true)
            .await
            .unwrap()
            .into_keys()
            .collect();
        // The plan reads a stored file for each of those days, and nothing stored otherwise.
        let plan = self
            .rolled
            .sql(&tenant, "EXPLAIN SELECT * FROM visits")
            .await
            .unwrap();
        let plan = String::from_utf8(to_json(&plan.batches).unwrap()).unwrap();
        assert_eq!(
            plan.matches("/visits.parquet").count(),
            days.len(),
            "{step}: {plan}"
        );
        days
    }

    async fn roll(&self, days: &[&str]) {
        self.roll_in(days, chrono_tz::UTC).await;
    }

    /// Rolls days of `zone`.
    async fn roll_in(&self, days: &[&str], zone: chrono_tz::Tz) {
        let tenant = TenantId::new(self.tenant).unwrap();
        for day in days {
            let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
            assert!(self.rolled.rollup_day(&tenant, day, zone).await.unwrap() > 0);
        }
    }
}

/// Each unfiltered report's days: `(rolled, raw with their reasons)`.
fn days(sources: &[ReportSource]) -> (Vec<String>, Vec<(String, RawReason)>) {
    let first = &sources[0];
    for s in sources {
        assert_eq!(s.rolled, first.rolled, "every report plans the same days");
        assert_eq!(s.raw, first.raw, "every report plans the same days");
    }
    (
        first.rolled.iter().cloned().collect(),
        first.raw.iter().map(|(d, r)| (d.clone(), *r)).collect(),
    )
}

const D0: &str = "2025-11-28";
const D1: &str = "2025-11-29";

/// One node of several (any may still hold, unflushed, events that arrived on a closed day).
#[tokio::test]
async fn closed_days_from_rollups_answer_exactly_as_raw_events() {
    let s = setup().await;
    let shop = TenantId::new("shop").unwrap();
    let pair = Pair::new(&s.lake, Some(1));
    let utc = ReportScope::utc(1);

    // No rollups yet: raw events, every report, and the same answers.
    let (rolled, raw) = days(&pair.same_as_raw(&utc, "no rollups").await);
    assert!(rolled.is_empty());
    assert_eq!(
        raw,
        [
            (D0.into(), RawReason::NoRollup),
            (D1.into(), RawReason::NoRollup)
        ]
    );
    assert!(pair.visits_same_as_raw("no rollups").await.is_empty());

    // Both days rolled up: every unfiltered report reads them, and answers as the raw events do (visitor 99's
    // sitting across midnight is two visitor ids and two visits either way).
    pair.roll(&[D0, D1]).await;
    let sources = pair.same_as_raw_filtered(&utc, "rolled").await;
    assert_eq!(days(&sources), (vec![D0.into(), D1.into()], vec![]));
    assert_eq!(
        sources[0].to_string(),
        "rollups; rollup_days=2; expired_days=0; raw_days=0"
    );
    // Visits too: both days from their stored visits, the rows of the raw events' visits.
    assert_eq!(
        pair.visits_same_as_raw("rolled").await,
        [D0.to_owned(), D1.to_owned()]
    );
    // By the hour, rollups cannot answer: raw.
    let (_, hourly) = Pair::answer(&pair.rolled, "timeseries", &[("interval", "hour")], &utc).await;
    assert_eq!(hourly.whole, Some(RawReason::Hourly));
    // Rollups of UTC days do not answer for a tenant whose days are Berlin's: raw, the same answers.
    let berlin = ReportScope {
        zone: chrono_tz::Europe::Berlin,
        ..ReportScope::utc(1)
    };
    let (rolled, raw) = days(&pair.same_as_raw(&berlin, "UTC rollups, Berlin days").await);
    assert!(rolled.is_empty());
    assert!(
        raw.iter().all(|(_, r)| *r == RawReason::OtherZone),
        "{raw:?}"
    );
    // A tenant accepting events older than the window rollups check for shared ids: raw.
    let long = ReportScope {
        accept_past_days: 60,
        ..ReportScope::utc(1)
    };
    let (_, source) = Pair::answer(&pair.rolled, "pages", &[], &long).await;
    assert_eq!(source.whole, Some(RawReason::LongAcceptWindow));

    // Events not flushed yet for the first day: it and the day after (whose ids such an event could carry)
    // read raw until they are in the lake.
    pair.buffer
        .0
        .lock()
        .unwrap()
        .insert(NaiveDate::from_ymd_opt(2025, 11, 28).unwrap());
    let (rolled, raw) = days(&pair.same_as_raw(&utc, "buffered").await);
    assert!(rolled.is_empty());
    assert_eq!(
        raw,
        [
            (D0.into(), RawReason::Buffered),
            (D1.into(), RawReason::Buffered)
        ]
    );
    pair.buffer.0.lock().unwrap().clear();
    pair.buffer
        .0
        .lock()
        .unwrap()
        .insert(NaiveDate::from_ymd_opt(2025, 11, 29).unwrap());
    assert_eq!(
        pair.visits_same_as_raw("buffered").await,
        [D0.to_owned()],
        "a day with buffered events computes its visits"
    );
    pair.buffer.0.lock().unwrap().clear();

    // A late event for the first day, sent on it by a new visitor: the first day's files changed, the second's
    // neighbour did; both raw, the same answers; rolled again, both from rollups with the new numbers.
    let late = |visitor: u32, ts: i64, path: &str| {
        (
            visitor,
            json!({"kind": "pageview", "url": format!("https://shop.example{path}"), "ts": ts}),
        )
    };
    write_arrived(
        &s.lake,
        &shop,
        &[late(150, DAY0 + 23 * 60 * MIN, "/late")],
        DAY0 + 60 * DAY,
        None,
        100,
    )
    .await;
    let (rolled, raw) = days(&pair.same_as_raw(&utc, "late event").await);
    assert!(rolled.is_empty());
    assert_eq!(
        raw,
        [
            (D0.into(), RawReason::Changed),
            (D1.into(), RawReason::Late)
        ]
    );
    pair.roll(&[D0, D1]).await;
    assert_eq!(
        pair.visits_same_as_raw("late event, rolled").await,
        [D0.to_owned(), D1.to_owned()]
    );
    assert_eq!(
        days(&pair.same_as_raw_filtered(&utc, "late event, rolled").await),
        (vec![D0.into(), D1.into()], vec![])
    );
    let (pages, _) = Pair::answer(&pair.rolled, "pages", &[], &utc).await;
    assert!(pages.to_string().contains("/late"), "{pages}");

    // A late event for the first day sent on the second by visitor 1 (who visits on the second day): it
    // carries the second day's visitor id into the first day. Summing the days would count visitor 1 twice;
    // the raw events count it once. Before the days are rolled again, the second day's rollup (which counts
    // that id) must not be added to the first day's raw events: its neighbour changed, so it reads raw too.
    write_arrived(
        &s.lake,
        &shop,
        &[late(1, DAY0 + 23 * 60 * MIN + 30 * MIN, "/late")],
        DAY0 + 60 * DAY,
        Some(1),
        200,
    )
    .await;
    let (_, raw) = days(&pair.same_as_raw(&utc, "shared id, not rolled").await);
    assert_eq!(
        raw,
        [
            (D0.into(), RawReason::Changed),
            (D1.into(), RawReason::Late)
        ]
    );
    // Rolled again, both days say so and read raw.
    pair.roll(&[D0, D1]).await;
    let (rolled, raw) = days(&pair.same_as_raw_filtered(&utc, "shared id").await);
    assert!(rolled.is_empty());
    assert_eq!(
        raw,
        [
            (D0.into(), RawReason::SharedIds),
            (D1.into(), RawReason::SharedIds)
        ]
    );
    // Visits are per day: a visitor id shared by two days makes a visit on each, stored or computed.
    assert_eq!(
        pair.visits_same_as_raw("shared id").await,
        [D0.to_owned(), D1.to_owned()]
    );
    let sum_of_days = |overview: &Value| overview[0]["visitors"].as_u64().unwrap();
    let (overview, _) = Pair::answer(&pair.raw, "overview", &[], &utc).await;
    let daily: u64 = {
        let (rows, _) = Pair::answer(&pair.raw, "daily", &[], &utc).await;
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| r["visitors"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        sum_of_days(&overview) + 1,
        daily,
        "the shared id is one visitor over the range, one on each day"
    );
    // The shared event removed (as an erasure of it would): the days read from rollups once rolled again.
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let store = s.lake.store();
    let files: Vec<_> = store
        .list(Some(&object_store::path::Path::from("events/tenant=shop")))
        .try_collect()
        .await
        .unwrap();
    let shared_file = files
        .iter()
        .find(|m| m.location.as_ref().contains("00000000000000000200"))
        .expect("the shared event's file");
    store.delete(&shared_file.location).await.unwrap();
    // (The second day's rollup still says it shares an id: that is checked first.)
    let (_, raw) = days(&pair.same_as_raw(&utc, "file deleted").await);
    assert_eq!(
        raw,
        [
            (D0.into(), RawReason::Changed),
            (D1.into(), RawReason::SharedIds)
        ]
    );
    assert_eq!(
        pair.visits_same_as_raw("file deleted").await,
        [D1.to_owned()],
        "the day whose files changed computes its visits"
    );
    pair.roll(&[D0, D1]).await;
    assert_eq!(
        days(&pair.same_as_raw(&utc, "file deleted, rolled").await),
        (vec![D0.into(), D1.into()], vec![])
    );

    // An objection: every closed day raw (the rollups counted that person) until rolled again.
    pair.objections.0.lock().unwrap().push("a-pseudonym".into());
    let (rolled, raw) = days(&pair.same_as_raw(&utc, "objection").await);
    assert!(rolled.is_empty());
    assert_eq!(
        raw,
        [
            (D0.into(), RawReason::Objections),
            (D1.into(), RawReason::Objections)
        ]
    );
    assert!(pair.visits_same_as_raw("objection").await.is_empty());
    assert_eq!(
        pair.rolled
            .stale_rollup_days(&shop, 10_000, 7, chrono_tz::UTC)
            .await
            .unwrap(),
        [
            NaiveDate::from_ymd_opt(2025, 11, 28).unwrap(),
            NaiveDate::from_ymd_opt(2025, 11, 29).unwrap()
        ],
        "the server's hourly job rewrites both"
    );
    pair.roll(&[D0, D1]).await;
    assert!(
        pair.rolled
            .stale_rollup_days(&shop, 10_000, 7, chrono_tz::UTC)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        days(&pair.same_as_raw_filtered(&utc, "objection, rolled").await),
        (vec![D0.into(), D1.into()], vec![])
    );

    // The first day's raw events expire: it comes from its rollup (expired), the second still from its own,
    // and the answers are those of the rollup and the raw events together.
    let files: Vec<_> = store
        .list(Some(&object_store::path::Path::from("events/tenant=shop")))
        .try_collect()
        .await
        .unwrap();
    for m in files
        .iter()
        .filter(|m| m.location.as_ref().contains("date=2025-11-28"))
    {
        store.delete(&m.location).await.unwrap();
    }
    let sources = pair.same_as_raw_filtered(&utc, "expired").await;
    assert_eq!(days(&sources), (vec![D0.into(), D1.into()], vec![]));
    // The expired day's stored visits (until retention deletes them) are not read: its files changed.
    assert_eq!(pair.visits_same_as_raw("expired").await, [D1.to_owned()]);
    assert!(sources.iter().all(|s| s.expired == 1), "{sources:?}");
}

/// The only server: its rollups of a day that ended saw every event that arrived on it, so a late event
/// for another day leaves them trusted (only that day reads raw).
/// A new engine answers a breakdown whose every day is rolled without running its raw query: it plans the
/// query for the answer's columns. Those are the columns running it gives, names, types and nullability,
/// unfiltered and with each filter, and the rows are the raw events' rows.
#[tokio::test]
async fn a_new_engine_plans_a_rolled_breakdown_s_columns_as_running_gives_them() {
    let s = setup().await;
    let pair = Pair::new(&s.lake, Some(1));
    let utc = ReportScope::utc(1);
    pair.roll(&[D0, D1]).await;
    let mut planned = 0;
    for report in rolled_reports() {
        let unfiltered: &[(&str, &str)] = &[];
        let filters = std::iter::once(unfiltered).chain(FILTERS.iter().map(std::slice::from_ref));
        for params in filters {
            // A new engine each time: no answer's schema remembered.
            let new = Pair::new(&s.lake, Some(1));
            let rolled = run_on(&new.rolled, "shop", report, params, &utc).await;
            let raw = run_on(&pair.raw, "shop", report, params, &utc).await;
            let source = rolled.source.as_ref().unwrap();
            assert_eq!(source.kind(), "rollups", "{report} {params:?}: {source}");
            assert_eq!(rolled.schema, raw.schema, "{report} {params:?}");
            let rows = |o: &QueryOutput| {
                canonical(serde_json::from_slice(&to_json(&o.batches).unwrap()).unwrap())
            };
            assert_eq!(rows(&rolled), rows(&raw), "{report} {params:?}");
            if Report::find(report).unwrap().rollup().is_some() {
                planned += 1;
            }
        }
    }
    // The ten breakdowns among them, each unfiltered and with five filters.
    assert_eq!(planned, 10 * 6, "breakdowns answered from a plan");
}

#[tokio::test]
async fn a_single_node_s_rollups_outlive_late_events_for_other_days() {
    let s = setup().await;
    let shop = TenantId::new("shop").unwrap();
    let pair = Pair::new(&s.lake, None);
    let utc = ReportScope::utc(1);
    pair.roll(&[D0, D1]).await;
    assert_eq!(
        days(&pair.same_as_raw(&utc, "rolled").await),
        (vec![D0.into(), D1.into()], vec![])
    );
    let late =
        json!({"kind": "pageview", "url": "https://shop.example/late", "ts": DAY0 + 23 * 60 * MIN});
    write_arrived(&s.lake, &shop, &[(150, late)], DAY0 + 60 * DAY, None, 100).await;
    assert_eq!(
        days(&pair.same_as_raw(&utc, "late event").await),
        (vec![D1.into()], vec![(D0.into(), RawReason::Changed)])
    );
    // Still buffered events of its own day send a day to raw events.
    pair.buffer
        .0
        .lock()
        .unwrap()
        .insert(NaiveDate::from_ymd_opt(2025, 11, 29).unwrap());
    assert_eq!(
        days(&pair.same_as_raw(&utc, "buffered").await),
        (
            vec![],
            vec![
                (D0.into(), RawReason::Changed),
                (D1.into(), RawReason::Buffered)
            ]
        )
    );
}

const D2: &str = "2025-11-30";

/// A tenant in Berlin (UTC+1 in November): its days run 23:00 to 23:00 UTC, over two UTC dates each, and its
/// visitor salt rotates at its midnight. Rollups of its local days answer every report as its raw events do
/// (a visit across UTC midnight is one visit of one local day; a sitting across local midnight is two), and
/// when retention drops a UTC date (half of one local day, the last hour of another) both answer as before
/// from their rollups.
#[tokio::test]
async fn a_tenant_in_another_zone_reads_its_local_days_from_rollups() {
    let s = setup().await;
    let berlin_id = TenantId::new("berlin").unwrap();
    let hour = 60 * MIN;
    let page = |visitor: u32, ts: i64, path: &str| {
        (
            visitor,
            json!({"kind": "pageview", "url": format!("https://shop.example{path}"), "ts": ts}),
        )
    };
    // The shop's events (visitor 99 across UTC midnight: 00:50 and 01:10 in Berlin, one local day, one id),
    // a sitting across Berlin's midnight (23:40 and 23:50, then 00:05 and 00:20: two ids, two visits) and a
    // last local day that is the first hour of a UTC date.
    let mut events: Vec<(u32, Value)> =
        fixture().iter().map(|s| (s.visitor, raw_json(s))).collect();
    for (minutes, path) in [
        (-20, "/late-night"),
        (-10, "/docs"),
        (5, "/docs"),
        (20, "/after"),
    ] {
        events.push(page(300, DAY0 + DAY - hour + minutes * MIN, path));
    }
    events.push(page(301, DAY0 + 2 * DAY - hour + 30 * MIN, "/docs"));
    events.push(page(301, DAY0 + 2 * DAY - hour + 40 * MIN, "/pricing"));
    // Each event with the salt of the Berlin day it arrived on (its own).
    let local_day = |e: &(u32, Value)| (e.1["ts"].as_i64().unwrap() + hour - DAY0).div_euclid(DAY);
    for day in 0..3 {
        let of_day: Vec<(u32, Value)> = events
            .iter()
            .filter(|e| local_day(e) == day)
            .cloned()
            .collect();
        assert!(!of_day.is_empty());
        write_arrived(
            &s.lake,
            &berlin_id,
            &of_day,
            DAY0 + 60 * DAY,
            Some(day),
            1 + 100 * day as u64,
        )
        .await;
    }
    let mut pair = Pair::new(&s.lake, Some(1));
    pair.tenant = "berlin";
    pair.range = &[("from", D0), ("to", D2)];
    for e in [&pair.rolled, &pair.raw] {
        e.set_zones([(berlin_id.clone(), chrono_tz::Europe::Berlin)].into());
    }
    let berlin = ReportScope {
        zone: chrono_tz::Europe::Berlin,
        ..ReportScope::utc(1)
    };
    let (rolled, raw) = days(&pair.same_as_raw(&berlin, "Berlin, no rollups").await);
    assert!(rolled.is_empty());
    assert_eq!(
        raw,
        [
            (D0.into(), RawReason::NoRollup),
            (D1.into(), RawReason::NoRollup),
            (D2.into(), RawReason::NoRollup)
        ]
    );

    // Rolled as UTC days: not the tenant's days, raw.
    pair.roll_in(&[D0, D1], chrono_tz::UTC).await;
    let (rolled, raw) = days(&pair.same_as_raw(&berlin, "Berlin, UTC rollups").await);
    assert!(rolled.is_empty());
    assert_eq!(
        raw,
        [
            (D0.into(), RawReason::OtherZone),
            (D1.into(), RawReason::OtherZone),
            (D2.into(), RawReason::NoRollup)
        ]
    );
    let zone = chrono_tz::Europe::Berlin;
    assert_eq!(
        pair.rolled
            .stale_rollup_days(&berlin_id, 10_000, 7, zone)
            .await
            .unwrap()
            .len(),
        3,
        "the hourly job rewrites them in the tenant's zone"
    );

    // Rolled as Berlin days: every report with every filter answers as the raw events, from rollups only.
    pair.roll_in(&[D0, D1, D2], zone).await;
    assert!(
        pair.rolled
            .stale_rollup_days(&berlin_id, 10_000, 7, zone)
            .await
            .unwrap()
            .is_empty()
    );
    let sources = pair.same_as_raw_filtered(&berlin, "Berlin, rolled").await;
    assert_eq!(
        days(&sources),
        (vec![D0.into(), D1.into(), D2.into()], vec![])
    );
    assert_eq!(
        sources[0].to_string(),
        "rollups; rollup_days=3; expired_days=0; raw_days=0"
    );
    let (overview, _) = pair.ask(&pair.rolled, "overview", &[], &berlin).await;
    // Its `visits` in SQL has its days too (`ts` shown in UTC): all three read from their stored files, the
    // rows those computed from raw events give, as many visits as its overview counts (visitor 99's
    // across UTC midnight is one), each on its Berlin day.
    assert_eq!(
        pair.visits_same_as_raw("Berlin, rolled").await,
        [D0, D1, D2]
    );
    let sql = "SELECT date, COUNT(*) AS visits FROM visits GROUP BY date ORDER BY date";
    for engine in [&pair.rolled, &pair.raw] {
        let out = engine.sql(&berlin_id, sql).await.unwrap();
        let rows: Value = serde_json::from_slice(&to_json(&out.batches).unwrap()).unwrap();
        let (days, visits): (Vec<&str>, Vec<i64>) = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["date"].as_str().unwrap(), r["visits"].as_i64().unwrap()))
            .unzip();
        assert_eq!(days, [D0, D1, D2], "{rows}");
        let visits: i64 = visits.iter().sum();
        assert_eq!(json!(visits), overview[0]["visits"], "{rows} {overview}");
    }
    let (entry, _) = pair.ask(&pair.rolled, "entry_pages", &[], &berlin).await;
    // The sitting across Berlin's midnight is two visits, entered at /late-night and /docs (not /after).
    assert!(
        entry.to_string().contains("/late-night") && !entry.to_string().contains("/after"),
        "{entry}"
    );
    // A late event on the second UTC date of the first local day (22:30 UTC): that day reads raw.
    write_arrived(
        &s.lake,
        &berlin_id,
        &[page(302, DAY0 + DAY - 90 * MIN, "/late")],
        DAY0 + 60 * DAY,
        Some(0),
        900,
    )
    .await;
    let (rolled, raw) = days(&pair.same_as_raw(&berlin, "Berlin, late event").await);
    // Its UTC date is half of the first local day and the last hour of the second: both changed; the third's
    // neighbour did.
    assert!(rolled.is_empty());
    // The third's visits are still its stored ones (no event of it changed); the others are computed from
    // the UTC dates they share with it, its rows left out.
    assert_eq!(pair.visits_same_as_raw("Berlin, late event").await, [D2]);
    assert_eq!(
        raw,
        [
            (D0.into(), RawReason::Changed),
            (D1.into(), RawReason::Changed),
            (D2.into(), RawReason::Late)
        ]
    );
    // The third rolled again alone: the raw query leaves out its hours (on the second's UTC date), not the
    // others'.
    pair.roll_in(&[D2], zone).await;
    let (rolled, raw) = days(&pair.same_as_raw(&berlin, "Berlin, one day rolled").await);
    assert_eq!(rolled, [D2.to_owned()]);
    assert_eq!(
        raw,
        [
            (D0.into(), RawReason::Changed),
            (D1.into(), RawReason::Changed)
        ]
    );
    pair.roll_in(&[D0, D1, D2], zone).await;
    let (overview_late, _) = pair.ask(&pair.rolled, "overview", &[], &berlin).await;
    assert_ne!(overview, overview_late, "the late visitor counts");

    // Retention drops UTC date 2025-11-28: all of Berlin's 28th but its first hour (on the 27th, empty) and the
    // last hour of its 29th. Both days answer from their rollups, as before.
    let before = pair
        .same_as_raw_filtered(&berlin, "Berlin, before expiry")
        .await;
    let mut answers = Vec::new();
    for report in rolled_reports() {
        answers.push(pair.ask(&pair.rolled, report, &[], &berlin).await.0);
    }
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let store = s.lake.store();
    let files: Vec<_> = store
        .list(Some(&object_store::path::Path::from(
            "events/tenant=berlin",
        )))
        .try_collect()
        .await
        .unwrap();
    for m in files
        .iter()
        .filter(|m| m.location.as_ref().contains("date=2025-11-28"))
    {
        store.delete(&m.location).await.unwrap();
    }
    let after = pair.same_as_raw_filtered(&berlin, "Berlin, expired").await;
    assert_eq!(days(&after), days(&before));
    assert!(after.iter().all(|s| s.expired == 2), "{after:?}");
    for (report, expected) in rolled_reports().into_iter().zip(&answers) {
        let (rows, _) = pair.ask(&pair.rolled, report, &[], &berlin).await;
        assert_eq!(&rows, expected, "{report} after the UTC date expired");
    }
    // The hourly job leaves a day that lost part of its events alone (rewriting it would lose them).
    assert!(
        pair.rolled
            .stale_rollup_days(&berlin_id, 10_000, 7, zone)
            .await
            .unwrap()
            .is_empty()
    );
}
