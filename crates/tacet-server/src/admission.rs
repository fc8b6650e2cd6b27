//! One admission path for every way events come in (`POST /v1/events`, the pixel): the tenant's origins,
//! the per-key and per-client request limits, readiness, and the tenant's event quota, with the same
//! answers (403, 429 with `Retry-After`, 503, 413) and the same metric labels whichever door was used.

use axum::http::{HeaderMap, StatusCode};

use crate::AppState;
use crate::error::ApiError;
use crate::tenants::TenantEntry;

/// Counts a refused ingest request by reason (`tacet_http_ingest_requests_refused_total`).
pub(crate) fn refused(reason: &'static str) {
    metrics::counter!("tacet_http_ingest_requests_refused_total", "reason" => reason).increment(1);
}

/// The origin a browser request comes from: its `Origin` header, else the origin of its `Referer` (an
/// image request, the pixel, sends no `Origin`). `None` for requests with neither (servers, apps).
pub(crate) fn request_origin(headers: &HeaderMap) -> Option<String> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(o) = header("origin") {
        return Some(o.to_owned());
    }
    let referer = url::Url::parse(header("referer")?).ok()?;
    match referer.origin() {
        o @ url::Origin::Tuple(..) => Some(o.ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}

/// Admits one request with `key` for `tenant` from the client of `ip`, before its body is read: the origin
/// check, the request limits (per ingest key and per client address) and readiness.
pub(crate) fn admit(
    state: &AppState,
    tenant: &TenantEntry,
    key: &str,
    headers: &HeaderMap,
    ip: std::net::IpAddr,
) -> Result<(), ApiError> {
    let origin = request_origin(headers);
    if !tenant.allows_origin(origin.as_deref()) {
        refused("origin");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "origin {:?} may not post events for this tenant; add it to the tenant's origins",
                origin.unwrap_or_default()
            ),
        ));
    }
    if let Err((limit, wait)) = state.limits.request(key, ip) {
        refused(limit.as_str());
        metrics::counter!("tacet_rate_limited_total", "tenant" => tenant.id.to_string(), "reason" => limit.as_str())
            .increment(1);
        return Err(ApiError::too_many(
            match limit {
                crate::limits::Limited::Key => {
                    "too many requests with this ingest key; slow down and retry after Retry-After seconds"
                }
                _ => {
                    "too many requests from this address; slow down and retry after Retry-After seconds"
                }
            },
            wait,
        ));
    }
    if !state.ready.load(std::sync::atomic::Ordering::SeqCst) {
        refused("not_ready");
        return Err(ApiError::unavailable(
            "starting: replaying the write-ahead log; retry shortly",
        ));
    }
    Ok(())
}

/// Takes `n` events from the tenant's quota, or says why not (nothing is stored then).
pub(crate) fn admit_events(
    state: &AppState,
    tenant: &TenantEntry,
    n: usize,
) -> Result<(), ApiError> {
    let Err(wait) = state.limits.events(tenant.id.as_str(), n) else {
        return Ok(());
    };
    refused("quota");
    metrics::counter!("tacet_rate_limited_total", "tenant" => tenant.id.to_string(), "reason" => "quota")
        .increment(1);
    Err(match wait {
        Some(wait) => ApiError::too_many(
            "the tenant's event quota is used up for now; nothing was stored, retry after Retry-After seconds",
            wait,
        ),
        None => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "this batch has more events than the tenant's quota allows at once; split it",
        ),
    })
}
