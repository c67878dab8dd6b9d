//! Address networks (`2001:db8::/48`, `192.0.2.7`) for the admin addresses let through
//! during maintenance.

use crate::Error;
use std::net::IpAddr;

/// An address and a prefix length; a bare address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    pub fn parse(s: &str) -> Result<Net, Error> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|e| Error::invalid("admin address", s, e))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| Error::invalid("admin address", s, "bad prefix length"))?,
        };
        Ok(Net::canonical(addr, prefix))
    }

    /// An IPv4-mapped network (`::ffff:192.0.2.0/120`) as the IPv4 one it is
    /// (`192.0.2.0/24`): clients are matched as IPv4, which it would never contain.
    fn canonical(addr: IpAddr, prefix: u8) -> Net {
        match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Net {
                    addr: IpAddr::V4(v4),
                    prefix: prefix - 96,
                },
                None => Net { addr, prefix },
            },
            _ => Net { addr, prefix },
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn networks_match_their_addresses_only() {
        let n = Net::parse("2001:db8:1::/48").unwrap();
        assert!(n.contains("2001:db8:1:5::9".parse().unwrap()));
        assert!(!n.contains("2001:db8:2::1".parse().unwrap()));
        let one = Net::parse("192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(one.contains("::ffff:192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        assert!(Net::parse("0.0.0.0/0")
            .unwrap()
            .contains("10.1.2.3".parse().unwrap()));
        assert!(Net::parse("10.0.0.0/33").is_err());
        // an IPv4-mapped network is the IPv4 one it names
        let mapped = Net::parse("::ffff:192.0.2.0/120").unwrap();
        assert!(mapped.contains("192.0.2.200".parse().unwrap()));
        assert!(mapped.contains("::ffff:192.0.2.1".parse().unwrap()));
        assert!(!mapped.contains("192.0.3.1".parse().unwrap()));
        assert!(Net::parse("::ffff:192.0.2.7")
            .unwrap()
            .contains("192.0.2.7".parse().unwrap()));
        assert!(Net::parse("nope").is_err());
    }
}
