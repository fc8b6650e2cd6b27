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
    UserPseudonyms::new(subject_key, tenant).of(user_id)
}

/// [`user_pseudonym`] for many user ids of one tenant and key: the key's HMAC pads and the tenant's name
/// are hashed once, so each id costs two SHA-256 blocks instead of four.
#[derive(Clone)]
pub struct UserPseudonyms(hmac::Hmac<sha2::Sha256>);

impl UserPseudonyms {
    pub fn new(subject_key: &[u8; 32], tenant: &TenantId) -> Self {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(subject_key)
            .expect("HMAC takes keys of any length");
        mac.update(tenant.as_str().as_bytes());
        mac.update(&[0]);
        Self(mac)
    }

    /// The pseudonym of `user_id`: the same as [`user_pseudonym`].
    pub fn of(&self, user_id: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut mac = self.0.clone();
        mac.update(user_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(32);
        for b in &digest[..16] {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
        out
    }
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
        // The prepared form gives the same pseudonyms, for any number of ids.
        let prepared = UserPseudonyms::new(&k, &a);
        assert_eq!(prepared.of("alice@example.com"), p);
        assert_eq!(prepared.of("bob"), user_pseudonym(&k, &a, "bob"));
        // A fixed vector: HMAC-SHA256(key 0x07 x 32, "a\0alice@example.com"), first 16 bytes.
        assert_eq!(p, "c2ae2e0edd56895bbd6d9e0bd35e5861");
    }

    #[test]
    fn keys_debug_is_redacted() {
        let k = Keys {
            visitor_salt: [0xab; 32],
            subject_key: [0xcd; 32],
        };
        assert_eq!(format!("{k:?}"), "Keys { .. }");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn tenant() -> impl Strategy<Value = TenantId> {
            "[a-z0-9][a-z0-9_-]{0,15}".prop_map(|t| TenantId::new(&t).unwrap())
        }

        fn ip() -> impl Strategy<Value = IpAddr> {
            prop_oneof![
                any::<[u8; 4]>().prop_map(IpAddr::from),
                any::<[u8; 16]>().prop_map(IpAddr::from),
            ]
        }

        proptest! {
            /// The same visitor (tenant, IP, user agent) on the same day (salt) always gets the same id.
            #[test]
            fn same_visitor_same_day_same_id(salt: [u8; 32], t in tenant(), ip in ip(), ua in ".{0,200}") {
                prop_assert_eq!(visitor_id(&salt, &t, ip, &ua), visitor_id(&salt, &t, ip, &ua));
            }

            /// Across days (salts) the same visitor's ids are unrelated.
            #[test]
            fn other_day_other_id(a: [u8; 32], b: [u8; 32], t in tenant(), ip in ip(), ua in ".{0,200}") {
                prop_assume!(a != b);
                prop_assert_ne!(visitor_id(&a, &t, ip, &ua), visitor_id(&b, &t, ip, &ua));
            }

            /// Across tenants the same visitor's ids are unrelated, even on the same day.
            #[test]
            fn other_tenant_other_id(salt: [u8; 32], t1 in tenant(), t2 in tenant(), ip in ip(), ua in ".{0,200}") {
                prop_assume!(t1 != t2);
                prop_assert_ne!(visitor_id(&salt, &t1, ip, &ua), visitor_id(&salt, &t2, ip, &ua));
            }

            /// Different visitors on the same day get different ids.
            #[test]
            fn other_visitor_other_id(salt: [u8; 32], t in tenant(), ip1 in ip(), ip2 in ip(), ua in ".{0,50}") {
                prop_assume!(ip1 != ip2);
                prop_assert_ne!(visitor_id(&salt, &t, ip1, &ua), visitor_id(&salt, &t, ip2, &ua));
            }

            /// User pseudonyms are stable under one key, and differ across keys (rotation) and tenants.
            #[test]
            fn user_pseudonyms(k1: [u8; 32], k2: [u8; 32], t1 in tenant(), t2 in tenant(), user in ".{1,64}") {
                prop_assert_eq!(user_pseudonym(&k1, &t1, &user), user_pseudonym(&k1, &t1, &user));
                prop_assume!(k1 != k2 && t1 != t2);
                prop_assert_ne!(user_pseudonym(&k1, &t1, &user), user_pseudonym(&k2, &t1, &user));
                prop_assert_ne!(user_pseudonym(&k1, &t1, &user), user_pseudonym(&k1, &t2, &user));
            }
        }
    }
}
