//! Functions that build values, with a cap on what one call may build.
//!
//! `repeat('x', 2100000000)` is one kernel call that allocates 2 GiB before anything can look at it: the
//! memory backstop (`budget.rs`) cannot interrupt it, and the allocator cannot refuse it without killing
//! the process. So each function whose answer can be far larger than its arguments is replaced, in every
//! session, by a wrapper that computes an upper bound of the bytes the call will return for the batch and
//! refuses past `query.max_value_bytes`, before calling the original. Everything else (name, aliases,
//! types, simplification) is the original's.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// How a function's answer grows with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(s, n)`: `len(s) * n`.
    Repeat,
    /// `lpad|rpad(s, n [, fill])`: `n` characters.
    Pad,
    /// `replace(s, from, to)`: every `from` in `s` becomes `to`.
    Replace,
    /// `regexp_replace(s, pattern, replacement [, flags])`: every match (possibly empty) becomes the
    /// replacement, whose `$1` references can each be as long as `s`.
    RegexpReplace,
    /// `concat(a, b, ...)`, `concat_ws(sep, a, b, ...)`: the sum of the arguments (and separators).
    Concat,
    /// `array_repeat(element, n)`: `n` elements.
    ArrayRepeat,
    /// `range|generate_series([start,] stop [, step])`: `(stop - start) / step` elements.
    Series,
    /// `array_resize(array, n [, value])`: `n` elements.
    Resize,
}

/// The functions the session gets capped, each wrapping DataFusion's own.
pub(crate) fn udfs(limit: usize) -> Vec<ScalarUDF> {
    use datafusion::functions::{regex, string, unicode};
    use datafusion::functions_nested::{range, repeat, resize};
    let wrap = |inner: Arc<ScalarUDF>, growth| {
        // Volatile, so that a call on constants is not folded into one literal at planning (which the
        // projection would then copy into every row of each batch, unchecked): it runs per batch, and
        // the bound counts every row.
        let mut signature = inner.signature().clone();
        signature.volatility = datafusion::logical_expr::Volatility::Volatile;
        ScalarUDF::new_from_impl(Capped {
            inner: inner.as_ref().clone(),
            signature,
            limit,
            growth,
        })
    };
    vec![
        wrap(string::repeat(), Growth::Repeat),
        wrap(unicode::lpad(), Growth::Pad),
        wrap(unicode::rpad(), Growth::Pad),
        wrap(string::replace(), Growth::Replace),
        wrap(regex::regexp_replace(), Growth::RegexpReplace),
        wrap(string::concat(), Growth::Concat),
        wrap(string::concat_ws(), Growth::Concat),
        wrap(repeat::array_repeat_udf(), Growth::ArrayRepeat),
        wrap(range::range_udf(), Growth::Series),
        wrap(range::gen_series_udf(), Growth::Series),
        wrap(resize::array_resize_udf(), Growth::Resize),
    ]
}

/// `||` joins per query at most: each one copies both sides, so a long chain over one capped value
/// (`v || v || v ...`) would build `n` times `max_value_bytes` inside one expression evaluation, which
/// nothing can interrupt.
pub(crate) const MAX_CONCAT_OPERATORS: usize = 32;

/// String and binary literals of one query together, in bytes at most: a literal in a projection is
/// copied into every row of each batch (8,192 rows), so 16 KiB of literals can become 128 MiB at once.
pub(crate) const MAX_LITERAL_BYTES: usize = 16 << 10;

/// Refuses a plan (subqueries included) with more than [`MAX_CONCAT_OPERATORS`] `||` or more than
/// [`MAX_LITERAL_BYTES`] of string literals.
pub(crate) fn check_plan(plan: &datafusion::logical_expr::LogicalPlan) -> crate::Result<()> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
    let (mut joins, mut literals) = (0usize, 0u128);
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                match e {
                    Expr::BinaryExpr(BinaryExpr {
                        op: Operator::StringConcat,
                        ..
                    }) => joins += 1,
                    Expr::Literal(v, _) if !v.data_type().is_primitive() => {
                        literals += scalar_len(v)
                    }
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    if literals > MAX_LITERAL_BYTES as u128 {
        return Err(crate::Error::Refused(format!(
            "the query's string literals add up to {literals} bytes; at most {MAX_LITERAL_BYTES} are allowed \
             (a literal is copied into every row the query makes)"
        )));
    }
    if joins > MAX_CONCAT_OPERATORS {
        return Err(crate::Error::Refused(format!(
            "the query joins strings with || {joins} times; at most {MAX_CONCAT_OPERATORS} are allowed \
             (each copies both sides): use concat(...) with a list of values"
        )));
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Capped {
    inner: ScalarUDF,
    signature: Signature,
    limit: usize,
    growth: Growth,
}

/// One argument, per row: a constant or an array of the batch's rows.
enum PerRow {
    Same(u128),
    Each(Vec<u128>),
}

impl PerRow {
    fn at(&self, row: usize) -> u128 {
        match self {
            PerRow::Same(v) => *v,
            PerRow::Each(v) => v.get(row).copied().unwrap_or(0),
        }
    }
}

/// Byte length of each string (or binary) value; anything else: its memory size per row.
fn lengths(arg: &ColumnarValue) -> PerRow {
    match arg {
        ColumnarValue::Scalar(s) => PerRow::Same(scalar_len(s)),
        ColumnarValue::Array(a) => PerRow::Each(array_lengths(a)),
    }
}

fn scalar_len(s: &ScalarValue) -> u128 {
    match s {
        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
            v.as_ref().map_or(0, |s| s.len() as u128)
        }
        ScalarValue::Binary(v) | ScalarValue::LargeBinary(v) | ScalarValue::BinaryView(v) => {
            v.as_ref().map_or(0, |b| b.len() as u128)
        }
        other => other.size() as u128,
    }
}

fn array_lengths(a: &ArrayRef) -> Vec<u128> {
    let len = |v: Option<&str>| v.map_or(0, |s| s.len() as u128);
    match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().iter().map(len).collect(),
        DataType::LargeUtf8 => a.as_string::<i64>().iter().map(len).collect(),
        DataType::Utf8View => a.as_string_view().iter().map(len).collect(),
        _ => {
            let each = (a.get_array_memory_size() / a.len().max(1)).max(8) as u128;
            vec![each; a.len()]
        }
    }
}

/// Each value as an integer (nulls and what does not convert: 0).
fn integers(arg: &ColumnarValue) -> PerRow {
    match arg {
        ColumnarValue::Scalar(s) => PerRow::Same(
            s.cast_to(&DataType::Int64)
                .ok()
                .and_then(|v| match v {
                    ScalarValue::Int64(Some(n)) => Some(n.max(0) as u128),
                    _ => None,
                })
                .unwrap_or(0),
        ),
        ColumnarValue::Array(a) => PerRow::Each(
            arrow::compute::cast(a, &DataType::Int64)
                .map(|c| {
                    c.as_primitive::<arrow::datatypes::Int64Type>()
                        .iter()
                        .map(|v| v.unwrap_or(0).max(0) as u128)
                        .collect()
                })
                .unwrap_or_else(|_| vec![0; a.len()]),
        ),
    }
}

/// Each value as a signed instant or number: integers as they are, dates and timestamps in nanoseconds.
fn points(arg: &ColumnarValue) -> Vec<Option<i128>> {
    use arrow::datatypes::TimeUnit;
    let Ok(array) = arg.to_array(1) else {
        return vec![None];
    };
    let scale: i128 = match array.data_type() {
        DataType::Date32 => 86_400_000_000_000,
        DataType::Date64 | DataType::Timestamp(TimeUnit::Millisecond, _) => 1_000_000,
        DataType::Timestamp(TimeUnit::Second, _) => 1_000_000_000,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 1_000,
        _ => 1,
    };
    match arrow::compute::cast(&array, &DataType::Int64) {
        Ok(c) => c
            .as_primitive::<arrow::datatypes::Int64Type>()
            .iter()
            .map(|v| v.map(|v| i128::from(v) * scale))
            .collect(),
        Err(_) => vec![None; array.len()],
    }
}

/// A step as a signed length: integers as they are, intervals in nanoseconds (a month at its shortest).
fn steps(arg: &ColumnarValue) -> Vec<Option<i128>> {
    let array = match arg.to_array(1) {
        Ok(a) => a,
        Err(_) => return vec![None],
    };
    if let DataType::Interval(_) = array.data_type() {
        let Ok(mdn) = arrow::compute::cast(
            &array,
            &DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano),
        ) else {
            return vec![None; array.len()];
        };
        return mdn
            .as_primitive::<arrow::datatypes::IntervalMonthDayNanoType>()
            .iter()
            .map(|v| {
                v.map(|i| {
                    i128::from(i.months) * 28 * 86_400_000_000_000
                        + i128::from(i.days) * 86_400_000_000_000
                        + i128::from(i.nanoseconds)
                })
            })
            .collect();
    }
    match arrow::compute::cast(&array, &DataType::Int64) {
        Ok(c) => c
            .as_primitive::<arrow::datatypes::Int64Type>()
            .iter()
            .map(|v| v.map(i128::from))
            .collect(),
        Err(_) => vec![None; array.len()],
    }
}

impl Capped {
    /// An upper bound of the bytes this call returns for the batch's `rows` (a constant answer is copied
    /// into every row).
    fn bound(&self, args: &[ColumnarValue], rows: usize) -> u128 {
        let rows = rows.max(1);
        let sum = |f: &dyn Fn(usize) -> u128| (0..rows).map(f).fold(0u128, u128::saturating_add);
        match self.growth {
            Growth::Repeat if args.len() >= 2 => {
                let (s, n) = (lengths(&args[0]), integers(&args[1]));
                sum(&|r| s.at(r).saturating_mul(n.at(r)))
            }
            Growth::Pad if args.len() >= 2 => {
                let (s, n) = (lengths(&args[0]), integers(&args[1]));
                sum(&|r| s.at(r).max(n.at(r)))
            }
            Growth::Replace if args.len() >= 3 => {
                let (s, from, to) = (lengths(&args[0]), lengths(&args[1]), lengths(&args[2]));
                sum(&|r| {
                    let hits = s.at(r) / from.at(r).max(1) + 1;
                    s.at(r).saturating_add(hits.saturating_mul(to.at(r)))
                })
            }
            Growth::RegexpReplace if args.len() >= 3 => {
                let (s, repl) = (lengths(&args[0]), lengths(&args[2]));
                let refs = match &args[2] {
                    ColumnarValue::Scalar(v) => v.to_string().contains(['$', '\\']),
                    ColumnarValue::Array(_) => true,
                };
                sum(&|r| {
                    let per_match = if refs {
                        repl.at(r).saturating_mul(s.at(r).max(1))
                    } else {
                        repl.at(r)
                    };
                    s.at(r)
                        .saturating_add((s.at(r) + 1).saturating_mul(per_match))
                })
            }
            Growth::Concat => {
                let each: Vec<PerRow> = args.iter().map(lengths).collect();
                sum(&|r| each.iter().map(|a| a.at(r)).fold(0, u128::saturating_add))
            }
            Growth::ArrayRepeat if args.len() >= 2 => {
                let (e, n) = (lengths(&args[0]), integers(&args[1]));
                sum(&|r| e.at(r).max(8).saturating_mul(n.at(r)))
            }
            Growth::Resize if args.len() >= 2 => {
                let n = integers(&args[1]);
                sum(&|r| n.at(r).saturating_mul(8))
            }
            Growth::Series if !args.is_empty() => {
                let (start, stop, step) = match args.len() {
                    1 => (None, points(&args[0]), None),
                    2 => (Some(points(&args[0])), points(&args[1]), None),
                    _ => (
                        Some(points(&args[0])),
                        points(&args[1]),
                        Some(steps(&args[2])),
                    ),
                };
                let at = |v: &Vec<Option<i128>>, r: usize| {
                    v.get(r).or_else(|| v.first()).copied().flatten()
                };
                sum(&|r| {
                    let from = start.as_ref().map_or(Some(0), |s| at(s, r));
                    let to = at(&stop, r);
                    let by = step.as_ref().map_or(Some(1), |s| at(s, r));
                    match (from, to, by) {
                        (Some(from), Some(to), Some(by)) if by != 0 => {
                            let n = ((to - from) / by).max(0) as u128 + 1;
                            n.saturating_mul(8)
                        }
                        _ => 0,
                    }
                })
            }
            _ => 0,
        }
    }
}

impl ScalarUDFImpl for Capped {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(
        &self,
        args: ReturnFieldArgs,
    ) -> datafusion::common::Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::common::Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let bound = self.bound(&args.args, args.number_rows);
        if bound > self.limit as u128 {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}(...) would build up to {} MiB in one call, more than query.max_value_bytes ({} MiB) \
                 allows; build smaller values",
                self.inner.name(),
                bound >> 20,
                self.limit >> 20
            )));
        }
        self.inner.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(f: &ScalarUDF, args: Vec<ColumnarValue>) -> datafusion::common::Result<ColumnarValue> {
        let arg_fields = args
            .iter()
            .map(|a| Arc::new(arrow::datatypes::Field::new("a", a.data_type(), true)))
            .collect::<Vec<_>>();
        let return_field = f.return_field_from_args(ReturnFieldArgs {
            arg_fields: &arg_fields,
            scalar_arguments: &vec![None; args.len()],
        })?;
        f.invoke_with_args(ScalarFunctionArgs {
            args,
            arg_fields,
            number_rows: 1,
            return_field,
            config_options: Arc::new(Default::default()),
        })
    }

    fn udf(name: &str) -> ScalarUDF {
        udfs(1 << 20)
            .into_iter()
            .find(|f| f.name() == name)
            .unwrap()
    }

    fn s(v: &str) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(v.into())))
    }

    fn i(v: i64) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(v)))
    }

    #[test]
    fn small_answers_pass_and_big_ones_are_refused_before_they_are_built() {
        let repeat = udf("repeat");
        assert!(call(&repeat, vec![s("ab"), i(1000)]).is_ok());
        let e = call(&repeat, vec![s("ab"), i(1_000_000)]).unwrap_err();
        assert!(
            e.to_string()
                .contains("repeat(...) would build up to 1 MiB")
                && e.to_string().contains("query.max_value_bytes (1 MiB)"),
            "{e}"
        );
        assert!(call(&udf("lpad"), vec![s("x"), i(2_000_000)]).is_err());
        assert!(call(&udf("rpad"), vec![s("x"), i(1000)]).is_ok());
        let big = "x".repeat(100_000);
        assert!(call(&udf("replace"), vec![s(&big), s("x"), s("yyyyyyyyyyyyy")]).is_err());
        assert!(call(&udf("replace"), vec![s(&big), s("x"), s("y")]).is_ok());
        assert!(call(&udf("regexp_replace"), vec![s(&big), s("(x)"), s("$1$1")]).is_err());
        assert!(call(&udf("range"), vec![i(1), i(400_000_000)]).is_err());
        assert!(call(&udf("range"), vec![i(1), i(1000)]).is_ok());
        assert!(call(&udf("generate_series"), vec![i(0), i(10_000_000), i(10)]).is_err());
        assert!(call(&udf("array_repeat"), vec![i(1), i(1_000_000)]).is_err());
        assert!(call(&udf("concat"), vec![s(&big), s(&big)]).is_ok());
        let half = "x".repeat(600_000);
        assert!(call(&udf("concat"), vec![s(&half), s(&half)]).is_err());
    }

    #[test]
    fn names_and_aliases_are_the_originals() {
        let names: Vec<String> = udfs(1).iter().map(|f| f.name().to_owned()).collect();
        assert!(names.contains(&"array_repeat".to_owned()));
        let repeat = udf("array_repeat");
        assert!(repeat.aliases().iter().any(|a| a == "list_repeat"));
    }
}
