//! Any bytes as a report's query string (`key=value&…`) through `ReportParams::parse`. Never a panic; what
//! it accepts is within the documented bounds and parses back to itself from its own canonical form.
#![no_main]

use std::collections::BTreeMap;

use chrono::NaiveDate;
use libfuzzer_sys::fuzz_target;
use tacet_model::ReportParams;
use tacet_model::params::{FILTERS, Interval, MAX_LIMIT};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let given: BTreeMap<String, String> = text
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect();
    let today = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
    let params = match ReportParams::parse(&given, today) {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.0.is_empty(), "an error must say what is wrong");
            return;
        }
    };
    assert!(params.from <= params.to);
    assert!((1..=MAX_LIMIT).contains(&params.limit));
    assert!(params.steps.is_empty() || (2..=8).contains(&params.steps.len()));
    for s in &params.steps {
        let rest = s.strip_prefix("page:").or(s.strip_prefix("event:"));
        assert!(rest.is_some_and(|r| !r.is_empty()), "step {s:?}");
    }
    for (name, value) in &params.filters {
        assert!(FILTERS.iter().any(|(f, _)| f == name));
        assert!(!value.is_empty() && value.len() <= 1024);
    }
    // The canonical form parses back to the same parameters.
    let mut again: BTreeMap<String, String> = params
        .filters
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    again.insert("from".into(), params.from.format("%Y-%m-%d").to_string());
    again.insert("to".into(), params.to.format("%Y-%m-%d").to_string());
    again.insert("limit".into(), params.limit.to_string());
    let interval = match params.interval {
        Interval::Day => "day",
        Interval::Hour => "hour",
    };
    again.insert("interval".into(), interval.into());
    if let Some(p) = &params.prop {
        again.insert("prop".into(), p.clone());
    }
    if !params.steps.is_empty() {
        again.insert("steps".into(), params.steps.join(","));
    }
    assert_eq!(ReportParams::parse(&again, today).as_ref(), Ok(&params));
});
