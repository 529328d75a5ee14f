//! The command line's `users …` and `keys …`: the same domain calls the API makes, acting with
//! admin rights (whoever runs the CLI has the server's environment). Each command reads the
//! clock once and passes that `Now` down, as a request does.

pub mod audit;
pub mod import;
pub mod keys;
pub mod usage;
pub mod users;

use std::io::{BufRead, IsTerminal, Write};

use keygate::config::Settings;
use keygate::keys::cache::KeyCache;

/// Announces changes of keys and users to running instances through Redis, when there is one.
pub fn announcer(settings: &Settings) -> KeyCache {
    KeyCache::new(
        settings
            .redis
            .as_ref()
            .map(|target| (target, settings.redis_prefix.as_str())),
    )
}

/// A password from `KEYGATE_PASSWORD`, else one line of stdin (prompted on a terminal).
pub fn read_password() -> Result<String, String> {
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
