//! What one write-ahead-log record holds: the pseudonymised events of one request, for one tenant.
//!
//! Layout: version u8 (2; 1 was the event layout before the privacy engine's columns), tenant id as u16
//! length + bytes, event count u32, then each event as encoded by `tacet_privacy::Event::encode`. The
//! buffer keeps those event bytes as they are (`tacet_privacy::Packed`): a record is read by splitting it
//! into checked spans, never by building `Event`s.

use tacet_model::TenantId;
use tacet_privacy::{Event, Span};

const VERSION: u8 = 2;

/// The record of `events`, and where each of them lies in it.
pub(crate) fn encode(tenant: &TenantId, events: &[Event]) -> (Vec<u8>, Vec<Span>) {
    let len =
        1 + 2 + tenant.as_str().len() + 4 + events.iter().map(Event::encoded_len).sum::<usize>();
    let mut buf = Vec::with_capacity(len);
    buf.push(VERSION);
    buf.extend_from_slice(&(tenant.as_str().len() as u16).to_le_bytes());
    buf.extend_from_slice(tenant.as_str().as_bytes());
    buf.extend_from_slice(&(events.len() as u32).to_le_bytes());
    let spans = events.iter().map(|e| e.encode(&mut buf)).collect();
    debug_assert_eq!(buf.len(), len, "a record is allocated at its size");
    (buf, spans)
}

/// The tenant of a record and its events' spans, each checked.
pub(crate) fn decode(payload: &[u8]) -> Result<(TenantId, Vec<Span>), String> {
    let mut at = 0;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let head = payload
            .get(at..at + n)
            .ok_or_else(|| "truncated record".to_owned())?;
        at += n;
        Ok(head)
    };
    match take(1)?[0] {
        VERSION => {}
        1 => {
            return Err(
                "a version 1 record, written before the privacy engine's columns existed; \
                 replay it with the Tacet release that wrote it"
                    .into(),
            );
        }
        v => return Err(format!("unknown record version {v}")),
    }
    let n = u16::from_le_bytes(take(2)?.try_into().expect("2 bytes")) as usize;
    let tenant = std::str::from_utf8(take(n)?).map_err(|_| "tenant id is not UTF-8".to_owned())?;
    let tenant = TenantId::new(tenant).map_err(|e| e.to_string())?;
    let count = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
    let mut spans = Vec::with_capacity(count.min(payload.len() / 16));
    for _ in 0..count {
        let span = Span::split(payload, at).map_err(|e| e.to_string())?;
        at = span.end();
        spans.push(span);
    }
    if at != payload.len() {
        return Err("trailing bytes after the events".into());
    }
    Ok((tenant, spans))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_it_did_not_write() {
        let t = TenantId::new("t").unwrap();
        let (empty, spans) = encode(&t, &[]);
        assert!(spans.is_empty());
        assert_eq!(decode(&empty).unwrap(), (t.clone(), vec![]));
        let mut trailing = empty.clone();
        trailing.push(0);
        assert_eq!(
            decode(&trailing).unwrap_err(),
            "trailing bytes after the events"
        );
        let mut more = empty.clone();
        more[4] = 1;
        assert!(decode(&more).unwrap_err().contains("truncated"));
        assert_eq!(decode(&[9]).unwrap_err(), "unknown record version 9");
        assert!(decode(&[1]).unwrap_err().contains("version 1"));
        assert_eq!(decode(&[]).unwrap_err(), "truncated record");
    }
}
