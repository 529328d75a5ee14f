//! The webhook delivery loop: every half second it claims due deliveries from the outbox (any
//! instance may; a claim is one conditional UPDATE, so each delivery goes out from one), POSTs
//! them signed, with a 5 s timeout and no redirects, to a destination checked against SSRF at
//! send time, and records the outcome (retries back off for 24 hours: `webhooks::retry_at`).
//! Every 2 seconds it also sweeps for expired keys and refreshes which events the gate signals.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::clock::Now;
use crate::db::DbPool;
use crate::db::models::{Delivery, Webhook};
use crate::events::Signals;
use crate::webhooks;

/// The longest a receiver may take to answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one attempt may take, lookup and all: shorter than a claim (10 s).
const ATTEMPT: Duration = Duration::from_secs(7);
/// Deliveries claimed per round.
const BATCH: i64 = 20;

/// What the loop needs; the loop ends when the app (holding the `Arc`) is gone.
pub struct Deliverer {
    pub pool: DbPool,
    pub signals: Arc<Signals>,
    /// `WEBHOOK_ALLOW_PRIVATE`: also what registration checks (`state.deliverer.allow_private`).
    pub allow_private: bool,
}

impl Deliverer {
    /// Starts the loop on the current actix runtime (the HTTP client is not `Send`).
    pub fn spawn(self: &Arc<Self>) {
        let weak: Weak<Deliverer> = Arc::downgrade(self);
        actix_web::rt::spawn(async move {
            let client = awc::Client::builder()
                .connector(awc::Connector::new().rustls_0_23(tls()))
                .disable_redirects()
                .timeout(TIMEOUT)
                .add_default_header(("User-Agent", "keygate-webhooks"))
                .finish();
            let mut tick = actix_web::rt::time::interval(Duration::from_millis(500));
            let mut last_sweep: Option<Instant> = None;
            // Where the last sweep stopped: each key's expiry is looked at once.
            let mut swept_to = None;
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else {
                    return;
                };
                // Every 2 s: endpoints changed on any instance reach the gate's signals soon.
                if last_sweep.is_none_or(|at| at.elapsed() >= Duration::from_secs(2)) {
                    last_sweep = Some(Instant::now());
                    let now = Now::read();
                    match webhooks::sweep(&me.pool, &me.signals, swept_to, now).await {
                        Ok(_) => swept_to = Some(now.naive()),
                        Err(e) => log::warn!("webhook sweep failed, will retry: {e}"),
                    }
                }
                match webhooks::claim_due(&me.pool, BATCH, Now::read()).await {
                    Ok(claimed) if !claimed.is_empty() => {
                        let sends = claimed
                            .into_iter()
                            .map(|(delivery, hook)| me.deliver(&client, delivery, hook));
                        join_all(sends).await;
                    }
                    Ok(_) => {}
                    Err(e) => log::warn!("could not read the webhook outbox, will retry: {e}"),
                }
            }
        });
    }

    async fn deliver(&self, client: &awc::Client, delivery: Delivery, hook: Webhook) {
        let started = Instant::now();
        // The whole attempt (name lookup included) ends well inside the claim, so no other
        // instance takes the delivery while this one may still send it.
        let attempt =
            actix_web::rt::time::timeout(ATTEMPT, send(client, &delivery, &hook, self.allow_private));
        let (status, error) = match attempt.await {
            Ok(Ok(status)) => (Some(i32::from(status)), None),
            Ok(Err(error)) => (None, Some(error)),
            Err(_) => (None, Some(format!("no answer within {} s", ATTEMPT.as_secs()))),
        };
        let latency = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        if let Some(error) = &error {
            log::info!("webhook {} delivery {} failed: {error}", hook.id, delivery.id);
        }
        let recorded = webhooks::finish(&self.pool, &delivery, (status, error, latency), Now::read()).await;
        if let Err(e) = recorded {
            // The claim expires and the delivery is sent again: at least once.
            log::warn!("could not record webhook delivery {}: {e}", delivery.id);
        }
    }
}

/// TLS for HTTPS endpoints: the system's root certificates (none found: HTTPS deliveries fail
/// and say why), HTTP/1.1.
fn tls() -> Arc<rustls::ClientConfig> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        log::warn!("no system root certificates: webhooks to https:// endpoints will fail");
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One attempt: the status the receiver answered, or why there was none.
async fn send(
    client: &awc::Client,
    delivery: &Delivery,
    hook: &Webhook,
    allow_private: bool,
) -> Result<u16, String> {
    let endpoint = webhooks::EndpointUrl::parse(&hook.url)?;
    let address = webhooks::destination(endpoint.url(), allow_private).await?;
    let mut target = endpoint.url().clone();
    // Plain HTTP connects to the address just checked (a name cannot resolve elsewhere between
    // the check and the connection); HTTPS needs the name for its certificate.
    if target.scheme() == "http" {
        target
            .set_ip_host(address)
            .map_err(|()| "cannot address the endpoint by IP".to_owned())?;
    }
    let host = endpoint.url().host_str().unwrap_or_default().to_owned();
    let host = match endpoint.url().port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    let unix = Now::read().unix_secs();
    let response = client
        .post(target.as_str())
        .insert_header(("Host", host))
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("Keygate-Event-Id", delivery.event_id.as_str()))
        .insert_header(("Keygate-Event", delivery.event_type.as_str()))
        .insert_header((
            "Keygate-Signature",
            webhooks::signature(&hook.secret, unix, &delivery.payload),
        ))
        .send_body(delivery.payload.clone())
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}
