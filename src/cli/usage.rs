//! `keygate usage export`: the API's usage export, for a month or a period, to stdout.

use std::io::Write;

use chrono::{Months, NaiveDate, NaiveDateTime};
use clap::Subcommand;
use keygate::analytics::{Export, Granularity};
use keygate::config::Settings;
use keygate::db::KeyId;
use keygate::db::models::UsageFilter;
use keygate::policy::Actor;
use keygate::routes::api::usage::{CSV_HEADER, csv_line, json_row};
use keygate::startup;
use keygate::users::{self, Email};

#[derive(Subcommand)]
pub enum UsageCommand {
    /// Print usage rows (key, period, allowed, refused) for billing: exact per key and period.
    Export {
        /// A calendar month in UTC, e.g. 2026-11.
        #[arg(long)]
        month: String,
        /// csv (default) or json (one object per line).
        #[arg(long, default_value = "csv")]
        format: String,
        /// hour, day or month (default).
        #[arg(long, default_value = "month")]
        granularity: String,
        #[arg(long)]
        key_id: Option<i64>,
        /// Only the keys of this owner (an email).
        #[arg(long)]
        owner: Option<String>,
    },
}

pub async fn run(command: UsageCommand, settings: Settings) -> Result<(), String> {
    let UsageCommand::Export {
        month,
        format,
        granularity,
        key_id,
        owner,
    } = command;
    let (from, to) = month_of(&month)?;
    let granularity = Granularity::parse(&granularity).ok_or("--granularity must be hour, day or month")?;
    let csv = match format.as_str() {
        "csv" => true,
        "json" => false,
        _ => return Err("--format must be csv or json".into()),
    };
    let (pool, _) = startup::prepare(&settings).await.map_err(|e| e.to_string())?;
    let owner = match owner {
        Some(email) => {
            let email = Email::parse(&email).map_err(|e| format!("--owner: {e}"))?;
            Some(
                users::find_by_email(&pool, &email)
                    .await
                    .map_err(|e| e.to_string())?
                    .id,
            )
        }
        None => None,
    };
    let export = Export::new(
        UsageFilter {
            from,
            to,
            key: key_id.map(KeyId),
            owner,
        },
        granularity,
    )
    .for_actor(Actor::CLI)
    .map_err(|r| r.0)?;
    let mut out = std::io::stdout().lock();
    let write =
        |out: &mut std::io::StdoutLock, text: &str| out.write_all(text.as_bytes()).map_err(|e| e.to_string());
    if csv {
        write(&mut out, CSV_HEADER)?;
    }
    let mut cursor = None;
    loop {
        let (rows, next) = export.page(&pool, cursor).await.map_err(|e| e.to_string())?;
        for row in &rows {
            if csv {
                write(&mut out, &csv_line(row))?;
            } else {
                write(&mut out, &format!("{}\n", json_row(row)))?;
            }
        }
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}

/// `2026-11` → its first instant and the next month's, in UTC.
fn month_of(text: &str) -> Result<(NaiveDateTime, NaiveDateTime), String> {
    let bad = || format!("--month {text:?}: give a month such as 2026-11");
    let first = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").map_err(|_| bad())?;
    let next = first.checked_add_months(Months::new(1)).ok_or_else(bad)?;
    Ok((
        first.and_hms_opt(0, 0, 0).ok_or_else(bad)?,
        next.and_hms_opt(0, 0, 0).ok_or_else(bad)?,
    ))
}
