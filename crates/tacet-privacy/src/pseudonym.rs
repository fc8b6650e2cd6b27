//! Keyed pseudonyms: daily visitor ids and per-tenant user pseudonyms.

use std::fmt;
use std::net::IpAddr;

use hmac::{KeyInit, Mac};
use tacet_model::TenantId;

/// The secrets one event is pseudonymised with. `Debug` never shows them.
#[derive(Clone)]
pub struct Keys {
    /// The random salt of the day of receipt; destroyed 48 hours after that day ends.
    pub visitor_salt: [u8; 32],
    /// The tenant's subject key, for user pseudonyms.
    pub subject_key: [u8; 32],
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys { .. }")
    }
}

/// A visitor id: blake3 keyed by the day's salt over (tenant, IP, user agent), first 8 bytes.
///
/// The same person on the same day in the same tenant maps to the same id; across days or tenants ids are
/// unrelated, and once the salt is destroyed nobody can recompute them.
pub fn visitor_id(salt: &[u8; 32], tenant: &TenantId, ip: IpAddr, user_agent: &str) -> i64 {
    let ip16 = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    let mut h = blake3::Hasher::new_keyed(salt);
    h.update(tenant.as_str().as_bytes());
    h.update(&[0]);
    h.update(&ip16);
    h.update(user_agent.as_bytes());
    let out = h.finalize();
    i64::from_le_bytes(out.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// A user pseudonym: HMAC-SHA256 under the tenant's subject key over (tenant, user id), first 16 bytes as hex.
pub fn user_pseudonym(subject_key: &[u8; 32], tenant: &TenantId, user_id: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(subject_key)
        .expect("HMAC takes keys of any length");
    mac.update(tenant.as_str().as_bytes());
    mac.update(&[0]);
    mac.update(user_id.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitor_ids_are_stable_within_a_salt_and_differ_across_salts_and_tenants() {
        let a = TenantId::new("a").unwrap();
        let b = TenantId::new("b").unwrap();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let day1 = [1u8; 32];
        let day2 = [2u8; 32];
        let id = visitor_id(&day1, &a, ip, "UA");
        assert_eq!(id, visitor_id(&day1, &a, ip, "UA"));
        assert_ne!(id, visitor_id(&day2, &a, ip, "UA"));
        assert_ne!(id, visitor_id(&day1, &b, ip, "UA"));
        assert_ne!(id, visitor_id(&day1, &a, ip, "UA2"));
        assert_ne!(
            id,
            visitor_id(&day1, &a, "203.0.113.10".parse().unwrap(), "UA")
        );
        // An IPv4 address and its IPv6-mapped form are the same visitor.
        assert_eq!(
            id,
            visitor_id(&day1, &a, "::ffff:203.0.113.9".parse().unwrap(), "UA")
        );
    }

    #[test]
    fn user_pseudonyms_are_keyed_per_tenant() {
        let a = TenantId::new("a").unwrap();
        let b = TenantId::new("b").unwrap();
        let k = [7u8; 32];
        let p = user_pseudonym(&k, &a, "alice@example.com");
        assert_eq!(p.len(), 32);
        assert_eq!(p, user_pseudonym(&k, &a, "alice@example.com"));
        assert_ne!(p, user_pseudonym(&k, &b, "alice@example.com"));
        assert_ne!(p, user_pseudonym(&[8u8; 32], &a, "alice@example.com"));
        assert!(!p.contains("alice"));
    }

    #[test]
    fn keys_debug_is_redacted() {
        let k = Keys {
            visitor_salt: [0xab; 32],
            subject_key: [0xcd; 32],
        };
        assert_eq!(format!("{k:?}"), "Keys { .. }");
    }
}
