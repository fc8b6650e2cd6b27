//! A tenant's privacy policy: what is kept of each event. The privacy-engine issue extends it.

use std::net::IpAddr;

use serde::Deserialize;

/// What is kept of the client's IP address once geography has been looked up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpMode {
    /// Keep nothing of the address (the default).
    #[default]
    Drop,
    /// Keep the network: IPv4 /24, IPv6 /48 (Matomo and Snowplow style), in the `ip_prefix` column.
    Truncate,
}

/// Per-tenant privacy settings, from the `[[tenant]]` table of the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantPolicy {
    /// `"drop"` (default) or `"truncate"`: what is kept of the IP address after the geography lookup.
    pub ip_mode: IpMode,
}

/// The /24 (IPv4) or /48 (IPv6) network of an address, as CIDR text.
pub(crate) fn truncate_ip(ip: IpAddr) -> String {
    let net = match ip {
        IpAddr::V4(v4) => {
            ipnet::IpNet::V4(ipnet::Ipv4Net::new(v4, 24).expect("24 is a valid prefix"))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => return truncate_ip(IpAddr::V4(v4)),
            None => ipnet::IpNet::V6(ipnet::Ipv6Net::new(v6, 48).expect("48 is a valid prefix")),
        },
    };
    net.trunc().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_to_network() {
        assert_eq!(
            truncate_ip("203.0.113.77".parse().unwrap()),
            "203.0.113.0/24"
        );
        assert_eq!(
            truncate_ip("2001:db8:1234:5678::1".parse().unwrap()),
            "2001:db8:1234::/48"
        );
        assert_eq!(
            truncate_ip("::ffff:198.51.100.9".parse().unwrap()),
            "198.51.100.0/24"
        );
    }
}
