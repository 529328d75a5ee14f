//! Gateway mode (`UPSTREAM_URL`): every request keygate does not serve itself has passed the
//! gate, and is proxied to the upstream. Method, path, query, headers and body are kept; bodies
//! stream both ways, and repeated headers stay repeated. The upstream gets only the caller's own
//! request: hop-by-hop headers, keygate's credentials (API keys, keygate tokens in any case and
//! spacing, recognised by `credentials`), every `X-Keygate-*` a client sent and the dashboard's
//! cookie are removed; a `Bearer` token that is not keygate's is the upstream's and passes.
//! Without trusted proxies (`TRUSTED_PROXY_HOPS=0`) a client's `X-Forwarded-Proto/Host`,
//! `Forwarded` and `X-Real-IP` are dropped and set from the connection. The caller
//! (`X-Keygate-Key-Id`, `-User-Id`, `-Tier`, `-Scopes`; `-Meta` with `UPSTREAM_FORWARD_META=1`) is added. The upstream's `Set-Cookie` for the
//! dashboard's cookie never reaches the browser. A refused request never gets here.

use std::time::Duration;

use actix_web::http::Uri;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, body::SizedStream, web};
use awc::error::SendRequestError;

use crate::credentials;
use crate::error::ApiError;
use crate::gate::{Caller, Identity};
use crate::normalize::OriginalUri;
use crate::sessions::COOKIE_NAME;
use crate::state::AppState;

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

/// Hop-by-hop headers of `received`: the fixed ones and those its `Connection` names.
fn hop_by_hop(received: &HeaderMap) -> Vec<HeaderName> {
    received
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .chain(HOP_BY_HOP.iter().map(|n| HeaderName::from_static(n)))
        .collect()
}

/// Set by proxies: from a client they are believed only through trusted hops.
/// (`X-Original-URL` and `X-Rewrite-URL` route requests in some frameworks: from a client they
/// would undo the path the gate decided on.)
const PROXY_SET: [&str; 10] = [
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-original-url",
    "x-rewrite-url",
];

/// Whether a request header is forwarded as it came.
fn forwarded_as_is(name: &HeaderName, value: &HeaderValue, trusted_proxies: bool) -> bool {
    // Some upstreams (CGI-style environments, Puma before CVE-2024-45614's fix) read `_` as
    // `-`: a look-alike such as `X_Keygate_Tier` is judged as the name it would pass for.
    let dashed;
    let name = if name.as_str().contains('_') {
        dashed = name.as_str().replace('_', "-");
        dashed.as_str()
    } else {
        name.as_str()
    };
    match name {
        "host" | "api-key" | "x-forwarded-for" | "cookie" => false,
        "authorization" => !credentials::is_keygate_authorization(value),
        _ if name.starts_with("x-keygate-") => false,
        _ if PROXY_SET.contains(&name) => trusted_proxies,
        _ => true,
    }
}

/// `Cookie` without the dashboard's session cookie; `None` when nothing else is left.
fn without_session_cookie(value: &HeaderValue) -> Option<HeaderValue> {
    let text = value.to_str().ok()?;
    let kept: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| pair.split('=').next().map(str::trim) != Some(COOKIE_NAME))
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join("; ")).ok()
}

/// Whether an upstream's `Set-Cookie` would set (or clear) the dashboard's cookie.
fn sets_session_cookie(value: &HeaderValue) -> bool {
    let name = value.as_bytes().split(|b| *b == b'=').next().unwrap_or_default();
    name.trim_ascii().eq_ignore_ascii_case(COOKIE_NAME.as_bytes())
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
        .request(req.method().clone(), target)
        .no_decompress()
        .timeout(upstream.timeout);
    let trusted_proxies = AppState::of(&req)?.client_ip.trusted_hops > 0;
    copy_request_headers(req.headers(), outgoing.headers_mut(), trusted_proxies);
    add_proxy_headers(&req, &uri, outgoing.headers_mut(), trusted_proxies);

    let incoming = req.headers();
    let length = content_length(incoming);
    let has_body = length.is_some_and(|n| n > 0) || incoming.contains_key(header::TRANSFER_ENCODING);
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
    Ok(reply(response))
}

/// The caller's own headers, repeated ones kept, without what is keygate's or hop-by-hop.
fn copy_request_headers(incoming: &HeaderMap, outgoing: &mut HeaderMap, trusted_proxies: bool) {
    let skip = hop_by_hop(incoming);
    for (name, value) in incoming {
        if skip.contains(name) {
            continue;
        }
        if name == header::COOKIE {
            if let Some(kept) = without_session_cookie(value) {
                outgoing.append(name.clone(), kept);
            }
        } else if forwarded_as_is(name, value, trusted_proxies) {
            outgoing.append(name.clone(), value.clone());
        }
    }
}

/// `X-Forwarded-*` from the connection (through trusted proxies their own values stand), and
/// the caller as the gate identified it.
fn add_proxy_headers(req: &HttpRequest, uri: &Uri, outgoing: &mut HeaderMap, trusted_proxies: bool) {
    let incoming = req.headers();
    let mut add = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::try_from(value) {
            outgoing.insert(HeaderName::from_static(name), value);
        }
    };
    let peer = req.peer_addr().map(|a| a.ip().to_string());
    // The client's chain is kept and the peer appended, as proxies do: the upstream trusts only
    // the entries its own proxies (here: keygate, the last) added.
    let chain = incoming.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    match (chain, peer) {
        (Some(chain), Some(peer)) => add("x-forwarded-for", format!("{chain}, {peer}")),
        (None, Some(peer)) => add("x-forwarded-for", peer),
        (Some(chain), None) => add("x-forwarded-for", chain.to_owned()),
        (None, None) => {}
    }
    if !(trusted_proxies && incoming.contains_key("x-forwarded-proto")) {
        let scheme = if req.app_config().secure() {
            "https"
        } else {
            "http"
        };
        add("x-forwarded-proto", scheme.to_owned());
    }
    let host = incoming
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.to_string()));
    if let (false, Some(host)) = (trusted_proxies && incoming.contains_key("x-forwarded-host"), host) {
        add("x-forwarded-host", host);
    }
    if let Some(caller) = req.extensions().get::<Caller>() {
        let forward_meta = AppState::of(req).is_ok_and(|state| state.forward_meta);
        for (name, value) in caller_headers(&caller.identity, forward_meta) {
            add(name, value);
        }
    }
}

/// The caller as the gate identified it: tier, key and user ids, the key's scopes, and (when
/// asked) its metadata.
fn caller_headers(identity: &Identity, forward_meta: bool) -> Vec<(&'static str, String)> {
    let mut headers = vec![("x-keygate-tier", identity.tier().to_owned())];
    match identity {
        Identity::Key(key) => {
            headers.push(("x-keygate-key-id", key.id.to_string()));
            headers.push(("x-keygate-user-id", key.user_id.to_string()));
            if !key.scopes.is_empty() {
                headers.push(("x-keygate-scopes", key.scopes.column()));
            }
            if let (true, Some(meta)) = (forward_meta, &key.meta) {
                // Compact JSON in ASCII (others escaped as \uXXXX): a header carries bytes,
                // not text, and serde has escaped every control character already.
                headers.push(("x-keygate-meta", meta.ascii()));
            }
        }
        Identity::User(id) => headers.push(("x-keygate-user-id", id.to_string())),
        Identity::Anonymous => {}
    }
    headers
}

/// The upstream's answer, streamed back without hop-by-hop headers or a `Set-Cookie` for the
/// dashboard's cookie.
fn reply<S>(response: awc::ClientResponse<S>) -> HttpResponse
where
    S: futures_util::Stream<Item = Result<web::Bytes, awc::error::PayloadError>> + Unpin + 'static,
{
    let mut reply = HttpResponse::build(response.status());
    let received = response.headers();
    let length = content_length(received);
    let skip = hop_by_hop(received);
    for (name, value) in received {
        let dashboard_cookie = name == header::SET_COOKIE && sets_session_cookie(value);
        if !skip.contains(name) && !dashboard_cookie {
            reply.append_header((name.clone(), value.clone()));
        }
    }
    match length {
        Some(length) => reply.body(SizedStream::new(length, response)),
        None => reply.streaming(response),
    }
}
