//! A compact binary form of [`Event`] for the write-ahead log. Only this crate may build an `Event`, so
//! decoding lives here too.
//!
//! Layout: kind u8, ts i64, visitor_id i64, is_bot u8, device u8, then strings as `u32 length + UTF-8`,
//! optional strings with a leading 0/1 byte, `props` and `stack` as a u32 count and their strings.

use tacet_model::Kind;

use crate::Event;

/// Why bytes are not an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an encoded event: {0}")]
pub struct DecodeError(&'static str);

const DEVICES: [&str; 6] = ["desktop", "mobile", "tablet", "appliance", "bot", "unknown"];

impl Event {
    /// Appends this event's binary form to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let kind = Kind::ALL
            .iter()
            .position(|k| *k == self.kind)
            .expect("a known kind") as u8;
        buf.push(kind);
        buf.extend_from_slice(&self.ts_millis.to_le_bytes());
        buf.extend_from_slice(&self.visitor_id.to_le_bytes());
        buf.push(u8::from(self.is_bot));
        buf.push(
            DEVICES
                .iter()
                .position(|d| *d == self.device)
                .unwrap_or(DEVICES.len() - 1) as u8,
        );
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
            &self.utm_source,
            &self.utm_medium,
            &self.utm_campaign,
            &self.utm_term,
            &self.utm_content,
            &self.referrer_host,
            &self.name,
            &self.error_type,
            &self.message,
            &self.release,
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
        let visitor_id = i64::from_le_bytes(take(r, 8)?.try_into().expect("8 bytes"));
        let is_bot = take_u8(r)? != 0;
        let device = *DEVICES
            .get(take_u8(r)? as usize)
            .ok_or(DecodeError("unknown device"))?;
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
        let (user_pseudonym, country, region, city, ip_prefix) =
            (opt()?, opt()?, opt()?, opt()?, opt()?);
        let (utm_source, utm_medium, utm_campaign, utm_term, utm_content) =
            (opt()?, opt()?, opt()?, opt()?, opt()?);
        let (referrer_host, name, error_type, message, release) =
            (opt()?, opt()?, opt()?, opt()?, opt()?);
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
            utm_source,
            utm_medium,
            utm_campaign,
            utm_term,
            utm_content,
            referrer_host,
            name,
            props,
            error_type,
            message,
            stack,
            release,
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
            serde_json::json!({"kind": "crash", "url": "https://a.example/x?utm_source=n&utm_term=t", "user_id": "u",
                "referrer": "https://r.example/", "error_type": "E", "message": "m", "stack": ["a", "b"], "release": "1",
                "props": {"k": "v", "n": 2}}),
            &TenantPolicy {
                ip_mode: IpMode::Truncate,
            },
            "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X)",
        );
        assert_eq!(
            (e.device, e.ip_prefix.as_deref()),
            ("tablet", Some("203.0.113.0/24"))
        );
        let mut buf = Vec::new();
        e.encode(&mut buf);
        e.encode(&mut buf);
        let mut r = &buf[..];
        assert_eq!(Event::decode(&mut r).unwrap(), e);
        assert_eq!(Event::decode(&mut r).unwrap(), e);
        assert!(r.is_empty());
        for cut in [1, 10, buf.len() / 4] {
            let mut r = &buf[..cut];
            assert!(Event::decode(&mut r).is_err(), "cut at {cut}");
        }
    }
}
