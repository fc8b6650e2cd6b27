//! The pseudonymised event and its Arrow form: the only shapes the WAL and the lake accept.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Int64Builder, ListBuilder, MapBuilder, MapFieldNames, RecordBatch,
    StringBuilder, TimestampMillisecondBuilder,
};
use arrow::error::ArrowError;
use tacet_model::Kind;
use tacet_model::schema::{TS_TZ, file_schema};

use crate::codec::View;

/// An event after the privacy step: no raw IP, user id, user agent or full URL is left in it.
///
/// Fields are public to read; only this crate can construct one (`#[non_exhaustive]`), so anything that
/// holds an `Event` holds pseudonymised data.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Event {
    pub kind: Kind,
    pub ts_millis: i64,
    /// `None` for anonymised events.
    pub visitor_id: Option<i64>,
    pub user_pseudonym: Option<String>,
    pub browser: String,
    pub browser_version: String,
    pub os: String,
    pub os_version: String,
    pub device: &'static str,
    pub is_bot: bool,
    pub country: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
    pub ip_prefix: Option<String>,
    pub url_host: String,
    pub url_path: String,
    pub url_query: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub referrer_host: Option<String>,
    pub referrer_class: &'static str,
    pub referrer_source: Option<String>,
    pub name: Option<String>,
    pub props: Vec<(String, String)>,
    pub error_type: Option<String>,
    pub message: Option<String>,
    pub stack: Vec<String>,
    pub release: Option<String>,
    pub fingerprint: Option<String>,
    /// Why identifiers were left out: `dnt`, `gpc` or `consent`.
    pub anonymised: Option<&'static str>,
    /// The order this node received it in (`tacet_model::schema::arrival`), set by
    /// [`Event::set_arrival`] when the log has numbered its request; not part of the WAL form.
    pub arrival: Option<i64>,
}

impl Event {
    /// Records that this is the `index`th event of log record `seq`. Only for events with a visitor id: the
    /// order exists to sort a visitor's events, and on an anonymised event it would say which other
    /// anonymised events came in the same request, linking what anonymisation keeps apart.
    pub fn set_arrival(&mut self, seq: u64, index: usize) {
        self.arrival = self
            .visitor_id
            .is_some()
            .then(|| tacet_model::schema::arrival(seq, index));
    }
}

/// A record batch of pseudonymised events in the lake's file schema. Only [`EventBatch::from_packed`]
/// (and [`EventBatch::from_events`] through it) builds one.
#[derive(Debug, Clone)]
pub struct EventBatch(RecordBatch);

impl EventBatch {
    /// Builds the Arrow form of `events`, in the order given (through [`crate::Packed`], the one path from
    /// events to columns).
    pub fn from_events<'a>(
        events: impl ExactSizeIterator<Item = &'a Event>,
    ) -> Result<Self, ArrowError> {
        Self::from_packed(&crate::Packed::from_events(events))
    }

    /// Builds the Arrow form of `n` encoded events, with their arrivals.
    pub(crate) fn from_views<'a>(
        n: usize,
        events: impl Iterator<Item = (View<'a>, Option<i64>)>,
    ) -> Result<Self, ArrowError> {
        let mut ts = TimestampMillisecondBuilder::with_capacity(n).with_timezone(TS_TZ);
        let mut visitor = Int64Builder::with_capacity(n);
        let mut is_bot = BooleanBuilder::with_capacity(n);
        let mut arrival = Int64Builder::with_capacity(n);
        let mut strings: Vec<StringBuilder> = (0..STRING_COLUMNS)
            .map(|_| StringBuilder::with_capacity(n, n * 8))
            .collect();
        let mut props = MapBuilder::new(
            Some(MapFieldNames {
                entry: "entries".into(),
                key: "keys".into(),
                value: "values".into(),
            }),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut stack = ListBuilder::new(StringBuilder::new());
        for (e, e_arrival) in events {
            ts.append_value(e.ts_millis);
            visitor.append_option(e.visitor_id);
            is_bot.append_value(e.is_bot);
            arrival.append_option(e_arrival);
            let [browser, browser_version, os, os_version, url_host, url_path] = e.strings;
            let [
                user_pseudonym,
                country,
                region,
                city,
                ip_prefix,
                url_query,
                utm_source,
                utm_medium,
                utm_campaign,
                utm_term,
                utm_content,
                referrer_host,
                referrer_source,
                name,
                error_type,
                message,
                release,
                fingerprint,
            ] = e.options;
            let cols: [Option<&str>; STRING_COLUMNS] = [
                user_pseudonym,
                Some(browser),
                Some(browser_version),
                Some(os),
                Some(os_version),
                Some(e.device),
                country,
                region,
                city,
                ip_prefix,
                Some(url_host),
                Some(url_path),
                url_query,
                utm_source,
                utm_medium,
                utm_campaign,
                utm_term,
                utm_content,
                referrer_host,
                Some(e.referrer_class),
                referrer_source,
                name,
                error_type,
                message,
                release,
                fingerprint,
                e.anonymised,
            ];
            for (b, v) in strings.iter_mut().zip(cols) {
                b.append_option(v);
            }
            if e.props.count == 0 {
                props.append(false)?;
            } else {
                let mut kv = e.props;
                while let (Some(k), Some(v)) = (kv.next(), kv.next()) {
                    props.keys().append_value(k);
                    props.values().append_value(v);
                }
                props.append(true)?;
            }
            if e.stack.count == 0 {
                stack.append_null();
            } else {
                for f in e.stack {
                    stack.values().append_value(f);
                }
                stack.append(true);
            }
        }
        let mut strings = strings
            .into_iter()
            .map(|mut b| Arc::new(b.finish()) as ArrayRef);
        let schema = file_schema();
        let (mut ts, mut visitor, mut is_bot, mut props, mut stack, mut arrival) = (
            Some(Arc::new(ts.finish()) as ArrayRef),
            Some(Arc::new(visitor.finish()) as ArrayRef),
            Some(Arc::new(is_bot.finish()) as ArrayRef),
            Some(Arc::new(props.finish()) as ArrayRef),
            Some(Arc::new(stack.finish()) as ArrayRef),
            Some(Arc::new(arrival.finish()) as ArrayRef),
        );
        // Strings come in the schema's order of Utf8 columns (STRING_NAMES, checked by a test).
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| {
                let special = match f.name().as_str() {
                    "ts" => ts.take(),
                    "visitor_id" => visitor.take(),
                    "is_bot" => is_bot.take(),
                    "props" => props.take(),
                    "stack" => stack.take(),
                    "arrival" => arrival.take(),
                    _ => None,
                };
                special.unwrap_or_else(|| strings.next().expect("one builder per string column"))
            })
            .collect();
        RecordBatch::try_new(schema, columns).map(Self)
    }

    pub fn record_batch(&self) -> &RecordBatch {
        &self.0
    }

    pub fn num_rows(&self) -> usize {
        self.0.num_rows()
    }
}

/// The Utf8 columns of the file schema, in order; `cols` in `from_views` lists their values.
const STRING_NAMES: [&str; 27] = [
    "user_pseudonym",
    "browser",
    "browser_version",
    "os",
    "os_version",
    "device",
    "country",
    "region",
    "city",
    "ip_prefix",
    "url_host",
    "url_path",
    "url_query",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "referrer_host",
    "referrer_class",
    "referrer_source",
    "name",
    "error_type",
    "message",
    "release",
    "fingerprint",
    "anonymised",
];
const STRING_COLUMNS: usize = STRING_NAMES.len();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TenantPolicy;
    use crate::testing::event;

    #[test]
    fn string_columns_are_listed_in_schema_order() {
        let schema = file_schema();
        let names: Vec<&str> = schema
            .fields()
            .iter()
            .filter(|f| f.data_type() == &arrow::datatypes::DataType::Utf8)
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, STRING_NAMES);
    }

    #[test]
    fn batch_matches_the_file_schema() {
        let policy = TenantPolicy::default();
        let events = [
            event(
                serde_json::json!({"kind": "pageview", "url": "https://a.example/x?utm_source=n", "user_id": "u1"}),
                &policy,
                "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
            ),
            event(
                serde_json::json!({"kind": "event", "name": "signup", "url": "https://a.example/", "props": {"plan": "pro"}}),
                &policy,
                "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
            ),
            event(
                serde_json::json!({"kind": "crash", "url": "https://a.example/", "error_type": "E",
                "message": "bad mail bob@example.com", "stack": ["a", "b"]}),
                &policy,
                "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
            ),
        ];
        let batch = EventBatch::from_events(events.iter()).unwrap();
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(batch.record_batch().schema(), file_schema());
        assert_eq!(events[2].message.as_deref(), Some("bad mail [email]"));
        assert_eq!(events[0].utm_source.as_deref(), Some("n"));
        assert!(events[0].user_pseudonym.is_some() && events[1].user_pseudonym.is_none());
    }

    #[test]
    fn known_values_are_replaced_in_every_free_text_field() {
        let policy: TenantPolicy =
            toml::from_str("identifiers = [\"customer_no\"]\nscrub_opt_in = [\"phone\"]").unwrap();
        let e = event(
            serde_json::json!({"kind": "crash", "user_id": "canary-user-7f3a9",
                "url": "https://a.example/u/canary-user-7f3a9/cart?ref=078-05-1120",
                "error_type": "CartError",
                "message": "cart failed for user canary-user-7f3a9 from 203.0.113.5, customer C-99817, ssn 078-05-1120, call +1 415 555 0123",
                "stack": ["at load (/u/CANARY-USER-7F3A9/app.js:1:2)"],
                "release": "2.0.0 078-05-1120",
                "props": {"customer_no": "C-99817", "note": "for canary-user-7f3a9 or C-99817"}}),
            &policy,
            "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
        );
        assert_eq!(
            e.message.as_deref(),
            Some(
                "cart failed for user [user] from [ip], customer [identifier], ssn [ssn], call [phone]"
            )
        );
        assert_eq!(e.stack, ["at load (/u/[user]/app.js:1:2)"]);
        assert_eq!(e.url_path, "/u/[user]/cart");
        assert_eq!(e.release.as_deref(), Some("2.0.0 [ssn]"));
        // The identifier property itself is never stored; its value is gone from the others.
        assert_eq!(
            e.props,
            [("note".to_owned(), "for [user] or [identifier]".to_owned())]
        );
        assert!(e.user_pseudonym.is_some());
    }
}
