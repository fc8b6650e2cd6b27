//! Parquet encoding: zstd, statistics on (per page, with the page index, in a file of more than one page),
//! a bloom filter on `user_pseudonym` (what a subject request looks for).
//!
//! The layout, measured on the query benchmark's lake (`benches/README.md`): rows are in time order, so
//! `ts` is delta-encoded (about 1.7 bytes an event, against 4 with a dictionary of nearly unique
//! milliseconds); `visitor_id` (keyed 64-bit hashes, a handful of events each) is plain, which zstd packs
//! better than a dictionary of random values; the other columns keep dictionaries. Files carry no embedded
//! Arrow schema (2.4 KB a file, a third of the footer): the Parquet types read back as exactly
//! [`tacet_model::schema::file_schema`], which a test checks.

use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;

/// The writer settings every lake file uses.
pub fn writer_properties() -> WriterProperties {
    writer_properties_with(None, usize::MAX).expect("no encryption, no error")
}

/// The most distinct values a file's bloom filter is first sized for (Parquet's default).
const BLOOM_NDV_MAX: u64 = parquet::file::properties::DEFAULT_BLOOM_FILTER_NDV;

/// Rows a data page holds at most (Parquet's default): a file with fewer has one page per column, and a page
/// index would only repeat the column chunk's statistics and offset.
pub const PAGE_ROWS: usize = parquet::file::properties::DEFAULT_DATA_PAGE_ROW_COUNT_LIMIT;

/// The writer settings for a file of `rows` rows, encrypting with Parquet modular encryption (AES-GCM,
/// footer and every column) when a key is given.
///
/// Statistics are per page with the page index (column and offset index) when the file has more than one
/// page; a smaller file (most of a small tenant's, every crash file of a day) keeps them per column chunk
/// and writes no page index: 0.7 of 12.0 bytes an event at the query benchmark's 10M. No bloom filter on
/// `visitor_id`: nothing looks one id up (ids are joined, not sought), and it cost 0.4 bytes an event.
pub fn writer_properties_with(
    key: Option<&[u8]>,
    rows: usize,
) -> Result<WriterProperties, ParquetError> {
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
        .set_statistics_enabled(if rows > PAGE_ROWS {
            EnabledStatistics::Page
        } else {
            EnabledStatistics::Chunk
        })
        .set_offset_index_disabled(rows <= PAGE_ROWS)
        .set_column_dictionary_enabled(ColumnPath::from("ts"), false)
        .set_column_encoding(ColumnPath::from("ts"), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from("visitor_id"), false)
        // `arrival` is unique per event and rises through a flush: deltas, not a dictionary of every value
        // (2.65 of 14.6 bytes an event at the query benchmark's 10M with a dictionary, 0.01 as deltas).
        .set_column_dictionary_enabled(ColumnPath::from("arrival"), false)
        .set_column_encoding(ColumnPath::from("arrival"), Encoding::DELTA_BINARY_PACKED)
        .set_column_bloom_filter_enabled(ColumnPath::from("user_pseudonym"), true)
        // Sized for the file's rows, at most Parquet's default of a row group's: the writer fills a
        // filter of this size, then folds it down to its false-positive rate, to the same filter from
        // any start at least that large. Parquet's default (2^20 values) meant zeroing, filling and
        // folding ~0.8 MB for every file, the flush's small ones included.
        .set_column_bloom_filter_max_ndv(
            ColumnPath::from("user_pseudonym"),
            rows.clamp(1, BLOOM_NDV_MAX as usize) as u64,
        )
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
    encode_adjusted(batches, key, |p| p)
}

/// [`encode_batches_with`], its writer settings changed by `adjust` (for tests that compare settings).
fn encode_adjusted(
    batches: &[arrow::array::RecordBatch],
    key: Option<&[u8]>,
    adjust: impl FnOnce(WriterPropertiesBuilder) -> WriterPropertiesBuilder,
) -> Result<Vec<u8>, ParquetError> {
    let Some(first) = batches.first() else {
        return Err(ParquetError::General("no rows to write".into()));
    };
    let size: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    let mut buf = Vec::with_capacity(size / 4 + 4096);
    // Every writer of events files sorts their rows by `ts`, then `arrival` (the flush, compaction; a
    // rewrite keeps the order): said in the footer for readers that use it.
    let schema = first.schema();
    let sorted_by: Vec<SortingColumn> = ["ts", "arrival"]
        .iter()
        .filter_map(|c| schema.index_of(c).ok())
        .map(|i| SortingColumn {
            column_idx: i as i32,
            descending: false,
            nulls_first: true,
        })
        .collect();
    let properties = adjust(
        writer_properties_with(key, rows)?
            .into_builder()
            .set_sorting_columns((!sorted_by.is_empty()).then_some(sorted_by)),
    )
    .build();
    let options = ArrowWriterOptions::new()
        .with_properties(properties)
        .with_skip_arrow_metadata(true);
    let mut writer = ArrowWriter::try_new_with_options(&mut buf, first.schema(), options)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use serde_json::json;
    use tacet_model::{TenantId, parse_event};
    use tacet_privacy::{
        Event, EventBatch, Keys, Outcome, Privacy, RequestContext, Tally, TenantPolicy,
        parse_user_agent,
    };

    /// Events through the real privacy step: a crash with every optional field, an identified page view,
    /// and an anonymised (Do-Not-Track) page view without a visitor id.
    fn events() -> Vec<Event> {
        let privacy = Privacy::default();
        let policy = TenantPolicy::default();
        let keys = Keys {
            visitor_salt: [1; 32],
            subject_key: [2; 32],
        };
        let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
        let ctx = RequestContext::new("10.1.2.3".parse().unwrap(), ua);
        let tenant = TenantId::new("t").unwrap();
        let url =
            "https://a.example/x?utm_source=n&utm_medium=m&utm_campaign=c&utm_term=t&utm_content=k";
        [
            json!({"kind": "crash", "url": url, "ts": 1_788_220_800_000_i64, "user_id": "u1",
                "referrer": "https://www.google.com/", "release": "1.0", "error_type": "TypeError",
                "message": "x is undefined", "stack": ["at f (app.js:1:1)", "at g (app.js:2:1)"]}),
            json!({"kind": "event", "name": "signup", "url": url, "ts": 1_788_220_800_250_i64,
                "props": {"plan": "pro", "seats": 3}}),
            json!({"kind": "pageview", "url": "https://a.example/", "ts": 1_788_220_861_000_i64, "dnt": true}),
        ]
        .into_iter()
        .map(|body| {
            let raw = parse_event(body, 1_788_300_000_000).unwrap();
            match privacy.pseudonymise(
                &tenant,
                &policy,
                &keys,
                ctx,
                &parse_user_agent(ua),
                raw,
                &mut Tally::default(),
            ) {
                Outcome::Keep(event) => event,
                _ => panic!("kept by the default policy"),
            }
        })
        .collect()
    }

    #[test]
    fn files_read_back_as_the_file_schema_with_the_chosen_encodings() {
        let events = events();
        assert!(events[0].user_pseudonym.is_some() && events[2].visitor_id.is_none());
        let batch = EventBatch::from_events(events.iter()).unwrap();
        let bytes = bytes::Bytes::from(encode_parquet(&batch).unwrap());

        // Without the embedded Arrow schema, the Parquet types alone give back the same schema and rows.
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).unwrap();
        assert_eq!(reader.schema(), &tacet_model::schema::file_schema());
        let read: Vec<_> = reader.build().unwrap().map(Result::unwrap).collect();
        assert_eq!(read, vec![batch.record_batch().clone()]);

        let file = SerializedFileReader::new(bytes).unwrap();
        let meta = file.metadata();
        // The footer says the rows are in time order, then arrival order (as every writer sorts them).
        let schema = tacet_model::schema::file_schema();
        let sorted = |c: &str| SortingColumn {
            column_idx: schema.index_of(c).unwrap() as i32,
            descending: false,
            nulls_first: true,
        };
        assert_eq!(
            meta.row_group(0).sorting_columns(),
            Some(&vec![sorted("ts"), sorted("arrival")])
        );
        assert!(
            meta.file_metadata()
                .key_value_metadata()
                .is_none_or(|kv| kv.iter().all(|kv| kv.key != "ARROW:schema"))
        );
        let column = |name: &str| {
            let rg = meta.row_group(0);
            (0..rg.num_columns())
                .map(|i| rg.column(i))
                .find(|c| c.column_path().string() == name)
                .unwrap()
        };
        let ts = column("ts");
        assert!(ts.encodings().any(|e| e == Encoding::DELTA_BINARY_PACKED));
        assert!(ts.dictionary_page_offset().is_none());
        let arrival = column("arrival");
        assert!(
            arrival
                .encodings()
                .any(|e| e == Encoding::DELTA_BINARY_PACKED)
        );
        assert!(arrival.dictionary_page_offset().is_none());
        assert!(column("visitor_id").dictionary_page_offset().is_none());
        assert!(column("url_path").dictionary_page_offset().is_some());
        assert!(column("visitor_id").bloom_filter_offset().is_none());
        assert!(column("user_pseudonym").bloom_filter_offset().is_some());
        // One page per column: statistics per column chunk, no page index.
        assert!(ts.statistics().is_some());
        assert!(ts.column_index_offset().is_none() && ts.offset_index_offset().is_none());
    }

    /// The bloom filter sized for the file's rows folds to the very filter Parquet's default size folds
    /// to: the files are the same bytes, for a few rows and for many distinct pseudonyms.
    #[test]
    fn a_bloom_filter_sized_for_the_rows_is_the_same_filter() {
        let events = events();
        for rows in [3, 5_000] {
            let many: Vec<_> = events
                .iter()
                .cycle()
                .take(rows)
                .cloned()
                .enumerate()
                .map(|(i, mut e)| {
                    e.user_pseudonym = Some(format!("{i:032x}"));
                    e
                })
                .collect();
            let batch = EventBatch::from_events(many.iter()).unwrap();
            let batch = [batch.record_batch().clone()];
            let ours = encode_batches(&batch).unwrap();
            let default = encode_adjusted(&batch, None, |p| {
                p.set_column_bloom_filter_max_ndv(ColumnPath::from("user_pseudonym"), BLOOM_NDV_MAX)
            })
            .unwrap();
            assert!(ours == default, "{rows} rows");
            let file = SerializedFileReader::new(bytes::Bytes::from(ours)).unwrap();
            let rg = file.metadata().row_group(0);
            let pseudonym = (0..rg.num_columns())
                .find(|&i| rg.column(i).column_path().string() == "user_pseudonym")
                .unwrap();
            assert!(rg.column(pseudonym).bloom_filter_length().unwrap() > 0);
        }
    }

    #[test]
    fn a_file_of_several_pages_has_a_page_index() {
        let events = events();
        let many: Vec<_> = events.iter().cycle().take(PAGE_ROWS + 1).cloned().collect();
        let batch = EventBatch::from_events(many.iter()).unwrap();
        let bytes = bytes::Bytes::from(encode_parquet(&batch).unwrap());
        let file = SerializedFileReader::new(bytes).unwrap();
        let rg = file.metadata().row_group(0);
        let ts = (0..rg.num_columns())
            .map(|i| rg.column(i))
            .find(|c| c.column_path().string() == "ts")
            .unwrap();
        assert!(ts.column_index_offset().is_some() && ts.offset_index_offset().is_some());
    }

    #[tokio::test]
    async fn arrival_is_kept_for_visitors_only_and_old_files_read_it_as_null() {
        use object_store::ObjectStoreExt;
        let mut events = events();
        for (i, e) in events.iter_mut().enumerate() {
            e.set_arrival(7, i);
        }
        // The anonymised page view says nothing of which request it came in.
        let arrivals: Vec<_> = events.iter().map(|e| e.arrival).collect();
        assert_eq!(arrivals, [Some(7 << 24), Some((7 << 24) + 1), None]);
        let batch = EventBatch::from_events(events.iter()).unwrap();
        let lake = crate::Lake::new(std::sync::Arc::new(object_store::memory::InMemory::new()));
        // A file written before the column existed: the same rows without it.
        let old = batch
            .record_batch()
            .project(&(0..32).collect::<Vec<_>>())
            .unwrap();
        assert!(old.column_by_name("arrival").is_none());
        let path = object_store::path::Path::from(
            "events/tenant=t/kind=crash/date=2026-09-01/part-1-1.parquet",
        );
        lake.store()
            .put(&path, encode_batches(&[old]).unwrap().into())
            .await
            .unwrap();
        let meta = lake.store().head(&path).await.unwrap();
        let read = lake.read(&meta).await.unwrap();
        assert_eq!(read[0].schema(), tacet_model::schema::file_schema());
        let arrival = read[0].column_by_name("arrival").unwrap();
        assert_eq!(arrival.null_count(), 3);
        // And it merges with a new file's rows, as compaction does.
        arrow::compute::concat_batches(&read[0].schema(), [&read[0], batch.record_batch()])
            .unwrap();
    }
}
