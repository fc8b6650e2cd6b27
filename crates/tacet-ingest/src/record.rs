//! What one write-ahead-log record holds: the pseudonymised events of one request, for one tenant.
//!
//! Layout: version u8 (2; 1 was the event layout before the privacy engine's columns), tenant id as u16 length + bytes, event count u32, then each event as encoded by
//! `tacet_privacy::Event::encode`.

use tacet_model::TenantId;
use tacet_privacy::Event;

const VERSION: u8 = 2;

pub(crate) fn encode(tenant: &TenantId, events: &[Event]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64 + events.len() * 160);
    buf.push(VERSION);
    buf.extend_from_slice(&(tenant.as_str().len() as u16).to_le_bytes());
    buf.extend_from_slice(tenant.as_str().as_bytes());
    buf.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for e in events {
        e.encode(&mut buf);
    }
    buf
}

pub(crate) fn decode(mut payload: &[u8]) -> Result<(TenantId, Vec<Event>), String> {
    let r = &mut payload;
    let mut take = |n: usize| -> Result<&[u8], String> {
        if r.len() < n {
            return Err("truncated record".into());
        }
        let (head, tail) = r.split_at(n);
        *r = tail;
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
    let mut events = Vec::with_capacity(count.min(100_000));
    for _ in 0..count {
        events.push(Event::decode(r).map_err(|e| e.to_string())?);
    }
    if !r.is_empty() {
        return Err("trailing bytes after the events".into());
    }
    Ok((tenant, events))
}
