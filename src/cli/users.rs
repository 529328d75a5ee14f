//! `keygate users …`.

use clap::Subcommand;
use keygate::clock::Now;
use keygate::config::Settings;
use keygate::db::DbPool;
use keygate::db::models::User;
use keygate::keys::cache::KeyCache;
use keygate::limits::{Limit, Limits};
use keygate::policy::Actor;
use keygate::startup;
use keygate::users;

use super::{announcer, read_password};

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create a user; the password is read from stdin (or KEYGATE_PASSWORD).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        admin: bool,
    },
    /// List users with their ceilings.
    List,
    /// Deactivate a user: they cannot log in, and their tokens and sessions end everywhere.
    Deactivate { email: String },
    /// Activate a user again (their old tokens and sessions stay ended).
    Activate { email: String },
    /// Set the most a user may set on their own keys; `none` for no ceiling in a window.
    SetCeiling {
        email: String,
        #[arg(long)]
        per_minute: String,
        #[arg(long)]
        per_hour: String,
        #[arg(long)]
        per_day: String,
    },
    /// Set a user's password (read from stdin or KEYGATE_PASSWORD); their tokens and sessions end.
    SetPassword { email: String },
}

pub async fn run(command: UsersCommand, settings: Settings) -> Result<(), String> {
    let (pool, _) = startup::prepare(&settings).await.map_err(|e| e.to_string())?;
    let cache = announcer(&settings);
    let now = Now::read();
    match command {
        UsersCommand::Create { email, admin } => create(&pool, &email, admin, now).await,
        UsersCommand::List => list(&pool, &settings).await,
        UsersCommand::Deactivate { email } => switch(&pool, &cache, &email, false, now).await,
        UsersCommand::Activate { email } => switch(&pool, &cache, &email, true, now).await,
        UsersCommand::SetCeiling {
            email,
            per_minute,
            per_hour,
            per_day,
        } => {
            let user = by_email(&pool, &email).await?;
            set_ceiling(&pool, &cache, user, [&per_minute, &per_hour, &per_day], now).await
        }
        UsersCommand::SetPassword { email } => {
            let user = by_email(&pool, &email).await?;
            let password = read_password()?;
            users::set_password(&pool, &cache, Actor::CLI, user.id, &password, now)
                .await
                .map_err(describe)?;
            println!(
                "set the password of {}; their tokens and sessions have ended",
                user.email
            );
            Ok(())
        }
    }
}

async fn by_email(pool: &DbPool, email: &str) -> Result<User, String> {
    let email = users::Email::parse(email).map_err(|e| format!("{email}: {e}"))?;
    users::find_by_email(pool, &email).await.map_err(describe)
}

async fn switch(pool: &DbPool, cache: &KeyCache, email: &str, active: bool, now: Now) -> Result<(), String> {
    let user = by_email(pool, email).await?;
    users::set_active(pool, cache, Actor::CLI, user.id, active, now)
        .await
        .map_err(describe)?;
    if active {
        println!("activated {}", user.email);
    } else {
        println!("deactivated {}; their tokens and sessions have ended", user.email);
    }
    Ok(())
}

/// A ceiling as the command line gives it: a positive number, or `none`.
fn ceiling_arg(name: &str, value: &str) -> Result<Option<Limit>, String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let number: i64 = value
        .parse()
        .map_err(|_| format!("--{name} must be a positive whole number or none"))?;
    Limit::parse(number)
        .map(Some)
        .map_err(|e| format!("--{name} {e}"))
}

fn shown(limit: Option<Limit>) -> String {
    limit.map_or_else(|| "none".to_owned(), |n| n.to_string())
}

pub fn describe(e: users::UserError) -> String {
    match e {
        users::UserError::Invalid(fields) => fields.sentence(),
        other => other.to_string(),
    }
}

async fn list(pool: &DbPool, settings: &Settings) -> Result<(), String> {
    println!(
        "{:>6}  {:<32} {:<6} {:<8} {:>10} {:>10} {:>10}",
        "id", "email", "admin", "active", "max/min", "max/hour", "max/day"
    );
    for user in users::list(pool).await.map_err(describe)? {
        let ceiling = users::ceiling(&user, &settings.key_rate_limit);
        println!(
            "{:>6}  {:<32} {:<6} {:<8} {:>10} {:>10} {:>10}",
            user.id,
            user.email,
            if user.is_admin { "yes" } else { "no" },
            if user.is_active { "yes" } else { "no" },
            shown(ceiling.per_minute),
            shown(ceiling.per_hour),
            shown(ceiling.per_day),
        );
    }
    Ok(())
}

async fn set_ceiling(
    pool: &DbPool,
    cache: &KeyCache,
    user: User,
    [per_minute, per_hour, per_day]: [&str; 3],
    now: Now,
) -> Result<(), String> {
    let ceiling = Limits {
        per_minute: ceiling_arg("per-minute", per_minute)?,
        per_hour: ceiling_arg("per-hour", per_hour)?,
        per_day: ceiling_arg("per-day", per_day)?,
        per_month: None,
    };
    let patch = users::UserPatch {
        ceiling: Some(ceiling),
        ..users::UserPatch::default()
    };
    users::update(pool, cache, Actor::CLI, user.id, patch, now)
        .await
        .map_err(describe)?;
    println!(
        "{} may set at most {}/minute, {}/hour, {}/day on their keys",
        user.email,
        shown(ceiling.per_minute),
        shown(ceiling.per_hour),
        shown(ceiling.per_day)
    );
    Ok(())
}

async fn create(pool: &DbPool, email: &str, admin: bool, now: Now) -> Result<(), String> {
    let password = read_password()?;
    let user = users::create(
        pool,
        Actor::CLI,
        (email, &password),
        admin,
        users::UserPatch::default(),
        now,
    )
    .await
    .map_err(describe)?;
    println!(
        "created user {} (id {}){}",
        user.email,
        user.id,
        if admin { ", admin" } else { "" }
    );
    Ok(())
}
