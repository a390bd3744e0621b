//! The instance master key and what is derived from it.
//!
//! One 256-bit master key per installation (from `TOLLGATE_SECRET_KEY` or a key file)
//! yields, by HMAC-based derivation with fixed labels:
//! - the key that hashes API tokens (so the database holds only a keyed hash),
//! - the key that hashes server API keys (the same scheme under its own label, so a hash
//!   of one kind of credential never matches a stored hash of the other), and
//! - the key-encryption key that seals signing keys at rest (AES-256-GCM, `kid` as AAD).
//!
//! A check value derived the same way is stored in the database on first start, so a
//! server started with the wrong master key refuses to run instead of rejecting every
//! credential.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hmac;
use subtle::ConstantTimeEq as _;
use tollgate_token::KeyId;

/// Length of the master key in bytes.
pub const MASTER_KEY_LEN: usize = 32;

/// The installation's master key. Debug output never shows it.
#[derive(Clone)]
pub struct MasterKey([u8; MASTER_KEY_LEN]);

impl MasterKey {
    /// Wraps key bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh random key.
    #[must_use]
    pub fn generate() -> Self {
        Self(tollgate_token::jose::random_bytes())
    }

    /// The raw bytes, for writing a new key file.
    #[must_use]
    pub fn expose_bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

/// A freshly generated API token. Shown to its owner once; only its hash is stored.
///
/// Deliberately has no `PartialEq` (comparisons go through [`Secrets::hash_api_token`]
/// and a constant-time check) and a redacting `Debug`.
pub struct ApiTokenSecret(String);

impl ApiTokenSecret {
    /// `PT` followed by 64 hex digits: 256 random bits in SignalWire's token style.
    #[must_use]
    pub fn generate() -> Self {
        let bytes: [u8; 32] = tollgate_token::jose::random_bytes();
        Self(format!("PT{}", hex::encode(bytes)))
    }

    /// The token text, for showing once.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiTokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiTokenSecret([REDACTED])")
    }
}

/// Keys derived from the master key.
pub struct Secrets {
    token_hash_key: hmac::Key,
    server_key_hash_key: hmac::Key,
    kek: RandomizedNonceKey,
    check_value: String,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets([REDACTED])")
    }
}

fn derive(master: &MasterKey, label: &str) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &master.0);
    let tag = hmac::sign(&key, label.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Name of the instance setting that holds the master key's check value.
pub const CHECK_SETTING: &str = "master_key_check_v1";

impl Secrets {
    /// Derives every working key from `master`.
    ///
    /// # Panics
    /// Never in practice: AES-256-GCM accepts any 32-byte key.
    #[must_use]
    pub fn new(master: &MasterKey) -> Self {
        let hash = derive(master, "tollgate/v1/api-token-hash");
        let server_key_hash = derive(master, "tollgate/v1/server-api-key-hash");
        let kek = derive(master, "tollgate/v1/key-encryption");
        #[allow(clippy::expect_used)]
        let kek = RandomizedNonceKey::new(&AES_256_GCM, &kek).expect("32-byte AES key");
        Self {
            token_hash_key: hmac::Key::new(hmac::HMAC_SHA256, &hash),
            server_key_hash_key: hmac::Key::new(hmac::HMAC_SHA256, &server_key_hash),
            kek,
            check_value: hex::encode(derive(master, "tollgate/v1/check")),
        }
    }

    /// The value stored in the database to recognise this master key later.
    #[must_use]
    pub fn check_value(&self) -> &str {
        &self.check_value
    }

    /// Whether `stored` is this key's check value (constant time).
    #[must_use]
    pub fn matches_check_value(&self, stored: &str) -> bool {
        stored.as_bytes().ct_eq(self.check_value.as_bytes()).into()
    }

    /// The keyed hash of an API token, hex. Stored and looked up instead of the token.
    #[must_use]
    pub fn hash_api_token(&self, token: &str) -> String {
        hex::encode(hmac::sign(&self.token_hash_key, token.as_bytes()))
    }

    /// The keyed hash of a server API key, hex. Stored and looked up instead of the key.
    #[must_use]
    pub fn hash_server_key(&self, key: &str) -> String {
        hex::encode(hmac::sign(&self.server_key_hash_key, key.as_bytes()))
    }

    /// Seals a key's secret bytes for storage: base64 of nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, kid: &KeyId, secret: &[u8]) -> Result<String, SealError> {
        use base64::Engine as _;
        let mut buf = secret.to_vec();
        let nonce = self
            .kek
            .seal_in_place_append_tag(Aad::from(kid.as_str().as_bytes()), &mut buf)
            .map_err(|_| SealError)?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&buf);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// Opens what [`Secrets::seal`] produced for the same `kid`.
    pub fn open(&self, kid: &KeyId, sealed: &str) -> Result<Vec<u8>, SealError> {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| SealError)?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SealError);
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError)?;
        let mut body = body.to_vec();
        let plain = self
            .kek
            .open_in_place(nonce, Aad::from(kid.as_str().as_bytes()), &mut body)
            .map_err(|_| SealError)?;
        Ok(plain.to_vec())
    }
}

/// Sealing or opening a stored secret failed (wrong master key, or tampering).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("sealed secret could not be opened")]
pub struct SealError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_tokens_are_long_random_and_hashed_with_the_key() {
        let a = ApiTokenSecret::generate();
        let b = ApiTokenSecret::generate();
        assert_eq!(a.expose().len(), 66);
        assert!(a.expose().starts_with("PT"));
        assert_ne!(a.expose(), b.expose());
        assert!(!format!("{a:?}").contains(&a.expose()[2..]));

        let s1 = Secrets::new(&MasterKey::from_bytes([1; 32]));
        let s2 = Secrets::new(&MasterKey::from_bytes([2; 32]));
        let h = s1.hash_api_token(a.expose());
        assert_eq!(h, s1.hash_api_token(a.expose()));
        assert_ne!(h, s2.hash_api_token(a.expose()));
        assert!(!h.contains(&a.expose()[2..]));
        assert_ne!(
            h,
            s1.hash_server_key(a.expose()),
            "server keys hash under their own key"
        );
    }

    #[test]
    fn seal_round_trips_and_binds_kid_and_key() {
        let s = Secrets::new(&MasterKey::from_bytes([1; 32]));
        let kid: KeyId = "k1".parse().unwrap();
        let sealed = s.seal(&kid, b"private").unwrap();
        assert_eq!(s.open(&kid, &sealed).unwrap(), b"private");
        assert!(s.open(&"k2".parse().unwrap(), &sealed).is_err());
        let other = Secrets::new(&MasterKey::from_bytes([2; 32]));
        assert!(other.open(&kid, &sealed).is_err());
        assert!(s.open(&kid, "AAAA").is_err());
        assert_ne!(sealed, s.seal(&kid, b"private").unwrap(), "nonces differ");
    }

    #[test]
    fn check_values_recognise_the_key() {
        let s1 = Secrets::new(&MasterKey::from_bytes([1; 32]));
        let s2 = Secrets::new(&MasterKey::from_bytes([2; 32]));
        assert!(s1.matches_check_value(s1.check_value()));
        assert!(!s1.matches_check_value(s2.check_value()));
        assert_eq!(
            format!("{:?}", MasterKey::from_bytes([9; 32])),
            "MasterKey([REDACTED])"
        );
    }
}
