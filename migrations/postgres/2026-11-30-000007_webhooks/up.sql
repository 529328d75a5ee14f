-- Webhook endpoints: where events go, which ones, and the secret that signs them.
CREATE TABLE webhooks (
    id BIGSERIAL PRIMARY KEY,
    url TEXT NOT NULL,
    -- Space-separated event names (key.created quota.threshold …).
    events TEXT NOT NULL,
    -- Signs every delivery (HMAC-SHA256); shown once, when the endpoint is made.
    secret TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- The outbox: one row per event and endpoint, written in the transaction of the change that
-- caused the event, delivered (at least once, with retries) by whichever instance claims it.
CREATE TABLE webhook_deliveries (
    id BIGSERIAL PRIMARY KEY,
    webhook_id BIGINT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    -- The event's id (evt_…), the same at every endpoint: receivers de-duplicate by it.
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    -- pending, delivered or failed (retries ran out after 24 hours).
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    -- While an instance delivers it: no other claims it before this.
    locked_until TIMESTAMP,
    last_status INTEGER,
    last_error TEXT,
    last_latency_ms INTEGER,
    delivered_at TIMESTAMP,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_of ON webhook_deliveries (webhook_id, id);

-- Events that may happen once per period (rate_limit.exceeded once per key and window,
-- quota.threshold once per key, level and period, key.expired once per key and expiry): the
-- first instance to insert the condition's key emits the event; the others find it here.
CREATE TABLE webhook_signals (
    dedup_key TEXT PRIMARY KEY,
    created_at TIMESTAMP NOT NULL
);

-- The delivery loop looks for keys that just expired (key.expired).
CREATE INDEX api_keys_expires_at ON api_keys (expires_at);
