//! Events decoded straight from their JSON bytes into typed fields: no `serde_json::Value` tree, no
//! allocated map keys, one `String` for each text the event keeps.
//!
//! [`parse_event_json`] is what the ingestion endpoint calls. It is exact by construction: the typed
//! decoder only ever accepts an event, and anything it does not accept (a wrong type, an unknown or
//! repeated field, a value over a limit, a kind without its fields, not JSON at all) is decoded again by
//! the reference path, `serde_json::Value` and [`parse_event`](super::parse_event), which gives the same
//! field-named error as always. A test and the `event_decoder` fuzz target check that both paths agree on
//! every input.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use super::{
    FieldError, Kind, MAX_MESSAGE_BYTES, MAX_NAME_BYTES, MAX_PROP_KEY_BYTES, MAX_PROP_VALUE_BYTES,
    MAX_PROPS, MAX_SHORT_TEXT_BYTES, MAX_URL_BYTES, MAX_USER_ID_BYTES, RawEvent, check_kind_fields,
    parse_event, parse_stack, parse_ts, truncate,
};

/// Validates one event given as JSON bytes; `now_millis` fills a missing `ts` and bounds a given one.
/// Bytes that are not JSON are refused with the field `(line)` and the parser's words.
pub fn parse_event_json(json: &[u8], now_millis: i64) -> Result<RawEvent, FieldError> {
    decided(
        serde_json::from_slice(json),
        || serde_json::from_slice(json),
        now_millis,
    )
}

/// [`parse_event_json`] for text already known to be UTF-8 (a body checked as a whole): the same answer
/// for the same bytes, without checking each string's UTF-8 again.
pub fn parse_event_str(json: &str, now_millis: i64) -> Result<RawEvent, FieldError> {
    decided(
        serde_json::from_str(json),
        || serde_json::from_str(json),
        now_millis,
    )
}

/// The typed decoding's event, or else the reference path's answer on the same input (`reference` parses
/// it as a `Value`).
fn decided(
    wire: serde_json::Result<Wire>,
    reference: impl FnOnce() -> serde_json::Result<serde_json::Value>,
    now_millis: i64,
) -> Result<RawEvent, FieldError> {
    if let Some(event) = wire.ok().and_then(|wire| typed(wire, now_millis)) {
        return Ok(event);
    }
    match reference() {
        Ok(value) => parse_event(value, now_millis),
        Err(e) => Err(FieldError::new("(line)", format!("invalid JSON: {e}"))),
    }
}

/// The fast path: `None` whenever it is not certain the event is valid (the reference path decides then).
fn typed(wire: Wire, now_millis: i64) -> Option<RawEvent> {
    let ts_millis = match wire.ts {
        None | Some(serde_json::Value::Null) => now_millis,
        Some(v) => parse_ts(&v, now_millis).ok()?,
    };
    let within = |s: &Option<String>, max: usize| s.as_ref().is_none_or(|s| s.len() <= max);
    let url = wire.url?;
    if url.len() > MAX_URL_BYTES || url.trim().is_empty() {
        return None;
    }
    if !within(&wire.referrer, MAX_URL_BYTES)
        || !within(&wire.user_id, MAX_USER_ID_BYTES)
        || wire.user_id.as_deref().is_some_and(str::is_empty)
        || !within(&wire.name, MAX_NAME_BYTES)
        || !within(&wire.error_type, MAX_SHORT_TEXT_BYTES)
        || !within(&wire.release, MAX_SHORT_TEXT_BYTES)
    {
        return None;
    }
    let props = match wire.props {
        None => Vec::new(),
        // More than MAX_PROPS entries failed the decoding already.
        Some(Props(mut entries)) => {
            // As the reference path's map: sorted by key; a repeated key (which keeps the last) is left
            // to it.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            if entries.windows(2).any(|w| w[0].0 == w[1].0) {
                return None;
            }
            let mut props = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                if key.is_empty() || key.len() > MAX_PROP_KEY_BYTES {
                    return None;
                }
                match value {
                    None => {}
                    Some(text) if text.len() > MAX_PROP_VALUE_BYTES => return None,
                    Some(text) => props.push((key, text)),
                }
            }
            props
        }
    };
    let stack = match wire.stack {
        None => Vec::new(),
        Some(v) => parse_stack(Some(v)).ok()?,
    };
    let event = RawEvent {
        kind: wire.kind.into(),
        ts_millis,
        url,
        referrer: wire.referrer.filter(|r| !r.is_empty()),
        user_id: wire.user_id,
        name: wire.name,
        props,
        error_type: wire.error_type,
        message: wire.message.map(|m| truncate(m, MAX_MESSAGE_BYTES)),
        stack,
        release: wire.release,
        consent: wire.consent.unwrap_or(false),
        dnt: wire.dnt.unwrap_or(false),
        gpc: wire.gpc.unwrap_or(false),
    };
    check_kind_fields(&event).ok()?;
    Some(event)
}

/// The wire format as typed fields. `null` is the same as leaving a field out, as in the reference path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    kind: WireKind,
    #[serde(default)]
    ts: Option<serde_json::Value>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    referrer: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    props: Option<Props>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    message: Option<String>,
    /// Rare (crashes only) and of two shapes: the reference path's own decoding.
    #[serde(default)]
    stack: Option<serde_json::Value>,
    #[serde(default)]
    release: Option<String>,
    #[serde(default)]
    consent: Option<bool>,
    #[serde(default)]
    dnt: Option<bool>,
    #[serde(default)]
    gpc: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireKind {
    Pageview,
    Event,
    Crash,
}

impl From<WireKind> for Kind {
    fn from(k: WireKind) -> Kind {
        match k {
            WireKind::Pageview => Kind::Pageview,
            WireKind::Event => Kind::Event,
            WireKind::Crash => Kind::Crash,
        }
    }
}

/// `props` in the order sent: each value as the text the reference path keeps (numbers as
/// `serde_json::Number` prints them), `None` for `null`.
struct Props(Vec<(String, Option<String>)>);

impl<'de> Deserialize<'de> for Props {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Props;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of flat values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Props, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8).min(MAX_PROPS));
                while let Some(key) = map.next_key::<String>()? {
                    if entries.len() == MAX_PROPS {
                        return Err(de::Error::custom("too many properties"));
                    }
                    entries.push((key, map.next_value::<PropValue>()?.0));
                }
                Ok(Props(entries))
            }
        }
        d.deserialize_map(Entries)
    }
}

struct PropValue(Option<String>);

impl<'de> Deserialize<'de> for PropValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Flat;
        impl Visitor<'_> for Flat {
            type Value = PropValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PropValue, E> {
                Ok(PropValue(Some(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<PropValue, E> {
                Ok(PropValue(Some(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<PropValue, E> {
                Ok(PropValue(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PropValue, E> {
                Ok(PropValue(Some(serde_json::Number::from(v).to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PropValue, E> {
                Ok(PropValue(Some(serde_json::Number::from(v).to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<PropValue, E> {
                serde_json::Number::from_f64(v)
                    .map(|n| PropValue(Some(n.to_string())))
                    .ok_or_else(|| E::custom("not a finite number"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<PropValue, E> {
                Ok(PropValue(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<PropValue, E> {
                Ok(PropValue(None))
            }
        }
        d.deserialize_any(Flat)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    const NOW: i64 = 1_764_400_000_000;

    /// What the reference path answers for the same bytes.
    fn reference(json: &[u8]) -> Result<RawEvent, FieldError> {
        match serde_json::from_slice(json) {
            Ok(v) => parse_event(v, NOW),
            Err(e) => Err(FieldError::new("(line)", format!("invalid JSON: {e}"))),
        }
    }

    /// The fast path for bytes, and for checked text, give the reference answer.
    fn agree(json: &[u8]) {
        let fast = parse_event_json(json, NOW);
        assert_eq!(fast, reference(json), "{}", String::from_utf8_lossy(json));
        if let Ok(text) = std::str::from_utf8(json) {
            assert_eq!(parse_event_str(text, NOW), fast, "{text}");
        }
    }

    /// What `typed` makes of these bytes.
    fn typed_bytes(json: &[u8]) -> Option<RawEvent> {
        serde_json::from_slice(json)
            .ok()
            .and_then(|w| typed(w, NOW))
    }

    #[test]
    fn the_typed_path_takes_ordinary_events() {
        for v in [
            json!({"kind": "pageview", "url": "https://a.example/p?q=1", "referrer": "https://b.example/",
                   "user_id": "u-1", "props": {"b": "x", "a": 2, "c": true, "d": 1.5, "e": null, "f": -0.0, "g": 1e300},
                   "ts": "2025-11-28T10:00:00Z", "release": "r1", "consent": true, "dnt": false, "gpc": null}),
            json!({"kind": "event", "name": "signup", "url": "/x", "ts": NOW - 5}),
            json!({"kind": "crash", "url": "/x", "error_type": "TypeError", "message": "m".repeat(9000),
                   "stack": ["at a (b.js:1:2)", "at c (d.js:3:4)"]}),
            json!({"kind": "crash", "url": "/x", "message": "boom", "stack": "at a\n\n  at b  \n"}),
            json!({"kind": "pageview", "url": "https://a.example/\u{e9}\"\\", "referrer": ""}),
        ] {
            let bytes = serde_json::to_vec(&v).unwrap();
            assert!(typed_bytes(&bytes).is_some(), "{v}");
            agree(&bytes);
        }
    }

    #[test]
    fn everything_else_gets_the_reference_answer() {
        for text in [
            r#"{"kind": "pageview", "url": "/", "url": "/again"}"#,
            r#"{"kind": "pageview", "url": "/", "props": {"a": 1, "a": null}}"#,
            r#"{"kind": "pageview", "url": "/", "props": {"a": 1, "a": 2}}"#,
            r#"{"kind": "pageview", "url": "/", "props": {"": 1}}"#,
            r#"{"kind": "pageview", "url": "/", "props": {"a": [1]}}"#,
            r#"{"kind": "pageview", "url": "/", "props": []}"#,
            r#"{"kind": "pageview", "url": "/", "userId": "x"}"#,
            r#"{"kind": "Pageview", "url": "/"}"#,
            r#"{"kind": "pageview", "url": "  "}"#,
            r#"{"kind": "pageview", "url": 3}"#,
            r#"{"kind": "pageview"}"#,
            r#"{"url": "/"}"#,
            r#"{"kind": "pageview", "url": "/", "user_id": ""}"#,
            r#"{"kind": "pageview", "url": "/", "name": "x"}"#,
            r#"{"kind": "event", "url": "/", "name": " "}"#,
            r#"{"kind": "crash", "url": "/"}"#,
            r#"{"kind": "crash", "url": "/", "message": "m", "stack": [1]}"#,
            r#"{"kind": "pageview", "url": "/", "ts": 1.5e12}"#,
            r#"{"kind": "pageview", "url": "/", "ts": 12}"#,
            r#"{"kind": "pageview", "url": "/", "ts": "yesterday"}"#,
            r#"{"kind": "pageview", "url": "/", "dnt": "1"}"#,
            r#"[{"kind": "pageview", "url": "/"}]"#,
            r#"{"kind": "pageview", "url": "/"} x"#,
            r#"{"kind": "pageview", "url": "/"#,
            "\"pageview\"",
            "",
        ] {
            assert!(typed_bytes(text.as_bytes()).is_none(), "{text}");
            agree(text.as_bytes());
        }
        let long = json!({"kind": "pageview", "url": "/", "props": {"k": "v".repeat(MAX_PROP_VALUE_BYTES + 1)}});
        agree(&serde_json::to_vec(&long).unwrap());
        let many: serde_json::Map<String, Value> = (0..=MAX_PROPS)
            .map(|i| (format!("k{i}"), json!(i)))
            .collect();
        agree(
            &serde_json::to_vec(&json!({"kind": "pageview", "url": "/", "props": many})).unwrap(),
        );
    }

    fn field_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "[a-z/: .]{0,12}".prop_map(Value::String),
            Just(json!("https://a.example/")),
            Just(json!("2025-11-28T10:00:00Z")),
            Just(json!(["at a", "at b"])),
            Just(json!({"a": 1, "b": "x", "c": null})),
            Just(json!({"a": {"nested": 1}})),
        ]
    }

    proptest! {
        /// Objects made of the real field names (and a stray one), with values of every type: both
        /// paths give the same event or the same error.
        #[test]
        fn both_paths_agree(
            fields in proptest::collection::vec(
                (prop_oneof![
                    Just("kind"), Just("ts"), Just("url"), Just("referrer"), Just("user_id"),
                    Just("name"), Just("props"), Just("error_type"), Just("message"), Just("stack"),
                    Just("release"), Just("consent"), Just("dnt"), Just("gpc"), Just("other"),
                ], field_value()),
                0..8,
            ),
            kind in prop_oneof![Just("pageview"), Just("event"), Just("crash"), Just("other")],
            url in prop_oneof![Just(Some("https://a.example/x")), Just(None)],
        ) {
            let mut text = format!("{{\"kind\": {kind:?}");
            if let Some(url) = url {
                text.push_str(&format!(", \"url\": {url:?}"));
            }
            for (name, value) in &fields {
                text.push_str(&format!(", {name:?}: {value}"));
            }
            text.push('}');
            agree(text.as_bytes());
        }
    }
}
