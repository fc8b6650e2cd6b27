//! Read and admin keys, stored only as keyed hashes.
//!
//! ```text
//! <data dir>/keys/access.key     32 random bytes (0600): the key of the hash (a "pepper")
//! <data dir>/keys/access.jsonl   one line per change (0600), never a key:
//!   {"at":"…","action":"created","id":"k3f9a1c2","tenant":"acme","role":"read","prefix":"tk_read_3f9a",
//!    "hash":"<HMAC-SHA256 of the key under access.key, hex>","expires":"2027-03-01T00:00:00Z"}
//!   {"at":"…","action":"revoked","id":"k3f9a1c2"}
//! ```
//!
//! A key is `tk_<role>_<64 hex characters>` (256 random bits) and is shown once, when created. Requests are
//! authenticated by HMAC-SHA256 of the presented key under `access.key`, looked up among the stored hashes
//! and compared in constant time: the file alone lets no one recover or test a key, and a fast keyed hash is
//! enough for keys of this entropy (a slow password hash guards low-entropy secrets, at a cost on every
//! request). The server re-reads the file when it changes (checked at most every two seconds), so a key
//! created or revoked with `tacet tenant key …` takes effect without a restart.
//!
//! Keys in the configuration file (`read_key`, `admin_key`, or `*_env`) keep working and are held in memory
//! only as the same hashes; they cannot expire or be revoked except by editing the configuration.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Instant;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tacet_model::TenantId;
use tacet_state::{Dir, Version};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A read key with scope `sql`: SQL over the tenant's pseudonymised rows (`/v1/sql`), and everything a
    /// `reports` key reaches. What `read_key` in the configuration has always been.
    Read,
    /// A read key with scope `reports`: the canned reports and the dashboard, k-threshold applied, never a
    /// row. For handing the dashboard to a team without handing over the rows.
    Reports,
    /// The admin API: subject rights, retention, the audit log.
    Admin,
    /// A share link (`/ui/share/<key>`): the dashboard read-only, as a `reports` key sees it, for whoever
    /// holds the link; made and revoked through the admin API.
    Share,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Reports => "reports",
            Role::Admin => "admin",
            Role::Share => "share",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Role::Read),
            "reports" => Some(Role::Reports),
            "admin" => Some(Role::Admin),
            "share" => Some(Role::Share),
            _ => None,
        }
    }

    /// Whether a key of this role may do what `need` allows (an `sql` read key also reaches the reports).
    pub fn grants(self, need: Role) -> bool {
        self == need || (matches!(self, Role::Read | Role::Share) && need == Role::Reports)
    }

    /// How a read key's scope is named (`sql`, `reports`), or the role for an admin key.
    pub fn scope(self) -> &'static str {
        match self {
            Role::Read => "sql",
            Role::Reports => "reports",
            Role::Admin => "admin",
            Role::Share => "share",
        }
    }
}

/// One created key, as listed (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub tenant: String,
    pub role: Role,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    pub created: String,
    pub expires: Option<DateTime<Utc>>,
    pub revoked: bool,
    /// A share link's password as an Argon2id PHC string (salted, slow), if it has one.
    pub password: Option<String>,
}

impl Grant {
    /// Whether `given` is this link's password (Argon2id; false when it has none).
    pub fn password_matches(&self, given: &str) -> bool {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        let Some(phc) = &self.password else {
            return false;
        };
        PasswordHash::new(phc).is_ok_and(|h| {
            argon2::Argon2::default()
                .verify_password(given.as_bytes(), &h)
                .is_ok()
        })
    }
}

/// A share link's password, as a salted Argon2id PHC string.
fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    at: String,
    action: String,
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hash: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
    /// A share link's password (Argon2id PHC string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

/// Why a presented key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unknown key")]
    Unknown,
    #[error("key {0} has expired; create a new one with `tacet tenant key create`")]
    Expired(String),
    #[error("key {0} was revoked")]
    Revoked(String),
}

#[derive(Debug, Default)]
struct State {
    /// hash → grant
    grants: HashMap<[u8; 32], Grant>,
    seen: Option<Version>,
    checked: Option<Instant>,
}

/// The created keys of every tenant.
#[derive(Debug)]
pub struct AccessKeys {
    /// `keys/` of the shared state; `None` for [`AccessKeys::ephemeral`].
    dir: Option<Dir>,
    pepper: [u8; 32],
    state: RwLock<State>,
}

fn io(place: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{place}: {e}"))
}

const FILE: &str = "access.jsonl";

impl AccessKeys {
    /// Opens (creating the pepper if missing) the access keys under `keys_dir` (`keys/` of the shared
    /// state).
    pub fn open(keys_dir: impl Into<Dir>) -> std::io::Result<Self> {
        let dir: Dir = keys_dir.into();
        let pepper = match dir.read("access.key")? {
            Some(bytes) => bytes.try_into().map_err(|_| {
                io(
                    &dir.place("access.key"),
                    "must hold exactly 32 bytes; restore it from backup (without it no created key works)",
                )
            })?,
            None => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| io(&dir.place("access.key"), e))?;
                // Create-if-absent: another node sharing this key store may be doing the same.
                if !dir.create("access.key", &key)? {
                    return Self::open(dir);
                }
                key
            }
        };
        let keys = Self {
            dir: Some(dir),
            pepper,
            state: RwLock::default(),
        };
        keys.reload(true)?;
        Ok(keys)
    }

    /// Keys hashed under a random pepper that lives only in this process (tests, or no data directory).
    pub fn ephemeral() -> Self {
        let mut pepper = [0u8; 32];
        getrandom::fill(&mut pepper).expect("the OS random source");
        Self {
            dir: None,
            pepper,
            state: RwLock::default(),
        }
    }

    /// A secret for `purpose`, derived from the pepper: the same on every node sharing this key store
    /// (the dashboard's session key). Distinct from every key hash: no key starts with a NUL byte.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        self.hash(&format!("\0tacet derived secret\0{purpose}"))
    }

    /// HMAC-SHA256 of a key under the pepper.
    pub fn hash(&self, key: &str) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.pepper).expect("any key length");
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn reload(&self, force: bool) -> std::io::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let file = &dir.place(FILE);
        {
            let st = self.state.read().expect("access lock");
            if !force && st.checked.is_some_and(|c| c.elapsed().as_secs() < 2) {
                return Ok(());
            }
        }
        let modified = dir.log_head(FILE)?;
        let mut st = self.state.write().expect("access lock");
        st.checked = Some(Instant::now());
        if !force && st.seen == modified {
            return Ok(());
        }
        let bytes = dir.log_read(FILE)?.unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let mut grants: HashMap<[u8; 32], Grant> = HashMap::new();
        let mut by_id: HashMap<String, [u8; 32]> = HashMap::new();
        for (i, l) in text.lines().enumerate() {
            let line: Line =
                serde_json::from_str(l).map_err(|e| io(file, format!("line {}: {e}", i + 1)))?;
            match line.action.as_str() {
                "created" => {
                    let (Some(tenant), Some(role), Some(prefix), Some(hash)) =
                        (line.tenant, line.role, line.prefix, line.hash)
                    else {
                        return Err(io(file, format!("line {}: incomplete", i + 1)));
                    };
                    let mut h = [0u8; 32];
                    hex::decode_to_slice(&hash, &mut h)
                        .map_err(|e| io(file, format!("line {}: {e}", i + 1)))?;
                    let expires = line
                        .expires
                        .as_deref()
                        .map(|e| {
                            DateTime::parse_from_rfc3339(e)
                                .map(|d| d.with_timezone(&Utc))
                                .map_err(|x| io(file, format!("line {}: expires: {x}", i + 1)))
                        })
                        .transpose()?;
                    by_id.insert(line.id.clone(), h);
                    grants.insert(
                        h,
                        Grant {
                            id: line.id,
                            tenant,
                            role,
                            prefix,
                            created: line.at,
                            expires,
                            revoked: false,
                            password: line.password,
                        },
                    );
                }
                "revoked" => {
                    if let Some(g) = by_id.get(&line.id).and_then(|h| grants.get_mut(h)) {
                        g.revoked = true;
                    }
                }
                _ => {}
            }
        }
        st.grants = grants;
        st.seen = modified;
        Ok(())
    }

    fn place(&self) -> String {
        self.dir
            .as_ref()
            .map_or_else(|| "(in memory)".to_owned(), |d| d.place(FILE))
    }

    fn append(&self, line: &Line) -> std::io::Result<()> {
        let Some(dir) = &self.dir else {
            return Err(std::io::Error::other(
                "keys made here would be lost at exit: this server has no key store",
            ));
        };
        dir.log_push(
            FILE,
            &serde_json::to_string(line).expect("a line serialises"),
        )?;
        self.reload(true)
    }

    /// Creates a key for `tenant` with `role`, valid until `expires`; returns the key (shown once) and its
    /// grant.
    pub fn create(
        &self,
        tenant: &TenantId,
        role: Role,
        expires: Option<DateTime<Utc>>,
    ) -> std::io::Result<(String, Grant)> {
        self.create_with_password(tenant, role, expires, None)
    }

    /// [`AccessKeys::create`] with a password that must be given beside the key (share links).
    pub fn create_with_password(
        &self,
        tenant: &TenantId,
        role: Role,
        expires: Option<DateTime<Utc>>,
        password: Option<&str>,
    ) -> std::io::Result<(String, Grant)> {
        let file = &self.place();
        let password = password
            .map(hash_password)
            .transpose()
            .map_err(|e| io(file, e))?;
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| io(file, e))?;
        let mut id = [0u8; 4];
        getrandom::fill(&mut id).map_err(|e| io(file, e))?;
        let key = format!("tk_{}_{}", role.as_str(), hex::encode(secret));
        let prefix: String = key.chars().take(role.as_str().len() + 8).collect();
        let line = Line {
            at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            action: "created".into(),
            id: format!("k{}", hex::encode(id)),
            tenant: Some(tenant.to_string()),
            role: Some(role),
            prefix: Some(prefix),
            hash: Some(hex::encode(self.hash(&key))),
            expires: expires.map(|e| e.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            password,
        };
        self.append(&line)?;
        let grant = self
            .list()
            .into_iter()
            .find(|g| g.id == line.id)
            .ok_or_else(|| io(file, "the new key is not in the file"))?;
        Ok((key, grant))
    }

    /// Revokes a key by id; `false` if there is no such key (or it was revoked already).
    pub fn revoke(&self, id: &str) -> std::io::Result<bool> {
        if !self.list().iter().any(|g| g.id == id && !g.revoked) {
            return Ok(false);
        }
        self.append(&Line {
            at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            action: "revoked".into(),
            id: id.to_owned(),
            tenant: None,
            role: None,
            prefix: None,
            hash: None,
            expires: None,
            password: None,
        })?;
        Ok(true)
    }

    /// Every created key, oldest first.
    pub fn list(&self) -> Vec<Grant> {
        let _ = self.reload(false);
        let mut all: Vec<Grant> = self
            .state
            .read()
            .expect("access lock")
            .grants
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        all
    }

    /// The grant of a presented key, if it is a created one that is neither expired nor revoked.
    pub fn check(&self, key: &str, now: DateTime<Utc>) -> Result<Grant, Refusal> {
        self.check_hash(&self.hash(key), now)
    }

    /// [`AccessKeys::check`] by the key's hash.
    pub fn check_hash(&self, h: &[u8; 32], now: DateTime<Utc>) -> Result<Grant, Refusal> {
        if let Err(e) = self.reload(false) {
            tracing::error!(error = %e, "cannot re-read the access keys; using the last good list");
        }
        let st = self.state.read().expect("access lock");
        let (stored, grant) = st.grants.get_key_value(h).ok_or(Refusal::Unknown)?;
        if !constant_time_eq(stored, h) {
            return Err(Refusal::Unknown);
        }
        if grant.revoked {
            return Err(Refusal::Revoked(grant.id.clone()));
        }
        if grant.expires.is_some_and(|e| e <= now) {
            return Err(Refusal::Expired(grant.id.clone()));
        }
        Ok(grant.clone())
    }
}

/// Compares two hashes in time independent of where they differ.
pub fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_as_hashes_and_can_expire_and_be_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let keys = AccessKeys::open(dir.path()).unwrap();
        let t = TenantId::new("acme").unwrap();
        let now = Utc::now();
        let (read, grant) = keys.create(&t, Role::Read, None).unwrap();
        let (reports, _) = keys.create(&t, Role::Reports, None).unwrap();
        assert!(reports.starts_with("tk_reports_"), "{reports}");
        assert_eq!(keys.check(&reports, now).unwrap().role, Role::Reports);
        assert!(Role::Read.grants(Role::Reports) && !Role::Reports.grants(Role::Read));
        assert!(!Role::Admin.grants(Role::Reports) && !Role::Reports.grants(Role::Admin));
        assert!(
            read.starts_with("tk_read_") && read.len() == 8 + 64,
            "{read}"
        );
        assert_eq!(keys.check(&read, now).unwrap(), grant);
        let (soon, _) = keys
            .create(&t, Role::Admin, Some(now + chrono::Duration::hours(1)))
            .unwrap();
        assert_eq!(keys.check(&soon, now).unwrap().role, Role::Admin);
        assert!(matches!(
            keys.check(&soon, now + chrono::Duration::hours(2)),
            Err(Refusal::Expired(_))
        ));
        assert!(keys.revoke(&grant.id).unwrap());
        assert!(!keys.revoke(&grant.id).unwrap());
        assert_eq!(
            keys.check(&read, now),
            Err(Refusal::Revoked(grant.id.clone()))
        );
        assert_eq!(keys.check("tk_read_guess", now), Err(Refusal::Unknown));
        // Neither file holds a key; another process sees the same grants.
        for f in ["access.jsonl", "access.key"] {
            let bytes = std::fs::read(dir.path().join(f)).unwrap();
            for k in [&read, &soon] {
                let secret = &k.as_bytes()[k.len() - 64..];
                assert!(!bytes.windows(64).any(|w| w == secret), "{f} holds a key");
            }
        }
        let again = AccessKeys::open(dir.path()).unwrap();
        assert_eq!(again.list(), keys.list());
        assert_eq!(again.check(&read, now), Err(Refusal::Revoked(grant.id)));
    }
}
