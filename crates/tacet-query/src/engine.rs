//! The query engine: one shared runtime (object store, memory pool), one session per query.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::ParamValues;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use object_store::ObjectStore;
use tacet_model::TenantId;
use url::Url;

use crate::report::{Report, ReportParams};
use crate::{Error, QueryConfig, Result};

/// The URL the lake's object store is registered under in DataFusion.
pub(crate) const LAKE_URL: &str = "tacet://lake/";

/// Rows of an answer, whether `max_rows` (or a report's `limit`) cut it, and how many rows the k-threshold
/// suppressed.
#[derive(Debug)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub truncated: bool,
    /// Rows a canned report left out because they describe fewer than k distinct visitors.
    pub suppressed: usize,
    /// Which days a canned report read from rollups and which from raw events (crate::source); `None`
    /// for SQL.
    pub source: Option<crate::source::ReportSource>,
}

impl QueryOutput {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Runs SQL and reports on its own tokio runtime (`threads` workers) behind a semaphore
/// (`max_concurrent`), so a heavy query never delays ingestion; a query past its `timeout` is stopped by
/// aborting its task, which drops its stream and frees its memory.
#[derive(Debug)]
pub struct QueryEngine {
    pub(crate) inner: Arc<Inner>,
    /// A small runtime for what outlives one query (the in-process Ballista cluster).
    service: Option<tokio::runtime::Runtime>,
    slots: Arc<crate::slots::Slots>,
    /// What the running queries hold, for the memory backstop.
    running: Arc<crate::budget::Running>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    runtime: Arc<RuntimeEnv>,
    store: Arc<dyn ObjectStore>,
    pub(crate) config: QueryConfig,
    pub(crate) fresh: std::sync::OnceLock<Arc<dyn FreshEvents>>,
    pub(crate) restrictions: std::sync::OnceLock<Arc<dyn Restrictions>>,
    /// Rollup files the reports read (crate::rollup_files).
    pub(crate) rollup_files: crate::rollup_files::RollupCache,
    /// Each breakdown's answer schema, from its first run: a breakdown whose days all come from rollups
    /// needs no raw query (crate::rollup).
    pub(crate) report_schemas: std::sync::Mutex<std::collections::HashMap<&'static str, SchemaRef>>,
    /// Tenants' data keys, when the lake is encrypted.
    data_keys: std::sync::OnceLock<Arc<dyn tacet_lake::DataKeys>>,
    /// Each tenant's time zone (`[privacy] timezone`): the days of its `visits` (crate::visits).
    zones: std::sync::OnceLock<std::collections::HashMap<TenantId, chrono_tz::Tz>>,
    /// Where distributed queries go (`query.ballista`); `None`: every query runs here.
    cluster: Option<crate::ballista::Cluster>,
}

/// The pseudonyms whose events queries must leave out: people who objected to or restricted processing.
/// Only a subject access request (`QueryEngine::subject_rows`) still reads their events.
pub trait Restrictions: Send + Sync + std::fmt::Debug {
    fn restricted(&self, tenant: &TenantId) -> std::result::Result<Vec<String>, String>;
}

/// How one query runs.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) max_rows: usize,
    /// Also the events of people who objected (their own access request only).
    pub(crate) unrestricted: bool,
    /// More tables for this query (the audit log, for the admin).
    pub(crate) tables: Vec<(&'static str, RecordBatch)>,
    /// On this process's session even when a Ballista cluster is configured.
    pub(crate) local: bool,
    /// The zone `events.ts` is shown in (reports: the tenant's, so that `date_trunc('day', ts)` is a
    /// local day); `None` keeps UTC.
    pub(crate) zone: Option<chrono_tz::Tz>,
    /// Rows a batch: [`REPORT_BATCH_ROWS`] for canned reports, DataFusion's 8k for everything else (raw
    /// SQL may be anything, and smaller batches reach the next cancellation point sooner).
    pub(crate) batch_rows: usize,
    /// SQL a client wrote (`/v1/sql`, `tacet sql`), checked for amplifiers (`capped::check_plan`); the
    /// canned reports' own SQL is not.
    pub(crate) client_sql: bool,
    /// The tenant's crash group merges and splits behind `tacet_group` (none: the identity).
    pub(crate) groups: Option<Arc<crate::groups::CrashGroups>>,
    /// A Postgres wire connection's catalogue: the statement reads `pg_catalog` or `information_schema`
    /// (pgcatalog.rs), and runs rewritten, locally, on a session that has them.
    pub(crate) postgres: Option<Arc<crate::pgcatalog::PgCatalog>>,
    /// Client SQL that may read `visits` (crate::visits): the zone of its days, and the days whose stored
    /// visits are current with their files (`None`: the session has no `visits` table).
    pub(crate) visits: Option<crate::visits::Days>,
}

/// Rows a batch for canned reports: a sort merges one run per input batch, so with DataFusion's 8k rows a
/// month of 20M events merged 1,270 runs a core (9.9 s of compute; 100M bench: overview 9.2 s -> 5.3 s).
pub(crate) const REPORT_BATCH_ROWS: usize = 65536;

/// Rows a batch for everything else (DataFusion's default).
pub(crate) const DEFAULT_BATCH_ROWS: usize = 8192;

/// Events accepted but maybe not yet in Parquet (the ingestion buffer and any flush in progress), for
/// queries to see at once: batches in the file schema plus the partition columns `kind` and `date`, and
/// the log sequence number above which lake files hold only events among them (those files are hidden
/// from the query, so every event counts once).
pub trait FreshEvents: Send + Sync + std::fmt::Debug {
    fn snapshot(&self, tenant: &TenantId) -> std::result::Result<(Vec<RecordBatch>, u64), String>;

    /// The UTC days of the tenant's events that may not be in the lake (what `snapshot` would return),
    /// cheaply; `None` when the source cannot say, which makes reports read every closed day raw
    /// (crate::source).
    fn days(
        &self,
        _tenant: &TenantId,
    ) -> std::result::Result<Option<std::collections::BTreeSet<chrono::NaiveDate>>, String> {
        Ok(None)
    }

    /// The ingestion node whose buffer this is: only its lake files are hidden by the threshold.
    fn node(&self) -> Option<u16> {
        None
    }
}

impl Drop for QueryEngine {
    fn drop(&mut self) {
        // Dropping a runtime from async code would block; let its threads wind down on their own.
        if let Some(rt) = self.service.take() {
            rt.shutdown_background();
        }
    }
}

/// The runtime every query shares: the lake's object store at `tacet://lake/` behind the visibility rule
/// (`hiding.rs`), a memory pool, no listing cache.
pub(crate) fn lake_runtime(
    store: Arc<dyn ObjectStore>,
    memory_limit_bytes: usize,
) -> Result<Arc<RuntimeEnv>> {
    // DataFusion caches directory listings forever by default; the lake grows with every flush, so the
    // listing cache is off. Footer and statistics caches stay: lake files are immutable.
    let caches = CacheManagerConfig::default()
        .with_list_files_cache(None)
        .with_list_files_cache_limit(0);
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(caches)
        .with_memory_limit(memory_limit_bytes, 1.0)
        .build_arc()
        .map_err(Error::from_datafusion)?;
    let url = Url::parse(LAKE_URL).expect("a valid URL");
    // Readers never see superseded files (hiding.rs).
    runtime.register_object_store(
        &url,
        Arc::new(crate::hiding::HidingStore::new(store, None, u64::MAX)),
    );
    Ok(runtime)
}

impl QueryEngine {
    pub fn new(store: Arc<dyn ObjectStore>, config: QueryConfig) -> Result<Self> {
        config.check().map_err(Error::User)?;
        let runtime = lake_runtime(Arc::clone(&store), config.memory_limit_bytes)?;
        let service = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tacet-query-service")
            .thread_stack_size(crate::budget::QUERY_STACK_BYTES)
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the query runtime: {e}")))?;
        let cluster = config
            .ballista
            .as_deref()
            .map(|c| crate::ballista::Cluster::parse(c, service.handle().clone()))
            .transpose()?;
        Ok(Self {
            slots: crate::slots::Slots::new(crate::slots::SlotRules {
                total: config.max_concurrent,
                per_tenant: config.per_tenant(),
                queued_per_tenant: config.max_queued_per_tenant,
                queue_timeout: config.queue_timeout,
            }),
            running: Arc::default(),
            inner: Arc::new(Inner {
                runtime,
                store,
                config,
                fresh: std::sync::OnceLock::new(),
                restrictions: std::sync::OnceLock::new(),
                rollup_files: Default::default(),
                report_schemas: Default::default(),
                data_keys: std::sync::OnceLock::new(),
                zones: std::sync::OnceLock::new(),
                cluster,
            }),
            service: Some(service),
        })
    }

    pub fn config(&self) -> &QueryConfig {
        &self.inner.config
    }

    /// Makes queries see the events `fresh` holds (the server hands in its pipeline's buffer). Once.
    pub fn set_fresh(&self, fresh: Arc<dyn FreshEvents>) {
        let _ = self.inner.fresh.set(fresh);
    }

    /// Decrypts each tenant's lake files with its data key (the lake was written with the same keys). Once.
    pub fn set_data_keys(&self, keys: Arc<dyn tacet_lake::DataKeys>) {
        let _ = self.inner.data_keys.set(keys);
    }

    /// Gives each tenant's time zone (`[privacy] timezone`; a tenant not named is UTC): its days in the
    /// `visits` table, as in its reports and its rollups. Once.
    pub fn set_zones(&self, zones: std::collections::HashMap<TenantId, chrono_tz::Tz>) {
        let _ = self.inner.zones.set(zones);
    }

    /// The tenant's time zone, as [`QueryEngine::set_zones`] gave it (UTC when it did not).
    pub fn zone_of(&self, tenant: &TenantId) -> chrono_tz::Tz {
        self.inner
            .zones
            .get()
            .and_then(|z| z.get(tenant).copied())
            .unwrap_or(chrono_tz::UTC)
    }

    /// Makes queries leave out the events of people who objected. Once.
    pub fn set_restrictions(&self, restrictions: Arc<dyn Restrictions>) {
        let _ = self.inner.restrictions.set(restrictions);
    }

    /// Waits until no query runs and holds every query slot until the guard is dropped: files that a
    /// running query may still read are deleted under it (erasure, compaction).
    pub async fn exclusive(&self) -> Result<crate::SlotGuard> {
        self.slots.exclusive().await
    }

    /// Every stored or buffered event whose `user_pseudonym` is one of `pseudonyms`, restricted or not (a
    /// subject access request), ordered by time, without a row limit.
    pub async fn subject_rows(
        &self,
        tenant: &TenantId,
        pseudonyms: &[String],
    ) -> Result<QueryOutput> {
        if pseudonyms.is_empty() {
            return Err(Error::User("no pseudonyms to look for".into()));
        }
        let placeholders: Vec<String> = (1..=pseudonyms.len()).map(|i| format!("$p{i}")).collect();
        let sql = format!(
            "SELECT * FROM events WHERE user_pseudonym IN ({}) ORDER BY ts, arrival",
            placeholders.join(", ")
        );
        let params = ParamValues::from(
            pseudonyms
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    (
                        format!("p{}", i + 1),
                        datafusion::common::ScalarValue::Utf8(Some(p.clone())),
                    )
                })
                .collect::<Vec<_>>(),
        );
        self.run_with_limit(
            tenant,
            &sql,
            Some(params),
            Run {
                max_rows: usize::MAX,
                unrestricted: true,
                tables: Vec::new(),
                local: false,
                zone: None,
                batch_rows: DEFAULT_BATCH_ROWS,
                client_sql: false,
                groups: None,
                postgres: None,
                visits: None,
            },
        )
        .await
    }

    /// Runs read-only SQL against `tenant`'s events and `tables` (the admin's `audit` table).
    pub async fn sql_with_tables(
        &self,
        tenant: &TenantId,
        sql: &str,
        tables: Vec<(&'static str, RecordBatch)>,
    ) -> Result<QueryOutput> {
        self.run_with_limit(
            tenant,
            sql,
            None,
            Run {
                max_rows: self.inner.config.max_rows,
                unrestricted: false,
                tables,
                local: false,
                zone: None,
                batch_rows: DEFAULT_BATCH_ROWS,
                client_sql: true,
                groups: None,
                postgres: None,
                visits: None,
            },
        )
        .await
    }

    /// Runs read-only SQL against `tenant`'s events.
    pub async fn sql(&self, tenant: &TenantId, sql: &str) -> Result<QueryOutput> {
        self.run(tenant, sql, None).await
    }

    /// Runs read-only SQL from a Postgres wire connection: as [`QueryEngine::sql`], except that a
    /// statement reading the catalogue (`pg_catalog`, `information_schema`, `version()`, ...) runs on a
    /// session that has the connection's `catalog` (describing the tenant's `events` only).
    pub async fn sql_postgres(
        &self,
        tenant: &TenantId,
        sql: &str,
        catalog: &Arc<crate::pgcatalog::PgCatalog>,
    ) -> Result<QueryOutput> {
        if !crate::pgcatalog::PgCatalog::needed(sql) {
            return self.run(tenant, sql, None).await;
        }
        let sql = crate::pgcatalog::PgCatalog::rewrite(sql)?;
        self.run_with_limit(
            tenant,
            &sql,
            None,
            Run {
                max_rows: self.inner.config.max_rows,
                unrestricted: false,
                tables: Vec::new(),
                local: true,
                zone: None,
                batch_rows: DEFAULT_BATCH_ROWS,
                client_sql: true,
                groups: None,
                postgres: Some(Arc::clone(catalog)),
                visits: None,
            },
        )
        .await
    }

    /// Runs a canned report with bound parameters. The k-threshold applies as the report's `-- k:` header
    /// says (threshold.rs: rows left out or withheld, counted in `suppressed`); then the answer is cut at
    /// `params.limit`.
    pub async fn report(
        &self,
        tenant: &TenantId,
        report: &Report,
        params: &ReportParams,
        scope: &crate::ReportScope,
    ) -> Result<QueryOutput> {
        crate::report::check(params, report)?;
        // Refused before it runs when the report does not say how k applies (threshold.rs).
        let rule = crate::threshold::KRule::of(report)?;
        // Days answered by their rollups (crate::source): left out of the raw events' part, added after
        // (breakdowns) or in SQL (`-- rollups: visits`).
        let source = self.report_source(tenant, report, params, scope).await?;
        let mut out = self.answer(tenant, report, params, scope, &source).await?;
        out.source = Some(source);
        rule.apply(&mut out, rule.k(scope))?;
        if out.num_rows() > params.limit {
            let mut left = params.limit;
            out.batches = out
                .batches
                .iter()
                .map(|b| {
                    let take = left.min(b.num_rows());
                    left -= take;
                    b.slice(0, take)
                })
                .filter(|b| b.num_rows() > 0)
                .collect();
            out.truncated = true;
        }
        Ok(out)
    }

    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// Whether queries go to a Ballista cluster.
    pub(crate) fn distributed(&self) -> bool {
        self.inner.cluster.is_some()
    }

    async fn run(
        &self,
        tenant: &TenantId,
        sql: &str,
        params: Option<ParamValues>,
    ) -> Result<QueryOutput> {
        self.run_with_limit(
            tenant,
            sql,
            params,
            Run {
                max_rows: self.inner.config.max_rows,
                unrestricted: false,
                tables: Vec::new(),
                local: false,
                zone: None,
                batch_rows: DEFAULT_BATCH_ROWS,
                client_sql: true,
                groups: None,
                postgres: None,
                visits: None,
            },
        )
        .await
    }

    pub(crate) async fn run_with_limit(
        &self,
        tenant: &TenantId,
        sql: &str,
        params: Option<ParamValues>,
        mut run: Run,
    ) -> Result<QueryOutput> {
        let config = &self.inner.config;
        let slot = self.slots.acquire(tenant).await?;
        // Client SQL may read `visits`: which days it finds stored is decided here, where the planner's
        // listings and caches are (crate::visits); a query that never names the table pays nothing (but
        // the Postgres door's catalogue queries, which list it).
        let catalogue = run.postgres.is_some();
        if run.client_sql && (catalogue || sql.to_ascii_lowercase().contains("visits")) {
            // Visits are per day of the tenant's zone, whatever zone `ts` is shown in: its visitor ids
            // rotate at its midnight, so its days cut no visit that its ids do not.
            let zone = self.zone_of(tenant);
            let stored = self
                .stored_visit_days(tenant, zone, !run.unrestricted)
                .await?;
            run.visits = Some(crate::visits::Days { zone, stored });
        }
        let inner = Arc::clone(&self.inner);
        let (tenant, sql) = (tenant.clone(), sql.to_owned());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        // On threads of its own, so that the memory backstop counts exactly what this query holds.
        let answer = crate::budget::run_on_own_threads(
            config.threads,
            config.memory_backstop_bytes,
            Arc::clone(&self.running),
            stopped,
            move || async move {
                let _slot = slot;
                let again = (params.clone(), run.clone());
                match inner.run_unbounded(&tenant, &sql, params, run).await {
                    // A file listed for the query was replaced by another node meanwhile: list again.
                    Err(Error::Replaced(_)) => {
                        inner.run_unbounded(&tenant, &sql, again.0, again.1).await
                    }
                    answer => answer,
                }
            },
        )?;
        let timeout = config.timeout;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok((answer, _peak))) => answer,
            Ok(Err(_)) => Err(Error::Internal(
                "the query thread ended without an answer".into(),
            )),
            Err(_) => {
                let _ = stop.send(());
                Err(Error::Resources(format!(
                    "the query ran longer than its limit of {}s (query.timeout); narrow the date range or \
                     aggregate more",
                    timeout.as_secs_f64()
                )))
            }
        }
    }
}

mod session;
#[cfg(test)]
mod tests;
