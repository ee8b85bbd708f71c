//! Passwords: Argon2id with the argon2 crate's defaults (m = 19 MiB, t = 2, p = 1, the
//! OWASP minimum), stored as PHC strings. Hashing costs tens of milliseconds, so callers
//! run it off the async workers and bound how many run at once.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Random bytes of salt per password.
const SALT_RANDOM_BYTES: usize = 16;

/// Hashes a password with a fresh salt.
pub fn hash(password: &str) -> Result<String, String> {
    let mut salt = [0u8; SALT_RANDOM_BYTES];
    getrandom::fill(&mut salt).map_err(|error| format!("random salt: {error}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|error| format!("salt: {error}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| format!("hashing: {error}"))
}

/// True when `password` matches the stored hash. A malformed hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_per_salt() {
        let first = hash("correct horse battery").expect("hash");
        let second = hash("correct horse battery").expect("hash");
        assert!(first.starts_with("$argon2id$"));
        assert_ne!(first, second, "each hash has its own salt");
        assert!(verify("correct horse battery", &first));
        assert!(!verify("wrong horse battery", &first));
        assert!(!verify("correct horse battery", "not a hash"));
    }
}
