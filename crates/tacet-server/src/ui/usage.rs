//! The usage pages: headline numbers against the previous period, series and top lists (`/ui/usage`), and
//! the last 30 minutes (`/ui/realtime`).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::dashboard::Viewer;
use super::html::{self, Nav, esc};
use super::respond::*;
use super::view::*;
use crate::AppState;
use crate::error::ApiError;

/// What the headline shows: column, label, format, and whether up is good.
pub(crate) const HEADLINE: &[(&str, &str, Fmt, bool)] = &[
    ("visitors", "Visitors", Fmt::Int, true),
    ("visits", "Visits", Fmt::Int, true),
    ("pageviews", "Page views", Fmt::Int, true),
    ("bounce_rate", "Bounce rate", Fmt::Percent, false),
    ("visit_seconds", "Visit duration", Fmt::Duration, true),
];

#[derive(Debug, Clone, Copy)]
pub(crate) enum Fmt {
    Int,
    Percent,
    Duration,
}

pub(crate) fn headline(cur: &Rows, prev: Option<&Rows>, days: i64, k: u64) -> String {
    let row = cur.rows.first();
    // Fewer than k visitors: the numbers were withheld (threshold.rs); say so instead of showing dashes.
    if row
        .and_then(|r| r.get("suppressed"))
        .is_some_and(Value::is_string)
    {
        let mut out = String::from(r#"<dl class="headline withheld">"#);
        for &(column, label, _, _) in HEADLINE {
            out.push_str(&format!(
                r#"<div class="metric" data-metric="{column}"><dt>{label}</dt><dd><span class="value" data-value="" data-withheld="true">{}</span></dd></div>"#,
                if column == "visitors" {
                    format!("fewer than {k}")
                } else {
                    "withheld".to_owned()
                }
            ));
        }
        out.push_str(&format!(
            r#"</dl><p class="suppressed" data-suppressed="1">These numbers describe fewer than {k} visitors, so they are withheld (the k-threshold of this tenant's privacy policy).</p>"#
        ));
        return out;
    }
    let mut out = String::from(r#"<dl class="headline">"#);
    for &(column, label, fmt, up_is_good) in HEADLINE {
        let value = row
            .and_then(|r| r.get(column))
            .cloned()
            .unwrap_or(Value::Null);
        let shown = match (value.as_f64(), fmt) {
            (None, _) => "—".to_owned(),
            (Some(v), Fmt::Int) => html::int(v as i64),
            (Some(v), Fmt::Percent) => html::percent(v),
            (Some(v), Fmt::Duration) => html::duration(v),
        };
        let change = match (
            value.as_f64(),
            prev.and_then(|p| number(p.rows.first(), column)),
        ) {
            (Some(c), Some(p)) if p == 0.0 && c > 0.0 => ("new".to_owned(), "up"),
            (Some(c), Some(p)) if p != 0.0 => {
                let rel = (c - p) / p;
                let dir = if rel > 0.0005 {
                    "up"
                } else if rel < -0.0005 {
                    "down"
                } else {
                    "flat"
                };
                (format!("{:+.1}%", rel * 100.0), dir)
            }
            _ => ("—".to_owned(), "flat"),
        };
        let good = match (change.1, up_is_good) {
            ("up", true) | ("down", false) => " good",
            ("down", true) | ("up", false) => " bad",
            _ => "",
        };
        out.push_str(&format!(
            r#"<div class="metric" data-metric="{column}"><dt>{label}</dt><dd><span class="value" data-value="{raw}">{shown}</span> <span class="change {dir}{good}" data-change="{text}">{text} <span class="vs">vs the previous {days} {unit}</span></span></dd></div>"#,
            raw = esc(&html::raw(&value)),
            dir = change.1,
            text = esc(&change.0),
            unit = if days == 1 { "day" } else { "days" },
        ));
    }
    out.push_str("</dl>");
    out
}

/// One card with a report's top rows; values link to their filter.
pub(crate) fn card(
    v: &Viewer,
    view: &View,
    name: &str,
    title: &str,
    rows: &Result<Rows, ApiError>,
) -> String {
    let id = format!("h-{name}");
    let mut out = format!(
        r#"<section class="card" data-report="{name}" aria-labelledby="{id}"><h2 id="{id}">{}</h2>"#,
        esc(title)
    );
    let csv = view.href(&format!("/ui/export/{name}.csv"), &[]);
    match rows {
        Ok(r) => {
            let link = |column: &str, value: &Value| {
                let value = value.as_str()?;
                // An event opens its properties; everything else filters the usage page.
                if column == "event" {
                    return Some(view.href("/ui/events", &[("event", Some(value))]));
                }
                let f = filter_of(column)?;
                Some(view.href("/ui/usage", &[(f, Some(value))]))
            };
            out.push_str(&html::table(&id, &r.columns, &r.rows, &link));
            out.push_str(&html::suppressed(r.suppressed, v.k()));
            // A class with neither source nor host (`social (none) (none)`) needs saying where it came from.
            let untraced = |row: &serde_json::Map<String, Value>| {
                row.get("host").is_some_and(Value::is_null)
                    && row
                        .get("referrer_class")
                        .and_then(Value::as_str)
                        .is_some_and(|c| c != "direct")
            };
            if name == "referrers" && r.rows.iter().any(untraced) {
                out.push_str(r#"<p class="hint" data-hint="utm-medium">A class without source or host: visits that sent no referrer, classed by their link's <code>utm_medium</code> (a newsletter's <code>utm_medium=email</code>, say).</p>"#);
            }
            out.push_str(&format!(
                r#"<p class="export"><a href="{}" download>CSV</a></p>"#,
                esc(&csv)
            ));
        }
        Err(e) => out.push_str(&failed(e)),
    }
    out.push_str("</section>");
    out
}

pub(crate) const LISTS: &[(&str, &str)] = &[
    ("pages", "Top pages"),
    ("entry_pages", "Entry pages"),
    ("referrers", "Sources"),
    ("campaigns", "Campaigns"),
    ("browsers", "Browsers"),
    ("operating_systems", "Operating systems"),
    ("devices", "Devices"),
    ("countries", "Countries"),
    ("events", "Custom events"),
];

pub(crate) async fn usage(
    v: Viewer,
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let today = local_now(&state, &v.tenant).date_naive();
    let view = View::parse(&q, today);
    let interval = if view.days() == 1 { "hour" } else { "day" };
    let lists = futures::future::join_all(LISTS.iter().map(|(name, _)| {
        report(
            &state,
            &v.tenant,
            name,
            with(view.params(), &[("limit", "10")]),
        )
    }));
    // With a goal (an event filter): everyone in the range, without it, to convert against.
    let goal = view.filters.get("event").cloned();
    let mut everyone = view.params();
    everyone.remove("event");
    let everyone = async {
        match &goal {
            Some(_) => Some(report(&state, &v.tenant, "overview", everyone).await),
            None => None,
        }
    };
    let (cur, prev, series, lists, everyone) = tokio::join!(
        report(&state, &v.tenant, "overview", view.params()),
        report(&state, &v.tenant, "overview", view.previous()),
        report(
            &state,
            &v.tenant,
            "timeseries",
            with(view.params(), &[("interval", interval)])
        ),
        lists,
        everyone,
    );

    let mut body = controls(&view, "/ui/usage", today);
    body.push_str(&format!(
        r#"<p class="range">{} to {} (UTC days)</p>"#,
        view.from, view.to
    ));
    if let (Some(goal), Some(Ok(all)), Ok(did)) = (&goal, &everyone, &cur) {
        body.push_str(&conversion(goal, did, all, v.k()));
    }
    match &cur {
        Ok(c) => body.push_str(&headline(c, prev.as_ref().ok(), view.days(), v.k())),
        Err(e) => body.push_str(&failed(e)),
    }
    body.push_str(r#"<section class="card wide" aria-labelledby="h-series"><h2 id="h-series">Visitors and page views</h2>"#);
    match &series {
        Ok(s) => {
            let (keys, labels) = if interval == "hour" {
                let keys: Vec<String> = (0..24).map(|h| format!("{}T{h:02}", view.from)).collect();
                let labels = (0..24).map(|h| format!("{h:02}:00")).collect();
                (keys, labels)
            } else {
                (view.day_keys(), view.day_keys())
            };
            body.push_str(&chart(
                "Visitors and page views over the range",
                &s.rows,
                ("bucket", &keys, &labels),
                &[("visitors", "visitors"), ("pageviews", "page views")],
            ));
            body.push_str(&html::suppressed(s.suppressed, v.k()));
        }
        Err(e) => body.push_str(&failed(e)),
    }
    body.push_str(r#"</section><div class="grid">"#);
    for ((name, title), rows) in LISTS.iter().zip(&lists) {
        body.push_str(&card(&v, &view, name, title, rows));
    }
    body.push_str("</div>");
    v.page("Usage", Nav::Usage, &body)
}

/// "Visitors who did signup: 8 of 14 (57.1 %)": the goal filter against everyone in the range, or why
/// the numbers are withheld.
fn conversion(goal: &str, did: &Rows, all: &Rows, k: u64) -> String {
    let visitors = |r: &Rows| number(r.rows.first(), "visitors");
    let text = match (visitors(did), visitors(all)) {
        (Some(d), Some(a)) if a > 0.0 => format!(
            "Visitors who did {}: {} of {} ({:.1} %); every panel below shows them only.",
            esc(goal),
            d as u64,
            a as u64,
            100.0 * d / a
        ),
        _ => format!(
            "Visitors who did {}: fewer than {k}, withheld; every panel below shows them only.",
            esc(goal)
        ),
    };
    format!(r#"<p class="conversion" role="status">{text}</p>"#)
}

pub(crate) async fn realtime(
    v: Viewer,
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let now = local_now(&state, &v.tenant);
    let view = View::parse(&q, now.date_naive());
    let mut params: BTreeMap<String, String> = view
        .filters
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    params.insert("limit".into(), "100".into());
    let top = with(params.clone(), &[("limit", "10")]);
    let (rows, now_rows, pages, sources) = tokio::join!(
        report(&state, &v.tenant, "realtime", params.clone()),
        report(&state, &v.tenant, "realtime_now", params),
        report(&state, &v.tenant, "realtime_pages", top.clone()),
        report(&state, &v.tenant, "realtime_sources", top),
    );
    let mut body = String::new();
    if let Some(e) = &view.error {
        body.push_str(&format!(r#"<p class="error" role="alert">{}</p>"#, esc(e)));
    }
    body.push_str(&format!(
        r#"<p class="range" role="status">The last 30 minutes, updated {} ({}); this page reloads itself every 30 seconds.</p>"#,
        now.format("%H:%M:%S"),
        esc(now.timezone().name())
    ));
    // Right now: visitors of the last 5 minutes (withheld under k, as every headline number).
    match &now_rows {
        Ok(r) => {
            let row = r.rows.first();
            let shown = match number(row, "visitors") {
                Some(n) => format!(
                    r#"<span class="value" data-value="{n}">{}</span>"#,
                    html::int(n as i64)
                ),
                None => format!(
                    r#"<span class="value withheld" data-value="">fewer than {}</span>"#,
                    v.k()
                ),
            };
            body.push_str(&format!(
                r#"<dl class="headline now"><div class="metric" data-metric="visitors_now"><dt>Visitors in the last 5 minutes</dt><dd>{shown}</dd></div></dl>"#
            ));
        }
        Err(e) => body.push_str(&failed(e)),
    }
    match &rows {
        Ok(r) => {
            let sum = |c: &str| {
                r.rows
                    .iter()
                    .map(|x| number(Some(x), c).unwrap_or(0.0))
                    .sum::<f64>()
            };
            body.push_str(r#"<dl class="headline">"#);
            for (column, label) in [
                ("pageviews", "Page views"),
                ("events", "Events"),
                ("crashes", "Crashes"),
            ] {
                let total = sum(column);
                body.push_str(&format!(
                    r#"<div class="metric" data-metric="{column}"><dt>{label}</dt><dd><span class="value" data-value="{total}">{}</span></dd></div>"#,
                    html::int(total as i64)
                ));
            }
            body.push_str("</dl>");
            let minutes: Vec<String> = (0..30)
                .rev()
                .map(|i| {
                    (now - chrono::Duration::minutes(i))
                        .format("%Y-%m-%dT%H:%M")
                        .to_string()
                })
                .collect();
            let labels: Vec<String> = minutes.iter().map(|m| m[11..].to_owned()).collect();
            body.push_str(r#"<section class="card wide" aria-labelledby="h-minutes"><h2 id="h-minutes">Minute by minute (UTC)</h2>"#);
            body.push_str(&chart(
                "Visitors and page views per minute",
                &r.rows,
                ("minute", &minutes, &labels),
                &[("visitors", "visitors"), ("pageviews", "page views")],
            ));
            body.push_str(&html::suppressed(r.suppressed, v.k()));
            body.push_str("</section>");
        }
        Err(e) => body.push_str(&failed(e)),
    }
    body.push_str(r#"<div class="grid">"#);
    body.push_str(&card(
        &v,
        &view,
        "realtime_pages",
        "Pages now (last 5 minutes)",
        &pages,
    ));
    body.push_str(&card(
        &v,
        &view,
        "realtime_sources",
        "Sources now (last 5 minutes)",
        &sources,
    ));
    body.push_str("</div>");
    let mut frame = v.frame("Realtime", Nav::Realtime);
    frame.head = r#"<meta http-equiv="refresh" content="30">"#;
    html(StatusCode::OK, html::page(&frame, &body))
}
