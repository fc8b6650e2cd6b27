//! Everything Tacet does to personal data before anything is written: pseudonyms, enrichment, scrubbing.
//!
//! ```text
//!   RawEvent (tacet-model) + RequestContext (IP, user agent, DNT/GPC headers)
//!   + TenantPolicy (the controller's choices) + Keys (the tenant's salt of the day, its subject key)
//!        │
//!        ▼  Privacy::pseudonymise
//!   ├─ bots            → dropped (or flagged, per policy): crawlers, headless browsers, HTTP tools
//!   ├─ DNT / GPC       → ignored, anonymised (no identifiers) or suppressed (dropped), per policy;
//!   │                    identified events without `consent: true` anonymised when the policy requires it
//!   ├─ visitor_id      = blake3-keyed(daily salt; tenant, IP, user agent) → i64
//!   ├─ user_pseudonym  = HMAC-SHA256(subject key; tenant, user_id)      → 32 hex chars
//!   ├─ geography       = GeoDb lookup of the IP, kept to the policy's level (none/country/region/city);
//!   │                    then the IP is dropped, or truncated to /24 or /48 when ip = "truncate"
//!   ├─ user agent      → browser, version, OS, device, bot flag (woothee); the string is dropped
//!   ├─ URL             → host + path + allowed query parameters + utm_*; referrer → host, class, source
//!   ├─ free text       → scrubbed: e-mails, IPs, cards, IBANs, keys, tokens, JWTs, passwords, home dirs,
//!   │                    the tenant's own patterns (counted per rule in a Tally)
//!   └─ crashes         → fingerprint (type + normalised in-app frames, or the masked message)
//!        │
//!        ▼
//!   Outcome::Keep(Event) (#[non_exhaustive]: only this crate builds one) ──► EventBatch ──► WAL / lake
//!   Outcome::Drop(reason)
//! ```
//!
//! This crate is pure and synchronous: no I/O, no logging of its inputs. Keys and the GeoIP database are
//! handed in as bytes by the caller.

mod batch;
mod codec;
mod event;
pub mod explain;
pub mod fingerprint;
mod geo;
mod packed;
mod policy;
mod pseudonym;
pub mod referrer;
mod scrub;
mod url_clean;
mod useragent;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

pub use arrow::error::ArrowError;
pub use batch::EventBatch;
pub use codec::{DEVICES, DecodeError, REFERRER_CLASSES, Span};
pub use event::Event;
pub use geo::{GeoDb, GeoError, Location, testdb};
pub use packed::Packed;
pub use policy::{
    BotMode, CustomRule, DEFAULT_RETENTION_DAYS, GeoLevel, IpMode, SignalMode, TenantPolicy,
};
pub use pseudonym::{Keys, UserPseudonyms, user_pseudonym, visitor_id};
pub use scrub::{KNOWN_VALUE, Known, OPT_IN_RULES, RULES, Scrubber, Tally, is_secret_key};
pub use url_clean::{CleanUrl, clean_url, referrer_host};
pub use useragent::{UserAgent, is_automation, parse_user_agent};

use scrub::CleanTexts;
use tacet_model::{Kind, RawEvent, TenantId};

/// What the server knows about the request an event came in: used, then forgotten.
#[derive(Clone, Copy)]
pub struct RequestContext<'a> {
    pub ip: IpAddr,
    pub user_agent: &'a str,
    /// The request carried `DNT: 1`.
    pub dnt: bool,
    /// The request carried `Sec-GPC: 1`.
    pub gpc: bool,
}

impl<'a> RequestContext<'a> {
    /// A request without privacy signals.
    pub fn new(ip: IpAddr, user_agent: &'a str) -> Self {
        Self {
            ip,
            user_agent,
            dnt: false,
            gpc: false,
        }
    }
}

/// Why the privacy step dropped an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A crawler, headless browser or HTTP tool, for a tenant with `bots = "drop"`.
    Bot,
    /// Do-Not-Track, for a tenant with `dnt = "suppress"`.
    Dnt,
    /// Global Privacy Control, for a tenant with `gpc = "suppress"`.
    Gpc,
    /// The identified person objected to (or restricted) processing (the pipeline's objection list).
    Objected,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Bot => "bot",
            DropReason::Dnt => "dnt",
            DropReason::Gpc => "gpc",
            DropReason::Objected => "objected",
        }
    }
}

/// What the privacy step made of one event.
// Returned by value and matched at once; boxing the event would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Keep(Event),
    Drop(DropReason),
}

/// The privacy step, built once at start-up and shared by every request. The GeoIP database can be swapped
/// while running (the binary reloads it when its file changes).
#[derive(Debug, Default)]
pub struct Privacy {
    geo: RwLock<Option<Arc<GeoDb>>>,
}

impl Privacy {
    pub fn new(geo: Option<GeoDb>) -> Self {
        Self {
            geo: RwLock::new(geo.map(Arc::new)),
        }
    }

    /// Replaces the GeoIP database; events after this call use the new one.
    pub fn set_geo(&self, geo: Option<GeoDb>) {
        *self.geo.write().expect("geo lock") = geo.map(Arc::new);
    }

    /// The GeoIP database in use, if any.
    pub fn geo(&self) -> Option<Arc<GeoDb>> {
        self.geo.read().expect("geo lock").clone()
    }

    /// Applies the tenant's policy to one event. Identifiers go in; only pseudonyms come out, or nothing.
    /// Scrubbing replacements are counted into `tally`.
    #[allow(clippy::too_many_arguments)]
    pub fn pseudonymise(
        &self,
        tenant: &TenantId,
        policy: &TenantPolicy,
        keys: &Keys,
        ctx: RequestContext<'_>,
        ua: &UserAgent,
        raw: RawEvent,
        tally: &mut Tally,
    ) -> Outcome {
        Scope::new(self, tenant, policy, keys, ctx, ua).apply(raw, tally)
    }

    /// Applies the tenant's policy to every event of one request. What depends only on the request (the
    /// geography lookup, the visitor id, the IP prefix) is computed once, and a user id repeated in the
    /// request is pseudonymised once.
    #[allow(clippy::too_many_arguments)]
    pub fn pseudonymise_all(
        &self,
        tenant: &TenantId,
        policy: &TenantPolicy,
        keys: &Keys,
        ctx: RequestContext<'_>,
        ua: &UserAgent,
        raws: Vec<RawEvent>,
        tally: &mut Tally,
    ) -> Vec<Outcome> {
        let mut scope = Scope::new(self, tenant, policy, keys, ctx, ua);
        if raws.len() > 1 {
            scope.clean = Some(CleanTexts::default());
        }
        raws.into_iter()
            .map(|raw| scope.apply(raw, tally))
            .collect()
    }
}

/// One request's worth of the privacy step, with what is shared by its events computed at most once.
struct Scope<'a> {
    privacy: &'a Privacy,
    tenant: &'a TenantId,
    policy: &'a TenantPolicy,
    keys: &'a Keys,
    ctx: RequestContext<'a>,
    ua: &'a UserAgent,
    location: Option<Location>,
    ip_prefix: Option<String>,
    visitor: Option<i64>,
    user: Option<(String, String)>,
    /// Prepared at the first user id of the request.
    pseudonyms: Option<UserPseudonyms>,
    /// The client IP as known values (`known.rs`), first; then each event's own (user id, identifiers).
    known: Vec<Known>,
    /// Texts the scrubber's rules left unchanged in this request's earlier events (for a batch).
    clean: Option<CleanTexts>,
    /// For a batch: the previous event's property keys, in order, each with whether the policy keeps it
    /// and whether it names a secret (a batch's events mostly carry the same keys).
    prop_keys: Vec<(String, bool, bool)>,
}

impl<'a> Scope<'a> {
    fn new(
        privacy: &'a Privacy,
        tenant: &'a TenantId,
        policy: &'a TenantPolicy,
        keys: &'a Keys,
        ctx: RequestContext<'a>,
        ua: &'a UserAgent,
    ) -> Self {
        Self {
            privacy,
            tenant,
            policy,
            keys,
            ctx,
            ua,
            location: None,
            ip_prefix: None,
            visitor: None,
            user: None,
            pseudonyms: None,
            known: client_ip_values(ctx.ip),
            clean: None,
            prop_keys: Vec::new(),
        }
    }

    fn location(&mut self) -> &Location {
        let (privacy, ip, level) = (self.privacy, self.ctx.ip, self.policy.geo_level());
        self.location
            .get_or_insert_with(|| match privacy.geo.read().expect("geo lock").as_ref() {
                Some(g) if level > GeoLevel::None => g.lookup(ip),
                _ => Location::default(),
            })
    }

    fn visitor(&mut self) -> i64 {
        let (keys, tenant, ctx) = (self.keys, self.tenant, self.ctx);
        *self
            .visitor
            .get_or_insert_with(|| visitor_id(&keys.visitor_salt, tenant, ctx.ip, ctx.user_agent))
    }

    fn user(&mut self, user_id: &str) -> String {
        match &mut self.user {
            Some((id, pseudonym)) if id == user_id => pseudonym.clone(),
            last => {
                let (keys, tenant) = (self.keys, self.tenant);
                let pseudonym = self
                    .pseudonyms
                    .get_or_insert_with(|| UserPseudonyms::new(&keys.subject_key, tenant))
                    .of(user_id);
                // The last user's strings are reused: a batch of many users allocates nothing more.
                let (id, kept) = last.get_or_insert_with(Default::default);
                id.clear();
                id.push_str(user_id);
                kept.clear();
                kept.push_str(&pseudonym);
                pseudonym
            }
        }
    }

    fn apply(&mut self, raw: RawEvent, tally: &mut Tally) -> Outcome {
        let (policy, ctx, ua) = (self.policy, self.ctx, self.ua);
        if ua.is_bot && policy.bots == BotMode::Drop {
            return Outcome::Drop(DropReason::Bot);
        }
        let mut anonymised = None;
        for (signalled, mode, reason, drop) in [
            (ctx.gpc || raw.gpc, policy.gpc, "gpc", DropReason::Gpc),
            (ctx.dnt || raw.dnt, policy.dnt, "dnt", DropReason::Dnt),
        ] {
            match (signalled, mode) {
                (true, SignalMode::Suppress) => return Outcome::Drop(drop),
                (true, SignalMode::Anonymous) => anonymised = anonymised.or(Some(reason)),
                _ => {}
            }
        }
        if policy.require_consent && raw.user_id.is_some() && !raw.consent {
            anonymised = anonymised.or(Some("consent"));
        }
        let identified = anonymised.is_none();

        let level = policy.geo_level();
        let location = self.location().clone();
        let ip_prefix = match policy.ip {
            IpMode::Truncate if identified => Some(
                self.ip_prefix
                    .get_or_insert_with(|| policy::truncate_ip(ctx.ip))
                    .clone(),
            ),
            _ => None,
        };
        let detailed = |v: Option<String>, needed: GeoLevel| {
            v.filter(|_| level >= needed && (identified || needed <= GeoLevel::Country))
        };
        let url = clean_url(&raw.url, &policy.query_params);
        let referrer = raw.referrer.as_deref().and_then(referrer_host);
        let class = referrer::classify(referrer.as_deref(), &url.host, url.utm_medium.as_deref());
        // The raw values this step pseudonymises or drops must not survive in the free text either.
        let mut known = std::mem::take(&mut self.known);
        let ip_values = known.iter().filter(|k| k.is_ip()).count();
        known.truncate(ip_values);
        known.extend(raw.user_id.as_deref().and_then(Known::user));
        known.extend(
            raw.props
                .iter()
                .filter(|(k, _)| policy.is_identifier(k))
                .filter_map(|(_, v)| Known::identifier(v)),
        );
        let s = Scrubber::for_policy(policy).with_known(&known);
        let mut clean = self.clean.take();
        let mut text = |v: String| s.text_remembering(v, tally, clean.as_mut());
        let url_host = text(url.host);
        let url_path = text(url.path);
        let url_query = url.query.map(&mut text);
        let utm = [
            url.utm_source,
            url.utm_medium,
            url.utm_campaign,
            url.utm_term,
            url.utm_content,
        ]
        .map(|v| v.map(&mut text));
        let referrer_host = referrer.map(&mut text);
        let name = raw.name.map(&mut text);
        let error_type = raw.error_type.map(&mut text);
        let message = raw.message.map(&mut text);
        let stack: Vec<String> = raw.stack.into_iter().map(&mut text).collect();
        let release = raw.release.map(&mut text);
        let mut prop_keys = std::mem::take(&mut self.prop_keys);
        let props = if identified {
            let remember = clean.is_some();
            raw.props
                .into_iter()
                .enumerate()
                .filter_map(|(i, (k, v))| {
                    let (kept, secret) = key_rules(&mut prop_keys, remember, i, &k, policy);
                    if !kept {
                        return None;
                    }
                    let v = if secret {
                        s.property(&k, &v, tally)
                    } else {
                        s.text_remembering(v, tally, clean.as_mut())
                    };
                    Some((s.text_remembering(k, tally, clean.as_mut()), v))
                })
                .collect()
        } else {
            Vec::new()
        };
        self.prop_keys = prop_keys;
        self.known = known;
        self.clean = clean;
        let fingerprint = (raw.kind == Kind::Crash)
            .then(|| fingerprint::fingerprint(error_type.as_deref(), message.as_deref(), &stack));
        let [utm_source, utm_medium, utm_campaign, utm_term, utm_content] = utm;
        Outcome::Keep(Event {
            kind: raw.kind,
            ts_millis: raw.ts_millis,
            visitor_id: identified.then(|| self.visitor()),
            user_pseudonym: raw
                .user_id
                .as_deref()
                .filter(|_| identified)
                .map(|u| self.user(u)),
            browser: ua.browser.clone(),
            browser_version: ua.browser_version.clone(),
            os: ua.os.clone(),
            os_version: ua.os_version.clone(),
            device: ua.device,
            is_bot: ua.is_bot,
            country: detailed(location.country, GeoLevel::Country),
            region: detailed(location.region, GeoLevel::Region),
            city: detailed(location.city, GeoLevel::City),
            ip_prefix,
            url_host,
            url_path,
            url_query,
            utm_source,
            utm_medium,
            utm_campaign,
            utm_term,
            utm_content,
            referrer_host,
            referrer_class: class.class,
            referrer_source: class.source.map(str::to_owned),
            name,
            props,
            error_type,
            message,
            stack,
            release,
            fingerprint,
            anonymised,
            arrival: None,
        })
    }
}

/// Whether `policy` keeps the property `key`, and whether `key` names a secret: from `memo` when the
/// previous event of the batch had the same key at the same place `i`, and remembered there when
/// `remember` (a batch; a single event would only pay for the copy).
fn key_rules(
    memo: &mut Vec<(String, bool, bool)>,
    remember: bool,
    i: usize,
    key: &str,
    policy: &TenantPolicy,
) -> (bool, bool) {
    if let Some((known, kept, secret)) = memo.get(i)
        && known == key
    {
        return (*kept, *secret);
    }
    let rules = (policy.keeps_prop(key), is_secret_key(key));
    if remember {
        let entry = (key.to_owned(), rules.0, rules.1);
        if i < memo.len() {
            memo[i] = entry;
        } else if i == memo.len() {
            memo.push(entry);
        }
    }
    rules
}

/// The client IP as known values: its text, and the IPv4 form of an IPv4-mapped IPv6 address.
fn client_ip_values(ip: std::net::IpAddr) -> Vec<Known> {
    let mut values: Vec<Known> = Known::ip(&ip.to_string()).into_iter().collect();
    if let std::net::IpAddr::V6(v6) = ip
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        values.extend(Known::ip(&v4.to_string()));
    }
    values
}

/// Fixtures for this crate's tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Pseudonymises a JSON event with fixed keys, tenant `t` and client 203.0.113.5; panics if dropped.
    pub fn event(json: serde_json::Value, policy: &TenantPolicy, user_agent: &str) -> Event {
        match outcome(
            json,
            policy,
            RequestContext::new("203.0.113.5".parse().unwrap(), user_agent),
        ) {
            Outcome::Keep(e) => e,
            Outcome::Drop(r) => panic!("dropped: {r:?}"),
        }
    }

    /// The outcome for a JSON event with fixed keys and tenant `t`.
    pub fn outcome(
        json: serde_json::Value,
        policy: &TenantPolicy,
        ctx: RequestContext<'_>,
    ) -> Outcome {
        let keys = Keys {
            visitor_salt: [1; 32],
            subject_key: [2; 32],
        };
        let tenant = TenantId::new("t").unwrap();
        let raw = tacet_model::parse_event(json, 1_764_400_000_000).unwrap();
        Privacy::default().pseudonymise(
            &tenant,
            policy,
            &keys,
            ctx,
            &parse_user_agent(ctx.user_agent),
            raw,
            &mut Tally::default(),
        )
    }
}
