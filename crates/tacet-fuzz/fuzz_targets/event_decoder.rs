//! Any bytes as a beacon body: JSON (one object, an array, NDJSON lines) through `parse_event`. It must
//! never panic, and an accepted event must respect the limits the wire format promises. The typed decoder
//! the endpoint uses (`parse_event_json`, and `parse_event_str` for text checked as a whole) must give
//! exactly the reference path's answer for the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_780_272_000_000;

fn check(v: serde_json::Value) {
    if let Ok(e) = tacet_model::parse_event(v, NOW) {
        assert!(e.url.len() <= 4096, "url over its limit");
        assert!(e.user_id.as_ref().is_none_or(|u| u.len() <= 256));
        assert!(e.props.len() <= 64);
    }
}

/// The typed decoder against `serde_json::Value` and `parse_event`, on the same bytes.
fn same_answer(json: &[u8]) {
    let reference = match serde_json::from_slice(json) {
        Ok(v) => tacet_model::parse_event(v, NOW),
        Err(e) => Err(tacet_model::FieldError::new(
            "(line)",
            format!("invalid JSON: {e}"),
        )),
    };
    assert_eq!(tacet_model::parse_event_json(json, NOW), reference);
    // Text known to be UTF-8 takes the path that does not check each string again: the same answer.
    if let Ok(text) = std::str::from_utf8(json) {
        assert_eq!(tacet_model::parse_event_str(text, NOW), reference);
    }
}

fuzz_target!(|data: &[u8]| {
    same_answer(data);
    data.split(|&b| b == b'\n').for_each(same_answer);
    match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(serde_json::Value::Array(items)) => items.into_iter().for_each(check),
        Ok(v) => check(v),
        Err(_) => {
            for line in data.split(|&b| b == b'\n') {
                if let Ok(v) = serde_json::from_slice(line) {
                    check(v);
                }
            }
        }
    }
});
