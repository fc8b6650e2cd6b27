//! SQL over the Postgres wire protocol, for psql and the BI tools product teams already use
//! (`[postgres] listen = "127.0.0.1:5433"` in the binary's configuration; off by default).
//!
//! A connection logs in as a tenant: the **user name is the tenant id, the password that tenant's read key**,
//! the database `tacet` (psql: `PGPASSWORD=<read key> psql -h 127.0.0.1 -p 5433 -U <tenant> -d tacet`).
//! The password travels as Postgres's clear-text password message, so a listener without the server's
//! `[tls]` certificate stays on loopback (the binary refuses anything else), and with it every connection
//! must use TLS (`sslmode=require`; one without is refused before it can send its password). A wrong
//! password or another tenant's key gets the error a Postgres client shows (`password authentication
//! failed for user "…"`, SQLSTATE 28P01, with the reason).
//!
//! A session with an `sql` key sees exactly what `POST /v1/sql` sees: the tenant's `events` (unflushed
//! events included), read-only, with the same row, time and memory limits and the same refusals (DDL, DML,
//! `COPY`, external tables, file functions), because every statement goes through the same `QueryEngine`
//! (query.rs). Rows are sent as text in the column's Postgres type (`bigint`, `double precision`,
//! `boolean`, `text`, `timestamp with time zone`, `date`; lists and the `props` map as JSON text), encoded
//! by the API's own JSON encoder, so both doors give the same values. The catalogue clients read on connect
//! (`pg_catalog`, `information_schema`, `version()`, `current_schema()`; psql's `\dt` and `\d events`)
//! describes that one table (`tacet_query::pgcatalog`). `SET …` is accepted and ignored, `SHOW` answers the
//! settings clients ask for.
//!
//! The canned reports are set-returning functions, `SELECT * FROM report_pages('2026-11-01', '2026-11-30')`
//! (reports.rs), run through the HTTP API's own path with the tenant's k-threshold. A `reports`-scoped key
//! logs in too and reaches those functions only.
//!
//! The extended protocol (psycopg, JDBC) works too (extended.rs): a statement is its SQL text; parameters
//! are bound as SQL literals that go through the same checks. Results are text only.
//!
//! Connections are limited in total and per tenant, and closed after `idle_timeout` without a statement
//! ([`Limits`]); metrics: `tacet_postgres_connections_open`, `tacet_postgres_connections_total{tenant}`,
//! `tacet_postgres_queries_total{tenant,outcome}`, `tacet_postgres_idle_closed_total`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, LoginInfo, StartupHandler, finish_authentication,
    protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ClientInfo, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tacet_query::pgcatalog::PgCatalog;

use crate::AppState;
use crate::access::Role;

mod extended;
mod query;
mod reports;
mod rows;

/// The database name clients connect to.
pub const DATABASE: &str = tacet_query::pgcatalog::DATABASE;

/// Connections at once: all tenants together (`total`; more wait in the kernel's accept queue) and each
/// tenant (`per_tenant`; one more is refused at login with SQLSTATE 53300), so one tenant's tool cannot
/// take every connection; and how long one may sit without a statement (`idle`) before it is closed.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub total: usize,
    pub per_tenant: usize,
    pub idle: Duration,
}

/// Serves the protocol on `listener` until the process ends; with `tls` (the HTTP listener's certificate,
/// reloaded with it), every connection must use it.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    limits: Limits,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
) -> std::io::Result<()> {
    let open: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.total.max(1)));
    loop {
        let permit = Arc::clone(&slots)
            .acquire_owned()
            .await
            .map_err(std::io::Error::other)?;
        let (socket, peer) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        // One session per connection: it remembers its tenant, so the tenant's count drops when it ends.
        let session = Arc::new(Session {
            state: state.clone(),
            open: Arc::clone(&open),
            per_tenant: limits.per_tenant.max(1),
            tenant: Mutex::new(None),
            reports_only: AtomicBool::new(false),
            tls_required: tls.is_some(),
            catalog: Arc::new(PgCatalog::new()),
            started: Instant::now(),
            active_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        });
        let handlers = Handlers {
            inner: Arc::clone(&session),
        };
        // The certificate as the HTTP listener has it now, offering the protocol Postgres 17 asks for.
        let acceptor = tls.as_ref().map(|t| {
            let mut config = (*t.get_inner()).clone();
            config.alpn_protocols = vec![b"postgresql".to_vec()];
            pgwire::tokio::TlsAcceptor::from(Arc::new(config))
        });
        let idle = limits.idle;
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                ended = pgwire::tokio::process_socket(socket, acceptor, handlers) => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "postgres connection ended with an error");
                    }
                }
                () = session.idle_for(idle) => {
                    metrics::counter!("tacet_postgres_idle_closed_total").increment(1);
                    tracing::info!(%peer, idle_secs = idle.as_secs(), "postgres connection closed: idle");
                }
            }
            session.ended();
        });
    }
}

struct Handlers {
    inner: Arc<Session>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.inner)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.inner)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.inner)
    }
}

struct Session {
    state: AppState,
    /// Open connections by tenant, shared by every connection.
    open: Arc<Mutex<HashMap<String, usize>>>,
    per_tenant: usize,
    /// This connection's tenant, once logged in.
    tenant: Mutex<Option<String>>,
    /// Logged in with a `reports`-scoped key: the report functions only.
    reports_only: AtomicBool,
    /// The listener has a certificate: a connection without TLS may not log in.
    tls_required: bool,
    /// What `pg_catalog` says of this connection's tenant (its object ids stay put between statements).
    catalog: Arc<PgCatalog>,
    /// When the connection came, and when it last did something (milliseconds after `started`).
    started: Instant,
    active_ms: AtomicU64,
    /// Statements running now (a long one is not idleness).
    busy: AtomicUsize,
}

impl Session {
    /// Counts a login of `tenant`, unless it has `per_tenant` connections open already.
    fn admit(&self, tenant: &str) -> bool {
        let mut open = self.open.lock().expect("connection count lock");
        let n = open.entry(tenant.to_owned()).or_default();
        if *n >= self.per_tenant {
            return false;
        }
        *n += 1;
        *self.tenant.lock().expect("tenant lock") = Some(tenant.to_owned());
        metrics::gauge!("tacet_postgres_connections_open").increment(1.0);
        metrics::counter!("tacet_postgres_connections_total", "tenant" => tenant.to_owned())
            .increment(1);
        true
    }

    /// The connection ended: its tenant's count drops.
    fn ended(&self) {
        let Some(tenant) = self.tenant.lock().expect("tenant lock").take() else {
            return;
        };
        let mut open = self.open.lock().expect("connection count lock");
        if let Some(n) = open.get_mut(&tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&tenant);
            }
        }
        metrics::gauge!("tacet_postgres_connections_open").decrement(1.0);
    }

    /// Marks the connection active; the guard marks it busy until the statement is answered.
    fn active(&self) -> Busy<'_> {
        self.touch();
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self)
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.active_ms.store(ms, Ordering::SeqCst);
    }

    /// Returns once the connection has been `idle` without a statement (and none is running).
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.started + Duration::from_millis(self.active_ms.load(Ordering::SeqCst));
            let due = last + idle;
            if Instant::now() >= due && self.busy.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep_until(due.max(Instant::now() + Duration::from_millis(100)).into())
                .await;
        }
    }
}

/// A statement in progress.
struct Busy<'a>(&'a Session);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}

fn error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

#[async_trait]
impl StartupHandler for Session {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                if self.tls_required && !client.is_secure() {
                    return Err(fatal(
                        "28000",
                        "this server takes passwords over TLS only: connect with sslmode=require (psql \"host=… sslmode=require\")",
                    ));
                }
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let database = client
                    .metadata()
                    .get(pgwire::api::METADATA_DATABASE)
                    .cloned();
                if database.as_deref().is_some_and(|d| d != DATABASE) {
                    return Err(fatal(
                        "3D000",
                        format!(
                            "database {:?} does not exist; connect to database \"{DATABASE}\" (psql -d {DATABASE})",
                            database.unwrap_or_default()
                        ),
                    ));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let pwd = pwd.into_password()?;
                let login = LoginInfo::from_client_info(client);
                let user = login.user().unwrap_or_default().to_owned();
                let refused = |why: &str| {
                    tracing::info!(user = %user, "postgres login refused");
                    fatal(
                        "28P01",
                        format!(
                            "password authentication failed for user \"{user}\": {why} (the user is the tenant id, the password its read key)"
                        ),
                    )
                };
                let key = pwd.password.trim();
                let tenants = &self.state.tenants;
                // A `reports`-scoped key logs in too, for the report functions only.
                let login = match tenants.authenticate(key, Role::Read) {
                    Err(crate::tenants::AuthError::ReportsScope) => {
                        self.reports_only.store(true, Ordering::SeqCst);
                        tenants.authenticate(key, Role::Reports)
                    }
                    other => other,
                };
                match login {
                    Ok(tenant) if tenant.id.as_str() == user => {
                        if !self.admit(&user) {
                            return Err(fatal(
                                "53300",
                                format!(
                                    "too many connections for tenant \"{user}\" (at most {}, [postgres] max_connections_per_tenant); close one and retry",
                                    self.per_tenant
                                ),
                            ));
                        }
                        client.set_pid_and_secret_key(
                            rand_i32(),
                            pgwire::messages::startup::SecretKey::I32(rand_i32()),
                        );
                        let mut params = DefaultServerParameterProvider::default();
                        params.is_superuser = false;
                        params.default_transaction_read_only = true;
                        params.time_zone = "UTC".to_owned();
                        finish_authentication(client, &params).await?;
                        self.touch();
                        tracing::info!(tenant = %tenant.id, reports_only = self.reports_only.load(Ordering::SeqCst), "postgres login");
                    }
                    Ok(_) => return Err(refused("that key is another tenant's")),
                    Err(_) => return Err(refused("not a read key of this tenant")),
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn rand_i32() -> i32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("the OS random source");
    i32::from_ne_bytes(b) & i32::MAX
}
