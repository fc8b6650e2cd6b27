//! Several tenants in one browser: a person who holds read keys of several tenants logs in with each
//! ("Add a tenant" on the login page) and switches between them from the page header, without logging in
//! again. The current tenant's session is the session cookie as before; the others wait in a second cookie
//! (`tacet_others`, `__Host-` with TLS, HttpOnly, SameSite=Strict) as their own signed tokens, `~`-separated.
//! Each is checked like the current one whenever it is listed or switched to (signature, idle time,
//! lifetime, logout, its key still valid); a dead one is dropped. Logging out ends every one of them.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::dashboard::{Dashboard, Viewer};
use super::respond::*;
use super::session::Session;
use crate::AppState;
use crate::access::Role;

/// Tenants one browser keeps sessions for, the current one included.
pub(crate) const MAX_TENANTS: usize = 8;

/// The other tenants' live sessions of this browser, with their tokens.
#[derive(Debug, Clone, Default)]
pub(crate) struct Others(pub(crate) Vec<(Session, String)>);

impl Others {
    /// The tenants, for the header's switch.
    pub(crate) fn tenants(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(s, _)| s.tenant.as_str().to_owned())
            .collect()
    }
}

pub(crate) fn cookie_name(dash: &Dashboard) -> &'static str {
    if dash.secure {
        "__Host-tacet_others"
    } else {
        "tacet_others"
    }
}

/// The live sessions in the `others` cookie, but any of `except`'s tenant.
pub(crate) fn read(
    state: &AppState,
    dash: &Dashboard,
    headers: &HeaderMap,
    except: Option<&str>,
) -> Others {
    let Some(value) = cookie(headers, cookie_name(dash)) else {
        return Others::default();
    };
    let mut out: Vec<(Session, String)> = Vec::new();
    for token in value.split('~').take(MAX_TENANTS) {
        let Some((session, renewed)) = dash.sessions.get(token) else {
            continue;
        };
        let valid = state
            .tenants
            .authenticate_hash(&session.key_hash, Role::Reports)
            .is_ok_and(|t| t.id == session.tenant);
        if !valid
            || Some(session.tenant.as_str()) == except
            || out.iter().any(|(s, _)| s.tenant == session.tenant)
        {
            continue;
        }
        out.push((session, renewed.unwrap_or_else(|| token.to_owned())));
    }
    Others(out)
}

/// The `Set-Cookie` header that keeps `tokens` as the other sessions (none: the cookie is cleared).
pub(crate) fn set(dash: &Dashboard, tokens: &[String]) -> HeaderValue {
    let value = tokens.join("~");
    HeaderValue::try_from(format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict{}; Max-Age={}",
        cookie_name(dash),
        if dash.secure { "; Secure" } else { "" },
        if tokens.is_empty() {
            0
        } else {
            dash.lifetime.as_secs()
        }
    ))
    .expect("a cookie of ASCII characters")
}

/// `POST /ui/switch` (`tenant=<id>`): that tenant's session becomes the current one, the current one waits
/// among the others; then its usage page.
pub(crate) async fn switch(
    v: Viewer,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form(&body);
    if form.get("csrf") != Some(&v.session.csrf) || !same_origin(&headers) {
        return problem(
            StatusCode::FORBIDDEN,
            "Refused",
            "This switch did not come from a dashboard page; use the tenant buttons in its header.",
            Some(v.who()),
        );
    }
    let wanted = form.get("tenant").map(String::as_str).unwrap_or_default();
    let others = read(&state, &v.dash, &headers, Some(v.tenant.id.as_str()));
    let Some((to, token)) = others.0.iter().find(|(s, _)| s.tenant.as_str() == wanted) else {
        return problem(
            StatusCode::NOT_FOUND,
            "Switch tenant",
            &format!(
                "This browser has no live session for tenant {wanted:?}; log in with its read key (Add a tenant)."
            ),
            Some(v.who()),
        );
    };
    let Some(current) = cookie(&headers, v.dash.cookie_name()) else {
        return see_other("/ui/login");
    };
    let mut waiting: Vec<String> = others
        .0
        .iter()
        .filter(|(s, _)| s.tenant != to.tenant)
        .map(|(_, t)| t.clone())
        .collect();
    waiting.insert(0, current.to_owned());
    tracing::info!(from = %v.tenant.id, to = %to.tenant, "dashboard tenant switch");
    let mut resp = see_other("/ui/usage");
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        v.dash.set_cookie(token, v.dash.sessions.remaining(to)),
    );
    h.append(header::SET_COOKIE, set(&v.dash, &waiting));
    resp
}
