//! Path hygiene before routing. A path with a dot segment (`.`, `..`, or either spelled with
//! `%2e`), an encoded slash or backslash (`%2f`, `%5c`) or a raw backslash is refused with a
//! JSON 400 `invalid_path`: the router and an upstream could read such a path differently, and
//! the gate must decide on the path that is served. Then normalisation, so `/api/keys/` and
//! `/api//keys` are `/api/keys`: repeated slashes are merged and a trailing slash is trimmed, as
//! actix's `NormalizePath::trim()` does. Unlike it, a path that is already normal (nearly every
//! request) costs one scan of its bytes and no allocation; a rewritten request keeps the URI as
//! sent in [`OriginalUri`], for gateway mode.

use std::future::{Ready, ready};

use futures_util::future::Either;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, Url, forward_ready};
use actix_web::http::Uri;
use actix_web::http::uri::PathAndQuery;
use actix_web::{Error, HttpMessage};

use crate::error::ApiError;

/// The request's URI as the client sent it, when normalisation changed it.
#[derive(Clone)]
pub struct OriginalUri(pub Uri);

/// A change made to a request before it is routed (or, on a resource, before its routes are
/// tried): it may refuse the request. One `Transform` for keygate's rewrites (path hygiene,
/// HEAD as GET): a plain function call on the hot path, no allocation, no boxed future.
/// Generic over the function (a zero-sized fn item), so each use is its own inlined copy.
#[derive(Clone, Copy)]
pub struct Rewrite<F>(pub F);

impl<S, B, F> Transform<S, ServiceRequest> for Rewrite<F>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    F: Fn(&mut ServiceRequest) -> Result<(), ApiError> + Copy,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RewriteService<S, F>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RewriteService {
            service,
            rewrite: self.0,
        }))
    }
}

pub struct RewriteService<S, F> {
    service: S,
    rewrite: F,
}

impl<S, B, F> Service<ServiceRequest> for RewriteService<S, F>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    F: Fn(&mut ServiceRequest) -> Result<(), ApiError>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = Either<S::Future, Ready<Result<ServiceResponse<B>, Error>>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        match (self.rewrite)(&mut req) {
            Ok(()) => Either::Left(self.service.call(req)),
            Err(refused) => Either::Right(ready(Err(refused.into()))),
        }
    }
}

/// Path hygiene and normalisation (see the module comment), as a [`Rewrite`] of the whole app.
pub fn normalize_path(req: &mut ServiceRequest) -> Result<(), ApiError> {
    if ambiguous(req.path()) {
        return Err(ApiError::InvalidPath);
    }
    if let Some(path) = normalized(req.path()) {
        let original = req.uri().clone();
        let path_and_query = match original.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        let mut parts = original.clone().into_parts();
        // Built from a valid path with bytes only removed, so both steps succeed; if not,
        // the request goes on unchanged.
        if let Ok(pq) = PathAndQuery::try_from(path_and_query) {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                req.match_info_mut().set(Url::new(uri.clone()));
                req.head_mut().uri = uri;
                req.extensions_mut().insert(OriginalUri(original));
            }
        }
    }
    Ok(())
}

/// Whether `path` has a dot segment or an encoded slash or backslash (see the module comment).
/// Only paths with a `.`, `%` or `\\` are looked at closely.
fn ambiguous(path: &str) -> bool {
    let bytes = path.as_bytes();
    if !bytes.iter().any(|b| matches!(b, b'.' | b'%' | b'\\')) {
        return false;
    }
    let encoded =
        |w: &[u8]| w[0] == b'%' && (w[1..].eq_ignore_ascii_case(b"2f") || w[1..].eq_ignore_ascii_case(b"5c"));
    if bytes.contains(&b'\\') || bytes.windows(3).any(encoded) {
        return true;
    }
    // `..;x` is `..` to servers that read `;` as a parameter separator.
    bytes
        .split(|b| *b == b'/')
        .map(|segment| segment.split(|b| *b == b';').next().unwrap_or(segment))
        .any(is_dot_segment)
}

/// `.` or `..`, each dot written as `.` or `%2e` (any case). Allocates nothing: paths with a dot
/// (`/v1.2/x`, `/file.json`) are common on gated routes.
fn is_dot_segment(mut segment: &[u8]) -> bool {
    let mut dots = 0;
    while !segment.is_empty() {
        if segment[0] == b'.' {
            segment = &segment[1..];
        } else if segment.len() >= 3 && segment[..3].eq_ignore_ascii_case(b"%2e") {
            segment = &segment[3..];
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

/// The normal form of `path`, or `None` when it already is.
fn normalized(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let doubled = bytes.windows(2).any(|w| w == b"//");
    let trailing = bytes.len() > 1 && bytes.ends_with(b"/");
    if !doubled && !trailing {
        return None;
    }
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::{ambiguous, normalized};

    #[test]
    fn dot_segments_and_encoded_slashes_are_ambiguous() {
        for path in [
            "/static/../x",
            "/static/./x",
            "/static/%2e%2e/x",
            "/static/%2E%2E/x",
            "/static/.%2e/x",
            "/static/%2e",
            "/x/..",
            "/x/.",
            "/..;/x",
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
        ] {
            assert!(ambiguous(path), "{path}");
        }
        for path in [
            "/",
            "/api/keys",
            "/static/admin.css",
            "/a/.well-known/x",
            "/a/..b/c",
            "/a%20b",
            "/v1.2/x",
        ] {
            assert!(!ambiguous(path), "{path}");
        }
    }

    #[test]
    fn merges_slashes_and_trims_the_trailing_one() {
        for (path, normal) in [
            ("/api/keys/", "/api/keys"),
            ("/api//keys", "/api/keys"),
            ("//api///keys//", "/api/keys"),
            ("//", "/"),
        ] {
            assert_eq!(normalized(path).as_deref(), Some(normal), "{path}");
        }
        for path in ["/", "/api/keys", "/a/b.c", ""] {
            assert_eq!(normalized(path), None, "{path}");
        }
    }
}
