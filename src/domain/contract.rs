//! What a key promises besides its limits: metadata, scopes and an IP allowlist. Each is parsed
//! once, here, from what a caller sent (the API, the dashboard, the CLI, an import) and from
//! what the database holds, so the gate only compares.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::Value;

/// A key's contract as a whole, as a new key (or an imported one) gets it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contract {
    pub meta: Option<Meta>,
    pub scopes: Scopes,
    pub ip_allowlist: IpAllowlist,
}

/// Free-form data about a key, for its owner's systems: a JSON object of at most 4 KiB as
/// serialized. Kept as that text: the gate hands it on without looking inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta(Arc<str>);

impl Meta {
    pub const MAX_BYTES: usize = 4096;

    pub fn parse(value: &Value) -> Result<Meta, String> {
        if !value.is_object() {
            return Err("must be a JSON object (or null)".into());
        }
        let text = value.to_string();
        if text.len() > Self::MAX_BYTES {
            return Err(format!(
                "must be at most {} bytes as JSON; this is {}",
                Self::MAX_BYTES,
                text.len()
            ));
        }
        Ok(Meta(text.into()))
    }

    /// As stored; a column that does not hold an object (it never should) reads as none.
    pub fn of_column(text: Option<&str>) -> Option<Meta> {
        let value: Value = serde_json::from_str(text?).ok()?;
        Meta::parse(&value).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }

    /// The same JSON in ASCII only (others as `\uXXXX` escapes): what a header value may hold.
    pub fn ascii(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for c in self.0.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        out
    }
}

/// One permission a key holds or a route needs: segments of letters, digits, `_`, `.` and `-`
/// joined by `:` (`orders:read`), at most 64 characters. A held scope may end in `:*`, which
/// grants every scope under it (`reports:*` grants `reports:daily` and `reports:daily:csv`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(Box<str>);

impl Scope {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(text: &str) -> Result<Scope, String> {
        if text.is_empty() || text.len() > Self::MAX_CHARS {
            return Err(format!(
                "\"{}\" must be 1 to {} characters",
                short(text),
                Self::MAX_CHARS
            ));
        }
        let segments: Vec<&str> = text.split(':').collect();
        let last = segments.len() - 1;
        let good = segments.iter().enumerate().all(|(i, segment)| {
            (i == last && i > 0 && *segment == "*")
                || (!segment.is_empty()
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')))
        });
        if !good {
            return Err(format!(
                "\"{}\" is not a scope: segments of letters, digits, _ . - joined by ':', the last may be '*' (orders:read, reports:*)",
                short(text)
            ));
        }
        Ok(Scope(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether holding this scope grants `needed`.
    pub fn grants(&self, needed: &Scope) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => needed.0.starts_with(prefix) && needed.0.len() > prefix.len(),
            None => self.0 == needed.0,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn short(text: &str) -> String {
    text.chars().take(70).collect()
}

/// A key's scopes: at most 50, without repeats, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Arc<[Scope]>);

impl Scopes {
    pub const MAX: usize = 50;

    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Scopes, String> {
        let mut scopes: Vec<Scope> = Vec::new();
        for (n, item) in items.into_iter().enumerate() {
            // Counted as given, repeats included: what the OpenAPI document's maxItems counts.
            if n == Self::MAX {
                return Err(format!("at most {} scopes", Self::MAX));
            }
            let scope = Scope::parse(item)?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        Ok(Scopes(scopes.into()))
    }

    /// A JSON array of strings.
    pub fn from_json(value: &Value) -> Result<Scopes, String> {
        let items = value.as_array().ok_or("must be a list of scope strings")?;
        let texts: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
        Scopes::parse(texts.ok_or("must be a list of scope strings")?)
    }

    /// As stored: space-separated. What does not parse (it never should) is left out.
    pub fn of_column(text: &str) -> Scopes {
        let scopes: Vec<Scope> = text
            .split_whitespace()
            .filter_map(|s| Scope::parse(s).ok())
            .collect();
        Scopes(scopes.into())
    }

    pub fn column(&self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.contains(scope)
    }

    /// Whether some held scope grants `needed`.
    pub fn grants(&self, needed: &Scope) -> bool {
        self.0.iter().any(|held| held.grants(needed))
    }

    /// The scopes of `needed` that none of these grants, in order.
    pub fn missing<'a>(&self, needed: &'a [Scope]) -> Vec<&'a Scope> {
        needed.iter().filter(|n| !self.grants(n)).collect()
    }

    pub fn to_strings(&self) -> Vec<&str> {
        self.iter().map(Scope::as_str).collect()
    }

    /// A copy with allocations of its own, for a thread to keep (see `keys::cache`).
    pub fn deep_copy(&self) -> Scopes {
        Scopes(self.0.iter().cloned().collect())
    }
}

/// A list of strings, written without collecting them first.
impl serde::Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(Scope::as_str))
    }
}

/// The addresses a key may be used from: IPv4 and IPv6 addresses and CIDR blocks, at most 100.
/// Empty: any address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpAllowlist(Arc<[IpNet]>);

impl IpAllowlist {
    pub const MAX: usize = 100;

    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<IpAllowlist, String> {
        let mut nets: Vec<IpNet> = Vec::new();
        for (n, item) in items.into_iter().enumerate() {
            if n == Self::MAX {
                return Err(format!("at most {} addresses or blocks", Self::MAX));
            }
            let net = parse_net(item.trim())?;
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
        Ok(IpAllowlist(nets.into()))
    }

    /// A JSON array of strings.
    pub fn from_json(value: &Value) -> Result<IpAllowlist, String> {
        let items = value
            .as_array()
            .ok_or("must be a list of IP addresses or CIDR blocks")?;
        let texts: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
        IpAllowlist::parse(texts.ok_or("must be a list of IP addresses or CIDR blocks")?)
    }

    /// As stored: space-separated. What does not parse (it never should) is left out — and a
    /// list that loses entries that way would widen, so a bad column allows nothing.
    pub fn of_column(text: &str) -> IpAllowlist {
        match IpAllowlist::parse(text.split_whitespace()) {
            Ok(list) => list,
            Err(_) => IpAllowlist(Arc::from(vec!["0.0.0.0/32".parse::<IpNet>().expect("a network")])),
        }
    }

    pub fn column(&self) -> String {
        self.to_strings().join(" ")
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a request from `address` may use the key (`None`: an unknown address, allowed
    /// only without a list).
    pub fn allows(&self, address: Option<IpAddr>) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let Some(address) = address else {
            return false;
        };
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&address))
    }

    /// Single addresses as addresses, blocks as CIDR.
    pub fn to_strings(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|net| {
                if net.prefix_len() == net.max_prefix_len() {
                    net.addr().to_string()
                } else {
                    net.to_string()
                }
            })
            .collect()
    }

    pub fn deep_copy(&self) -> IpAllowlist {
        IpAllowlist(self.0.iter().copied().collect())
    }
}

fn parse_net(text: &str) -> Result<IpNet, String> {
    let bad = || {
        format!(
            "\"{}\" is not an IP address or CIDR block (203.0.113.7, 10.0.0.0/8, 2001:db8::/32)",
            short(text)
        )
    };
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(address));
    }
    // A block is kept as its network: 10.0.0.1/8 is 10.0.0.0/8.
    let net: IpNet = text.parse().map_err(|_| bad())?;
    Ok(net.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_the_grammar_and_wildcards_grant_below_them() {
        for good in ["orders:read", "reports:*", "a", "keygate:verify", "x.y-z_1:2"] {
            assert!(Scope::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "*", "a::b", ":a", "a:", "a b", "a:*:b", "ä", &"x".repeat(65)] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
        let held = Scopes::parse(["reports:*", "orders:read"]).expect("scopes");
        let need = |s| Scope::parse(s).expect("scope");
        assert!(held.grants(&need("reports:daily")));
        assert!(held.grants(&need("reports:daily:csv")));
        assert!(
            !held.grants(&need("reports")),
            "a wildcard grants below it, not itself"
        );
        assert!(!held.grants(&need("reportsx:a")));
        assert!(!held.grants(&need("orders:write")));
        let needed = [need("orders:read"), need("orders:write")];
        assert_eq!(held.missing(&needed), [&needed[1]]);
        assert_eq!(Scopes::of_column(&held.column()), held);
        assert!(
            Scopes::parse(
                (0..51)
                    .map(|i| format!("s{i}"))
                    .collect::<Vec<_>>()
                    .iter()
                    .map(String::as_str)
            )
            .is_err()
        );
    }

    #[test]
    fn allowlists_hold_addresses_and_blocks() {
        let list = IpAllowlist::parse(["203.0.113.7", "10.0.0.0/8", "2001:db8::/32"]).expect("list");
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
        assert!(list.allows(ip("203.0.113.7")));
        assert!(list.allows(ip("10.200.1.1")));
        assert!(
            list.allows(ip("::ffff:10.1.2.3")),
            "IPv4-mapped IPv6 is the IPv4 address"
        );
        assert!(list.allows(ip("2001:db8:1::5")));
        assert!(!list.allows(ip("203.0.113.8")));
        assert!(!list.allows(None));
        assert!(IpAllowlist::default().allows(None));
        assert_eq!(list.to_strings(), ["203.0.113.7", "10.0.0.0/8", "2001:db8::/32"]);
        assert_eq!(IpAllowlist::of_column(&list.column()), list);
        assert_eq!(
            IpAllowlist::parse(["10.0.0.1/8"]).expect("a block").to_strings(),
            ["10.0.0.0/8"],
            "kept as its network"
        );
        assert!(IpAllowlist::parse(["01.2.3.4"]).is_err(), "no leading zeros");
        assert!(IpAllowlist::parse(["not an ip"]).is_err());
        assert!(
            !IpAllowlist::of_column("garbage").allows(ip("1.2.3.4")),
            "a bad column allows nothing"
        );
    }

    #[test]
    fn meta_is_an_object_of_at_most_4_kib() {
        assert!(Meta::parse(&serde_json::json!({"plan": "pro"})).is_ok());
        assert!(Meta::parse(&serde_json::json!([1])).is_err());
        assert!(Meta::parse(&serde_json::json!("x")).is_err());
        let big = serde_json::json!({"x": "y".repeat(4100)});
        assert!(Meta::parse(&big).is_err());
        let meta = Meta::parse(&serde_json::json!({"a": 1})).expect("meta");
        assert_eq!(Meta::of_column(Some(meta.as_str())), Some(meta));
        let unicode = Meta::parse(&serde_json::json!({"name": "Zoë 😀"})).expect("meta");
        assert!(unicode.ascii().is_ascii());
        assert_eq!(
            serde_json::from_str::<Value>(&unicode.ascii()).expect("JSON"),
            unicode.to_value()
        );
    }
}
