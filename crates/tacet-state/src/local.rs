//! State in a local directory: 0600 files in 0700 directories, fsynced, safe between processes that
//! share the directory (several nodes on one volume).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::{Backend, Listed, Stored, Version};

/// A directory on local disk.
#[derive(Debug, Clone)]
pub struct Local {
    root: PathBuf,
}

fn located(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// What identifies a file's contents now: a replaced file has a new inode, an appended one a new length.
fn version_of(meta: &fs::Metadata) -> Version {
    Version {
        e_tag: Some(format!(
            "{}-{}-{}.{}",
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec()
        )),
        version: None,
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| located(dir, e))
}

fn temp_name(path: &Path) -> io::Result<PathBuf> {
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    Ok(path.with_file_name(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        u64::from_le_bytes(nonce)
    )))
}

impl Local {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        if key.is_empty() {
            self.root.clone()
        } else {
            self.root.join(key)
        }
    }

    /// The parent directory of `path`, created 0700 if missing.
    fn parent(&self, path: &Path) -> io::Result<PathBuf> {
        let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| located(&dir, e))?;
        Ok(dir)
    }

    /// A new 0600 file holding `bytes`, fsynced, next to `path`.
    fn write_temp(&self, path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
        let tmp = temp_name(path)?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| located(&tmp, e))?;
        if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
            let _ = fs::remove_file(&tmp);
            return Err(located(&tmp, e));
        }
        Ok(tmp)
    }

    /// Holds the directory's lock (between processes too) while `f` runs: what compare-and-swap needs.
    fn locked<T>(&self, dir: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let path = dir.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| located(&path, e))?;
        lock.lock().map_err(|e| located(&path, e))?;
        let out = f();
        let _ = lock.unlock();
        out
    }
}

fn hidden(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".tmp")
}

impl Backend for Local {
    fn get(&self, key: &str) -> io::Result<Option<Stored>> {
        let path = self.path(key);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(located(&path, e)),
        };
        let meta = f.metadata().map_err(|e| located(&path, e))?;
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        f.read_to_end(&mut bytes).map_err(|e| located(&path, e))?;
        Ok(Some(Stored {
            bytes,
            version: version_of(&meta),
        }))
    }

    fn head(&self, key: &str) -> io::Result<Option<Version>> {
        let path = self.path(key);
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(version_of(&meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(located(&path, e)),
        }
    }

    /// The bytes go to a file of this process's own, which is then hard-linked to the name: the link
    /// fails if another process got there first.
    fn create(&self, key: &str, bytes: &[u8]) -> io::Result<bool> {
        let path = self.path(key);
        let dir = self.parent(&path)?;
        let tmp = self.write_temp(&path, bytes)?;
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(&dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(located(&path, e)),
        }
    }

    fn replace(&self, key: &str, bytes: &[u8], expected: &Version) -> io::Result<bool> {
        let path = self.path(key);
        let dir = self.parent(&path)?;
        self.locked(&dir, || {
            match fs::metadata(&path) {
                Ok(meta) if version_of(&meta) == *expected => {}
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(located(&path, e)),
            }
            let tmp = self.write_temp(&path, bytes)?;
            fs::rename(&tmp, &path).map_err(|e| located(&path, e))?;
            sync_dir(&dir)?;
            Ok(true)
        })
    }

    fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(key);
        let dir = self.parent(&path)?;
        let tmp = self.write_temp(&path, bytes)?;
        fs::rename(&tmp, &path).map_err(|e| located(&path, e))?;
        sync_dir(&dir)
    }

    fn append_with(
        &self,
        key: &str,
        f: &mut dyn FnMut(Option<&str>) -> io::Result<String>,
    ) -> io::Result<String> {
        let path = self.path(key);
        self.parent(&path)?;
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| located(&path, e))?;
        file.lock().map_err(|e| located(&path, e))?;
        let out = (|| {
            // The last line: read a tail large enough for any line, or the whole file.
            let len = file.seek(SeekFrom::End(0))?;
            let mut tail = String::new();
            if len > 0 {
                file.seek(SeekFrom::Start(len.saturating_sub(64 << 10)))?;
                file.read_to_string(&mut tail)?;
            }
            let line = f(crate::last_line(&tail))?;
            file.write_all(format!("{line}\n").as_bytes())?;
            file.sync_data()?;
            Ok(line)
        })()
        .map_err(|e| located(&path, e));
        let _ = file.unlock();
        out
    }

    fn delete(&self, key: &str) -> io::Result<bool> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Ok(()) => {
                sync_dir(path.parent().unwrap_or(Path::new(".")))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(located(&path, e)),
        }
    }

    fn delete_all(&self, prefix: &str) -> io::Result<usize> {
        fn count(dir: &Path) -> io::Result<usize> {
            let mut n = 0;
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    n += count(&entry.path())?;
                } else if !hidden(&entry.file_name().to_string_lossy()) {
                    n += 1;
                }
            }
            Ok(n)
        }
        let path = self.path(prefix);
        let n = match count(&path) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(located(&path, e)),
        };
        fs::remove_dir_all(&path).map_err(|e| located(&path, e))?;
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        Ok(n)
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<Listed>> {
        let path = self.path(prefix);
        let entries = match fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(located(&path, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| located(&path, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if hidden(&name) {
                continue;
            }
            let is_dir = entry.file_type().map_err(|e| located(&path, e))?.is_dir();
            out.push(Listed { name, is_dir });
        }
        Ok(out)
    }

    fn place(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        Some(self.path(key))
    }
}
