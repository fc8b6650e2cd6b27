//! Distributed SQL on Apache DataFusion Ballista (`[query] ballista`).
//!
//! - `"standalone"`: a Ballista scheduler and executor started in this process, on loopback, the first
//!   time a query needs them. Queries take the same path as on a cluster (logical plan serialised to the
//!   scheduler, stages planned there, tasks run by the executor, results streamed back over Arrow Flight),
//!   which is what the tests compare against the local session.
//! - `"df://host:port"`: a cluster of Tacet's own scheduler and executors (`tacet ballista scheduler`,
//!   `tacet ballista executor`), which resolve the lake (`tacet://lake/`) to the same object store as this
//!   process and apply the same visibility rule to its files. Stock Ballista binaries do not know the lake.
//!
//! What Ballista sessions leave out: events still in the ingestion buffer (a report there covers what is
//! flushed, at most one `flush_interval` behind) and encrypted lakes (the server refuses the combination at
//! start). Everything else — the tenant's `events` and `rollups` tables, objections, bound report
//! parameters, the k-threshold, row limits and time limits — is the same.

use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::{Error, Result};

/// Where Ballista sessions send their plans.
#[derive(Debug)]
pub(crate) enum Cluster {
    /// Started on first use, in this process, on the engine's service runtime (queries run on runtimes of
    /// their own that end with them).
    Standalone(tokio::sync::OnceCell<String>, tokio::runtime::Handle),
    Remote(String),
}

impl Cluster {
    /// `"standalone"` or a scheduler URL (`df://host:port`).
    pub(crate) fn parse(setting: &str, service: tokio::runtime::Handle) -> Result<Self> {
        match setting.trim() {
            "standalone" => Ok(Self::Standalone(tokio::sync::OnceCell::new(), service)),
            url if url.starts_with("df://") && url.len() > 5 => Ok(Self::Remote(url.to_owned())),
            other => Err(Error::User(format!(
                "query.ballista = {other:?}: use \"standalone\" or the scheduler's URL, df://host:port"
            ))),
        }
    }

    /// The scheduler URL, starting the in-process cluster if this is the first query.
    async fn url(&self, runtime: &Arc<RuntimeEnv>) -> Result<String> {
        match self {
            Self::Remote(url) => Ok(url.clone()),
            Self::Standalone(cell, service) => cell
                .get_or_try_init(|| async {
                    service
                        .spawn(start_standalone(Arc::clone(runtime)))
                        .await
                        .map_err(|e| {
                            Error::Internal(format!("the Ballista cluster did not start: {e}"))
                        })?
                })
                .await
                .cloned(),
        }
    }

    /// A Ballista session over `state`'s configuration and runtime.
    pub(crate) async fn session(
        &self,
        runtime: &Arc<RuntimeEnv>,
        state: datafusion::execution::SessionState,
    ) -> Result<SessionContext> {
        let url = self.url(runtime).await?;
        SessionContext::remote_with_state(&url, state)
            .await
            .map_err(|e| {
                Error::Internal(format!("cannot reach the Ballista scheduler at {url}: {e}"))
            })
    }
}

/// Whether `plan` has a union anywhere (its views and subqueries included): such a plan runs on the
/// server's own session, not on the cluster.
///
/// Ballista 55 mis-runs unions. Its adaptive planner (the default) gives the tasks of a stage whose union
/// has an input that turns out empty plans of different shapes (a memory source in one, an `EmptyExec`
/// in another); the scheduler refuses their statuses ("task metrics array size 5 does not equal with the
/// stage metrics array size 6") and the job returns without those tasks' rows or never finishes (with
/// those statuses accepted, it returned some rows twice). A closed day's stored `visits` beside the
/// other days (computed, and empty) is such a union: no rows in 3 of 5 runs; so is a client's `UNION
/// ALL` of a scan and a join that finds nothing. Its static planner ran those two right on one file,
/// but never finished the same union over many files, nor the `daily` report. One node answers every
/// union right: `tests/e2e/ballista.rs` and the reports test read such unions several times.
pub(crate) fn has_union(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut found = false;
    // The visit cannot fail: the closure never returns an error.
    let _ = plan.apply_with_subqueries(|node| {
        found = match node {
            LogicalPlan::Union(_) => true,
            // A view (`visits`) is a table scan until the optimiser inlines it.
            LogicalPlan::TableScan(scan) => scan
                .source
                .get_logical_plan()
                .is_some_and(|view| has_union(&view)),
            _ => false,
        };
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// The state a Ballista scheduler or executor plans and runs Tacet's queries with: the lake's object store
/// (with the visibility rule) from `runtime`.
pub fn cluster_state(runtime: Arc<RuntimeEnv>) -> datafusion::execution::SessionState {
    state_with_tacet_functions(SessionConfig::new_with_ballista(), runtime)
}

/// A session state with DataFusion's functions and Tacet's own (`tacet_visit`, crate::visit;
/// `tacet_count_distinct`, crate::distinct): schedulers
/// and executors must know every function a report calls.
fn state_with_tacet_functions(
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
) -> datafusion::execution::SessionState {
    let mut builder = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features();
    if let Some(functions) = builder.window_functions() {
        functions.extend(crate::visit::udwfs());
    }
    if let Some(functions) = builder.aggregate_functions() {
        functions.extend(crate::distinct::udafs());
    }
    // `tacet_group` as the identity: a tenant with merges or splits runs its crash reports locally.
    if let Some(functions) = builder.scalar_functions() {
        functions.push(Arc::new(
            Arc::new(crate::groups::CrashGroups::default()).udf(),
        ));
    }
    builder.build()
}

async fn start_standalone(runtime: Arc<RuntimeEnv>) -> Result<String> {
    let state = cluster_state(runtime);
    let fail = |e: &dyn std::fmt::Display| {
        Error::Internal(format!("cannot start the in-process Ballista cluster: {e}"))
    };
    let addr = ballista_scheduler::standalone::new_standalone_scheduler_from_state(&state)
        .await
        .map_err(|e| fail(&e))?;
    let scheduler_url = format!("http://127.0.0.1:{}", addr.port());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let scheduler = loop {
        match SchedulerGrpcClient::connect(scheduler_url.clone()).await {
            Ok(client) => break client,
            Err(e) if std::time::Instant::now() > deadline => return Err(fail(&e)),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    };
    let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
    ballista_executor::new_standalone_executor_from_state(scheduler, slots, &state)
        .await
        .map_err(|e| fail(&e))?;
    Ok(format!("df://127.0.0.1:{}", addr.port()))
}

/// A runtime for Ballista processes outside the server: the lake's object store at `tacet://lake/`, every
/// listing filtered by the visibility rule, and a memory pool of `memory_limit_bytes`.
pub fn lake_runtime(
    store: Arc<dyn object_store::ObjectStore>,
    memory_limit_bytes: usize,
) -> Result<Arc<RuntimeEnv>> {
    crate::engine::lake_runtime(store, memory_limit_bytes)
}

/// Runs a Ballista scheduler for Tacet's queries on `bind` until the process stops.
pub async fn run_scheduler(runtime: Arc<RuntimeEnv>, bind: std::net::SocketAddr) -> Result<()> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;
    let session_builder: ballista_scheduler::scheduler_server::SessionBuilder =
        Arc::new(move |config: SessionConfig| {
            Ok(state_with_tacet_functions(config, Arc::clone(&runtime)))
        });
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        override_session_builder: Some(session_builder),
        override_config_producer: Some(Arc::new(SessionConfig::new_with_ballista)),
        ..SchedulerConfig::default()
    };
    let fail = |e: &dyn std::fmt::Display| Error::Internal(format!("Ballista scheduler: {e}"));
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| fail(&e))?;
    ballista_scheduler::scheduler_process::start_server(cluster, bind, Arc::new(config))
        .await
        .map_err(|e| fail(&e))
}

/// Where a Tacet Ballista executor listens and which scheduler it serves.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub scheduler_host: String,
    pub scheduler_port: u16,
    pub bind_host: String,
    /// Arrow Flight (results and shuffles).
    pub port: u16,
    /// gRPC (tasks pushed by the scheduler).
    pub grpc_port: u16,
    /// Tasks run at once.
    pub slots: usize,
    /// The host name the scheduler and other executors reach this one at; default `bind_host`.
    pub external_host: Option<String>,
}

/// Runs a Ballista executor for Tacet's queries until the process stops.
pub async fn run_executor(runtime: Arc<RuntimeEnv>, options: ExecutorOptions) -> Result<()> {
    use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
    let config = ExecutorProcessConfig {
        scheduler_host: options.scheduler_host,
        scheduler_port: options.scheduler_port,
        bind_host: options.bind_host,
        external_host: options.external_host,
        port: options.port,
        grpc_port: options.grpc_port,
        vcores: options.slots.max(1),
        override_function_registry: Some(Arc::new(
            ballista_core::registry::BallistaFunctionRegistry::from(&cluster_state(Arc::clone(
                &runtime,
            ))),
        )),
        override_runtime_producer: Some(Arc::new(move |_| Ok(Arc::clone(&runtime)))),
        override_config_producer: Some(Arc::new(SessionConfig::new_with_ballista)),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| Error::Internal(format!("Ballista executor: {e}")))
}
