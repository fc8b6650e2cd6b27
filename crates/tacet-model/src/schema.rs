//! The Arrow schema of the `events` table, as stored in each Parquet file.
//!
//! `kind` and `date` are not in the files: they are Hive partition columns (`kind=…/date=…` in the path),
//! added back by every reader (DataFusion here; DuckDB, Spark and Trino with Hive partitioning on).
//! `schemas/events.md` documents every column; a test keeps the two in step.

use std::sync::{Arc, LazyLock};

use arrow::array::{MapBuilder, MapFieldNames, StringBuilder};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Partition columns, in path order after `tenant=`: `kind` then `date` (`YYYY-MM-DD`, UTC).
pub const PARTITION_COLUMNS: [&str; 2] = ["kind", "date"];

/// The time zone of `ts`.
pub const TS_TZ: &str = "UTC";

pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some(TS_TZ.into()))
}

/// Bits of `arrival` that hold an event's index in its request: the log record's sequence number is above
/// them.
pub const ARRIVAL_INDEX_BITS: u32 = 24;

/// The `arrival` of the `index`th event kept from the request in log record `seq`: the order in which one
/// node received events, which breaks ties between equal `ts` (events of one request share the server's
/// timestamp when the client sent none). An index past 2^24 - 1 (no body limit allows one) keeps that value.
pub fn arrival(seq: u64, index: usize) -> i64 {
    let index = (index as u64).min((1 << ARRIVAL_INDEX_BITS) - 1);
    ((seq << ARRIVAL_INDEX_BITS) | index) as i64
}

/// The entries field of the `props` map column.
pub fn props_entries() -> Arc<Field> {
    Arc::new(Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("keys", DataType::Utf8, false),
            Field::new("values", DataType::Utf8, true),
        ])),
        false,
    ))
}

/// A builder of the `props` map column, with the field names [`props_entries`] gives.
pub fn props_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    MapBuilder::new(
        Some(MapFieldNames {
            entry: "entries".into(),
            key: "keys".into(),
            value: "values".into(),
        }),
        StringBuilder::new(),
        StringBuilder::new(),
    )
}

/// The item field of the `stack` list column.
pub fn stack_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Utf8, true))
}

static FILE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        Field::new("ts", ts_type(), false),
        Field::new("visitor_id", DataType::Int64, true),
        s("user_pseudonym", true),
        s("browser", false),
        s("browser_version", false),
        s("os", false),
        s("os_version", false),
        s("device", false),
        Field::new("is_bot", DataType::Boolean, false),
        s("country", true),
        s("region", true),
        s("city", true),
        s("ip_prefix", true),
        s("url_host", false),
        s("url_path", false),
        s("url_query", true),
        s("utm_source", true),
        s("utm_medium", true),
        s("utm_campaign", true),
        s("utm_term", true),
        s("utm_content", true),
        s("referrer_host", true),
        s("referrer_class", true),
        s("referrer_source", true),
        s("name", true),
        Field::new("props", DataType::Map(props_entries(), false), true),
        s("error_type", true),
        s("message", true),
        Field::new("stack", DataType::List(stack_item()), true),
        s("release", true),
        s("fingerprint", true),
        s("anonymised", true),
        Field::new("arrival", DataType::Int64, true),
    ]))
});

/// The schema of every Parquet file in the lake (without the partition columns).
pub fn file_schema() -> SchemaRef {
    FILE_SCHEMA.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_orders_by_record_then_index() {
        assert!(arrival(1, 0) < arrival(1, 1));
        assert!(arrival(1, 9_999) < arrival(2, 0));
        assert_eq!(arrival(3, 5), (3 << 24) + 5);
        assert_eq!(arrival(1, usize::MAX), arrival(1, (1 << 24) - 1));
    }

    /// Every column must be documented in `schemas/events.md`, and nothing documented may be missing.
    #[test]
    fn schema_doc_lists_every_column() {
        let doc = include_str!("../../../schemas/events.md");
        let documented: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let schema = file_schema();
        let mut expected: Vec<&str> = PARTITION_COLUMNS.to_vec();
        expected.extend(schema.fields().iter().map(|f| f.name().as_str()));
        let mut a = documented.clone();
        let mut b = expected.clone();
        a.sort();
        b.sort();
        assert_eq!(
            a, b,
            "schemas/events.md and the Arrow schema disagree on the column list"
        );
    }
}
