//! The vocabulary of Tacet: event kinds, the incoming event as a client sends it ([`RawEvent`]), its
//! validation, the [`Clock`], and the Arrow schema of the `events` table.
//!
//! This crate does no I/O. A [`RawEvent`] still holds raw identifiers (user id, full URL): it must never be
//! written anywhere. Only `tacet-privacy` turns it into something storable.

pub mod clock;
pub mod event;
pub mod schema;
pub mod tenant;

pub use clock::{Clock, ManualClock, SystemClock};
pub use event::{FieldError, Kind, RawEvent, parse_event};
pub use tenant::{TenantId, TenantIdError};
