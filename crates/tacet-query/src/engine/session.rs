//! A query's session (the tables `events` and `rollups` of one tenant, its functions) and running SQL on
//! it: planning, the read-only check, execution.

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::ParamValues;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use tacet_model::TenantId;
use tacet_model::schema::{PARTITION_COLUMNS, file_schema};
use url::Url;

use super::{Inner, LAKE_URL, QueryOutput, Run};
use crate::{Error, Result};

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
        postgres: bool,
    ) -> Result<SessionContext> {
        let mut config = SessionConfig::new()
            .with_information_schema(postgres)
            .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .with_batch_size(batch_rows);
        if postgres {
            // Postgres clients' SQL, in a database named as they connected to it.
            config = config
                .with_default_catalog_and_schema(crate::pgcatalog::DATABASE, "public")
                .set_str("datafusion.sql_parser.dialect", "PostgreSQL");
        }
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
        if postgres {
            builder = builder.with_type_planner(crate::pgcatalog::type_planner());
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
        let options = ListingOptions::new(Arc::new(self.parquet_format(tenant)?))
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
        // Each day's `rollup.parquet` only: its `filters.parquet` (rows per filter value) is the planner's.
        let rollup_options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(crate::rollup::ROLLUP_FILE)
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

    /// The tenant's data key, when the lake encrypts (its events and visits files are written under it).
    pub(crate) fn data_key(&self, tenant: &TenantId) -> Result<Option<Vec<u8>>> {
        match self.data_keys.get() {
            Some(keys) => keys.key(tenant).map_err(Error::Internal),
            None => Ok(None),
        }
    }

    /// How the tenant's lake files are read: decrypted with its data key when the lake encrypts.
    pub(crate) fn parquet_format(&self, tenant: &TenantId) -> Result<ParquetFormat> {
        let format = ParquetFormat::default();
        let Some(key) = self.data_key(tenant)? else {
            return Ok(format);
        };
        let mut options = datafusion::config::TableParquetOptions::default();
        options.crypto.file_decryption = Some(datafusion::config::ConfigFileDecryptionProperties {
            footer_key_as_hex: hex_encode(&key),
            ..Default::default()
        });
        Ok(format.with_options(options))
    }

    /// The query's session and its checked logical plan, parameters bound: everything before execution.
    async fn prepare(
        &self,
        tenant: &TenantId,
        sql: &str,
        params: Option<ParamValues>,
        run: Run,
    ) -> Result<datafusion::dataframe::DataFrame> {
        if sql.trim().is_empty() {
            return Err(Error::User("empty query: send one SELECT statement".into()));
        }
        // Queries with tables of their own (the admin's audit log, in memory) stay here.
        let distributed = self.cluster.is_some() && run.tables.is_empty() && !run.local;
        // Planned again on this process if the plan has a union (crate::ballista::has_union).
        let again = distributed.then(|| run.clone());
        let ctx = self
            .session(
                tenant,
                run.unrestricted,
                distributed,
                run.zone,
                run.batch_rows,
                run.postgres.is_some(),
            )
            .await?;
        if let Some(days) = &run.visits {
            let shown = run.zone.unwrap_or(chrono_tz::UTC);
            self.register_visits(&ctx, tenant, shown, days).await?;
        }
        if let Some(catalog) = &run.postgres {
            catalog.install(&ctx).await?;
        }
        if let Some(groups) = run.groups.filter(|g| !g.is_empty()) {
            ctx.register_udf(groups.udf());
        }
        for (name, batch) in run.tables {
            // A table of the query's own replaces the session's of that name (a report's `rollups`, from
            // the rollup cache).
            ctx.deregister_table(name).map_err(Error::from_datafusion)?;
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
        if let Some(again) = again.filter(|_| crate::ballista::has_union(&plan)) {
            let local = Run {
                local: true,
                ..again
            };
            return Box::pin(self.prepare(tenant, sql, params, local)).await;
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
        Ok(df)
    }

    /// The schema of a query's answer without running it: planned on the session it would run on, so no
    /// file is listed or read. The test `planned_schemas_are_the_answers_schemas` holds it to the schema an
    /// execution yields.
    pub(crate) async fn plan_schema(
        &self,
        tenant: &TenantId,
        sql: &str,
        params: Option<ParamValues>,
        run: Run,
    ) -> Result<SchemaRef> {
        let df = self.prepare(tenant, sql, params, run).await?;
        Ok(Arc::new(df.schema().as_arrow().clone()))
    }

    pub(super) async fn run_unbounded(
        &self,
        tenant: &TenantId,
        sql: &str,
        params: Option<ParamValues>,
        run: Run,
    ) -> Result<QueryOutput> {
        let max = run.max_rows;
        let df = self.prepare(tenant, sql, params, run).await?;
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
            source: None,
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
