//! Logs that only grow (the audit chain, the key lifecycle, created access keys). On local disk a log is
//! one file, appended in place. An object store cannot append: a log there is kept in segments of a fixed
//! number of lines (`<name>.d/<k, 8 digits>`), so an append rewrites only the newest segment, never the
//! whole history. A segment is full when it holds its last line; the next line creates the next segment
//! (create-if-absent), so two writers that both see a full segment cannot both start the next one, and no
//! writer appends to a segment once the next exists (it would have to read it full first).

use std::io;

use crate::Dir;

/// Lines per segment of a log in an object store.
pub const SEGMENT_LINES: usize = 1000;

fn segment(k: u64) -> String {
    format!("{k:08}")
}

impl Dir {
    /// Appends `f(last line)` to log `name` (see the module); returns the line. `f` may run more than once.
    pub fn log_append(
        &self,
        name: &str,
        f: &mut dyn FnMut(Option<&str>) -> io::Result<String>,
    ) -> io::Result<String> {
        self.log_append_in(name, SEGMENT_LINES, f)
    }

    /// Appends one line to log `name`.
    pub fn log_push(&self, name: &str, line: &str) -> io::Result<()> {
        self.log_append(name, &mut |_| Ok(line.to_owned()))
            .map(drop)
    }

    pub(crate) fn log_append_in(
        &self,
        name: &str,
        per: usize,
        f: &mut dyn FnMut(Option<&str>) -> io::Result<String>,
    ) -> io::Result<String> {
        if self.local_path().is_some() {
            return self.append_with(name, f);
        }
        let segments = self.sub(&format!("{name}.d"));
        loop {
            let Some(newest) = self.log_segments(name)?.pop() else {
                let line = f(None)?;
                if segments.create(&segment(0), format!("{line}\n").as_bytes())? {
                    return Ok(line);
                }
                continue;
            };
            let Some(stored) = segments.get(&segment(newest))? else {
                continue;
            };
            let text = String::from_utf8(stored.bytes).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not UTF-8 text", segments.place(&segment(newest))),
                )
            })?;
            let line = f(crate::last_line(&text))?;
            let won = if text.lines().count() < per {
                segments.replace(
                    &segment(newest),
                    format!("{text}{line}\n").as_bytes(),
                    &stored.version,
                )?
            } else {
                segments.create(&segment(newest + 1), format!("{line}\n").as_bytes())?
            };
            if won {
                return Ok(line);
            }
        }
    }

    /// The whole of log `name`, oldest line first; `None` if it has none.
    pub fn log_read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        if self.local_path().is_some() {
            return self.read(name);
        }
        let segments = self.sub(&format!("{name}.d"));
        let mut out = Vec::new();
        let numbers = self.log_segments(name)?;
        if numbers.is_empty() {
            return Ok(None);
        }
        for k in numbers {
            out.extend(segments.read(&segment(k))?.unwrap_or_default());
        }
        Ok(Some(out))
    }

    /// What identifies the log's contents now (its newest segment's version and number), for caches.
    pub fn log_head(&self, name: &str) -> io::Result<Option<crate::Version>> {
        if self.local_path().is_some() {
            return self.head(name);
        }
        let Some(newest) = self.log_segments(name)?.pop() else {
            return Ok(None);
        };
        Ok(self
            .sub(&format!("{name}.d"))
            .head(&segment(newest))?
            .map(|mut v| {
                v.e_tag = Some(format!("{newest}:{}", v.e_tag.unwrap_or_default()));
                v
            }))
    }

    /// The segment numbers of log `name`, in order.
    fn log_segments(&self, name: &str) -> io::Result<Vec<u64>> {
        let mut numbers: Vec<u64> = self
            .sub(&format!("{name}.d"))
            .list()?
            .into_iter()
            .filter(|e| !e.is_dir)
            .filter_map(|e| e.name.parse().ok())
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// Deletes log `name`; whether there was one.
    pub fn log_delete(&self, name: &str) -> io::Result<bool> {
        if self.local_path().is_some() {
            return self.delete(name);
        }
        Ok(self.sub(&format!("{name}.d")).delete_all()? > 0)
    }
}

impl Dir {
    /// Writes `bytes` (whole lines) as log `name` where there is none yet, in segments on an object
    /// store; `false` if the same log is there already (or one that began with it and went on). Another
    /// one there is an error.
    pub fn log_import(&self, name: &str, bytes: &[u8]) -> io::Result<bool> {
        if let Some(there) = self.log_read(name)? {
            // The same log, or one that went on after an earlier copy.
            if there.starts_with(bytes) {
                return Ok(false);
            }
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} holds another log already; nothing of it was changed",
                    self.place(name)
                ),
            ));
        }
        if self.local_path().is_some() {
            return self.create(name, bytes);
        }
        let segments = self.sub(&format!("{name}.d"));
        let text = String::from_utf8_lossy(bytes);
        let lines: Vec<&str> = text.lines().collect();
        for (k, chunk) in lines.chunks(SEGMENT_LINES).enumerate() {
            let body = format!("{}\n", chunk.join("\n"));
            if !segments.create(&segment(k as u64), body.as_bytes())? {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} was written by someone else meanwhile: stop every node before moving the state",
                        segments.place(&segment(k as u64))
                    ),
                ));
            }
        }
        Ok(true)
    }
}

/// What [`copy_tree`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Objects written, and logs among them (`*.jsonl`).
    pub objects: usize,
    pub logs: usize,
    /// Objects and logs that were there already with the same bytes.
    pub unchanged: usize,
}

/// Copies everything under `from` into `to` (`*.jsonl` as logs), creating only: an object already in `to`
/// with other bytes is an error naming it, one with the same bytes is left (so a copy can be run again).
/// `progress` hears each name.
pub fn copy_tree(from: &Dir, to: &Dir, progress: &mut dyn FnMut(&str)) -> io::Result<Copied> {
    let mut copied = Copied::default();
    copy_into(from, to, "", progress, &mut copied)?;
    Ok(copied)
}

fn copy_into(
    from: &Dir,
    to: &Dir,
    rel: &str,
    progress: &mut dyn FnMut(&str),
    copied: &mut Copied,
) -> io::Result<()> {
    let here = if rel.is_empty() {
        from.clone()
    } else {
        from.sub(rel)
    };
    let mut entries = here.list()?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for entry in entries {
        let name = if rel.is_empty() {
            entry.name.clone()
        } else {
            format!("{rel}/{}", entry.name)
        };
        if entry.is_dir {
            copy_into(from, to, &name, progress, copied)?;
            continue;
        }
        progress(&name);
        let Some(bytes) = from.read(&name)? else {
            continue;
        };
        let wrote = if name.ends_with(".jsonl") {
            let wrote = to.log_import(&name, &bytes)?;
            copied.logs += usize::from(wrote);
            wrote
        } else if to.create(&name, &bytes)? {
            true
        } else if to.read(&name)?.as_deref() == Some(bytes.as_slice()) {
            false
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} holds something else already (another key store?); nothing of it was changed",
                    to.place(&name)
                ),
            ));
        };
        if wrote {
            copied.objects += 1;
        } else {
            copied.unchanged += 1;
        }
    }
    Ok(())
}
