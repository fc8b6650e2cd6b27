//! What Postgres clients read about the database before they read data: `pg_catalog`, `information_schema`,
//! `version()`, `current_schema()` and the rest, for the Postgres wire door (`tacet_server::pg`).
//!
//! Built on `datafusion-pg-catalog` (the catalogue of `datafusion-postgres`): its static tables are those of
//! a real Postgres (types, operators, functions), and `pg_class` / `pg_attribute` / `pg_namespace` are made
//! from [`TenantTables`]: the tables the tenant's session has (`events`, `rollups`, `visits`), with their columns.
//! The catalogue describes columns, never rows, and it knows no other tenant: there is nothing of another
//! tenant to name.
//!
//! A [`PgCatalog`] lives as long as one connection, so the object ids it hands out (psql asks for a
//! table's oid, then for the columns of that oid in the next query) stay the same between queries.
//!
//! Only statements that look at the catalogue ([`PgCatalog::needed`]) are rewritten for DataFusion (psql's
//! `OPERATOR(pg_catalog.~)`, `COLLATE pg_catalog.default`, `'x'::regclass`, ...) and run on a session that
//! has it; everything else runs exactly as `POST /v1/sql` runs it.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, Volatility};
use datafusion::prelude::{SessionContext, create_udf};
use datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{
    self as pg, PgCatalogSchemaProvider, PgCatalogStaticTables,
};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::{Error, Result};

/// The database name clients connect to and `current_database()` answers.
pub const DATABASE: &str = "tacet";

/// What `version()` answers: clients parse the `PostgreSQL <major>.<minor>` at its start.
pub const VERSION: &str = concat!(
    "PostgreSQL 16.6 (Tacet ",
    env!("CARGO_PKG_VERSION"),
    ", Apache DataFusion 55), 64-bit"
);

/// The tables a tenant's catalogue describes: `tacet.public.<table>` for each table of its session, with
/// their columns, in name order (so object ids come out the same every time).
#[derive(Debug, Clone)]
pub struct TenantTables {
    tables: Vec<(String, SchemaRef)>,
}

impl TenantTables {
    fn schema_of(&self, catalog: &str, schema: &str, table: &str) -> Option<SchemaRef> {
        if catalog != DATABASE || schema != "public" {
            return None;
        }
        self.tables
            .iter()
            .find(|(name, _)| name == table)
            .map(|(_, s)| Arc::clone(s))
    }
}

#[async_trait]
impl CatalogInfo for TenantTables {
    async fn catalog_names(&self) -> Result<Vec<String>, DataFusionError> {
        Ok(vec![DATABASE.to_owned()])
    }

    async fn schema_names(&self, catalog: &str) -> Result<Option<Vec<String>>, DataFusionError> {
        Ok((catalog == DATABASE).then(|| vec!["public".to_owned()]))
    }

    async fn table_names(
        &self,
        catalog: &str,
        schema: &str,
    ) -> Result<Option<Vec<String>>, DataFusionError> {
        Ok((catalog == DATABASE && schema == "public")
            .then(|| self.tables.iter().map(|(n, _)| n.clone()).collect()))
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<SchemaRef>, DataFusionError> {
        Ok(self.schema_of(catalog, schema, table))
    }

    async fn table_type(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<TableType>, DataFusionError> {
        Ok(self
            .schema_of(catalog, schema, table)
            .map(|_| TableType::Base))
    }
}

type Provider = PgCatalogSchemaProvider<TenantTables, EmptyContextProvider>;

/// One connection's catalogue.
#[derive(Default)]
pub struct PgCatalog {
    provider: OnceLock<Arc<Provider>>,
}

impl std::fmt::Debug for PgCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCatalog").finish_non_exhaustive()
    }
}

/// The static tables of a real Postgres, read once per process (about 1 MB of Arrow IPC).
fn static_tables() -> Result<Arc<PgCatalogStaticTables>> {
    static TABLES: OnceLock<Arc<PgCatalogStaticTables>> = OnceLock::new();
    if let Some(t) = TABLES.get() {
        return Ok(Arc::clone(t));
    }
    let made = PgCatalogStaticTables::try_new()
        .map_err(|e| Error::Internal(format!("the pg_catalog tables do not load: {e}")))?;
    Ok(Arc::clone(TABLES.get_or_init(|| Arc::new(made))))
}

/// Words that tell a statement reads the catalogue (lower case): a catalogue table or schema, a function
/// only the catalogue has, or an oid-alias cast.
const CATALOGUE_WORDS: &[&str] = &[
    "pg_",
    "information_schema",
    "current_schema",
    "current_database",
    "current_catalog",
    "current_user",
    "session_user",
    "version",
    "has_table_privilege",
    "has_schema_privilege",
    "has_database_privilege",
    "has_any_column_privilege",
    "format_type",
    "obj_description",
    "col_description",
    "quote_ident",
    "parse_ident",
    "array_upper",
    "array_lower",
    "::reg",
];

impl PgCatalog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `sql` reads the catalogue (then it runs on a session that has it; otherwise as `/v1/sql`).
    pub fn needed(sql: &str) -> bool {
        let lower = sql.to_ascii_lowercase();
        CATALOGUE_WORDS.iter().any(|w| lower.contains(w))
    }

    /// `sql` rewritten into what DataFusion plans (one statement).
    pub(crate) fn rewrite(sql: &str) -> Result<String> {
        static PARSER: OnceLock<PostgresCompatibilityParser> = OnceLock::new();
        let parser = PARSER.get_or_init(PostgresCompatibilityParser::new);
        let mut statements = parser
            .parse(sql)
            .map_err(|e| Error::User(format!("SQL error: {e}")))?;
        if statements.len() != 1 {
            return Err(Error::User(format!(
                "send one statement at a time ({} here)",
                statements.len()
            )));
        }
        Ok(statements.remove(0).to_string())
    }

    /// Puts the catalogue into `ctx`, which already has the tenant's `events`.
    pub(crate) async fn install(&self, ctx: &SessionContext) -> Result<()> {
        let statics = static_tables()?;
        let provider = match self.provider.get() {
            Some(p) => Arc::clone(p),
            None => {
                let public = ctx
                    .catalog(DATABASE)
                    .and_then(|c| c.schema("public"))
                    .ok_or_else(|| Error::Internal("the session has no public schema".into()))?;
                let mut names = public.table_names();
                // `visits` is put into a session whose query names it (crate::visits): describe it always.
                if !names.iter().any(|n| n == "visits") {
                    names.push("visits".to_owned());
                }
                names.sort();
                let mut tables = Vec::with_capacity(names.len());
                for name in names {
                    if let Some(t) = public.table(&name).await.map_err(Error::from_datafusion)? {
                        tables.push((name, t.schema()));
                    } else if name == "visits" {
                        tables.push((name, crate::visits::visits_schema()));
                    }
                }
                let made = Provider::try_new(
                    TenantTables { tables },
                    Arc::clone(&statics),
                    EmptyContextProvider,
                )
                .map_err(Error::from_datafusion)?;
                Arc::clone(self.provider.get_or_init(|| Arc::new(made)))
            }
        };
        let catalog = ctx.catalog(DATABASE).ok_or_else(|| {
            Error::Internal(format!("the session has no catalog named {DATABASE}"))
        })?;
        catalog
            .register_schema("pg_catalog", provider)
            .map_err(Error::from_datafusion)?;
        // What `setup_pg_catalog` registers, with the static tables read once.
        ctx.register_udf(pg::create_current_database_udf(DATABASE));
        ctx.register_udf(pg::create_current_schema_udf());
        ctx.register_udf(pg::create_current_schemas_udf());
        ctx.register_udf(pg::create_pg_get_userbyid_udf());
        for name in [
            "has_table_privilege",
            "has_schema_privilege",
            "has_database_privilege",
            "has_any_column_privilege",
        ] {
            ctx.register_udf(pg::has_privilege_udf::create_has_privilege_udf(name));
        }
        ctx.register_udf(pg::create_pg_table_is_visible());
        ctx.register_udf(pg::format_type::create_format_type_udf());
        ctx.register_udf(pg::create_session_user_udf());
        ctx.register_udtf("pg_get_keywords", statics.pg_get_keywords.clone());
        ctx.register_udf(pg::pg_get_expr_udf::create_pg_get_expr_udf());
        ctx.register_udf(pg::create_pg_get_partkeydef_udf());
        ctx.register_udf(pg::create_pg_relation_is_publishable_udf());
        ctx.register_udf(pg::create_pg_get_statisticsobjdef_columns_udf());
        ctx.register_udf(pg::create_pg_encoding_to_char_udf());
        ctx.register_udf(pg::create_pg_backend_pid_udf());
        ctx.register_udf(pg::create_pg_relation_size_udf());
        ctx.register_udf(pg::create_pg_total_relation_size_udf());
        ctx.register_udf(pg::create_pg_stat_get_numscans());
        ctx.register_udf(pg::create_pg_get_constraintdef());
        ctx.register_udf(pg::create_pg_get_partition_ancestors_udf());
        ctx.register_udf(pg::quote_ident_udf::create_quote_ident_udf());
        ctx.register_udf(pg::quote_ident_udf::create_parse_ident_udf());
        ctx.register_udf(pg::array_bounds_udf::create_array_upper_udf());
        ctx.register_udf(pg::array_bounds_udf::create_array_lower_udf());
        ctx.register_udf(create_udf(
            "version",
            vec![],
            arrow::datatypes::DataType::Utf8,
            Volatility::Immutable,
            Arc::new(|_| {
                Ok(ColumnarValue::Scalar(
                    datafusion::common::ScalarValue::Utf8(Some(VERSION.to_owned())),
                ))
            }),
        ));
        pg::generate_series_arg_coercion::CoerceIntArgsToBigInt::widen(ctx);
        Ok(())
    }
}

/// The planner's part of the catalogue: Postgres's oid-alias type names (`regclass`, ...) parse.
pub(crate) fn type_planner() -> Arc<dyn datafusion::logical_expr::planner::TypePlanner> {
    Arc::new(pg::oid_type_planner::PgOidTypePlanner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_statements_are_told_apart_and_rewritten() {
        assert!(PgCatalog::needed(
            "SELECT c.relname FROM pg_catalog.pg_class c"
        ));
        assert!(PgCatalog::needed("select version()"));
        assert!(!PgCatalog::needed("SELECT count(*) FROM events"));
        let sql = PgCatalog::rewrite(
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(events)$' COLLATE pg_catalog.default",
        )
        .unwrap();
        assert!(!sql.contains("OPERATOR"), "{sql}");
        assert!(!sql.contains("COLLATE"), "{sql}");
        assert!(PgCatalog::rewrite("SELECT 1; SELECT 2").is_err());
    }
}
