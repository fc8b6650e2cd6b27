//! Answers as text: a table for people, JSON rows and CSV for programs.

use arrow::array::RecordBatch;
use arrow::error::ArrowError;

/// Output formats for SQL answers and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "table" => Some(Self::Table),
            "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }
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

/// CSV with a header line.
pub fn to_csv(batches: &[RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut buf);
        for b in batches {
            w.write(b)?;
        }
    }
    Ok(buf)
}

/// A boxed table for a terminal.
pub fn to_table(batches: &[RecordBatch]) -> Result<String, ArrowError> {
    Ok(arrow::util::pretty::pretty_format_batches(batches)?.to_string())
}
