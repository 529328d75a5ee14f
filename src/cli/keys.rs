//! `keygate keys …`.

use chrono::Duration;
use clap::Subcommand;
use keygate::clock::Now;
use keygate::config::Settings;
use keygate::db::{DbPool, KeyId, UserId};
use keygate::keys::service::{self, Actor, NewKey};
use keygate::keys::{KeyName, KeyStatus};
use keygate::limits::{Limit, Limits};
use keygate::startup;

use super::announcer;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once.
    Create {
        /// The owner's email.
        #[arg(long)]
        owner: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        per_minute: Option<i64>,
        #[arg(long)]
        per_hour: Option<i64>,
        #[arg(long)]
        per_day: Option<i64>,
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List all keys (never their secrets).
    List,
    /// Deactivate a key (soft delete).
    Deactivate { id: KeyId },
}

pub async fn run(command: KeysCommand, settings: Settings) -> Result<(), String> {
    let (pool, _) = startup::prepare(&settings).await.map_err(|e| e.to_string())?;
    // Whoever runs the CLI has the server's environment, so acts with admin rights.
    let operator = Actor {
        user_id: UserId(0),
        is_admin: true,
    };
    let now = Now::read();
    match command {
        KeysCommand::Create {
            owner,
            name,
            per_minute,
            per_hour,
            per_day,
            expires_in_days,
        } => {
            let limits = [per_minute, per_hour, per_day];
            create(
                &pool,
                &settings,
                operator,
                (owner, name),
                limits,
                expires_in_days,
                now,
            )
            .await
        }
        KeysCommand::List => list(&pool, operator, now).await,
        KeysCommand::Deactivate { id } => {
            let cache = announcer(&settings);
            let record = service::deactivate(&pool, &cache, operator, settings.key_rate_limit, id, now)
                .await
                .map_err(|e| describe(&e))?;
            println!("deactivated key {} ({})", record.key.id, record.key.prefix);
            Ok(())
        }
    }
}

fn describe(e: &service::KeyError) -> String {
    match e {
        service::KeyError::NotFound => "no key has this id".to_owned(),
        service::KeyError::Invalid(fields) => fields.sentence(),
        service::KeyError::Forbidden(refusal) => refusal.to_string(),
        service::KeyError::UnknownOwner | service::KeyError::OwnerInactive => e.to_string(),
        service::KeyError::Db(e) => e.to_string(),
    }
}

async fn create(
    pool: &DbPool,
    settings: &Settings,
    operator: Actor,
    (owner, name): (String, String),
    [per_minute, per_hour, per_day]: [Option<i64>; 3],
    expires_in_days: Option<u32>,
    now: Now,
) -> Result<(), String> {
    let name = KeyName::parse(&name).map_err(|e| format!("--name {e}"))?;
    let limit = |flag: &str, value: Option<i64>, default: Option<Limit>| match value {
        Some(n) => Limit::parse(n).map(Some).map_err(|e| format!("{flag} {e}")),
        None => Ok(default),
    };
    let defaults = settings.key_rate_limit;
    let limits = Limits {
        per_minute: limit("--per-minute", per_minute, defaults.per_minute)?,
        per_hour: limit("--per-hour", per_hour, defaults.per_hour)?,
        per_day: limit("--per-day", per_day, defaults.per_day)?,
    };
    let expires_at = expires_in_days.map(|d| now.naive() + Duration::days(i64::from(d)));
    let new = NewKey {
        name,
        owner: Some(owner),
        limits,
        expires_at,
    };
    let (record, issued) = service::create(pool, operator, settings.key_rate_limit, new, now)
        .await
        .map_err(|e| describe(&e))?;
    eprintln!(
        "created key {} ({}) for {}; it is shown once:",
        record.key.id, record.key.prefix, record.owner_email
    );
    println!("{}", issued.expose());
    Ok(())
}

async fn list(pool: &DbPool, operator: Actor, now: Now) -> Result<(), String> {
    let now = now.naive();
    let records = service::list(pool, operator, None)
        .await
        .map_err(|e| describe(&e))?;
    println!(
        "{:>6}  {:<10} {:<9} {:<24} {:<28} {:<22} NAME",
        "ID", "PREFIX", "STATUS", "OWNER", "LIMITS (min/hour/day)", "LAST USED"
    );
    for r in &records {
        let limits = Limits::of(&r.key)
            .windows()
            .map(|(_, l)| l.map_or_else(|| "-".to_owned(), |n| n.to_string()))
            .join("/");
        let last_used = r
            .key
            .last_used_at
            .map_or_else(|| "never".to_owned(), |t| t.to_string());
        let status = KeyStatus::of(&r.key, now).as_str();
        println!(
            "{:>6}  {:<10} {:<9} {:<24} {:<28} {:<22} {}",
            r.key.id, r.key.prefix, status, r.owner_email, limits, last_used, r.key.name
        );
    }
    Ok(())
}
