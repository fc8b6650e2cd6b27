//! The ingestion pipeline, without HTTP: pseudonymise → write-ahead log → buffer → flush to the lake.
//!
//! ```text
//!  server ──RawEvent batch──► Pipeline::accept ──► Privacy::pseudonymise (keys from KeyStore)
//!                                   │ one record per request (record.rs)
//!                                   ▼
//!                     Wal::append: group commit + fdatasync; the commit callback copies the record's
//!                                   │ event bytes into the buffer in sequence order, then the client
//!                                   ▼ hears "accepted"
//!                     Buffer: partition (tenant, kind, day) → Packed (encoded events, rows by time)
//!                                   │  every flush_interval, at flush_events, on shutdown
//!                                   ▼
//!                     Wal::begin_flush(from, to) ─► Lake::write part-<from>-<to>.parquet per partition
//!                                   (fsynced) ─► Wal::finish_flush(to): checkpoint, old segments deleted
//! ```
//!
//! An acknowledged event is in an fsynced log record. After a crash, [`Pipeline::recover`] replays every
//! record after the checkpoint; a flush the crash interrupted is redone with the same range, so it writes
//! the same file names and no row is stored twice. A failed flush stays pending and is retried whole.
//! Memory is bounded by `max_buffered_events` and disk by the log's `max_bytes`: past either, `accept`
//! refuses (HTTP 503 with `Retry-After`).

mod buffer;
mod config;
mod datakeys;
mod erasures;
mod keystore;
mod objections;
mod peers;
mod pipeline;
mod record;
mod sourcemaps;
mod symbolicate;

use std::path::Path;

pub use config::IngestConfig;
pub use datakeys::{DataKeyring, MasterKey};
pub use erasures::Erasure;
pub use keystore::{KeyStore, identity};
pub use objections::{Change, Objections};
pub use peers::{Gap, Peers};
pub use pipeline::{Accepted, FlushSummary, Pipeline, RecoverySummary};
pub use sourcemaps::{MapInfo, SourceMaps};
pub use symbolicate::{Frame, parse_frame};
pub use tacet_state::Dir;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the pipeline could not take or store events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Too many events are waiting to be written; the client should retry later.
    #[error("{buffered} events are waiting to be written (limit {limit}); retry later")]
    Backpressure { buffered: usize, limit: usize },
    /// The request would open more partitions (kind and day) than one tenant may have waiting for a flush.
    #[error(
        "these events would open {adding} more partitions (kind and day) for this tenant, which already has \
         {open} waiting to be written (limit {limit}, ingest.max_partitions_per_tenant); retry after the next \
         flush, or send fewer distinct days at once"
    )]
    Partitions {
        open: usize,
        adding: usize,
        limit: usize,
    },
    /// The shared state (keys, records, registers) could not be read or written; the message names where.
    #[error("key store: {0}")]
    State(#[from] std::io::Error),
    #[error("key store at {path}: {source}")]
    Keys {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The write-ahead log refused or failed (full, disk full, I/O); nothing of the request was taken.
    #[error("write-ahead log: {0}")]
    Wal(#[from] tacet_wal::Error),
    #[error(transparent)]
    Lake(#[from] tacet_lake::Error),
    /// A job could not get everything into the lake first, so it did nothing.
    #[error("{0}")]
    Incomplete(String),
    #[error("building an Arrow batch: {0}")]
    Arrow(#[from] tacet_privacy::ArrowError),
    /// Input the caller can fix (a source map upload that is no source map).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    fn keys(path: &Path, source: std::io::Error) -> Self {
        Error::Keys {
            path: path.display().to_string(),
            source,
        }
    }
}
