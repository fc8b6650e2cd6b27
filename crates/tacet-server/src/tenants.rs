//! Which key belongs to which tenant.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::access::{AccessKeys, Refusal, Role};

use tacet_model::TenantId;
use tacet_privacy::TenantPolicy;

/// One tenant as the server knows it.
#[derive(Clone)]
pub struct TenantEntry {
    pub id: TenantId,
    pub policy: TenantPolicy,
    /// Public, write-only: it ships in web pages.
    pub ingest_key: String,
    /// Secret: reads every report and runs SQL over the tenant's events (scope `sql`).
    pub read_key: String,
    /// Secret: the canned reports and the dashboard only (scope `reports`); `None`: no such configured key.
    pub reports_key: Option<String>,
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

/// The tenants, looked up by key. Read and admin keys (from the configuration, or created with
/// `tacet tenant key create`) are held only as keyed hashes (`access.rs`).
#[derive(Debug)]
pub struct Tenants {
    entries: Vec<TenantEntry>,
    /// Ingest keys are public (they ship in web pages): looked up as they are.
    by_ingest_key: HashMap<String, usize>,
    /// Configured read and admin keys, by their hash.
    by_secret: HashMap<[u8; 32], (usize, Role)>,
    access: Arc<AccessKeys>,
}

impl Default for Tenants {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            by_ingest_key: HashMap::new(),
            by_secret: HashMap::new(),
            access: Arc::new(AccessKeys::ephemeral()),
        }
    }
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

/// Why a read or admin key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("unknown {0} key")]
    Unknown(&'static str),
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A valid key of another role (a read key on the admin API, an ingest key on a report, ...).
    #[error("this is the tenant's {have} key; this endpoint needs its {need} key")]
    WrongRole {
        have: &'static str,
        need: &'static str,
    },
    /// A read key whose scope is `reports`, on raw SQL.
    #[error(
        "this read key's scope is reports: it reaches the canned reports (/v1/reports) and the dashboard, \
         not SQL over rows; use a read key with scope sql (`tacet tenant key create --role read --scope sql`)"
    )]
    ReportsScope,
    /// The key's tenant is not (or no longer) in the configuration.
    #[error("the key's tenant {0:?} is not configured on this server")]
    NoTenant(String),
}

impl Tenants {
    /// The tenants with their configured keys, hashed under a pepper that lives only in this process.
    pub fn new(entries: Vec<TenantEntry>) -> Result<Self, TenantsError> {
        Self::with_access(entries, Arc::new(AccessKeys::ephemeral()))
    }

    /// The tenants with their configured keys and the keys created in `access`.
    pub fn with_access(
        entries: Vec<TenantEntry>,
        access: Arc<AccessKeys>,
    ) -> Result<Self, TenantsError> {
        let mut t = Tenants {
            access,
            ..Tenants::default()
        };
        let mut all_keys = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            if t.entries.iter().any(|x| x.id == e.id) {
                return Err(TenantsError::DuplicateId(e.id.to_string()));
            }
            for key in [
                Some(&e.ingest_key),
                Some(&e.read_key),
                e.reports_key.as_ref(),
                e.admin_key.as_ref(),
            ]
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
            t.by_secret
                .insert(t.access.hash(&e.read_key), (i, Role::Read));
            if let Some(k) = &e.reports_key {
                t.by_secret.insert(t.access.hash(k), (i, Role::Reports));
            }
            if let Some(k) = &e.admin_key {
                t.by_secret.insert(t.access.hash(k), (i, Role::Admin));
            }
            t.entries.push(e.clone());
        }
        Ok(t)
    }

    pub fn by_ingest_key(&self, key: &str) -> Option<&TenantEntry> {
        self.by_ingest_key.get(key).map(|&i| &self.entries[i])
    }

    /// The tenant a read or admin key belongs to, if the key grants `role` ([`Role::grants`]), is known, and
    /// has neither expired nor been revoked.
    pub fn authenticate(&self, key: &str, role: Role) -> Result<&TenantEntry, AuthError> {
        match self.authenticate_hash(&self.access.hash(key), role) {
            // The public ingest key, where a secret one is needed: say so (it is public anyway).
            Err(AuthError::Unknown(_)) if self.by_ingest_key.contains_key(key) => {
                Err(AuthError::WrongRole {
                    have: "ingest",
                    need: match role {
                        Role::Reports => "read (or reports)",
                        other => other.as_str(),
                    },
                })
            }
            other => other,
        }
    }

    /// Why `key` is no ingest key: a secret key of some role sent as one is named as such (whoever sent
    /// it holds it), anything else is unknown.
    pub fn not_an_ingest_key(&self, key: &str) -> String {
        let h = self.access.hash(key);
        let role = match self.by_secret.get_key_value(&h) {
            Some((stored, &(_, role))) if crate::access::constant_time_eq(stored, &h) => Some(role),
            _ => self
                .access
                .check_hash(&h, chrono::Utc::now())
                .ok()
                .map(|g| g.role),
        };
        match role {
            Some(role) => format!(
                "this is a secret {} key, not an ingest key: beacons use the tenant's public ingest key; \
                 keep this one out of web pages",
                role.as_str()
            ),
            None => "unknown ingest key".to_owned(),
        }
    }

    /// [`Tenants::authenticate`] by the key's keyed hash ([`AccessKeys::hash`]): a dashboard session keeps
    /// only that, and is checked again on every request, so a revoked or expired key ends its sessions.
    pub fn authenticate_hash(&self, h: &[u8; 32], role: Role) -> Result<&TenantEntry, AuthError> {
        let (index, have) = match self.by_secret.get_key_value(h) {
            Some((stored, &(i, have))) if crate::access::constant_time_eq(stored, h) => (i, have),
            _ => {
                let grant = match self.access.check_hash(h, chrono::Utc::now()) {
                    Err(Refusal::Unknown) => return Err(AuthError::Unknown(role.as_str())),
                    other => other?,
                };
                let i = self
                    .entries
                    .iter()
                    .position(|e| e.id.as_str() == grant.tenant)
                    .ok_or(AuthError::NoTenant(grant.tenant.clone()))?;
                (i, grant.role)
            }
        };
        if matches!(have, Role::Reports | Role::Share) && role == Role::Read {
            return Err(AuthError::ReportsScope);
        }
        if !have.grants(role) {
            return Err(AuthError::WrongRole {
                have: have.as_str(),
                need: role.as_str(),
            });
        }
        Ok(&self.entries[index])
    }

    pub fn access(&self) -> &Arc<AccessKeys> {
        &self.access
    }

    pub fn iter(&self) -> impl Iterator<Item = &TenantEntry> {
        self.entries.iter()
    }
}
