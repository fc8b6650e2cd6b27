//! Configuration: a TOML file (or the embedded default), then `TACET_*` environment variables, then flags.
//! Validated once, at start-up, with errors that name the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ipnet::IpNet;
use serde::Deserialize;
use tacet_ingest::IngestConfig;
use tacet_lake::{Lake, RoutedStore};
use tacet_model::TenantId;
use tacet_privacy::TenantPolicy;
use tacet_query::QueryConfig;
use tacet_server::{ServerConfig, TenantEntry};
use tacet_state::Dir;
use tacet_wal::WalConfig;

/// The configuration used when no file is given: local disk, one demo tenant, localhost.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// `[postgres]`: the Postgres wire-protocol listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Where it listens, e.g. "127.0.0.1:5433". Without `[tls]` loopback only (passwords, the read keys,
    /// would travel in clear text); with it, any address, and every connection must use TLS.
    pub listen: SocketAddr,
    /// Connections at once, all tenants together; more wait to be accepted.
    #[serde(default = "default_pg_connections")]
    pub max_connections: usize,
    /// Connections at once of one tenant; one more is refused at login.
    #[serde(default = "default_pg_tenant_connections")]
    pub max_connections_per_tenant: usize,
    /// A connection without a statement for this long is closed ("10m"; a running statement is not
    /// idleness).
    #[serde(default = "default_pg_idle", with = "humantime_serde")]
    pub idle_timeout: std::time::Duration,
}

fn default_pg_idle() -> std::time::Duration {
    std::time::Duration::from_secs(600)
}

/// `[flight_sql]`: the Arrow Flight SQL listener (tacet_server::flight).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlightSqlConfig {
    /// Where it listens, e.g. "127.0.0.1:50051". Without `[tls]` loopback only (the read key travels in
    /// a header); with it, any address, TLS only.
    pub listen: SocketAddr,
    /// Connections at once, all tenants together; more wait to be accepted.
    #[serde(default = "default_pg_connections")]
    pub max_connections: usize,
    /// Requests at once on one connection.
    #[serde(default = "default_flight_streams")]
    pub max_streams: usize,
}

fn default_flight_streams() -> usize {
    4
}

fn default_pg_connections() -> usize {
    64
}

fn default_pg_tenant_connections() -> usize {
    8
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port `tacet serve` listens on. Env: `TACET_LISTEN`.
    pub listen: SocketAddr,
    /// Where the lake (`lake/`), the write-ahead log (`wal/`) and the key store (`keys/`) live; relative paths are from the working
    /// directory. Env: `TACET_DATA_DIR`.
    pub data_dir: PathBuf,
    /// Where the key store (`keys/`) and the audit log (`audit/`) live when several ingestion nodes share
    /// them (a shared volume); default: `data_dir`. Env: `TACET_SHARED_DIR`.
    pub shared_dir: Option<PathBuf>,
    /// Where the state every node must share lives (keys, the node register, erasure records, the audit
    /// chain, triage marks): `"dir"` (default: `shared_dir`, or `data_dir`) or `"lake"`: the `[storage]` S3
    /// bucket, under `<prefix>/_tacet/state/`, written with conditional puts, so that nodes share nothing
    /// but the bucket. Every object there is sealed (AES-256-GCM) under `TACET_STATE_KEY` (or a key derived
    /// from the master key), the same on every node. Env: `TACET_SHARED_STATE`.
    pub shared_state: SharedState,
    /// This ingestion node's id (0 to 65535) when several nodes write one lake: it goes into the names of
    /// the files the node flushes, so names never collide. Leave it out on a single node. Env:
    /// `TACET_NODE_ID`.
    pub node_id: Option<u16>,
    /// Where the lake lives (`[storage]`): local disk (default) or S3.
    pub storage: crate::storage::StorageConfig,
    /// Proxies (CIDR list) whose `X-Forwarded-For` header is believed. Empty: use the peer address.
    pub trusted_proxies: Vec<IpNet>,
    /// A MaxMind DB file (GeoLite2 or DB-IP Lite, City or Country) for country, region and city. Optional.
    /// Reloaded when the file changes (checked every `geoip_check_interval`).
    pub geoip: Option<PathBuf>,
    /// How often the GeoIP file is checked for a new version; "0s" never checks.
    #[serde(with = "humantime_serde")]
    pub geoip_check_interval: std::time::Duration,
    pub ingest: IngestConfig,
    pub wal: WalConfig,
    pub query: QueryConfig,
    pub http: ServerConfig,
    /// Terminate TLS here (`[tls]` with `cert` and `key`); without it, plain HTTP (local use, or behind a
    /// proxy that terminates TLS).
    pub tls: Option<TlsConfig>,
    pub encryption: EncryptionConfig,
    pub lifecycle: LifecycleConfig,
    pub dashboard: tacet_server::ui::DashboardConfig,
    /// SQL over the Postgres wire protocol for psql and BI tools (`[postgres]`, tacet_server::pg); off
    /// without it.
    pub postgres: Option<PostgresConfig>,
    /// Arrow Flight SQL for pandas, Polars and ADBC (`[flight_sql]`, tacet_server::flight); off without it.
    pub flight_sql: Option<FlightSqlConfig>,
    /// The tenants (`[[tenant]]` tables).
    pub tenant: Vec<TenantConfig>,
    /// How often crash alerts are checked (tenants with `[tenant.alerts]`); "0s" never.
    #[serde(with = "humantime_serde")]
    pub alert_interval: std::time::Duration,
    /// Accept weak or placeholder keys (secret keys under 16 characters, `replace-me`, an all-zero master
    /// key) with a warning instead of refusing to start. For the embedded demo and throwaway tests only.
    pub insecure_demo: bool,
}

/// `shared_state`: where the state nodes share lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SharedState {
    /// A directory: `shared_dir`, or `data_dir` (one node).
    #[default]
    Dir,
    /// The lake's S3 bucket, under `_tacet/state/`.
    Lake,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("tacet-data"),
            shared_dir: None,
            shared_state: SharedState::Dir,
            node_id: None,
            storage: crate::storage::StorageConfig::default(),
            trusted_proxies: Vec::new(),
            geoip: None,
            geoip_check_interval: std::time::Duration::from_secs(30),
            ingest: IngestConfig::default(),
            wal: WalConfig::default(),
            query: QueryConfig::default(),
            http: ServerConfig::default(),
            tls: None,
            encryption: EncryptionConfig::default(),
            lifecycle: LifecycleConfig::default(),
            dashboard: tacet_server::ui::DashboardConfig::default(),
            postgres: None,
            flight_sql: None,
            tenant: Vec::new(),
            insecure_demo: false,
            alert_interval: std::time::Duration::from_secs(60),
        }
    }
}

/// Encryption at rest (`[encryption]`): lake files are written with Parquet modular encryption under a
/// per-tenant data key, wrapped by a master key from outside the data directory. Off without a master key.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionConfig {
    /// A file holding the master key (64 hex characters). The environment variable `TACET_MASTER_KEY`
    /// takes precedence.
    pub master_key_file: Option<PathBuf>,
}

/// TLS with rustls (`[tls]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the two files are checked for a change (a renewed certificate is loaded without a
    /// restart); "0s" never.
    #[serde(default = "default_tls_reload", with = "humantime_serde")]
    pub reload_interval: std::time::Duration,
}

fn default_tls_reload() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}

/// The server's scheduled lifecycle jobs (`[lifecycle]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleConfig {
    /// How often the server runs retention (each tenant's policy); "0s" never (run `tacet retention run`
    /// from cron instead).
    #[serde(with = "humantime_serde")]
    pub retention_interval: std::time::Duration,
    /// How often the server merges small Parquet files; "0s" never.
    #[serde(with = "humantime_serde")]
    pub compact_interval: std::time::Duration,
    /// Files younger than this are not merged.
    #[serde(with = "humantime_serde")]
    pub compact_min_age: std::time::Duration,
    /// Merged files grow to about this many bytes; larger files are left alone.
    pub compact_target_bytes: u64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            retention_interval: std::time::Duration::from_secs(3600),
            compact_interval: std::time::Duration::from_secs(600),
            compact_min_age: std::time::Duration::from_secs(300),
            compact_target_bytes: 128 << 20,
        }
    }
}

/// One tenant (a client organisation, the data controller).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// 1 to 64 characters of `a-z`, `0-9`, `-`, `_`. Appears in lake paths.
    pub id: String,
    /// The public, write-only key web pages send beacons with.
    pub ingest_key: Option<String>,
    /// Or: the name of an environment variable holding it.
    pub ingest_key_env: Option<String>,
    /// The secret read key with scope `sql`: SQL over this tenant's pseudonymised rows, the reports and the
    /// dashboard.
    pub read_key: Option<String>,
    /// Or: the name of an environment variable holding it.
    pub read_key_env: Option<String>,
    /// Optional: a secret read key with scope `reports`: the canned reports and the dashboard (k-threshold
    /// applied), refused on `/v1/sql`. For a team that may see the dashboard but not the rows.
    pub reports_key: Option<String>,
    /// Or: the name of an environment variable holding it.
    pub reports_key_env: Option<String>,
    /// The secret key for the admin API (subject requests, retention, audit log): distinct from the read
    /// key. Without it (and without `admin_key_env`) the tenant has no admin API; the CLI still works.
    pub admin_key: Option<String>,
    /// Or: the name of an environment variable holding it.
    pub admin_key_env: Option<String>,
    /// Web origins whose pages may post beacons (`["https://shop.example"]`); a browser request from any
    /// other origin is refused (403). Empty (the default): any origin, the ingest key being public anyway.
    #[serde(default)]
    pub origins: Vec<String>,
    /// Pins the tenant's lake to its own bucket or prefix (`[tenant.storage]`, S3 only; the default
    /// `[storage]` must be S3 too): data residency.
    #[serde(default)]
    pub storage: Option<crate::storage::StorageConfig>,
    /// The tenant's privacy policy (`[tenant.privacy]`): IP handling, geography, DNT/GPC, consent, allowed
    /// properties and query parameters, kinds, bots, time zone, own scrubbing rules, retention.
    #[serde(default)]
    pub privacy: TenantPolicy,
    /// Crash alerts to a webhook (`[tenant.alerts]`: `webhook`, `secret` or `secret_env`, `spike_factor`,
    /// `spike_min_crashes`): new groups, regressions and spikes, signed (`tacet_server::alerts`).
    #[serde(default)]
    pub alerts: Option<tacet_server::alerts::AlertConfig>,
}

/// Where the configuration came from, for the start-up banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Embedded,
    File(PathBuf),
}

impl Config {
    /// Reads `file` (or the embedded default), applies the environment, and validates.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<(Self, Source)> {
        let (text, source) = match file {
            Some(path) => (
                std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the configuration file {}", path.display())
                })?,
                Source::File(path.to_owned()),
            ),
            None => (EMBEDDED_DEFAULT.to_owned(), Source::Embedded),
        };
        let mut config: Config = toml::from_str(&text).with_context(|| match &source {
            Source::File(p) => format!("{} is not a valid configuration", p.display()),
            Source::Embedded => "the embedded default configuration is invalid".to_owned(),
        })?;
        if let Some(listen) = env("TACET_LISTEN") {
            config.listen = listen.parse().with_context(|| {
                format!("TACET_LISTEN={listen:?} is not an address like 127.0.0.1:8080")
            })?;
        }
        if let Some(dir) = env("TACET_DATA_DIR") {
            config.data_dir = PathBuf::from(dir);
        }
        if let Some(dir) = env("TACET_SHARED_DIR") {
            config.shared_dir = Some(PathBuf::from(dir));
        }
        if let Some(state) = env("TACET_SHARED_STATE") {
            config.shared_state = match state.as_str() {
                "dir" => SharedState::Dir,
                "lake" => SharedState::Lake,
                _ => bail!("TACET_SHARED_STATE={state:?}: use \"dir\" or \"lake\""),
            };
        }
        if let Some(id) = env("TACET_NODE_ID") {
            config.node_id = Some(id.parse().with_context(|| {
                format!("TACET_NODE_ID={id:?} is not a node id from 0 to 65535")
            })?);
        }
        config.storage.validate("storage")?;
        if config.shared_state == SharedState::Lake {
            if config.storage.backend != crate::storage::Backend::S3 {
                bail!(
                    "shared_state = \"lake\" needs the lake on S3 ([storage] backend = \"s3\"); on local disk \
                     the shared state is a directory (shared_dir)"
                );
            }
            if config.shared_dir.is_some() {
                bail!(
                    "shared_state = \"lake\" keeps the shared state in the bucket, so shared_dir is not used: \
                     remove shared_dir (or TACET_SHARED_DIR), or set shared_state = \"dir\""
                );
            }
        }
        for t in &config.tenant {
            if let Some(s) = &t.storage {
                s.validate(&format!("tenant {:?} storage", t.id))?;
            }
        }
        Ok((config, source))
    }

    /// The tenants with their keys resolved; fails on anything missing, duplicated or malformed.
    pub fn tenants(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Vec<TenantEntry>> {
        if self.tenant.is_empty() {
            bail!(
                "the configuration lists no tenants: add a [[tenant]] table with id, ingest_key and read_key"
            );
        }
        let resolve = |t: &TenantConfig,
                       what: &str,
                       value: &Option<String>,
                       var: &Option<String>|
         -> anyhow::Result<String> {
            match (value, var) {
                (Some(v), None) => Ok(v.clone()),
                (None, Some(var)) => env(var).filter(|v| !v.is_empty()).with_context(|| {
                    format!("tenant {:?}: {what}_env names the environment variable {var}, which is not set", t.id)
                }),
                (Some(_), Some(_)) => bail!("tenant {:?}: give {what} or {what}_env, not both", t.id),
                (None, None) => bail!("tenant {:?}: {what} (or {what}_env) is required", t.id),
            }
        };
        self.tenant
            .iter()
            .map(|t| {
                Ok(TenantEntry {
                    id: TenantId::new(&t.id)?,
                    policy: t.privacy.clone(),
                    origins: t
                        .origins
                        .iter()
                        .map(|o| normalise_origin(&t.id, o))
                        .collect::<anyhow::Result<_>>()?,
                    ingest_key: resolve(t, "ingest_key", &t.ingest_key, &t.ingest_key_env)?,
                    read_key: resolve(t, "read_key", &t.read_key, &t.read_key_env)?,
                    reports_key: match (&t.reports_key, &t.reports_key_env) {
                        (None, None) => None,
                        _ => Some(resolve(
                            t,
                            "reports_key",
                            &t.reports_key,
                            &t.reports_key_env,
                        )?),
                    },
                    admin_key: match (&t.admin_key, &t.admin_key_env) {
                        (None, None) => None,
                        _ => Some(resolve(t, "admin_key", &t.admin_key, &t.admin_key_env)?),
                    },
                })
            })
            .collect()
    }

    /// The lake the configuration names: its default store, with every tenant that has its own
    /// `[tenant.storage]` routed to that store, and this node's id in the names of the files it flushes.
    pub fn open_lake(&self) -> anyhow::Result<Lake> {
        use crate::storage::Backend;
        let pinned: Vec<(&str, &crate::storage::StorageConfig)> = self
            .tenant
            .iter()
            .filter_map(|t| t.storage.as_ref().map(|s| (t.id.as_str(), s)))
            .collect();
        let lake = match self.storage.backend {
            Backend::Local if pinned.is_empty() => Lake::local(&self.lake_dir())?,
            Backend::Local => bail!(
                "tenant {:?} has its own [tenant.storage], which needs the default [storage] on S3 too \
                 (backend = \"s3\"): a lake split between local disk and S3 is not supported",
                pinned[0].0
            ),
            Backend::S3 => {
                let default = self.storage.s3()?;
                let mut routes = Vec::new();
                for (tenant, storage) in pinned {
                    if storage.backend != Backend::S3 {
                        bail!("[tenant.storage] of tenant {tenant:?}: backend must be \"s3\"");
                    }
                    routes.push((tenant.to_owned(), storage.s3()?));
                }
                if routes.is_empty() {
                    Lake::new(default)
                } else {
                    Lake::new(std::sync::Arc::new(RoutedStore::new(default, routes)))
                }
            }
        };
        Ok(lake.with_node(self.node_id))
    }

    /// Each tenant's time zone (`[privacy] timezone`, UTC when unset): its days in reports, rollups and the
    /// `visits` table (`QueryEngine::set_zones`).
    pub fn zones(&self) -> anyhow::Result<std::collections::HashMap<TenantId, chrono_tz::Tz>> {
        self.tenant
            .iter()
            .map(|t| {
                let zone = t.privacy.timezone.unwrap_or(chrono_tz::UTC);
                Ok((TenantId::new(&t.id)?, zone))
            })
            .collect()
    }

    /// The lake directory of a local `[storage]`.
    pub fn lake_dir(&self) -> PathBuf {
        self.storage
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("lake"))
    }

    fn shared(&self) -> &Path {
        self.shared_dir.as_deref().unwrap_or(&self.data_dir)
    }

    /// The state every node must share (`tacet_state`): `keys/`, `nodes/`, `audit/` of `shared_dir` (or
    /// `data_dir`), or of `_tacet/state/` in the lake's bucket. Open it once per process: an object store's
    /// state has a small runtime of its own.
    pub fn state(&self) -> anyhow::Result<Dir> {
        match self.shared_state {
            SharedState::Dir => Ok(Dir::from(self.shared())),
            SharedState::Lake => {
                let store = self.storage.s3()?;
                let shown = format!(
                    "s3://{}/{}",
                    self.storage.bucket.as_deref().unwrap_or_default(),
                    self.storage.prefix.as_deref().unwrap_or_default()
                );
                let objects = tacet_state::Objects::new(store, "_tacet/state", &shown)
                    .context("cannot start the shared state's runtime")?;
                let key = crate::setup::state_key(self)?;
                Ok(Dir::new(std::sync::Arc::new(tacet_state::Sealed::new(
                    std::sync::Arc::new(objects),
                    &key,
                ))))
            }
        }
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir.join("wal")
    }

    /// The GeoIP database to use: `geoip` if set, else the one `tacet geoip fetch` installed in the data
    /// directory, if any.
    pub fn geoip_path(&self) -> Option<PathBuf> {
        self.geoip.clone().or_else(|| {
            let fetched = crate::geoip::default_path(&self.data_dir);
            fetched.is_file().then_some(fetched)
        })
    }

    /// The tenants' crash alert targets, secrets resolved.
    pub fn alert_targets(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Vec<(TenantId, tacet_server::alerts::AlertTarget)>> {
        self.tenant
            .iter()
            .filter_map(|t| t.alerts.as_ref().map(|a| (t, a)))
            .map(|(t, a)| {
                let target = a.target(&t.id, &env).map_err(anyhow::Error::msg)?;
                Ok((TenantId::new(&t.id)?, target))
            })
            .collect()
    }
}

/// `https://Shop.Example/` → `https://shop.example`; anything but scheme, host and port is an error.
fn normalise_origin(tenant: &str, origin: &str) -> anyhow::Result<String> {
    let bad = || {
        anyhow::anyhow!(
            "tenant {tenant:?}: origins entry {origin:?} is not an origin like \"https://shop.example\" \
             (scheme, host and optional port; no path)"
        )
    };
    let (scheme, rest) = origin.split_once("://").ok_or_else(bad)?;
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if !matches!(scheme, "http" | "https")
        || host.is_empty()
        || host.contains(['/', '?', '#', '@', ' '])
    {
        return Err(bad());
    }
    Ok(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn embedded_default_has_the_demo_tenant() {
        let (c, source) = Config::load(None, no_env).unwrap();
        assert_eq!(source, Source::Embedded);
        let tenants = c.tenants(no_env).unwrap();
        assert_eq!(tenants.len(), 1);
        assert_eq!(
            (tenants[0].id.as_str(), tenants[0].ingest_key.as_str()),
            ("demo", "demo-ingest-key")
        );
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    }

    /// deploy/tacet.example.toml documents every setting at its default value; keep it in step.
    #[test]
    fn example_config_matches_the_defaults() {
        let text = include_str!("../../../deploy/tacet.example.toml");
        let example: Config = toml::from_str(text).unwrap();
        let defaults = Config::default();
        assert_eq!(example.ingest, defaults.ingest);
        assert_eq!(example.wal, defaults.wal);
        assert_eq!(example.query, defaults.query);
        assert_eq!(example.lifecycle, defaults.lifecycle);
        assert_eq!(example.http, defaults.http);
        assert_eq!(example.dashboard, defaults.dashboard);
        assert_eq!(example.listen, defaults.listen);
        assert_eq!(example.data_dir, defaults.data_dir);
        assert_eq!(example.trusted_proxies, defaults.trusted_proxies);
        assert_eq!(example.geoip_check_interval, defaults.geoip_check_interval);
        assert_eq!(example.alert_interval, defaults.alert_interval);
        assert_eq!(example.storage, defaults.storage);
        assert_eq!(
            (example.node_id, &example.shared_dir),
            (defaults.node_id, &defaults.shared_dir)
        );
        assert!(!example.tenant.is_empty());
        // The first example tenant spells out every policy setting at its default.
        assert_eq!(example.tenant[0].privacy, TenantPolicy::default());
    }

    #[test]
    fn keys_from_environment_and_clear_errors() {
        let text = r#"
            [[tenant]]
            id = "acme"
            ingest_key = "ik"
            read_key_env = "ACME_READ_KEY"
        "#;
        let c: Config = toml::from_str(text).unwrap();
        let env = |k: &str| (k == "ACME_READ_KEY").then(|| "secret".to_owned());
        assert_eq!(c.tenants(env).unwrap()[0].read_key, "secret");
        let err = c.tenants(no_env).unwrap_err().to_string();
        assert!(err.contains("ACME_READ_KEY, which is not set"), "{err}");

        let bad: Result<Config, _> = toml::from_str("listen = \"127.0.0.1:1\"\nlisen = 1");
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("unknown field `lisen`")
        );
        let c: Config =
            toml::from_str("[[tenant]]\nid = \"Bad/Id\"\ningest_key = \"a\"\nread_key = \"b\"")
                .unwrap();
        assert!(
            c.tenants(no_env)
                .unwrap_err()
                .to_string()
                .contains("not valid")
        );
        let c: Config = toml::from_str("[ingest]\nflush_interval = \"250ms\"").unwrap();
        assert_eq!(
            c.ingest.flush_interval,
            std::time::Duration::from_millis(250)
        );
    }

    #[test]
    fn a_bad_policy_names_the_tenant_table_and_setting() {
        let text = "[[tenant]]\nid = \"acme\"\ningest_key = \"a\"\nread_key = \"b\"\n[tenant.privacy]\ngeo = \"street\"\n";
        let err = toml::from_str::<Config>(text).unwrap_err().to_string();
        assert!(
            err.contains("unknown variant `street`") && err.contains("line 6"),
            "{err}"
        );
        let text = "[[tenant]]\nid = \"acme\"\ningest_key = \"a\"\nread_key = \"b\"\n[tenant.privacy]\nip = \"truncate\"\n[tenant.privacy.retention]\ncrash = \"30d\"\n";
        let c: Config = toml::from_str(text).unwrap();
        let t = &c.tenants(no_env).unwrap()[0];
        assert_eq!(t.policy.ip, tacet_privacy::IpMode::Truncate);
        assert_eq!(
            t.policy.retention[&tacet_model::Kind::Crash],
            std::time::Duration::from_secs(30 * 86_400)
        );
    }

    #[test]
    fn origins_are_checked_and_normalised() {
        assert_eq!(
            normalise_origin("t", "https://Shop.Example:8443/").unwrap(),
            "https://shop.example:8443"
        );
        for bad in [
            "shop.example",
            "https://shop.example/path",
            "ftp://x",
            "https://",
        ] {
            let err = normalise_origin("t", bad).unwrap_err().to_string();
            assert!(err.contains("not an origin"), "{bad}: {err}");
        }
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = |k: &str| match k {
            "TACET_LISTEN" => Some("0.0.0.0:9000".to_owned()),
            "TACET_DATA_DIR" => Some("/srv/tacet".to_owned()),
            _ => None,
        };
        let (c, _) = Config::load(None, env).unwrap();
        assert_eq!(
            (c.listen.to_string(), c.data_dir),
            ("0.0.0.0:9000".into(), PathBuf::from("/srv/tacet"))
        );
        let bad = |k: &str| (k == "TACET_LISTEN").then(|| "localhost".to_owned());
        assert!(
            Config::load(None, bad)
                .unwrap_err()
                .to_string()
                .contains("TACET_LISTEN")
        );
    }
}
