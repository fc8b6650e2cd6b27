//! Pseudonymised events kept in their log form ([`crate::codec`]), back to back: what the ingest buffer
//! holds between the write-ahead log and the lake. A buffered event costs its encoded bytes (a hundred or
//! two) and one row, where an [`Event`] is a 720-byte value and thirty heap strings; putting one in is a
//! copy of bytes the log already holds, sorting moves rows, and the Arrow columns are built from views of
//! the bytes ([`EventBatch::from_packed`]).

use crate::codec::{Span, USER_PSEUDONYM, View};
use crate::{Event, EventBatch};

/// Encoded events and, for each, where it lies, its time and its arrival.
#[derive(Debug, Clone, Default)]
pub struct Packed {
    bytes: Vec<u8>,
    rows: Vec<Row>,
}

#[derive(Debug, Clone, Copy)]
struct Row {
    start: usize,
    end: usize,
    ts_millis: i64,
    arrival: Option<i64>,
}

impl Packed {
    /// Events encoded from `events`, with their arrivals.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut packed = Packed::default();
        let mut scratch = Vec::new();
        for e in events {
            scratch.clear();
            let span = e.encode(&mut scratch);
            packed.push(&scratch, span, e.arrival);
        }
        packed
    }

    /// Copies the event `span` covers in `source` (the buffer it was encoded into or split from).
    pub fn push(&mut self, source: &[u8], span: Span, arrival: Option<i64>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&source[span.start..span.end]);
        self.rows.push(Row {
            start,
            end: self.bytes.len(),
            ts_millis: span.ts_millis,
            arrival,
        });
    }

    /// Room for `rows` more events of `bytes` bytes in all.
    pub fn reserve(&mut self, rows: usize, bytes: usize) {
        self.rows.reserve(rows);
        self.bytes.reserve(bytes);
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Orders the events by time, then arrival; events equal in both keep their order.
    pub fn sort(&mut self) {
        self.rows.sort_by_key(|r| (r.ts_millis, r.arrival));
    }

    /// Keeps the events whose user pseudonym `keep` accepts (it sees `None` for events without one);
    /// the bytes of the others go too. Returns how many went.
    pub fn retain_users(&mut self, mut keep: impl FnMut(Option<&str>) -> bool) -> usize {
        let kept: Vec<bool> = self
            .views()
            .map(|(v, _)| keep(v.options[USER_PSEUDONYM]))
            .collect();
        let gone = kept.iter().filter(|k| !**k).count();
        if gone == 0 {
            return 0;
        }
        let mut left = Packed::default();
        left.reserve(self.rows.len() - gone, self.bytes.len());
        for (row, _) in self.rows.iter().zip(&kept).filter(|(_, k)| **k) {
            let start = left.bytes.len();
            left.bytes
                .extend_from_slice(&self.bytes[row.start..row.end]);
            left.rows.push(Row {
                start,
                end: left.bytes.len(),
                ..*row
            });
        }
        *self = left;
        gone
    }

    /// The events, in row order, as `Event`s (for tests and tools; the flush reads views).
    pub fn events(&self) -> Vec<Event> {
        self.views()
            .map(|(v, arrival)| {
                let mut e = v.to_event();
                e.arrival = arrival;
                e
            })
            .collect()
    }

    pub(crate) fn views(&self) -> impl Iterator<Item = (View<'_>, Option<i64>)> {
        self.rows.iter().map(|r| {
            let v = View::read(&mut &self.bytes[r.start..r.end])
                .expect("bytes checked or encoded when they were put in");
            (v, r.arrival)
        })
    }
}

impl EventBatch {
    /// Builds the Arrow form of `events`, in their row order.
    pub fn from_packed(events: &Packed) -> Result<Self, arrow::error::ArrowError> {
        Self::from_views(events.len(), events.views())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TenantPolicy;
    use crate::testing::event;

    fn three() -> Vec<Event> {
        let policy = TenantPolicy::default();
        let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
        let mut events = vec![
            event(
                serde_json::json!({"kind": "pageview", "url": "https://a.example/x?utm_source=n", "user_id": "u1", "ts": 1764399002000_i64}),
                &policy,
                ua,
            ),
            event(
                serde_json::json!({"kind": "pageview", "url": "https://a.example/", "props": {"plan": "pro", "n": 2}, "ts": 1764399001000_i64}),
                &policy,
                ua,
            ),
            event(
                serde_json::json!({"kind": "pageview", "url": "https://a.example/y", "user_id": "u2", "ts": 1764399001000_i64}),
                &policy,
                ua,
            ),
        ];
        for (i, e) in events.iter_mut().enumerate() {
            e.set_arrival(9, i);
        }
        events
    }

    #[test]
    fn keeps_events_whole_and_sorts_by_time_then_arrival() {
        let events = three();
        let mut packed = Packed::from_events(&events);
        assert_eq!(packed.events(), events);
        packed.sort();
        let sorted = packed.events();
        assert_eq!(
            sorted,
            [events[1].clone(), events[2].clone(), events[0].clone()]
        );
        // The same columns as from the events sorted the same way.
        let batch = EventBatch::from_packed(&packed).unwrap();
        let direct = EventBatch::from_events(sorted.iter()).unwrap();
        assert_eq!(batch.record_batch(), direct.record_batch());
        assert_eq!(batch.num_rows(), 3);
    }

    #[test]
    fn erasure_takes_the_rows_and_their_bytes() {
        let events = three();
        let mut packed = Packed::from_events(&events);
        let gone = events[0].user_pseudonym.clone().unwrap();
        let before = packed.bytes.len();
        assert_eq!(packed.retain_users(|p| p != Some(gone.as_str())), 1);
        assert_eq!(packed.events(), [events[1].clone(), events[2].clone()]);
        assert!(packed.bytes.len() < before);
        assert!(
            !packed
                .bytes
                .windows(gone.len())
                .any(|w| w == gone.as_bytes()),
            "the erased pseudonym's bytes are gone from memory too"
        );
        assert_eq!(packed.retain_users(|_| true), 0);
    }

    #[test]
    fn spans_split_what_encode_wrote() {
        let events = three();
        let mut buf = Vec::new();
        let spans: Vec<Span> = events.iter().map(|e| e.encode(&mut buf)).collect();
        let mut offset = 0;
        for span in &spans {
            assert_eq!(Span::split(&buf, offset).unwrap(), *span);
            offset = span.end();
        }
        assert_eq!(offset, buf.len());
        assert!(Span::split(&buf[..buf.len() - 1], spans[2].start).is_err());
    }
}
