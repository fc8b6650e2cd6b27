//! Which key belongs to which tenant.

use std::collections::HashMap;
use std::fmt;

use tacet_model::TenantId;
use tacet_privacy::TenantPolicy;

/// One tenant as the server knows it.
#[derive(Clone)]
pub struct TenantEntry {
    pub id: TenantId,
    pub policy: TenantPolicy,
    /// Public, write-only: it ships in web pages.
    pub ingest_key: String,
    /// Secret: reads every report and runs SQL over the tenant's events.
    pub read_key: String,
    /// Secret: the admin API (subject rights, retention, audit log); `None` turns it off for the tenant.
    pub admin_key: Option<String>,
    /// Web origins (`https://shop.example`) whose pages may post beacons; empty: any origin.
    pub origins: Vec<String>,
}

impl TenantEntry {
    /// Whether a request from `origin` (the `Origin` header, if any) may post this tenant's events.
    /// Requests without an `Origin` (servers, apps) are always allowed: the ingest key is their check.
    pub fn allows_origin(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(o) => {
                self.origins.is_empty() || self.origins.iter().any(|a| a.eq_ignore_ascii_case(o))
            }
        }
    }
}

impl fmt::Debug for TenantEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantEntry")
            .field("id", &self.id)
            .field("policy", &self.policy)
            .field("origins", &self.origins)
            .finish_non_exhaustive()
    }
}

/// The tenants, looked up by key.
#[derive(Debug, Default)]
pub struct Tenants {
    entries: Vec<TenantEntry>,
    by_ingest_key: HashMap<String, usize>,
    by_read_key: HashMap<String, usize>,
    by_admin_key: HashMap<String, usize>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TenantsError {
    #[error("tenant {0:?} is listed twice")]
    DuplicateId(String),
    #[error(
        "tenant {0:?} has a key that another tenant (or its own other key) also uses; every key must be unique"
    )]
    DuplicateKey(String),
    #[error("tenant {0:?} has an empty key")]
    EmptyKey(String),
}

impl Tenants {
    pub fn new(entries: Vec<TenantEntry>) -> Result<Self, TenantsError> {
        let mut t = Tenants::default();
        let mut all_keys = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            if t.entries.iter().any(|x| x.id == e.id) {
                return Err(TenantsError::DuplicateId(e.id.to_string()));
            }
            for key in [Some(&e.ingest_key), Some(&e.read_key), e.admin_key.as_ref()]
                .into_iter()
                .flatten()
            {
                if key.is_empty() {
                    return Err(TenantsError::EmptyKey(e.id.to_string()));
                }
                if all_keys.insert(key.clone(), i).is_some() {
                    return Err(TenantsError::DuplicateKey(e.id.to_string()));
                }
            }
            t.by_ingest_key.insert(e.ingest_key.clone(), i);
            t.by_read_key.insert(e.read_key.clone(), i);
            if let Some(k) = &e.admin_key {
                t.by_admin_key.insert(k.clone(), i);
            }
            t.entries.push(e.clone());
        }
        Ok(t)
    }

    pub fn by_ingest_key(&self, key: &str) -> Option<&TenantEntry> {
        self.by_ingest_key.get(key).map(|&i| &self.entries[i])
    }

    pub fn by_read_key(&self, key: &str) -> Option<&TenantEntry> {
        self.by_read_key.get(key).map(|&i| &self.entries[i])
    }

    pub fn by_admin_key(&self, key: &str) -> Option<&TenantEntry> {
        self.by_admin_key.get(key).map(|&i| &self.entries[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &TenantEntry> {
        self.entries.iter()
    }
}
