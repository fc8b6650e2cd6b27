//! The dashboard (`/ui`): usage analytics and crash triage as server-rendered HTML, behind a login with the
//! tenant's read key.
//!
//! ```text
//!  GET  /ui/login            the login form (the read key, in a password field; never in a URL)
//!  POST /ui/login            read key → session (session.rs) → cookie: HttpOnly, SameSite=Strict,
//!                            Secure and __Host- with TLS → 303 to the page asked for
//!  POST /ui/logout           ends the session (and the browser's other tenants') and clears the cookies
//!  POST /ui/switch           another tenant this browser logged in to becomes the current one (switch.rs);
//!                            "Add a tenant" is GET /ui/login?add=1
//!  GET  /ui/share/{key}      a share link: a read-only (reports) session, then /ui/usage; 404 once revoked;
//!  POST /ui/share/{key}      a link with a password asks for it first (failures count as failed logins)
//!  GET  /ui/usage            headline numbers against the previous period, time series, top lists;
//!                            ?from&to and the report filters; every list's rows link to their filter
//!  GET  /ui/goals            custom events as goals, with conversion rates (goals.rs)
//!  GET  /ui/funnels          ?steps=page:/,event:signup: visitors per step and drop-off (goals.rs)
//!  GET  /ui/events          ?event=signup: the properties one custom event carried, and their values (events.rs)
//!  GET  /ui/retention       weekly cohorts of identified users and their return, week by week (events.rs)
//!  GET  /ui/export/{r}.csv   a card's report as CSV, with the page's range and filters (goals.rs)
//!  GET  /ui/shares          share links: listed, made and revoked with the admin key typed in (shares.rs)
//!  GET  /ui/shares          share links: listed, made and revoked with the admin key typed in (shares.rs)
//!  GET  /ui/realtime         the last 30 minutes, reloading itself every 30 s
//!  GET  /ui/crashes          crash groups by count in the range, sparklines, triage state (?state=)
//!  GET  /ui/crashes/{fp}     one group: trend, scrubbed message and stack, crash-free rate per release
//!  POST /ui/crashes/{fp}     mark it resolved, ignored or open again (triage.rs, kept per tenant)
//!  POST /ui/crashes/{fp}/groups  merge it into another group, split crashes off it by a frame, or undo
//!                            either (groups.rs; every crash report groups by the result)
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

mod crash;
mod dashboard;
mod events;
mod goals;
mod groups;
mod html;
mod respond;
mod session;
mod shares;
mod switch;
mod triage;
mod usage;
mod view;

use axum::Router;
use axum::routing::get;

use crate::AppState;
pub(crate) use crash::shown_state;
pub use dashboard::{Dashboard, DashboardConfig, remove_triage};
pub use groups::Change;
pub use session::Sessions;
pub use triage::{GroupState, Mark, Triage, crash_groups, later_release, valid_fingerprint};

pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/ui", get(dashboard::home))
        .route("/ui/", get(dashboard::home))
        .route(
            "/ui/login",
            get(dashboard::login_form).post(dashboard::login),
        )
        .route("/ui/logout", axum::routing::post(dashboard::logout))
        .route("/ui/switch", axum::routing::post(switch::switch))
        .route(
            "/ui/share/{key}",
            get(dashboard::share).post(dashboard::share_password),
        )
        .route("/ui/usage", get(usage::usage))
        .route("/ui/goals", get(goals::goals))
        .route("/ui/export/{file}", get(goals::export))
        .route("/ui/funnels", get(goals::funnels))
        .route("/ui/events", get(events::events))
        .route("/ui/retention", get(events::retention))
        .route("/ui/realtime", get(usage::realtime))
        .route("/ui/shares", get(shares::page).post(shares::act))
        .route("/ui/crashes", get(crash::crashes))
        .route(
            "/ui/crashes/{fingerprint}",
            get(crash::crash_group).post(crash::mark),
        )
        .route(
            "/ui/crashes/{fingerprint}/groups",
            axum::routing::post(groups::act),
        )
        .route("/ui/assets/ui.css", get(dashboard::css))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            dashboard::renew_session,
        ))
}

#[cfg(test)]
mod tests {
    use super::crash::*;
    use super::respond::*;
    use super::triage::{self, GroupState};
    use super::view::*;
    use chrono::NaiveDate;
    use serde_json::json;
    use serde_json::{Map, Value};
    use std::collections::HashMap;

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
            shown_state(
                &marks,
                "0123456789abcdef",
                Some("2026-11-20T11:59:59.000"),
                None
            ),
            ("resolved", GroupState::Resolved)
        );
        assert_eq!(
            shown_state(
                &marks,
                "0123456789abcdef",
                Some("2026-11-21T08:00:00.000"),
                None
            ),
            ("regressed", GroupState::Open)
        );
        assert_eq!(
            shown_state(&marks, "fedcba9876543210", None, None),
            ("open", GroupState::Open)
        );
        // Resolved in 2.1.0: later crashes from 2.0.x and 2.1.0 (users who have not updated) leave it
        // resolved; one from 2.2.0 reopens it.
        let mut fixed = triage::Mark::new(GroupState::Resolved, at);
        fixed.release = Some("2.1.0".into());
        marks.insert("0123456789abcdef".into(), fixed);
        let later = Some("2026-11-21T08:00:00.000");
        assert_eq!(
            shown_state(&marks, "0123456789abcdef", later, Some("2.0.9, 2.1.0")),
            ("resolved", GroupState::Resolved)
        );
        assert_eq!(
            shown_state(&marks, "0123456789abcdef", later, Some("2.1.0, 2.2.0")),
            ("regressed", GroupState::Open)
        );
    }
}
