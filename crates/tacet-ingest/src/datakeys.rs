//! Per-tenant data keys for Parquet modular encryption, wrapped by a master key.
//!
//! ```text
//! keys/data/<tenant>.key   12-byte nonce + AES-256-GCM(master key, 16-byte data key, aad = tenant id) (0600)
//! ```
//!
//! The master key (32 bytes) comes from outside the data directory (`TACET_MASTER_KEY`, or
//! `encryption.master_key_file`), so a copy of the data directory alone reads nothing. A tenant's data key
//! is made on first use; destroying it (offboarding) makes every lake file of the tenant unreadable
//! (crypto-shredding), whatever copies or backups exist.

use std::collections::HashMap;
use std::sync::Mutex;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use tacet_model::TenantId;
use tacet_state::Dir;

use crate::{Error, Result};

/// The master key; its `Debug` is redacted.
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// 64 hexadecimal characters (32 bytes), e.g. from `openssl rand -hex 32`.
    pub fn from_hex(s: &str) -> std::result::Result<Self, String> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut key).map_err(|_| {
            "the master key must be 64 hexadecimal characters (32 bytes; `openssl rand -hex 32` makes one)"
                .to_owned()
        })?;
        Ok(Self(key))
    }

    /// How many different byte values the key holds: about 28 for a random key, 1 for the all-zero key
    /// of an example file. Below [`MasterKey::MIN_DISTINCT_BYTES`] it was typed, not generated.
    pub fn distinct_bytes(&self) -> usize {
        let mut seen = [false; 256];
        for b in self.0 {
            seen[b as usize] = true;
        }
        seen.iter().filter(|s| **s).count()
    }

    /// A key for `purpose` derived from this one (HMAC-SHA256), e.g. the key that seals the shared state.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0);
        let tag = ring::hmac::sign(&key, purpose.as_bytes());
        tag.as_ref().try_into().expect("32 bytes")
    }

    /// Fewer different bytes than this: a key made by hand. A random key has fewer with a probability
    /// below 10^-18.
    pub const MIN_DISTINCT_BYTES: usize = 12;
}

/// The tenants' data keys.
#[derive(Debug)]
pub struct DataKeyring {
    dir: Dir,
    master: LessSafeKeyDebug,
    cache: Mutex<HashMap<TenantId, [u8; 16]>>,
}

struct LessSafeKeyDebug(LessSafeKey);

impl std::fmt::Debug for LessSafeKeyDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

fn keys_error(place: &str, what: impl std::fmt::Display) -> Error {
    Error::State(std::io::Error::other(format!("{place}: {what}")))
}

impl DataKeyring {
    /// The data keys under `dir` (created, 0700), wrapped by `master`.
    /// The keyring in `dir` (`keys/data` of the shared state). Wrapped keys only ever reach it.
    pub fn open(dir: impl Into<Dir>, master: MasterKey) -> Result<Self> {
        let dir: Dir = dir.into();
        if let Some(path) = dir.local_path() {
            std::fs::create_dir_all(&path).map_err(|e| Error::keys(&path, e))?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(|e| Error::keys(&path, e))?;
        }
        let key = UnboundKey::new(&AES_256_GCM, &master.0).expect("a 32-byte AES-256 key");
        Ok(Self {
            dir,
            master: LessSafeKeyDebug(LessSafeKey::new(key)),
            cache: Mutex::default(),
        })
    }

    fn name(tenant: &TenantId) -> String {
        format!("{tenant}.key")
    }

    /// The tenant's data key, made on first use.
    pub fn key(&self, tenant: &TenantId) -> Result<[u8; 16]> {
        let mut cache = self.cache.lock().expect("keyring lock");
        if let Some(k) = cache.get(tenant) {
            return Ok(*k);
        }
        let name = Self::name(tenant);
        let path = self.dir.place(&name);
        let key = match self.dir.read(&name)? {
            Some(mut wrapped) => {
                if wrapped.len() < NONCE_LEN + 16 {
                    return Err(keys_error(
                        &path,
                        "a wrapped data key is too short; restore it from backup",
                    ));
                }
                let mut body = wrapped.split_off(NONCE_LEN);
                let nonce = Nonce::try_assume_unique_for_key(&wrapped).expect("12 bytes");
                let plain = self
                    .master
                    .0
                    .open_in_place(nonce, Aad::from(tenant.as_str().as_bytes()), &mut body)
                    .map_err(|_| {
                        keys_error(
                            &path,
                            "cannot unwrap the tenant's data key: the master key is not the one it was made with",
                        )
                    })?;
                plain
                    .try_into()
                    .map_err(|_| keys_error(&path, "a data key must be 16 bytes"))?
            }
            None => {
                match self.create(tenant, &name)? {
                    Some(key) => key,
                    None => {
                        // Another node sharing this key store made it first: read theirs.
                        drop(cache);
                        return self.key(tenant);
                    }
                }
            }
        };
        cache.insert(tenant.clone(), key);
        Ok(key)
    }

    /// A new wrapped key at `path`; `None` if another process created one first.
    fn create(&self, tenant: &TenantId, name: &str) -> Result<Option<[u8; 16]>> {
        let path = &self.dir.place(name);
        let mut key = [0u8; 16];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut key).map_err(|e| keys_error(path, e))?;
        getrandom::fill(&mut nonce).map_err(|e| keys_error(path, e))?;
        let mut body = key.to_vec();
        self.master
            .0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(tenant.as_str().as_bytes()),
                &mut body,
            )
            .map_err(|_| keys_error(path, "cannot wrap a data key"))?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&body);
        Ok(self.dir.create(name, &wrapped)?.then_some(key))
    }

    /// Destroys the tenant's data key: its lake files can no longer be read by anyone.
    pub fn destroy(&self, tenant: &TenantId) -> Result<bool> {
        self.cache.lock().expect("keyring lock").remove(tenant);
        Ok(self.dir.delete(&Self::name(tenant))?)
    }
}

impl tacet_lake::DataKeys for DataKeyring {
    fn key(&self, tenant: &TenantId) -> std::result::Result<Option<Vec<u8>>, String> {
        DataKeyring::key(self, tenant)
            .map(|k| Some(k.to_vec()))
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_key_is_stable_wrapped_and_bound_to_its_master_key() {
        let dir = tempfile::tempdir().unwrap();
        let master = "11".repeat(32);
        let ring = DataKeyring::open(dir.path(), MasterKey::from_hex(&master).unwrap()).unwrap();
        let t = TenantId::new("acme").unwrap();
        let k = ring.key(&t).unwrap();
        let wrapped = std::fs::read(dir.path().join("acme.key")).unwrap();
        assert!(
            !wrapped.windows(16).any(|w| w == k),
            "the file holds the key in clear"
        );
        let again = DataKeyring::open(dir.path(), MasterKey::from_hex(&master).unwrap()).unwrap();
        assert_eq!(again.key(&t).unwrap(), k);
        let other =
            DataKeyring::open(dir.path(), MasterKey::from_hex(&"22".repeat(32)).unwrap()).unwrap();
        assert!(
            other
                .key(&t)
                .unwrap_err()
                .to_string()
                .contains("master key")
        );
        assert!(MasterKey::from_hex("abc").is_err());
        assert!(again.destroy(&t).unwrap());
        assert_ne!(again.key(&t).unwrap(), k, "a new key after destruction");
    }
}
