-- Credits (a balance of uses that each allowed request spends; NULL: unlimited) with an
-- optional refill, on keys and on users (a user's plan: the sum of their keys). The live
-- balance is in the counter store; `remaining` is its checkpoint, with the refill period it
-- belongs to and a sequence number that only grows, so an older checkpoint never overwrites a
-- newer one.
ALTER TABLE api_keys ADD COLUMN remaining BIGINT;
ALTER TABLE api_keys ADD COLUMN refill_amount INTEGER;
ALTER TABLE api_keys ADD COLUMN refill_interval TEXT;
ALTER TABLE api_keys ADD COLUMN refill_day INTEGER;
ALTER TABLE api_keys ADD COLUMN credit_period BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN credit_seq BIGINT NOT NULL DEFAULT 0;
-- A user's plan: limits on the sum of all their keys' requests, and credits.
ALTER TABLE users ADD COLUMN rate_limit_per_minute INTEGER;
ALTER TABLE users ADD COLUMN rate_limit_per_hour INTEGER;
ALTER TABLE users ADD COLUMN rate_limit_per_day INTEGER;
ALTER TABLE users ADD COLUMN rate_limit_per_month INTEGER;
ALTER TABLE users ADD COLUMN remaining BIGINT;
ALTER TABLE users ADD COLUMN refill_amount INTEGER;
ALTER TABLE users ADD COLUMN refill_interval TEXT;
ALTER TABLE users ADD COLUMN refill_day INTEGER;
ALTER TABLE users ADD COLUMN credit_period BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN credit_seq BIGINT NOT NULL DEFAULT 0;
-- Top-ups made with an Idempotency-Key: a retried request (same holder, same key, same request)
-- is answered without adding again.
CREATE TABLE credit_grants (
    id BIGSERIAL PRIMARY KEY,
    holder TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    -- What was asked ("add:5", "set:100"): the same key with another request is refused.
    request TEXT NOT NULL,
    -- False while the top-up is being applied; a claim left pending (a crash) is taken over
    -- after a minute.
    done BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (holder, idempotency_key)
);
