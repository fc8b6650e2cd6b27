//! Merging and splitting crash groups (tacet_query::groups), from the crash page and the admin API: the
//! rule kept beside the group's triage mark (triage.rs), an audit entry for each, and every crash report
//! grouping by the result from the next request on.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::dashboard::{Dashboard, Viewer};
use super::respond::*;
use super::triage;
use crate::AppState;
use crate::error::ApiError;

/// What a merge or split changed, for the answer.
pub enum Change {
    Merged {
        into: Option<String>,
    },
    Split {
        frame: String,
        undo: bool,
        group: String,
    },
}

impl Dashboard {
    /// Merges `from` into `into` (`None`: undoes it), audited under `actor`; a refusal (a cycle) is a 400.
    pub fn merge(
        &self,
        state: &AppState,
        tenant: &tacet_model::TenantId,
        from: &str,
        into: Option<&str>,
        actor: &str,
    ) -> Result<Change, ApiError> {
        if let Some(into) = into
            && !triage::valid_fingerprint(into)
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "{into:?} is not a group's fingerprint (16 lower-case hexadecimal characters)"
                ),
            ));
        }
        self.triage
            .merge(tenant, from, into, state.pipeline.clock().now())
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
        audit(
            state,
            actor,
            "triage.merge",
            tenant,
            serde_json::json!({"fingerprint": from, "into": into}),
        )?;
        Ok(Change::Merged {
            into: into.map(str::to_owned),
        })
    }

    /// Splits the crashes of `fingerprint` with a frame containing `frame` off into their own group
    /// (`undo`: takes it back), audited under `actor`.
    pub fn split(
        &self,
        state: &AppState,
        tenant: &tacet_model::TenantId,
        fingerprint: &str,
        frame: &str,
        undo: bool,
        actor: &str,
    ) -> Result<Change, ApiError> {
        let group = self
            .triage
            .split(
                tenant,
                fingerprint,
                frame,
                undo,
                state.pipeline.clock().now(),
            )
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
        audit(
            state,
            actor,
            if undo {
                "triage.unsplit"
            } else {
                "triage.split"
            },
            tenant,
            serde_json::json!({"fingerprint": fingerprint, "frame": frame.trim(), "group": group}),
        )?;
        Ok(Change::Split {
            frame: frame.trim().to_owned(),
            undo,
            group,
        })
    }
}

fn audit(
    state: &AppState,
    actor: &str,
    action: &str,
    tenant: &tacet_model::TenantId,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    if let Some(steward) = state.steward.as_deref() {
        steward
            .audit()
            .append(actor, action, Some(tenant.as_str()), detail)
            .map_err(ApiError::internal)?;
    }
    tracing::info!(tenant = %tenant, action, "crash groups changed");
    Ok(())
}

/// A changing form posted to crash group `fp`'s page: checked as every changing form is
/// (`Viewer::change_form`), and the fingerprint well-formed (else 404).
pub(crate) fn group_form(
    v: &Viewer,
    headers: &HeaderMap,
    body: &Bytes,
    fp: &str,
) -> Result<HashMap<String, String>, Box<Response>> {
    let form = v.change_form(headers, body, "the crash group's page")?;
    if !triage::valid_fingerprint(fp) {
        return Err(Box::new(problem(
            StatusCode::NOT_FOUND,
            "No such crash group",
            "A crash group's address ends in its fingerprint, 16 hexadecimal characters.",
            Some(v.who()),
        )));
    }
    Ok(form)
}

/// `POST /ui/crashes/<fp>/groups`: `op` = merge (`into`), unmerge (`from`: a group merged into this
/// one), split (`frame`) or unsplit (`frame`); back to the group's page, or to the new group's.
pub(crate) async fn act(
    v: Viewer,
    State(state): State<AppState>,
    Path(fp): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match group_form(&v, &headers, &body, &fp) {
        Ok(f) => f,
        Err(refused) => return *refused,
    };
    let get = |k: &str| form.get(k).map(|s| s.trim().to_owned()).unwrap_or_default();
    let done = match get("op").as_str() {
        "merge" => v
            .dash
            .merge(&state, &v.tenant.id, &fp, Some(&get("into")), "dashboard"),
        "unmerge" => {
            let from = get("from");
            if !triage::valid_fingerprint(&from) {
                Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "from: the fingerprint of a group merged into this one",
                ))
            } else {
                v.dash.merge(&state, &v.tenant.id, &from, None, "dashboard")
            }
        }
        "split" => v
            .dash
            .split(&state, &v.tenant.id, &fp, &get("frame"), false, "dashboard"),
        "unsplit" => v
            .dash
            .split(&state, &v.tenant.id, &fp, &get("frame"), true, "dashboard"),
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("op {other:?}: merge, unmerge, split or unsplit"),
        )),
    };
    let back = |to: &str| {
        let keep: HashMap<&str, String> = [("from", get("from_date")), ("to", get("to_date"))]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        let pairs: Vec<(&str, &str)> = keep.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if pairs.is_empty() {
            format!("/ui/crashes/{to}")
        } else {
            format!("/ui/crashes/{to}?{}", query_string(&pairs))
        }
    };
    match done {
        Ok(Change::Merged { into: Some(into) }) => see_other(&back(&into)),
        Ok(Change::Split {
            undo: false, group, ..
        }) => see_other(&back(&group)),
        Ok(_) => see_other(&back(&fp)),
        Err(e) => problem(e.status, "Crash group", &e.message, Some(v.who())),
    }
}

/// The crash page's merge and split section: what was merged into this group or split off it (each with
/// its undo), where this group went if it was merged away, and the two forms.
pub(crate) fn section(v: &Viewer, fp: &str, marks: &triage::Marks) -> String {
    use super::html::esc;
    let groups = triage::crash_groups(marks);
    let csrf = esc(&v.session.csrf);
    let form = |fields: &str, button: &str| {
        format!(
            r#"<form method="post" action="/ui/crashes/{fp}/groups" class="triage"><input type="hidden" name="csrf" value="{csrf}">{fields}<button type="submit">{button}</button></form>"#
        )
    };
    let mut out = String::from(
        r#"<section class="card wide" id="groups" aria-labelledby="h-groups-edit"><h2 id="h-groups-edit">Same bug, or two bugs?</h2>"#,
    );
    let target = groups.merged_group(fp);
    if target != fp {
        out.push_str(&format!(
            r#"<p class="hint" id="merged-away">This group was merged into <a href="/ui/crashes/{t}"><code>{t}</code></a>: its crashes count there.</p>{}"#,
            form(
                &format!(r#"<input type="hidden" name="op" value="unmerge"><input type="hidden" name="from" value="{fp}">"#),
                "Unmerge"
            ),
            t = esc(&target),
        ));
    }
    let merged = groups.merged_into(fp);
    if !merged.is_empty() {
        out.push_str(r#"<p>Merged into this group:</p><ul id="merged">"#);
        for from in &merged {
            let f = esc(from);
            out.push_str(&format!(
                r#"<li><code>{f}</code> {}</li>"#,
                form(
                    &format!(r#"<input type="hidden" name="op" value="unmerge"><input type="hidden" name="from" value="{f}">"#),
                    "Unmerge"
                ),
            ));
        }
        out.push_str("</ul>");
    }
    if let Some(mark) = marks.get(fp).filter(|m| !m.split.is_empty()) {
        out.push_str(r#"<p>Split off this group:</p><ul id="splits">"#);
        for frame in &mark.split {
            let group = tacet_query::groups::split_fingerprint(fp, frame);
            let f = esc(frame);
            out.push_str(&format!(
                r#"<li>crashes with a frame containing <code>{f}</code>: <a href="/ui/crashes/{g}"><code>{g}</code></a> {}</li>"#,
                form(
                    &format!(r#"<input type="hidden" name="op" value="unsplit"><input type="hidden" name="frame" value="{f}">"#),
                    "Undo"
                ),
                g = esc(&group),
            ));
        }
        out.push_str("</ul>");
    }
    out.push_str(&form(
        r#"<input type="hidden" name="op" value="merge"><label for="into">Merge into group (fingerprint)</label> <input id="into" name="into" pattern="[0-9a-f]{16}" placeholder="0123456789abcdef" required> "#,
        "Merge",
    ));
    out.push_str(&form(
        r#"<input type="hidden" name="op" value="split"><label for="frame">Split off the crashes with a frame containing</label> <input id="frame" name="frame" maxlength="200" placeholder="at checkout" required> "#,
        "Split",
    ));
    out.push_str("</section>");
    out
}
