//! Parquet encoding: zstd, statistics and page index on, bloom filters on the pseudonym columns.

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

/// The writer settings every lake file uses.
pub fn writer_properties() -> WriterProperties {
    writer_properties_with(None).expect("no encryption, no error")
}

/// The writer settings, encrypting with Parquet modular encryption (AES-GCM, footer and every column) when
/// a key is given.
pub fn writer_properties_with(key: Option<&[u8]>) -> Result<WriterProperties, ParquetError> {
    let mut builder = WriterProperties::builder();
    if let Some(key) = key {
        builder = builder.with_file_encryption_properties(
            parquet::encryption::encrypt::FileEncryptionProperties::builder(key.to_vec())
                .build()?,
        );
    }
    Ok(builder
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("3 is a valid zstd level"),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_column_bloom_filter_enabled(ColumnPath::from("visitor_id"), true)
        .set_column_bloom_filter_enabled(ColumnPath::from("user_pseudonym"), true)
        .set_created_by(format!("tacet {}", env!("CARGO_PKG_VERSION")))
        .build())
}

/// Encodes a batch as one Parquet file in memory.
pub fn encode_parquet(batch: &tacet_privacy::EventBatch) -> Result<Vec<u8>, ParquetError> {
    encode_batches(std::slice::from_ref(batch.record_batch()))
}

/// Encodes batches of one schema as one Parquet file, encrypted under `key` if given.
pub fn encode_batches_with(
    batches: &[arrow::array::RecordBatch],
    key: Option<&[u8]>,
) -> Result<Vec<u8>, ParquetError> {
    let Some(first) = batches.first() else {
        return Err(ParquetError::General("no rows to write".into()));
    };
    let size: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
    let mut buf = Vec::with_capacity(size / 4 + 4096);
    let mut writer =
        ArrowWriter::try_new(&mut buf, first.schema(), Some(writer_properties_with(key)?))?;
    for b in batches {
        writer.write(b)?;
    }
    writer.close()?;
    Ok(buf)
}

/// Encodes batches of one schema (rows read back from lake files) as one Parquet file in memory.
pub fn encode_batches(batches: &[arrow::array::RecordBatch]) -> Result<Vec<u8>, ParquetError> {
    encode_batches_with(batches, None)
}
