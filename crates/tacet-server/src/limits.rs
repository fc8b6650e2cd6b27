//! Rate limits: token buckets (GCRA, the `governor` crate) per ingest key, per client address and, in
//! events, per tenant. A refused request gets 429 with `Retry-After` and is counted per tenant and reason in
//! `tacet_rate_limited_total`, so an operator sees a flood or a misbehaving client.
//!
//! Client addresses are keyed by a hash under a per-process random key: the limiter's table holds no
//! address. Every bucket allows a burst of twice its per-second rate. Idle buckets are dropped every minute
//! (`RateLimits::forget_idle`), so memory stays bounded by the clients seen in the last few seconds.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::ServerConfig;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Too many requests with this ingest key.
    Key,
    /// Too many requests from this client address.
    Client,
    /// Too many events for this tenant.
    Quota,
}

impl Limited {
    pub fn as_str(self) -> &'static str {
        match self {
            Limited::Key => "rate_key",
            Limited::Client => "rate_client",
            Limited::Quota => "quota",
        }
    }
}

/// The limiters of one server.
#[derive(Debug)]
pub struct RateLimits {
    per_key: Option<DefaultKeyedRateLimiter<String>>,
    per_client: Option<DefaultKeyedRateLimiter<u64>>,
    per_tenant: Option<DefaultKeyedRateLimiter<String>>,
    hasher: std::collections::hash_map::RandomState,
    clock: DefaultClock,
    /// Per tenant, the right to decode a heavy body (compressed, or large) off the async workers: one at a
    /// time, so one tenant's bodies never take more than one core from the others.
    decoders: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

/// Heavy bodies one tenant decodes at once.
pub const DECODES_PER_TENANT: usize = 1;

fn quota(per_second: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(per_second.saturating_mul(2)).expect("nonzero");
    Some(Quota::per_second(rate).allow_burst(burst))
}

impl RateLimits {
    pub fn new(config: &ServerConfig) -> Self {
        Self {
            per_key: quota(config.requests_per_second_per_key).map(DefaultKeyedRateLimiter::keyed),
            per_client: quota(config.requests_per_second_per_client)
                .map(DefaultKeyedRateLimiter::keyed),
            per_tenant: quota(config.events_per_second_per_tenant)
                .map(DefaultKeyedRateLimiter::keyed),
            hasher: std::collections::hash_map::RandomState::new(),
            clock: DefaultClock::default(),
            decoders: Default::default(),
        }
    }

    /// The tenant's decoding slots (see `decoders`).
    pub fn decoder(&self, tenant: &str) -> Arc<tokio::sync::Semaphore> {
        let mut all = self.decoders.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            all.entry(tenant.to_owned())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(DECODES_PER_TENANT))),
        )
    }

    /// Takes one request for `key` from `client`; on refusal, which limit and how long to wait.
    pub fn request(&self, key: &str, client: IpAddr) -> Result<(), (Limited, Duration)> {
        if let Some(l) = &self.per_key
            && let Err(wait) = l.check_key(&key.to_owned())
        {
            return Err((Limited::Key, wait.wait_time_from(self.clock.now())));
        }
        if let Some(l) = &self.per_client
            && let Err(wait) = l.check_key(&self.hasher.hash_one(client))
        {
            return Err((Limited::Client, wait.wait_time_from(self.clock.now())));
        }
        Ok(())
    }

    /// Takes `events` from the tenant's quota. A batch larger than the burst can never pass: `Err` with
    /// `None` as the wait.
    pub fn events(&self, tenant: &str, events: usize) -> Result<(), Option<Duration>> {
        let (Some(l), Some(n)) = (
            &self.per_tenant,
            NonZeroU32::new(u32::try_from(events).unwrap_or(u32::MAX)),
        ) else {
            return Ok(());
        };
        match l.check_key_n(&tenant.to_owned(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(wait)) => Err(Some(wait.wait_time_from(self.clock.now()))),
            Err(_) => Err(None),
        }
    }

    /// Drops buckets that are full again (idle clients), bounding memory.
    pub fn forget_idle(&self) {
        for l in [&self.per_key, &self.per_tenant].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_client {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}
