//! The key store: per-tenant daily visitor salts and subject keys, under `keys/` of the shared state
//! (`tacet_state`: `<data dir>/keys/` by default, or `_tacet/state/keys/` in the lake's bucket).
//!
//! ```text
//! keys/                              (0700)
//!   salts/<tenant>/<YYYY-MM-DD>.key  32 random bytes (0600); the day is the tenant's (UTC or its time
//!                                    zone); destroyed 48 h after that day ends
//!   subject/<tenant>.v<N>.key        32 random bytes (0600); the tenant's keys for user pseudonyms, the
//!                                    highest version in use, older ones kept to serve subject rights
//!   objections/<tenant>.jsonl        who opted out, by pseudonym (objections.rs)
//!   lifecycle.jsonl                  one line per creation, rotation or destruction: time, action, tenant,
//!                                    key id; never a key (also in the audit log, when one is set)
//! ```
//!
//! Salts are per tenant and per day of receipt. Once a salt file is gone, no visitor id of that day can be
//! recomputed from anything on disk. Expired salts are destroyed when a new one is made, when the store
//! opens, and whenever [`KeyStore::destroy_expired`] runs (the pipeline's flusher calls it every tick), so
//! a quiet tenant's salt does not outlive its 48 hours.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use tacet_model::{Clock, TenantId};
use tacet_privacy::Keys;
use tacet_state::Dir;

use crate::{Error, Result};

/// How long after its day ends a salt survives.
const SALT_KEPT_AFTER_DAY_MILLIS: i64 = 48 * 3_600_000;
/// How often a cached subject key is checked for a newer version written by `tacet keys rotate`.
const SUBJECT_RECHECK_MILLIS: i64 = 10_000;

#[derive(Debug)]
pub struct KeyStore {
    dir: Dir,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    objections: crate::objections::SharedCache,
    /// The pseudonyms of each tenant's current erasure records, and when they were read.
    erasing: crate::erasures::Cache,
    /// Where key events are also recorded, when set.
    audit: std::sync::OnceLock<Arc<tacet_audit::AuditLog>>,
    /// The tenants' data keys (encryption at rest), when a master key is configured.
    keyring: std::sync::OnceLock<Arc<crate::DataKeyring>>,
}

struct Subject {
    key: [u8; 32],
    checked_at: i64,
}

#[derive(Default)]
struct State {
    salts: BTreeMap<(TenantId, NaiveDate), [u8; 32]>,
    subject: HashMap<TenantId, Subject>,
    zones: HashMap<TenantId, Tz>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("salts", &self.salts.keys().collect::<Vec<_>>())
            .field("subject_keys", &self.subject.len())
            .finish()
    }
}

/// The instant a tenant's day ends (the next local midnight), in UTC.
fn day_end(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let next = day
        .checked_add_days(Days::new(1))
        .unwrap_or(day)
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists");
    // A midnight skipped by a DST change: the earliest instant after it.
    tz.from_local_datetime(&next)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(next + chrono::Duration::hours(1)))
                .earliest()
        })
        .map_or_else(|| next.and_utc(), |t| t.with_timezone(&Utc))
}

impl KeyStore {
    /// Opens (or creates) the key store in `dir` (a local directory, or `keys/` of the shared state in the
    /// object store) and loads what is there. Call [`KeyStore::set_zone`] for tenants with a time zone,
    /// then [`KeyStore::destroy_expired`].
    pub fn open(dir: impl Into<Dir>, clock: Arc<dyn Clock>) -> Result<Self> {
        let dir: Dir = dir.into();
        if let Some(path) = dir.local_path() {
            for sub in ["", "salts", "subject"] {
                let d = path.join(sub);
                fs::create_dir_all(&d).map_err(|e| Error::keys(&d, e))?;
                fs::set_permissions(&d, fs::Permissions::from_mode(0o700))
                    .map_err(|e| Error::keys(&d, e))?;
            }
        }
        let mut state = State::default();
        let salts = dir.sub("salts");
        for entry in salts.list()? {
            let Some(tenant) = TenantId::new(&entry.name).ok().filter(|_| entry.is_dir) else {
                // A salt of the earlier shared layout (salts/<day>.key): destroy it now.
                if !entry.is_dir && entry.name.ends_with(".key") {
                    salts.delete(&entry.name)?;
                }
                continue;
            };
            let days = salts.sub(tenant.as_str());
            for file in days.list()? {
                let Some(day) = file
                    .name
                    .strip_suffix(".key")
                    .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                    .filter(|_| !file.is_dir)
                else {
                    continue;
                };
                state
                    .salts
                    .insert((tenant.clone(), day), read_key(&days, &file.name)?);
            }
        }
        Ok(Self {
            dir,
            clock,
            state: Mutex::new(state),
            objections: Default::default(),
            erasing: Default::default(),
            audit: std::sync::OnceLock::new(),
            keyring: std::sync::OnceLock::new(),
        })
    }

    /// Records every key event (creation, rotation, destruction) in `audit` too, from now on. Once.
    pub fn set_audit(&self, audit: Arc<tacet_audit::AuditLog>) {
        let _ = self.audit.set(audit);
    }

    /// The data keyring, so that `destroy_tenant` destroys the tenant's data key too. Once.
    pub fn set_keyring(&self, keyring: Arc<crate::DataKeyring>) {
        let _ = self.keyring.set(keyring);
    }

    /// Where the keys are.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// This key store's identity (`store.id`, 16 random bytes in hex, made once): the same on every node
    /// that shares the store, different for a key store made anywhere else. A lake remembers the one
    /// whose pseudonyms it holds, so that a node with other keys cannot write into it.
    pub fn id(&self) -> Result<String> {
        identity(&self.dir, "store.id")
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub(crate) fn objection_cache(&self) -> &crate::objections::SharedCache {
        &self.objections
    }

    pub(crate) fn erasure_cache(&self) -> &crate::erasures::Cache {
        &self.erasing
    }

    /// Sets the time zone whose days a tenant's salts cover (UTC if never set).
    pub fn set_zone(&self, tenant: &TenantId, tz: Option<Tz>) {
        let mut state = self.state.lock().expect("key store lock");
        match tz {
            Some(tz) => state.zones.insert(tenant.clone(), tz),
            None => state.zones.remove(tenant),
        };
    }

    fn zone(state: &State, tenant: &TenantId) -> Tz {
        state.zones.get(tenant).copied().unwrap_or(Tz::UTC)
    }

    fn salts(&self, tenant: &TenantId) -> Dir {
        self.dir.sub("salts").sub(tenant.as_str())
    }

    /// The keys for an event of `tenant` received now: the tenant's salt of today, its newest subject key.
    pub fn keys_for(&self, tenant: &TenantId) -> Result<Keys> {
        let now = self.clock.now();
        let mut state = self.state.lock().expect("key store lock");
        let today = now.with_timezone(&Self::zone(&state, tenant)).date_naive();
        let slot = (tenant.clone(), today);
        let visitor_salt = match state.salts.get(&slot) {
            Some(s) => *s,
            None => {
                let salt = self.create_key(
                    &self.salts(tenant),
                    &format!("{today}.key"),
                    tenant,
                    &format!("salt/{tenant}/{today}"),
                    "created",
                )?;
                state.salts.insert(slot, salt);
                self.destroy_expired_locked(&mut state)?;
                salt
            }
        };
        let now_ms = now.timestamp_millis();
        let fresh = state
            .subject
            .get(tenant)
            .is_some_and(|s| now_ms - s.checked_at < SUBJECT_RECHECK_MILLIS);
        if !fresh {
            let key = match self.latest_subject(tenant)? {
                Some((_, key)) => key,
                None => self.create_key(
                    &self.dir.sub("subject"),
                    &subject_name(tenant, 1),
                    tenant,
                    &format!("subject/{tenant}/v1"),
                    "created",
                )?,
            };
            state.subject.insert(
                tenant.clone(),
                Subject {
                    key,
                    checked_at: now_ms,
                },
            );
        }
        let subject = &state.subject[tenant];
        Ok(Keys {
            visitor_salt,
            subject_key: subject.key,
        })
    }

    /// Every subject key version a tenant has, oldest first: a user's pseudonym under each is what a
    /// subject-rights request searches for.
    pub fn subject_keys(&self, tenant: &TenantId) -> Result<Vec<(u32, [u8; 32])>> {
        let mut versions = self.subject_versions(tenant)?;
        versions.sort_unstable();
        let subject = self.dir.sub("subject");
        versions
            .into_iter()
            .map(|v| Ok((v, read_key(&subject, &subject_name(tenant, v))?)))
            .collect()
    }

    /// Creates the next version of a tenant's subject key; new events use it (a running server within
    /// 10 seconds). Older versions stay, so rights requests still find events pseudonymised under them.
    pub fn rotate_subject(&self, tenant: &TenantId) -> Result<u32> {
        let next = self
            .subject_versions(tenant)?
            .into_iter()
            .max()
            .unwrap_or(0)
            + 1;
        let key = self.create_key(
            &self.dir.sub("subject"),
            &subject_name(tenant, next),
            tenant,
            &format!("subject/{tenant}/v{next}"),
            if next == 1 { "created" } else { "rotated" },
        )?;
        let mut state = self.state.lock().expect("key store lock");
        state.subject.insert(
            tenant.clone(),
            Subject {
                key,
                checked_at: self.clock.now_millis(),
            },
        );
        Ok(next)
    }

    /// The version of the subject key new events of `tenant` use, if it has one yet.
    pub fn subject_version(&self, tenant: &TenantId) -> Result<Option<u32>> {
        Ok(self.subject_versions(tenant)?.into_iter().max())
    }

    fn subject_versions(&self, tenant: &TenantId) -> Result<Vec<u32>> {
        let prefix = format!("{tenant}.v");
        Ok(self
            .dir
            .sub("subject")
            .list()?
            .into_iter()
            .filter_map(|entry| {
                entry
                    .name
                    .strip_prefix(&prefix)
                    .and_then(|n| n.strip_suffix(".key"))
                    .and_then(|n| n.parse::<u32>().ok())
            })
            .collect())
    }

    fn latest_subject(&self, tenant: &TenantId) -> Result<Option<(u32, [u8; 32])>> {
        match self.subject_versions(tenant)?.into_iter().max() {
            Some(v) => Ok(Some((
                v,
                read_key(&self.dir.sub("subject"), &subject_name(tenant, v))?,
            ))),
            None => Ok(None),
        }
    }

    /// Destroys every salt whose day ended more than 48 hours ago; returns what it destroyed.
    pub fn destroy_expired(&self) -> Result<Vec<(TenantId, NaiveDate)>> {
        let mut state = self.state.lock().expect("key store lock");
        self.destroy_expired_locked(&mut state)
    }

    fn destroy_expired_locked(&self, state: &mut State) -> Result<Vec<(TenantId, NaiveDate)>> {
        let now = self.clock.now();
        let expired: Vec<(TenantId, NaiveDate)> = state
            .salts
            .keys()
            .filter(|(tenant, day)| {
                let end = day_end(*day, Self::zone(state, tenant));
                (now - end).num_milliseconds() >= SALT_KEPT_AFTER_DAY_MILLIS
            })
            .cloned()
            .collect();
        for (tenant, day) in &expired {
            // Another node may have destroyed it first: the salt is gone either way.
            self.salts(tenant).delete(&format!("{day}.key"))?;
            state.salts.remove(&(tenant.clone(), *day));
            self.record("destroyed", tenant, &format!("salt/{tenant}/{day}"))?;
        }
        Ok(expired)
    }

    /// Destroys every key of a tenant: its salts and all subject key versions (end of contract). Events
    /// already stored keep their pseudonyms, which can no longer be linked to anyone.
    pub fn destroy_tenant(&self, tenant: &TenantId) -> Result<usize> {
        let mut state = self.state.lock().expect("key store lock");
        let salts = self.salts(tenant);
        let mut destroyed = 0;
        for entry in salts.list()? {
            let Some(day) = entry.name.strip_suffix(".key").filter(|_| !entry.is_dir) else {
                continue;
            };
            if salts.delete(&entry.name)? {
                self.record("destroyed", tenant, &format!("salt/{tenant}/{day}"))?;
                destroyed += 1;
            }
        }
        salts.delete_all()?;
        state.salts.retain(|(t, _), _| t != tenant);
        let subject = self.dir.sub("subject");
        for v in self.subject_versions(tenant)? {
            if subject.delete(&subject_name(tenant, v))? {
                self.record("destroyed", tenant, &format!("subject/{tenant}/v{v}"))?;
                destroyed += 1;
            }
        }
        state.subject.remove(tenant);
        drop(state);
        if let Some(keyring) = self.keyring.get()
            && keyring.destroy(tenant)?
        {
            self.record("destroyed", tenant, &format!("data/{tenant}"))?;
            destroyed += 1;
        }
        if self.destroy_objections(tenant)? {
            self.record("destroyed", tenant, &format!("objections/{tenant}"))?;
            destroyed += 1;
        }
        if self.destroy_erasures(tenant)? {
            self.record("destroyed", tenant, &format!("erasures/{tenant}"))?;
            destroyed += 1;
        }
        Ok(destroyed)
    }

    /// The (tenant, day) pairs whose salts exist now.
    pub fn salt_days(&self) -> Vec<(TenantId, NaiveDate)> {
        self.state
            .lock()
            .expect("key store lock")
            .salts
            .keys()
            .cloned()
            .collect()
    }

    fn create_key(
        &self,
        dir: &Dir,
        name: &str,
        tenant: &TenantId,
        id: &str,
        action: &str,
    ) -> Result<[u8; 32]> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        if !dir.create(name, &key)? {
            // Another node sharing this key store made it first: use theirs, so both agree.
            return read_key(dir, name);
        }
        self.record(action, tenant, id)?;
        Ok(key)
    }

    fn record(&self, action: &str, tenant: &TenantId, id: &str) -> Result<()> {
        let line = serde_json::json!({
            "at": self.clock.now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "action": action,
            "tenant": tenant.as_str(),
            "key": id,
        });
        self.dir.log_push("lifecycle.jsonl", &line.to_string())?;
        if let Some(audit) = self.audit.get() {
            audit
                .append(
                    "server",
                    &format!("key.{action}"),
                    Some(tenant.as_str()),
                    serde_json::json!({ "key": id }),
                )
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        Ok(())
    }
}

fn subject_name(tenant: &TenantId, version: u32) -> String {
    format!("{tenant}.v{version}.key")
}

/// The random identity at `name` in `dir` (16 bytes in hex), made the first time; processes racing to
/// make it agree on one (the store's create-if-absent).
pub fn identity(dir: &Dir, name: &str) -> Result<String> {
    if let Some(bytes) = dir.read(name)? {
        return Ok(String::from_utf8_lossy(&bytes).trim().to_owned());
    }
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    dir.create(name, hex::encode(bytes).as_bytes())?;
    let text = dir.read(name)?.ok_or_else(|| {
        std::io::Error::other(format!("{} vanished as it was made", dir.place(name)))
    })?;
    Ok(String::from_utf8_lossy(&text).trim().to_owned())
}

fn read_key(dir: &Dir, name: &str) -> Result<[u8; 32]> {
    let bytes = dir.read(name)?.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "{}: the key is gone (destroyed by another node?)",
                dir.place(name)
            ),
        )
    })?;
    bytes.try_into().map_err(|_| {
        Error::State(std::io::Error::other(format!(
            "{}: a key file must hold exactly 32 bytes; restore it from backup or remove it",
            dir.place(name)
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use tacet_model::ManualClock;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if fs::read(&p)
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle)
                {
                    found.push(p);
                }
            }
        }
        found
    }

    /// Two ingestion nodes sharing one key store (a shared volume): whichever makes the day's salt and the
    /// subject key first, the other uses the same, so a visitor counts once across nodes.
    #[test]
    fn nodes_sharing_a_key_store_agree_on_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_764_374_400_000));
        let one = KeyStore::open(dir.path(), clock.clone()).unwrap();
        let two = KeyStore::open(dir.path(), clock.clone()).unwrap();
        let t = TenantId::new("t").unwrap();
        let first = one.keys_for(&t).unwrap();
        let second = two.keys_for(&t).unwrap();
        assert_eq!(first.visitor_salt, second.visitor_salt);
        assert_eq!(first.subject_key, second.subject_key);
        // Racing threads, each with its own store, on a fresh day.
        clock.advance(DAY);
        let salts: Vec<[u8; 32]> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let clock = clock.clone();
                    let (dir, t) = (dir.path(), t.clone());
                    s.spawn(move || {
                        let ks = KeyStore::open(dir, clock).unwrap();
                        ks.keys_for(&t).unwrap().visitor_salt
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(salts.iter().all(|s| *s == salts[0]), "one salt per day");
        assert_ne!(salts[0], first.visitor_salt);
        let created = fs::read_to_string(dir.path().join("lifecycle.jsonl")).unwrap();
        assert_eq!(
            created.matches("salt/t/").count(),
            2,
            "recorded once per day: {created}"
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("salts/t"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn salts_rotate_daily_per_tenant_and_are_destroyed_48_hours_after_their_day() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_764_374_400_000)); // 2025-11-29T00:00Z
        let ks = KeyStore::open(dir.path(), clock.clone()).unwrap();
        let (t, u) = (TenantId::new("t").unwrap(), TenantId::new("u").unwrap());
        let k1 = ks.keys_for(&t).unwrap();
        assert_eq!(ks.keys_for(&t).unwrap().visitor_salt, k1.visitor_salt);
        assert_ne!(
            ks.keys_for(&u).unwrap().visitor_salt,
            k1.visitor_salt,
            "salts are per tenant"
        );
        clock.advance(DAY);
        let k2 = ks.keys_for(&t).unwrap();
        assert_ne!(k1.visitor_salt, k2.visitor_salt);
        assert_eq!(k1.subject_key, k2.subject_key);
        // Day 1 ended at the start of day 2; just before 48 hours later it survives, at 48 hours it is gone,
        // even with no event arriving (the flusher calls destroy_expired).
        clock.advance(2 * DAY - 1);
        assert!(ks.destroy_expired().unwrap().is_empty());
        assert!(!files_containing(dir.path(), &k1.visitor_salt).is_empty());
        clock.advance(1);
        let destroyed = ks.destroy_expired().unwrap();
        assert_eq!(
            destroyed.len(),
            2,
            "t's and u's salts of 2025-11-29: {destroyed:?}"
        );
        assert!(!dir.path().join("salts/t/2025-11-29.key").exists());
        // Nothing on disk holds the destroyed salt any more: no id of that day can be recomputed.
        assert_eq!(
            files_containing(dir.path(), &k1.visitor_salt),
            Vec::<PathBuf>::new()
        );
        let log = fs::read_to_string(dir.path().join("lifecycle.jsonl")).unwrap();
        assert!(
            log.contains(
                r#""action":"destroyed","at":"2025-12-02T00:00:00.000Z","key":"salt/t/2025-11-29","tenant":"t""#
            ),
            "{log}"
        );
        assert!(!log.contains(&hex::encode(k1.visitor_salt)));

        // Reopening keeps the same keys; a key file is private to the owner.
        let reopened = KeyStore::open(dir.path(), clock.clone()).unwrap();
        assert_eq!(reopened.keys_for(&t).unwrap().subject_key, k1.subject_key);
        let mode = fs::metadata(dir.path().join("subject/t.v1.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_tenant_time_zone_moves_its_day() {
        let dir = tempfile::tempdir().unwrap();
        // 2025-11-29T23:30Z is already 2025-11-30 in Berlin (UTC+1).
        let clock = Arc::new(ManualClock::new(
            1_764_374_400_000 + 23 * HOUR + 30 * 60_000,
        ));
        let ks = KeyStore::open(dir.path(), clock.clone()).unwrap();
        let t = TenantId::new("berlin").unwrap();
        ks.set_zone(&t, Some(chrono_tz::Europe::Berlin));
        let before = ks.keys_for(&t).unwrap();
        assert!(dir.path().join("salts/berlin/2025-11-30.key").exists());
        clock.advance(HOUR); // 00:30Z: same Berlin day
        assert_eq!(ks.keys_for(&t).unwrap().visitor_salt, before.visitor_salt);
        // The Berlin day 2025-11-30 ends at 2025-11-30T23:00Z; destroyed at 2025-12-02T23:00Z.
        clock.set(1_764_374_400_000 + 3 * DAY + 23 * HOUR - 1);
        ks.keys_for(&t).unwrap();
        assert!(dir.path().join("salts/berlin/2025-11-30.key").exists());
        clock.advance(1);
        ks.destroy_expired().unwrap();
        assert!(!dir.path().join("salts/berlin/2025-11-30.key").exists());
    }

    #[test]
    fn subject_keys_rotate_with_versions_and_old_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_764_374_400_000));
        let ks = KeyStore::open(dir.path(), clock.clone()).unwrap();
        let t = TenantId::new("t").unwrap();
        let v1 = ks.keys_for(&t).unwrap().subject_key;
        // Another process (the CLI) rotates; this store notices within ten seconds.
        let cli = KeyStore::open(dir.path(), clock.clone()).unwrap();
        assert_eq!(cli.rotate_subject(&t).unwrap(), 2);
        assert_eq!(ks.keys_for(&t).unwrap().subject_key, v1, "cached");
        clock.advance(SUBJECT_RECHECK_MILLIS);
        let v2 = ks.keys_for(&t).unwrap().subject_key;
        assert_ne!(v1, v2);
        assert_eq!(ks.subject_version(&t).unwrap(), Some(2));
        let all = ks.subject_keys(&t).unwrap();
        assert_eq!(all, vec![(1, v1), (2, v2)]);
        let log = fs::read_to_string(dir.path().join("lifecycle.jsonl")).unwrap();
        assert!(
            log.contains(r#""action":"rotated""#) && log.contains("subject/t/v2"),
            "{log}"
        );

        assert_eq!(
            ks.destroy_tenant(&t).unwrap(),
            3,
            "one salt and two subject keys"
        );
        assert!(ks.subject_keys(&t).unwrap().is_empty());
        assert_eq!(files_containing(dir.path(), &v1), Vec::<PathBuf>::new());
    }
}
