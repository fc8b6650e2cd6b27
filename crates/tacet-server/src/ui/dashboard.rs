//! The dashboard's state (`Dashboard`: sessions and triage marks), who is looking (`Viewer`, the session
//! extractor), and the pages around a session: home, login, logout, the stylesheet.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::html::{self, Frame, Nav, esc};
use super::respond::*;
use super::session::{self, Sessions};
use super::switch;
use super::triage::{GroupState, Triage};
use crate::access::Role;
use crate::tenants::{AuthError, TenantEntry};
use crate::{AppState, client_ip};

pub(crate) const CSS: &str = include_str!("../../assets/ui.css");

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
    pub(crate) sessions: Sessions,
    pub(crate) triage: Triage,
    /// TLS is on: cookies are `Secure` and named `__Host-…`.
    pub(crate) secure: bool,
    pub(crate) lifetime: Duration,
}

impl Dashboard {
    /// `triage_dir`: where crash triage marks are kept (`<shared dir>/triage`); `None` keeps them in memory.
    /// `session_key` signs sessions (`AccessKeys::derive`, the same on every node sharing the key store);
    /// `sessions_dir` records logouts for every node (`<shared dir>/sessions`; `None`: this process only).
    pub fn new(
        config: &DashboardConfig,
        triage_dir: Option<tacet_state::Dir>,
        tls: bool,
        session_key: [u8; 32],
        sessions_dir: Option<tacet_state::Dir>,
    ) -> Self {
        Self {
            sessions: Sessions::new(
                config.session_idle,
                config.session_lifetime,
                session_key,
                sessions_dir,
            ),
            triage: Triage::new(triage_dir),
            secure: tls,
            lifetime: config.session_lifetime,
        }
    }

    /// Marks a crash group (from the dashboard or the admin API) and records it in the audit log.
    pub fn mark(
        &self,
        state: &AppState,
        tenant: &tacet_model::TenantId,
        fingerprint: &str,
        to: GroupState,
        release: Option<&str>,
        actor: &str,
    ) -> std::io::Result<()> {
        self.triage.set(
            tenant,
            fingerprint,
            to,
            state.pipeline.clock().now(),
            release,
        )?;
        if let Some(steward) = state.steward.as_deref() {
            steward
                .audit()
                .append(
                    actor,
                    "triage.mark",
                    Some(tenant.as_str()),
                    serde_json::json!({"fingerprint": fingerprint, "state": to.as_str(), "release": release}),
                )
                .map_err(std::io::Error::other)?;
        }
        tracing::info!(tenant = %tenant, state = to.as_str(), "crash group marked");
        Ok(())
    }

    /// The crash triage marks.
    pub fn triage(&self) -> &Triage {
        &self.triage
    }

    pub(crate) fn cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-tacet_session"
        } else {
            "tacet_session"
        }
    }

    pub(crate) fn set_cookie(&self, token: &str, max_age: u64) -> HeaderValue {
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
    dir: &tacet_state::Dir,
    tenant: &tacet_model::TenantId,
) -> std::io::Result<bool> {
    dir.delete(&format!("{}.json", tenant.as_str()))
}

/// Checks a dashboard request's session token once, for the `Viewer` (it finds the session in the request's
/// extensions), and renews the cookie when the token is over a minute old (the idle timeout counts from the
/// last request), unless the answer sets the cookie itself (login, logout).
pub(crate) async fn renew_session(
    State(state): State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let checked = state.dashboard.as_ref().and_then(|dash| {
        let token = cookie(req.headers(), dash.cookie_name())?;
        let (session, renewed) = dash.sessions.get(token)?;
        let cookie = renewed.map(|t| dash.set_cookie(&t, dash.sessions.remaining(&session)));
        let others = switch::read(&state, dash, req.headers(), Some(session.tenant.as_str()));
        Some((session, cookie, others))
    });
    let renewed = match checked {
        Some((session, cookie, others)) => {
            req.extensions_mut().insert(session);
            req.extensions_mut().insert(others);
            cookie
        }
        None => None,
    };
    let mut resp = next.run(req).await;
    if let Some(cookie) = renewed
        && !resp.headers().contains_key(header::SET_COOKIE)
    {
        resp.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    resp
}

/// The logged-in viewer of a page: an extractor that answers with a redirect to the login page (or 404 when
/// the dashboard is off) instead.
pub(crate) struct Viewer {
    pub(crate) dash: Arc<Dashboard>,
    pub(crate) tenant: TenantEntry,
    pub(crate) session: session::Session,
    /// The session was opened through a share link (read-only, and no share-link page).
    pub(crate) shared: bool,
    /// The other tenants this browser has live sessions for (switch.rs).
    pub(crate) others: Vec<String>,
    /// The geography database now loaded is DB-IP's: pages credit it (html::Frame).
    pub(crate) credit_dbip: bool,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let uri = &parts.uri;
        let dash = state.dashboard.clone().ok_or_else(not_enabled)?;
        // Checked once by `renew_session`, which every dashboard route runs first.
        let session = parts
            .extensions
            .get::<session::Session>()
            .cloned()
            .ok_or_else(|| to_login(uri))?;
        match state
            .tenants
            .authenticate_hash(&session.key_hash, Role::Reports)
        {
            Ok(tenant) if tenant.id == session.tenant => Ok(Viewer {
                tenant: tenant.clone(),
                shared: state
                    .tenants
                    .access()
                    .check_hash(&session.key_hash, chrono::Utc::now())
                    .is_ok_and(|g| g.role == Role::Share),
                credit_dbip: state.pipeline.privacy().geo().is_some_and(|g| g.is_dbip()),
                others: parts
                    .extensions
                    .get::<switch::Others>()
                    .map(switch::Others::tenants)
                    .unwrap_or_default(),
                session,
                dash,
            }),
            // The key was revoked or expired, or its tenant is gone: the session ends with it.
            _ => {
                dash.sessions.end(&session);
                Err(to_login(uri))
            }
        }
    }
}

impl Viewer {
    /// The tenant and the form token, for a page frame.
    pub(crate) fn who(&self) -> (&str, &str) {
        (self.tenant.id.as_str(), self.session.csrf.as_str())
    }

    pub(crate) fn frame<'f>(&'f self, title: &'f str, nav: Nav) -> Frame<'f> {
        Frame {
            title,
            nav,
            session: Some((self.tenant.id.as_str(), self.session.csrf.as_str())),
            head: "",
            shared: self.shared,
            others: &self.others,
            credit_dbip: self.credit_dbip,
        }
    }

    /// A page of the dashboard, 200.
    pub(crate) fn page(&self, title: &str, nav: Nav, body: &str) -> Response {
        html(StatusCode::OK, html::page(&self.frame(title, nav), body))
    }

    pub(crate) fn k(&self) -> u64 {
        self.tenant.policy.k_threshold
    }

    /// The fields of a form that changes something (a triage mark, a merge or split): refused (403) unless
    /// it came from a page of this session (its form token, the same origin), and refused to a dashboard
    /// opened through a share link, which is read-only. `page` names where the form lives.
    pub(crate) fn change_form(
        &self,
        headers: &HeaderMap,
        body: &Bytes,
        page: &str,
    ) -> Result<HashMap<String, String>, Box<Response>> {
        let fields = form(body);
        if fields.get("csrf") != Some(&self.session.csrf) || !same_origin(headers) {
            return Err(Box::new(problem(
                StatusCode::FORBIDDEN,
                "Refused",
                &format!("This change did not come from {page}; open it and use its forms."),
                Some(self.who()),
            )));
        }
        if self.shared {
            return Err(Box::new(problem(
                StatusCode::FORBIDDEN,
                "Refused",
                "A dashboard opened through a share link is read-only.",
                Some(self.who()),
            )));
        }
        Ok(fields)
    }

    /// The k-threshold of crash triage reports.
    pub(crate) fn k_crashes(&self) -> u64 {
        self.tenant.policy.k_threshold_crashes
    }
}

pub(crate) async fn home(State(state): State<AppState>) -> Response {
    if state.dashboard.is_none() {
        return not_enabled();
    }
    see_other("/ui/usage")
}

pub(crate) fn login_page(status: StatusCode, next: &str, message: Option<&str>) -> Response {
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
    let frame = Frame::outside("Log in");
    html(status, html::page(&frame, &body))
}

pub(crate) async fn login_form(
    viewer: Result<Viewer, Response>,
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if state.dashboard.is_none() {
        return not_enabled();
    }
    let next = safe_next(q.get("next").map(String::as_str));
    // Already logged in: straight on, unless another tenant is being added.
    let adding = q.get("add").is_some_and(|a| a == "1");
    if viewer.is_ok() && !adding {
        return see_other(next);
    }
    login_page(StatusCode::OK, next, None)
}

pub(crate) async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Option<axum::Extension<session::Session>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(dash) = state.dashboard.as_deref() else {
        return not_enabled();
    };
    // The browser's current session (checked by `renew_session`) and its token.
    let current = session
        .and_then(|axum::Extension(s)| Some((s, cookie(&headers, dash.cookie_name())?.to_owned())));
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
            // Logged in to another tenant already ("Add a tenant"): that session waits among the others.
            if let Some(current) = current {
                let (session, token) = current;
                let mut waiting: Vec<String> = vec![];
                if session.tenant != tenant.id {
                    waiting.push(token);
                }
                waiting.extend(
                    switch::read(&state, dash, &headers, Some(tenant.id.as_str()))
                        .0
                        .into_iter()
                        .filter(|(s, _)| s.tenant != session.tenant)
                        .map(|(_, t)| t),
                );
                waiting.truncate(switch::MAX_TENANTS - 1);
                resp.headers_mut()
                    .append(header::SET_COOKIE, switch::set(dash, &waiting));
            }
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

/// `GET /ui/share/<key>`: a share link opens a read-only dashboard session (the `reports` view, k applied,
/// no SQL) and moves on to `/ui/usage`, so the key leaves the address bar. A link with a password shows a
/// form for it first (posted to the same address). A revoked, expired or unknown link, or any key that is
/// not a share link's, is 404.
pub(crate) async fn share(
    State(state): State<AppState>,
    axum::extract::Path(key): axum::extract::Path<String>,
) -> Response {
    let Some(dash) = state.dashboard.as_deref() else {
        return not_enabled();
    };
    match share_grant(&state, &key) {
        Some((_, grant)) if grant.password.is_some() => {
            share_password_page(StatusCode::OK, &key, None)
        }
        Some((tenant, _)) => open_share(&state, dash, tenant, &key),
        None => no_share(),
    }
}

/// `POST /ui/share/<key>` with the link's password.
pub(crate) async fn share_password(
    State(state): State<AppState>,
    axum::extract::Path(key): axum::extract::Path<String>,
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
            "This password was posted from another site; open the share link itself.",
            None,
        );
    }
    let Some((tenant, grant)) = share_grant(&state, &key) else {
        return no_share();
    };
    let client = client_ip(peer, &headers, &state.trusted_proxies);
    if let Err(wait) = dash.sessions.login_allowed(client) {
        let mut resp = share_password_page(
            StatusCode::TOO_MANY_REQUESTS,
            &key,
            Some(&format!(
                "Too many wrong passwords from this address; try again in {} minutes.",
                wait.as_secs().div_ceil(60)
            )),
        );
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return resp;
    }
    let given = form(&body).get("password").cloned().unwrap_or_default();
    // Argon2 is slow on purpose: off the async threads.
    let ok = tokio::task::spawn_blocking(move || grant.password_matches(&given))
        .await
        .unwrap_or(false);
    if !ok {
        dash.sessions.login_failed(client);
        return share_password_page(
            StatusCode::UNAUTHORIZED,
            &key,
            Some("That is not this link's password; ask whoever shared it."),
        );
    }
    dash.sessions.login_succeeded(client);
    open_share(&state, dash, tenant, &key)
}

/// The tenant and grant of a live share link's key.
fn share_grant<'a>(
    state: &'a AppState,
    key: &str,
) -> Option<(&'a TenantEntry, crate::access::Grant)> {
    let tenant = state.tenants.authenticate(key, Role::Share).ok()?;
    let grant = state.tenants.access().check(key, chrono::Utc::now()).ok()?;
    Some((tenant, grant))
}

fn open_share(state: &AppState, dash: &Dashboard, tenant: &TenantEntry, key: &str) -> Response {
    let token = dash
        .sessions
        .open(tenant.id.clone(), state.tenants.access().hash(key));
    tracing::info!(tenant = %tenant.id, "dashboard opened through a share link");
    let mut resp = see_other("/ui/usage");
    resp.headers_mut().insert(
        header::SET_COOKIE,
        dash.set_cookie(&token, dash.lifetime.as_secs()),
    );
    resp
}

fn no_share() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "No such share link",
        "This link does not exist, was revoked or has expired; ask whoever shared it for a new one.",
        None,
    )
}

fn share_password_page(status: StatusCode, key: &str, message: Option<&str>) -> Response {
    let alert = message
        .map(|m| {
            format!(
                r#"<p class="error" role="alert" id="share-error">{}</p>"#,
                esc(m)
            )
        })
        .unwrap_or_default();
    let body = format!(
        r#"{alert}<form method="post" action="/ui/share/{key}" class="login">
<label for="password">This shared dashboard has a password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required{invalid}>
<button type="submit">Open</button>
</form>"#,
        key = esc(key),
        invalid = if message.is_some() {
            r#" aria-invalid="true" aria-describedby="share-error""#
        } else {
            ""
        },
    );
    let frame = Frame::outside("Shared dashboard");
    html(status, html::page(&frame, &body))
}

pub(crate) async fn logout(
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
                Some(v.who()),
            );
        }
        v.dash.sessions.end(&v.session);
        for (other, _) in switch::read(&state, dash, &headers, None).0 {
            v.dash.sessions.end(&other);
        }
        tracing::info!(tenant = %v.tenant.id, "dashboard logout");
    }
    let mut resp = see_other("/ui/login");
    resp.headers_mut().insert(header::SET_COOKIE, clear);
    resp.headers_mut()
        .append(header::SET_COOKIE, switch::set(dash, &[]));
    resp
}

pub(crate) async fn css(headers: HeaderMap) -> Response {
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
