//! The dashboard (`/ui`): usage analytics and crash triage as server-rendered HTML, behind a login with the
//! tenant's read key.
//!
//! ```text
//!  GET  /ui/login            the login form (the read key, in a password field; never in a URL)
//!  POST /ui/login            read key → session (session.rs) → cookie: HttpOnly, SameSite=Strict,
//!                            Secure and __Host- with TLS → 303 to the page asked for
//!  POST /ui/logout           ends the session on the server and clears the cookie
//!  GET  /ui/usage            headline numbers against the previous period, time series, top lists;
//!                            ?from&to and the report filters; every list's rows link to their filter
//!  GET  /ui/realtime         the last 30 minutes, reloading itself every 30 s
//!  GET  /ui/crashes          crash groups by count in the range, sparklines, triage state (?state=)
//!  GET  /ui/crashes/{fp}     one group: trend, scrubbed message and stack, crash-free rate per release
//!  POST /ui/crashes/{fp}     mark it resolved, ignored or open again (triage.rs, kept per tenant)
//!  GET  /ui/assets/ui.css    the only asset
//! ```
//!
//! **One query path.** Every number on a page comes from [`crate::routes::run_report`], the function
//! behind `GET /v1/reports/{name}`, encoded by the same JSON encoder as the API's answer; the pages
//! cannot disagree with the API. Rows the k-threshold left out are announced under their table.
//!
//! **Nothing from elsewhere.** No script at all, charts are inline SVG drawn here, the one stylesheet is
//! Tacet's own; `Content-Security-Policy: default-src 'none'; style-src 'self'; …` makes the browser
//! refuse anything else. Pages are `no-store`, send referrers only to Tacet itself (`same-origin`: a form posted with `no-referrer` carries `Origin: null`, which the origin check would refuse), and refuse to be framed.

mod html;
mod session;
mod triage;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{Datelike, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use tacet_query::format::{Format, encode};
use tacet_query::{FILTERS, ReportParams};

use crate::access::Role;
use crate::error::ApiError;
use crate::tenants::{AuthError, TenantEntry};
use crate::{AppState, client_ip};
use html::{Frame, Nav, esc};
pub use session::Sessions;
pub use triage::{GroupState, Triage};

const CSS: &str = include_str!("../../assets/ui.css");

/// The dashboard's settings (`[dashboard]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// Serve the dashboard under `/ui`. Off: every `/ui` address answers 404.
    pub enabled: bool,
    /// A session ends after this long without a request.
    #[serde(with = "humantime_serde")]
    pub session_idle: Duration,
    /// A session ends this long after its login, however busy.
    #[serde(with = "humantime_serde")]
    pub session_lifetime: Duration,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_idle: Duration::from_secs(2 * 3600),
            session_lifetime: Duration::from_secs(12 * 3600),
        }
    }
}

/// What the dashboard keeps: sessions (memory only) and crash triage marks.
#[derive(Debug)]
pub struct Dashboard {
    sessions: Sessions,
    triage: Triage,
    /// TLS is on: cookies are `Secure` and named `__Host-…`.
    secure: bool,
    lifetime: Duration,
}

impl Dashboard {
    /// `triage_dir`: where crash triage marks are kept (`<shared dir>/triage`); `None` keeps them in memory.
    pub fn new(
        config: &DashboardConfig,
        triage_dir: Option<std::path::PathBuf>,
        tls: bool,
    ) -> Self {
        Self {
            sessions: Sessions::new(config.session_idle, config.session_lifetime),
            triage: Triage::new(triage_dir),
            secure: tls,
            lifetime: config.session_lifetime,
        }
    }

    fn cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-tacet_session"
        } else {
            "tacet_session"
        }
    }

    fn set_cookie(&self, token: &str, max_age: u64) -> HeaderValue {
        HeaderValue::try_from(format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Strict{}; Max-Age={max_age}",
            self.cookie_name(),
            if self.secure { "; Secure" } else { "" }
        ))
        .expect("a cookie of ASCII characters")
    }
}

/// Removes a tenant's triage marks (offboarding). `dir` is `<shared dir>/triage`.
pub fn remove_triage(
    dir: &std::path::Path,
    tenant: &tacet_model::TenantId,
) -> std::io::Result<bool> {
    match std::fs::remove_file(dir.join(format!("{}.json", tenant.as_str()))) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(home))
        .route("/ui/", get(home))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", axum::routing::post(logout))
        .route("/ui/usage", get(usage))
        .route("/ui/realtime", get(realtime))
        .route("/ui/crashes", get(crashes))
        .route("/ui/crashes/{fingerprint}", get(crash_group).post(mark))
        .route("/ui/assets/ui.css", get(css))
}

// ---------------------------------------------------------------------------------------------------------
// Responses

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

fn secure_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response();
    secure_headers(&mut resp);
    resp
}

fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    resp.headers_mut().insert(
        header::LOCATION,
        HeaderValue::try_from(location).unwrap_or(HeaderValue::from_static("/ui/usage")),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A page that only says what went wrong and what to do.
fn problem(status: StatusCode, title: &str, message: &str, session: Option<&Viewer>) -> Response {
    let frame = Frame {
        title,
        nav: Nav::None,
        session: session.map(|v| (v.tenant.id.as_str(), v.session.csrf.as_str())),
        head: "",
    };
    html(
        status,
        html::page(
            &frame,
            &format!(r#"<p class="error" role="alert">{}</p>"#, esc(message)),
        ),
    )
}

fn not_enabled() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "Dashboard off",
        "The dashboard is turned off on this server ([dashboard] enabled = false).",
        None,
    )
}

/// Only addresses of the dashboard itself are followed after a login (no open redirect).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.starts_with("/ui//")
                && !n.contains('\\')
                && !n.starts_with("/ui/login")
                && !n.starts_with("/ui/logout") =>
        {
            n
        }
        _ => "/ui/usage",
    }
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn to_login(uri: &Uri) -> Response {
    let next = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/ui/usage");
    see_other(&format!("/ui/login?{}", query_string(&[("next", next)])))
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// A form posted from another site is refused (beside `SameSite=Strict`, for browsers without it).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
}

// ---------------------------------------------------------------------------------------------------------
// Sessions

/// The logged-in viewer of a page: an extractor that answers with a redirect to the login page (or 404 when
/// the dashboard is off) instead.
struct Viewer {
    dash: Arc<Dashboard>,
    tenant: TenantEntry,
    token: String,
    session: session::Session,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let (headers, uri) = (&parts.headers, &parts.uri);
        let dash = state.dashboard.clone().ok_or_else(not_enabled)?;
        let token = cookie(headers, dash.cookie_name()).ok_or_else(|| to_login(uri))?;
        let session = dash.sessions.get(token).ok_or_else(|| to_login(uri))?;
        match state
            .tenants
            .authenticate_hash(&session.key_hash, Role::Reports)
        {
            Ok(tenant) if tenant.id == session.tenant => Ok(Viewer {
                tenant: tenant.clone(),
                token: token.to_owned(),
                session,
                dash,
            }),
            // The key was revoked or expired, or its tenant is gone: the session ends with it.
            _ => {
                dash.sessions.end(token);
                Err(to_login(uri))
            }
        }
    }
}

impl Viewer {
    fn frame<'f>(&'f self, title: &'f str, nav: Nav) -> Frame<'f> {
        Frame {
            title,
            nav,
            session: Some((self.tenant.id.as_str(), self.session.csrf.as_str())),
            head: "",
        }
    }

    /// A page of the dashboard, 200.
    fn page(&self, title: &str, nav: Nav, body: &str) -> Response {
        html(StatusCode::OK, html::page(&self.frame(title, nav), body))
    }

    fn k(&self) -> u64 {
        self.tenant.policy.k_threshold
    }

    /// The k-threshold of crash triage reports.
    fn k_crashes(&self) -> u64 {
        self.tenant.policy.k_threshold_crashes
    }
}

async fn home(State(state): State<AppState>) -> Response {
    if state.dashboard.is_none() {
        return not_enabled();
    }
    see_other("/ui/usage")
}

fn login_page(status: StatusCode, next: &str, message: Option<&str>) -> Response {
    let alert = message
        .map(|m| {
            format!(
                r#"<p class="error" role="alert" id="login-error">{}</p>"#,
                esc(m)
            )
        })
        .unwrap_or_default();
    let body = format!(
        r#"{alert}<form method="post" action="/ui/login" class="login">
<input type="hidden" name="next" value="{next}">
<label for="key">Read key of your tenant</label>
<input id="key" name="key" type="password" autocomplete="current-password" required spellcheck="false"{invalid}>
<button type="submit">Log in</button>
</form>
<p class="hint">The key is sent once, in this form's body, and kept nowhere: the server keeps a session
for this browser (a cookie it cannot read from scripts) and forgets it when you log out.</p>"#,
        next = esc(next),
        invalid = if message.is_some() {
            r#" aria-invalid="true" aria-describedby="login-error""#
        } else {
            ""
        },
    );
    let frame = Frame {
        title: "Log in",
        nav: Nav::None,
        session: None,
        head: "",
    };
    html(status, html::page(&frame, &body))
}

async fn login_form(
    viewer: Result<Viewer, Response>,
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if state.dashboard.is_none() {
        return not_enabled();
    }
    let next = safe_next(q.get("next").map(String::as_str));
    // Already logged in: straight on.
    if viewer.is_ok() {
        return see_other(next);
    }
    login_page(StatusCode::OK, next, None)
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(dash) = state.dashboard.as_deref() else {
        return not_enabled();
    };
    if !same_origin(&headers) {
        return problem(
            StatusCode::FORBIDDEN,
            "Refused",
            "This login form was posted from another site; open the dashboard's own login page.",
            None,
        );
    }
    let form = form(&body);
    let next = safe_next(form.get("next").map(String::as_str));
    let client = client_ip(peer, &headers, &state.trusted_proxies);
    if let Err(wait) = dash.sessions.login_allowed(client) {
        let mut resp = login_page(
            StatusCode::TOO_MANY_REQUESTS,
            next,
            Some(&format!(
                "Too many failed logins from this address; try again in {} minutes.",
                wait.as_secs().div_ceil(60)
            )),
        );
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return resp;
    }
    let key = form.get("key").map(|k| k.trim()).unwrap_or_default();
    if key.is_empty() {
        return login_page(
            StatusCode::BAD_REQUEST,
            next,
            Some("Enter your tenant's read key."),
        );
    }
    match state.tenants.authenticate(key, Role::Reports) {
        Ok(tenant) => {
            dash.sessions.login_succeeded(client);
            let token = dash
                .sessions
                .open(tenant.id.clone(), state.tenants.access().hash(key));
            tracing::info!(tenant = %tenant.id, "dashboard login");
            let mut resp = see_other(next);
            resp.headers_mut().insert(
                header::SET_COOKIE,
                dash.set_cookie(&token, dash.lifetime.as_secs()),
            );
            resp
        }
        Err(e) => {
            dash.sessions.login_failed(client);
            let (status, message) = match e {
                AuthError::WrongRole { have, .. } => (
                    StatusCode::FORBIDDEN,
                    format!("That is the tenant's {have} key; the dashboard takes its read key."),
                ),
                AuthError::Refused(r) => (
                    StatusCode::UNAUTHORIZED,
                    format!("That key cannot log in: {r}."),
                ),
                _ => (
                    StatusCode::UNAUTHORIZED,
                    "That is not a read key of any tenant here; check it and try again.".to_owned(),
                ),
            };
            login_page(status, next, Some(&message))
        }
    }
}

async fn logout(
    viewer: Result<Viewer, Response>,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(dash) = state.dashboard.as_deref() else {
        return not_enabled();
    };
    let clear = dash.set_cookie("", 0);
    if let Ok(v) = viewer {
        if form(&body).get("csrf") != Some(&v.session.csrf) || !same_origin(&headers) {
            return problem(
                StatusCode::FORBIDDEN,
                "Refused",
                "This logout did not come from a dashboard page; use the Log out button.",
                Some(&v),
            );
        }
        v.dash.sessions.end(&v.token);
        tracing::info!(tenant = %v.tenant.id, "dashboard logout");
    }
    let mut resp = see_other("/ui/login");
    resp.headers_mut().insert(header::SET_COOKIE, clear);
    resp
}

async fn css(headers: HeaderMap) -> Response {
    static ETAG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        use sha2::Digest;
        format!(
            "\"{}\"",
            hex::encode(&sha2::Sha256::digest(CSS.as_bytes())[..12])
        )
    });
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == *ETAG)
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::ETAG, ETAG.as_str()),
        ],
        CSS,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------------------
// What a page shows: the range and filters, and the reports behind it

/// The range and filters of a page, from its query string (the same names as the report parameters).
#[derive(Debug, Clone)]
struct View {
    from: NaiveDate,
    to: NaiveDate,
    filters: BTreeMap<&'static str, String>,
    error: Option<String>,
    /// Page parameters that are not report parameters (the crash list's `state`): kept by every link and
    /// the filter form.
    keep: Vec<(&'static str, String)>,
}

impl View {
    fn parse(q: &HashMap<String, String>, today: NaiveDate) -> Self {
        let given: BTreeMap<String, String> = q
            .iter()
            .filter(|(k, v)| {
                (k.as_str() == "from" || k.as_str() == "to" || FILTERS.iter().any(|(f, _)| f == k))
                    && !v.trim().is_empty()
            })
            .map(|(k, v)| (k.clone(), v.trim().to_owned()))
            .collect();
        match ReportParams::parse(&given, today) {
            Ok(p) => View {
                from: p.from,
                to: p.to,
                filters: p.filters,
                error: None,
                keep: Vec::new(),
            },
            Err(e) => {
                let p = ReportParams::parse(&BTreeMap::new(), today).expect("the defaults parse");
                View {
                    from: p.from,
                    to: p.to,
                    filters: BTreeMap::new(),
                    error: Some(format!(
                        "{e}; showing the last 30 days without filters instead"
                    )),
                    keep: Vec::new(),
                }
            }
        }
    }

    fn days(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }

    /// Every day of the range, `2026-11-29`.
    fn day_keys(&self) -> Vec<String> {
        self.from
            .iter_days()
            .take_while(|d| *d <= self.to)
            .map(|d| d.to_string())
            .collect()
    }

    /// The report parameters of this view.
    fn params(&self) -> BTreeMap<String, String> {
        let mut p: BTreeMap<String, String> = self
            .filters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        p.insert("from".into(), self.from.to_string());
        p.insert("to".into(), self.to.to_string());
        p
    }

    /// The previous period of the same length.
    fn previous(&self) -> BTreeMap<String, String> {
        let mut p = self.params();
        let to = self.from - chrono::Days::new(1);
        let from = to - chrono::Days::new(self.days() as u64 - 1);
        p.insert("from".into(), from.to_string());
        p.insert("to".into(), to.to_string());
        p
    }

    /// This view's query string with some parameters set (`Some`) or removed (`None`).
    fn href(&self, path: &str, change: &[(&str, Option<&str>)]) -> String {
        let mut p = self.params();
        for (k, v) in change {
            match v {
                Some(v) => p.insert((*k).to_owned(), (*v).to_owned()),
                None => p.remove(*k),
            };
        }
        for (k, v) in &self.keep {
            if !change.iter().any(|(c, _)| c == k) {
                p.insert((*k).to_owned(), v.clone());
            }
        }
        let pairs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        format!("{path}?{}", query_string(&pairs))
    }
}

/// A report's answer as the JSON API gives it.
#[derive(Debug)]
struct Rows {
    columns: Vec<String>,
    rows: Vec<Map<String, Value>>,
    suppressed: usize,
}

async fn report(
    state: &AppState,
    tenant: &TenantEntry,
    name: &str,
    params: BTreeMap<String, String>,
) -> Result<Rows, ApiError> {
    let out = crate::routes::run_report(state, tenant, name, params).await?;
    let bytes = encode(Format::Json, &out.schema, &out.batches).map_err(ApiError::internal)?;
    let rows: Vec<Map<String, Value>> =
        serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
    Ok(Rows {
        columns: out
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        rows,
        suppressed: out.suppressed,
    })
}

fn with(mut p: BTreeMap<String, String>, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    for (k, v) in extra {
        p.insert((*k).to_owned(), (*v).to_owned());
    }
    p
}

fn failed(e: &ApiError) -> String {
    format!(
        r#"<p class="error" role="alert">This report failed: {}</p>"#,
        esc(&e.message)
    )
}

fn number(row: Option<&Map<String, Value>>, column: &str) -> Option<f64> {
    row.and_then(|r| r.get(column)).and_then(Value::as_f64)
}

/// The filter a column of a report's rows sets when its value is clicked (the same names).
fn filter_of(column: &str) -> Option<&'static str> {
    FILTERS.iter().map(|(f, _)| *f).find(|f| *f == column)
}

/// Now in the tenant's time zone (reports' days, hours and minutes are local).
fn local_now(state: &AppState, tenant: &TenantEntry) -> chrono::DateTime<chrono_tz::Tz> {
    let zone = tenant.policy.timezone.unwrap_or(chrono_tz::UTC);
    state.pipeline.clock().now().with_timezone(&zone)
}

/// A report's timestamp (`2026-11-29T11:04:05.123+01:00` in the tenant's zone, or without an offset: UTC).
fn parse_time(s: &str) -> Option<chrono::DateTime<Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let s = s.trim_end_matches('Z');
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// A bar chart of report rows: each series (column, legend) aligned to the buckets (`key` column, `keys`,
/// their `labels`) by [`aligned`].
fn chart(
    title: &str,
    rows: &[Map<String, Value>],
    (key, keys, labels): (&str, &[String], &[String]),
    series: &[(&str, &str)],
) -> String {
    let columns: Vec<&str> = series.iter().map(|(c, _)| *c).collect();
    let values = aligned(rows, key, keys, &columns);
    let named: Vec<(&str, Vec<f64>)> = series.iter().map(|(_, l)| *l).zip(values).collect();
    html::bars(title, labels, &named)
}

/// Each of `columns` at every one of `keys`, zero where no row has it. A row is matched by the first
/// characters of its `key` column, as many as the keys have: a day `2026-11-29`, an hour `2026-11-29T10`,
/// a minute `2026-11-29T10:04` (the JSON answer's timestamps are `2026-11-29T10:04:05…`).
fn aligned(
    rows: &[Map<String, Value>],
    key: &str,
    keys: &[String],
    columns: &[&str],
) -> Vec<Vec<f64>> {
    let len = keys.first().map_or(0, String::len);
    let by: HashMap<&str, &Map<String, Value>> = rows
        .iter()
        .filter_map(|r| Some((r.get(key)?.as_str()?.get(..len)?, r)))
        .collect();
    columns
        .iter()
        .map(|c| {
            keys.iter()
                .map(|k| {
                    by.get(k.as_str())
                        .and_then(|r| number(Some(r), c))
                        .unwrap_or(0.0)
                })
                .collect()
        })
        .collect()
}

/// The filters the form has a field for: name, label, and the choices of a select (else a text field).
const FORM_FILTERS: &[(&str, &str, Option<&[&str]>)] = &[
    ("page", "Page", None),
    (
        "referrer_class",
        "Referrer class",
        Some(&tacet_privacy::REFERRER_CLASSES),
    ),
    ("browser", "Browser", None),
    ("os", "Operating system", None),
    ("device", "Device", Some(&tacet_privacy::DEVICES)),
    ("country", "Country", None),
    ("utm_source", "UTM source", None),
];

/// The range picker and the filter form, with the active filters as removable chips.
fn controls(view: &View, path: &str, today: NaiveDate) -> String {
    let mut out = String::new();
    if let Some(e) = &view.error {
        out.push_str(&format!(r#"<p class="error" role="alert">{}</p>"#, esc(e)));
    }
    out.push_str(r#"<nav class="presets" aria-label="Date range">"#);
    let day = |n: u64| (today - chrono::Days::new(n)).to_string();
    let month_start = today.with_day(1).unwrap_or(today).to_string();
    for (label, from, to) in [
        ("Today", today.to_string(), today.to_string()),
        ("Yesterday", day(1), day(1)),
        ("Last 7 days", day(6), today.to_string()),
        ("Last 30 days", day(29), today.to_string()),
        ("This month", month_start, today.to_string()),
        ("Last 90 days", day(89), today.to_string()),
    ] {
        let current = view.from.to_string() == from && view.to.to_string() == to;
        out.push_str(&format!(
            r#"<a href="{}"{}>{label}</a>"#,
            esc(&view.href(path, &[("from", Some(&from)), ("to", Some(&to))])),
            if current {
                r#" aria-current="true""#
            } else {
                ""
            }
        ));
    }
    out.push_str("</nav>");
    out.push_str(&format!(
        r#"<form method="get" action="{path}" class="controls">
<div><label for="from">From</label><input type="date" id="from" name="from" value="{}"></div>
<div><label for="to">To</label><input type="date" id="to" name="to" value="{}"></div>"#,
        view.from, view.to
    ));
    let value = |f: &str| view.filters.get(f).map(String::as_str).unwrap_or_default();
    let text = |name: &str, label: &str| {
        format!(
            r#"<div><label for="f-{name}">{label}</label><input id="f-{name}" name="{name}" value="{}"></div>"#,
            esc(value(name))
        )
    };
    let select = |name: &str, label: &str, options: &[&str]| {
        let mut s = format!(
            r#"<div><label for="f-{name}">{label}</label><select id="f-{name}" name="{name}"><option value="">any</option>"#
        );
        for o in options {
            s.push_str(&format!(
                r#"<option{}>{o}</option>"#,
                if value(name) == *o { " selected" } else { "" }
            ));
        }
        s.push_str("</select></div>");
        s
    };
    for (name, label, options) in FORM_FILTERS {
        out.push_str(&match options {
            Some(options) => select(name, label, options),
            None => text(name, label),
        });
    }
    for (k, v) in &view.keep {
        out.push_str(&format!(
            r#"<input type="hidden" name="{k}" value="{}">"#,
            esc(v)
        ));
    }
    // Filters the form has no field for travel along unchanged.
    for (f, v) in &view.filters {
        if !FORM_FILTERS.iter().any(|(name, _, _)| name == f) {
            out.push_str(&format!(
                r#"<input type="hidden" name="{f}" value="{}">"#,
                esc(v)
            ));
        }
    }
    out.push_str(r#"<div><button type="submit">Apply</button></div></form>"#);
    if !view.filters.is_empty() {
        out.push_str(r#"<p class="chips" aria-label="Active filters">Filtered by "#);
        for (f, v) in &view.filters {
            out.push_str(&format!(
                r#"<a class="chip" data-filter="{f}" href="{}" aria-label="Remove the filter {f} = {v}">{f}: {v} <span aria-hidden="true">×</span></a> "#,
                esc(&view.href(path, &[(f, None)])),
                f = esc(f),
                v = esc(v),
            ));
        }
        out.push_str("</p>");
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// Usage

/// What the headline shows: column, label, format, and whether up is good.
const HEADLINE: &[(&str, &str, Fmt, bool)] = &[
    ("visitors", "Visitors", Fmt::Int, true),
    ("visits", "Visits", Fmt::Int, true),
    ("pageviews", "Page views", Fmt::Int, true),
    ("bounce_rate", "Bounce rate", Fmt::Percent, false),
    ("visit_seconds", "Visit duration", Fmt::Duration, true),
];

#[derive(Debug, Clone, Copy)]
enum Fmt {
    Int,
    Percent,
    Duration,
}

fn headline(cur: &Rows, prev: Option<&Rows>, days: i64, k: u64) -> String {
    let row = cur.rows.first();
    // Fewer than k visitors: the numbers were withheld (threshold.rs); say so instead of showing dashes.
    if row
        .and_then(|r| r.get("suppressed"))
        .is_some_and(Value::is_string)
    {
        let mut out = String::from(r#"<dl class="headline withheld">"#);
        for &(column, label, _, _) in HEADLINE {
            out.push_str(&format!(
                r#"<div class="metric" data-metric="{column}"><dt>{label}</dt><dd><span class="value" data-value="" data-withheld="true">{}</span></dd></div>"#,
                if column == "visitors" {
                    format!("fewer than {k}")
                } else {
                    "withheld".to_owned()
                }
            ));
        }
        out.push_str(&format!(
            r#"</dl><p class="suppressed" data-suppressed="1">These numbers describe fewer than {k} visitors, so they are withheld (the k-threshold of this tenant's privacy policy).</p>"#
        ));
        return out;
    }
    let mut out = String::from(r#"<dl class="headline">"#);
    for &(column, label, fmt, up_is_good) in HEADLINE {
        let value = row
            .and_then(|r| r.get(column))
            .cloned()
            .unwrap_or(Value::Null);
        let shown = match (value.as_f64(), fmt) {
            (None, _) => "—".to_owned(),
            (Some(v), Fmt::Int) => html::int(v as i64),
            (Some(v), Fmt::Percent) => html::percent(v),
            (Some(v), Fmt::Duration) => html::duration(v),
        };
        let change = match (
            value.as_f64(),
            prev.and_then(|p| number(p.rows.first(), column)),
        ) {
            (Some(c), Some(p)) if p == 0.0 && c > 0.0 => ("new".to_owned(), "up"),
            (Some(c), Some(p)) if p != 0.0 => {
                let rel = (c - p) / p;
                let dir = if rel > 0.0005 {
                    "up"
                } else if rel < -0.0005 {
                    "down"
                } else {
                    "flat"
                };
                (format!("{:+.1}%", rel * 100.0), dir)
            }
            _ => ("—".to_owned(), "flat"),
        };
        let good = match (change.1, up_is_good) {
            ("up", true) | ("down", false) => " good",
            ("down", true) | ("up", false) => " bad",
            _ => "",
        };
        out.push_str(&format!(
            r#"<div class="metric" data-metric="{column}"><dt>{label}</dt><dd><span class="value" data-value="{raw}">{shown}</span> <span class="change {dir}{good}" data-change="{text}">{text} <span class="vs">vs the previous {days} {unit}</span></span></dd></div>"#,
            raw = esc(&html::raw(&value)),
            dir = change.1,
            text = esc(&change.0),
            unit = if days == 1 { "day" } else { "days" },
        ));
    }
    out.push_str("</dl>");
    out
}

/// One card with a report's top rows; values link to their filter.
fn card(v: &Viewer, view: &View, name: &str, title: &str, rows: &Result<Rows, ApiError>) -> String {
    let id = format!("h-{name}");
    let mut out = format!(
        r#"<section class="card" data-report="{name}" aria-labelledby="{id}"><h2 id="{id}">{}</h2>"#,
        esc(title)
    );
    match rows {
        Ok(r) => {
            let link = |column: &str, value: &Value| {
                let f = filter_of(column)?;
                let value = value.as_str()?;
                Some(view.href("/ui/usage", &[(f, Some(value))]))
            };
            out.push_str(&html::table(&id, &r.columns, &r.rows, &link));
            out.push_str(&html::suppressed(r.suppressed, v.k()));
        }
        Err(e) => out.push_str(&failed(e)),
    }
    out.push_str("</section>");
    out
}

const LISTS: &[(&str, &str)] = &[
    ("pages", "Top pages"),
    ("entry_pages", "Entry pages"),
    ("referrers", "Sources"),
    ("campaigns", "Campaigns"),
    ("browsers", "Browsers"),
    ("operating_systems", "Operating systems"),
    ("devices", "Devices"),
    ("countries", "Countries"),
    ("events", "Custom events"),
];

async fn usage(
    v: Viewer,
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let today = local_now(&state, &v.tenant).date_naive();
    let view = View::parse(&q, today);
    let interval = if view.days() == 1 { "hour" } else { "day" };
    let lists = futures::future::join_all(LISTS.iter().map(|(name, _)| {
        report(
            &state,
            &v.tenant,
            name,
            with(view.params(), &[("limit", "10")]),
        )
    }));
    let (cur, prev, series, lists) = tokio::join!(
        report(&state, &v.tenant, "overview", view.params()),
        report(&state, &v.tenant, "overview", view.previous()),
        report(
            &state,
            &v.tenant,
            "timeseries",
            with(view.params(), &[("interval", interval)])
        ),
        lists,
    );

    let mut body = controls(&view, "/ui/usage", today);
    body.push_str(&format!(
        r#"<p class="range">{} to {} (UTC days)</p>"#,
        view.from, view.to
    ));
    match &cur {
        Ok(c) => body.push_str(&headline(c, prev.as_ref().ok(), view.days(), v.k())),
        Err(e) => body.push_str(&failed(e)),
    }
    body.push_str(r#"<section class="card wide" aria-labelledby="h-series"><h2 id="h-series">Visitors and page views</h2>"#);
    match &series {
        Ok(s) => {
            let (keys, labels) = if interval == "hour" {
                let keys: Vec<String> = (0..24).map(|h| format!("{}T{h:02}", view.from)).collect();
                let labels = (0..24).map(|h| format!("{h:02}:00")).collect();
                (keys, labels)
            } else {
                (view.day_keys(), view.day_keys())
            };
            body.push_str(&chart(
                "Visitors and page views over the range",
                &s.rows,
                ("bucket", &keys, &labels),
                &[("visitors", "visitors"), ("pageviews", "page views")],
            ));
            body.push_str(&html::suppressed(s.suppressed, v.k()));
        }
        Err(e) => body.push_str(&failed(e)),
    }
    body.push_str(r#"</section><div class="grid">"#);
    for ((name, title), rows) in LISTS.iter().zip(&lists) {
        body.push_str(&card(&v, &view, name, title, rows));
    }
    body.push_str("</div>");
    v.page("Usage", Nav::Usage, &body)
}

// ---------------------------------------------------------------------------------------------------------
// Realtime

async fn realtime(
    v: Viewer,
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let now = local_now(&state, &v.tenant);
    let view = View::parse(&q, now.date_naive());
    let mut params: BTreeMap<String, String> = view
        .filters
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    params.insert("limit".into(), "100".into());
    let rows = report(&state, &v.tenant, "realtime", params).await;
    let mut body = String::new();
    if let Some(e) = &view.error {
        body.push_str(&format!(r#"<p class="error" role="alert">{}</p>"#, esc(e)));
    }
    body.push_str(&format!(
        r#"<p class="range" role="status">The last 30 minutes, updated {} ({}); this page reloads itself every 30 seconds.</p>"#,
        now.format("%H:%M:%S"),
        esc(now.timezone().name())
    ));
    match &rows {
        Ok(r) => {
            let sum = |c: &str| {
                r.rows
                    .iter()
                    .map(|x| number(Some(x), c).unwrap_or(0.0))
                    .sum::<f64>()
            };
            body.push_str(r#"<dl class="headline">"#);
            for (column, label) in [
                ("pageviews", "Page views"),
                ("events", "Events"),
                ("crashes", "Crashes"),
            ] {
                let total = sum(column);
                body.push_str(&format!(
                    r#"<div class="metric" data-metric="{column}"><dt>{label}</dt><dd><span class="value" data-value="{total}">{}</span></dd></div>"#,
                    html::int(total as i64)
                ));
            }
            body.push_str("</dl>");
            let minutes: Vec<String> = (0..30)
                .rev()
                .map(|i| {
                    (now - chrono::Duration::minutes(i))
                        .format("%Y-%m-%dT%H:%M")
                        .to_string()
                })
                .collect();
            let labels: Vec<String> = minutes.iter().map(|m| m[11..].to_owned()).collect();
            body.push_str(r#"<section class="card wide" aria-labelledby="h-minutes"><h2 id="h-minutes">Minute by minute (UTC)</h2>"#);
            body.push_str(&chart(
                "Visitors and page views per minute",
                &r.rows,
                ("minute", &minutes, &labels),
                &[("visitors", "visitors"), ("pageviews", "page views")],
            ));
            body.push_str(&html::suppressed(r.suppressed, v.k()));
            body.push_str("</section>");
        }
        Err(e) => body.push_str(&failed(e)),
    }
    let mut frame = v.frame("Realtime", Nav::Realtime);
    frame.head = r#"<meta http-equiv="refresh" content="30">"#;
    html(StatusCode::OK, html::page(&frame, &body))
}

// ---------------------------------------------------------------------------------------------------------
// Crash triage

/// A group's state as shown: a resolved group that crashed again after it was marked is open again.
fn shown_state(
    marks: &triage::Marks,
    fingerprint: &str,
    last_seen: Option<&str>,
) -> (&'static str, GroupState) {
    match marks.get(fingerprint) {
        Some(m) if m.state == GroupState::Resolved => {
            if last_seen
                .and_then(parse_time)
                .is_some_and(|t| m.at().is_none_or(|at| t > at))
            {
                ("regressed", GroupState::Open)
            } else {
                ("resolved", GroupState::Resolved)
            }
        }
        Some(m) => (m.state.as_str(), m.state),
        None => ("open", GroupState::Open),
    }
}

/// Sparklines drawn per page at most (each is a `crash_trend` report).
const SPARKLINES: usize = 25;

async fn crashes(
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
                    Some(&v),
                );
            }
        },
    };
    // The tab stays chosen when the range or a filter changes.
    view.keep
        .push(("state", wanted.map_or("all", GroupState::as_str).to_owned()));
    let marks = match v.dash.triage.marks(&v.tenant.id) {
        Ok(m) => m,
        Err(e) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Crashes",
                &ApiError::internal(e).message,
                Some(&v),
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
    let states: Vec<(&'static str, GroupState)> = groups
        .rows
        .iter()
        .map(|r| {
            shown_state(
                &marks,
                r.get("fingerprint")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                r.get("last_seen").and_then(Value::as_str),
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
    let shown: Vec<(&Map<String, Value>, &'static str)> = groups
        .rows
        .iter()
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
        r#"<section class="card wide" aria-labelledby="h-groups"><h2 id="h-groups">Crash groups, most crashes first ({} to {})</h2><div class="scroll"><table aria-labelledby="h-groups"><thead><tr>
<th scope="col">Group</th><th scope="col">Trend</th><th scope="col" class="num">Crashes</th><th scope="col" class="num">Affected visitors</th><th scope="col">First seen</th><th scope="col">Last seen</th><th scope="col">Releases</th><th scope="col">State</th></tr></thead><tbody>"#,
        view.from, view.to
    ));
    if shown.is_empty() {
        body.push_str(r#"<tr><td colspan="8" class="empty">No crash groups in this state for this range.</td></tr>"#);
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
            r#"<tr data-fingerprint="{fp}"><td><a href="{href}"><strong>{ty}</strong></a><br><span class="message">{msg}</span></td><td>{spark}</td><td class="num" data-col="crashes" data-value="{cr}">{crs}</td><td class="num" data-col="visitors" data-value="{vi}">{vis}</td><td>{first}</td><td>{last}</td><td>{rel}</td><td><span class="state {label}">{label}</span></td></tr>"#,
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

async fn crash_group(
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
            Some(&v),
        );
    }
    let today = local_now(&state, &v.tenant).date_naive();
    let view = View::parse(&q, today);
    let p = with(view.params(), &[("fingerprint", &fp)]);
    let (group, trend, health) = tokio::join!(
        report(&state, &v.tenant, "crash_group", p.clone()),
        report(&state, &v.tenant, "crash_trend", p),
        report(&state, &v.tenant, "release_health", view.params()),
    );
    let marks = v.dash.triage.marks(&v.tenant.id).unwrap_or_default();
    let mut body = controls(&view, &format!("/ui/crashes/{fp}"), today);
    body.push_str(&format!(
        r#"<p><a href="{}">← All crash groups</a></p>"#,
        esc(&view.href("/ui/crashes", &[]))
    ));
    let title = match &group {
        Ok(g) => match g.rows.first() {
            Some(r) => {
                let s = |c: &str| r.get(c).map(|x| html::cell(c, x)).unwrap_or_default();
                let (label, _) =
                    shown_state(&marks, &fp, r.get("last_seen").and_then(Value::as_str));
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
                body.push_str(&format!(
                    r#"<section class="card wide" aria-labelledby="h-message"><h2 id="h-message">Message (scrubbed)</h2><pre id="message">{}</pre>
<h2 id="h-stack">Stack (scrubbed, top frame first)</h2><pre id="stack">{}</pre>{}</section>"#,
                    esc(&s("example_message")),
                    esc(r.get("example_stack").and_then(Value::as_str).unwrap_or("(no stack was sent)")),
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
    body.push_str(r#"</section><section class="card wide" aria-labelledby="h-health"><h2 id="h-health">Crash-free rate per release (all groups)</h2>"#);
    match &health {
        Ok(h) => {
            body.push_str(&html::table("h-health", &h.columns, &h.rows, &|_, _| None));
            body.push_str(&html::suppressed(h.suppressed, v.k()));
        }
        Err(e) => body.push_str(&failed(e)),
    }
    body.push_str("</section>");
    v.page(&title, Nav::Crashes, &body)
}

/// The stack as the fingerprint sees it: each frame normalised (no host, position, bundle hash or number),
/// the frames it groups by marked, library frames named as such.
fn normalised_stack(stack: &str) -> String {
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

async fn mark(
    v: Viewer,
    State(state): State<AppState>,
    Path(fp): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form(&body);
    if form.get("csrf") != Some(&v.session.csrf) || !same_origin(&headers) {
        return problem(
            StatusCode::FORBIDDEN,
            "Refused",
            "This change did not come from the crash group's page; open the page and use its buttons.",
            Some(&v),
        );
    }
    if !triage::valid_fingerprint(&fp) {
        return problem(
            StatusCode::NOT_FOUND,
            "No such crash group",
            "A crash group's address ends in its fingerprint, 16 hexadecimal characters.",
            Some(&v),
        );
    }
    let Some(to) = form.get("state").and_then(|s| GroupState::parse(s)) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Crash group",
            "state must be one of resolved, ignored, open",
            Some(&v),
        );
    };
    if let Err(e) = v
        .dash
        .triage
        .set(&v.tenant.id, &fp, to, state.pipeline.clock().now())
    {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Crash group",
            &ApiError::internal(e).message,
            Some(&v),
        );
    }
    tracing::info!(tenant = %v.tenant.id, state = to.as_str(), "crash group marked");
    let fallback = format!("/ui/crashes/{fp}");
    let back = form
        .get("back")
        .map(String::as_str)
        .filter(|b| b.starts_with(&format!("/ui/crashes/{fp}")))
        .unwrap_or(&fallback);
    see_other(back)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_dashboard_addresses_are_followed_after_login() {
        assert_eq!(
            safe_next(Some("/ui/crashes?from=2026-01-01")),
            "/ui/crashes?from=2026-01-01"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/ui//evil.example",
            "/v1/sql",
            "/ui/logout",
            "/ui/\\evil",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/usage", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/usage");
    }

    #[test]
    fn a_view_keeps_its_filters_and_knows_its_previous_period() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        let q: HashMap<String, String> = [
            ("from", "2026-11-01"),
            ("to", "2026-11-07"),
            ("page", "/a b"),
            ("browser", ""),
            ("state", "open"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        let v = View::parse(&q, today);
        assert!(v.error.is_none());
        assert_eq!(v.days(), 7);
        let prev = v.previous();
        assert_eq!(
            (prev["from"].as_str(), prev["to"].as_str()),
            ("2026-10-25", "2026-10-31")
        );
        assert_eq!(
            v.href("/ui/usage", &[("country", Some("DE")), ("page", None)]),
            "/ui/usage?country=DE&from=2026-11-01&to=2026-11-07"
        );
        assert_eq!(
            v.href("/ui/usage", &[]),
            "/ui/usage?from=2026-11-01&page=%2Fa+b&to=2026-11-07"
        );
        let bad: HashMap<String, String> = [("from".to_owned(), "yesterday".to_owned())].into();
        let v = View::parse(&bad, today);
        assert!(v.error.unwrap().contains("not a date"));
        assert_eq!(v.to, today);
    }

    #[test]
    fn series_are_aligned_to_their_buckets_with_zeros_between() {
        let rows: Vec<Map<String, Value>> = serde_json::from_value(json!([
            {"bucket": "2026-11-28T00:00:00", "visitors": 3, "pageviews": 7},
            {"bucket": "2026-11-30T00:00:00", "visitors": 1, "pageviews": 1},
        ]))
        .unwrap();
        let days: Vec<String> = ["2026-11-28", "2026-11-29", "2026-11-30"]
            .map(String::from)
            .into();
        assert_eq!(
            aligned(&rows, "bucket", &days, &["visitors", "pageviews"]),
            [vec![3.0, 0.0, 1.0], vec![7.0, 0.0, 1.0]]
        );
        let minutes: Vec<Map<String, Value>> =
            serde_json::from_value(json!([{"minute": "2026-11-29T23:59:00", "visitors": 2}]))
                .unwrap();
        let keys: Vec<String> = ["2026-11-28T23:59", "2026-11-29T23:59"]
            .map(String::from)
            .into();
        // The same minute of another day is another bucket.
        assert_eq!(
            aligned(&minutes, "minute", &keys, &["visitors"]),
            [vec![0.0, 2.0]]
        );
    }

    #[test]
    fn a_resolved_group_that_crashes_again_is_open() {
        let mut marks = triage::Marks::new();
        let at = "2026-11-20T12:00:00Z".parse().unwrap();
        marks.insert(
            "0123456789abcdef".into(),
            triage::Mark::new(GroupState::Resolved, at),
        );
        assert_eq!(
            shown_state(&marks, "0123456789abcdef", Some("2026-11-20T11:59:59.000")),
            ("resolved", GroupState::Resolved)
        );
        assert_eq!(
            shown_state(&marks, "0123456789abcdef", Some("2026-11-21T08:00:00.000")),
            ("regressed", GroupState::Open)
        );
        assert_eq!(
            shown_state(&marks, "fedcba9876543210", None),
            ("open", GroupState::Open)
        );
    }
}
