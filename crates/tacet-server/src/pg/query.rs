//! Statements: the simple query protocol, where each statement goes, and how an answer becomes Postgres
//! rows.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use futures::stream;
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use tacet_query::QueryOutput;

use super::{Session, error, fatal, reports, rows};

#[async_trait]
impl SimpleQueryHandler for Session {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
    {
        let _busy = self.active();
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
    pub(super) fn tenant_of<C: ClientInfo>(
        &self,
        client: &C,
    ) -> PgWireResult<crate::tenants::TenantEntry> {
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
    pub(super) async fn describe(
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
            .run(tenant, &format!("SELECT * FROM ({sql}) AS q LIMIT 0"))
            .await?;
        Ok(fields_of(&out.schema))
    }

    /// Runs one statement where it belongs: with report calls, their rows first (k applied) and the
    /// statement over them; a `reports`-scoped session, nothing else; anything else as `/v1/sql` runs it,
    /// with this connection's catalogue.
    async fn run(
        &self,
        tenant: &crate::tenants::TenantEntry,
        sql: &str,
    ) -> PgWireResult<QueryOutput> {
        let reports_only = self.reports_only.load(Ordering::SeqCst);
        let Some(call) = reports::rewrite(sql)? else {
            if reports_only {
                return Err(error(
                    "42501",
                    "this key reaches the canned reports only: SELECT * FROM report_<name>('<from>', '<to>'), \
                     e.g. report_pages('2026-11-01', '2026-11-30'); SQL over events needs a read key with scope sql",
                ));
            }
            return self
                .state
                .query
                .sql_postgres(&tenant.id, sql, &self.catalog)
                .await
                .map_err(query_error);
        };
        if reports_only && !call.others.is_empty() {
            return Err(error(
                "42501",
                format!(
                    "this key reaches the canned reports only, not {}; SQL over events needs a read key with scope sql",
                    call.others.join(", ")
                ),
            ));
        }
        let mut tables = Vec::with_capacity(call.calls.len());
        for c in &call.calls {
            let out = crate::routes::run_report(&self.state, tenant, &c.report, c.params.clone())
                .await
                .map_err(|e| report_error(&c.report, e))?;
            let batch = arrow::compute::concat_batches(&out.schema, &out.batches)
                .map_err(|e| error("XX000", e.to_string()))?;
            tables.push((c.table, batch));
        }
        self.state
            .query
            .sql_with_tables(&tenant.id, &call.sql, tables)
            .await
            .map_err(query_error)
    }

    pub(super) async fn statement(
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
        let out = self.run(tenant, sql).await?;
        let fields = Arc::new(fields_of(&out.schema));
        // Each value as Postgres text, straight from the columns (rows.rs).
        let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
        let mut data = Vec::with_capacity(out.num_rows());
        rows::text_rows(&out.schema, &out.batches, |values| {
            for value in values {
                encoder.encode_field(&value)?;
            }
            data.push(Ok(encoder.take_row()));
            Ok(())
        })?;
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

/// A report's refusal as the Postgres error a client shows.
fn report_error(report: &str, e: crate::error::ApiError) -> PgWireError {
    use axum::http::StatusCode;
    let code = match e.status {
        StatusCode::NOT_FOUND => "42883",
        StatusCode::BAD_REQUEST => "22023",
        StatusCode::FORBIDDEN => "42501",
        StatusCode::UNPROCESSABLE_ENTITY => "54000",
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => "53300",
        _ => "XX000",
    };
    let message = if e.status == StatusCode::NOT_FOUND {
        format!("report_{report}: {}", e.message)
    } else {
        e.message
    };
    error(code, message)
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
                rows::pg_type(f.data_type()),
                FieldFormat::Text,
            )
        })
        .collect()
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
}
