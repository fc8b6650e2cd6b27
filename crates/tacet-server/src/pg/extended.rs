//! The extended query protocol (psycopg, JDBC): statements are their SQL text, parameters bound as literals.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::portal::{Format as PgFormat, Portal};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{
    DescribePortalResponse, DescribeStatementResponse, FieldInfo, Response,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::{Session, error};

/// The extended protocol's statements are their SQL text; parameters are bound as literals.
#[derive(Debug, Default)]
pub(super) struct Parser;

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
        let _busy = self.active();
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
