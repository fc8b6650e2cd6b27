//! Applying erasure records (erasures.rs) to what this node holds and has not written to the lake.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tacet_model::TenantId;
use tacet_privacy::Packed;

use super::Pipeline;
use crate::buffer::{FlushSet, State};
use crate::{Erasure, Error, Result};

/// Removes the events whose pseudonym is in `erased` from `events`; how many went.
fn drop_erased(events: &mut Packed, erased: &HashSet<&str>) -> usize {
    events.retain_users(|p| p.is_none_or(|p| !erased.contains(p)))
}

impl Pipeline {
    /// Drops, from the buffer and from a flush waiting to be retried, the events of people whose erasure
    /// records this process has not applied yet; marks them applied (and done for this node, deleting a
    /// record nobody needs any more). Runs at the start of every flush (so nothing an erasure elsewhere
    /// removed is written afterwards) and once after the write-ahead log is replayed (so a node that was
    /// down applies what it missed before anything of it is seen). Returns how many events it dropped.
    pub fn apply_erasures(&self) -> Result<usize> {
        let mut fresh: HashMap<TenantId, Vec<Erasure>> = HashMap::new();
        {
            let applied = self.erasures_applied.lock().expect("erasures applied lock");
            for tenant in self.keys.tenants_with_erasures()? {
                let records: Vec<Erasure> = self
                    .keys
                    .erasures(&tenant)?
                    .into_iter()
                    .filter(|r| !applied.contains(&r.id))
                    .collect();
                if !records.is_empty() {
                    fresh.insert(tenant, records);
                }
            }
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        let erased: HashMap<&TenantId, HashSet<&str>> = fresh
            .iter()
            .map(|(t, records)| {
                let set = records
                    .iter()
                    .flat_map(|r| r.pseudonyms.iter().map(String::as_str))
                    .collect();
                (t, set)
            })
            .collect();
        let mut removed = 0;
        {
            let mut st = self.state.lock().expect("pipeline lock");
            let State {
                buffer, pending, ..
            } = &mut *st;
            for (key, events) in buffer.partitions.iter_mut() {
                if let Some(set) = erased.get(&key.tenant) {
                    let n = drop_erased(events, set);
                    buffer.len -= n;
                    removed += n;
                }
            }
            buffer.partitions.retain(|_, events| !events.is_empty());
            if let Some(flush) = pending {
                // A flush that failed and waits to be retried: its files are written again from these.
                for (key, events, written) in flush.partitions.iter_mut() {
                    let Some(set) = erased.get(&key.tenant) else {
                        continue;
                    };
                    let mut kept = events.as_ref().clone();
                    let n = drop_erased(&mut kept, set);
                    if n > 0 {
                        *events = Arc::new(kept);
                        // A file of this partition already written holds them: it is written again.
                        *written = false;
                        flush.len -= n;
                        removed += n;
                    }
                }
            }
        }
        {
            // A record whose erasure is still running is applied again at the next flush, until it is
            // settled: a node it then waits for must see it once more to mark it done.
            let mut applied = self.erasures_applied.lock().expect("erasures applied lock");
            applied.extend(
                fresh
                    .values()
                    .flatten()
                    .filter(|r| r.waiting.is_some())
                    .map(|r| r.id.clone()),
            );
        }
        for (tenant, records) in &fresh {
            for record in records {
                self.settle_applied(tenant, record)?;
            }
        }
        if removed > 0 {
            metrics::counter!("tacet_erased_before_flush_total").increment(removed as u64);
            tracing::info!(
                events = removed,
                "events of erased people dropped before they reached the lake"
            );
        }
        Ok(removed)
    }

    /// This node applied `record`: marks it done if the record waits for this node, and deletes it once
    /// every node it waits for is done or gone from the register.
    fn settle_applied(&self, tenant: &TenantId, record: &Erasure) -> Result<()> {
        let Some(waiting) = &record.waiting else {
            // Its erasure is still running; it settles the record itself.
            return Ok(());
        };
        let me = self.peers.get().map(|p| p.node());
        if let Some(me) = me
            && waiting.contains(&me)
        {
            self.keys.erasure_done(tenant, &record.id, me)?;
        }
        let registered = match self.peers.get() {
            Some(p) => p.registered()?,
            None => Vec::new(),
        };
        let outstanding = waiting.iter().any(|n| {
            Some(*n) != me
                && registered.contains(n)
                && !self.keys.erasure_is_done(tenant, &record.id, *n)
        });
        if !outstanding {
            self.keys.delete_erasure(tenant, &record.id)?;
        }
        Ok(())
    }

    /// Drops from a flush whose files are written the events of people whose erasure records are there now
    /// (one written while this slow flush ran, after the erasure's node stopped waiting for it and
    /// rewrote the lake): their partitions are marked to be written again. Returns how many events went,
    /// and the files and events to count again.
    pub(super) fn erase_in_flight(&self, set: &mut FlushSet) -> Result<(usize, (usize, usize))> {
        let mut erased: HashMap<TenantId, HashSet<String>> = HashMap::new();
        let tenants: HashSet<&TenantId> =
            set.partitions.iter().map(|(k, _, _)| &k.tenant).collect();
        for tenant in self.keys.tenants_with_erasures()? {
            if !tenants.contains(&tenant) {
                continue;
            }
            let people: HashSet<String> = self
                .keys
                .erasures(&tenant)?
                .into_iter()
                .flat_map(|r| r.pseudonyms)
                .collect();
            if !people.is_empty() {
                erased.insert(tenant, people);
            }
        }
        let (mut removed, mut files, mut events_again) = (0, 0, 0);
        for (key, events, written) in set.partitions.iter_mut() {
            let Some(people) = erased.get(&key.tenant) else {
                continue;
            };
            let people: HashSet<&str> = people.iter().map(String::as_str).collect();
            let mut kept = events.as_ref().clone();
            let n = drop_erased(&mut kept, &people);
            if n > 0 {
                if *written {
                    files += 1;
                    events_again += events.len();
                }
                *events = Arc::new(kept);
                *written = false;
                set.len -= n;
                removed += n;
            }
        }
        if removed > 0 {
            metrics::counter!("tacet_erased_before_flush_total").increment(removed as u64);
            tracing::info!(
                events = removed,
                "events of people erased while this flush ran dropped; their files are written again"
            );
        }
        Ok((removed, (files, events_again)))
    }

    /// [`Pipeline::apply_erasures`], or why the next flush must wait: a flush must never write events an
    /// erasure record it could not read would have removed.
    pub(super) fn erasures_checked(&self) -> Result<()> {
        self.apply_erasures().map(|_| ()).map_err(|e| {
            Error::Incomplete(format!(
                "the erasure records cannot be read, so nothing is flushed until they can: {e}"
            ))
        })
    }
}
