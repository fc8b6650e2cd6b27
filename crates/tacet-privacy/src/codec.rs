//! A compact binary form of [`Event`] for the write-ahead log and the ingest buffer. Only this crate may
//! build an `Event`, so decoding lives here too.
//!
//! Layout: kind u8, ts i64, visitor_id tag u8 (0 none, 1 some) + i64, is_bot u8, device u8,
//! referrer_class u8, anonymised u8 (0 none, else 1 + index), then strings as `u32 length + UTF-8`,
//! optional strings with a leading 0/1 byte, `props` and `stack` as a u32 count and their strings.
//! `arrival` is not written: it is the log record's sequence number and the event's place in the record,
//! which the reader of the log knows (`Event::set_arrival`).
//!
//! Every reader goes through [`View::read`], which checks the layout and borrows every string's bytes:
//! bytes from outside (the log's segments at replay, [`Event::decode`]) are read once with
//! [`View::read_checked`], which also checks that every string is UTF-8; [`Event::decode`] copies a view
//! into an `Event`; the ingest buffer ([`crate::Packed`]) keeps bytes that were encoded here or checked
//! so, and builds Arrow columns from views without an `Event` in between (checking each column's UTF-8
//! once, as a whole, rather than each string again).

use tacet_model::Kind;

use crate::Event;

/// Why bytes are not an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an encoded event: {0}")]
pub struct DecodeError(&'static str);

/// Device classes; the codec stores an index, so only append.
pub const DEVICES: [&str; 6] = ["desktop", "mobile", "tablet", "appliance", "bot", "unknown"];
/// Referrer classes; the codec stores an index, so only append.
pub const REFERRER_CLASSES: [&str; 6] =
    ["direct", "internal", "search", "social", "email", "other"];
/// Reasons for anonymisation; the codec stores an index, so only append.
pub(crate) const ANONYMISED: [&str; 3] = ["dnt", "gpc", "consent"];

fn index_of(list: &[&str], v: &str) -> u8 {
    list.iter()
        .position(|x| *x == v)
        .expect("a value from the codec's list") as u8
}

/// Where one encoded event lies in a buffer, and what the ingest buffer sorts and partitions it by.
/// Only [`Event::encode`] and [`Span::split`] make one, so a span always covers a whole, checked event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub kind: Kind,
    pub ts_millis: i64,
    /// It has a visitor id (and so, once the log has numbered it, an arrival).
    pub identified: bool,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Span {
    /// Checks the event at `offset` of `bytes` and says where it ends.
    pub fn split(bytes: &[u8], offset: usize) -> Result<Span, DecodeError> {
        let mut r = bytes.get(offset..).ok_or(DecodeError("truncated"))?;
        let before = r.len();
        let v = View::read_checked(&mut r)?;
        Ok(Span {
            kind: v.kind,
            ts_millis: v.ts_millis,
            identified: v.visitor_id.is_some(),
            start: offset,
            end: offset + (before - r.len()),
        })
    }

    /// The offset just past this event.
    pub fn end(&self) -> usize {
        self.end
    }
}

/// An encoded event read in place: every string is a slice of the bytes (UTF-8 when the bytes were
/// encoded by [`Event::encode`] or read once with [`View::read_checked`]).
#[derive(Debug, Clone)]
pub(crate) struct View<'a> {
    pub(crate) kind: Kind,
    pub(crate) ts_millis: i64,
    pub(crate) visitor_id: Option<i64>,
    pub(crate) is_bot: bool,
    pub(crate) device: &'static str,
    pub(crate) referrer_class: &'static str,
    pub(crate) anonymised: Option<&'static str>,
    /// browser, browser_version, os, os_version, url_host, url_path.
    pub(crate) strings: [&'a [u8]; 6],
    /// The optional strings, in the order `Event::encode` writes them.
    pub(crate) options: [Option<&'a [u8]>; OPTIONS],
    pub(crate) props: Strings<'a>,
    pub(crate) stack: Strings<'a>,
}

/// The strings of the layout, in order (the fields of `Event` they hold).
pub(crate) const STRING_FIELDS: [&str; 6] = [
    "browser",
    "browser_version",
    "os",
    "os_version",
    "url_host",
    "url_path",
];

/// The optional strings of the layout, in order.
pub(crate) const OPTION_FIELDS: [&str; OPTIONS] = [
    "user_pseudonym",
    "country",
    "region",
    "city",
    "ip_prefix",
    "url_query",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "referrer_host",
    "referrer_source",
    "name",
    "error_type",
    "message",
    "release",
    "fingerprint",
];

/// The optional strings of the layout, counted.
pub(crate) const OPTIONS: usize = 18;

/// `user_pseudonym`'s place among the optional strings.
pub(crate) const USER_PSEUDONYM: usize = 0;

/// A run of `u32 length + UTF-8` strings, their lengths checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Strings<'a> {
    pub(crate) count: usize,
    bytes: &'a [u8],
}

impl<'a> Iterator for Strings<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.count == 0 {
            return None;
        }
        self.count -= 1;
        Some(get_bytes(&mut self.bytes).expect("checked when the view was read"))
    }
}

impl<'a> View<'a> {
    /// Reads one event from the front of `input` and checks that its strings are UTF-8, advancing it:
    /// for bytes from outside.
    pub(crate) fn read_checked(input: &mut &'a [u8]) -> Result<View<'a>, DecodeError> {
        let v = View::read(input)?;
        let ok = |b: &[u8]| std::str::from_utf8(b).is_ok();
        let (mut props, mut stack) = (v.props, v.stack);
        let valid = v.strings.iter().all(|s| ok(s))
            && v.options.iter().flatten().all(|s| ok(s))
            && props.all(ok)
            && stack.all(ok);
        if valid {
            Ok(v)
        } else {
            Err(DecodeError("invalid UTF-8"))
        }
    }

    /// Reads one event from the front of `input`, advancing it, and checks its layout (not its strings'
    /// UTF-8: for bytes encoded here or read with [`View::read_checked`] before).
    pub(crate) fn read(input: &mut &'a [u8]) -> Result<View<'a>, DecodeError> {
        let r = input;
        let kind = *Kind::ALL
            .get(take_u8(r)? as usize)
            .ok_or(DecodeError("unknown kind"))?;
        let ts_millis = i64::from_le_bytes(take(r, 8)?.try_into().expect("8 bytes"));
        let visitor_id = match take_u8(r)? {
            0 => None,
            1 => Some(i64::from_le_bytes(take(r, 8)?.try_into().expect("8 bytes"))),
            _ => return Err(DecodeError("bad visitor tag")),
        };
        let is_bot = take_u8(r)? != 0;
        let device = *DEVICES
            .get(take_u8(r)? as usize)
            .ok_or(DecodeError("unknown device"))?;
        let referrer_class = *REFERRER_CLASSES
            .get(take_u8(r)? as usize)
            .ok_or(DecodeError("unknown referrer class"))?;
        let anonymised = match take_u8(r)? {
            0 => None,
            i => Some(
                *ANONYMISED
                    .get(i as usize - 1)
                    .ok_or(DecodeError("unknown anonymisation reason"))?,
            ),
        };
        let mut strings: [&[u8]; 6] = [&[]; 6];
        for s in &mut strings {
            *s = get_bytes(r)?;
        }
        let mut options = [None; OPTIONS];
        for o in &mut options {
            *o = match take_u8(r)? {
                0 => None,
                1 => Some(get_bytes(r)?),
                _ => return Err(DecodeError("bad option tag")),
            };
        }
        let props = get_strings(r, 2)?;
        let stack = get_strings(r, 1)?;
        Ok(View {
            kind,
            ts_millis,
            visitor_id,
            is_bot,
            device,
            referrer_class,
            anonymised,
            strings,
            options,
            props,
            stack,
        })
    }

    /// The event, copied out (for tests and tools: the flush reads views). Only for a view of checked
    /// or encoded bytes (see [`View`]).
    pub(crate) fn to_event(&self) -> Event {
        let text = |b: &[u8]| utf8(b).to_owned();
        let s = |i: usize| text(self.strings[i]);
        let o = |i: usize| self.options[i].map(text);
        let mut props = Vec::with_capacity(self.props.count);
        let mut it = self.props;
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            props.push((text(k), text(v)));
        }
        Event {
            kind: self.kind,
            ts_millis: self.ts_millis,
            visitor_id: self.visitor_id,
            user_pseudonym: o(USER_PSEUDONYM),
            browser: s(0),
            browser_version: s(1),
            os: s(2),
            os_version: s(3),
            device: self.device,
            is_bot: self.is_bot,
            country: o(1),
            region: o(2),
            city: o(3),
            ip_prefix: o(4),
            url_host: s(4),
            url_path: s(5),
            url_query: o(5),
            utm_source: o(6),
            utm_medium: o(7),
            utm_campaign: o(8),
            utm_term: o(9),
            utm_content: o(10),
            referrer_host: o(11),
            referrer_class: self.referrer_class,
            referrer_source: o(12),
            name: o(13),
            props,
            error_type: o(14),
            message: o(15),
            stack: self.stack.map(text).collect(),
            release: o(16),
            fingerprint: o(17),
            anonymised: self.anonymised,
            arrival: None,
        }
    }
}

impl Event {
    /// The strings every event has, in the order of its binary form.
    fn required_strings(&self) -> [&String; 6] {
        [
            &self.browser,
            &self.browser_version,
            &self.os,
            &self.os_version,
            &self.url_host,
            &self.url_path,
        ]
    }

    /// The optional strings, in the order of its binary form.
    fn optional_strings(&self) -> [&Option<String>; 18] {
        [
            &self.user_pseudonym,
            &self.country,
            &self.region,
            &self.city,
            &self.ip_prefix,
            &self.url_query,
            &self.utm_source,
            &self.utm_medium,
            &self.utm_campaign,
            &self.utm_term,
            &self.utm_content,
            &self.referrer_host,
            &self.referrer_source,
            &self.name,
            &self.error_type,
            &self.message,
            &self.release,
            &self.fingerprint,
        ]
    }

    /// How many bytes [`Event::encode`] appends: a record is allocated once at its size, not grown.
    pub fn encoded_len(&self) -> usize {
        const STR: usize = 4;
        // kind 1, ts 8, the visitor's flag 1 (and its id 8), bot, device, referrer class and anonymised 1
        // each, the props and stack counts 4 each
        let fixed = 22 + if self.visitor_id.is_some() { 8 } else { 0 };
        fixed
            + self
                .required_strings()
                .iter()
                .map(|s| STR + s.len())
                .sum::<usize>()
            + self
                .optional_strings()
                .iter()
                .map(|o| 1 + o.as_ref().map_or(0, |s| STR + s.len()))
                .sum::<usize>()
            + self
                .props
                .iter()
                .map(|(k, v)| 2 * STR + k.len() + v.len())
                .sum::<usize>()
            + self.stack.iter().map(|f| STR + f.len()).sum::<usize>()
    }

    /// Appends this event's binary form to `buf`; where it lies there.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Span {
        let start = buf.len();
        let kind = Kind::ALL
            .iter()
            .position(|k| *k == self.kind)
            .expect("a known kind") as u8;
        buf.push(kind);
        buf.extend_from_slice(&self.ts_millis.to_le_bytes());
        match self.visitor_id {
            None => buf.push(0),
            Some(v) => {
                buf.push(1);
                buf.extend_from_slice(&v.to_le_bytes());
            }
        }
        buf.push(u8::from(self.is_bot));
        buf.push(
            DEVICES
                .iter()
                .position(|d| *d == self.device)
                .unwrap_or(DEVICES.len() - 1) as u8,
        );
        buf.push(index_of(&REFERRER_CLASSES, self.referrer_class));
        buf.push(self.anonymised.map_or(0, |a| 1 + index_of(&ANONYMISED, a)));
        for s in self.required_strings() {
            put_str(buf, s);
        }
        for o in self.optional_strings() {
            match o {
                None => buf.push(0),
                Some(s) => {
                    buf.push(1);
                    put_str(buf, s);
                }
            }
        }
        buf.extend_from_slice(&(self.props.len() as u32).to_le_bytes());
        for (k, v) in &self.props {
            put_str(buf, k);
            put_str(buf, v);
        }
        buf.extend_from_slice(&(self.stack.len() as u32).to_le_bytes());
        for f in &self.stack {
            put_str(buf, f);
        }
        Span {
            kind: self.kind,
            ts_millis: self.ts_millis,
            identified: self.visitor_id.is_some(),
            start,
            end: buf.len(),
        }
    }

    /// Reads one event from the front of `input`, advancing it.
    pub fn decode(input: &mut &[u8]) -> Result<Event, DecodeError> {
        View::read_checked(input).map(|v| v.to_event())
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if r.len() < n {
        return Err(DecodeError("truncated"));
    }
    let (head, tail) = r.split_at(n);
    *r = tail;
    Ok(head)
}

fn take_u8(r: &mut &[u8]) -> Result<u8, DecodeError> {
    Ok(take(r, 1)?[0])
}

fn take_u32(r: &mut &[u8]) -> Result<u32, DecodeError> {
    Ok(u32::from_le_bytes(take(r, 4)?.try_into().expect("4 bytes")))
}

fn get_bytes<'a>(r: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let n = take_u32(r)? as usize;
    take(r, n)
}

/// A string of a view of checked or encoded bytes.
pub(crate) fn utf8(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("a view's strings were checked or encoded as UTF-8")
}

/// A u32 count of groups of `per` strings, checked, as a run of `count * per` strings.
fn get_strings<'a>(r: &mut &'a [u8], per: usize) -> Result<Strings<'a>, DecodeError> {
    let groups = take_u32(r)? as usize;
    let start = *r;
    for _ in 0..groups * per {
        get_bytes(r)?;
    }
    Ok(Strings {
        count: groups * per,
        bytes: &start[..start.len() - r.len()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::event;
    use crate::{IpMode, TenantPolicy};

    #[test]
    fn round_trip_and_truncation() {
        let e = event(
            serde_json::json!({"kind": "crash", "url": "https://a.example/x?utm_source=n&utm_term=t&page=3", "user_id": "u",
                "referrer": "https://r.example/", "error_type": "E", "message": "m", "stack": ["a", "b"], "release": "1",
                "props": {"k": "v", "n": 2}}),
            &TenantPolicy {
                ip: IpMode::Truncate,
                query_params: vec!["page".into()],
                ..TenantPolicy::default()
            },
            "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X)",
        );
        assert_eq!(
            (e.device, e.ip_prefix.as_deref(), e.url_query.as_deref()),
            ("tablet", Some("203.0.113.0/24"), Some("page=3"))
        );
        assert!(e.fingerprint.is_some() && e.visitor_id.is_some());
        let anonymous = event(
            serde_json::json!({"kind": "pageview", "url": "https://a.example/", "dnt": true,
                "referrer": "https://www.google.com/"}),
            &TenantPolicy::default(),
            "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X)",
        );
        assert_eq!(
            (
                anonymous.anonymised,
                anonymous.visitor_id,
                anonymous.referrer_source.as_deref()
            ),
            (Some("dnt"), None, Some("Google"))
        );
        let mut buf = Vec::new();
        // `encoded_len` is exact: with a visitor id, optional strings, props and a stack, and without.
        for ev in [&e, &anonymous, &e] {
            let before = buf.len();
            let span = ev.encode(&mut buf);
            assert_eq!(buf.len() - before, ev.encoded_len());
            assert_eq!((span.start, span.end), (before, buf.len()));
        }
        let mut r = &buf[..];
        assert_eq!(Event::decode(&mut r).unwrap(), e);
        assert_eq!(Event::decode(&mut r).unwrap(), anonymous);
        assert_eq!(Event::decode(&mut r).unwrap(), e);
        assert!(r.is_empty());
        for cut in [1, 10, buf.len() / 4] {
            let mut r = &buf[..cut];
            assert!(Event::decode(&mut r).is_err(), "cut at {cut}");
        }
    }

    /// Bytes from outside (replay) are checked for UTF-8 in every kind of string: a required one, an
    /// optional one, a property key or value and a frame.
    #[test]
    fn bytes_from_outside_must_be_utf8() {
        let e = event(
            serde_json::json!({"kind": "crash", "url": "https://a.example/req", "error_type": "opt",
                "stack": ["frame"], "props": {"pkey": "pval"}}),
            &TenantPolicy::default(),
            "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
        );
        let mut buf = Vec::new();
        e.encode(&mut buf);
        assert!(Span::split(&buf, 0).is_ok());
        for word in ["req", "opt", "pkey", "pval", "frame"] {
            let at = buf
                .windows(word.len())
                .position(|w| w == word.as_bytes())
                .unwrap_or_else(|| panic!("{word} is encoded"));
            let mut bad = buf.clone();
            bad[at] = 0xff;
            assert_eq!(
                Span::split(&bad, 0),
                Err(DecodeError("invalid UTF-8")),
                "{word}"
            );
            assert!(Event::decode(&mut &bad[..]).is_err(), "{word}");
            // The layout alone still reads: only the checked read refuses it.
            assert!(View::read(&mut &bad[..]).is_ok(), "{word}");
        }
    }
}
