//! Who a request comes from. The connection's peer, always — unless the peer is one of the
//! `trusted_proxies` (a load balancer, a CDN in front): then the client is the last address
//! of X-Forwarded-For that no trusted proxy wrote (nginx's `real_ip_recursive`), and the
//! scheme the last X-Forwarded-Proto value says. A hop that is not an address (`unknown`,
//! bytes that are not text) ends the walk with the client *unknown* — never the trusted proxy's
//! own address, which would let a client pass for it (admin check, logs, bans). Nobody else's
//! forwarding headers are ever believed.

use crate::http::Client;
use crate::net::Net;
use hyper::header::HeaderMap;
use std::net::IpAddr;

/// The request's client as pic2 tells it to the backend, the admin check and the log.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The connection the request came on.
    pub peer: Client,
    /// The client's address; `0.0.0.0` when a trusted proxy named it with something that is
    /// not an address (see `known`).
    pub ip: IpAddr,
    /// False when the client could not be told: it is then nobody's admin.
    pub known: bool,
    /// The client spoke HTTPS (to pic2, or to the trusted proxy in front).
    pub https: bool,
}

/// Resolves the origin of a request that arrived on `client`'s connection.
pub fn resolve(trusted: &[Net], client: Client, headers: &HeaderMap) -> Origin {
    let peer = client.addr.ip();
    let tls = client.tls;
    if !is_trusted(trusted, peer) {
        return Origin {
            peer: client,
            ip: peer,
            known: true,
            https: tls,
        };
    }
    // each hop decoded on its own: a line with one odd byte is not thrown away whole
    let hops: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|h| !h.is_empty())
        .collect();
    let mut ip = peer;
    let mut known = true;
    for hop in hops.iter().rev() {
        if !is_trusted(trusted, ip) {
            break;
        }
        match std::str::from_utf8(hop).ok().and_then(parse_hop) {
            Some(h) => ip = h,
            None => {
                ip = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
                known = false;
                break;
            }
        }
    }
    // the proxy nearest to us writes last
    let proto = headers
        .get_all("x-forwarded-proto")
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .rfind(|p| !p.is_empty());
    let https = match proto {
        Some(p) if p.eq_ignore_ascii_case(b"https") => true,
        Some(p) if p.eq_ignore_ascii_case(b"http") => false,
        _ => tls,
    };
    Origin {
        peer: client,
        ip,
        known,
        https,
    }
}

pub(crate) fn is_trusted(trusted: &[Net], ip: IpAddr) -> bool {
    trusted.iter().any(|n| n.contains(ip))
}

/// An X-Forwarded-For entry: an address, an IPv6 one in brackets, either with a port; an
/// IPv4-mapped one (from a dual-stack proxy in front) as the IPv4 address it is.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    parse_hop_as_written(hop).map(|ip| ip.to_canonical())
}

fn parse_hop_as_written(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']').and_then(|(a, _)| a.parse().ok());
    }
    hop.rsplit_once(':').and_then(|(a, _)| a.parse().ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::SocketAddr;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, v.parse().unwrap());
        }
        h
    }

    fn client(ip: &str, tls: bool) -> Client {
        Client::new(std::net::SocketAddr::new(ip.parse().unwrap(), 5000), tls)
    }

    fn nets(list: &[&str]) -> Vec<Net> {
        list.iter().map(|n| Net::parse(n).unwrap()).collect()
    }

    #[test]
    fn an_untrusted_peers_headers_are_ignored() {
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = client("192.0.2.1", false);
        let o = resolve(&nets(&["10.0.0.0/8"]), c, &h);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            (o.peer.addr, o.ip, o.known, o.https),
            (SocketAddr::new(ip, 5000), ip, true, false)
        );
        let o = resolve(&[], client("10.0.0.1", false), &h);
        assert_eq!(o.ip, "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn behind_trusted_proxies_the_first_untrusted_hop_from_the_right_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8:f::/48"]);
        // a client that forged its own header, then a CDN, then our load balancer
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.9"),
            ("x-forwarded-for", "[2001:db8:f::5]:443"),
            ("x-forwarded-proto", "HTTPS"),
        ]);
        let o = resolve(&trusted, client("10.1.2.3", false), &h);
        assert_eq!(o.ip, "203.0.113.9".parse::<IpAddr>().unwrap());
        assert!(o.https);
        // a hop that is no address: the client is unknown, never the balancer itself
        let h = headers(&[("x-forwarded-for", "203.0.113.9, unknown")]);
        let o = resolve(&trusted, client("10.1.2.3", true), &h);
        assert!(!o.known);
        assert_eq!(o.ip, "0.0.0.0".parse::<IpAddr>().unwrap());
        assert!(o.https, "no X-Forwarded-Proto: the connection's own scheme");
        // nor when the client slipped a byte that is not text into the line the balancer
        // appended to: only that hop is lost
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            hyper::header::HeaderValue::from_bytes(b"\xff, 203.0.113.9").unwrap(),
        );
        let o = resolve(&trusted, client("10.1.2.3", false), &h);
        assert!(o.known);
        assert_eq!(o.ip, "203.0.113.9".parse::<IpAddr>().unwrap());
        // the last X-Forwarded-Proto is the nearest proxy's
        let h = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-proto", "http"),
        ]);
        assert!(!resolve(&trusted, client("10.1.2.3", false), &h).https);
        // only trusted hops: the leftmost is as far as it goes
        let h = headers(&[("x-forwarded-for", "10.9.9.9")]);
        let o = resolve(&trusted, client("10.1.2.3", false), &h);
        assert_eq!(o.ip, "10.9.9.9".parse::<IpAddr>().unwrap());
        // a dual-stack proxy in front writes IPv4 clients as mapped IPv6: told as IPv4
        let h = headers(&[(
            "x-forwarded-for",
            "::ffff:203.0.113.9, [::ffff:10.1.1.1]:80",
        )]);
        let o = resolve(&trusted, client("10.1.2.3", false), &h);
        assert_eq!(o.ip, "203.0.113.9".parse::<IpAddr>().unwrap());
    }
}
