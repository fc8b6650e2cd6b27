//! SQL over the Postgres wire protocol, for psql and the BI tools product teams already use
//! (`[postgres] listen = "127.0.0.1:5433"` in the binary's configuration; off by default).
//!
//! A connection logs in as a tenant: the **user name is the tenant id, the password that tenant's read key**
//! (scope `sql`), the database `tacet` (psql: `PGPASSWORD=<read key> psql -h 127.0.0.1 -p 5433 -U <tenant>
//! -d tacet`). The password travels in clear text, so until the listener speaks TLS it only listens on
//! loopback (the binary refuses anything else). A wrong password, another tenant's key or a `reports`-scoped
//! key gets the error a Postgres client shows (`password authentication failed for user "…"`, SQLSTATE
//! 28P01, with the reason).
//!
//! A session sees exactly what `POST /v1/sql` sees: the tenant's `events` (unflushed events included),
//! read-only, with the same row, time and memory limits and the same refusals (DDL, DML, `COPY`, external
//! tables, file functions), because every statement goes through the same `QueryEngine::sql`. Rows are
//! sent as text in the column's Postgres type (`bigint`, `double precision`, `boolean`, `text`,
//! `timestamp with time zone`, `date`; lists and the `props` map as JSON text), encoded by the API's own
//! JSON encoder, so both doors give the same values. `SET …` is accepted and ignored, `SHOW` answers the
//! few settings clients ask for.
//!
//! Connections are limited in total and per tenant ([`Limits`]); metrics: `tacet_postgres_connections_open`,
//! `tacet_postgres_connections_total{tenant}`, `tacet_postgres_queries_total{tenant,outcome}`.
//!
//! The extended protocol (psycopg, JDBC) works too: a statement is its SQL text; Describe runs it wrapped
//! in `LIMIT 0` for its columns; parameters (text, or binary integers, floats, booleans and text) are bound
//! as SQL literals — numbers and booleans as themselves when their declared type says so and they read as
//! one, anything else a quoted string — and the bound text goes through the same checks as any SQL.
//! Results are text only.
//!
//! Not yet: the `pg_catalog` and `information_schema` tables BI tools read on connect, TLS, idle
//! timeouts, the canned reports as functions.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::{Sink, SinkExt, stream};
use pgwire::api::auth::{
    DefaultServerParameterProvider, LoginInfo, StartupHandler, finish_authentication,
    protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::portal::{Format as PgFormat, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DataRowEncoder, DescribePortalResponse, DescribeStatementResponse, FieldFormat, FieldInfo,
    QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use serde_json::Value;
use tacet_query::format::{Format, encode};

use crate::AppState;
use crate::access::Role;

/// The database name clients connect to.
pub const DATABASE: &str = "tacet";

/// Connections at once: all tenants together (`total`; more wait in the kernel's accept queue) and each
/// tenant (`per_tenant`; one more is refused at login with SQLSTATE 53300), so one tenant's tool cannot
/// take every connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub total: usize,
    pub per_tenant: usize,
}

/// Serves the protocol on `listener` until the process ends.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    limits: Limits,
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
        });
        let handlers = Handlers {
            inner: Arc::clone(&session),
        };
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                tracing::debug!(%peer, error = %e, "postgres connection ended with an error");
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
                match self
                    .state
                    .tenants
                    .authenticate(pwd.password.trim(), Role::Read)
                {
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
                        tracing::info!(tenant = %tenant.id, "postgres login");
                    }
                    Ok(_) => return Err(refused("that key is another tenant's")),
                    Err(crate::tenants::AuthError::ReportsScope) => {
                        return Err(refused(
                            "that key reaches the canned reports only; SQL needs a read key with scope sql",
                        ));
                    }
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

#[async_trait]
impl SimpleQueryHandler for Session {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
    {
        let tenant = self.tenant_of(client)?;
        let user = tenant.id.as_str().to_owned();
        let mut out = Vec::new();
        for statement in statements(query) {
            let answer = self.statement(&tenant, statement).await;
            metrics::counter!("tacet_postgres_queries_total", "tenant" => user.clone(),
                "outcome" => if answer.is_ok() { "ok" } else { "error" })
            .increment(1);
            out.push(answer?);
        }
        if out.is_empty() {
            out.push(Response::EmptyQuery);
        }
        Ok(out)
    }
}

/// The statements of a simple query, split at `;` outside quotes (clients send one or a few).
fn statements(query: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quote) = (0, None::<char>);
    for (i, c) in query.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ';') => {
                out.push(&query[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&query[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

impl Session {
    /// The tenant the connection logged in as (it may have been removed since).
    fn tenant_of<C: ClientInfo>(&self, client: &C) -> PgWireResult<crate::tenants::TenantEntry> {
        let user = client
            .metadata()
            .get(pgwire::api::METADATA_USER)
            .cloned()
            .unwrap_or_default();
        self.state
            .tenants
            .iter()
            .find(|t| t.id.as_str() == user)
            .cloned()
            .ok_or_else(|| fatal("28000", format!("tenant {user:?} no longer exists")))
    }

    /// The columns `sql` answers with, without running it: the query wrapped in `LIMIT 0`.
    async fn describe(
        &self,
        tenant: &crate::tenants::TenantEntry,
        sql: &str,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let sql = sql.trim().trim_end_matches(';');
        let first = sql
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        match first.as_str() {
            "SHOW" => {
                let name = sql.split_whitespace().nth(1).unwrap_or_default();
                return Ok(vec![FieldInfo::new(
                    name.to_ascii_lowercase(),
                    None,
                    None,
                    Type::TEXT,
                    FieldFormat::Text,
                )]);
            }
            "SELECT" | "WITH" | "VALUES" | "(" => {}
            _ => return Ok(Vec::new()),
        }
        let out = self
            .state
            .query
            .sql(&tenant.id, &format!("SELECT * FROM ({sql}) AS q LIMIT 0"))
            .await
            .map_err(query_error)?;
        Ok(fields_of(&out.schema))
    }

    async fn statement(
        &self,
        tenant: &crate::tenants::TenantEntry,
        sql: &str,
    ) -> PgWireResult<Response> {
        let first = sql
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        match first.as_str() {
            // Clients set their session up (client_encoding, DateStyle, extra_float_digits): accepted,
            // nothing to change here.
            "SET" | "RESET" | "DISCARD" => return Ok(Response::Execution(Tag::new(&first))),
            "BEGIN" | "START" => return Ok(Response::TransactionStart(Tag::new("BEGIN"))),
            "COMMIT" | "END" | "ROLLBACK" => {
                return Ok(Response::TransactionEnd(Tag::new(&first)));
            }
            "SHOW" => return Ok(show(sql)),
            _ => {}
        }
        let out = self
            .state
            .query
            .sql(&tenant.id, sql)
            .await
            .map_err(query_error)?;
        let fields = fields_of(&out.schema);
        let names: Vec<String> = fields.iter().map(|f| f.name().to_owned()).collect();
        let types: Vec<Type> = fields.iter().map(|f| f.datatype().clone()).collect();
        let fields = Arc::new(fields);
        // The API's own JSON encoding of the rows, then each value as Postgres text.
        let bytes = encode(Format::Json, &out.schema, &out.batches)
            .map_err(|e| error("XX000", e.to_string()))?;
        let rows: Vec<serde_json::Map<String, Value>> =
            serde_json::from_slice(&bytes).map_err(|e| error("XX000", e.to_string()))?;
        let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
        let mut data = Vec::with_capacity(rows.len());
        for row in rows {
            for (name, ty) in names.iter().zip(&types) {
                let text = row.get(name).and_then(|v| text(v, ty));
                encoder.encode_field(&text)?;
            }
            data.push(Ok(encoder.take_row()));
        }
        Ok(Response::Query(QueryResponse::new(
            fields,
            stream::iter(data),
        )))
    }
}

fn query_error(e: tacet_query::Error) -> PgWireError {
    match &e {
        tacet_query::Error::User(m) => error("42601", m.clone()),
        tacet_query::Error::Refused(m) => error("42501", m.clone()),
        tacet_query::Error::Resources(m) => error("54000", m.clone()),
        tacet_query::Error::Busy(m) | tacet_query::Error::Replaced(m) => error("53300", m.clone()),
        tacet_query::Error::Internal(_) => {
            tracing::error!(error = %e, "postgres query failed");
            error("XX000", "internal error; the server log has the details")
        }
    }
}

fn fields_of(schema: &arrow::datatypes::Schema) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .map(|f| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                FieldFormat::Text,
            )
        })
        .collect()
}

/// The extended protocol's statements are their SQL text; parameters are bound as literals.
#[derive(Debug, Default)]
struct Parser;

#[async_trait]
impl QueryParser for Parser {
    type Statement = String;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<String>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        Ok(Some(sql.to_owned()))
    }

    fn get_parameter_types(&self, stmt: &String) -> PgWireResult<Vec<Type>> {
        Ok(vec![Type::TEXT; placeholders(stmt)])
    }

    fn get_result_schema(
        &self,
        _stmt: &String,
        _column_format: Option<&PgFormat>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        // Described by running the query with LIMIT 0 (Session::describe), which needs the tenant.
        Ok(Vec::new())
    }
}

/// How many `$n` parameters a statement has (the highest `n` outside quotes).
fn placeholders(sql: &str) -> usize {
    let mut max = 0;
    scan_placeholders(sql, |n, _| max = max.max(n));
    max
}

/// Calls `found(n, byte range)` for each `$n` outside quotes.
fn scan_placeholders(sql: &str, mut found: impl FnMut(usize, std::ops::Range<usize>)) {
    let bytes = sql.as_bytes();
    let (mut i, mut quote) = (0, None::<u8>);
    while i < bytes.len() {
        let b = bytes[i];
        match (quote, b) {
            (None, b'\'' | b'"') => quote = Some(b),
            (Some(q), b) if b == q => quote = None,
            (None, b'$') => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                if digits > 0 {
                    if let Ok(n) = sql[i + 1..i + 1 + digits].parse::<usize>() {
                        found(n, i..i + 1 + digits);
                    }
                    i += digits;
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// `sql` with its `$n` replaced by the bound values as SQL literals: NULL, a number or boolean as it is
/// when its declared type is one and it reads as one, anything else a quoted string (`'` doubled). The
/// result goes through the same checks as any SQL.
fn bind(sql: &str, values: &[Option<String>], types: &[Option<Type>]) -> PgWireResult<String> {
    let mut out = String::with_capacity(sql.len() + 16 * values.len());
    let mut last = 0;
    let mut missing = None;
    scan_placeholders(sql, |n, range| {
        out.push_str(&sql[last..range.start]);
        last = range.end;
        let Some(value) = n.checked_sub(1).and_then(|i| values.get(i)) else {
            missing = Some(n);
            return;
        };
        let ty = types.get(n - 1).cloned().flatten();
        let literal = match value {
            None => "NULL".to_owned(),
            Some(v) => {
                let numeric = matches!(
                    ty,
                    Some(ref t) if [Type::INT2, Type::INT4, Type::INT8, Type::FLOAT4, Type::FLOAT8, Type::NUMERIC, Type::OID].contains(t)
                );
                let boolean = ty == Some(Type::BOOL);
                if numeric && v.trim().parse::<f64>().is_ok_and(f64::is_finite) {
                    v.trim().to_owned()
                } else if boolean && matches!(v.as_str(), "t" | "f" | "true" | "false") {
                    if v.starts_with('t') { "TRUE" } else { "FALSE" }.to_owned()
                } else {
                    format!("'{}'", v.replace('\'', "''"))
                }
            }
        };
        out.push_str(&literal);
    });
    if let Some(n) = missing {
        return Err(error(
            "08P01",
            format!(
                "the statement uses ${n} but {} parameters were bound",
                values.len()
            ),
        ));
    }
    out.push_str(&sql[last..]);
    Ok(out)
}

/// A portal's SQL with its parameters bound; text parameters and results only.
fn bound_sql(portal: &Portal<String>) -> PgWireResult<String> {
    let values: PgWireResult<Vec<Option<String>>> = portal
        .parameters
        .iter()
        .enumerate()
        .map(|(i, p)| match p {
            None => Ok(None),
            Some(bytes) if portal.parameter_format.is_binary(i) => {
                let ty = portal.statement.parameter_types.get(i).cloned().flatten();
                binary_param(ty.as_ref(), bytes).map(Some).ok_or_else(|| {
                    error(
                        "0A000",
                        format!(
                            "parameter ${} is sent in binary as {}, which is not supported; send it as text",
                            i + 1,
                            ty.map_or("an unknown type".to_owned(), |t| t.name().to_owned())
                        ),
                    )
                })
            }
            Some(bytes) => String::from_utf8(bytes.to_vec())
                .map(Some)
                .map_err(|_| error("22021", "a parameter is not UTF-8")),
        })
        .collect();
    bind(
        &portal.statement.statement,
        &values?,
        &portal.statement.parameter_types,
    )
}

/// A parameter sent in Postgres's binary format, as text: integers, floats, booleans and text (what
/// psycopg sends in binary); `None` for anything else.
fn binary_param(ty: Option<&Type>, bytes: &[u8]) -> Option<String> {
    let ty = ty?;
    Some(if *ty == Type::INT2 {
        i16::from_be_bytes(bytes.try_into().ok()?).to_string()
    } else if *ty == Type::INT4 {
        i32::from_be_bytes(bytes.try_into().ok()?).to_string()
    } else if *ty == Type::INT8 {
        i64::from_be_bytes(bytes.try_into().ok()?).to_string()
    } else if *ty == Type::FLOAT4 {
        f32::from_be_bytes(bytes.try_into().ok()?).to_string()
    } else if *ty == Type::FLOAT8 {
        f64::from_be_bytes(bytes.try_into().ok()?).to_string()
    } else if *ty == Type::BOOL {
        match bytes {
            [0] => "f".to_owned(),
            [_] => "t".to_owned(),
            _ => return None,
        }
    } else if [
        Type::TEXT,
        Type::VARCHAR,
        Type::BPCHAR,
        Type::NAME,
        Type::UNKNOWN,
    ]
    .contains(ty)
    {
        String::from_utf8(bytes.to_vec()).ok()?
    } else {
        return None;
    })
}

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = String;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::new(Parser)
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        target: &StoredStatement<String>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = String>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let tenant = self.tenant_of(client)?;
        let n = placeholders(&target.statement);
        let parameters: Vec<Type> = (0..n)
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or(Type::TEXT)
            })
            .collect();
        // Without values yet: NULLs give the columns.
        let sql = bind(&target.statement, &vec![None; n], &[])?;
        let fields = self.describe(&tenant, &sql).await?;
        Ok(DescribeStatementResponse::new(parameters, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<String>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = String>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let tenant = self.tenant_of(client)?;
        let fields = self.describe(&tenant, &bound_sql(portal)?).await?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<String>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = String>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if (0..64).any(|i| portal.result_column_format.is_binary(i)) {
            return Err(error(
                "0A000",
                "binary results are not supported; ask for text results",
            ));
        }
        let tenant = self.tenant_of(client)?;
        let sql = bound_sql(portal)?;
        let answer = self.statement(&tenant, &sql).await;
        metrics::counter!("tacet_postgres_queries_total", "tenant" => tenant.id.as_str().to_owned(),
            "outcome" => if answer.is_ok() { "ok" } else { "error" })
        .increment(1);
        answer
    }
}

/// A value as Postgres's text format has it for `ty`; `None` is NULL.
fn text(v: &Value, ty: &Type) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(if *b { "t" } else { "f" }.to_owned()),
        Value::String(s) if *ty == Type::TIMESTAMPTZ => Some(timestamptz(s)),
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// `2026-11-29T10:04:05.123` (the API's UTC form) → `2026-11-29 10:04:05.123+00`.
fn timestamptz(s: &str) -> String {
    let t = s.trim_end_matches('Z').replacen('T', " ", 1);
    if t.len() > 19 && (t[19..].contains('+') || t[19..].contains('-')) {
        t
    } else {
        format!("{t}+00")
    }
}

fn pg_type(t: &arrow::datatypes::DataType) -> Type {
    use arrow::datatypes::DataType as D;
    match t {
        D::Boolean => Type::BOOL,
        D::Int8 | D::Int16 | D::UInt8 => Type::INT2,
        D::Int32 | D::UInt16 => Type::INT4,
        D::Int64 | D::UInt32 | D::UInt64 => Type::INT8,
        D::Float16 | D::Float32 => Type::FLOAT4,
        D::Float64 => Type::FLOAT8,
        D::Decimal128(..) | D::Decimal256(..) => Type::NUMERIC,
        D::Utf8 | D::LargeUtf8 | D::Utf8View => Type::TEXT,
        D::Date32 | D::Date64 => Type::DATE,
        D::Timestamp(_, _) => Type::TIMESTAMPTZ,
        D::List(_) | D::LargeList(_) | D::Map(..) | D::Struct(_) => Type::JSON,
        _ => Type::TEXT,
    }
}

/// `SHOW x`: the settings clients ask for, else an empty text.
fn show(sql: &str) -> Response {
    let name = sql
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .trim_end_matches(';')
        .to_ascii_lowercase();
    let value = match name.as_str() {
        "server_version" => "16.6",
        "server_encoding" | "client_encoding" => "UTF8",
        "timezone" => "UTC",
        "datestyle" => "ISO, MDY",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "search_path" => "public",
        _ => "",
    };
    let fields = Arc::new(vec![FieldInfo::new(
        name.clone(),
        None,
        None,
        Type::TEXT,
        FieldFormat::Text,
    )]);
    let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
    let row = encoder
        .encode_field(&Some(value.to_owned()))
        .map(|()| encoder.take_row());
    Response::Query(QueryResponse::new(fields, stream::iter(vec![row])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_outside_quotes() {
        assert_eq!(
            statements("SET a = 1; SELECT ';' AS x ;; SELECT \"a;b\" FROM t"),
            ["SET a = 1", "SELECT ';' AS x", "SELECT \"a;b\" FROM t"]
        );
        assert!(statements("  ; ").is_empty());
    }

    #[test]
    fn parameters_bind_as_literals_outside_quotes() {
        let sql =
            "SELECT '$1', \"$2\" FROM events WHERE name = $1 AND n > $2 AND flag = $3 LIMIT $10";
        assert_eq!(placeholders(sql), 10);
        let values: Vec<Option<String>> = [Some("it's"), Some("5"), Some("t")]
            .into_iter()
            .map(|v| v.map(str::to_owned))
            .chain((3..10).map(|i| Some(i.to_string())))
            .collect();
        let types = [None, Some(Type::INT8), Some(Type::BOOL)];
        assert_eq!(
            bind(sql, &values, &types).unwrap(),
            "SELECT '$1', \"$2\" FROM events WHERE name = 'it''s' AND n > 5 AND flag = TRUE LIMIT '9'"
        );
        // A number that is none stays a string; a missing value is named.
        assert_eq!(
            bind("SELECT $1", &[Some("1; DROP".into())], &[Some(Type::INT4)]).unwrap(),
            "SELECT '1; DROP'"
        );
        assert_eq!(bind("SELECT $1", &[None], &[]).unwrap(), "SELECT NULL");
        assert!(bind("SELECT $2", &[None], &[]).is_err());
        assert_eq!(
            binary_param(Some(&Type::INT8), &42i64.to_be_bytes()).as_deref(),
            Some("42")
        );
        assert_eq!(binary_param(Some(&Type::NUMERIC), &[0, 1]), None);
    }

    #[test]
    fn timestamps_are_postgres_text() {
        assert_eq!(
            timestamptz("2026-11-29T10:04:05.123"),
            "2026-11-29 10:04:05.123+00"
        );
        assert_eq!(
            timestamptz("2026-11-29T10:04:05.123+01:00"),
            "2026-11-29 10:04:05.123+01:00"
        );
        assert_eq!(text(&Value::Bool(true), &Type::BOOL).as_deref(), Some("t"));
        assert_eq!(
            text(&serde_json::json!({"plan": "pro"}), &Type::JSON).as_deref(),
            Some(r#"{"plan":"pro"}"#)
        );
    }
}
