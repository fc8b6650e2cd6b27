//! The Arrow form of pseudonymised events, built from their binary form (codec.rs views).

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Int64Builder, ListArray, MapArray,
    RecordBatch, StringArray, StructArray, TimestampMillisecondBuilder,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use tacet_model::schema::{TS_TZ, file_schema};

use crate::codec::{OPTION_FIELDS, STRING_FIELDS, View};
use crate::{Event, Packed};

/// A record batch of pseudonymised events in the lake's file schema. Only [`EventBatch::from_packed`]
/// (and [`EventBatch::from_events`] through it) builds one.
#[derive(Debug, Clone)]
pub struct EventBatch(RecordBatch);

impl EventBatch {
    /// Builds the Arrow form of `events`, in the order given (through [`Packed`], the one path from events
    /// to columns).
    pub fn from_events<'a>(
        events: impl ExactSizeIterator<Item = &'a Event>,
    ) -> Result<Self, ArrowError> {
        Self::from_packed(&Packed::from_events(events))
    }

    /// Builds the Arrow form of `events`, in their row order.
    pub fn from_packed(events: &Packed) -> Result<Self, ArrowError> {
        Self::from_views(events.len(), events.views())
    }

    /// Builds the Arrow form of `n` encoded events, with their arrivals. Strings are gathered as bytes
    /// and each column's UTF-8 is checked once, as a whole (the bytes were encoded from strings or
    /// checked when read from the log; checking every string again cost more than gathering them).
    pub(crate) fn from_views<'a>(
        n: usize,
        events: impl Iterator<Item = (View<'a>, Option<i64>)>,
    ) -> Result<Self, ArrowError> {
        let mut ts = TimestampMillisecondBuilder::with_capacity(n).with_timezone(TS_TZ);
        let mut visitor = Int64Builder::with_capacity(n);
        let mut is_bot = BooleanBuilder::with_capacity(n);
        let mut arrival = Int64Builder::with_capacity(n);
        let mut strings: Vec<BinaryBuilder> = (0..STRING_COLUMNS)
            .map(|_| BinaryBuilder::with_capacity(n, n * 8))
            .collect();
        let mut props = Nested::new(n);
        let mut prop_values = BinaryBuilder::new();
        let mut stack = Nested::new(n);
        let sources = STRING_NAMES.map(Source::of);
        for (e, e_arrival) in events {
            ts.append_value(e.ts_millis);
            visitor.append_option(e.visitor_id);
            is_bot.append_value(e.is_bot);
            arrival.append_option(e_arrival);
            for (b, source) in strings.iter_mut().zip(&sources) {
                b.append_option(match *source {
                    Source::String(i) => Some(e.strings[i]),
                    Source::Option(i) => e.options[i],
                    Source::Device => Some(e.device.as_bytes()),
                    Source::ReferrerClass => Some(e.referrer_class.as_bytes()),
                    Source::Anonymised => e.anonymised.map(str::as_bytes),
                });
            }
            let mut kv = e.props;
            while let (Some(k), Some(v)) = (kv.next(), kv.next()) {
                props.items.append_value(k);
                prop_values.append_value(v);
            }
            props.end_row(e.props.count > 0);
            for f in e.stack {
                stack.items.append_value(f);
            }
            stack.end_row(e.stack.count > 0);
        }
        let text = |mut b: BinaryBuilder| StringArray::try_from_binary(b.finish());
        let props = {
            let entries = tacet_model::schema::props_entries();
            let DataType::Struct(fields) = entries.data_type() else {
                unreachable!("a map's entries are a struct")
            };
            let (offsets, nulls, keys) = props.finish();
            let kv = StructArray::try_new(
                fields.clone(),
                vec![Arc::new(text(keys)?), Arc::new(text(prop_values)?)],
                None,
            )?;
            MapArray::try_new(entries, offsets, kv, nulls, false)?
        };
        let stack = {
            let (offsets, nulls, frames) = stack.finish();
            ListArray::try_new(
                tacet_model::schema::stack_item(),
                offsets,
                Arc::new(text(frames)?),
                nulls,
            )?
        };
        let mut strings = strings
            .into_iter()
            .map(|b| text(b).map(|a| Arc::new(a) as ArrayRef))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let schema = file_schema();
        let (mut ts, mut visitor, mut is_bot, mut props, mut stack, mut arrival) = (
            Some(Arc::new(ts.finish()) as ArrayRef),
            Some(Arc::new(visitor.finish()) as ArrayRef),
            Some(Arc::new(is_bot.finish()) as ArrayRef),
            Some(Arc::new(props) as ArrayRef),
            Some(Arc::new(stack) as ArrayRef),
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

/// Where a Utf8 column's value is in a [`View`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    String(usize),
    Option(usize),
    Device,
    ReferrerClass,
    Anonymised,
}

impl Source {
    fn of(column: &str) -> Source {
        let place = |names: &[&str]| names.iter().position(|n| *n == column);
        match column {
            "device" => Source::Device,
            "referrer_class" => Source::ReferrerClass,
            "anonymised" => Source::Anonymised,
            _ => place(&STRING_FIELDS)
                .map(Source::String)
                .or_else(|| place(&OPTION_FIELDS).map(Source::Option))
                .expect("every Utf8 column is a field of the binary form"),
        }
    }
}

/// A list column's rows as they are gathered: each row's end in `items`, and whether it is there (an
/// event without properties or frames has a null, not an empty list).
struct Nested {
    items: BinaryBuilder,
    ends: Vec<i32>,
    present: Vec<bool>,
}

impl Nested {
    fn new(rows: usize) -> Self {
        let mut ends = Vec::with_capacity(rows + 1);
        ends.push(0);
        Self {
            items: BinaryBuilder::new(),
            ends,
            present: Vec::with_capacity(rows),
        }
    }

    fn end_row(&mut self, present: bool) {
        self.ends.push(self.items.len() as i32);
        self.present.push(present);
    }

    fn finish(self) -> (OffsetBuffer<i32>, Option<NullBuffer>, BinaryBuilder) {
        let nulls = Some(NullBuffer::from(self.present)).filter(|n| n.null_count() > 0);
        (OffsetBuffer::new(self.ends.into()), nulls, self.items)
    }
}

/// The Utf8 columns of the file schema, in order; `Source::of` says where each one's value is.
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
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, TimestampMillisecondType};

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

    /// Each Utf8 column's value, read off the event by name (written apart from `Source::of`, which it
    /// checks).
    fn field<'a>(e: &'a Event, column: &str) -> Option<&'a str> {
        let o = |v: &'a Option<String>| v.as_deref();
        match column {
            "user_pseudonym" => o(&e.user_pseudonym),
            "browser" => Some(&e.browser),
            "browser_version" => Some(&e.browser_version),
            "os" => Some(&e.os),
            "os_version" => Some(&e.os_version),
            "device" => Some(e.device),
            "country" => o(&e.country),
            "region" => o(&e.region),
            "city" => o(&e.city),
            "ip_prefix" => o(&e.ip_prefix),
            "url_host" => Some(&e.url_host),
            "url_path" => Some(&e.url_path),
            "url_query" => o(&e.url_query),
            "utm_source" => o(&e.utm_source),
            "utm_medium" => o(&e.utm_medium),
            "utm_campaign" => o(&e.utm_campaign),
            "utm_term" => o(&e.utm_term),
            "utm_content" => o(&e.utm_content),
            "referrer_host" => o(&e.referrer_host),
            "referrer_class" => Some(e.referrer_class),
            "referrer_source" => o(&e.referrer_source),
            "name" => o(&e.name),
            "error_type" => o(&e.error_type),
            "message" => o(&e.message),
            "release" => o(&e.release),
            "fingerprint" => o(&e.fingerprint),
            "anonymised" => e.anonymised,
            other => panic!("no Utf8 column {other}"),
        }
    }

    #[test]
    fn every_column_holds_its_own_field_in_row_order() {
        let ua = "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X)";
        let mut crash = event(
            serde_json::json!({"kind": "crash", "user_id": "u", "ts": 1_764_399_002_000_i64,
                "url": "https://a.example/p?utm_source=s&utm_medium=m&utm_campaign=c&utm_term=t&utm_content=x&page=2",
                "referrer": "https://www.google.com/", "error_type": "E", "message": "m", "release": "r",
                "stack": ["f1", "f2"], "props": {"k": "v"}}),
            &TenantPolicy {
                ip: crate::IpMode::Truncate,
                query_params: vec!["page".into()],
                ..TenantPolicy::default()
            },
            ua,
        );
        crash.set_arrival(3, 1);
        let anonymous = event(
            serde_json::json!({"kind": "event", "name": "signup", "dnt": true, "ts": 1_764_399_003_000_i64,
                "url": "https://a.example/"}),
            &TenantPolicy::default(),
            ua,
        );
        let events = [crate::packed::tests::three(), vec![crash, anonymous]].concat();
        let mut packed = Packed::from_events(&events);
        packed.sort();
        let sorted = packed.events();
        // By time, then arrival: at equal `ts`, record 3's event comes before record 9's.
        let kinds: Vec<&str> = sorted.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["pageview", "pageview", "crash", "pageview", "event"]
        );
        let batch = EventBatch::from_packed(&packed).unwrap();
        let rb = batch.record_batch();
        let mut empty = Vec::new();
        for name in STRING_NAMES {
            let col = rb.column_by_name(name).unwrap().as_string::<i32>();
            let got: Vec<Option<&str>> = col.iter().collect();
            let want: Vec<Option<&str>> = sorted.iter().map(|e| field(e, name)).collect();
            assert_eq!(got, want, "column {name}");
            if want.iter().all(Option::is_none) {
                empty.push(name);
            }
        }
        // Only geography is empty in every row (no GeoIP database here): every other column was checked
        // against a value.
        assert_eq!(empty, ["country", "region", "city"]);
        let ts = rb
            .column_by_name("ts")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        let want: Vec<i64> = sorted.iter().map(|e| e.ts_millis).collect();
        assert_eq!(ts.values().to_vec(), want);
        let arrival = rb
            .column_by_name("arrival")
            .unwrap()
            .as_primitive::<Int64Type>();
        let want: Vec<Option<i64>> = sorted.iter().map(|e| e.arrival).collect();
        assert_eq!(arrival.iter().collect::<Vec<_>>(), want);
        assert_eq!(want[4], None, "an anonymised event has no arrival");
        let stack = rb.column_by_name("stack").unwrap().as_list::<i32>();
        assert!(stack.is_null(0) && !stack.is_null(2));
        let frames = stack.value(2);
        let frames: Vec<&str> = frames.as_string::<i32>().iter().flatten().collect();
        assert_eq!(frames, ["f1", "f2"]);
        let props = rb.column_by_name("props").unwrap().as_map();
        assert!(!props.is_null(0) && props.is_null(1) && !props.is_null(2));
        let entries = props.value(2);
        assert_eq!(
            (
                entries.column(0).as_string::<i32>().value(0),
                entries.column(1).as_string::<i32>().value(0)
            ),
            ("k", "v")
        );
    }
}
