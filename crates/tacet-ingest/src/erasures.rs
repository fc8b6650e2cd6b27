//! Erasure records: what makes an erasure complete without waiting for every ingestion node, and lasts
//! only as long as a node still has to apply it.
//!
//! ```text
//! keys/erasures/<tenant>/<id>.json        one record (0600): {"at":"…","pseudonyms":[…],"waiting":[2]}
//! keys/erasures/<tenant>/<id>.done-<node> node <node> applied it
//! ```
//!
//! An erasure writes a record with the person's pseudonyms (under every subject key version) before it
//! asks the running nodes to flush and rewrites the lake. Every node applies records it has not applied
//! yet to the events it holds and has not written to the lake (buffer, and a flush waiting to be retried):
//! at the start of each flush, and once when it starts, to everything its write-ahead log replayed — before
//! any of it is queried or flushed. So a node that was down or slow during the erasure drops the person's
//! events when it comes back, and none of them reach the lake after the erasure rewrote it.
//!
//! The record is a trace of the erased person (pseudonyms are personal data), so it is kept only while it
//! is needed: when the erasure ends, the nodes that did not answer are written into it (`waiting`); with
//! none, it is deleted at once. Each waiting node marks it done once applied, and the first node to see
//! every waiting node done (or gone from the register) deletes it.
//!
//! A record applies to what a node accepted before it saw the record; the person's later events are new
//! processing (an objection is what stops those). A node sees a new record at its next flush, so events
//! of the person accepted in that moment are dropped too: the error is on the side of erasing.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tacet_model::TenantId;
use tacet_privacy::user_pseudonym;

use crate::{Error, KeyStore, Result};

/// One erasure record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Erasure {
    #[serde(skip)]
    pub id: String,
    pub at: String,
    pub pseudonyms: Vec<String>,
    /// Nodes that must still apply it; `None` while the erasure that wrote it is running.
    pub waiting: Option<Vec<u16>>,
}

impl KeyStore {
    fn erasures_dir(&self) -> PathBuf {
        self.dir().join("erasures")
    }

    fn erasure_dir(&self, tenant: &TenantId) -> PathBuf {
        self.erasures_dir().join(tenant.as_str())
    }

    /// The tenants that have erasure records (or had: an empty directory is harmless).
    pub fn tenants_with_erasures(&self) -> Result<Vec<TenantId>> {
        let dir = self.erasures_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::keys(&dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let name = entry.map_err(|e| Error::keys(&dir, e))?.file_name();
            if let Some(t) = name.to_str().and_then(|n| TenantId::new(n).ok()) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// The tenant's erasure records, oldest first (one directory listing: seen at a node's next flush).
    pub fn erasures(&self, tenant: &TenantId) -> Result<Vec<Erasure>> {
        let dir = self.erasure_dir(tenant);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::keys(&dir, e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let name = entry.map_err(|e| Error::keys(&dir, e))?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) {
                ids.push(id.to_owned());
            }
        }
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let path = dir.join(format!("{id}.json"));
            let text = match fs::read_to_string(&path) {
                Ok(t) => t,
                // Deleted meanwhile by another node: nothing left to apply.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::keys(&path, e)),
            };
            let mut record: Erasure = serde_json::from_str(&text).map_err(|e| {
                Error::keys(
                    &path,
                    std::io::Error::other(format!("{e}; fix or restore the file")),
                )
            })?;
            record.id = id;
            out.push(record);
        }
        Ok(out)
    }

    /// Writes an erasure record for the person with `user_id` (their pseudonyms under every subject key
    /// version), durably; returns its id. `None` when the tenant has no subject key yet: nothing
    /// identified was ever accepted.
    pub fn record_erasure(&self, tenant: &TenantId, user_id: &str) -> Result<Option<String>> {
        let keys = self.subject_keys(tenant)?;
        if keys.is_empty() {
            return Ok(None);
        }
        let now = self.clock().now();
        let mut random = [0u8; 4];
        getrandom::fill(&mut random)
            .map_err(|e| Error::keys(&self.erasures_dir(), std::io::Error::other(e.to_string())))?;
        // Sortable by time, unique across nodes.
        let id = format!(
            "{}-{}",
            now.format("%Y%m%dT%H%M%S%.6fZ"),
            hex::encode(random)
        );
        let record = Erasure {
            id: id.clone(),
            at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            pseudonyms: keys
                .iter()
                .map(|(_, k)| user_pseudonym(k, tenant, user_id))
                .collect(),
            waiting: None,
        };
        self.write_erasure(tenant, &record)?;
        Ok(Some(id))
    }

    fn write_erasure(&self, tenant: &TenantId, record: &Erasure) -> Result<()> {
        let dir = self.erasure_dir(tenant);
        fs::create_dir_all(&dir).map_err(|e| Error::keys(&dir, e))?;
        let path = dir.join(format!("{}.json", record.id));
        let tmp = dir.join(format!(".{}.{}.tmp", record.id, std::process::id()));
        crate::keystore::write_private(
            &tmp,
            serde_json::to_string(record)
                .expect("a record serialises")
                .as_bytes(),
        )?;
        fs::rename(&tmp, &path).map_err(|e| Error::keys(&path, e))?;
        crate::keystore::sync_dir(&dir)
    }

    /// The erasure that wrote record `id` has ended: the nodes in `waiting` did not answer and must still
    /// apply it; with none, the record (the person's pseudonyms) is deleted now.
    pub fn settle_erasure(&self, tenant: &TenantId, id: &str, waiting: &[u16]) -> Result<()> {
        if waiting.is_empty() {
            return self.delete_erasure(tenant, id);
        }
        let Some(mut record) = self.erasures(tenant)?.into_iter().find(|r| r.id == id) else {
            return Ok(());
        };
        record.waiting = Some(waiting.to_vec());
        self.write_erasure(tenant, &record)
    }

    /// Marks record `id` applied by `node`.
    pub(crate) fn erasure_done(&self, tenant: &TenantId, id: &str, node: u16) -> Result<()> {
        let path = self.erasure_dir(tenant).join(format!("{id}.done-{node}"));
        fs::write(&path, b"").map_err(|e| Error::keys(&path, e))
    }

    /// Whether `node` has marked record `id` applied.
    pub(crate) fn erasure_is_done(&self, tenant: &TenantId, id: &str, node: u16) -> bool {
        self.erasure_dir(tenant)
            .join(format!("{id}.done-{node}"))
            .exists()
    }

    /// Deletes record `id` and its marks.
    pub(crate) fn delete_erasure(&self, tenant: &TenantId, id: &str) -> Result<()> {
        let dir = self.erasure_dir(tenant);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        let prefix = format!("{id}.");
        // The marks first, the record last: a record without marks is only applied again, harmlessly.
        let mut record = None;
        for entry in entries {
            let name = entry.map_err(|e| Error::keys(&dir, e))?.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(&prefix) {
                continue;
            }
            if name.ends_with(".json") {
                record = Some(dir.join(name));
            } else {
                remove(&dir.join(name))?;
            }
        }
        if let Some(path) = record {
            remove(&path)?;
        }
        crate::keystore::sync_dir(&dir)
    }

    /// Deletes a tenant's erasure records (offboarding: its events and keys are gone too).
    pub(crate) fn destroy_erasures(&self, tenant: &TenantId) -> Result<bool> {
        let dir = self.erasure_dir(tenant);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::keys(&dir, e)),
        }
    }
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::keys(path, e)),
    }
}
