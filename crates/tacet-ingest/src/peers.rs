//! Ingestion nodes that share one key store (`shared_dir`) know of each other here, so that an erasure
//! on one node also empties the others' buffers and logs of the person's events before it rewrites the
//! lake.
//!
//! ```text
//! <shared>/nodes/<id>.alive      exists while node <id> runs (created at start, removed at a clean stop,
//!                                which flushes everything; left behind by a crash)
//! <shared>/nodes/flush-request   the newest request, an increasing number
//! <shared>/nodes/<id>.flushed    the newest request node <id> has answered: everything it had accepted
//!                                before it saw the request is in the lake, and out of its log
//! ```
//!
//! A node answers at its next flusher tick. A node that crashed stays registered (its log may still hold
//! the person's events, which it would flush after a restart), so a request waits for it and then fails
//! naming it: an erasure is refused, never silently incomplete.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{Error, Result};

const REQUEST: &str = "flush-request";

/// This node's view of its peers.
#[derive(Debug)]
pub struct Peers {
    dir: PathBuf,
    node: u16,
    /// The newest request this node has answered.
    answered: AtomicU64,
}

fn read_number(path: &Path) -> Result<u64> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().parse().unwrap_or(0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::keys(path, e)),
    }
}

/// Replaces a small file atomically (a private temporary file renamed over it).
fn write_number(path: &Path, n: u64) -> Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    fs::write(&tmp, n.to_string()).map_err(|e| Error::keys(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::keys(path, e))
}

impl Peers {
    /// Registers node `node` under `dir` (`<shared>/nodes`): a server. A CLI job on a stopped node's data
    /// directory uses [`Peers::observe`].
    pub fn join(dir: &Path, node: u16) -> Result<Self> {
        let peers = Self::observe(dir, node)?;
        let alive = dir.join(format!("{node}.alive"));
        fs::write(&alive, std::process::id().to_string()).map_err(|e| Error::keys(&alive, e))?;
        Ok(peers)
    }

    /// Like [`Peers::join`] without registering: can ask the others to flush, is never asked.
    pub fn observe(dir: &Path, node: u16) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| Error::keys(dir, e))?;
        let answered = read_number(&dir.join(format!("{node}.flushed")))?;
        Ok(Self {
            dir: dir.to_owned(),
            node,
            answered: AtomicU64::new(answered),
        })
    }

    /// Deregisters this node: call after a clean stop has flushed everything.
    pub fn leave(&self) -> Result<()> {
        let alive = self.dir.join(format!("{}.alive", self.node));
        match fs::remove_file(&alive) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::keys(&alive, e)),
        }
    }

    /// A request this node has not answered yet, if any.
    pub fn unanswered(&self) -> Result<Option<u64>> {
        let request = read_number(&self.dir.join(REQUEST))?;
        Ok((request > self.answered.load(Ordering::SeqCst)).then_some(request))
    }

    /// Records that this node has persisted everything it accepted before seeing `request`.
    pub fn answer(&self, request: u64) -> Result<()> {
        write_number(&self.dir.join(format!("{}.flushed", self.node)), request)?;
        self.answered.fetch_max(request, Ordering::SeqCst);
        Ok(())
    }

    /// This node's id.
    pub fn node(&self) -> u16 {
        self.node
    }

    /// Every registered node, this one included.
    pub fn registered(&self) -> Result<Vec<u16>> {
        let mut all = self.others()?;
        if self.dir.join(format!("{}.alive", self.node)).exists() {
            all.push(self.node);
            all.sort_unstable();
        }
        Ok(all)
    }

    /// Leaves the register for good (`tacet node drain`): no request waits for this node again, and its
    /// answers are forgotten.
    pub fn leave_for_good(&self) -> Result<()> {
        self.leave()?;
        let flushed = self.dir.join(format!("{}.flushed", self.node));
        match fs::remove_file(&flushed) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::keys(&flushed, e)),
        }
    }

    /// The other registered nodes.
    fn others(&self) -> Result<Vec<u16>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| Error::keys(&self.dir, e))? {
            let name = entry.map_err(|e| Error::keys(&self.dir, e))?.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".alive"))
                .and_then(|n| n.parse::<u16>().ok())
                .filter(|id| *id != self.node)
            {
                out.push(id);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Says this node is alive and ticks every `tick` (its flusher's interval): `<id>.alive` is written
    /// again, so a node whose file has not changed for a few ticks is known to be down.
    pub fn heartbeat(&self, tick: Duration) -> Result<()> {
        let alive = self.dir.join(format!("{}.alive", self.node));
        fs::write(
            &alive,
            format!("{} {}", std::process::id(), tick.as_millis()),
        )
        .map_err(|e| Error::keys(&alive, e))
    }

    /// Whether node `node`'s heartbeat is older than three of its ticks and two seconds: it is down
    /// (crashed, or stopped without leaving).
    fn is_down(&self, node: u16) -> bool {
        let alive = self.dir.join(format!("{node}.alive"));
        let Ok(meta) = fs::metadata(&alive) else {
            return false;
        };
        let tick = fs::read_to_string(&alive)
            .ok()
            .and_then(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(5_000);
        let age = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .unwrap_or_default();
        age > Duration::from_millis(3 * tick + 2_000)
    }

    /// Asks every other registered node to persist what it has accepted and waits for the running ones:
    /// a node that is down is not waited for, one that does not answer within `timeout` no longer. Returns
    /// the nodes that did not answer (an erasure then relies on its record, which they apply before they
    /// flush again or after they restart: erasures.rs).
    pub async fn flush_running(&self, timeout: Duration) -> Result<Vec<u16>> {
        let others = self.others()?;
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let request = self.request()?;
        let deadline = Instant::now() + timeout;
        loop {
            let mut waiting = Vec::new();
            let mut down = Vec::new();
            for node in self.others()? {
                if read_number(&self.dir.join(format!("{node}.flushed")))? >= request {
                    continue;
                }
                if self.is_down(node) {
                    down.push(node);
                } else {
                    waiting.push(node);
                }
            }
            if waiting.is_empty() || Instant::now() >= deadline {
                let mut gaps: Vec<u16> = down.into_iter().chain(waiting).collect();
                gaps.sort_unstable();
                return Ok(gaps);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes a new flush request, newer than any before.
    fn request(&self) -> Result<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let request = now.max(read_number(&self.dir.join(REQUEST))? + 1);
        write_number(&self.dir.join(REQUEST), request)?;
        Ok(request)
    }

    /// Asks every other registered node to persist what it has accepted, and waits until each has, or
    /// fails after `timeout` naming those that did not answer.
    pub async fn flush_everywhere(&self, timeout: Duration) -> Result<()> {
        let others = self.others()?;
        if others.is_empty() {
            return Ok(());
        }
        let request = self.request()?;
        let deadline = Instant::now() + timeout;
        loop {
            let mut waiting = Vec::new();
            for node in self.others()? {
                if read_number(&self.dir.join(format!("{node}.flushed")))? < request {
                    waiting.push(node.to_string());
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Incomplete(format!(
                    "ingestion node(s) {} did not flush within {}s, so their logs may still hold the \
                     person's events; nothing was removed. Retry when they run; a node that is gone for \
                     good: start it once on its data directory (it flushes and answers), or remove {} \
                     after deleting its data directory",
                    waiting.join(", "),
                    timeout.as_secs(),
                    self.dir.join(format!("{}.alive", waiting[0])).display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_waits_for_every_registered_node_and_names_the_silent_one() {
        let dir = tempfile::tempdir().unwrap();
        let one = Peers::join(dir.path(), 1).unwrap();
        // Alone: nothing to wait for.
        one.flush_everywhere(Duration::from_millis(10))
            .await
            .unwrap();
        let two = Peers::join(dir.path(), 2).unwrap();
        assert_eq!(two.unanswered().unwrap(), None);
        let answering = tokio::spawn(async move {
            loop {
                if let Some(r) = two.unanswered().unwrap() {
                    two.answer(r).unwrap();
                    return two;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        one.flush_everywhere(Duration::from_secs(5)).await.unwrap();
        let two = answering.await.unwrap();
        assert_eq!(two.unanswered().unwrap(), None, "answered once");
        // A node that does not answer (crashed: still registered) makes the request fail, by name.
        let err = one
            .flush_everywhere(Duration::from_millis(300))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("node(s) 2 did not flush"), "{err}");
        // After a clean stop it is no longer waited for.
        two.leave().unwrap();
        one.flush_everywhere(Duration::from_millis(10))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn running_nodes_are_waited_for_and_a_down_one_is_named_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let one = Peers::join(dir.path(), 1).unwrap();
        let two = Peers::join(dir.path(), 2).unwrap();
        two.heartbeat(Duration::ZERO).unwrap();
        let answering = tokio::spawn(async move {
            loop {
                if let Some(r) = two.unanswered().unwrap() {
                    two.answer(r).unwrap();
                    return two;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        assert!(
            one.flush_running(Duration::from_secs(5))
                .await
                .unwrap()
                .is_empty()
        );
        let _two = answering.await.unwrap();
        // Node 2 stops ticking (killed): after three ticks and two seconds it is down, and not waited for.
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        let started = Instant::now();
        assert_eq!(
            one.flush_running(Duration::from_secs(30)).await.unwrap(),
            [2]
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        // The strict request still fails by name.
        assert!(
            one.flush_everywhere(Duration::from_millis(200))
                .await
                .is_err()
        );
    }
}
