DROP INDEX api_key_usage_hour;
DROP TABLE api_key_usage_daily;
DROP TRIGGER audit_log_no_update;
DROP TABLE audit_log;
