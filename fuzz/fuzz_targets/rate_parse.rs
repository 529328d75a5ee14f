//! Rate strings never panic, and whatever parses prints back to the same rates.
#![no_main]

use keygate::limits::Rate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(rates) = Rate::parse_list(&text) {
        let printed: Vec<String> = rates.iter().map(Rate::to_string).collect();
        assert_eq!(Rate::parse_list(&printed.join(",")), Ok(rates));
    }
});
