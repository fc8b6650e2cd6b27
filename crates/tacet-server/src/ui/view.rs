//! What a page shows: its range and filters, the reports behind it (through the API's own
//! `run_report`), and the charts and controls drawn from them.

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value};
use tacet_query::format::{Format, encode};
use tacet_query::{FILTERS, ReportParams};

use super::html::{self, esc};
use super::respond::*;
use crate::AppState;
use crate::error::ApiError;
use crate::tenants::TenantEntry;

/// The range and filters of a page, from its query string (the same names as the report parameters).
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub(crate) from: NaiveDate,
    pub(crate) to: NaiveDate,
    pub(crate) filters: BTreeMap<&'static str, String>,
    pub(crate) error: Option<String>,
    /// Page parameters that are not report parameters (the crash list's `state`): kept by every link and
    /// the filter form.
    pub(crate) keep: Vec<(&'static str, String)>,
}

impl View {
    pub(crate) fn parse(q: &HashMap<String, String>, today: NaiveDate) -> Self {
        let given: BTreeMap<String, String> = q
            .iter()
            .filter(|(k, v)| {
                (k.as_str() == "from" || k.as_str() == "to" || FILTERS.iter().any(|(f, _)| f == k))
                    && !v.trim().is_empty()
            })
            .map(|(k, v)| (k.clone(), v.trim().to_owned()))
            .collect();
        match ReportParams::parse(&given, today) {
            Ok(p) => View {
                from: p.from,
                to: p.to,
                filters: p.filters,
                error: None,
                keep: Vec::new(),
            },
            Err(e) => {
                let p = ReportParams::parse(&BTreeMap::new(), today).expect("the defaults parse");
                View {
                    from: p.from,
                    to: p.to,
                    filters: BTreeMap::new(),
                    error: Some(format!(
                        "{e}; showing the last 30 days without filters instead"
                    )),
                    keep: Vec::new(),
                }
            }
        }
    }

    pub(crate) fn days(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }

    /// Every day of the range, `2026-11-29`.
    pub(crate) fn day_keys(&self) -> Vec<String> {
        self.from
            .iter_days()
            .take_while(|d| *d <= self.to)
            .map(|d| d.to_string())
            .collect()
    }

    /// The report parameters of this view.
    pub(crate) fn params(&self) -> BTreeMap<String, String> {
        let mut p: BTreeMap<String, String> = self
            .filters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        p.insert("from".into(), self.from.to_string());
        p.insert("to".into(), self.to.to_string());
        p
    }

    /// The previous period of the same length.
    pub(crate) fn previous(&self) -> BTreeMap<String, String> {
        let mut p = self.params();
        let to = self.from - chrono::Days::new(1);
        let from = to - chrono::Days::new(self.days() as u64 - 1);
        p.insert("from".into(), from.to_string());
        p.insert("to".into(), to.to_string());
        p
    }

    /// The range, filters and kept parameters as hidden form fields, but those named in `except`: for a
    /// form that changes one parameter and keeps the rest.
    pub(crate) fn hidden_inputs(&self, except: &[&str]) -> String {
        let mut p = self.params();
        for (k, v) in &self.keep {
            p.insert((*k).to_owned(), v.clone());
        }
        p.iter()
            .filter(|(k, _)| !except.contains(&k.as_str()))
            .map(|(k, v)| {
                format!(
                    r#"<input type="hidden" name="{}" value="{}">"#,
                    esc(k),
                    esc(v)
                )
            })
            .collect()
    }

    /// This view's query string with some parameters set (`Some`) or removed (`None`).
    pub(crate) fn href(&self, path: &str, change: &[(&str, Option<&str>)]) -> String {
        let mut p = self.params();
        for (k, v) in change {
            match v {
                Some(v) => p.insert((*k).to_owned(), (*v).to_owned()),
                None => p.remove(*k),
            };
        }
        for (k, v) in &self.keep {
            if !change.iter().any(|(c, _)| c == k) {
                p.insert((*k).to_owned(), v.clone());
            }
        }
        let pairs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        format!("{path}?{}", query_string(&pairs))
    }
}

/// A report's answer as the JSON API gives it.
#[derive(Debug)]
pub(crate) struct Rows {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Map<String, Value>>,
    pub(crate) suppressed: usize,
}

pub(crate) async fn report(
    state: &AppState,
    tenant: &TenantEntry,
    name: &str,
    params: BTreeMap<String, String>,
) -> Result<Rows, ApiError> {
    let out = crate::routes::run_report(state, tenant, name, params).await?;
    let bytes = encode(Format::Json, &out.schema, &out.batches).map_err(ApiError::internal)?;
    let rows: Vec<Map<String, Value>> =
        serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
    Ok(Rows {
        columns: out
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        rows,
        suppressed: out.suppressed,
    })
}

pub(crate) fn with(
    mut p: BTreeMap<String, String>,
    extra: &[(&str, &str)],
) -> BTreeMap<String, String> {
    for (k, v) in extra {
        p.insert((*k).to_owned(), (*v).to_owned());
    }
    p
}

pub(crate) fn failed(e: &ApiError) -> String {
    format!(
        r#"<p class="error" role="alert">This report failed: {}</p>"#,
        esc(&e.message)
    )
}

pub(crate) fn number(row: Option<&Map<String, Value>>, column: &str) -> Option<f64> {
    row.and_then(|r| r.get(column)).and_then(Value::as_f64)
}

/// The filter a column of a report's rows sets when its value is clicked (the same names).
pub(crate) fn filter_of(column: &str) -> Option<&'static str> {
    match column {
        // A goal is a custom event: its filter keeps the visitors who did it.
        "goal" => Some("event"),
        column => FILTERS.iter().map(|(f, _)| *f).find(|f| *f == column),
    }
}

/// Now in the tenant's time zone (reports' days, hours and minutes are local).
pub(crate) fn local_now(state: &AppState, tenant: &TenantEntry) -> chrono::DateTime<chrono_tz::Tz> {
    let zone = tenant.policy.timezone.unwrap_or(chrono_tz::UTC);
    state.pipeline.clock().now().with_timezone(&zone)
}

/// A report's timestamp (`2026-11-29T11:04:05.123+01:00` in the tenant's zone, or without an offset: UTC).
pub(crate) fn parse_time(s: &str) -> Option<chrono::DateTime<Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let s = s.trim_end_matches('Z');
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// A bar chart of report rows: each series (column, legend) aligned to the buckets (`key` column, `keys`,
/// their `labels`) by [`aligned`].
pub(crate) fn chart(
    title: &str,
    rows: &[Map<String, Value>],
    (key, keys, labels): (&str, &[String], &[String]),
    series: &[(&str, &str)],
) -> String {
    let columns: Vec<&str> = series.iter().map(|(c, _)| *c).collect();
    let values = aligned(rows, key, keys, &columns);
    let named: Vec<(&str, Vec<f64>)> = series.iter().map(|(_, l)| *l).zip(values).collect();
    html::bars(title, labels, &named)
}

/// Each of `columns` at every one of `keys`, zero where no row has it. A row is matched by the first
/// characters of its `key` column, as many as the keys have: a day `2026-11-29`, an hour `2026-11-29T10`,
/// a minute `2026-11-29T10:04` (the JSON answer's timestamps are `2026-11-29T10:04:05…`).
pub(crate) fn aligned(
    rows: &[Map<String, Value>],
    key: &str,
    keys: &[String],
    columns: &[&str],
) -> Vec<Vec<f64>> {
    let len = keys.first().map_or(0, String::len);
    let by: HashMap<&str, &Map<String, Value>> = rows
        .iter()
        .filter_map(|r| Some((r.get(key)?.as_str()?.get(..len)?, r)))
        .collect();
    columns
        .iter()
        .map(|c| {
            keys.iter()
                .map(|k| {
                    by.get(k.as_str())
                        .and_then(|r| number(Some(r), c))
                        .unwrap_or(0.0)
                })
                .collect()
        })
        .collect()
}

/// The filters the form has a field for: name, label, and the choices of a select (else a text field).
pub(crate) const FORM_FILTERS: &[(&str, &str, Option<&[&str]>)] = &[
    ("page", "Page", None),
    (
        "referrer_class",
        "Referrer class",
        Some(&tacet_privacy::REFERRER_CLASSES),
    ),
    ("browser", "Browser", None),
    ("os", "Operating system", None),
    ("device", "Device", Some(&tacet_privacy::DEVICES)),
    ("country", "Country", None),
    ("source", "Source", None),
    ("host", "Referrer host", None),
    ("utm_source", "UTM source", None),
    ("release", "Release", None),
];

/// The range picker and the filter form, with the active filters as removable chips.
pub(crate) fn controls(view: &View, path: &str, today: NaiveDate) -> String {
    let mut out = String::new();
    if let Some(e) = &view.error {
        out.push_str(&format!(r#"<p class="error" role="alert">{}</p>"#, esc(e)));
    }
    out.push_str(r#"<nav class="presets" aria-label="Date range">"#);
    let day = |n: u64| (today - chrono::Days::new(n)).to_string();
    let month_start = today.with_day(1).unwrap_or(today).to_string();
    for (label, from, to) in [
        ("Today", today.to_string(), today.to_string()),
        ("Yesterday", day(1), day(1)),
        ("Last 7 days", day(6), today.to_string()),
        ("Last 30 days", day(29), today.to_string()),
        ("This month", month_start, today.to_string()),
        ("Last 90 days", day(89), today.to_string()),
    ] {
        let current = view.from.to_string() == from && view.to.to_string() == to;
        out.push_str(&format!(
            r#"<a href="{}"{}>{label}</a>"#,
            esc(&view.href(path, &[("from", Some(&from)), ("to", Some(&to))])),
            if current {
                r#" aria-current="true""#
            } else {
                ""
            }
        ));
    }
    out.push_str("</nav>");
    out.push_str(&format!(
        r#"<form method="get" action="{path}" class="controls">
<div><label for="from">From</label><input type="date" id="from" name="from" value="{}"></div>
<div><label for="to">To</label><input type="date" id="to" name="to" value="{}"></div>"#,
        view.from, view.to
    ));
    let value = |f: &str| view.filters.get(f).map(String::as_str).unwrap_or_default();
    let text = |name: &str, label: &str| {
        format!(
            r#"<div><label for="f-{name}">{label}</label><input id="f-{name}" name="{name}" value="{}"></div>"#,
            esc(value(name))
        )
    };
    let select = |name: &str, label: &str, options: &[&str]| {
        let mut s = format!(
            r#"<div><label for="f-{name}">{label}</label><select id="f-{name}" name="{name}"><option value="">any</option>"#
        );
        for o in options {
            s.push_str(&format!(
                r#"<option{}>{o}</option>"#,
                if value(name) == *o { " selected" } else { "" }
            ));
        }
        s.push_str("</select></div>");
        s
    };
    for (name, label, options) in FORM_FILTERS {
        out.push_str(&match options {
            Some(options) => select(name, label, options),
            None => text(name, label),
        });
    }
    for (k, v) in &view.keep {
        out.push_str(&format!(
            r#"<input type="hidden" name="{k}" value="{}">"#,
            esc(v)
        ));
    }
    // Filters the form has no field for travel along unchanged.
    for (f, v) in &view.filters {
        if !FORM_FILTERS.iter().any(|(name, _, _)| name == f) {
            out.push_str(&format!(
                r#"<input type="hidden" name="{f}" value="{}">"#,
                esc(v)
            ));
        }
    }
    out.push_str(r#"<div><button type="submit">Apply</button></div></form>"#);
    if !view.filters.is_empty() {
        out.push_str(r#"<p class="chips" aria-label="Active filters">Filtered by "#);
        for (f, v) in &view.filters {
            out.push_str(&format!(
                r#"<a class="chip" data-filter="{f}" href="{}" aria-label="Remove the filter {f} = {v}">{f}: {v} <span aria-hidden="true">×</span></a> "#,
                esc(&view.href(path, &[(f, None)])),
                f = esc(f),
                v = esc(v),
            ));
        }
        out.push_str("</p>");
    }
    out
}
