//! Dashboard sessions that every node accepts: the cookie is a signed token, so a Service may send a
//! browser to any replica, and nothing about a session is kept on disk but the fact that it ended.
//!
//! A token is `<nonce>.<tenant>.<key hash>.<created>.<seen>.<mac>`: a random 128-bit nonce, the tenant, the
//! *keyed hash* of the read key that opened the session (never the key), its login and last-seen times
//! (Unix seconds), and an HMAC-SHA256 over all of it under the session key, which the nodes share through
//! the key store (`AccessKeys::derive`, from the pepper in `keys/access.key`). Every request checks the
//! key hash against the tenant's keys again, so revoking or expiring the key ends its sessions at once on
//! every node. Sessions end after `idle` without a request (the token's `seen` is renewed at most once a
//! minute, with a new cookie), after `lifetime` in any case, and at logout: the nonce is recorded in
//! `<shared>/sessions/<nonce>` until the session would have expired, which every node checks, so a copied
//! cookie does not outlive its logout. The form token (CSRF) is a MAC of the nonce: the same on every node.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tacet_model::TenantId;

/// Failed logins from one client address allowed in `FAILURE_WINDOW`.
const MAX_FAILURES: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// How stale a token's `seen` may get before a request renews it (the idle timeout's precision).
const RENEW_AFTER_SECS: u64 = 60;
/// A token from a node whose clock runs this far ahead is still accepted.
const CLOCK_SKEW_SECS: u64 = 60;

/// One logged-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub tenant: TenantId,
    /// `AccessKeys::hash` of the read key that opened the session.
    pub key_hash: [u8; 32],
    /// Sent back by every form of the session (defence in depth beside `SameSite=Strict`).
    pub csrf: String,
    nonce: String,
    created: u64,
    seen: u64,
}

pub struct Sessions {
    idle: Duration,
    lifetime: Duration,
    key: [u8; 32],
    /// Where ended sessions are recorded for every node; `None`: this process only.
    ended_dir: Option<tacet_state::Dir>,
    /// Nonces ended here, with when their sessions would have expired anyway.
    ended: Mutex<HashMap<String, u64>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("idle", &self.idle)
            .field("lifetime", &self.lifetime)
            .field("ended_dir", &self.ended_dir)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("the OS random source");
    hex::encode(b)
}

impl Sessions {
    /// `key`: the session key every node shares; `ended_dir`: where logouts are recorded for all of them.
    pub fn new(
        idle: Duration,
        lifetime: Duration,
        key: [u8; 32],
        ended_dir: Option<tacet_state::Dir>,
    ) -> Self {
        Self {
            idle,
            lifetime,
            key,
            ended_dir,
            ended: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    fn mac_bytes(&self, label: &str, payload: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("any key length");
        mac.update(label.as_bytes());
        mac.update(b"\n");
        mac.update(payload.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn mac(&self, label: &str, payload: &str) -> String {
        hex::encode(self.mac_bytes(label, payload))
    }

    fn token(&self, s: &Session) -> String {
        let payload = format!(
            "{}.{}.{}.{}.{}",
            s.nonce,
            s.tenant.as_str(),
            hex::encode(s.key_hash),
            s.created,
            s.seen
        );
        let mac = self.mac("tacet dashboard session v1", &payload);
        format!("{payload}.{mac}")
    }

    fn session(
        &self,
        nonce: String,
        tenant: TenantId,
        key_hash: [u8; 32],
        created: u64,
    ) -> Session {
        Session {
            csrf: self.mac("tacet dashboard form", &nonce)[..32].to_owned(),
            nonce,
            tenant,
            key_hash,
            created,
            seen: created,
        }
    }

    /// Opens a session; returns the cookie's token.
    pub fn open(&self, tenant: TenantId, key_hash: [u8; 32]) -> String {
        self.token(&self.session(random_hex(16), tenant, key_hash, now_secs()))
    }

    /// The live session of a token, and a renewed token to set as the cookie when its `seen` is stale.
    pub fn get(&self, token: &str) -> Option<(Session, Option<String>)> {
        let (payload, mac) = token.rsplit_once('.')?;
        let mut given = [0u8; 32];
        hex::decode_to_slice(mac, &mut given).ok()?;
        let expected = self.mac_bytes("tacet dashboard session v1", payload);
        if !crate::access::constant_time_eq(&expected, &given) {
            return None;
        }
        let parts: Vec<&str> = payload.split('.').collect();
        let [nonce, tenant, key_hash, created, seen] = parts[..] else {
            return None;
        };
        let mut hash = [0u8; 32];
        hex::decode_to_slice(key_hash, &mut hash).ok()?;
        let (created, seen): (u64, u64) = (created.parse().ok()?, seen.parse().ok()?);
        let now = now_secs();
        let live = seen <= now + CLOCK_SKEW_SECS
            && now.saturating_sub(seen) < self.idle.as_secs()
            && now.saturating_sub(created) < self.lifetime.as_secs();
        if !live || self.has_ended(nonce) {
            return None;
        }
        let mut session =
            self.session(nonce.to_owned(), TenantId::new(tenant).ok()?, hash, created);
        session.seen = seen;
        let renewed = (now.saturating_sub(seen) >= RENEW_AFTER_SECS).then(|| {
            session.seen = now;
            self.token(&session)
        });
        Some((session, renewed))
    }

    /// Seconds until the session of `s` reaches its lifetime: the cookie's `Max-Age`.
    pub fn remaining(&self, s: &Session) -> u64 {
        (s.created + self.lifetime.as_secs()).saturating_sub(now_secs())
    }

    fn has_ended(&self, nonce: &str) -> bool {
        if self
            .ended
            .lock()
            .expect("ended sessions lock")
            .contains_key(nonce)
        {
            return true;
        }
        // A store that cannot be asked: the session holds (a logout elsewhere is not seen until it can).
        self.ended_dir
            .as_ref()
            .is_some_and(|dir| dir.exists(nonce).unwrap_or(false))
    }

    /// Ends a session here and, through `ended_dir`, on every node (logout, or its key no longer
    /// authenticates). Records of sessions that would have expired anyway are removed on the way.
    pub fn end(&self, session: &Session) {
        let expires = session.created + self.lifetime.as_secs();
        let now = now_secs();
        {
            let mut ended = self.ended.lock().expect("ended sessions lock");
            ended.retain(|_, e| *e > now);
            ended.insert(session.nonce.clone(), expires);
        }
        let Some(dir) = &self.ended_dir else {
            return;
        };
        if let Err(e) = dir.put(&session.nonce, expires.to_string().as_bytes()) {
            tracing::warn!(dir = ?dir, error = %e,
                "cannot record a dashboard logout for the other nodes; it holds on this node only");
        }
        if let Ok(entries) = dir.list() {
            for entry in entries.into_iter().filter(|e| !e.is_dir) {
                let stale = dir
                    .read(&entry.name)
                    .ok()
                    .flatten()
                    .and_then(|t| String::from_utf8_lossy(&t).trim().parse::<u64>().ok())
                    .is_none_or(|e| e <= now);
                if stale {
                    let _ = dir.delete(&entry.name);
                }
            }
        }
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

    fn sessions(key: u8, dir: Option<std::path::PathBuf>) -> Sessions {
        Sessions::new(
            Duration::from_secs(60),
            Duration::from_secs(600),
            [key; 32],
            dir.as_ref().map(tacet_state::Dir::from),
        )
    }

    #[test]
    fn a_session_lives_until_logout_and_only_under_its_token() {
        let s = sessions(1, None);
        let token = s.open(tenant(), [7; 32]);
        let (got, renewed) = s.get(&token).unwrap();
        assert_eq!(
            (got.tenant.clone(), got.key_hash, renewed),
            (tenant(), [7; 32], None)
        );
        assert_eq!(got.csrf.len(), 32);
        // Any change to the token, or another node's key, and it is nobody's.
        let forged = token.replacen("acme", "acmf", 1);
        assert!(s.get(&forged).is_none());
        assert!(s.get(&token[..token.len() - 1]).is_none());
        assert!(sessions(2, None).get(&token).is_none());
        s.end(&got);
        assert!(s.get(&token).is_none());
    }

    #[test]
    fn nodes_with_one_key_share_sessions_form_tokens_and_logouts() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            sessions(3, Some(dir.path().to_owned())),
            sessions(3, Some(dir.path().to_owned())),
        );
        let token = a.open(tenant(), [9; 32]);
        let (on_a, _) = a.get(&token).unwrap();
        let (on_b, _) = b.get(&token).unwrap();
        assert_eq!(on_a, on_b);
        b.end(&on_b);
        assert!(a.get(&token).is_none(), "a logout on b ends it on a");
    }

    #[test]
    fn idle_and_old_sessions_expire_and_a_stale_seen_is_renewed() {
        let s = sessions(4, None);
        let at = |created: u64, seen: u64| {
            let mut x = s.session("00".repeat(16), tenant(), [1; 32], created);
            x.seen = seen;
            s.token(&x)
        };
        let now = now_secs();
        assert!(
            s.get(&at(now - 100, now - 61)).is_none(),
            "idle for over a minute"
        );
        assert!(s.get(&at(now - 601, now)).is_none(), "past its lifetime");
        let (session, renewed) = s.get(&at(now - 100, now - 30)).unwrap();
        assert_eq!((session.seen, renewed), (now - 30, None));
        let s = Sessions::new(
            Duration::from_secs(600),
            Duration::from_secs(6000),
            [4; 32],
            None,
        );
        let mut x = s.session("11".repeat(16), tenant(), [1; 32], now - 200);
        x.seen = now - 120;
        let (_, renewed) = s.get(&s.token(&x)).unwrap();
        let (renewed, _) = s.get(&renewed.expect("renewed after a minute")).unwrap();
        assert!(renewed.seen >= now);
    }

    #[test]
    fn repeated_failed_logins_from_one_address_are_refused_for_a_while() {
        let s = sessions(5, None);
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
