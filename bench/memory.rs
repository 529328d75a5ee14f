//! Memory of the in-process counter store: resident set growth after tracking 1,000,000
//! distinct anonymous callers, per caller. `cargo run --release --example bench_memory`.

use std::net::{IpAddr, Ipv4Addr};

use keygate::limits::memory::MemoryStore;
use keygate::limits::{Bucket, Policy, Rate};

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

fn main() {
    let callers: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    // The default anonymous policy: one window.
    let policy = Policy::from_rates(&Rate::parse_list("100/hour").expect("rate"));
    let store = MemoryStore::new(MemoryStore::DEFAULT_CAPACITY.max(callers as usize));
    let before = resident_bytes();
    let now = 1_900_000_000_000;
    for i in 0..callers {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i));
        store.hit(Bucket::ip(ip), &policy, 1, now);
    }
    let after = resident_bytes();
    let tracked = store.len() as u64;
    println!(
        "in-process store: {tracked} callers tracked, resident memory +{:.1} MiB, {:.0} bytes per caller",
        (after - before) as f64 / 1_048_576.0,
        (after - before) as f64 / tracked.max(1) as f64
    );
}
