//! Crash triage through the admin API, the same marks the dashboard sets (and the same audit entries):
//!
//! ```text
//!  GET  /v1/admin/crashes                  the tenant's marks, by fingerprint
//!  POST /v1/admin/crashes/{fingerprint}    {"state": "resolved|ignored|open", "release": "2.1.0"}
//!  POST /v1/admin/crashes/{fp}/merge       {"into": "<fingerprint>"}: its crashes count as that group's;
//!                                          {"into": null} undoes it
//!  POST /v1/admin/crashes/{fp}/split       {"frame": "at checkout"}: its crashes with a frame containing
//!                                          the text become a group of their own (the answer names it);
//!                                          {"frame": …, "undo": true} takes it back
//! ```
//!
//! `release` (with `resolved`): resolved in that release; only a crash from a later release reopens it.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::admin::{admin, json_body};
use crate::error::ApiError;
use crate::ui::{Dashboard, GroupState};

fn dashboard(state: &AppState) -> Result<&Dashboard, ApiError> {
    state.dashboard.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "crash triage is kept by the dashboard, which is off ([dashboard] enabled = false)",
        )
    })
}

pub(crate) async fn marks(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (tenant, _) = admin(&state, &headers, "crashes.marks")?;
    let marks = dashboard(&state)?
        .triage()
        .marks(&tenant.id)
        .map_err(ApiError::internal)?;
    Ok(Json(marks).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkRequest {
    state: String,
    #[serde(default)]
    release: Option<String>,
}

pub(crate) async fn mark(
    State(state): State<AppState>,
    Path(fingerprint): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, _) = admin(&state, &headers, "crashes.mark")?;
    if !crate::ui::valid_fingerprint(&fingerprint) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "a crash group is named by its fingerprint, 16 lower-case hexadecimal characters",
        ));
    }
    let req: MarkRequest = json_body(
        &state,
        &headers,
        body,
        r#"like {"state": "resolved", "release": "2.1.0"}"#,
    )
    .await?;
    let to = GroupState::parse(&req.state).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("state {:?}: use resolved, ignored or open", req.state),
        )
    })?;
    if req.release.is_some() && to != GroupState::Resolved {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "release goes with state resolved (resolved in that release)",
        ));
    }
    dashboard(&state)?
        .mark(
            &state,
            &tenant.id,
            &fingerprint,
            to,
            req.release.as_deref(),
            crate::admin::ACTOR,
        )
        .map_err(ApiError::internal)?;
    Ok(
        Json(json!({"fingerprint": fingerprint, "state": to.as_str(), "release": req.release}))
            .into_response(),
    )
}

fn group(fingerprint: &str) -> Result<(), ApiError> {
    if crate::ui::valid_fingerprint(fingerprint) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "a crash group is named by its fingerprint, 16 lower-case hexadecimal characters",
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeRequest {
    into: Option<String>,
}

pub(crate) async fn merge(
    State(state): State<AppState>,
    Path(fingerprint): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, _) = admin(&state, &headers, "crashes.merge")?;
    group(&fingerprint)?;
    let req: MergeRequest = json_body(
        &state,
        &headers,
        body,
        r#"like {"into": "0123456789abcdef"}, or {"into": null} to undo"#,
    )
    .await?;
    dashboard(&state)?.merge(
        &state,
        &tenant.id,
        &fingerprint,
        req.into.as_deref(),
        crate::admin::ACTOR,
    )?;
    Ok(Json(json!({"fingerprint": fingerprint, "merged_into": req.into})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitRequest {
    frame: String,
    #[serde(default)]
    undo: bool,
}

pub(crate) async fn split(
    State(state): State<AppState>,
    Path(fingerprint): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, _) = admin(&state, &headers, "crashes.split")?;
    group(&fingerprint)?;
    let req: SplitRequest = json_body(
        &state,
        &headers,
        body,
        r#"like {"frame": "at checkout"}, or with "undo": true"#,
    )
    .await?;
    let change = dashboard(&state)?.split(
        &state,
        &tenant.id,
        &fingerprint,
        &req.frame,
        req.undo,
        crate::admin::ACTOR,
    )?;
    let crate::ui::Change::Split { group, .. } = change else {
        return Err(ApiError::internal("a split answered as something else"));
    };
    Ok(Json(json!({"fingerprint": fingerprint, "frame": req.frame.trim(), "undo": req.undo, "group": group}))
        .into_response())
}
