-- A key's limit per calendar month (UTC); NULL: none.
ALTER TABLE api_keys ADD COLUMN rate_limit_per_month INTEGER;
