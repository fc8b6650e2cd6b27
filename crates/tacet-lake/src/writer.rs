//! Parquet encoding: zstd, statistics and page index on, bloom filters on the pseudonym columns.

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

/// The writer settings every lake file uses.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("3 is a valid zstd level"),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_column_bloom_filter_enabled(ColumnPath::from("visitor_id"), true)
        .set_column_bloom_filter_enabled(ColumnPath::from("user_pseudonym"), true)
        .set_created_by(format!("tacet {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Encodes a batch as one Parquet file in memory.
pub fn encode_parquet(batch: &tacet_privacy::EventBatch) -> Result<Vec<u8>, ParquetError> {
    let rb = batch.record_batch();
    let mut buf = Vec::with_capacity(rb.get_array_memory_size() / 4 + 4096);
    let mut writer = ArrowWriter::try_new(&mut buf, rb.schema(), Some(writer_properties()))?;
    writer.write(rb)?;
    writer.close()?;
    Ok(buf)
}
