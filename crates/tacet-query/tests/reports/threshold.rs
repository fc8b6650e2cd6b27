//! k on every number that leaves: every report in `queries/`, with every filter it accepts set to every
//! value the fixture has, on a tenant with one rare visitor (its own page, campaign, source, event,
//! release and crash) beside six ordinary ones. No usage count below k may appear; crash reports follow
//! their own `k_threshold_crashes` the same way.

use super::*;
use tacet_query::{FILTERS, KRule, REPORTS};

/// The events of the `rare` tenant, `minutes_ago` before `now`: six ordinary visitors and visitor 9.
fn rare_tenant(now: i64) -> Vec<(u32, Value)> {
    let at = |v: u32, s: i64| now - 10 * MIN + i64::from(v) * 1_000 + s;
    let mut events = Vec::new();
    for v in 0..6 {
        events.push((
            v,
            json!({"kind": "pageview", "url": "https://shop.example/", "ts": at(v, 0)}),
        ));
        events.push((
            v,
            json!({"kind": "event", "name": "signup", "url": "https://shop.example/",
            "props": {"plan": "pro"}, "release": "1.0.0", "ts": at(v, 1)}),
        ));
        events.push((v, json!({"kind": "crash", "url": "https://shop.example/", "error_type": "TypeError",
            "message": "x is undefined", "stack": ["at a (app.js:1:1)"], "release": "1.0.0", "ts": at(v, 2)})));
    }
    let rare = 9;
    events.push((rare, json!({"kind": "pageview",
        "url": "https://shop.example/rare-page?utm_source=rare-source&utm_medium=email&utm_campaign=rare-campaign",
        "referrer": "https://rare-referrer.example/", "ts": at(rare, 0)})));
    events.push((
        rare,
        json!({"kind": "pageview", "url": "https://shop.example/rare-page", "ts": at(rare, 1)}),
    ));
    events.push((
        rare,
        json!({"kind": "event", "name": "rare_signup", "url": "https://shop.example/rare-page",
        "props": {"plan": "rare-plan"}, "release": "9.9.9-rare", "ts": at(rare, 2)}),
    ));
    events.push((rare, json!({"kind": "crash", "url": "https://shop.example/rare-page", "error_type": "RareError",
        "message": "only here", "stack": ["at rare (rare.js:9:9)"], "release": "9.9.9-rare", "ts": at(rare, 3)})));
    events
}

/// Every value `column` takes in the tenant's events.
async fn values(engine: &QueryEngine, tenant: &TenantId, column: &str) -> Vec<String> {
    let out = engine
        .sql(
            tenant,
            &format!("SELECT DISTINCT CAST({column} AS VARCHAR) AS v FROM events WHERE {column} IS NOT NULL"),
        )
        .await
        .unwrap();
    let rows: Value = serde_json::from_slice(&to_json(&out.batches).unwrap()).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["v"].as_str().unwrap().to_owned())
        .collect()
}

/// The rows of an answer that show a count of fewer than `k` (the rule's column), or a withheld row that
/// still shows a number.
fn leaks(out: &QueryOutput, rule: &KRule, k: u64) -> Vec<String> {
    let rows: Value = serde_json::from_slice(&to_json(&out.batches).unwrap()).unwrap();
    let mut found = Vec::new();
    for row in rows.as_array().unwrap() {
        match row.get(&rule.column) {
            Some(Value::Null) | None => {
                let shown: Vec<&String> = row
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(_, v)| v.is_number())
                    .map(|(c, _)| c)
                    .collect();
                if !shown.is_empty() || (rule.withhold && row["suppressed"].is_null()) {
                    found.push(format!("withheld row shows {shown:?}: {row}"));
                }
            }
            Some(v) if v.as_u64().is_some_and(|n| n >= k) => {}
            Some(_) => found.push(format!("{row}")),
        }
    }
    found
}

#[tokio::test]
async fn no_usage_number_below_k_leaves_any_report_whatever_the_filters() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let tenant = TenantId::new("rare").unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    write_json_at(&lake, &tenant, &rare_tenant(now), now).await;
    let engine = QueryEngine::new(Arc::clone(lake.store()), QueryConfig::default()).unwrap();
    let today = chrono::Utc::now().date_naive();
    let from = (today - chrono::Days::new(1)).to_string();

    // Every filter with every value the fixture has, and no filter.
    let mut filters: Vec<Option<(&str, String)>> = vec![None];
    for (param, column) in FILTERS {
        for v in values(&engine, &tenant, column).await {
            filters.push(Some((param, v)));
        }
    }
    let fingerprints = values(&engine, &tenant, "fingerprint").await;
    assert_eq!(fingerprints.len(), 2, "{fingerprints:?}");
    assert!(filters.len() >= 17, "{filters:?}");

    let k = 5;
    let scope = ReportScope {
        k_crashes: k,
        ..ReportScope::utc(k)
    };
    let (mut runs, mut leaked, mut withheld) = (0, Vec::new(), 0);
    for report in REPORTS {
        let rule = KRule::of(report).unwrap();
        for filter in &filters {
            // What the report requires, in each form the fixture offers.
            let mut extra: Vec<Vec<(&str, String)>> = vec![vec![]];
            for r in report.required() {
                extra = match r.as_str() {
                    "fingerprint" => fingerprints
                        .iter()
                        .map(|f| vec![("fingerprint", f.clone())])
                        .collect(),
                    "steps" => vec![
                        vec![("steps", "page:/,page:/rare-page".to_owned())],
                        vec![("steps", "page:/rare-page,event:rare_signup".to_owned())],
                    ],
                    "event" => vec![
                        vec![("event", "rare_signup".to_owned())],
                        vec![("event", "signup".to_owned())],
                    ],
                    "prop" => extra
                        .into_iter()
                        .map(|mut e| {
                            e.push(("prop", "plan".to_owned()));
                            e
                        })
                        .collect(),
                    other => panic!("{}: unexpected requirement {other}", report.name),
                };
            }
            for e in extra {
                let mut given: BTreeMap<String, String> = BTreeMap::from([
                    ("from".into(), from.clone()),
                    ("to".into(), today.to_string()),
                ]);
                for (p, v) in filter.iter().cloned().chain(e) {
                    given.insert(p.to_owned(), v);
                }
                let params = ReportParams::parse(&given, today).unwrap();
                let out = engine
                    .report(&tenant, report, &params, &scope)
                    .await
                    .unwrap_or_else(|err| panic!("{} {given:?}: {err}", report.name));
                runs += 1;
                withheld += out.suppressed;
                for l in leaks(&out, &rule, k) {
                    leaked.push(format!("{} {given:?}: {l}", report.name));
                }
            }
        }
    }
    assert!(
        leaked.is_empty(),
        "{} leaks:\n{}",
        leaked.len(),
        leaked.join("\n")
    );
    assert!(
        runs > 350 && withheld > 100,
        "{runs} runs, {withheld} rows held back"
    );

    // The rare visitor's numbers are there to be held back: with k = 1 they show.
    let params = |extra: &[(&str, &str)]| {
        let mut given = BTreeMap::from([
            ("from".to_owned(), from.clone()),
            ("to".to_owned(), today.to_string()),
        ]);
        given.extend(
            extra
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned())),
        );
        ReportParams::parse(&given, today).unwrap()
    };
    let rows = |out: &QueryOutput| -> Value {
        serde_json::from_slice(&to_json(&out.batches).unwrap()).unwrap()
    };
    let overview = Report::find("overview").unwrap();
    let rare_page = params(&[("page", "/rare-page")]);
    let out = engine
        .report(&tenant, overview, &rare_page, &ReportScope::utc(1))
        .await
        .unwrap();
    assert_eq!(
        (
            rows(&out)[0]["visitors"].clone(),
            rows(&out)[0]["pageviews"].clone()
        ),
        (json!(1), json!(2))
    );
    let out = engine
        .report(&tenant, overview, &rare_page, &scope)
        .await
        .unwrap();
    assert_eq!(rows(&out)[0]["suppressed"], "fewer than 5 visitors");
    assert_eq!(rows(&out)[0]["pageviews"], Value::Null);
    // Unfiltered, the seven visitors show.
    let out = engine
        .report(&tenant, overview, &params(&[]), &scope)
        .await
        .unwrap();
    assert_eq!(rows(&out)[0]["visitors"], 7);
    // Crash triage keeps its own threshold: by default (1) the crash that hit one person is listed, under
    // any filter.
    let crash_groups = Report::find("crash_groups").unwrap();
    let out = engine
        .report(&tenant, crash_groups, &rare_page, &ReportScope::utc(5))
        .await
        .unwrap();
    assert_eq!(rows(&out)[0]["error_type"], "RareError");
    assert_eq!(rows(&out)[0]["visitors"], 1);
}
