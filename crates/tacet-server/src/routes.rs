//! Routes and handlers.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tacet_privacy::RequestContext;
use tacet_query::format::{Format, encode};
use tacet_query::{QueryOutput, Report, ReportParams};

use crate::admission::{admit, admit_events, refused};
use crate::error::ApiError;
use crate::tenants::TenantEntry;
use crate::{AppState, client_ip, decode_body};

/// The whole HTTP surface. Needs `ConnectInfo<SocketAddr>` (serve it with
/// `into_make_service_with_connect_info`, or add `MockConnectInfo` in tests).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(post_events).options(preflight))
        .route("/v1/sql", post(post_sql))
        .route("/v1/reports/{name}", get(get_report))
        .route("/v1/admin/subjects/export", post(crate::admin::export))
        .route("/v1/admin/subjects/erase", post(crate::admin::erase))
        .route(
            "/v1/admin/subjects/erasures/{record}",
            get(crate::admin::erasure_status),
        )
        .route("/v1/admin/subjects/object", post(crate::admin::object))
        .route("/v1/admin/subjects/withdraw", post(crate::admin::withdraw))
        .route("/v1/admin/subjects/rectify", post(crate::admin::rectify))
        .route("/v1/admin/retention", post(crate::admin::retention))
        .route("/v1/admin/audit", get(crate::admin::audit))
        .route("/v1/admin/sql", post(crate::admin::sql))
        .route(
            "/v1/admin/shares",
            post(crate::shares::create).get(crate::shares::list),
        )
        .route(
            "/v1/admin/shares/{id}",
            axum::routing::delete(crate::shares::revoke),
        )
        .route("/v1/admin/crashes", get(crate::triage_api::marks))
        .route(
            "/v1/admin/crashes/{fingerprint}",
            post(crate::triage_api::mark),
        )
        .route(
            "/v1/admin/crashes/{fingerprint}/merge",
            post(crate::triage_api::merge),
        )
        .route(
            "/v1/admin/crashes/{fingerprint}/split",
            post(crate::triage_api::split),
        )
        .route(
            "/v1/admin/sourcemaps",
            axum::routing::put(crate::sourcemaps::put)
                .get(crate::sourcemaps::list)
                .delete(crate::sourcemaps::delete),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/t.js", get(crate::web::tracker))
        .route("/v1/pixel.gif", get(crate::web::pixel))
        .route("/demo", get(crate::web::demo))
        .route("/demo/{*rest}", get(crate::web::demo))
        .merge(crate::ui::routes(&state))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such endpoint; schemas/api.md lists the API",
            )
        })
        .with_state(state)
}

/// Ready when the log is replayed and the lake takes writes: a load balancer stops sending to a node whose
/// flushes fail (it keeps retrying them, and keeps what it accepted in its log meanwhile).
async fn readyz(State(state): State<AppState>) -> Response {
    if !state.ready.load(Ordering::SeqCst) {
        return ApiError::unavailable("starting: replaying the write-ahead log").into_response();
    }
    match state.pipeline.lake_trouble() {
        None => "ready\n".into_response(),
        Some(trouble) => ApiError::unavailable(format!("not ready: {trouble}")).into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(render) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            (render.0)(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "metrics are not enabled in this process",
        )
        .into_response(),
    }
}

/// Counts a request refused before its events could be looked at.
/// One rejected item of a batch.
#[derive(Debug, Serialize)]
struct Rejected {
    index: usize,
    field: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct IngestAnswer {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Events taken: stored, or dropped by the tenant's policy (a beacon must not be retried for those).
    accepted: usize,
    /// Of the accepted, those the tenant's policy dropped, by reason (`bot`, `dnt`, `gpc`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    dropped: BTreeMap<&'static str, usize>,
    /// Of the accepted, those stored without identifiers (DNT, GPC, missing consent).
    #[serde(skip_serializing_if = "is_zero")]
    anonymised: usize,
    rejected: Vec<Rejected>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Browsers post beacons from the tenant's pages: CORS is open on this write-only route (`*`), or names the
/// request's origin when the tenant lists its origins and this is one of them.
fn cors(mut resp: Response, allowed_origin: Option<&HeaderValue>) -> Response {
    let h = resp.headers_mut();
    match allowed_origin {
        Some(o) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
            h.insert(header::VARY, HeaderValue::from_static("origin"));
        }
        None => {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("retry-after"),
    );
    resp
}

async fn preflight(headers: HeaderMap) -> Response {
    let mut resp = cors(
        StatusCode::NO_CONTENT.into_response(),
        headers.get(header::ORIGIN),
    );
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, content-encoding, x-tacet-key"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    resp
}

async fn post_events(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let resp = match ingest(&state, peer, &query, &headers, body).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    // A tenant with origins gets its origin echoed; others (and errors before the tenant is known) `*`.
    let restricted = tenant_of(&state, &query, &headers).is_some_and(|t| !t.origins.is_empty());
    let resp = cors(resp, headers.get(header::ORIGIN).filter(|_| restricted));
    request_seconds().record(started.elapsed().as_secs_f64());
    resp
}

/// `tacet_ingest_request_seconds`: from the handler's start to its answer, every answer of `/v1/events`
/// (with the log's group commit inside it); resolved once, not looked up by name per request.
fn request_seconds() -> &'static metrics::Histogram {
    static HANDLE: std::sync::OnceLock<metrics::Histogram> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| metrics::histogram!("tacet_ingest_request_seconds"))
}

async fn ingest(
    state: &AppState,
    peer: SocketAddr,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = headers
        .get("x-tacet-key")
        .and_then(|v| v.to_str().ok())
        .or(query.get("key").map(String::as_str))
        .ok_or_else(|| {
            refused("unauthorized");
            ApiError::unauthorized(
                "missing ingest key: send it in the X-Tacet-Key header or the key query parameter",
            )
        })?;
    let tenant = state.tenants.by_ingest_key(key).ok_or_else(|| {
        refused("unauthorized");
        ApiError::unauthorized(state.tenants.not_an_ingest_key(key))
    })?;
    let ctx = request_context(state, peer, headers);
    admit(state, tenant, key, headers, ctx.ip)?;
    let body = read_body(
        body,
        headers,
        state.config.max_body_bytes,
        state.config.body_timeout,
    )
    .await
    .inspect_err(|_| refused("bad_body"))?;
    let now = state.pipeline.clock().now_millis();
    let content_type = header_str(headers, header::CONTENT_TYPE).map(str::to_owned);
    let encoding = header_str(headers, header::CONTENT_ENCODING).map(str::to_owned);
    let limits = state.config.body_limits();
    let heavy = body.len() > INLINE_DECODE_BYTES
        || encoding
            .as_deref()
            .is_some_and(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity"));
    let decoded = if heavy {
        // Off the async workers, one body of this tenant at a time.
        let slot = tokio::time::timeout(
            state.config.body_timeout,
            state.limits.decoder(tenant.id.as_str()).acquire_owned(),
        )
        .await
        .map_err(|_| {
            refused("busy");
            ApiError::unavailable(
                "this tenant's earlier large or compressed requests are still being decoded; retry shortly",
            )
        })?
        .map_err(|_| ApiError::internal("the decoding slots are closed"))?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            decode_events(content_type.as_deref(), encoding.as_deref(), &body, limits, now)
        })
        .await
        .map_err(|e| ApiError::internal(format!("decoding failed: {e}")))?
    } else {
        decode_events(content_type.as_deref(), encoding.as_deref(), &body, limits, now)
    }
    .inspect_err(|_| refused("bad_body"))?;
    let mut events = Vec::with_capacity(decoded.len());
    let mut rejected = Vec::new();
    for (index, parsed) in decoded.into_iter().enumerate() {
        let parsed = parsed.and_then(|e| {
            if let Err(reason) = tenant.policy.accepts_time(e.ts_millis, now) {
                Err(("ts".to_owned(), reason))
            } else if tenant.policy.accepts(e.kind) {
                Ok(e)
            } else {
                Err((
                    "kind".to_owned(),
                    format!(
                        "this tenant does not accept kind {:?} (its policy's kinds setting)",
                        e.kind.as_str()
                    ),
                ))
            }
        });
        match parsed {
            Ok(event) => events.push(event),
            Err((field, reason)) => rejected.push(Rejected {
                index,
                field,
                reason,
            }),
        }
    }
    if !rejected.is_empty() {
        metrics::counter!("tacet_ingest_events_dropped_total",
            "tenant" => tenant.id.to_string(), "reason" => "invalid")
        .increment(rejected.len() as u64);
    }
    admit_events(state, tenant, events.len())?;
    let outcome = state
        .pipeline
        .accept(&tenant.id, &tenant.policy, ctx, events)
        .await?;
    let accepted = outcome.stored + outcome.dropped_total();
    let (status, error) = if rejected.is_empty() {
        (StatusCode::ACCEPTED, None)
    } else {
        let error = format!(
            "{} of {} events were rejected; the others were stored",
            rejected.len(),
            rejected.len() + accepted
        );
        (StatusCode::UNPROCESSABLE_ENTITY, Some(error))
    };
    Ok((
        status,
        Json(IngestAnswer {
            error,
            accepted,
            dropped: outcome
                .dropped
                .iter()
                .map(|(r, n)| (r.as_str(), *n))
                .collect(),
            anonymised: outcome.anonymised,
            rejected,
        }),
    )
        .into_response())
}

/// Bodies up to this size, uncompressed, are decoded where they arrive; larger or compressed ones on a
/// blocking thread, one per tenant at a time.
const INLINE_DECODE_BYTES: usize = 64 << 10;

/// A body's events, each parsed or with the field at fault and why.
type Decoded = Vec<Result<tacet_model::RawEvent, (String, String)>>;

fn decode_events(
    content_type: Option<&str>,
    encoding: Option<&str>,
    body: &[u8],
    limits: crate::BodyLimits,
    now: i64,
) -> Result<Decoded, crate::BodyError> {
    let items = decode_body(content_type, encoding, body, limits)?;
    Ok(items
        .events(now)
        .map(|event| event.map_err(|e| (e.field, e.problem)))
        .collect())
}

pub(crate) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::from(crate::BodyError::TooLarge { limit });
    if header_str(headers, header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > limit)
    {
        return Err(too_large());
    }
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time; send it at once",
            )
        })?;
    read.map_err(|e| {
        // to_bytes reports an over-limit body as a length-limit error; anything else is a broken upload.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut over_limit = false;
        while let Some(s) = source {
            over_limit |= s.is::<http_body_util::LengthLimitError>();
            source = s.source();
        }
        if over_limit {
            too_large()
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}"),
            )
        }
    })
}

pub(crate) fn header_str<K: header::AsHeaderName>(headers: &HeaderMap, name: K) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// What the privacy step may know of a request: client address, user agent, `DNT: 1`, `Sec-GPC: 1`.
pub(crate) fn request_context<'a>(
    state: &AppState,
    peer: SocketAddr,
    headers: &'a HeaderMap,
) -> RequestContext<'a> {
    let flag = |name: &str| header_str(headers, name).is_some_and(|v| v.trim() == "1");
    RequestContext {
        ip: client_ip(peer, headers, &state.trusted_proxies),
        user_agent: header_str(headers, header::USER_AGENT).unwrap_or_default(),
        dnt: flag("dnt"),
        gpc: flag("sec-gpc"),
    }
}

fn tenant_of<'a>(
    state: &'a AppState,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Option<&'a TenantEntry> {
    let key = header_str(headers, "x-tacet-key").or(query.get("key").map(String::as_str))?;
    state.tenants.by_ingest_key(key)
}

/// The tenant of the read key in `Authorization: Bearer`, if the key grants `role` (`Role::Read`: SQL;
/// `Role::Reports`: the canned reports, which an `sql` read key reaches too).
fn read_tenant<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    role: crate::access::Role,
) -> Result<&'a TenantEntry, ApiError> {
    let auth = header_str(headers, header::AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized("missing read key: send Authorization: Bearer <read key>")
    })?;
    let key = auth.strip_prefix("Bearer ").ok_or_else(|| {
        ApiError::unauthorized("the Authorization header must be \"Bearer <read key>\"")
    })?;
    state
        .tenants
        .authenticate(key.trim(), role)
        .map_err(ApiError::from)
}

/// `?format=` (json, csv, arrow, parquet) or else the `Accept` header; JSON by default.
fn output_format(query: &HashMap<String, String>, headers: &HeaderMap) -> Result<Format, ApiError> {
    match query.get("format").map(String::as_str) {
        None => Ok(header_str(headers, header::ACCEPT)
            .and_then(Format::from_accept)
            .unwrap_or(Format::Json)),
        Some(f) => match Format::parse(f) {
            Some(Format::Table) | None => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("format {f:?} is not offered here; use json, csv, arrow or parquet"),
            )),
            Some(format) => Ok(format),
        },
    }
}

fn answer(out: QueryOutput, format: Format) -> Result<Response, ApiError> {
    let bytes = encode(format, &out.schema, &out.batches).map_err(ApiError::internal)?;
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        bytes,
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert("x-tacet-rows", HeaderValue::from(out.num_rows()));
    h.insert(
        "x-tacet-truncated",
        HeaderValue::from_static(if out.truncated { "true" } else { "false" }),
    );
    h.insert("x-tacet-suppressed", HeaderValue::from(out.suppressed));
    // A report's days: from rollups, raw events, or both, and why (tacet_query::source).
    if let Some(source) = &out.source
        && let Ok(v) = HeaderValue::from_str(&source.to_string())
    {
        h.insert("x-tacet-source", v);
    }
    Ok(resp)
}

async fn post_sql(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let tenant = read_tenant(&state, &headers, crate::access::Role::Read)?;
    let format = output_format(&query, &headers)?;
    let body = read_body(
        body,
        &headers,
        state.config.max_sql_bytes,
        state.config.body_timeout,
    )
    .await?;
    let is_json = header_str(&headers, header::CONTENT_TYPE)
        .is_some_and(|ct| ct.starts_with("application/json"));
    let sql = if is_json {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct SqlBody {
            sql: String,
        }
        serde_json::from_slice::<SqlBody>(&body)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("expected {{\"sql\": \"...\"}}: {e}"),
                )
            })?
            .sql
    } else {
        String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the SQL text is not UTF-8"))?
    };
    let out = state.query.sql(&tenant.id, &sql).await?;
    answer(out, format)
}

async fn get_report(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(mut query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = read_tenant(&state, &headers, crate::access::Role::Reports)?;
    let format = output_format(&query, &headers)?;
    query.remove("format");
    let out = run_report(&state, tenant, &name, query.into_iter().collect()).await?;
    answer(out, format)
}

/// Runs a canned report for a tenant, with its k-threshold: the one path behind `/v1/reports/{name}` and
/// every number the dashboard shows.
pub(crate) async fn run_report(
    state: &AppState,
    tenant: &TenantEntry,
    name: &str,
    params: BTreeMap<String, String>,
) -> Result<QueryOutput, ApiError> {
    let report =
        Report::find(name).map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    let zone = tenant.policy.timezone.unwrap_or(chrono_tz::UTC);
    let today = state
        .pipeline
        .clock()
        .now()
        .with_timezone(&zone)
        .date_naive();
    let params = ReportParams::parse(&params, today).map_err(tacet_query::Error::from)?;
    // The tenant's crash group merges and splits, for the reports that group or filter crashes.
    let groups = match &state.dashboard {
        Some(dash)
            if report.sql.contains(tacet_query::groups::NAME)
                || params.filters.contains_key("fingerprint") =>
        {
            let marks = dash
                .triage()
                .marks(&tenant.id)
                .map_err(ApiError::internal)?;
            std::sync::Arc::new(crate::ui::crash_groups(&marks))
        }
        _ => Default::default(),
    };
    let scope = tacet_query::ReportScope {
        k_threshold: tenant.policy.k_threshold,
        k_crashes: tenant.policy.k_threshold_crashes,
        zone,
        groups,
        accept_past_days: tacet_query::ReportScope::days_back(tenant.policy.accept_past),
    };
    Ok(state
        .query
        .report(&tenant.id, report, &params, &scope)
        .await?)
}
