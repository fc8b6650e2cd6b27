//! Lake file names, and which files a reader sees.
//!
//! A flush writes `part-<from>-<to>.parquet`, named by the write-ahead-log range it covers. Files are never
//! changed in place: erasure and rectification write the next *generation* of a file
//! (`part-<from>-<to>.g<N>.parquet`), compaction writes one file whose range covers the files it merged,
//! and only then are the old files deleted. A reader that lists a partition between the two steps sees
//! both; [`visible`] keeps exactly one copy of every row by hiding each file that another listed file
//! supersedes: a file with the same range and a higher generation, or a file whose range strictly contains
//! its range. So a concurrent query sees the old files or the new one, never both and never neither, on
//! local disk and on S3 alike (no rename needed, each `put` is atomic).
//!
//! Ranges of flushes never overlap (each covers the log records after the previous one), so "contains"
//! can only come from compaction.
//!
//! Several ingestion nodes may share one lake, each with its own write-ahead log: a node with an id writes
//! `part-n<node>-<from>-<to>[.g<N>].parquet`. Ranges mean something only within one node's log, so a file
//! supersedes only files of the same node (a lake written without node ids is "no node", its own class),
//! and names of different nodes never collide.

use std::collections::BTreeMap;

use object_store::ObjectMeta;
use object_store::path::Path;

/// The parts of a lake file's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName {
    /// The ingestion node whose log the range belongs to; `None` for a single-node lake.
    pub node: Option<u16>,
    pub from: u64,
    pub to: u64,
    pub generation: u32,
}

impl FileName {
    /// Parses `part-[n<node>-]<from>-<to>[.g<N>].parquet`; `None` for anything else.
    pub fn parse(path: &Path) -> Option<Self> {
        let name = path.filename()?.strip_prefix("part-")?;
        let name = name.strip_suffix(".parquet")?;
        let (node, name) = match name.strip_prefix('n') {
            Some(rest) => {
                let (node, rest) = rest.split_once('-')?;
                (Some(node.parse().ok()?), rest)
            }
            None => (None, name),
        };
        let (range, generation) = match name.split_once(".g") {
            Some((range, g)) => (range, g.parse().ok()?),
            None => (name, 0),
        };
        let (from, to) = range.split_once('-')?;
        let (from, to) = (from.parse().ok()?, to.parse().ok()?);
        (from <= to).then_some(Self {
            node,
            from,
            to,
            generation,
        })
    }

    /// The file name, `part-[n<node>-]<from:020>-<to:020>[.g<N>].parquet`.
    pub fn render(&self) -> String {
        let node = self.node.map(|n| format!("n{n}-")).unwrap_or_default();
        match self.generation {
            0 => format!("part-{node}{:020}-{:020}.parquet", self.from, self.to),
            g => format!("part-{node}{:020}-{:020}.g{g}.parquet", self.from, self.to),
        }
    }

    /// The next generation of the same range (what erasure and rectification write).
    pub fn next_generation(&self) -> Self {
        Self {
            generation: self.generation + 1,
            ..*self
        }
    }

    /// Whether `self` makes `other` invisible: same node, and same range and newer or a strictly larger
    /// range.
    pub fn supersedes(&self, other: &Self) -> bool {
        if self.node != other.node {
            return false;
        }
        if (self.from, self.to) == (other.from, other.to) {
            return self.generation > other.generation;
        }
        self.from <= other.from && other.to <= self.to
    }
}

/// The files a reader should see, in the order given: within each directory and node, every file
/// superseded by another listed file is left out. Objects that are not lake files (other names) are kept.
pub fn visible(files: Vec<ObjectMeta>) -> Vec<ObjectMeta> {
    use std::collections::HashSet;
    let mut by_dir: BTreeMap<(String, Option<u16>), Vec<FileName>> = BTreeMap::new();
    for f in &files {
        if let Some(name) = FileName::parse(&f.location) {
            by_dir
                .entry((parent(&f.location), name.node))
                .or_default()
                .push(name);
        }
    }
    // Sorted by start, then widest and newest first, a file is superseded exactly when an earlier one
    // reaches at least as far: O(n log n) per directory (a busy day can have thousands of small files).
    let mut hidden: HashSet<(String, FileName)> = HashSet::new();
    for ((dir, _node), mut names) in by_dir {
        names.sort_by(|a, b| {
            a.from
                .cmp(&b.from)
                .then(b.to.cmp(&a.to))
                .then(b.generation.cmp(&a.generation))
        });
        let mut reach: Option<u64> = None;
        for name in names {
            if reach.is_some_and(|r| r >= name.to) {
                hidden.insert((dir.clone(), name));
            }
            reach = Some(reach.map_or(name.to, |r| r.max(name.to)));
        }
    }
    if hidden.is_empty() {
        return files;
    }
    files
        .into_iter()
        .filter(|f| match FileName::parse(&f.location) {
            None => true,
            Some(name) => !hidden.contains(&(parent(&f.location), name)),
        })
        .collect()
}

/// The directory part of an object path.
pub fn parent(path: &Path) -> String {
    let s = path.as_ref();
    s.rsplit_once('/').map_or("", |(dir, _)| dir).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(p: &str) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(p),
            last_modified: chrono::DateTime::UNIX_EPOCH,
            size: 1,
            e_tag: None,
            version: None,
        }
    }

    fn visible_names(files: Vec<ObjectMeta>) -> Vec<String> {
        visible(files)
            .into_iter()
            .map(|m| m.location.to_string())
            .collect()
    }

    fn name(from: u64, to: u64, generation: u32) -> String {
        FileName {
            node: None,
            from,
            to,
            generation,
        }
        .render()
    }

    #[test]
    fn names_round_trip() {
        for n in [
            FileName {
                node: None,
                from: 7,
                to: 9,
                generation: 0,
            },
            FileName {
                node: None,
                from: 1,
                to: 1,
                generation: 12,
            },
            FileName {
                node: Some(3),
                from: 1,
                to: 1,
                generation: 2,
            },
        ] {
            assert_eq!(
                FileName::parse(&Path::from(format!("a/b/{}", n.render()))),
                Some(n)
            );
        }
        for bad in [
            "a/part-1-2.csv",
            "a/rollup.parquet",
            "a/part-2-1.parquet",
            "a/part-1-2.gx.parquet",
            "a/part-n-1-2.parquet",
            "a/part-nx-1-2.parquet",
            "a/part-n1-2.parquet",
        ] {
            assert_eq!(FileName::parse(&Path::from(bad)), None, "{bad}");
        }
    }

    #[test]
    fn newer_generations_and_covering_ranges_hide_older_files() {
        let d = "events/tenant=a/kind=event/date=2026-11-29";
        let other = "events/tenant=a/kind=event/date=2026-11-28";
        let files = vec![
            meta(&format!("{d}/{}", name(1, 10, 0))),
            meta(&format!("{d}/{}", name(1, 10, 1))),
            meta(&format!("{d}/{}", name(11, 20, 0))),
            meta(&format!("{d}/{}", name(21, 30, 0))),
            meta(&format!("{d}/{}", name(11, 30, 0))),
            meta(&format!("{d}/{}", name(31, 40, 0))),
            // Same names in another partition are independent.
            meta(&format!("{other}/{}", name(1, 10, 0))),
            meta(&format!("{d}/notes.txt")),
        ];
        let seen = visible_names(files);
        assert_eq!(
            seen,
            [
                format!("{d}/{}", name(1, 10, 1)),
                format!("{d}/{}", name(11, 30, 0)),
                format!("{d}/{}", name(31, 40, 0)),
                format!("{other}/{}", name(1, 10, 0)),
                format!("{d}/notes.txt"),
            ]
        );
    }

    #[test]
    fn nodes_never_supersede_each_other() {
        let d = "events/tenant=a/kind=event/date=2026-11-29";
        let n = |node: Option<u16>, from: u64, to: u64, generation: u32| {
            format!(
                "{d}/{}",
                FileName {
                    node,
                    from,
                    to,
                    generation
                }
                .render()
            )
        };
        assert_eq!(
            n(Some(2), 1, 10, 0),
            format!("{d}/part-n2-00000000000000000001-00000000000000000010.parquet")
        );
        let files = vec![
            meta(&n(None, 1, 30, 0)),
            meta(&n(Some(1), 1, 10, 0)),
            meta(&n(Some(2), 1, 10, 0)),
            meta(&n(Some(2), 1, 10, 1)),
            meta(&n(Some(2), 5, 8, 0)),
        ];
        let seen = visible_names(files);
        assert_eq!(
            seen,
            [
                n(None, 1, 30, 0),
                n(Some(1), 1, 10, 0),
                n(Some(2), 1, 10, 1)
            ]
        );
    }
}
