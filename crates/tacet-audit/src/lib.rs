//! The audit log: one JSON line per retention drop, export, erasure, objection, rectification,
//! offboarding, key event and admin login, each carrying the hash of the line before it.
//!
//! ```text
//! audit/audit.jsonl of the shared state (`<data dir>/audit/audit.jsonl`, or `_tacet/state/audit/` in the
//! lake's bucket)
//! {"seq":1,"time":"2026-11-29T08:00:00.000Z","actor":"cli","action":"retention.drop","tenant":"acme",
//!  "detail":{...},"prev":"0000…","hash":"<blake3 of the line up to the hash field, closed with '}'>"}
//! ```
//!
//! `hash` is BLAKE3 over the entry's JSON without the `hash` field (the exact bytes written), and `prev`
//! is the previous entry's `hash` (64 zeros for the first). Changing, removing or reordering any byte
//! breaks the chain at that entry, which [`verify`] names. Anyone who can rewrite the whole file can
//! recompute the whole chain: record the head hash that `tacet audit verify` prints somewhere else (a
//! ticket, an e-mail) to pin the log up to that point.
//!
//! Entries never hold a raw identifier: subject requests are logged by a random request id and counts,
//! never by user id or pseudonym. Appends from several processes (a server and a CLI job, several nodes) are
//! serialised by the state store (`tacet_state::Dir::append_with`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tacet_state::Dir;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("audit log {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("audit log {path}, entry {line}: {reason}")]
    Broken {
        path: String,
        line: usize,
        reason: String,
    },
}

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One entry, as written (the `hash` is appended after these fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// Who: `cli`, `server` (scheduled jobs), `admin-api`.
    pub actor: String,
    /// What: `retention.drop`, `subject.export`, `subject.erase`, `subject.object`, `subject.withdraw`,
    /// `subject.rectify`, `tenant.offboard`, `key.created`, `key.rotated`, `key.destroyed`,
    /// `admin.login`, `compaction`.
    pub action: String,
    pub tenant: Option<String>,
    /// Counts, paths, key ids: never a user id, e-mail, IP address or pseudonym.
    pub detail: serde_json::Value,
    pub prev: String,
}

/// An entry with its hash, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Sealed {
    pub entry: Entry,
    pub hash: String,
}

/// The log, appended under an exclusive lock (a file lock on local disk, a conditional put in an object
/// store: a node that loses the race reads the new last entry and chains after it, so the chain never forks).
#[derive(Debug)]
pub struct AuditLog {
    dir: Dir,
    /// Serialises appends within the process (the store does it across processes).
    local: Mutex<()>,
}

const FILE: &str = "audit.jsonl";

fn io(place: &str, source: std::io::Error) -> Error {
    Error::Io {
        path: place.to_owned(),
        source,
    }
}

/// The hash of an entry's JSON bytes.
fn hash(body: &str) -> String {
    blake3::hash(body.as_bytes()).to_hex().to_string()
}

/// Splits a line into the entry's JSON (without `hash`) and the hash.
fn split_line(line: &str) -> Option<(String, &str)> {
    let at = line.rfind(",\"hash\":\"")?;
    let hash = line[at + 9..].strip_suffix("\"}")?;
    Some((format!("{}}}", &line[..at]), hash))
}

impl AuditLog {
    /// The log in `dir` (`audit/` of the shared state).
    pub fn open(dir: impl Into<Dir>) -> Result<Self> {
        Ok(Self {
            dir: dir.into(),
            local: Mutex::new(()),
        })
    }

    /// Where the log is, for messages.
    pub fn place(&self) -> String {
        self.dir.place(FILE)
    }

    /// The log's file, when it is on local disk.
    pub fn path(&self) -> Option<PathBuf> {
        self.dir.local_path().map(|d| d.join(FILE))
    }

    /// Appends an entry (durably) and returns its hash.
    pub fn append(
        &self,
        actor: &str,
        action: &str,
        tenant: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<String> {
        let _local = self.local.lock().expect("audit lock");
        let place = self.place();
        let mut sealed = String::new();
        self.dir
            .log_append(FILE, &mut |last| {
                let (seq, prev) = match last {
                    None => (0, GENESIS.to_owned()),
                    Some(line) => last_entry(line).map_err(|reason| {
                        std::io::Error::other(format!(
                            "{reason}; run `tacet audit verify` before appending"
                        ))
                    })?,
                };
                let entry = Entry {
                    seq: seq + 1,
                    time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    actor: actor.to_owned(),
                    action: action.to_owned(),
                    tenant: tenant.map(str::to_owned),
                    detail: detail.clone(),
                    prev,
                };
                let body = serde_json::to_string(&entry).expect("an entry serialises");
                sealed = hash(&body);
                Ok(format!(
                    "{},\"hash\":\"{sealed}\"}}",
                    &body[..body.len() - 1]
                ))
            })
            .map_err(|e| io(&place, e))?;
        Ok(sealed)
    }

    /// Every entry, checked: the first broken one is an error naming its line.
    pub fn read(&self) -> Result<Vec<Sealed>> {
        let place = self.place();
        match self.dir.log_read(FILE).map_err(|e| io(&place, e))? {
            None => Ok(Vec::new()),
            Some(bytes) => verify_bytes(&bytes, &place),
        }
    }
}

/// The sequence number and hash of the entry on `line`.
fn last_entry(line: &str) -> std::result::Result<(u64, String), &'static str> {
    let (body, h) = split_line(line).ok_or("the last line has no hash")?;
    let entry: Entry = serde_json::from_str(&body).map_err(|_| "the last line is not an entry")?;
    Ok((entry.seq, h.to_owned()))
}

/// Reads and checks the whole chain of the log file at `path`; an error names the first entry (line)
/// that does not hold. A missing file is an empty log.
pub fn verify(path: &Path) -> Result<Vec<Sealed>> {
    let place = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => verify_bytes(&bytes, &place),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(&place, e)),
    }
}

/// Checks the chain in `bytes` (the log at `place`).
fn verify_bytes(bytes: &[u8], place: &str) -> Result<Vec<Sealed>> {
    let mut out: Vec<Sealed> = Vec::new();
    let mut prev = GENESIS.to_owned();
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.is_empty() {
        return Ok(out);
    }
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let n = i + 1;
        let broken = |reason: String| Error::Broken {
            path: place.to_owned(),
            line: n,
            reason,
        };
        let line = std::str::from_utf8(line).map_err(|_| broken("not UTF-8".into()))?;
        let (body, h) = split_line(line).ok_or_else(|| broken("no hash field".into()))?;
        if hash(&body) != h {
            return Err(broken(
                "its hash does not match its content (the entry was changed)".into(),
            ));
        }
        let entry: Entry =
            serde_json::from_str(&body).map_err(|e| broken(format!("not an audit entry: {e}")))?;
        if entry.prev != prev {
            return Err(broken(
                "it does not follow the entry before it (an entry was removed, added or reordered)"
                    .into(),
            ));
        }
        if entry.seq != n as u64 {
            return Err(broken(format!(
                "sequence number {} where {n} was expected",
                entry.seq
            )));
        }
        prev = h.to_owned();
        out.push(Sealed {
            entry,
            hash: h.to_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn log_with(n: usize) -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        for i in 0..n {
            log.append(
                "cli",
                "retention.drop",
                Some("acme"),
                serde_json::json!({"partition": format!("kind=crash/date=2026-01-{:02}", i + 1), "files": i}),
            )
            .unwrap();
        }
        (dir, log)
    }

    #[test]
    fn a_fresh_chain_verifies_and_links() {
        let (_dir, log) = log_with(5);
        let entries = log.read().unwrap();
        assert_eq!(entries.len(), 5);
        assert_eq!(entries[0].entry.prev, GENESIS);
        for w in entries.windows(2) {
            assert_eq!(w[1].entry.prev, w[0].hash);
            assert_eq!(w[1].entry.seq, w[0].entry.seq + 1);
        }
    }

    #[test]
    fn editing_any_byte_breaks_the_chain_at_that_entry() {
        let (_dir, log) = log_with(4);
        let original = fs::read(log.path().unwrap()).unwrap();
        let line_of = |at: usize| original[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        for at in 0..original.len() {
            let mut edited = original.clone();
            edited[at] = if edited[at] == b'x' { b'y' } else { b'x' };
            fs::write(log.path().unwrap(), &edited).unwrap();
            match verify(&log.path().unwrap()) {
                Err(Error::Broken { line, .. }) => {
                    // A changed newline merges or splits lines; otherwise the entry is named exactly.
                    if original[at] != b'\n' {
                        assert_eq!(line, line_of(at), "byte {at}");
                    }
                }
                other => panic!("editing byte {at} went unnoticed: {other:?}"),
            }
        }
        fs::write(log.path().unwrap(), &original).unwrap();
        assert_eq!(verify(&log.path().unwrap()).unwrap().len(), 4);
    }

    #[test]
    fn removing_an_entry_is_noticed() {
        let (_dir, log) = log_with(3);
        let text = fs::read_to_string(log.path().unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        fs::write(log.path().unwrap(), format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        let err = verify(&log.path().unwrap()).unwrap_err().to_string();
        assert!(
            err.contains("entry 2") && err.contains("does not follow"),
            "{err}"
        );
    }
}
