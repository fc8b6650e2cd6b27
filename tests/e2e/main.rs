//! End-to-end tests: the real `tacet` binary on an ephemeral port, a temporary data directory, real HTTP.

mod alerts;
mod ballista;
mod browser;
mod cdp;
mod crash;
mod dashboard;
mod deploy;
mod erasure;
mod flight;
mod fsync;
mod geoip;
mod lifecycle;
mod nodes;
mod pgtools;
mod policy;
mod portable;
mod postgres;
mod privacy;
mod production;
#[path = "../../crates/tacet-ingest/tests/support/race.rs"]
mod race_support;
mod s3;
mod security;
mod server;
mod shared;
mod shares;
mod skeleton;
mod sourcemaps;
