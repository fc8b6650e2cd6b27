//! The report catalogue: one SQL file per report under `queries/`, compiled into the binary.
//!
//! Each file starts with `-- key: value` header lines (`name`, `title`, `params`, `columns`, and `k`, required:
//! how the k-threshold applies, threshold.rs). Parameters are bound as values (`$from`, `$to`,
//! `$page`, …), never spliced into the SQL text. Files may use fixed macros, expanded from constants in this
//! module (never from input): `{{range}}` (events in the date range), `{{days}}` (rollup dates in the range),
//! `{{day}}` (an event's day), `{{filters}}` (every optional filter; `{{filters_but_fingerprint}}` all but that one, for a report
//! that compares one crash group with everything else), `{{no_filters}}` (true when no filter is
//! given; `{{no_filters_but_fingerprint}}` the same but for `fingerprint`), `{{visits}}` (common table
//! expressions `scoped`, `tagged` and `visits`, below) and `{{visit_window}}` (the window the visit
//! definition runs over, for reports that look at a page view's neighbours in the same order). A report with the header `-- rollups: visits` also has `{{expired}}`
//! (rollup days to add, those whose raw page views are gone) and keeps those days out of `scoped`;
//! `{{midnight}}` is a rollup `date`'s first instant in the tenant's zone, typed as `ts`.
//!
//! Days are the tenant's: `from` and `to` are dates in its time zone (`[privacy] timezone`, default UTC), the
//! range is bound as the instants of its first and last local midnight, and the session shows `ts` in that
//! zone (engine.rs), so `date_trunc('day', ts)` and `{{day}}` are local days. Partitions stay UTC dates and
//! are pruned to the UTC days the range touches. Rollups are per day of the tenant's zone too (crate::rollup),
//! so a report adds whole local days from them.
//!
//! A visit is a run of one visitor id's events with no gap longer than 30 minutes. Visitor ids rotate
//! daily (the salt), so a visit never spans midnight in the tenant's salt day, and over a range of days
//! `visitors` counts visitor-days. Anonymised events (no visitor id) count as page views and events but
//! belong to no visit and no visitor.
//!
//! The windows run `PARTITION BY visit_bucket ORDER BY visitor_id, ts, arrival` (`visit_bucket` is `visitor_id % 64`,
//! a column of `scoped` so that both window levels share one sort): all of a visitor's events fall in
//! one of 64 buckets, so the previous row in the bucket is the visitor's previous event or another
//! visitor's, exactly as in one global order, and `visit_no` (a running count of visit starts in the bucket)
//! is unique per visitor and visit. The buckets let the sort and the window run on every core; one partition
//! per visitor (hundreds of thousands a month) made DataFusion's window operator slow, and one global order
//! ran single-threaded. `arrival` (the order the node received events in, schemas/events.md) breaks ties
//! between equal timestamps: events of one request share the time of receipt, and without it the order of
//! `/c` and `/d` sent together depended on how the files were read (entry pages and funnels changed from one
//! call to the next). Reports that need a visitor's events in order use this window, never `ts` alone.

use chrono::NaiveDate;
use datafusion::common::{ParamValues, ScalarValue};

pub use tacet_model::params::{FILTERS, Interval, MAX_LIMIT, ParamError, ReportParams};

use crate::{Error, Result};

/// A canned report.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! reports {
    ($($name:literal),* $(,)?) => {
        &[$(Report { name: $name, sql: include_str!(concat!("../../../queries/", $name, ".sql")) }),*]
    };
}

/// Every report, in the order `tacet report --list` shows them.
pub const REPORTS: &[Report] = reports![
    "daily",
    "overview",
    "timeseries",
    "pages",
    "entry_pages",
    "exit_pages",
    "referrers",
    "campaigns",
    "browsers",
    "operating_systems",
    "devices",
    "countries",
    "events",
    "event_properties",
    "event_property_keys",
    "goals",
    "funnel",
    "retention",
    "realtime",
    "realtime_now",
    "realtime_pages",
    "realtime_sources",
    "crash_groups",
    "crash_group",
    "crash_trend",
    "crash_breakdown",
    "crash_occurrences",
    "crash_releases",
    "release_health",
];

/// Events in the range for a tenant in UTC: the partitions are the days.
const RANGE_UTC: &str = "date >= $from AND date <= $to";

/// Events in the range for a tenant elsewhere: whole local days of its zone, `[$start, $end)`; the
/// partitions (UTC dates) are pruned to the UTC days those instants fall on, `$from_utc` to `$to_utc`.
const RANGE_LOCAL: &str = "date >= $from_utc AND date <= $to_utc AND ts >= $start AND ts < $end";

/// Rollup days in the range (rollups are kept per day of the tenant's zone, see crate::rollup).
const DAYS: &str = "date >= $from AND date <= $to";

/// A row's day, `YYYY-MM-DD`: the partition date in UTC, else the local date of `ts` (which the session
/// shows in the tenant's zone).
const DAY_UTC: &str = "date";
const DAY_LOCAL: &str = "CAST(CAST(ts AS DATE) AS VARCHAR)";

/// `tagged` in standard SQL: the visit number as `LAG` and a running `SUM` over the same window, the same
/// numbers as `tacet_visit` (crate::visit). What [`Report::portable_sql`] puts in for other engines.
pub const PORTABLE_VISIT_NO: &str = "marked AS (
    SELECT *,
        CASE
            WHEN visitor_id IS NULL THEN NULL
            WHEN LAG(visitor_id) OVER ({{visit_window}}) IS DISTINCT FROM visitor_id THEN 1
            WHEN CAST(ts AS BIGINT) - CAST(LAG(ts) OVER ({{visit_window}}) AS BIGINT) > 1800000 THEN 1
            ELSE 0
        END AS visit_start
    FROM scoped
),
tagged AS (
    SELECT *,
        SUM(visit_start) OVER ({{visit_window}} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS visit_no
    FROM marked
)";

/// The window of the visit definition: see the module documentation.
pub const VISIT_WINDOW: &str = "PARTITION BY visit_bucket ORDER BY visitor_id, ts, arrival";

/// `tagged` as Tacet runs it: the visit number from `tacet_visit` (crate::visit).
const TAGGED: &str = "tagged AS (
    SELECT *, tacet_visit(visitor_id, ts) OVER ({{visit_window}}) AS visit_no
    FROM scoped
)";

const VISITS: &str = "scoped AS (
    SELECT *, visitor_id % 64 AS visit_bucket FROM events WHERE {{range}} AND {{filters}} AND {{live}}
),
{{tagged}},
visits AS (
    SELECT visitor_id, visit_no, MIN(ts) AS started, MAX(ts) AS ended,
        COUNT(*) FILTER (WHERE kind = 'pageview') AS pageviews
    FROM tagged
    WHERE visitor_id IS NOT NULL
    GROUP BY visitor_id, visit_no
)";

/// A day answered by its rollup (`-- rollups: visits`): `$expired` lists the range's days the planner rolled
/// (the tenant's days, comma-separated; crate::source), and a rollup's `date` is one of them.
const EXPIRED: &str = "strpos($expired, date) > 0";
/// Events of the days not rolled. In UTC a day is a partition; elsewhere an event's day is the local date of
/// its `ts`, and `$covered` lists the UTC dates every local day of the range they touch is rolled (or outside
/// the range), so their partitions are pruned. The local date is only worked out (per row, the costly part)
/// for events from the first rolled day's midnight to the last's end (`$rolled_start`, `$rolled_end`: empty
/// when no day is rolled); a batch wholly outside that span skips it.
const LIVE_UTC: &str = "strpos($expired, date) = 0";
const LIVE_LOCAL: &str = "strpos($covered, date) = 0 AND (ts < $rolled_start OR ts >= $rolled_end \
     OR strpos($expired, CAST(CAST(ts AS DATE) AS VARCHAR)) = 0)";

/// Every optional filter. `event` is a goal filter, as in Plausible: it keeps every event of the visitors
/// (visitor-days) who did that custom event in the range, so the pages, sources and devices of those who
/// converted show, not only the event's own rows. That subquery is only written in when `event` is given
/// (`event_given`); otherwise the filter is `$event IS NULL`, bound to NULL.
fn filters_sql(range: &str, event_given: bool, except: &str) -> String {
    FILTERS
        .iter()
        .filter(|(param, _)| *param != except)
        .map(|(param, column)| match *param {
            "event" if event_given => format!(
                "visitor_id IN (SELECT visitor_id FROM events WHERE kind = 'event' AND name = $event \
                 AND visitor_id IS NOT NULL AND {range})"
            ),
            "event" => "$event IS NULL".to_owned(),
            // A crash group after the tenant's merges and splits (crate::groups).
            "fingerprint" => format!(
                "($fingerprint IS NULL OR {}(fingerprint, stack) = $fingerprint)",
                crate::groups::NAME
            ),
            _ => format!("(${param} IS NULL OR {column} = ${param})"),
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

impl Report {
    pub fn find(name: &str) -> Result<&'static Report> {
        REPORTS.iter().find(|r| r.name == name).ok_or_else(|| {
            let names: Vec<&str> = REPORTS.iter().map(|r| r.name).collect();
            Error::User(format!(
                "no report named {name:?}; reports are: {}",
                names.join(", ")
            ))
        })
    }

    /// The SQL with the macros expanded (constants only; parameters stay placeholders), for a tenant in UTC.
    pub fn expanded_sql(&self) -> String {
        self.expanded_sql_in(chrono_tz::UTC)
    }

    /// The SQL with the macros expanded for a tenant whose days are those of `zone`.
    pub fn expanded_sql_in(&self, zone: chrono_tz::Tz) -> String {
        self.expanded_sql_for(zone, false)
    }

    /// [`Report::expanded_sql_in`] for a call that gives the `event` filter (`event_given`: the goal
    /// filter's subquery is written in; see `filters_sql`).
    pub fn expanded_sql_for(&self, zone: chrono_tz::Tz, event_given: bool) -> String {
        // A rollup day's first instant, typed as `ts` is shown (the zone's local midnight of that date).
        let midnight = format!(
            "arrow_cast(CAST(date AS TIMESTAMP), 'Timestamp(Millisecond, Some(\"{}\"))')",
            if zone == chrono_tz::UTC {
                tacet_model::schema::TS_TZ
            } else {
                zone.name()
            }
        );
        self.expand(TAGGED, zone == chrono_tz::UTC, &midnight, event_given)
            .replace(
                "COUNT(DISTINCT visitor_id)",
                &format!("{}(visitor_id)", crate::distinct::NAME),
            )
    }

    /// The SQL with the macros expanded and Tacet's window functions in standard SQL ([`PORTABLE_VISIT_NO`]
    /// instead of `tacet_visit`, `LAG` and `LEAD` for `tacet_prev` and `tacet_next`): the same report for
    /// another engine (DuckDB, Trino) on the same files.
    pub fn portable_sql(&self) -> String {
        self.expand(PORTABLE_VISIT_NO, true, "CAST(date AS TIMESTAMP)", false)
            .replace("tacet_prev(", "LAG(")
            .replace("tacet_next(", "LEAD(")
    }

    fn expand(&self, tagged: &str, utc: bool, midnight: &str, event_given: bool) -> String {
        let (range, day) = if utc {
            (RANGE_UTC, DAY_UTC)
        } else {
            (RANGE_LOCAL, DAY_LOCAL)
        };
        // True when no filter but `except` is given.
        let no_filters_but = |except: &str| {
            let unset: Vec<String> = FILTERS
                .iter()
                .filter(|(param, _)| *param != except)
                .map(|(param, _)| format!("${param} IS NULL"))
                .collect();
            format!("({})", unset.join(" AND "))
        };
        let rolled = self.rollup_visits();
        // Every report with a rollup path leaves out the days its rollups answer (crate::source).
        let live = rolled || self.rollup().is_some();
        self.sql
            .replace("{{visits}}", VISITS)
            .replace("{{tagged}}", tagged)
            .replace("{{visit_window}}", VISIT_WINDOW)
            .replace("{{range}}", range)
            .replace("{{days}}", DAYS)
            .replace("{{day}}", day)
            .replace("{{filters}}", &filters_sql(range, event_given, ""))
            .replace(
                "{{filters_but_fingerprint}}",
                &filters_sql(range, event_given, "fingerprint"),
            )
            .replace("{{no_filters}}", &no_filters_but(""))
            .replace(
                "{{no_filters_but_fingerprint}}",
                &no_filters_but("fingerprint"),
            )
            .replace(
                "{{live}}",
                match (live, utc) {
                    (false, _) => "TRUE",
                    (true, true) => LIVE_UTC,
                    (true, false) => LIVE_LOCAL,
                },
            )
            .replace("{{expired}}", if rolled { EXPIRED } else { "FALSE" })
            .replace("{{midnight}}", midnight)
    }

    /// Whether the report adds the daily rollups' visit totals for days whose raw events expired
    /// (`-- rollups: visits`; `$expired` names those days).
    pub fn rollup_visits(&self) -> bool {
        self.header("rollups")
            .is_some_and(|h| h.split_whitespace().next() == Some("visits"))
    }

    /// The rollup (kind, dimension) that answers this breakdown for days whose raw events expired
    /// (`-- rollups: pageview page`): its columns must be the dimension's values (one to three, as in
    /// crate::rollup::DIMENSIONS), distinct visitors, and a count. None for `-- rollups: visits`.
    pub fn rollup(&self) -> Option<(String, String)> {
        let h = self.header("rollups")?;
        let mut words = h.split_whitespace();
        let kind = words.next().filter(|k| *k != "visits")?;
        Some((kind.to_owned(), words.next()?.to_owned()))
    }

    /// Whether the report may run on a Ballista cluster (`-- distributed: no` keeps it local).
    pub fn distributed(&self) -> bool {
        self.header("distributed")
            .is_none_or(|v| !v.trim_start().starts_with("no"))
    }

    /// Parameters this report requires beyond the common ones (`-- requires: event, prop`).
    pub fn required(&self) -> Vec<String> {
        self.header("requires")
            .map(|r| r.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default()
    }

    /// The value of a `-- key:` header line (continuation lines `--   …` are joined).
    pub fn header(&self, key: &str) -> Option<String> {
        let mut out: Option<String> = None;
        for line in self.sql.lines() {
            let Some(rest) = line.strip_prefix("--") else {
                break;
            };
            match (
                &mut out,
                rest.trim_start()
                    .strip_prefix(key)
                    .and_then(|r| r.strip_prefix(':')),
            ) {
                (None, Some(v)) => out = Some(v.trim().to_owned()),
                (Some(acc), None) if rest.starts_with("   ") => {
                    acc.push(' ');
                    acc.push_str(rest.trim());
                }
                (Some(_), _) => break,
                _ => {}
            }
        }
        out
    }
}

/// Fails when a report's required parameters are missing.
pub(crate) fn check(params: &ReportParams, report: &Report) -> Result<()> {
    for r in report.required() {
        let given = match r.as_str() {
            "prop" => params.prop.is_some(),
            "steps" => !params.steps.is_empty(),
            f => params.filters.contains_key(f),
        };
        if !given {
            return Err(Error::User(format!(
                "report {} needs the parameter {r} (API: ?{r}=…; CLI: --{r} …)",
                report.name
            )));
        }
    }
    Ok(())
}

/// Whose report it is: the tenant's k-thresholds (numbers describing fewer visitors are left out or
/// withheld, threshold.rs) and time zone (what a day is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportScope {
    /// For usage reports.
    pub k_threshold: u64,
    /// For crash triage reports (`-- k: … crashes`).
    pub k_crashes: u64,
    pub zone: chrono_tz::Tz,
    /// The tenant's crash group merges and splits (`tacet_group`, crate::groups).
    pub groups: std::sync::Arc<crate::groups::CrashGroups>,
    /// How many days back the tenant accepts events (its policy's `accept_past`, rounded up): how far a
    /// visitor id can spread across days, which the report planner checks (crate::source).
    pub accept_past_days: u32,
}

impl ReportScope {
    /// A tenant in UTC whose crash reports show every group (`k_crashes` 1).
    pub fn utc(k_threshold: u64) -> Self {
        Self {
            k_threshold,
            k_crashes: 1,
            zone: chrono_tz::UTC,
            groups: Default::default(),
            accept_past_days: 7,
        }
    }

    /// `accept_past_days` for a policy's `accept_past`: whole days, rounded up.
    pub fn days_back(accept_past: std::time::Duration) -> u32 {
        u32::try_from(accept_past.as_secs().div_ceil(86_400)).unwrap_or(u32::MAX)
    }
}

/// The first instant of local day `day` in `zone`, in milliseconds (the earlier one when midnight comes
/// twice; the end of the gap when a clock change skips midnight).
pub(crate) fn local_midnight(zone: chrono_tz::Tz, day: NaiveDate) -> i64 {
    use chrono::TimeZone;
    let midnight = day.and_time(chrono::NaiveTime::MIN);
    (0..=3)
        .find_map(|h| {
            zone.from_local_datetime(&(midnight + chrono::Duration::hours(h)))
                .earliest()
        })
        .map_or_else(
            || midnight.and_utc().timestamp_millis(),
            |t| t.timestamp_millis(),
        )
}

/// The UTC date of an instant (milliseconds).
fn utc_date(ms: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("an instant of a representable day")
        .date_naive()
}

/// The UTC dates local day `day` of `zone` runs over: its first instant's and its last's (one date in UTC,
/// two elsewhere but in a zone at UTC+0 that day).
pub fn utc_dates(zone: chrono_tz::Tz, day: NaiveDate) -> (NaiveDate, NaiveDate) {
    let end = local_midnight(zone, day + chrono::Days::new(1));
    (utc_date(local_midnight(zone, day)), utc_date(end - 1))
}

/// The local days of `zone` UTC date `date` runs over: its first instant's and its last's.
pub fn local_dates(zone: chrono_tz::Tz, date: NaiveDate) -> (NaiveDate, NaiveDate) {
    let start = date.and_time(chrono::NaiveTime::MIN).and_utc();
    let last = start + chrono::Duration::days(1) - chrono::Duration::milliseconds(1);
    (
        start.with_timezone(&zone).date_naive(),
        last.with_timezone(&zone).date_naive(),
    )
}

/// The dates from `lo` to `hi`, both included.
pub(crate) fn dates(lo: NaiveDate, hi: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    lo.iter_days().take_while(move |d| *d <= hi)
}

/// `$covered`: the UTC dates of the range's partitions whose every event is on a rolled day (`rolled`, the
/// tenant's days) or outside the range, comma-separated.
fn covered(params: &ReportParams, zone: chrono_tz::Tz, rolled: &str) -> String {
    let rolled: std::collections::BTreeSet<&str> = rolled.split(',').collect();
    let is_rolled = |d: NaiveDate| {
        d < params.from
            || d > params.to
            || rolled.contains(d.format("%Y-%m-%d").to_string().as_str())
    };
    let (first, _) = utc_dates(zone, params.from);
    let (_, last) = utc_dates(zone, params.to);
    dates(first, last)
        .filter(|u| {
            let (lo, hi) = local_dates(zone, *u);
            dates(lo, hi).all(is_rolled)
        })
        .map(|u| u.format("%Y-%m-%d").to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The parameters as values for the report's placeholders (`$from`, `$page`, `$step1`, …), the range as
/// whole days of `zone`.
/// `expired` lists the rolled days (`$expired`); `filtered_rollups` says the query's own `rollups` table holds
/// the rows of the one filter given (crate::source), so a filtered report may read them (`$filtered_rollups`).
pub(crate) fn bind(
    params: &ReportParams,
    zone: chrono_tz::Tz,
    expired: &str,
    filtered_rollups: bool,
) -> ParamValues {
    let text = |v: Option<&str>| ScalarValue::Utf8(v.map(str::to_owned));
    let day = |d: NaiveDate| text(Some(&d.format("%Y-%m-%d").to_string()));
    let start = local_midnight(zone, params.from);
    let end = local_midnight(zone, params.to + chrono::Days::new(1));
    let utc_day = |ms: i64| {
        day(chrono::DateTime::from_timestamp_millis(ms).map_or(params.from, |t| t.date_naive()))
    };
    // `ts` is shown in the tenant's zone (engine.rs); the bounds carry the same zone, so no cast.
    let instant = |ms: i64| ScalarValue::TimestampMillisecond(Some(ms), Some(zone.name().into()));
    // From the first rolled day's midnight to the last one's end.
    let rolled_days: Vec<NaiveDate> = expired
        .split(',')
        .filter_map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .collect();
    let rolled = rolled_days
        .iter()
        .min()
        .zip(rolled_days.iter().max())
        .map(|(first, last)| {
            (
                local_midnight(zone, *first),
                local_midnight(zone, *last + chrono::Days::new(1)),
            )
        });
    let mut values = vec![
        ("from".to_owned(), day(params.from)),
        ("to".to_owned(), day(params.to)),
        ("from_utc".to_owned(), utc_day(start)),
        ("to_utc".to_owned(), utc_day(end - 1)),
        ("start".to_owned(), instant(start)),
        ("end".to_owned(), instant(end)),
        (
            "rolled_start".to_owned(),
            instant(rolled.map_or(start, |(a, _)| a)),
        ),
        (
            "rolled_end".to_owned(),
            instant(rolled.map_or(start, |(_, b)| b)),
        ),
        (
            "interval".to_owned(),
            text(Some(match params.interval {
                Interval::Hour => "hour",
                Interval::Day => "day",
            })),
        ),
        ("prop".to_owned(), text(params.prop.as_deref())),
        ("expired".to_owned(), text(Some(expired))),
        (
            "covered".to_owned(),
            text(Some(&covered(params, zone, expired))),
        ),
        (
            "filtered_rollups".to_owned(),
            ScalarValue::Boolean(Some(filtered_rollups)),
        ),
    ];
    for (name, _) in FILTERS {
        values.push((
            (*name).to_owned(),
            text(params.filters.get(name).map(String::as_str)),
        ));
    }
    for i in 1..=8 {
        values.push((
            format!("step{i}"),
            text(params.steps.get(i - 1).map(String::as_str)),
        ));
    }
    ParamValues::from(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `from` 2025-11-28, `to` 2025-11-29.
    fn two_days() -> ReportParams {
        ReportParams::parse(
            &[("from", "2025-11-28"), ("to", "2025-11-29")]
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
            NaiveDate::from_ymd_opt(2025, 11, 29).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn local_midnight_is_the_first_instant_of_the_local_day() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        };
        assert_eq!(
            local_midnight(chrono_tz::UTC, day(2025, 11, 28)),
            at("2025-11-28T00:00:00Z")
        );
        assert_eq!(
            local_midnight(chrono_tz::Europe::Berlin, day(2025, 11, 28)),
            at("2025-11-27T23:00:00Z")
        );
        // The day clocks move forward at 02:00 (Berlin) and at midnight itself (Santiago, to 01:00).
        assert_eq!(
            local_midnight(chrono_tz::Europe::Berlin, day(2025, 3, 30)),
            at("2025-03-29T23:00:00Z")
        );
        assert_eq!(
            local_midnight(chrono_tz::America::Santiago, day(2025, 9, 7)),
            at("2025-09-07T04:00:00Z")
        );
        // Bound as the tenant's range: from its first local midnight to the one after `to`, partitions
        // pruned to the UTC dates those instants fall on.
        let params = two_days();
        let bound = bind(&params, chrono_tz::Asia::Tokyo, "", false);
        let get = |name: &str| {
            bound
                .get_placeholders_with_values(&format!("${name}"))
                .unwrap()
                .value
        };
        assert_eq!(
            get("from_utc"),
            ScalarValue::Utf8(Some("2025-11-27".into()))
        );
        assert_eq!(get("to_utc"), ScalarValue::Utf8(Some("2025-11-29".into())));
        assert_eq!(
            get("start"),
            ScalarValue::TimestampMillisecond(
                Some(at("2025-11-27T15:00:00Z")),
                Some("Asia/Tokyo".into())
            )
        );
    }

    #[test]
    fn a_local_day_runs_over_utc_dates_and_rolled_days_cover_partitions() {
        let berlin = chrono_tz::Europe::Berlin;
        let new_york = chrono_tz::America::New_York;
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        // (zone, local day, the first and last UTC date it runs over)
        let days = [
            (chrono_tz::UTC, "2025-11-28", "2025-11-28", "2025-11-28"),
            (berlin, "2025-11-28", "2025-11-27", "2025-11-28"),
            (new_york, "2025-11-28", "2025-11-28", "2025-11-29"),
            // The day clocks go back (25 hours, 22:00 to 23:00 UTC) and the day they go forward (23 hours).
            (berlin, "2026-10-25", "2026-10-24", "2026-10-25"),
            (berlin, "2026-03-29", "2026-03-28", "2026-03-29"),
            // London is at UTC+0 in winter: one date.
            (
                chrono_tz::Europe::London,
                "2025-11-28",
                "2025-11-28",
                "2025-11-28",
            ),
        ];
        for (zone, local, first, last) in days {
            assert_eq!(
                utc_dates(zone, d(local)),
                (d(first), d(last)),
                "{zone} {local}"
            );
        }
        // (zone, UTC date, the first and last local day it runs over)
        let dates = [
            (berlin, "2025-11-28", "2025-11-28", "2025-11-29"),
            (new_york, "2025-11-28", "2025-11-27", "2025-11-28"),
            (berlin, "2026-10-25", "2026-10-25", "2026-10-26"),
        ];
        for (zone, utc, first, last) in dates {
            assert_eq!(
                local_dates(zone, d(utc)),
                (d(first), d(last)),
                "{zone} {utc}"
            );
        }
        let params = two_days();
        // Both Berlin days rolled: every partition of the range is (its hour before the range is outside it).
        assert_eq!(
            covered(&params, berlin, "2025-11-28,2025-11-29"),
            "2025-11-27,2025-11-28,2025-11-29"
        );
        // Only the first: the 28th holds the second's first hour.
        assert_eq!(covered(&params, berlin, "2025-11-28"), "2025-11-27");
        assert_eq!(covered(&params, berlin, ""), "");
        assert_eq!(covered(&params, chrono_tz::UTC, "2025-11-29"), "2025-11-29");
        // The span whose rows' local dates are worked out: the rolled days', empty without any.
        let span = |rolled: &str| {
            let bound = bind(&params, berlin, rolled, false);
            let ms = |name: &str| match bound
                .get_placeholders_with_values(&format!("${name}"))
                .unwrap()
                .value
            {
                ScalarValue::TimestampMillisecond(Some(ms), _) => ms,
                other => panic!("{other:?}"),
            };
            (ms("rolled_start"), ms("rolled_end"))
        };
        let midnight = |day: &str| local_midnight(berlin, d(day));
        assert_eq!(
            span("2025-11-29"),
            (midnight("2025-11-29"), midnight("2025-11-30"))
        );
        assert_eq!(
            span("2025-11-29,2025-11-28"),
            (midnight("2025-11-28"), midnight("2025-11-30"))
        );
        let (start, end) = span("");
        assert_eq!(start, end);
    }

    #[test]
    fn every_report_has_a_header() {
        for r in REPORTS {
            assert_eq!(r.header("name").as_deref(), Some(r.name));
            assert!(
                r.header("title").is_some() && r.header("columns").is_some(),
                "{}",
                r.name
            );
        }
        let daily = Report::find("daily").unwrap();
        assert!(daily.header("columns").unwrap().contains("crashes"));
        assert!(
            Report::find("nope")
                .unwrap_err()
                .to_string()
                .contains("reports are: daily, overview")
        );
    }
}
