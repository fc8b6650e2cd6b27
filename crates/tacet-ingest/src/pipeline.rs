//! The buffer between requests and Parquet files.

use std::collections::HashMap;
use std::mem;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tacet_lake::{Lake, PartitionKey};
use tacet_model::{Clock, RawEvent, TenantId};
use tacet_privacy::{Event, EventBatch, Privacy, RequestContext, TenantPolicy, parse_user_agent};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::{Error, IngestConfig, KeyStore, Result};

/// Takes events in, writes them out.
#[derive(Debug)]
pub struct Pipeline {
    privacy: Privacy,
    keys: KeyStore,
    lake: Lake,
    clock: Arc<dyn Clock>,
    config: IngestConfig,
    buffer: Mutex<Buffer>,
    /// One flush at a time, so a slow write is never raced by the next tick.
    flushing: tokio::sync::Mutex<()>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct Buffer {
    partitions: HashMap<PartitionKey, Vec<Event>>,
    len: usize,
}

impl Buffer {
    fn push(&mut self, key: PartitionKey, events: impl IntoIterator<Item = Event>) {
        let slot = self.partitions.entry(key).or_default();
        let before = slot.len();
        slot.extend(events);
        self.len += slot.len() - before;
    }
}

/// What one flush did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlushSummary {
    pub files: usize,
    pub events: usize,
    /// Events whose write failed; they are back in the buffer for the next flush.
    pub failed: usize,
}

impl Pipeline {
    pub fn new(
        privacy: Privacy,
        keys: KeyStore,
        lake: Lake,
        clock: Arc<dyn Clock>,
        config: IngestConfig,
    ) -> Self {
        Self {
            privacy,
            keys,
            lake,
            clock,
            config,
            buffer: Mutex::default(),
            flushing: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
        }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Events accepted but not yet in a Parquet file.
    pub fn buffered(&self) -> usize {
        self.buffer.lock().expect("buffer lock").len
    }

    /// Pseudonymises and buffers events of one request; returns how many were taken.
    ///
    /// All or nothing: when the buffer is full, none are taken and [`Error::Backpressure`] says so.
    pub fn accept(
        &self,
        tenant: &TenantId,
        policy: &TenantPolicy,
        ctx: RequestContext<'_>,
        events: Vec<RawEvent>,
    ) -> Result<usize> {
        if events.is_empty() {
            return Ok(0);
        }
        let limit = self.config.max_buffered_events;
        let buffered = self.buffered();
        if buffered + events.len() > limit {
            return Err(Error::Backpressure { buffered, limit });
        }
        let keys = self.keys.keys_for(tenant)?;
        let ua = parse_user_agent(ctx.user_agent);
        let n = events.len();
        let mut by_partition: HashMap<PartitionKey, Vec<Event>> = HashMap::new();
        for raw in events {
            let key = PartitionKey::for_event(tenant.clone(), raw.kind, raw.ts_millis);
            let event = self
                .privacy
                .pseudonymise(tenant, policy, &keys, ctx, &ua, raw);
            by_partition.entry(key).or_default().push(event);
        }
        let len = {
            let mut buf = self.buffer.lock().expect("buffer lock");
            for (key, events) in by_partition {
                buf.push(key, events);
            }
            buf.len
        };
        if len >= self.config.flush_events {
            self.wake.notify_one();
        }
        Ok(n)
    }

    /// Writes everything buffered: one Parquet file per partition, rows sorted by time.
    pub async fn flush(&self) -> FlushSummary {
        let _one_at_a_time = self.flushing.lock().await;
        let taken = {
            let mut buf = self.buffer.lock().expect("buffer lock");
            mem::take(&mut *buf)
        };
        let mut summary = FlushSummary::default();
        if taken.len == 0 {
            return summary;
        }
        let started = Instant::now();
        for (key, mut events) in taken.partitions {
            events.sort_by_key(|e| e.ts_millis);
            match self.write(&key, &events).await {
                Ok(()) => {
                    summary.files += 1;
                    summary.events += events.len();
                }
                Err(e) => {
                    warn!(partition = %key.prefix(), events = events.len(), error = %e,
                        "flush failed; the events stay buffered and the next flush retries");
                    summary.failed += events.len();
                    self.buffer.lock().expect("buffer lock").push(key, events);
                }
            }
        }
        info!(
            files = summary.files,
            events = summary.events,
            failed = summary.failed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "flushed"
        );
        summary
    }

    async fn write(&self, key: &PartitionKey, events: &[Event]) -> Result<()> {
        let batch = EventBatch::from_events(events.iter())?;
        self.lake.write(key, &batch).await?;
        Ok(())
    }

    /// Flushes every `flush_interval`, or sooner when `flush_events` are waiting, until the task is aborted.
    pub fn spawn_flusher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(me.config.flush_interval) => {}
                    () = me.wake.notified() => {}
                }
                me.flush().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use tacet_model::{ManualClock, parse_event};

    fn pipeline(config: IngestConfig) -> (Arc<Pipeline>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_764_400_000_000));
        let keys = KeyStore::open(&dir.path().join("keys"), clock.clone()).unwrap();
        let lake = Lake::new(Arc::new(InMemory::new()));
        (
            Arc::new(Pipeline::new(Privacy::default(), keys, lake, clock, config)),
            dir,
        )
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
        RequestContext {
            ip: "203.0.113.1".parse().unwrap(),
            user_agent: "curl/8.0",
        }
    }

    #[tokio::test]
    async fn flush_writes_one_file_per_partition() {
        let (p, _dir) = pipeline(IngestConfig::default());
        let t = TenantId::new("t").unwrap();
        assert_eq!(
            p.accept(&t, &TenantPolicy::default(), ctx(), events(6))
                .unwrap(),
            6
        );
        assert_eq!(p.buffered(), 6);
        let s = p.flush().await;
        // 6 events an hour apart from 2025-11-28T03:20Z: kinds pageview/event, days 28th only.
        assert_eq!(
            s,
            FlushSummary {
                files: 2,
                events: 6,
                failed: 0
            }
        );
        assert_eq!(p.buffered(), 0);
        let files = p.lake().list_tenant_files(&t).await.unwrap();
        assert_eq!(files.len(), 2);
        assert!(
            files[0]
                .location
                .as_ref()
                .starts_with("events/tenant=t/kind=event/date=2025-11-28/part-")
        );
    }

    #[tokio::test]
    async fn full_buffer_refuses_all_of_a_request() {
        let (p, _dir) = pipeline(IngestConfig {
            max_buffered_events: 5,
            ..IngestConfig::default()
        });
        let t = TenantId::new("t").unwrap();
        p.accept(&t, &TenantPolicy::default(), ctx(), events(4))
            .unwrap();
        let err = p
            .accept(&t, &TenantPolicy::default(), ctx(), events(2))
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
            p.accept(&t, &TenantPolicy::default(), ctx(), events(2))
                .unwrap(),
            2
        );
    }
}
