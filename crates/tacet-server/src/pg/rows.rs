//! An answer's Arrow batches as Postgres text rows, straight from the columns: the values the HTTP API's
//! JSON gives, in Postgres's text format (`t`/`f`, `2026-11-29 10:04:05.123+00`; lists, maps and structs
//! as the API's JSON text).

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use pgwire::api::Type;
use pgwire::error::PgWireResult;
use serde_json::Value;
use tacet_query::format::{Format, encode};

use super::error;

/// How one column of one batch becomes text.
enum Column<'a> {
    Text(&'a dyn Array),
    Bool(&'a arrow::array::BooleanArray),
    /// Numbers and dates, as Arrow displays them.
    Shown(ArrayFormatter<'a>, &'a dyn Array),
    /// Timestamps: Arrow's display with a time zone, as Postgres writes it.
    Timestamp(ArrayFormatter<'a>, &'a dyn Array),
    /// Lists, maps and structs: the API's JSON of each value.
    Json(Vec<Option<String>>),
}

const TIMESTAMP: &str = "%Y-%m-%d %H:%M:%S%.f%:z";

fn column<'a>(
    array: &'a ArrayRef,
    name: &str,
    options: &'a FormatOptions<'a>,
) -> PgWireResult<Column<'a>> {
    let failed = |e: arrow::error::ArrowError| error("XX000", e.to_string());
    Ok(match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Column::Text(array.as_ref()),
        DataType::Boolean => Column::Bool(array.as_boolean()),
        DataType::Timestamp(_, _) => Column::Timestamp(
            ArrayFormatter::try_new(array.as_ref(), options).map_err(failed)?,
            array.as_ref(),
        ),
        DataType::List(_) | DataType::LargeList(_) | DataType::Map(..) | DataType::Struct(_) => {
            Column::Json(json_values(array, name)?)
        }
        _ => Column::Shown(
            ArrayFormatter::try_new(array.as_ref(), options).map_err(failed)?,
            array.as_ref(),
        ),
    })
}

/// A nested column's values as the API's JSON encoder writes them.
fn json_values(array: &ArrayRef, name: &str) -> PgWireResult<Vec<Option<String>>> {
    let schema = std::sync::Arc::new(Schema::new(vec![arrow::datatypes::Field::new(
        name,
        array.data_type().clone(),
        true,
    )]));
    let batch = RecordBatch::try_new(std::sync::Arc::clone(&schema), vec![array.clone()])
        .map_err(|e| error("XX000", e.to_string()))?;
    let bytes =
        encode(Format::Json, &schema, &[batch]).map_err(|e| error("XX000", e.to_string()))?;
    let rows: Vec<serde_json::Map<String, Value>> =
        serde_json::from_slice(&bytes).map_err(|e| error("XX000", e.to_string()))?;
    Ok(rows
        .into_iter()
        .map(|row| match row.get(name) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.to_string()),
        })
        .collect())
}

impl Column<'_> {
    fn text(&self, row: usize) -> Option<String> {
        match self {
            Column::Text(a) => {
                if a.is_null(row) {
                    return None;
                }
                Some(match a.data_type() {
                    DataType::LargeUtf8 => a.as_string::<i64>().value(row).to_owned(),
                    DataType::Utf8View => a.as_string_view().value(row).to_owned(),
                    _ => a.as_string::<i32>().value(row).to_owned(),
                })
            }
            Column::Bool(a) => {
                (!a.is_null(row)).then(|| if a.value(row) { "t" } else { "f" }.to_owned())
            }
            Column::Shown(f, a) => (!a.is_null(row)).then(|| f.value(row).to_string()),
            Column::Timestamp(f, a) => {
                (!a.is_null(row)).then(|| postgres_zone(f.value(row).to_string()))
            }
            Column::Json(values) => values.get(row).cloned().flatten(),
        }
    }
}

/// `…+00:00` → `…+00`, as Postgres writes a whole-hour offset.
fn postgres_zone(mut s: String) -> String {
    if s.ends_with(":00") && s.len() > 6 && matches!(s.as_bytes()[s.len() - 6], b'+' | b'-') {
        s.truncate(s.len() - 3);
    }
    s
}

/// Every row of `batches` as text values, in column order.
pub(super) fn text_rows(
    schema: &Schema,
    batches: &[RecordBatch],
    mut row: impl FnMut(&mut dyn Iterator<Item = Option<String>>) -> PgWireResult<()>,
) -> PgWireResult<()> {
    // Timestamps without a zone are UTC here (the lake's `ts` has one; a computed one may not).
    let options = FormatOptions::default()
        .with_timestamp_tz_format(Some(TIMESTAMP))
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f+00:00"));
    for batch in batches {
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(a, f)| column(a, f.name(), &options))
            .collect::<PgWireResult<Vec<_>>>()?;
        for i in 0..batch.num_rows() {
            row(&mut columns.iter().map(|c| c.text(i)))?;
        }
    }
    Ok(())
}

/// The Postgres type a column is sent as.
pub(super) fn pg_type(t: &DataType) -> Type {
    use DataType as D;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BooleanArray, Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Field, TimeUnit};

    use super::*;

    #[test]
    fn columns_become_postgres_text() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("b", DataType::Boolean, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            Field::new(
                "local",
                DataType::Timestamp(TimeUnit::Millisecond, Some("+01:30".into())),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![Some("it's"), None])),
                Arc::new(Int64Array::from(vec![Some(42), None])),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false)])),
                Arc::new(
                    TimestampMillisecondArray::from(vec![Some(1_764_410_645_123), None])
                        .with_timezone("UTC"),
                ),
                Arc::new(
                    TimestampMillisecondArray::from(vec![Some(1_764_410_645_000), None])
                        .with_timezone("+01:30"),
                ),
            ],
        )
        .unwrap();
        let mut rows = Vec::new();
        text_rows(&schema, &[batch], |r| {
            rows.push(r.collect::<Vec<_>>());
            Ok(())
        })
        .unwrap();
        assert_eq!(
            rows[0],
            [
                Some("it's".to_owned()),
                Some("42".to_owned()),
                Some("t".to_owned()),
                Some("2025-11-29 10:04:05.123+00".to_owned()),
                Some("2025-11-29 11:34:05+01:30".to_owned()),
            ]
        );
        assert_eq!(rows[1], [None, None, Some("f".to_owned()), None, None]);
    }
}
