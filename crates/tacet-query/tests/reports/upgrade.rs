//! Rollups written by an earlier version: a day whose rollup has no visits file beside it (written before
//! `visits` was stored) is stale, so that the server's hourly job writes both again.

use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::*;

/// The footer key a rollup names its visits file's size under (`tacet.rollup.visits`).
const VISITS_KEY: &str = "tacet.rollup.visits";

/// Rewrites the day's rollup as a version without stored visits wrote it: the same rows and footer but the
/// visits key; returns the key-value pairs the file had.
async fn forget_visits(lake: &Lake, day: &str) -> Vec<KeyValue> {
    let path = Path::from(format!("rollups/tenant=shop/date={day}/rollup.parquet"));
    let bytes = lake
        .store()
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let schema = builder.schema().clone();
    let batches: Vec<_> = builder.build().unwrap().map(Result::unwrap).collect();
    let older: Vec<KeyValue> = kv.iter().filter(|k| k.key != VISITS_KEY).cloned().collect();
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(older))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
    for b in &batches {
        writer.write(b).unwrap();
    }
    writer.close().unwrap();
    lake.store().put(&path, out.into()).await.unwrap();
    kv
}

#[tokio::test]
async fn a_rollup_without_visits_beside_it_is_stale_until_written_again() {
    let s = setup().await;
    let shop = TenantId::new("shop").unwrap();
    let stale = || async {
        s.engine
            .stale_rollup_days(&shop, 10_000, 7, chrono_tz::UTC)
            .await
            .unwrap()
    };
    let (d0, d1) = (
        NaiveDate::from_ymd_opt(2025, 11, 28).unwrap(),
        NaiveDate::from_ymd_opt(2025, 11, 29).unwrap(),
    );
    assert_eq!(stale().await, [d0, d1], "no rollups yet");
    for day in [d0, d1] {
        assert!(
            s.engine
                .rollup_day(&shop, day, chrono_tz::UTC)
                .await
                .unwrap()
                > 0
        );
    }
    assert!(stale().await.is_empty(), "both rolled, with their visits");

    let kv = forget_visits(&s.lake, "2025-11-29").await;
    let size = kv
        .iter()
        .find(|k| k.key == VISITS_KEY)
        .and_then(|k| k.value.as_deref())
        .expect("a rollup written now names its visits file");
    let visits = Path::from("visits/tenant=shop/date=2025-11-29/visits.parquet");
    let stored = s.lake.store().head(&visits).await.unwrap();
    assert_eq!(
        size,
        stored.size.to_string(),
        "the size of the file beside it"
    );
    assert_eq!(
        stale().await,
        [d1],
        "the older rollup is stale, the other not"
    );

    s.engine
        .rollup_day(&shop, d1, chrono_tz::UTC)
        .await
        .unwrap();
    assert!(stale().await.is_empty(), "written again, with its visits");
}
