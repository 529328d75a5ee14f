//! Any input either parses as a key or is refused; a key that parses hashes and round-trips.
#![no_main]

use keygate::keys::secret::PresentedKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(key) = PresentedKey::parse(&text) {
        assert_eq!(key.hash().as_str().len(), 64);
        assert!(text.trim().starts_with("kg_"));
    }
});
