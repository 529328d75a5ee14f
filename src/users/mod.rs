//! Users: accounts that own keys and log in, with argon2id password hashes (`password`) and
//! signed bearer tokens (`token`). Knows nothing of HTTP.

pub mod password;
pub mod token;

use crate::config::AdminBootstrap;
use crate::db::models::{NewUser, User};
use crate::db::{self, DbConnection, DbError, DbPool};
use crate::validation::FieldErrors;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("invalid user fields")]
    Invalid(FieldErrors),
    #[error("email or password is wrong")]
    InvalidCredentials,
    #[error("no such user")]
    NotFound,
    #[error(transparent)]
    Hash(#[from] password::HashError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for UserError {
    fn from(e: diesel::result::Error) -> UserError {
        UserError::Db(DbError::Query(e))
    }
}

/// An email address as stored: trimmed and lower-cased, so lookups ignore case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, String> {
        let email = raw.trim().to_lowercase();
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && !domain.is_empty() && !domain.contains('@')
            });
        if valid {
            Ok(Email(email))
        } else {
            Err("must be an email address".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub const MIN_PASSWORD_CHARS: usize = 8;
const MAX_PASSWORD_BYTES: usize = 1024;

pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("must be at least {MIN_PASSWORD_CHARS} characters"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("must be at most {MAX_PASSWORD_BYTES} bytes"));
    }
    Ok(())
}

fn insert(conn: &mut DbConnection, email: &Email, password: &str, is_admin: bool) -> Result<User, UserError> {
    if User::find_by_email(conn, email.as_str())?.is_some() {
        return Err(UserError::Invalid(FieldErrors::single(
            "email",
            "a user with this email exists",
        )));
    }
    let password_hash = password::hash(password)?;
    let now = db::now();
    Ok(User::insert(
        conn,
        &NewUser {
            email: email.as_str(),
            password_hash: &password_hash,
            is_admin,
            is_active: true,
            created_at: now,
            updated_at: now,
        },
    )?)
}

pub async fn create(pool: &DbPool, email: &str, password: &str, is_admin: bool) -> Result<User, UserError> {
    let mut errors = FieldErrors::new();
    let email = Email::parse(email).map_err(|e| errors.add("email", e)).ok();
    if let Err(e) = check_password(password) {
        errors.add("password", e);
    }
    let (Some(email), true) = (email, errors.is_empty()) else {
        return Err(UserError::Invalid(errors));
    };
    let password = password.to_owned();
    db::run(pool, move |conn| insert(conn, &email, &password, is_admin)).await
}

/// Checks an email and password. Unknown emails cost the same argon2 work as wrong passwords,
/// so response times do not reveal which accounts exist.
pub async fn authenticate(pool: &DbPool, email: &str, password: &str) -> Result<User, UserError> {
    let email = email.trim().to_lowercase();
    let password = password.to_owned();
    db::run(pool, move |conn| {
        let user = User::find_by_email(conn, &email)?;
        let phc = user.as_ref().map_or(DUMMY_HASH, |u| u.password_hash.as_str());
        let matches = password::verify(&password, phc);
        match user {
            Some(user) if matches && user.is_active => Ok(user),
            _ => Err(UserError::InvalidCredentials),
        }
    })
    .await
}

/// An argon2id hash of a random string nobody knows, with the default parameters.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$8X1d3y4mDeTkBWgsUX5dbhHyR8l7WVyiCOUv5Da8UeU";

pub async fn find(pool: &DbPool, id: i64) -> Result<User, UserError> {
    db::run(pool, move |conn| User::find(conn, id)?.ok_or(UserError::NotFound)).await
}

pub async fn list(pool: &DbPool) -> Result<Vec<User>, UserError> {
    db::run(pool, |conn| Ok(User::list(conn)?)).await
}

/// Activates or deactivates a user. A deactivated user cannot log in, and their bearer tokens
/// and dashboard sessions stop working at once.
pub async fn set_active(pool: &DbPool, id: i64, active: bool) -> Result<User, UserError> {
    db::run(pool, move |conn| {
        User::set_active(conn, id, active, db::now())?.ok_or(UserError::NotFound)
    })
    .await
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
        let password = admin.password.clone();
        db::run(pool, move |conn| {
            if User::find_by_email(conn, email.as_str())?.is_none() {
                insert(conn, &email, &password, true)?;
                log::info!("created admin user {}", email.as_str());
            }
            Ok::<_, UserError>(())
        })
        .await?;
        return Ok(None);
    }
    db::run(pool, |conn| {
        if User::count(conn)? > 0 {
            return Ok(None);
        }
        let password = random_password();
        let email = Email(FIRST_RUN_ADMIN.to_owned());
        insert(conn, &email, &password, true)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").map(|e| e.0),
            Ok("ada@example.com".into())
        );
        for bad in ["", "ada", "@example.com", "ada@", "a b@c.d", "a@b@c"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_dummy_hash_is_a_valid_argon2id_hash() {
        assert!(DUMMY_HASH.starts_with("$argon2id$"));
        assert!(argon2::password_hash::phc::PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!password::verify("", DUMMY_HASH));
    }

    #[test]
    fn random_passwords_are_long_and_distinct() {
        let a = random_password();
        assert_eq!(a.len(), 20);
        assert!(check_password(&a).is_ok());
        assert_ne!(a, random_password());
    }
}
