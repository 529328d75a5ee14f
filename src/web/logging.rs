//! The log's format (`LOG_FORMAT`): `text` (env_logger's lines, the default) or `json`, one
//! JSON object per line as Heroku log drains and Datadog expect — `ts`, `level`, `target`,
//! `message`, and for request lines the request's fields (`client`, `method`, `path`, `status`,
//! `bytes`, `ms`, `caller`) instead of a message.

use std::io::Write;

use serde_json::{Map, Value, json};

/// The request logger's target: its lines are JSON already in `json` mode (see
/// `startup::request_log`) and are merged into the line's object.
const REQUEST_TARGET: &str = "actix_web::middleware::logger";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// `LOG_FORMAT`: unset or `text`, or `json`.
    pub fn from_env() -> Result<LogFormat, String> {
        match std::env::var("LOG_FORMAT").as_deref() {
            Err(_) | Ok("") | Ok("text") => Ok(LogFormat::Text),
            Ok("json") => Ok(LogFormat::Json),
            Ok(other) => Err(format!("LOG_FORMAT: must be text or json, not {other:?}")),
        }
    }

    pub fn current() -> LogFormat {
        LogFormat::from_env().unwrap_or(LogFormat::Text)
    }
}

/// Starts the logger (`RUST_LOG` filters, default `info`) in `format`.
pub fn init(format: LogFormat) {
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let line = line(
                record.level().as_str(),
                record.target(),
                &record.args().to_string(),
            );
            writeln!(buf, "{line}")
        });
    }
    builder.init();
}

/// One log line as a JSON object.
fn line(level: &str, target: &str, message: &str) -> Value {
    let mut line = Map::new();
    line.insert(
        "ts".into(),
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    line.insert("level".into(), json!(level));
    line.insert("target".into(), json!(target));
    match serde_json::from_str::<Map<String, Value>>(message) {
        Ok(fields) if target == REQUEST_TARGET => line.extend(fields),
        _ => {
            line.insert("message".into(), json!(message));
        }
    }
    Value::Object(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_request_lines_are_single_json_objects() {
        let event = line(
            "WARN",
            "keygate::ledger",
            "could not checkpoint \"credits\"\nretry",
        );
        assert_eq!(event["message"], "could not checkpoint \"credits\"\nretry");
        assert!(!event.to_string().contains('\n'), "one line");
        let request = line(
            "INFO",
            REQUEST_TARGET,
            r#"{"client":"127.0.0.1","method":"GET","path":"/api/whoami","status":200,"bytes":90,"ms":0.4,"caller":"key=7"}"#,
        );
        assert_eq!(
            (request["status"].clone(), request["caller"].clone()),
            (json!(200), json!("key=7"))
        );
        assert!(request.get("message").is_none());
        let other = line("INFO", "keygate::startup", r#"{"not":"a request"}"#);
        assert_eq!(
            other["message"], r#"{"not":"a request"}"#,
            "only request lines are merged"
        );
    }
}
