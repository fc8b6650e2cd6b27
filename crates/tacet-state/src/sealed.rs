//! A backend whose objects are sealed (AES-256-GCM) under a state key, for shared state in a bucket that
//! others may read: an analyst who reads the lake's Parquet files with DuckDB must not find the salts and
//! subject keys next to them, with which pseudonyms could be recomputed from known user ids.
//!
//! ```text
//! object = "TSS1" | 12-byte random nonce | AES-256-GCM(state key, bytes, aad = the object's key)
//! ```
//!
//! The object's key is the associated data, so a sealed object moved to another name does not open.
//! Versions, listings and deletions are the inner backend's; an append is a compare-and-swap of the whole
//! (re-sealed) object, retried until it wins.

use std::io;
use std::sync::Arc;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::{Backend, Listed, Stored, Version};

const MAGIC: &[u8; 4] = b"TSS1";

/// Seals every object of `inner` under a 32-byte key.
pub struct Sealed {
    inner: Arc<dyn Backend>,
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Sealed {
    pub fn new(inner: Arc<dyn Backend>, key: &[u8; 32]) -> Self {
        let key = UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key");
        Self {
            inner,
            key: LessSafeKey::new(key),
        }
    }

    fn seal(&self, key: &str, bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
        let mut body = bytes.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.as_bytes()),
                &mut body,
            )
            .map_err(|_| io::Error::other(format!("{}: cannot seal", self.place(key))))?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    fn open(&self, key: &str, sealed: Vec<u8>) -> io::Result<Vec<u8>> {
        let refused = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {why}", self.place(key)),
            )
        };
        let Some(rest) = sealed.strip_prefix(MAGIC.as_slice()) else {
            return Err(refused(
                "not sealed with the state key (written by something other than Tacet, or by a node \
                 without shared_state = \"lake\"); remove it if you know where it came from",
            ));
        };
        if rest.len() < NONCE_LEN {
            return Err(refused("too short to be a sealed object"));
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("12 bytes");
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(key.as_bytes()), &mut body)
            .map_err(|_| {
                refused(
                    "cannot open it with this node's state key: every node must have the same one \
                     (TACET_STATE_KEY, or the same master key it is derived from)",
                )
            })?;
        Ok(plain.to_vec())
    }
}

impl Backend for Sealed {
    fn get(&self, key: &str) -> io::Result<Option<Stored>> {
        match self.inner.get(key)? {
            None => Ok(None),
            Some(s) => Ok(Some(Stored {
                bytes: self.open(key, s.bytes)?,
                version: s.version,
            })),
        }
    }

    fn head(&self, key: &str) -> io::Result<Option<Version>> {
        self.inner.head(key)
    }

    fn create(&self, key: &str, bytes: &[u8]) -> io::Result<bool> {
        self.inner.create(key, &self.seal(key, bytes)?)
    }

    fn replace(&self, key: &str, bytes: &[u8], expected: &Version) -> io::Result<bool> {
        self.inner.replace(key, &self.seal(key, bytes)?, expected)
    }

    fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        self.inner.put(key, &self.seal(key, bytes)?)
    }

    fn append_with(
        &self,
        key: &str,
        f: &mut dyn FnMut(Option<&str>) -> io::Result<String>,
    ) -> io::Result<String> {
        crate::append_by_swapping(self, key, f)
    }

    fn delete(&self, key: &str) -> io::Result<bool> {
        self.inner.delete(key)
    }

    fn delete_all(&self, prefix: &str) -> io::Result<usize> {
        self.inner.delete_all(prefix)
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<Listed>> {
        self.inner.list(prefix)
    }

    fn place(&self, key: &str) -> String {
        self.inner.place(key)
    }

    fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.inner.local_path(key)
    }
}
