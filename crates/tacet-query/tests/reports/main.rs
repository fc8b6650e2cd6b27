//! Every canned report on a generated fixture, against answers computed here in Rust from the fixture's own
//! description (not by the same SQL): visits by the 30-minute rule, k-threshold suppression, filters, empty
//! ranges, a single visitor, and a visit cut by midnight (visitor ids rotate with the daily salt).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use serde_json::{Value, json};
use tacet_lake::{Lake, PartitionKey};
use tacet_model::{TenantId, parse_event};
use tacet_privacy::{
    EventBatch, GeoDb, GeoLevel, Keys, Outcome, Privacy, RequestContext, Tally, TenantPolicy,
    parse_user_agent, testdb,
};
use tacet_query::format::to_json;
use tacet_query::{QueryConfig, QueryEngine, QueryOutput, Report, ReportParams, ReportScope};

/// Visitor-days: a person on one day (visitor ids are daily).
type Visitors = BTreeSet<(u32, i64)>;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
/// 2025-11-28T00:00:00Z
const DAY0: i64 = 1_764_288_000_000;
const MIN: i64 = 60_000;
const DAY: i64 = 1_440 * MIN;

/// One event of the fixture, as a client would send it.
#[derive(Debug, Clone)]
struct Spec {
    visitor: u32,
    ts: i64,
    kind: &'static str,
    path: String,
    referrer: Option<&'static str>,
    name: Option<&'static str>,
    plan: Option<&'static str>,
    release: Option<&'static str>,
    error: Option<(&'static str, String)>,
    /// The UTM campaign on the page's URL (`?utm_source=ads&utm_medium=cpc&utm_campaign=<this>`).
    campaign: Option<&'static str>,
}

impl Spec {
    /// Days since the fixture's first day.
    fn day(&self) -> i64 {
        (self.ts - DAY0).div_euclid(DAY)
    }
    /// Visitor ids are daily: the same person on two days is two visitor ids.
    fn visitor_day(&self) -> (u32, i64) {
        (self.visitor, self.day())
    }
}

/// A small deterministic generator (xorshift), so the fixture is the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const PATHS: [&str; 7] = [
    "/", "/pricing", "/docs", "/blog/a", "/blog/b", "/cart", "/rare",
];
const REFERRERS: [Option<&str>; 4] = [
    None,
    Some("https://www.google.com/search?q=x"),
    Some("https://l.facebook.com/"),
    Some("https://partner.example/list"),
];

/// 60 visitors over two days, 1 to 3 visits each, 1 to 5 page views a visit, custom events, crashes; plus
/// one visit that crosses midnight.
fn fixture() -> Vec<Spec> {
    let mut rng = Rng(0x5eed_1234_abcd);
    let mut out = Vec::new();
    for visitor in 0..60u32 {
        let day = i64::from(visitor % 2);
        let release = if visitor % 3 == 0 { "2.0.0" } else { "1.9.0" };
        let mut t = DAY0 + day * DAY + (60 + rng.below(600) as i64) * MIN;
        for _visit in 0..=rng.below(3) {
            let views = 1 + rng.below(5);
            for view in 0..views {
                // "/rare" only by two visitors: below k = 5.
                let path = if visitor < 2 && view == 0 {
                    "/rare"
                } else {
                    PATHS[rng.below(6) as usize]
                };
                out.push(Spec {
                    visitor,
                    ts: t,
                    kind: "pageview",
                    path: path.into(),
                    referrer: if view == 0 {
                        REFERRERS[rng.below(4) as usize]
                    } else {
                        None
                    },
                    name: None,
                    plan: None,
                    release: Some(release),
                    error: None,
                    // "fall" for 12 visitors; "spring" for 4, below k = 5.
                    campaign: match (view, visitor % 5) {
                        (0, 2) => Some("fall"),
                        (0, 3) if visitor < 20 => Some("spring"),
                        _ => None,
                    },
                });
                if rng.below(4) == 0 {
                    out.push(Spec {
                        ts: t + 30_000,
                        kind: "event",
                        name: Some("signup"),
                        plan: Some(["pro", "free", "team"][rng.below(3) as usize]),
                        referrer: None,
                        ..out.last().unwrap().clone()
                    });
                }
                if rng.below(6) == 0 {
                    let (kind, line) =
                        [("TypeError", 10), ("RangeError", 20)][rng.below(2) as usize];
                    out.push(Spec {
                        ts: t + 40_000,
                        kind: "crash",
                        name: None,
                        plan: None,
                        referrer: None,
                        error: Some((kind, format!("at f (app.js:{line}:{})", rng.below(90)))),
                        ..out.last().unwrap().clone()
                    });
                }
                t += (1 + rng.below(20) as i64) * MIN;
            }
            t += (31 + rng.below(90) as i64) * MIN; // a new visit
        }
    }
    // Visitor 99: 23:50 and 00:10 — one sitting, but two visitor ids (two salts), so two visits.
    for ts in [DAY0 + DAY - 10 * MIN, DAY0 + DAY + 10 * MIN] {
        out.push(Spec {
            visitor: 99,
            ts,
            kind: "pageview",
            path: "/night".into(),
            referrer: None,
            name: None,
            plan: None,
            release: None,
            error: None,
            campaign: None,
        });
    }
    out
}

fn raw_json(s: &Spec) -> Value {
    let utm = s.campaign.map_or(String::new(), |c| {
        format!("?utm_source=ads&utm_medium=cpc&utm_campaign={c}")
    });
    let mut v =
        json!({"kind": s.kind, "url": format!("https://shop.example{}{utm}", s.path), "ts": s.ts});
    if let Some(r) = s.referrer {
        v["referrer"] = r.into();
    }
    if let Some(n) = s.name {
        v["name"] = n.into();
    }
    if let Some(p) = s.plan {
        v["props"] = json!({"plan": p});
    }
    if let Some(r) = s.release {
        v["release"] = r.into();
    }
    if let Some((t, frame)) = &s.error {
        v["error_type"] = (*t).into();
        v["message"] = format!("{t} happened").into();
        v["stack"] = json!([frame]);
    }
    v
}

/// Writes the fixture to a lake the way the pipeline does: pseudonymised, one file per partition.
async fn write(lake: &Lake, tenant: &TenantId, specs: &[Spec]) {
    let events: Vec<(u32, Value)> = specs.iter().map(|s| (s.visitor, raw_json(s))).collect();
    write_json(lake, tenant, &events).await;
}

/// Writes `(visitor, event JSON with a numeric ts)` pairs; a visitor is a client address.
async fn write_json(lake: &Lake, tenant: &TenantId, events: &[(u32, Value)]) {
    write_json_at(lake, tenant, events, DAY0 + 60 * DAY).await;
}

/// Where the fixture's visitors are (visitor v writes from `198.51.0.<v + 1>`): `.0/27` (visitors 0 to 30)
/// in Berlin, `.32/27` (visitors 31 to 62) in Paris, the rest unknown. Regions are kept.
fn geo_of(visitor: u32) -> Value {
    match visitor {
        0..=30 => json!(["DE", "DE-BE"]),
        31..=62 => json!(["FR", "FR-IDF"]),
        _ => json!([null, null]),
    }
}

fn privacy() -> (Privacy, TenantPolicy) {
    let net = |last: u8, country, region, city| testdb::Network {
        net: std::net::Ipv4Addr::new(198, 51, 0, last),
        prefix: 27,
        country,
        region,
        city,
    };
    let db = testdb::build(&[
        net(0, "DE", "DE-BE", "Berlin"),
        net(32, "FR", "FR-IDF", "Paris"),
    ]);
    let policy = TenantPolicy {
        geo: GeoLevel::Region,
        ..TenantPolicy::default()
    };
    (Privacy::new(Some(GeoDb::from_bytes(db).unwrap())), policy)
}

/// The same, accepted at `now` (milliseconds): events may not be from the future.
async fn write_json_at(lake: &Lake, tenant: &TenantId, events: &[(u32, Value)], now: i64) {
    write_arrived(lake, tenant, events, now, None, 1).await;
}

/// The same, with the visitor salt of fixture day `salt_day` for every event (an event that arrived on
/// that day, whatever its time) instead of the salt of the event's own day; files are numbered (their log
/// ranges) from `first_seq`, so a later write adds files instead of replacing them.
async fn write_arrived(
    lake: &Lake,
    tenant: &TenantId,
    events: &[(u32, Value)],
    now: i64,
    salt_day: Option<i64>,
    first_seq: u64,
) {
    let (privacy, policy) = privacy();
    let ua = parse_user_agent(UA);
    let mut partitions: BTreeMap<String, (PartitionKey, Vec<tacet_privacy::Event>)> =
        BTreeMap::new();
    for (visitor, json) in events {
        let ts = json["ts"].as_i64().unwrap();
        // The salt of the event's day, as the key store hands out.
        let keys = Keys {
            visitor_salt: [salt_day.unwrap_or((ts - DAY0).div_euclid(DAY)) as u8; 32],
            subject_key: [7; 32],
        };
        let ip = format!("198.51.{}.{}", visitor / 200, visitor % 200 + 1);
        let ctx = RequestContext::new(ip.parse().unwrap(), UA);
        let raw = parse_event(json.clone(), now).unwrap();
        let key = PartitionKey::for_event(tenant.clone(), raw.kind, raw.ts_millis);
        let Outcome::Keep(e) =
            privacy.pseudonymise(tenant, &policy, &keys, ctx, &ua, raw, &mut Tally::default())
        else {
            panic!("kept")
        };
        partitions
            .entry(format!("{key:?}"))
            .or_insert_with(|| (key, Vec::new()))
            .1
            .push(e);
    }
    for (i, (key, events)) in partitions.into_values().enumerate() {
        let batch = EventBatch::from_events(events.iter()).unwrap();
        let seq = first_seq + i as u64;
        lake.write(&key, (seq, seq), &batch).await.unwrap();
    }
}

/// Visits by the documented rule, computed here: per visitor-day, sorted by time, a new visit after a gap
/// of more than 30 minutes. Returns each visit's events.
fn visits(specs: &[&Spec]) -> Vec<Vec<Spec>> {
    let mut by_visitor: BTreeMap<(u32, i64), Vec<&Spec>> = BTreeMap::new();
    for s in specs {
        by_visitor.entry(s.visitor_day()).or_default().push(s);
    }
    let mut out = Vec::new();
    for (_, mut events) in by_visitor {
        events.sort_by_key(|s| s.ts);
        let mut current: Vec<Spec> = Vec::new();
        for s in events {
            if current.last().is_some_and(|l| s.ts - l.ts > 30 * MIN) {
                out.push(std::mem::take(&mut current));
            }
            current.push(s.clone());
        }
        out.push(current);
    }
    out
}

struct Setup {
    _dir: tempfile::TempDir,
    lake: Lake,
    engine: QueryEngine,
    specs: Vec<Spec>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let specs = fixture();
    write(&lake, &TenantId::new("shop").unwrap(), &specs).await;
    let solo = [Spec {
        visitor: 1,
        ts: DAY0 + 12 * 60 * MIN,
        kind: "pageview",
        path: "/only".into(),
        referrer: None,
        name: None,
        plan: None,
        release: None,
        error: None,
        campaign: None,
    }];
    write(&lake, &TenantId::new("solo").unwrap(), &solo).await;
    // Funnels, goals and cohorts: a small hand-made tenant.
    let page = |v: u32, minute: i64, path: &str, user: Option<&str>| {
        let mut e = json!({"kind": "pageview", "url": format!("https://f.example{path}"), "ts": DAY0 + minute * MIN});
        if let Some(u) = user {
            e["user_id"] = u.into();
        }
        (v, e)
    };
    let event = |v: u32, minute: i64, name: &str| {
        (
            v,
            json!({"kind": "event", "name": name, "url": "https://f.example/", "ts": DAY0 + minute * MIN}),
        )
    };
    let week = 7 * 1_440;
    let funnel = vec![
        // A: / → /pricing → signup (all three steps)
        page(1, 600, "/", None),
        page(1, 605, "/pricing", None),
        event(1, 606, "signup"),
        // B: / → /pricing
        page(2, 600, "/", None),
        page(2, 601, "/pricing", None),
        // C: / only
        page(3, 600, "/", None),
        // D: /pricing before / (the order counts: step 1 only)
        page(4, 600, "/pricing", None),
        page(4, 601, "/", None),
        // E: signup without the pages
        event(5, 600, "signup"),
        event(5, 601, "newsletter"),
        // Identified users over three weeks (2025-11-24 is a Monday): u1 weeks 0, 1, 2; u2 weeks 0 and 2;
        // u3 from week 1.
        page(6, 700, "/app", Some("u1")),
        page(6, 700 + week, "/app", Some("u1")),
        page(6, 700 + 2 * week, "/app", Some("u1")),
        page(7, 700, "/app", Some("u2")),
        page(7, 700 + 2 * week, "/app", Some("u2")),
        page(8, 700 + week, "/app", Some("u3")),
    ];
    write_json(&lake, &TenantId::new("funnel").unwrap(), &funnel).await;
    let engine = QueryEngine::new(Arc::clone(lake.store()), QueryConfig::default()).unwrap();
    Setup {
        _dir: dir,
        lake,
        engine,
        specs,
    }
}

/// `report` for `tenant` on `engine` over the fixture's two days unless `params` say otherwise.
async fn run_on(
    engine: &QueryEngine,
    tenant: &str,
    report: &str,
    params: &[(&str, &str)],
    scope: &ReportScope,
) -> QueryOutput {
    let mut given: BTreeMap<String, String> = params
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    given.entry("from".into()).or_insert("2025-11-28".into());
    given.entry("to".into()).or_insert("2025-11-29".into());
    let today = NaiveDate::from_ymd_opt(2025, 11, 29).unwrap();
    let params = ReportParams::parse(&given, today).unwrap();
    engine
        .report(
            &TenantId::new(tenant).unwrap(),
            Report::find(report).unwrap(),
            &params,
            scope,
        )
        .await
        .unwrap_or_else(|e| panic!("{report}: {e}"))
}

impl Setup {
    async fn run(
        &self,
        tenant: &str,
        report: &str,
        params: &[(&str, &str)],
        k: u64,
    ) -> QueryOutput {
        run_on(&self.engine, tenant, report, params, &ReportScope::utc(k)).await
    }

    async fn rows(&self, tenant: &str, report: &str, params: &[(&str, &str)], k: u64) -> Value {
        let out = self.run(tenant, report, params, k).await;
        canonical(serde_json::from_slice(&to_json(&out.batches).unwrap()).unwrap())
    }
}

/// Rows in report order (visitors, then the count, descending), with ties put in one fixed order, so that
/// answers compare whatever order an engine gives equal rows.
fn canonical(rows: Value) -> Value {
    let Value::Array(mut rows) = rows else {
        return rows;
    };
    let num = |r: &Value, col: &str| r.get(col).and_then(Value::as_u64).unwrap_or(0);
    let count = |r: &Value| {
        ["pageviews", "visits", "events", "crashes"]
            .iter()
            .find(|c| r.get(**c).is_some())
            .map_or(0, |c| num(r, c))
    };
    let is_breakdown = rows.first().is_some_and(|r| {
        r.get("visitors").is_some()
            && r.get("bucket").is_none()
            && r.get("release").is_none()
            && r.get("day").is_none()
    });
    if is_breakdown {
        rows.sort_by(|a, b| {
            num(b, "visitors")
                .cmp(&num(a, "visitors"))
                .then(count(b).cmp(&count(a)))
                .then_with(|| a.to_string().cmp(&b.to_string()))
        });
    }
    Value::Array(rows)
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// The overview's numbers for a set of events, computed here.
fn overview_of(specs: &[&Spec]) -> Value {
    let vs = visits(specs);
    let visitors: Visitors = specs.iter().map(|s| s.visitor_day()).collect();
    let count = |kind: &str| specs.iter().filter(|s| s.kind == kind).count();
    let views: Vec<usize> = vs
        .iter()
        .map(|v| v.iter().filter(|s| s.kind == "pageview").count())
        .collect();
    let n = vs.len() as f64;
    let ratio = |x: f64, places| {
        if vs.is_empty() {
            Value::Null
        } else {
            json!(round(x / n, places))
        }
    };
    let mean_ms = vs
        .iter()
        .map(|v| (v.last().unwrap().ts - v[0].ts) as f64)
        .sum::<f64>();
    json!([{
        "visitors": visitors.len(),
        "visits": vs.len(),
        "pageviews": count("pageview"),
        "views_per_visit": ratio(views.iter().sum::<usize>() as f64, 2),
        "bounce_rate": ratio(views.iter().filter(|v| **v == 1).count() as f64, 4),
        "visit_seconds": if vs.is_empty() { Value::Null } else { json!(round(mean_ms / n / 1000.0, 1)) },
        "events": count("event"),
        "crashes": count("crash"),
        "suppressed": null,
    }])
}

/// The overview of a range that describes fewer than `k` visitors: every number withheld.
fn withheld_overview(k: u64) -> Value {
    json!([{"visitors": null, "visits": null, "pageviews": null, "views_per_visit": null, "bounce_rate": null,
            "visit_seconds": null, "events": null, "crashes": null,
            "suppressed": format!("fewer than {k} visitors")}])
}

#[tokio::test]
async fn overview_timeseries_and_visits() {
    let s = setup().await;
    let all: Vec<&Spec> = s.specs.iter().collect();
    assert_eq!(s.rows("shop", "overview", &[], 5).await, overview_of(&all));

    // A filter restricts the events every number is computed from.
    let search: Vec<&Spec> = all
        .iter()
        .copied()
        .filter(|x| x.referrer.is_some_and(|r| r.contains("google")))
        .collect();
    assert!(!search.is_empty());
    assert_eq!(
        s.rows("shop", "overview", &[("referrer_class", "search")], 5)
            .await,
        overview_of(&search)
    );

    // Per day: the midnight visitor counts on both days, once each.
    let rows = s.rows("shop", "timeseries", &[], 5).await;
    for (i, day) in [0i64, 1].iter().enumerate() {
        let of_day: Vec<&Spec> = all.iter().copied().filter(|x| x.day() == *day).collect();
        let expected = &overview_of(&of_day)[0];
        let row = &rows[i];
        assert_eq!(
            &row["bucket"].as_str().unwrap()[..10],
            ["2025-11-28", "2025-11-29"][i]
        );
        for col in ["visitors", "visits", "pageviews", "events", "crashes"] {
            assert_eq!(row[col], expected[col], "day {i} {col}");
        }
    }
    // Hourly buckets add up to the same page views.
    let hours = s
        .rows("shop", "timeseries", &[("interval", "hour")], 1)
        .await;
    let total: u64 = hours
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pageviews"].as_u64().unwrap())
        .sum();
    assert_eq!(
        total as usize,
        all.iter().filter(|x| x.kind == "pageview").count()
    );
    assert!(hours.as_array().unwrap().len() > 2);

    // Empty range: zero counts, no ratios (k = 1); with k = 5 zero visitors are fewer than k: withheld.
    let empty_range = [("from", "2020-01-01"), ("to", "2020-01-31")];
    let empty = s.rows("shop", "overview", &empty_range, 1).await;
    assert_eq!(empty, overview_of(&[]));
    assert_eq!(
        s.rows("shop", "overview", &empty_range, 5).await,
        withheld_overview(5)
    );
    // A single visitor with a single page view: one visit, all bounce, zero seconds; withheld under k = 5.
    assert_eq!(
        s.rows("solo", "overview", &[], 1).await,
        json!([{"visitors": 1, "visits": 1, "pageviews": 1, "views_per_visit": 1.0, "bounce_rate": 1.0,
                "visit_seconds": 0.0, "events": 0, "crashes": 0, "suppressed": null}])
    );
    assert_eq!(
        s.rows("solo", "overview", &[], 5).await,
        withheld_overview(5)
    );
}

/// Rows of `(key, visitors, count)` sorted as the reports sort them, with those under k removed.
fn breakdown(
    groups: HashMap<Value, (Visitors, usize)>,
    k: usize,
    key_cols: &[&str],
    count_col: &str,
) -> (Value, usize) {
    let mut rows: Vec<(Value, usize, usize)> = groups
        .into_iter()
        .map(|(key, (visitors, n))| (key, visitors.len(), n))
        .collect();
    let suppressed = rows.iter().filter(|r| r.1 < k).count();
    rows.retain(|r| r.1 >= k);
    rows.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then(b.2.cmp(&a.2))
            .then_with(|| a.0.to_string().cmp(&b.0.to_string()))
    });
    let out: Vec<Value> = rows
        .into_iter()
        .map(|(key, visitors, n)| {
            let mut row = serde_json::Map::new();
            for (i, col) in key_cols.iter().enumerate() {
                row.insert((*col).to_owned(), key[i].clone());
            }
            row.insert("visitors".into(), json!(visitors));
            row.insert(count_col.into(), json!(n));
            Value::Object(row)
        })
        .collect();
    (canonical(Value::Array(out)), suppressed)
}

fn group<'a>(
    specs: impl Iterator<Item = &'a Spec>,
    key: impl Fn(&Spec) -> Value,
) -> HashMap<Value, (Visitors, usize)> {
    let mut groups: HashMap<Value, (Visitors, usize)> = HashMap::new();
    for s in specs {
        let g = groups.entry(key(s)).or_default();
        g.0.insert(s.visitor_day());
        g.1 += 1;
    }
    groups
}

#[tokio::test]
async fn breakdowns_with_the_k_threshold() {
    let s = setup().await;
    let pageviews = || s.specs.iter().filter(|x| x.kind == "pageview");

    let (expected, suppressed) = breakdown(
        group(pageviews(), |x| json!([x.path])),
        5,
        &["page"],
        "pageviews",
    );
    let out = s.run("shop", "pages", &[], 5).await;
    assert_eq!(out.suppressed, suppressed);
    assert!(suppressed >= 2, "/rare and /night are under k");
    assert_eq!(
        canonical(serde_json::from_slice::<Value>(&to_json(&out.batches).unwrap()).unwrap()),
        expected
    );
    // k = 1 shows every row; a page filter keeps one; limit cuts.
    let (all_rows, none) = breakdown(
        group(pageviews(), |x| json!([x.path])),
        1,
        &["page"],
        "pageviews",
    );
    assert_eq!((s.rows("shop", "pages", &[], 1).await, none), (all_rows, 0));
    let docs = s.rows("shop", "pages", &[("page", "/docs")], 1).await;
    assert_eq!(docs.as_array().unwrap().len(), 1);
    assert_eq!(docs[0]["page"], "/docs");
    let top2 = s.run("shop", "pages", &[("limit", "2")], 5).await;
    assert_eq!((top2.num_rows(), top2.truncated), (2, true));
    // The single visitor's only page is below k = 5: suppressed, and said so.
    let solo = s.run("solo", "pages", &[], 5).await;
    assert_eq!((solo.num_rows(), solo.suppressed), (0, 1));

    // Referrers: only the first page view of a visit carries one; classes from the host list.
    let class = |r: Option<&str>| match r {
        None => json!(["direct", null, null]),
        Some(u) if u.contains("google") => json!(["search", "Google", "www.google.com"]),
        Some(u) if u.contains("facebook") => json!(["social", "Facebook", "l.facebook.com"]),
        Some(_) => json!(["other", null, "partner.example"]),
    };
    let (expected, _) = breakdown(
        group(pageviews(), |x| class(x.referrer)),
        5,
        &["referrer_class", "source", "host"],
        "pageviews",
    );
    assert_eq!(s.rows("shop", "referrers", &[], 5).await, expected);

    // Campaigns: page views whose URL carries a UTM source ("spring" has 4 visitors, below k).
    let (expected, suppressed) = breakdown(
        group(pageviews().filter(|x| x.campaign.is_some()), |x| {
            json!(["ads", "cpc", x.campaign])
        }),
        5,
        &["utm_source", "utm_medium", "utm_campaign"],
        "pageviews",
    );
    assert_eq!((expected.as_array().unwrap().len(), suppressed), (1, 1));
    let out = s.run("shop", "campaigns", &[], 5).await;
    assert_eq!(out.suppressed, suppressed);
    assert_eq!(s.rows("shop", "campaigns", &[], 5).await, expected);

    // Entry and exit pages: first and last page view of each visit.
    let pv: Vec<&Spec> = pageviews().collect();
    for (report, pick) in [("entry_pages", true), ("exit_pages", false)] {
        let mut groups: HashMap<Value, (Visitors, usize)> = HashMap::new();
        for v in visits(&pv) {
            let s = if pick { &v[0] } else { v.last().unwrap() };
            let g = groups.entry(json!([s.path])).or_default();
            g.0.insert(s.visitor_day());
            g.1 += 1;
        }
        let (expected, _) = breakdown(groups, 5, &["page"], "visits");
        assert_eq!(s.rows("shop", report, &[], 5).await, expected, "{report}");
    }

    // Custom events, and one event's property values.
    let events = || s.specs.iter().filter(|x| x.kind == "event");
    let (expected, _) = breakdown(
        group(events(), |x| json!([x.name])),
        5,
        &["event"],
        "events",
    );
    assert_eq!(s.rows("shop", "events", &[], 5).await, expected);
    let (expected, _) = breakdown(
        group(events(), |x| json!([x.plan])),
        1,
        &["value"],
        "events",
    );
    assert_eq!(
        s.rows(
            "shop",
            "event_properties",
            &[("event", "signup"), ("prop", "plan")],
            1
        )
        .await,
        expected
    );
    // Countries and regions from the client address (a generated City database); visitor 99 (two
    // visitor-days) is nowhere, and below k.
    let (expected, suppressed) = breakdown(
        group(pageviews(), |x| geo_of(x.visitor)),
        5,
        &["country", "region"],
        "pageviews",
    );
    assert_eq!((expected.as_array().unwrap().len(), suppressed), (2, 1));
    let out = s.run("shop", "countries", &[], 5).await;
    assert_eq!(out.suppressed, suppressed);
    assert_eq!(s.rows("shop", "countries", &[], 5).await, expected);
    // Browsers, operating systems, devices: one user agent in the fixture (Firefox on desktop Linux).
    let visitors: Visitors = pageviews().map(Spec::visitor_day).collect();
    assert_eq!(
        s.rows("shop", "browsers", &[], 5).await,
        json!([{"browser": "Firefox", "visitors": visitors.len(), "pageviews": pageviews().count()}])
    );
    assert_eq!(
        s.rows("shop", "operating_systems", &[], 5).await,
        json!([{"os": "Linux", "visitors": visitors.len(), "pageviews": pageviews().count()}])
    );
    assert_eq!(
        s.rows("shop", "devices", &[], 5).await,
        json!([{"device": "desktop", "visitors": visitors.len(), "pageviews": pageviews().count()}])
    );
}

#[tokio::test]
async fn crash_groups_trend_and_release_health() {
    let s = setup().await;
    let crashes: Vec<&Spec> = s.specs.iter().filter(|x| x.kind == "crash").collect();
    // Groups: line and column numbers do not split them, so one per error type.
    #[derive(Default)]
    struct Group<'a> {
        crashes: usize,
        visitors: Visitors,
        releases: BTreeSet<&'a str>,
    }
    let mut groups: BTreeMap<&str, Group> = BTreeMap::new();
    for c in &crashes {
        let g = groups.entry(c.error.as_ref().unwrap().0).or_default();
        g.crashes += 1;
        g.visitors.insert(c.visitor_day());
        g.releases.insert(c.release.unwrap());
    }
    let rows = s.rows("shop", "crash_groups", &[], 1).await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), groups.len());
    for row in rows {
        let t = row["error_type"].as_str().unwrap();
        let Group {
            crashes: n,
            visitors,
            releases,
        } = &groups[t];
        assert_eq!(row["crashes"], json!(n), "{t}");
        assert_eq!(row["visitors"], json!(visitors.len()), "{t}");
        assert_eq!(row["example_message"], json!(format!("{t} happened")));
        assert_eq!(
            row["releases"],
            json!(releases.iter().copied().collect::<Vec<_>>().join(", "))
        );
        let fingerprint = row["fingerprint"].as_str().unwrap();
        assert_eq!(fingerprint.len(), 16);
        // The trend of this group, day by day.
        let trend = s
            .rows("shop", "crash_trend", &[("fingerprint", fingerprint)], 1)
            .await;
        let per_day: u64 = trend
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["crashes"].as_u64().unwrap())
            .sum();
        assert_eq!(per_day as usize, *n);
        // The group in full: the latest crash's message and stack, and the same counts.
        let latest = crashes
            .iter()
            .filter(|c| c.error.as_ref().unwrap().0 == t)
            .max_by_key(|c| c.ts)
            .unwrap();
        let full = s
            .rows("shop", "crash_group", &[("fingerprint", fingerprint)], 1)
            .await;
        assert_eq!(
            full,
            json!([{
                "fingerprint": fingerprint,
                "error_type": t,
                "example_message": format!("{t} happened"),
                "example_stack": latest.error.as_ref().unwrap().1,
                "crashes": n,
                "visitors": visitors.len(),
                "first_seen": row["first_seen"],
                "last_seen": row["last_seen"],
                "releases": row["releases"],
                "example_release": latest.release.unwrap(),
            }]),
            "{t}"
        );
    }
    // The trend needs its fingerprint.
    let given: BTreeMap<String, String> = BTreeMap::new();
    let params =
        ReportParams::parse(&given, NaiveDate::from_ymd_opt(2025, 11, 29).unwrap()).unwrap();
    let err = s
        .engine
        .report(
            &TenantId::new("shop").unwrap(),
            Report::find("crash_trend").unwrap(),
            &params,
            &ReportScope::utc(1),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs the parameter fingerprint"), "{err}");

    // Release health: visits with an event of the release, and the share without a crash.
    let with_release: Vec<&Spec> = s.specs.iter().filter(|x| x.release.is_some()).collect();
    // visits, crashed visits, visitors, crashed visitors
    type Health = (usize, usize, Visitors, Visitors);
    let mut per_release: BTreeMap<&str, Health> = BTreeMap::new();
    for v in visits(&with_release) {
        let r = per_release.entry(v[0].release.unwrap()).or_default();
        let crashed = v.iter().any(|x| x.kind == "crash");
        r.0 += 1;
        r.1 += usize::from(crashed);
        r.2.insert(v[0].visitor_day());
        if crashed {
            r.3.insert(v[0].visitor_day());
        }
    }
    let expected: Vec<Value> = per_release
        .iter()
        .map(|(release, (visits, crashed, visitors, crashed_visitors))| {
            json!({
                "release": release,
                "visits": visits,
                "crash_free_visits": round(1.0 - *crashed as f64 / *visits as f64, 4),
                "visitors": visitors.len(),
                "crash_free_visitors": round(1.0 - crashed_visitors.len() as f64 / visitors.len() as f64, 4),
            })
        })
        .collect();
    assert_eq!(
        s.rows("shop", "release_health", &[], 1).await,
        json!(expected)
    );
}

#[tokio::test]
async fn funnels_goals_and_retention_cohorts() {
    let s = setup().await;
    let steps = [("steps", "page:/,page:/pricing,event:signup")];
    assert_eq!(
        s.rows("funnel", "funnel", &steps, 1).await,
        json!([
            {"step": 1, "name": "page:/", "visitors": 4, "conversion": 1.0},
            {"step": 2, "name": "page:/pricing", "visitors": 2, "conversion": 0.5},
            {"step": 3, "name": "event:signup", "visitors": 1, "conversion": 0.25},
        ])
    );
    // Below k = 5 visitors every step is left out, and said so.
    let out = s.run("funnel", "funnel", &steps, 5).await;
    assert_eq!((out.num_rows(), out.suppressed), (0, 3));
    // Eight visitor-days in all (the weekly users are other days); signup reached by 2, newsletter by 1.
    assert_eq!(
        s.rows(
            "funnel",
            "goals",
            &[("from", "2025-11-28"), ("to", "2025-11-28")],
            1
        )
        .await,
        json!([
            {"goal": "signup", "visitors": 2, "conversions": 2, "conversion_rate": 0.2857},
            {"goal": "newsletter", "visitors": 1, "conversions": 1, "conversion_rate": 0.1429},
        ])
    );
    let cohorts = s
        .rows(
            "funnel",
            "retention",
            &[("from", "2025-11-24"), ("to", "2025-12-21")],
            1,
        )
        .await;
    let cohorts: Vec<(String, i64, i64)> = cohorts
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["cohort"].as_str().unwrap()[..10].to_owned(),
                r["week"].as_i64().unwrap(),
                r["users"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cohorts,
        [
            ("2025-11-24".to_owned(), 0, 2),
            ("2025-11-24".to_owned(), 1, 1),
            ("2025-11-24".to_owned(), 2, 2),
            ("2025-12-01".to_owned(), 0, 1),
        ]
    );
    for bad in [
        "page:/",
        "page:/,",
        "x:/,page:/",
        "page:/,page:/,page:/,page:/,page:/,page:/,page:/,page:/,page:/",
    ] {
        let given = BTreeMap::from([("steps".to_owned(), bad.to_owned())]);
        let e = ReportParams::parse(&given, NaiveDate::from_ymd_opt(2025, 11, 29).unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("2 to 8"), "{bad}: {e}");
    }
}

#[tokio::test]
async fn rollups_answer_for_days_whose_raw_events_are_gone() {
    let s = setup().await;
    let shop = TenantId::new("shop").unwrap();
    let before = s.rows("shop", "daily", &[], 5).await;
    assert_eq!(before.as_array().unwrap().len(), 2);
    // The breakdowns with a rollups branch, as the raw events answer them (k = 1: every row).
    const ROLLED: &[&str] = &[
        "pages",
        "referrers",
        "campaigns",
        "browsers",
        "operating_systems",
        "devices",
        "countries",
        "events",
        "overview",
        "timeseries",
    ];
    let mut breakdowns = BTreeMap::new();
    for r in ROLLED {
        let rows = s.rows("shop", r, &[], 1).await;
        assert!(!rows.as_array().unwrap().is_empty(), "{r}");
        breakdowns.insert(*r, rows);
    }
    let docs_before = s.rows("shop", "pages", &[("page", "/docs")], 1).await;
    let groups = s.rows("shop", "crash_groups", &[], 1).await;
    let fingerprint = groups[0]["fingerprint"].as_str().unwrap().to_owned();
    let by_fingerprint = [("fingerprint", fingerprint.as_str())];
    let trend_before = s.rows("shop", "crash_trend", &by_fingerprint, 1).await;
    assert_eq!(trend_before.as_array().unwrap().len(), 2, "{trend_before}");
    let overview_docs_before = s.rows("shop", "overview", &[("page", "/docs")], 1).await;
    for day in ["2025-11-28", "2025-11-29"] {
        let rows = s
            .engine
            .rollup_day(
                &shop,
                NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap(),
                chrono_tz::UTC,
            )
            .await
            .unwrap();
        assert!(rows > 10, "{day}: {rows} rows");
    }
    // A day without events writes nothing.
    assert_eq!(
        s.engine
            .rollup_day(
                &shop,
                NaiveDate::from_ymd_opt(2020, 1, 1).unwrap(),
                chrono_tz::UTC
            )
            .await
            .unwrap(),
        0
    );
    // The rollup of a dimension matches the raw events (computed here).
    let out = s
        .engine
        .sql(
            &shop,
            "SELECT value AS page, events, visitors FROM rollups \
             WHERE date = '2025-11-28' AND kind = 'pageview' AND dimension = 'page' ORDER BY value",
        )
        .await
        .unwrap();
    let got: Value = serde_json::from_slice(&to_json(&out.batches).unwrap()).unwrap();
    let day0 = s
        .specs
        .iter()
        .filter(|x| x.kind == "pageview" && x.day() == 0);
    let mut expected: BTreeMap<String, (usize, Visitors)> = BTreeMap::new();
    for x in day0 {
        let e = expected.entry(x.path.clone()).or_default();
        e.0 += 1;
        e.1.insert(x.visitor_day());
    }
    let expected: Vec<Value> = expected
        .into_iter()
        .map(|(page, (n, v))| json!({"page": page, "events": n, "visitors": v.len()}))
        .collect();
    assert_eq!(got, json!(expected));

    // Retention drops the raw partitions of the first day: the daily report answers from the rollup.
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let store = s.lake.store();
    let raw: Vec<_> = store
        .list(Some(&object_store::path::Path::from("events/tenant=shop")))
        .try_collect()
        .await
        .unwrap();
    let mut dropped = 0;
    for meta in raw
        .iter()
        .filter(|m| m.location.as_ref().contains("date=2025-11-28"))
    {
        store.delete(&meta.location).await.unwrap();
        dropped += 1;
    }
    assert!(dropped >= 3, "{dropped}");
    assert_eq!(s.rows("shop", "daily", &[], 5).await, before);
    // The breakdowns too: the first day from its rollup, the second from raw events, the same answer (a
    // range counts visitor-days, and rollups count each day's distinct visitors).
    for r in ROLLED {
        assert_eq!(s.rows("shop", r, &[], 1).await, breakdowns[r], "{r}");
    }
    // A crash group's trend: the first day from the fingerprint's rollup.
    assert_eq!(
        s.rows("shop", "crash_trend", &by_fingerprint, 1).await,
        trend_before
    );
    // With another filter, only raw days.
    let on_docs = s
        .rows(
            "shop",
            "crash_trend",
            &[("fingerprint", fingerprint.as_str()), ("page", "/docs")],
            1,
        )
        .await;
    assert!(
        on_docs
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["day"] == "2025-11-29"),
        "{on_docs}"
    );
    // A rollup written before the composite dimensions and visit totals existed (five columns) still
    // reads: its visitors and page views count, its visits (null) add nothing.
    {
        use arrow::array::{Int64Array, RecordBatch, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        let old = Arc::new(Schema::new(vec![
            Field::new("kind", DataType::Utf8, false),
            Field::new("dimension", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, true),
            Field::new("events", DataType::Int64, false),
            Field::new("visitors", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            old.clone(),
            vec![
                Arc::new(StringArray::from(vec!["*", "pageview"])),
                Arc::new(StringArray::from(vec!["all", "all"])),
                Arc::new(StringArray::from(vec![None::<&str>, None])),
                Arc::new(Int64Array::from(vec![3, 3])),
                Arc::new(Int64Array::from(vec![2, 2])),
            ],
        )
        .unwrap();
        let path =
            object_store::path::Path::from("rollups/tenant=shop/date=2025-11-27/rollup.parquet");
        let bytes = tacet_query::format::to_parquet(&old, &[batch]).unwrap();
        store.put(&path, bytes.into()).await.unwrap();
        let o = s
            .rows("shop", "overview", &[("from", "2025-11-27")], 1)
            .await;
        let b = &breakdowns["overview"];
        assert_eq!(o[0]["visitors"], b[0]["visitors"].as_u64().unwrap() + 2);
        assert_eq!(o[0]["pageviews"], b[0]["pageviews"].as_u64().unwrap() + 3);
        assert_eq!(o[0]["visits"], b[0]["visits"]);
        store.delete(&path).await.unwrap();
    }
    // In another zone a rollup day is labelled with its local midnight (rollups are UTC dates).
    {
        let given = BTreeMap::from([
            ("from".to_owned(), "2025-11-28".to_owned()),
            ("to".to_owned(), "2025-11-29".to_owned()),
        ]);
        let params =
            ReportParams::parse(&given, NaiveDate::from_ymd_opt(2025, 11, 29).unwrap()).unwrap();
        let scope = ReportScope {
            zone: chrono_tz::Europe::Berlin,
            ..ReportScope::utc(1)
        };
        let out = s
            .engine
            .report(&shop, Report::find("timeseries").unwrap(), &params, &scope)
            .await
            .unwrap();
        let rows: Value = serde_json::from_slice(&to_json(&out.batches).unwrap()).unwrap();
        let utc = &breakdowns["timeseries"];
        assert!(
            rows[0]["bucket"]
                .as_str()
                .unwrap()
                .starts_with("2025-11-28T00:00:00+01:00"),
            "{rows}"
        );
        assert_eq!(rows[0]["visitors"], utc[0]["visitors"], "{rows} {utc}");
        assert_eq!(rows[0]["visits"], utc[0]["visits"], "{rows} {utc}");
    }
    // Hourly buckets come from raw events only: the first day has none left.
    let hours = s
        .rows("shop", "timeseries", &[("interval", "hour")], 1)
        .await;
    assert!(!hours.as_array().unwrap().is_empty());
    for h in hours.as_array().unwrap() {
        assert!(
            h["bucket"].as_str().unwrap().starts_with("2025-11-29"),
            "{h}"
        );
    }
    // With a filter of its own rollup rows (crate::rollup::ROLLED_FILTERS), the expired day comes from them:
    // the same answers as before it expired.
    let overview_docs = s.rows("shop", "overview", &[("page", "/docs")], 1).await;
    assert_eq!(overview_docs, overview_docs_before);
    let docs_after = s.rows("shop", "pages", &[("page", "/docs")], 1).await;
    assert_eq!(docs_after, docs_before);
    // With any other filter only raw days answer: /docs on the second day alone now.
    let docs_after = s
        .rows("shop", "pages", &[("page", "/docs"), ("os", "Linux")], 1)
        .await;
    let second_day: Visitors = s
        .specs
        .iter()
        .filter(|x| x.kind == "pageview" && x.path == "/docs" && x.day() == 1)
        .map(Spec::visitor_day)
        .collect();
    assert_eq!(docs_after[0]["visitors"], json!(second_day.len()));
    assert!(docs_after[0]["visitors"].as_u64() < docs_before[0]["visitors"].as_u64());
    // Crashes expire first: with the second day's crash partition gone and its page views still there,
    // the day's crash count comes from the rollup.
    assert!(before[1]["crashes"].as_i64().unwrap() > 0, "{before}");
    for meta in raw
        .iter()
        .filter(|m| m.location.as_ref().contains("kind=crash/date=2025-11-29"))
    {
        store.delete(&meta.location).await.unwrap();
    }
    assert_eq!(s.rows("shop", "daily", &[], 5).await, before);
    assert_eq!(
        s.rows("shop", "crash_trend", &by_fingerprint, 1).await,
        trend_before
    );
    // With a rolled filter the expired day answers from its rows; with another filter, or two, only days
    // with raw events do.
    let filtered = s.rows("shop", "daily", &[("page", "/docs")], 5).await;
    assert_eq!(filtered.as_array().unwrap().len(), 2, "{filtered}");
    let filtered = s
        .rows("shop", "daily", &[("page", "/docs"), ("os", "Linux")], 5)
        .await;
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    assert_eq!(filtered[0]["day"], "2025-11-29");
}

#[tokio::test]
async fn every_report_runs_and_formats_round_trip() {
    let s = setup().await;
    for report in tacet_query::REPORTS {
        let mut params = vec![];
        for r in report.required() {
            params.push((
                if r == "prop" { "prop" } else { r.as_str() }.to_owned(),
                match r.as_str() {
                    "event" => "signup",
                    "prop" => "plan",
                    "steps" => "page:/,event:signup",
                    _ => "0000000000000000",
                }
                .to_owned(),
            ));
        }
        let p: Vec<(&str, &str)> = params
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let out = s.run("shop", report.name, &p, 5).await;
        // Arrow and Parquet carry the schema even when there are no rows.
        for format in [
            tacet_query::format::Format::Arrow,
            tacet_query::format::Format::Parquet,
        ] {
            let bytes = tacet_query::format::encode(format, &out.schema, &out.batches).unwrap();
            assert!(!bytes.is_empty(), "{} {format:?}", report.name);
        }
        // Arrow IPC reads back to the same rows.
        let bytes = tacet_query::format::to_arrow(&out.schema, &out.batches).unwrap();
        let back: Vec<_> =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
                .unwrap()
                .map(Result::unwrap)
                .collect();
        assert_eq!(
            back.iter().map(|b| b.num_rows()).sum::<usize>(),
            out.num_rows(),
            "{}",
            report.name
        );
    }
}

/// Rows as a sorted list of JSON texts with floats rounded to 9 significant digits: a distributed plan may
/// sum in another order (the last bits of an average) and emit equal rows in another order.
fn comparable(out: &QueryOutput) -> Vec<String> {
    fn round(v: Value) -> Value {
        match v {
            Value::Number(n) if n.is_f64() => {
                let x = n.as_f64().unwrap();
                json!(format!("{x:.9e}"))
            }
            Value::Array(a) => Value::Array(a.into_iter().map(round).collect()),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, round(v))).collect()),
            v => v,
        }
    }
    let rows: Value = serde_json::from_slice(&to_json(&out.batches).unwrap()).unwrap();
    let mut rows: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| round(r.clone()).to_string())
        .collect();
    rows.sort();
    rows
}

/// The same reports and SQL on Apache DataFusion Ballista (a scheduler and an executor in this process,
/// the plan going over gRPC and the results over Arrow Flight) give the same answers as the local session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ballista_gives_the_same_answers_as_the_local_session() {
    let s = setup().await;
    let ballista = QueryEngine::new(
        Arc::clone(s.lake.store()),
        QueryConfig {
            ballista: Some("standalone".into()),
            ..QueryConfig::default()
        },
    )
    .unwrap();
    let shop = TenantId::new("shop").unwrap();
    // It really is Ballista: the physical plan is a distributed query.
    let plan = ballista
        .sql(&shop, "EXPLAIN SELECT COUNT(*) FROM events")
        .await
        .unwrap();
    let text = String::from_utf8(to_json(&plan.batches).unwrap()).unwrap();
    assert!(
        text.contains("\"plan_type\":\"distributed_plan\"") && text.contains("ShuffleWriterExec"),
        "{text}"
    );

    // Every report but the funnel and one group's releases runs on the cluster (Ballista 55 mis-runs the
    // funnel's UNION ALL of global aggregates: sorted it never finishes, joined it returns rows twice; and
    // does not finish crash_releases; their headers keep them local).
    let local_only: Vec<&str> = tacet_query::REPORTS
        .iter()
        .filter(|r| !r.distributed())
        .map(|r| r.name)
        .collect();
    assert_eq!(local_only, ["funnel", "crash_releases"]);
    let today = NaiveDate::from_ymd_opt(2025, 11, 29).unwrap();
    let mut compared = 0;
    // A tenant in another time zone too: the cast of `ts` and the local range travel in the plan.
    for (tenant, zone) in [
        ("shop", chrono_tz::UTC),
        ("funnel", chrono_tz::UTC),
        ("shop", chrono_tz::Europe::Berlin),
    ] {
        let tenant = TenantId::new(tenant).unwrap();
        let scope = ReportScope {
            zone,
            ..ReportScope::utc(2)
        };
        for report in tacet_query::REPORTS {
            let mut given: BTreeMap<String, String> = BTreeMap::new();
            given.insert("from".into(), "2025-11-24".into());
            given.insert("to".into(), "2025-12-12".into());
            for r in report.required() {
                let value = match r.as_str() {
                    "event" => "signup",
                    "prop" => "plan",
                    "steps" => "page:/,page:/pricing,event:signup",
                    _ => "0000000000000000",
                };
                given.insert(r, value.into());
            }
            let params = ReportParams::parse(&given, today).unwrap();
            let (local, distributed) = (
                s.engine.report(&tenant, report, &params, &scope).await,
                ballista.report(&tenant, report, &params, &scope).await,
            );
            let local = local.unwrap_or_else(|e| panic!("{} locally: {e}", report.name));
            let distributed =
                distributed.unwrap_or_else(|e| panic!("{} on Ballista: {e}", report.name));
            assert_eq!(
                comparable(&distributed),
                comparable(&local),
                "{} for {tenant} in {zone}",
                report.name
            );
            assert_eq!(distributed.suppressed, local.suppressed, "{}", report.name);
            compared += usize::from(local.num_rows() > 0);
        }
    }
    assert!(
        compared >= 35,
        "only {compared} reports had rows to compare"
    );
    // Raw SQL too, map access included.
    let sql = "SELECT props['plan'] AS plan, kind, COUNT(*) AS n, COUNT(DISTINCT visitor_id) AS v \
               FROM events GROUP BY 1, 2";
    assert_eq!(
        comparable(&ballista.sql(&shop, sql).await.unwrap()),
        comparable(&s.engine.sql(&shop, sql).await.unwrap())
    );
    // A scan beside a join that finds nothing: Ballista's adaptive planner loses or repeats this union's
    // rows, or never finishes (crate::ballista::has_union). Read several times.
    let sql = "SELECT url_path FROM events UNION ALL SELECT a.url_path FROM events a \
               JOIN events b ON a.visitor_id = b.visitor_id WHERE a.date = '1999-01-01' AND b.date = '1999-01-01'";
    let local = comparable(&s.engine.sql(&shop, sql).await.unwrap());
    for _ in 0..3 {
        assert_eq!(comparable(&ballista.sql(&shop, sql).await.unwrap()), local);
    }
}

/// A tenant in Europe/Berlin (UTC+1 in November) reads whole local days: `from` and `to` are its dates,
/// `day` is its date and hourly buckets are its hours, though partitions stay UTC dates.
#[tokio::test]
async fn days_are_the_tenant_s_local_days() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let tenant = TenantId::new("berlin").unwrap();
    let hour = 60 * MIN;
    let page = |ts: i64| json!({"kind": "pageview", "url": "https://b.example/", "ts": ts});
    let crash = |ts: i64| {
        json!({"kind": "crash", "url": "https://b.example/", "ts": ts, "error_type": "E",
               "message": "m", "stack": ["at f (a.js:1:1)"]})
    };
    // DAY0 is 2025-11-28T00:00Z, 01:00 in Berlin.
    let events = [
        (1, page(DAY0 - 70 * MIN)), // 27th 22:50Z = 27th 23:50 Berlin: before the range
        (2, page(DAY0 - 30 * MIN)), // 27th 23:30Z = 28th 00:30 Berlin
        (3, page(DAY0 + 22 * hour + 59 * MIN)), // 28th 22:59Z = 28th 23:59 Berlin
        (4, page(DAY0 + 23 * hour + MIN)), // 28th 23:01Z = 29th 00:01 Berlin
        (5, page(DAY0 + DAY + 12 * hour)), // 29th 12:00Z = 29th 13:00 Berlin
        (6, crash(DAY0 + DAY + 12 * hour + 30 * MIN)), // 29th 13:30 Berlin
        (6, crash(DAY0 + DAY + 23 * hour + 10 * MIN)), // 29th 23:10Z = 30th 00:10 Berlin: after it
    ];
    write_json(&lake, &tenant, &events).await;
    let engine = QueryEngine::new(Arc::clone(lake.store()), QueryConfig::default()).unwrap();
    let run = |report: &'static str, extra: Vec<(&'static str, String)>, zone| {
        let (engine, tenant) = (&engine, &tenant);
        async move {
            let mut given: BTreeMap<String, String> =
                [("from", "2025-11-28"), ("to", "2025-11-29")]
                    .iter()
                    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                    .chain(extra.into_iter().map(|(a, b)| (a.to_owned(), b)))
                    .collect();
            given.entry("interval".into()).or_insert("day".into());
            let params =
                ReportParams::parse(&given, NaiveDate::from_ymd_opt(2025, 11, 29).unwrap())
                    .unwrap();
            let scope = ReportScope {
                zone,
                ..ReportScope::utc(1)
            };
            let out = engine
                .report(tenant, Report::find(report).unwrap(), &params, &scope)
                .await
                .unwrap_or_else(|e| panic!("{report}: {e}"));
            serde_json::from_slice::<Value>(&to_json(&out.batches).unwrap()).unwrap()
        }
    };
    let berlin = chrono_tz::Europe::Berlin;
    let counts = |rows: &Value, key: &str, cols: &[&str]| -> Vec<Vec<Value>> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut v = vec![json!(r[key].as_str().unwrap()[..10].to_owned())];
                v.extend(cols.iter().map(|c| r[*c].clone()));
                v
            })
            .collect()
    };
    let daily = run("daily", vec![], berlin).await;
    assert_eq!(
        counts(&daily, "day", &["visitors", "pageviews", "crashes"]),
        [
            vec![json!("2025-11-28"), json!(2), json!(2), json!(0)],
            vec![json!("2025-11-29"), json!(3), json!(2), json!(1)],
        ]
    );
    // The same dates in UTC are other instants: 27th 23:30Z is out, the crash at 23:10Z on the 29th in.
    let utc = run("daily", vec![], chrono_tz::UTC).await;
    assert_eq!(
        counts(&utc, "day", &["visitors", "pageviews", "crashes"]),
        [
            vec![json!("2025-11-28"), json!(2), json!(2), json!(0)],
            vec![json!("2025-11-29"), json!(2), json!(1), json!(2)],
        ]
    );
    let overview = run("overview", vec![], berlin).await;
    assert_eq!(
        (
            overview[0]["visitors"].clone(),
            overview[0]["pageviews"].clone()
        ),
        (json!(5), json!(4))
    );
    let series = run("timeseries", vec![], berlin).await;
    assert_eq!(
        counts(&series, "bucket", &["pageviews", "visits"]),
        [
            vec![json!("2025-11-28"), json!(2), json!(2)],
            vec![json!("2025-11-29"), json!(2), json!(3)],
        ]
    );
    // Hourly buckets are local hours: the first page view of the range is at 00:30 Berlin.
    let hours = run("timeseries", vec![("interval", "hour".into())], berlin).await;
    let first = hours[0]["bucket"].as_str().unwrap();
    assert!(first.starts_with("2025-11-28T00:00:00+01:00"), "{first}");
    // A crash group's days are local days too.
    let groups = run("crash_groups", vec![], berlin).await;
    assert_eq!(groups[0]["crashes"], json!(1));
    let fp = groups[0]["fingerprint"].as_str().unwrap().to_owned();
    let trend = run("crash_trend", vec![("fingerprint", fp)], berlin).await;
    assert_eq!(
        counts(&trend, "day", &["crashes", "visitors"]),
        [vec![json!("2025-11-29"), json!(1), json!(1)]]
    );
}

/// `realtime`: the last 30 minutes, minute by minute, from the clock (not the range).
#[tokio::test]
async fn realtime_is_the_last_thirty_minutes_by_minute() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let live = TenantId::new("live").unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    // A minute that began ten minutes ago, and the one after it.
    let m = (now - 10 * MIN).div_euclid(MIN) * MIN;
    let at = |kind: &str, ts: i64| {
        let mut e = json!({"kind": kind, "url": "https://live.example/", "ts": ts});
        match kind {
            "event" => e["name"] = "signup".into(),
            "crash" => {
                e["error_type"] = "TypeError".into();
                e["message"] = "x is undefined".into();
            }
            _ => {}
        }
        e
    };
    let events = [
        (1, at("pageview", m + 1_000)),
        (2, at("pageview", m + 2_000)),
        (1, at("event", m + 3_000)),
        (3, at("crash", m + MIN + 1_000)),
        // 40 minutes ago: outside the window.
        (4, at("pageview", now - 40 * MIN)),
    ];
    write_json_at(&lake, &live, &events, now).await;
    let engine = QueryEngine::new(Arc::clone(lake.store()), QueryConfig::default()).unwrap();
    let params = ReportParams::parse(&BTreeMap::new(), chrono::Utc::now().date_naive()).unwrap();
    let out = engine
        .report(
            &live,
            Report::find("realtime").unwrap(),
            &params,
            &ReportScope::utc(1),
        )
        .await
        .unwrap();
    let rows: Value = serde_json::from_slice(&to_json(&out.batches).unwrap()).unwrap();
    let minute = |r: &Value| {
        chrono::DateTime::parse_from_rfc3339(r["minute"].as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((minute(&rows[0]), minute(&rows[1])), (m, m + MIN));
    let counts =
        |r: &Value| ["visitors", "pageviews", "events", "crashes"].map(|c| r[c].as_i64().unwrap());
    assert_eq!(counts(&rows[0]), [2, 2, 1, 0]);
    assert_eq!(counts(&rows[1]), [1, 0, 0, 1]);
}

mod rolled;
mod threshold;
mod upgrade;
