//! `tacet_count_distinct(x)`: `COUNT(DISTINCT x)` for 64-bit integers (visitor ids), with one hash set per
//! group.
//!
//! DataFusion 55's grouped `COUNT(DISTINCT)` keeps one hash set of `(group, value)` pairs for all groups:
//! a month of visitor-days is about 300,000 pairs per tenant, so nearly every insert misses the cache.
//! Reports group by day, page, browser and the like, and the events of a day arrive together (one file
//! per day), so a set per group stays small and warm, and holds 8-byte values instead of 16-byte pairs:
//! 2.5x fewer nanoseconds per row for a daily breakdown, 1.6x for a three-way one (measured on 2M rows).
//! The reports' SQL keeps the standard spelling; [`crate::Report::expanded_sql_in`] puts this function in
//! for `COUNT(DISTINCT visitor_id)`, and other engines run the report as written.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// The function's SQL name.
pub const NAME: &str = "tacet_count_distinct";

/// The aggregate functions Tacet adds to every session, scheduler and executor.
pub fn udafs() -> Vec<Arc<AggregateUDF>> {
    vec![Arc::new(AggregateUDF::new_from_impl(CountDistinct::new()))]
}

/// A folded multiply (as in foldhash): cheap, and mixes every input bit into the bits hashbrown uses.
#[derive(Default)]
struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }
    fn write_u64(&mut self, v: u64) {
        let m = u128::from(v ^ self.0 ^ 0x243f_6a88_85a3_08d3) * 0x9e37_79b9_7f4a_7c15;
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
}

type Set = HashSet<i64, BuildHasherDefault<Mix>>;

fn set_bytes(s: &Set) -> usize {
    // A value and a control byte per bucket (hashbrown; capacity is a little under the buckets).
    s.capacity() * (size_of::<i64>() + 1) + size_of::<Set>()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CountDistinct {
    signature: Signature,
}

impl CountDistinct {
    fn new() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Int64], Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for CountDistinct {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    /// Like `COUNT`: no rows count zero (an outer join's missing side, an empty scalar subquery).
    fn default_value(&self, _: &DataType) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(0)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new_list(
            format_state_name(args.name, "distinct values"),
            Field::new_list_field(DataType::Int64, true),
            false,
        ))])
    }

    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(One::default()))
    }

    fn groups_accumulator_supported(&self, _: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Groups::default()))
    }
}

/// A list array (the state's type) of `values` cut at `offsets`.
fn list(offsets: Vec<i32>, values: Vec<i64>) -> ArrayRef {
    Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(DataType::Int64, true)),
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Arc::new(Int64Array::from(values)),
        None,
    ))
}

/// The distinct values, a list per set.
fn list_of(sets: &[Set]) -> ArrayRef {
    let mut offsets = Vec::with_capacity(sets.len() + 1);
    offsets.push(0i32);
    let total: usize = sets.iter().map(Set::len).sum();
    let mut values = Vec::with_capacity(total);
    for s in sets {
        values.extend(s.iter().copied());
        offsets.push(values.len() as i32);
    }
    list(offsets, values)
}

/// Without GROUP BY.
#[derive(Debug, Default)]
struct One {
    set: Set,
}

impl Accumulator for One {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let a = values[0].as_primitive::<Int64Type>();
        match a.nulls() {
            None => self.set.extend(a.values().iter().copied()),
            Some(_) => self.set.extend(a.iter().flatten()),
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_list::<i32>();
        for i in 0..lists.len() {
            if lists.is_valid(i) {
                self.set
                    .extend(lists.value(i).as_primitive::<Int64Type>().iter().flatten());
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let list = list_of(std::slice::from_ref(&self.set));
        Ok(vec![ScalarValue::List(Arc::new(
            list.as_list::<i32>().clone(),
        ))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.set.len() as i64)))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + set_bytes(&self.set) - size_of::<Set>()
    }
}

/// With GROUP BY: a set per group, and the bytes their tables hold (kept as they grow, so that `size`,
/// asked after every batch, does not walk every group).
#[derive(Debug, Default)]
struct Groups {
    sets: Vec<Set>,
    table_bytes: usize,
}

/// Inserts `v`, adding to `bytes` what the set's table grew by.
#[inline]
fn insert(set: &mut Set, v: i64, bytes: &mut usize) {
    let before = set.capacity();
    set.insert(v);
    if set.capacity() != before {
        *bytes += (set.capacity() - before) * (size_of::<i64>() + 1);
    }
}

impl Groups {
    fn take(&mut self, emit_to: EmitTo) -> Vec<Set> {
        let sets = emit_to.take_needed(&mut self.sets);
        let freed: usize = sets
            .iter()
            .map(|s| s.capacity() * (size_of::<i64>() + 1))
            .sum();
        self.table_bytes = self.table_bytes.saturating_sub(freed);
        sets
    }
}

impl GroupsAccumulator for Groups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.sets.resize_with(total_num_groups, Set::default);
        let a = values[0].as_primitive::<Int64Type>();
        let (sets, bytes) = (&mut self.sets, &mut self.table_bytes);
        match (a.nulls(), opt_filter) {
            (None, None) => {
                for (&g, &v) in group_indices.iter().zip(a.values()) {
                    insert(&mut sets[g], v, bytes);
                }
            }
            _ => {
                for (i, &g) in group_indices.iter().enumerate() {
                    let kept = opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i));
                    if kept && a.is_valid(i) {
                        insert(&mut sets[g], a.value(i), bytes);
                    }
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let sets = self.take(emit_to);
        Ok(Arc::new(Int64Array::from_iter_values(
            sets.iter().map(|s| s.len() as i64),
        )))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let sets = self.take(emit_to);
        Ok(vec![list_of(&sets)])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.sets.resize_with(total_num_groups, Set::default);
        let lists = values[0].as_list::<i32>();
        let inner = lists.values().as_primitive::<Int64Type>();
        let offsets = lists.offsets();
        for (i, &g) in group_indices.iter().enumerate() {
            if lists.is_null(i) {
                continue;
            }
            let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
            let set = &mut self.sets[g];
            // Partial states of different partitions mostly hold different days, so different ids: make
            // room for all at once rather than doubling on the way.
            let before = set.capacity();
            set.reserve(to - from);
            self.table_bytes += (set.capacity() - before) * (size_of::<i64>() + 1);
            for j in from..to {
                if inner.is_valid(j) {
                    insert(set, inner.value(j), &mut self.table_bytes);
                }
            }
        }
        Ok(())
    }

    /// Each row as a state of its own: a list of its value, or empty (null or filtered out).
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let a = values[0].as_primitive::<Int64Type>();
        let mut offsets = Vec::with_capacity(a.len() + 1);
        offsets.push(0i32);
        let mut kept = Vec::with_capacity(a.len());
        for i in 0..a.len() {
            if opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i)) && a.is_valid(i) {
                kept.push(a.value(i));
            }
            offsets.push(kept.len() as i32);
        }
        Ok(vec![list(offsets, kept)])
    }

    fn size(&self) -> usize {
        self.sets.capacity() * size_of::<Set>() + self.table_bytes
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    /// The same answers as `COUNT(DISTINCT)`, grouped and not, with nulls, filters, empty groups and an
    /// empty input; on two partitions, so that partial states are merged; and once with partial
    /// aggregation skipped early (rows converted to states one by one).
    #[tokio::test]
    async fn counts_what_count_distinct_counts() {
        for skip in [false, true] {
            let mut config = datafusion::prelude::SessionConfig::new()
                .with_target_partitions(2)
                .with_batch_size(7);
            if skip {
                config = config
                    .set_usize(
                        "datafusion.execution.skip_partial_aggregation_probe_rows_threshold",
                        10,
                    )
                    .set_str(
                        "datafusion.execution.skip_partial_aggregation_probe_ratio_threshold",
                        "0.0",
                    );
            }
            same_answers(SessionContext::new_with_config(config)).await;
        }
    }

    /// The memory reported follows the tables as they grow and as groups are emitted.
    #[test]
    fn size_follows_the_sets() {
        let mut g = Groups::default();
        let values: ArrayRef = Arc::new(Int64Array::from_iter_values(0..10_000));
        let groups: Vec<usize> = (0..10_000).map(|i| i % 4).collect();
        g.update_batch(&[values], &groups, None, 4).unwrap();
        let full = g.size();
        assert!(full >= 10_000 * 9, "{full}");
        let first = g.evaluate(EmitTo::First(2)).unwrap();
        assert_eq!(first.as_primitive::<Int64Type>().values(), &[2_500, 2_500]);
        let half = g.size();
        assert!(half < full * 3 / 4 && half >= 5_000 * 9, "{full} -> {half}");
        let state = g.state(EmitTo::All).unwrap();
        assert_eq!(state[0].as_list::<i32>().values().len(), 5_000);
        assert_eq!(g.table_bytes, 0);
    }

    async fn same_answers(ctx: SessionContext) {
        for f in udafs() {
            ctx.register_udaf(f.as_ref().clone());
        }
        let mut rows = Vec::new();
        let mut x: u64 = 0x9e37_79b9;
        for i in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = if i % 17 == 0 {
                "NULL".to_owned()
            } else {
                ((x % 900) as i64 - 450).to_string()
            };
            rows.push(format!("({}, {v}, {})", i % 13, i % 3));
        }
        ctx.sql(&format!(
            "CREATE TABLE t (g INT, v BIGINT, k INT) AS VALUES {}",
            rows.join(", ")
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
        let q = |count: &dyn Fn(&str) -> String| {
            let v = count("v");
            [
                format!("SELECT g, {v} AS n FROM t GROUP BY g ORDER BY g"),
                format!("SELECT {v} AS n FROM t"),
                format!("SELECT {v} AS n FROM t WHERE g > 100"),
                format!("SELECT g, {v} AS n FROM t WHERE g > 100 GROUP BY g"),
                format!(
                    "SELECT g, {v} FILTER (WHERE k = 1) AS n, COUNT(*) AS c FROM t GROUP BY g ORDER BY g"
                ),
                format!("SELECT k, g, {v} AS n FROM t GROUP BY k, g ORDER BY k, g"),
            ]
        };
        let ours = q(&|e| format!("{NAME}({e})"));
        let theirs = q(&|e| format!("COUNT(DISTINCT {e})"));
        for (ours, theirs) in ours.into_iter().zip(theirs) {
            let run = |sql: String| {
                let ctx = ctx.clone();
                async move {
                    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
                    arrow::util::pretty::pretty_format_batches(&batches)
                        .unwrap()
                        .to_string()
                }
            };
            let (a, b) = (run(ours.clone()).await, run(theirs).await);
            assert_eq!(a, b, "{ours}");
            // Empty answers only where the query asks for none; a global count is one row.
            assert!(
                a.lines().count() > 4 || ours.contains("> 100"),
                "{ours}: {a}"
            );
        }
    }
}
