-- The audit log: one row per change of a key, user, limit, credits or webhook, written in the
-- transaction that makes the change. Append-only: the code has no UPDATE for it and the
-- database refuses one; rows are deleted only by age (AUDIT_RETENTION_DAYS).
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TIMESTAMP NOT NULL,
    -- Who: a user (id and the email they had then), or NULL for the CLI.
    actor_id BIGINT,
    actor_email TEXT,
    -- From where: api, dashboard or cli, and the client address when there is one.
    via TEXT NOT NULL,
    ip TEXT,
    -- What: a dotted action (key.created) on a target (key, user or webhook, and its id).
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id BIGINT,
    -- The fields that changed, as JSON objects (never a secret or hash).
    before_fields TEXT,
    after_fields TEXT
);
CREATE INDEX audit_log_target ON audit_log (target_type, target_id, id);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

-- Daily usage, kept 400 days (hourly rows are kept 35). The flush adds to both in one
-- transaction, so a day is always the exact sum of its hours however many instances flush.
CREATE TABLE api_key_usage_daily (
    api_key_id BIGINT NOT NULL REFERENCES api_keys (id),
    day TIMESTAMP NOT NULL,
    allowed BIGINT NOT NULL DEFAULT 0,
    rejected BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (api_key_id, day)
);
CREATE INDEX api_key_usage_daily_day ON api_key_usage_daily (day);
INSERT INTO api_key_usage_daily (api_key_id, day, allowed, rejected)
    SELECT api_key_id, date(hour) || ' 00:00:00', SUM(allowed), SUM(rejected)
    FROM api_key_usage GROUP BY api_key_id, date(hour);
CREATE INDEX api_key_usage_hour ON api_key_usage (hour);
