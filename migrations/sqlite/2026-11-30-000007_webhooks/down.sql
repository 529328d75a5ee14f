DROP INDEX api_keys_expires_at;
DROP TABLE webhook_signals;
DROP TABLE webhook_deliveries;
DROP TABLE webhooks;
