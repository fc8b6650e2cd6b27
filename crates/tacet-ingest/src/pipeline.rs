//! From accepted request to durable Parquet: write-ahead log, buffer, flush.

use std::collections::HashMap;
use std::mem;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tacet_lake::{Lake, PartitionKey, background};
use tacet_model::{Clock, RawEvent, TenantId};
use tacet_privacy::{
    DropReason, EventBatch, Outcome, Packed, Privacy, RequestContext, Span, Tally, TenantPolicy,
    UserAgent, parse_user_agent,
};
use tacet_wal::{Replay, Wal};
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::buffer::{Buffer, FlushSet, State};
use crate::{Error, IngestConfig, KeyStore, Result, record};

/// Takes events in, writes them out.
#[derive(Debug)]
pub struct Pipeline {
    privacy: Privacy,
    keys: KeyStore,
    lake: Lake,
    wal: Arc<Wal>,
    clock: Arc<dyn Clock>,
    config: IngestConfig,
    /// Shared with the write-ahead log's commit callbacks, which fill the buffer in sequence order.
    state: Arc<Mutex<State>>,
    /// One flush at a time, so a slow write is never raced by the next tick.
    flushing: tokio::sync::Mutex<()>,
    wake: Arc<Notify>,
    /// Parsed user agents, in memory only; a handful of strings cover most traffic.
    user_agents: Mutex<HashMap<String, UserAgent>>,
    /// The other ingestion nodes sharing the key store, when there are several.
    peers: std::sync::OnceLock<Arc<crate::Peers>>,
    /// Why the last flush failed and since when (the first of a run of failures); `None` once one succeeds.
    lake_trouble: Mutex<Option<(String, i64)>>,
    /// The tenants' source maps, in the lake's object store: crash frames are symbolicated at accept.
    sourcemaps: crate::SourceMaps,
    /// The erasure records this process has applied (pipeline/forget.rs).
    erasures_applied: Mutex<std::collections::HashSet<String>>,
}

/// What became of the events of one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Events written to the log (and so, soon, to the lake).
    pub stored: usize,
    /// Of those, events stored without identifiers (DNT, GPC, missing consent).
    pub anonymised: usize,
    /// Events the tenant's policy dropped, by reason.
    pub dropped: Vec<(DropReason, usize)>,
}

impl Accepted {
    pub fn dropped_total(&self) -> usize {
        self.dropped.iter().map(|(_, n)| n).sum()
    }
}

/// A failed lake write in a few words for `/readyz`, which anyone reaching the server may read: the kind of
/// failure, never the object's path (it names tenants) or the store's answer (the log has both).
fn why_not_written(error: &str) -> &'static str {
    // object_store's retry errors always name their settings (`retry_timeout: 60s`): not a cause.
    let e = error
        .to_ascii_lowercase()
        .replace("retry_timeout", "")
        .replace("max_retries", "");
    let has = |words: &[&str]| words.iter().any(|w| e.contains(w));
    // Whole phrases only: the error also carries URLs and timestamps, where "403" or "dns" occur by chance.
    if has(&["nosuchbucket", "no such bucket", "bucket does not exist"]) {
        "the bucket does not exist"
    } else if has(&[
        "accessdenied",
        "access denied",
        "forbidden",
        "permission denied",
        "unauthenticated",
        "invalidaccesskeyid",
        "signaturedoesnotmatch",
    ]) {
        "the object store refused the write (credentials or bucket policy)"
    } else if has(&[
        "error trying to connect",
        "connection refused",
        "connection reset",
        "connection closed",
        "dns error",
        "error sending request",
        "broken pipe",
    ]) {
        "the object store cannot be reached"
    } else if has(&["timed out", "deadline has elapsed", "operation timed out"]) {
        "the object store did not answer in time"
    } else if has(&["no space left", "disk full", "quota exceeded"]) {
        "the store is full"
    } else {
        "the object store answered an error"
    }
}

/// How long an erasure waits for the other ingestion nodes to flush.
const PEER_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How often a node renews its heartbeat and answers other nodes' flush requests.
const PEER_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Entries kept in the user-agent cache before it is cleared.
const USER_AGENT_CACHE: usize = 4096;

/// What one flush did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlushSummary {
    pub files: usize,
    pub events: usize,
    /// Events whose write failed; the same flush is retried next time.
    pub failed: usize,
}

/// What recovery found in the write-ahead log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoverySummary {
    pub records: usize,
    pub events: usize,
    /// Records whose checksum was fine but whose content could not be decoded (skipped, logged).
    pub undecodable: usize,
    /// Bytes of torn or corrupt log tail that were cut off.
    pub cut_bytes: u64,
    /// Replayed events of people erased meanwhile, dropped.
    pub erased: usize,
    /// Reading the log and decoding its events back into the buffer (not the erasure check after).
    pub elapsed: std::time::Duration,
}

impl RecoverySummary {
    /// Events replayed a second, on the one thread that replays.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl Pipeline {
    pub fn new(
        privacy: Privacy,
        keys: KeyStore,
        lake: Lake,
        wal: Arc<Wal>,
        clock: Arc<dyn Clock>,
        config: IngestConfig,
    ) -> Self {
        Self {
            sourcemaps: crate::SourceMaps::new(Arc::clone(lake.store())),
            privacy,
            keys,
            lake,
            wal,
            clock,
            config,
            state: Arc::default(),
            flushing: tokio::sync::Mutex::new(()),
            wake: Arc::new(Notify::new()),
            user_agents: Mutex::default(),
            peers: std::sync::OnceLock::new(),
            lake_trouble: Mutex::default(),
            erasures_applied: Mutex::default(),
        }
    }

    fn user_agent(&self, ua: &str) -> UserAgent {
        let mut cache = self.user_agents.lock().expect("user agent cache lock");
        if let Some(parsed) = cache.get(ua) {
            return parsed.clone();
        }
        let parsed = parse_user_agent(ua);
        if cache.len() >= USER_AGENT_CACHE {
            cache.clear();
        }
        cache.insert(ua.to_owned(), parsed.clone());
        parsed
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    pub fn privacy(&self) -> &Privacy {
        &self.privacy
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// The tenants' source maps (upload, list, delete; used at accept).
    pub fn sourcemaps(&self) -> &crate::SourceMaps {
        &self.sourcemaps
    }

    pub fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }

    /// Why the lake cannot be written, if the last flush failed: what readiness reports. Events keep
    /// being accepted into the log meanwhile (up to `max_buffered_events`), and the failed flush is retried
    /// at every flusher tick; the first that succeeds clears this.
    pub fn lake_trouble(&self) -> Option<String> {
        let trouble = self.lake_trouble.lock().expect("lake trouble lock").clone();
        trouble.map(|(reason, since)| {
            let secs = (self.clock.now_millis() - since).max(0) / 1000;
            format!(
                "the lake cannot be written (for {secs} s): {reason}; {} events wait in the write-ahead \
                 log and the flush is retried every flush_interval (the server log has the details)",
                self.buffered()
            )
        })
    }

    fn set_lake_trouble(&self, reason: Option<String>) {
        metrics::gauge!("tacet_lake_writable").set(if reason.is_none() { 1.0 } else { 0.0 });
        let mut trouble = self.lake_trouble.lock().expect("lake trouble lock");
        *trouble = match (reason, trouble.take()) {
            (None, _) => None,
            (Some(r), Some((_, since))) => Some((r, since)),
            (Some(r), None) => Some((r, self.clock.now_millis())),
        };
    }

    /// Events accepted (durable in the log) but not yet in a Parquet file.
    pub fn buffered(&self) -> usize {
        self.state.lock().expect("pipeline lock").buffered()
    }

    /// Puts what the log replayed back in the buffer; a flush that a crash interrupted is redone first, with
    /// the same range, by the next [`Pipeline::flush`]. Call once, before accepting events.
    pub fn recover(&self, replay: Replay) -> RecoverySummary {
        let started = Instant::now();
        let mut summary = RecoverySummary {
            cut_bytes: replay.cut_bytes,
            ..RecoverySummary::default()
        };
        let now = self.clock.now_millis();
        let interrupted = replay.checkpoint.flushing;
        let (mut redo_records, mut records) = (Vec::new(), Vec::new());
        for (seq, payload) in replay.records {
            match record::decode(&payload) {
                Ok((tenant, spans)) => {
                    summary.records += 1;
                    summary.events += spans.len();
                    match interrupted {
                        Some((_, to)) if seq <= to => {
                            redo_records.push((seq, tenant, payload, spans))
                        }
                        _ => records.push((seq, tenant, payload, spans)),
                    }
                }
                Err(e) => {
                    summary.undecodable += 1;
                    error!(seq, error = %e, "a write-ahead log record cannot be decoded; skipping it");
                }
            }
        }
        let mut redo = Buffer::default();
        redo.extend_replayed(&redo_records, now);
        let mut state = self.state.lock().expect("pipeline lock");
        state.buffer.extend_replayed(&records, now);
        if let Some((from, to)) = interrupted {
            info!(
                from,
                to,
                events = redo.len,
                "redoing a flush that was interrupted"
            );
            state.pending = Some(FlushSet::new(from, to, redo));
        }
        drop(state);
        summary.elapsed = replay.read + started.elapsed();
        metrics::counter!("tacet_wal_replayed_records_total").increment(summary.records as u64);
        // Erasures made while this node was down (or before it saw them) reach what it replayed before
        // anything of that is queried or flushed.
        match self.apply_erasures() {
            Ok(n) => summary.erased = n,
            Err(e) => {
                error!(error = %e, "cannot read the erasure records; nothing is flushed until they can be read")
            }
        }
        summary
    }

    /// Applies the tenant's policy to the events of one request, writes what it keeps to the log (fsynced,
    /// grouped with concurrent requests) and buffers it. All or nothing: on error, nothing was taken.
    pub async fn accept(
        &self,
        tenant: &TenantId,
        policy: &TenantPolicy,
        ctx: RequestContext<'_>,
        mut events: Vec<RawEvent>,
    ) -> Result<Accepted> {
        let n = events.len();
        if n == 0 {
            return Ok(Accepted::default());
        }
        let limit = self.config.max_buffered_events;
        let buffered = self.buffered();
        if buffered + n > limit {
            metrics::counter!("tacet_ingest_events_dropped_total", "tenant" => tenant.to_string(), "reason" => "buffer_full")
                .increment(n as u64);
            return Err(Error::Backpressure { buffered, limit });
        }
        // Minified frames to original ones, before the fingerprint and the scrubber see them.
        self.sourcemaps.symbolicate(tenant, &mut events).await;
        let keys = self.keys.keys_for(tenant)?;
        let ua = self.user_agent(ctx.user_agent);
        let mut tally = Tally::default();
        let mut answer = Accepted::default();
        // People who objected: their identified events go no further than this.
        let objections = self.keys.objections(tenant)?;
        let events = if objections.is_empty() {
            events
        } else {
            let before = events.len();
            let kept: Vec<RawEvent> = events
                .into_iter()
                .filter(|e| {
                    e.user_id
                        .as_deref()
                        .is_none_or(|u| !objections.covers(tenant, u))
                })
                .collect();
            if kept.len() < before {
                answer
                    .dropped
                    .push((DropReason::Objected, before - kept.len()));
            }
            kept
        };
        let mut kept = Vec::with_capacity(n);
        let mut anonymised: Vec<(&'static str, u64)> = Vec::new();
        let outcomes = self
            .privacy
            .pseudonymise_all(tenant, policy, &keys, ctx, &ua, events, &mut tally);
        for outcome in outcomes {
            match outcome {
                Outcome::Keep(e) => {
                    if let Some(reason) = e.anonymised {
                        match anonymised.iter_mut().find(|(r, _)| *r == reason) {
                            Some((_, c)) => *c += 1,
                            None => anonymised.push((reason, 1)),
                        }
                    }
                    kept.push(e);
                }
                Outcome::Drop(reason) => {
                    match answer.dropped.iter_mut().find(|(r, _)| *r == reason) {
                        Some((_, c)) => *c += 1,
                        None => answer.dropped.push((reason, 1)),
                    }
                }
            }
        }
        for (reason, count) in anonymised {
            answer.anonymised += count as usize;
            metrics::counter!("tacet_privacy_anonymised_total", "tenant" => tenant.to_string(), "reason" => reason)
                .increment(count);
        }
        for (reason, count) in &answer.dropped {
            metrics::counter!("tacet_ingest_events_dropped_total", "tenant" => tenant.to_string(), "reason" => reason.as_str())
                .increment(*count as u64);
        }
        for (rule, count) in &tally.scrubbed {
            metrics::counter!("tacet_privacy_scrubbed_total", "tenant" => tenant.to_string(), "rule" => rule.to_string())
                .increment(*count);
        }
        if kept.is_empty() {
            return Ok(answer);
        }
        let n = kept.len();
        let (payload, spans) = record::encode(tenant, &kept);
        // The buffer keeps the record itself (the log hands it back after the sync): the events are
        // freed here, on this request's thread, not on the log's writer thread.
        drop(kept);
        self.check_partitions(tenant, &spans)?;
        let (state, wake, flush_events) = (
            Arc::clone(&self.state),
            Arc::clone(&self.wake),
            self.config.flush_events,
        );
        let (owner, now) = (tenant.clone(), self.clock.now_millis());
        let committed = self
            .wal
            .append(payload, move |seq, payload| {
                let payload = bytes::Bytes::from(payload);
                let mut st = state.lock().expect("pipeline lock");
                st.buffer.push(seq, &owner, &payload, &spans, now);
                if st.buffer.len >= flush_events {
                    wake.notify_one();
                }
            })
            .await;
        if let Err(e) = committed {
            let reason = if matches!(e, tacet_wal::Error::Full { .. }) {
                "wal_full"
            } else {
                "wal_error"
            };
            metrics::counter!("tacet_ingest_events_dropped_total", "tenant" => tenant.to_string(), "reason" => reason)
                .increment(n as u64);
            return Err(Error::Wal(e));
        }
        metrics::counter!("tacet_ingest_events_accepted_total", "tenant" => tenant.to_string())
            .increment(n as u64);
        answer.stored = n;
        Ok(answer)
    }

    /// Refuses events that would give `tenant` more than `max_partitions_per_tenant` partitions waiting
    /// for a flush (and wakes the flusher, so that the client's retry finds room).
    fn check_partitions(&self, tenant: &TenantId, events: &[Span]) -> Result<()> {
        let limit = self.config.max_partitions_per_tenant;
        // The request's partitions, found before taking the lock: a batch's events mostly share one, so
        // a key is built and looked up once a partition, not once an event.
        let mut parts: Vec<(tacet_model::Kind, i64, i64)> = Vec::new();
        for e in events {
            let (kind, day) = crate::buffer::partition_of(e);
            if parts.last().is_none_or(|&(k, d, _)| (k, d) != (kind, day)) {
                parts.push((kind, day, e.ts_millis));
            }
        }
        parts.sort_unstable_by_key(|&(kind, day, _)| (kind, day));
        parts.dedup_by_key(|&mut (kind, day, _)| (kind, day));
        let st = self.state.lock().expect("pipeline lock");
        let open = st
            .buffer
            .partitions
            .keys()
            .filter(|k| &k.tenant == tenant)
            .count();
        let adding = parts
            .into_iter()
            .map(|(kind, _, ts)| PartitionKey::for_event(tenant.clone(), kind, ts))
            .filter(|key| !st.buffer.partitions.contains_key(key))
            .count();
        if open + adding <= limit {
            return Ok(());
        }
        drop(st);
        self.wake.notify_one();
        metrics::counter!("tacet_ingest_events_dropped_total", "tenant" => tenant.to_string(), "reason" => "partitions")
            .increment(events.len() as u64);
        Err(Error::Partitions {
            open,
            adding,
            limit,
        })
    }

    /// Writes everything buffered, one Parquet file per partition named by the log range it covers, then
    /// lets the log drop those records. A failure leaves the flush pending; the next call retries it whole.
    pub async fn flush(&self) -> FlushSummary {
        let _one_at_a_time = self.flushing.lock().await;
        let mut summary = FlushSummary::default();
        if let Err(e) = self.erasures_checked() {
            warn!(error = %e, "flush postponed");
            summary.failed = self.buffered();
            return summary;
        }
        let started = Instant::now();
        let (set, fresh) = {
            let mut st = self.state.lock().expect("pipeline lock");
            let (set, fresh) = match st.pending.take() {
                Some(set) => (set, false),
                None if st.buffer.len == 0 => {
                    self.publish_gauges(&st);
                    return summary;
                }
                None => {
                    let buffer = mem::take(&mut st.buffer);
                    let from = self.wal.checkpoint().persisted + 1;
                    (FlushSet::new(from, buffer.last_seq, buffer), true)
                }
            };
            // Under the same lock: a query snapshot sees these events either here or in the buffer.
            st.in_flight = Some((
                set.from,
                set.partitions
                    .iter()
                    .map(|(k, e, _)| (k.clone(), Arc::clone(e)))
                    .collect(),
            ));
            (set, fresh)
        };
        let summary = self.flush_set(set, fresh, summary, started).await;
        self.state.lock().expect("pipeline lock").in_flight = None;
        summary
    }

    async fn flush_set(
        &self,
        mut set: FlushSet,
        fresh: bool,
        mut summary: FlushSummary,
        started: Instant,
    ) -> FlushSummary {
        let (from, to) = (set.from, set.to);
        if fresh && let Err(e) = self.on_wal(move |wal| wal.begin_flush(from, to)).await {
            warn!(error = %e, "cannot record the flush in the write-ahead log checkpoint; retrying later");
            self.set_lake_trouble(Some(
                "cannot record the flush in the write-ahead log checkpoint (local disk)".to_owned(),
            ));
            summary.failed = set.len;
            self.keep_pending(set);
            return summary;
        }
        // Several files at once, so that one slow partition does not hold up the others.
        let mut trouble = None;
        loop {
            let written: Vec<(usize, Result<()>)> = {
                use futures::StreamExt;
                let todo: Vec<(usize, PartitionKey, Arc<Packed>)> = set
                    .partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !p.2)
                    .map(|(i, p)| (i, p.0.clone(), Arc::clone(&p.1)))
                    .collect();
                let lake = &self.lake;
                let writes = todo.into_iter().map(|(i, key, events)| async move {
                    // Building the columns and encoding them are the flush's CPU work: both on the lake's
                    // encoder threads, below the requests' priority, never on an async worker.
                    let built = background::encode(move || EventBatch::from_packed(&events)).await;
                    let result = match built {
                        Ok(batch) => lake
                            .write(&key, (from, to), &batch)
                            .await
                            .map(|_| ())
                            .map_err(Error::Lake),
                        Err(e) => Err(Error::Arrow(e)),
                    };
                    (i, result)
                });
                futures::stream::iter(writes)
                    .buffer_unordered(self.config.flush_parallel_writes.max(1))
                    .collect()
                    .await
            };
            for (i, result) in written {
                let (key, events, written) = &mut set.partitions[i];
                match result {
                    Ok(()) => {
                        *written = true;
                        summary.files += 1;
                        summary.events += events.len();
                    }
                    Err(e) => {
                        warn!(partition = %key.prefix(), events = events.len(), error = %e,
                        "writing a Parquet file failed; the flush stays pending and is retried");
                        trouble.get_or_insert_with(|| why_not_written(&e.to_string()).to_owned());
                        summary.failed += events.len();
                    }
                }
            }
            // An erasure requested while the files were written (a slow flush its node stopped waiting
            // for): the person's events in them are dropped and those files written again, before the flush
            // counts as done.
            if summary.failed > 0 {
                break;
            }
            match self.erase_in_flight(&mut set) {
                Ok((0, _)) => break,
                Ok((_, again)) => {
                    summary.files -= again.0;
                    summary.events -= again.1;
                }
                Err(e) => {
                    warn!(error = %e, "flush not finished");
                    trouble = Some("the erasure records cannot be read".to_owned());
                    summary.failed = set.len;
                    break;
                }
            }
        }
        metrics::counter!("tacet_lake_files_written_total").increment(summary.files as u64);
        if summary.failed == 0 {
            match self.on_wal(move |wal| wal.finish_flush(to)).await {
                Ok(()) => {
                    let elapsed = started.elapsed();
                    metrics::histogram!("tacet_lake_flush_seconds").record(elapsed.as_secs_f64());
                    info!(
                        files = summary.files,
                        events = summary.events,
                        from = set.from,
                        to = set.to,
                        elapsed_ms = elapsed.as_millis() as u64,
                        "flushed"
                    );
                    self.publish_gauges(&self.state.lock().expect("pipeline lock"));
                    self.set_lake_trouble(None);
                    return summary;
                }
                Err(e) => {
                    warn!(error = %e, "cannot advance the write-ahead log checkpoint; retrying later");
                    trouble = Some(
                        "cannot advance the write-ahead log checkpoint (local disk)".to_owned(),
                    );
                    summary.failed = set.len;
                }
            }
        }
        self.set_lake_trouble(trouble);
        metrics::counter!("tacet_lake_flush_errors_total").increment(1);
        self.keep_pending(set);
        summary
    }

    fn keep_pending(&self, set: FlushSet) {
        let mut st = self.state.lock().expect("pipeline lock");
        // Under one lock, so a query snapshot never sees these events both pending and in flight.
        st.in_flight = None;
        st.pending = Some(set);
        self.publish_gauges(&st);
    }

    fn publish_gauges(&self, st: &State) {
        metrics::gauge!("tacet_ingest_buffered_events").set(st.buffered() as f64);
        let lag = st.oldest_millis().map_or(0.0, |t| {
            (self.clock.now_millis() - t).max(0) as f64 / 1000.0
        });
        metrics::gauge!("tacet_ingest_persistence_lag_seconds").set(lag);
    }

    /// Writes everything accepted so far to the lake and deletes it from the write-ahead log: the log's
    /// active segment is sealed, flushes run until the checkpoint passes its last record, and the
    /// segments so persisted are deleted. Erasure and offboarding call it first, so that what they then
    /// remove from the lake is not left in the log or the buffer. Events accepted meanwhile may stay in
    /// the buffer and the new segment.
    pub async fn persist_all(&self) -> Result<()> {
        self.wal.seal().await?;
        let sealed = self.wal.last_seq();
        for _ in 0..100 {
            if self.wal.checkpoint().persisted >= sealed {
                break;
            }
            let summary = self.flush().await;
            if summary.failed > 0 {
                return Err(Error::Incomplete(format!(
                    "{} events could not be written to the lake (see the log); nothing was removed, retry \
                     when the object store is back",
                    summary.failed
                )));
            }
        }
        let _between_flushes = self.flushing.lock().await;
        let checkpoint = self.wal.checkpoint();
        if checkpoint.persisted < sealed {
            return Err(Error::Incomplete(
                "the write-ahead log could not be flushed up to the request; retry".into(),
            ));
        }
        if checkpoint.flushing.is_none() {
            // Deletes the sealed segments, now fully persisted.
            let persisted = checkpoint.persisted;
            self.on_wal(move |wal| wal.finish_flush(persisted)).await?;
        }
        Ok(())
    }

    /// Runs `f` on the log from a blocking thread: a checkpoint is a file written, fsynced and renamed and
    /// its directory fsynced, and finishing a flush deletes segments; none of that holds an async worker.
    async fn on_wal<T: Send + 'static>(&self, f: impl FnOnce(&Wal) -> T + Send + 'static) -> T {
        let wal = Arc::clone(&self.wal);
        match tokio::task::spawn_blocking(move || f(&wal)).await {
            Ok(value) => value,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!(
                    "a write-ahead log job was cancelled (the runtime is shutting down): {e}"
                ),
            },
        }
    }

    /// Flushes every `flush_interval`, or sooner when `flush_events` are waiting, until the task is aborted.
    /// Stops a flusher task between flushes (never in the middle of one, whose events would then wait in
    /// the log for the next start).
    pub async fn stop_flusher(&self, flusher: tokio::task::JoinHandle<()>) {
        let _between_flushes = self.flushing.lock().await;
        flusher.abort();
        let _ = flusher.await;
    }

    pub fn spawn_flusher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut flushes = tokio::time::interval(me.config.flush_interval.max(PEER_TICK / 10));
            flushes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Other nodes learn this one is running, and get their flush requests answered, every
            // PEER_TICK whatever the flush interval.
            let mut peers = tokio::time::interval(PEER_TICK);
            peers.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = flushes.tick() => {}
                    () = me.wake.notified() => {}
                    _ = peers.tick() => {
                        me.answer_peers().await;
                        continue;
                    }
                }
                me.flush().await;
                if let Err(e) = me.keys.destroy_expired() {
                    error!(error = %e, "cannot destroy expired visitor salts; retrying at the next tick");
                }
            }
        })
    }
}

mod forget;
mod fresh;
mod peers;

#[cfg(test)]
mod tests;
