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
    /// A fresh name in `partition`: `part-<millis>-<16 random hex>.parquet`, which cannot collide across
    /// flushes or nodes.
    pub fn new_unique(partition: &PartitionKey) -> Self {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("the OS random source is available");
        let millis = chrono::Utc::now().timestamp_millis();
        let name = format!("part-{millis:013}-{}.parquet", hex::encode(random));
        Self(object_store::path::Path::from(format!(
            "{}/{name}",
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
        let f = ParquetFilePath::new_unique(&p).to_string();
        assert!(
            f.starts_with("events/tenant=acme/kind=crash/date=2025-11-29/part-"),
            "{f}"
        );
        assert!(f.ends_with(".parquet"));
        assert_ne!(f, ParquetFilePath::new_unique(&p).to_string());
    }
}
