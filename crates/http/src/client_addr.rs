//! Who is calling: the socket's peer address or, when the peer is one of the operator's
//! trusted proxies (`http.trusted_proxies`), the address the proxies report in
//! `X-Forwarded-For`.
//!
//! Only addresses appended by trusted proxies are believed: the list is read from the right
//! and the first entry that is not itself a trusted proxy is the client. Anything to its left
//! was written by the client and could be anything.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`) or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl IpNet {
    /// Whether `ip` is inside this network. IPv4-mapped IPv6 addresses count as IPv4.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

/// `::ffff:1.2.3.4` → `1.2.3.4`, so a dual-stack listener sees IPv4 clients as IPv4.
#[must_use]
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The client's address: `peer`, or what trusted proxies in front of it report.
#[must_use]
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer.ip());
    if !trusted.iter().any(|n| n.contains(peer)) {
        return peer;
    }
    // Several X-Forwarded-For headers are one list, in order.
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            return peer;
        };
        for hop in value.split(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(canonical(ip)),
                // A malformed entry: believe nothing before it (it may be the client's).
                Err(_) => hops.clear(),
            }
        }
    }
    hops.into_iter()
        .rev()
        .find(|ip| !trusted.iter().any(|n| n.contains(*ip)))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn parses_and_matches_networks() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        let n: IpNet = "192.168.1.128/25".parse().unwrap();
        assert!(n.contains("192.168.1.200".parse().unwrap()));
        assert!(!n.contains("192.168.1.100".parse().unwrap()));
        let n: IpNet = "fd00::/8".parse().unwrap();
        assert!(n.contains("fd12::1".parse().unwrap()));
        assert!(!n.contains("fe80::1".parse().unwrap()));
        let n: IpNet = "127.0.0.1".parse().unwrap();
        assert!(n.contains("127.0.0.1".parse().unwrap()));
        assert!(!n.contains("127.0.0.2".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "::/129", "1.2.3.4/x"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let peer: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let got = client_ip(peer, &xff(&["1.1.1.1"]), &nets(&["10.0.0.0/8"]));
        assert_eq!(got, "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_proxies_report_the_rightmost_untrusted_hop() {
        let peer: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let trusted = nets(&["10.0.0.0/8"]);
        // The client forged 6.6.6.6; the proxy appended the address it saw.
        let got = client_ip(peer, &xff(&["6.6.6.6, 198.51.100.7"]), &trusted);
        assert_eq!(got, "198.51.100.7".parse::<IpAddr>().unwrap());
        // Two proxies, two headers.
        let got = client_ip(peer, &xff(&["198.51.100.7", "10.0.0.3"]), &trusted);
        assert_eq!(got, "198.51.100.7".parse::<IpAddr>().unwrap());
        // No header, or only proxies: the peer.
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted), peer.ip());
        assert_eq!(client_ip(peer, &xff(&["10.0.0.5"]), &trusted), peer.ip());
        // Garbage after the real hop: nothing left of it is believed.
        let got = client_ip(peer, &xff(&["198.51.100.7, junk"]), &trusted);
        assert_eq!(got, peer.ip());
    }
}
