//! What the server and the command-line jobs both need: the environment, logging, the GeoIP database,
//! tenant lookup and the checks that refuse a combination before anything starts.

use anyhow::{Context, bail};
use tacet_model::TenantId;
use tacet_privacy::GeoDb;
use tacet_privacy::explain::Installation;

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
        geo_is_dbip: geo.is_some_and(|g| g.database_type().to_ascii_lowercase().contains("dbip")),
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
pub(crate) fn master_key(config: &Config) -> anyhow::Result<Option<tacet_ingest::MasterKey>> {
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
    tacet_ingest::MasterKey::from_hex(&text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{source}: {e}"))
}
