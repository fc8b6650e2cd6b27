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
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use tacet_model::TenantId;

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

    /// Fewer different bytes than this: a key made by hand. A random key has fewer with a probability
    /// below 10^-18.
    pub const MIN_DISTINCT_BYTES: usize = 12;
}

/// The tenants' data keys.
#[derive(Debug)]
pub struct DataKeyring {
    dir: PathBuf,
    master: LessSafeKeyDebug,
    cache: Mutex<HashMap<TenantId, [u8; 16]>>,
}

struct LessSafeKeyDebug(LessSafeKey);

impl std::fmt::Debug for LessSafeKeyDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

fn keys_error(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Keys {
        path: path.display().to_string(),
        source: std::io::Error::other(what.to_string()),
    }
}

impl DataKeyring {
    /// The data keys under `dir` (created, 0700), wrapped by `master`.
    pub fn open(dir: &Path, master: MasterKey) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| Error::keys(dir, e))?;
        fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| Error::keys(dir, e))?;
        let key = UnboundKey::new(&AES_256_GCM, &master.0).expect("a 32-byte AES-256 key");
        Ok(Self {
            dir: dir.to_owned(),
            master: LessSafeKeyDebug(LessSafeKey::new(key)),
            cache: Mutex::default(),
        })
    }

    fn path(&self, tenant: &TenantId) -> PathBuf {
        self.dir.join(format!("{tenant}.key"))
    }

    /// The tenant's data key, made on first use.
    pub fn key(&self, tenant: &TenantId) -> Result<[u8; 16]> {
        let mut cache = self.cache.lock().expect("keyring lock");
        if let Some(k) = cache.get(tenant) {
            return Ok(*k);
        }
        let path = self.path(tenant);
        let key = match fs::read(&path) {
            Ok(mut wrapped) => {
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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match self.create(tenant, &path)? {
                    Some(key) => key,
                    None => {
                        // Another node sharing this key store made it first: read theirs.
                        drop(cache);
                        return self.key(tenant);
                    }
                }
            }
            Err(e) => return Err(Error::keys(&path, e)),
        };
        cache.insert(tenant.clone(), key);
        Ok(key)
    }

    /// A new wrapped key at `path`; `None` if another process created one first.
    fn create(&self, tenant: &TenantId, path: &Path) -> Result<Option<[u8; 16]>> {
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
        Ok(crate::keystore::create_secret(path, &wrapped)?.then_some(key))
    }

    /// Destroys the tenant's data key: its lake files can no longer be read by anyone.
    pub fn destroy(&self, tenant: &TenantId) -> Result<bool> {
        self.cache.lock().expect("keyring lock").remove(tenant);
        let path = self.path(tenant);
        match fs::remove_file(&path) {
            Ok(()) => {
                fs::File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| Error::keys(&self.dir, e))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::keys(&path, e)),
        }
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
        let wrapped = fs::read(dir.path().join("acme.key")).unwrap();
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
