//! Any bytes as an encoded event (the WAL payload form): decoding must never panic, and a decoded event
//! must re-encode to bytes that decode to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tacet_privacy::Event;

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    while let Ok(event) = Event::decode(&mut input) {
        let mut buf = Vec::new();
        event.encode(&mut buf);
        let mut again = &buf[..];
        assert_eq!(Event::decode(&mut again).ok().as_ref(), Some(&event));
    }
});
