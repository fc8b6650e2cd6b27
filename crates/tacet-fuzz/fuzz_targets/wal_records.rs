//! Any bytes as a write-ahead-log segment: decoding must never panic, must stop at the first damaged
//! record, and what it returns must re-encode to exactly the valid prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (records, end) = tacet_wal::decode_records(data);
    assert!(end <= data.len());
    let mut again = Vec::new();
    for (seq, payload) in &records {
        tacet_wal::encode_record(&mut again, *seq, payload);
    }
    assert_eq!(
        &again[..],
        &data[..end],
        "decoded records do not re-encode to the valid prefix"
    );
});
