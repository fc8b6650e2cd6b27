//! Any bytes as an HTTP body, under any of the content types and encodings a client may declare, through
//! `decode_body` and then `parse_event`. Never a panic; an accepted body respects the event cap; a body we
//! gzip ourselves decodes exactly as the same body sent uncompressed (or is refused as too large once
//! inflated, when it is).
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use tacet_model::{BodyError, BodyLimits, decode_body};

const NOW: i64 = 1_780_272_000_000;

const LIMITS: BodyLimits = BodyLimits {
    max_decompressed_bytes: 64 << 10,
    max_events_per_request: 50,
    max_event_bytes: 16 << 10,
};

const CONTENT_TYPES: [Option<&str>; 8] = [
    None,
    Some("application/json"),
    Some("application/x-ndjson"),
    Some("text/plain;charset=UTF-8"),
    Some("application/jsonl; charset=utf-8"),
    Some(" Application/JSON "),
    Some("multipart/form-data"),
    Some(""),
];

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fuzz_target!(|data: &[u8]| {
    let [ct, enc, body @ ..] = data else { return };
    let content_type = CONTENT_TYPES[*ct as usize % CONTENT_TYPES.len()];
    // Outside the match: the decoded items borrow the body they came from.
    let compressed = if enc % 5 == 0 { gzip(body) } else { Vec::new() };
    let result = match enc % 5 {
        // The gzip path on a well-formed stream: must agree with the plain body.
        0 => {
            let inflated = decode_body(content_type, Some("gzip"), &compressed, LIMITS);
            let plain = decode_body(content_type, None, body, LIMITS);
            match (&inflated, &plain) {
                (Err(BodyError::DecompressedTooLarge { .. }), _) => {
                    assert!(
                        body.len() > LIMITS.max_decompressed_bytes,
                        "refused a body within the cap"
                    )
                }
                _ => {
                    assert!(
                        body.len() <= LIMITS.max_decompressed_bytes
                            || matches!(plain, Err(BodyError::UnsupportedContentType(_))),
                        "a body over the cap was inflated"
                    );
                    assert_eq!(inflated, plain, "gzip and plain bodies decode differently");
                }
            }
            inflated
        }
        // Arbitrary bytes as a gzip stream: the decoder's own error handling and the inflation cap.
        1 => decode_body(content_type, Some("x-gzip"), body, LIMITS),
        2 => decode_body(content_type, Some("identity"), body, LIMITS),
        3 => decode_body(content_type, Some("br"), body, LIMITS),
        _ => decode_body(content_type, None, body, LIMITS),
    };
    if let Ok(items) = result {
        assert!(!items.is_empty() && items.len() <= LIMITS.max_events_per_request);
        for item in items.iter().flatten() {
            if let Ok(e) = tacet_model::parse_event(item, NOW) {
                assert!(e.url.len() <= 4096, "url over its limit");
                assert!(e.props.len() <= 64);
            }
        }
    }
});
