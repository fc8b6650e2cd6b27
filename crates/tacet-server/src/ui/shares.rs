//! `/ui/shares`: the tenant's share links in the dashboard: listed, made (with an optional expiry and
//! password) and revoked, like `/v1/admin/shares`. A dashboard session is a read key's, so every action here
//! also takes the tenant's **admin key**, typed into the form and posted in its body: it is checked for the
//! session's tenant, recorded in the audit log (`dashboard` as the actor), and kept nowhere; a wrong key
//! counts as a failed login from that address.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::dashboard::Viewer;
use super::html::{self, Nav, esc};
use super::respond::*;
use crate::AppState;
use crate::shares::{MIN_PASSWORD, create_share, list_shares, revoke_share};
use crate::{access::Role, client_ip};

const ACTOR: &str = "dashboard";

/// The admin-key field every form on the page carries.
fn admin_field(n: usize) -> String {
    format!(
        r#"<div><label for="admin-{n}">Admin key</label><input id="admin-{n}" name="admin_key" type="password" autocomplete="off" required spellcheck="false"></div>"#
    )
}

fn forms(v: &Viewer) -> String {
    let csrf = esc(&v.session.csrf);
    format!(
        r#"<section class="card wide" aria-labelledby="h-new"><h2 id="h-new">New share link</h2>
<p class="hint">Whoever holds the link sees this tenant's dashboard read-only: the reports with k = {k} applied, never the rows and never SQL. Revoke it here or with <code>DELETE /v1/admin/shares/&lt;id&gt;</code>.</p>
<form method="post" action="/ui/shares" class="controls"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="op" value="create">
{admin}
<div><label for="expires_in">Expires after (empty: until revoked)</label><input id="expires_in" name="expires_in" placeholder="30d"></div>
<div><label for="password">Password (optional, {MIN_PASSWORD}+ characters)</label><input id="password" name="password" type="password" autocomplete="new-password"></div>
<div><button type="submit">Make a link</button></div></form></section>
<section class="card wide" aria-labelledby="h-list"><h2 id="h-list">Share links of this tenant</h2>
<form method="post" action="/ui/shares" class="controls"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="op" value="list">
{admin_list}
<div><button type="submit">List them</button></div></form>"#,
        k = v.k(),
        admin = admin_field(1),
        admin_list = admin_field(2),
    )
}

/// A dashboard opened through a share link manages no links.
fn not_for_shared(v: &Viewer) -> Option<Response> {
    v.shared.then(|| {
        problem(
            StatusCode::NOT_FOUND,
            "Share links",
            "A shared dashboard cannot see or make share links; the tenant's own team can.",
            Some(v.who()),
        )
    })
}

pub(crate) async fn page(v: Viewer) -> Response {
    if let Some(r) = not_for_shared(&v) {
        return r;
    }
    let mut body = forms(&v);
    body.push_str("</section>");
    v.page("Share links", Nav::Shares, &body)
}

pub(crate) async fn act(
    v: Viewer,
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = not_for_shared(&v) {
        return r;
    }
    let form = form(&body);
    if form.get("csrf") != Some(&v.session.csrf) || !same_origin(&headers) {
        return problem(
            StatusCode::FORBIDDEN,
            "Refused",
            "This change did not come from the share links page; open it and use its forms.",
            Some(v.who()),
        );
    }
    let refused = |status: StatusCode, message: &str| {
        let mut body = format!(r#"<p class="error" role="alert">{}</p>"#, esc(message));
        body.push_str(&forms(&v));
        body.push_str("</section>");
        let mut resp = v.page("Share links", Nav::Shares, &body);
        *resp.status_mut() = status;
        resp
    };
    let client = client_ip(peer, &headers, &state.trusted_proxies);
    if let Err(wait) = v.dash.sessions.login_allowed(client) {
        return refused(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "Too many wrong keys from this address; try again in {} minutes.",
                wait.as_secs().div_ceil(60)
            ),
        );
    }
    let key = form.get("admin_key").map(|k| k.trim()).unwrap_or_default();
    // The admin key of this session's tenant, and no other.
    let checked = match state.tenants.authenticate(key, Role::Admin) {
        Ok(t) if t.id == v.tenant.id => {
            crate::admin::admin_key(&state, key, "ui.shares", ACTOR).map(|(_, s)| s)
        }
        Ok(_) | Err(_) => Err(crate::error::ApiError::unauthorized(
            "that is not this tenant's admin key",
        )),
    };
    let steward = match checked {
        Ok(s) => s,
        Err(e) => {
            if e.status == StatusCode::UNAUTHORIZED || e.status == StatusCode::FORBIDDEN {
                v.dash.sessions.login_failed(client);
                return refused(
                    StatusCode::UNAUTHORIZED,
                    "That is not this tenant's admin key; share links are made and revoked with it.",
                );
            }
            return refused(e.status, &e.message);
        }
    };
    v.dash.sessions.login_succeeded(client);
    let mut out = String::new();
    let action = form.get("op").map(String::as_str).unwrap_or("list");
    let done = match action {
        "create" => create_share(
            &state,
            steward,
            &v.tenant,
            form.get("expires_in").map(String::as_str),
            form.get("password").map(String::as_str),
            ACTOR,
        )
        .map(|(link, grant)| {
            format!(
                r#"<p class="conversion" role="status" id="new-link">New link {id}{pw}: <a href="{link}"><code>{link}</code></a>. It is shown this once: copy it now (prefix it with this server's address).</p>"#,
                id = esc(&grant.id),
                pw = if grant.password.is_some() {
                    ", with a password"
                } else {
                    ""
                },
                link = esc(&link),
            )
        }),
        "revoke" => {
            let id = form.get("id").map(String::as_str).unwrap_or_default();
            revoke_share(&state, steward, &v.tenant, id, ACTOR).map(|()| {
                format!(
                    r#"<p class="conversion" role="status">Link {} revoked: it answers 404 and its sessions have ended.</p>"#,
                    esc(id)
                )
            })
        }
        "list" => Ok(String::new()),
        other => Err(crate::error::ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown op {other:?}; the page's forms send create, list or revoke"),
        )),
    };
    match done {
        Ok(message) => out.push_str(&message),
        Err(e) => return refused(e.status, &e.message),
    }
    out.push_str(&forms(&v));
    out.push_str(&list(&v, &state));
    out.push_str("</section>");
    v.page("Share links", Nav::Shares, &out)
}

/// The links as a table, each live one with its revoke form.
fn list(v: &Viewer, state: &AppState) -> String {
    let now = chrono::Utc::now();
    let shares = list_shares(state, &v.tenant);
    let mut out = String::from(
        r#"<div class="scroll"><table id="shares" aria-labelledby="h-list"><thead><tr><th scope="col">Link</th><th scope="col">Made</th><th scope="col">Expires</th><th scope="col">Password</th><th scope="col">State</th><th scope="col">Revoke</th></tr></thead><tbody>"#,
    );
    if shares.is_empty() {
        out.push_str(
            r#"<tr><td colspan="6" class="empty">This tenant has no share links.</td></tr>"#,
        );
    }
    for (i, g) in shares.iter().enumerate() {
        let state_label = if g.revoked {
            "revoked"
        } else if g.expires.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "live"
        };
        let revoke = if state_label == "live" {
            format!(
                r#"<form method="post" action="/ui/shares" class="triage"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="op" value="revoke"><input type="hidden" name="id" value="{id}">{admin}<button type="submit">Revoke</button></form>"#,
                csrf = esc(&v.session.csrf),
                id = esc(&g.id),
                admin = admin_field(10 + i),
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            r#"<tr data-share="{id}"><td><code>{id}</code></td><td class="when">{made}</td><td class="when">{expires}</td><td>{pw}</td><td><span class="state {st}">{st}</span></td><td>{revoke}</td></tr>"#,
            id = esc(&g.id),
            made = esc(&html::time(&g.created)),
            expires = esc(&g.expires.map_or("never".to_owned(), |e| html::time(&e.to_rfc3339()))),
            pw = if g.password.is_some() { "yes" } else { "no" },
            st = state_label,
        ));
    }
    out.push_str("</tbody></table></div>");
    out
}
