//! `keygate audit`: the audit log, newest first, read with the API's filters.

use std::collections::HashMap;

use clap::Args;
use keygate::audit::{self, Entry};
use keygate::config::Settings;
use keygate::policy::Actor;
use keygate::routes::api::audit::filter;
use keygate::startup;

#[derive(Args)]
pub struct AuditArgs {
    /// Only changes by this user (an id).
    #[arg(long)]
    actor: Option<String>,
    /// Only this action (key.created, user.updated, …).
    #[arg(long)]
    action: Option<String>,
    /// Only changes of this: key:ID, user:ID or webhook:ID (or just key, user, webhook).
    #[arg(long)]
    target: Option<String>,
    /// From this time on (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Before this time (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    /// How many entries (1–200).
    #[arg(long, default_value = "50")]
    limit: String,
    /// The next page: the cursor the last one printed.
    #[arg(long)]
    cursor: Option<String>,
    /// One JSON object per line, as the API answers them.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: AuditArgs, settings: Settings) -> Result<(), String> {
    let (pool, _) = startup::prepare(&settings).await.map_err(|e| e.to_string())?;
    let mut query = HashMap::new();
    // `--target key:7`, or `--target key` for every key.
    let (target_type, target_id) = match args
        .target
        .as_deref()
        .map(|t| t.split_once(':').unwrap_or((t, "")))
    {
        Some((kind, id)) => (Some(kind.to_owned()), (!id.is_empty()).then(|| id.to_owned())),
        None => (None, None),
    };
    let given = [
        ("actor", args.actor),
        ("action", args.action),
        ("target_type", target_type),
        ("target_id", target_id),
        ("from", args.from),
        ("to", args.to),
        ("limit", Some(args.limit)),
        ("cursor", args.cursor),
    ];
    for (name, value) in given {
        if let Some(value) = value {
            query.insert(name.to_owned(), value);
        }
    }
    let (filter, limit) = filter(query).map_err(|e| e.sentence())?;
    let (entries, next) = audit::page(&pool, Actor::CLI, filter, limit)
        .await
        .map_err(|e| e.to_string())?;
    for entry in &entries {
        if args.json {
            println!("{}", serde_json::to_string(entry).map_err(|e| e.to_string())?);
        } else {
            println!("{}", line(entry));
        }
    }
    if let Some(next) = next {
        eprintln!("more: keygate audit --cursor {next} (with the same filters)");
    }
    Ok(())
}

fn line(entry: &Entry) -> String {
    format!(
        "{:>6}  {}  {:<28} {:<9} {:<15} {:<22} {:<10} {} -> {}",
        entry.id,
        entry.at,
        entry.who(),
        entry.via,
        entry.ip.as_deref().unwrap_or("-"),
        entry.action,
        entry.target_label(':'),
        entry.before,
        entry.after
    )
}
