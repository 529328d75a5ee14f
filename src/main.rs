//! The `keygate` command: `serve` (the default), `migrate`, `users …`, `keys …`, `audit`, `usage export`.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keygate::config::Settings;
use keygate::startup::{self, Application};

use cli::audit::AuditArgs;
use cli::keys::KeysCommand;
use cli::usage::UsageCommand;
use cli::users::UsersCommand;

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
    /// Read the audit log: who changed which key, user or webhook, newest first.
    Audit(AuditArgs),
    /// Export usage for billing.
    #[command(subcommand)]
    Usage(UsageCommand),
}

fn main() -> ExitCode {
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("keygate: could not read .env: {e}");
        return ExitCode::from(2);
    }
    match keygate::logging::LogFormat::from_env() {
        Ok(format) => keygate::logging::init(format),
        Err(e) => {
            eprintln!("keygate: configuration error: {e}");
            return ExitCode::from(2);
        }
    }
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
        Command::Users(command) => cli::users::run(command, settings).await,
        Command::Keys(command) => cli::keys::run(command, settings).await,
        Command::Audit(args) => cli::audit::run(args, settings).await,
        Command::Usage(command) => cli::usage::run(command, settings).await,
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
