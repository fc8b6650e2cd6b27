//! The event a client sends, and its validation.
//!
//! The wire format is described by `schemas/event.schema.json`; [`parse_event`] enforces the same rules and
//! names the field at fault in every error. Unknown fields are refused rather than ignored, so a misspelt
//! field (`userId` for `user_id`) is reported instead of silently losing data.

use std::fmt;

use chrono::DateTime;
use serde_json::{Map, Value};

mod typed;

pub use typed::{parse_event_json, parse_event_str};

/// Longest accepted `url` or `referrer`, in bytes.
pub const MAX_URL_BYTES: usize = 4096;
/// Longest accepted `user_id`, in bytes.
pub const MAX_USER_ID_BYTES: usize = 256;
/// Longest accepted custom event `name`, in bytes.
pub const MAX_NAME_BYTES: usize = 200;
/// Most properties on one event.
pub const MAX_PROPS: usize = 64;
/// Longest property key, in bytes.
pub const MAX_PROP_KEY_BYTES: usize = 64;
/// Longest property value, in bytes (numbers and booleans are stored as their JSON text).
pub const MAX_PROP_VALUE_BYTES: usize = 1024;
/// Longest `error_type` or `release`, in bytes.
pub const MAX_SHORT_TEXT_BYTES: usize = 256;
/// Crash messages longer than this are cut (at a character boundary), not refused: losing a crash is worse.
pub const MAX_MESSAGE_BYTES: usize = 8192;
/// Stack frames beyond this many are cut.
pub const MAX_FRAMES: usize = 200;
/// Each stack frame is cut to this many bytes.
pub const MAX_FRAME_BYTES: usize = 1024;
/// Earliest accepted client timestamp: 2000-01-01T00:00:00Z.
pub const MIN_TS_MILLIS: i64 = 946_684_800_000;
/// How far in the future a client timestamp may be (clock skew), in milliseconds: one day.
pub const MAX_FUTURE_SKEW_MILLIS: i64 = 86_400_000;

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A page was viewed.
    Pageview,
    /// A custom usage event with a name and properties.
    Event,
    /// An error or crash, with type, message and stack.
    Crash,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Pageview, Kind::Event, Kind::Crash];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pageview => "pageview",
            Kind::Event => "event",
            Kind::Crash => "crash",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated event as the client sent it. Holds raw identifiers: never write it anywhere.
#[derive(Clone, PartialEq)]
pub struct RawEvent {
    pub kind: Kind,
    /// Milliseconds since the epoch, UTC: the client's `ts`, or the time of receipt.
    pub ts_millis: i64,
    pub url: String,
    pub referrer: Option<String>,
    pub user_id: Option<String>,
    pub name: Option<String>,
    /// Flat properties, values as text, sorted by key.
    pub props: Vec<(String, String)>,
    pub error_type: Option<String>,
    pub message: Option<String>,
    pub stack: Vec<String>,
    pub release: Option<String>,
    /// `consent: true`: the visitor agreed to identified tracking (tenants may require it for `user_id`).
    pub consent: bool,
    /// `dnt: true`: the page saw `navigator.doNotTrack == "1"`.
    pub dnt: bool,
    /// `gpc: true`: the page saw `navigator.globalPrivacyControl`.
    pub gpc: bool,
}

// Debug must not print raw identifiers: the struct may end up in a log line by mistake.
impl fmt::Debug for RawEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawEvent")
            .field("kind", &self.kind)
            .field("ts_millis", &self.ts_millis)
            .field("props", &self.props.len())
            .field("frames", &self.stack.len())
            .finish_non_exhaustive()
    }
}

/// Why one event was refused: the field at fault and the problem, in words a developer can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

const KNOWN_FIELDS: &[&str] = &[
    "kind",
    "ts",
    "url",
    "referrer",
    "user_id",
    "name",
    "props",
    "error_type",
    "message",
    "stack",
    "release",
    "consent",
    "dnt",
    "gpc",
];

/// Validates one JSON value as an event. `now_millis` fills a missing `ts` and bounds a given one.
pub fn parse_event(value: Value, now_millis: i64) -> Result<RawEvent, FieldError> {
    let Value::Object(mut obj) = value else {
        return Err(FieldError::new(
            "(event)",
            format!("expected a JSON object, got {}", type_name(&value)),
        ));
    };
    if let Some(unknown) = obj.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
        return Err(FieldError::new(
            unknown.clone(),
            format!(
                "unknown field; accepted fields are {}",
                KNOWN_FIELDS.join(", ")
            ),
        ));
    }

    let kind_text = required_string(&mut obj, "kind", 32)?;
    let kind = Kind::parse(&kind_text).ok_or_else(|| {
        FieldError::new(
            "kind",
            format!("unknown kind {kind_text:?}; expected \"pageview\", \"event\" or \"crash\""),
        )
    })?;
    let ts_millis = match obj.remove("ts") {
        None | Some(Value::Null) => now_millis,
        Some(v) => parse_ts(&v, now_millis)?,
    };
    let url = required_string(&mut obj, "url", MAX_URL_BYTES)?;
    if url.trim().is_empty() {
        return Err(FieldError::new("url", "must not be empty"));
    }
    let referrer = optional_string(&mut obj, "referrer", MAX_URL_BYTES)?.filter(|r| !r.is_empty());
    let user_id = optional_string(&mut obj, "user_id", MAX_USER_ID_BYTES)?;
    if user_id.as_deref().is_some_and(str::is_empty) {
        return Err(FieldError::new(
            "user_id",
            "must not be empty; leave it out for anonymous events",
        ));
    }
    let name = optional_string(&mut obj, "name", MAX_NAME_BYTES)?;
    let props = parse_props(obj.remove("props"))?;
    let error_type = optional_string(&mut obj, "error_type", MAX_SHORT_TEXT_BYTES)?;
    let message = optional_text(&mut obj, "message", MAX_MESSAGE_BYTES)?;
    let stack = parse_stack(obj.remove("stack"))?;
    let release = optional_string(&mut obj, "release", MAX_SHORT_TEXT_BYTES)?;
    let consent = optional_bool(&mut obj, "consent")?;
    let dnt = optional_bool(&mut obj, "dnt")?;
    let gpc = optional_bool(&mut obj, "gpc")?;

    let event = RawEvent {
        kind,
        ts_millis,
        url,
        referrer,
        user_id,
        name,
        props,
        error_type,
        message,
        stack,
        release,
        consent,
        dnt,
        gpc,
    };
    check_kind_fields(&event)?;
    Ok(event)
}

/// The rules between fields: which kinds take a name, and what a crash needs.
fn check_kind_fields(e: &RawEvent) -> Result<(), FieldError> {
    match e.kind {
        Kind::Event if e.name.as_deref().is_none_or(|n| n.trim().is_empty()) => {
            return Err(FieldError::new(
                "name",
                "required for kind \"event\" (a non-empty string)",
            ));
        }
        Kind::Pageview | Kind::Crash if e.name.is_some() => {
            return Err(FieldError::new("name", "only allowed for kind \"event\""));
        }
        _ => {}
    }
    if e.kind == Kind::Crash {
        if e.error_type.is_none() && e.message.is_none() {
            return Err(FieldError::new(
                "error_type",
                "a crash needs an error_type or a message",
            ));
        }
    } else {
        for (field, given) in [
            ("error_type", e.error_type.is_some()),
            ("message", e.message.is_some()),
            ("stack", !e.stack.is_empty()),
        ] {
            if given {
                return Err(FieldError::new(field, "only allowed for kind \"crash\""));
            }
        }
    }
    Ok(())
}

fn optional_bool(obj: &mut Map<String, Value>, field: &str) -> Result<bool, FieldError> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(other) => Err(FieldError::new(
            field,
            format!("expected true or false, got {}", type_name(&other)),
        )),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn required_string(
    obj: &mut Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<String, FieldError> {
    optional_string(obj, field, max)?.ok_or_else(|| FieldError::new(field, "required"))
}

fn optional_string(
    obj: &mut Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<Option<String>, FieldError> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s)),
        Some(Value::String(s)) => Err(FieldError::new(
            field,
            format!("too long: {} bytes, at most {max}", s.len()),
        )),
        Some(other) => Err(FieldError::new(
            field,
            format!("expected a string, got {}", type_name(&other)),
        )),
    }
}

/// Like [`optional_string`], but long text is cut instead of refused.
fn optional_text(
    obj: &mut Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<Option<String>, FieldError> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(truncate(s, max))),
        Some(other) => Err(FieldError::new(
            field,
            format!("expected a string, got {}", type_name(&other)),
        )),
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

fn parse_ts(v: &Value, now_millis: i64) -> Result<i64, FieldError> {
    let millis = match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| {
            FieldError::new(
                "ts",
                "epoch timestamps must be whole milliseconds since 1970-01-01T00:00:00Z",
            )
        })?,
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| {
                FieldError::new(
                    "ts",
                    format!("not an RFC 3339 timestamp ({e}); e.g. \"2026-11-29T10:15:00Z\""),
                )
            })?
            .timestamp_millis(),
        other => {
            return Err(FieldError::new(
                "ts",
                format!(
                    "expected an RFC 3339 string or epoch milliseconds, got {}",
                    type_name(other)
                ),
            ));
        }
    };
    if millis < MIN_TS_MILLIS {
        return Err(FieldError::new(
            "ts",
            "before 2000-01-01; epoch timestamps are in milliseconds, not seconds",
        ));
    }
    if millis > now_millis.saturating_add(MAX_FUTURE_SKEW_MILLIS) {
        return Err(FieldError::new(
            "ts",
            "more than a day in the future; check the client's clock",
        ));
    }
    Ok(millis)
}

fn parse_props(v: Option<Value>) -> Result<Vec<(String, String)>, FieldError> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(obj)) => obj,
        Some(other) => {
            return Err(FieldError::new(
                "props",
                format!(
                    "expected an object of string, number or boolean values, got {}",
                    type_name(&other)
                ),
            ));
        }
    };
    if obj.len() > MAX_PROPS {
        return Err(FieldError::new(
            "props",
            format!("{} properties, at most {MAX_PROPS}", obj.len()),
        ));
    }
    let mut props = Vec::with_capacity(obj.len());
    for (key, value) in obj {
        if key.is_empty() || key.len() > MAX_PROP_KEY_BYTES {
            return Err(FieldError::new(
                "props",
                format!("property keys must be 1 to {MAX_PROP_KEY_BYTES} bytes"),
            ));
        }
        let text = match value {
            Value::Null => continue,
            Value::String(s) => s,
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            other => {
                return Err(FieldError::new(
                    format!("props.{key}"),
                    format!(
                        "expected a string, number or boolean, got {}; properties are flat",
                        type_name(&other)
                    ),
                ));
            }
        };
        if text.len() > MAX_PROP_VALUE_BYTES {
            return Err(FieldError::new(
                format!("props.{key}"),
                format!(
                    "too long: {} bytes, at most {MAX_PROP_VALUE_BYTES}",
                    text.len()
                ),
            ));
        }
        props.push((key, text));
    }
    Ok(props)
}

fn parse_stack(v: Option<Value>) -> Result<Vec<String>, FieldError> {
    let frames: Vec<String> = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => s
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(items)) => {
            let mut frames = Vec::with_capacity(items.len().min(MAX_FRAMES));
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Value::String(s) => frames.push(s),
                    other => {
                        return Err(FieldError::new(
                            format!("stack[{i}]"),
                            format!("expected a string, got {}", type_name(&other)),
                        ));
                    }
                }
            }
            frames
        }
        Some(other) => {
            return Err(FieldError::new(
                "stack",
                format!(
                    "expected a string (one frame a line) or an array of strings, got {}",
                    type_name(&other)
                ),
            ));
        }
    };
    Ok(frames
        .into_iter()
        .take(MAX_FRAMES)
        .map(|f| truncate(f, MAX_FRAME_BYTES))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_764_400_000_000; // 2025-11-29

    fn err(v: Value) -> FieldError {
        parse_event(v, NOW).unwrap_err()
    }

    #[test]
    fn minimal_pageview_takes_receipt_time() {
        let e = parse_event(
            json!({"kind": "pageview", "url": "https://a.example/"}),
            NOW,
        )
        .unwrap();
        assert_eq!(e.kind, Kind::Pageview);
        assert_eq!(e.ts_millis, NOW);
    }

    #[test]
    fn timestamps_in_both_forms() {
        let a = parse_event(
            json!({"kind": "pageview", "url": "u", "ts": "2025-11-28T10:00:00+01:00"}),
            NOW,
        )
        .unwrap();
        let b = parse_event(
            json!({"kind": "pageview", "url": "u", "ts": 1_764_320_400_000_i64}),
            NOW,
        )
        .unwrap();
        assert_eq!(a.ts_millis, 1_764_320_400_000);
        assert_eq!(a.ts_millis, b.ts_millis);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err(json!(5)).field, "(event)");
        assert_eq!(err(json!({"url": "u"})).to_string(), "kind: required");
        assert!(
            err(json!({"kind": "click", "url": "u"}))
                .to_string()
                .contains("unknown kind \"click\"")
        );
        assert_eq!(
            err(json!({"kind": "pageview", "url": 7})).to_string(),
            "url: expected a string, got a number"
        );
        assert_eq!(
            err(json!({"kind": "pageview", "url": "u", "userId": "x"})).field,
            "userId"
        );
        assert!(
            err(json!({"kind": "pageview", "url": "u", "ts": 1_700_000_000}))
                .problem
                .contains("milliseconds")
        );
        assert_eq!(
            err(json!({"kind": "pageview", "url": "u", "ts": "yesterday"})).field,
            "ts"
        );
        assert_eq!(err(json!({"kind": "event", "url": "u"})).field, "name");
        assert_eq!(
            err(json!({"kind": "pageview", "url": "u", "message": "m"})).field,
            "message"
        );
        assert_eq!(
            err(json!({"kind": "crash", "url": "u"})).field,
            "error_type"
        );
        assert_eq!(
            err(json!({"kind": "event", "name": "n", "url": "u", "props": {"a": {"b": 1}}})).field,
            "props.a"
        );
        assert_eq!(
            err(json!({"kind": "pageview", "url": "u", "ts": NOW + 2 * MAX_FUTURE_SKEW_MILLIS}))
                .field,
            "ts"
        );
    }

    #[test]
    fn crash_stack_as_text_or_array_is_cut_not_refused() {
        let e = parse_event(
            json!({"kind": "crash", "url": "u", "error_type": "TypeError",
                   "message": "x".repeat(MAX_MESSAGE_BYTES + 10),
                   "stack": "at a (app.js:1:2)\n\n  at b (app.js:3:4)\n"}),
            NOW,
        )
        .unwrap();
        assert_eq!(e.stack, vec!["at a (app.js:1:2)", "at b (app.js:3:4)"]);
        assert_eq!(e.message.unwrap().len(), MAX_MESSAGE_BYTES);
        let frames: Vec<String> = (0..MAX_FRAMES + 5).map(|i| format!("f{i}")).collect();
        let e = parse_event(
            json!({"kind": "crash", "url": "u", "message": "m", "stack": frames}),
            NOW,
        )
        .unwrap();
        assert_eq!(e.stack.len(), MAX_FRAMES);
    }

    #[test]
    fn props_are_flattened_to_text() {
        let e = parse_event(
            json!({"kind": "event", "name": "signup", "url": "u",
                   "props": {"plan": "pro", "seats": 3, "trial": true, "gone": null}}),
            NOW,
        )
        .unwrap();
        assert_eq!(
            e.props,
            vec![
                ("plan".to_owned(), "pro".to_owned()),
                ("seats".to_owned(), "3".to_owned()),
                ("trial".to_owned(), "true".to_owned())
            ]
        );
    }

    /// `schemas/event.schema.json` documents the wire format; its fields and limits must match this code.
    #[test]
    fn json_schema_matches_the_validator() {
        let schema: Value =
            serde_json::from_str(include_str!("../../../schemas/event.schema.json")).unwrap();
        let props = schema["properties"].as_object().unwrap();
        let mut documented: Vec<&str> = props.keys().map(String::as_str).collect();
        let mut known = KNOWN_FIELDS.to_vec();
        documented.sort();
        known.sort();
        assert_eq!(documented, known);
        let kinds: Vec<&str> = props["kind"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(kinds, Kind::ALL.map(Kind::as_str));
        let max = |field: &str, key: &str| props[field][key].as_u64().unwrap() as usize;
        assert_eq!(max("url", "maxLength"), MAX_URL_BYTES);
        assert_eq!(max("referrer", "maxLength"), MAX_URL_BYTES);
        assert_eq!(max("user_id", "maxLength"), MAX_USER_ID_BYTES);
        assert_eq!(max("name", "maxLength"), MAX_NAME_BYTES);
        assert_eq!(max("error_type", "maxLength"), MAX_SHORT_TEXT_BYTES);
        assert_eq!(max("release", "maxLength"), MAX_SHORT_TEXT_BYTES);
        assert_eq!(max("props", "maxProperties"), MAX_PROPS);
        assert_eq!(
            props["ts"]["oneOf"][1]["minimum"].as_i64().unwrap(),
            MIN_TS_MILLIS
        );
        assert_eq!(schema["additionalProperties"], Value::Bool(false));
    }

    #[test]
    fn debug_hides_identifiers() {
        let e = parse_event(
            json!({"kind": "pageview", "url": "https://x/?email=a@b.c", "user_id": "alice@example.com"}),
            NOW,
        )
        .unwrap();
        let dbg = format!("{e:?}");
        assert!(!dbg.contains("alice") && !dbg.contains("a@b.c"), "{dbg}");
    }
}
