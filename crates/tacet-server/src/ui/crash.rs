//! Crash triage: the groups with sparklines and states (`/ui/crashes`), one group's trend, message,
//! stack and releases (`/ui/crashes/{fp}`), and its triage marks.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};

use super::dashboard::Viewer;
use super::html::{self, Nav, esc};
use super::respond::*;
use super::triage::{self, GroupState};
use super::view::*;
use crate::AppState;
use crate::error::ApiError;

/// A group's state as shown: a resolved group that crashed again after it was marked is open again; one
/// resolved in a release only when a crash came from a later release (`releases`, comma-separated, as the
/// crash reports list them).
pub(crate) fn shown_state(
    marks: &triage::Marks,
    fingerprint: &str,
    last_seen: Option<&str>,
    releases: Option<&str>,
) -> (&'static str, GroupState) {
    match marks.get(fingerprint) {
        Some(m) if m.state == GroupState::Resolved => {
            let after = last_seen
                .and_then(parse_time)
                .is_some_and(|t| m.at().is_none_or(|at| t > at));
            let regressed = match &m.release {
                None => after,
                Some(fixed) => {
                    after
                        && releases.is_some_and(|rs| {
                            rs.split(',')
                                .any(|r| triage::later_release(r.trim(), fixed))
                        })
                }
            };
            if regressed {
                ("regressed", GroupState::Open)
            } else {
                ("resolved", GroupState::Resolved)
            }
        }
        Some(m) => (m.state.as_str(), m.state),
        None => ("open", GroupState::Open),
    }
}

/// Frames whose source is shown, from the top.
const CONTEXT_FRAMES: usize = 3;

/// The original source around the example's top frames, from its release's source maps, scrubbed by the
/// tenant's rules (source code can hold secrets): `<figure>`s, or nothing without maps.
async fn source_context(
    state: &AppState,
    tenant: &crate::tenants::TenantEntry,
    row: &serde_json::Map<String, Value>,
) -> String {
    let (Some(stack), Some(release)) = (
        row.get("example_stack").and_then(Value::as_str),
        row.get("example_release").and_then(Value::as_str),
    ) else {
        return String::new();
    };
    let scrubber = tacet_privacy::Scrubber::for_policy(&tenant.policy);
    let mut out = String::new();
    for frame in stack.lines().take(CONTEXT_FRAMES) {
        let Some(f) = tacet_ingest::parse_frame(frame) else {
            continue;
        };
        let Ok(Some(lines)) = state
            .pipeline
            .sourcemaps()
            .context(&tenant.id, release, f.url, f.line, 3)
            .await
        else {
            continue;
        };
        let width = lines.last().map_or(1, |(n, _)| n.to_string().len());
        let text: Vec<String> = lines
            .iter()
            .map(|(n, t)| {
                let t = scrubber.text(t, &mut tacet_privacy::Tally::default());
                let mark = if *n == f.line { '>' } else { ' ' };
                format!("{mark} {n:>width$} | {t}")
            })
            .collect();
        out.push_str(&format!(
            r#"<figure class="context"><figcaption><code>{}</code></figcaption><pre>{}</pre></figure>"#,
            esc(frame.trim()),
            esc(&text.join("\n"))
        ));
    }
    if out.is_empty() {
        return out;
    }
    format!(
        r#"<h2 id="h-context">Source (release {}, from its source maps; scrubbed)</h2>{out}"#,
        esc(release)
    )
}

/// The example's stack symbolicated now, when it was stored minified (the crash came before its release's
/// source map) and a map now explains some of its frames; scrubbed as at ingest.
async fn symbolicated_now(
    state: &AppState,
    tenant: &crate::tenants::TenantEntry,
    row: &serde_json::Map<String, Value>,
) -> Option<String> {
    let stack = row.get("example_stack").and_then(Value::as_str)?;
    let release = row.get("example_release").and_then(Value::as_str)?;
    let mut frames: Vec<String> = stack.lines().map(str::to_owned).collect();
    let rewritten = state
        .pipeline
        .sourcemaps()
        .symbolicate_frames(&tenant.id, release, &mut frames)
        .await;
    if rewritten == 0 {
        return None;
    }
    let scrubber = tacet_privacy::Scrubber::for_policy(&tenant.policy);
    let frames: Vec<String> = frames
        .iter()
        .map(|f| scrubber.text(f, &mut tacet_privacy::Tally::default()))
        .collect();
    Some(format!(
        r#"<h2 id="h-symbolicated">Stack symbolicated now (stored minified: it came before release {}'s source map; scrubbed)</h2><pre id="symbolicated">{}</pre>"#,
        esc(release),
        esc(&frames.join("\n"))
    ))
}

/// Sparklines drawn per page at most (each is a `crash_trend` report).
pub(crate) const SPARKLINES: usize = 25;

pub(crate) async fn crashes(
    v: Viewer,
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let today = local_now(&state, &v.tenant).date_naive();
    let mut view = View::parse(&q, today);
    let wanted = q.get("state").map(String::as_str).unwrap_or("open");
    let wanted = match wanted {
        "all" => None,
        s => match GroupState::parse(s) {
            Some(s) => Some(s),
            None => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "Crashes",
                    &format!("state {wanted:?} is not one of open, resolved, ignored, all"),
                    Some(v.who()),
                );
            }
        },
    };
    // The tab stays chosen when the range or a filter changes.
    view.keep
        .push(("state", wanted.map_or("all", GroupState::as_str).to_owned()));
    // `q`: the groups whose error type, message or fingerprint contain this text (any case).
    let text = q.get("q").map(|t| t.trim()).unwrap_or_default().to_owned();
    if !text.is_empty() {
        view.keep.push(("q", text.clone()));
    }
    let needle = text.to_lowercase();
    let matches = |r: &Map<String, Value>| {
        needle.is_empty()
            || ["error_type", "example_message", "fingerprint"]
                .iter()
                .any(|c| {
                    r.get(*c)
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.to_lowercase().contains(&needle))
                })
    };
    let marks = match v.dash.triage.marks(&v.tenant.id) {
        Ok(m) => m,
        Err(e) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Crashes",
                &ApiError::internal(e).message,
                Some(v.who()),
            );
        }
    };
    let groups = report(
        &state,
        &v.tenant,
        "crash_groups",
        with(view.params(), &[("limit", "500")]),
    )
    .await;
    let mut body = controls(&view, "/ui/crashes", today);
    let groups = match groups {
        Ok(g) => g,
        Err(e) => {
            body.push_str(&failed(&e));
            return v.page("Crashes", Nav::Crashes, &body);
        }
    };
    let found: Vec<&Map<String, Value>> = groups.rows.iter().filter(|r| matches(r)).collect();
    let states: Vec<(&'static str, GroupState)> = found
        .iter()
        .map(|r| {
            shown_state(
                &marks,
                r.get("fingerprint")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                r.get("last_seen").and_then(Value::as_str),
                r.get("releases").and_then(Value::as_str),
            )
        })
        .collect();
    // Tabs by state, with counts.
    body.push_str(r#"<nav class="tabs" aria-label="Triage state">"#);
    for (label, key, filter) in [
        ("Open", "open", Some(GroupState::Open)),
        ("Resolved", "resolved", Some(GroupState::Resolved)),
        ("Ignored", "ignored", Some(GroupState::Ignored)),
        ("All", "all", None),
    ] {
        let n = states
            .iter()
            .filter(|(_, s)| filter.is_none_or(|f| f == *s))
            .count();
        let href = view.href("/ui/crashes", &[("state", Some(key))]);
        body.push_str(&format!(
            r#"<a href="{}"{}>{label} <span class="count">{n}</span></a>"#,
            esc(&href),
            if filter == wanted {
                r#" aria-current="page""#
            } else {
                ""
            }
        ));
    }
    body.push_str("</nav>");
    body.push_str(&format!(
        r#"<form method="get" action="/ui/crashes" class="controls search" role="search"><div><label for="q">Find a group: error type, message or fingerprint</label><input id="q" name="q" type="search" value="{}"></div>{}<div><button type="submit">Find</button></div></form>"#,
        esc(&text),
        view.hidden_inputs(&["q"]),
    ));
    let shown: Vec<(&Map<String, Value>, &'static str)> = found
        .iter()
        .copied()
        .zip(&states)
        .filter(|(_, (_, s))| wanted.is_none_or(|w| w == *s))
        .map(|(r, (label, _))| (r, *label))
        .collect();
    let trends = futures::future::join_all(shown.iter().take(SPARKLINES).map(|(r, _)| {
        let fp = r
            .get("fingerprint")
            .and_then(Value::as_str)
            .unwrap_or_default();
        report(
            &state,
            &v.tenant,
            "crash_trend",
            with(view.params(), &[("fingerprint", fp)]),
        )
    }))
    .await;
    body.push_str(&format!(
        r#"<section class="card wide" aria-labelledby="h-groups"><h2 id="h-groups">Crash groups, most crashes first (<span class="nowrap">{}</span> to <span class="nowrap">{}</span>)</h2><div class="scroll"><table aria-labelledby="h-groups"><thead><tr>
<th scope="col">Group</th><th scope="col">Trend</th><th scope="col" class="num">Crashes</th><th scope="col" class="num">Affected visitors</th><th scope="col">First seen</th><th scope="col">Last seen</th><th scope="col">Releases</th><th scope="col">State</th></tr></thead><tbody>"#,
        view.from, view.to
    ));
    if shown.is_empty() {
        body.push_str(if text.is_empty() {
            r#"<tr><td colspan="8" class="empty">No crash groups in this state for this range.</td></tr>"#
        } else {
            r#"<tr><td colspan="8" class="empty">No crash group in this state and range matches that text.</td></tr>"#
        });
    }
    for (i, (r, label)) in shown.iter().enumerate() {
        let s = |c: &str| r.get(c).map(|x| html::cell(c, x)).unwrap_or_default();
        let fp = r
            .get("fingerprint")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let spark = match trends.get(i) {
            Some(Ok(t)) => {
                let counts = aligned(&t.rows, "day", &view.day_keys(), &["crashes"]);
                html::sparkline(&format!("crashes per day of group {fp}"), &counts[0])
            }
            Some(Err(_)) => "(failed)".to_owned(),
            None => String::new(),
        };
        body.push_str(&format!(
            r#"<tr data-fingerprint="{fp}"><td class="group"><a href="{href}"><strong>{ty}</strong></a><br><span class="message">{msg}</span></td><td>{spark}</td><td class="num" data-col="crashes" data-value="{cr}">{crs}</td><td class="num" data-col="visitors" data-value="{vi}">{vis}</td><td class="when">{first}</td><td class="when">{last}</td><td>{rel}</td><td><span class="state {label}">{label}</span></td></tr>"#,
            fp = esc(fp),
            href = esc(&view.href(&format!("/ui/crashes/{fp}"), &[])),
            ty = esc(&s("error_type")),
            msg = esc(&s("example_message")),
            cr = esc(&r.get("crashes").map(html::raw).unwrap_or_default()),
            crs = esc(&s("crashes")),
            vi = esc(&r.get("visitors").map(html::raw).unwrap_or_default()),
            vis = esc(&s("visitors")),
            first = esc(&s("first_seen")),
            last = esc(&s("last_seen")),
            rel = esc(&s("releases")),
        ));
    }
    body.push_str("</tbody></table></div>");
    body.push_str(&html::suppressed(groups.suppressed, v.k_crashes()));
    body.push_str("</section>");
    v.page("Crashes", Nav::Crashes, &body)
}

pub(crate) async fn crash_group(
    v: Viewer,
    State(state): State<AppState>,
    Path(fp): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !triage::valid_fingerprint(&fp) {
        return problem(
            StatusCode::NOT_FOUND,
            "No such crash group",
            "A crash group's address ends in its fingerprint, 16 hexadecimal characters; open it from the crash list.",
            Some(v.who()),
        );
    }
    let today = local_now(&state, &v.tenant).date_naive();
    let view = View::parse(&q, today);
    let p = with(view.params(), &[("fingerprint", &fp)]);
    let per_release = with(p.clone(), &[("limit", "200")]);
    let (group, trend, (releases, health), breakdown, occurrences) = tokio::join!(
        report(&state, &v.tenant, "crash_group", p.clone()),
        report(&state, &v.tenant, "crash_trend", p.clone()),
        async {
            tokio::join!(
                report(&state, &v.tenant, "crash_releases", per_release),
                report(
                    &state,
                    &v.tenant,
                    "release_health",
                    with(view.params(), &[("limit", "1000")])
                ),
            )
        },
        report(
            &state,
            &v.tenant,
            "crash_breakdown",
            with(p.clone(), &[("limit", "200")])
        ),
        report(
            &state,
            &v.tenant,
            "crash_occurrences",
            with(p, &[("limit", "20")])
        ),
    );
    let marks = v.dash.triage.marks(&v.tenant.id).unwrap_or_default();
    let context = match &group {
        Ok(g) => match g.rows.first() {
            Some(r) => {
                let now = symbolicated_now(&state, &v.tenant, r).await;
                now.unwrap_or_default() + &source_context(&state, &v.tenant, r).await
            }
            None => String::new(),
        },
        Err(_) => String::new(),
    };
    let mut body = controls(&view, &format!("/ui/crashes/{fp}"), today);
    body.push_str(&format!(
        r#"<p><a href="{}">← All crash groups</a></p>"#,
        esc(&view.href("/ui/crashes", &[]))
    ));
    let title = match &group {
        Ok(g) => match g.rows.first() {
            Some(r) => {
                let s = |c: &str| r.get(c).map(|x| html::cell(c, x)).unwrap_or_default();
                let (label, _) = shown_state(
                    &marks,
                    &fp,
                    r.get("last_seen").and_then(Value::as_str),
                    r.get("releases").and_then(Value::as_str),
                );
                body.push_str(&format!(
                    r#"<dl class="facts" data-fingerprint="{fp}">
<div><dt>Fingerprint</dt><dd><code>{fp}</code></dd></div>
<div><dt>Crashes</dt><dd data-col="crashes" data-value="{cr}">{crs}</dd></div>
<div><dt>Affected visitors</dt><dd data-col="visitors" data-value="{vi}">{vis}</dd></div>
<div><dt>First seen</dt><dd>{first}</dd></div>
<div><dt>Last seen</dt><dd>{last}</dd></div>
<div><dt>Releases</dt><dd>{rel}</dd></div>
<div><dt>State</dt><dd><span class="state {label}" id="state">{label}</span></dd></div>
</dl>"#,
                    cr = esc(&r.get("crashes").map(html::raw).unwrap_or_default()),
                    crs = esc(&s("crashes")),
                    vi = esc(&r.get("visitors").map(html::raw).unwrap_or_default()),
                    vis = esc(&s("visitors")),
                    first = esc(&s("first_seen")),
                    last = esc(&s("last_seen")),
                    rel = esc(&s("releases")),
                ));
                let back = view.href(&format!("/ui/crashes/{fp}"), &[]);
                // A shared dashboard is read-only: no forms.
                let forms_from = body.len();
                body.push_str(&format!(
                    r#"<form method="post" action="/ui/crashes/{fp}" class="triage"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="back" value="{back}">"#,
                    csrf = esc(&v.session.csrf),
                    back = esc(&back),
                ));
                for (value, text) in [
                    ("resolved", "Mark resolved"),
                    ("ignored", "Ignore"),
                    ("open", "Reopen"),
                ] {
                    if value != label {
                        body.push_str(&format!(
                            r#"<button type="submit" name="state" value="{value}">{text}</button> "#
                        ));
                    }
                }
                body.push_str("</form>");
                if label != "resolved" {
                    // Resolved in a release: only crashes from later releases reopen it.
                    body.push_str(&format!(
                        r#"<form method="post" action="/ui/crashes/{fp}" class="triage"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="back" value="{back}"><input type="hidden" name="state" value="resolved"><label for="release">Resolved in release</label> <input id="release" name="release" placeholder="2.1.0" required> <button type="submit">Mark resolved in this release</button></form>"#,
                        csrf = esc(&v.session.csrf),
                        back = esc(&back),
                    ));
                }
                if v.shared {
                    body.truncate(forms_from);
                }
                if let Some(m) = marks.get(&fp).filter(|m| m.release.is_some()) {
                    body.push_str(&format!(
                        r#"<p class="hint" id="resolved-in">Resolved in release {} ({}): crashes from later releases reopen it.</p>"#,
                        esc(m.release.as_deref().unwrap_or_default()),
                        esc(&m.at)
                    ));
                }
                body.push_str(&format!(
                    r#"<section class="card wide" aria-labelledby="h-message"><h2 id="h-message">Message (scrubbed)</h2><pre id="message">{}</pre>
<h2 id="h-stack">Stack (scrubbed, top frame first)</h2><pre id="stack">{}</pre>{}{}</section>"#,
                    esc(&s("example_message")),
                    esc(r.get("example_stack").and_then(Value::as_str).unwrap_or("(no stack was sent)")),
                    context,
                    normalised_stack(r.get("example_stack").and_then(Value::as_str).unwrap_or_default()),
                ));
                s("error_type")
            }
            None if g.suppressed > 0 => {
                body.push_str(&html::suppressed(g.suppressed, v.k_crashes()));
                "Crash group (hidden)".to_owned()
            }
            None => {
                body.push_str(r#"<p class="empty">No crashes of this group in this range; widen the range.</p>"#);
                "Crash group".to_owned()
            }
        },
        Err(e) => {
            body.push_str(&failed(e));
            "Crash group".to_owned()
        }
    };
    body.push_str(r#"<section class="card wide" aria-labelledby="h-trend"><h2 id="h-trend">Crashes per day</h2>"#);
    match &trend {
        Ok(t) => {
            let days = view.day_keys();
            body.push_str(&chart(
                "Crashes and affected visitors per day",
                &t.rows,
                ("day", &days, &days),
                &[("crashes", "crashes"), ("visitors", "affected visitors")],
            ));
        }
        Err(e) => body.push_str(&failed(e)),
    }
    // Where it happens: the group by release, browser, operating system and page.
    match &breakdown {
        Ok(b) => {
            body.push_str(r#"</section><div class="grid" id="breakdown">"#);
            for (dimension, title) in [
                ("release", "Releases"),
                ("browser", "Browsers"),
                ("os", "Operating systems"),
                ("page", "Pages"),
            ] {
                let rows: Vec<serde_json::Map<String, Value>> = b
                    .rows
                    .iter()
                    .filter(|r| r.get("dimension").and_then(Value::as_str) == Some(dimension))
                    .take(10)
                    .map(|r| {
                        let mut r = r.clone();
                        r.remove("dimension");
                        r
                    })
                    .collect();
                let id = format!("h-by-{dimension}");
                body.push_str(&format!(
                    r#"<section class="card" data-breakdown="{dimension}" aria-labelledby="{id}"><h2 id="{id}">{title}</h2>"#
                ));
                let columns = vec![
                    "value".to_owned(),
                    "crashes".to_owned(),
                    "visitors".to_owned(),
                ];
                body.push_str(&html::table(&id, &columns, &rows, &|_, _| None));
                body.push_str("</section>");
            }
            body.push_str("</div>");
            body.push_str(&html::suppressed(b.suppressed, v.k_crashes()));
            // The latest crashes, one row each (no identifier is in the report).
            body.push_str(r#"<section class="card wide" id="occurrences" aria-labelledby="h-occurrences"><h2 id="h-occurrences">Latest crashes</h2>"#);
            match &occurrences {
                Ok(o) => {
                    let columns: Vec<String> = o
                        .columns
                        .iter()
                        .filter(|c| *c != "visitors")
                        .cloned()
                        .collect();
                    body.push_str(&html::table("h-occurrences", &columns, &o.rows, &|_, _| {
                        None
                    }));
                    body.push_str(&html::suppressed(o.suppressed, v.k_crashes()));
                }
                Err(e) => body.push_str(&failed(e)),
            }
            body.push_str("</section>");
        }
        Err(e) => {
            body.push_str(&failed(e));
            body.push_str("</section>");
        }
    }
    body.push_str(&releases_card(&v, &view, &releases, &health));
    if !v.shared {
        body.push_str(&super::groups::section(&v, &fp, &marks));
    }
    v.page(&title, Nav::Crashes, &body)
}

/// The group release by release (`crash_releases`): when it crashed in each (a timeline over the range) and
/// its own crash-free rate, the visits it spared out of the release's visits (`release_health`, which the
/// usage k-threshold governs: a release with fewer visitors shows no rate), beside all groups' rate.
fn releases_card(
    v: &Viewer,
    view: &View,
    releases: &Result<Rows, ApiError>,
    health: &Result<Rows, ApiError>,
) -> String {
    let mut out = String::from(
        r#"<section class="card wide" id="releases" aria-labelledby="h-releases"><h2 id="h-releases">Releases: when this group crashed, and its crash-free rate</h2>"#,
    );
    let r = match releases {
        Ok(r) => r,
        Err(e) => {
            out.push_str(&failed(e));
            out.push_str("</section>");
            return out;
        }
    };
    let all: HashMap<&str, &Map<String, Value>> = match health {
        Ok(h) => h
            .rows
            .iter()
            .filter_map(|row| Some((row.get("release")?.as_str()?, row)))
            .collect(),
        Err(_) => HashMap::new(),
    };
    let rows: Vec<Map<String, Value>> = r
        .rows
        .iter()
        .map(|row| {
            let mut row = row.clone();
            let of_release = row
                .get("release")
                .and_then(Value::as_str)
                .and_then(|rel| all.get(rel));
            let visits = of_release
                .and_then(|h| h.get("visits"))
                .and_then(Value::as_f64);
            let hit = number(Some(&row), "crashed_visits").unwrap_or(0.0);
            let share = visits
                .filter(|n| *n > 0.0)
                .map(|n| ((1.0 - hit / n) * 10_000.0).round() / 10_000.0);
            row.insert(
                "visits".into(),
                visits.map_or(Value::Null, |n| Value::from(n as i64)),
            );
            row.insert(
                "crash_free_visits".into(),
                share.map_or(Value::Null, Value::from),
            );
            row.insert(
                "crash_free_all".into(),
                of_release
                    .and_then(|h| h.get("crash_free_visits"))
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            row
        })
        .collect();
    out.push_str(&timeline(&rows, view));
    let columns: Vec<String> = [
        "release",
        "first_seen",
        "last_seen",
        "crashes",
        "visitors",
        "crashed_visits",
        "visits",
        "crash_free_visits",
        "crash_free_all",
    ]
    .map(String::from)
    .into();
    out.push_str(&html::table(
        "h-releases",
        &columns,
        &rows,
        &|column, value| {
            let release = value.as_str().filter(|_| column == "release")?;
            Some(view.href("/ui/crashes", &[("release", Some(release))]))
        },
    ));
    out.push_str(&html::suppressed(r.suppressed, v.k_crashes()));
    out.push_str(&format!(
        r#"<p class="hint">Crash-free visits: the share of the release's visits this group did not hit; empty where the release had fewer than {} visitors (the k-threshold) or none in the range.</p></section>"#,
        v.k()
    ));
    out
}

/// Each release's first to last crash of the group as a bar over the range's days (inline SVG).
fn timeline(rows: &[Map<String, Value>], view: &View) -> String {
    let days = view.day_keys();
    if rows.is_empty() || days.is_empty() {
        return String::new();
    }
    const ROW: f64 = 18.0;
    const LABEL: f64 = 90.0;
    const W: f64 = 600.0;
    let per_day = (W - LABEL) / days.len() as f64;
    let day_of = |v: Option<&Value>| {
        let t = v.and_then(Value::as_str).unwrap_or_default();
        let day = t.get(..10).unwrap_or_default();
        days.iter().position(|d| d == day)
    };
    let h = ROW * rows.len() as f64 + 4.0;
    let mut out = format!(
        r#"<svg class="timeline" viewBox="0 0 {W} {h}" role="img" aria-labelledby="timeline-title"><title id="timeline-title">When this group crashed in each release, {} to {}</title>"#,
        view.from, view.to
    );
    for (i, row) in rows.iter().enumerate() {
        let release = row.get("release").and_then(Value::as_str).unwrap_or("?");
        let first = day_of(row.get("first_seen")).unwrap_or(0);
        let last = day_of(row.get("last_seen"))
            .unwrap_or(days.len() - 1)
            .max(first);
        let y = i as f64 * ROW + 2.0;
        out.push_str(&format!(
            r#"<g data-release="{r}"><text x="0" y="{ty:.1}">{r}</text><rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{bh:.1}" rx="3"><title>{r}: {f} to {l}</title></rect></g>"#,
            r = esc(release),
            ty = y + ROW * 0.7,
            x = LABEL + first as f64 * per_day,
            w = ((last - first + 1) as f64 * per_day).max(3.0),
            bh = ROW - 6.0,
            f = esc(&days[first]),
            l = esc(&days[last]),
        ));
    }
    out.push_str("</svg>");
    out
}

/// The stack as the fingerprint sees it: each frame normalised (no host, position, bundle hash or number),
/// the frames it groups by marked, library frames named as such.
pub(crate) fn normalised_stack(stack: &str) -> String {
    use tacet_privacy::fingerprint::{FRAMES, is_in_app, normalise_frame};
    let frames: Vec<&str> = stack.lines().filter(|l| !l.trim().is_empty()).collect();
    if frames.is_empty() {
        return String::new();
    }
    let any_in_app = frames.iter().any(|f| is_in_app(f));
    let mut used = 0;
    let mut out = String::from(
        r#"<h2 id="h-frames">Normalised stack: what groups these crashes</h2><ol id="frames" class="frames">"#,
    );
    for f in frames {
        let in_app = is_in_app(f);
        let grouped = (in_app || !any_in_app) && used < FRAMES;
        used += usize::from(grouped);
        out.push_str(&format!(
            r#"<li class="{}"><code>{}</code>{}</li>"#,
            if grouped { "grouped" } else { "skipped" },
            esc(&normalise_frame(f)),
            match (grouped, in_app) {
                (true, _) => "",
                (false, false) => r#" <span class="note">library frame, not grouped by</span>"#,
                (false, true) => r#" <span class="note">beyond the frames grouped by</span>"#,
            }
        ));
    }
    out.push_str("</ol>");
    out
}

pub(crate) async fn mark(
    v: Viewer,
    State(state): State<AppState>,
    Path(fp): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match super::groups::group_form(&v, &headers, &body, &fp) {
        Ok(f) => f,
        Err(refused) => return *refused,
    };
    let Some(to) = form.get("state").and_then(|s| GroupState::parse(s)) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Crash group",
            "state must be one of resolved, ignored, open",
            Some(v.who()),
        );
    };
    let release = form.get("release").map(String::as_str);
    if let Err(e) = v
        .dash
        .mark(&state, &v.tenant.id, &fp, to, release, "dashboard")
    {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Crash group",
            &ApiError::internal(e).message,
            Some(v.who()),
        );
    }
    let fallback = format!("/ui/crashes/{fp}");
    let back = form
        .get("back")
        .map(String::as_str)
        .filter(|b| b.starts_with(&format!("/ui/crashes/{fp}")))
        .unwrap_or(&fallback);
    see_other(back)
}
