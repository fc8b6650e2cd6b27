//! Where a report's days come from: one planner for every canned report.
//!
//! A report with a `-- rollups:` header (the unfiltered dashboard: `daily`, `overview`, `timeseries` by day,
//! and the breakdowns `pages`, `entry_pages`, `exit_pages`, `referrers`, `campaigns`, `browsers`,
//! `operating_systems`, `devices`, `countries`, `events`) reads each day of its range either from the day's
//! rollup (crate::rollup: a few hundred rows) or from the raw events. Days whose raw events expired always come from their rollup. A closed day whose raw
//! events are still there comes from its rollup only when the rollup is provably the raw events' exact
//! answer, which takes all of:
//!
//! - the report is by day, and unfiltered or with one filter of [`crate::rollup::ROLLED_FILTERS`] (then the day's `filters.parquet`, the rollup's
//!   rows per value of each such filter, stands in for its rollup in every test below);
//! - the day is closed (before today in the tenant's zone) and has a rollup of a day of that zone (rollups are
//!   per local day, crate::rollup; a tenant whose zone changed reads raw until they are written again);
//! - the rollup was computed from exactly the files the day has now (those of the UTC dates the local day
//!   runs over: one in UTC, two elsewhere; a digest of their paths and sizes, kept
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
//! A day is expired when its UTC dates lost their raw events of the report's kind: all of them, or one that
//! had files when the rollup was written (retention drops UTC dates, so a local day elsewhere loses half of
//! its events before the other half; its rollup, written before the first drop, answers for it whole).
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
use tacet_model::TenantId;

use crate::footer::{
    DayFiles, FILTERS_FILE, ROLLED_FILTERS, ROLLUP_FILE, day_text, local_day_files,
    raw_files_by_day, restricted_digest, rollup_prefix,
};
use crate::report::{
    Interval, Report, ReportParams, ReportScope, dates, local_dates, local_midnight, utc_dates,
};
use crate::{Error, QueryEngine, Result};

/// How long after a day ends its last arrivals may still be on their way into the buffer (the log's group
/// commit): a rollup computed sooner is not `complete`.
const SETTLE: Duration = Duration::minutes(5);

pub use crate::footer::ID_WINDOW_DAYS;

/// Why a day, or a whole report, reads raw events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RawReason {
    /// The report has no rollup path.
    NoRollupPath,
    /// `[query] from_rollups = false`.
    Off,
    /// A filter without rollup rows of its own (crate::rollup::ROLLED_FILTERS), two filters, or a cluster.
    Filtered,
    /// By the hour: rollups are per day.
    Hourly,
    /// The tenant accepts events older than [`ID_WINDOW_DAYS`].
    LongAcceptWindow,
    /// Today or later: the day is still open.
    Open,
    /// The day has no rollup.
    NoRollup,
    /// The day's rollup counts a day of another time zone (the tenant's changed since it was written).
    OtherZone,
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
            Self::Hourly => "hourly",
            Self::LongAcceptWindow => "long-accept-window",
            Self::Open => "open",
            Self::NoRollup => "no-rollup",
            Self::OtherZone => "zone",
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
    /// Days (of the tenant's zone, `YYYY-MM-DD`) answered from rollups, expired ones included.
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

/// A tenant's rollup files by `date=`: path and modification time (milliseconds).
type Rollups = BTreeMap<String, (Path, i64)>;

fn date_of(path: &Path) -> Option<String> {
    path.parts()
        .find_map(|p| p.as_ref().strip_prefix("date=").map(str::to_owned))
}

impl QueryEngine {
    /// Whether a rollup of `day` (of `zone`) computed now sees every event that arrived on it: this node's
    /// buffer is in its queries, no other node writes to the lake, and the day ended at least [`SETTLE`] ago.
    pub(crate) fn rollup_is_complete(&self, zone: chrono_tz::Tz, day: NaiveDate) -> bool {
        let single_node = self.inner.fresh.get().is_some_and(|f| f.node().is_none());
        let ended =
            chrono::DateTime::from_timestamp_millis(local_midnight(zone, day + Duration::days(1)))
                .expect("a representable day");
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
        let (from, to) = (day_text(params.from), day_text(params.to));
        let mut source = ReportSource {
            files: rollups
                .range(from..=to)
                .map(|(day, (path, at))| (day.clone(), path.clone(), *at))
                .collect(),
            needs_raw: true,
            filter,
            ..ReportSource::default()
        };
        // Days whose raw events of the report's kind expired come from their rollups whatever else holds
        // (retention; a directory may outlive its files, so files are what counts).
        for (day, path, at) in &source.files {
            let rollup = (path, *at, source.filter.as_ref());
            if self
                .expired(&files, day, rollup, Some(&kind), scope.zone)
                .await?
            {
                source.rolled.insert(day.clone());
            }
        }
        source.expired = source.rolled.len();
        source.whole = if !self.inner.config.from_rollups {
            Some(RawReason::Off)
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
        // Every closed day's rollup is looked at below: read the range's side by side first (a day's expiry
        // above reads its own only when part of its UTC dates lost their files).
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

    /// Whether local day `day`'s raw events (of `kind`; `None`: of any kind) expired while its rollup stays:
    /// none of its UTC dates has them any more, or one that had files when the rollup was written has none.
    async fn expired(
        &self,
        files: &BTreeMap<String, DayFiles>,
        day: &str,
        (path, written_ms, filter): (&Path, i64, Option<&(String, String)>),
        kind: Option<&str>,
        zone: chrono_tz::Tz,
    ) -> Result<bool> {
        let Ok(date) = NaiveDate::parse_from_str(day, "%Y-%m-%d") else {
            return Ok(false);
        };
        let (lo, hi) = utc_dates(zone, date);
        let gone: Vec<String> = dates(lo, hi)
            .map(day_text)
            .filter(|u| {
                files
                    .get(u)
                    .is_none_or(|f| kind.is_some_and(|k| !f.kinds.contains(k)))
            })
            .collect();
        if gone.is_empty() {
            return Ok(false);
        }
        if gone.len() == dates(lo, hi).count() {
            return Ok(true);
        }
        let rollup = self.rollup_file(path, written_ms, filter).await?;
        Ok(rollup
            .meta
            .as_ref()
            .is_some_and(|m| gone.iter().any(|u| m.near.contains_key(u))))
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
        let zone = scope.zone;
        let today = chrono::Utc::now().with_timezone(&zone).date_naive();
        let restricted = self.restricted_now(tenant)?;
        let buffered = self.buffered_days(tenant)?;
        let before = Duration::days(i64::from(scope.accept_past_days));
        for day in dates(params.from, params.to) {
            let text = day_text(day);
            let Some(local) = local_day_files(files, utc_dates(zone, day)) else {
                continue;
            };
            if source.rolled.contains(&text) {
                continue;
            }
            let reason = self
                .closed_day(
                    (day, zone, &local),
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
        }
        // The raw query can be left out when it would find nothing: every day with files is rolled, the
        // range is closed, and nothing of it is buffered (buffered days are UTC dates: one is covered when
        // every local day of the range it runs over is rolled).
        let rolled =
            |d: NaiveDate| d < params.from || d > params.to || source.rolled.contains(&day_text(d));
        let (first, _) = utc_dates(zone, params.from);
        let (_, last) = utc_dates(zone, params.to);
        source.needs_raw = !source.raw.is_empty()
            || params.to >= today
            || buffered.as_ref().is_none_or(|days| {
                days.range(first..=last).any(|u| {
                    let (lo, hi) = local_dates(zone, *u);
                    !dates(lo, hi).all(rolled)
                })
            });
        Ok(())
    }

    /// `None` when local day `day` (of `zone`, whose UTC dates hold `local`) comes from its rollup (with
    /// `filter`, `rollups` are the days' `filters.parquet` and that value's rows are read), else why not.
    #[allow(clippy::too_many_arguments)]
    async fn closed_day(
        &self,
        (day, zone, local): (NaiveDate, chrono_tz::Tz, &DayFiles),
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
        if meta.zone != zone.name() {
            return Ok(Some(RawReason::OtherZone));
        }
        if local.digest() != meta.files {
            return Ok(Some(RawReason::Changed));
        }
        if meta.restricted != restricted {
            return Ok(Some(RawReason::Objections));
        }
        if meta.shared > 0 {
            return Ok(Some(RawReason::SharedIds));
        }
        // The UTC dates an event that arrived on `day` (carrying its ids) may be filed under: their files now
        // must be the ones the rollup's check of shared ids saw (a date emptied since cannot add an id),
        // unless the rollup saw every event that arrived on the day.
        let (first, last) = utc_dates(zone, day);
        let (lo, hi) = if meta.complete {
            (first, last)
        } else {
            (first - before, last + Duration::days(1))
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
    pub(crate) async fn rollups_by_day(&self, tenant: &TenantId) -> Result<(Rollups, Rollups)> {
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
    pub(crate) fn buffered_days(&self, tenant: &TenantId) -> Result<Option<BTreeSet<NaiveDate>>> {
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
                    visits: None,
                },
            )
            .await?;
        Ok((source, plan))
    }

    /// Closed days (of `zone`) among the last `back` whose rollup is missing or no longer matches the day's
    /// files, objections, neighbours or zone, oldest first: what the server rewrites every hour. A day that
    /// lost some of its raw events to retention is left as it is (its rollup counted them).
    pub async fn stale_rollup_days(
        &self,
        tenant: &TenantId,
        back: u32,
        accept_past_days: u32,
        zone: chrono_tz::Tz,
    ) -> Result<Vec<NaiveDate>> {
        let today = chrono::Utc::now().with_timezone(&zone).date_naive();
        let files = raw_files_by_day(self.store(), tenant).await?;
        let (rollups, filtered) = self.rollups_by_day(tenant).await?;
        let restricted = self.restricted_now(tenant)?;
        let before = Duration::days(i64::from(accept_past_days.min(ID_WINDOW_DAYS)));
        let no_buffer = BTreeSet::new();
        let mut stale = Vec::new();
        for n in (1..=i64::from(back)).rev() {
            let day = today - Duration::days(n);
            let text = day_text(day);
            let Some(local) = local_day_files(&files, utc_dates(zone, day)) else {
                continue;
            };
            if let Some((path, at)) = rollups.get(&text)
                && self
                    .expired(&files, &text, (path, *at, None), None, zone)
                    .await?
            {
                continue;
            }
            // The buffer is left out: its events change the day's files when they flush.
            let why = self
                .closed_day(
                    (day, zone, &local),
                    today,
                    &files,
                    (&rollups, None),
                    &restricted,
                    Some(&no_buffer),
                    before,
                )
                .await?;
            // A rollup written before filters had rows of their own is rewritten too.
            if !filtered.contains_key(&text)
                || matches!(
                    why,
                    Some(
                        RawReason::NoRollup
                            | RawReason::OtherZone
                            | RawReason::Changed
                            | RawReason::Objections
                            | RawReason::Late
                    )
                )
            {
                stale.push(day);
                continue;
            }
            // A rollup written before visits were stored beside it is rewritten too (crate::visits).
            if let Some((path, at)) = rollups.get(&text)
                && self
                    .rollup_file(path, *at, None)
                    .await?
                    .meta
                    .as_ref()
                    .is_some_and(|m| m.visits.is_none())
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
