//! `tacet_visit(visitor_id, ts)`: the visit definition as one window function.
//!
//! Over rows ordered by `(visitor_id, ts, arrival)`, a visit starts where the visitor id changes or more than 30
//! minutes passed since the visitor's previous event; the function numbers the visits of its window
//! partition 1, 2, 3, … (a running count of visit starts) and gives NULL where the visitor id is NULL.
//! The reports call it as `tacet_visit(visitor_id, ts) OVER (PARTITION BY visit_bucket ORDER BY
//! visitor_id, ts, arrival)`.
//!
//! Standard SQL says the same with `LAG` and a running `SUM` ([`crate::report::PORTABLE_VISIT_NO`], what
//! other engines run). DataFusion evaluates a running `SUM` one row at a time (an accumulator update and a
//! scalar per row, about 0.8 s of the 1.1 s `overview` took at 10M events); this function is one pass over
//! the partition's two columns.
//!
//! `tacet_prev(x)` and `tacet_next(x)` are `LAG(x)` and `LEAD(x)` (NULL at the partition's edges) for the
//! same reason: in a window that can stream, DataFusion evaluates `LAG` row by row; these two shift the
//! partition's column in one step (entry and exit pages use them; `portable_sql` writes `LAG` and `LEAD`).
//!
//! All three run in DataFusion's unbounded window operator, which holds a partition's rows in memory.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Builder};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type, TimeUnit};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    LimitEffect, PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl,
};
use datafusion::physical_expr::PhysicalExpr;

/// The name reports call it by.
pub const NAME: &str = "tacet_visit";

/// The inactivity gap that ends a visit, in milliseconds.
pub const GAP_MILLIS: i64 = 30 * 60 * 1000;

/// Tacet's window functions, to register with a session: `tacet_visit`, `tacet_prev`, `tacet_next`.
pub fn udwfs() -> Vec<Arc<WindowUDF>> {
    [
        (NAME, Kind::Visit, 2),
        ("tacet_prev", Kind::Shift(1), 1),
        ("tacet_next", Kind::Shift(-1), 1),
    ]
    .into_iter()
    .map(|(name, kind, args)| {
        Arc::new(WindowUDF::from(TacetWindow {
            name,
            kind,
            signature: Signature::any(args, Volatility::Immutable),
        }))
    })
    .collect()
}

/// What a function computes over its window partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// `tacet_visit(visitor_id, ts)`: the visit number.
    Visit,
    /// `tacet_prev(x)` (offset 1, like `LAG`) and `tacet_next(x)` (offset -1, like `LEAD`).
    Shift(i64),
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TacetWindow {
    name: &'static str,
    kind: Kind,
    signature: Signature,
}

impl WindowUDFImpl for TacetWindow {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(Evaluator(self.kind)))
    }

    fn field(&self, args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let types: Vec<&DataType> = args.input_fields().iter().map(|f| f.data_type()).collect();
        let out = match (self.kind, &types[..]) {
            (
                Kind::Visit,
                [
                    DataType::Int64,
                    DataType::Timestamp(TimeUnit::Millisecond, _),
                ],
            ) => DataType::Int64,
            (Kind::Visit, _) => {
                return plan_err!(
                    "{NAME}(visitor_id, ts) takes a BIGINT and a millisecond timestamp, not {types:?}"
                );
            }
            (Kind::Shift(_), [t]) => (*t).clone(),
            (Kind::Shift(_), _) => return plan_err!("{}(x) takes one argument", self.name),
        };
        Ok(Arc::new(Field::new(args.name(), out, true)))
    }

    fn limit_effect(&self, _args: &[Arc<dyn PhysicalExpr>]) -> LimitEffect {
        LimitEffect::Unknown
    }
}

#[derive(Debug)]
struct Evaluator(Kind);

impl PartitionEvaluator for Evaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        match (self.0, values) {
            (Kind::Visit, [visitor, ts]) => {
                let visitor = visitor.as_primitive::<Int64Type>();
                let ts =
                    ts.as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>();
                Ok(Arc::new(number(visitor, ts, num_rows)))
            }
            (Kind::Shift(offset), [x]) => Ok(datafusion::arrow::compute::kernels::window::shift(
                x.as_ref(),
                offset,
            )?),
            (kind, _) => exec_err!("{kind:?}: wrong number of arguments"),
        }
    }
}

/// Numbers the visits of rows already ordered by `(visitor_id, ts)`.
fn number(
    visitor: &datafusion::arrow::array::Int64Array,
    ts: &datafusion::arrow::array::TimestampMillisecondArray,
    num_rows: usize,
) -> datafusion::arrow::array::Int64Array {
    let mut out = Int64Builder::with_capacity(num_rows);
    let mut visit = 0i64;
    let mut previous: Option<(i64, i64)> = None;
    for i in 0..num_rows {
        if visitor.is_null(i) {
            out.append_null();
            continue;
        }
        let (v, t) = (visitor.value(i), ts.value(i));
        let starts = match previous {
            Some((pv, pt)) => pv != v || t - pt > GAP_MILLIS,
            None => true,
        };
        visit += i64::from(starts);
        previous = Some((v, t));
        out.append_value(visit);
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, TimestampMillisecondArray};

    fn visits(rows: &[(Option<i64>, i64)]) -> Vec<Option<i64>> {
        let visitor: Int64Array = rows.iter().map(|r| r.0).collect();
        let ts: TimestampMillisecondArray = rows.iter().map(|r| Some(r.1)).collect();
        number(&visitor, &ts, rows.len()).iter().collect()
    }

    #[test]
    fn a_visit_ends_with_the_visitor_or_after_thirty_minutes() {
        let m = 60_000;
        assert_eq!(
            visits(&[
                (Some(1), 0),
                (Some(1), 30 * m),     // exactly 30 minutes: the same visit
                (Some(1), 60 * m + 1), // more than 30 minutes: a new one
                (Some(2), 60 * m + 2), // another visitor, 2 ms later
                (None, 60 * m + 3),    // anonymised: no visit, and it does not break the next one
                (Some(2), 61 * m),
            ]),
            vec![Some(1), Some(1), Some(2), Some(3), None, Some(3)]
        );
        assert_eq!(visits(&[]), Vec::<Option<i64>>::new());
        assert_eq!(visits(&[(None, 0)]), vec![None]);
    }

    #[tokio::test]
    async fn runs_in_sql_like_the_standard_spelling() {
        use datafusion::prelude::SessionContext;
        let ctx = SessionContext::new();
        for f in udwfs() {
            ctx.register_udwf(f.as_ref().clone());
        }
        let rows = "(VALUES (1, 0, 1), (1, 1800000, 2), (1, 3600001, 3), (2, 10, 4), (NULL, 5, NULL), (3, 7, 6), (3, 99999999, 7))";
        let sql = |visit_no: &str| {
            format!(
                "WITH e AS (SELECT CAST(column1 AS BIGINT) AS visitor_id,
                        to_timestamp_millis(column2) AS ts, CAST(column3 AS BIGINT) AS arrival FROM {rows}),
                    scoped AS (SELECT *, visitor_id % 2 AS visit_bucket FROM e),
                    {visit_no}
                SELECT visitor_id, CAST(ts AS BIGINT) AS ms, visit_no FROM tagged ORDER BY ms"
            )
        };
        let window = crate::report::VISIT_WINDOW;
        let ours = sql(&format!(
            "tagged AS (SELECT *, {NAME}(visitor_id, ts) OVER ({window}) AS visit_no FROM scoped)"
        ));
        let standard = sql(&crate::report::PORTABLE_VISIT_NO.replace("{{visit_window}}", window));
        // And the neighbours, against LAG and LEAD.
        let neighbours = |prev: &str, next: &str| {
            sql(&format!(
                "tagged AS (SELECT *, {prev}(visitor_id) OVER ({window}) AS p,
                    {next}(visitor_id) OVER ({window}) AS n FROM scoped)"
            ))
            .replace("visit_no FROM tagged", "p, n FROM tagged")
        };
        let run = |sql: String| {
            let ctx = ctx.clone();
            async move {
                let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
                datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                    .unwrap()
                    .to_string()
            }
        };
        let (a, b) = (run(ours).await, run(standard).await);
        assert_eq!(a, b);
        assert!(a.contains("| 1          | 3600001  | 2        |"), "{a}");
        let (a, b) = (
            run(neighbours("tacet_prev", "tacet_next")).await,
            run(neighbours("LAG", "LEAD")).await,
        );
        assert_eq!(a, b);
        // Bucket 1 holds visitors 1 and 3 in order: no previous at its start, no next at its end.
        assert!(a.contains("| 1          | 0        |   | 1 |"), "{a}");
        assert!(a.contains("| 1          | 3600001  | 1 | 3 |"), "{a}");
        assert!(a.contains("| 3          | 99999999 | 3 |   |"), "{a}");
    }
}
