//! Any text through the scrubber: it must never panic, must be idempotent (scrubbing its output changes
//! nothing), and must leave no e-mail address it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tacet_privacy::{Scrubber, Tally};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let scrubber = Scrubber::new(&[]);
    let mut tally = Tally::default();
    let once = scrubber.text(text, &mut tally);
    let twice = scrubber.text(&once, &mut tally);
    assert_eq!(once, twice, "scrubbing is not idempotent");
    let _ = scrubber.property("password", text, &mut tally);
});
