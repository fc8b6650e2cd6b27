//! The vocabulary of Tacet: event kinds, the incoming event as a client sends it ([`RawEvent`]), its
//! validation, the decoding of request bodies ([`decode_body`]) and report parameters ([`ReportParams`]),
//! the [`Clock`], and the Arrow schema of the `events` table.
//!
//! This crate does no I/O. A [`RawEvent`] still holds raw identifiers (user id, full URL): it must never be
//! written anywhere. Only `tacet-privacy` turns it into something storable.

pub mod body;
pub mod clock;
pub mod event;
pub mod params;
pub mod schema;
pub mod tenant;

pub use body::{BodyError, BodyLimits, Item, Items, decode_body};
pub use clock::{Clock, ManualClock, SystemClock};
pub use event::{FieldError, Kind, RawEvent, parse_event, parse_event_json, parse_event_str};
pub use params::{ParamError, ReportParams};
pub use tenant::{TenantId, TenantIdError};
