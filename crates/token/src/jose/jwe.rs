//! Compact JWE with `alg: dir` and `enc: A256GCM`, the format of SignalWire's subscriber
//! access tokens (SATs) and refresh tokens.
//!
//! Built directly on RustCrypto's `aes-gcm` with strict parsing, because a popular JOSE
//! crate was measured accepting a 1-byte GCM tag (a keyless forgery in under 100 tries,
//! checklist JWE-02). Rules enforced before any decryption:
//! - exactly five parts, the second (encrypted key) empty, as `dir` requires (JWE-03);
//! - a 12-byte IV and a 16-byte tag, exactly (JWE-02, JWE-03);
//! - protected header `alg` = `dir`, `enc` = `A256GCM`, a known `kid`, and no `zip`,
//!   `crit`, `jku`, `jwk`, `x5u`, `x5c`, `p2c` or `epk` (JWE-04, JWE-05, JWE-08);
//! - size and charset checks first, canonical unpadded base64url, duplicate-free JSON.
//!
//! The AAD is the encoded protected header (RFC 7516 §5.1), so any header change breaks
//! the tag.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::JoseError;
use crate::ids::KeyId;
use crate::json;

const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Header members never accepted on a JWE.
const FORBIDDEN: [&str; 10] = [
    "zip", "crit", "jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "p2c", "epk",
];
const MAX_HEADER_B64_LEN: usize = 1024;

/// A 256-bit content-encryption key used directly (`alg: dir`), pinned to its key id.
pub struct EncryptionKey {
    kid: KeyId,
    cipher: Aes256Gcm,
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl EncryptionKey {
    /// Key length in bytes.
    pub const LEN: usize = 32;

    /// Generates a fresh key; returns it and its raw bytes for sealed storage.
    pub fn generate(kid: KeyId) -> Result<(Self, Vec<u8>), JoseError> {
        let bytes = super::random_bytes::<32>().to_vec();
        Ok((Self::from_bytes(kid, &bytes)?, bytes))
    }

    /// Rebuilds a key from its 32 raw bytes.
    pub fn from_bytes(kid: KeyId, bytes: &[u8]) -> Result<Self, JoseError> {
        if bytes.len() != Self::LEN {
            return Err(JoseError::InvalidKey);
        }
        let cipher = Aes256Gcm::new_from_slice(bytes).map_err(|_| JoseError::InvalidKey)?;
        Ok(Self { kid, cipher })
    }

    /// The key id.
    #[must_use]
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }
}

/// Encrypts `payload` (a JSON object) as a compact JWE with header
/// `{"alg":"dir","enc":"A256GCM","typ":typ,"kid":…[,"ch":ch]}`.
pub fn encrypt(
    key: &EncryptionKey,
    typ: &str,
    ch: Option<&str>,
    payload: &Map<String, Value>,
) -> Result<String, JoseError> {
    let mut header = Map::new();
    header.insert("alg".into(), "dir".into());
    header.insert("enc".into(), "A256GCM".into());
    header.insert("typ".into(), typ.into());
    header.insert("kid".into(), key.kid.as_str().into());
    if let Some(ch) = ch {
        header.insert("ch".into(), ch.into());
    }
    let header_b64 = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&Value::Object(header)).map_err(|_| JoseError::Encoding)?);
    let plaintext = serde_json::to_vec(payload).map_err(|_| JoseError::Encoding)?;
    let iv = super::random_bytes::<IV_LEN>();
    let sealed = key
        .cipher
        .encrypt(
            Nonce::from_slice(&iv),
            Payload {
                msg: &plaintext,
                aad: header_b64.as_bytes(),
            },
        )
        .map_err(|_| JoseError::Encoding)?;
    let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    Ok(format!(
        "{header_b64}..{}.{}.{}",
        URL_SAFE_NO_PAD.encode(iv),
        URL_SAFE_NO_PAD.encode(ciphertext),
        URL_SAFE_NO_PAD.encode(tag)
    ))
}

/// A JWE that decrypted and authenticated.
#[derive(Debug, Clone)]
pub struct Decrypted {
    pub header: Map<String, Value>,
    pub payload: Map<String, Value>,
    pub kid: KeyId,
}

impl Decrypted {
    /// The header's `typ`.
    #[must_use]
    pub fn typ(&self) -> Option<&str> {
        self.header.get("typ").and_then(Value::as_str)
    }
}

/// Reads the key id from a JWE header without decrypting (for routing to the right key).
pub fn peek_kid(token: &str, max_len: usize) -> Result<KeyId, JoseError> {
    let (header_b64, ..) = split(token, max_len)?;
    let header = decode_header(header_b64)?;
    header_kid(&header)
}

/// Decrypts and authenticates a compact JWE. `lookup` maps the header's `kid` to the one
/// key allowed to have made it.
pub fn decrypt<'k>(
    token: &str,
    max_len: usize,
    lookup: impl FnOnce(&KeyId) -> Option<&'k EncryptionKey>,
) -> Result<Decrypted, JoseError> {
    let (header_b64, iv_b64, ct_b64, tag_b64) = split(token, max_len)?;
    let header = decode_header(header_b64)?;
    let kid = header_kid(&header)?;
    let key = lookup(&kid).ok_or(JoseError::UnknownKey)?;
    if key.kid != kid {
        return Err(JoseError::UnknownKey);
    }
    let iv = URL_SAFE_NO_PAD
        .decode(iv_b64)
        .map_err(|_| JoseError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag_b64)
        .map_err(|_| JoseError::Malformed)?;
    if iv.len() != IV_LEN || tag.len() != TAG_LEN {
        return Err(JoseError::Malformed);
    }
    let mut sealed = URL_SAFE_NO_PAD
        .decode(ct_b64)
        .map_err(|_| JoseError::Malformed)?;
    sealed.extend_from_slice(&tag);
    let plaintext = key
        .cipher
        .decrypt(
            Nonce::from_slice(&iv),
            Payload {
                msg: &sealed,
                aad: header_b64.as_bytes(),
            },
        )
        .map_err(|_| JoseError::BadSignature)?;
    match json::parse_strict(&plaintext) {
        Ok(Value::Object(payload)) => Ok(Decrypted {
            header,
            payload,
            kid,
        }),
        _ => Err(JoseError::Malformed),
    }
}

/// Splits `h..iv.ct.tag` after the size and charset checks.
fn split(token: &str, max_len: usize) -> Result<(&str, &str, &str, &str), JoseError> {
    if token.len() > max_len {
        return Err(JoseError::TooLarge);
    }
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(JoseError::Malformed);
    }
    let mut parts = token.split('.');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some(h), Some(""), Some(iv), Some(ct), Some(tag), None)
            if !h.is_empty() && !iv.is_empty() && !tag.is_empty() =>
        {
            if h.len() > MAX_HEADER_B64_LEN {
                return Err(JoseError::TooLarge);
            }
            Ok((h, iv, ct, tag))
        }
        _ => Err(JoseError::Malformed),
    }
}

fn decode_header(b64: &str) -> Result<Map<String, Value>, JoseError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| JoseError::Malformed)?;
    let Ok(Value::Object(header)) = json::parse_strict(&bytes) else {
        return Err(JoseError::Malformed);
    };
    if FORBIDDEN.iter().any(|m| header.contains_key(*m)) {
        return Err(JoseError::ForbiddenHeader);
    }
    let alg = header.get("alg").and_then(Value::as_str);
    let enc = header.get("enc").and_then(Value::as_str);
    if alg != Some("dir") || enc != Some("A256GCM") {
        return Err(JoseError::AlgorithmMismatch);
    }
    Ok(header)
}

fn header_kid(header: &Map<String, Value>) -> Result<KeyId, JoseError> {
    header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(JoseError::UnknownKey)?
        .parse()
        .map_err(|_| JoseError::UnknownKey)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key(id: &str) -> EncryptionKey {
        EncryptionKey::generate(id.parse().unwrap()).unwrap().0
    }

    fn payload() -> Map<String, Value> {
        json!({"sub": "s1", "perm": "r"})
            .as_object()
            .unwrap()
            .clone()
    }

    const MAX: usize = 8192;

    fn parts(t: &str) -> Vec<String> {
        t.split('.').map(str::to_owned).collect()
    }

    fn join(p: &[String]) -> String {
        p.join(".")
    }

    #[test]
    fn round_trip_with_signalwire_header_shape() {
        let k = key("e1");
        let t = encrypt(&k, "SAT", Some("ws://127.0.0.1:1"), &payload()).unwrap();
        let p = parts(&t);
        assert_eq!(p.len(), 5);
        assert!(p[1].is_empty());
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&p[0]).unwrap()).unwrap();
        assert_eq!(
            header,
            json!({"alg": "dir", "enc": "A256GCM", "typ": "SAT", "kid": "e1", "ch": "ws://127.0.0.1:1"})
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(&p[2]).unwrap().len(), 12);
        assert_eq!(URL_SAFE_NO_PAD.decode(&p[4]).unwrap().len(), 16);
        let d = decrypt(&t, MAX, |_| Some(&k)).unwrap();
        assert_eq!(d.payload, payload());
        assert_eq!(d.typ(), Some("SAT"));
        assert_eq!(peek_kid(&t, MAX).unwrap().as_str(), "e1");
        // Nothing of the payload is readable without the key.
        assert!(!t.contains("perm"));
        assert!(!String::from_utf8_lossy(&URL_SAFE_NO_PAD.decode(&p[3]).unwrap()).contains("s1"));
    }

    #[test]
    fn jwe02_truncated_or_extended_tags_are_rejected() {
        let k = key("e1");
        let t = encrypt(&k, "SAT", None, &payload()).unwrap();
        let p = parts(&t);
        let tag = URL_SAFE_NO_PAD.decode(&p[4]).unwrap();
        for len in [0usize, 1, 8, 12, 15] {
            let mut q = p.clone();
            q[4] = URL_SAFE_NO_PAD.encode(&tag[..len]);
            assert!(
                decrypt(&join(&q), MAX, |_| Some(&k)).is_err(),
                "tag of {len}"
            );
        }
        let mut q = p.clone();
        let mut longer = tag.clone();
        longer.push(0);
        q[4] = URL_SAFE_NO_PAD.encode(longer);
        assert!(decrypt(&join(&q), MAX, |_| Some(&k)).is_err());
    }

    #[test]
    fn jwe01_jwe03_every_flipped_byte_and_swapped_iv_is_rejected() {
        let k = key("e1");
        let t = encrypt(&k, "SAT", None, &payload()).unwrap();
        let other = encrypt(&k, "SAT", None, &payload()).unwrap();
        let p = parts(&t);
        // Flip each byte of IV, ciphertext and tag.
        for part in [2usize, 3, 4] {
            let raw = URL_SAFE_NO_PAD.decode(&p[part]).unwrap();
            for i in 0..raw.len() {
                let mut bad = raw.clone();
                bad[i] ^= 0x01;
                let mut q = p.clone();
                q[part] = URL_SAFE_NO_PAD.encode(bad);
                assert_eq!(
                    decrypt(&join(&q), MAX, |_| Some(&k)).unwrap_err(),
                    JoseError::BadSignature,
                    "part {part} byte {i}"
                );
            }
        }
        // The IV of another token.
        let mut q = p.clone();
        q[2] = parts(&other)[2].clone();
        assert!(decrypt(&join(&q), MAX, |_| Some(&k)).is_err());
        // Truncated ciphertext and a wrong-length IV.
        let mut q = p.clone();
        q[3] = q[3][..q[3].len() - 4].to_owned();
        assert!(decrypt(&join(&q), MAX, |_| Some(&k)).is_err());
        let mut q = p.clone();
        q[2] = URL_SAFE_NO_PAD.encode([0u8; 16]);
        assert_eq!(
            decrypt(&join(&q), MAX, |_| Some(&k)).unwrap_err(),
            JoseError::Malformed
        );
    }

    #[test]
    fn changed_headers_break_the_token() {
        let k = key("e1");
        let t = encrypt(&k, "Refresh", None, &payload()).unwrap();
        let p = parts(&t);
        for header in [
            json!({"alg":"dir","enc":"A256GCM","typ":"SAT","kid":"e1"}),
            json!({"alg":"dir","enc":"A256GCM","typ":"Refresh","kid":"e1","ch":"evil"}),
        ] {
            let mut q = p.clone();
            q[0] = URL_SAFE_NO_PAD.encode(header.to_string());
            assert_eq!(
                decrypt(&join(&q), MAX, |_| Some(&k)).unwrap_err(),
                JoseError::BadSignature,
                "{header}"
            );
        }
        for (header, err) in [
            (
                json!({"alg":"dir","enc":"A128GCM","kid":"e1"}),
                JoseError::AlgorithmMismatch,
            ),
            (
                json!({"alg":"A256KW","enc":"A256GCM","kid":"e1"}),
                JoseError::AlgorithmMismatch,
            ),
            (
                json!({"alg":"dir","enc":"A256GCM","kid":"e1","zip":"DEF"}),
                JoseError::ForbiddenHeader,
            ),
            (
                json!({"alg":"dir","enc":"A256GCM","kid":"e1","crit":["x"]}),
                JoseError::ForbiddenHeader,
            ),
            (
                json!({"alg":"dir","enc":"A256GCM","kid":"e1","p2c":2147483647}),
                JoseError::ForbiddenHeader,
            ),
            (json!({"alg":"dir","enc":"A256GCM"}), JoseError::UnknownKey),
            (
                json!({"alg":"dir","enc":"A256GCM","kid":"../x"}),
                JoseError::UnknownKey,
            ),
        ] {
            let mut q = p.clone();
            q[0] = URL_SAFE_NO_PAD.encode(header.to_string());
            assert_eq!(
                decrypt(&join(&q), MAX, |_| Some(&k)).unwrap_err(),
                err,
                "{header}"
            );
        }
    }

    #[test]
    fn structure_and_key_checks() {
        let k = key("e1");
        let other = key("e2");
        let t = encrypt(&k, "SAT", None, &payload()).unwrap();
        let p = parts(&t);
        // Non-empty encrypted-key part, four or six parts, padding, size.
        let mut q = p.clone();
        q[1] = "AAAA".into();
        assert_eq!(
            decrypt(&join(&q), MAX, |_| Some(&k)).unwrap_err(),
            JoseError::Malformed
        );
        assert!(decrypt(&join(&p[..4]), MAX, |_| Some(&k)).is_err());
        assert!(decrypt(&format!("{t}.x"), MAX, |_| Some(&k)).is_err());
        assert!(decrypt(&format!("{t}="), MAX, |_| Some(&k)).is_err());
        assert_eq!(
            decrypt(&t, t.len() - 1, |_| Some(&k)).unwrap_err(),
            JoseError::TooLarge
        );
        // The wrong key (even if a lookup misroutes) never decrypts.
        assert!(decrypt(&t, MAX, |_| Some(&other)).is_err());
        assert_eq!(
            decrypt(&t, MAX, |_| None).unwrap_err(),
            JoseError::UnknownKey
        );
        assert!(EncryptionKey::from_bytes("e".parse().unwrap(), &[0; 16]).is_err());
        // A JWS is not a JWE.
        assert!(decrypt("eyJh.eyJh.sig", MAX, |_| Some(&k)).is_err());
    }
}
