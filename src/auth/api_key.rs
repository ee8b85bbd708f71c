//! API key credentials: `tf_<key id>_<secret>`. The key id is public (it names the key in
//! lists); the secret is 32 random bytes shown once and stored only as a BLAKE3 hash keyed
//! with the server's pepper. Checking one costs a single keyed hash (tens of ns): a fast
//! hash is right here because the secret is high-entropy, unlike a password.

/// Every API key starts with this.
pub const API_KEY_PREFIX: &str = "tf_";

/// Random bytes in a key id (16 hex characters).
pub const KEY_ID_RANDOM_BYTES: usize = 8;

/// Random bytes in a secret (64 hex characters).
pub const SECRET_RANDOM_BYTES: usize = 32;

/// A freshly generated key.
pub struct GeneratedKey {
    /// The public id.
    pub key_id: String,
    /// The whole credential, shown once.
    pub credential: String,
    /// The keyed hash of its secret, the only form stored.
    pub secret_hash: [u8; 32],
}

/// Makes a new key (or a new secret for `key_id`, on rotation) from the OS generator.
pub fn generate(pepper: &[u8; 32], key_id: Option<&str>) -> Result<GeneratedKey, getrandom::Error> {
    let key_id = match key_id {
        Some(key_id) => key_id.to_owned(),
        None => {
            let mut id = [0u8; KEY_ID_RANDOM_BYTES];
            getrandom::fill(&mut id)?;
            hex::encode(id)
        }
    };
    let mut secret = [0u8; SECRET_RANDOM_BYTES];
    getrandom::fill(&mut secret)?;
    let secret = hex::encode(secret);
    Ok(GeneratedKey {
        credential: format!("{API_KEY_PREFIX}{key_id}_{secret}"),
        secret_hash: hash_secret(pepper, &secret),
        key_id,
    })
}

/// Splits a credential into key id and secret; `None` when it is not shaped like one.
pub fn parse(credential: &str) -> Option<(&str, &str)> {
    let rest = credential.strip_prefix(API_KEY_PREFIX)?;
    let (key_id, secret) = rest.split_once('_')?;
    let hex_of = |text: &str, bytes: usize| {
        text.len() == 2 * bytes && text.bytes().all(|byte| byte.is_ascii_hexdigit())
    };
    (hex_of(key_id, KEY_ID_RANDOM_BYTES) && hex_of(secret, SECRET_RANDOM_BYTES))
        .then_some((key_id, secret))
}

/// The stored form of a secret.
pub fn hash_secret(pepper: &[u8; 32], secret: &str) -> [u8; 32] {
    *blake3::keyed_hash(pepper, secret.as_bytes()).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_and_hash_with_the_pepper() {
        let pepper = [7u8; 32];
        let key = generate(&pepper, None).expect("random");
        let (key_id, secret) = parse(&key.credential).expect("parses");
        assert_eq!(key_id, key.key_id);
        assert_eq!(hash_secret(&pepper, secret), key.secret_hash);
        assert_ne!(
            hash_secret(&[8u8; 32], secret),
            key.secret_hash,
            "the pepper matters"
        );
        assert!(parse("tf_short_secret").is_none());
        assert!(parse(&key.credential.replace("tf_", "xx_")).is_none());
    }
}
