//! Which hosts a JWKS URL may reach (SSRF, issue #13). The URL is administrator
//! configuration, but Tollgate fetches it from inside the deployment's network, so by
//! default it may reach only public addresses: not loopback, private (RFC 1918, fc00::/7),
//! link-local (169.254/16 — cloud metadata — and fe80::/10), shared (CGNAT 100.64/10),
//! unspecified, multicast, documentation or reserved ones.
//!
//! Two checks, because a URL names either an address or a host name:
//! - [`check_url`] looks at the URL itself — when it is configured (a clear refusal up
//!   front) and again before every fetch (a URL stored before this check existed);
//! - [`PublicOnly`], the HTTP client's resolver, drops non-public addresses a host name
//!   resolves to, so the connection can only go to an address that was checked (no
//!   rebinding between check and connect).
//!
//! `jwks.allow_private_hosts` lifts both, for local development against a JWKS server on
//! loopback; only then is plain `http://` accepted, and only on loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Longest JWKS URL accepted.
const MAX_URL_LEN: usize = 2048;
/// The setting that lifts the address checks, as refusals name it.
pub(crate) const SETTING: &str = "jwks.allow_private_hosts (TOLLGATE_JWKS__ALLOW_PRIVATE_HOSTS)";

/// Whether `ip` is a public unicast address.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0 // "this network", 0.0.0.0 included
        || a == 10 // private
        || a == 127 // loopback
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254) // link-local: cloud metadata services live here
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 168) // private
        || (a == 192 && b == 0 && (c == 0 || c == 2)) // IETF assignments, documentation
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast (deprecated)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224; // multicast, reserved, broadcast
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Forms that carry an IPv4 address are judged by it: ::ffff:10.0.0.1 reaches 10.0.0.1.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(s[6], s[7])); // NAT64 well-known prefix
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2])); // 6to4
    }
    // Global unicast is 2000::/3; everything else (::, ::1, IPv4-compatible, fc00::/7,
    // fe80::/10, fec0::/10, ff00::/8, 64:ff9b:1::/48, 100::/64) is not public.
    let global = s[0] & 0xe000 == 0x2000;
    let ietf = s[0] == 0x2001 && s[1] < 0x0200; // 2001::/23: Teredo, benchmarking, ORCHID
    let documentation = s[0] == 0x2001 && s[1] == 0x0db8;
    global && !ietf && !documentation
}

/// A URL's host: an address, or a name to resolve.
enum Host<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

impl Host<'_> {
    /// Whether this names this machine: a loopback address, `localhost` or `*.localhost`
    /// (RFC 6761: those names resolve to loopback).
    fn is_loopback(&self) -> bool {
        match self {
            Host::Ip(ip) => ip.is_loopback(),
            Host::Name(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                name == "localhost" || name.ends_with(".localhost")
            }
        }
    }
}

fn host_of(url: &Url) -> Option<Host<'_>> {
    let host = url.host_str()?;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some(match bare.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(bare),
    })
}

/// Checks a JWKS URL: an absolute `https://` URL without user info, whose host, when it is
/// an address (or a loopback name), is public — unless `allow_private`, which also admits
/// `http://` on loopback. The error says what to change.
pub(crate) fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    let malformed = || {
        format!(
            "a JWKS URL must be an absolute https:// URL of at most {MAX_URL_LEN} characters, without user info"
        )
    };
    if url.len() > MAX_URL_LEN || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed());
    }
    // The parser reqwest connects with, so what is checked is what is reached: it reads
    // `https://2130706433/` and `https://0x7f.1/` as 127.0.0.1, as the connection would.
    let parsed = Url::parse(url).map_err(|_| malformed())?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(malformed());
    }
    let host = host_of(&parsed).ok_or_else(malformed)?;
    let loopback = host.is_loopback();
    let public = match host {
        Host::Ip(ip) => is_public(ip),
        // A name is checked when it is resolved, at fetch time (`PublicOnly`).
        Host::Name(_) => !loopback,
    };
    match parsed.scheme() {
        "https" if public || allow_private => Ok(()),
        "https" => Err(format!(
            "a JWKS URL must not name a loopback, private, link-local or other non-public \
             address; set {SETTING} to allow it (local development)"
        )),
        "http" if loopback && allow_private => Ok(()),
        "http" => Err(format!(
            "a JWKS URL must be https://; plain http:// is accepted only on loopback, with \
             {SETTING}"
        )),
        _ => Err(malformed()),
    }
}

/// The JWKS client's resolver: the system's, keeping only public addresses (all of them
/// with `allow_private`). A name that resolves only to non-public addresses fails to
/// resolve, with a message naming the setting; the connection is never attempted.
#[derive(Debug)]
pub(crate) struct PublicOnly {
    allow_private: bool,
    /// Fixed answers instead of the system's, so tests can make a name resolve to loopback.
    #[cfg(test)]
    pub(crate) fixed: std::collections::HashMap<String, Vec<IpAddr>>,
}

impl PublicOnly {
    pub(crate) fn new(allow_private: bool) -> Self {
        Self {
            allow_private,
            #[cfg(test)]
            fixed: std::collections::HashMap::new(),
        }
    }

    async fn lookup(&self, host: &str) -> std::io::Result<Vec<SocketAddr>> {
        #[cfg(test)]
        if let Some(ips) = self.fixed.get(host) {
            return Ok(ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect());
        }
        Ok(tokio::net::lookup_host((host, 0)).await?.collect())
    }

    /// The addresses of `host` a fetch may connect to.
    pub(crate) async fn resolve_host(&self, host: &str) -> Result<Vec<SocketAddr>, String> {
        let found = self
            .lookup(host)
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?;
        let kept: Vec<SocketAddr> = found
            .iter()
            .copied()
            .filter(|a| self.allow_private || is_public(a.ip()))
            .collect();
        if kept.is_empty() {
            return Err(if found.is_empty() {
                format!("{host} has no address")
            } else {
                format!("{host} resolves only to non-public addresses; {SETTING} is off")
            });
        }
        Ok(kept)
    }
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        // `Resolve` takes `&self` but must return a `'static` future: the answer is
        // computed by a copy holding what the lookup needs.
        let this = Self {
            allow_private: self.allow_private,
            #[cfg(test)]
            fixed: self.fixed.clone(),
        };
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = this.resolve_host(&host).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::10.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:a00:1::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} is not public");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "93.184.215.14",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn urls_must_be_https_to_public_hosts_unless_allowed() {
        for ok in [
            "https://app.example/.well-known/jwks.json",
            "https://app.example:8443/jwks?tenant=1",
            "https://8.8.8.8/jwks",
            "https://[2606:4700::1111]/jwks",
        ] {
            assert_eq!(check_url(ok, false), Ok(()), "{ok}");
        }
        for private in [
            "https://127.0.0.1/jwks",
            "https://127.0.0.1.:8080/jwks",
            "https://localhost/jwks",
            "https://LOCALHOST./jwks",
            "https://api.localhost/jwks",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::ffff:a9fe:a9fe]/jwks",
            "https://2130706433/jwks",
            "https://0x7f.1/jwks",
            "https://0177.0.0.1/jwks",
            "https://10.1/jwks",
            "https://[fe80::1]/jwks",
        ] {
            let refused = check_url(private, false);
            assert!(
                refused.as_ref().is_err_and(|e| e.contains(SETTING)),
                "{private}: {refused:?}"
            );
        }
        for bad in [
            "ftp://x",
            "https://",
            "https://user@app.example/jwks",
            "https://u:p@app.example/jwks",
            "//app.example/jwks",
            "https://app example/jwks",
            "https://[fe80::1%25eth0]/jwks",
            "http://app.example/jwks",
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:1@127.0.0.2/latest/meta-data",
            "http://127.0.0.1.evil.example/jwks",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
            assert!(check_url(bad, true).is_err(), "{bad} even when allowed");
        }
        assert!(check_url(&format!("https://a.example/{}", "x".repeat(2048)), false).is_err());
        // Allowed: any address over https, and loopback over plain http.
        for dev in [
            "http://127.0.0.1:9000/jwks",
            "http://localhost/jwks",
            "http://[::1]:8080/jwks",
            "https://10.0.0.1/jwks",
            "https://localhost:8443/jwks",
        ] {
            assert_eq!(check_url(dev, true), Ok(()), "{dev}");
        }
        assert!(check_url("http://10.0.0.1/jwks", true).is_err());
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_dropped() {
        let mut resolver = PublicOnly::new(false);
        resolver.fixed.insert(
            "mixed.test".into(),
            vec!["10.0.0.7".parse().unwrap(), "8.8.8.8".parse().unwrap()],
        );
        resolver.fixed.insert(
            "inside.test".into(),
            vec!["169.254.169.254".parse().unwrap()],
        );
        let public: Vec<IpAddr> = resolver
            .resolve_host("mixed.test")
            .await
            .unwrap()
            .iter()
            .map(SocketAddr::ip)
            .collect();
        assert_eq!(public, ["8.8.8.8".parse::<IpAddr>().unwrap()]);
        let err = resolver.resolve_host("inside.test").await.unwrap_err();
        assert!(err.contains(SETTING), "{err}");
        // The system resolver's answer for `localhost` is loopback: refused too.
        assert!(resolver.resolve_host("localhost").await.is_err());
        let dev = PublicOnly::new(true);
        let local = dev.resolve_host("localhost").await.unwrap();
        assert!(local.iter().all(|a| a.ip().is_loopback()), "{local:?}");
    }
}
