//! Everything Tacet does to personal data before anything is written: pseudonyms, enrichment, scrubbing.
//!
//! ```text
//!   RawEvent (tacet-model) + RequestContext (IP, user agent) + Keys (salt of the day, subject key)
//!        │
//!        ▼  Privacy::pseudonymise
//!   ├─ visitor_id      = blake3-keyed(daily salt; tenant, IP, user agent) → i64
//!   ├─ user_pseudonym  = HMAC-SHA256(subject key; tenant, user_id)      → 32 hex chars
//!   ├─ geography       = GeoDb lookup of the IP (country, region, city), then the IP is dropped
//!   │                    (or truncated to /24 or /48 for tenants with ip_mode = "truncate")
//!   ├─ user agent      → browser, version, OS, device, crawler flag (woothee); the string is dropped
//!   ├─ URL             → host + path (query and fragment dropped, utm_* kept); referrer → host
//!   └─ free text       → scrubbed (e-mail addresses, IPs, secrets under sensitive property keys)
//!        │
//!        ▼
//!   Event (#[non_exhaustive]: only this crate builds one) ──► EventBatch (Arrow) ──► WAL / lake
//! ```
//!
//! This crate is pure and synchronous: no I/O, no logging of its inputs. Keys and the GeoIP database are
//! handed in as bytes by the caller.

mod codec;
mod event;
mod geo;
mod policy;
mod pseudonym;
mod scrub;
mod url_clean;
mod useragent;

use std::net::IpAddr;

pub use arrow::error::ArrowError;
pub use codec::DecodeError;
pub use event::{Event, EventBatch};
pub use geo::{GeoDb, GeoError, Location};
pub use policy::{IpMode, TenantPolicy};
pub use pseudonym::{Keys, user_pseudonym, visitor_id};
pub use scrub::Scrubber;
pub use url_clean::{CleanUrl, clean_url, referrer_host};
pub use useragent::{UserAgent, parse_user_agent};

use tacet_model::{RawEvent, TenantId};

/// What the server knows about the request an event came in: used, then forgotten.
#[derive(Clone, Copy)]
pub struct RequestContext<'a> {
    pub ip: IpAddr,
    pub user_agent: &'a str,
}

/// The privacy step, built once at start-up and shared by every request.
#[derive(Debug, Default)]
pub struct Privacy {
    geo: Option<GeoDb>,
    scrubber: Scrubber,
}

impl Privacy {
    pub fn new(geo: Option<GeoDb>) -> Self {
        Self {
            geo,
            scrubber: Scrubber,
        }
    }

    /// Turns a raw event into one that can be stored. Identifiers go in; only pseudonyms come out.
    pub fn pseudonymise(
        &self,
        tenant: &TenantId,
        policy: &TenantPolicy,
        keys: &Keys,
        ctx: RequestContext<'_>,
        ua: &UserAgent,
        raw: RawEvent,
    ) -> Event {
        let location = self
            .geo
            .as_ref()
            .map(|g| g.lookup(ctx.ip))
            .unwrap_or_default();
        let ip_prefix = match policy.ip_mode {
            IpMode::Drop => None,
            IpMode::Truncate => Some(policy::truncate_ip(ctx.ip)),
        };
        let url = clean_url(&raw.url);
        let s = &self.scrubber;
        Event {
            kind: raw.kind,
            ts_millis: raw.ts_millis,
            visitor_id: visitor_id(&keys.visitor_salt, tenant, ctx.ip, ctx.user_agent),
            user_pseudonym: raw
                .user_id
                .as_deref()
                .map(|u| user_pseudonym(&keys.subject_key, tenant, u)),
            browser: ua.browser.clone(),
            browser_version: ua.browser_version.clone(),
            os: ua.os.clone(),
            os_version: ua.os_version.clone(),
            device: ua.device,
            is_bot: ua.is_bot,
            country: location.country,
            region: location.region,
            city: location.city,
            ip_prefix,
            url_host: s.text(&url.host),
            url_path: s.text(&url.path),
            utm_source: url.utm_source.map(|v| s.text(&v)),
            utm_medium: url.utm_medium.map(|v| s.text(&v)),
            utm_campaign: url.utm_campaign.map(|v| s.text(&v)),
            utm_term: url.utm_term.map(|v| s.text(&v)),
            utm_content: url.utm_content.map(|v| s.text(&v)),
            referrer_host: raw
                .referrer
                .as_deref()
                .and_then(referrer_host)
                .map(|h| s.text(&h)),
            name: raw.name.map(|n| s.text(&n)),
            props: raw
                .props
                .into_iter()
                .map(|(k, v)| {
                    let v = s.property(&k, &v);
                    (s.text(&k), v)
                })
                .collect(),
            error_type: raw.error_type.map(|t| s.text(&t)),
            message: raw.message.map(|m| s.text(&m)),
            stack: raw.stack.iter().map(|f| s.text(f)).collect(),
            release: raw.release.map(|r| s.text(&r)),
        }
    }
}

/// Fixtures for this crate's tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Pseudonymises a JSON event with fixed keys, tenant `t` and client 203.0.113.5.
    pub fn event(json: serde_json::Value, policy: &TenantPolicy, user_agent: &str) -> Event {
        let keys = Keys {
            visitor_salt: [1; 32],
            subject_key: [2; 32],
        };
        let tenant = TenantId::new("t").unwrap();
        let ctx = RequestContext {
            ip: "203.0.113.5".parse().unwrap(),
            user_agent,
        };
        let raw = tacet_model::parse_event(json, 1_764_400_000_000).unwrap();
        Privacy::default().pseudonymise(
            &tenant,
            policy,
            &keys,
            ctx,
            &parse_user_agent(user_agent),
            raw,
        )
    }
}
