//! A tenant's privacy policy: what is kept of each event, decided by the tenant (the data controller).
//!
//! Deserialised from the `[tenant.privacy]` table of the configuration and validated there, so that a bad
//! policy stops the server at start-up with a message naming the setting, never at the first event.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use tacet_model::Kind;

/// What is kept of the client's IP address once geography has been looked up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpMode {
    /// Keep nothing of the address (the default); geography as the `geo` level allows.
    #[default]
    Drop,
    /// Keep the network: IPv4 /24, IPv6 /48 (Matomo and Snowplow style), in the `ip_prefix` column.
    Truncate,
    /// Keep only the country looked up from the address, whatever the `geo` level says.
    GeoOnly,
}

/// How much geography is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeoLevel {
    None,
    #[default]
    Country,
    Region,
    City,
}

/// What a privacy signal (Do-Not-Track, Global Privacy Control) or a missing consent does to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalMode {
    /// Collect as if the signal were absent.
    Ignore,
    /// Count the event without any identifier: no visitor id, no user pseudonym, no IP prefix, no region
    /// or city, no properties.
    Anonymous,
    /// Do not collect the event at all.
    Suppress,
}

/// What happens to events from crawlers, headless browsers and HTTP tools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotMode {
    /// Drop them (counted in `tacet_ingest_events_dropped_total{reason="bot"}`).
    #[default]
    Drop,
    /// Keep them with `is_bot = true`.
    Flag,
}

/// A tenant's own scrubbing rule: matches become `[<name>]`.
#[derive(Clone)]
pub struct CustomRule {
    pub name: String,
    pub regex: Regex,
    pub(crate) placeholder: String,
}

impl CustomRule {
    /// A rule named `name` (`a-z`, `0-9`, `_`), replacing what `pattern` (Rust regex syntax) matches.
    pub fn new(name: &str, pattern: &str) -> Result<Self, String> {
        if name.is_empty()
            || name.len() > 32
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!(
                "scrub rule name {name:?} must be 1 to 32 characters of a-z, 0-9 and _"
            ));
        }
        let regex = regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("scrub rule {name:?}: the pattern is not a valid regex: {e}"))?;
        if regex.is_match("") {
            return Err(format!(
                "scrub rule {name:?}: the pattern matches the empty string, so it would match everywhere"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            placeholder: format!("[{name}]"),
            regex,
        })
    }
}

impl fmt::Debug for CustomRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}", self.name, self.regex.as_str())
    }
}

impl PartialEq for CustomRule {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.regex.as_str() == other.regex.as_str()
    }
}

/// Per-tenant privacy settings, from the `[tenant.privacy]` table of the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "PolicyConfig")]
pub struct TenantPolicy {
    pub ip: IpMode,
    pub geo: GeoLevel,
    pub dnt: SignalMode,
    pub gpc: SignalMode,
    /// Identified events (with `user_id`) must carry `consent: true`; without it they are anonymised.
    pub require_consent: bool,
    /// Property keys kept; `None` keeps every key (values scrubbed either way).
    pub props: Option<Vec<String>>,
    /// Query parameters of the page URL kept in `url_query` (besides `utm_*`, always kept).
    pub query_params: Vec<String>,
    /// Event kinds accepted; others are refused with a 422 naming the kind.
    pub kinds: Vec<Kind>,
    pub bots: BotMode,
    /// The day a visitor salt covers runs midnight to midnight in this zone (UTC when `None`).
    pub timezone: Option<chrono_tz::Tz>,
    /// The tenant's own scrubbing rules, run after the built-in ones.
    pub scrub: Vec<CustomRule>,
    /// How long raw events of each kind are kept (enforced by the retention job).
    pub retention: BTreeMap<Kind, Duration>,
    /// How long the daily rollups (counts, no pseudonyms) are kept: `retention.rollups`, default 5 years.
    pub rollup_retention: Duration,
    /// No usage number describing fewer than this many distinct visitors leaves a canned report, whatever
    /// the filters: breakdown rows are left out, single rows and series withheld (1: none).
    pub k_threshold: u64,
    /// The same for crash triage reports (crash groups, a group, its trend): default 1, so that engineers
    /// see a crash that hit one person (a group holds scrubbed code text, not behaviour).
    pub k_threshold_crashes: u64,
    /// Property keys that hold identifiers (`customer_no`, `account_email`): never stored, and their values,
    /// like the user id and the client IP, are replaced wherever they also appear in the event's free text.
    pub identifiers: Vec<String>,
    /// Built-in scrubbing rules that are off unless named here ([`crate::scrub::OPT_IN_RULES`]: `phone`).
    pub scrub_opt_in: Vec<String>,
    /// Events stamped further back than this (`ts`) are refused one by one: 7 days by default, for apps
    /// that send what they collected offline. Older history is not taken through ingestion.
    pub accept_past: Duration,
    /// Events stamped further ahead of the server's clock than this are refused one by one (5 minutes).
    pub accept_future: Duration,
}

impl Default for TenantPolicy {
    fn default() -> Self {
        PolicyConfig::default()
            .try_into()
            .expect("the default policy is valid")
    }
}

impl TenantPolicy {
    /// Whether an event stamped `ts` is inside the accept window around `now` (both epoch milliseconds);
    /// if not, why, in words for the client.
    pub fn accepts_time(&self, ts: i64, now: i64) -> Result<(), String> {
        let past = self.accept_past.as_millis() as i64;
        let future = self.accept_future.as_millis() as i64;
        if ts < now.saturating_sub(past) {
            return Err(format!(
                "older than this tenant accepts ({} back, its policy's accept_past); history is not \
                 taken through ingestion",
                humantime::format_duration(self.accept_past)
            ));
        }
        if ts > now.saturating_add(future) {
            return Err(format!(
                "more than {} ahead of the server's clock (the policy's accept_future); check the client's clock",
                humantime::format_duration(self.accept_future)
            ));
        }
        Ok(())
    }

    pub fn accepts(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }

    /// The geography actually kept, after the IP mode's cap.
    pub fn geo_level(&self) -> GeoLevel {
        match self.ip {
            IpMode::GeoOnly => self.geo.min(GeoLevel::Country),
            _ => self.geo,
        }
    }

    /// Whether a property key is kept (an identifier never is).
    pub fn keeps_prop(&self, key: &str) -> bool {
        !self.is_identifier(key)
            && self
                .props
                .as_ref()
                .is_none_or(|allowed| allowed.iter().any(|a| a == key))
    }

    /// Whether a property key names an identifier (`identifiers`).
    pub fn is_identifier(&self, key: &str) -> bool {
        self.identifiers.iter().any(|i| i == key)
    }

    /// Whether the opt-in scrubbing rule `rule` is on.
    pub fn scrubs(&self, rule: &str) -> bool {
        self.scrub_opt_in.iter().any(|r| r == rule)
    }
}

/// Default retention of the daily rollups: five years.
pub const DEFAULT_ROLLUP_RETENTION_DAYS: u64 = 1826;

/// Default retention of raw events: 13 months for usage, 90 days for crashes.
pub const DEFAULT_RETENTION_DAYS: [(Kind, u64); 3] =
    [(Kind::Pageview, 395), (Kind::Event, 395), (Kind::Crash, 90)];

/// The policy as written in TOML, before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PolicyConfig {
    ip: IpMode,
    geo: GeoLevel,
    dnt: SignalMode,
    gpc: SignalMode,
    require_consent: bool,
    props: Option<Vec<String>>,
    query_params: Vec<String>,
    kinds: Vec<String>,
    bots: BotMode,
    timezone: Option<String>,
    scrub: Vec<ScrubConfig>,
    #[serde(with = "retention_serde")]
    retention: BTreeMap<String, Duration>,
    k_threshold: u64,
    k_threshold_crashes: u64,
    identifiers: Vec<String>,
    scrub_opt_in: Vec<String>,
    accept_past: String,
    accept_future: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScrubConfig {
    name: String,
    pattern: String,
}

mod retention_serde {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Duration>, D::Error> {
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        raw.into_iter()
            .map(|(k, v)| {
                humantime::parse_duration(&v)
                    .map(|d| (k.clone(), d))
                    .map_err(|e| {
                        serde::de::Error::custom(format!(
                            "retention.{k} = {v:?} is not a duration like \"90d\" or \"13months\": {e}"
                        ))
                    })
            })
            .collect()
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            ip: IpMode::Drop,
            geo: GeoLevel::Country,
            dnt: SignalMode::Anonymous,
            gpc: SignalMode::Anonymous,
            require_consent: false,
            props: None,
            query_params: Vec::new(),
            kinds: Kind::ALL.iter().map(|k| k.as_str().to_owned()).collect(),
            bots: BotMode::Drop,
            timezone: None,
            scrub: Vec::new(),
            retention: BTreeMap::new(),
            k_threshold: 5,
            k_threshold_crashes: 1,
            identifiers: Vec::new(),
            scrub_opt_in: Vec::new(),
            accept_past: "7d".into(),
            accept_future: "5m".into(),
        }
    }
}

impl TryFrom<PolicyConfig> for TenantPolicy {
    type Error = String;

    fn try_from(c: PolicyConfig) -> Result<Self, String> {
        let window = |name: &str, v: &str| {
            humantime::parse_duration(v)
                .map_err(|e| format!("{name} = {v:?} is not a duration like \"7d\" or \"5m\": {e}"))
        };
        let accept_past = window("accept_past", &c.accept_past)?;
        let accept_future = window("accept_future", &c.accept_future)?;
        if accept_past < Duration::from_secs(3600) {
            return Err("accept_past: at least one hour (clients batch and retry)".into());
        }
        if accept_future > Duration::from_secs(86_400) {
            return Err("accept_future: at most one day".into());
        }
        let mut kinds = Vec::new();
        for k in &c.kinds {
            let kind = Kind::parse(k).ok_or_else(|| {
                format!("kinds: unknown kind {k:?}; expected \"pageview\", \"event\" or \"crash\"")
            })?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        if kinds.is_empty() {
            return Err("kinds: empty; a tenant must accept at least one event kind".into());
        }
        let timezone = c
            .timezone
            .as_deref()
            .map(|z| {
                z.parse::<chrono_tz::Tz>().map_err(|_| {
                    format!("timezone: {z:?} is not an IANA time zone like \"Europe/Berlin\"")
                })
            })
            .transpose()?;
        for p in &c.query_params {
            if p.is_empty() {
                return Err("query_params: empty parameter name".into());
            }
            if crate::scrub::is_secret_key(p) {
                return Err(format!(
                    "query_params: {p:?} names a secret; it cannot be kept (its value would be scrubbed anyway)"
                ));
            }
        }
        let mut scrub = Vec::new();
        for r in &c.scrub {
            if scrub.iter().any(|x: &CustomRule| x.name == r.name) {
                return Err(format!("scrub: rule {:?} is listed twice", r.name));
            }
            scrub.push(CustomRule::new(&r.name, &r.pattern)?);
        }
        let mut retention: BTreeMap<Kind, Duration> = DEFAULT_RETENTION_DAYS
            .iter()
            .map(|(k, d)| (*k, Duration::from_secs(d * 86_400)))
            .collect();
        let mut rollup_retention = Duration::from_secs(DEFAULT_ROLLUP_RETENTION_DAYS * 86_400);
        for (k, d) in c.retention {
            if d.as_secs() < 86_400 {
                return Err(format!(
                    "retention.{k}: at least one day (partitions are daily)"
                ));
            }
            if k == "rollups" {
                rollup_retention = d;
                continue;
            }
            let kind = Kind::parse(&k).ok_or_else(|| {
                format!("retention: unknown kind {k:?}; expected pageview, event, crash or rollups")
            })?;
            retention.insert(kind, d);
        }
        if let Some((kind, d)) = retention.iter().find(|(_, d)| **d > rollup_retention) {
            return Err(format!(
                "retention.rollups ({}d) is shorter than retention.{kind} ({}d): rollups must outlive the raw events they summarise",
                rollup_retention.as_secs() / 86_400,
                d.as_secs() / 86_400
            ));
        }
        if c.k_threshold == 0 {
            return Err("k_threshold: at least 1 (1 turns suppression off)".into());
        }
        if c.k_threshold_crashes == 0 {
            return Err("k_threshold_crashes: at least 1 (1 shows every crash group)".into());
        }
        if let Some(i) = c.identifiers.iter().find(|i| i.is_empty()) {
            return Err(format!("identifiers: empty property key {i:?}"));
        }
        for r in &c.scrub_opt_in {
            if !crate::scrub::OPT_IN_RULES.contains(&r.as_str()) {
                return Err(format!(
                    "scrub_opt_in: unknown rule {r:?}; the opt-in rules are: {}",
                    crate::scrub::OPT_IN_RULES.join(", ")
                ));
            }
        }
        Ok(TenantPolicy {
            k_threshold: c.k_threshold,
            k_threshold_crashes: c.k_threshold_crashes,
            identifiers: c.identifiers,
            scrub_opt_in: c.scrub_opt_in,
            accept_past,
            accept_future,
            ip: c.ip,
            geo: c.geo,
            dnt: c.dnt,
            gpc: c.gpc,
            require_consent: c.require_consent,
            props: c.props,
            query_params: c.query_params,
            kinds,
            bots: c.bots,
            timezone,
            scrub,
            retention,
            rollup_retention,
        })
    }
}

/// The /24 (IPv4) or /48 (IPv6) network of an address, as CIDR text.
pub(crate) fn truncate_ip(ip: IpAddr) -> String {
    let net = match ip {
        IpAddr::V4(v4) => {
            ipnet::IpNet::V4(ipnet::Ipv4Net::new(v4, 24).expect("24 is a valid prefix"))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => return truncate_ip(IpAddr::V4(v4)),
            None => ipnet::IpNet::V6(ipnet::Ipv6Net::new(v6, 48).expect("48 is a valid prefix")),
        },
    };
    net.trunc().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_to_network() {
        assert_eq!(
            truncate_ip("203.0.113.77".parse().unwrap()),
            "203.0.113.0/24"
        );
        assert_eq!(
            truncate_ip("2001:db8:1234:5678::1".parse().unwrap()),
            "2001:db8:1234::/48"
        );
        assert_eq!(
            truncate_ip("::ffff:198.51.100.9".parse().unwrap()),
            "198.51.100.0/24"
        );
    }

    fn parse(toml_text: &str) -> Result<TenantPolicy, String> {
        toml::from_str::<TenantPolicy>(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn full_policy_parses() {
        let p = parse(
            r#"
            ip = "geo_only"
            geo = "city"
            dnt = "suppress"
            gpc = "ignore"
            require_consent = true
            props = ["plan"]
            query_params = ["page"]
            kinds = ["pageview", "crash"]
            bots = "flag"
            timezone = "Europe/Berlin"
            scrub = [{ name = "order", pattern = 'ORD-\d+' }]
            [retention]
            crash = "30d"
            "#,
        )
        .unwrap();
        assert_eq!(p.geo_level(), GeoLevel::Country);
        assert_eq!((p.dnt, p.gpc), (SignalMode::Suppress, SignalMode::Ignore));
        assert!(p.accepts(Kind::Crash) && !p.accepts(Kind::Event));
        assert!(p.keeps_prop("plan") && !p.keeps_prop("email"));
        assert_eq!(p.timezone, Some(chrono_tz::Europe::Berlin));
        assert_eq!(p.retention[&Kind::Crash], Duration::from_secs(30 * 86_400));
        assert_eq!(
            p.retention[&Kind::Pageview],
            Duration::from_secs(395 * 86_400)
        );
        assert_eq!(p.scrub[0].name, "order");
        let p = parse(
            "identifiers = [\"customer_no\"]\nscrub_opt_in = [\"phone\"]\nk_threshold_crashes = 3",
        )
        .unwrap();
        assert!(p.is_identifier("customer_no") && !p.keeps_prop("customer_no"));
        assert!(p.scrubs("phone") && p.k_threshold_crashes == 3);
        assert!(!TenantPolicy::default().scrubs("phone"));
    }

    #[test]
    fn defaults_are_privacy_first() {
        let p = TenantPolicy::default();
        assert_eq!((p.ip, p.geo), (IpMode::Drop, GeoLevel::Country));
        assert_eq!(
            (p.dnt, p.gpc),
            (SignalMode::Anonymous, SignalMode::Anonymous)
        );
        assert_eq!(p.bots, BotMode::Drop);
        assert_eq!(p.kinds, Kind::ALL);
        assert_eq!(parse("").unwrap(), p);
    }

    #[test]
    fn bad_policies_are_refused_with_the_setting_named() {
        for (text, expected) in [
            ("ip = \"hash\"", "unknown variant `hash`"),
            ("kinds = [\"click\"]", "unknown kind \"click\""),
            ("kinds = []", "at least one event kind"),
            ("timezone = \"Mars/Olympus\"", "not an IANA time zone"),
            (
                "scrub = [{ name = \"x\", pattern = \"(\" }]",
                "not a valid regex",
            ),
            (
                "scrub = [{ name = \"x\", pattern = \"a*\" }]",
                "matches the empty string",
            ),
            (
                "scrub = [{ name = \"Bad Name\", pattern = \"a\" }]",
                "must be 1 to 32",
            ),
            ("query_params = [\"token\"]", "names a secret"),
            ("[retention]\ncrash = \"soon\"", "not a duration"),
            ("[retention]\nclick = \"9d\"", "unknown kind \"click\""),
            ("[retention]\ncrash = \"1h\"", "at least one day"),
            ("geo = \"street\"", "unknown variant `street`"),
            ("dnt = \"maybe\"", "unknown variant `maybe`"),
            ("colour = 1", "unknown field `colour`"),
            ("k_threshold_crashes = 0", "at least 1"),
            ("scrub_opt_in = [\"fax\"]", "unknown rule \"fax\""),
            ("identifiers = [\"\"]", "empty property key"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
