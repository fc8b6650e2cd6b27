//! Record framing: `[len u32 LE][crc32 u32 LE][seq u64 LE][payload: len bytes]`; the checksum covers the
//! sequence number and the payload.

/// Bytes before the payload.
pub const HEADER_BYTES: usize = 16;

/// Appends one framed record to `buf`.
pub fn encode_record(buf: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("a record is smaller than 4 GiB");
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Decodes the records of a segment. Returns them with the offset where valid data ends; anything after it
/// (a torn write, a bad checksum) is damage to cut off.
pub fn decode_records(data: &[u8]) -> (Vec<(u64, &[u8])>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while data.len() - at >= HEADER_BYTES {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().expect("4 bytes"));
        let seq_bytes = &data[at + 8..at + 16];
        let Some(payload) = data.get(at + HEADER_BYTES..at + HEADER_BYTES + len) else {
            break;
        };
        let mut h = crc32fast::Hasher::new();
        h.update(seq_bytes);
        h.update(payload);
        if h.finalize() != crc {
            break;
        }
        out.push((
            u64::from_le_bytes(seq_bytes.try_into().expect("8 bytes")),
            payload,
        ));
        at += HEADER_BYTES + len;
    }
    (out, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn log(records: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        for (i, r) in records.iter().enumerate() {
            encode_record(&mut buf, i as u64 + 1, r);
            ends.push(buf.len());
        }
        (buf, ends)
    }

    #[test]
    fn round_trip() {
        let (buf, _) = log(&[b"one".to_vec(), Vec::new(), b"three".to_vec()]);
        let (recs, end) = decode_records(&buf);
        assert_eq!(end, buf.len());
        assert_eq!(
            recs,
            vec![(1, &b"one"[..]), (2, &b""[..]), (3, &b"three"[..])]
        );
    }

    proptest! {
        /// Cut anywhere: every record that ends before the cut is kept, nothing after it.
        #[test]
        fn truncation_keeps_every_complete_record(
            records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..20),
            cut_frac in 0.0f64..1.0,
        ) {
            let (buf, ends) = log(&records);
            let cut = (buf.len() as f64 * cut_frac) as usize;
            let (recs, end) = decode_records(&buf[..cut]);
            let complete = ends.iter().filter(|&&e| e <= cut).count();
            prop_assert_eq!(recs.len(), complete);
            prop_assert_eq!(end, if complete == 0 { 0 } else { ends[complete - 1] });
            for (i, (seq, payload)) in recs.iter().enumerate() {
                prop_assert_eq!(*seq, i as u64 + 1);
                prop_assert_eq!(*payload, &records[i][..]);
            }
        }

        /// Flip any byte: every record before the damaged one is kept, and none from it on.
        #[test]
        fn corruption_keeps_every_record_before_it(
            records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..20),
            at_frac in 0.0f64..1.0,
            flip in 1u8..=255,
        ) {
            let (mut buf, ends) = log(&records);
            let at = ((buf.len() as f64 * at_frac) as usize).min(buf.len() - 1);
            buf[at] ^= flip;
            let (recs, _) = decode_records(&buf);
            let before = ends.iter().filter(|&&e| e <= at).count();
            // A flipped length byte can make a later record unreadable too, never an earlier one.
            prop_assert_eq!(recs.len(), before);
            for (i, (_, payload)) in recs.iter().enumerate() {
                prop_assert_eq!(*payload, &records[i][..]);
            }
        }
    }
}
