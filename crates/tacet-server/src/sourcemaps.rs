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
    let regrouped = regroup(&state, tenant, release).await?;
    let mut answer = serde_json::to_value(&info).map_err(ApiError::internal)?;
    answer["regrouped"] = json!(regrouped);
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Crash groups of `release` stored before its maps arrived: their minified frames made fingerprints of
/// their own. Each group's stored stack is symbolicated now, scrubbed as at ingest and fingerprinted again;
/// a group whose fingerprint changes is merged into the symbolicated one (`triage.merge`, actor
/// `sourcemaps`), so old and new crashes of one bug end in one group in every crash report. The stored rows
/// stay as they are (immutable files). How many groups were merged.
pub(crate) async fn regroup(
    state: &AppState,
    tenant: &crate::tenants::TenantEntry,
    release: &str,
) -> Result<usize, ApiError> {
    let Some(dash) = state.dashboard.as_deref() else {
        return Ok(0);
    };
    let sql = format!(
        "SELECT fingerprint, MIN(error_type) AS error_type, MIN(array_to_string(stack, chr(10))) AS stack \
         FROM events WHERE kind = 'crash' AND fingerprint IS NOT NULL AND release = '{}' \
         GROUP BY fingerprint LIMIT 1000",
        release.replace('\'', "''")
    );
    let out = state.query.sql(&tenant.id, &sql).await?;
    let bytes =
        tacet_query::format::encode(tacet_query::format::Format::Json, &out.schema, &out.batches)
            .map_err(ApiError::internal)?;
    let rows: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
    let marks = dash
        .triage()
        .marks(&tenant.id)
        .map_err(ApiError::internal)?;
    let scrubber = tacet_privacy::Scrubber::for_policy(&tenant.policy);
    let mut merged = 0;
    for row in rows {
        let (Some(fp), Some(stack)) = (
            row.get("fingerprint").and_then(|v| v.as_str()),
            row.get("stack").and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        let mut frames: Vec<String> = stack.lines().map(str::to_owned).collect();
        let rewritten = state
            .pipeline
            .sourcemaps()
            .symbolicate_frames(&tenant.id, release, &mut frames)
            .await;
        if rewritten == 0 {
            continue;
        }
        let frames: Vec<String> = frames
            .into_iter()
            .map(|f| scrubber.text(&f, &mut tacet_privacy::Tally::default()))
            .collect();
        let error_type = row.get("error_type").and_then(|v| v.as_str());
        let now = tacet_privacy::fingerprint::fingerprint(error_type, None, &frames);
        let already = marks.get(fp).and_then(|m| m.merged_into.as_deref()) == Some(now.as_str());
        if now != fp && !already {
            dash.merge(state, &tenant.id, fp, Some(&now), "sourcemaps")?;
            merged += 1;
        }
    }
    if merged > 0 {
        tracing::info!(tenant = %tenant.id, merged, "crash groups from before their source maps merged");
    }
    Ok(merged)
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
