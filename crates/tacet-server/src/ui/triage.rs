//! Crash triage state: which crash groups a tenant marked resolved or ignored.
//!
//! ```text
//! <shared dir>/triage/<tenant>.json   {"<fingerprint>": {"state": "resolved", "at": "2026-11-29T10:00:00Z",
//!                                                        "release": "2.1.0"}, …}
//! ```
//!
//! A group resolved *in a release* regresses only on a crash from a later release ([`later_release`]):
//! crashes still arriving from older releases (users who have not updated) do not reopen it. Resolved
//! without a release, any crash after the mark does.
//!
//! Fingerprints and times only: no personal data. The file is read on every request (it is small, and other
//! nodes sharing the directory may have changed it) and replaced atomically (write, fsync, rename). Two
//! nodes marking groups of one tenant at the same instant may lose one of the two marks (last writer wins).
//! Offboarding a tenant removes its file. Without a directory (tests) the state lives in memory.

use std::collections::{BTreeMap, HashMap};

use std::sync::Mutex;
use tacet_state::Dir;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tacet_model::TenantId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupState {
    Open,
    Resolved,
    Ignored,
}

impl GroupState {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "resolved" => Some(Self::Resolved),
            "ignored" => Some(Self::Ignored),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
            Self::Ignored => "ignored",
        }
    }
}

/// A group's mark: its state, when it was set (RFC 3339, UTC), the release it was resolved in, the group it
/// was merged into, and the frames that split crashes off it (tacet_query::groups).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub state: GroupState,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<String>,
}

/// Frames one group may be split by, at most.
pub const MAX_SPLITS: usize = 20;
/// A split's frame text: at most this many bytes.
pub const MAX_SPLIT_TEXT: usize = 200;

/// The merges and splits the marks hold, for the crash reports.
pub fn crash_groups(marks: &Marks) -> tacet_query::CrashGroups {
    tacet_query::CrashGroups::new(
        marks
            .iter()
            .filter_map(|(fp, m)| Some((fp.clone(), m.merged_into.clone()?)))
            .collect(),
        marks
            .iter()
            .filter(|(_, m)| !m.split.is_empty())
            .map(|(fp, m)| (fp.clone(), m.split.clone()))
            .collect(),
    )
}

/// Whether release `a` is later than `b`: their numbers compared as numbers, their words as words, left to
/// right (`2.10.0` > `2.9.1`, `shop@3.1.0` > `shop@3.0.9`, `2.1.0` > `2.1.0-rc1`'s shorter prefix first).
pub fn later_release(a: &str, b: &str) -> bool {
    let parts = |s: &str| -> Vec<(u64, String)> {
        s.split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|p| !p.is_empty())
            .map(|p| match p.parse::<u64>() {
                Ok(n) => (n, String::new()),
                Err(_) => (u64::MAX, p.to_owned()),
            })
            .collect()
    };
    parts(a) > parts(b)
}

impl Mark {
    pub fn new(state: GroupState, at: DateTime<Utc>) -> Self {
        Self {
            state,
            at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            release: None,
            merged_into: None,
            split: Vec::new(),
        }
    }

    /// When it was set; `None` if the file was edited into something else.
    pub fn at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.at)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

pub type Marks = BTreeMap<String, Mark>;

#[derive(Debug)]
pub struct Triage {
    dir: Option<Dir>,
    lock: Mutex<HashMap<TenantId, Marks>>,
}

/// A fingerprint as the privacy crate makes them: 16 lower-case hex characters.
pub fn valid_fingerprint(fp: &str) -> bool {
    fp.len() == 16
        && fp
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Triage {
    /// Keeps the state in files under `dir` (created when first written), or in memory with `None`.
    pub fn new(dir: Option<Dir>) -> Self {
        Self {
            dir,
            lock: Mutex::default(),
        }
    }

    fn name(tenant: &TenantId) -> String {
        format!("{}.json", tenant.as_str())
    }

    fn parse(dir: &Dir, tenant: &TenantId, bytes: Option<&[u8]>) -> std::io::Result<Marks> {
        let Some(bytes) = bytes else {
            return Ok(Marks::new());
        };
        serde_json::from_slice(bytes).map_err(|e| {
            std::io::Error::other(format!(
                "{}: {e}; fix or delete the file (it holds only crash triage marks)",
                dir.place(&Self::name(tenant))
            ))
        })
    }

    fn read(&self, tenant: &TenantId, memory: &HashMap<TenantId, Marks>) -> std::io::Result<Marks> {
        let Some(dir) = &self.dir else {
            return Ok(memory.get(tenant).cloned().unwrap_or_default());
        };
        Self::parse(dir, tenant, dir.read(&Self::name(tenant))?.as_deref())
    }

    /// The tenant's marks, by fingerprint.
    pub fn marks(&self, tenant: &TenantId) -> std::io::Result<Marks> {
        let memory = self.lock.lock().expect("triage lock");
        self.read(tenant, &memory)
    }

    /// Marks a group (resolved `in` a release, for a resolution); `Open` removes its mark.
    pub fn set(
        &self,
        tenant: &TenantId,
        fingerprint: &str,
        state: GroupState,
        at: DateTime<Utc>,
        release: Option<&str>,
    ) -> std::io::Result<()> {
        self.update(tenant, |marks| {
            let kept = marks.remove(fingerprint);
            let mut mark = Mark::new(state, at);
            mark.release = release
                .filter(|r| state == GroupState::Resolved && !r.trim().is_empty())
                .map(|r| r.trim().to_owned());
            if let Some(kept) = kept {
                mark.merged_into = kept.merged_into;
                mark.split = kept.split;
            }
            // An open group without merges or splits needs no mark.
            if state != GroupState::Open || mark.merged_into.is_some() || !mark.split.is_empty() {
                marks.insert(fingerprint.to_owned(), mark);
            }
            Ok(())
        })
    }

    /// Merges group `from` into group `into` (`None`: undoes the merge of `from`). Refused when `into` is
    /// `from` itself or already merged into `from` (a cycle).
    pub fn merge(
        &self,
        tenant: &TenantId,
        from: &str,
        into: Option<&str>,
        at: DateTime<Utc>,
    ) -> std::io::Result<Result<(), String>> {
        let mut refused = None;
        self.update(tenant, |marks| {
            if let Some(into) = into {
                let target = crash_groups(marks).merged_group(into);
                if target == from {
                    refused = Some(format!(
                        "group {from} cannot be merged into {into}: that group is {from} itself or merged into it"
                    ));
                    return Ok(());
                }
            }
            let mark = marks
                .entry(from.to_owned())
                .or_insert_with(|| Mark::new(GroupState::Open, at));
            mark.merged_into = into.map(str::to_owned);
            if mark.state == GroupState::Open && mark.merged_into.is_none() && mark.split.is_empty()
            {
                marks.remove(from);
            }
            Ok(())
        })?;
        Ok(refused.map_or(Ok(()), Err))
    }

    /// Splits the crashes of `fingerprint` that have a frame containing `frame` into a group of their own
    /// (`undo`: takes that split back); the new group's fingerprint.
    pub fn split(
        &self,
        tenant: &TenantId,
        fingerprint: &str,
        frame: &str,
        undo: bool,
        at: DateTime<Utc>,
    ) -> std::io::Result<Result<String, String>> {
        let frame = frame.trim();
        if frame.is_empty() || frame.len() > MAX_SPLIT_TEXT {
            return Ok(Err(format!(
                "a split needs the text of a frame, 1 to {MAX_SPLIT_TEXT} bytes (e.g. \"at checkout\")"
            )));
        }
        let mut refused = None;
        self.update(tenant, |marks| {
            let mark = marks
                .entry(fingerprint.to_owned())
                .or_insert_with(|| Mark::new(GroupState::Open, at));
            if undo {
                mark.split.retain(|f| f != frame);
            } else if !mark.split.iter().any(|f| f == frame) {
                if mark.split.len() >= MAX_SPLITS {
                    refused = Some(format!(
                        "group {fingerprint} is split {MAX_SPLITS} times already; merge some back first"
                    ));
                } else {
                    mark.split.push(frame.to_owned());
                }
            }
            if mark.state == GroupState::Open && mark.merged_into.is_none() && mark.split.is_empty()
            {
                marks.remove(fingerprint);
            }
            Ok(())
        })?;
        Ok(match refused {
            Some(r) => Err(r),
            None => Ok(tacet_query::groups::split_fingerprint(fingerprint, frame)),
        })
    }

    /// Reads the tenant's marks, changes them, and writes them back only if no one (another node) changed
    /// them meanwhile; else reads again and changes again, so no node's mark is lost.
    fn update(
        &self,
        tenant: &TenantId,
        mut change: impl FnMut(&mut Marks) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut memory = self.lock.lock().expect("triage lock");
        let Some(dir) = &self.dir else {
            let mut marks = self.read(tenant, &memory)?;
            change(&mut marks)?;
            memory.insert(tenant.clone(), marks);
            return Ok(());
        };
        dir.update(&Self::name(tenant), &mut |old| {
            let mut marks = Self::parse(dir, tenant, old)?;
            change(&mut marks)?;
            Ok(Some(
                serde_json::to_vec_pretty(&marks).map_err(std::io::Error::other)?,
            ))
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_persist_per_tenant_and_reopen_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let t = Triage::new(Some(Dir::from(&dir.path().join("triage"))));
        let (a, b) = (TenantId::new("a").unwrap(), TenantId::new("b").unwrap());
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert!(t.marks(&a).unwrap().is_empty());
        t.set(&a, "0123456789abcdef", GroupState::Resolved, at, None)
            .unwrap();
        t.set(&a, "fedcba9876543210", GroupState::Ignored, at, None)
            .unwrap();
        // Another process (node) sees the same file.
        let again = Triage::new(Some(Dir::from(&dir.path().join("triage"))));
        let marks = again.marks(&a).unwrap();
        assert_eq!(marks["0123456789abcdef"].state, GroupState::Resolved);
        assert_eq!(marks["fedcba9876543210"].state, GroupState::Ignored);
        assert!(again.marks(&b).unwrap().is_empty());
        again
            .set(&a, "0123456789abcdef", GroupState::Open, at, None)
            .unwrap();
        assert_eq!(t.marks(&a).unwrap().len(), 1);
    }

    #[test]
    fn releases_compare_by_their_numbers() {
        assert!(later_release("2.10.0", "2.9.1"));
        assert!(later_release("shop@3.1.0", "shop@3.0.9"));
        assert!(!later_release("2.1.0", "2.1.0"));
        assert!(!later_release("1.9.9", "2.0.0"));
        assert!(later_release("2026.12.01", "2026.11.30"));
    }

    #[test]
    fn only_fingerprints_are_accepted() {
        assert!(valid_fingerprint("0123456789abcdef"));
        assert!(!valid_fingerprint("0123456789ABCDEF"));
        assert!(!valid_fingerprint("../../etc/passwd"));
        assert!(!valid_fingerprint("0123"));
    }
}
