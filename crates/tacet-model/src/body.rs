//! Request bodies → items (where each event's JSON is), one per event, with every size capped. No I/O:
//! the HTTP layer reads the (size-capped) body and calls [`decode_body`]; the `http_body` fuzz target
//! calls it too.
//!
//! Accepted: one JSON object, a JSON array of objects, or NDJSON (one object a line); as
//! `application/json`, `application/x-ndjson`, `application/jsonl`, `text/plain` (what
//! `navigator.sendBeacon` sends for a string) or no content type; optionally `Content-Encoding: gzip`.

use std::io::Read;

use serde_json::Value;

/// Why a whole body was refused. Per-event problems are not here: they are reported item by item.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("empty body: send one JSON event, a JSON array of events, or NDJSON")]
    Empty,
    #[error("body larger than {limit} bytes; split the batch")]
    TooLarge { limit: usize },
    #[error("body larger than {limit} bytes once decompressed; split the batch")]
    DecompressedTooLarge { limit: usize },
    #[error("more than {limit} events in one request; split the batch")]
    TooManyEvents { limit: usize },
    #[error("the body is not valid gzip: {0}")]
    BadGzip(String),
    #[error("content-encoding {0:?} is not supported; send gzip or an uncompressed body")]
    UnsupportedEncoding(String),
    #[error(
        "content-type {0:?} is not supported; send application/json, application/x-ndjson or text/plain"
    )]
    UnsupportedContentType(String),
    #[error("invalid JSON: {0}")]
    Json(String),
}

/// One item of a body: a JSON value, or why it could not be used (an NDJSON line that is not JSON, an
/// event over `max_event_bytes`).
pub type Item = Result<Value, String>;

/// The caps [`decode_body`] applies (the raw body's own cap is the HTTP layer's, before this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Bytes a gzip body may inflate to.
    pub max_decompressed_bytes: usize,
    /// Items (events or NDJSON lines) in one body.
    pub max_events_per_request: usize,
    /// Bytes of one event's JSON; a bigger event is refused alone.
    pub max_event_bytes: usize,
}

/// A decoded body: where each item is in the (inflated) text, checked as JSON (the lines of declared
/// NDJSON: when each is decoded) but not yet turned into values or events. [`Items::events`] decodes
/// one event at a time, so a body never exists as one tree of values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Items<'a> {
    text: Text<'a>,
    spans: Vec<Result<std::ops::Range<usize>, String>>,
}

/// The (inflated) body: checked as UTF-8 once, as a whole. Text that is (nearly every body) is decoded
/// without checking each string again; a body with invalid bytes somewhere keeps its bytes, and each
/// item is checked on its own (an NDJSON line with a bad byte is refused alone).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Text<'a> {
    Utf8(std::borrow::Cow<'a, str>),
    Bytes(std::borrow::Cow<'a, [u8]>),
}

impl<'a> Text<'a> {
    fn new(bytes: std::borrow::Cow<'a, [u8]>) -> Self {
        use std::borrow::Cow;
        match bytes {
            Cow::Borrowed(b) => match std::str::from_utf8(b) {
                Ok(s) => Text::Utf8(Cow::Borrowed(s)),
                Err(_) => Text::Bytes(Cow::Borrowed(b)),
            },
            Cow::Owned(v) => match String::from_utf8(v) {
                Ok(s) => Text::Utf8(Cow::Owned(s)),
                Err(e) => Text::Bytes(Cow::Owned(e.into_bytes())),
            },
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Text::Utf8(s) => s.as_bytes(),
            Text::Bytes(b) => b,
        }
    }
}

impl Items<'_> {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Each item as an event, decoded when it is reached ([`crate::event::parse_event_json`]); an item
    /// that could not be used (not JSON, over `max_event_bytes`) is an error of the field `(line)`.
    pub fn events(
        &self,
        now_millis: i64,
    ) -> impl Iterator<Item = Result<crate::RawEvent, crate::FieldError>> + '_ {
        self.spans.iter().map(move |span| match (span, &self.text) {
            // Spans start and end next to ASCII bytes (brackets, commas, line ends), so they never split
            // a character; were one to, the bytes path below would answer instead of a panic.
            (Ok(range), Text::Utf8(text))
                if text.is_char_boundary(range.start) && text.is_char_boundary(range.end) =>
            {
                crate::event::parse_event_str(&text[range.clone()], now_millis)
            }
            (Ok(range), text) => {
                crate::event::parse_event_json(&text.bytes()[range.clone()], now_millis)
            }
            (Err(reason), _) => Err(crate::FieldError::new("(line)", reason.clone())),
        })
    }

    /// Each item as a value, built when it is reached.
    pub fn iter(&self) -> impl Iterator<Item = Item> + '_ {
        self.spans.iter().map(|span| match span {
            Ok(range) => serde_json::from_slice(&self.text.bytes()[range.clone()])
                .map_err(|e| format!("invalid JSON: {e}")),
            Err(reason) => Err(reason.clone()),
        })
    }
}

/// Decodes a body into items, counting as it goes: an array or NDJSON body stops at the first item past
/// `max_events_per_request` without reading further. A whole-body error means nothing in it is usable.
pub fn decode_body<'a>(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &'a [u8],
    limits: BodyLimits,
) -> Result<Items<'a>, BodyError> {
    let mime = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let ndjson_declared = matches!(
        mime.as_str(),
        "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines"
    );
    if !(ndjson_declared || matches!(mime.as_str(), "" | "application/json" | "text/plain")) {
        return Err(BodyError::UnsupportedContentType(mime));
    }
    let text: std::borrow::Cow<'a, [u8]> = match content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "identity") => std::borrow::Cow::Borrowed(body),
        Some("gzip" | "x-gzip") => {
            std::borrow::Cow::Owned(gunzip(body, limits.max_decompressed_bytes)?)
        }
        Some(other) => return Err(BodyError::UnsupportedEncoding(other.to_owned())),
    };
    let text = Text::new(text);
    let utf8 = matches!(text, Text::Utf8(_));
    let spans = spans(text.bytes(), utf8, ndjson_declared, limits)?;
    if spans.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(Items { text, spans })
}

type Span = Result<std::ops::Range<usize>, String>;

/// `utf8`: the whole body is known to be UTF-8.
fn spans(
    body: &[u8],
    utf8: bool,
    ndjson_declared: bool,
    limits: BodyLimits,
) -> Result<Vec<Span>, BodyError> {
    let text = body.trim_ascii();
    if text.is_empty() {
        return Err(BodyError::Empty);
    }
    let base = body.len() - body.trim_ascii_start().len();
    let sized = |range: std::ops::Range<usize>| -> Span {
        if range.len() > limits.max_event_bytes {
            Err(format!(
                "event of {} bytes, at most {}; send less text per event",
                range.len(),
                limits.max_event_bytes
            ))
        } else {
            Ok(range)
        }
    };
    if ndjson_declared {
        // Each line is parsed once, when its event is decoded: a line that is not JSON is refused then.
        return ndjson(text, base, limits, &sized, false, utf8);
    }
    // JSON is UTF-8: checked once for the whole body (NDJSON: line by line when the whole is not; skipping
    // an item does not look inside its strings).
    if !utf8 && let Err(e) = std::str::from_utf8(text) {
        return Err(BodyError::Json(format!(
            "the body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        )));
    }
    if text[0] == b'[' {
        return Ok(array(text, limits.max_events_per_request)?
            .into_iter()
            .map(|(from, to)| sized(base + from..base + to))
            .collect());
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(text) {
        Ok(_) => Ok(vec![sized(base..base + text.len())]),
        // Several lines that are each JSON: NDJSON sent without its content type (sendBeacon does this).
        Err(e) if text.contains(&b'\n') => {
            let items = ndjson(text, base, limits, &sized, true, true)?;
            if items.iter().all(Result::is_err) {
                return Err(BodyError::Json(e.to_string()));
            }
            Ok(items)
        }
        Err(e) => Err(BodyError::Json(e.to_string())),
    }
}

/// The elements of a JSON array as byte ranges of `text`, each checked as JSON but not built, stopping at
/// the first one past `limit`.
fn array(text: &[u8], limit: usize) -> Result<Vec<(usize, usize)>, BodyError> {
    let space = |mut at: usize| {
        while text.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
        at
    };
    let broken =
        |at: usize, what: &str| BodyError::Json(format!("{what} at byte {at} of the array"));
    let mut out = Vec::new();
    let mut at = space(1);
    if text.get(at) == Some(&b']') {
        at += 1;
    } else {
        loop {
            if out.len() == limit {
                return Err(BodyError::TooManyEvents { limit });
            }
            let mut one = serde_json::Deserializer::from_slice(&text[at..])
                .into_iter::<serde::de::IgnoredAny>();
            match one.next() {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(BodyError::Json(e.to_string())),
                None => return Err(broken(at, "expected a value")),
            }
            let end = at + one.byte_offset();
            out.push((space(at), end));
            at = space(end);
            match text.get(at) {
                Some(b',') => at = space(at + 1),
                Some(b']') => {
                    at += 1;
                    break;
                }
                _ => return Err(broken(at, "expected `,` or `]`")),
            }
        }
    }
    if space(at) != text.len() {
        return Err(broken(at, "trailing characters"));
    }
    Ok(out)
}

/// The lines of an NDJSON body. With `check_json` each line is checked as JSON here (to tell NDJSON sent
/// without its content type from a body that is not JSON at all); without, only its UTF-8 (unless `utf8`
/// says the whole text was checked already).
fn ndjson(
    text: &[u8],
    base: usize,
    limits: BodyLimits,
    sized: &dyn Fn(std::ops::Range<usize>) -> Span,
    check_json: bool,
    utf8: bool,
) -> Result<Vec<Span>, BodyError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut from = 0usize;
    let ends = memchr::memchr_iter(b'\n', text).chain(std::iter::once(text.len()));
    for line in ends.map(|end| {
        let line = &text[from..end];
        from = end + 1;
        line
    }) {
        let start = at + (line.len() - line.trim_ascii_start().len());
        at += line.len() + 1;
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        if out.len() == limits.max_events_per_request {
            return Err(BodyError::TooManyEvents {
                limit: limits.max_events_per_request,
            });
        }
        let range = base + start..base + start + line.len();
        let checked = if utf8 {
            Ok(())
        } else {
            std::str::from_utf8(line)
                .map(|_| ())
                .map_err(|e| format!("invalid JSON: not valid UTF-8 at byte {}", e.valid_up_to()))
        };
        out.push(
            checked
                .and_then(|()| {
                    if check_json {
                        serde_json::from_slice::<serde::de::IgnoredAny>(line)
                            .map(|_| ())
                            .map_err(|e| format!("invalid JSON: {e}"))
                    } else {
                        Ok(())
                    }
                })
                .and_then(|_| sized(range)),
        );
    }
    Ok(out)
}

fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    // Room for the cap (plus the byte that shows it was passed) at once: growing by doubling would end in
    // a buffer twice the cap, copied on the way; untouched pages cost no memory.
    let mut out = Vec::with_capacity(limit.saturating_add(1));
    let mut decoder = flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| BodyError::BadGzip(e.to_string()))?;
    if out.len() > limit {
        return Err(BodyError::DecompressedTooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn limits() -> BodyLimits {
        BodyLimits {
            max_decompressed_bytes: 1000,
            max_events_per_request: 3,
            max_event_bytes: 100,
        }
    }

    fn ok_count(items: &Items) -> usize {
        items.iter().filter(|i| i.is_ok()).count()
    }

    #[test]
    fn single_array_and_ndjson() {
        let l = limits();
        assert_eq!(decode_body(None, None, br#"{"a":1}"#, l).unwrap().len(), 1);
        assert_eq!(
            decode_body(Some("application/json"), None, br#"[{"a":1},{"a":2}]"#, l)
                .unwrap()
                .len(),
            2
        );
        let nd = b"{\"a\":1}\n\n{\"a\":2}\r\n";
        assert_eq!(
            ok_count(&decode_body(Some("application/x-ndjson"), None, nd, l).unwrap()),
            2
        );
        // sendBeacon: text/plain, NDJSON without a declared type.
        assert_eq!(
            ok_count(&decode_body(Some("text/plain;charset=UTF-8"), None, nd, l).unwrap()),
            2
        );
        // A pretty-printed single object spans lines and is still one event.
        assert_eq!(
            decode_body(None, None, b"{\n \"a\": 1\n}", l)
                .unwrap()
                .len(),
            1
        );
    }

    /// A body with an invalid byte somewhere is checked item by item: in NDJSON only that line is refused
    /// and the others are events (decoded from bytes); a JSON document is refused whole. Valid text, checked
    /// once as a whole, decodes to the same events as its bytes would.
    #[test]
    fn invalid_utf8_spoils_only_its_line_and_valid_text_decodes_the_same() {
        let l = BodyLimits {
            max_event_bytes: 1000,
            ..limits()
        };
        let line = |url: &str| format!(r#"{{"kind":"pageview","url":"{url}"}}"#).into_bytes();
        let mut body = line("/a\\u00e9");
        body.push(b'\n');
        body.extend(b"{\"kind\":\"pageview\",\"url\":\"/\xff\"}\n");
        body.extend(line("/\u{e9}t\u{e9}"));
        let items = decode_body(Some("application/x-ndjson"), None, &body, l).unwrap();
        assert!(matches!(items.text, Text::Bytes(_)));
        let events: Vec<_> = items.events(0).collect();
        assert_eq!(events[0].as_ref().unwrap().url, "/a\u{e9}");
        let err = events[1].as_ref().unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.problem.as_str()),
            ("(line)", "invalid JSON: not valid UTF-8 at byte 27")
        );
        assert_eq!(events[2].as_ref().unwrap().url, "/\u{e9}t\u{e9}");
        let err = decode_body(
            None,
            None,
            b"[{\"kind\":\"pageview\",\"url\":\"/\xff\"}]",
            l,
        )
        .unwrap_err();
        assert_eq!(
            err,
            BodyError::Json("the body is not valid UTF-8 (at byte 28)".into())
        );
        // The same lines without the bad one: checked as a whole, the same events.
        let mut valid = line("/a\\u00e9");
        valid.push(b'\n');
        valid.extend(line("/\u{e9}t\u{e9}"));
        let items = decode_body(Some("application/x-ndjson"), None, &valid, l).unwrap();
        assert!(matches!(items.text, Text::Utf8(_)));
        let urls: Vec<String> = items.events(0).map(|e| e.unwrap().url).collect();
        assert_eq!(urls, ["/a\u{e9}", "/\u{e9}t\u{e9}"]);
    }

    #[test]
    fn a_bad_ndjson_line_spoils_only_itself() {
        let items = decode_body(
            Some("application/x-ndjson"),
            None,
            b"{\"a\":1}\n{oops\n{\"a\":3}",
            limits(),
        )
        .unwrap();
        assert_eq!(items.len(), 3);
        let items_list: Vec<Item> = items.iter().collect();
        assert!(
            items_list[1]
                .as_ref()
                .unwrap_err()
                .starts_with("invalid JSON")
        );
        assert_eq!(ok_count(&items), 2);
    }

    #[test]
    fn whole_body_errors() {
        let l = limits();
        assert_eq!(decode_body(None, None, b"  ", l), Err(BodyError::Empty));
        assert_eq!(decode_body(None, None, b"[]", l), Err(BodyError::Empty));
        assert!(matches!(
            decode_body(None, None, b"{\"a\":", l),
            Err(BodyError::Json(_))
        ));
        assert!(matches!(
            decode_body(None, None, b"[{\"a\":1},", l),
            Err(BodyError::Json(_))
        ));
        assert_eq!(
            decode_body(None, None, b"[{},{},{},{}]", l),
            Err(BodyError::TooManyEvents { limit: 3 })
        );
        assert!(matches!(
            decode_body(Some("multipart/form-data"), None, b"{}", l),
            Err(BodyError::UnsupportedContentType(_))
        ));
        assert!(matches!(
            decode_body(None, Some("br"), b"{}", l),
            Err(BodyError::UnsupportedEncoding(_))
        ));
        assert!(matches!(
            decode_body(None, Some("gzip"), b"{}", l),
            Err(BodyError::BadGzip(_))
        ));
    }

    #[test]
    fn gzip_is_capped() {
        let gz = |data: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let l = limits();
        assert_eq!(
            decode_body(None, Some("gzip"), &gz(br#"{"a":1}"#), l)
                .unwrap()
                .len(),
            1
        );
        let bomb = gz(&vec![b' '; 10_000_000]);
        assert!(bomb.len() < 20_000);
        assert_eq!(
            decode_body(None, Some("gzip"), &bomb, l),
            Err(BodyError::DecompressedTooLarge { limit: 1000 })
        );
    }

    #[test]
    fn a_long_array_stops_at_the_limit_without_reading_on() {
        let l = BodyLimits {
            max_decompressed_bytes: 64 << 20,
            max_events_per_request: 10_000,
            max_event_bytes: 1 << 10,
        };
        // 16 MiB of small values: refused after 10,001 of them (the rest is never looked at, so a broken
        // tail does not matter).
        let mut body = b"[".to_vec();
        while body.len() < 16 << 20 {
            body.extend_from_slice(b"1,");
        }
        body.extend_from_slice(b"oops");
        assert_eq!(
            decode_body(None, None, &body, l),
            Err(BodyError::TooManyEvents { limit: 10_000 })
        );
        let mut nd = Vec::new();
        for _ in 0..10_001 {
            nd.extend_from_slice(b"{}\n");
        }
        assert_eq!(
            decode_body(Some("application/x-ndjson"), None, &nd, l),
            Err(BodyError::TooManyEvents { limit: 10_000 })
        );
    }

    #[test]
    fn an_event_over_its_size_is_refused_alone() {
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(200));
        let body = format!(r#"[{{"a":1}}, {big} ,{{"a":2}}]"#);
        let items = decode_body(None, None, body.as_bytes(), limits()).unwrap();
        let items: Vec<Item> = items.iter().collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0], Ok(serde_json::json!({"a": 1})));
        assert!(items[1].as_ref().unwrap_err().contains("at most 100"));
        assert_eq!(items[2], Ok(serde_json::json!({"a": 2})));
        // The same in NDJSON and as a single object.
        let nd = format!("{{\"a\":1}}\n{big}\n");
        let items =
            decode_body(Some("application/x-ndjson"), None, nd.as_bytes(), limits()).unwrap();
        assert_eq!(ok_count(&items), 1);
        let one = decode_body(None, None, big.as_bytes(), limits()).unwrap();
        assert_eq!(ok_count(&one), 0);
        // Whitespace around items and a trailing comma.
        let spaced = decode_body(None, None, b" [ {\"a\":1} , {\"a\":2} ] ", limits()).unwrap();
        assert_eq!(ok_count(&spaced), 2);
        assert!(matches!(
            decode_body(None, None, b"[{\"a\":1},]", limits()),
            Err(BodyError::Json(_))
        ));
        assert!(matches!(
            decode_body(None, None, b"[{\"a\":1}] x", limits()),
            Err(BodyError::Json(_))
        ));
    }
}
