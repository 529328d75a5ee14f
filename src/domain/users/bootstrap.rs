//! The first admin: the one the configuration names, or on an empty database `admin@localhost`
//! with a random password shown once.

use std::fmt;

use super::{Email, UserError, check_password, insert, password};
use crate::clock::Now;
use crate::db::models::User;
use crate::db::{self, DbPool};
use crate::policy::Actor;
use crate::validation::FieldErrors;

/// The admin account the configuration asks for (`ADMIN_EMAIL`, `ADMIN_PASSWORD`).
#[derive(Clone)]
pub struct AdminBootstrap {
    pub email: String,
    pub password: String,
}

impl fmt::Debug for AdminBootstrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminBootstrap")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// The admin account made at first start, with the password to print once.
pub struct GeneratedAdmin {
    pub email: String,
    pub password: String,
}

pub const FIRST_RUN_ADMIN: &str = "admin@localhost";

/// Makes sure an admin exists: the configured one (created when missing), or on a database
/// with no users at all `admin@localhost` with a random password, returned to be shown once.
pub async fn bootstrap_admin(
    pool: &DbPool,
    configured: Option<&AdminBootstrap>,
) -> Result<Option<GeneratedAdmin>, UserError> {
    if let Some(admin) = configured {
        let email = Email::parse(&admin.email)
            .map_err(|e| UserError::Invalid(FieldErrors::single("ADMIN_EMAIL", e)))?;
        check_password(&admin.password)
            .map_err(|e| UserError::Invalid(FieldErrors::single("ADMIN_PASSWORD", e)))?;
        let exists = db::run(pool, {
            let email = email.clone();
            move |conn| Ok::<_, UserError>(User::find_by_email(conn, email.as_str())?.is_some())
        })
        .await?;
        if exists {
            return Ok(None);
        }
        let hash = password::hash_bounded(&admin.password).await?;
        db::run(pool, move |conn| {
            if User::find_by_email(conn, email.as_str())?.is_none() {
                let now = Now::read();
                let user = insert(conn, &email, &hash, true, now.naive())?;
                super::created(conn, Actor::CLI, &user, now)?;
                log::info!("created admin user {}", email.as_str());
            }
            Ok::<_, UserError>(())
        })
        .await?;
        return Ok(None);
    }
    if db::run(pool, |conn| Ok::<_, UserError>(User::count(conn)?)).await? > 0 {
        return Ok(None);
    }
    let password = random_password();
    let hash = password::hash_bounded(&password).await?;
    db::run(pool, move |conn| {
        if User::count(conn)? > 0 {
            return Ok(None);
        }
        let email = Email(FIRST_RUN_ADMIN.to_owned());
        let now = Now::read();
        let user = insert(conn, &email, &hash, true, now.naive())?;
        super::created(conn, Actor::CLI, &user, now)?;
        Ok(Some(GeneratedAdmin {
            email: email.0,
            password,
        }))
    })
    .await
}

/// 20 characters from a 56-symbol alphabet without look-alikes (~116 bits).
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut out = String::with_capacity(20);
    let mut buf = [0u8; 64];
    while out.len() < 20 {
        getrandom::fill(&mut buf).expect("the operating system's random source is unavailable");
        let fits = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
        out.extend(
            buf.iter()
                .filter(|&&b| b < fits)
                .map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
                .take(20 - out.len()),
        );
    }
    out
}
