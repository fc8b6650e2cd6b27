//! `tacet keys`: the key store's salts and subject keys, and rotation.

use std::sync::Arc;

use anyhow::bail;
use clap::Subcommand;
use tacet_ingest::KeyStore;
use tacet_model::{SystemClock, TenantId};

use crate::config::Config;
use crate::setup::known_tenant;

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// List each tenant's salt days and subject key versions, and the last lifecycle records.
    Status,
    /// Create the next version of a tenant's subject key. New user pseudonyms use it (a running server
    /// picks it up within 10 seconds); older versions are kept so subject-rights requests still find events
    /// pseudonymised under them. Pseudonyms of the same user before and after do not match.
    Rotate {
        /// Tenant id, as in the configuration.
        tenant: String,
    },
}

fn key_store(config: &Config) -> anyhow::Result<KeyStore> {
    let dir = config.state()?.sub("keys");
    if !dir.exists("store.id")? && dir.local_path().is_none_or(|p| !p.is_dir()) {
        bail!(
            "no key store at {}: the server has not run with this data directory yet (or pass --data-dir)",
            dir.place("")
        );
    }
    Ok(KeyStore::open(dir, Arc::new(SystemClock))?)
}

pub(crate) fn run(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    let keys = key_store(config)?;
    match command {
        KeysCommand::Rotate { tenant } => {
            let tenant = known_tenant(config, &tenant)?;
            let version = keys.rotate_subject(&tenant)?;
            println!(
                "tenant {tenant}: subject key v{version} created; new user pseudonyms use it (a running server \
                 within 10 seconds). Recorded in {}.",
                keys.dir().place("lifecycle.jsonl")
            );
        }
        KeysCommand::Status => {
            let salts = keys.salt_days();
            for t in &config.tenant {
                let id = TenantId::new(&t.id)?;
                let days: Vec<String> = salts
                    .iter()
                    .filter(|(x, _)| *x == id)
                    .map(|(_, d)| d.to_string())
                    .collect();
                let versions: Vec<String> = keys
                    .subject_keys(&id)?
                    .iter()
                    .map(|(v, _)| format!("v{v}"))
                    .collect();
                println!(
                    "{id}: salts for {} (day in {}); subject keys {}",
                    if days.is_empty() {
                        "no day".to_owned()
                    } else {
                        days.join(", ")
                    },
                    t.privacy.timezone.map_or("UTC", |z| z.name()),
                    if versions.is_empty() {
                        "none yet".to_owned()
                    } else {
                        versions.join(", ")
                    },
                );
            }
            let log = keys
                .dir()
                .log_read("lifecycle.jsonl")?
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            println!("last lifecycle records ({} in all):", lines.len());
            for l in lines.iter().rev().take(10).rev() {
                println!("  {l}");
            }
        }
    }
    Ok(())
}
