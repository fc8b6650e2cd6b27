//! What the pipeline holds between the log and the lake: events committed to the log and not yet part of
//! a flush (`Buffer`), the flush that has started (`FlushSet`), and the two together (`State`), all under
//! the pipeline's one lock.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use tacet_lake::PartitionKey;
use tacet_model::TenantId;
use tacet_privacy::{Packed, Span};

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) buffer: Buffer,
    /// A flush that has started (its range is in the log's checkpoint) and must finish before the next.
    pub(crate) pending: Option<FlushSet>,
    /// The flush running now: its first log sequence number and its partitions, for query snapshots.
    pub(crate) in_flight: Option<InFlight>,
}

impl State {
    pub(crate) fn buffered(&self) -> usize {
        self.buffer.len + self.pending.as_ref().map_or(0, |p| p.len)
    }

    pub(crate) fn oldest_millis(&self) -> Option<i64> {
        match (
            self.pending.as_ref().map(|p| p.oldest_millis),
            self.buffer.oldest_millis,
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A running flush's first log sequence number and partitions.
pub(crate) type InFlight = (u64, Vec<(PartitionKey, Arc<Packed>)>);

/// Events committed to the log and not yet part of a flush, in their log form.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    pub(crate) partitions: HashMap<PartitionKey, Packed>,
    pub(crate) len: usize,
    /// The highest log sequence number whose events are here.
    pub(crate) last_seq: u64,
    /// When the oldest event here was received (for the persistence-lag gauge).
    pub(crate) oldest_millis: Option<i64>,
}

impl Buffer {
    /// Puts the events of log record `seq` (`spans` of `payload`) in their partitions, which share the
    /// payload (no copy).
    pub(crate) fn push(
        &mut self,
        seq: u64,
        tenant: &TenantId,
        payload: &Bytes,
        spans: &[Span],
        now_millis: i64,
    ) {
        self.len += spans.len();
        self.last_seq = self.last_seq.max(seq);
        self.oldest_millis.get_or_insert(now_millis);
        // Runs on the log's writer thread, for every event: one key and one map lookup for each run of
        // events of one partition (most requests are one run), not for each event.
        let mut i = 0;
        for run in spans.chunk_by(|a, b| partition_of(a) == partition_of(b)) {
            let key = PartitionKey::for_event(tenant.clone(), run[0].kind, run[0].ts_millis);
            let partition = self.partitions.entry(key).or_default();
            for span in run {
                partition.push(payload, *span, arrival(seq, i, span));
                i += 1;
            }
        }
    }

    /// Puts what replay read here: room in each partition's rows for all of it first, then the records in
    /// order, so that no partition grows (and copies itself) while it is filled.
    pub(crate) fn extend_replayed(&mut self, records: &[Replayed], now_millis: i64) {
        let mut sizes: HashMap<PartitionKey, usize> = HashMap::new();
        for (_, tenant, _, spans) in records {
            for run in spans.chunk_by(|a, b| partition_of(a) == partition_of(b)) {
                let key = PartitionKey::for_event(tenant.clone(), run[0].kind, run[0].ts_millis);
                *sizes.entry(key).or_default() += run.len();
            }
        }
        for (key, rows) in sizes {
            self.partitions.entry(key).or_default().reserve(rows);
        }
        for (seq, tenant, payload, spans) in records {
            self.push(*seq, tenant, payload, spans, now_millis);
        }
    }
}

/// A replayed log record: its sequence number, tenant, payload and its events' spans in it.
pub(crate) type Replayed = (u64, TenantId, Bytes, Vec<Span>);

/// The order the `index`th event of log record `seq` arrived in, for events with a visitor id only: the
/// order exists to sort a visitor's events, and on an anonymised event it would say which other
/// anonymised events came in the same request, linking what anonymisation keeps apart.
fn arrival(seq: u64, index: usize, span: &Span) -> Option<i64> {
    span.identified
        .then(|| tacet_model::schema::arrival(seq, index))
}

/// What decides an event's partition besides its tenant: its kind and its UTC day (the day as
/// [`PartitionKey::for_event`] takes it, compared without building a date).
pub(crate) fn partition_of(e: &Span) -> (tacet_model::Kind, i64) {
    (e.kind, e.ts_millis.div_euclid(86_400_000))
}

/// The events of log records `from..=to`, one file per partition.
#[derive(Debug)]
pub(crate) struct FlushSet {
    pub(crate) from: u64,
    pub(crate) to: u64,
    /// Partitions, each with its events sorted by time and arrival (shared with query snapshots while the flush
    /// runs) and whether its file is already written.
    pub(crate) partitions: Vec<(PartitionKey, Arc<Packed>, bool)>,
    pub(crate) len: usize,
    pub(crate) oldest_millis: i64,
}

impl FlushSet {
    pub(crate) fn new(from: u64, to: u64, buffer: Buffer) -> Self {
        let mut partitions: Vec<_> = buffer
            .partitions
            .into_iter()
            .map(|(k, mut events)| {
                events.sort();
                (k, Arc::new(events), false)
            })
            .collect();
        partitions.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            from,
            to,
            partitions,
            len: buffer.len,
            oldest_millis: buffer.oldest_millis.unwrap_or_default(),
        }
    }
}
