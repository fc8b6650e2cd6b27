//! `tacet`: the one binary. Loads the configuration, sets up logging, and runs a subcommand.
//!
//! This is the only crate that reads environment variables or installs global subscribers.

mod claim;
mod config;
mod lifecycle;
mod storage;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tacet_ingest::{KeyStore, Pipeline};
use tacet_model::{Clock, SystemClock, TenantId};
use tacet_privacy::explain::{Installation, explain};
use tacet_privacy::{GeoDb, Privacy};
use tacet_query::format::{Format, encode};
use tacet_query::{QueryEngine, QueryOutput, REPORTS, Report, ReportParams};
use tacet_server::{AppState, DemoKeys, MetricsRender, Tenants, router};
use tracing::{info, warn};

use crate::config::{Config, Source};

/// Ingestion allocates many short-lived strings and JSON values; under batch load glibc's allocator took
/// about 40% of the CPU (perf, see the README's benchmark section). mimalloc is the binary's choice alone.
/// `Tracking` counts what query threads allocate, for the memory backstop (`query.memory_backstop_bytes`).
#[global_allocator]
static GLOBAL: tacet_query::budget::Tracking<mimalloc::MiMalloc> =
    tacet_query::budget::Tracking(mimalloc::MiMalloc);

/// Tacet: privacy-first telemetry and analytics.
///
/// Beacons in, pseudonymised Parquet out, SQL reports back. With no --config, runs the embedded default:
/// local disk under ./tacet-data and a demo tenant (ingest key "demo-ingest-key", read key "demo-read-key").
#[derive(Debug, Parser)]
#[command(name = "tacet", version, propagate_version = true)]
struct Cli {
    /// Configuration file (TOML); see deploy/tacet.example.toml. Without it, the embedded default.
    #[arg(long, global = true, env = "TACET_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (lake and keys); overrides the file and TACET_DATA_DIR.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: ingestion, SQL and reports over HTTP. Stops cleanly (flushing) on Ctrl-C or SIGTERM.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free one); overrides the file and
        /// TACET_LISTEN.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Run read-only SQL over one tenant's events (the table is `events`). Reads the Parquet files: events a
    /// running server has not flushed yet (at most one flush interval) are not visible.
    Sql {
        /// Tenant id, as in the configuration.
        #[arg(long)]
        tenant: String,
        /// Output format (arrow and parquet write binary to stdout).
        #[arg(long, default_value = "table", value_parser = ["table", "json", "csv", "arrow", "parquet"])]
        format: String,
        /// The query, e.g. "SELECT kind, COUNT(*) FROM events GROUP BY kind".
        query: String,
    },
    /// Run a canned report from queries/ by name (`--list` shows them).
    Report {
        /// Report name, e.g. daily.
        #[arg(required_unless_present = "list")]
        name: Option<String>,
        /// Tenant id, as in the configuration.
        #[arg(long, required_unless_present = "list")]
        tenant: Option<String>,
        /// First day, YYYY-MM-DD (inclusive); default 29 days before --to.
        #[arg(long)]
        from: Option<String>,
        /// Last day, YYYY-MM-DD (inclusive); default today (UTC).
        #[arg(long)]
        to: Option<String>,
        /// Rows at most (1 to 10000; default 100).
        #[arg(long)]
        limit: Option<String>,
        /// Time-series buckets: day or hour.
        #[arg(long)]
        interval: Option<String>,
        /// The property key event_properties breaks down.
        #[arg(long)]
        prop: Option<String>,
        /// A filter, NAME=VALUE (repeatable): page, country, browser, os, device, referrer_class,
        /// utm_source, utm_campaign, event, release, fingerprint.
        #[arg(long = "filter", value_name = "NAME=VALUE")]
        filters: Vec<String>,
        /// Output format (arrow and parquet write binary to stdout).
        #[arg(long, default_value = "table", value_parser = ["table", "json", "csv", "arrow", "parquet"])]
        format: String,
        /// List the reports with what they answer, and exit.
        #[arg(long)]
        list: bool,
    },
    /// Compute the daily rollups from the raw events: counts of events and distinct visitors by day, kind
    /// and report dimension, with no pseudonyms, kept after the raw events expire (the `daily` report
    /// answers from them). Idempotent. The server does the same every hour for the two previous days.
    Rollup {
        /// One tenant; default: every tenant in the configuration.
        #[arg(long)]
        tenant: Option<String>,
        /// First day, YYYY-MM-DD; default: two days before today (UTC).
        #[arg(long)]
        from: Option<String>,
        /// Last day, YYYY-MM-DD; default: yesterday (UTC).
        #[arg(long)]
        to: Option<String>,
    },
    /// What the server does with personal data, per tenant.
    Privacy {
        #[command(subcommand)]
        command: PrivacyCommand,
    },
    /// The key store: visitor salts and subject keys (never printed).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Time-based retention (the server also runs it every `lifecycle.retention_interval`).
    Retention {
        #[command(subcommand)]
        command: lifecycle::RetentionCommand,
    },
    /// A data subject's rights: export, erase, object, withdraw, rectify. With the server stopped; a running
    /// server offers the same under /v1/admin/subjects/ with the tenant's admin key.
    Subject {
        #[command(subcommand)]
        command: lifecycle::SubjectCommand,
    },
    /// Tenant offboarding, and the tenants' read and admin keys.
    Tenant {
        #[command(subcommand)]
        command: lifecycle::TenantCommand,
    },
    /// Merge small Parquet files (the server also does it every `lifecycle.compact_interval`).
    Compact {
        /// One tenant; default: every tenant in the configuration.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Distributed SQL: run a Ballista scheduler or executor that reads this configuration's lake. Point the
    /// servers at the scheduler with `[query] ballista = "df://HOST:PORT"`.
    Ballista {
        #[command(subcommand)]
        command: BallistaCommand,
    },
    /// The hash-chained audit log of retention, rights requests, offboarding, key events and admin logins.
    Audit {
        #[command(subcommand)]
        command: lifecycle::AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BallistaCommand {
    /// The scheduler: plans queries into stages and hands tasks to executors. Runs until stopped.
    Scheduler {
        /// gRPC address to listen on (clients and executors connect here).
        #[arg(long, default_value = "0.0.0.0:50050", value_name = "ADDR")]
        bind: SocketAddr,
    },
    /// An executor: runs tasks on the lake's files and serves results over Arrow Flight. Runs until stopped.
    Executor {
        /// The scheduler, HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        scheduler: String,
        /// Host to listen on.
        #[arg(long, default_value = "0.0.0.0")]
        bind: String,
        /// The name the scheduler and other executors reach this executor by; default: --bind.
        #[arg(long)]
        external_host: Option<String>,
        /// Arrow Flight port (results, shuffles).
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// gRPC port (tasks from the scheduler).
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Tasks run at once; default: the number of CPUs.
        #[arg(long)]
        slots: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
enum PrivacyCommand {
    /// Print, in plain words (Markdown), what the server does with each field for one tenant, from its
    /// policy: a controller can paste it into their privacy notice.
    Explain {
        /// Tenant id, as in the configuration.
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (mut config, source) = Config::load(cli.config.as_deref(), env_var)?;
    if let Some(dir) = cli.data_dir {
        config.data_dir = dir;
    }
    match cli.command {
        Command::Serve { listen } => {
            if let Some(listen) = listen {
                config.listen = listen;
            }
            serve(config, source).await
        }
        Command::Sql {
            tenant,
            format,
            query,
        } => {
            let tenant = known_tenant(&config, &tenant)?;
            let engine = query_engine(&config)?;
            let out = engine.sql(&tenant, &query).await?;
            print_output(&out, &format)
        }
        Command::Report { list: true, .. } => {
            for r in REPORTS {
                println!("{:<12} {}", r.name, r.header("title").unwrap_or_default());
                if let Some(p) = r.header("params") {
                    println!("{:<12} params: {p}", "");
                }
                if let Some(c) = r.header("columns") {
                    println!("{:<12} columns: {c}", "");
                }
            }
            Ok(())
        }
        Command::Report {
            name,
            tenant,
            from,
            to,
            limit,
            interval,
            prop,
            filters,
            format,
            list: false,
        } => {
            let (Some(name), Some(tenant)) = (name, tenant) else {
                bail!("give a report name and --tenant; `tacet report --list` shows the reports");
            };
            let tenant = known_tenant(&config, &tenant)?;
            let report = Report::find(&name)?;
            let mut given = BTreeMap::new();
            given.extend(from.map(|v| ("from".to_owned(), v)));
            given.extend(to.map(|v| ("to".to_owned(), v)));
            given.extend(limit.map(|v| ("limit".to_owned(), v)));
            given.extend(interval.map(|v| ("interval".to_owned(), v)));
            given.extend(prop.map(|v| ("prop".to_owned(), v)));
            for f in filters {
                let (k, v) = f.split_once('=').with_context(|| {
                    format!("--filter {f:?}: write NAME=VALUE, e.g. --filter country=DE")
                })?;
                given.insert(k.to_owned(), v.to_owned());
            }
            let policy = config.tenant.iter().find(|t| t.id == tenant.as_str());
            let default_policy = tacet_privacy::TenantPolicy::default();
            let privacy = policy.map_or(&default_policy, |t| &t.privacy);
            let zone = privacy.timezone.unwrap_or(chrono_tz::UTC);
            let today = SystemClock.now().with_timezone(&zone).date_naive();
            let params = ReportParams::parse(&given, today)?;
            let scope = tacet_query::ReportScope {
                k_threshold: privacy.k_threshold,
                k_crashes: privacy.k_threshold_crashes,
                zone,
            };
            let k = tacet_query::KRule::of(report)?.k(&scope);
            let out = query_engine(&config)?
                .report(&tenant, report, &params, &scope)
                .await?;
            if out.suppressed > 0 {
                eprintln!(
                    "note: {} rows describing fewer than {k} visitors were left out or withheld (the tenant's k-threshold)",
                    out.suppressed
                );
            }
            print_output(&out, &format)
        }
        Command::Privacy {
            command: PrivacyCommand::Explain { tenant },
        } => {
            let id = known_tenant(&config, &tenant)?;
            let entry = config
                .tenant
                .iter()
                .find(|t| t.id == id.as_str())
                .expect("known tenant");
            let geo = config.geoip.as_deref().map(load_geo).transpose()?;
            print!(
                "{}",
                explain(id.as_str(), &entry.privacy, &installation(geo.as_ref()))
            );
            Ok(())
        }
        Command::Keys { command } => keys_command(&config, command),
        Command::Retention { command } => lifecycle::retention(&config, command).await,
        Command::Subject { command } => lifecycle::subject(&config, command).await,
        Command::Tenant { command } => lifecycle::tenant(&config, command).await,
        Command::Compact { tenant } => lifecycle::compact(&config, tenant).await,
        Command::Ballista { command } => ballista(&config, command).await,
        Command::Audit { command } => lifecycle::audit(&config, command),
        Command::Rollup { tenant, from, to } => {
            let today = SystemClock.now().date_naive();
            let day = |v: Option<String>,
                       default: u64,
                       name: &str|
             -> anyhow::Result<chrono::NaiveDate> {
                match v {
                    Some(v) => chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d")
                        .with_context(|| format!("--{name} {v:?} is not a date; use YYYY-MM-DD")),
                    None => Ok(today - chrono::Days::new(default)),
                }
            };
            let (from, to) = (day(from, 2, "from")?, day(to, 1, "to")?);
            if from > to {
                bail!("--from ({from}) is after --to ({to})");
            }
            let tenants: Vec<TenantId> = match tenant {
                Some(t) => vec![known_tenant(&config, &t)?],
                None => config
                    .tenant
                    .iter()
                    .map(|t| TenantId::new(&t.id))
                    .collect::<Result<_, _>>()?,
            };
            let engine = query_engine(&config)?;
            let (mut days, mut rows) = (0usize, 0usize);
            for t in &tenants {
                let mut d = from;
                while d <= to {
                    let n = engine.rollup_day(t, d).await?;
                    eprintln!("rollup {t} {d}: {n} rows");
                    days += usize::from(n > 0);
                    rows += n;
                    d = d.succ_opt().expect("a representable date");
                }
            }
            println!(
                "rolled up {days} tenant-days with events ({rows} rows) for {} tenant(s), {from} to {to}",
                tenants.len()
            );
            Ok(())
        }
    }
}

fn key_store(config: &Config) -> anyhow::Result<KeyStore> {
    let dir = config.keys_dir();
    if !dir.is_dir() {
        bail!(
            "no key store at {}: the server has not run with this data directory yet (or pass --data-dir)",
            dir.display()
        );
    }
    Ok(KeyStore::open(&dir, Arc::new(SystemClock))?)
}

fn keys_command(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    let keys = key_store(config)?;
    match command {
        KeysCommand::Rotate { tenant } => {
            let tenant = known_tenant(config, &tenant)?;
            let version = keys.rotate_subject(&tenant)?;
            println!(
                "tenant {tenant}: subject key v{version} created; new user pseudonyms use it (a running server \
                 within 10 seconds). Recorded in {}.",
                config.keys_dir().join("lifecycle.jsonl").display()
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
            let log = std::fs::read_to_string(config.keys_dir().join("lifecycle.jsonl"))
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

fn load_geo(path: &std::path::Path) -> anyhow::Result<GeoDb> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read the GeoIP database {} (setting geoip)",
            path.display()
        )
    })?;
    GeoDb::from_bytes(bytes).with_context(|| format!("geoip = {}", path.display()))
}

fn installation(geo: Option<&GeoDb>) -> Installation {
    Installation {
        geo_database: geo.map(|g| g.database_type().to_owned()),
        geo_is_dbip: geo.is_some_and(|g| g.database_type().to_ascii_lowercase().contains("dbip")),
    }
}

/// Reloads the GeoIP database when its file changes (size or modification time), keeping the old one if
/// the new one cannot be read.
fn spawn_geo_reloader(pipeline: Arc<Pipeline>, path: PathBuf, every: std::time::Duration) {
    if every.is_zero() {
        return;
    }
    let stamp = |p: &std::path::Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    tokio::spawn(async move {
        let mut seen = stamp(&path);
        loop {
            tokio::time::sleep(every).await;
            let now = stamp(&path);
            if now == seen || now.is_none() {
                continue;
            }
            seen = now;
            match load_geo(&path) {
                Ok(db) => {
                    info!(database_type = db.database_type(), path = %path.display(), "GeoIP database reloaded");
                    pipeline.privacy().set_geo(Some(db));
                }
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "the changed GeoIP database cannot be loaded; keeping the previous one")
                }
            }
        }
    });
}

/// Retention every `retention_interval` (first two minutes after start) and compaction every
/// `compact_interval`, for every tenant; summaries go to the log.
fn spawn_lifecycle(steward: Arc<tacet_lifecycle::Steward>, config: &Config, tenants: &Tenants) {
    let policies: Vec<(TenantId, tacet_privacy::TenantPolicy)> = tenants
        .iter()
        .map(|t| (t.id.clone(), t.policy.clone()))
        .collect();
    let every = config.lifecycle.retention_interval;
    if !every.is_zero() {
        let (steward, policies) = (Arc::clone(&steward), policies.clone());
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(120)).await;
            loop {
                match steward
                    .retention_run(&policies, false, "server", &tacet_lifecycle::quiet)
                    .await
                {
                    Ok(r) if !r.expired.is_empty() => info!(
                        dropped = r.expired.len(),
                        files = r.files_deleted,
                        bytes = r.bytes_deleted,
                        rollups_written = r.rollups_written,
                        "retention ran"
                    ),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "retention failed; retrying at the next interval"),
                }
                tokio::time::sleep(every).await;
            }
        });
    }
    let every = config.lifecycle.compact_interval;
    if !every.is_zero() {
        let options = tacet_lifecycle::CompactOptions {
            min_age: config.lifecycle.compact_min_age,
            target_bytes: config.lifecycle.compact_target_bytes,
        };
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                for (t, _) in &policies {
                    match steward
                        .compact(t, options, "server", &tacet_lifecycle::quiet)
                        .await
                    {
                        Ok(r) if r.files_merged > 0 => info!(tenant = %t, merged = r.files_merged,
                            written = r.files_written, "compacted"),
                        Ok(_) => {}
                        Err(e) => {
                            warn!(tenant = %t, error = %e, "compaction failed; retrying at the next interval")
                        }
                    }
                }
            }
        });
    }
}

/// Every hour (and a minute after start), the rollups of the two previous days for every tenant.
fn spawn_rollups(query: Arc<QueryEngine>, tenants: Vec<TenantId>) {
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        loop {
            let today = SystemClock.now().date_naive();
            for t in &tenants {
                for back in [2, 1] {
                    let day = today - chrono::Days::new(back);
                    match query.rollup_day(t, day).await {
                        Ok(rows) => info!(tenant = %t, %day, rows, "rollup written"),
                        Err(e) => {
                            warn!(tenant = %t, %day, error = %e, "rollup failed; retrying in an hour")
                        }
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
    });
}

/// `tacet ballista scheduler|executor`: Ballista's processes, with the lake of this configuration.
async fn ballista(config: &Config, command: BallistaCommand) -> anyhow::Result<()> {
    refuse_ballista_with_encryption(config, "tacet ballista")?;
    let lake = storage::open_lake(config)?;
    let runtime = tacet_query::ballista::lake_runtime(
        Arc::clone(lake.store()),
        config.query.memory_limit_bytes,
    )?;
    match command {
        BallistaCommand::Scheduler { bind } => {
            println!(
                "Ballista scheduler for the lake {} on {bind}",
                config.storage.describe(config)
            );
            tacet_query::ballista::run_scheduler(runtime, bind).await?;
        }
        BallistaCommand::Executor {
            scheduler,
            bind,
            external_host,
            port,
            grpc_port,
            slots,
        } => {
            let (host, sched_port) = scheduler
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
                .with_context(|| format!("--scheduler {scheduler:?}: give HOST:PORT"))?;
            println!(
                "Ballista executor for the lake {} (scheduler {scheduler}, flight port {port})",
                config.storage.describe(config)
            );
            tacet_query::ballista::run_executor(
                runtime,
                tacet_query::ballista::ExecutorOptions {
                    scheduler_host: host,
                    scheduler_port: sched_port,
                    bind_host: bind,
                    external_host,
                    port,
                    grpc_port,
                    slots: slots.unwrap_or_else(|| {
                        std::thread::available_parallelism().map_or(2, |n| n.get())
                    }),
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// Ballista sessions cannot decrypt the lake yet: refuse the combination with what to do instead.
fn refuse_ballista_with_encryption(config: &Config, what: &str) -> anyhow::Result<()> {
    if (config.query.ballista.is_some() || what == "tacet ballista")
        && lifecycle::master_key(config)?.is_some()
    {
        bail!(
            "{what}: distributed SQL on Ballista cannot read a lake encrypted at rest ([encryption] or \
             TACET_MASTER_KEY is set); remove [query] ballista to query locally"
        );
    }
    Ok(())
}

fn known_tenant(config: &Config, id: &str) -> anyhow::Result<TenantId> {
    if !config.tenant.iter().any(|t| t.id == id) {
        let ids: Vec<&str> = config.tenant.iter().map(|t| t.id.as_str()).collect();
        bail!(
            "no tenant {id:?} in the configuration; tenants are: {}",
            ids.join(", ")
        );
    }
    Ok(TenantId::new(id)?)
}

fn query_engine(config: &Config) -> anyhow::Result<QueryEngine> {
    let dir = config.lake_dir();
    if config.storage.backend == storage::Backend::Local && !dir.is_dir() {
        bail!(
            "no lake at {}: nothing has been ingested there yet (start `tacet serve` and post events), or pass --data-dir",
            dir.display()
        );
    }
    refuse_ballista_with_encryption(config, "tacet sql/report")?;
    let lake = storage::open_lake(config)?;
    let engine = QueryEngine::new(Arc::clone(lake.store()), config.query.clone())?;
    if let Some(master) = lifecycle::master_key(config)? {
        let ring = tacet_ingest::DataKeyring::open(&config.keys_dir().join("data"), master)?;
        engine.set_data_keys(Arc::new(ring));
    }
    Ok(engine)
}

fn print_output(out: &QueryOutput, format: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let format = Format::parse(format).unwrap_or(Format::Table);
    let bytes = encode(format, &out.schema, &out.batches)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&bytes)?;
    if matches!(format, Format::Table | Format::Json | Format::Csv) && !bytes.ends_with(b"\n") {
        stdout.write_all(b"\n")?;
    }
    if out.truncated {
        eprintln!(
            "note: the answer was cut at {} rows (query.max_rows); aggregate or add a LIMIT",
            out.num_rows()
        );
    }
    Ok(())
}

fn init_logging() {
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

/// Installs the Prometheus recorder; returns what renders `/metrics`.
fn init_metrics() -> anyhow::Result<MetricsRender> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const SECONDS: &[f64] = &[
        0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        2.5, 5.0, 10.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    Ok(MetricsRender(Arc::new(move || handle.render())))
}

async fn serve(config: Config, source: Source) -> anyhow::Result<()> {
    init_logging();
    refuse_ballista_with_encryption(&config, "tacet serve")?;
    let metrics = init_metrics()?;
    let tenants = config.tenants(env_var)?;
    let access = Arc::new(tacet_server::access::AccessKeys::open(&config.keys_dir())?);
    let tenants = Arc::new(Tenants::with_access(tenants, access)?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let geo = match &config.geoip {
        None => None,
        Some(path) => {
            let db = load_geo(path)?;
            info!(database_type = db.database_type(), "GeoIP database loaded");
            if installation(Some(&db)).geo_is_dbip {
                info!("IP geolocation by DB-IP (https://db-ip.com), licensed under CC BY 4.0");
            }
            Some(db)
        }
    };
    // One process per data directory: the lock is held until the server exits.
    let _lock = lifecycle::lock_data_dir(&config)?;
    let lifecycle::Parts {
        pipeline,
        query,
        audit,
        wal,
        replay,
    } = lifecycle::open_parts(&config, clock, Privacy::new(geo))?;
    claim::keystore(&config, pipeline.lake().store(), pipeline.keys()).await?;
    claim::node(&config, pipeline.lake().store()).await?;
    if let Some(node) = config.node_id {
        // Registered while running, so that an erasure on another node waits for this one's flush.
        let peers = tacet_ingest::Peers::join(&config.nodes_dir(), node)?;
        pipeline.set_peers(Arc::new(peers));
    }
    let destroyed = pipeline.keys().destroy_expired()?;
    if !destroyed.is_empty() {
        info!(
            salts = destroyed.len(),
            "destroyed visitor salts older than 48 hours after their day"
        );
    }
    let steward = Arc::new(tacet_lifecycle::Steward::new(
        Arc::clone(&pipeline),
        Arc::clone(&query),
        audit,
    ));
    spawn_lifecycle(Arc::clone(&steward), &config, &tenants);
    spawn_rollups(
        Arc::clone(&query),
        tenants.iter().map(|t| t.id.clone()).collect(),
    );
    if let Some(path) = &config.geoip {
        spawn_geo_reloader(
            Arc::clone(&pipeline),
            path.clone(),
            config.geoip_check_interval,
        );
    }

    let listener = std::net::TcpListener::bind(config.listen).with_context(|| {
        format!(
            "cannot listen on {} (is another server running there? use --listen)",
            config.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let tls = match &config.tls {
        None => None,
        Some(t) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(&t.cert, &t.key)
                .await
                .with_context(|| {
                    format!(
                        "cannot load the TLS certificate {} and key {} (setting [tls])",
                        t.cert.display(),
                        t.key.display()
                    )
                })?,
        ),
    };
    let ready = Arc::new(AtomicBool::new(false));
    let limits = Arc::new(tacet_server::limits::RateLimits::new(&config.http));
    {
        let limits = Arc::clone(&limits);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                limits.forget_idle();
            }
        });
    }
    let state = AppState {
        pipeline: Arc::clone(&pipeline),
        query,
        tenants: Arc::clone(&tenants),
        config: Arc::new(config.http.clone()),
        trusted_proxies: Arc::new(config.trusted_proxies.clone()),
        ready: Arc::clone(&ready),
        metrics: Some(metrics),
        steward: Some(steward),
        dashboard: config.dashboard.enabled.then(|| {
            Arc::new(tacet_server::ui::Dashboard::new(
                &config.dashboard,
                Some(config.triage_dir()),
                tls.is_some(),
            ))
        }),
        limits: Arc::clone(&limits),
        // The demo page only for the embedded configuration, whose keys are public anyway.
        demo: match &source {
            Source::Embedded => tenants.iter().next().map(|t| DemoKeys {
                ingest_key: t.ingest_key.clone(),
                read_key: t.read_key.clone(),
            }),
            Source::File(_) => None,
        },
    };
    // One write, whatever reads it: a reader that hangs up after the first line (a supervisor, a
    // benchmark) must not make a later line fail the server.
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tacet {} listening on {}://{addr}",
        env!("CARGO_PKG_VERSION"),
        if tls.is_some() { "https" } else { "http" }
    );
    let _ = writeln!(out, "data directory: {}", config.data_dir.display());
    let _ = writeln!(out, "lake: {}", config.storage.describe(&config));
    for t in config.tenant.iter().filter(|t| t.storage.is_some()) {
        let storage = t.storage.as_ref().expect("filtered");
        let _ = writeln!(
            out,
            "lake of tenant {:?}: {}",
            t.id,
            storage.describe(&config)
        );
    }
    if let Some(node) = config.node_id {
        let _ = writeln!(out, "ingestion node {node}");
    }
    if let Some(cluster) = &config.query.ballista {
        let _ = writeln!(out, "SQL and reports on Ballista: {cluster}");
    }
    match &source {
        Source::Embedded => {
            for t in tenants.iter() {
                let _ = writeln!(
                    out,
                    "tenant {:?}: ingest key {:?}, read key {:?}, admin key {:?} (embedded demo configuration)",
                    t.id.as_str(),
                    t.ingest_key,
                    t.read_key,
                    t.admin_key.as_deref().unwrap_or("none")
                );
            }
            let _ = writeln!(out, "demo page (the tracker in action): http://{addr}/demo");
            if config.dashboard.enabled {
                let _ = writeln!(
                    out,
                    "dashboard: http://{addr}/ui (log in with the read key above)"
                );
            }
        }
        Source::File(path) => {
            let _ = writeln!(out, "configuration: {}", path.display());
            for t in tenants.iter() {
                let _ = writeln!(
                    out,
                    "tenant {:?}: ingest key {:?}",
                    t.id.as_str(),
                    t.ingest_key
                );
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut stdout, out.as_bytes())
        .and_then(|()| std::io::Write::flush(&mut stdout));
    drop(stdout);
    let mut app = router(state);
    if tls.is_some() {
        app = app.layer(axum::middleware::map_response(hsts));
    }
    let handle = axum_server::Handle::new();
    {
        let handle = handle.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            handle.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
        });
    }
    if let (Some(rustls), Some(files)) = (&tls, &config.tls) {
        spawn_tls_reloader(rustls.clone(), files.clone());
    }
    let server = {
        let (http, trusted) = (config.http.clone(), config.trusted_proxies.clone());
        tokio::spawn(async move {
            tacet_server::listener::serve(listener, app, tls, &http, &trusted, handle).await
        })
    };

    // Not ready (503 on /readyz and /v1/events) until what the log holds is back in the pipeline.
    let recovered = pipeline.recover(replay);
    if recovered.records > 0 || recovered.cut_bytes > 0 {
        info!(
            records = recovered.records,
            events = recovered.events,
            undecodable = recovered.undecodable,
            cut_bytes = recovered.cut_bytes,
            "recovered from the write-ahead log"
        );
        pipeline.flush().await;
    }
    ready.store(true, Ordering::SeqCst);
    let flusher = pipeline.spawn_flusher();

    server
        .await
        .context("the HTTP server task failed")?
        .context("the HTTP server failed")?;
    info!("shutting down: writing buffered events");
    pipeline.stop_flusher(flusher).await;
    let mut summary = pipeline.flush().await;
    for _ in 0..3 {
        if pipeline.buffered() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        summary = pipeline.flush().await;
    }
    wal.close();
    if pipeline.buffered() > 0 {
        bail!(
            "{} events could not be written to Parquet at shutdown (see the log above); they are safe in the \
             write-ahead log and will be written at the next start",
            pipeline.buffered()
        );
    }
    if let Some(peers) = pipeline.peers() {
        // Everything is flushed: other nodes need not wait for this one any more.
        peers.leave()?;
    }
    info!(
        events = summary.events,
        files = summary.files,
        "stopped cleanly"
    );
    Ok(())
}

/// `Strict-Transport-Security` on every answer when TLS is on.
async fn hsts(mut resp: axum::response::Response) -> axum::response::Response {
    resp.headers_mut().insert(
        axum::http::header::STRICT_TRANSPORT_SECURITY,
        axum::http::HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    );
    resp
}

/// Loads a renewed certificate and key when either file changes, keeping the old pair if the new one
/// does not load.
fn spawn_tls_reloader(
    rustls: axum_server::tls_rustls::RustlsConfig,
    files: crate::config::TlsConfig,
) {
    if files.reload_interval.is_zero() {
        return;
    }
    let stamp = |p: &std::path::Path| std::fs::metadata(p).ok().and_then(|m| m.modified().ok());
    tokio::spawn(async move {
        let mut seen = (stamp(&files.cert), stamp(&files.key));
        loop {
            tokio::time::sleep(files.reload_interval).await;
            let now = (stamp(&files.cert), stamp(&files.key));
            if now == seen {
                continue;
            }
            seen = now;
            match rustls.reload_from_pem_file(&files.cert, &files.key).await {
                Ok(()) => {
                    tacet_server::listener::http1_alpn(&rustls);
                    info!(cert = %files.cert.display(), "TLS certificate reloaded")
                }
                Err(e) => {
                    warn!(error = %e, "the changed TLS certificate or key cannot be loaded; keeping the previous one")
                }
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
