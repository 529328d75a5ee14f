//! `keygate keys …`.

use chrono::Duration;
use clap::Subcommand;
use keygate::clock::Now;
use keygate::config::Settings;
use keygate::contract::{Contract, IpAllowlist, Meta, Scopes};
use keygate::db::{DbPool, KeyId};
use keygate::keys::service::{self, Actor, NewKey};
use keygate::keys::{KeyName, KeyStatus};
use std::sync::Arc;

use keygate::ledger::{CreditChange, Ledger};
use keygate::limits::credits::Adjustment;
use keygate::limits::memory::MemoryStore;
use keygate::limits::{FailureMode, Limiter};
use keygate::limits::{Limit, Limits};
use keygate::routes::api::import;
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
        /// Per calendar month (UTC).
        #[arg(long)]
        per_month: Option<i64>,
        #[arg(long)]
        expires_in_days: Option<u32>,
        #[command(flatten)]
        contract: ContractArgs,
    },
    /// List all keys (never their secrets).
    List,
    /// Deactivate a key (soft delete).
    Deactivate { id: KeyId },
    /// Roll a key: print a new secret once; the old one works for --grace more (e.g. 24h).
    Roll {
        id: KeyId,
        /// 0, or a number with s, m, h or d (at most 7d).
        #[arg(long, default_value = "0")]
        grace: String,
    },
    /// Import keys from another system: a JSON lines file (or a JSON array), or CSV with a
    /// header row (.csv). Prints what it did, line by line; safe to run again.
    Import { file: std::path::PathBuf },
    /// Top up (--add) or replace (--set) a key's credits, or make them unlimited. Needs
    /// REDIS_URL: the live balances are in Redis (a keygate without Redis keeps them in its
    /// own memory, out of the shell's reach; use the API or the dashboard there).
    Credits {
        id: KeyId,
        #[arg(long, conflicts_with_all = ["set", "unlimited"])]
        add: Option<u64>,
        #[arg(long, conflicts_with = "unlimited")]
        set: Option<u64>,
        #[arg(long)]
        unlimited: bool,
    },
}

/// A new key's contract on the command line.
#[derive(clap::Args)]
pub struct ContractArgs {
    /// A scope to grant (repeat for more), e.g. --scope orders:read.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// An address or CIDR block the key may be used from (repeat for more).
    #[arg(long = "allow-ip")]
    allow_ips: Vec<String>,
    /// Metadata, a JSON object.
    #[arg(long)]
    meta: Option<String>,
}

impl ContractArgs {
    fn parse(self) -> Result<Contract, String> {
        let meta = match self.meta {
            None => None,
            Some(text) => {
                let value = serde_json::from_str(&text).map_err(|e| format!("--meta is not JSON: {e}"))?;
                Some(Meta::parse(&value).map_err(|e| format!("--meta {e}"))?)
            }
        };
        Ok(Contract {
            meta,
            scopes: Scopes::parse(self.scopes.iter().map(String::as_str))
                .map_err(|e| format!("--scope: {e}"))?,
            ip_allowlist: IpAllowlist::parse(self.allow_ips.iter().map(String::as_str))
                .map_err(|e| format!("--allow-ip: {e}"))?,
        })
    }
}

/// `0`, `90s`, `30m`, `24h`, `7d`.
fn grace(text: &str) -> Result<Duration, String> {
    let bad = || format!("--grace {text}: expected 0 or a number with s, m, h or d, at most 7d");
    if text == "0" {
        return Ok(Duration::zero());
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| bad())?;
    let grace = match unit {
        "s" => Duration::seconds(n),
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        _ => return Err(bad()),
    };
    if grace < Duration::zero() || grace > service::MAX_GRACE {
        return Err(bad());
    }
    Ok(grace)
}

pub async fn run(command: KeysCommand, settings: Settings) -> Result<(), String> {
    let (pool, _) = startup::prepare(&settings).await.map_err(|e| e.to_string())?;
    let operator = Actor::CLI;
    let now = Now::read();
    let shell = Shell {
        pool: &pool,
        settings: &settings,
        operator,
        now,
    };
    match command {
        KeysCommand::Create {
            owner,
            name,
            per_minute,
            per_hour,
            per_day,
            per_month,
            expires_in_days,
            contract,
        } => {
            let limits = [per_minute, per_hour, per_day, per_month];
            let contract = contract.parse()?;
            create(&shell, (owner, name, contract), limits, expires_in_days).await
        }
        KeysCommand::Roll { id, grace: text } => roll(&shell, id, grace(&text)?).await,
        KeysCommand::Import { file } => import_file(&shell, &file).await,
        KeysCommand::List => list(&pool, operator, now).await,
        KeysCommand::Credits {
            id,
            add,
            set,
            unlimited,
        } => credits(&shell, id, credit_change(add, set, unlimited)?).await,
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

/// `--add N`, `--set N` or `--unlimited`: one of them.
fn credit_change(add: Option<u64>, set: Option<u64>, unlimited: bool) -> Result<CreditChange, String> {
    let change = match (add, set, unlimited) {
        (Some(n), None, false) => CreditChange {
            add: Some(n),
            ..CreditChange::default()
        },
        (None, Some(n), false) => CreditChange {
            remaining: Some(Some(n)),
            ..CreditChange::default()
        },
        (None, None, true) => CreditChange {
            remaining: Some(None),
            ..CreditChange::default()
        },
        _ => return Err("give one of --add N, --set N or --unlimited".into()),
    };
    Ok(change)
}

async fn credits(shell: &Shell<'_>, id: KeyId, change: CreditChange) -> Result<(), String> {
    let settings = shell.settings;
    let Some(target) = &settings.redis else {
        return Err(
            "credits live in Redis: set REDIS_URL (without Redis, a running keygate keeps them \
                    in its own memory; change them with the API or the dashboard)"
                .into(),
        );
    };
    if change.add.is_some_and(|n| n > Adjustment::MAX)
        || change.remaining.flatten().is_some_and(|n| n > Adjustment::MAX)
    {
        return Err(format!("credits go up to {}", Adjustment::MAX));
    }
    // Closed: a Redis that does not answer fails the command rather than a private count.
    let memory = Arc::new(MemoryStore::new(16));
    let limiter = Limiter::with_redis(
        target.clone(),
        &settings.redis_prefix,
        FailureMode::Closed,
        settings.redis_timeout,
        memory,
    )
    .await;
    let ledger = Ledger::new(shell.pool.clone(), Arc::new(limiter));
    let cache = announcer(settings);
    let (record, _) = service::change_credits(
        shell.pool,
        &cache,
        &ledger,
        shell.operator,
        id,
        change.into(),
        shell.now,
    )
    .await
    .map_err(|e| describe(&e))?;
    let remaining = record
        .key
        .remaining
        .map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    println!(
        "key {} ({}): {remaining} credits",
        record.key.id, record.key.prefix
    );
    Ok(())
}

/// What every command works with: the database, the settings, the operator (an admin), and the
/// command's one reading of the clock.
struct Shell<'a> {
    pool: &'a DbPool,
    settings: &'a Settings,
    operator: Actor,
    now: Now,
}

async fn roll(shell: &Shell<'_>, id: KeyId, grace: Duration) -> Result<(), String> {
    let cache = announcer(shell.settings);
    let (record, issued) = service::roll(shell.pool, &cache, shell.operator, id, grace, shell.now)
        .await
        .map_err(|e| describe(&e))?;
    match record.key.replaced_secret_until(shell.now.naive()) {
        Some(until) => {
            eprintln!("rolled key {id}; the old secret works until {until} UTC. The new one, shown once:")
        }
        None => eprintln!("rolled key {id}; the old secret has stopped. The new one, shown once:"),
    }
    println!("{}", issued.expose());
    Ok(())
}

async fn import_file(shell: &Shell<'_>, file: &std::path::Path) -> Result<(), String> {
    let cache = announcer(shell.settings);
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let csv = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let objects = if csv {
        super::import::csv_objects(&text)?
    } else {
        super::import::json_objects(&text)
    };
    let defaults = shell.settings.key_rate_limit;
    let lines = objects
        .into_iter()
        .map(|(line, object)| (line, object.and_then(|o| import::parse_line(o, defaults))))
        .collect();
    let report = keygate::keys::import::import(shell.pool, &cache, shell.operator, lines, shell.now)
        .await
        .map_err(|e| describe(&e))?;
    for error in &report.errors {
        eprintln!("line {}: {}", error.line, error.message);
    }
    println!(
        "imported {}, unchanged {}, refused {}",
        report.imported,
        report.unchanged,
        report.errors.len()
    );
    Ok(())
}

fn describe(e: &service::KeyError) -> String {
    match e {
        service::KeyError::NotFound => "no key has this id".to_owned(),
        service::KeyError::Invalid(fields) => fields.sentence(),
        service::KeyError::Forbidden(refusal) => refusal.to_string(),
        service::KeyError::UnknownOwner | service::KeyError::OwnerInactive => e.to_string(),
        service::KeyError::Db(e) => e.to_string(),
        service::KeyError::Ledger(e) => e.to_string(),
        service::KeyError::Idempotency(message) => (*message).to_owned(),
    }
}

async fn create(
    shell: &Shell<'_>,
    (owner, name, contract): (String, String, Contract),
    [per_minute, per_hour, per_day, per_month]: [Option<i64>; 4],
    expires_in_days: Option<u32>,
) -> Result<(), String> {
    let name = KeyName::parse(&name).map_err(|e| format!("--name {e}"))?;
    let limit = |flag: &str, value: Option<i64>, default: Option<Limit>| match value {
        Some(n) => Limit::parse(n).map(Some).map_err(|e| format!("{flag} {e}")),
        None => Ok(default),
    };
    let (pool, settings, operator, now) = (shell.pool, shell.settings, shell.operator, shell.now);
    let defaults = settings.key_rate_limit;
    let limits = Limits {
        per_minute: limit("--per-minute", per_minute, defaults.per_minute)?,
        per_hour: limit("--per-hour", per_hour, defaults.per_hour)?,
        per_day: limit("--per-day", per_day, defaults.per_day)?,
        per_month: limit("--per-month", per_month, defaults.per_month)?,
    };
    let expires_at = expires_in_days.map(|d| now.naive() + Duration::days(i64::from(d)));
    let new = NewKey {
        name,
        owner: Some(owner),
        limits,
        expires_at,
        contract,
        credits: CreditChange::default(),
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
