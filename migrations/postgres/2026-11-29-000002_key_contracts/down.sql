DROP INDEX api_keys_previous_key_hash;
ALTER TABLE api_keys DROP COLUMN previous_expires_at;
ALTER TABLE api_keys DROP COLUMN previous_key_hash;
ALTER TABLE api_keys DROP COLUMN ip_allowlist;
ALTER TABLE api_keys DROP COLUMN scopes;
ALTER TABLE api_keys DROP COLUMN meta;
