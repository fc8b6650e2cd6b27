//! Where a report's days come from: one planner for every canned report.
//!
//! A report with a `-- rollups:` header (the unfiltered dashboard: `daily`, `overview`, `timeseries` by day,
//! and the breakdowns `pages`, `entry_pages`, `exit_pages`, `referrers`, `campaigns`, `browsers`,
//! `operating_systems`, `devices`, `countries`, `events`) reads each day of its range either from the day's
//! rollup (crate::rollup: a few hundred rows) or from the raw events. Days whose raw events expired always come from their rollup. A closed day whose raw
//! events are still there comes from its rollup only when the rollup is provably the raw events' exact
//! answer, which takes all of:
//!
//! - the tenant's days are UTC days (rollups are kept per UTC date), the report is by day, and unfiltered
//!   or with one filter of [`crate::rollup::ROLLED_FILTERS`] (then the day's `filters.parquet`, the rollup's
//!   rows per value of each such filter, stands in for its rollup in every test below);
//! - the day is closed (before today, UTC) and has a rollup;
//! - the rollup was computed from exactly the files the day has now (a digest of their paths and sizes, kept
//!   in the rollup's footer: a flush, a late event, an erasure's rewrite or a compaction changes it);
//! - and from the same objections (a digest of the restricted pseudonyms: a new objection changes it);
//! - none of the day's visitor ids was seen on another day when it was computed: ids rotate with the daily
//!   salt of the day an event *arrived*, so only a late event can carry an id across days, and then the
//!   sum of daily distinct counts would count that visitor twice where raw events count it once;
//! - the files of the days that could hold such an event (`accept_past` before to one day after) are the
//!   ones it saw (a digest per day in its footer; a day emptied by retention is fine), and none of them has
//!   events still buffered: either could have brought one since. A rollup computed by a single-node server
//!   with its buffer, five minutes or more after the day ended, saw every event that arrived on the day
//!   (`complete` in its footer): for it, only the day's own files and buffer count, so late events for
//!   other days do not send it back to raw events.
//!
//! Exact therefore means exact: visitors (distinct ids, per day and summed: a range counts visitor-days
//! either way), visits, bounces, durations and every count are the raw events' numbers. A day failing a
//! test is read raw and named in the answer's [`ReportSource`] (the `X-Tacet-Source` header) with its
//! reason; the server rewrites stale rollups within the hour, so a closed day reads raw at most that long.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use sha2::{Digest, Sha256};
use tacet_model::TenantId;

use crate::report::{Interval, Report, ReportParams, ReportScope};
use crate::rollup::{FILTERS_FILE, ROLLED_FILTERS, ROLLUP_FILE, rollup_prefix};
use crate::{Error, QueryEngine, Result};

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

/// How long after a day ends its last arrivals may still be on their way into the buffer (the log's group
/// commit): a rollup computed sooner is not `complete`.
const SETTLE: Duration = Duration::minutes(5);

/// Days before and after a rollup's day searched for its visitor ids when it is computed: a tenant whose
/// `accept_past` is longer reads every day raw.
pub const ID_WINDOW_DAYS: u32 = 31;

/// Why a day, or a whole report, reads raw events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RawReason {
    /// The report has no rollup path.
    NoRollupPath,
    /// `[query] from_rollups = false`.
    Off,
    /// A filter without rollup rows of its own (crate::rollup::ROLLED_FILTERS), two filters, or a cluster.
    Filtered,
    /// The tenant's days are local days of its zone; rollups are UTC days.
    LocalDays,
    /// By the hour: rollups are per day.
    Hourly,
    /// The tenant accepts events older than [`ID_WINDOW_DAYS`].
    LongAcceptWindow,
    /// Today or later: the day is still open.
    Open,
    /// The day has no rollup.
    NoRollup,
    /// The day's files changed since its rollup was computed.
    Changed,
    /// Someone objected since the rollup was computed.
    Objections,
    /// One of the day's visitor ids is also on another day.
    SharedIds,
    /// A nearby day's files changed since the rollup was computed.
    Late,
    /// A nearby day has events not flushed yet.
    Buffered,
}

impl RawReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoRollupPath => "no-rollup-path",
            Self::Off => "off",
            Self::Filtered => "filtered",
            Self::LocalDays => "local-days",
            Self::Hourly => "hourly",
            Self::LongAcceptWindow => "long-accept-window",
            Self::Open => "open",
            Self::NoRollup => "no-rollup",
            Self::Changed => "changed",
            Self::Objections => "objections",
            Self::SharedIds => "shared-ids",
            Self::Late => "late",
            Self::Buffered => "buffered",
        }
    }
}

/// Where one report's answer came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportSource {
    /// Days (UTC dates, `YYYY-MM-DD`) answered from rollups, expired ones included.
    pub rolled: BTreeSet<String>,
    /// Of those, the days whose raw events expired.
    pub expired: usize,
    /// Days of the range read from raw events, and why.
    pub raw: BTreeMap<String, RawReason>,
    /// Why every day that has raw events was read raw, when one reason covers the report.
    pub whole: Option<RawReason>,
    /// The one filter given, when its rollup rows answer the rolled days: (parameter, value).
    pub filter: Option<(String, String)>,
    /// The range's rollup files: `date`, path, modification time.
    pub(crate) files: Vec<(String, Path, i64)>,
    /// Whether any of the range's events must come from the raw query (a day not rolled with files, with
    /// buffered events, or today and later).
    pub(crate) needs_raw: bool,
}

impl ReportSource {
    /// `raw`, `rollups` or `rollups+raw`.
    pub fn kind(&self) -> &'static str {
        match (
            self.rolled.is_empty(),
            self.raw.is_empty() && self.whole.is_none(),
        ) {
            (true, _) => "raw",
            (false, true) => "rollups",
            (false, false) => "rollups+raw",
        }
    }

    /// The rollup files of the rolled days.
    pub(crate) fn rolled_files(&self) -> Vec<(String, Path, i64)> {
        self.files
            .iter()
            .filter(|(day, _, _)| self.rolled.contains(day))
            .cloned()
            .collect()
    }

    /// The rolled days as `$expired` takes them (comma-separated).
    pub(crate) fn rolled_csv(&self) -> String {
        self.rolled.iter().cloned().collect::<Vec<_>>().join(",")
    }
}

/// `rollups+raw; rollup_days=28; expired_days=0; raw_days=3; why=open:1,late:2` (the `X-Tacet-Source`
/// header, and what `EXPLAIN` of a report prints first).
impl fmt::Display for ReportSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind())?;
        if let Some((name, _)) = &self.filter {
            write!(f, "; filter={name}")?;
        }
        write!(
            f,
            "; rollup_days={}; expired_days={}; raw_days={}",
            self.rolled.len(),
            self.expired,
            self.raw.len()
        )?;
        if let Some(w) = self.whole {
            return write!(f, "; why={}", w.as_str());
        }
        let mut counts: BTreeMap<RawReason, usize> = BTreeMap::new();
        for r in self.raw.values() {
            *counts.entry(*r).or_default() += 1;
        }
        if !counts.is_empty() {
            let why: Vec<String> = counts
                .iter()
                .map(|(r, n)| format!("{}:{n}", r.as_str()))
                .collect();
            write!(f, "; why={}", why.join(","))?;
        }
        Ok(())
    }
}

/// What a rollup's footer says about how it was computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RollupMeta {
    pub files: String,
    pub restricted: String,
    pub shared: u64,
    /// `date` → the short digest of that day's files.
    pub near: BTreeMap<String, String>,
    pub complete: bool,
}

/// One day's raw files (path and size), and the kinds they are of.
#[derive(Debug, Default)]
pub(crate) struct DayFiles {
    files: Vec<(String, u64)>,
    kinds: BTreeSet<String>,
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
    fn short(&self) -> String {
        self.digest()[..16].to_owned()
    }
}

/// `date=digest,…` of the days from [`ID_WINDOW_DAYS`] before `day` to one after that have files.
pub(crate) fn near_digests(files: &BTreeMap<String, DayFiles>, day: NaiveDate) -> String {
    let lo = day - Duration::days(i64::from(ID_WINDOW_DAYS));
    let hi = day + Duration::days(1);
    files
        .range(day_text(lo)..=day_text(hi))
        .map(|(d, f)| format!("{d}={}", f.short()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A tenant's rollup files by `date=`: path and modification time (milliseconds).
type Rollups = BTreeMap<String, (Path, i64)>;

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

fn date_of(path: &Path) -> Option<String> {
    path.parts()
        .find_map(|p| p.as_ref().strip_prefix("date=").map(str::to_owned))
}

fn day_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

impl QueryEngine {
    /// Whether a rollup of `day` computed now sees every event that arrived on it: this node's buffer is in
    /// its queries, no other node writes to the lake, and the day ended at least [`SETTLE`] ago.
    pub(crate) fn rollup_is_complete(&self, day: NaiveDate) -> bool {
        let single_node = self.inner.fresh.get().is_some_and(|f| f.node().is_none());
        let ended = (day + Duration::days(1))
            .and_time(chrono::NaiveTime::MIN)
            .and_utc();
        single_node && chrono::Utc::now() >= ended + SETTLE
    }

    /// The digest of the tenant's objections as queries apply them now.
    pub(crate) fn restricted_now(&self, tenant: &TenantId) -> Result<String> {
        let list = match self.inner.restrictions.get() {
            Some(r) => r
                .restricted(tenant)
                .map_err(|e| Error::Internal(format!("reading objections: {e}")))?,
            None => Vec::new(),
        };
        Ok(restricted_digest(&list))
    }

    /// Which days of `params`' range a report reads from rollups, and why the others are raw.
    pub async fn report_source(
        &self,
        tenant: &TenantId,
        report: &Report,
        params: &ReportParams,
        scope: &ReportScope,
    ) -> Result<ReportSource> {
        let kind = match (report.rollup(), report.rollup_visits()) {
            (Some((kind, _)), _) => kind,
            (None, true) => "pageview".to_owned(),
            (None, false) => {
                return Ok(ReportSource {
                    whole: Some(RawReason::NoRollupPath),
                    needs_raw: true,
                    ..ReportSource::default()
                });
            }
        };
        // One filter with rollup rows of its own reads those; any other filter, or two, reads raw events (and
        // so does a filter on a cluster, whose sessions see the unfiltered `rollups` table only).
        let filter = match params.filters.iter().collect::<Vec<_>>()[..] {
            [] => None,
            [(name, value)] if ROLLED_FILTERS.contains(name) && !self.distributed() => {
                Some(((*name).to_owned(), value.clone()))
            }
            _ => {
                return Ok(ReportSource {
                    whole: Some(RawReason::Filtered),
                    needs_raw: true,
                    ..ReportSource::default()
                });
            }
        };
        // One listing of the tenant's raw files and one of its rollups serve every decision below.
        let files = raw_files_by_day(self.store(), tenant).await?;
        let (unfiltered, filtered) = self.rollups_by_day(tenant).await?;
        let rollups = if filter.is_some() {
            filtered
        } else {
            unfiltered
        };
        // Days whose raw events of the report's kind expired come from their rollups whatever else holds
        // (retention; a directory may outlive its files, so files are what counts).
        let (from, to) = (day_text(params.from), day_text(params.to));
        let expired: BTreeSet<String> = rollups
            .range(from.clone()..=to.clone())
            .map(|(day, _)| day)
            .filter(|day| files.get(*day).is_none_or(|f| !f.kinds.contains(&kind)))
            .cloned()
            .collect();
        let mut source = ReportSource {
            expired: expired.len(),
            rolled: expired,
            files: rollups
                .range(from..=to)
                .map(|(day, (path, at))| (day.clone(), path.clone(), *at))
                .collect(),
            needs_raw: true,
            filter,
            ..ReportSource::default()
        };
        source.whole = if !self.inner.config.from_rollups {
            Some(RawReason::Off)
        } else if scope.zone != chrono_tz::UTC {
            Some(RawReason::LocalDays)
        } else if report.rollup_visits() && params.interval == Interval::Hour {
            Some(RawReason::Hourly)
        } else if scope.accept_past_days > ID_WINDOW_DAYS {
            Some(RawReason::LongAcceptWindow)
        } else {
            None
        };
        if source.whole.is_some() {
            return Ok(source);
        }
        let range: Vec<(Path, i64)> = source
            .files
            .iter()
            .map(|(_, path, at)| (path.clone(), *at))
            .collect();
        self.read_rollups_ahead(&range, source.filter.as_ref())
            .await?;
        self.plan_closed_days(tenant, params, scope, (&files, &rollups), &mut source)
            .await?;
        Ok(source)
    }

    /// Decides each closed day of the range that still has raw events (see the module documentation).
    async fn plan_closed_days(
        &self,
        tenant: &TenantId,
        params: &ReportParams,
        scope: &ReportScope,
        (files, rollups): (&BTreeMap<String, DayFiles>, &Rollups),
        source: &mut ReportSource,
    ) -> Result<()> {
        let today = chrono::Utc::now().date_naive();
        let restricted = self.restricted_now(tenant)?;
        let buffered = self.buffered_days(tenant)?;
        let before = Duration::days(i64::from(scope.accept_past_days));
        let mut day = params.from;
        while day <= params.to {
            let text = day_text(day);
            let next = day + Duration::days(1);
            if source.rolled.contains(&text) || !files.contains_key(&text) {
                day = next;
                continue;
            }
            let reason = self
                .closed_day(
                    day,
                    today,
                    files,
                    (rollups, source.filter.as_ref()),
                    &restricted,
                    buffered.as_ref(),
                    before,
                )
                .await?;
            match reason {
                None => {
                    source.rolled.insert(text);
                }
                Some(r) => {
                    source.raw.insert(text, r);
                }
            }
            day = next;
        }
        // The raw query can be left out when it would find nothing: every day with files is rolled, the
        // range is closed, and nothing of it is buffered.
        source.needs_raw = !source.raw.is_empty()
            || params.to >= today
            || buffered.as_ref().is_none_or(|days| {
                days.range(params.from..=params.to)
                    .any(|d| !source.rolled.contains(&day_text(*d)))
            });
        Ok(())
    }

    /// `None` when `day` comes from its rollup (with `filter`, `rollups` are the days' `filters.parquet`
    /// and that value's rows are read), else why not.
    #[allow(clippy::too_many_arguments)]
    async fn closed_day(
        &self,
        day: NaiveDate,
        today: NaiveDate,
        files: &BTreeMap<String, DayFiles>,
        (rollups, filter): (&Rollups, Option<&(String, String)>),
        restricted: &str,
        buffered: Option<&BTreeSet<NaiveDate>>,
        before: Duration,
    ) -> Result<Option<RawReason>> {
        let text = day_text(day);
        if day >= today {
            return Ok(Some(RawReason::Open));
        }
        let Some((path, written_ms)) = rollups.get(&text) else {
            return Ok(Some(RawReason::NoRollup));
        };
        let rollup = self.rollup_file(path, *written_ms, filter).await?;
        let Some(meta) = rollup.meta.clone() else {
            return Ok(Some(RawReason::NoRollup));
        };
        if files.get(&text).map(DayFiles::digest) != Some(meta.files) {
            return Ok(Some(RawReason::Changed));
        }
        if meta.restricted != restricted {
            return Ok(Some(RawReason::Objections));
        }
        if meta.shared > 0 {
            return Ok(Some(RawReason::SharedIds));
        }
        // The days an event that arrived on `day` (carrying its ids) may be filed under: their files now
        // must be the ones the rollup's check of shared ids saw (a day emptied since cannot add an id),
        // unless the rollup saw every event that arrived on the day.
        let (lo, hi) = if meta.complete {
            (day, day)
        } else {
            (day - before, day + Duration::days(1))
        };
        let changed_near = files
            .range(day_text(lo)..=day_text(hi))
            .any(|(d, f)| meta.near.get(d) != Some(&f.short()));
        if changed_near {
            return Ok(Some(RawReason::Late));
        }
        let buffered_near = match buffered {
            Some(days) => days.range(lo..=hi).next().is_some(),
            None => true,
        };
        if buffered_near {
            return Ok(Some(RawReason::Buffered));
        }
        Ok(None)
    }

    /// The tenant's rollups by `date=` (path and modification time), and beside them their rows per filter
    /// value (`filters.parquet`).
    async fn rollups_by_day(&self, tenant: &TenantId) -> Result<(Rollups, Rollups)> {
        let prefix = Path::from(rollup_prefix(tenant));
        let mut listed = self.store().list(Some(&prefix));
        let (mut rollups, mut filtered) = (BTreeMap::new(), BTreeMap::new());
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(|e| Error::Internal(format!("listing {prefix}: {e}")))?;
            let into = match meta.location.filename() {
                Some(ROLLUP_FILE) => &mut rollups,
                Some(FILTERS_FILE) => &mut filtered,
                _ => continue,
            };
            if let Some(day) = date_of(&meta.location) {
                into.insert(
                    day,
                    (meta.location.clone(), meta.last_modified.timestamp_millis()),
                );
            }
        }
        Ok((rollups, filtered))
    }

    /// Days with events the ingestion buffer still holds (none without one); `None` when the buffer cannot
    /// say, which reads every closed day raw.
    fn buffered_days(&self, tenant: &TenantId) -> Result<Option<BTreeSet<NaiveDate>>> {
        match self.inner.fresh.get() {
            None => Ok(Some(BTreeSet::new())),
            Some(fresh) => fresh
                .days(tenant)
                .map_err(|e| Error::Internal(format!("reading the buffer's days: {e}"))),
        }
    }

    /// A report's plan without running it: where its days come from, and DataFusion's `EXPLAIN` of its SQL
    /// with the parameters bound as [`QueryEngine::report`] binds them (`tacet report --explain`).
    pub async fn explain_report(
        &self,
        tenant: &TenantId,
        report: &Report,
        params: &ReportParams,
        scope: &ReportScope,
    ) -> Result<(ReportSource, crate::QueryOutput)> {
        crate::report::check(params, report)?;
        let source = self.report_source(tenant, report, params, scope).await?;
        let sql = report.expanded_sql_for(scope.zone, params.filters.contains_key("event"));
        let plan = self
            .run_with_limit(
                tenant,
                &format!("EXPLAIN {sql}"),
                Some(crate::report::bind(
                    params,
                    scope.zone,
                    &source.rolled_csv(),
                    source.filter.is_some(),
                )),
                crate::engine::Run {
                    max_rows: usize::MAX,
                    unrestricted: false,
                    tables: Vec::new(),
                    local: true,
                    zone: Some(scope.zone),
                    batch_rows: crate::engine::DEFAULT_BATCH_ROWS,
                    client_sql: false,
                    groups: Some(Arc::clone(&scope.groups)),
                    postgres: None,
                },
            )
            .await?;
        Ok((source, plan))
    }

    /// Closed days among the last `back` (before today, UTC) whose rollup is missing or no longer matches
    /// the day's files, objections or neighbours, oldest first: what the server rewrites every hour.
    pub async fn stale_rollup_days(
        &self,
        tenant: &TenantId,
        back: u32,
        accept_past_days: u32,
    ) -> Result<Vec<NaiveDate>> {
        let today = chrono::Utc::now().date_naive();
        let files = raw_files_by_day(self.store(), tenant).await?;
        let (rollups, filtered) = self.rollups_by_day(tenant).await?;
        let restricted = self.restricted_now(tenant)?;
        let before = Duration::days(i64::from(accept_past_days.min(ID_WINDOW_DAYS)));
        let no_buffer = BTreeSet::new();
        let mut stale = Vec::new();
        for n in (1..=i64::from(back)).rev() {
            let day = today - Duration::days(n);
            if !files.contains_key(&day_text(day)) {
                continue;
            }
            // The buffer is left out: its events change the day's files when they flush.
            let why = self
                .closed_day(
                    day,
                    today,
                    &files,
                    (&rollups, None),
                    &restricted,
                    Some(&no_buffer),
                    before,
                )
                .await?;
            // A rollup written before filters had rows of their own is rewritten too.
            if !filtered.contains_key(&day_text(day))
                || matches!(
                    why,
                    Some(
                        RawReason::NoRollup
                            | RawReason::Changed
                            | RawReason::Objections
                            | RawReason::Late
                    )
                )
            {
                stale.push(day);
            }
        }
        Ok(stale)
    }
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

    #[test]
    fn the_header_names_the_days_and_why() {
        let mut s = ReportSource::default();
        assert_eq!(
            s.to_string(),
            "raw; rollup_days=0; expired_days=0; raw_days=0"
        );
        s.rolled.insert("2025-11-01".into());
        s.rolled.insert("2025-11-02".into());
        s.expired = 1;
        assert_eq!(
            s.to_string(),
            "rollups; rollup_days=2; expired_days=1; raw_days=0"
        );
        s.raw.insert("2025-11-03".into(), RawReason::Late);
        s.raw.insert("2025-11-04".into(), RawReason::Open);
        s.raw.insert("2025-11-05".into(), RawReason::Late);
        assert_eq!(
            s.to_string(),
            "rollups+raw; rollup_days=2; expired_days=1; raw_days=3; why=open:1,late:2"
        );
        let filtered = ReportSource {
            whole: Some(RawReason::Filtered),
            ..ReportSource::default()
        };
        assert_eq!(
            filtered.to_string(),
            "raw; rollup_days=0; expired_days=0; raw_days=0; why=filtered"
        );
    }
}
