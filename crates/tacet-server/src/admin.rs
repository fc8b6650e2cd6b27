//! The admin API: a tenant's data-subject requests, retention and audit log, behind its admin key
//! (`Authorization: Bearer <admin key>`; distinct from the read key). Every authenticated request is
//! recorded in the audit log as `admin.login`, with the endpoint; user ids travel in request bodies,
//! never in URLs (which end up in access logs).
//!
//! ```text
//!  POST /v1/admin/subjects/export    {"user_id": "…", "format": "json|csv|parquet"}
//!  POST /v1/admin/subjects/erase     {"user_id": "…", "background": false}
//!  GET  /v1/admin/subjects/erasures/{record}   a background erasure's state, then its receipt
//!  POST /v1/admin/subjects/object    {"user_id": "…"}    restriction / objection (opt-out)
//!  POST /v1/admin/subjects/withdraw  {"user_id": "…"}    opting back in
//!  POST /v1/admin/subjects/rectify   {"user_id": "…", "set": {"plan": "pro", "old_key": null}}
//!  POST /v1/admin/retention          {"dry_run": true}
//!  GET  /v1/admin/audit              the tenant's audit entries, the chain checked
//!  POST /v1/admin/sql                SQL over `events` and `audit`
//!  PUT|GET|DELETE /v1/admin/sourcemaps?release=…&url=…   source maps (sourcemaps.rs)
//!  GET /v1/admin/crashes, POST /v1/admin/crashes/{fp}     crash triage marks (triage_api.rs)
//! ```

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tacet_lifecycle::{PropChange, Steward};
use tacet_query::format::{Format, encode};

use crate::AppState;
use crate::error::ApiError;
use crate::routes::{header_str, read_body};
use crate::tenants::TenantEntry;

pub(crate) const ACTOR: &str = "admin-api";

/// The tenant whose admin key the request carries, and the steward; records the login.
pub(crate) fn admin<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    endpoint: &str,
) -> Result<(&'a TenantEntry, &'a Steward), ApiError> {
    // Not enabled answers 404 before a missing key answers 401.
    state.steward.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "the admin API is not enabled in this process",
        )
    })?;
    let key = header_str(headers, header::AUTHORIZATION)
        .and_then(|a| a.strip_prefix("Bearer "))
        .ok_or_else(|| {
            metrics::counter!("tacet_admin_refused_total", "reason" => "missing").increment(1);
            ApiError::unauthorized("missing admin key: send Authorization: Bearer <admin key>")
        })?;
    admin_key(state, key, endpoint, ACTOR)
}

/// [`admin`] for a key given some other way (the dashboard's share-link page posts it in a form body),
/// recorded in the audit log under `actor`.
pub(crate) fn admin_key<'a>(
    state: &'a AppState,
    key: &str,
    endpoint: &str,
    actor: &str,
) -> Result<(&'a TenantEntry, &'a Steward), ApiError> {
    let steward = state.steward.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "the admin API is not enabled in this process",
        )
    })?;
    let tenant = state
        .tenants
        .authenticate(key.trim(), crate::access::Role::Admin)
        .map_err(|e| {
            metrics::counter!("tacet_admin_refused_total", "reason" => "key").increment(1);
            ApiError::from(e)
        })?;
    steward
        .audit()
        .append(
            actor,
            "admin.login",
            Some(tenant.id.as_str()),
            json!({ "endpoint": endpoint }),
        )
        .map_err(ApiError::internal)?;
    Ok((tenant, steward))
}

pub(crate) async fn json_body<T: for<'de> Deserialize<'de>>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    expected: &str,
) -> Result<T, ApiError> {
    let bytes = read_body(
        body,
        headers,
        state.config.max_sql_bytes,
        state.config.body_timeout,
    )
    .await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected a JSON body {expected}: {e}"),
        )
    })
}

impl From<tacet_lifecycle::Error> for ApiError {
    fn from(e: tacet_lifecycle::Error) -> Self {
        use tacet_lifecycle::Error as L;
        match e {
            L::User(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            L::Query(q) => q.into(),
            L::Ingest(i) => i.into(),
            other => ApiError::internal(other),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Subject {
    user_id: String,
    #[serde(default)]
    format: Option<String>,
}

pub(crate) async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, steward) = admin(&state, &headers, "subjects/export")?;
    let req: Subject = json_body(
        &state,
        &headers,
        body,
        r#"{"user_id": "…", "format": "json|csv|parquet"}"#,
    )
    .await?;
    let format = match req.format.as_deref().unwrap_or("json") {
        "json" => Format::Json,
        "csv" => Format::Csv,
        "parquet" => Format::Parquet,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("format {other:?}: use json, csv or parquet"),
            ));
        }
    };
    let name = req.format.as_deref().unwrap_or("json");
    let export = steward
        .export(&tenant.id, &req.user_id, name, ACTOR)
        .await?;
    if format == Format::Json {
        let rows = encode(Format::Json, &export.rows.schema, &export.rows.batches)
            .map_err(ApiError::internal)?;
        let rows: serde_json::Value = serde_json::from_slice(&rows).map_err(ApiError::internal)?;
        return Ok(Json(json!({"manifest": export.manifest, "events": rows})).into_response());
    }
    let bytes =
        encode(format, &export.rows.schema, &export.rows.batches).map_err(ApiError::internal)?;
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        bytes,
    )
        .into_response();
    // The manifest travels in a header next to CSV or Parquet (compact JSON, ASCII-escaped).
    let manifest = serde_json::to_string(&export.manifest).map_err(ApiError::internal)?;
    let manifest: String = manifest
        .chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                format!("\\u{:04x}", c as u32)
            }
        })
        .collect();
    resp.headers_mut().insert(
        "x-tacet-manifest",
        HeaderValue::from_str(&manifest).map_err(ApiError::internal)?,
    );
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Erase {
    user_id: String,
    /// Answer once the record is written (the person is left out of every query from then on) and
    /// rewrite the lake afterwards; the receipt is then at `/v1/admin/subjects/erasures/{record}`.
    #[serde(default)]
    background: bool,
}

pub(crate) async fn erase(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, steward) = admin(&state, &headers, "subjects/erase")?;
    let req: Erase = json_body(
        &state,
        &headers,
        body,
        r#"{"user_id": "…", "background": false}"#,
    )
    .await?;
    let quiet = &tacet_lifecycle::quiet;
    if !req.background {
        let report = steward
            .erase(&tenant.id, &req.user_id, ACTOR, quiet)
            .await?;
        return Ok(Json(report).into_response());
    }
    let begun = steward.begin_erasure(&tenant.id, &req.user_id)?;
    let Some(record) = begun.record.clone() else {
        // No subject key yet: nothing identified was ever stored, and there is nothing to wait for.
        let report = steward
            .finish_erasure(&tenant.id, begun, ACTOR, quiet)
            .await?;
        return Ok(Json(report).into_response());
    };
    let steward = state.steward.clone().expect("admin() found it");
    let tenant_id = tenant.id.clone();
    tokio::spawn(async move {
        if let Err(e) = steward
            .finish_erasure(&tenant_id, begun, ACTOR, quiet)
            .await
        {
            tracing::warn!(tenant = %tenant_id, error = %e, "a background erasure failed; its receipt says so");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "done": false,
            "erasure_record": record,
            "status": format!("/v1/admin/subjects/erasures/{record}"),
            "meanwhile": "the person's rows are left out of every query on every node from now on",
        })),
    )
        .into_response())
}

/// `GET /v1/admin/subjects/erasures/{record}`: running (with when it was requested), or its receipt.
pub(crate) async fn erasure_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(record): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let (tenant, steward) = admin(&state, &headers, "subjects/erasures")?;
    if record.is_empty()
        || !record
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "an erasure record id is what POST /v1/admin/subjects/erase answered (erasure_record)",
        ));
    }
    let keys = steward.pipeline().keys();
    if let Some(receipt) = keys
        .receipt(&tenant.id, &record)
        .map_err(ApiError::internal)?
    {
        return Ok(Json(receipt).into_response());
    }
    if let Some(r) = keys
        .erasures(&tenant.id)
        .map_err(ApiError::internal)?
        .into_iter()
        .find(|r| r.id == record)
    {
        return Ok(Json(json!({"done": false, "requested_at": r.at})).into_response());
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no erasure {record} for this tenant (receipts are kept 30 days; a synchronous erasure's \
             receipt was its answer)"
        ),
    ))
}

pub(crate) async fn object(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, steward) = admin(&state, &headers, "subjects/object")?;
    let req: Subject = json_body(&state, &headers, body, r#"{"user_id": "…"}"#).await?;
    let change = steward.object(&tenant.id, &req.user_id, ACTOR)?;
    Ok(
        Json(json!({"objected": true, "change": format!("{change:?}").to_lowercase()}))
            .into_response(),
    )
}

pub(crate) async fn withdraw(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, steward) = admin(&state, &headers, "subjects/withdraw")?;
    let req: Subject = json_body(&state, &headers, body, r#"{"user_id": "…"}"#).await?;
    let change = steward.withdraw(&tenant.id, &req.user_id, ACTOR)?;
    Ok(
        Json(json!({"objected": false, "change": format!("{change:?}").to_lowercase()}))
            .into_response(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rectify {
    user_id: String,
    set: BTreeMap<String, Option<String>>,
}

pub(crate) async fn rectify(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, steward) = admin(&state, &headers, "subjects/rectify")?;
    let req: Rectify = json_body(
        &state,
        &headers,
        body,
        r#"{"user_id": "…", "set": {"key": "value or null"}}"#,
    )
    .await?;
    let changes: Vec<PropChange> = req
        .set
        .into_iter()
        .map(|(key, value)| PropChange { key, value })
        .collect();
    let report = steward
        .rectify(
            &tenant.id,
            &tenant.policy,
            &req.user_id,
            &changes,
            ACTOR,
            &tacet_lifecycle::quiet,
        )
        .await?;
    Ok(Json(report).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Retention {
    #[serde(default)]
    dry_run: bool,
}

pub(crate) async fn retention(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, steward) = admin(&state, &headers, "retention")?;
    let req: Retention = json_body(&state, &headers, body, r#"{"dry_run": true}"#).await?;
    let report = steward
        .retention_run(
            &[(tenant.id.clone(), tenant.policy.clone())],
            req.dry_run,
            ACTOR,
            &tacet_lifecycle::quiet,
        )
        .await?;
    Ok(Json(report).into_response())
}

pub(crate) async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (tenant, steward) = admin(&state, &headers, "audit")?;
    let entries = steward.audit().read().map_err(|e| {
        ApiError::new(
            StatusCode::CONFLICT,
            format!("the audit log does not verify: {e}"),
        )
    })?;
    let head = entries.last().map(|e| e.hash.clone());
    let mine: Vec<serde_json::Value> = entries
        .iter()
        .filter(|e| e.entry.tenant.as_deref() == Some(tenant.id.as_str()))
        .map(|e| json!({"entry": e.entry, "hash": e.hash}))
        .collect();
    Ok(Json(json!({"verified": true, "head": head, "entries": mine})).into_response())
}

pub(crate) async fn sql(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, steward) = admin(&state, &headers, "sql")?;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sql {
        sql: String,
    }
    let req: Sql = json_body(&state, &headers, body, r#"{"sql": "SELECT … FROM audit"}"#).await?;
    let out = steward.audit_sql(&tenant.id, &req.sql).await?;
    let bytes = encode(Format::Json, &out.schema, &out.batches).map_err(ApiError::internal)?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, Format::Json.content_type())],
        bytes,
    )
        .into_response())
}
