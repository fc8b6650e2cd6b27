//! Ingestion nodes that share one key store (the shared state: `shared_dir`, or the lake's bucket) know of
//! each other here, so that an erasure
//! on one node also empties the others' buffers and logs of the person's events before it rewrites the
//! lake.
//!
//! ```text
//! <shared>/nodes/<id>.alive      exists while node <id> runs (created at start, removed at a clean stop,
//!                                which flushes everything; left behind by a crash): "<pid> <tick ms>
//!                                <unix ms>", rewritten every tick
//! <shared>/nodes/flush-request   the newest request, an increasing number
//! <shared>/nodes/<id>.flushed    the newest request node <id> has answered: everything it had accepted
//!                                before it saw the request is in the lake, and out of its log
//! ```
//!
//! A node answers at its next flusher tick. A node that crashed stays registered (its log may still hold
//! the person's events, which it would flush after a restart), so a request waits for it and then fails
//! naming it: an erasure is refused, never silently incomplete.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tacet_state::Dir;

use crate::{Error, Result};

const REQUEST: &str = "flush-request";

/// What a node that did not answer may still hold, from its last heartbeat: the gap an erasure's record
/// covers until it runs again (or is drained).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Gap {
    pub node: u16,
    /// Its last heartbeat (RFC 3339), if it left one with a time.
    pub last_seen: Option<String>,
    /// The sequence numbers of the records its write-ahead log held and had not written to the lake then
    /// (`[first, last]`); `None`: none, or not said.
    pub unflushed_records: Option<[u64; 2]>,
}

/// This node's view of its peers.
#[derive(Debug)]
pub struct Peers {
    dir: Dir,
    node: u16,
    /// The newest request this node has answered.
    answered: AtomicU64,
}

fn read_number(dir: &Dir, name: &str) -> Result<u64> {
    Ok(dir
        .read(name)?
        .and_then(|b| String::from_utf8_lossy(&b).trim().parse().ok())
        .unwrap_or(0))
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Peers {
    /// Registers node `node` under `dir` (`nodes/` of the shared state): a server. A CLI job on a stopped
    /// node's data directory uses [`Peers::observe`].
    pub fn join(dir: impl Into<Dir>, node: u16) -> Result<Self> {
        let peers = Self::observe(dir, node)?;
        peers.heartbeat(Duration::from_secs(5), None)?;
        Ok(peers)
    }

    /// Like [`Peers::join`] without registering: can ask the others to flush, is never asked.
    pub fn observe(dir: impl Into<Dir>, node: u16) -> Result<Self> {
        let dir: Dir = dir.into();
        let answered = read_number(&dir, &format!("{node}.flushed"))?;
        Ok(Self {
            dir,
            node,
            answered: AtomicU64::new(answered),
        })
    }

    /// Deregisters this node: call after a clean stop has flushed everything.
    pub fn leave(&self) -> Result<()> {
        self.dir.delete(&format!("{}.alive", self.node))?;
        Ok(())
    }

    /// A request this node has not answered yet, if any.
    pub fn unanswered(&self) -> Result<Option<u64>> {
        let request = read_number(&self.dir, REQUEST)?;
        Ok((request > self.answered.load(Ordering::SeqCst)).then_some(request))
    }

    /// Records that this node has persisted everything it accepted before seeing `request`.
    pub fn answer(&self, request: u64) -> Result<()> {
        self.dir.put(
            &format!("{}.flushed", self.node),
            request.to_string().as_bytes(),
        )?;
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
        if self.dir.exists(&format!("{}.alive", self.node))? {
            all.push(self.node);
            all.sort_unstable();
        }
        Ok(all)
    }

    /// Leaves the register for good (`tacet node drain`): no request waits for this node again, and its
    /// answers are forgotten.
    pub fn leave_for_good(&self) -> Result<()> {
        self.leave()?;
        self.dir.delete(&format!("{}.flushed", self.node))?;
        Ok(())
    }

    /// The other registered nodes.
    fn others(&self) -> Result<Vec<u16>> {
        let mut out: Vec<u16> = self
            .dir
            .list()?
            .into_iter()
            .filter_map(|e| e.name.strip_suffix(".alive")?.parse::<u16>().ok())
            .filter(|id| *id != self.node)
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Says this node is alive and ticks every `tick` (its flusher's interval): `<id>.alive` is written
    /// again with the time, so a node whose time has not moved for a few ticks is known to be down, and
    /// with the range of log records it holds that are not in the lake yet (`unflushed`), so that if it
    /// never comes back the others can say what was lost with it.
    pub fn heartbeat(&self, tick: Duration, unflushed: Option<(u64, u64)>) -> Result<()> {
        let range = unflushed.map_or_else(String::new, |(a, b)| format!(" {a} {b}"));
        self.dir.put(
            &format!("{}.alive", self.node),
            format!(
                "{} {} {}{range}",
                std::process::id(),
                tick.as_millis(),
                now_millis()
            )
            .as_bytes(),
        )?;
        Ok(())
    }

    /// What each of `nodes` said in its last heartbeat: when, and which records it held unflushed.
    pub fn gaps(&self, nodes: &[u16]) -> Vec<Gap> {
        nodes
            .iter()
            .map(|&node| {
                let text = self
                    .dir
                    .read(&format!("{node}.alive"))
                    .ok()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let fields: Vec<u64> = text
                    .split_whitespace()
                    .map(|f| f.parse().unwrap_or(0))
                    .collect();
                Gap {
                    node,
                    last_seen: fields.get(2).and_then(|ms| {
                        chrono::DateTime::from_timestamp_millis(*ms as i64)
                            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    }),
                    unflushed_records: match (fields.get(3), fields.get(4)) {
                        (Some(a), Some(b)) => Some([*a, *b]),
                        _ => None,
                    },
                }
            })
            .collect()
    }

    /// Whether node `node`'s heartbeat is older than three of its ticks and two seconds: it is down
    /// (crashed, or stopped without leaving). Nodes' clocks are compared, so they must agree within a
    /// second or so (NTP); a skewed clock only makes an erasure wait for a node or rely on its record.
    fn is_down(&self, node: u16) -> bool {
        let Ok(Some(bytes)) = self.dir.read(&format!("{node}.alive")) else {
            return false;
        };
        let text = String::from_utf8_lossy(&bytes);
        let mut fields = text.split_whitespace().skip(1);
        let tick = fields
            .next()
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(5_000);
        let Some(at) = fields.next().and_then(|t| t.parse::<u64>().ok()) else {
            // A heartbeat of an older version: no time, so the node is waited for.
            return false;
        };
        now_millis().saturating_sub(at) > 3 * tick + 2_000
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
                if read_number(&self.dir, &format!("{node}.flushed"))? >= request {
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
        let written = self.dir.update(REQUEST, &mut |old| {
            let old: u64 = old
                .and_then(|b| String::from_utf8_lossy(b).trim().parse().ok())
                .unwrap_or(0);
            Ok(Some(now.max(old + 1).to_string().into_bytes()))
        })?;
        Ok(written
            .and_then(|b| String::from_utf8_lossy(&b).trim().parse().ok())
            .unwrap_or(now))
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
                if read_number(&self.dir, &format!("{node}.flushed"))? < request {
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
                     good: `tacet node drain` on its data directory, or remove {} after deleting its \
                     data directory",
                    waiting.join(", "),
                    timeout.as_secs(),
                    self.dir.place(&format!("{}.alive", waiting[0]))
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
        two.heartbeat(Duration::ZERO, Some((41, 57))).unwrap();
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
        // What it left behind, as its last heartbeat said.
        let gaps = one.gaps(&[2]);
        assert_eq!(gaps[0].unflushed_records, Some([41, 57]));
        assert!(gaps[0].last_seen.is_some());
        // The strict request still fails by name.
        assert!(
            one.flush_everywhere(Duration::from_millis(200))
                .await
                .is_err()
        );
    }
}
