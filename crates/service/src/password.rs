//! Subscriber passwords: Argon2id at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane),
//! computed off the async runtime and at most [`MAX_CONCURRENT`] at a time, so a burst of
//! requests cannot exhaust memory (19 MiB each) or starve other work.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::ServiceError;

/// Hashes computed at once, process-wide (one per core on the reference machine).
pub(crate) const MAX_CONCURRENT: usize = 2;

static PERMITS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(MAX_CONCURRENT));

fn hasher() -> Result<Argon2<'static>, ServiceError> {
    let params = Params::new(19 * 1024, 2, 1, Some(32))
        .map_err(|e| ServiceError::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The Argon2id PHC string for `password`, with a fresh 16-byte salt.
pub(crate) async fn hash(password: String) -> Result<String, ServiceError> {
    let _permit = PERMITS
        .acquire()
        .await
        .map_err(|_| ServiceError::Internal("password hashing pool closed".into()))?;
    tokio::task::spawn_blocking(move || {
        let salt_bytes: [u8; 16] = tollgate_token::jose::random_bytes();
        let salt = SaltString::encode_b64(&salt_bytes)
            .map_err(|e| ServiceError::Internal(format!("salt: {e}")))?;
        hasher()?
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ServiceError::Internal(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("hashing task failed: {e}")))?
}

/// A random password for subscribers created without one: 32 base64url characters.
#[must_use]
pub(crate) fn random() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(tollgate_token::jose::random_bytes::<24>())
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHash, PasswordVerifier as _};

    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_at_owasp_parameters_and_verify() {
        let h = hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(!h.contains("correct horse"));
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(
            parsed.salt.unwrap().as_str().len() >= 22,
            "salt of at least 16 bytes"
        );
        assert_eq!(parsed.hash.unwrap().len(), 32);
        assert!(
            hasher()
                .unwrap()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            hasher()
                .unwrap()
                .verify_password(b"wrong horse", &parsed)
                .is_err()
        );
        let again = hash("correct horse".into()).await.unwrap();
        assert_ne!(h, again, "salts differ");
    }

    #[test]
    fn random_passwords_are_long_and_distinct() {
        let (a, b) = (random(), random());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
