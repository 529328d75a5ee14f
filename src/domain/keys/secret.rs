//! The key itself: generation, format check and hashing. The plaintext exists only inside an
//! [`IssuedKey`] (handed out once) or a [`PresentedKey`] (checked, hashed, dropped); neither
//! prints it in `Debug`.
//!
//! Format (GitHub's token layout): `kg_` + 30 base62 characters from the OS CSPRNG + 6 base62
//! characters of the CRC32 of those 30. The checksum lets the gate refuse typos and random
//! guesses without touching the database or Redis.

use std::fmt;

use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "kg_";
const RANDOM_LEN: usize = 30;
const CHECKSUM_LEN: usize = 6;
/// Length of every valid key: 39 bytes.
pub const KEY_LEN: usize = KEY_PREFIX.len() + RANDOM_LEN + CHECKSUM_LEN;
/// Inputs longer than this are refused without being read.
pub const MAX_PRESENTED_LEN: usize = 255;
/// Characters of the random part kept, after `kg_`, as the display prefix.
const DISPLAY_LEN: usize = 6;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// SHA-256 of the whole key, hex encoded: what the database stores and looks up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyHash(String);

impl KeyHash {
    fn of(key: &str) -> KeyHash {
        KeyHash::from_digest(&Sha256::digest(key.as_bytes()).into())
    }

    pub fn from_digest(digest: &[u8; 32]) -> KeyHash {
        KeyHash(hex::encode(digest))
    }

    /// A hash another system kept: 64 hex digits (either case), stored in lower case.
    pub fn from_hex(hex_digits: &str) -> Option<KeyHash> {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut digest).ok()?;
        Some(KeyHash::from_digest(&digest))
    }

    /// The hash of a plaintext key being imported (any form: keygate's or another system's).
    pub fn of_plaintext(key: &str) -> KeyHash {
        KeyHash::of(key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A freshly generated key. Its plaintext is shown to its owner once and never stored.
pub struct IssuedKey(String);

impl IssuedKey {
    pub fn generate() -> IssuedKey {
        let mut random = String::with_capacity(RANDOM_LEN);
        let mut buf = [0u8; 64];
        while random.len() < RANDOM_LEN {
            getrandom::fill(&mut buf).expect("the operating system's random source is unavailable");
            // Rejection sampling keeps every character equally likely: 248 = 4 × 62.
            random.extend(
                buf.iter()
                    .filter(|&&b| b < 248)
                    .map(|&b| BASE62[usize::from(b % 62)] as char)
                    .take(RANDOM_LEN - random.len()),
            );
        }
        IssuedKey(format!("{KEY_PREFIX}{random}{}", checksum(&random)))
    }

    /// The full key, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.0)
    }

    /// `kg_` and the first six random characters: enough to recognise a key in a list.
    pub fn display_prefix(&self) -> String {
        self.0[..KEY_PREFIX.len() + DISPLAY_LEN].to_owned()
    }
}

impl fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IssuedKey({}…)", self.display_prefix())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedKey {
    #[error("the API key is longer than {MAX_PRESENTED_LEN} bytes")]
    TooLong,
    #[error("the API key does not have the kg_… format")]
    Format,
    #[error("the API key's checksum does not match; check it was copied whole")]
    Checksum,
}

/// A key as a caller sent it, once its form has been checked: a keygate key (`kg_…`) by its
/// format and checksum, so typos and guesses cost no lookup; any other string of visible ASCII
/// (a key imported from another system, which keygate only knows by its hash) as it is. Those
/// cost a lookup once per distinct string; unknown ones are remembered for a few seconds (the
/// key cache's negative entries), so a flood of random strings stays bounded.
pub struct PresentedKey(String);

impl PresentedKey {
    pub fn parse(raw: &str) -> Result<PresentedKey, MalformedKey> {
        if raw.len() > MAX_PRESENTED_LEN {
            return Err(MalformedKey::TooLong);
        }
        let raw = raw.trim();
        let Some(body) = raw.strip_prefix(KEY_PREFIX) else {
            return PresentedKey::foreign(raw);
        };
        if raw.len() != KEY_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(MalformedKey::Format);
        }
        let (random, sum) = body.split_at(RANDOM_LEN);
        if checksum(random) != sum {
            return Err(MalformedKey::Checksum);
        }
        Ok(PresentedKey(raw.to_owned()))
    }

    /// A key not in keygate's format (imported): visible ASCII, no spaces.
    fn foreign(raw: &str) -> Result<PresentedKey, MalformedKey> {
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(MalformedKey::Format);
        }
        Ok(PresentedKey(raw.to_owned()))
    }

    /// Whether this is a keygate key (`kg_…`), rather than an imported one.
    pub fn is_keygate(&self) -> bool {
        self.0.starts_with(KEY_PREFIX)
    }

    /// The raw SHA-256 of the key: the in-process cache's key (no hex encoding per request).
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.0)
    }
}

impl fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A keygate key shows its display prefix; an imported one, of unknown form, nothing.
        let shown = if self.is_keygate() {
            &self.0[..KEY_PREFIX.len() + DISPLAY_LEN]
        } else {
            ""
        };
        write!(f, "PresentedKey({shown}…)")
    }
}

/// CRC32 of `random`, as six base62 digits.
fn checksum(random: &str) -> String {
    base62_fixed(crc32fast::hash(random.as_bytes()))
}

/// `n` as six base62 digits, most significant first, zero padded (62⁶ > 2³²).
fn base62_fixed(n: u32) -> String {
    let mut n = u64::from(n);
    let mut digits = [b'0'; CHECKSUM_LEN];
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn generated_keys_have_the_documented_format() {
        let key = IssuedKey::generate();
        let text = key.expose();
        assert_eq!(text.len(), KEY_LEN);
        assert_eq!(KEY_LEN, 39);
        assert!(text.starts_with("kg_"), "the key prefix is pinned: {text}");
        assert!(text[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(key.display_prefix(), &text[..9]);
        assert!(PresentedKey::parse(text).is_ok());
    }

    #[test]
    fn generated_keys_are_unique_and_uniform_over_base62() {
        let mut seen = HashSet::new();
        let mut counts: HashMap<char, usize> = HashMap::new();
        for _ in 0..2000 {
            let key = IssuedKey::generate();
            for c in key.expose()[3..33].chars() {
                *counts.entry(c).or_default() += 1;
            }
            assert!(seen.insert(key.expose().to_owned()), "duplicate key generated");
        }
        // 60,000 characters over 62 symbols: about 968 each. A biased or constant source
        // (or a modulo bias of 4/256) would fall outside this band.
        assert_eq!(counts.len(), 62, "every base62 symbol appears");
        for (c, n) in counts {
            assert!((800..1150).contains(&n), "symbol {c} appeared {n} times");
        }
    }

    #[test]
    fn the_checksum_rejects_any_single_changed_character() {
        let key = IssuedKey::generate();
        let text = key.expose().to_owned();
        for i in 3..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(bytes).expect("ascii");
            assert_eq!(
                PresentedKey::parse(&changed).err(),
                Some(MalformedKey::Checksum),
                "changing character {i} must be caught"
            );
        }
    }

    #[test]
    fn malformed_inputs_are_refused_with_a_reason() {
        let good = IssuedKey::generate().expose().to_owned();
        assert_eq!(
            PresentedKey::parse(&"x".repeat(300)).err(),
            Some(MalformedKey::TooLong)
        );
        assert_eq!(PresentedKey::parse("").err(), Some(MalformedKey::Format));
        assert_eq!(PresentedKey::parse("kg_short").err(), Some(MalformedKey::Format));
        assert_eq!(PresentedKey::parse("two words").err(), Some(MalformedKey::Format));
        assert_eq!(PresentedKey::parse("ctl\u{1}").err(), Some(MalformedKey::Format));
        // Strings that are not keygate keys are imported keys, known only by their hash.
        let foreign = PresentedKey::parse(&good[3..]).expect("an imported key's form");
        assert!(!foreign.is_keygate());
        assert_eq!(
            format!("{foreign:?}"),
            "PresentedKey(…)",
            "nothing of it in Debug"
        );
        assert!(PresentedKey::parse("Abc123.def456").is_ok());
        assert_eq!(
            PresentedKey::parse(&format!("{good}0")).err(),
            Some(MalformedKey::Format)
        );
        let accented = format!("{}é{}", &good[..10], &good[12..]);
        assert_eq!(PresentedKey::parse(&accented).err(), Some(MalformedKey::Format));
        assert!(PresentedKey::parse(&good.replace("kg_", "gh_")).is_ok_and(|k| !k.is_keygate()));
    }

    #[test]
    fn hashing_is_sha256_hex_and_the_same_for_issued_and_presented() {
        let key = IssuedKey::generate();
        let presented = PresentedKey::parse(key.expose()).expect("valid");
        assert_eq!(key.hash(), presented.hash());
        assert_eq!(key.hash().as_str().len(), 64);
        assert_eq!(
            KeyHash::of("abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn debug_output_never_contains_the_secret() {
        let key = IssuedKey::generate();
        let presented = PresentedKey::parse(key.expose()).expect("valid");
        for shown in [format!("{key:?}"), format!("{presented:?}")] {
            assert!(!shown.contains(key.expose()), "{shown}");
            assert!(shown.contains(&key.display_prefix()));
        }
    }

    use proptest::prelude::*;

    fn base62_string(len: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(0..62usize, len)
            .prop_map(|digits| digits.into_iter().map(|d| BASE62[d] as char).collect())
    }

    proptest! {
        #[test]
        fn parsing_never_panics_on_any_text(text in any::<String>()) {
            let _ = PresentedKey::parse(&text);
        }

        #[test]
        fn parsing_never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = PresentedKey::parse(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn any_random_part_with_its_checksum_round_trips_and_any_change_is_caught(
            random in base62_string(RANDOM_LEN),
            position in 3..KEY_LEN,
            replacement in 0..62usize,
        ) {
            let key = format!("{KEY_PREFIX}{random}{}", checksum(&random));
            prop_assert!(PresentedKey::parse(&key).is_ok());
            let mut changed = key.clone().into_bytes();
            prop_assume!(changed[position] != BASE62[replacement]);
            changed[position] = BASE62[replacement];
            let changed = String::from_utf8(changed).expect("ascii");
            prop_assert_eq!(PresentedKey::parse(&changed).err(), Some(MalformedKey::Checksum));
        }
    }

    #[test]
    fn checksum_is_six_zero_padded_base62_digits_of_crc32() {
        assert_eq!(base62_fixed(0), "000000");
        assert_eq!(base62_fixed(61), "00000z");
        assert_eq!(base62_fixed(62), "000010");
        assert_eq!(base62_fixed(u32::MAX), "4gfFC3");
        // CRC32("123456789") is the standard check value 0xCBF43926.
        assert_eq!(checksum("123456789"), base62_fixed(0xCBF4_3926));
    }
}
