-- Tokens and sessions carry the user's epoch; moving it ends them all (deactivation,
-- reactivation, password change).
ALTER TABLE users ADD COLUMN auth_epoch BIGINT NOT NULL DEFAULT 0;
-- The most a user may set on their own keys (null: no ceiling in that window). Until an admin
-- sets one (ceiling_set), the ceiling is KEY_RATE_LIMIT, read from the configuration.
ALTER TABLE users ADD COLUMN max_rate_limit_per_minute INTEGER CHECK (max_rate_limit_per_minute > 0);
ALTER TABLE users ADD COLUMN max_rate_limit_per_hour INTEGER CHECK (max_rate_limit_per_hour > 0);
ALTER TABLE users ADD COLUMN max_rate_limit_per_day INTEGER CHECK (max_rate_limit_per_day > 0);
ALTER TABLE users ADD COLUMN ceiling_set BOOLEAN NOT NULL DEFAULT FALSE;
-- An owner may not switch back on a key that an admin switched off.
ALTER TABLE api_keys ADD COLUMN deactivated_by_admin BOOLEAN NOT NULL DEFAULT FALSE;
-- Dashboard sessions ended by logout, until they would have expired anyway.
CREATE TABLE revoked_sessions (
    session_id TEXT PRIMARY KEY,
    expires_at TIMESTAMP NOT NULL
);
