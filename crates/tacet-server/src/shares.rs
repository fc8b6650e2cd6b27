//! Share links through the admin API: a revocable, optionally expiring link to the tenant's dashboard,
//! read-only (`Role::Share`: the reports and the dashboard with the tenant's k, never `/v1/sql`).
//!
//! ```text
//!  POST   /v1/admin/shares          {"expires_in": "30d"}  (optional) -> {"id", "link": "/ui/share/<key>", "expires"}
//!  GET    /v1/admin/shares          the tenant's links (id, created, expires, revoked; never the key)
//!  DELETE /v1/admin/shares/{id}     revokes one: the link answers 404 and its sessions end
//! ```

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
}

fn grant_json(g: &crate::access::Grant) -> serde_json::Value {
    json!({"id": g.id, "created": g.created, "expires": g.expires.map(|e| e.to_rfc3339()), "revoked": g.revoked})
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
        r#"like {"expires_in": "30d"} or {}"#,
    )
    .await?;
    let expires = match &req.expires_in {
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
    let (key, grant) = state
        .tenants
        .access()
        .create(&tenant.id, Role::Share, expires)
        .map_err(ApiError::internal)?;
    steward
        .audit()
        .append(
            ACTOR,
            "share.create",
            Some(tenant.id.as_str()),
            json!({"id": grant.id, "expires": grant.expires.map(|e| e.to_rfc3339())}),
        )
        .map_err(ApiError::internal)?;
    let mut out = grant_json(&grant);
    out["link"] = json!(format!("/ui/share/{key}"));
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (tenant, _) = admin(&state, &headers, "shares.list")?;
    let shares: Vec<_> = state
        .tenants
        .access()
        .list()
        .iter()
        .filter(|g| g.tenant == tenant.id.as_str() && g.role == Role::Share)
        .map(grant_json)
        .collect();
    Ok(Json(shares).into_response())
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (tenant, steward) = admin(&state, &headers, "shares.revoke")?;
    let access = state.tenants.access();
    let ours = access
        .list()
        .iter()
        .any(|g| g.id == id && g.tenant == tenant.id.as_str() && g.role == Role::Share);
    if !ours || !access.revoke(&id).map_err(ApiError::internal)? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no live share link {id:?} of this tenant (GET /v1/admin/shares lists them)"),
        ));
    }
    steward
        .audit()
        .append(
            ACTOR,
            "share.revoke",
            Some(tenant.id.as_str()),
            json!({"id": id}),
        )
        .map_err(ApiError::internal)?;
    Ok(Json(json!({"revoked": id})).into_response())
}
