//! A compact binary form of [`Event`] for the write-ahead log. Only this crate may build an `Event`, so
//! decoding lives here too.
//!
//! Layout: kind u8, ts i64, visitor_id tag u8 (0 none, 1 some) + i64, is_bot u8, device u8,
//! referrer_class u8, anonymised u8 (0 none, else 1 + index), then strings as `u32 length + UTF-8`,
//! optional strings with a leading 0/1 byte, `props` and `stack` as a u32 count and their strings.
//! `arrival` is not written: it is the log record's sequence number and the event's place in the record,
//! which the reader of the log knows (`Event::set_arrival`).

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

impl Event {
    /// Appends this event's binary form to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
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
        for s in [
            &self.browser,
            &self.browser_version,
            &self.os,
            &self.os_version,
            &self.url_host,
            &self.url_path,
        ] {
            put_str(buf, s);
        }
        for o in [
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
        ] {
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
    }

    /// Reads one event from the front of `input`, advancing it.
    pub fn decode(input: &mut &[u8]) -> Result<Event, DecodeError> {
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
        let (browser, browser_version, os, os_version, url_host, url_path) = (
            get_str(r)?,
            get_str(r)?,
            get_str(r)?,
            get_str(r)?,
            get_str(r)?,
            get_str(r)?,
        );
        let mut opt = || -> Result<Option<String>, DecodeError> {
            match take_u8(r)? {
                0 => Ok(None),
                1 => get_str(r).map(Some),
                _ => Err(DecodeError("bad option tag")),
            }
        };
        let (user_pseudonym, country, region, city, ip_prefix, url_query) =
            (opt()?, opt()?, opt()?, opt()?, opt()?, opt()?);
        let (utm_source, utm_medium, utm_campaign, utm_term, utm_content) =
            (opt()?, opt()?, opt()?, opt()?, opt()?);
        let (referrer_host, referrer_source, name, error_type, message, release, fingerprint) =
            (opt()?, opt()?, opt()?, opt()?, opt()?, opt()?, opt()?);
        let n = take_u32(r)? as usize;
        let mut props = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            props.push((get_str(r)?, get_str(r)?));
        }
        let n = take_u32(r)? as usize;
        let mut stack = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            stack.push(get_str(r)?);
        }
        Ok(Event {
            kind,
            ts_millis,
            visitor_id,
            user_pseudonym,
            browser,
            browser_version,
            os,
            os_version,
            device,
            is_bot,
            country,
            region,
            city,
            ip_prefix,
            url_host,
            url_path,
            url_query,
            utm_source,
            utm_medium,
            utm_campaign,
            utm_term,
            utm_content,
            referrer_host,
            referrer_class,
            referrer_source,
            name,
            props,
            error_type,
            message,
            stack,
            release,
            fingerprint,
            anonymised,
            arrival: None,
        })
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

fn get_str(r: &mut &[u8]) -> Result<String, DecodeError> {
    let n = take_u32(r)? as usize;
    String::from_utf8(take(r, n)?.to_vec()).map_err(|_| DecodeError("invalid UTF-8"))
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
        e.encode(&mut buf);
        anonymous.encode(&mut buf);
        e.encode(&mut buf);
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
}
