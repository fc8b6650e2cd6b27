//! The report catalogue: one SQL file per report under `queries/`, compiled into the binary.
//!
//! Each file starts with `-- key: value` header lines (`name`, `title`, `params`, `columns`, and `k` naming
//! the distinct-visitor column the k-threshold applies to). Parameters are bound as values (`$from`, `$to`,
//! `$page`, …), never spliced into the SQL text. Files may use three fixed macros, expanded from constants in
//! this module (never from input): `{{range}}` (the date range), `{{filters}}` (every optional filter),
//! `{{no_filters}}` (true when no filter is given), `{{visits}}` (common table expressions `scoped`, `marked`, `tagged` and
//! `visits`, below) and `{{visit_window}}` (the window the visit definition runs over, for reports that look at
//! a page view's neighbours in the same order).
//!
//! A visit is a run of one visitor id's events with no gap longer than 30 minutes. Visitor ids rotate
//! daily (the salt), so a visit never spans midnight in the tenant's salt day, and over a range of days
//! `visitors` counts visitor-days. Anonymised events (no visitor id) count as page views and events but
//! belong to no visit and no visitor.
//!
//! The windows run `PARTITION BY visit_bucket ORDER BY visitor_id, ts` (`visit_bucket` is `visitor_id % 64`,
//! a column of `scoped` so that both window levels share one sort): all of a visitor's events fall in
//! one of 64 buckets, so the previous row in the bucket is the visitor's previous event or another
//! visitor's, exactly as in one global order, and `visit_no` (a running count of visit starts in the bucket)
//! is unique per visitor and visit. The buckets let the sort and the window run on every core; one partition
//! per visitor (hundreds of thousands a month) made DataFusion's window operator slow, and one global order
//! ran single-threaded.

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
    "goals",
    "funnel",
    "retention",
    "realtime",
    "crash_groups",
    "crash_group",
    "crash_trend",
    "release_health",
];

const RANGE: &str = "date >= $from AND date <= $to";

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
pub const VISIT_WINDOW: &str = "PARTITION BY visit_bucket ORDER BY visitor_id, ts";

/// `tagged` as Tacet runs it: the visit number from `tacet_visit` (crate::visit).
const TAGGED: &str = "tagged AS (
    SELECT *, tacet_visit(visitor_id, ts) OVER ({{visit_window}}) AS visit_no
    FROM scoped
)";

const VISITS: &str = "scoped AS (
    SELECT *, visitor_id % 64 AS visit_bucket FROM events WHERE {{range}} AND {{filters}}
),
{{tagged}},
visits AS (
    SELECT visitor_id, visit_no, MIN(ts) AS started, MAX(ts) AS ended,
        COUNT(*) FILTER (WHERE kind = 'pageview') AS pageviews
    FROM tagged
    WHERE visitor_id IS NOT NULL
    GROUP BY visitor_id, visit_no
)";

fn filters_sql() -> String {
    FILTERS
        .iter()
        .map(|(param, column)| format!("(${param} IS NULL OR {column} = ${param})"))
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

    /// The SQL with the macros expanded (constants only; parameters stay placeholders).
    pub fn expanded_sql(&self) -> String {
        self.expand(TAGGED)
    }

    /// The SQL with the macros expanded and the visit number in standard SQL ([`PORTABLE_VISIT_NO`]
    /// instead of `tacet_visit`): the same report for another engine (DuckDB, Trino) on the same files.
    pub fn portable_sql(&self) -> String {
        self.expand(PORTABLE_VISIT_NO)
    }

    fn expand(&self, tagged: &str) -> String {
        let no_filters = FILTERS
            .iter()
            .map(|(param, _)| format!("${param} IS NULL"))
            .collect::<Vec<_>>()
            .join(" AND ");
        self.sql
            .replace("{{visits}}", VISITS)
            .replace("{{tagged}}", tagged)
            .replace("{{visit_window}}", VISIT_WINDOW)
            .replace("{{range}}", RANGE)
            .replace("{{filters}}", &filters_sql())
            .replace("{{no_filters}}", &format!("({no_filters})"))
    }

    /// The column the k-threshold applies to (`-- k: visitors`), if any.
    pub fn k_column(&self) -> Option<String> {
        self.header("k")
    }

    /// The rollup (kind, dimension) that answers this breakdown for days whose raw events expired
    /// (`-- rollups: pageview page`): its columns must be the value, distinct visitors, and a count.
    pub fn rollup(&self) -> Option<(String, String)> {
        let h = self.header("rollups")?;
        let mut words = h.split_whitespace();
        Some((words.next()?.to_owned(), words.next()?.to_owned()))
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
                "report {} needs the parameter {r} (e.g. ?{r}=…)",
                report.name
            )));
        }
    }
    Ok(())
}

/// The parameters as values for the report's placeholders (`$from`, `$page`, `$step1`, …).
pub(crate) fn bind(params: &ReportParams) -> ParamValues {
    let text = |v: Option<&str>| ScalarValue::Utf8(v.map(str::to_owned));
    let day = |d: NaiveDate| text(Some(&d.format("%Y-%m-%d").to_string()));
    let mut values = vec![
        ("from".to_owned(), day(params.from)),
        ("to".to_owned(), day(params.to)),
        (
            "interval".to_owned(),
            text(Some(match params.interval {
                Interval::Hour => "hour",
                Interval::Day => "day",
            })),
        ),
        ("prop".to_owned(), text(params.prop.as_deref())),
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
