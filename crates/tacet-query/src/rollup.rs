//! Daily rollups: per tenant and day, counts of events and distinct visitors by kind, overall and by each
//! report dimension. They hold no pseudonyms, so they may outlive the raw events (their own retention), and
//! the `daily` report answers from them for days whose raw partitions are gone, as do the breakdowns whose
//! header names their rollup (`-- rollups: pageview page`: `pages`, `browsers`, `operating_systems`,
//! `devices`, `events`), through [`QueryEngine::add_expired_days`].
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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use datafusion::common::{ParamValues, ScalarValue};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tacet_model::TenantId;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::Int64Type;
use futures::StreamExt;

use crate::engine::{QueryOutput, Run};
use crate::report::ReportParams;
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
                    zone: None,
                    batch_rows: crate::engine::DEFAULT_BATCH_ROWS,
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

/// The `date=` values directly under `prefix` in the object store.
async fn days_under(
    store: &Arc<dyn object_store::ObjectStore>,
    prefix: String,
) -> Result<BTreeSet<String>> {
    let listed = store
        .list_with_delimiter(Some(&Path::from(prefix.as_str())))
        .await
        .map_err(|e| Error::Internal(format!("listing {prefix}: {e}")))?;
    Ok(listed
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename()?.strip_prefix("date=").map(str::to_owned))
        .collect())
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("adding rollups to a breakdown: {e}"))
}

impl QueryEngine {
    /// The range's days that have a rollup but no raw events of `kind` left (retention dropped them).
    async fn expired_days(
        &self,
        tenant: &TenantId,
        kind: &str,
        params: &ReportParams,
    ) -> Result<BTreeSet<String>> {
        let (from, to) = (params.from.to_string(), params.to.to_string());
        let rolled = days_under(self.store(), rollup_prefix(tenant)).await?;
        let in_range: BTreeSet<String> = rolled
            .into_iter()
            .filter(|d| *d >= from && *d <= to)
            .collect();
        if in_range.is_empty() {
            return Ok(in_range);
        }
        // Days with raw files: a listing from the range's first day (directories may outlive their files).
        let prefix = Path::from(format!("events/tenant={tenant}/kind={kind}"));
        let offset = Path::from(format!("events/tenant={tenant}/kind={kind}/date={from}"));
        let mut files = self.store().list_with_offset(Some(&prefix), &offset);
        let mut raw = BTreeSet::new();
        while let Some(meta) = files.next().await {
            let meta = meta.map_err(|e| Error::Internal(format!("listing {prefix}: {e}")))?;
            let Some(day) = meta
                .location
                .parts()
                .find_map(|p| p.as_ref().strip_prefix("date=").map(str::to_owned))
            else {
                continue;
            };
            // Not every store lists in order (a local directory does not): no early stop.
            if day <= to {
                raw.insert(day);
            }
        }
        Ok(in_range.difference(&raw).cloned().collect())
    }

    /// A breakdown (value, distinct visitors, count) with the rollups of the range's expired days added:
    /// rollups count each day's distinct visitors and visitor ids rotate daily, so the sum is exact (a range
    /// counts visitor-days either way). Without filters only (rollups cannot filter), and only when a day
    /// expired: otherwise the answer is returned as it is, at the cost of two listings.
    pub(crate) async fn add_expired_days(
        &self,
        tenant: &TenantId,
        kind: &str,
        dimension: &str,
        params: &ReportParams,
        out: QueryOutput,
    ) -> Result<QueryOutput> {
        if !params.filters.is_empty() {
            return Ok(out);
        }
        let expired = self.expired_days(tenant, kind, params).await?;
        if expired.is_empty() {
            return Ok(out);
        }
        let text = |v: &str| ScalarValue::Utf8(Some(v.to_owned()));
        let bound = ParamValues::from(vec![
            ("kind", text(kind)),
            ("dimension", text(dimension)),
            ("from", text(&params.from.to_string())),
            ("to", text(&params.to.to_string())),
        ]);
        let rolled = self
            .run_with_limit(
                tenant,
                "SELECT date, value, visitors, events FROM rollups \
                 WHERE kind = $kind AND dimension = $dimension AND date >= $from AND date <= $to",
                Some(bound),
                Run {
                    max_rows: usize::MAX,
                    unrestricted: false,
                    tables: Vec::new(),
                    local: true,
                    zone: None,
                    batch_rows: crate::engine::DEFAULT_BATCH_ROWS,
                },
            )
            .await?;
        // value → (visitors, count)
        let mut merged: BTreeMap<Option<String>, (i64, i64)> = BTreeMap::new();
        let strings = |a: &Arc<dyn Array>| -> Result<StringArray> {
            Ok(arrow::compute::cast(a, &DataType::Utf8)
                .map_err(internal)?
                .as_string::<i32>()
                .clone())
        };
        let ints = |a: &Arc<dyn Array>| -> Result<Int64Array> {
            Ok(arrow::compute::cast(a, &DataType::Int64)
                .map_err(internal)?
                .as_primitive::<Int64Type>()
                .clone())
        };
        for b in &out.batches {
            if b.num_columns() < 3 {
                return Err(internal(
                    "the report's columns are not (value, visitors, count)",
                ));
            }
            let (value, visitors, count) = (
                strings(b.column(0))?,
                ints(b.column(1))?,
                ints(b.column(2))?,
            );
            for i in 0..b.num_rows() {
                let e = merged
                    .entry(value.is_valid(i).then(|| value.value(i).to_owned()))
                    .or_default();
                e.0 += visitors.value(i);
                e.1 += count.value(i);
            }
        }
        for b in &rolled.batches {
            let (date, value) = (strings(b.column(0))?, strings(b.column(1))?);
            let (visitors, count) = (ints(b.column(2))?, ints(b.column(3))?);
            for i in 0..b.num_rows() {
                if !expired.contains(date.value(i)) {
                    continue;
                }
                let e = merged
                    .entry(value.is_valid(i).then(|| value.value(i).to_owned()))
                    .or_default();
                e.0 += visitors.value(i);
                e.1 += count.value(i);
            }
        }
        // The reports' order: visitors, then the count, descending; then the value (nulls last).
        let mut rows: Vec<(Option<String>, (i64, i64))> = merged.into_iter().collect();
        rows.sort_by(|(a, (av, ac)), (b, (bv, bc))| {
            bv.cmp(av).then(bc.cmp(ac)).then_with(|| match (a, b) {
                (Some(a), Some(b)) => a.cmp(b),
                (a, b) => a.is_none().cmp(&b.is_none()),
            })
        });
        let schema = out.schema.clone();
        let columns: Vec<Arc<dyn Array>> = vec![
            Arc::new(StringArray::from_iter(
                rows.iter().map(|(v, _)| v.as_deref()),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|(_, (v, _))| *v),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|(_, (_, c))| *c),
            )),
        ];
        let columns = columns
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(internal)?;
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(internal)?;
        Ok(QueryOutput {
            schema,
            batches: vec![batch],
            truncated: out.truncated,
            suppressed: out.suppressed,
        })
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
