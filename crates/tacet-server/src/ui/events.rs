//! What people did, beyond page views: one custom event's properties and their values (`/ui/events`, the
//! `event_property_keys` and `event_properties` reports) and weekly retention cohorts of identified users
//! (`/ui/retention`, the `retention` report). k applies as in the API: values and cohort cells describing
//! fewer visitors or users are left out, and said so.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::Value;

use super::dashboard::Viewer;
use super::html::{self, Nav, esc};
use super::view::*;
use crate::AppState;

/// Weeks after the cohort's shown at most.
const MAX_WEEKS: i64 = 26;

/// Properties of one event shown at most, each with its top values.
const PROPS: usize = 12;

/// `GET /ui/events?event=signup`: the event's properties, each with its values; without `event`, the
/// range's custom events to choose from.
pub(crate) async fn events(
    v: Viewer,
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let today = local_now(&state, &v.tenant).date_naive();
    let mut view = View::parse(&q, today);
    let event = q
        .get("event")
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty());
    // The page's own event is not a goal filter on its numbers (that would be the same rows again).
    view.filters.remove("event");
    let Some(event) = event else {
        let rows = report(
            &state,
            &v.tenant,
            "events",
            with(view.params(), &[("limit", "100")]),
        )
        .await;
        let mut body = controls(&view, "/ui/events", today);
        body.push_str(r#"<p class="range">Choose an event to see the properties it carried and their values.</p><div class="grid">"#);
        body.push_str(&super::usage::card(
            &v,
            &view,
            "events",
            "Custom events",
            &rows,
        ));
        body.push_str("</div>");
        return v.page("Events", Nav::Goals, &body);
    };
    view.keep.push(("event", event.clone()));
    let keys = report(
        &state,
        &v.tenant,
        "event_property_keys",
        with(view.params(), &[("event", &event), ("limit", "100")]),
    )
    .await;
    let mut body = controls(&view, "/ui/events", today);
    body.push_str(&format!(
        r#"<p class="range">{} to {}: the properties of <code>{}</code>. <a href="{}">The visitors who did it</a>: their pages, sources and devices.</p>"#,
        view.from,
        view.to,
        esc(&event),
        esc(&view.href("/ui/usage", &[("event", Some(&event))])),
    ));
    let keys = match keys {
        Ok(k) => k,
        Err(e) => {
            body.push_str(&failed(&e));
            return v.page(&format!("Event {event}"), Nav::Goals, &body);
        }
    };
    let props: Vec<String> = keys
        .rows
        .iter()
        .filter_map(|r| r.get("prop").and_then(Value::as_str).map(str::to_owned))
        .take(PROPS)
        .collect();
    if props.is_empty() {
        body.push_str(&format!(
            r#"<p class="empty">This event carried no properties in this range{}.</p>"#,
            if keys.suppressed > 0 {
                format!(" that {} or more visitors sent (the k-threshold)", v.k())
            } else {
                String::new()
            }
        ));
        return v.page(&format!("Event {event}"), Nav::Goals, &body);
    }
    let values = futures::future::join_all(props.iter().map(|prop| {
        report(
            &state,
            &v.tenant,
            "event_properties",
            with(
                view.params(),
                &[("event", &event), ("prop", prop), ("limit", "20")],
            ),
        )
    }))
    .await;
    body.push_str(r#"<div class="grid">"#);
    for (i, (prop, rows)) in props.iter().zip(&values).enumerate() {
        let id = format!("h-prop-{i}");
        body.push_str(&format!(
            r#"<section class="card" data-prop="{p}" aria-labelledby="{id}"><h2 id="{id}"><code>{p}</code></h2>"#,
            p = esc(prop)
        ));
        match rows {
            Ok(r) => {
                body.push_str(&html::table(&id, &r.columns, &r.rows, &|_, _| None));
                body.push_str(&html::suppressed(r.suppressed, v.k()));
            }
            Err(e) => body.push_str(&failed(e)),
        }
        body.push_str("</section>");
    }
    body.push_str("</div>");
    if keys.rows.len() > PROPS {
        body.push_str(&format!(
            r#"<p class="hint">The {PROPS} properties most visitors sent are shown.</p>"#
        ));
    }
    v.page(&format!("Event {event}"), Nav::Goals, &body)
}

/// `GET /ui/retention`: weekly cohorts (the week a user was first seen in the range), and how many came back
/// each week after, as a count and a share of the cohort.
pub(crate) async fn retention(
    v: Viewer,
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let today = local_now(&state, &v.tenant).date_naive();
    let view = View::parse(&q, today);
    let rows = report(
        &state,
        &v.tenant,
        "retention",
        with(view.params(), &[("limit", "10000")]),
    )
    .await;
    let mut body = controls(&view, "/ui/retention", today);
    body.push_str(&format!(
        r#"<p class="range">{} to {}: users who logged in (a <code>user_id</code> was sent, kept as a pseudonym), by the week they were first seen in the range, and how many of them came back each week after. Anonymous visitors cannot be followed from day to day (their ids rotate daily), so they are not here.</p>"#,
        view.from, view.to
    ));
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            body.push_str(&failed(&e));
            return v.page("Retention", Nav::Retention, &body);
        }
    };
    // cohort → week → users.
    let mut cohorts: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for r in &rows.rows {
        let (Some(cohort), Some(week), Some(users)) = (
            r.get("cohort").and_then(Value::as_str),
            r.get("week").and_then(Value::as_i64),
            number(Some(r), "users"),
        ) else {
            continue;
        };
        cohorts
            .entry(cohort.get(..10).unwrap_or(cohort).to_owned())
            .or_default()
            .insert(week, users);
    }
    // Columns for every week the range reaches after the first cohort (withheld cells are absent rows).
    let reached = cohorts
        .keys()
        .next()
        .and_then(|c| chrono::NaiveDate::parse_from_str(c, "%Y-%m-%d").ok())
        .map_or(0, |first| (view.to - first).num_days() / 7);
    let weeks = cohorts
        .values()
        .filter_map(|w| w.keys().max().copied())
        .max()
        .unwrap_or(0)
        .max(reached)
        .min(MAX_WEEKS);
    body.push_str(r#"<section class="card wide" aria-labelledby="h-cohorts"><h2 id="h-cohorts">Weekly cohorts</h2><div class="scroll"><table aria-labelledby="h-cohorts" id="cohorts"><thead><tr><th scope="col">First seen (week of)</th><th scope="col" class="num">Users</th>"#);
    for w in 1..=weeks {
        body.push_str(&format!(r#"<th scope="col" class="num">Week {w}</th>"#));
    }
    body.push_str("</tr></thead><tbody>");
    if cohorts.is_empty() {
        body.push_str(
            r#"<tr><td colspan="2" class="empty">No identified users in this range.</td></tr>"#,
        );
    }
    for (cohort, by_week) in &cohorts {
        let size = by_week.get(&0).copied();
        body.push_str(&format!(
            r#"<tr data-cohort="{c}"><th scope="row">{c}</th><td class="num" data-week="0" data-value="{}">{}</td>"#,
            size.map_or(String::new(), |n| n.to_string()),
            size.map_or("—".to_owned(), |n| html::int(n as i64)),
            c = esc(cohort),
        ));
        for w in 1..=weeks {
            let cell = match (by_week.get(&w), size) {
                (Some(n), Some(s)) if s > 0.0 => format!(
                    r#"<td class="num" data-week="{w}" data-value="{n}">{} <span class="vs">{}</span></td>"#,
                    html::int(*n as i64),
                    html::percent(n / s)
                ),
                (Some(n), _) => format!(
                    r#"<td class="num" data-week="{w}" data-value="{n}">{}</td>"#,
                    html::int(*n as i64)
                ),
                (None, _) => format!(r#"<td class="num" data-week="{w}" data-value="">—</td>"#),
            };
            body.push_str(&cell);
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table></div>");
    body.push_str(&html::suppressed(rows.suppressed, v.k()));
    body.push_str(&format!(
        r#"<p class="hint">A dash: no user of the cohort came back that week, the week is after the range, or fewer than {} did (the k-threshold).</p><p class="export"><a href="{}" download>CSV</a></p></section>"#,
        v.k(),
        esc(&view.href("/ui/export/retention.csv", &[])),
    ));
    v.page("Retention", Nav::Retention, &body)
}
