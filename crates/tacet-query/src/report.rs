//! The report catalogue: one SQL file per report under `queries/`, compiled into the binary.
//!
//! Each file starts with `-- key: value` header lines (`name`, `title`, `params`, `columns`). Parameters are
//! bound as values (`$from`, `$to`), never spliced into the SQL text.

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

/// Every report, in the order `tacet report --list` shows them.
pub const REPORTS: &[Report] = &[Report {
    name: "daily",
    sql: include_str!("../../../queries/daily.sql"),
}];

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

/// The parameters every date-ranged report takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportParams {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl ReportParams {
    /// Parses `from` and `to` (`YYYY-MM-DD`, inclusive). Defaults: `to` = `today`, `from` = 29 days before
    /// `to`. Unknown parameters are refused by name.
    pub fn parse(given: &BTreeMap<String, String>, today: NaiveDate) -> Result<Self> {
        if let Some(unknown) = given.keys().find(|k| !matches!(k.as_str(), "from" | "to")) {
            return Err(Error::User(format!(
                "unknown report parameter {unknown:?}; reports take from and to"
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
        Ok(Self { from, to })
    }

    pub(crate) fn bind(&self) -> ParamValues {
        let s = |d: NaiveDate| ScalarValue::Utf8(Some(d.format("%Y-%m-%d").to_string()));
        ParamValues::from(vec![("from", s(self.from)), ("to", s(self.to))])
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
                .contains("reports are: daily")
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
            ReportParams::parse(&m(&[("limit", "5")]), today)
                .unwrap_err()
                .to_string()
                .contains("\"limit\"")
        );
    }
}
