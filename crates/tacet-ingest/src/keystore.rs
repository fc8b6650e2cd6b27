//! The key store: daily visitor salts and per-tenant subject keys, as files under `<data dir>/keys/`.
//!
//! ```text
//! keys/                      (0700)
//!   salts/<YYYY-MM-DD>.key   32 random bytes (0600); destroyed 48 h after the UTC day ends
//!   subject/<tenant>.v1.key  32 random bytes (0600); the tenant's key for user pseudonyms
//!   lifecycle.jsonl          one line per creation or destruction: time, action, key id; never a key
//! ```
//!
//! Salts are per day of receipt, shared by all tenants (the visitor hash includes the tenant). Once a salt
//! file is gone, no visitor id of that day can be recomputed from anything on disk.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{Days, NaiveDate};
use tacet_model::{Clock, TenantId};
use tacet_privacy::Keys;

use crate::{Error, Result};

/// How many whole days after its own a salt survives: destroyed once its day ended 48 hours ago.
const SALT_DAYS_KEPT_AFTER: u64 = 2;

#[derive(Debug)]
pub struct KeyStore {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    salts: BTreeMap<NaiveDate, [u8; 32]>,
    subject: HashMap<TenantId, [u8; 32]>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("salt_days", &self.salts.keys().collect::<Vec<_>>())
            .field("subject_keys", &self.subject.len())
            .finish()
    }
}

impl KeyStore {
    /// Opens (or creates) the key store in `dir`, loads what is there and destroys expired salts.
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        for sub in ["", "salts", "subject"] {
            let d = dir.join(sub);
            fs::create_dir_all(&d).map_err(|e| Error::keys(&d, e))?;
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::keys(&d, e))?;
        }
        let mut state = State::default();
        for entry in fs::read_dir(dir.join("salts")).map_err(|e| Error::keys(dir, e))? {
            let path = entry.map_err(|e| Error::keys(dir, e))?.path();
            let Some(day) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            else {
                continue;
            };
            state.salts.insert(day, read_key(&path)?);
        }
        let store = Self {
            dir: dir.to_owned(),
            clock,
            state: Mutex::new(state),
        };
        store.destroy_expired()?;
        Ok(store)
    }

    /// The keys for an event of `tenant` received now: today's salt and the tenant's subject key.
    pub fn keys_for(&self, tenant: &TenantId) -> Result<Keys> {
        let today = self.clock.now().date_naive();
        let mut state = self.state.lock().expect("key store lock");
        let visitor_salt = match state.salts.get(&today) {
            Some(s) => *s,
            None => {
                let salt = self.create_key(&self.salt_path(today), &format!("salt/{today}"))?;
                state.salts.insert(today, salt);
                drop(state);
                self.destroy_expired()?;
                state = self.state.lock().expect("key store lock");
                salt
            }
        };
        let subject_key = match state.subject.get(tenant) {
            Some(k) => *k,
            None => {
                let path = self.dir.join("subject").join(format!("{tenant}.v1.key"));
                let key = if path.exists() {
                    read_key(&path)?
                } else {
                    self.create_key(&path, &format!("subject/{tenant}/v1"))?
                };
                state.subject.insert(tenant.clone(), key);
                key
            }
        };
        Ok(Keys {
            visitor_salt,
            subject_key,
        })
    }

    /// Destroys every salt whose day ended more than 48 hours ago; returns the days destroyed.
    pub fn destroy_expired(&self) -> Result<Vec<NaiveDate>> {
        let today = self.clock.now().date_naive();
        let Some(cutoff) = today.checked_sub_days(Days::new(SALT_DAYS_KEPT_AFTER)) else {
            return Ok(Vec::new());
        };
        let mut state = self.state.lock().expect("key store lock");
        let expired: Vec<NaiveDate> = state.salts.range(..cutoff).map(|(d, _)| *d).collect();
        for day in &expired {
            let path = self.salt_path(*day);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::keys(&path, e)),
            }
            state.salts.remove(day);
            self.record("destroyed", &format!("salt/{day}"))?;
        }
        if !expired.is_empty() {
            sync_dir(&self.dir.join("salts"))?;
        }
        Ok(expired)
    }

    /// The days whose salts exist now.
    pub fn salt_days(&self) -> Vec<NaiveDate> {
        self.state
            .lock()
            .expect("key store lock")
            .salts
            .keys()
            .copied()
            .collect()
    }

    fn salt_path(&self, day: NaiveDate) -> PathBuf {
        self.dir.join("salts").join(format!("{day}.key"))
    }

    fn create_key(&self, path: &Path, id: &str) -> Result<[u8; 32]> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)
            .map_err(|e| Error::keys(path, std::io::Error::other(e.to_string())))?;
        let tmp = path.with_extension("tmp");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::keys(&tmp, e))?;
        f.write_all(&key)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::keys(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::keys(path, e))?;
        sync_dir(path.parent().unwrap_or(&self.dir))?;
        self.record("created", id)?;
        Ok(key)
    }

    fn record(&self, action: &str, id: &str) -> Result<()> {
        let path = self.dir.join("lifecycle.jsonl");
        let line = serde_json::json!({
            "at": self.clock.now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "action": action,
            "key": id,
        });
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::keys(&path, e))?;
        writeln!(f, "{line}")
            .and_then(|()| f.sync_data())
            .map_err(|e| Error::keys(&path, e))
    }
}

fn read_key(path: &Path) -> Result<[u8; 32]> {
    let bytes = fs::read(path).map_err(|e| Error::keys(path, e))?;
    bytes.try_into().map_err(|_| {
        Error::keys(
            path,
            std::io::Error::other(
                "a key file must hold exactly 32 bytes; restore it from backup or remove it",
            ),
        )
    })
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::keys(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tacet_model::ManualClock;

    const DAY: i64 = 86_400_000;

    #[test]
    fn salts_rotate_daily_and_are_destroyed_after_48_hours() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_764_374_400_000)); // 2025-11-29T00:00Z
        let ks = KeyStore::open(dir.path(), clock.clone()).unwrap();
        let t = TenantId::new("t").unwrap();
        let k1 = ks.keys_for(&t).unwrap();
        assert_eq!(ks.keys_for(&t).unwrap().visitor_salt, k1.visitor_salt);
        clock.advance(DAY);
        let k2 = ks.keys_for(&t).unwrap();
        assert_ne!(k1.visitor_salt, k2.visitor_salt);
        assert_eq!(k1.subject_key, k2.subject_key);
        // Day 1 ended at the start of day 2; 48 hours later (start of day 4) it must be gone.
        clock.advance(DAY);
        ks.keys_for(&t).unwrap();
        assert_eq!(ks.salt_days().len(), 3);
        clock.advance(DAY);
        ks.keys_for(&t).unwrap();
        let days: Vec<String> = ks.salt_days().iter().map(|d| d.to_string()).collect();
        assert_eq!(days, ["2025-11-30", "2025-12-01", "2025-12-02"]);
        assert!(!dir.path().join("salts/2025-11-29.key").exists());
        let log = fs::read_to_string(dir.path().join("lifecycle.jsonl")).unwrap();
        assert!(
            log.contains(
                r#""action":"destroyed","at":"2025-12-02T00:00:00.000Z","key":"salt/2025-11-29""#
            ),
            "{log}"
        );

        // Reopening keeps the same keys; a key file is private to the owner.
        let reopened = KeyStore::open(dir.path(), clock.clone()).unwrap();
        assert_eq!(reopened.keys_for(&t).unwrap().subject_key, k1.subject_key);
        let mode = fs::metadata(dir.path().join("subject/t.v1.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
