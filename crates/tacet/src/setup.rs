//! What the server and the command-line jobs both need: the environment, logging, the GeoIP database,
//! tenant lookup and the checks that refuse a combination before anything starts.

use anyhow::{Context, bail};
use tacet_model::TenantId;
use tacet_privacy::GeoDb;
use tacet_privacy::explain::Installation;

use tacet_server::TenantEntry;

use crate::config::Config;

pub(crate) fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub(crate) fn load_geo(path: &std::path::Path) -> anyhow::Result<GeoDb> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read the GeoIP database {} (setting geoip)",
            path.display()
        )
    })?;
    GeoDb::from_bytes(bytes).with_context(|| format!("geoip = {}", path.display()))
}

pub(crate) fn installation(geo: Option<&GeoDb>) -> Installation {
    Installation {
        geo_database: geo.map(|g| g.database_type().to_owned()),
        geo_is_dbip: geo.is_some_and(GeoDb::is_dbip),
    }
}

/// Ballista sessions cannot decrypt the lake yet: refuse the combination with what to do instead.
pub(crate) fn refuse_ballista_with_encryption(config: &Config, what: &str) -> anyhow::Result<()> {
    if (config.query.ballista.is_some() || what == "tacet ballista")
        && master_key(config)?.is_some()
    {
        bail!(
            "{what}: distributed SQL on Ballista cannot read a lake encrypted at rest ([encryption] or \
             TACET_MASTER_KEY is set); remove [query] ballista to query locally"
        );
    }
    Ok(())
}

pub(crate) fn known_tenant(config: &Config, id: &str) -> anyhow::Result<TenantId> {
    if !config.tenant.iter().any(|t| t.id == id) {
        let ids: Vec<&str> = config.tenant.iter().map(|t| t.id.as_str()).collect();
        bail!(
            "no tenant {id:?} in the configuration; tenants are: {}",
            ids.join(", ")
        );
    }
    Ok(TenantId::new(id)?)
}

pub(crate) fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TACET_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// The master key, from `TACET_MASTER_KEY` or `encryption.master_key_file`; `None`: no encryption at rest.
/// A key typed by hand (see [`weak_master_key`]) is refused unless `insecure_demo = true`.
pub(crate) fn master_key(config: &Config) -> anyhow::Result<Option<tacet_ingest::MasterKey>> {
    let Some((key, source)) = read_master_key(config)? else {
        return Ok(None);
    };
    if let Some(weak) = weak_master_key(&key, &source)
        && !config.insecure_demo
    {
        bail!("{weak} (or set insecure_demo = true for a throwaway demo)");
    }
    Ok(Some(key))
}

/// The key that seals the shared state in the lake's bucket (`shared_state = "lake"`): `TACET_STATE_KEY`
/// (64 hex characters), else derived from the master key. Neither: refused, since the salts and subject
/// keys would lie in plain next to Parquet files that analysts read.
pub(crate) fn state_key(config: &Config) -> anyhow::Result<[u8; 32]> {
    if let Some(text) = std::env::var("TACET_STATE_KEY")
        .ok()
        .filter(|v| !v.is_empty())
    {
        let key = tacet_ingest::MasterKey::from_hex(&text).map_err(|e| {
            anyhow::anyhow!("TACET_STATE_KEY: {}", e.replace("master key", "state key"))
        })?;
        if let Some(weak) = weak_master_key(&key, "TACET_STATE_KEY")
            && !config.insecure_demo
        {
            bail!("{}", weak.replace("master key", "state key"));
        }
        return Ok(key.derive("tacet shared state v1"));
    }
    match master_key(config)? {
        Some(master) => Ok(master.derive("tacet shared state v1")),
        None => bail!(
            "shared_state = \"lake\" keeps the salts and subject keys in the bucket, sealed under a key that \
             is not there: set TACET_STATE_KEY to the same 64 hex characters on every node (`openssl rand \
             -hex 32`), or configure a master key (TACET_MASTER_KEY), from which it is derived"
        ),
    }
}

/// The master key and where it came from, unchecked.
fn read_master_key(config: &Config) -> anyhow::Result<Option<(tacet_ingest::MasterKey, String)>> {
    let (text, source) = match (
        std::env::var("TACET_MASTER_KEY")
            .ok()
            .filter(|v| !v.is_empty()),
        &config.encryption.master_key_file,
    ) {
        (Some(v), _) => (v, "TACET_MASTER_KEY".to_owned()),
        (None, Some(path)) => (
            std::fs::read_to_string(path).with_context(|| {
                format!(
                    "cannot read the master key file {} (encryption.master_key_file)",
                    path.display()
                )
            })?,
            path.display().to_string(),
        ),
        (None, None) => return Ok(None),
    };
    let key =
        tacet_ingest::MasterKey::from_hex(&text).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    Ok(Some((key, source)))
}

fn weak_master_key(key: &tacet_ingest::MasterKey, source: &str) -> Option<String> {
    let distinct = key.distinct_bytes();
    (distinct < tacet_ingest::MasterKey::MIN_DISTINCT_BYTES).then(|| {
        format!(
            "{source}: the master key has only {distinct} different byte value(s), so it was typed or \
             copied from an example, not generated; make one with `openssl rand -hex 32`"
        )
    })
}

/// Secret keys (read, reports, admin) are at least this long.
pub(crate) const MIN_SECRET_KEY_CHARS: usize = 16;

/// Words that mark a value nobody replaced.
const PLACEHOLDERS: &[&str] = &[
    "replace",
    "changeme",
    "change-me",
    "change_me",
    "placeholder",
    "example",
    "todo",
    "xxxx",
];

/// Why `value` is no key to run with: a placeholder (any key), or for a secret key too short or too
/// repetitive to be guessed only by luck.
fn weak_key(value: &str, secret: bool) -> Option<String> {
    let lower = value.to_ascii_lowercase();
    if let Some(word) = PLACEHOLDERS.iter().find(|w| lower.contains(*w)) {
        return Some(format!("looks like a placeholder (it contains {word:?})"));
    }
    if !secret {
        return None;
    }
    let chars = value.chars().count();
    if chars < MIN_SECRET_KEY_CHARS {
        return Some(format!(
            "is {chars} characters; secret keys need at least {MIN_SECRET_KEY_CHARS}"
        ));
    }
    let mut distinct: Vec<char> = value.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 8 {
        return Some(format!(
            "uses only {} different characters, so it was typed, not generated",
            distinct.len()
        ));
    }
    None
}

/// Refuses to serve with weak or placeholder access keys, naming each, or a master key typed by hand,
/// unless `insecure_demo = true` (then each is a warning). The ingest key is public (it ships in web pages),
/// so only a placeholder is refused. Reads nothing but the configuration and the master key, so a refused
/// server has written nothing.
pub(crate) fn check_keys(config: &Config, tenants: &[TenantEntry]) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    // A master key that cannot be read is refused even in a demo; it is named with the others.
    let mut fatal = false;
    match read_master_key(config) {
        Ok(Some((key, source))) => problems.extend(weak_master_key(&key, &source)),
        Ok(None) => {}
        Err(e) => {
            fatal = true;
            problems.push(format!("{e:#}"));
        }
    }
    for t in tenants {
        let keys = [
            ("ingest_key", Some(&t.ingest_key), false),
            ("read_key", Some(&t.read_key), true),
            ("reports_key", t.reports_key.as_ref(), true),
            ("admin_key", t.admin_key.as_ref(), true),
        ];
        for (name, value, secret) in keys {
            if let Some(why) = value.and_then(|v| weak_key(v, secret)) {
                let from = config
                    .tenant
                    .iter()
                    .find(|c| c.id == t.id.as_str())
                    .and_then(|c| match name {
                        "ingest_key" => c.ingest_key_env.as_deref(),
                        "read_key" => c.read_key_env.as_deref(),
                        "reports_key" => c.reports_key_env.as_deref(),
                        _ => c.admin_key_env.as_deref(),
                    })
                    .map(|var| format!(" (from {var})"))
                    .unwrap_or_default();
                problems.push(format!("tenant {:?}: {name}{from} {why}", t.id.as_str()));
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    if config.insecure_demo && !fatal {
        for p in &problems {
            tracing::warn!("insecure_demo = true: {p}");
        }
        return Ok(());
    }
    bail!(
        "refusing to serve with weak or unreadable keys:\n  {}\nmake each secret key with \
         `openssl rand -hex 16` (or `tacet tenant key create`) and the master key with \
         `openssl rand -hex 32`; for a throwaway demo, insecure_demo = true accepts weak ones",
        problems.join("\n  ")
    )
}
