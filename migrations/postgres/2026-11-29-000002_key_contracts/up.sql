-- A key's contract: metadata (a JSON object, as text), scopes (space-separated), an IP
-- allowlist (space-separated addresses and CIDR blocks; empty: any address).
ALTER TABLE api_keys ADD COLUMN meta TEXT;
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN ip_allowlist TEXT NOT NULL DEFAULT '';
-- Rotation: the secret a roll replaced keeps working until previous_expires_at (the grace
-- period), counted as the same key.
ALTER TABLE api_keys ADD COLUMN previous_key_hash TEXT;
ALTER TABLE api_keys ADD COLUMN previous_expires_at TIMESTAMP;
CREATE UNIQUE INDEX api_keys_previous_key_hash ON api_keys (previous_key_hash);
