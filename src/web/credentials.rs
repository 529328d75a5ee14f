//! The one place where a request's credentials are read. The `Api-Key` and `Authorization`
//! headers are parsed once into a [`Credential`], which the gate, the API's principal,
//! `/metrics` and the gateway's header stripping all use, so they cannot disagree about what a
//! request carries. Shared secrets are compared in constant time ([`constant_time_eq`]).
//!
//! - `Api-Key: kg_…` or `Authorization: Api-Key kg_…`: an API key (exactly one).
//! - `Authorization: Bearer kgt.…` (scheme in any case, any spaces or tabs): a keygate token.
//! - Any other `Authorization` (another scheme, or a bearer token that is not keygate's): a
//!   foreign credential. It belongs to the upstream: the gate treats the caller as anonymous
//!   and the gateway forwards the header untouched; keygate's own API answers 401 to it.

use actix_web::http::header::{self, HeaderMap, HeaderValue};

use crate::keys::secret::{MAX_PRESENTED_LEN, PresentedKey};

/// What a request presents.
#[derive(Debug)]
pub enum Credential<'a> {
    None,
    ApiKey(PresentedKey),
    /// A keygate bearer token, not yet verified.
    Token(&'a str),
    /// An `Authorization` header that is not keygate's.
    Foreign,
    /// An API key that cannot be read: the sentence says why.
    Invalid(String),
    /// A keygate token that cannot be read (not ASCII).
    UnreadableToken,
}

/// Keygate's bearer tokens start with this (see `users::token`).
const TOKEN_SCHEME: &[u8] = b"kgt.";

/// `Authorization`'s scheme and credentials: `("bearer", "kgt.…")`, the scheme lower-cased
/// only in comparison. Splits at the first run of spaces or tabs.
fn scheme_and_rest(value: &[u8]) -> (&[u8], &[u8]) {
    let value = value.trim_ascii();
    match value.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(at) => (&value[..at], value[at..].trim_ascii()),
        None => (value, &[]),
    }
}

/// The credentials of `Authorization: Bearer …` when they are keygate's token.
fn keygate_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = scheme_and_rest(value);
    (scheme.eq_ignore_ascii_case(b"bearer") && rest.starts_with(TOKEN_SCHEME)).then_some(rest)
}

/// The credentials of `Authorization: Api-Key …`.
fn api_key_authorization(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = scheme_and_rest(value);
    scheme.eq_ignore_ascii_case(b"api-key").then_some(rest)
}

/// Whether an `Authorization` value is one of keygate's own credentials (an API key or a
/// keygate token): the gateway never forwards those.
pub fn is_keygate_authorization(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    keygate_token(bytes).is_some() || api_key_authorization(bytes).is_some()
}

/// The credentials of the request.
pub fn of(headers: &HeaderMap) -> Credential<'_> {
    let from_authorization = headers
        .get_all(header::AUTHORIZATION)
        .filter_map(|v| api_key_authorization(v.as_bytes()));
    let mut keys = headers
        .get_all("api-key")
        .map(|v| v.as_bytes().trim_ascii())
        .chain(from_authorization);
    if let Some(first) = keys.next() {
        if keys.next().is_some() {
            return Credential::Invalid("Send exactly one API key.".into());
        }
        if first.len() > MAX_PRESENTED_LEN {
            return Credential::Invalid("The API key is too long.".into());
        }
        let Ok(text) = std::str::from_utf8(first) else {
            return Credential::Invalid("The API key does not have the kg_… format.".into());
        };
        return match PresentedKey::parse(text) {
            Ok(key) => Credential::ApiKey(key),
            Err(e) => Credential::Invalid(sentence(&e.to_string())),
        };
    }
    let mut authorization = headers.get_all(header::AUTHORIZATION);
    let Some(value) = authorization.next() else {
        return Credential::None;
    };
    match keygate_token(value.as_bytes()) {
        Some(token) => match std::str::from_utf8(token) {
            Ok(token) => Credential::Token(token),
            Err(_) => Credential::UnreadableToken,
        },
        None => Credential::Foreign,
    }
}

/// The bearer credentials of `Authorization`, whatever they are (for `/metrics`).
pub fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?;
    let (scheme, rest) = scheme_and_rest(value.as_bytes());
    scheme.eq_ignore_ascii_case(b"bearer").then_some(rest)
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |c| {
        format!("{}{}.", c.to_uppercase(), chars.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderName;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::try_from(*name).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    fn key() -> String {
        crate::keys::secret::IssuedKey::generate().expose().to_owned()
    }

    #[test]
    fn api_keys_come_from_either_header_exactly_once() {
        let k = key();
        assert!(matches!(of(&headers(&[("api-key", &k)])), Credential::ApiKey(_)));
        for auth in [
            format!("Api-Key {k}"),
            format!("api-key  {k}"),
            format!("API-KEY\t{k}"),
        ] {
            assert!(
                matches!(of(&headers(&[("authorization", &auth)])), Credential::ApiKey(_)),
                "{auth}"
            );
        }
        let two = headers(&[("api-key", &k), ("authorization", &format!("Api-Key {k}"))]);
        assert!(matches!(of(&two), Credential::Invalid(_)));
        assert!(matches!(
            of(&headers(&[("api-key", "kg_bogus")])),
            Credential::Invalid(_)
        ));
    }

    #[test]
    fn keygate_tokens_are_recognised_in_any_case_and_spacing() {
        for auth in [
            "Bearer kgt.1.2.3",
            "bearer kgt.1.2.3",
            "Bearer  kgt.1.2.3",
            "BEARER\tkgt.1.2.3 ",
        ] {
            let map = headers(&[("authorization", auth)]);
            assert!(matches!(of(&map), Credential::Token("kgt.1.2.3")), "{auth}");
            assert!(is_keygate_authorization(map.get("authorization").expect("set")));
        }
    }

    #[test]
    fn a_keygate_token_that_is_not_text_is_an_unreadable_token_not_a_bad_key() {
        let mut map = HeaderMap::new();
        map.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer kgt.\xff\xfe").expect("obs-text is a valid value"),
        );
        assert!(matches!(of(&map), Credential::UnreadableToken));
    }

    #[test]
    fn other_authorization_is_foreign() {
        for auth in ["Bearer eyJhbGciOi.x.y", "Basic YTpi", "Bearer", "Token kgt.1"] {
            let map = headers(&[("authorization", auth)]);
            assert!(matches!(of(&map), Credential::Foreign), "{auth}");
            assert!(!is_keygate_authorization(map.get("authorization").expect("set")));
        }
        assert!(matches!(of(&HeaderMap::new()), Credential::None));
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert_eq!(
            bearer(&headers(&[("authorization", "bearer  s3cret")])),
            Some(&b"s3cret"[..])
        );
    }
}
