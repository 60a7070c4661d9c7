//! Who the client is: the one place that turns a connection's peer address and its
//! `X-Forwarded-For` header into the address limits are keyed on.
//!
//! - Addresses are canonical: an IPv4-mapped IPv6 address (`::ffff:10.1.1.1`) is the IPv4
//!   address it maps, so one client cannot count as two.
//! - `X-Forwarded-For` is believed only when the peer is a configured proxy
//!   (`SWARMQ_TRUSTED_PROXIES`). Then every header line is read (joined, as RFC 9110 says
//!   repeated fields are), hops are walked from the right, trusted proxies skipped, and the first
//!   untrusted hop is the client: what a client wrote itself lies further left and is ignored.
//! - [`limit_key`] groups IPv6 clients by /64 (one host usually holds a whole /64), so a client
//!   cannot escape a per-address limit by rotating through its own prefix.

use std::net::{IpAddr, Ipv6Addr};

use axum::http::HeaderMap;

/// The proxies whose `X-Forwarded-For` is believed: addresses or CIDR blocks.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// `10.0.0.0/8,127.0.0.1,::1` (comma-separated); empty = none.
    pub fn parse(setting: &str) -> Result<Self, String> {
        let mut blocks = Vec::new();
        for item in setting.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (addr, bits) = match item.split_once('/') {
                Some((addr, bits)) => (addr, Some(bits)),
                None => (item, None),
            };
            let addr = addr
                .parse::<IpAddr>()
                .map(canonical)
                .map_err(|_| format!("{item:?} is not an IP address or CIDR block"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(b) => b
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("{item:?}: prefix length must be 0..={max}"))?,
            };
            blocks.push((mask(addr, bits), bits));
        }
        Ok(Self(blocks))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0
            .iter()
            .any(|(net, bits)| net.is_ipv4() == ip.is_ipv4() && mask(ip, *bits) == *net)
    }
}

/// `::ffff:a.b.c.d` is `a.b.c.d`; everything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the last untrusted
/// `X-Forwarded-For` hop.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &TrustedProxies) -> IpAddr {
    let mut client = canonical(peer);
    if !trusted.contains(client) {
        return client;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|line| line.to_str().unwrap_or("").split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        // An unreadable hop ends the walk: the proxy that reported it is the best we know.
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = ip;
        if !trusted.contains(ip) {
            return ip;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(canonical)
}

/// What per-client limits count by: the IPv4 address, or the IPv6 /64.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    let ip = canonical(ip);
    if ip.is_ipv4() { ip } else { mask(ip, 64) }
}

fn mask(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::from((u32::from(v4) & m).to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", line.parse().unwrap());
        }
        headers
    }

    #[test]
    fn mapped_addresses_are_one_client() {
        assert_eq!(canonical(ip("::ffff:10.1.1.1")), ip("10.1.1.1"));
        assert_eq!(limit_key(ip("::ffff:10.1.1.1")), limit_key(ip("10.1.1.1")));
        assert_eq!(
            limit_key(ip("2001:db8:1:2:aaaa::1")),
            limit_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:2::1")),
            limit_key(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, ::1").unwrap();
        let headers = xff(&["6.6.6.6", "1.2.3.4"]);
        // Not from a proxy: the header is the client's own words.
        assert_eq!(client_ip(&headers, ip("8.8.8.8"), &proxies), ip("8.8.8.8"));
        // Every line is read and the last hop wins: a second line cannot choose the address.
        assert_eq!(client_ip(&headers, ip("10.0.0.5"), &proxies), ip("1.2.3.4"));
        assert_eq!(
            client_ip(&xff(&["6.6.6.6, 1.2.3.4"]), ip("::ffff:10.0.0.5"), &proxies),
            ip("1.2.3.4")
        );
        // Proxies in the chain are skipped; mapped hops are canonical.
        let chain = xff(&["6.6.6.6, ::ffff:1.2.3.4, 10.9.9.9"]);
        assert_eq!(client_ip(&chain, ip("::1"), &proxies), ip("1.2.3.4"));
        // Garbage or no header: the proxy itself.
        assert_eq!(
            client_ip(&xff(&["nonsense"]), ip("10.0.0.5"), &proxies),
            ip("10.0.0.5")
        );
        assert_eq!(
            client_ip(&HeaderMap::new(), ip("10.0.0.5"), &proxies),
            ip("10.0.0.5")
        );
        assert_eq!(
            client_ip(&xff(&["[2001:db8::1]:443"]), ip("10.0.0.5"), &proxies),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn proxy_lists_parse_or_say_why_not() {
        let p = TrustedProxies::parse("192.168.0.0/16,fd00::/8").unwrap();
        assert!(p.contains(ip("192.168.3.4")) && p.contains(ip("::ffff:192.168.3.4")));
        assert!(p.contains(ip("fd12::1")) && !p.contains(ip("fe80::1")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert!(
            TrustedProxies::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("1.1.1.1"))
        );
        for bad in ["10.0.0.0/33", "nope", "10.0.0.1/x"] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
    }
}
