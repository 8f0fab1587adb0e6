//! Who is calling: trusted proxies as CIDRs and the client address behind them.
//!
//! ```
//! use storefold_runtime::net::{Cidr, client_addr};
//! let proxies = vec![Cidr::parse("10.0.0.0/8").unwrap()];
//! // The leftmost entry is whatever the client wrote; the rightmost hop that is
//! // not one of our proxies is the address that connected to them.
//! let xff = "203.0.113.9, 198.51.100.7, 10.1.2.3";
//! let client = client_addr("10.0.0.5".parse().unwrap(), Some(xff), &proxies);
//! assert_eq!(client, "198.51.100.7".parse::<std::net::IpAddr>().unwrap());
//! ```

use std::fmt;
use std::net::IpAddr;

/// An address block, `10.0.0.0/8`, `2001:db8::/32`, or a single address
/// (`192.0.2.1` = `/32`, `::1` = `/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` or a bare address; host bits must be zero.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or CIDR block like 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0-{max}"))?,
        };
        let cidr = Self { addr, prefix };
        if cidr.network(addr) != bits(addr) {
            return Err(format!(
                "{s:?} has host bits set; the block is written with its first address"
            ));
        }
        Ok(cidr)
    }

    fn network(&self, ip: IpAddr) -> u128 {
        let width: u32 = if ip.is_ipv4() { 32 } else { 128 };
        let host_bits = width - u32::from(self.prefix);
        let mask = if host_bits >= 128 {
            0
        } else {
            u128::MAX << host_bits
        };
        bits(ip) & mask
    }

    /// Whether `ip` is inside the block (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && self.network(ip) == bits(self.addr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the peer itself unless the peer is a trusted proxy;
/// then the rightmost `X-Forwarded-For` hop that is not a trusted proxy (each
/// proxy appends the address it was connected from, so only entries added by
/// our own proxies can be believed; everything left of the first untrusted hop
/// is whatever the client chose to send). An unreadable hop ends the walk at
/// the last address known to be true.
pub fn client_addr(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[Cidr]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let Some(xff) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for hop in xff.rsplit(',') {
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = canonical(ip);
        if !is_trusted(client) {
            return client;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port
/// (`192.0.2.1:5411`, `[2001:db8::1]:5411`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())
}

/// The rate-limit key of a client address: IPv4 as it is, IPv6 by its /64
/// (one subscriber usually holds a whole /64, so per-address keys would let
/// one client take 2^64 buckets).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        v4 => v4,
    }
}

/// A secret read from the configuration: never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.200.1.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.1.1")), "IPv4-mapped");
        assert!(!c.contains(ip("2001:db8::1")));
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::5")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("10.0.0.1/8").is_err(), "host bits");
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("proxy.local").is_err());
        assert_eq!(v6.to_string(), "2001:db8::/32");
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = [
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("fd00::/8").unwrap(),
        ];
        let peer = ip("10.0.0.2");
        // Not behind a trusted proxy: the header is the client's own words.
        assert_eq!(
            client_addr(ip("198.51.100.1"), Some("1.2.3.4"), &trusted),
            ip("198.51.100.1")
        );
        // Behind two of our proxies; the leftmost entry is forged.
        assert_eq!(
            client_addr(peer, Some("1.2.3.4, 203.0.113.5, 10.9.9.9"), &trusted),
            ip("203.0.113.5")
        );
        assert_eq!(client_addr(peer, None, &trusted), peer);
        // Every hop is ours: the leftmost is the best we know.
        assert_eq!(
            client_addr(peer, Some("10.1.1.1, 10.2.2.2"), &trusted),
            ip("10.1.1.1")
        );
        // Garbage stops the walk at the last believable address.
        assert_eq!(
            client_addr(peer, Some("203.0.113.5, junk, 10.2.2.2"), &trusted),
            ip("10.2.2.2")
        );
        assert_eq!(
            client_addr(peer, Some("[2001:db8::7]:443"), &trusted),
            ip("2001:db8::7")
        );
        // Without trusted proxies the peer is the client, whatever the header says.
        assert_eq!(client_addr(peer, Some("1.2.3.4"), &[]), peer);
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa::1")),
            client_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn secrets_are_not_shown() {
        assert_eq!(format!("{:?}", Secret("s3cret".into())), "<redacted>");
    }

    fn load(toml: &str) -> Result<crate::Config, String> {
        crate::Config::from_toml_str(toml, Vec::new()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_configuration_refuses_what_would_be_unsafe() {
        let err = load("[ingest.collect]\ntrust_forwarded_for = true\n").unwrap_err();
        assert!(err.contains("trusted_proxies"), "{err}");
        assert!(load("[ingest.collect]\ntrust_forwarded_for = false\n").is_ok());
        let err = load("[ingest.collect]\ntrusted_proxies = [\"10.0.0.1/8\"]\n").unwrap_err();
        assert!(err.contains("host bits"), "{err}");
        let ok = load("[ingest.collect]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n").unwrap();
        assert_eq!(ok.ingest.collect.trusted_proxies().unwrap().len(), 2);
        let err = load("[tenants.a]\ncollect_identity_secret = \"short\"\n").unwrap_err();
        assert!(err.contains("at least 16"), "{err}");
        let err = load("[ingest]\nmax_buffered_bytes = 1000\n").unwrap_err();
        assert!(err.contains("max_buffered_bytes"), "{err}");
        let err = load("[ingest]\nwebhook_burst = 0\n").unwrap_err();
        assert!(err.contains("webhook_burst"), "{err}");
        let secret = "a-long-identity-key-0123456789";
        let c = load(&format!(
            "[tenants.a]\ncollect_identify = true\ncollect_identity_secret = \"{secret}\"\n"
        ))
        .unwrap();
        assert!(c.tenants["a"].collect_identify);
        assert!(!format!("{c:?}").contains(secret), "Debug redacts the key");
    }
}
