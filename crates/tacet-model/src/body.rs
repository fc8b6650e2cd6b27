//! Request bodies → JSON values, one per event, with every size capped. No I/O: the HTTP layer reads
//! the (size-capped) body and calls [`decode_body`]; the `http_body` fuzz target calls it too.
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
    #[error("{count} events in one request, at most {limit}; split the batch")]
    TooManyEvents { count: usize, limit: usize },
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

/// One item of a body: a JSON value, or why its line could not be parsed (NDJSON only).
pub type Item = Result<Value, String>;

/// The caps [`decode_body`] applies (the raw body's own cap is the HTTP layer's, before this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Bytes a gzip body may inflate to.
    pub max_decompressed_bytes: usize,
    /// Items (events or NDJSON lines) in one body.
    pub max_events_per_request: usize,
}

/// Decodes a body into items. A whole-body error means nothing in it is usable.
pub fn decode_body(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    limits: BodyLimits,
) -> Result<Vec<Item>, BodyError> {
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
    let decompressed;
    let body = match content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "identity") => body,
        Some("gzip" | "x-gzip") => {
            decompressed = gunzip(body, limits.max_decompressed_bytes)?;
            &decompressed[..]
        }
        Some(other) => return Err(BodyError::UnsupportedEncoding(other.to_owned())),
    };
    let text = body.trim_ascii();
    if text.is_empty() {
        return Err(BodyError::Empty);
    }
    let items = if ndjson_declared {
        ndjson(text)
    } else if text[0] == b'[' {
        let values: Vec<Value> =
            serde_json::from_slice(text).map_err(|e| BodyError::Json(e.to_string()))?;
        values.into_iter().map(Ok).collect()
    } else {
        match serde_json::from_slice::<Value>(text) {
            Ok(v) => vec![Ok(v)],
            // Several lines that are each JSON: NDJSON sent without its content type (sendBeacon does this).
            Err(e) if text.contains(&b'\n') => {
                let items = ndjson(text);
                if items.iter().all(Result::is_err) {
                    return Err(BodyError::Json(e.to_string()));
                }
                items
            }
            Err(e) => return Err(BodyError::Json(e.to_string())),
        }
    };
    if items.is_empty() {
        return Err(BodyError::Empty);
    }
    if items.len() > limits.max_events_per_request {
        return Err(BodyError::TooManyEvents {
            count: items.len(),
            limit: limits.max_events_per_request,
        });
    }
    Ok(items)
}

fn ndjson(text: &[u8]) -> Vec<Item> {
    text.split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).map_err(|e| format!("invalid JSON: {e}")))
        .collect()
}

fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
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
        }
    }

    fn ok_count(items: &[Item]) -> usize {
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
        assert!(items[1].as_ref().unwrap_err().starts_with("invalid JSON"));
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
            Err(BodyError::TooManyEvents { count: 4, limit: 3 })
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
}
