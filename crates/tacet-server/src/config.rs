use serde::Deserialize;

/// Limits on what a request may carry (`[http]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes, as sent (compressed or not). Larger bodies get 413.
    pub max_body_bytes: usize,
    /// Largest body after gzip decompression, in bytes; guards against decompression bombs (413).
    pub max_decompressed_bytes: usize,
    /// Most events in one request (413 beyond, found while decoding: the rest of the body is not read).
    pub max_events_per_request: usize,
    /// Largest JSON of one event, in bytes; a bigger event is rejected alone (422 naming it).
    pub max_event_bytes: usize,
    /// Largest SQL text accepted by `/v1/sql`, in bytes.
    pub max_sql_bytes: usize,
    /// Requests per second per ingest key (bursts of twice that); 429 beyond. 0: no limit.
    pub requests_per_second_per_key: u32,
    /// Requests per second per client address (bursts of twice that); 429 beyond. 0: no limit.
    pub requests_per_second_per_client: u32,
    /// Events per second per tenant, its quota (bursts of twice that); 429 beyond. 0: no limit.
    pub events_per_second_per_tenant: u32,
    /// Connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Connections open at once from one client address (a trusted proxy's count only towards the
    /// total); more are closed as they arrive.
    pub max_connections_per_client: usize,
    /// A connection must send a request's headers within this (slow-loris), and a kept-alive connection
    /// its next request (the idle timeout); it is closed otherwise.
    #[serde(with = "humantime_serde")]
    pub header_timeout: std::time::Duration,
    /// A request's body must arrive within this; 408 otherwise.
    #[serde(with = "humantime_serde")]
    pub body_timeout: std::time::Duration,
}

impl ServerConfig {
    pub fn body_limits(&self) -> tacet_model::BodyLimits {
        tacet_model::BodyLimits {
            max_decompressed_bytes: self.max_decompressed_bytes,
            max_events_per_request: self.max_events_per_request,
            max_event_bytes: self.max_event_bytes,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 20,
            max_decompressed_bytes: 16 << 20,
            max_events_per_request: 10_000,
            max_event_bytes: 512 << 10,
            max_sql_bytes: 64 << 10,
            requests_per_second_per_key: 5_000,
            requests_per_second_per_client: 500,
            events_per_second_per_tenant: 100_000,
            max_connections: 10_000,
            max_connections_per_client: 256,
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(30),
        }
    }
}
