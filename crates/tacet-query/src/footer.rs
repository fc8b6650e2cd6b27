//! Where rollups are (`rollups/tenant=<id>/date=<day>/rollup.parquet` and `filters.parquet`), and what a
//! rollup's footer records about how it was computed (crate::source checks it against the lake now):
//! the digest of the files of the UTC dates its day runs over, the digests of the dates around it, the
//! objections it left out, the visitor ids it shares with other days, whether it saw every arrival of its
//! day, and its zone; and the listing of a tenant's raw files by UTC date those digests are taken from.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use sha2::{Digest, Sha256};
use tacet_model::TenantId;

use crate::{Error, Result};

/// Where rollups live in the object store.
pub const ROLLUP_ROOT: &str = "rollups";

/// `rollups/tenant=<id>/`
pub fn rollup_prefix(tenant: &TenantId) -> String {
    format!("{ROLLUP_ROOT}/tenant={tenant}/")
}

/// The filters whose values get rollup rows of their own (`filters.parquet` beside the day's rollup): with one
/// of them, and no other, a report reads closed days from those rows (crate::source). Parameter names.
pub const ROLLED_FILTERS: &[&str] = &["page", "country", "browser", "referrer_class", "utm_source"];

/// A day's rollup, and its rows per filter value, in `rollups/tenant=<id>/date=<day>/`.
pub const ROLLUP_FILE: &str = "rollup.parquet";
pub const FILTERS_FILE: &str = "filters.parquet";

/// Days before and after a rollup's day searched for its visitor ids when it is computed: a tenant whose
/// `accept_past` is longer reads every day raw.
pub const ID_WINDOW_DAYS: u32 = 31;

/// Footer key: the digest of the day's raw files (paths and sizes) the rollup was computed from.
pub(crate) const META_FILES: &str = "tacet.rollup.files";
/// Footer key: the digest of the restricted pseudonyms (objections) the rollup left out.
pub(crate) const META_RESTRICTED: &str = "tacet.rollup.restricted";
/// Footer key: how many of the day's visitor ids were also seen on another day of the window.
pub(crate) const META_SHARED: &str = "tacet.rollup.shared_ids";
/// Footer key: `date=digest` of every day from [`ID_WINDOW_DAYS`] before to one after that had files.
pub(crate) const META_NEAR: &str = "tacet.rollup.near";
/// Footer key: `true` when the rollup saw every event that arrived on its day (see the module documentation).
pub(crate) const META_COMPLETE: &str = "tacet.rollup.complete";
/// Footer key: the time zone whose day the rollup counts (absent: UTC, as in rollups written before it).
pub(crate) const META_ZONE: &str = "tacet.rollup.zone";
/// Footer key: the size in bytes of the day's `visits.parquet` written by the same run (crate::visits).
pub(crate) const META_VISITS: &str = "tacet.rollup.visits";

/// What a rollup's footer says about how it was computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RollupMeta {
    pub files: String,
    pub restricted: String,
    pub shared: u64,
    /// `date` → the short digest of that day's files.
    pub near: BTreeMap<String, String>,
    pub complete: bool,
    /// The IANA name of the zone whose day it counts (`UTC` when the footer has none).
    pub zone: String,
    /// The size of the day's visits file the same run wrote (crate::visits; `None`: written before visits).
    pub visits: Option<u64>,
}

/// One day's raw files (path and size), and the kinds they are of.
#[derive(Debug, Default)]
pub(crate) struct DayFiles {
    files: Vec<(String, u64)>,
    pub(crate) kinds: BTreeSet<String>,
}

impl DayFiles {
    pub(crate) fn digest(&self) -> String {
        let mut files = self.files.clone();
        files.sort();
        let mut h = Sha256::new();
        for (path, size) in &files {
            h.update(path.as_bytes());
            h.update(b"\t");
            h.update(size.to_string().as_bytes());
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }

    /// The first 16 hex digits of the digest: a neighbour's files in a rollup's footer.
    pub(crate) fn short(&self) -> String {
        self.digest()[..16].to_owned()
    }
}

/// The files of UTC dates `lo` to `hi` together (a local day's: crate::report::utc_dates); `None` when none
/// of them has any.
pub(crate) fn local_day_files(
    files: &BTreeMap<String, DayFiles>,
    (lo, hi): (NaiveDate, NaiveDate),
) -> Option<DayFiles> {
    let mut out: Option<DayFiles> = None;
    for (_, f) in files.range(day_text(lo)..=day_text(hi)) {
        let out = out.get_or_insert_with(DayFiles::default);
        out.files.extend(f.files.iter().cloned());
        out.kinds.extend(f.kinds.iter().cloned());
    }
    out
}

/// `date=digest,…` of the UTC dates from [`ID_WINDOW_DAYS`] before `first` to one after `last` (a local
/// day's UTC dates) that have files.
pub(crate) fn near_digests(
    files: &BTreeMap<String, DayFiles>,
    (first, last): (NaiveDate, NaiveDate),
) -> String {
    let lo = first - Duration::days(i64::from(ID_WINDOW_DAYS));
    let hi = last + Duration::days(1);
    files
        .range(day_text(lo)..=day_text(hi))
        .map(|(d, f)| format!("{d}={}", f.short()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The digest of a tenant's restricted pseudonyms (empty list: the digest of nothing).
pub(crate) fn restricted_digest(list: &[String]) -> String {
    let mut list = list.to_vec();
    list.sort();
    let mut h = Sha256::new();
    for p in &list {
        h.update(p.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Every raw file of the tenant, by `date=` (all kinds).
pub(crate) async fn raw_files_by_day(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
) -> Result<BTreeMap<String, DayFiles>> {
    let prefix = Path::from(tacet_lake::tenant_prefix(tenant));
    let mut listed = store.list(Some(&prefix));
    let mut days: BTreeMap<String, DayFiles> = BTreeMap::new();
    while let Some(meta) = listed.next().await {
        let meta = meta.map_err(|e| Error::Internal(format!("listing {prefix}: {e}")))?;
        let Some(key) = tacet_lake::PartitionKey::parse(meta.location.as_ref()) else {
            continue;
        };
        let d = days.entry(day_text(key.date)).or_default();
        d.kinds.insert(key.kind.as_str().to_owned());
        d.files.push((meta.location.to_string(), meta.size));
    }
    Ok(days)
}

pub(crate) fn day_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_ignore_order_and_see_every_change() {
        let a = DayFiles {
            files: vec![("x/1".into(), 10), ("x/2".into(), 20)],
            ..DayFiles::default()
        };
        let b = DayFiles {
            files: vec![("x/2".into(), 20), ("x/1".into(), 10)],
            ..DayFiles::default()
        };
        assert_eq!(a.digest(), b.digest());
        let resized = DayFiles {
            files: vec![("x/1".into(), 11), ("x/2".into(), 20)],
            ..DayFiles::default()
        };
        assert_ne!(a.digest(), resized.digest());
        assert_ne!(a.digest(), DayFiles::default().digest());
        assert_eq!(
            restricted_digest(&["b".into(), "a".into()]),
            restricted_digest(&["a".into(), "b".into()])
        );
        assert_ne!(restricted_digest(&[]), restricted_digest(&["a".into()]));
    }
}
