//! Tenant offboarding, at the end of a contract: every raw event, key, salt and objection of the tenant is
//! deleted, and so are its stored visits; the rollups (counts without pseudonyms) stay, as the contract's aggregate reports may. A
//! certificate says what was removed.

use std::time::Instant;

use serde::Serialize;
use serde_json::json;
use tacet_model::TenantId;
use tacet_query::rollup::rollup_prefix;

use crate::{Error, Progress, Result, Steward};

/// What offboarding removed, and what it kept.
#[derive(Debug, Clone, Serialize)]
pub struct Certificate {
    pub tenant: String,
    pub completed_at: String,
    pub partitions_removed: usize,
    pub files_removed: usize,
    pub bytes_removed: u64,
    /// Stored visits files removed (one per day, tacet_query::visits).
    pub visit_files_removed: usize,
    /// Salts, subject key versions and the objection list.
    pub keys_destroyed: usize,
    /// Rollup files kept (no pseudonyms).
    pub rollup_files_kept: usize,
    pub write_ahead_log: &'static str,
    /// Checks made after the deletion.
    pub verified: Vec<String>,
    /// The audit entry that records this certificate.
    pub audit_hash: String,
    pub elapsed_ms: u64,
    /// Source maps the tenant had uploaded.
    pub sourcemaps_removed: usize,
}

impl Steward {
    /// Deletes everything of `tenant` but its rollups. Run it with the server stopped (the CLI refuses
    /// otherwise), then remove the tenant from the configuration.
    pub async fn offboard(
        &self,
        tenant: &TenantId,
        actor: &str,
        progress: Progress<'_>,
    ) -> Result<Certificate> {
        let started = Instant::now();
        let _one_job = self.jobs.lock().await;
        // What the log and buffer hold goes to the lake first (and the log segments with it), so the
        // deletion below covers it.
        self.pipeline.persist_everywhere().await?;
        let lake = self.pipeline.lake();
        let files = lake.list_tenant_files(tenant).await?;
        let mut partitions: Vec<String> = files
            .iter()
            .map(|m| tacet_lake::parent(&m.location))
            .collect();
        partitions.dedup();
        let bytes: u64 = files.iter().map(|m| m.size).sum();
        let paths: Vec<_> = files.iter().map(|m| m.location.clone()).collect();
        for (i, chunk) in paths.chunks(256).enumerate() {
            progress(i * 256, paths.len(), "deleting raw events");
            let _no_queries = self.query.exclusive().await?;
            lake.delete(chunk).await?;
        }
        // Stored visits hold visitor ids: they go with the events (the rollups, counts only, stay).
        let visits: Vec<_> = lake
            .list(&tacet_query::visits::visits_prefix(tenant))
            .await?
            .into_iter()
            .map(|m| m.location)
            .collect();
        progress(paths.len(), paths.len(), "deleting stored visits");
        {
            let _no_queries = self.query.exclusive().await?;
            lake.delete(&visits).await?;
        }
        progress(paths.len(), paths.len(), "deleting source maps");
        let sourcemaps_removed = self.pipeline.sourcemaps().delete_tenant(tenant).await?;
        progress(paths.len(), paths.len(), "destroying keys");
        let keys_destroyed = self.pipeline.keys().destroy_tenant(tenant)?;

        let mut verified = Vec::new();
        let left = lake.list_tenant_files(tenant).await?;
        if !left.is_empty() {
            return Err(Error::Verify(format!(
                "{} files of the tenant are still in the lake, e.g. {}",
                left.len(),
                left[0].location
            )));
        }
        verified.push("no object under the tenant's events prefix".to_owned());
        let left = lake
            .list(&tacet_query::visits::visits_prefix(tenant))
            .await?;
        if let Some(m) = left.first() {
            return Err(Error::Verify(format!(
                "{} stored visits files of the tenant are still in the lake, e.g. {}",
                left.len(),
                m.location
            )));
        }
        verified.push("no object under the tenant's visits prefix".to_owned());
        if !self
            .pipeline
            .sourcemaps()
            .list(tenant, None)
            .await?
            .is_empty()
        {
            return Err(Error::Verify(
                "a source map of the tenant is still there".into(),
            ));
        }
        verified.push("no source map of the tenant".to_owned());
        if !self.pipeline.keys().subject_keys(tenant)?.is_empty()
            || self
                .pipeline
                .keys()
                .salt_days()
                .iter()
                .any(|(t, _)| t == tenant)
        {
            return Err(Error::Verify("a key of the tenant is still there".into()));
        }
        verified.push("no salt, subject key or objection list of the tenant".to_owned());
        let rollups = lake.list(&rollup_prefix(tenant)).await?;
        let mut certificate = Certificate {
            tenant: tenant.to_string(),
            completed_at: self
                .pipeline
                .clock()
                .now()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            partitions_removed: partitions.len(),
            files_removed: files.len(),
            bytes_removed: bytes,
            visit_files_removed: visits.len(),
            keys_destroyed,
            rollup_files_kept: rollups.len(),
            sourcemaps_removed,
            write_ahead_log: "flushed to the lake before the deletion; its sealed segments deleted",
            verified,
            audit_hash: String::new(),
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
        certificate.audit_hash = self.audit.append(
            actor,
            "tenant.offboard",
            Some(tenant.as_str()),
            json!({"partitions": certificate.partitions_removed, "files": certificate.files_removed,
                "bytes": certificate.bytes_removed, "keys": certificate.keys_destroyed,
                "rollup_files_kept": certificate.rollup_files_kept}),
        )?;
        Ok(certificate)
    }
}
