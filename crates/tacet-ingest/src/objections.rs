//! Restriction and objection: a per-tenant list of people who opted out.
//!
//! ```text
//! keys/objections/<tenant>.jsonl   one line per change (0600):
//!   {"at":"…","action":"object"|"withdraw","token":"<pseudonym under subject key v1>",
//!    "pseudonyms":["<pseudonym under v1>","<under v2>",…]}
//! ```
//!
//! A person is named by their *token*: their pseudonym under the tenant's first subject key, which is never
//! rotated away (only offboarding destroys it), so an objection outlives key rotations. At ingestion an
//! identified event whose token is on the list is dropped with reason `objected`. The line also holds the
//! person's pseudonyms under every key version that existed when they objected: the events already stored
//! carry those, and queries leave them out (restriction of processing) while the objection stands.
//! Withdrawing appends a line; the history stays. Nothing here is a raw identifier.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tacet_model::TenantId;
use tacet_privacy::user_pseudonym;

use crate::{Error, KeyStore, Result};

/// How often a cached list is checked for lines another process appended (one `stat`, or a HEAD request
/// in an object store): how long another node takes to hide an objecting person.
const RECHECK_MILLIS: i64 = 1_000;

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    at: String,
    action: String,
    token: String,
    pseudonyms: Vec<String>,
}

/// A tenant's current objections.
#[derive(Debug, Default)]
pub struct Objections {
    /// The key tokens are made with (subject key v1).
    key: Option<[u8; 32]>,
    tokens: HashSet<String>,
    /// Every pseudonym of every objecting person, for queries to leave out.
    pseudonyms: Vec<String>,
}

impl Objections {
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether the person with this user id objected.
    pub fn covers(&self, tenant: &TenantId, user_id: &str) -> bool {
        match &self.key {
            Some(key) if !self.tokens.is_empty() => {
                self.tokens.contains(&user_pseudonym(key, tenant, user_id))
            }
            _ => false,
        }
    }

    /// The stored pseudonyms of everyone who objected.
    pub fn pseudonyms(&self) -> &[String] {
        &self.pseudonyms
    }
}

#[derive(Debug, Default)]
pub(crate) struct Cache {
    lists: HashMap<TenantId, (Arc<Objections>, i64, Option<tacet_state::Version>)>,
}

/// What [`KeyStore::object`] or [`KeyStore::withdraw_objection`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    AlreadyThere,
    Removed,
    NotThere,
}

impl KeyStore {
    fn objections_file(tenant: &TenantId) -> String {
        format!("objections/{tenant}.jsonl")
    }

    /// The tenant's objections (cached; re-read when the list changed, checked at most every second).
    pub fn objections(&self, tenant: &TenantId) -> Result<Arc<Objections>> {
        let now = self.clock().now_millis();
        let cache = self.objection_cache();
        {
            let cache = cache.lock().expect("objections lock");
            if let Some((list, checked, _)) = cache.lists.get(tenant)
                && now - checked < RECHECK_MILLIS
            {
                return Ok(Arc::clone(list));
            }
        }
        let modified = self.dir().log_head(&Self::objections_file(tenant))?;
        let mut cache = cache.lock().expect("objections lock");
        if let Some((list, checked, seen)) = cache.lists.get_mut(tenant)
            && *seen == modified
        {
            *checked = now;
            return Ok(Arc::clone(list));
        }
        let list = Arc::new(self.load_objections(tenant)?);
        cache
            .lists
            .insert(tenant.clone(), (Arc::clone(&list), now, modified));
        Ok(list)
    }

    fn load_objections(&self, tenant: &TenantId) -> Result<Objections> {
        let name = Self::objections_file(tenant);
        let Some(bytes) = self.dir().log_read(&name)? else {
            return Ok(Objections::default());
        };
        let text = String::from_utf8_lossy(&bytes);
        let mut current: HashMap<String, Vec<String>> = HashMap::new();
        for (i, l) in text.lines().enumerate() {
            let line: Line = serde_json::from_str(l).map_err(|e| {
                Error::State(std::io::Error::other(format!(
                    "{} line {}: {e}; fix or restore the file",
                    self.dir().place(&name),
                    i + 1
                )))
            })?;
            match line.action.as_str() {
                "object" => {
                    current.insert(line.token, line.pseudonyms);
                }
                _ => {
                    current.remove(&line.token);
                }
            }
        }
        let key = self.subject_keys(tenant)?.first().map(|(_, k)| *k);
        let mut pseudonyms: Vec<String> = current.values().flatten().cloned().collect();
        pseudonyms.sort();
        pseudonyms.dedup();
        Ok(Objections {
            key,
            tokens: current.into_keys().collect(),
            pseudonyms,
        })
    }

    /// Records that the person with `user_id` objects (or restricts processing): their future events are
    /// dropped at ingestion and their stored events left out of queries.
    pub fn object(&self, tenant: &TenantId, user_id: &str) -> Result<Change> {
        self.change_objection(tenant, user_id, true)
    }

    /// Records that the person withdrew their objection: their events count again from now on (events
    /// dropped meanwhile are gone).
    pub fn withdraw_objection(&self, tenant: &TenantId, user_id: &str) -> Result<Change> {
        self.change_objection(tenant, user_id, false)
    }

    fn change_objection(&self, tenant: &TenantId, user_id: &str, object: bool) -> Result<Change> {
        // Make sure the tenant has a subject key v1 to make tokens with.
        self.keys_for(tenant)?;
        let keys = self.subject_keys(tenant)?;
        let token = user_pseudonym(&keys[0].1, tenant, user_id);
        let there = self.load_objections(tenant)?.tokens.contains(&token);
        let change = match (object, there) {
            (true, true) => return Ok(Change::AlreadyThere),
            (false, false) => return Ok(Change::NotThere),
            (true, false) => Change::Added,
            (false, true) => Change::Removed,
        };
        let line = Line {
            at: self
                .clock()
                .now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            action: if object { "object" } else { "withdraw" }.into(),
            pseudonyms: if object {
                keys.iter()
                    .map(|(_, k)| user_pseudonym(k, tenant, user_id))
                    .collect()
            } else {
                Vec::new()
            },
            token,
        };
        self.dir().log_push(
            &Self::objections_file(tenant),
            &serde_json::to_string(&line).expect("a line serialises"),
        )?;
        self.objection_cache()
            .lock()
            .expect("objections lock")
            .lists
            .remove(tenant);
        Ok(change)
    }

    /// Deletes a tenant's objection list (offboarding).
    pub(crate) fn destroy_objections(&self, tenant: &TenantId) -> Result<bool> {
        self.objection_cache()
            .lock()
            .expect("objections lock")
            .lists
            .remove(tenant);
        Ok(self.dir().log_delete(&Self::objections_file(tenant))?)
    }
}

pub(crate) type SharedCache = Mutex<Cache>;
