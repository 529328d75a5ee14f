//! X-Forwarded-For resolution never panics, and with no trusted proxy always yields the peer.
#![no_main]

use std::net::IpAddr;

use keygate::limits::client_ip::ClientIpRule;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let peer = IpAddr::from([10, 0, 0, 1]);
    let hops = data.first().map_or(0, |b| usize::from(b % 4));
    let lines: Vec<&[u8]> = data.get(1..).unwrap_or_default().split(|&b| b == b'\n').collect();
    let rule = ClientIpRule { trusted_hops: hops, header: None };
    let got = rule.resolve(Some(peer), lines.iter().copied(), None);
    assert!(got.is_some());
    if hops == 0 {
        assert_eq!(got, Some(peer));
    }
});
