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

use serde::{Deserialize, Serialize};
use tacet_model::TenantId;
use tacet_privacy::user_pseudonym;

use tacet_state::Dir;

use crate::{Error, KeyStore, Result};

/// How often the pseudonyms of a tenant's records are read again for queries: how long another node's
/// queries may still show a person whose erasure was just requested.
const RECHECK_MILLIS: i64 = 1_000;

/// Per tenant: the pseudonyms of its current records, and when they were read.
pub(crate) type Cache =
    std::sync::Mutex<std::collections::HashMap<TenantId, (std::sync::Arc<Vec<String>>, i64)>>;

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
    fn erasures_dir(&self) -> Dir {
        self.dir().sub("erasures")
    }

    fn erasure_dir(&self, tenant: &TenantId) -> Dir {
        self.erasures_dir().sub(tenant.as_str())
    }

    /// The tenants that have erasure records (or had: an empty directory is harmless).
    pub fn tenants_with_erasures(&self) -> Result<Vec<TenantId>> {
        Ok(self
            .erasures_dir()
            .list()?
            .into_iter()
            .filter(|e| e.is_dir)
            .filter_map(|e| TenantId::new(&e.name).ok())
            .collect())
    }

    /// The tenant's erasure records, oldest first (one listing: seen at a node's next flush).
    pub fn erasures(&self, tenant: &TenantId) -> Result<Vec<Erasure>> {
        let dir = self.erasure_dir(tenant);
        let mut ids: Vec<String> = dir
            .list()?
            .into_iter()
            .filter_map(|e| e.name.strip_suffix(".json").map(str::to_owned))
            .collect();
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let name = format!("{id}.json");
            // Deleted meanwhile by another node: nothing left to apply.
            let Some(bytes) = dir.read(&name)? else {
                continue;
            };
            let mut record: Erasure = serde_json::from_slice(&bytes).map_err(|e| {
                Error::State(std::io::Error::other(format!(
                    "{}: {e}; fix or restore the file",
                    dir.place(&name)
                )))
            })?;
            record.id = id;
            out.push(record);
        }
        Ok(out)
    }

    /// The pseudonyms of the tenant's current erasure records (read again at most every second): queries
    /// leave them out from the moment an erasure is requested, on every node, until the lake is rewritten
    /// and the record is no longer needed.
    pub fn erasing(&self, tenant: &TenantId) -> Result<std::sync::Arc<Vec<String>>> {
        let now = self.clock().now_millis();
        if let Some((list, at)) = self
            .erasure_cache()
            .lock()
            .expect("erasing lock")
            .get(tenant)
            && now - at < RECHECK_MILLIS
        {
            return Ok(std::sync::Arc::clone(list));
        }
        let list: std::sync::Arc<Vec<String>> = std::sync::Arc::new(
            self.erasures(tenant)?
                .into_iter()
                .flat_map(|r| r.pseudonyms)
                .collect(),
        );
        self.erasure_cache()
            .lock()
            .expect("erasing lock")
            .insert(tenant.clone(), (std::sync::Arc::clone(&list), now));
        Ok(list)
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
        getrandom::fill(&mut random).map_err(|e| std::io::Error::other(e.to_string()))?;
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
        let dir = self.erasure_dir(tenant);
        let name = format!("{id}.json");
        // This node's queries leave the person out at once (others within a second).
        self.erasure_cache()
            .lock()
            .expect("erasing lock")
            .remove(tenant);
        if !dir.create(
            &name,
            &serde_json::to_vec(&record).expect("a record serialises"),
        )? {
            return Err(Error::State(std::io::Error::other(format!(
                "{} exists already; make the request again",
                dir.place(&name)
            ))));
        }
        Ok(Some(id))
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
        self.erasure_dir(tenant).put(
            &format!("{id}.json"),
            &serde_json::to_vec(&record).expect("a record serialises"),
        )?;
        Ok(())
    }

    /// Marks record `id` applied by `node`.
    pub(crate) fn erasure_done(&self, tenant: &TenantId, id: &str, node: u16) -> Result<()> {
        self.erasure_dir(tenant)
            .put(&format!("{id}.done-{node}"), b"")?;
        Ok(())
    }

    /// Whether `node` has marked record `id` applied.
    pub(crate) fn erasure_is_done(&self, tenant: &TenantId, id: &str, node: u16) -> bool {
        self.erasure_dir(tenant)
            .exists(&format!("{id}.done-{node}"))
            .unwrap_or(false)
    }

    /// Deletes record `id` and its marks.
    pub(crate) fn delete_erasure(&self, tenant: &TenantId, id: &str) -> Result<()> {
        let dir = self.erasure_dir(tenant);
        let prefix = format!("{id}.");
        // The marks first, the record last: a record without marks is only applied again, harmlessly.
        let mut record = None;
        for entry in dir.list()? {
            if !entry.name.starts_with(&prefix) {
                continue;
            }
            if entry.name.ends_with(".json") {
                record = Some(entry.name);
            } else {
                dir.delete(&entry.name)?;
            }
        }
        if let Some(name) = record {
            dir.delete(&name)?;
        }
        Ok(())
    }

    /// Keeps what an erasure did (its receipt: counts and file names, never a person) under
    /// `receipts/<tenant>/<id>.json`, so that whichever node is asked can say when the last byte went.
    pub fn put_receipt(
        &self,
        tenant: &TenantId,
        id: &str,
        receipt: &serde_json::Value,
    ) -> Result<()> {
        self.dir()
            .sub("receipts")
            .sub(tenant.as_str())
            .put(&format!("{id}.json"), receipt.to_string().as_bytes())?;
        Ok(())
    }

    /// The receipt of erasure `id`, once it has one.
    pub fn receipt(&self, tenant: &TenantId, id: &str) -> Result<Option<serde_json::Value>> {
        let dir = self.dir().sub("receipts").sub(tenant.as_str());
        let Some(bytes) = dir.read(&format!("{id}.json"))? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::other(format!("{}: {e}", dir.place(&format!("{id}.json"))))
        })?))
    }

    /// Deletes receipts older than `days` days (their ids begin with the time of the request).
    pub fn forget_receipts(&self, days: i64) -> Result<usize> {
        let before = (self.clock().now() - chrono::Duration::days(days))
            .format("%Y%m%dT%H%M%S")
            .to_string();
        let receipts = self.dir().sub("receipts");
        let mut gone = 0;
        for tenant in receipts.list()?.into_iter().filter(|e| e.is_dir) {
            let dir = receipts.sub(&tenant.name);
            for entry in dir.list()? {
                if entry.name.as_str() < before.as_str() && dir.delete(&entry.name)? {
                    gone += 1;
                }
            }
        }
        Ok(gone)
    }

    /// Deletes a tenant's erasure records (offboarding: its events and keys are gone too).
    pub(crate) fn destroy_erasures(&self, tenant: &TenantId) -> Result<bool> {
        let dir = self.erasure_dir(tenant);
        let had = !dir.list()?.is_empty();
        dir.delete_all()?;
        self.dir()
            .sub("receipts")
            .sub(tenant.as_str())
            .delete_all()?;
        Ok(had)
    }
}
