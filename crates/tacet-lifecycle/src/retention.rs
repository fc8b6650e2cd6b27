//! Time-based retention: whole partitions past the tenant's retention for their kind are deleted, a day's
//! stored visits with its page views (they hold visitor ids), and rollups past the rollup retention. A partition is only dropped once its day has a rollup (written
//! first if missing), so the `daily` report keeps answering for it.
//!
//! A partition of day `D` expires when `D < today - retention` (UTC days; today from the pipeline's clock,
//! which tests move).
//!
//! Source maps (`sourcemaps/tenant=<id>/release=<r>/`, crash symbolication) go with the crashes they
//! explain: a release's maps expire when no crash of that release is left in the lake and they were
//! uploaded longer ago than the tenant's crash retention (a new release's maps wait for its first crashes).

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};
use object_store::ObjectMeta;
use serde::Serialize;
use serde_json::json;
use tacet_lake::PartitionKey;
use tacet_model::TenantId;
use tacet_privacy::TenantPolicy;
use tacet_query::rollup::rollup_prefix;
use tacet_query::visits::{visits_date, visits_prefix};

use crate::{Progress, Result, Steward};

/// Something retention deletes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Target {
    /// A partition of raw events.
    Partition { kind: String, date: String },
    /// A day's rollup.
    Rollup { date: String },
    /// A day's stored visits (tacet_query::visits): they hold visitor ids, so they go with the day's page
    /// views (the page view retention), never later.
    Visits { date: String },
    /// The source maps of a release without crashes left.
    SourceMaps { release: String },
}

/// One expired partition or rollup, with what it holds.
#[derive(Debug, Clone, Serialize)]
pub struct Expired {
    pub tenant: String,
    pub target: Target,
    pub files: usize,
    pub bytes: u64,
    /// The retention that expired it, in days.
    pub retention_days: u64,
    #[serde(skip)]
    day: NaiveDate,
    #[serde(skip)]
    paths: Vec<object_store::path::Path>,
}

impl std::fmt::Display for Expired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Target::Partition { kind, date } => write!(
                f,
                "{} events kind={kind} date={date}: {} files, {} bytes (retention {}d)",
                self.tenant, self.files, self.bytes, self.retention_days
            ),
            Target::Rollup { date } => write!(
                f,
                "{} rollup date={date}: {} files, {} bytes (retention {}d)",
                self.tenant, self.files, self.bytes, self.retention_days
            ),
            Target::Visits { date } => write!(
                f,
                "{} stored visits date={date}: {} files, {} bytes (page view retention {}d)",
                self.tenant, self.files, self.bytes, self.retention_days
            ),
            Target::SourceMaps { release } => write!(
                f,
                "{} source maps of release {release}: {} maps, {} bytes (no crash of it left; crash retention {}d)",
                self.tenant, self.files, self.bytes, self.retention_days
            ),
        }
    }
}

/// What a retention run did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RetentionReport {
    pub dry_run: bool,
    /// Today (UTC), `YYYY-MM-DD`, from the clock.
    pub today: String,
    pub expired: Vec<Expired>,
    /// Rollups written because a day about to lose raw events had none.
    pub rollups_written: usize,
    pub files_deleted: usize,
    pub bytes_deleted: u64,
}

fn days(d: std::time::Duration) -> u64 {
    d.as_secs() / 86_400
}

fn date_of_rollup(meta: &ObjectMeta) -> Option<NaiveDate> {
    meta.location.parts().find_map(|p| {
        p.as_ref()
            .strip_prefix("date=")
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    })
}

impl Steward {
    /// What is past retention now, for each tenant and its policy.
    pub async fn retention_plan(
        &self,
        tenants: &[(TenantId, TenantPolicy)],
    ) -> Result<(NaiveDate, Vec<Expired>)> {
        let today = self.pipeline.clock().now().date_naive();
        let lake = self.pipeline.lake();
        let mut expired = Vec::new();
        for (tenant, policy) in tenants {
            let mut partitions: BTreeMap<PartitionKey, Vec<ObjectMeta>> = BTreeMap::new();
            for meta in lake.list_tenant_files(tenant).await? {
                if let Some(key) = PartitionKey::parse(meta.location.as_ref()) {
                    partitions.entry(key).or_default().push(meta);
                }
            }
            for (key, files) in partitions {
                let Some(keep) = policy.retention.get(&key.kind).copied() else {
                    continue;
                };
                let cutoff = today - Days::new(days(keep));
                if key.date < cutoff {
                    expired.push(Expired {
                        tenant: tenant.to_string(),
                        target: Target::Partition {
                            kind: key.kind.to_string(),
                            date: key.date.to_string(),
                        },
                        day: key.date,
                        files: files.len(),
                        bytes: files.iter().map(|m| m.size).sum(),
                        retention_days: days(keep),
                        paths: files.into_iter().map(|m| m.location).collect(),
                    });
                }
            }
            let mut rollups: BTreeMap<NaiveDate, Vec<ObjectMeta>> = BTreeMap::new();
            for meta in lake.list(&rollup_prefix(tenant)).await? {
                if let Some(d) = date_of_rollup(&meta) {
                    rollups.entry(d).or_default().push(meta);
                }
            }
            expired.extend(self.expired_sourcemaps(tenant, policy, today).await?);
            expired.extend(self.expired_visits(tenant, policy, today).await?);
            let cutoff = today - Days::new(days(policy.rollup_retention));
            for (date, files) in rollups {
                if date < cutoff {
                    expired.push(Expired {
                        tenant: tenant.to_string(),
                        target: Target::Rollup {
                            date: date.to_string(),
                        },
                        day: date,
                        files: files.len(),
                        bytes: files.iter().map(|m| m.size).sum(),
                        retention_days: days(policy.rollup_retention),
                        paths: files.into_iter().map(|m| m.location).collect(),
                    });
                }
            }
        }
        Ok((today, expired))
    }

    /// Deletes what `e` names, records it in the audit log (`rollup`: whether its day's rollup existed, was
    /// written, or was not needed) and in `report`.
    async fn drop_expired(
        &self,
        tenant: &TenantId,
        e: Expired,
        rollup: &str,
        actor: &str,
        report: &mut RetentionReport,
    ) -> Result<()> {
        if let Target::SourceMaps { release } = &e.target {
            self.pipeline
                .sourcemaps()
                .delete(tenant, release, None)
                .await?;
        } else {
            let _no_queries = self.query.exclusive().await?;
            self.pipeline.lake().delete(&e.paths).await?;
        }
        self.audit.append(
            actor,
            "retention.drop",
            Some(&e.tenant),
            json!({"target": e.target, "files": e.files, "bytes": e.bytes,
                "retention_days": e.retention_days, "rollup": rollup}),
        )?;
        report.files_deleted += e.files;
        report.bytes_deleted += e.bytes;
        report.expired.push(e);
        Ok(())
    }

    /// The days whose stored visits expire: before `today - page view retention`.
    async fn expired_visits(
        &self,
        tenant: &TenantId,
        policy: &TenantPolicy,
        today: NaiveDate,
    ) -> Result<Vec<Expired>> {
        let Some(keep) = policy.retention.get(&tacet_model::Kind::Pageview).copied() else {
            return Ok(Vec::new());
        };
        let cutoff = today - Days::new(days(keep));
        let mut by_day: BTreeMap<NaiveDate, Vec<ObjectMeta>> = BTreeMap::new();
        let lake = self.pipeline.lake();
        for meta in lake.list(&visits_prefix(tenant)).await? {
            if let Some(d) = visits_date(&meta.location).filter(|d| *d < cutoff) {
                by_day.entry(d).or_default().push(meta);
            }
        }
        Ok(by_day
            .into_iter()
            .map(|(date, files)| Expired {
                tenant: tenant.to_string(),
                target: Target::Visits {
                    date: date.to_string(),
                },
                day: date,
                files: files.len(),
                bytes: files.iter().map(|m| m.size).sum(),
                retention_days: days(keep),
                paths: files.into_iter().map(|m| m.location).collect(),
            })
            .collect())
    }

    /// The releases whose source maps expire: no crash of the release left in the lake, and every map of
    /// it uploaded before `today - crash retention`.
    async fn expired_sourcemaps(
        &self,
        tenant: &TenantId,
        policy: &TenantPolicy,
        today: NaiveDate,
    ) -> Result<Vec<Expired>> {
        let Some(keep) = policy.retention.get(&tacet_model::Kind::Crash).copied() else {
            return Ok(Vec::new());
        };
        let maps = self.pipeline.sourcemaps().list(tenant, None).await?;
        if maps.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .query
            .sql(
                tenant,
                "SELECT DISTINCT release FROM events WHERE kind = 'crash' AND release IS NOT NULL",
            )
            .await?;
        let mut crashing = std::collections::HashSet::new();
        for batch in &out.batches {
            let col = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)?;
            let col = arrow::array::AsArray::as_string::<i32>(&col);
            crashing.extend(col.iter().flatten().map(str::to_owned));
        }
        let cutoff = today - Days::new(days(keep));
        let mut by_release: BTreeMap<String, Vec<&tacet_ingest::MapInfo>> = BTreeMap::new();
        for m in &maps {
            by_release.entry(m.release.clone()).or_default().push(m);
        }
        let mut expired = Vec::new();
        for (release, maps) in by_release {
            let newest = maps
                .iter()
                .filter_map(|m| chrono::DateTime::parse_from_rfc3339(&m.uploaded).ok())
                .map(|t| t.date_naive())
                .max();
            if crashing.contains(&release) || newest.is_none_or(|d| d >= cutoff) {
                continue;
            }
            expired.push(Expired {
                tenant: tenant.to_string(),
                target: Target::SourceMaps {
                    release: release.clone(),
                },
                day: newest.unwrap_or(today),
                files: maps.len(),
                bytes: maps.iter().map(|m| m.bytes).sum(),
                retention_days: days(keep),
                paths: Vec::new(),
            });
        }
        Ok(expired)
    }

    /// Deletes what [`Steward::retention_plan`] finds (or only reports it, `dry_run`), one audit entry per
    /// partition or rollup dropped.
    pub async fn retention_run(
        &self,
        tenants: &[(TenantId, TenantPolicy)],
        dry_run: bool,
        actor: &str,
        progress: Progress<'_>,
    ) -> Result<RetentionReport> {
        let _one_job = self.jobs.lock().await;
        let (today, expired) = self.retention_plan(tenants).await?;
        let mut report = RetentionReport {
            dry_run,
            today: today.to_string(),
            expired: Vec::new(),
            rollups_written: 0,
            files_deleted: 0,
            bytes_deleted: 0,
        };
        if dry_run {
            report.expired = expired;
            return Ok(report);
        }
        // Once for all nodes: a node's schedule and the CronJob take the same lease.
        let lease = self.lease("retention")?;
        let lake = self.pipeline.lake();
        let total = expired.len();
        for (i, e) in expired.into_iter().enumerate() {
            progress(i, total, &e.to_string());
            if let Some(lease) = &lease
                && !lease.renew()?
            {
                return Err(crate::Error::Busy(format!(
                    "retention lost its lease after {i} of {total} steps (it lapsed and another holder took \
                     it); what was done stays done, the rest is left to that holder"
                )));
            }
            let tenant = TenantId::new(&e.tenant).map_err(|x| crate::Error::User(x.to_string()))?;
            let mut rollup = "not needed";
            if let Target::Partition { .. } = &e.target {
                rollup = "existed";
                // Rollups are per day of the tenant's zone: every local day the UTC date runs over (one in
                // UTC, two elsewhere) gets one while the raw events are still there, unless it has one (with
                // rows per filter value: a rollup written before filters had them is written again).
                let zone = tenants
                    .iter()
                    .find(|(t, _)| *t == tenant)
                    .and_then(|(_, p)| p.timezone)
                    .unwrap_or(chrono_tz::UTC);
                let (first, last) = tacet_query::local_dates(zone, e.day);
                for local in first.iter_days().take_while(|d| *d <= last) {
                    let dir = format!(
                        "{}date={}/",
                        rollup_prefix(&tenant),
                        local.format("%Y-%m-%d")
                    );
                    let written = lake.list(&dir).await?;
                    if !written
                        .iter()
                        .any(|m| m.location.filename() == Some(tacet_query::rollup::FILTERS_FILE))
                    {
                        self.query.rollup_day(&tenant, local, zone).await?;
                        report.rollups_written += 1;
                        rollup = "written";
                    }
                }
            }
            self.drop_expired(&tenant, e, rollup, actor, &mut report)
                .await?;
        }
        // A rollup written above for a day about to lose its events also wrote that day's visits: the
        // expired ones go now, not at the next run.
        for (tenant, policy) in tenants {
            for e in self.expired_visits(tenant, policy, today).await? {
                self.drop_expired(tenant, e, "not needed", actor, &mut report)
                    .await?;
            }
        }
        progress(total, total, "done");
        if let Some(lease) = lease {
            lease.release()?;
        }
        Ok(report)
    }
}
