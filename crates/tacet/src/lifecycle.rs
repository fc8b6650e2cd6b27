//! The lifecycle subcommands: retention, subject rights, offboarding, compaction, the audit log. They open
//! the data directory the way `serve` does (write-ahead log replayed and flushed first), under its lock,
//! so they refuse to run beside a server on the same directory: use its admin API then.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use tacet_audit::AuditLog;
use tacet_ingest::{KeyStore, Pipeline};
use tacet_lifecycle::{CompactOptions, PropChange, Steward};
use tacet_model::{Clock, ManualClock, SystemClock, TenantId};
use tacet_privacy::{Privacy, TenantPolicy};
use tacet_query::QueryEngine;
use tacet_query::format::{Format, encode};
use tacet_server::PipelineFresh;
use tacet_state::Dir;
use tacet_wal::{Replay, Wal};

use crate::config::Config;
use crate::setup::{known_tenant, master_key};

const ACTOR: &str = "cli";

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Delete every partition past its tenant's retention (per kind) and every rollup past the rollup
    /// retention; a day's rollup is written first if it has none. Prints each drop and a summary.
    Run {
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// One tenant; default: every tenant in the configuration.
        #[arg(long)]
        tenant: Option<String>,
        /// Plan as if today were this day (YYYY-MM-DD, UTC), e.g. to see what goes next month. Only with
        /// --dry-run.
        #[arg(long, requires = "dry_run")]
        as_of: Option<String>,
    },
}

/// Who a subject request is about.
#[derive(Debug, clap::Args)]
pub struct SubjectArgs {
    /// Tenant id, as in the configuration.
    #[arg(long)]
    tenant: String,
    /// The user id the tenant's app sends (`user_id`). "-" reads it from standard input, which keeps it
    /// out of the shell history and the process list.
    #[arg(long, value_name = "ID")]
    user_id: String,
}

#[derive(Debug, Subcommand)]
pub enum SubjectCommand {
    /// Access and portability: write every stored event of the person, and a manifest of what is included
    /// and why other data cannot be linked to them, to a directory.
    Export {
        #[command(flatten)]
        who: SubjectArgs,
        #[arg(long, default_value = "json", value_parser = ["json", "csv", "parquet"])]
        format: String,
        /// Directory to write `events.<format>` and `manifest.json` to (created); default
        /// ./subject-export-<request id>.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Erasure: remove every stored event of the person from the lake, the write-ahead log and the buffer,
    /// rewriting only the files that hold them; verified by reading back.
    Erase {
        #[command(flatten)]
        who: SubjectArgs,
    },
    /// Restriction and objection (opt-out): drop the person's future events at ingestion (reason
    /// `objected`) and leave their stored events out of every query and report.
    Object {
        #[command(flatten)]
        who: SubjectArgs,
    },
    /// Record that the person withdrew their objection (opt back in).
    Withdraw {
        #[command(flatten)]
        who: SubjectArgs,
    },
    /// Rectification: set (KEY=VALUE) or remove (KEY=) properties on every stored event of the person.
    Rectify {
        #[command(flatten)]
        who: SubjectArgs,
        /// KEY=VALUE or KEY= (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", required = true)]
        set: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// End of contract: delete all of the tenant's raw events, keys, salts and objections, keep its rollups
    /// (no pseudonyms), and print a certificate (JSON) of what was removed. Remove the tenant from the
    /// configuration afterwards.
    Offboard {
        /// Tenant id, as in the configuration.
        tenant: String,
        /// Required: this cannot be undone.
        #[arg(long)]
        yes: bool,
    },
    /// Read and admin keys: create (shown once), list, revoke. Stored only as keyed hashes in
    /// keys/access.jsonl; a running server picks changes up within two seconds.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key and print it (the only time it is shown).
    Create {
        /// Tenant id, as in the configuration.
        tenant: String,
        /// read (a read key: see --scope) or admin (the admin API).
        #[arg(long, value_parser = ["read", "admin"])]
        role: String,
        /// For --role read: sql (SQL over the tenant's pseudonymised rows, the reports and the dashboard) or
        /// reports (only the canned reports and the dashboard, k-threshold applied; refused on /v1/sql).
        #[arg(long, value_parser = ["sql", "reports"], default_value = "sql")]
        scope: String,
        /// How long it is valid, e.g. 90d or 1y; default: until revoked.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// List the created keys: id, tenant, role, prefix, created, expires, revoked (never a key).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key by id (see `list`); requests with it are refused from then on.
    Revoke {
        /// The key's id, e.g. k3f9a1c2.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of the audit log; names the first entry that was changed, removed or
    /// reordered. Prints the head hash: keep it elsewhere to pin the log up to now.
    Verify,
    /// Print the last entries (JSON lines).
    Show {
        /// Only this tenant's entries.
        #[arg(long)]
        tenant: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        last: usize,
    },
}

/// The data directory opened for a job: locked, log replayed and flushed.
pub struct Opened {
    pub steward: Steward,
    /// The shared state the job opened (one per process: an object store's has a runtime of its own).
    pub state: Dir,
    _lock: std::fs::File,
}

/// Takes the data directory's lock (held by `serve` too).
pub fn lock_data_dir(config: &Config) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let path = config.data_dir.join("tacet.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another tacet process (a server?) is using the data directory {}; stop it first, or send the \
             request to the running server's admin API (POST /v1/admin/…, see schemas/api.md)",
            config.data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// What [`open_parts`] opens.
pub struct Parts {
    pub pipeline: Arc<Pipeline>,
    pub query: Arc<QueryEngine>,
    pub audit: Arc<AuditLog>,
    pub wal: Arc<Wal>,
    /// What the log holds beyond its checkpoint, for `Pipeline::recover`.
    pub replay: Replay,
}

/// Opens keys, log, lake, query engine and audit log over the data directory. The caller replays.
pub fn open_parts(
    config: &Config,
    state: &Dir,
    clock: Arc<dyn Clock>,
    privacy: Privacy,
) -> anyhow::Result<Parts> {
    let audit = Arc::new(AuditLog::open(state.sub("audit"))?);
    let keys = KeyStore::open(state.sub("keys"), clock.clone())?;
    keys.set_audit(Arc::clone(&audit));
    let keyring = match master_key(config)? {
        None => None,
        Some(master) => {
            let ring = Arc::new(tacet_ingest::DataKeyring::open(
                state.sub("keys").sub("data"),
                master,
            )?);
            keys.set_keyring(Arc::clone(&ring));
            Some(ring)
        }
    };
    for t in &config.tenant {
        keys.set_zone(&TenantId::new(&t.id)?, t.privacy.timezone);
    }
    let mut lake = config.open_lake()?;
    if let Some(ring) = &keyring {
        lake = lake.with_keys(Arc::clone(ring) as Arc<dyn tacet_lake::DataKeys>);
    }
    let (wal, replay) = Wal::open(&config.wal_dir(), config.wal.clone()).with_context(|| {
        format!(
            "cannot open the write-ahead log in {}",
            config.wal_dir().display()
        )
    })?;
    let wal = Arc::new(wal);
    let query = Arc::new(QueryEngine::new(
        Arc::clone(lake.store()),
        config.query.clone(),
    )?);
    query.set_zones(config.zones()?);
    if let Some(ring) = &keyring {
        query.set_data_keys(Arc::clone(ring) as Arc<dyn tacet_lake::DataKeys>);
    }
    let pipeline = Arc::new(Pipeline::new(
        privacy,
        keys,
        lake,
        Arc::clone(&wal),
        clock,
        config.ingest.clone(),
    ));
    query.set_fresh(Arc::new(PipelineFresh(Arc::clone(&pipeline))));
    Ok(Parts {
        pipeline,
        query,
        audit,
        wal,
        replay,
    })
}

/// How this process names itself in a lease: the node, the host (the pod's name on Kubernetes), the
/// process, so that a message about a held lease says where to look.
pub fn lease_holder(config: &Config, what: &str) -> String {
    format!(
        "tacet {what}{} on {} (pid {})",
        config
            .node_id
            .map(|n| format!(" node {n}"))
            .unwrap_or_default(),
        std::env::var("HOSTNAME").unwrap_or_else(|_| "an unnamed host".to_owned()),
        std::process::id()
    )
}

/// Opens the data directory for a job: locked, and whatever the log held written to the lake first.
pub async fn open(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Opened> {
    let lock = lock_data_dir(config)?;
    let state = config.state()?;
    let Parts {
        pipeline,
        query,
        audit,
        replay,
        ..
    } = open_parts(config, &state, clock, Privacy::default())?;
    crate::claim::keystore(config, pipeline.lake().store(), pipeline.keys()).await?;
    if let Some(node) = config.node_id {
        // A job on a stopped node's directory still makes the running nodes flush before an erasure.
        let peers = tacet_ingest::Peers::observe(state.sub("nodes"), node)?;
        pipeline.set_peers(Arc::new(peers));
    }
    let recovered = pipeline.recover(replay);
    if recovered.events > 0 {
        eprintln!(
            "writing {} events the write-ahead log held to the lake first",
            recovered.events
        );
    }
    let flushed = pipeline.flush().await;
    if flushed.failed > 0 {
        bail!(
            "{} events from the write-ahead log could not be written to the lake; fix the storage and retry",
            flushed.failed
        );
    }
    Ok(Opened {
        steward: {
            let steward = Steward::new(pipeline, query, audit);
            steward.set_leases(state.sub("leases"), lease_holder(config, "cli"));
            steward
        },
        state,
        _lock: lock,
    })
}

/// Progress on standard error: one rewritten line on a terminal, a line per step otherwise.
pub fn progress(done: usize, total: usize, what: &str) {
    let mut err = std::io::stderr().lock();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[2K{what}: {done}/{total}");
        if done >= total {
            let _ = writeln!(err);
        }
    } else if done == 0 || done >= total {
        let _ = writeln!(err, "{what}: {done}/{total}");
    }
}

fn user_id(arg: &str) -> anyhow::Result<String> {
    if arg != "-" {
        return Ok(arg.to_owned());
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("cannot read the user id from standard input")?;
    let id = s.trim().to_owned();
    if id.is_empty() {
        bail!("--user-id -: standard input was empty; pipe the user id in");
    }
    Ok(id)
}

fn policy_of(config: &Config, tenant: &TenantId) -> TenantPolicy {
    config
        .tenant
        .iter()
        .find(|t| t.id == tenant.as_str())
        .map(|t| t.privacy.clone())
        .unwrap_or_default()
}

pub async fn retention(config: &Config, command: RetentionCommand) -> anyhow::Result<()> {
    let RetentionCommand::Run {
        dry_run,
        tenant,
        as_of,
    } = command;
    let tenants: Vec<(TenantId, TenantPolicy)> = match tenant {
        Some(t) => {
            let id = known_tenant(config, &t)?;
            vec![(id.clone(), policy_of(config, &id))]
        }
        None => config
            .tenant
            .iter()
            .map(|t| Ok((TenantId::new(&t.id)?, t.privacy.clone())))
            .collect::<anyhow::Result<_>>()?,
    };
    let clock: Arc<dyn Clock> = match as_of {
        None => Arc::new(SystemClock),
        Some(d) => {
            let day = chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                .with_context(|| format!("--as-of {d:?} is not a date; use YYYY-MM-DD"))?;
            let noon = day.and_hms_opt(12, 0, 0).expect("noon exists").and_utc();
            Arc::new(ManualClock::new(noon.timestamp_millis()))
        }
    };
    let opened = open(config, clock).await?;
    let report = opened
        .steward
        .retention_run(&tenants, dry_run, ACTOR, &progress)
        .await?;
    for e in &report.expired {
        println!("{} {e}", if dry_run { "would drop" } else { "dropped" });
    }
    let bytes: u64 = report.expired.iter().map(|e| e.bytes).sum();
    let files: usize = report.expired.iter().map(|e| e.files).sum();
    println!(
        "{} {} partitions and rollups ({files} files, {bytes} bytes) as of {}; {} rollups written first",
        if dry_run { "would drop" } else { "dropped" },
        report.expired.len(),
        report.today,
        report.rollups_written
    );
    Ok(())
}

pub async fn subject(config: &Config, command: SubjectCommand) -> anyhow::Result<()> {
    let opened = open(config, Arc::new(SystemClock)).await?;
    let steward = &opened.steward;
    match command {
        SubjectCommand::Export { who, format, out } => {
            let tenant = known_tenant(config, &who.tenant)?;
            let user = user_id(&who.user_id)?;
            let export = steward.export(&tenant, &user, &format, ACTOR).await?;
            let request = export.manifest["request"]
                .as_str()
                .unwrap_or("request")
                .to_owned();
            let dir = out.unwrap_or_else(|| PathBuf::from(format!("subject-export-{request}")));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let fmt = Format::parse(&format).unwrap_or(Format::Json);
            let bytes = encode(fmt, &export.rows.schema, &export.rows.batches)?;
            let data = dir.join(format!("events.{format}"));
            std::fs::write(&data, bytes)
                .with_context(|| format!("cannot write {}", data.display()))?;
            let manifest = dir.join("manifest.json");
            std::fs::write(&manifest, serde_json::to_vec_pretty(&export.manifest)?)
                .with_context(|| format!("cannot write {}", manifest.display()))?;
            println!(
                "exported {} events to {} and the manifest to {} (request {request})",
                export.rows.num_rows(),
                data.display(),
                manifest.display()
            );
        }
        SubjectCommand::Erase { who } => {
            let tenant = known_tenant(config, &who.tenant)?;
            let user = user_id(&who.user_id)?;
            let r = steward.erase(&tenant, &user, ACTOR, &progress).await?;
            println!(
                "erased {} rows: {} of {} files held them ({} rewritten, {} deleted; {} read after the bloom \
                 filters), verified by reading back, in {} ms (request {})",
                r.rows,
                r.files_rewritten + r.files_deleted,
                r.files_scanned,
                r.files_rewritten,
                r.files_deleted,
                r.files_read,
                r.elapsed_ms,
                r.request
            );
        }
        SubjectCommand::Object { who } => {
            let tenant = known_tenant(config, &who.tenant)?;
            let change = steward.object(&tenant, &user_id(&who.user_id)?, ACTOR)?;
            println!(
                "objection {}: the person's events are dropped at ingestion and left out of queries (a running \
                 server applies it within 10 seconds)",
                if change == tacet_ingest::Change::Added {
                    "recorded"
                } else {
                    "was already recorded"
                }
            );
        }
        SubjectCommand::Withdraw { who } => {
            let tenant = known_tenant(config, &who.tenant)?;
            let change = steward.withdraw(&tenant, &user_id(&who.user_id)?, ACTOR)?;
            println!(
                "{}",
                if change == tacet_ingest::Change::Removed {
                    "objection withdrawn: the person's events count again"
                } else {
                    "there was no objection to withdraw"
                }
            );
        }
        SubjectCommand::Rectify { who, set } => {
            let tenant = known_tenant(config, &who.tenant)?;
            let changes = set
                .iter()
                .map(|s| PropChange::parse(s))
                .collect::<Result<Vec<_>, _>>()?;
            let policy = policy_of(config, &tenant);
            let r = steward
                .rectify(
                    &tenant,
                    &policy,
                    &user_id(&who.user_id)?,
                    &changes,
                    ACTOR,
                    &progress,
                )
                .await?;
            println!(
                "rectified {} rows in {} files (of {}), verified by reading back (request {})",
                r.rows, r.files_rewritten, r.files_scanned, r.request
            );
        }
    }
    Ok(())
}

/// `tacet tenant key …`: no lock needed (the key file is append-only; a server re-reads it).
fn key_command(config: &Config, command: KeyCommand) -> anyhow::Result<()> {
    use tacet_server::access::{AccessKeys, Role};
    let state = config.state()?;
    let access = AccessKeys::open(state.sub("keys"))?;
    let audit = AuditLog::open(state.sub("audit"))?;
    match command {
        KeyCommand::Create {
            tenant,
            role,
            scope,
            expires_in,
        } => {
            let tenant = known_tenant(config, &tenant)?;
            let role = match (role.as_str(), scope.as_str()) {
                ("read", "reports") => Role::Reports,
                ("admin", "reports") => {
                    anyhow::bail!("--scope reports is for read keys; drop it for an admin key")
                }
                (role, _) => Role::parse(role).expect("clap checked the role"),
            };
            let expires = expires_in
                .map(|d| {
                    humantime::parse_duration(&d)
                        .with_context(|| {
                            format!("--expires-in {d:?} is not a duration like 90d or 1y")
                        })
                        .and_then(|d| Ok(chrono::Utc::now() + chrono::Duration::from_std(d)?))
                })
                .transpose()?;
            let (key, grant) = access.create(&tenant, role, expires)?;
            audit.append(
                ACTOR,
                "access.created",
                Some(tenant.as_str()),
                serde_json::json!({"id": grant.id, "role": role.as_str(), "scope": role.scope(), "prefix": grant.prefix,
                    "expires": grant.expires.map(|e| e.to_rfc3339())}),
            )?;
            println!("{key}");
            eprintln!(
                "created {} key {} for tenant {tenant}{}; it is shown only now: store it in a secret manager",
                role.as_str(),
                grant.id,
                grant
                    .expires
                    .map(|e| format!(", valid until {e}"))
                    .unwrap_or_default()
            );
        }
        KeyCommand::List { tenant } => {
            let now = chrono::Utc::now();
            for g in access.list() {
                if tenant.as_deref().is_some_and(|t| t != g.tenant) {
                    continue;
                }
                let state = if g.revoked {
                    "revoked".to_owned()
                } else if g.expires.is_some_and(|e| e <= now) {
                    "expired".to_owned()
                } else {
                    "active".to_owned()
                };
                println!(
                    "{}  {:<12} {:<7} {}…  created {}  expires {}  {state}",
                    g.id,
                    g.tenant,
                    g.role.as_str(),
                    g.prefix,
                    g.created,
                    g.expires.map_or("never".to_owned(), |e| e.to_rfc3339()),
                );
            }
        }
        KeyCommand::Revoke { id } => {
            let grant = access.list().into_iter().find(|g| g.id == id);
            if !access.revoke(&id)? {
                bail!("no active key with id {id:?}; `tacet tenant key list` shows the ids");
            }
            let tenant = grant.map(|g| g.tenant);
            audit.append(
                ACTOR,
                "access.revoked",
                tenant.as_deref(),
                serde_json::json!({"id": id}),
            )?;
            println!("revoked {id}; a running server refuses it within two seconds");
        }
    }
    Ok(())
}

pub async fn tenant(config: &Config, command: TenantCommand) -> anyhow::Result<()> {
    let (tenant, yes) = match command {
        TenantCommand::Key { command } => return key_command(config, command),
        TenantCommand::Offboard { tenant, yes } => (tenant, yes),
    };
    let tenant = known_tenant(config, &tenant)?;
    if !yes {
        bail!(
            "offboarding deletes every raw event, key and salt of tenant {tenant} and cannot be undone; run \
             again with --yes"
        );
    }
    let opened = open(config, Arc::new(SystemClock)).await?;
    let certificate = opened.steward.offboard(&tenant, ACTOR, &progress).await?;
    // The dashboard's crash triage marks (fingerprints and times, no personal data) go with the tenant.
    let triage_dir = opened.state.sub("triage");
    let triage = tacet_server::ui::remove_triage(&triage_dir, &tenant)
        .with_context(|| format!("removing {}", triage_dir.place("")))?;
    println!("{}", serde_json::to_string_pretty(&certificate)?);
    if triage {
        eprintln!("the dashboard's crash triage marks of tenant {tenant} were removed");
    }
    eprintln!(
        "tenant {tenant} offboarded; remove its [[tenant]] table from the configuration (a server started with \
         it would create new keys)"
    );
    Ok(())
}

pub async fn compact(config: &Config, tenant: Option<String>) -> anyhow::Result<()> {
    let tenants: Vec<TenantId> = match tenant {
        Some(t) => vec![known_tenant(config, &t)?],
        None => config
            .tenant
            .iter()
            .map(|t| TenantId::new(&t.id))
            .collect::<Result<_, _>>()?,
    };
    let opened = open(config, Arc::new(SystemClock)).await?;
    let options = CompactOptions {
        min_age: std::time::Duration::ZERO,
        target_bytes: config.lifecycle.compact_target_bytes,
    };
    for t in &tenants {
        let r = opened.steward.compact(t, options, ACTOR, &progress).await?;
        println!(
            "{t}: merged {} files into {} in {} partitions ({} → {} bytes, {} rows); {} leftovers deleted",
            r.files_merged,
            r.files_written,
            r.partitions,
            r.bytes_before,
            r.bytes_after,
            r.rows,
            r.leftovers_deleted
        );
    }
    Ok(())
}

pub fn audit(config: &Config, command: AuditCommand) -> anyhow::Result<()> {
    let log = AuditLog::open(config.state()?.sub("audit"))?;
    match command {
        AuditCommand::Verify => match log.read() {
            Ok(entries) => {
                println!(
                    "audit log {}: {} entries, chain intact; head {}",
                    log.place(),
                    entries.len(),
                    entries
                        .last()
                        .map_or(tacet_audit::GENESIS, |e| e.hash.as_str())
                );
                Ok(())
            }
            Err(e) => {
                bail!("{e}\nthe audit log was changed; restore it from backup and investigate")
            }
        },
        AuditCommand::Show { tenant, last } => {
            let entries = log.read()?;
            let shown: Vec<_> = entries
                .iter()
                .filter(|e| {
                    tenant
                        .as_deref()
                        .is_none_or(|t| e.entry.tenant.as_deref() == Some(t))
                })
                .collect();
            for e in shown.iter().rev().take(last).rev() {
                println!("{}", serde_json::json!({"entry": e.entry, "hash": e.hash}));
            }
            Ok(())
        }
    }
}
