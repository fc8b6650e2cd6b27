//! The HTTP face of Tacet: the only crate that knows HTTP.
//!
//! ```text
//!  POST /v1/events        ingest key (X-Tacet-Key header or ?key=)  → decode body → validate each event
//!                         → Pipeline::accept → 202 {accepted, rejected: []} | 422 with the rejected items
//!  POST /v1/sql           read key (Authorization: Bearer)          → QueryEngine::sql    → JSON rows
//!  GET  /v1/reports/NAME  read key                                  → QueryEngine::report → JSON rows
//!  POST /v1/admin/…      admin key                                 → subject rights, retention, audit
//!                         (admin.rs; Steward from tacet-lifecycle)
//!  GET  /healthz, /readyz  liveness; readiness (503 while the write-ahead log is replayed, and while the
//!                          last flush to the lake failed, saying why)
//!  GET  /metrics          Prometheus text format
//!  GET  /t.js             the tracker script (web.rs), gzipped: ?v=<version> pins a version (current or
//!                          archived; immutable, with the README's integrity hash), without it the current
//!  GET  /v1/pixel.gif     a page view without JavaScript (?key=&url=&ref=)
//!  GET  /demo             a page with the tracker for the demo tenant (embedded configuration only)
//!  GET  /ui/…             the dashboard (ui/): login with the read key, usage, realtime, crash triage;
//!                         every number through run_report, the function behind /v1/reports/NAME
//! ```
//!
//! Beacons may come from any origin unless the tenant lists its `origins`; then a POST with another
//! `Origin` is refused (403) and the allowed origin is echoed in `Access-Control-Allow-Origin`.
//!
//! Every refusal is a 4xx with a JSON body `{"error": "…"}` that says what to fix; 503 and 429 carry
//! `Retry-After`; 500 bodies are generic and the details go to the log. Nothing here logs a payload, a key
//! or a client address.

pub mod access;
mod admin;
mod admission;
pub mod alerts;
mod client_ip;
mod config;
mod error;
pub mod flight;
pub mod limits;
pub mod listener;
pub mod pg;
mod routes;
mod shares;
mod sourcemaps;
mod tenants;
mod triage_api;
pub mod ui;
mod web;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ipnet::IpNet;
use tacet_ingest::Pipeline;
use tacet_query::QueryEngine;

pub use client_ip::client_ip;
pub use config::ServerConfig;
pub use routes::router;
pub use tacet_model::{BodyError, BodyLimits, decode_body};
pub use tenants::{AuthError, TenantEntry, Tenants};
pub use web::{
    ARCHIVED, TRACKER, VERSIONS, integrity_of, tracker_integrity, tracker_snippet, tracker_version,
    tracker_version_of,
};

/// The demo tenant's keys, for the `/demo` page (the embedded configuration's public demo keys only).
#[derive(Debug, Clone)]
pub struct DemoKeys {
    pub ingest_key: String,
    pub read_key: String,
}

/// What every handler shares: one reference count to clone per request (axum's `State` extractor clones
/// it for each one), the fields behind it ([`Shared`]).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl From<Shared> for AppState {
    fn from(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields of [`AppState`].
#[derive(Debug)]
pub struct Shared {
    pub pipeline: Arc<Pipeline>,
    pub query: Arc<QueryEngine>,
    pub tenants: Arc<Tenants>,
    pub config: Arc<ServerConfig>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<Vec<IpNet>>,
    /// False while the write-ahead log is replayed at start: `/readyz` and `/v1/events` answer 503.
    pub ready: Arc<AtomicBool>,
    /// Renders `/metrics`; the binary installs the recorder and hands this in.
    pub metrics: Option<MetricsRender>,
    /// Serves `/demo` with these keys; `None` answers 404 there.
    pub demo: Option<DemoKeys>,
    /// Rate limits per ingest key, client address and tenant (limits.rs).
    pub limits: Arc<limits::RateLimits>,
    /// Serves the admin API (`/v1/admin/…`); `None` answers 404 there.
    pub steward: Option<Arc<tacet_lifecycle::Steward>>,
    /// Serves the dashboard (`/ui`, ui/); `None` answers 404 there.
    pub dashboard: Option<Arc<ui::Dashboard>>,
}

/// Lets queries see the pipeline's buffered events (accepted, not yet in Parquet).
#[derive(Debug)]
pub struct PipelineFresh(pub Arc<Pipeline>);

impl tacet_query::FreshEvents for PipelineFresh {
    fn snapshot(
        &self,
        tenant: &tacet_model::TenantId,
    ) -> Result<(Vec<arrow::array::RecordBatch>, u64), String> {
        self.0.buffered_snapshot(tenant).map_err(|e| e.to_string())
    }

    fn days(
        &self,
        tenant: &tacet_model::TenantId,
    ) -> Result<Option<std::collections::BTreeSet<chrono::NaiveDate>>, String> {
        Ok(Some(self.0.buffered_days(tenant)))
    }

    fn node(&self) -> Option<u16> {
        self.0.lake().node()
    }
}

/// A function rendering the Prometheus exposition text.
#[derive(Clone)]
pub struct MetricsRender(pub Arc<dyn Fn() -> String + Send + Sync>);

impl std::fmt::Debug for MetricsRender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsRender")
    }
}
