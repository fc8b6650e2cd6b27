//! Any bytes as encoded events (the WAL payload form, and the ingest buffer's): decoding must never panic,
//! a decoded event must re-encode to bytes that decode to the same event, `Span::split` must accept
//! exactly what decoding accepts and end where it ends, and the buffer's `Packed` form of the accepted
//! events must give them back, and an Arrow batch with one row each.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tacet_privacy::{Event, EventBatch, Packed, Span};

fuzz_target!(|data: &[u8]| {
    let shared = bytes::Bytes::copy_from_slice(data);
    let mut input = data;
    let mut decoded = Vec::new();
    let mut packed = Packed::default();
    loop {
        let offset = data.len() - input.len();
        let split = Span::split(data, offset);
        let Ok(event) = Event::decode(&mut input) else {
            assert!(split.is_err(), "split accepted what decode refused");
            break;
        };
        let span = split.expect("split refused what decode accepted");
        assert_eq!(span.end(), data.len() - input.len());
        packed.push(&shared, span, None);
        let mut buf = Vec::new();
        event.encode(&mut buf);
        let mut again = &buf[..];
        assert_eq!(Event::decode(&mut again).ok().as_ref(), Some(&event));
        decoded.push(event);
    }
    assert_eq!(packed.events(), decoded);
    let batch = EventBatch::from_packed(&packed).expect("decoded events make a batch");
    assert_eq!(batch.num_rows(), decoded.len());
});
