//! The query engine: one shared runtime (object store, memory pool), one session per query.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::ParamValues;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use object_store::ObjectStore;
use tacet_model::TenantId;
use tacet_model::schema::{PARTITION_COLUMNS, file_schema};
use url::Url;

use crate::report::{Report, ReportParams};
use crate::{Error, QueryConfig, Result};

/// The URL the lake's object store is registered under in DataFusion.
const LAKE_URL: &str = "tacet://lake/";

/// Rows of an answer, whether `max_rows` (or a report's `limit`) cut it, and how many rows the k-threshold
/// suppressed.
#[derive(Debug)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub truncated: bool,
    /// Rows a canned report left out because they describe fewer than k distinct visitors.
    pub suppressed: usize,
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
    inner: Arc<Inner>,
    /// A small runtime for what outlives one query (the in-process Ballista cluster).
    service: Option<tokio::runtime::Runtime>,
    slots: Arc<crate::slots::Slots>,
    /// What the running queries hold, for the memory backstop.
    running: Arc<crate::budget::Running>,
}

#[derive(Debug)]
struct Inner {
    runtime: Arc<RuntimeEnv>,
    store: Arc<dyn ObjectStore>,
    config: QueryConfig,
    fresh: std::sync::OnceLock<Arc<dyn FreshEvents>>,
    restrictions: std::sync::OnceLock<Arc<dyn Restrictions>>,
    /// Tenants' data keys, when the lake is encrypted.
    data_keys: std::sync::OnceLock<Arc<dyn tacet_lake::DataKeys>>,
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
                data_keys: std::sync::OnceLock::new(),
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
            },
        )
        .await
    }

    /// Runs read-only SQL against `tenant`'s events.
    pub async fn sql(&self, tenant: &TenantId, sql: &str) -> Result<QueryOutput> {
        self.run(tenant, sql, None).await
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
        // Days answered by their rollup's visit totals (`-- rollups: visits`), unfiltered only.
        let expired = if report.rollup_visits() && params.filters.is_empty() {
            let days = self.expired_days(tenant, "pageview", params).await?;
            days.into_iter().collect::<Vec<_>>().join(",")
        } else {
            String::new()
        };
        let mut out = self
            .run_with_limit(
                tenant,
                &report.expanded_sql_for(scope.zone, params.filters.contains_key("event")),
                Some(crate::report::bind(params, scope.zone, &expired)),
                Run {
                    max_rows: self.inner.config.max_rows,
                    unrestricted: false,
                    tables: Vec::new(),
                    // The cluster knows `tacet_group` as the identity only: a tenant's own merges and
                    // splits run here.
                    local: !report.distributed() || !scope.groups.is_empty(),
                    zone: Some(scope.zone),
                    batch_rows: REPORT_BATCH_ROWS,
                    client_sql: false,
                    groups: Some(Arc::clone(&scope.groups)),
                },
            )
            .await?;
        if let Some((kind, dimension)) = report.rollup() {
            out = self
                .add_expired_days(tenant, &kind, &dimension, params, out)
                .await?;
        }
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
            },
        )
        .await
    }

    pub(crate) async fn run_with_limit(
        &self,
        tenant: &TenantId,
        sql: &str,
        params: Option<ParamValues>,
        run: Run,
    ) -> Result<QueryOutput> {
        let config = &self.inner.config;
        let slot = self.slots.acquire(tenant).await?;
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

impl Inner {
    /// A session that sees exactly one table, `events`, holding `tenant`'s rows; on the Ballista cluster
    /// when `distributed` (then without the ingestion buffer).
    async fn session(
        &self,
        tenant: &TenantId,
        unrestricted: bool,
        distributed: bool,
        zone: Option<chrono_tz::Tz>,
        batch_rows: usize,
    ) -> Result<SessionContext> {
        let config = SessionConfig::new()
            .with_information_schema(false)
            .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .with_batch_size(batch_rows);
        let fresh = self.fresh.get().filter(|_| !distributed);
        let (buffered, runtime) = match fresh {
            None => (Vec::new(), Arc::clone(&self.runtime)),
            Some(fresh) => {
                let (batches, newer_than) = fresh.snapshot(tenant).map_err(Error::Internal)?;
                // This query's view of the lake also hides the files whose events the snapshot holds.
                let registry =
                    datafusion::execution::object_store::DefaultObjectStoreRegistry::new();
                let url = Url::parse(LAKE_URL).expect("a valid URL");
                datafusion::execution::object_store::ObjectStoreRegistry::register_store(
                    &registry,
                    &url,
                    Arc::new(crate::hiding::HidingStore::new(
                        Arc::clone(&self.store),
                        fresh.node(),
                        newer_than,
                    )),
                );
                let runtime = RuntimeEnvBuilder::from_runtime_env(&self.runtime)
                    .with_object_store_registry(Arc::new(registry))
                    .build_arc()
                    .map_err(Error::from_datafusion)?;
                (batches, runtime)
            }
        };
        let mut builder = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features();
        if !distributed {
            builder = builder.with_physical_optimizer_rule(Arc::new(YieldingJoins));
        }
        if !buffered.is_empty() {
            // DataFusion 55's leaf-expression extraction loses `props['key']` on the in-memory side of the
            // `events` union (it projects other columns instead); without these two rules the plan is right.
            // The test `accepted_events_are_queryable_before_the_flush_and_never_twice` guards it.
            let rules = datafusion::optimizer::Optimizer::new()
                .rules
                .into_iter()
                .filter(|r| {
                    !matches!(
                        r.name(),
                        "extract_leaf_expressions" | "push_down_leaf_projections"
                    )
                })
                .collect();
            builder = builder.with_optimizer_rules(rules);
        }
        let state = builder.build();
        let ctx = match (&self.cluster, distributed) {
            (Some(cluster), true) => cluster.session(&self.runtime, state).await?,
            _ => SessionContext::new_with_state(state),
        };
        // After the Ballista upgrade, which replaces the window functions with its own list.
        for f in crate::visit::udwfs() {
            ctx.register_udwf(f.as_ref().clone());
        }
        for f in crate::distinct::udafs() {
            ctx.register_udaf(f.as_ref().clone());
        }
        // `tacet_group` as the identity; a report's run replaces it with the tenant's rules.
        ctx.register_udf(Arc::new(crate::groups::CrashGroups::default()).udf());
        // Value-building functions refuse answers past `max_value_bytes` before building them.
        for f in crate::capped::udfs(self.config.max_value_bytes) {
            ctx.register_udf(f);
        }
        let table_url =
            ListingTableUrl::parse(format!("{LAKE_URL}{}", tacet_lake::tenant_prefix(tenant)))
                .map_err(|e| Error::Internal(e.to_string()))?;
        let mut format = ParquetFormat::default();
        if let Some(keys) = self.data_keys.get()
            && let Some(key) = keys.key(tenant).map_err(Error::Internal)?
        {
            let mut options = datafusion::config::TableParquetOptions::default();
            options.crypto.file_decryption =
                Some(datafusion::config::ConfigFileDecryptionProperties {
                    footer_key_as_hex: hex_encode(&key),
                    ..Default::default()
                });
            format = format.with_options(options);
        }
        let options = ListingOptions::new(Arc::new(format))
            .with_file_extension(".parquet")
            .with_table_partition_cols(
                PARTITION_COLUMNS
                    .iter()
                    .map(|c| ((*c).to_owned(), DataType::Utf8))
                    .collect(),
            );
        let table_config = ListingTableConfig::new(table_url)
            .with_listing_options(options)
            .with_schema(file_schema());
        let table = ListingTable::try_new(table_config).map_err(Error::from_datafusion)?;
        // `rollups`: the tenant's daily aggregates (rollup.rs), also rooted at its own prefix.
        let rollup_url = ListingTableUrl::parse(format!(
            "{LAKE_URL}{}",
            crate::rollup::rollup_prefix(tenant)
        ))
        .map_err(|e| Error::Internal(e.to_string()))?;
        let rollup_options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![("date".to_owned(), DataType::Utf8)]);
        let rollups = ListingTable::try_new(
            ListingTableConfig::new(rollup_url)
                .with_listing_options(rollup_options)
                .with_schema(crate::rollup::rollup_schema()),
        )
        .map_err(Error::from_datafusion)?;
        ctx.register_table("rollups", Arc::new(rollups))
            .map_err(Error::from_datafusion)?;
        // `events` = what is in Parquet plus what is still in the ingestion buffer, ...
        let mut events = ctx
            .read_table(Arc::new(table))
            .map_err(Error::from_datafusion)?;
        if !buffered.is_empty() {
            let schema = buffered[0].schema();
            let memory = datafusion::datasource::MemTable::try_new(schema, vec![buffered])
                .map_err(Error::from_datafusion)?;
            let memory = ctx
                .read_table(Arc::new(memory))
                .map_err(Error::from_datafusion)?;
            events = events.union(memory).map_err(Error::from_datafusion)?;
        }
        // ... without the people who objected (restriction of processing), unless this is their own
        // access request.
        let restricted = match (unrestricted, self.restrictions.get()) {
            (true, _) | (false, None) => Vec::new(),
            (false, Some(r)) => r.restricted(tenant).map_err(Error::Internal)?,
        };
        if !restricted.is_empty() {
            use datafusion::prelude::{col, lit};
            let list = restricted.into_iter().map(lit).collect();
            events = events
                .filter(
                    col("user_pseudonym")
                        .is_null()
                        .or(col("user_pseudonym").in_list(list, true)),
                )
                .map_err(Error::from_datafusion)?;
        }
        // Reports see `ts` in the tenant's zone: the same instants, but `date_trunc` and `to_char` work in
        // local time. (Casting between zones changes only the type's zone, not the stored milliseconds.)
        if let Some(zone) = zone.filter(|z| *z != chrono_tz::UTC) {
            use datafusion::prelude::{cast, col};
            events = events
                .with_column(
                    "ts",
                    cast(
                        col("ts"),
                        DataType::Timestamp(TimeUnit::Millisecond, Some(zone.name().into())),
                    ),
                )
                .map_err(Error::from_datafusion)?;
        }
        ctx.register_table("events", events.into_view())
            .map_err(Error::from_datafusion)?;
        Ok(ctx)
    }

    async fn run_unbounded(
        &self,
        tenant: &TenantId,
        sql: &str,
        params: Option<ParamValues>,
        run: Run,
    ) -> Result<QueryOutput> {
        let max = run.max_rows;
        if sql.trim().is_empty() {
            return Err(Error::User("empty query: send one SELECT statement".into()));
        }
        // Queries with tables of their own (the admin's audit log, in memory) stay here.
        let distributed = self.cluster.is_some() && run.tables.is_empty() && !run.local;
        let ctx = self
            .session(
                tenant,
                run.unrestricted,
                distributed,
                run.zone,
                run.batch_rows,
            )
            .await?;
        if let Some(groups) = run.groups.filter(|g| !g.is_empty()) {
            ctx.register_udf(groups.udf());
        }
        for (name, batch) in run.tables {
            let table =
                datafusion::datasource::MemTable::try_new(batch.schema(), vec![vec![batch]])
                    .map_err(Error::from_datafusion)?;
            ctx.register_table(name, Arc::new(table))
                .map_err(Error::from_datafusion)?;
        }
        let plan = ctx
            .state()
            .create_logical_plan(sql)
            .await
            .map_err(Error::from_datafusion)?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| {
                Error::Refused(format!(
                    "only read-only queries are allowed ({}); DDL, DML, COPY and SET are refused",
                    e.strip_backtrace()
                        .trim_start_matches("Error during planning: ")
                ))
            })?;
        if run.client_sql {
            crate::capped::check_plan(&plan)?;
        }
        let mut df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(Error::from_datafusion)?;
        if let Some(params) = params {
            df = df
                .with_param_values(params)
                .map_err(Error::from_datafusion)?;
        }
        let mut stream = df.execute_stream().await.map_err(Error::from_datafusion)?;
        // The physical schema: a bound placeholder's type is only known here.
        let schema: SchemaRef = stream.schema();
        let (mut batches, mut rows, mut truncated) = (Vec::new(), 0usize, false);
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(Error::from_datafusion)?;
            if rows + batch.num_rows() > max {
                batches.push(batch.slice(0, max - rows));
                truncated = true;
                break;
            }
            rows += batch.num_rows();
            batches.push(batch);
        }
        Ok(QueryOutput {
            schema,
            batches,
            truncated,
            suppressed: 0,
        })
    }
}

/// Puts a yield point above every join: each batch a join emits takes a unit of the task's budget.
///
/// DataFusion yields where batches are made (scans, `generate_series`) and exchanged, but a join can
/// emit a great many batches per input batch (a cross join: one per slice of the product) without
/// returning to the scheduler, so a timed-out query went on for seconds (2.8 s on an idle machine, more
/// than 5 under load) before its task saw the abort and gave back its slot. The test
/// `a_runaway_query_is_stopped_and_slots_are_bounded` measures it.
#[derive(Debug)]
struct YieldingJoins;

impl datafusion::physical_optimizer::PhysicalOptimizerRule for YieldingJoins {
    fn optimize(
        &self,
        plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        _: &datafusion::config::ConfigOptions,
    ) -> datafusion::common::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::physical_plan::coop::CooperativeExec;
        plan.transform_up(|p| {
            if p.name().contains("Join") {
                Ok(Transformed::yes(Arc::new(CooperativeExec::new(p)) as _))
            } else {
                Ok(Transformed::no(p))
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tacet_yielding_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use tacet_lake::{Lake, PartitionKey};
    use tacet_model::parse_event;
    use tacet_privacy::{
        EventBatch, Keys, Outcome, Privacy, RequestContext, TenantPolicy, parse_user_agent,
    };

    const NOW: i64 = 1_764_400_000_000; // 2025-11-29T07:06:40Z
    const HOUR: i64 = 3_600_000;

    /// Writes `(tenant, kind, hours before NOW, ip)` events to a lake on local disk.
    async fn lake_with(events: &[(&str, &str, i64, &str)]) -> (tempfile::TempDir, Lake) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(dir.path()).unwrap();
        let privacy = Privacy::default();
        let keys = Keys {
            visitor_salt: [3; 32],
            subject_key: [4; 32],
        };
        for (i, &(tenant, kind, hours_ago, ip)) in events.iter().enumerate() {
            let t = TenantId::new(tenant).unwrap();
            let ua = parse_user_agent(
                "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
            );
            let ctx = RequestContext::new(ip.parse().unwrap(), "ua");
            let mut v = serde_json::json!({"kind": kind, "url": format!("https://{tenant}.example/p"), "ts": NOW - hours_ago * HOUR});
            if kind == "event" {
                v["name"] = "signup".into();
            }
            if kind == "crash" {
                v["message"] = "boom".into();
            }
            let raw = parse_event(v, NOW).unwrap();
            let key = PartitionKey::for_event(t.clone(), raw.kind, raw.ts_millis);
            let tally = &mut Default::default();
            let Outcome::Keep(e) =
                privacy.pseudonymise(&t, &TenantPolicy::default(), &keys, ctx, &ua, raw, tally)
            else {
                panic!("a browser event is kept");
            };
            lake.write(
                &key,
                (i as u64 + 1, i as u64 + 1),
                &EventBatch::from_events([e].iter()).unwrap(),
            )
            .await
            .unwrap();
        }
        (dir, lake)
    }

    fn engine(lake: &Lake, config: QueryConfig) -> QueryEngine {
        QueryEngine::new(Arc::clone(lake.store()), config).unwrap()
    }

    fn ints(out: &QueryOutput, col: usize) -> Vec<i64> {
        out.batches
            .iter()
            .flat_map(|b| b.column(col).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    fn t(id: &str) -> TenantId {
        TenantId::new(id).unwrap()
    }

    /// A store whose listings include one file more than it holds, until someone tries to read that
    /// file: as if another node's compaction deleted it between a query's listing and its reads.
    #[derive(Debug)]
    struct Phantom {
        inner: Arc<dyn ObjectStore>,
        path: object_store::path::Path,
        gone: std::sync::atomic::AtomicBool,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl std::fmt::Display for Phantom {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Phantom({})", self.inner)
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Phantom {
        async fn put_opts(
            &self,
            location: &object_store::path::Path,
            payload: object_store::PutPayload,
            opts: object_store::PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &object_store::path::Path,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &object_store::path::Path,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            if *location == self.path {
                self.gone.store(true, std::sync::atomic::Ordering::SeqCst);
                self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<
                'static,
                object_store::Result<object_store::path::Path>,
            >,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>
        {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
        {
            let listing = self.inner.list(prefix);
            let covered = prefix.is_none_or(|p| self.path.as_ref().starts_with(p.as_ref()));
            if self.gone.load(std::sync::atomic::Ordering::SeqCst) || !covered {
                return listing;
            }
            let phantom = object_store::ObjectMeta {
                location: self.path.clone(),
                last_modified: chrono::Utc::now(),
                size: 4096,
                e_tag: None,
                version: None,
            };
            listing
                .chain(futures::stream::once(async move { Ok(phantom) }))
                .boxed()
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> object_store::Result<object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &object_store::path::Path,
            to: &object_store::path::Path,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    #[tokio::test]
    async fn a_file_deleted_between_listing_and_reading_is_listed_again_not_an_error() {
        let (_dir, lake) = lake_with(&[
            ("a", "pageview", 1, "203.0.113.1"),
            ("a", "pageview", 2, "203.0.113.2"),
        ])
        .await;
        let day = chrono::DateTime::from_timestamp_millis(NOW - HOUR)
            .unwrap()
            .format("%Y-%m-%d");
        let phantom = Arc::new(Phantom {
            inner: Arc::clone(lake.store()),
            path: object_store::path::Path::from(format!(
                "events/tenant=a/kind=pageview/date={day}/part-00000000000000000090-00000000000000000099.parquet"
            )),
            gone: Default::default(),
            reads: Default::default(),
        });
        let engine = QueryEngine::new(phantom.clone(), QueryConfig::default()).unwrap();
        let out = engine
            .sql(&t("a"), "SELECT COUNT(*) AS n FROM events")
            .await
            .unwrap();
        assert_eq!(ints(&out, 0), [2]);
        assert_eq!(
            phantom.reads.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "the first run tried the vanished file; the second did not list it"
        );
    }

    #[tokio::test]
    async fn daily_report_counts_exactly() {
        // Tenant a: yesterday 2 page views by 2 visitors; today 3 page views by 1 visitor, 1 event, 1 crash.
        let (_dir, lake) = lake_with(&[
            ("a", "pageview", 24, "203.0.113.1"),
            ("a", "pageview", 24, "203.0.113.2"),
            ("a", "pageview", 1, "203.0.113.1"),
            ("a", "pageview", 2, "203.0.113.1"),
            ("a", "pageview", 3, "203.0.113.1"),
            ("a", "event", 1, "203.0.113.1"),
            ("a", "crash", 1, "203.0.113.1"),
            ("b", "pageview", 1, "203.0.113.9"),
        ])
        .await;
        let q = engine(&lake, QueryConfig::default());
        let today = chrono::DateTime::from_timestamp_millis(NOW)
            .unwrap()
            .date_naive();
        let params = ReportParams::parse(&BTreeMap::new(), today).unwrap();
        let out = q
            .report(
                &t("a"),
                Report::find("daily").unwrap(),
                &params,
                &crate::ReportScope::utc(5),
            )
            .await
            .unwrap();
        let days: Vec<String> = out
            .batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(days, ["2025-11-28", "2025-11-29"]);
        assert_eq!(ints(&out, 1), [2, 1], "visitors");
        assert_eq!(ints(&out, 2), [2, 3], "pageviews");
        assert_eq!(ints(&out, 3), [0, 1], "events");
        assert_eq!(ints(&out, 4), [0, 1], "crashes");

        // A range that excludes yesterday.
        let mut only_today = BTreeMap::new();
        only_today.insert("from".to_owned(), "2025-11-29".to_owned());
        let params = ReportParams::parse(&only_today, today).unwrap();
        let out = q
            .report(
                &t("a"),
                Report::find("daily").unwrap(),
                &params,
                &crate::ReportScope::utc(5),
            )
            .await
            .unwrap();
        assert_eq!(ints(&out, 2), [3]);
    }

    #[tokio::test]
    async fn a_tenant_sees_only_its_own_rows() {
        let (_dir, lake) = lake_with(&[
            ("a", "pageview", 1, "203.0.113.1"),
            ("b", "pageview", 1, "203.0.113.2"),
            ("b", "crash", 1, "203.0.113.2"),
        ])
        .await;
        let q = engine(&lake, QueryConfig::default());
        let count = |out: QueryOutput| ints(&out, 0)[0];
        assert_eq!(
            count(q.sql(&t("a"), "SELECT COUNT(*) FROM events").await.unwrap()),
            1
        );
        assert_eq!(
            count(q.sql(&t("b"), "SELECT COUNT(*) FROM events").await.unwrap()),
            2
        );
        let hosts = q
            .sql(&t("a"), "SELECT DISTINCT url_host FROM events")
            .await
            .unwrap();
        assert_eq!(hosts.num_rows(), 1);
        // A tenant with no files yet answers with zero rows, not an error.
        assert_eq!(
            count(q.sql(&t("c"), "SELECT COUNT(*) FROM events").await.unwrap()),
            0
        );
    }

    #[tokio::test]
    async fn a_runaway_query_is_stopped_and_slots_are_bounded() {
        let (_dir, lake) = lake_with(&[("a", "pageview", 1, "203.0.113.1")]).await;
        let q = Arc::new(engine(
            &lake,
            QueryConfig {
                timeout: std::time::Duration::from_millis(300),
                max_concurrent: 1,
                queue_timeout: std::time::Duration::from_millis(100),
                ..QueryConfig::default()
            },
        ));
        // Ten billion rows of a cross join: stopped at the time limit, on the query runtime, while this
        // (ingestion's) runtime stays free.
        let runaway = "SELECT COUNT(*) FROM (SELECT * FROM generate_series(1, 100000)) a, \
                       (SELECT * FROM generate_series(1, 100000)) b";
        let started = std::time::Instant::now();
        let busy = {
            let q = Arc::clone(&q);
            tokio::spawn(async move { q.sql(&t("a"), runaway).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // The one slot is taken: the next query waits its queue_timeout, then is refused as busy.
        let e = q.sql(&t("a"), "SELECT 1").await.unwrap_err();
        assert!(matches!(e, Error::Busy(_)), "{e:?}");
        let e = busy.await.unwrap().unwrap_err();
        assert!(
            matches!(e, Error::Resources(ref m) if m.contains("longer than its limit")),
            "{e:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // The aborted query lets go of its slot at its next yield (DataFusion's operators yield
        // cooperatively); then queries run again.
        // Within a second: every join yields (`YieldingJoins`); it took 2.8 s without.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            match q.sql(&t("a"), "SELECT 1 AS x").await {
                Ok(out) => {
                    assert_eq!(out.num_rows(), 1);
                    break;
                }
                Err(Error::Busy(_)) if std::time::Instant::now() < deadline => {}
                Err(e) => panic!("the slot was not freed: {e:?}"),
            }
        }
    }

    #[tokio::test]
    async fn escapes_and_writes_are_refused() {
        let (dir, lake) = lake_with(&[
            ("a", "pageview", 1, "203.0.113.1"),
            ("b", "pageview", 1, "203.0.113.2"),
        ])
        .await;
        let q = engine(&lake, QueryConfig::default());
        let b_file = format!("{}/events/tenant=b", dir.path().display());
        let refused = [
            format!("CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{b_file}'"),
            "COPY (SELECT 1) TO '/tmp/tacet-escape.csv'".to_owned(),
            "CREATE TABLE x AS SELECT 1".to_owned(),
            "DROP TABLE events".to_owned(),
            "SET datafusion.execution.batch_size = 1".to_owned(),
            "INSERT INTO events SELECT * FROM events".to_owned(),
        ];
        for sql in &refused {
            let e = q.sql(&t("a"), sql).await.unwrap_err();
            assert!(
                matches!(e, Error::Refused(_) | Error::User(_)),
                "{sql}: {e:?}"
            );
        }
        assert!(matches!(
            q.sql(&t("a"), &refused[0]).await.unwrap_err(),
            Error::Refused(_)
        ));
        assert!(matches!(
            q.sql(&t("a"), &refused[1]).await.unwrap_err(),
            Error::Refused(_)
        ));
        assert!(!std::path::Path::new("/tmp/tacet-escape.csv").exists());
        for sql in [
            format!("SELECT * FROM '{b_file}'"),
            "SELECT * FROM tenant_b.events".to_owned(),
            "SELECT * FROM information_schema.tables".to_owned(),
            "SELECT 1; SELECT 2".to_owned(),
            "SELEC 1".to_owned(),
            "".to_owned(),
        ] {
            let e = q.sql(&t("a"), &sql).await.unwrap_err();
            assert!(matches!(e, Error::User(_)), "{sql}: {e:?}");
        }
    }

    /// Regression: DataFusion's default listing cache hid files written after the first query.
    #[tokio::test]
    async fn files_written_after_a_query_are_seen_by_the_next() {
        let (dir, lake) = lake_with(&[("a", "pageview", 1, "203.0.113.1")]).await;
        let q = engine(&lake, QueryConfig::default());
        let count = |out: QueryOutput| ints(&out, 0)[0];
        assert_eq!(
            count(q.sql(&t("a"), "SELECT COUNT(*) FROM events").await.unwrap()),
            1
        );
        let more = lake_with(&[
            ("a", "pageview", 1, "203.0.113.2"),
            ("a", "crash", 1, "203.0.113.2"),
        ])
        .await;
        for f in crate::engine::tests::all_files(more.0.path()) {
            let rel = f.strip_prefix(more.0.path()).unwrap();
            let dest = dir
                .path()
                .join(rel)
                .with_file_name(format!("copy-{}", f.file_name().unwrap().to_str().unwrap()));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&f, dest).unwrap();
        }
        assert_eq!(
            count(q.sql(&t("a"), "SELECT COUNT(*) FROM events").await.unwrap()),
            3
        );
    }

    fn all_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(all_files(&p))
            } else {
                out.push(p)
            }
        }
        out
    }

    #[tokio::test]
    async fn answers_are_cut_at_max_rows() {
        let (_dir, lake) = lake_with(&[("a", "pageview", 1, "203.0.113.1")]).await;
        let q = engine(
            &lake,
            QueryConfig {
                max_rows: 10,
                ..QueryConfig::default()
            },
        );
        let out = q
            .sql(&t("a"), "SELECT * FROM generate_series(1, 100)")
            .await
            .unwrap();
        assert_eq!((out.num_rows(), out.truncated), (10, true));
        let out = q
            .sql(&t("a"), "SELECT * FROM generate_series(1, 10)")
            .await
            .unwrap();
        assert_eq!((out.num_rows(), out.truncated), (10, false));
        let json = String::from_utf8(crate::format::to_json(&out.batches).unwrap()).unwrap();
        assert!(json.starts_with(r#"[{"value":1},"#), "{json}");
        assert_eq!(crate::format::to_json(&[]).unwrap(), b"[]");
    }
}
