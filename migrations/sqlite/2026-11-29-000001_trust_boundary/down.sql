DROP TABLE revoked_sessions;
ALTER TABLE api_keys DROP COLUMN deactivated_by_admin;
ALTER TABLE users DROP COLUMN ceiling_set;
ALTER TABLE users DROP COLUMN max_rate_limit_per_day;
ALTER TABLE users DROP COLUMN max_rate_limit_per_hour;
ALTER TABLE users DROP COLUMN max_rate_limit_per_minute;
ALTER TABLE users DROP COLUMN auth_epoch;
