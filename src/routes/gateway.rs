//! Gateway mode (`UPSTREAM_URL`): every request keygate does not serve itself has passed the
//! gate, and is proxied to the upstream. Method, path, query, headers and body are kept; bodies
//! stream both ways. Hop-by-hop headers and keygate's own credentials are removed;
//! `X-Forwarded-*` and the caller (`X-Keygate-Key-Id`, `-User-Id`, `-Tier`) are added. A refused
//! request never gets here.

use std::time::Duration;

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, body::SizedStream, web};
use awc::error::SendRequestError;

use crate::error::ApiError;
use crate::gate::{Caller, Identity};
use crate::normalize::OriginalUri;

/// The upstream and a client for it; one per worker (awc's client is not `Send`).
pub struct Upstream {
    pub client: awc::Client,
    /// `http://host:port`, without a trailing slash.
    pub base: String,
    pub timeout: Duration,
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Removes hop-by-hop headers from `headers`, and those that `Connection` in `received` names
/// (awc does not copy `Connection` itself, so the names are read from what was received).
fn strip_hop_by_hop(headers: &mut HeaderMap, received: &HeaderMap) {
    let named: Vec<HeaderName> = received
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named.iter().chain(
        HOP_BY_HOP
            .iter()
            .map(|n| HeaderName::from_static(n))
            .collect::<Vec<_>>()
            .iter(),
    ) {
        headers.remove(name);
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

pub async fn forward(
    req: HttpRequest,
    body: web::Payload,
    upstream: web::Data<Upstream>,
) -> Result<HttpResponse, ApiError> {
    let uri = req
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().clone(), |o| o.0.clone());
    let target = format!(
        "{}{}",
        upstream.base,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut outgoing = upstream
        .client
        .request_from(target, req.head())
        .no_decompress()
        .timeout(upstream.timeout);

    let incoming = req.headers();
    let length = content_length(incoming);
    let has_body = length.is_some_and(|n| n > 0) || incoming.contains_key(header::TRANSFER_ENCODING);
    let headers = outgoing.headers_mut();
    strip_hop_by_hop(headers, incoming);
    headers.remove(header::HOST);
    headers.remove("api-key");
    let keygate_credentials = incoming
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("api-key ")) || v.starts_with("Bearer kgt.")
        });
    if keygate_credentials {
        headers.remove(header::AUTHORIZATION);
    }
    for spoofable in ["x-keygate-key-id", "x-keygate-user-id", "x-keygate-tier"] {
        headers.remove(spoofable);
    }
    // Copied out: the connection-info borrow must not live across the upstream's await.
    let (scheme, host) = {
        let info = req.connection_info();
        (info.scheme().to_owned(), info.host().to_owned())
    };
    let peer = req.peer_addr().map(|a| a.ip().to_string());
    let forwarded_for = match (
        incoming.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
        peer,
    ) {
        (Some(chain), Some(peer)) => format!("{chain}, {peer}"),
        (None, Some(peer)) => peer,
        (Some(chain), None) => chain.to_owned(),
        (None, None) => String::new(),
    };
    let mut add = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    if !forwarded_for.is_empty() {
        add("x-forwarded-for", forwarded_for);
    }
    add("x-forwarded-proto", scheme);
    add("x-forwarded-host", host);
    if let Some(caller) = req.extensions().get::<Caller>() {
        add("x-keygate-tier", caller.identity.tier().to_owned());
        match &caller.identity {
            Identity::Key(key) => {
                add("x-keygate-key-id", key.id.to_string());
                add("x-keygate-user-id", key.user_id.to_string());
            }
            Identity::User(id) => add("x-keygate-user-id", id.to_string()),
            Identity::Anonymous => {}
        }
    }

    let sent = match (has_body, length) {
        (false, _) => outgoing.send().await,
        (true, Some(length)) => outgoing.send_body(SizedStream::new(length, body)).await,
        (true, None) => outgoing.send_stream(body).await,
    };
    let response = sent.map_err(|e| match e {
        SendRequestError::Timeout => ApiError::UpstreamTimeout,
        other => {
            log::warn!("upstream {}: {other}", upstream.base);
            ApiError::UpstreamUnavailable
        }
    })?;

    let mut reply = HttpResponse::build(response.status());
    let mut headers = response.headers().clone();
    let length = content_length(&headers);
    strip_hop_by_hop(&mut headers, response.headers());
    for (name, value) in &headers {
        reply.append_header((name.clone(), value.clone()));
    }
    Ok(match length {
        Some(length) => reply.body(SizedStream::new(length, response)),
        None => reply.streaming(response),
    })
}
