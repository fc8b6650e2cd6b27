//! The write-ahead log: every accepted event is here, fsynced, before the client hears "accepted".
//!
//! ```text
//!  append(payload, on_commit) ──channel──► writer thread
//!                                            ├─ takes every request waiting (group commit, ≤ max_group_bytes)
//!                                            ├─ frames each: [len u32][crc32 u32][seq u64][payload]
//!                                            ├─ one write_all + one fdatasync for the whole group
//!                                            ├─ on_commit(seq) for each, in sequence order
//!                                            └─ answers each append with its sequence number
//!
//!  <dir>/<first seq, 20 digits>.wal   segments; a new one after segment_bytes, and at every open
//!  <dir>/spare.wal.tmp                the next segment, zero-filled ahead (groups overwrite, not append)
//!  <dir>/checkpoint.json              {"persisted": N, "flushing": [from, to] | null}
//! ```
//!
//! Records are opaque bytes here; the caller decides what they hold (Tacet: pseudonymised events only).
//! `open` replays every record after the checkpoint. A torn or corrupt record (short read, bad checksum) and
//! everything after it in its segment is cut off and reported, never a refusal to start. A failed write or
//! fdatasync truncates the segment back to where the group began, so nothing unacknowledged survives in it.
//!
//! The checkpoint lets the caller make persistence idempotent: before writing the files for records
//! `from..=to` it records `flushing = [from, to]`; after they are durable, `persisted = to`, and every
//! segment whose records are all at or below `to` is deleted.

mod checkpoint;
mod record;
mod segment;
mod spare;
mod writer;

use std::path::PathBuf;

pub use checkpoint::Checkpoint;
pub use record::{HEADER_BYTES, decode_records, encode_record};
pub use writer::{GroupSync, Replay, Wal, WalConfig};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log holds as many unpersisted bytes as it may; the caller should answer "retry later".
    #[error("the write-ahead log holds {bytes} unpersisted bytes (limit {limit}); retry later")]
    Full { bytes: u64, limit: u64 },
    /// Writing or syncing failed (disk full, I/O error). Nothing of the failed group is kept.
    #[error("write-ahead log I/O at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the write-ahead log writer has stopped")]
    Closed,
    #[error(
        "the checkpoint {path} is unreadable: {detail}; restore it or move it away (everything will be replayed)"
    )]
    Checkpoint { path: PathBuf, detail: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True when retrying later may succeed (full log, disk full, transient I/O).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Full { .. } | Error::Io { .. })
    }
}
