//! Dashboard sessions: held in this process's memory only, never on disk.
//!
//! The cookie carries a random 256-bit token; the server keeps its SHA-256 (a stolen memory dump gives no
//! usable cookie), the tenant, and the *keyed hash* of the read key that opened it (never the key). Every
//! request checks that hash against the tenant's keys again, so revoking or expiring the key ends its
//! sessions at once. Sessions end after `idle` without a request, after `lifetime` in any case, at logout,
//! and when the process stops (everyone logs in again; with several nodes, route a browser to one node).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::Digest;
use tacet_model::TenantId;

/// Most sessions held at once; the oldest idle ones go first beyond it.
const MAX_SESSIONS: usize = 10_000;
/// Failed logins from one client address allowed in `FAILURE_WINDOW`.
const MAX_FAILURES: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub tenant: TenantId,
    /// `AccessKeys::hash` of the read key that opened the session.
    pub key_hash: [u8; 32],
    /// Sent back by every form of the session (defence in depth beside `SameSite=Strict`).
    pub csrf: String,
    created: Instant,
    seen: Instant,
}

#[derive(Debug)]
pub struct Sessions {
    idle: Duration,
    lifetime: Duration,
    map: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS random source");
    hex::encode(b)
}

fn digest(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    pub fn new(idle: Duration, lifetime: Duration) -> Self {
        Self {
            idle,
            lifetime,
            map: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.seen) < self.idle && now.duration_since(s.created) < self.lifetime
    }

    /// Opens a session; returns the cookie's token.
    pub fn open(&self, tenant: TenantId, key_hash: [u8; 32]) -> String {
        let token = random_hex();
        let now = Instant::now();
        let mut map = self.map.lock().expect("sessions lock");
        map.retain(|_, s| self.live(s, now));
        if map.len() >= MAX_SESSIONS {
            // Full of live sessions: the least recently used goes.
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            digest(&token),
            Session {
                tenant,
                key_hash,
                csrf: random_hex(),
                created: now,
                seen: now,
            },
        );
        token
    }

    /// The live session of a token, marked as seen now.
    pub fn get(&self, token: &str) -> Option<Session> {
        let now = Instant::now();
        let mut map = self.map.lock().expect("sessions lock");
        let key = digest(token);
        let live = map.get(&key).is_some_and(|s| self.live(s, now));
        if !live {
            map.remove(&key);
            return None;
        }
        let s = map.get_mut(&key).expect("checked above");
        s.seen = now;
        Some(s.clone())
    }

    /// Ends a session (logout, or its key no longer authenticates).
    pub fn end(&self, token: &str) {
        self.map
            .lock()
            .expect("sessions lock")
            .remove(&digest(token));
    }

    /// Whether `client` may try to log in now; else how long until it may.
    pub fn login_allowed(&self, client: IpAddr) -> Result<(), Duration> {
        let failures = self.failures.lock().expect("failures lock");
        match failures.get(&client) {
            Some(&(n, since)) if n >= MAX_FAILURES && since.elapsed() < FAILURE_WINDOW => {
                Err(FAILURE_WINDOW - since.elapsed())
            }
            _ => Ok(()),
        }
    }

    pub fn login_failed(&self, client: IpAddr) {
        let mut failures = self.failures.lock().expect("failures lock");
        failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        let e = failures.entry(client).or_insert((0, Instant::now()));
        e.0 += 1;
    }

    pub fn login_succeeded(&self, client: IpAddr) {
        self.failures.lock().expect("failures lock").remove(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::new("acme").unwrap()
    }

    #[test]
    fn a_session_lives_until_logout_and_only_under_its_token() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        let token = s.open(tenant(), [7; 32]);
        assert_eq!(token.len(), 64);
        let got = s.get(&token).unwrap();
        assert_eq!(got.tenant, tenant());
        assert_eq!(got.key_hash, [7; 32]);
        assert!(s.get(&random_hex()).is_none());
        s.end(&token);
        assert!(s.get(&token).is_none());
    }

    #[test]
    fn idle_sessions_expire() {
        let s = Sessions::new(Duration::from_millis(30), Duration::from_secs(600));
        let token = s.open(tenant(), [1; 32]);
        std::thread::sleep(Duration::from_millis(60));
        assert!(s.get(&token).is_none());
    }

    #[test]
    fn repeated_failed_logins_from_one_address_are_refused_for_a_while() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(s.login_allowed(ip).is_ok());
            s.login_failed(ip);
        }
        assert!(s.login_allowed(ip).is_err());
        assert!(s.login_allowed(other).is_ok());
    }
}
