//! Typed paths in the lake, so that no code builds a path by hand.

use std::fmt;

use chrono::{DateTime, NaiveDate};
use tacet_model::{Kind, TenantId};

/// The top-level folder of the events table.
pub const EVENTS_ROOT: &str = "events";

/// The folder holding every file of one tenant: `events/tenant=<id>/`.
pub fn tenant_prefix(tenant: &TenantId) -> String {
    format!("{EVENTS_ROOT}/tenant={tenant}/")
}

/// One partition: a tenant, an event kind and a UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub tenant: TenantId,
    pub kind: Kind,
    pub date: NaiveDate,
}

impl PartitionKey {
    /// The partition of an event of `kind` at `ts_millis` (UTC day).
    pub fn for_event(tenant: TenantId, kind: Kind, ts_millis: i64) -> Self {
        let date = DateTime::from_timestamp_millis(ts_millis)
            .unwrap_or_default()
            .date_naive();
        Self { tenant, kind, date }
    }

    /// `events/tenant=<id>/kind=<kind>/date=<YYYY-MM-DD>`
    pub fn prefix(&self) -> String {
        self.to_string()
    }

    /// Parses a path under `events/` back into its partition (the inverse of [`PartitionKey::prefix`],
    /// with or without a file name after it).
    pub fn parse(path: &str) -> Option<Self> {
        let mut parts = path
            .strip_prefix(EVENTS_ROOT)?
            .strip_prefix('/')?
            .split('/');
        let tenant = TenantId::new(parts.next()?.strip_prefix("tenant=")?).ok()?;
        let kind = Kind::parse(parts.next()?.strip_prefix("kind=")?)?;
        let date =
            NaiveDate::parse_from_str(parts.next()?.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
        Some(Self { tenant, kind, date })
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}kind={}/date={}",
            tenant_prefix(&self.tenant),
            self.kind,
            self.date.format("%Y-%m-%d")
        )
    }
}

/// Where a Parquet file of the events table lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetFilePath(object_store::path::Path);

impl ParquetFilePath {
    /// The file of `partition` written by the flush of write-ahead-log records `from..=to` of `node`:
    /// `part-[n<node>-]<from>-<to>.parquet`, 20 digits each. Redoing the same flush after a crash writes the
    /// same name, so it replaces a half-finished file instead of adding a second copy of its rows.
    pub fn for_wal_range(partition: &PartitionKey, node: Option<u16>, from: u64, to: u64) -> Self {
        Self::in_partition(
            partition,
            crate::FileName {
                node,
                from,
                to,
                generation: 0,
            },
        )
    }

    /// The file called `name` in `partition`.
    pub fn in_partition(partition: &PartitionKey, name: crate::FileName) -> Self {
        Self(object_store::path::Path::from(format!(
            "{}/{}",
            partition.prefix(),
            name.render()
        )))
    }

    pub fn as_object_path(&self) -> &object_store::path::Path {
        &self.0
    }
}

impl fmt::Display for ParquetFilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hive_layout() {
        let p = PartitionKey::for_event(
            TenantId::new("acme").unwrap(),
            Kind::Crash,
            1_764_400_000_000,
        );
        assert_eq!(p.prefix(), "events/tenant=acme/kind=crash/date=2025-11-29");
        assert_eq!(PartitionKey::parse(&p.prefix()), Some(p.clone()));
        assert_eq!(
            PartitionKey::parse(&format!("{}/part-1-2.parquet", p.prefix())),
            Some(p.clone())
        );
        assert_eq!(
            PartitionKey::parse("rollups/tenant=acme/date=2025-11-29"),
            None
        );
        let f = ParquetFilePath::for_wal_range(&p, None, 7, 1234).to_string();
        assert_eq!(
            f,
            "events/tenant=acme/kind=crash/date=2025-11-29/part-00000000000000000007-00000000000000001234.parquet"
        );
    }
}
