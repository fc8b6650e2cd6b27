//! Source maps through the admin API, as release tooling uploads them (`tacet sourcemaps upload` does):
//!
//! ```text
//!  PUT    /v1/admin/sourcemaps?release=R&url=U   the map of the minified file at U (body: the map)
//!  GET    /v1/admin/sourcemaps[?release=R]       what is uploaded
//!  DELETE /v1/admin/sourcemaps?release=R[&url=U] a release's maps, or one
//! ```
//!
//! Stored beside the lake by `tacet_ingest::SourceMaps`; crashes of that release whose frames name U are
//! symbolicated at accept. Every change is in the audit log.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tacet_model::TenantId;

use crate::AppState;
use crate::admin::{ACTOR, admin};
use crate::error::ApiError;
use crate::routes::read_body;

/// The largest source map taken (a big app's bundle map is a few MB).
pub const MAX_SOURCEMAP_BYTES: usize = 64 << 20;

fn param<'q>(q: &'q HashMap<String, String>, name: &str) -> Result<&'q str, ApiError> {
    q.get(name).map(String::as_str).filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("give ?{name}=… (release: the app release the crashes carry; url: the minified file's URL)"),
        )
    })
}

fn audit(
    state: &AppState,
    tenant: &TenantId,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    if let Some(steward) = state.steward.as_deref() {
        steward
            .audit()
            .append(ACTOR, action, Some(tenant.as_str()), detail)
            .map_err(ApiError::internal)?;
    }
    Ok(())
}

pub(crate) async fn put(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, _) = admin(&state, &headers, "sourcemaps.put")?;
    let (release, url) = (param(&q, "release")?, param(&q, "url")?);
    let map = read_body(
        body,
        &headers,
        MAX_SOURCEMAP_BYTES,
        state.config.body_timeout,
    )
    .await?;
    let info = state
        .pipeline
        .sourcemaps()
        .put(&tenant.id, release, url, map)
        .await?;
    audit(
        &state,
        &tenant.id,
        "sourcemap.upload",
        json!({"release": info.release, "url": info.url, "bytes": info.bytes}),
    )?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (tenant, _) = admin(&state, &headers, "sourcemaps.list")?;
    let maps = state
        .pipeline
        .sourcemaps()
        .list(&tenant.id, q.get("release").map(String::as_str))
        .await?;
    Ok(Json(maps).into_response())
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (tenant, _) = admin(&state, &headers, "sourcemaps.delete")?;
    let release = param(&q, "release")?;
    let url = q.get("url").map(String::as_str);
    let deleted = state
        .pipeline
        .sourcemaps()
        .delete(&tenant.id, release, url)
        .await?;
    audit(
        &state,
        &tenant.id,
        "sourcemap.delete",
        json!({"release": release, "url": url, "deleted": deleted}),
    )?;
    Ok(Json(json!({"deleted": deleted})).into_response())
}
