//! The checkpoint: how far the log has been persisted elsewhere, and which flush is under way.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What the caller has made durable elsewhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Every record with a sequence number at or below this is persisted.
    pub persisted: u64,
    /// A flush of records `from..=to` that had started: after a crash it must be redone with the same range
    /// so that its files get the same names.
    pub flushing: Option<(u64, u64)>,
}

pub(crate) const FILE: &str = "checkpoint.json";

impl Checkpoint {
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Checkpoint {
                path,
                detail: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Writes the checkpoint durably: temporary file, fsync, rename, fsync of the directory.
    pub(crate) fn store(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join("checkpoint.json.tmp");
        let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let bytes = serde_json::to_vec(self).expect("a checkpoint serialises");
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, dir.join(FILE)).map_err(|e| Error::io(dir.join(FILE), e))?;
        sync_dir(dir)
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
