//! Segment files: `<first seq, zero-padded to 20 digits>.wal`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

pub(crate) const EXTENSION: &str = "wal";

/// A segment on disk and the records it holds.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub path: PathBuf,
    /// The last sequence number written to it; `first_seq - 1` while empty.
    pub last_seq: u64,
    pub bytes: u64,
}

pub(crate) fn path_for(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.{EXTENSION}"))
}

/// The segment files in `dir`, oldest first.
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.extension().is_some_and(|e| e == EXTENSION)
            && let Some(first) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((first, path));
        }
    }
    out.sort();
    Ok(out)
}
