//! Password hashing with argon2id (the crate's defaults: m=19 MiB, t=2, p=1, OWASP's
//! recommendation). Slow by design: async code calls the bounded forms, which run on the
//! blocking pool, a few at a time.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashError;

pub fn hash(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|phc| phc.to_string())
        .map_err(|_| HashError)
}

/// True when `password` matches the stored PHC string; a malformed hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Argon2 runs at most this many at once (one per core), on the blocking pool and holding no
/// database connection: a burst of logins then queues here instead of starving key lookups of
/// connections.
static HASHING: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

/// [`hash`], bounded and off the async workers.
pub async fn hash_bounded(password: &str) -> Result<String, HashError> {
    let _permit = HASHING.acquire().await;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(|_| HashError)?
}

/// [`verify`], bounded and off the async workers.
pub async fn verify_bounded(password: &str, phc: String) -> bool {
    let _permit = HASHING.acquire().await;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || verify(&password, &phc))
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_argon2id_and_verify() {
        let a = hash("correct horse").expect("hash");
        let b = hash("correct horse").expect("hash");
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify("correct horse", &a));
        assert!(!verify("correct horse!", &a));
        assert!(!verify("correct horse", "not a hash"));
    }
}
