//! Password and token hashing. Passwords: argon2id (the crate's defaults, a random salt each),
//! verified in a blocking thread because a check costs tens of milliseconds. API tokens: 32
//! random bytes shown once; only their SHA-256 is stored (a token has the entropy a password
//! lacks, so a fast hash is enough and lets the lookup be an index).

use anyhow::{anyhow, bail, Result};
use argon2::password_hash::rand_core::RngCore;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use sha2::{Digest, Sha256};

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 8;
/// Longest password accepted (bounds the hashing work a request can cause).
pub const MAX_PASSWORD: usize = 1024;
/// What every token starts with, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "rwst_";

/// The argon2id PHC string of `password`.
pub fn hash_password(password: &str) -> Result<String> {
    check_password(password)?;
    let salt = argon2::password_hash::SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow!("hashing the password: {e}"))
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD {
        return false;
    }
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A password's length limits.
pub fn check_password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        bail!("password: {n} characters, at least {MIN_PASSWORD}");
    }
    if password.len() > MAX_PASSWORD {
        bail!("password: {} bytes, at most {MAX_PASSWORD}", password.len());
    }
    Ok(())
}

/// A new API token (what the caller is shown once).
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    format!("{TOKEN_PREFIX}{}", hex(&b))
}

/// What is stored for a token: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_tokens_hash() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse!", &h));
        assert!(hash_password("short").is_err());
        let t = new_token();
        assert!(t.starts_with(TOKEN_PREFIX) && t.len() == TOKEN_PREFIX.len() + 64);
        assert_ne!(t, new_token());
        assert_eq!(token_hash(&t), token_hash(&t));
        assert_eq!(token_hash(&t).len(), 64);
    }
}
