//! The spare segment: a file of `segment_bytes` zeros, written and synced ahead of need on its own thread, that
//! the writer renames into place when it starts a new segment.
//!
//! Why: a group appended to the end of a file changes its size and allocates blocks, so its fdatasync must
//! also write that metadata (the inode, the block map) before it returns; on a journalled ext4 that is a
//! journal commit, which waits for whatever else the commit carries (the lake's new Parquet files, the
//! checkpoint). A group written over blocks that are already allocated and written needs only its data
//! and a cache flush. Measured on this machine's ext4 (mounted without a journal: `perf` shows
//! `ext4_fsync_nojournal`, whose append path writes the inode synchronously) with a concurrent writer of
//! 3 MiB files (`benches/README.md`, 2026-12-05 late): fdatasync p50 0.25 -> 0.13 ms, p99 1.1-1.8 -> 0.3-0.5
//! ms. `fallocate` is not enough: its extents are "unwritten", and the first write into each converts it,
//! a metadata change again. PostgreSQL zero-fills its WAL segments for the same reason.
//!
//! Zeros never parse as a record (the checksum of a zero sequence number is not zero), so a segment's
//! valid records end where its zeros begin; `open` cuts such a tail without calling it damage.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::warn;

/// The spare's name: not a `.wal` file, so never listed as a segment, and deleted at every open (a crash
/// may have left it half written).
pub(crate) const FILE: &str = "spare.wal.tmp";

/// Zeros are written (and synced) this many bytes at a time, so that the device's queue never holds more
/// of them than this in front of a group's fdatasync.
const CHUNK: usize = 1 << 20;

/// After a failure (a full disk), no new spare is started for this long: the writer appends meanwhile.
const BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Preparing,
    Ready,
    Failed(Instant),
}

/// The writer's handle on the spare and on the thread that prepares it.
pub(crate) struct Spare {
    path: PathBuf,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    tx: Option<Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spare {
    /// Deletes a spare left by an earlier process and starts the thread (idle until asked).
    pub(crate) fn start(dir: &Path, bytes: u64) -> std::io::Result<Self> {
        let path = dir.join(FILE);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let state = Arc::new(Mutex::new(State::Idle));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let (path, state, stop) = (path.clone(), Arc::clone(&state), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("tacet-wal-spare".into())
                .spawn(move || prepare_on_request(&rx, &path, bytes, &state, &stop))?
        };
        Ok(Self {
            path,
            state,
            stop,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Asks for a spare unless one is ready or being prepared (or the last attempt failed recently).
    pub(crate) fn request(&self) {
        let mut state = self.state.lock().expect("spare lock");
        let start = match *state {
            State::Idle => true,
            State::Failed(at) => at.elapsed() >= BACKOFF,
            State::Preparing | State::Ready => false,
        };
        if start && let Some(tx) = &self.tx {
            *state = State::Preparing;
            let _ = tx.send(());
        }
    }

    /// The ready spare's path, if there is one; it is the caller's from here (to rename into place).
    pub(crate) fn take(&self) -> Option<&Path> {
        let mut state = self.state.lock().expect("spare lock");
        if *state == State::Ready {
            *state = State::Idle;
            Some(&self.path)
        } else {
            None
        }
    }

    /// Whether a spare is ready, readable from other threads.
    pub(crate) fn watch(&self) -> SpareWatch {
        SpareWatch(Arc::clone(&self.state))
    }
}

/// A read-only view of whether a spare is ready ([`Spare::watch`]).
pub(crate) struct SpareWatch(Arc<Mutex<State>>);

impl SpareWatch {
    pub(crate) fn ready(&self) -> bool {
        *self.0.lock().expect("spare lock") == State::Ready
    }
}

impl Drop for Spare {
    /// Stops the thread (between two chunks) and deletes the spare: a closed log leaves only its segments.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}

fn prepare_on_request(
    rx: &Receiver<()>,
    path: &Path,
    bytes: u64,
    state: &Mutex<State>,
    stop: &AtomicBool,
) {
    while rx.recv().is_ok() {
        let done = zero_fill(path, bytes, stop);
        let mut state = state.lock().expect("spare lock");
        *state = match done {
            Ok(true) => State::Ready,
            Ok(false) => State::Idle, // stopping
            Err(e) => {
                warn!(path = %path.display(), error = %e,
                    "cannot prepare the write-ahead log's next segment; appending instead (retried in 30 s)");
                let _ = fs::remove_file(path);
                State::Failed(Instant::now())
            }
        };
    }
}

/// Writes `bytes` zeros to a new `path` and syncs them; `Ok(false)` if asked to stop first.
fn zero_fill(path: &Path, bytes: u64, stop: &AtomicBool) -> std::io::Result<bool> {
    let mut file: File = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    let zeros = vec![0u8; CHUNK];
    let mut written = 0u64;
    while written < bytes {
        if stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let n = (bytes - written).min(CHUNK as u64) as usize;
        file.write_all(&zeros[..n])?;
        file.sync_data()?;
        written += n as u64;
    }
    file.sync_all()?;
    Ok(true)
}
