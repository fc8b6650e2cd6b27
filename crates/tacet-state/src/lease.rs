//! Leases: a job that must not run twice at once (retention over the whole lake) holds one while it runs,
//! whichever node or CronJob pod runs it. A lease is an object `<name>` holding `<holder>\n<until, unix
//! ms>`, taken with create-if-absent, or by compare-and-swap over one that expired; the holder renews it
//! while it works and marks it expired when done. A holder that dies leaves it to expire.

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Dir;

/// A lease this process holds.
#[derive(Debug)]
pub struct Lease {
    dir: Dir,
    name: String,
    holder: String,
    ttl: Duration,
}

/// Who holds a lease someone wanted, and until when (unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub holder: String,
    pub until_ms: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn parse(bytes: &[u8]) -> Held {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.lines();
    let holder = lines.next().unwrap_or_default().to_owned();
    let until_ms = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    Held { holder, until_ms }
}

impl Dir {
    /// Takes lease `name` for `holder` for `ttl`, unless someone else holds it: then who, and until when.
    pub fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> io::Result<Result<Lease, Held>> {
        let body = |until: u64| format!("{holder}\n{until}\n").into_bytes();
        loop {
            let until = now_ms() + ttl.as_millis() as u64;
            let won = match self.get(name)? {
                None => self.create(name, &body(until))?,
                Some(stored) => {
                    let held = parse(&stored.bytes);
                    if held.holder != holder && held.until_ms > now_ms() {
                        return Ok(Err(held));
                    }
                    self.replace(name, &body(until), &stored.version)?
                }
            };
            if won {
                return Ok(Ok(Lease {
                    dir: self.clone(),
                    name: name.to_owned(),
                    holder: holder.to_owned(),
                    ttl,
                }));
            }
        }
    }
}

impl Lease {
    /// Extends the lease by its time to live from now; `false` if it was lost (it expired and someone
    /// else took it): the holder should stop.
    pub fn renew(&self) -> io::Result<bool> {
        match self.dir.acquire(&self.name, &self.holder, self.ttl)? {
            Ok(_) => Ok(true),
            Err(_) => Ok(false),
        }
    }

    /// Gives the lease up (if still held).
    pub fn release(self) -> io::Result<()> {
        if let Some(stored) = self.dir.get(&self.name)?
            && parse(&stored.bytes).holder == self.holder
        {
            // Expired now, by compare-and-swap (a lease someone else took meanwhile stays theirs); the
            // object stays for the next holder to replace, so no delete can remove another's lease.
            let expired = format!("{}\n0\n", self.holder).into_bytes();
            self.dir.replace(&self.name, &expired, &stored.version)?;
        }
        Ok(())
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }
}
