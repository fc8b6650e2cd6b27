//! The pipeline with a real log, key store and an in-memory object store.

use super::*;
use object_store::memory::InMemory;
use tacet_model::{ManualClock, parse_event};
use tacet_wal::WalConfig;

struct Setup {
    dir: tempfile::TempDir,
    store: Arc<InMemory>,
}

impl Setup {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            store: Arc::new(InMemory::new()),
        }
    }

    /// A pipeline over this setup's log and store, as a restarted process would build it.
    fn pipeline(&self, config: IngestConfig) -> (Arc<Pipeline>, RecoverySummary) {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_764_400_000_000));
        let keys = KeyStore::open(&self.dir.path().join("keys"), clock.clone()).unwrap();
        let (wal, replay) = Wal::open(&self.dir.path().join("wal"), WalConfig::default()).unwrap();
        let lake = Lake::new(self.store.clone());
        let p = Pipeline::new(Privacy::default(), keys, lake, Arc::new(wal), clock, config);
        let summary = p.recover(replay);
        (Arc::new(p), summary)
    }
}

fn events(n: usize) -> Vec<RawEvent> {
    (0..n)
        .map(|i| {
            let kind = if i % 2 == 0 { "pageview" } else { "event" };
            parse_event(
                serde_json::json!({"kind": kind, "url": "https://x.example/", "name": (i % 2 == 1).then_some("e"),
                    "ts": 1_764_300_000_000_i64 + (i as i64) * 3_600_000}),
                1_764_400_000_000,
            )
            .unwrap()
        })
        .collect()
}

fn ctx() -> RequestContext<'static> {
    RequestContext::new("203.0.113.1".parse().unwrap(), FIREFOX)
}

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";

#[tokio::test]
async fn the_policy_drops_bots_and_anonymises_signals_before_the_log() {
    let s = Setup::new();
    let (p, _) = s.pipeline(IngestConfig::default());
    let policy: TenantPolicy = toml::from_str("gpc = \"suppress\"").unwrap();
    let bot = RequestContext::new("203.0.113.1".parse().unwrap(), "curl/8.0");
    let answer = p.accept(&t(), &policy, bot, events(3)).await.unwrap();
    assert_eq!((answer.stored, answer.dropped_total()), (0, 3));
    assert_eq!(answer.dropped, vec![(DropReason::Bot, 3)]);
    let gpc = RequestContext { gpc: true, ..ctx() };
    let answer = p.accept(&t(), &policy, gpc, events(2)).await.unwrap();
    assert_eq!(answer.dropped, vec![(DropReason::Gpc, 2)]);
    let dnt = RequestContext { dnt: true, ..ctx() };
    let answer = p.accept(&t(), &policy, dnt, events(2)).await.unwrap();
    assert_eq!((answer.stored, answer.anonymised), (2, 2));
    assert_eq!(p.buffered(), 2, "only the anonymised events were logged");
    assert_eq!(p.wal().checkpoint().persisted, 0);
}

fn t() -> TenantId {
    TenantId::new("t").unwrap()
}

async fn stored_rows(store: &InMemory) -> (Vec<String>, usize) {
    use futures::TryStreamExt as _;
    use object_store::{ObjectStore, ObjectStoreExt};
    let metas: Vec<_> = store.list(None).try_collect().await.unwrap();
    let mut names = Vec::new();
    let mut rows = 0;
    for m in metas {
        let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        rows += reader.map(|b| b.unwrap().num_rows()).sum::<usize>();
        names.push(m.location.to_string());
    }
    names.sort();
    (names, rows)
}

#[tokio::test]
async fn flush_writes_one_file_per_partition_named_by_log_range() {
    let s = Setup::new();
    let (p, _) = s.pipeline(IngestConfig::default());
    assert_eq!(
        p.accept(&t(), &TenantPolicy::default(), ctx(), events(4))
            .await
            .unwrap()
            .stored,
        4
    );
    assert_eq!(
        p.accept(&t(), &TenantPolicy::default(), ctx(), events(2))
            .await
            .unwrap()
            .stored,
        2
    );
    assert_eq!(p.buffered(), 6);
    let encoded = tacet_lake::background::jobs_done();
    let summary = p.flush().await;
    assert_eq!(
        summary,
        FlushSummary {
            files: 2,
            events: 6,
            failed: 0
        }
    );
    // Each file's columns were built and encoded on the lake's encoder threads, not on an async worker
    // (other tests may add jobs meanwhile, never remove them; the last job's count may trail its value).
    let waited = std::time::Instant::now();
    while tacet_lake::background::jobs_done() < encoded + 4 {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(5),
            "the flush did not go through the encoder threads"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(p.buffered(), 0);
    let (names, rows) = stored_rows(&s.store).await;
    assert_eq!(rows, 6);
    assert_eq!(
        names,
        [
            "events/tenant=t/kind=event/date=2025-11-28/part-00000000000000000001-00000000000000000002.parquet",
            "events/tenant=t/kind=pageview/date=2025-11-28/part-00000000000000000001-00000000000000000002.parquet",
        ]
    );
    assert_eq!(p.wal().checkpoint().persisted, 2);
}

#[tokio::test]
async fn accepted_events_survive_a_restart_without_a_flush() {
    let s = Setup::new();
    let (p, _) = s.pipeline(IngestConfig::default());
    p.accept(&t(), &TenantPolicy::default(), ctx(), events(3))
        .await
        .unwrap();
    drop(p); // a crash: nothing flushed
    let (p, recovered) = s.pipeline(IngestConfig::default());
    assert_eq!((recovered.records, recovered.events), (1, 3));
    assert_eq!(p.buffered(), 3);
    p.flush().await;
    assert_eq!(stored_rows(&s.store).await.1, 3);
    // After a flush nothing is replayed again.
    drop(p);
    let (p, recovered) = s.pipeline(IngestConfig::default());
    assert_eq!((recovered.records, p.buffered()), (0, 0));
}

#[tokio::test]
async fn an_interrupted_flush_is_redone_with_the_same_names_and_no_duplicates() {
    let s = Setup::new();
    let (p, _) = s.pipeline(IngestConfig::default());
    p.accept(&t(), &TenantPolicy::default(), ctx(), events(4))
        .await
        .unwrap();
    // Simulate a crash in the middle of a flush: the range is recorded and one file of two is written.
    p.wal().begin_flush(1, 1).unwrap();
    let first = {
        let st = p.state.lock().unwrap();
        let (key, evs) = st
            .buffer
            .partitions
            .iter()
            .next()
            .map(|(k, v)| (k.clone(), v.clone()))
            .unwrap();
        (key, evs)
    };
    let batch = EventBatch::from_packed(&first.1).unwrap();
    p.lake().write(&first.0, (1, 1), &batch).await.unwrap();
    drop(p);
    // Events that arrive after the restart belong to a later range.
    let (p, _) = s.pipeline(IngestConfig::default());
    p.accept(&t(), &TenantPolicy::default(), ctx(), events(2))
        .await
        .unwrap();
    assert_eq!(p.buffered(), 6);
    // Queries see all six, and hide the lake files of the interrupted range (one is already written).
    let (batches, threshold) = p.buffered_snapshot(&t()).unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 6);
    assert_eq!(threshold, 0);
    let first_flush = p.flush().await;
    assert_eq!(
        first_flush.events, 4,
        "the interrupted range is redone alone"
    );
    p.flush().await;
    let (names, rows) = stored_rows(&s.store).await;
    assert_eq!(rows, 6, "{names:?}");
    assert_eq!(
        names
            .iter()
            .filter(|n| n.contains("part-00000000000000000001-00000000000000000001"))
            .count(),
        2
    );
    assert_eq!(
        names
            .iter()
            .filter(|n| n.contains("part-00000000000000000002-00000000000000000002"))
            .count(),
        2
    );
}

#[tokio::test]
async fn full_buffer_refuses_all_of_a_request() {
    let s = Setup::new();
    let (p, _) = s.pipeline(IngestConfig {
        max_buffered_events: 5,
        ..IngestConfig::default()
    });
    p.accept(&t(), &TenantPolicy::default(), ctx(), events(4))
        .await
        .unwrap();
    let err = p
        .accept(&t(), &TenantPolicy::default(), ctx(), events(2))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backpressure {
                buffered: 4,
                limit: 5
            }
        ),
        "{err}"
    );
    assert_eq!(p.buffered(), 4);
    p.flush().await;
    assert_eq!(
        p.accept(&t(), &TenantPolicy::default(), ctx(), events(2))
            .await
            .unwrap()
            .stored,
        2
    );
}

/// `n` events of `kind` on the day `days` before the fixtures' events (each partition a kind and a day).
fn on_day(kind: &str, days: i64, n: usize) -> Vec<RawEvent> {
    (0..n)
        .map(|i| {
            let mut event = serde_json::json!({"kind": kind, "url": "https://x.example/",
                "ts": 1_764_300_000_000_i64 - days * 86_400_000 + (i as i64) * 60_000});
            match kind {
                "event" => event["name"] = "e".into(),
                "crash" => event["message"] = "boom".into(),
                _ => {}
            }
            parse_event(event, 1_764_400_000_000).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_request_past_the_partition_cap_is_refused_whole_and_each_partition_counts_once() {
    let s = Setup::new();
    let (p, _) = s.pipeline(IngestConfig {
        max_partitions_per_tenant: 3,
        ..IngestConfig::default()
    });
    let policy = TenantPolicy::default();
    let accept = |tenant: &str, events: Vec<RawEvent>| {
        let (p, policy, tenant) = (p.clone(), policy.clone(), TenantId::new(tenant).unwrap());
        async move { p.accept(&tenant, &policy, ctx(), events).await }
    };
    // Three partitions, their events interleaved and repeated: exactly the room there is.
    let mut batch = Vec::new();
    for _ in 0..3 {
        batch.extend(on_day("pageview", 0, 2));
        batch.extend(on_day("event", 0, 1));
        batch.extend(on_day("pageview", 1, 1));
    }
    assert_eq!(accept("t", batch).await.unwrap().stored, 12);
    // A fourth is refused, and the whole request with it.
    let mut batch = on_day("pageview", 0, 2);
    batch.extend(on_day("pageview", 2, 3));
    batch.extend(on_day("event", 0, 1));
    let err = accept("t", batch).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Partitions {
                open: 3,
                adding: 1,
                limit: 3
            }
        ),
        "{err}"
    );
    assert_eq!(p.buffered(), 12);
    // The open partitions still take events, and another tenant has its own cap: four new partitions
    // in one request (each in two runs of events) are four, not eight, and too many.
    let mut batch = on_day("event", 0, 1);
    batch.extend(on_day("pageview", 1, 2));
    assert_eq!(accept("t", batch).await.unwrap().stored, 3);
    let mut batch = Vec::new();
    for _ in 0..2 {
        for (kind, day) in [("pageview", 0), ("pageview", 1), ("crash", 1), ("event", 2)] {
            batch.extend(on_day(kind, day, 1));
        }
    }
    let err = accept("u", batch.clone()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Partitions {
                open: 0,
                adding: 4,
                limit: 3
            }
        ),
        "{err}"
    );
    batch.retain(|e| e.kind != tacet_model::Kind::Event);
    assert_eq!(accept("u", batch).await.unwrap().stored, 6);
    assert_eq!(p.buffered(), 21);
}

#[tokio::test]
async fn a_lake_that_cannot_be_written_is_reported_until_a_flush_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_764_400_000_000));
    let keys = KeyStore::open(&dir.path().join("keys"), clock.clone()).unwrap();
    let (wal, _) = Wal::open(&dir.path().join("wal"), WalConfig::default()).unwrap();
    let root = dir.path().join("lake");
    let lake = Lake::local(&root).unwrap();
    let p = Pipeline::new(
        Privacy::default(),
        keys,
        lake,
        Arc::new(wal),
        clock,
        IngestConfig::default(),
    );
    assert_eq!(p.lake_trouble(), None);
    // A file where the lake's events directory must go: every write fails, even for root.
    std::fs::write(root.join("events"), b"in the way").unwrap();
    p.accept(&t(), &TenantPolicy::default(), ctx(), events(2))
        .await
        .unwrap();
    assert_eq!(p.flush().await.failed, 2);
    let trouble = p.lake_trouble().expect("the failed flush is reported");
    assert!(
        trouble.starts_with("the lake cannot be written (for 0 s): ")
            && trouble.contains("2 events wait in the write-ahead log"),
        "{trouble}"
    );
    // The reason never names a path (tenants) or the store's own words.
    assert!(
        !trouble.contains("tenant=") && !trouble.contains("events/"),
        "{trouble}"
    );
    // The store is back: the retried flush clears it.
    std::fs::remove_file(root.join("events")).unwrap();
    assert_eq!(p.flush().await.failed, 0);
    assert_eq!(p.lake_trouble(), None);
}

#[test]
fn a_failed_write_is_named_by_its_kind_never_by_chance_digits() {
    let cases = [
        (
            "object store: Generic S3 error: Error after 10 retries in 1.2s, max_retries: 10, retry_timeout: 1s, \
             source: error sending request for url (http://127.0.0.1:9000/lake/events/tenant=a/kind=pageview/\
             date=2026-12-04/part-1-3.parquet?x-amz-date=20261204T014033Z): client error (Connect): \
             tcp connect error: Connection refused (os error 111)",
            "the object store cannot be reached",
        ),
        (
            "object store: Generic S3 error: Received redirect without LOCATION, this normally indicates an \
             incorrectly configured region (status 301, 20261204T140312Z)",
            "the object store answered an error",
        ),
        (
            "object store: Generic S3 error: Client error with status 403 Forbidden: <Code>AccessDenied</Code>",
            "the object store refused the write (credentials or bucket policy)",
        ),
        (
            "object store: Generic S3 error: <Code>NoSuchBucket</Code>",
            "the bucket does not exist",
        ),
    ];
    for (error, expected) in cases {
        assert_eq!(why_not_written(error), expected, "{error}");
    }
}

fn identified(user: &str, n: usize) -> Vec<RawEvent> {
    (0..n)
        .map(|i| {
            parse_event(
                serde_json::json!({"kind": "pageview", "url": format!("https://x.example/{i}"),
                    "user_id": user, "ts": 1_764_300_000_000_i64 + (i as i64) * 1000}),
                1_764_400_000_000,
            )
            .unwrap()
        })
        .collect()
}

/// An erasure record reaches what a node holds: the person's buffered events at its next flush, and the
/// events its log replays after it was down, before they can be flushed; the person's events accepted
/// after the node applied the record are new, and kept.
#[tokio::test]
async fn erasure_records_drop_held_and_replayed_events_of_the_person_only() {
    let s = Setup::new();
    let policy = TenantPolicy::default();
    let (p, _) = s.pipeline(IngestConfig::default());
    p.accept(&t(), &policy, ctx(), identified("alice", 3))
        .await
        .unwrap();
    p.accept(&t(), &policy, ctx(), identified("bob", 2))
        .await
        .unwrap();
    assert_eq!(p.buffered(), 5);
    // Another node records the erasure, which ends waiting for a node that did not answer (7, which is
    // not registered here, so the record goes once this node applied it); this one applies it at its
    // next flush.
    let id = p.keys().record_erasure(&t(), "alice").unwrap().unwrap();
    p.keys().settle_erasure(&t(), &id, &[7]).unwrap();
    assert_eq!(p.keys().erasures(&t()).unwrap().len(), 1);
    p.flush().await;
    assert_eq!(stored_rows(&s.store).await.1, 2, "Bob's two only");
    assert!(
        p.keys().erasures(&t()).unwrap().is_empty(),
        "no trace kept once applied"
    );
    // Alice comes back afterwards: new processing, kept.
    p.accept(&t(), &policy, ctx(), identified("alice", 1))
        .await
        .unwrap();
    p.flush().await;
    assert_eq!(stored_rows(&s.store).await.1, 3);

    // A node that is down during an erasure: its log replays the events, the record drops them first.
    p.accept(&t(), &policy, ctx(), identified("alice", 4))
        .await
        .unwrap();
    p.accept(&t(), &policy, ctx(), identified("carol", 1))
        .await
        .unwrap();
    drop(p); // killed: nothing flushed
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_764_400_000_000));
    let other = KeyStore::open(&s.dir.path().join("keys"), clock).unwrap();
    let id = other.record_erasure(&t(), "alice").unwrap().unwrap();
    other.settle_erasure(&t(), &id, &[7]).unwrap();
    let (p, recovered) = s.pipeline(IngestConfig::default());
    assert_eq!((recovered.events, recovered.erased), (5, 4));
    assert_eq!(p.buffered(), 1, "Carol's event only");
    let (batches, _) = p.buffered_snapshot(&t()).unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    p.flush().await;
    assert_eq!(stored_rows(&s.store).await.1, 4);
    assert!(p.keys().erasures(&t()).unwrap().is_empty());
    // And the records already applied do not touch what is accepted after the restart.
    p.accept(&t(), &policy, ctx(), identified("alice", 2))
        .await
        .unwrap();
    p.flush().await;
    assert_eq!(stored_rows(&s.store).await.1, 6);
}

/// A store whose writes of lake files wait at a gate the test opens: a flush slow to write its files.
#[derive(Debug)]
struct Gated {
    inner: Arc<InMemory>,
    gate: tokio::sync::Semaphore,
    entered: tokio::sync::Notify,
}

impl std::fmt::Display for Gated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gated({})", self.inner)
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for Gated {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        if location.as_ref().contains("/part-") {
            self.entered.notify_one();
            self.gate.acquire().await.expect("open").forget();
        }
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
        self.inner.list(prefix)
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

/// A flush already writing its files when an erasure is recorded elsewhere (the erasure's node stopped
/// waiting for this slow node and rewrote the lake without these files): before the flush counts as
/// done, the person's events are dropped from it and its files written again, so none of them stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_recorded_while_a_flush_writes_reaches_its_files() {
    let s = Setup::new();
    let gated = Arc::new(Gated {
        inner: s.store.clone(),
        gate: tokio::sync::Semaphore::new(0),
        entered: tokio::sync::Notify::new(),
    });
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_764_400_000_000));
    let keys = KeyStore::open(&s.dir.path().join("keys"), clock.clone()).unwrap();
    let (wal, _) = Wal::open(&s.dir.path().join("wal"), WalConfig::default()).unwrap();
    let p = Arc::new(Pipeline::new(
        Privacy::default(),
        keys,
        Lake::new(gated.clone()),
        Arc::new(wal),
        clock.clone(),
        IngestConfig::default(),
    ));
    let policy = TenantPolicy::default();
    p.accept(&t(), &policy, ctx(), identified("alice", 3))
        .await
        .unwrap();
    p.accept(&t(), &policy, ctx(), identified("bob", 2))
        .await
        .unwrap();
    let flushing = tokio::spawn({
        let p = Arc::clone(&p);
        async move { p.flush().await }
    });
    gated.entered.notified().await;
    // The file is being written; another node records Alice's erasure and, tired of waiting, settles it
    // waiting for this node (7 is not registered here).
    let other = KeyStore::open(&s.dir.path().join("keys"), clock).unwrap();
    let id = other.record_erasure(&t(), "alice").unwrap().unwrap();
    other.settle_erasure(&t(), &id, &[7]).unwrap();
    gated.gate.add_permits(100);
    let summary = flushing.await.unwrap();
    assert_eq!((summary.failed, summary.events), (0, 2), "{summary:?}");
    assert_eq!(stored_rows(&s.store).await.1, 2, "Bob's two only");
    assert_eq!(p.wal().checkpoint().persisted, p.wal().last_seq());
    // The next flush settles the record (nothing else holds Alice's events).
    p.flush().await;
    assert!(p.keys().erasures(&t()).unwrap().is_empty());
}
