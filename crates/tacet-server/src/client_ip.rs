//! The client's address: the peer, or what a trusted proxy says in `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The address of the client that sent the request.
///
/// `X-Forwarded-For` is read only when the peer is a trusted proxy; then the list is walked from the right
/// (the hop closest to us) and the first address that is not itself a trusted proxy is the client. A
/// malformed entry stops the walk at the last good hop, so a client cannot spoof by appending garbage.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer_ip = canonical(peer.ip());
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer_ip) {
        return peer_ip;
    }
    let mut client = peer_ip;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>().map(canonical) else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxy: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.1:4000".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = headers("203.0.113.7");
        assert_eq!(
            client_ip(stranger, &h, &trusted).to_string(),
            "198.51.100.1"
        );
        assert_eq!(client_ip(proxy, &h, &trusted).to_string(), "203.0.113.7");
        assert_eq!(client_ip(proxy, &h, &[]).to_string(), "10.0.0.5");
        // Spoofed left-most entries are ignored: the right-most untrusted hop wins.
        let h = headers("1.2.3.4, 203.0.113.7, 10.0.0.9");
        assert_eq!(client_ip(proxy, &h, &trusted).to_string(), "203.0.113.7");
        let h = headers("203.0.113.7, garbage");
        assert_eq!(client_ip(proxy, &h, &trusted).to_string(), "10.0.0.5");
        assert_eq!(
            client_ip(proxy, &HeaderMap::new(), &trusted).to_string(),
            "10.0.0.5"
        );
        let mapped: SocketAddr = "[::ffff:198.51.100.1]:1".parse().unwrap();
        assert_eq!(
            client_ip(mapped, &HeaderMap::new(), &trusted).to_string(),
            "198.51.100.1"
        );
    }
}
