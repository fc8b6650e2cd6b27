//! The report catalogue: one SQL file per report under `queries/`, compiled into the binary.
//!
//! Each file starts with `-- key: value` header lines (`name`, `title`, `params`, `columns`, and `k` naming
//! the distinct-visitor column the k-threshold applies to). Parameters are bound as values (`$from`, `$to`,
//! `$page`, …), never spliced into the SQL text. Files may use three fixed macros, expanded from constants in
//! this module (never from input): `{{range}}` (the date range), `{{filters}}` (every optional filter),
//! `{{no_filters}}` (true when no filter is given), and `{{visits}}` (common table expressions `scoped`, `marked`, `tagged` and `visits`, below).
//!
//! A visit is a run of one visitor id's events with no gap longer than 30 minutes. Visitor ids rotate
//! daily (the salt), so a visit never spans midnight in the tenant's salt day, and over a range of days
//! `visitors` counts visitor-days. Anonymised events (no visitor id) count as page views and events but
//! belong to no visit and no visitor.

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};
use datafusion::common::{ParamValues, ScalarValue};

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
    "crash_trend",
    "release_health",
];

/// The optional filters every report takes: parameter name and the column it matches exactly.
pub const FILTERS: &[(&str, &str)] = &[
    ("page", "url_path"),
    ("country", "country"),
    ("browser", "browser"),
    ("os", "os"),
    ("device", "device"),
    ("referrer_class", "referrer_class"),
    ("utm_source", "utm_source"),
    ("utm_campaign", "utm_campaign"),
    ("event", "name"),
    ("release", "release"),
    ("fingerprint", "fingerprint"),
];

const RANGE: &str = "date >= $from AND date <= $to";

const VISITS: &str = "scoped AS (
    SELECT * FROM events WHERE {{range}} AND {{filters}}
),
marked AS (
    SELECT *,
        CASE
            WHEN visitor_id IS NULL THEN NULL
            WHEN LAG(ts) OVER (PARTITION BY visitor_id ORDER BY ts) IS NULL THEN 1
            WHEN CAST(ts AS BIGINT) - CAST(LAG(ts) OVER (PARTITION BY visitor_id ORDER BY ts) AS BIGINT) > 1800000 THEN 1
            ELSE 0
        END AS visit_start
    FROM scoped
),
tagged AS (
    SELECT *,
        SUM(visit_start) OVER (PARTITION BY visitor_id ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS visit_no
    FROM marked
),
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
        let no_filters = FILTERS
            .iter()
            .map(|(param, _)| format!("${param} IS NULL"))
            .collect::<Vec<_>>()
            .join(" AND ");
        self.sql
            .replace("{{visits}}", VISITS)
            .replace("{{range}}", RANGE)
            .replace("{{filters}}", &filters_sql())
            .replace("{{no_filters}}", &format!("({no_filters})"))
    }

    /// The column the k-threshold applies to (`-- k: visitors`), if any.
    pub fn k_column(&self) -> Option<String> {
        self.header("k")
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

/// Bucket sizes of the time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
}

/// The parameters of a report run, parsed and typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportParams {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Rows returned at most (after the k-threshold), 1 to 10,000; default 100.
    pub limit: usize,
    pub interval: Interval,
    /// Filters that were given (name → exact value).
    pub filters: BTreeMap<&'static str, String>,
    /// The property key `event_properties` breaks down.
    pub prop: Option<String>,
    /// The funnel's steps, `page:/path` or `event:name`, 2 to 8.
    pub steps: Vec<String>,
}

/// Most rows a report may be asked for.
pub const MAX_LIMIT: usize = 10_000;

impl ReportParams {
    /// Parses `from` and `to` (`YYYY-MM-DD`, inclusive; default: `to` = `today`, `from` = 29 days before
    /// `to`), `limit`, `interval` (`day` or `hour`), `prop`, and the filters. Unknown parameters are
    /// refused by name, with the list of known ones.
    pub fn parse(given: &BTreeMap<String, String>, today: NaiveDate) -> Result<Self> {
        let known = |k: &str| {
            matches!(k, "from" | "to" | "limit" | "interval" | "prop" | "steps")
                || FILTERS.iter().any(|(f, _)| *f == k)
        };
        if let Some(unknown) = given.keys().find(|k| !known(k)) {
            let mut names = vec!["from", "to", "limit", "interval", "prop", "steps"];
            names.extend(FILTERS.iter().map(|(f, _)| *f));
            return Err(Error::User(format!(
                "unknown report parameter {unknown:?}; reports take {}",
                names.join(", ")
            )));
        }
        let date = |key: &str| -> Result<Option<NaiveDate>> {
            given
                .get(key)
                .map(|v| {
                    NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| {
                        Error::User(format!("{key}: {v:?} is not a date; use YYYY-MM-DD"))
                    })
                })
                .transpose()
        };
        let to = date("to")?.unwrap_or(today);
        let from =
            date("from")?.unwrap_or_else(|| to.checked_sub_days(Days::new(29)).unwrap_or(to));
        if from > to {
            return Err(Error::User(format!("from ({from}) is after to ({to})")));
        }
        let limit = match given.get("limit") {
            None => 100,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    Error::User(format!(
                        "limit: {v:?} is not a number from 1 to {MAX_LIMIT}"
                    ))
                })?,
        };
        let interval = match given.get("interval").map(String::as_str) {
            None | Some("day") => Interval::Day,
            Some("hour") => Interval::Hour,
            Some(other) => {
                return Err(Error::User(format!(
                    "interval: {other:?} is not \"day\" or \"hour\""
                )));
            }
        };
        let mut filters = BTreeMap::new();
        for (name, _) in FILTERS {
            if let Some(v) = given.get(*name) {
                if v.is_empty() || v.len() > 1024 {
                    return Err(Error::User(format!(
                        "{name}: give a value of 1 to 1024 bytes"
                    )));
                }
                filters.insert(*name, v.clone());
            }
        }
        let steps: Vec<String> = match given.get("steps") {
            None => Vec::new(),
            Some(v) => {
                let steps: Vec<String> = v.split(',').map(|s| s.trim().to_owned()).collect();
                if !(2..=8).contains(&steps.len())
                    || steps.iter().any(|s| {
                        s.strip_prefix("page:")
                            .or(s.strip_prefix("event:"))
                            .is_none_or(str::is_empty)
                    })
                {
                    return Err(Error::User(format!(
                        "steps: {v:?} is not 2 to 8 comma-separated steps like page:/pricing or event:signup"
                    )));
                }
                steps
            }
        };
        Ok(Self {
            from,
            to,
            limit,
            interval,
            filters,
            prop: given.get("prop").cloned(),
            steps,
        })
    }

    /// Fails when a report's required parameters are missing.
    pub(crate) fn check(&self, report: &Report) -> Result<()> {
        for r in report.required() {
            let given = match r.as_str() {
                "prop" => self.prop.is_some(),
                "steps" => !self.steps.is_empty(),
                f => self.filters.contains_key(f),
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

    pub(crate) fn bind(&self) -> ParamValues {
        let text = |v: Option<&str>| ScalarValue::Utf8(v.map(str::to_owned));
        let day = |d: NaiveDate| text(Some(&d.format("%Y-%m-%d").to_string()));
        let mut values = vec![
            ("from".to_owned(), day(self.from)),
            ("to".to_owned(), day(self.to)),
            (
                "interval".to_owned(),
                text(Some(match self.interval {
                    Interval::Hour => "hour",
                    Interval::Day => "day",
                })),
            ),
            ("prop".to_owned(), text(self.prop.as_deref())),
        ];
        for (name, _) in FILTERS {
            values.push((
                (*name).to_owned(),
                text(self.filters.get(name).map(String::as_str)),
            ));
        }
        for i in 1..=8 {
            values.push((
                format!("step{i}"),
                text(self.steps.get(i - 1).map(String::as_str)),
            ));
        }
        ParamValues::from(values)
    }
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

    #[test]
    fn params_default_and_validate() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        let p = ReportParams::parse(&BTreeMap::new(), today).unwrap();
        assert_eq!(
            (p.from.to_string(), p.to.to_string()),
            ("2026-10-31".into(), "2026-11-29".into())
        );
        let m = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(
            ReportParams::parse(&m(&[("from", "29/11/2026")]), today)
                .unwrap_err()
                .to_string()
                .contains("YYYY-MM-DD")
        );
        assert!(
            ReportParams::parse(&m(&[("from", "2026-12-01")]), today)
                .unwrap_err()
                .to_string()
                .contains("after")
        );
        assert!(
            ReportParams::parse(&m(&[("colour", "5")]), today)
                .unwrap_err()
                .to_string()
                .contains("\"colour\"")
        );
    }
}
