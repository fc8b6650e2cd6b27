//! The state that every ingestion node must share: salts and subject keys, wrapped data keys, the access-key
//! pepper, objections, erasure records, the node register and the audit chain.
//!
//! It lives in one of two places behind one [`Backend`] trait:
//! - [`Local`]: a directory (the embedded default, `<data_dir>`, or `shared_dir` on a volume every node
//!   mounts). Files are 0600 in 0700 directories and fsynced.
//! - [`Objects`]: an object store (the lake's S3 bucket, under `_tacet/state/`), so that nodes share nothing
//!   but the bucket. Calls are synchronous for their callers and run on a small runtime of their own.
//!
//! Both give the same atomicity, which is what lets two nodes never disagree:
//! - [`Dir::create`] writes only if nothing is there (a salt made by two nodes at once: one wins, the other
//!   reads the winner's);
//! - [`Dir::replace`] writes only if the object is still the [`Version`] the caller read (compare and swap);
//! - [`Dir::append_with`] appends a line computed from the last one, retried on a lost race, so that a hash
//!   chain cannot fork.
//!
//! Every error names the place (`/data/keys/salts/t/2026-12-04.key`, `s3://…/_tacet/state/keys/…`).

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

mod lease;
mod local;
mod log;
mod objects;
mod sealed;

pub use lease::{Held, Lease};
pub use local::Local;
pub use log::{Copied, SEGMENT_LINES, copy_tree};
pub use objects::Objects;
pub use sealed::Sealed;

/// What a stored object was when it was read, for [`Dir::replace`]. Opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub(crate) e_tag: Option<String>,
    pub(crate) version: Option<String>,
}

/// An object and its version.
#[derive(Debug, Clone)]
pub struct Stored {
    pub bytes: Vec<u8>,
    pub version: Version,
}

/// One name in a listing: an object, or a prefix (a directory) with objects below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub is_dir: bool,
}

/// A place that keeps state. Keys are `/`-separated relative paths (`keys/salts/t/2026-12-04.key`).
/// Missing objects are `Ok(None)` / `Ok(false)`, never errors.
pub trait Backend: Send + Sync + fmt::Debug {
    fn get(&self, key: &str) -> io::Result<Option<Stored>>;
    /// The version of the object now, without its bytes.
    fn head(&self, key: &str) -> io::Result<Option<Version>>;
    /// Writes `bytes` only if nothing is at `key`; whether this call wrote it.
    fn create(&self, key: &str, bytes: &[u8]) -> io::Result<bool>;
    /// Writes `bytes` only if the object is still `expected`; whether this call wrote it.
    fn replace(&self, key: &str, bytes: &[u8], expected: &Version) -> io::Result<bool>;
    /// Writes `bytes`, whatever was there (atomically: a reader sees the old bytes or the new).
    fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()>;
    /// Appends `f(last line)` and a newline, atomically with respect to every other appender of `key`;
    /// returns the line. `f` may run more than once (a lost race is retried).
    fn append_with(
        &self,
        key: &str,
        f: &mut dyn FnMut(Option<&str>) -> io::Result<String>,
    ) -> io::Result<String>;
    /// Whether something was deleted.
    fn delete(&self, key: &str) -> io::Result<bool>;
    /// Deletes everything under `prefix/`; how many objects.
    fn delete_all(&self, prefix: &str) -> io::Result<usize>;
    /// The names directly under `prefix/` (no order promised).
    fn list(&self, prefix: &str) -> io::Result<Vec<Listed>>;
    /// Where `key` is, for messages: a path or a URL.
    fn place(&self, key: &str) -> String;
    /// The directory `key` is in, if the backend is a local directory.
    fn local_path(&self, key: &str) -> Option<std::path::PathBuf>;
}

/// What [`Dir::update`] does to an object: its bytes now (`None`: absent) → its new bytes (`None`: leave it).
pub type Change<'a> = dyn FnMut(Option<&[u8]>) -> io::Result<Option<Vec<u8>>> + 'a;

/// A directory of a [`Backend`]: what components hold (`keys/`, `audit/`, `nodes/`). Cheap to clone.
#[derive(Clone)]
pub struct Dir {
    backend: Arc<dyn Backend>,
    prefix: String,
}

impl fmt::Debug for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.backend.place(&self.prefix))
    }
}

impl From<&Path> for Dir {
    /// A local directory (created on first write).
    fn from(path: &Path) -> Self {
        Dir::new(Arc::new(Local::new(path)))
    }
}

impl From<&std::path::PathBuf> for Dir {
    fn from(path: &std::path::PathBuf) -> Self {
        Dir::from(path.as_path())
    }
}

impl From<&Dir> for Dir {
    fn from(dir: &Dir) -> Self {
        dir.clone()
    }
}

impl Dir {
    /// The root of `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            prefix: String::new(),
        }
    }

    /// The directory `name` below this one.
    pub fn sub(&self, name: &str) -> Dir {
        Dir {
            backend: self.backend.clone(),
            prefix: self.key(name),
        }
    }

    fn key(&self, name: &str) -> String {
        match (self.prefix.is_empty(), name.is_empty()) {
            (_, true) => self.prefix.clone(),
            (true, false) => name.to_owned(),
            (false, false) => format!("{}/{name}", self.prefix),
        }
    }

    pub fn get(&self, name: &str) -> io::Result<Option<Stored>> {
        self.backend.get(&self.key(name))
    }

    pub fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.get(name)?.map(|s| s.bytes))
    }

    pub fn head(&self, name: &str) -> io::Result<Option<Version>> {
        self.backend.head(&self.key(name))
    }

    pub fn exists(&self, name: &str) -> io::Result<bool> {
        Ok(self.head(name)?.is_some())
    }

    pub fn create(&self, name: &str, bytes: &[u8]) -> io::Result<bool> {
        self.backend.create(&self.key(name), bytes)
    }

    pub fn replace(&self, name: &str, bytes: &[u8], expected: &Version) -> io::Result<bool> {
        self.backend.replace(&self.key(name), bytes, expected)
    }

    pub fn put(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.backend.put(&self.key(name), bytes)
    }

    /// Appends one line.
    pub fn append(&self, name: &str, line: &str) -> io::Result<()> {
        self.append_with(name, &mut |_| Ok(line.to_owned()))
            .map(drop)
    }

    pub fn append_with(
        &self,
        name: &str,
        f: &mut dyn FnMut(Option<&str>) -> io::Result<String>,
    ) -> io::Result<String> {
        self.backend.append_with(&self.key(name), f)
    }

    /// Changes an object by `f(current bytes)` (`None`: absent) until no one else changed it in between;
    /// `f` returning `None` leaves it as it is. Returns what is stored afterwards.
    pub fn update(&self, name: &str, f: &mut Change<'_>) -> io::Result<Option<Vec<u8>>> {
        loop {
            let current = self.get(name)?;
            let Some(next) = f(current.as_ref().map(|s| s.bytes.as_slice()))? else {
                return Ok(current.map(|s| s.bytes));
            };
            let written = match &current {
                None => self.create(name, &next)?,
                Some(s) => self.replace(name, &next, &s.version)?,
            };
            if written {
                return Ok(Some(next));
            }
        }
    }

    pub fn delete(&self, name: &str) -> io::Result<bool> {
        self.backend.delete(&self.key(name))
    }

    /// Deletes this directory and everything in it; how many objects.
    pub fn delete_all(&self) -> io::Result<usize> {
        self.backend.delete_all(&self.prefix)
    }

    /// The names in this directory.
    pub fn list(&self) -> io::Result<Vec<Listed>> {
        self.backend.list(&self.prefix)
    }

    /// Where `name` is, for messages.
    pub fn place(&self, name: &str) -> String {
        self.backend.place(&self.key(name))
    }

    /// This directory on local disk, if it is one.
    pub fn local_path(&self) -> Option<std::path::PathBuf> {
        self.backend.local_path(&self.prefix)
    }
}

/// The last non-empty line of `text`.
pub(crate) fn last_line(text: &str) -> Option<&str> {
    text.trim_end_matches('\n')
        .rsplit('\n')
        .next()
        .filter(|l| !l.is_empty())
}

/// [`Backend::append_with`] for a backend that cannot append in place: the whole object is read, the line
/// added, and the object replaced only if unchanged meanwhile; a lost race starts again.
pub(crate) fn append_by_swapping(
    backend: &dyn Backend,
    key: &str,
    f: &mut dyn FnMut(Option<&str>) -> io::Result<String>,
) -> io::Result<String> {
    loop {
        let current = backend.get(key)?;
        let text = match &current {
            Some(s) => std::str::from_utf8(&s.bytes).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not UTF-8 text", backend.place(key)),
                )
            })?,
            None => "",
        };
        let line = f(last_line(text))?;
        let mut next = String::with_capacity(text.len() + line.len() + 2);
        next.push_str(text);
        if !next.is_empty() && !next.ends_with('\n') {
            next.push('\n');
        }
        next.push_str(&line);
        next.push('\n');
        let written = match &current {
            None => backend.create(key, next.as_bytes())?,
            Some(s) => backend.replace(key, next.as_bytes(), &s.version)?,
        };
        if written {
            return Ok(line);
        }
    }
}

#[cfg(test)]
mod tests;
