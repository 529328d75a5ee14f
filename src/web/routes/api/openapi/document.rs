//! The OpenAPI 3.1 document, made from the route table ([`OPERATIONS`]).

use actix_web::HttpResponse;
use serde_json::{Map, Value, json};

use super::{Access, Gate, OPERATIONS, Operation};

fn schemas() -> Value {
    let key = json!({
        "type": "object",
        "required": ["id", "name", "prefix", "owner", "owner_id", "rate_limit_per_minute", "rate_limit_per_hour",
                     "rate_limit_per_day", "rate_limit_per_month", "expires_at", "is_active", "status", "created_at", "updated_at", "last_used_at",
                     "meta", "scopes", "ip_allowlist", "previous_secret_expires_at", "remaining", "refill", "next_refill_at"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string", "maxLength": 100},
            "prefix": {"type": "string", "description": "kg_ and the first 6 characters"},
            "owner": {"type": "string", "format": "email"},
            "owner_id": {"type": "integer"},
            "rate_limit_per_minute": {"type": ["integer", "null"], "minimum": 1},
            "rate_limit_per_hour": {"type": ["integer", "null"], "minimum": 1},
            "rate_limit_per_day": {"type": ["integer", "null"], "minimum": 1},
            "rate_limit_per_month": {"type": ["integer", "null"], "minimum": 1, "description": "per calendar month, UTC"},
            "expires_at": {"type": ["string", "null"], "format": "date-time"},
            "is_active": {"type": "boolean"},
            "status": {"enum": ["active", "inactive", "expired"]},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "last_used_at": {"type": ["string", "null"], "format": "date-time"},
            "meta": {"type": ["object", "null"]},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "ip_allowlist": {"type": "array", "items": {"type": "string"}},
            "previous_secret_expires_at": {"type": ["string", "null"], "format": "date-time",
                "description": "while the secret a roll replaced still works: when it stops"},
            "remaining": {"type": ["integer", "null"], "minimum": 0, "description": "credits left; null: unlimited"},
            "refill": {"anyOf": [{"type": "null"}, {"$ref": "#/components/schemas/Refill"}]},
            "next_refill_at": {"type": ["string", "null"], "format": "date-time"}
        }
    });
    let remaining = json!({"type": ["integer", "null"], "minimum": 0, "maximum": 9007199254740992u64,
        "description": "credits: each allowed request spends its cost; null: unlimited (admins only)"});
    let refill = json!({"anyOf": [{"type": "null"}, {"$ref": "#/components/schemas/Refill"}],
        "description": "sets the balance back to amount every day, or every month on day_of_month (UTC); admins only"});
    // What Meta, Scopes and IpAllowlist parse (keys::contract); a block is kept as its network.
    let meta = json!({"type": ["object", "null"], "description": "a JSON object of at most 4 KiB as JSON; null clears it"});
    let scopes = json!({"type": "array", "maxItems": 50, "items": {"type": "string", "minLength": 1, "maxLength": 64,
        "pattern": "^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)*(:\\*)?$"},
        "description": "orders:read; a trailing :* grants every scope below it; only admins add scopes"});
    let octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])";
    let cidr4 = format!("^({octet}\\.){{3}}{octet}/(3[0-2]|[12][0-9]|[0-9])$");
    let ip_allowlist = json!({"type": "array", "maxItems": 100, "items": {"anyOf": [
        {"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}, {"type": "string", "pattern": cidr4}]},
        "description": "addresses and CIDR blocks (IPv6 blocks too, e.g. 2001:db8::/32); empty: any address"});
    let limit = json!({"type": ["integer", "null"], "minimum": 1, "maximum": 2147483647});
    // What KeyName::parse enforces: 1–100 characters, at least one not a space, no control
    // characters (Unicode Cc).
    let name = json!({"type": "string", "minLength": 1, "maxLength": 100,
        "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"});
    // What Email::parse enforces.
    let email = json!({"type": "string", "format": "email", "maxLength": 254});
    let password = json!({"type": "string", "minLength": 8, "maxLength": 1024});
    let expiry = json!({"type": ["string", "null"], "format": "date-time",
        "description": "UTC, whole seconds; a time already past makes the key expired at once"});
    let window = json!({"type": "object", "required": ["limit", "remaining", "reset"], "properties": {
        "limit": {"type": ["integer", "null"]}, "used": {"type": "integer"},
        "remaining": {"type": ["integer", "null"]}, "reset": {"type": "integer", "description": "seconds"}}});
    let mut schemas = json!({
        "Error": {"type": "object", "required": ["error", "message"], "properties": {
            "error": {"type": "string", "description": "snake_case code"},
            "message": {"type": "string"},
            "fields": {"type": "object", "additionalProperties": {"type": "string"}}}},
        "TooManyRequests": {"type": "object", "required": ["error", "message"], "properties": {
            "error": {"enum": ["rate_limit_exceeded", "too_many_attempts", "quota_exhausted"]}, "message": {"type": "string"},
            "limit": {"type": "integer"}, "window": {"enum": ["second", "minute", "hour", "day", "month"]},
            "remaining": {"type": "integer", "description": "quota_exhausted: the credits left"},
            "retry_after": {"type": "integer", "description": "seconds, as in Retry-After"}}},
        "Health": {"type": "object", "required": ["status", "database", "counters"], "properties": {
            "status": {"enum": ["ok", "degraded"]}, "database": {"enum": ["ok", "unavailable"]},
            "counters": {"enum": ["redis", "memory", "none", "unavailable"]}, "redis": {"enum": ["ok", "unavailable"]}}},
        "Credentials": {"type": "object", "required": ["email", "password"], "additionalProperties": false, "properties": {
            "email": {"type": "string"}, "password": {"type": "string"}}},
        "Token": {"type": "object", "required": ["access_token", "token_type", "expires_in"], "properties": {
            "access_token": {"type": "string"}, "token_type": {"const": "Bearer"}, "expires_in": {"type": "integer"}}},
        "WhoAmI": {"type": "object", "required": ["tier", "key", "user", "client_ip"], "properties": {
            "tier": {"enum": ["api_key", "user", "anonymous"]},
            "key": {"type": ["object", "null"]}, "user": {"type": ["object", "null"]}, "client_ip": {"type": ["string", "null"]}}},
        "RateLimitStatus": {"type": "object", "required": ["tier", "windows"], "properties": {
            "tier": {"type": "string"}, "windows": {"type": "object", "additionalProperties": window.clone()}}},
        "VerifyRequest": {"type": "object", "required": ["key"], "additionalProperties": false, "properties": {
            "key": {"type": "string"},
            "scopes": {"type": "array", "maxItems": 50, "items": {"type": "string", "minLength": 1, "maxLength": 64,
                "pattern": "^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)*$"}, "description": "scopes the key must hold"},
            "cost": {"type": ["integer", "null"], "minimum": 0, "maximum": 1000000, "default": 1,
                "description": "requests to count (0: only check)"},
            "ip": {"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}],
                "description": "the key's caller's address, checked against its allowlist"},
            "consume": {"type": "boolean", "default": true, "description": "before cost: false is cost 0"}}},
        "Verification": {"type": "object", "required": ["valid", "code", "key_id", "owner", "name", "meta", "scopes",
                         "expires_at", "limits", "remaining", "reset"], "properties": {
            "valid": {"type": "boolean"},
            "code": {"enum": ["VALID", "NOT_FOUND", "EXPIRED", "INACTIVE", "RATE_LIMITED", "USAGE_EXCEEDED",
                "INSUFFICIENT_SCOPES", "IP_NOT_ALLOWED"]},
            "key_id": {"type": ["integer", "null"]}, "owner": {"type": ["string", "null"]}, "name": {"type": ["string", "null"]},
            "meta": {"type": ["object", "null"]}, "scopes": {"type": "array", "items": {"type": "string"}},
            "expires_at": {"type": ["string", "null"], "format": "date-time"},
            "missing_scopes": {"type": "array", "items": {"type": "string"}},
            "limits": {"type": ["object", "null"]},
            "remaining": {"type": ["integer", "null"], "description": "credits left (the tightest of the key's and its plan's); null: unlimited"},
            "reset": {"type": ["integer", "null"]},
            "ratelimit": {"type": ["object", "null"], "description": "the binding window: limit, remaining, reset (seconds)"}}},
        "Key": key,
        "KeyList": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}},
        "CreatedKey": {"allOf": [{"$ref": "#/components/schemas/Key"}, {"type": "object", "required": ["key"], "properties": {
            "key": {"type": "string", "pattern": "^kg_[0-9A-Za-z]{36}$", "description": "the full key, shown once"}}}]},
        "NewKey": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
            "name": name.clone(),
            "owner": {"allOf": [email.clone()], "description": "the owner's email (admins: anyone; users: only their own); 404 when no user has it"},
            "rate_limit_per_minute": limit.clone(), "rate_limit_per_hour": limit.clone(), "rate_limit_per_day": limit.clone(),
            "rate_limit_per_month": limit.clone(),
            "expires_at": expiry.clone(), "meta": meta.clone(), "scopes": scopes.clone(), "ip_allowlist": ip_allowlist.clone(),
            "remaining": remaining.clone(), "refill": refill.clone()}},
        "KeyPatch": {"type": "object", "additionalProperties": false, "properties": {
            "name": name, "rate_limit_per_minute": limit.clone(),
            "rate_limit_per_hour": limit.clone(), "rate_limit_per_day": limit.clone(),
            "rate_limit_per_month": limit.clone(),
            "expires_at": expiry.clone(), "is_active": {"type": "boolean"},
            "meta": meta.clone(), "scopes": scopes.clone(), "ip_allowlist": ip_allowlist.clone(),
            "remaining": remaining.clone(), "refill": refill.clone()}},
        "KeyRoll": {"type": "object", "additionalProperties": false, "properties": {
            "grace_seconds": {"type": ["integer", "null"], "minimum": 0, "maximum": 604800, "default": 0,
                "description": "how long the old secret keeps working (at most 7 days)"}}},
        "KeyImport": {"type": "array", "items": {
            "description": "one key, as KeyImportLine describes; a line that is not one is reported in errors by its number, and the others are imported"}},
        "KeyImportLine": {"type": "object", "additionalProperties": false, "properties": {
            "key": {"type": "string", "description": "the plaintext (hashed, never stored)"},
            "key_sha256": {"type": "string", "pattern": "^[0-9A-Fa-f]{64}$"},
            "owner": {"type": "string"}, "name": {"type": "string"}, "prefix": {"type": "string"},
            "rate_limit_per_minute": limit.clone(), "rate_limit_per_hour": limit.clone(), "rate_limit_per_day": limit.clone(),
            "rate_limit_per_month": limit.clone(),
            "expires_at": expiry.clone(), "is_active": {"type": "boolean"},
            "created_at": {"type": ["string", "null"], "format": "date-time"},
            "last_used_at": {"type": ["string", "null"], "format": "date-time"},
            "meta": meta, "scopes": scopes, "ip_allowlist": ip_allowlist}},
        "ImportReport": {"type": "object", "required": ["imported", "unchanged", "errors"], "properties": {
            "imported": {"type": "integer"}, "unchanged": {"type": "integer"},
            "errors": {"type": "array", "items": {"type": "object", "required": ["line", "message"], "properties": {
                "line": {"type": "integer"}, "message": {"type": "string"}}}}}},
        "PasswordChange": {"type": "object", "required": ["current_password", "new_password"], "additionalProperties": false, "properties": {
            "current_password": {"type": "string"}, "new_password": password.clone()}},
        "User": {"type": "object", "required": ["id", "email", "is_admin", "is_active", "max_rate_limit_per_minute",
                 "max_rate_limit_per_hour", "max_rate_limit_per_day", "created_at"], "properties": {
            "id": {"type": "integer"}, "email": {"type": "string", "format": "email"},
            "is_admin": {"type": "boolean"}, "is_active": {"type": "boolean"},
            "max_rate_limit_per_minute": {"type": ["integer", "null"], "description": "the most this user may set on their own keys; null: no ceiling"},
            "max_rate_limit_per_hour": {"type": ["integer", "null"]}, "max_rate_limit_per_day": {"type": ["integer", "null"]},
            "created_at": {"type": "string", "format": "date-time"}}},
        "UserList": {"type": "array", "items": {"$ref": "#/components/schemas/User"}},
        "NewUser": {"type": "object", "required": ["email", "password"], "additionalProperties": false, "properties": {
            "email": email, "password": password,
            "is_admin": {"type": "boolean", "default": false},
            "max_rate_limit_per_minute": limit.clone(), "max_rate_limit_per_hour": limit.clone(), "max_rate_limit_per_day": limit.clone()}},
        "UserPatch": {"type": "object", "additionalProperties": false, "properties": {
            "is_active": {"type": "boolean"}, "is_admin": {"type": "boolean"},
            "max_rate_limit_per_minute": limit.clone(), "max_rate_limit_per_hour": limit.clone(), "max_rate_limit_per_day": limit.clone()}},
        "KeyStats": {"type": "object", "required": ["id", "last_used_at", "current", "totals", "history"], "properties": {
            "id": {"type": "integer"}, "last_used_at": {"type": ["string", "null"]},
            "current": {"type": "object", "additionalProperties": window},
            "credits": {"type": ["object", "null"], "description": "with credits or a plan: {key, plan}, each null or {remaining, next_refill_at}"},
            "totals": {"type": "object", "required": ["allowed", "rejected"]},
            "history": {"type": "array", "maxItems": 24, "items": {"type": "object", "required": ["hour", "allowed", "rejected"]}}}}
    });
    // Apart from the rest: one json! of everything exceeds the macro recursion limit.
    insight(&mut schemas);
    // What Refill::parse takes: a daily refill has no day of the month.
    let amount = json!({"type": "integer", "minimum": 1, "maximum": 2147483647});
    schemas["Refill"] = json!({"oneOf": [
        {"type": "object", "required": ["amount", "interval"], "additionalProperties": false, "properties": {
            "amount": amount, "interval": {"const": "day"}, "day_of_month": {"type": "null"}}},
        {"type": "object", "required": ["amount", "interval"], "additionalProperties": false, "properties": {
            "amount": amount, "interval": {"const": "month"},
            "day_of_month": {"type": ["integer", "null"], "minimum": 1, "maximum": 28, "description": "default 1"}}}]});
    schemas["CreditChange"] = json!({"type": "object", "additionalProperties": false, "minProperties": 1, "maxProperties": 1,
        "properties": {
            "add": {"type": "integer", "minimum": 0, "maximum": 9007199254740992u64},
            "set": {"type": "integer", "minimum": 0, "maximum": 9007199254740992u64}}});
    let plan = json!({"rate_limit_per_minute": limit, "rate_limit_per_hour": limit, "rate_limit_per_day": limit,
        "rate_limit_per_month": limit, "remaining": remaining, "refill": refill});
    for (name, extra) in [("NewUser", &plan), ("UserPatch", &plan)] {
        if let (Some(props), Some(extra)) = (schemas[name]["properties"].as_object_mut(), extra.as_object()) {
            props.extend(extra.clone());
        }
    }
    if let Some(props) = schemas["User"]["properties"].as_object_mut() {
        let shown = json!({"type": ["integer", "null"], "description": "the plan: a limit on the sum of all the user's keys"});
        for window in ["minute", "hour", "day", "month"] {
            props.insert(format!("rate_limit_per_{window}"), shown.clone());
        }
        props.insert(
            "remaining".into(),
            json!({"type": ["integer", "null"], "description": "the plan's credits; null: unlimited"}),
        );
        props.insert(
            "refill".into(),
            json!({"anyOf": [{"type": "null"}, {"$ref": "#/components/schemas/Refill"}]}),
        );
        props.insert(
            "next_refill_at".into(),
            json!({"type": ["string", "null"], "format": "date-time"}),
        );
    }
    schemas
}

/// What an operation can answer besides its own outcomes, from its row in the table: the gate's
/// refusals on gated routes, authentication and authorization refusals by access rule, body
/// errors where there is a body, and 503 everywhere (database or counters unavailable).
fn common_responses(op: &Operation) -> Vec<(u16, &'static str, Option<&'static str>)> {
    let mut extra = Vec::new();
    if op.request.is_some() {
        extra.push((400, "The body is not valid", Some("Error")));
        extra.push((413, "The body is too large", Some("Error")));
    }
    if op.path.contains('{') {
        extra.push((
            400,
            "A path parameter with a dot segment or an encoded slash or backslash (invalid_path)",
            Some("Error"),
        ));
    }
    if op.gated() || matches!(op.access, Access::User | Access::Admin | Access::Verifier) {
        extra.push((
            401,
            "A bad API key or token, or none where one is needed",
            Some("Error"),
        ));
    }
    if matches!(op.gate, Gate::Counts(cost) if cost > 0) {
        extra.push((
            429,
            "Rate limited, or credits used up until a refill",
            Some("TooManyRequests"),
        ));
        extra.push((
            403,
            "An API key's credits used up with no refill (quota_exhausted), or its allowlist or scopes",
            Some("Error"),
        ));
    }
    if matches!(op.access, Access::Admin | Access::Verifier) {
        extra.push((403, "Not an admin", Some("Error")));
    }
    extra.push((
        503,
        "The database or the counters are unavailable; retry",
        Some("Error"),
    ));
    extra
}

/// The OpenAPI 3.1 document of [`OPERATIONS`].
/// The audit log's (and usage export's) schemas.
fn insight(schemas: &mut Value) {
    let events = json!({"type": "array", "minItems": 1, "items": {"enum": crate::events::EVENTS}});
    // What EndpointUrl takes, narrowed to names (a literal address may be refused).
    let url = json!({"type": "string", "maxLength": 2048,
        "pattern": "^https?://([A-Za-z0-9-]{1,63}\\.)*[A-Za-z][A-Za-z0-9-]{0,62}(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~-]*)*$",
        "description": "http:// or https://; private, loopback and link-local destinations are refused unless WEBHOOK_ALLOW_PRIVATE=1"});
    let webhook = json!({"type": "object", "required": ["id", "url", "events", "enabled", "created_at", "updated_at"],
        "properties": {"id": {"type": "integer"}, "url": {"type": "string"}, "events": {"type": "array", "items": {"type": "string"}},
            "enabled": {"type": "boolean"}, "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"}}});
    let delivery = json!({"type": "object", "required": ["id", "event_id", "event_type", "status", "attempts"],
        "properties": {"id": {"type": "integer"}, "event_id": {"type": "string"}, "event_type": {"type": "string"},
            "status": {"enum": ["pending", "delivered", "failed"]}, "attempts": {"type": "integer"},
            "last_status": {"type": ["integer", "null"]}, "last_error": {"type": ["string", "null"]},
            "last_latency_ms": {"type": ["integer", "null"]}}});
    let more = json!({
        "Webhook": webhook,
        "WebhookList": {"type": "array", "items": {"$ref": "#/components/schemas/Webhook"}},
        "WebhookCreated": {"allOf": [{"$ref": "#/components/schemas/Webhook"}, {"type": "object", "required": ["secret"],
            "properties": {"secret": {"type": "string", "description": "whsec_…: signs every delivery; shown once"}}}]},
        "WebhookDetail": {"allOf": [{"$ref": "#/components/schemas/Webhook"}, {"type": "object", "required": ["deliveries"],
            "properties": {"deliveries": {"type": "array", "items": delivery}}}]},
        "NewWebhook": {"type": "object", "required": ["url", "events"], "additionalProperties": false, "properties": {
            "url": url, "events": events}},
        "WebhookPatch": {"type": "object", "additionalProperties": false, "properties": {
            "url": url, "events": events, "enabled": {"type": "boolean"}}},
        "UsageReport": {"type": "object", "required": ["rows"], "properties": {
            "rows": {"type": "array", "items": {"type": "object",
                "required": ["key_id", "period_start", "allowed", "rejected"], "properties": {
                    "key_id": {"type": "integer"},
                    "period_start": {"type": "string", "format": "date-time"},
                    "allowed": {"type": "integer", "minimum": 0},
                    "rejected": {"type": "integer", "minimum": 0}}}}}},
        "AuditLog": {"type": "object", "required": ["entries", "next_cursor"], "properties": {
            "entries": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}},
            "next_cursor": {"type": ["string", "null"], "description": "pass as cursor for the next page; null: no more"}}},
        "AuditEntry": {"type": "object",
            "required": ["id", "at", "actor", "via", "ip", "action", "target", "before", "after"],
            "properties": {
                "id": {"type": "integer"},
                "at": {"type": "string", "format": "date-time"},
                "actor": {"anyOf": [{"type": "null"}, {"type": "object", "required": ["id", "email"],
                    "properties": {"id": {"type": "integer"}, "email": {"type": ["string", "null"]}}}],
                    "description": "null: the CLI"},
                "via": {"enum": ["api", "dashboard", "cli"]},
                "ip": {"type": ["string", "null"]},
                "action": {"type": "string", "description": "key.created, key.updated, key.deactivated, key.activated, key.rolled, key.credits_changed, key.imported, user.created, user.updated, user.deactivated, user.activated, user.password_changed, user.credits_changed, user.invited, webhook.created, webhook.updated, webhook.deleted"},
                "target": {"type": "object", "required": ["type", "id"], "properties": {
                    "type": {"enum": ["key", "user", "webhook"]}, "id": {"type": ["integer", "null"]}}},
                "before": {"type": ["object", "null"], "description": "the fields that changed, as they were (null: created)"},
                "after": {"type": ["object", "null"], "description": "the fields that changed, as they are"}}}
    });
    if let (Some(all), Value::Object(more)) = (schemas.as_object_mut(), more) {
        all.extend(more);
    }
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let entry = paths.entry(op.path).or_insert_with(|| json!({}));
        entry[op.method] = operation(op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "keygate",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "API keys and rate limits. Every path also answers with a trailing slash. Gated answers carry RateLimit-Policy, RateLimit and X-RateLimit-* headers.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "Api-Key"},
                "bearer": {"type": "http", "scheme": "bearer", "description": "from POST /api/auth/token"},
            },
        },
    })
}

/// One operation's object: summary, security by access rule, parameters, body, answers.
fn operation(op: &Operation) -> Value {
    let security = match op.access {
        Access::Open => json!([]),
        Access::Gated => json!([{}, {"apiKey": []}, {"bearer": []}]),
        Access::User | Access::Admin => json!([{"bearer": []}]),
        Access::Verifier => json!([{"bearer": []}, {"apiKey": []}]),
    };
    let mut operation = json!({
        "summary": op.summary,
        "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '.', '-'], "_")),
        "security": security,
        "responses": responses(op),
    });
    let mut parameters = Vec::new();
    if op.path.contains("{id}") {
        parameters.push(json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}));
    }
    for (name, schema) in op.query {
        let schema: Value = serde_json::from_str(schema).expect("a query parameter's schema is JSON");
        parameters.push(json!({"name": name, "in": "query", "schema": schema}));
    }
    if !parameters.is_empty() {
        operation["parameters"] = Value::Array(parameters);
    }
    if let Some(body) = op.request {
        operation["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}}});
    }
    operation
}

/// The operation's own answers, then the common ones it does not document itself.
fn responses(op: &Operation) -> Map<String, Value> {
    let mut responses = Map::new();
    for (status, description, schema) in op.responses.iter().chain(&common_responses(op)) {
        let mut response = json!({"description": description});
        if let Some(schema) = schema {
            response["content"] =
                json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}});
            if op.csv && (200..300).contains(status) {
                response["content"]["text/csv"] = json!({"schema": {"type": "string",
                    "description": "key_id,period_start,allowed,rejected and a line per row"}});
            }
        }
        if *status == 429 || *status == 503 {
            response["headers"] = json!({"Retry-After": {"schema": {"type": "integer"}}});
        }
        responses.entry(status.to_string()).or_insert(response);
    }
    responses
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(document())
}
