//! The HTTP face of Tacet: the only crate that knows HTTP.
//!
//! ```text
//!  POST /v1/events        ingest key (X-Tacet-Key header or ?key=)  → decode body → validate each event
//!                         → Pipeline::accept → 202 {accepted, rejected: []} | 422 with the rejected items
//!  POST /v1/sql           read key (Authorization: Bearer)          → QueryEngine::sql    → JSON rows
//!  GET  /v1/reports/NAME  read key                                  → QueryEngine::report → JSON rows
//!  GET  /healthz, /readyz
//! ```
//!
//! Every refusal is a 4xx with a JSON body `{"error": "…"}` that says what to fix; 503 and 429 carry
//! `Retry-After`; 500 bodies are generic and the details go to the log. Nothing here logs a payload, a key
//! or a client address.

mod body;
mod client_ip;
mod config;
mod error;
mod routes;
mod tenants;

use std::sync::Arc;

use ipnet::IpNet;
use tacet_ingest::Pipeline;
use tacet_query::QueryEngine;

pub use body::{BodyError, decode_body};
pub use client_ip::client_ip;
pub use config::ServerConfig;
pub use routes::router;
pub use tenants::{TenantEntry, Tenants};

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub query: Arc<QueryEngine>,
    pub tenants: Arc<Tenants>,
    pub config: Arc<ServerConfig>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<Vec<IpNet>>,
}
