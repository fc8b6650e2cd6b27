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
        format!(
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
    /// The file of `partition` written by the flush of write-ahead-log records `from..=to`:
    /// `part-<from>-<to>.parquet`, 20 digits each. Redoing the same flush after a crash writes the same name,
    /// so it replaces a half-finished file instead of adding a second copy of its rows.
    pub fn for_wal_range(partition: &PartitionKey, from: u64, to: u64) -> Self {
        Self(object_store::path::Path::from(format!(
            "{}/part-{from:020}-{to:020}.parquet",
            partition.prefix()
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
        let f = ParquetFilePath::for_wal_range(&p, 7, 1234).to_string();
        assert_eq!(
            f,
            "events/tenant=acme/kind=crash/date=2025-11-29/part-00000000000000000007-00000000000000001234.parquet"
        );
    }
}
