//! Pseudonymised events kept in their log form ([`crate::codec`]): what the ingest buffer holds between
//! the write-ahead log and the lake. A buffered event costs one row (where it lies, its time and its
//! arrival) and a share of bytes it does not copy: the log record it came in (handed back by the log's
//! writer after the sync, or a slice of the segment that replay read). An [`Event`] was a 720-byte value
//! and thirty heap strings; copying bytes into fresh memory was most of a replay (the kernel zeroing new
//! pages). Sorting moves rows; the Arrow columns are built from views of the bytes
//! ([`crate::EventBatch::from_packed`]).

use bytes::Bytes;

use crate::Event;
use crate::codec::{Span, USER_PSEUDONYM, View, utf8};

/// Encoded events and, for each, where it lies, its time and its arrival.
#[derive(Debug, Clone, Default)]
pub struct Packed {
    /// The buffers the rows point into (log records, mostly), each once.
    chunks: Vec<Bytes>,
    rows: Vec<Row>,
}

#[derive(Debug, Clone, Copy)]
struct Row {
    chunk: u32,
    start: u32,
    end: u32,
    ts_millis: i64,
    arrival: Option<i64>,
}

impl Packed {
    /// Events encoded from `events`, with their arrivals.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut buf = Vec::new();
        let rows: Vec<(Span, Option<i64>)> = events
            .into_iter()
            .map(|e| (e.encode(&mut buf), e.arrival))
            .collect();
        let buf = Bytes::from(buf);
        let mut packed = Packed::default();
        for (span, arrival) in rows {
            packed.push(&buf, span, arrival);
        }
        packed
    }

    /// Adds the event `span` covers in `source` (the buffer it was encoded into or split from), sharing
    /// `source` rather than copying it: pushing the events of one buffer one after another keeps it once.
    pub fn push(&mut self, source: &Bytes, span: Span, arrival: Option<i64>) {
        let same = self
            .chunks
            .last()
            .is_some_and(|c| c.as_ptr() == source.as_ptr() && c.len() == source.len());
        if !same {
            self.chunks.push(source.clone());
        }
        let (start, end) = (span.start, span.end);
        assert!(
            end <= source.len() && u32::try_from(end).is_ok(),
            "a span of this source, under 4 GiB"
        );
        self.rows.push(Row {
            chunk: (self.chunks.len() - 1) as u32,
            start: start as u32,
            end: end as u32,
            ts_millis: span.ts_millis,
            arrival,
        });
    }

    /// Room for `rows` more events.
    pub fn reserve(&mut self, rows: usize) {
        self.rows.reserve(rows);
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

    /// Keeps the events whose user pseudonym `keep` accepts (it sees `None` for events without one).
    /// When any goes, the others are copied into a buffer of their own, so this holds none of the bytes
    /// of those that went (another partition's events from the same request may still share them until
    /// its own flush; they are never written). Returns how many went.
    pub fn retain_users(&mut self, mut keep: impl FnMut(Option<&str>) -> bool) -> usize {
        let kept: Vec<bool> = self
            .views()
            .map(|(v, _)| keep(v.options[USER_PSEUDONYM].map(utf8)))
            .collect();
        let gone = kept.iter().filter(|k| !**k).count();
        if gone == 0 {
            return 0;
        }
        let mut buf = Vec::new();
        let mut rows = Vec::with_capacity(self.rows.len() - gone);
        for (row, _) in self.rows.iter().zip(&kept).filter(|(_, k)| **k) {
            let start = buf.len() as u32;
            buf.extend_from_slice(self.bytes(row));
            rows.push(Row {
                chunk: 0,
                start,
                end: buf.len() as u32,
                ..*row
            });
        }
        self.chunks = vec![Bytes::from(buf)];
        self.rows = rows;
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

    fn bytes(&self, r: &Row) -> &[u8] {
        &self.chunks[r.chunk as usize][r.start as usize..r.end as usize]
    }

    pub(crate) fn views(&self) -> impl Iterator<Item = (View<'_>, Option<i64>)> {
        self.rows.iter().map(|r| {
            let v = View::read(&mut self.bytes(r))
                .expect("bytes checked or encoded when they were put in");
            (v, r.arrival)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::event;
    use crate::{EventBatch, TenantPolicy};

    pub(crate) fn three() -> Vec<Event> {
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
        assert_eq!(packed.retain_users(|p| p != Some(gone.as_str())), 1);
        assert_eq!(packed.events(), [events[1].clone(), events[2].clone()]);
        assert_eq!(packed.chunks.len(), 1);
        assert!(
            !packed.chunks[0]
                .windows(gone.len())
                .any(|w| w == gone.as_bytes()),
            "the erased pseudonym's bytes are not held any more"
        );
        assert_eq!(packed.retain_users(|_| true), 0);
    }

    #[test]
    fn events_of_one_buffer_share_it() {
        let events = three();
        let mut buf = Vec::new();
        let spans: Vec<Span> = events.iter().map(|e| e.encode(&mut buf)).collect();
        let (buf, other) = (Bytes::from(buf), Bytes::from(vec![0u8; 8]));
        let mut packed = Packed::default();
        packed.push(&buf, spans[0], None);
        packed.push(&buf, spans[1], None);
        assert_eq!(packed.chunks.len(), 1, "one buffer, held once");
        // Another buffer (another record) is a second chunk; the same again after it is a third.
        packed.chunks.push(other);
        packed.push(&buf, spans[2], None);
        assert_eq!(packed.chunks.len(), 3);
        assert_eq!(packed.events()[2].url_path, "/y");
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
