//! Daily rollups: per tenant and day, counts of events and distinct visitors by kind, overall and by each
//! report dimension. They hold no pseudonyms, so they may outlive the raw events (their own retention), and
//! the `daily` report answers from them for days whose raw partitions are gone.
//!
//! ```text
//! rollups/tenant=<id>/date=<YYYY-MM-DD>/rollup.parquet
//!   kind       pageview | event | crash | * (all kinds together)
//!   dimension  all | page | referrer_class | referrer_source | browser | os | device | country | event |
//!              fingerprint | utm_source | utm_campaign
//!   value      the dimension's value (null for `all`, or when the events had none)
//!   events     events of that kind with that value
//!   visitors   distinct visitor ids among them (exact for the row; rows do not add up)
//! ```

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use datafusion::common::{ParamValues, ScalarValue};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tacet_model::TenantId;

use crate::{Error, QueryEngine, Result};

/// Where rollups live in the object store.
pub const ROLLUP_ROOT: &str = "rollups";

/// The dimensions rolled up: name in the rollup, column in `events`.
pub const DIMENSIONS: &[(&str, &str)] = &[
    ("page", "url_path"),
    ("referrer_class", "referrer_class"),
    ("referrer_source", "referrer_source"),
    ("browser", "browser"),
    ("os", "os"),
    ("device", "device"),
    ("country", "country"),
    ("event", "name"),
    ("fingerprint", "fingerprint"),
    ("utm_source", "utm_source"),
    ("utm_campaign", "utm_campaign"),
];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("dimension", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
        Field::new("events", DataType::Int64, false),
        Field::new("visitors", DataType::Int64, false),
    ]))
});

/// The schema of a rollup file (the `date` partition column is in the path).
pub fn rollup_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// `rollups/tenant=<id>/`
pub fn rollup_prefix(tenant: &TenantId) -> String {
    format!("{ROLLUP_ROOT}/tenant={tenant}/")
}

fn rollup_sql() -> String {
    let counts = "CAST(COUNT(*) AS BIGINT) AS events, CAST(COUNT(DISTINCT visitor_id) AS BIGINT) AS visitors";
    let mut parts = vec![
        format!(
            "SELECT '*' AS kind, 'all' AS dimension, CAST(NULL AS VARCHAR) AS value, {counts} FROM events WHERE date = $day"
        ),
        format!(
            "SELECT kind, 'all' AS dimension, CAST(NULL AS VARCHAR) AS value, {counts} FROM events WHERE date = $day GROUP BY kind"
        ),
    ];
    for (name, column) in DIMENSIONS {
        parts.push(format!(
            "SELECT kind, '{name}' AS dimension, CAST({column} AS VARCHAR) AS value, {counts} \
             FROM events WHERE date = $day GROUP BY kind, {column}"
        ));
    }
    format!(
        "SELECT * FROM ({}) WHERE events > 0 ORDER BY kind, dimension, value",
        parts.join(" UNION ALL ")
    )
}

impl QueryEngine {
    /// Computes the rollup of one tenant's day from its raw events (and any still buffered) and writes it,
    /// replacing an earlier one; returns its row count. A day without events writes nothing.
    pub async fn rollup_day(&self, tenant: &TenantId, day: NaiveDate) -> Result<usize> {
        let params = ParamValues::from(vec![(
            "day",
            ScalarValue::Utf8(Some(day.format("%Y-%m-%d").to_string())),
        )]);
        let out = self
            .run_with_limit(
                tenant,
                &rollup_sql(),
                Some(params),
                crate::engine::Run {
                    max_rows: usize::MAX,
                    unrestricted: false,
                    tables: Vec::new(),
                    // With the ingestion buffer, which a Ballista session leaves out.
                    local: true,
                },
            )
            .await?;
        let rows = out.num_rows();
        if rows == 0 {
            return Ok(0);
        }
        let batches = out
            .batches
            .iter()
            .map(|b| {
                // DataFusion may answer strings as Utf8View; the files hold plain Utf8.
                let schema = rollup_schema();
                let columns = b
                    .columns()
                    .iter()
                    .zip(schema.fields())
                    .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::Internal(format!("rollup batch: {e}")))?;
                arrow::array::RecordBatch::try_new(schema, columns)
                    .map_err(|e| Error::Internal(format!("rollup batch: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = crate::format::to_parquet(&rollup_schema(), &batches)
            .map_err(|e| Error::Internal(format!("encoding a rollup: {e}")))?;
        let path = Path::from(format!(
            "{}date={}/rollup.parquet",
            rollup_prefix(tenant),
            day.format("%Y-%m-%d")
        ));
        self.store()
            .put(&path, bytes.into())
            .await
            .map_err(|e| Error::Internal(format!("writing {path}: {e}")))?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_covers_every_dimension() {
        let sql = rollup_sql();
        for (name, column) in DIMENSIONS {
            assert!(sql.contains(&format!("'{name}' AS dimension, CAST({column} AS VARCHAR)")));
        }
        assert!(!sql.contains("user_pseudonym") && !sql.contains("SELECT visitor_id"));
    }
}
