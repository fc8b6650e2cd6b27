//! Share links through the admin API: a revocable, optionally expiring link to the tenant's dashboard,
//! read-only (`Role::Share`: the reports and the dashboard with the tenant's k, never `/v1/sql`).
//!
//! ```text
//!  POST   /v1/admin/shares          {"expires_in": "30d", "password": "…"}  (both optional)
//!                                   -> {"id", "link": "/ui/share/<key>", "expires", "password": true}
//!  GET    /v1/admin/shares          the tenant's links (id, created, expires, revoked, password; never the
//!                                   key or the password)
//!  DELETE /v1/admin/shares/{id}     revokes one: the link answers 404 and its sessions end
//! ```
//!
//! A link with a password asks for it before it opens a session (`/ui/share/<key>`); the password is kept
//! as a salted Argon2id hash beside the key's hash, and wrong guesses count against the client address as
//! failed logins do. The dashboard's "Share links" page (`/ui/shares`) does the same three things with the
//! tenant's admin key typed into it; both paths are the functions below and both are audited.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::access::Role;
use crate::admin::{ACTOR, admin, json_body};
use crate::error::ApiError;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewShare {
    #[serde(default)]
    expires_in: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Passwords shorter than this are refused (a link is guessable offline otherwise... and online, slowly).
pub(crate) const MIN_PASSWORD: usize = 8;

pub(crate) fn grant_json(g: &crate::access::Grant) -> serde_json::Value {
    json!({"id": g.id, "created": g.created, "expires": g.expires.map(|e| e.to_rfc3339()),
        "revoked": g.revoked, "password": g.password.is_some()})
}

/// Makes a share link for `tenant`: `expires_in` like "30d" (none: until revoked), an optional password.
/// The link (`/ui/share/<key>`) is returned once; the audit log records its id.
pub(crate) fn create_share(
    state: &AppState,
    steward: &tacet_lifecycle::Steward,
    tenant: &crate::tenants::TenantEntry,
    expires_in: Option<&str>,
    password: Option<&str>,
    actor: &str,
) -> Result<(String, crate::access::Grant), ApiError> {
    let expires = match expires_in.map(str::trim).filter(|d| !d.is_empty()) {
        None => None,
        Some(d) => {
            let d = humantime::parse_duration(d).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("expires_in {d:?}: {e} (e.g. \"30d\", \"12h\")"),
                )
            })?;
            Some(chrono::Utc::now() + chrono::Duration::from_std(d).map_err(ApiError::internal)?)
        }
    };
    let password = password.filter(|p| !p.is_empty());
    if let Some(p) = password
        && (p.chars().count() < MIN_PASSWORD || p.len() > 1024)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "password: {MIN_PASSWORD} to 1024 characters, or none for a link anyone holding it may open"
            ),
        ));
    }
    let (key, grant) = state
        .tenants
        .access()
        .create_with_password(&tenant.id, Role::Share, expires, password)
        .map_err(ApiError::internal)?;
    steward
        .audit()
        .append(
            actor,
            "share.create",
            Some(tenant.id.as_str()),
            json!({"id": grant.id, "expires": grant.expires.map(|e| e.to_rfc3339()), "password": password.is_some()}),
        )
        .map_err(ApiError::internal)?;
    Ok((format!("/ui/share/{key}"), grant))
}

/// The tenant's share links, oldest first (never a key or a password).
pub(crate) fn list_shares(
    state: &AppState,
    tenant: &crate::tenants::TenantEntry,
) -> Vec<crate::access::Grant> {
    state
        .tenants
        .access()
        .list()
        .into_iter()
        .filter(|g| g.tenant == tenant.id.as_str() && g.role == Role::Share)
        .collect()
}

/// Revokes one of the tenant's share links: it answers 404 from now on and its sessions end.
pub(crate) fn revoke_share(
    state: &AppState,
    steward: &tacet_lifecycle::Steward,
    tenant: &crate::tenants::TenantEntry,
    id: &str,
    actor: &str,
) -> Result<(), ApiError> {
    let access = state.tenants.access();
    let ours = list_shares(state, tenant).iter().any(|g| g.id == id);
    if !ours || !access.revoke(id).map_err(ApiError::internal)? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no live share link {id:?} of this tenant (GET /v1/admin/shares lists them)"),
        ));
    }
    steward
        .audit()
        .append(
            actor,
            "share.revoke",
            Some(tenant.id.as_str()),
            json!({"id": id}),
        )
        .map_err(ApiError::internal)?;
    Ok(())
}

pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, steward) = admin(&state, &headers, "shares.create")?;
    let req: NewShare = json_body(
        &state,
        &headers,
        body,
        r#"like {"expires_in": "30d", "password": "…"} or {}"#,
    )
    .await?;
    let (link, grant) = create_share(
        &state,
        steward,
        tenant,
        req.expires_in.as_deref(),
        req.password.as_deref(),
        ACTOR,
    )?;
    let mut out = grant_json(&grant);
    out["link"] = json!(link);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (tenant, _) = admin(&state, &headers, "shares.list")?;
    let shares: Vec<_> = list_shares(&state, tenant).iter().map(grant_json).collect();
    Ok(Json(shares).into_response())
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (tenant, steward) = admin(&state, &headers, "shares.revoke")?;
    revoke_share(&state, steward, tenant, &id, ACTOR)?;
    Ok(Json(json!({"revoked": id})).into_response())
}
