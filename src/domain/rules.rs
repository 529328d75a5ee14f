//! Gateway route rules (`UPSTREAM_ROUTES`): which scopes a request to the upstream needs, and
//! what it costs, by method and path. One rule per line, first match wins:
//!
//! ```text
//! # METHOD  PATH PATTERN     SCOPES (comma-separated, or -)   COST (optional, default 1)
//! GET       /orders/**       orders:read
//! POST      /orders          orders:write                     cost=5
//! *         /reports/*       reports:read,reports:export      cost=10
//! *         /public/**       -                                cost=0
//! ```
//!
//! METHOD is a method, several joined by `,`, or `*` (HEAD matches GET rules too). In the
//! pattern, `*` stands for one path segment and a final `**` for any number of them (none
//! included); other segments match without regard to case. A request no rule matches needs no
//! scope and costs 1. Knows nothing of HTTP beyond a method's name.
//!
//! A path is matched as an upstream could read it, so that no spelling slips past a rule: its
//! percent-encodings decoded (`/%6Frders` is `/orders`), `;parameters` dropped from each segment
//! (`/orders;x=1/7`, as Tomcat reads it), empty segments ignored and letters compared without
//! case (`/ORDERS`, for case-insensitive routers). Each of these can only make a rule match
//! more, never less: a spelling an upstream reads as a ruled path meets the rule.

use crate::contract::Scope;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Exact(String),
    One,
    Rest,
}

/// One line: methods (empty: any), pattern, needed scopes, cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    methods: Vec<String>,
    pattern: Vec<Segment>,
    pub scopes: Vec<Scope>,
    pub cost: u32,
}

/// What a request needs: the scopes a key must hold, and what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need<'a> {
    pub scopes: &'a [Scope],
    pub cost: u32,
}

impl Need<'static> {
    pub const ONE: Need<'static> = Need { scopes: &[], cost: 1 };

    pub const fn cost(cost: u32) -> Need<'static> {
        Need { scopes: &[], cost }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteRules(Vec<RouteRule>);

/// The most one request may cost: far above any sensible price, far below overflow.
pub const MAX_COST: u32 = 1_000_000;

impl RouteRules {
    /// Rules separated by newlines or `;`; `#` starts a comment.
    pub fn parse(text: &str) -> Result<RouteRules, String> {
        let mut rules = Vec::new();
        for (n, line) in text.split(['\n', ';']).enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            rules.push(parse_rule(line).map_err(|e| format!("rule {} (\"{line}\"): {e}", n + 1))?);
        }
        Ok(RouteRules(rules))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What a `method` request to `path` needs: the first matching rule's, else nothing and 1.
    pub fn need(&self, method: &str, path: &str) -> Need<'_> {
        if self.0.is_empty() {
            return Need::ONE;
        }
        let segments = canonical_segments(path);
        self.0
            .iter()
            .find(|rule| rule.matches(method, &segments))
            .map_or(Need::ONE, |rule| Need {
                scopes: &rule.scopes,
                cost: rule.cost,
            })
    }
}

/// The path's segments as an upstream could read them: percent-decoded (bytes that do not
/// decode to UTF-8 are kept as the lossy text), without `;parameters`, empty ones dropped.
fn canonical_segments(path: &str) -> Vec<String> {
    path.split('/')
        .map(|segment| segment.split(';').next().unwrap_or(""))
        .filter(|segment| !segment.is_empty())
        .map(percent_decoded)
        .collect()
}

fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let hex = |b: u8| (b as char).to_digit(16);
    while i < bytes.len() {
        let escape = (bytes[i] == b'%')
            .then(|| Some((hex(*bytes.get(i + 1)?)?, hex(*bytes.get(i + 2)?)?)))
            .flatten();
        match escape {
            Some((high, low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl RouteRule {
    fn matches(&self, method: &str, segments: &[String]) -> bool {
        let head_as_get = method.eq_ignore_ascii_case("HEAD");
        let method_matches = self.methods.is_empty()
            || self
                .methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(method) || (head_as_get && m == "GET"));
        if !method_matches {
            return false;
        }
        let mut segments = segments.iter();
        for part in &self.pattern {
            match part {
                Segment::Rest => return true,
                Segment::One => {
                    if segments.next().is_none() {
                        return false;
                    }
                }
                Segment::Exact(text) => {
                    if !segments.next().is_some_and(|s| s.eq_ignore_ascii_case(text)) {
                        return false;
                    }
                }
            }
        }
        segments.next().is_none()
    }
}

fn parse_rule(line: &str) -> Result<RouteRule, String> {
    let mut words = line.split_whitespace();
    let (Some(method), Some(pattern)) = (words.next(), words.next()) else {
        return Err("expected METHOD PATTERN [SCOPES] [cost=N]".into());
    };
    let methods = if method == "*" {
        Vec::new()
    } else {
        method
            .split(',')
            .map(|m| {
                if !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()) {
                    Ok(m.to_ascii_uppercase())
                } else {
                    Err(format!("\"{m}\" is not a method"))
                }
            })
            .collect::<Result<_, _>>()?
    };
    let mut rule = RouteRule {
        methods,
        pattern: parse_pattern(pattern)?,
        scopes: Vec::new(),
        cost: 1,
    };
    for word in words {
        if let Some(cost) = word.strip_prefix("cost=") {
            rule.cost = cost
                .parse()
                .ok()
                .filter(|c| *c <= MAX_COST)
                .ok_or_else(|| format!("cost must be a whole number from 0 to {MAX_COST}"))?;
        } else if word != "-" {
            rule.scopes = word
                .split(',')
                .map(|s| Scope::parse(s).and_then(concrete))
                .collect::<Result<_, _>>()?;
        }
    }
    Ok(rule)
}

/// A needed scope names one permission; a wildcard is something a key holds.
fn concrete(scope: Scope) -> Result<Scope, String> {
    if scope.as_str().ends_with('*') {
        Err(format!("\"{scope}\": a route needs a scope, not a wildcard"))
    } else {
        Ok(scope)
    }
}

fn parse_pattern(pattern: &str) -> Result<Vec<Segment>, String> {
    let Some(rest) = pattern.strip_prefix('/') else {
        return Err(format!("\"{pattern}\": a path pattern starts with /"));
    };
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let last = parts.len().saturating_sub(1);
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| match *part {
            "**" if i == last => Ok(Segment::Rest),
            "**" => Err(format!("\"{pattern}\": ** may only end a pattern")),
            "*" => Ok(Segment::One),
            text if text.contains('*') => Err(format!("\"{pattern}\": * stands for a whole segment")),
            text => Ok(Segment::Exact(text.to_owned())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RouteRules {
        RouteRules::parse(
            "GET /orders/** orders:read\nPOST /orders orders:write cost=5 # writes\n\
             ; * /reports/* reports:read,reports:export cost=10\nGET,POST /public/** - cost=0",
        )
        .expect("rules")
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let r = rules();
        fn scopes<'a>(n: Need<'a>) -> Vec<&'a str> {
            n.scopes.iter().map(Scope::as_str).collect()
        }
        assert_eq!(scopes(r.need("GET", "/orders")), ["orders:read"]);
        assert_eq!(scopes(r.need("HEAD", "/orders/7/items")), ["orders:read"]);
        assert_eq!(r.need("POST", "/orders").cost, 5);
        assert_eq!(
            r.need("POST", "/orders/7"),
            Need::ONE,
            "no rule: nothing needed, cost 1"
        );
        assert_eq!(
            scopes(r.need("DELETE", "/reports/daily")),
            ["reports:read", "reports:export"]
        );
        assert_eq!(r.need("GET", "/reports"), Need::ONE, "* is exactly one segment");
        assert_eq!(r.need("GET", "/reports/a/b"), Need::ONE);
        assert_eq!(r.need("post", "/public/x").cost, 0);
        assert_eq!(r.need("PUT", "/public/x"), Need::ONE);
    }

    #[test]
    fn no_spelling_of_a_path_slips_past_its_rule() {
        let r = rules();
        for path in [
            "/%6Frders/7",
            "/%6frders",
            "/ORDERS/7",
            "/Orders",
            "/orders;jsessionid=1/7",
            "/orders;x",
            "//orders//7",
            "/orders/7;y=2",
        ] {
            assert_eq!(
                r.need("GET", path)
                    .scopes
                    .iter()
                    .map(Scope::as_str)
                    .collect::<Vec<_>>(),
                ["orders:read"],
                "{path}"
            );
        }
        assert_eq!(
            r.need("POST", "/%6Frders").cost,
            5,
            "{:?}",
            r.need("POST", "/%6Frders")
        );
        let head = RouteRules::parse("HEAD /h x:y").expect("a HEAD rule");
        assert_eq!(
            head.need("HEAD", "/h").scopes.len(),
            1,
            "a HEAD rule matches HEAD"
        );
        assert_eq!(
            percent_decoded("%zz%4"),
            "%zz%4",
            "broken escapes stay as they are"
        );
    }

    #[test]
    fn bad_rules_are_named() {
        for bad in [
            "GET",
            "GET orders",
            "GET /a/**/b",
            "GET /a* x",
            "G3T /a",
            "GET /a reports:*",
            "GET /a x cost=-1",
            "GET /a x cost=2000000",
            "GET /a bad!scope",
        ] {
            let e = RouteRules::parse(&format!("GET /ok\n{bad}")).expect_err(bad);
            assert!(e.starts_with("rule 2"), "{bad}: {e}");
        }
        assert!(RouteRules::parse("# nothing\n\n").expect("empty").is_empty());
    }
}
