//! Goals and funnels: `/ui/goals` (every custom event as a goal, with the share of visitors who reached it)
//! and `/ui/funnels` (steps defined in the page, visitors at each step in order, and the drop-off between
//! them). Both are the `goals` and `funnel` reports, with the page's range and filters.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::Value;

use super::dashboard::Viewer;
use super::html::{self, Nav, esc};
use super::usage::card;
use super::view::*;
use crate::AppState;

/// `GET /ui/export/<report>.csv?…`: a card's report as CSV, with the page's range and filters: the same call
/// and the same k as the card (the session's key is a reports key at least).
pub(crate) async fn export(
    v: Viewer,
    State(state): State<AppState>,
    axum::extract::Path(file): axum::extract::Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    use axum::response::IntoResponse;
    let Some(name) = file.strip_suffix(".csv") else {
        return crate::error::ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "exports are /ui/export/<report>.csv",
        )
        .into_response();
    };
    let today = local_now(&state, &v.tenant).date_naive();
    let view = View::parse(&q, today);
    let mut params = view.params();
    for key in ["limit", "steps", "prop", "interval"] {
        if let Some(value) = q.get(key) {
            params.insert(key.to_owned(), value.clone());
        }
    }
    let out = match crate::routes::run_report(&state, &v.tenant, name, params).await {
        Ok(out) => out,
        Err(e) => return e.into_response(),
    };
    match tacet_query::format::encode(tacet_query::format::Format::Csv, &out.schema, &out.batches) {
        Ok(bytes) => (
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    "text/csv; charset=utf-8".to_owned(),
                ),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"{}-{name}-{}-{}.csv\"",
                        v.tenant.id.as_str(),
                        view.from,
                        view.to
                    ),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => crate::error::ApiError::internal(e).into_response(),
    }
}

pub(crate) async fn goals(
    v: Viewer,
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let today = local_now(&state, &v.tenant).date_naive();
    let view = View::parse(&q, today);
    let rows = report(
        &state,
        &v.tenant,
        "goals",
        with(view.params(), &[("limit", "100")]),
    )
    .await;
    let mut body = controls(&view, "/ui/goals", today);
    body.push_str(&format!(
        r#"<p class="range">{} to {}: every custom event is a goal; its conversion rate is the share of the range's visitors who did it. Click a goal to see those visitors' pages, sources and devices.</p>"#,
        view.from, view.to
    ));
    body.push_str(r#"<div class="grid">"#);
    body.push_str(&card(&v, &view, "goals", "Goals", &rows));
    body.push_str("</div>");
    v.page("Goals", Nav::Goals, &body)
}

pub(crate) async fn funnels(
    v: Viewer,
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let today = local_now(&state, &v.tenant).date_naive();
    let mut view = View::parse(&q, today);
    let steps = q
        .get("steps")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    if !steps.is_empty() {
        view.keep.push(("steps", steps.clone()));
    }
    let mut body = controls(&view, "/ui/funnels", today);
    body.push_str(&format!(
        r#"<form method="get" action="/ui/funnels" class="controls"><div><label for="steps">Steps, in order, comma-separated: <code>page:/path</code> or <code>event:name</code></label><input id="steps" name="steps" size="48" value="{}" placeholder="page:/,page:/pricing,event:signup" required></div><input type="hidden" name="from" value="{}"><input type="hidden" name="to" value="{}"><div><button type="submit">Show the funnel</button></div></form>"#,
        esc(&steps),
        view.from,
        view.to
    ));
    if steps.is_empty() {
        body.push_str(r#"<p class="hint">Give 2 to 8 steps: each counts the visitors who reached it after the step before, on the same day.</p>"#);
        return v.page("Funnels", Nav::Funnels, &body);
    }
    let rows = report(
        &state,
        &v.tenant,
        "funnel",
        with(view.params(), &[("steps", &steps)]),
    )
    .await;
    match &rows {
        Ok(r) => {
            body.push_str(r#"<section class="card wide" aria-labelledby="h-funnel"><h2 id="h-funnel">Funnel</h2><div class="scroll"><table aria-labelledby="h-funnel"><thead><tr><th scope="col">Step</th><th scope="col" class="num">Visitors</th><th scope="col" class="num">Conversion</th><th scope="col" class="num">Dropped since the step before</th></tr></thead><tbody>"#);
            let mut before: Option<f64> = None;
            for row in &r.rows {
                let n = number(Some(row), "visitors").unwrap_or(0.0);
                let conversion = number(Some(row), "conversion")
                    .map_or("—".to_owned(), |c| format!("{:.1} %", 100.0 * c));
                let dropped =
                    before.map_or("—".to_owned(), |b| html::int((b - n).max(0.0) as i64));
                body.push_str(&format!(
                    r#"<tr data-step="{step}"><td>{step}. <code>{name}</code></td><td class="num" data-col="visitors" data-value="{n}">{shown}</td><td class="num">{conversion}</td><td class="num" data-col="dropped">{dropped}</td></tr>"#,
                    step = row.get("step").map(html::raw).unwrap_or_default(),
                    name = esc(row.get("name").and_then(Value::as_str).unwrap_or_default()),
                    shown = html::int(n as i64),
                ));
                before = Some(n);
            }
            if r.rows.is_empty() {
                body.push_str(r#"<tr><td colspan="4" class="empty">No visitor reached the first step in this range.</td></tr>"#);
            }
            body.push_str("</tbody></table></div>");
            body.push_str(&html::suppressed(r.suppressed, v.k()));
            body.push_str("</section>");
        }
        Err(e) => body.push_str(&failed(e)),
    }
    v.page("Funnels", Nav::Funnels, &body)
}
