//! The engine over a real lake on local disk: visibility, limits, refusals, listing.
use std::collections::BTreeMap;

use super::*;
use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use futures::StreamExt;
use tacet_lake::{Lake, PartitionKey};
use tacet_model::parse_event;
use tacet_privacy::{
    EventBatch, Keys, Outcome, Privacy, RequestContext, TenantPolicy, parse_user_agent,
};

const NOW: i64 = 1_764_400_000_000; // 2025-11-29T07:06:40Z
const HOUR: i64 = 3_600_000;

/// Writes `(tenant, kind, hours before NOW, ip)` events to a lake on local disk.
async fn lake_with(events: &[(&str, &str, i64, &str)]) -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let privacy = Privacy::default();
    let keys = Keys {
        visitor_salt: [3; 32],
        subject_key: [4; 32],
    };
    for (i, &(tenant, kind, hours_ago, ip)) in events.iter().enumerate() {
        let t = TenantId::new(tenant).unwrap();
        let ua = parse_user_agent(
            "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
        );
        let ctx = RequestContext::new(ip.parse().unwrap(), "ua");
        let mut v = serde_json::json!({"kind": kind, "url": format!("https://{tenant}.example/p"), "ts": NOW - hours_ago * HOUR});
        if kind == "event" {
            v["name"] = "signup".into();
        }
        if kind == "crash" {
            v["message"] = "boom".into();
        }
        let raw = parse_event(v, NOW).unwrap();
        let key = PartitionKey::for_event(t.clone(), raw.kind, raw.ts_millis);
        let tally = &mut Default::default();
        let Outcome::Keep(e) =
            privacy.pseudonymise(&t, &TenantPolicy::default(), &keys, ctx, &ua, raw, tally)
        else {
            panic!("a browser event is kept");
        };
        lake.write(
            &key,
            (i as u64 + 1, i as u64 + 1),
            &EventBatch::from_events([e].iter()).unwrap(),
        )
        .await
        .unwrap();
    }
    (dir, lake)
}

fn engine(lake: &Lake, config: QueryConfig) -> QueryEngine {
    QueryEngine::new(Arc::clone(lake.store()), config).unwrap()
}

fn ints(out: &QueryOutput, col: usize) -> Vec<i64> {
    out.batches
        .iter()
        .flat_map(|b| b.column(col).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

fn t(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

/// A store whose listings include one file more than it holds, until someone tries to read that
/// file: as if another node's compaction deleted it between a query's listing and its reads.
#[derive(Debug)]
struct Phantom {
    inner: Arc<dyn ObjectStore>,
    path: object_store::path::Path,
    gone: std::sync::atomic::AtomicBool,
    reads: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Display for Phantom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Phantom({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Phantom {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        if *location == self.path {
            self.gone.store(true, std::sync::atomic::Ordering::SeqCst);
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        let listing = self.inner.list(prefix);
        let covered = prefix.is_none_or(|p| self.path.as_ref().starts_with(p.as_ref()));
        if self.gone.load(std::sync::atomic::Ordering::SeqCst) || !covered {
            return listing;
        }
        let phantom = object_store::ObjectMeta {
            location: self.path.clone(),
            last_modified: chrono::Utc::now(),
            size: 4096,
            e_tag: None,
            version: None,
        };
        listing
            .chain(futures::stream::once(async move { Ok(phantom) }))
            .boxed()
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test]
async fn a_file_deleted_between_listing_and_reading_is_listed_again_not_an_error() {
    let (_dir, lake) = lake_with(&[
        ("a", "pageview", 1, "203.0.113.1"),
        ("a", "pageview", 2, "203.0.113.2"),
    ])
    .await;
    let day = chrono::DateTime::from_timestamp_millis(NOW - HOUR)
        .unwrap()
        .format("%Y-%m-%d");
    let phantom = Arc::new(Phantom {
        inner: Arc::clone(lake.store()),
        path: object_store::path::Path::from(format!(
            "events/tenant=a/kind=pageview/date={day}/part-00000000000000000090-00000000000000000099.parquet"
        )),
        gone: Default::default(),
        reads: Default::default(),
    });
    let engine = QueryEngine::new(phantom.clone(), QueryConfig::default()).unwrap();
    let out = engine
        .sql(&t("a"), "SELECT COUNT(*) AS n FROM events")
        .await
        .unwrap();
    assert_eq!(ints(&out, 0), [2]);
    assert_eq!(
        phantom.reads.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the first run tried the vanished file; the second did not list it"
    );
}

#[tokio::test]
async fn daily_report_counts_exactly() {
    // Tenant a: yesterday 2 page views by 2 visitors; today 3 page views by 1 visitor, 1 event, 1 crash.
    let (_dir, lake) = lake_with(&[
        ("a", "pageview", 24, "203.0.113.1"),
        ("a", "pageview", 24, "203.0.113.2"),
        ("a", "pageview", 1, "203.0.113.1"),
        ("a", "pageview", 2, "203.0.113.1"),
        ("a", "pageview", 3, "203.0.113.1"),
        ("a", "event", 1, "203.0.113.1"),
        ("a", "crash", 1, "203.0.113.1"),
        ("b", "pageview", 1, "203.0.113.9"),
    ])
    .await;
    let q = engine(&lake, QueryConfig::default());
    let today = chrono::DateTime::from_timestamp_millis(NOW)
        .unwrap()
        .date_naive();
    let params = ReportParams::parse(&BTreeMap::new(), today).unwrap();
    let out = q
        .report(
            &t("a"),
            Report::find("daily").unwrap(),
            &params,
            &crate::ReportScope::utc(5),
        )
        .await
        .unwrap();
    let days: Vec<String> = out
        .batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(days, ["2025-11-28", "2025-11-29"]);
    assert_eq!(ints(&out, 1), [2, 1], "visitors");
    assert_eq!(ints(&out, 2), [2, 3], "pageviews");
    assert_eq!(ints(&out, 3), [0, 1], "events");
    assert_eq!(ints(&out, 4), [0, 1], "crashes");

    // A range that excludes yesterday.
    let mut only_today = BTreeMap::new();
    only_today.insert("from".to_owned(), "2025-11-29".to_owned());
    let params = ReportParams::parse(&only_today, today).unwrap();
    let out = q
        .report(
            &t("a"),
            Report::find("daily").unwrap(),
            &params,
            &crate::ReportScope::utc(5),
        )
        .await
        .unwrap();
    assert_eq!(ints(&out, 2), [3]);
}

#[tokio::test]
async fn a_tenant_sees_only_its_own_rows() {
    let (_dir, lake) = lake_with(&[
        ("a", "pageview", 1, "203.0.113.1"),
        ("b", "pageview", 1, "203.0.113.2"),
        ("b", "crash", 1, "203.0.113.2"),
    ])
    .await;
    let q = engine(&lake, QueryConfig::default());
    let count = |out: QueryOutput| ints(&out, 0)[0];
    assert_eq!(
        count(q.sql(&t("a"), "SELECT COUNT(*) FROM events").await.unwrap()),
        1
    );
    assert_eq!(
        count(q.sql(&t("b"), "SELECT COUNT(*) FROM events").await.unwrap()),
        2
    );
    let hosts = q
        .sql(&t("a"), "SELECT DISTINCT url_host FROM events")
        .await
        .unwrap();
    assert_eq!(hosts.num_rows(), 1);
    // A tenant with no files yet answers with zero rows, not an error.
    assert_eq!(
        count(q.sql(&t("c"), "SELECT COUNT(*) FROM events").await.unwrap()),
        0
    );
}

#[tokio::test]
async fn a_runaway_query_is_stopped_and_slots_are_bounded() {
    let (_dir, lake) = lake_with(&[("a", "pageview", 1, "203.0.113.1")]).await;
    let q = Arc::new(engine(
        &lake,
        QueryConfig {
            timeout: std::time::Duration::from_millis(300),
            max_concurrent: 1,
            queue_timeout: std::time::Duration::from_millis(100),
            ..QueryConfig::default()
        },
    ));
    // Ten billion rows of a cross join: stopped at the time limit, on the query runtime, while this
    // (ingestion's) runtime stays free.
    let runaway = "SELECT COUNT(*) FROM (SELECT * FROM generate_series(1, 100000)) a, \
                   (SELECT * FROM generate_series(1, 100000)) b";
    let started = std::time::Instant::now();
    let busy = {
        let q = Arc::clone(&q);
        tokio::spawn(async move { q.sql(&t("a"), runaway).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    // The one slot is taken: the next query waits its queue_timeout, then is refused as busy.
    let e = q.sql(&t("a"), "SELECT 1").await.unwrap_err();
    assert!(matches!(e, Error::Busy(_)), "{e:?}");
    let e = busy.await.unwrap().unwrap_err();
    assert!(
        matches!(e, Error::Resources(ref m) if m.contains("longer than its limit")),
        "{e:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // The aborted query lets go of its slot at its next yield (DataFusion's operators yield
    // cooperatively); then queries run again.
    // Within a second: every join yields (`YieldingJoins`); it took 2.8 s without.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        match q.sql(&t("a"), "SELECT 1 AS x").await {
            Ok(out) => {
                assert_eq!(out.num_rows(), 1);
                break;
            }
            Err(Error::Busy(_)) if std::time::Instant::now() < deadline => {}
            Err(e) => panic!("the slot was not freed: {e:?}"),
        }
    }
}

#[tokio::test]
async fn escapes_and_writes_are_refused() {
    let (dir, lake) = lake_with(&[
        ("a", "pageview", 1, "203.0.113.1"),
        ("b", "pageview", 1, "203.0.113.2"),
    ])
    .await;
    let q = engine(&lake, QueryConfig::default());
    let b_file = format!("{}/events/tenant=b", dir.path().display());
    let refused = [
        format!("CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{b_file}'"),
        "COPY (SELECT 1) TO '/tmp/tacet-escape.csv'".to_owned(),
        "CREATE TABLE x AS SELECT 1".to_owned(),
        "DROP TABLE events".to_owned(),
        "SET datafusion.execution.batch_size = 1".to_owned(),
        "INSERT INTO events SELECT * FROM events".to_owned(),
    ];
    for sql in &refused {
        let e = q.sql(&t("a"), sql).await.unwrap_err();
        assert!(
            matches!(e, Error::Refused(_) | Error::User(_)),
            "{sql}: {e:?}"
        );
    }
    assert!(matches!(
        q.sql(&t("a"), &refused[0]).await.unwrap_err(),
        Error::Refused(_)
    ));
    assert!(matches!(
        q.sql(&t("a"), &refused[1]).await.unwrap_err(),
        Error::Refused(_)
    ));
    assert!(!std::path::Path::new("/tmp/tacet-escape.csv").exists());
    for sql in [
        format!("SELECT * FROM '{b_file}'"),
        "SELECT * FROM tenant_b.events".to_owned(),
        "SELECT * FROM information_schema.tables".to_owned(),
        "SELECT 1; SELECT 2".to_owned(),
        "SELEC 1".to_owned(),
        "".to_owned(),
    ] {
        let e = q.sql(&t("a"), &sql).await.unwrap_err();
        assert!(matches!(e, Error::User(_)), "{sql}: {e:?}");
    }
}

/// Regression: DataFusion's default listing cache hid files written after the first query.
#[tokio::test]
async fn files_written_after_a_query_are_seen_by_the_next() {
    let (dir, lake) = lake_with(&[("a", "pageview", 1, "203.0.113.1")]).await;
    let q = engine(&lake, QueryConfig::default());
    let count = |out: QueryOutput| ints(&out, 0)[0];
    assert_eq!(
        count(q.sql(&t("a"), "SELECT COUNT(*) FROM events").await.unwrap()),
        1
    );
    let more = lake_with(&[
        ("a", "pageview", 1, "203.0.113.2"),
        ("a", "crash", 1, "203.0.113.2"),
    ])
    .await;
    for f in crate::engine::tests::all_files(more.0.path()) {
        let rel = f.strip_prefix(more.0.path()).unwrap();
        let dest = dir
            .path()
            .join(rel)
            .with_file_name(format!("copy-{}", f.file_name().unwrap().to_str().unwrap()));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&f, dest).unwrap();
    }
    assert_eq!(
        count(q.sql(&t("a"), "SELECT COUNT(*) FROM events").await.unwrap()),
        3
    );
}

fn all_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_files(&p))
        } else {
            out.push(p)
        }
    }
    out
}

#[tokio::test]
async fn answers_are_cut_at_max_rows() {
    let (_dir, lake) = lake_with(&[("a", "pageview", 1, "203.0.113.1")]).await;
    let q = engine(
        &lake,
        QueryConfig {
            max_rows: 10,
            ..QueryConfig::default()
        },
    );
    let out = q
        .sql(&t("a"), "SELECT * FROM generate_series(1, 100)")
        .await
        .unwrap();
    assert_eq!((out.num_rows(), out.truncated), (10, true));
    let out = q
        .sql(&t("a"), "SELECT * FROM generate_series(1, 10)")
        .await
        .unwrap();
    assert_eq!((out.num_rows(), out.truncated), (10, false));
    let json = String::from_utf8(crate::format::to_json(&out.batches).unwrap()).unwrap();
    assert!(json.starts_with(r#"[{"value":1},"#), "{json}");
    assert_eq!(crate::format::to_json(&[]).unwrap(), b"[]");
}
