//! Report parameters as they arrive (query string, CLI flags), checked and typed. No SQL here: the query
//! crate binds these values to a report's placeholders; the `report_params` fuzz target drives [`ReportParams::parse`].

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};

/// A parameter that cannot be used; the message names it and says what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

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
    ("source", "referrer_source"),
    ("host", "referrer_host"),
];

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
    pub fn parse(given: &BTreeMap<String, String>, today: NaiveDate) -> Result<Self, ParamError> {
        let known = |k: &str| {
            matches!(k, "from" | "to" | "limit" | "interval" | "prop" | "steps")
                || FILTERS.iter().any(|(f, _)| *f == k)
        };
        if let Some(unknown) = given.keys().find(|k| !known(k)) {
            let mut names = vec!["from", "to", "limit", "interval", "prop", "steps"];
            names.extend(FILTERS.iter().map(|(f, _)| *f));
            return Err(ParamError(format!(
                "unknown report parameter {unknown:?}; reports take {}",
                names.join(", ")
            )));
        }
        let date = |key: &str| -> Result<Option<NaiveDate>, ParamError> {
            given
                .get(key)
                .map(|v| {
                    NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| {
                        ParamError(format!("{key}: {v:?} is not a date; use YYYY-MM-DD"))
                    })
                })
                .transpose()
        };
        let to = date("to")?.unwrap_or(today);
        let from =
            date("from")?.unwrap_or_else(|| to.checked_sub_days(Days::new(29)).unwrap_or(to));
        if from > to {
            return Err(ParamError(format!("from ({from}) is after to ({to})")));
        }
        let limit = match given.get("limit") {
            None => 100,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ParamError(format!(
                        "limit: {v:?} is not a number from 1 to {MAX_LIMIT}"
                    ))
                })?,
        };
        let interval = match given.get("interval").map(String::as_str) {
            None | Some("day") => Interval::Day,
            Some("hour") => Interval::Hour,
            Some(other) => {
                return Err(ParamError(format!(
                    "interval: {other:?} is not \"day\" or \"hour\""
                )));
            }
        };
        let mut filters = BTreeMap::new();
        for (name, _) in FILTERS {
            if let Some(v) = given.get(*name) {
                if v.is_empty() || v.len() > 1024 {
                    return Err(ParamError(format!(
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
                    return Err(ParamError(format!(
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
                .0
                .contains("YYYY-MM-DD")
        );
        assert!(
            ReportParams::parse(&m(&[("from", "2026-12-01")]), today)
                .unwrap_err()
                .0
                .contains("after")
        );
        assert!(
            ReportParams::parse(&m(&[("colour", "5")]), today)
                .unwrap_err()
                .0
                .contains("\"colour\"")
        );
    }
}
