//! Addresses and networks, and the MariaDB host patterns they turn into.

use crate::diagnostic::{Code, Diagnostic};
use crate::source::Span;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub fn parse_ip(s: &str, span: Span) -> Result<IpAddr, Diagnostic> {
    s.parse::<IpAddr>().map_err(|_| {
        Diagnostic::new(Code::InvalidAddress, span, format!("`{s}` is not an IP address"))
            .label("here")
            .hint("write an IPv4 address like `192.0.2.10` or an IPv6 one like `2001:db8::10`, without brackets or port")
    })
}

/// An address or a network in CIDR form (`192.0.2.7`, `2001:db8::/48`), as the proxy
/// matches client addresses against it: any prefix length up to the address's size.
pub fn parse_network(s: &str, span: Span) -> Result<(IpAddr, u8), Diagnostic> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip = parse_ip(addr, span)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let Some(prefix) = prefix else {
        return Ok((ip, max));
    };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max => Ok((ip, p)),
        _ => Err(Diagnostic::new(
            Code::InvalidAddress,
            span,
            format!("`{s}` has no valid prefix length"),
        )
        .label("this network")
        .hint(format!(
            "write the prefix length as a number from 0 to {max} (e.g. `{addr}/{}`)",
            if max == 32 { 24 } else { 48 }
        ))),
    }
}

/// An `address:port` to listen on or connect to (`127.0.0.1:2222`, `[::]:22`); `example` is
/// shown in the hint.
pub fn parse_socket_addr(
    s: &crate::source::Spanned<String>,
    example: &str,
) -> Result<crate::source::Spanned<std::net::SocketAddr>, Diagnostic> {
    s.value
        .parse()
        .map(|a| crate::source::Spanned::new(a, s.span))
        .map_err(|_| {
            Diagnostic::new(
                Code::InvalidAddress,
                s.span,
                format!("`{}` is not an address:port", s.value),
            )
            .label("here")
            .hint(format!("write it like {example}"))
        })
}

/// A `host:port` for a server pic2 does not run (a mail server): an IP address (IPv6 in
/// brackets) or a host name, and a port. Anything else would land, unchecked, in
/// configuration pic2 writes (PHP's `sendmail_path`, run by a shell).
pub fn check_host_port(s: &crate::source::Spanned<String>) -> Result<(), Diagnostic> {
    let bad = |why: &str| {
        Diagnostic::new(
            Code::InvalidAddress,
            s.span,
            format!("`{}` is not a host:port ({why})", s.value),
        )
        .label("here")
        .hint("write it like \"mail.example.org:25\", \"192.0.2.25:587\" or \"[2001:db8::25]:25\"")
    };
    let Some((host, port)) = s.value.rsplit_once(':') else {
        return Err(bad("no port"));
    };
    if !port.parse::<u16>().is_ok_and(|p| p > 0) {
        return Err(bad("the port is not a number from 1 to 65535"));
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .map(drop)
            .map_err(|_| bad("not an IPv6 address in brackets"));
    }
    // a name as DNS or Docker's resolver takes it (`mail_relay`, `mail.example.org.`)
    let name = host.strip_suffix('.').unwrap_or(host);
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if name_ok || host.parse::<Ipv4Addr>().is_ok() {
        Ok(())
    } else {
        Err(bad("not a host name or an IP address"))
    }
}

pub fn parse_ipv4(s: &str, span: Span) -> Result<Ipv4Addr, Diagnostic> {
    match parse_ip(s, span)? {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(_) => Err(Diagnostic::new(
            Code::InvalidAddress,
            span,
            format!("`{s}` is an IPv6 address where an IPv4 one is expected"),
        )
        .label("IPv6 here")
        .hint("put IPv6 addresses in `public_ipv6`")),
    }
}

pub fn parse_ipv6(s: &str, span: Span) -> Result<Ipv6Addr, Diagnostic> {
    match parse_ip(s, span)? {
        IpAddr::V6(a) => Ok(a),
        IpAddr::V4(_) => Err(Diagnostic::new(
            Code::InvalidAddress,
            span,
            format!("`{s}` is an IPv4 address where an IPv6 one is expected"),
        )
        .label("IPv4 here")
        .hint("put IPv4 addresses in `public_ipv4`")),
    }
}

/// An address or a network from which database clients connect, in a form MariaDB can match.
///
/// MariaDB 10.11 accepts IPv6 CIDR masks in a user's host but never matches them, and matches
/// IPv4 masks only in the `addr/netmask` form: so networks are limited to prefixes that end on
/// a group boundary (IPv4 /8, /16, /24; IPv6 multiples of /16) and become `%` wildcards.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ClientHost(String);

impl ClientHost {
    pub fn parse(s: &str, span: Span) -> Result<Self, Diagnostic> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip = parse_ip(addr, span)?;
        let Some(prefix) = prefix else {
            return Ok(Self::from_ip(ip));
        };
        let bad_prefix = |hint: &str| {
            Diagnostic::new(
                Code::InvalidAddress,
                span,
                format!("MariaDB cannot match the network `{s}`"),
            )
            .label("this prefix")
            .hint(hint.to_string())
        };
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad_prefix("the part after `/` must be a number"))?;
        match ip {
            IpAddr::V4(a) => {
                if prefix > 32 || !prefix.is_multiple_of(8) {
                    return Err(bad_prefix("use /8, /16, /24 or /32 for IPv4 networks"));
                }
                let octets = a.octets();
                let kept = usize::from(prefix / 8);
                if octets.iter().skip(kept).any(|&o| o != 0) {
                    return Err(bad_prefix(
                        "the host part of the network must be zero (e.g. `10.1.2.0/24`)",
                    ));
                }
                if prefix == 32 {
                    return Ok(Self::from_ip(ip));
                }
                let mut parts: Vec<String> =
                    octets.iter().take(kept).map(|o| o.to_string()).collect();
                parts.push("%".into());
                Ok(ClientHost(parts.join(".")))
            }
            IpAddr::V6(a) => {
                if prefix > 128 || !prefix.is_multiple_of(16) || prefix == 0 {
                    return Err(bad_prefix("MariaDB never matches IPv6 masks: use a prefix that is a multiple of 16 (/48, /64, …), turned into a `%` wildcard"));
                }
                let segments = a.segments();
                let kept = usize::from(prefix / 16);
                if segments.iter().skip(kept).any(|&g| g != 0) {
                    return Err(bad_prefix(
                        "the host part of the network must be zero (e.g. `fd00:5049:4332:1::/64`)",
                    ));
                }
                if prefix == 128 {
                    return Ok(Self::from_ip(ip));
                }
                if segments.get(kept.saturating_sub(1)) == Some(&0) {
                    return Err(bad_prefix("the network's last group must be non-zero: MariaDB compares the compressed text form, where a zero group vanishes (give the subnet a non-zero last group, e.g. `fd00:5049:4332:1::/64`)"));
                }
                let mut parts: Vec<String> = segments
                    .iter()
                    .take(kept)
                    .map(|g| format!("{g:x}"))
                    .collect();
                parts.push("%".into());
                Ok(ClientHost(parts.join(":")))
            }
        }
    }

    pub fn from_ip(ip: IpAddr) -> Self {
        ClientHost(ip.to_string())
    }

    /// The text to put after `@` in `CREATE USER 'name'@'…'`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const S: Span = Span { start: 0, end: 0 };

    #[test]
    fn listen_addresses_parse_or_say_how_to_write_them() {
        let ok = crate::source::Spanned::new("[::]:22".to_string(), S);
        assert_eq!(parse_socket_addr(&ok, "x").map(|a| a.value.port()), Ok(22));
        let bad = crate::source::Spanned::new("localhost:22".to_string(), S);
        let d = parse_socket_addr(&bad, "\"[::]:22\"")
            .map(|_| ())
            .unwrap_err();
        assert!(d.message.contains("`localhost:22` is not an address:port"));
    }

    #[test]
    fn client_hosts_become_mariadb_patterns() {
        let p = |s| ClientHost::parse(s, S).map(|h| h.0);
        assert_eq!(p("fd00:5049:4332:1::/64").unwrap(), "fd00:5049:4332:1:%");
        assert_eq!(p("fd00:5049:4332::1").unwrap(), "fd00:5049:4332::1");
        assert_eq!(p("10.1.2.0/24").unwrap(), "10.1.2.%");
        assert_eq!(p("127.0.0.1").unwrap(), "127.0.0.1");
        assert!(
            p("fd00:5049:4332::/64").is_err(),
            "zero last group vanishes"
        );
        assert!(p("fd00::/60").is_err());
        assert!(p("10.1.2.3/24").is_err());
        assert!(p("10.1.2.0/20").is_err());
        assert!(p("nope").is_err());
    }
}
