//! Answers: a table for people; JSON rows, CSV, Arrow IPC streams and Parquet for programs.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

/// Output formats for SQL answers and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
    /// An Arrow IPC stream (`application/vnd.apache.arrow.stream`).
    Arrow,
    Parquet,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "table" => Some(Self::Table),
            "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            "arrow" => Some(Self::Arrow),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    /// The format an `Accept` header asks for, if it names one of ours.
    pub fn from_accept(accept: &str) -> Option<Self> {
        accept
            .split(',')
            .find_map(|m| match m.split(';').next().unwrap_or_default().trim() {
                "application/json" => Some(Self::Json),
                "text/csv" => Some(Self::Csv),
                "application/vnd.apache.arrow.stream" => Some(Self::Arrow),
                "application/vnd.apache.parquet" | "application/x-parquet" => Some(Self::Parquet),
                _ => None,
            })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Table => "text/plain; charset=utf-8",
            Self::Json => "application/json",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Arrow => "application/vnd.apache.arrow.stream",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// The answer in `format`.
pub fn encode(
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<u8>, ArrowError> {
    match format {
        Format::Table => to_table(batches).map(String::into_bytes),
        Format::Json => to_json(batches),
        Format::Csv => to_csv(batches),
        Format::Arrow => to_arrow(schema, batches),
        Format::Parquet => to_parquet(schema, batches),
    }
}

/// An Arrow IPC stream: the schema, then the batches.
pub fn to_arrow(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, schema)?;
        for b in batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    Ok(buf)
}

/// A Parquet file (zstd) holding the answer.
pub fn to_parquet(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    to_parquet_with(schema, batches, Vec::new())
}

/// The batches with the file's column types (DataFusion may answer strings as Utf8View; files hold Utf8).
pub(crate) fn conform(
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<RecordBatch>, ArrowError> {
    batches
        .iter()
        .map(|b| {
            let columns = b
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
                .collect::<Result<Vec<_>, _>>()?;
            RecordBatch::try_new(std::sync::Arc::clone(schema), columns)
        })
        .collect()
}

/// [`to_parquet`] with key-value pairs in the footer.
pub fn to_parquet_with(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    footer: Vec<(String, String)>,
) -> Result<Vec<u8>, ArrowError> {
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::basic::{Compression, ZstdLevel};
    use datafusion::parquet::file::metadata::KeyValue;
    use datafusion::parquet::file::properties::WriterProperties;
    let footer: Vec<KeyValue> = footer
        .into_iter()
        .map(|(k, v)| KeyValue::new(k, v))
        .collect();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_key_value_metadata((!footer.is_empty()).then_some(footer))
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), Some(props))
        .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
    for b in batches {
        w.write(b)
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
    }
    w.close()
        .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
    Ok(buf)
}

/// A JSON array of row objects, nulls written out.
pub fn to_json(batches: &[RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(&mut buf);
        for b in batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    if buf.is_empty() {
        buf.extend_from_slice(b"[]");
    }
    Ok(buf)
}

/// CSV with a header line. Nested columns (`props`, `stack`) become JSON text in their cell.
pub fn to_csv(batches: &[RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut buf);
        for b in batches {
            w.write(&nested_as_json(b)?)?;
        }
    }
    Ok(buf)
}

/// `batch` with every map, list or struct column replaced by its JSON text (null stays null).
fn nested_as_json(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    use arrow::array::{Array, ArrayRef, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let nested = |t: &DataType| {
        matches!(
            t,
            DataType::Map(..)
                | DataType::List(_)
                | DataType::LargeList(_)
                | DataType::Struct(_)
                | DataType::FixedSizeList(..)
        )
    };
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| nested(f.data_type()))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if !nested(f.data_type()) {
            fields.push(f.as_ref().clone());
            columns.push(std::sync::Arc::clone(c));
            continue;
        }
        let one = RecordBatch::try_new(
            std::sync::Arc::new(Schema::new(vec![f.as_ref().clone()])),
            vec![std::sync::Arc::clone(c)],
        )?;
        let mut lines = Vec::new();
        {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut lines);
            w.write(&one)?;
            w.finish()?;
        }
        let text = String::from_utf8(lines).map_err(|e| ArrowError::CsvError(e.to_string()))?;
        let mut values = text.lines().map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get(f.name()).map(|x| x.to_string()))
        });
        let cells: StringArray = (0..c.len())
            .map(|i| {
                if c.is_null(i) {
                    None
                } else {
                    values.next().flatten()
                }
            })
            .collect();
        fields.push(Field::new(f.name(), DataType::Utf8, true));
        columns.push(std::sync::Arc::new(cells));
    }
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
}

/// A boxed table for a terminal.
pub fn to_table(batches: &[RecordBatch]) -> Result<String, ArrowError> {
    Ok(arrow::util::pretty::pretty_format_batches(batches)?.to_string())
}
