//! Opening (with replay), the group-commit writer thread, and checkpoints.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use serde::Deserialize;
use tracing::{error, info, warn};

use crate::checkpoint::{Checkpoint, sync_dir};
use crate::record::{decode_records, encode_record};
use crate::segment::{self, Segment};
use crate::spare::{Spare, SpareWatch};
use crate::{Error, Result};

/// Write-ahead log settings (`[wal]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalConfig {
    /// Start a new segment file once the current one holds this many bytes.
    pub segment_bytes: u64,
    /// Refuse new records (HTTP 503, retry later) while the log's segments hold this many bytes, e.g. while
    /// the object store is unreachable and nothing can be persisted. Bounds the disk the log uses.
    pub max_bytes: u64,
    /// Most bytes one group commit writes with one fdatasync.
    pub max_group_bytes: usize,
    /// Zero-fill each next segment ahead of need on a thread of its own, so that groups overwrite
    /// allocated blocks and their fdatasync writes no filesystem metadata (see `spare.rs`). Costs one
    /// write of zeros for every byte of log; off (append to a growing file) when false. Starts once the
    /// log has written a sixteenth of `segment_bytes` into a segment.
    pub preallocate: bool,
    /// How a group is made durable before anything in it is acknowledged: `fdatasync`. Not in the
    /// configuration file; tests put a fake here (one that fails proves nothing is acknowledged without
    /// it, one that counts that each acknowledged group was synced).
    #[serde(skip)]
    pub sync: GroupSync,
}

/// The durability step of a group commit ([`WalConfig::sync`]).
#[derive(Clone, Copy)]
pub struct GroupSync(pub fn(&File) -> std::io::Result<()>);

impl Default for GroupSync {
    fn default() -> Self {
        GroupSync(File::sync_data)
    }
}

impl std::fmt::Debug for GroupSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == GroupSync::default() {
            f.write_str("fdatasync")
        } else {
            f.write_str("a replaced sync")
        }
    }
}

impl PartialEq for GroupSync {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::fn_addr_eq(self.0, other.0)
    }
}

impl Eq for GroupSync {}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            max_bytes: 1 << 30,
            max_group_bytes: 8 << 20,
            preallocate: true,
            sync: GroupSync::default(),
        }
    }
}

/// What `open` found: the records to replay and the damage it cut off.
#[derive(Debug, Default)]
pub struct Replay {
    pub checkpoint: Checkpoint,
    /// Every record after `checkpoint.persisted`, in sequence order: each payload a slice of its segment
    /// as read (no copy; a slice keeps its segment's bytes alive).
    pub records: Vec<(u64, Bytes)>,
    /// Bytes of torn or corrupt data cut from segment tails.
    pub cut_bytes: u64,
    /// How long reading and checking the segments took.
    pub read: std::time::Duration,
}

type OnCommit = Box<dyn FnOnce(u64, Vec<u8>) + Send>;

/// What the writer thread is asked to do.
enum Message {
    Append(Request),
    /// Start a new segment (if the active one holds anything), so that every record so far can be deleted
    /// with its segment once persisted.
    Seal(tokio::sync::oneshot::Sender<Result<()>>),
}

struct Request {
    payload: Vec<u8>,
    on_commit: OnCommit,
    reply: tokio::sync::oneshot::Sender<Result<u64>>,
    /// When it was handed to the writer thread: `tacet_wal_commit_seconds` is the wait from here to
    /// its acknowledgement (the group before it, its own write and fdatasync).
    queued: Instant,
}

struct Shared {
    dir: PathBuf,
    config: WalConfig,
    segments: Mutex<Vec<Segment>>,
    checkpoint: Mutex<Checkpoint>,
    /// Bytes in all segment files.
    bytes: AtomicU64,
    last_seq: AtomicU64,
    spare: SpareWatch,
}

/// The log. Cheap to share behind an `Arc`; dropping the last handle stops the writer thread.
pub struct Wal {
    tx: Mutex<Option<Sender<Message>>>,
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.shared.dir)
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl Wal {
    /// Opens the log in `dir` (created if missing), cuts damaged tails, deletes fully persisted segments,
    /// and returns the records to replay. New records go to a new segment.
    pub fn open(dir: &Path, config: WalConfig) -> Result<(Self, Replay)> {
        let started = std::time::Instant::now();
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let checkpoint = Checkpoint::load(dir)?;
        let mut replay = Replay {
            checkpoint,
            ..Replay::default()
        };
        let mut segments = Vec::new();
        let mut max_seq = checkpoint.persisted;
        for (first_seq, path) in segment::list(dir)? {
            let data = Bytes::from(fs::read(&path).map_err(|e| Error::io(&path, e))?);
            let (records, end) = decode_records(&data);
            if end < data.len() {
                // A prepared segment's unused zeros are not damage; anything up to its last non-zero
                // byte is.
                let cut = data[end..]
                    .iter()
                    .rposition(|b| *b != 0)
                    .map_or(0, |i| i + 1) as u64;
                if cut > 0 {
                    warn!(segment = %path.display(), valid_bytes = end, cut_bytes = cut,
                        "write-ahead log segment has a torn or corrupt tail; cutting it off");
                    metrics::counter!("tacet_wal_cut_bytes_total").increment(cut);
                }
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                f.set_len(end as u64)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| Error::io(&path, e))?;
                replay.cut_bytes += cut;
            }
            let last_seq = records
                .last()
                .map_or(first_seq.saturating_sub(1), |(s, _)| *s);
            max_seq = max_seq.max(last_seq);
            for (seq, payload) in records {
                if seq > checkpoint.persisted {
                    replay.records.push((seq, data.slice_ref(payload)));
                }
            }
            if last_seq <= checkpoint.persisted {
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            } else {
                segments.push(Segment {
                    path,
                    last_seq,
                    bytes: end as u64,
                });
            }
        }
        replay.records.sort_by_key(|(s, _)| *s);
        replay.read = started.elapsed();
        let next = max_seq + 1;
        let active_path = segment::path_for(dir, next);
        let active = open_segment(&active_path)?;
        sync_dir(dir)?;
        let spare = Spare::start(dir, config.segment_bytes).map_err(|e| Error::io(dir, e))?;
        // A process stopped before its first record leaves an empty segment with this very name: it becomes
        // the active one again. Listed twice, a flush would delete it as an old segment while it is written.
        if segments.last().is_some_and(|s| s.path == active_path) {
            segments.pop();
        }
        segments.push(Segment {
            path: active_path.clone(),
            last_seq: max_seq,
            bytes: 0,
        });
        let bytes: u64 = segments.iter().map(|s| s.bytes).sum();
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            config,
            segments: Mutex::new(segments),
            checkpoint: Mutex::new(checkpoint),
            bytes: AtomicU64::new(bytes),
            last_seq: AtomicU64::new(max_seq),
            spare: spare.watch(),
        });
        publish_gauges(&shared);
        if !replay.records.is_empty() {
            info!(
                records = replay.records.len(),
                persisted = checkpoint.persisted,
                "replaying the write-ahead log"
            );
        }
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            shared: Arc::clone(&shared),
            file: active,
            path: active_path,
            next_seq: next,
            prepared: false,
            spare,
        };
        let thread = std::thread::Builder::new()
            .name("tacet-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::io(dir, e))?;
        Ok((
            Self {
                tx: Mutex::new(Some(tx)),
                shared,
                thread: Mutex::new(Some(thread)),
            },
            replay,
        ))
    }

    /// Appends a record and waits until it is on disk (fdatasync). `on_commit` runs on the writer thread with
    /// the record's sequence number and its payload (handed back, so the caller can keep it without a copy), in sequence order, before this returns; keep it short.
    pub async fn append(
        &self,
        payload: Vec<u8>,
        on_commit: impl FnOnce(u64, Vec<u8>) + Send + 'static,
    ) -> Result<u64> {
        let limit = self.shared.config.max_bytes;
        let bytes = self.bytes();
        if bytes + payload.len() as u64 > limit {
            return Err(Error::Full { bytes, limit });
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = Request {
            payload,
            on_commit: Box::new(on_commit),
            reply,
            queued: Instant::now(),
        };
        let sent = match &*self.tx.lock().expect("wal sender lock") {
            Some(tx) => tx.send(Message::Append(request)).is_ok(),
            None => false,
        };
        if !sent {
            return Err(Error::Closed);
        }
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Closes the active segment: records appended so far stay in older segments, which
    /// [`Wal::finish_flush`] deletes once a flush has persisted them. Erasure uses it so that no byte of an
    /// erased person's events is left in the log.
    pub async fn seal(&self) -> Result<()> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = match &*self.tx.lock().expect("wal sender lock") {
            Some(tx) => tx.send(Message::Seal(reply)).is_ok(),
            None => false,
        };
        if !sent {
            return Err(Error::Closed);
        }
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Records that a flush of `from..=to` is starting (durably), so a crash redoes the same range.
    pub fn begin_flush(&self, from: u64, to: u64) -> Result<()> {
        let mut cp = self.shared.checkpoint.lock().expect("checkpoint lock");
        let next = Checkpoint {
            persisted: cp.persisted,
            flushing: Some((from, to)),
        };
        next.store(&self.shared.dir)?;
        *cp = next;
        Ok(())
    }

    /// Records that everything up to `to` is durable elsewhere, and deletes the segments that held only such
    /// records (never the one being written).
    pub fn finish_flush(&self, to: u64) -> Result<()> {
        {
            let mut cp = self.shared.checkpoint.lock().expect("checkpoint lock");
            let next = Checkpoint {
                persisted: to.max(cp.persisted),
                flushing: None,
            };
            next.store(&self.shared.dir)?;
            *cp = next;
        }
        let mut segments = self.shared.segments.lock().expect("segments lock");
        let active = segments.len().saturating_sub(1);
        let mut removed = 0;
        for s in segments.iter().take(active) {
            if s.last_seq > to {
                break;
            }
            fs::remove_file(&s.path).map_err(|e| Error::io(&s.path, e))?;
            self.shared.bytes.fetch_sub(s.bytes, Ordering::SeqCst);
            removed += 1;
        }
        segments.drain(..removed);
        drop(segments);
        if removed > 0 {
            sync_dir(&self.shared.dir)?;
        }
        publish_gauges(&self.shared);
        Ok(())
    }

    pub fn checkpoint(&self) -> Checkpoint {
        *self.shared.checkpoint.lock().expect("checkpoint lock")
    }

    /// Bytes in all segment files.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::SeqCst)
    }

    pub fn segments(&self) -> usize {
        self.shared.segments.lock().expect("segments lock").len()
    }

    /// Whether the next segment is prepared (zero-filled, synced) and waiting ([`WalConfig::preallocate`]).
    pub fn spare_ready(&self) -> bool {
        self.shared.spare.ready()
    }

    /// The highest sequence number written (or found at open).
    pub fn last_seq(&self) -> u64 {
        self.shared.last_seq.load(Ordering::SeqCst)
    }

    /// Stops accepting appends and waits for the writer thread to finish what it has.
    pub fn close(&self) {
        self.tx.lock().expect("wal sender lock").take();
        if let Some(t) = self.thread.lock().expect("wal thread lock").take() {
            let _ = t.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

fn publish_gauges(shared: &Shared) {
    metrics::gauge!("tacet_wal_bytes").set(shared.bytes.load(Ordering::SeqCst) as f64);
    metrics::gauge!("tacet_wal_segments")
        .set(shared.segments.lock().expect("segments lock").len() as f64);
}

struct Writer {
    shared: Arc<Shared>,
    file: File,
    path: PathBuf,
    next_seq: u64,
    /// The active segment is a spare renamed into place: zeros to its end, written over by each group.
    prepared: bool,
    spare: Spare,
}

/// Opens (or creates) a segment for writing at explicit offsets: not `O_APPEND`, under which Linux's
/// `pwrite` ignores the offset and would write after a prepared segment's zeros.
fn open_segment(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

impl Writer {
    fn run(mut self, rx: Receiver<Message>) {
        let mut buf = Vec::new();
        // Resolved once: the writer records these for every group.
        let group_records = metrics::histogram!("tacet_wal_group_records");
        let commit_seconds = metrics::histogram!("tacet_wal_commit_seconds");
        while let Ok(message) = rx.recv() {
            let first = match message {
                Message::Append(r) => r,
                Message::Seal(reply) => {
                    let _ = reply.send(self.seal());
                    continue;
                }
            };
            let mut group = vec![first];
            let mut group_bytes = group[0].payload.len();
            let mut seal_after = None;
            while group_bytes < self.shared.config.max_group_bytes {
                match rx.try_recv() {
                    Ok(Message::Append(r)) => {
                        group_bytes += r.payload.len();
                        group.push(r);
                    }
                    Ok(Message::Seal(reply)) => {
                        seal_after = Some(reply);
                        break;
                    }
                    Err(_) => break,
                }
            }
            buf.clear();
            let first_seq = self.next_seq;
            for (i, r) in group.iter().enumerate() {
                encode_record(&mut buf, first_seq + i as u64, &r.payload);
            }
            match self.write_group(&buf, first_seq, group.len() as u64) {
                Ok(()) => {
                    self.next_seq += group.len() as u64;
                    group_records.record(group.len() as f64);
                    for (i, r) in group.into_iter().enumerate() {
                        let seq = first_seq + i as u64;
                        (r.on_commit)(seq, r.payload);
                        commit_seconds.record(r.queued.elapsed().as_secs_f64());
                        let _ = r.reply.send(Ok(seq));
                    }
                }
                Err(e) => {
                    error!(error = %e, records = group.len(), "write-ahead log write failed; the group is refused");
                    metrics::counter!("tacet_wal_write_errors_total").increment(1);
                    let kind = match &e {
                        Error::Io { source, .. } => source.kind(),
                        _ => std::io::ErrorKind::Other,
                    };
                    for r in group {
                        let _ = r.reply.send(Err(Error::io(
                            &self.path,
                            std::io::Error::new(kind, e.to_string()),
                        )));
                    }
                }
            }
            if let Some(reply) = seal_after {
                let _ = reply.send(self.seal());
            }
        }
        if self.prepared {
            // Closed cleanly: give back the zeros (the next open would cut them anyway).
            let valid = self.active_bytes();
            if let Err(e) = self.file.set_len(valid).and_then(|()| self.file.sync_all()) {
                warn!(error = %e, "cannot trim the write-ahead log's last segment; the next start will");
            }
        }
    }

    /// Bytes in the active (last) segment.
    fn active_bytes(&self) -> u64 {
        self.shared
            .segments
            .lock()
            .expect("segments lock")
            .last()
            .map_or(0, |s| s.bytes)
    }

    fn seal(&mut self) -> Result<()> {
        if self.active_bytes() == 0 {
            return Ok(());
        }
        self.roll(self.next_seq)
    }

    /// Writes and syncs one group; on failure the segment is cut back to where the group began.
    fn write_group(&mut self, buf: &[u8], first_seq: u64, count: u64) -> Result<()> {
        let active_bytes = self.active_bytes();
        if active_bytes > 0 && active_bytes + buf.len() as u64 > self.shared.config.segment_bytes {
            self.roll(first_seq)?;
        }
        let start = self
            .shared
            .segments
            .lock()
            .expect("segments lock")
            .last()
            .map_or(0, |s| s.bytes);
        let started = Instant::now();
        let sync = self.shared.config.sync.0;
        let written = self
            .file
            .write_all_at(buf, start)
            .and_then(|()| sync(&self.file));
        if let Err(e) = written {
            // Cut back what may have reached the file, so that no unacknowledged record survives in it
            // (a prepared segment's zeros go too: it is appended to from here).
            self.prepared = false;
            if let Err(cut) = self.file.set_len(start).and_then(|()| self.file.sync_all()) {
                error!(error = %cut, "cannot cut the write-ahead log back after a failed write; starting a new segment");
                let _ = self.roll(first_seq);
            }
            return Err(Error::io(&self.path, e));
        }
        let config = &self.shared.config;
        if config.preallocate && start + buf.len() as u64 >= config.segment_bytes / 16 {
            self.spare.request();
        }
        metrics::histogram!("tacet_wal_fsync_seconds").record(started.elapsed().as_secs_f64());
        let last = first_seq + count - 1;
        {
            let mut segments = self.shared.segments.lock().expect("segments lock");
            let active = segments.last_mut().expect("an active segment");
            active.bytes += buf.len() as u64;
            active.last_seq = last;
        }
        self.shared
            .bytes
            .fetch_add(buf.len() as u64, Ordering::SeqCst);
        self.shared.last_seq.store(last, Ordering::SeqCst);
        metrics::gauge!("tacet_wal_bytes").set(self.shared.bytes.load(Ordering::SeqCst) as f64);
        Ok(())
    }

    fn roll(&mut self, first_seq: u64) -> Result<()> {
        let path = segment::path_for(&self.shared.dir, first_seq);
        let reopen = path == self.path;
        if reopen {
            // Only after a failed first write to the active segment (any other roll starts a later
            // sequence number): it holds no acknowledged record, only what the write left; start it afresh.
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        let spare = if reopen { None } else { self.spare.take() };
        self.prepared = match spare {
            Some(spare) => {
                fs::rename(spare, &path).map_err(|e| Error::io(&path, e))?;
                true
            }
            None => false,
        };
        let file = open_segment(&path)?;
        sync_dir(&self.shared.dir)?;
        self.file = file;
        self.path = path.clone();
        let mut segments = self.shared.segments.lock().expect("segments lock");
        if reopen {
            return Ok(()); // still the same, listed, empty segment
        }
        segments.push(Segment {
            path,
            last_seq: first_seq - 1,
            bytes: 0,
        });
        metrics::gauge!("tacet_wal_segments").set(segments.len() as f64);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
