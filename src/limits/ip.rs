//! Network rules: who may connect (allow and deny lists, CIDR, IPv4 and IPv6, IPv4-mapped IPv6
//! addresses treated as the IPv4 they carry), and who the client is behind a trusted proxy.

use crate::config::AccessSettings;
use ipnet::IpNet;
use std::net::IpAddr;

fn contains(list: &[IpNet], ip: IpAddr) -> bool {
    list.iter().any(|n| n.contains(&ip))
}

/// `::ffff:192.0.2.1` is `192.0.2.1`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Whether `ip` may use the proxy under the allow and deny lists (deny wins).
pub fn permitted(rules: &AccessSettings, ip: IpAddr) -> bool {
    let ip = canonical(ip);
    !contains(&rules.deny, ip) && (rules.allow.is_empty() || contains(&rules.allow, ip))
}

pub fn is_trusted_proxy(rules: &AccessSettings, ip: IpAddr) -> bool {
    contains(&rules.trusted_proxies, canonical(ip))
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the nearest address in
/// `X-Forwarded-For` that is not itself a trusted proxy (read from the right, because only the
/// entries our own proxies appended can be trusted).
pub fn client_ip(rules: &AccessSettings, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted_proxy(rules, peer) {
        return peer;
    }
    let Some(xff) = forwarded_for else { return peer };
    let mut candidate = peer;
    for part in xff.rsplit(',') {
        let Ok(ip) = part.trim().parse::<IpAddr>() else { break };
        candidate = canonical(ip);
        if !is_trusted_proxy(rules, candidate) {
            return candidate;
        }
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str], trusted: &[&str]) -> AccessSettings {
        let nets = |l: &[&str]| l.iter().map(|s| crate::config::validate::canonical_net(s.parse().unwrap())).collect();
        AccessSettings { allow: nets(allow), deny: nets(deny), trusted_proxies: nets(trusted), ..Default::default() }
    }

    #[test]
    fn allow_deny_and_edges() {
        let r = rules(&["10.0.0.0/8", "2001:db8::/32"], &["10.1.0.0/16"], &[]);
        assert!(permitted(&r, "10.2.3.4".parse().unwrap()));
        assert!(!permitted(&r, "10.1.2.3".parse().unwrap()), "deny wins");
        assert!(!permitted(&r, "11.0.0.1".parse().unwrap()));
        assert!(permitted(&r, "::ffff:10.2.3.4".parse().unwrap()), "v4-mapped v6 is the v4 address");
        assert!(!permitted(&r, "::ffff:10.1.0.1".parse().unwrap()));
        assert!(permitted(&r, "2001:db8::1".parse().unwrap()));
        assert!(!permitted(&r, "2001:db9::1".parse().unwrap()));
        assert!(permitted(&r, "10.255.255.255".parse().unwrap()), "top of the block");
        assert!(!permitted(&r, "9.255.255.255".parse().unwrap()), "just below it");
        let open = rules(&[], &["0.0.0.0/0"], &[]);
        assert!(!permitted(&open, "1.2.3.4".parse().unwrap()));
        assert!(permitted(&open, "::1".parse().unwrap()), "an IPv4 deny does not cover IPv6");
        let mapped = rules(&[], &["::ffff:192.0.2.0/120"], &[]);
        assert!(!permitted(&mapped, "192.0.2.7".parse().unwrap()), "a v4-mapped rule covers the v4 address");
    }

    #[test]
    fn forwarded_for_counts_only_behind_trusted_proxies() {
        let r = rules(&[], &[], &["10.0.0.0/8"]);
        let xff = Some("203.0.113.9, 198.51.100.2, 10.0.0.7");
        assert_eq!(client_ip(&r, "10.0.0.1".parse().unwrap(), xff), "198.51.100.2".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(&r, "192.0.2.1".parse().unwrap(), xff), "192.0.2.1".parse::<IpAddr>().unwrap(), "an untrusted peer cannot name someone else");
        assert_eq!(client_ip(&r, "10.0.0.1".parse().unwrap(), None), "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(&r, "10.0.0.1".parse().unwrap(), Some("garbage, 10.0.0.2")), "10.0.0.2".parse::<IpAddr>().unwrap());
    }
}
