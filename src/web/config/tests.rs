use super::*;
use crate::limits::Limit;
use std::collections::HashMap;

fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Settings::from_lookup(|name| map.get(name).cloned())
}

fn error_var(vars: &[(&str, &str)]) -> &'static str {
    settings(vars).expect_err("configuration should be refused").var
}

#[test]
fn no_configuration_gives_the_embedded_defaults() {
    let s = settings(&[]).expect("defaults are valid");
    assert_eq!(s.port, 8080);
    assert_eq!(s.bind_addr.to_string(), "0.0.0.0");
    assert_eq!(&*s.database_url, "sqlite://keygate.db");
    assert_eq!(s.database_pool_size, 10);
    assert!(s.redis.is_none());
    assert_eq!(s.redis_prefix, "keygate");
    assert_eq!(s.redis_timeout, Duration::from_millis(50));
    assert_eq!(s.failure_mode, FailureMode::Local);
    assert!(s.secret_key_generated);
    assert!(s.secret_key.bytes().len() >= SecretKey::MIN_LEN);
    assert_eq!(s.trusted_proxy_hops, 0);
    assert_eq!(s.anon_rate_limit, Rate::parse_list("100/hour").expect("rate"));
    assert_eq!(s.user_rate_limit, Rate::parse_list("1000/hour").expect("rate"));
    assert_eq!(
        s.key_rate_limit,
        Limits {
            per_minute: Limit::new(60),
            per_hour: Limit::new(1000),
            per_day: Limit::new(10000),
            per_month: None
        }
    );
    assert_eq!(s.anon_limit_message, DEFAULT_ANON_LIMIT_MESSAGE);
}

#[test]
fn every_bad_value_names_its_variable() {
    assert_eq!(error_var(&[("PORT", "eighty")]), "PORT");
    assert_eq!(error_var(&[("PORT", "70000")]), "PORT");
    assert_eq!(error_var(&[("BIND_ADDR", "localhost:1")]), "BIND_ADDR");
    assert_eq!(error_var(&[("DATABASE_URL", "mysql://x")]), "DATABASE_URL");
    assert_eq!(error_var(&[("DATABASE_POOL_SIZE", "0")]), "DATABASE_POOL_SIZE");
    assert_eq!(error_var(&[("REDIS_URL", "http://x")]), "REDIS_URL");
    assert_eq!(error_var(&[("SECRET_KEY", "short")]), "SECRET_KEY");
    assert_eq!(error_var(&[("ADMIN_EMAIL", "a@b.c")]), "ADMIN_PASSWORD");
    assert_eq!(error_var(&[("TRUSTED_PROXY_HOPS", "-1")]), "TRUSTED_PROXY_HOPS");
    assert_eq!(
        error_var(&[("CLIENT_IP_HEADER", "Bad Header")]),
        "CLIENT_IP_HEADER"
    );
    assert_eq!(
        error_var(&[("ANON_RATE_LIMIT", "100/fortnight")]),
        "ANON_RATE_LIMIT"
    );
    assert_eq!(error_var(&[("USER_RATE_LIMIT", "0/hour")]), "USER_RATE_LIMIT");
    assert_eq!(error_var(&[("KEY_RATE_LIMIT", "5/second")]), "KEY_RATE_LIMIT");
    assert_eq!(
        error_var(&[("RATE_LIMIT_FAILURE_MODE", "maybe")]),
        "RATE_LIMIT_FAILURE_MODE"
    );
    assert_eq!(error_var(&[("REDIS_TIMEOUT_MS", "0")]), "REDIS_TIMEOUT_MS");
    assert_eq!(error_var(&[("UPSTREAM_URL", "ftp://x")]), "UPSTREAM_URL");
    let message = settings(&[("ANON_RATE_LIMIT", "100/fortnight")])
        .expect_err("bad")
        .to_string();
    assert!(message.starts_with("ANON_RATE_LIMIT: "), "{message}");
}

#[test]
fn set_values_are_used() {
    let secret = "k".repeat(64);
    let s = settings(&[
        ("PORT", "9000"),
        ("DATABASE_URL", "postgres://u@h/db?sslmode=require"),
        ("REDIS_URL", "rediss://h:6380#insecure"),
        ("SECRET_KEY", &secret),
        ("ADMIN_EMAIL", "root@example.com"),
        ("ADMIN_PASSWORD", "hunter22hunter22"),
        ("KEY_RATE_LIMIT", "10/minute"),
        ("RATE_LIMIT_FAILURE_MODE", "closed"),
        ("TRUSTED_PROXY_HOPS", "1"),
    ])
    .expect("valid settings");
    assert_eq!(s.port, 9000);
    assert!(!s.secret_key_generated);
    assert_eq!(s.secret_key.bytes(), secret.as_bytes());
    assert_eq!(
        s.admin.as_ref().map(|a| a.email.as_str()),
        Some("root@example.com")
    );
    assert_eq!(
        s.key_rate_limit,
        Limits {
            per_minute: Limit::new(10),
            per_hour: None,
            per_day: None,
            per_month: None
        }
    );
    assert_eq!(s.failure_mode, FailureMode::Closed);
    assert_eq!(s.trusted_proxy_hops, 1);
}

#[test]
fn heroku_redis_urls_can_be_told_to_accept_self_signed_certificates() {
    let s = settings(&[("REDIS_URL", "rediss://:pw@h:6380"), ("REDIS_TLS_INSECURE", "1")]).expect("valid");
    assert_eq!(
        s.redis,
        Some(RedisTarget::Single("rediss://:pw@h:6380#insecure".into()))
    );
    let s = settings(&[("REDIS_URL", "rediss://:pw@h:6380")]).expect("valid");
    assert_eq!(
        s.redis,
        Some(RedisTarget::Single("rediss://:pw@h:6380".into())),
        "verification stays on by default"
    );
    let s = settings(&[("REDIS_URL", "redis+cluster://a:1,b:2")]).expect("valid");
    assert!(matches!(s.redis, Some(RedisTarget::Cluster(ref seeds)) if seeds.len() == 2));
}

#[test]
fn empty_values_count_as_unset() {
    let s = settings(&[("PORT", ""), ("REDIS_URL", " ")]).expect("valid");
    assert_eq!(s.port, 8080);
    assert!(s.redis.is_none());
}

#[test]
fn secrets_are_not_printed_by_debug() {
    let s = settings(&[("ADMIN_EMAIL", "a@b.c"), ("ADMIN_PASSWORD", "topsecretpassword")]).expect("valid");
    let shown = format!("{s:?}");
    assert!(!shown.contains("topsecretpassword"));
    assert!(shown.contains("SecretKey(..)"));
}

#[test]
fn secrets_do_not_print() {
    let s = settings(&[
        ("DATABASE_URL", "postgres://app:hunter2@db.example.com/keygate"),
        ("METRICS_TOKEN", "metrics-secret"),
    ])
    .expect("valid");
    let printed = format!("{s:?}");
    for secret in ["hunter2", "metrics-secret", "db.example.com"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    assert!(printed.contains("postgres://…"));
}
