//! Bearer tokens: `kgt.<user id>.<epoch>.<expiry, unix seconds>.<HMAC-SHA256 of the rest, hex>`,
//! signed with `SECRET_KEY`. The signature and expiry are checked without I/O; the epoch is
//! compared with the user's current one (cached by the gate, see `keys::cache`), which moves
//! when the user is deactivated, reactivated or changes their password, so every token issued
//! before then ends on every instance.

use std::fmt;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::db::UserId;

/// Key material that signs bearer tokens and session cookies. Never printed.
#[derive(Clone)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    pub const MIN_LEN: usize = 64;

    pub fn random() -> SecretKey {
        let mut bytes = vec![0u8; Self::MIN_LEN];
        getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
        SecretKey(bytes)
    }

    /// Key material as configured (`SECRET_KEY`; its length is checked by the configuration).
    pub fn from_bytes(bytes: Vec<u8>) -> SecretKey {
        SecretKey(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

type HmacSha256 = hmac::Hmac<Sha256>;

const SCHEME: &str = "kgt";
/// Longer input is refused unread.
const MAX_TOKEN_LEN: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
}

/// A verified token's claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    pub user_id: UserId,
    pub epoch: i64,
    pub expires_at: i64,
}

#[derive(Clone)]
pub struct TokenSigner {
    mac: HmacSha256,
}

impl TokenSigner {
    pub fn new(secret: &SecretKey) -> TokenSigner {
        TokenSigner {
            mac: HmacSha256::new_from_slice(secret.bytes()).expect("HMAC accepts keys of any length"),
        }
    }

    fn signature(&self, payload: &str) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(payload.as_bytes());
        mac
    }

    pub fn issue(&self, user_id: UserId, epoch: i64, expires_at: i64) -> String {
        let payload = format!("{SCHEME}.{user_id}.{epoch}.{expires_at}");
        let tag = self.signature(&payload).finalize().into_bytes();
        format!("{payload}.{}", hex::encode(tag))
    }

    pub fn verify(&self, token: &str, unix_now: i64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (payload, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let mut parts = payload.split('.');
        let (Some(SCHEME), Some(user_id), Some(epoch), Some(expires_at), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let tag = hex::decode(tag).map_err(|_| TokenError::Malformed)?;
        // Constant-time comparison, before anything else in the token is trusted.
        self.signature(payload)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        let claims = Claims {
            user_id: user_id.parse().map_err(|_| TokenError::Malformed)?,
            epoch: epoch.parse().map_err(|_| TokenError::Malformed)?,
            expires_at: expires_at.parse().map_err(|_| TokenError::Malformed)?,
        };
        if claims.expires_at <= unix_now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner::new(&SecretKey::random())
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let s = signer();
        let token = s.issue(UserId(42), 3, 1_000);
        assert!(token.starts_with("kgt.42.3.1000."));
        assert_eq!(
            s.verify(&token, 999),
            Ok(Claims {
                user_id: UserId(42),
                epoch: 3,
                expires_at: 1_000
            })
        );
        assert_eq!(s.verify(&token, 1_000), Err(TokenError::Expired));
    }

    #[test]
    fn tampered_or_foreign_tokens_are_refused() {
        let s = signer();
        let token = s.issue(UserId(42), 0, 1_000);
        let renewed = token.replace("kgt.42.0.", "kgt.42.1.");
        assert_eq!(s.verify(&renewed, 0), Err(TokenError::BadSignature));
        let raised = token.replace("kgt.42.", "kgt.1.");
        assert_eq!(s.verify(&raised, 0), Err(TokenError::BadSignature));
        let extended = token.replace(".1000.", ".9999.");
        assert_eq!(s.verify(&extended, 0), Err(TokenError::BadSignature));
        assert_eq!(signer().verify(&token, 0), Err(TokenError::BadSignature));
        for junk in [
            "",
            "kgt",
            "kgt.1.2",
            "a.b.c.d",
            "kgt.1.2.zz",
            "kgt.1.2.3.zz",
            &"x".repeat(500),
        ] {
            assert!(s.verify(junk, 0).is_err(), "{junk}");
        }
    }
}
