//! The one schema both backends share (migrations/postgres and migrations/sqlite create it).
//! Written by hand: `diesel print-schema` would emit backend-specific types.

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
        password_hash -> Text,
        is_admin -> Bool,
        is_active -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        auth_epoch -> BigInt,
        max_rate_limit_per_minute -> Nullable<Integer>,
        max_rate_limit_per_hour -> Nullable<Integer>,
        max_rate_limit_per_day -> Nullable<Integer>,
        ceiling_set -> Bool,
        rate_limit_per_minute -> Nullable<Integer>,
        rate_limit_per_hour -> Nullable<Integer>,
        rate_limit_per_day -> Nullable<Integer>,
        rate_limit_per_month -> Nullable<Integer>,
        remaining -> Nullable<BigInt>,
        refill_amount -> Nullable<Integer>,
        refill_interval -> Nullable<Text>,
        refill_day -> Nullable<Integer>,
        credit_period -> BigInt,
        credit_seq -> BigInt,
    }
}

diesel::table! {
    api_keys (id) {
        id -> BigInt,
        user_id -> BigInt,
        name -> Text,
        prefix -> Text,
        key_hash -> Text,
        rate_limit_per_minute -> Nullable<Integer>,
        rate_limit_per_hour -> Nullable<Integer>,
        rate_limit_per_day -> Nullable<Integer>,
        expires_at -> Nullable<Timestamp>,
        is_active -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        deactivated_by_admin -> Bool,
        meta -> Nullable<Text>,
        scopes -> Text,
        ip_allowlist -> Text,
        previous_key_hash -> Nullable<Text>,
        previous_expires_at -> Nullable<Timestamp>,
        rate_limit_per_month -> Nullable<Integer>,
        remaining -> Nullable<BigInt>,
        refill_amount -> Nullable<Integer>,
        refill_interval -> Nullable<Text>,
        refill_day -> Nullable<Integer>,
        credit_period -> BigInt,
        credit_seq -> BigInt,
    }
}

diesel::table! {
    revoked_sessions (session_id) {
        session_id -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    api_key_usage (api_key_id, hour) {
        api_key_id -> BigInt,
        hour -> Timestamp,
        allowed -> BigInt,
        rejected -> BigInt,
    }
}

diesel::table! {
    api_key_usage_daily (api_key_id, day) {
        api_key_id -> BigInt,
        day -> Timestamp,
        allowed -> BigInt,
        rejected -> BigInt,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> Timestamp,
        actor_id -> Nullable<BigInt>,
        actor_email -> Nullable<Text>,
        via -> Text,
        ip -> Nullable<Text>,
        action -> Text,
        target_type -> Text,
        target_id -> Nullable<BigInt>,
        before_fields -> Nullable<Text>,
        after_fields -> Nullable<Text>,
    }
}

diesel::table! {
    webhooks (id) {
        id -> BigInt,
        url -> Text,
        events -> Text,
        secret -> Text,
        enabled -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> BigInt,
        webhook_id -> BigInt,
        event_id -> Text,
        event_type -> Text,
        payload -> Text,
        created_at -> Timestamp,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        locked_until -> Nullable<Timestamp>,
        last_status -> Nullable<Integer>,
        last_error -> Nullable<Text>,
        last_latency_ms -> Nullable<Integer>,
        delivered_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    webhook_signals (dedup_key) {
        dedup_key -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    invitations (id) {
        id -> BigInt,
        email -> Text,
        token_hash -> Text,
        created_by -> BigInt,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    credit_grants (id) {
        id -> BigInt,
        holder -> Text,
        idempotency_key -> Text,
        request -> Text,
        done -> Bool,
        created_at -> Timestamp,
    }
}

diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(api_key_usage -> api_keys (api_key_id));
diesel::joinable!(api_key_usage_daily -> api_keys (api_key_id));
diesel::joinable!(webhook_deliveries -> webhooks (webhook_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    api_keys,
    api_key_usage,
    api_key_usage_daily,
    revoked_sessions,
    invitations,
    webhooks,
    webhook_deliveries
);
