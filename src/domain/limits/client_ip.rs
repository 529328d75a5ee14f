//! The client's address: the TCP peer, or the entry our own proxies wrote into
//! `X-Forwarded-For`. Each proxy appends the address it received the request from, so with
//! `hops` trusted proxies the client is the `hops`-th entry from the right; anything further
//! left was written by the client and is ignored. Never the leftmost.

use std::net::{IpAddr, SocketAddr};

/// How to find the client's address (`TRUSTED_PROXY_HOPS`, `CLIENT_IP_HEADER`).
#[derive(Debug, Clone, Default)]
pub struct ClientIpRule {
    pub trusted_hops: usize,
    /// A header the edge proxy always overwrites (e.g. `CF-Connecting-IP`), lower-cased.
    pub header: Option<String>,
}

impl ClientIpRule {
    /// `forwarded_for` are the `X-Forwarded-For` header lines in order; `header` the value of
    /// the configured client-IP header. Falls back to the peer when the chain is shorter than
    /// the trusted hops or the entry is not an address.
    pub fn resolve<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl Iterator<Item = &'a [u8]>,
        header: Option<&[u8]>,
    ) -> Option<IpAddr> {
        if self.header.is_some() {
            return header.and_then(parse_entry).or(peer);
        }
        if self.trusted_hops == 0 {
            return peer;
        }
        let lines: Vec<&str> = forwarded_for
            .filter_map(|line| std::str::from_utf8(line).ok())
            .collect();
        let entries: Vec<&str> = lines.iter().flat_map(|line| line.split(',')).collect();
        entries
            .len()
            .checked_sub(self.trusted_hops)
            .and_then(|i| parse_entry(entries[i].as_bytes()))
            .or(peer)
    }
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_entry(raw: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(raw).ok()?.trim().trim_matches('"');
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    fn resolve(hops: usize, lines: &[&str]) -> Option<IpAddr> {
        let rule = ClientIpRule {
            trusted_hops: hops,
            header: None,
        };
        rule.resolve(Some(ip("10.0.0.1")), lines.iter().map(|l| l.as_bytes()), None)
    }

    #[test]
    fn with_no_trusted_proxy_forwarded_for_is_ignored() {
        assert_eq!(resolve(0, &["1.1.1.1"]), Some(ip("10.0.0.1")));
    }

    #[test]
    fn the_entry_written_by_our_own_proxy_is_used_never_the_leftmost() {
        assert_eq!(
            resolve(1, &["6.6.6.6, 7.7.7.7, 203.0.113.9"]),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            resolve(1, &["6.6.6.6", "203.0.113.9"]),
            Some(ip("203.0.113.9")),
            "header lines are joined"
        );
        assert_eq!(
            resolve(2, &["6.6.6.6, 203.0.113.9, 10.1.1.1"]),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn a_short_or_garbled_chain_falls_back_to_the_peer() {
        assert_eq!(resolve(2, &["203.0.113.9"]), Some(ip("10.0.0.1")));
        assert_eq!(resolve(1, &[]), Some(ip("10.0.0.1")));
        assert_eq!(resolve(1, &["1.1.1.1, not-an-ip"]), Some(ip("10.0.0.1")));
    }

    #[test]
    fn ports_and_brackets_are_stripped() {
        assert_eq!(resolve(1, &["203.0.113.9:4711"]), Some(ip("203.0.113.9")));
        assert_eq!(resolve(1, &["[2001:db8::1]:443"]), Some(ip("2001:db8::1")));
        assert_eq!(resolve(1, &[" 2001:db8::2 "]), Some(ip("2001:db8::2")));
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn resolution_never_panics_and_yields_the_peer_or_a_listed_address(
            lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..60), 0..5),
            hops in 0..4usize,
        ) {
            let rule = ClientIpRule { trusted_hops: hops, header: None };
            let peer = ip("10.0.0.1");
            let got = rule.resolve(Some(peer), lines.iter().map(Vec::as_slice), None);
            let listed: Vec<IpAddr> = lines
                .iter()
                .filter_map(|l| std::str::from_utf8(l).ok())
                .flat_map(|l| l.split(','))
                .filter_map(|entry| parse_entry(entry.as_bytes()))
                .collect();
            prop_assert!(got == Some(peer) || got.is_some_and(|ip| listed.contains(&ip)));
            if hops == 0 {
                prop_assert_eq!(got, Some(peer));
            }
        }

        #[test]
        fn entries_left_of_the_trusted_hops_never_matter(
            spoofed in proptest::collection::vec(any::<[u8; 4]>(), 0..6),
            client in any::<[u8; 4]>(),
        ) {
            let mut chain: Vec<String> = spoofed.iter().map(|b| IpAddr::from(*b).to_string()).collect();
            chain.push(IpAddr::from(client).to_string());
            let line = chain.join(", ");
            prop_assert_eq!(resolve(1, &[line.as_str()]), Some(IpAddr::from(client)));
        }
    }

    #[test]
    fn a_configured_client_ip_header_wins() {
        let rule = ClientIpRule {
            trusted_hops: 1,
            header: Some("cf-connecting-ip".into()),
        };
        let got = rule.resolve(
            Some(ip("10.0.0.1")),
            [b"9.9.9.9".as_slice()].into_iter(),
            Some(b"198.51.100.7"),
        );
        assert_eq!(got, Some(ip("198.51.100.7")));
        let missing = rule.resolve(Some(ip("10.0.0.1")), std::iter::empty(), None);
        assert_eq!(missing, Some(ip("10.0.0.1")));
    }
}
