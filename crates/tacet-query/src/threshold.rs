//! The k-threshold: no usage number that describes fewer than k distinct visitors leaves a canned report,
//! whatever its filters.
//!
//! Every report says how the rule applies to it in its `-- k:` header, and the engine refuses to run a
//! report without one ([`KRule::of`]), so a new report cannot forget it:
//!
//! ```text
//! -- k: visitors                     a breakdown: rows with visitors < k are left out (counted in `suppressed`)
//! -- k: visitors withhold            one row or a series: a row with visitors < k keeps its key (day, bucket,
//!                                    minute) but every number becomes null and `suppressed` gives the reason;
//!                                    the `suppressed` column is always there, so the shape never changes
//! -- k: visitors crashes             crash triage: the tenant's `k_threshold_crashes` (default 1) instead
//! ```
//!
//! The column named first is the count of distinct visitors (or users) the row describes; a null count (no
//! visitor at all, only anonymised events) is below any k above 1. With k = 1 nothing is left out.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::engine::QueryOutput;
use crate::report::{Report, ReportScope};
use crate::{Error, Result};

/// The column a withheld row's reason goes in.
pub const SUPPRESSED_COLUMN: &str = "suppressed";

/// How the k-threshold applies to one report (its `-- k:` header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KRule {
    /// The count of distinct visitors (or users) a row describes.
    pub column: String,
    /// Keep the row with its numbers nulled (single-row answers and series) rather than leave it out.
    pub withhold: bool,
    /// Crash triage: the tenant's `k_threshold_crashes` applies instead of `k_threshold`.
    pub crashes: bool,
}

impl KRule {
    /// The rule of `report`; an error when the report has no `-- k:` header or a malformed one.
    pub fn of(report: &Report) -> Result<KRule> {
        let header = report.header("k").ok_or_else(|| {
            Error::Internal(format!(
                "report {} has no `-- k:` header: every report must say how the k-threshold applies",
                report.name
            ))
        })?;
        let mut words = header.split_whitespace();
        let column = words
            .next()
            .ok_or_else(|| {
                Error::Internal(format!("report {}: empty `-- k:` header", report.name))
            })?
            .to_owned();
        let mut rule = KRule {
            column,
            withhold: false,
            crashes: false,
        };
        for w in words {
            match w {
                "withhold" => rule.withhold = true,
                "crashes" => rule.crashes = true,
                other => {
                    return Err(Error::Internal(format!(
                        "report {}: unknown word {other:?} in `-- k:` (expected withhold or crashes)",
                        report.name
                    )));
                }
            }
        }
        Ok(rule)
    }

    /// The threshold in force for this report and tenant.
    pub fn k(&self, scope: &ReportScope) -> u64 {
        if self.crashes {
            scope.k_crashes
        } else {
            scope.k_threshold
        }
    }

    /// Applies the rule to a report's answer: rows left out or withheld, counted in `out.suppressed`.
    pub(crate) fn apply(&self, out: &mut QueryOutput, k: u64) -> Result<()> {
        let schema = if self.withhold {
            withheld_schema(&out.schema)
        } else {
            Arc::clone(&out.schema)
        };
        let mut kept = Vec::with_capacity(out.batches.len());
        for batch in &out.batches {
            let below = below(batch, &self.column, k)?;
            out.suppressed += below.true_count();
            kept.push(if self.withhold {
                withhold(batch, &schema, &below, &self.column, k)?
            } else if below.true_count() == 0 {
                batch.clone()
            } else {
                let keep = arrow::compute::not(&below).map_err(internal)?;
                arrow::compute::filter_record_batch(batch, &keep).map_err(internal)?
            });
        }
        out.schema = schema;
        out.batches = kept;
        Ok(())
    }
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// Which rows of `batch` have a `column` count below `k` (null counts are below any k above 1).
fn below(batch: &RecordBatch, column: &str, k: u64) -> Result<BooleanArray> {
    let values = batch.column_by_name(column).ok_or_else(|| {
        Error::Internal(format!("the report has no k-threshold column {column:?}"))
    })?;
    if k <= 1 {
        return Ok(BooleanArray::from(vec![false; batch.num_rows()]));
    }
    let values = arrow::compute::cast(values, &DataType::UInt64).map_err(internal)?;
    let values = values
        .as_any()
        .downcast_ref::<arrow::array::UInt64Array>()
        .expect("cast to UInt64");
    Ok((0..values.len())
        .map(|i| Some(!(values.is_valid(i) && values.value(i) >= k)))
        .collect())
}

/// Numbers are what a withheld row loses; keys (days, buckets, names) stay.
fn is_number(t: &DataType) -> bool {
    t.is_integer() || t.is_floating() || matches!(t, DataType::Decimal128(..))
}

/// The answer's schema with numbers nullable and the `suppressed` column last.
fn withheld_schema(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != SUPPRESSED_COLUMN)
        .map(|f| {
            if is_number(f.data_type()) {
                f.as_ref().clone().with_nullable(true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    fields.push(Field::new(SUPPRESSED_COLUMN, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

fn withhold(
    batch: &RecordBatch,
    schema: &SchemaRef,
    below: &BooleanArray,
    column: &str,
    k: u64,
) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.name() == SUPPRESSED_COLUMN {
            continue;
        }
        columns.push(if is_number(field.data_type()) && below.true_count() > 0 {
            arrow::compute::nullif(array, below).map_err(internal)?
        } else {
            Arc::clone(array)
        });
    }
    let reason = format!("fewer than {k} {column}");
    let suppressed: StringArray = below
        .iter()
        .map(|b| b.unwrap_or(false).then_some(reason.as_str()))
        .collect();
    columns.push(Arc::new(suppressed));
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::REPORTS;
    use arrow::array::{Int64Array, StringArray};

    #[test]
    fn every_report_says_how_k_applies() {
        for r in REPORTS {
            let rule = KRule::of(r).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                r.header("columns").unwrap().contains(&rule.column),
                "{}: the k column {:?} is not among its columns",
                r.name,
                rule.column
            );
        }
        let rule = |n| KRule::of(Report::find(n).unwrap()).unwrap();
        assert!(rule("overview").withhold && !rule("overview").crashes);
        assert!(rule("crash_trend").withhold && rule("crash_trend").crashes);
        assert!(!rule("pages").withhold && !rule("pages").crashes);
        assert!(
            !rule("release_health").crashes,
            "release health counts visits: usage"
        );
        let bad = Report {
            name: "bad",
            sql: "-- name: bad\nSELECT 1",
        };
        assert!(
            KRule::of(&bad)
                .unwrap_err()
                .to_string()
                .contains("no `-- k:`")
        );
    }

    fn output(days: &[&str], visitors: &[Option<i64>]) -> QueryOutput {
        let schema = Arc::new(Schema::new(vec![
            Field::new("day", DataType::Utf8, false),
            Field::new("visitors", DataType::Int64, true),
            Field::new("pageviews", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(days.to_vec())),
                Arc::new(Int64Array::from(visitors.to_vec())),
                Arc::new(Int64Array::from(vec![7; days.len()])),
            ],
        )
        .unwrap();
        QueryOutput {
            schema,
            batches: vec![batch],
            truncated: false,
            suppressed: 0,
            source: None,
        }
    }

    #[test]
    fn rows_below_k_are_left_out_or_withheld() {
        let rows = KRule {
            column: "visitors".into(),
            withhold: false,
            crashes: false,
        };
        let mut out = output(&["a", "b", "c"], &[Some(5), Some(4), None]);
        rows.apply(&mut out, 5).unwrap();
        assert_eq!((out.num_rows(), out.suppressed), (1, 2));

        let withhold = KRule {
            withhold: true,
            ..rows
        };
        let mut out = output(&["a", "b", "c"], &[Some(5), Some(4), None]);
        withhold.apply(&mut out, 5).unwrap();
        assert_eq!((out.num_rows(), out.suppressed), (3, 2));
        let json = String::from_utf8(crate::format::to_json(&out.batches).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"[{"day":"a","visitors":5,"pageviews":7,"suppressed":null},{"day":"b","visitors":null,"pageviews":null,"suppressed":"fewer than 5 visitors"},{"day":"c","visitors":null,"pageviews":null,"suppressed":"fewer than 5 visitors"}]"#
        );
        assert_eq!(out.schema.field(3).name(), SUPPRESSED_COLUMN);
        // k = 1: nothing withheld, and the answer has the same shape.
        let mut out = output(&["a"], &[Some(1)]);
        withhold.apply(&mut out, 1).unwrap();
        assert_eq!(out.suppressed, 0);
        assert_eq!(out.batches[0].num_columns(), 4);
    }
}
