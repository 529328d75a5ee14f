//! The `keygate` command: `serve` (the default), `migrate`, `users …`, `keys …`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use chrono::Duration;
use clap::{Parser, Subcommand};
use keygate::clock::Now;
use keygate::config::Settings;
use keygate::db::{KeyId, UserId};
use keygate::keys::cache::KeyCache;
use keygate::keys::service::{self, Actor, NewKey};
use keygate::keys::{KeyName, KeyStatus};
use keygate::limits::{Limit, Limits};
use keygate::startup::{self, Application};
use keygate::{db, users};

#[derive(Parser)]
#[command(version, about = "API keys and rate limits for an HTTP API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, then serve HTTP until SIGTERM/SIGINT (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum UsersCommand {
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

#[derive(Subcommand)]
enum KeysCommand {
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

fn main() -> ExitCode {
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("keygate: could not read .env: {e}");
        return ExitCode::from(2);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("keygate: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match actix_web::rt::System::new().block_on(run(cli.command.unwrap_or(Command::Serve), settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keygate: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> Result<(), String> {
    match command {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            // The release phase: migrations, and the first admin (its password goes to the log).
            let (_, applied) = startup::prepare(&settings).await.map_err(|e| e.to_string())?;
            println!("applied {applied} migration(s)");
            Ok(())
        }
        Command::Users(command) => users_command(command, settings).await,
        Command::Keys(command) => keys(command, settings).await,
    }
}

async fn serve(settings: Settings) -> Result<(), String> {
    let app = Application::build(settings.clone())
        .await
        .map_err(|e| e.to_string())?;
    let host = if settings.bind_addr.is_unspecified() {
        "localhost".to_owned()
    } else {
        settings.bind_addr.to_string()
    };
    let url = format!("http://{host}:{}", app.port());
    log::info!("keygate listening on {url} (health: {url}/healthz)");
    log::info!(
        "log in: the dashboard at {url}/admin/, or for a bearer token: curl -X POST {url}/api/auth/token -H 'Content-Type: application/json' -d '{{\"email\":\"…\",\"password\":\"…\"}}'"
    );
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

/// Announces changes of keys and users to running instances through Redis, when there is one.
fn announcer(settings: &Settings) -> KeyCache {
    KeyCache::new(
        settings
            .redis
            .as_ref()
            .map(|target| (target, settings.redis_prefix.as_str())),
    )
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

async fn users_command(command: UsersCommand, settings: Settings) -> Result<(), String> {
    let (pool, _) = startup::prepare(&settings).await.map_err(|e| e.to_string())?;
    let cache = announcer(&settings);
    let by_email = |email: &str| {
        let pool = pool.clone();
        let email = users::Email::parse(email).map_err(|e| format!("{email}: {e}"));
        async move {
            users::find_by_email(&pool, &email?)
                .await
                .map_err(describe_user_error)
        }
    };
    match command {
        UsersCommand::Create { email, admin } => create_user(&pool, &email, admin).await?,
        UsersCommand::List => list_users(&pool, &settings).await?,
        UsersCommand::Deactivate { email } => {
            let user = by_email(&email).await?;
            users::set_active(&pool, &cache, user.id, false, Now::read())
                .await
                .map_err(describe_user_error)?;
            println!("deactivated {}; their tokens and sessions have ended", user.email);
        }
        UsersCommand::Activate { email } => {
            let user = by_email(&email).await?;
            users::set_active(&pool, &cache, user.id, true, Now::read())
                .await
                .map_err(describe_user_error)?;
            println!("activated {}", user.email);
        }
        UsersCommand::SetCeiling {
            email,
            per_minute,
            per_hour,
            per_day,
        } => {
            let user = by_email(&email).await?;
            set_ceiling(&pool, &cache, user, [&per_minute, &per_hour, &per_day]).await?;
        }
        UsersCommand::SetPassword { email } => {
            let user = by_email(&email).await?;
            let password = read_password()?;
            users::set_password(&pool, &cache, user.id, &password, Now::read())
                .await
                .map_err(describe_user_error)?;
            println!(
                "set the password of {}; their tokens and sessions have ended",
                user.email
            );
        }
    }
    Ok(())
}

async fn keys(command: KeysCommand, settings: Settings) -> Result<(), String> {
    let (pool, _) = startup::prepare(&settings).await.map_err(|e| e.to_string())?;
    let cache = announcer(&settings);
    // Whoever runs the CLI has the server's environment, so acts with admin rights.
    let operator = Actor {
        user_id: UserId(0),
        is_admin: true,
    };
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
            create_key(&pool, &settings, operator, owner, name, limits, expires_in_days).await?;
        }
        KeysCommand::List => list_keys(&pool, operator).await?,
        KeysCommand::Deactivate { id } => {
            let record =
                service::deactivate(&pool, &cache, operator, settings.key_rate_limit, id, Now::read())
                    .await
                    .map_err(|e| describe_key_error(&e))?;
            println!("deactivated key {} ({})", record.key.id, record.key.prefix);
        }
    }
    Ok(())
}

fn read_password() -> Result<String, String> {
    if let Ok(password) = std::env::var("KEYGATE_PASSWORD") {
        return Ok(password);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password: ");
        std::io::stderr().flush().ok();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("could not read the password: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn describe_user_error(e: users::UserError) -> String {
    match e {
        users::UserError::Invalid(fields) => fields.sentence(),
        other => other.to_string(),
    }
}

fn describe_key_error(e: &service::KeyError) -> String {
    match e {
        service::KeyError::NotFound => "no key has this id".to_owned(),
        service::KeyError::Invalid(fields) => fields.sentence(),
        service::KeyError::Forbidden(refusal) => refusal.to_string(),
        service::KeyError::UnknownOwner | service::KeyError::OwnerInactive => e.to_string(),
        service::KeyError::Db(e) => e.to_string(),
    }
}

async fn create_key(
    pool: &db::DbPool,
    settings: &Settings,
    operator: Actor,
    owner: String,
    name: String,
    [per_minute, per_hour, per_day]: [Option<i64>; 3],
    expires_in_days: Option<u32>,
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
    let expires_at = expires_in_days.map(|d| Now::read().naive() + Duration::days(i64::from(d)));
    let new = NewKey {
        name,
        owner: Some(owner),
        limits,
        expires_at,
    };
    let (record, issued) = service::create(pool, operator, settings.key_rate_limit, new, Now::read())
        .await
        .map_err(|e| describe_key_error(&e))?;
    eprintln!(
        "created key {} ({}) for {}; it is shown once:",
        record.key.id, record.key.prefix, record.owner_email
    );
    println!("{}", issued.expose());
    Ok(())
}

async fn list_keys(pool: &db::DbPool, operator: Actor) -> Result<(), String> {
    let now = Now::read().naive();
    let records = service::list(pool, operator, None)
        .await
        .map_err(|e| describe_key_error(&e))?;
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

async fn list_users(pool: &db::DbPool, settings: &Settings) -> Result<(), String> {
    println!(
        "{:>6}  {:<32} {:<6} {:<8} {:>10} {:>10} {:>10}",
        "id", "email", "admin", "active", "max/min", "max/hour", "max/day"
    );
    for user in users::list(pool).await.map_err(describe_user_error)? {
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
    pool: &db::DbPool,
    cache: &KeyCache,
    user: keygate::db::models::User,
    [per_minute, per_hour, per_day]: [&str; 3],
) -> Result<(), String> {
    let ceiling = Limits {
        per_minute: ceiling_arg("per-minute", per_minute)?,
        per_hour: ceiling_arg("per-hour", per_hour)?,
        per_day: ceiling_arg("per-day", per_day)?,
    };
    let patch = users::UserPatch {
        ceiling: Some(ceiling),
        ..users::UserPatch::default()
    };
    users::update(pool, cache, user.id, patch, Now::read())
        .await
        .map_err(describe_user_error)?;
    println!(
        "{} may set at most {}/minute, {}/hour, {}/day on their keys",
        user.email,
        shown(ceiling.per_minute),
        shown(ceiling.per_hour),
        shown(ceiling.per_day)
    );
    Ok(())
}

async fn create_user(pool: &db::DbPool, email: &str, admin: bool) -> Result<(), String> {
    let password = read_password()?;
    let user = users::create(pool, email, &password, admin, Now::read())
        .await
        .map_err(describe_user_error)?;
    println!(
        "created user {} (id {}){}",
        user.email,
        user.id,
        if admin { ", admin" } else { "" }
    );
    Ok(())
}
