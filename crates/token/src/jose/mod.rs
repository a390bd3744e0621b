//! Compact JWS: signing, and verification that trusts nothing in the token it is not made to.
//!
//! Design rules, each from the security checklist:
//! - every key is pinned to exactly one algorithm; the header's `alg` must equal it, and it
//!   is never used to *choose* how to verify (JWT-01, JWT-02);
//! - the key is found by `kid` through the caller's exact-match lookup, nothing else
//!   (JWT-03); headers carrying `jku`, `x5u`, `jwk`, `x5c`, `x5t`, `crit`, `zip` or `enc`
//!   are refused outright (JWT-04, JWT-13, JWE-06);
//! - the token is size-checked and charset-checked before any decoding (ENC-01, ENC-03),
//!   base64url must be canonical and unpadded, and JSON must be UTF-8 with no duplicate
//!   members (ENC-02, ENC-05);
//! - HMAC keys are at least as long as the hash output (JWT-05) and compared by the crypto
//!   library's constant-time verify.

pub mod dpop;
pub mod jwe;
mod keys;

pub use keys::{Algorithm, SigningKey, VerifyingKey};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::ids::KeyId;
use crate::json;

/// Header members Tollgate never accepts: they name keys, URLs or processing steps that an
/// attacker controls.
const FORBIDDEN_HEADER_MEMBERS: [&str; 9] = [
    "jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "crit", "zip", "enc",
];

/// Longest encoded protected header accepted (checklist ENC-01 suggests 1 KiB; `ch` can
/// carry a URL, so allow a little more).
const MAX_HEADER_B64_LEN: usize = 2048;

/// Fills an array with bytes from the system CSPRNG.
///
/// # Panics
/// If the operating system's random source fails, which leaves nothing safe to do.
#[must_use]
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(&mut out).expect("system random source failed");
    out
}

/// Extra, optional members for a protected header.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeaderExtras<'a> {
    /// `typ`: the token kind (explicit typing, RFC 8725 §3.11).
    pub typ: Option<&'a str>,
    /// `ch`: the real-time host a SignalWire client should connect to.
    pub ch: Option<&'a str>,
}

#[derive(Serialize)]
struct ProtectedHeader<'a> {
    alg: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    typ: Option<&'a str>,
    kid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ch: Option<&'a str>,
}

/// Signs `claims` as a compact JWS with `key`, putting the key's `alg` and `kid` in the
/// header.
pub fn sign<C: Serialize>(
    key: &SigningKey,
    extras: HeaderExtras<'_>,
    claims: &C,
) -> Result<String, JoseError> {
    let header = ProtectedHeader {
        alg: key.algorithm().as_str(),
        typ: extras.typ,
        kid: key.kid().as_str(),
        ch: extras.ch,
    };
    let header = serde_json::to_vec(&header).map_err(|_| JoseError::Encoding)?;
    let claims = serde_json::to_vec(claims).map_err(|_| JoseError::Encoding)?;
    let mut out = String::with_capacity((header.len() + claims.len()) * 4 / 3 + 128);
    URL_SAFE_NO_PAD.encode_string(&header, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&claims, &mut out);
    let signature = key.sign(out.as_bytes())?;
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut out);
    Ok(out)
}

/// A token whose signature checked out. Claims are *not* yet validated: time, audience and
/// kind checks depend on what the token is being used for.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The claims object.
    pub claims: Map<String, Value>,
    /// The key that verified it.
    pub kid: KeyId,
}

impl Verified {
    /// The header's `typ`, if any.
    #[must_use]
    pub fn typ(&self) -> Option<&str> {
        self.header.get("typ").and_then(Value::as_str)
    }
}

/// Verifies a compact JWS.
///
/// `lookup` maps a `kid` to the one key allowed to have signed it. Tokens longer than
/// `max_len` bytes are refused before anything is decoded.
pub fn verify<'k>(
    token: &str,
    max_len: usize,
    lookup: impl FnOnce(&KeyId) -> Option<&'k VerifyingKey>,
) -> Result<Verified, JoseError> {
    verify_inner(token, max_len, |header| {
        let kid: KeyId = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or(JoseError::UnknownKey)?
            .parse()
            .map_err(|_| JoseError::UnknownKey)?;
        let key = lookup(&kid).ok_or(JoseError::UnknownKey)?;
        if key.kid() != &kid {
            return Err(JoseError::UnknownKey);
        }
        Ok(key)
    })
}

/// Verifies a compact JWS with one configured key, whatever `kid` the header names (an
/// application's user JWTs may carry none). The algorithm is still the key's.
pub fn verify_pinned(
    token: &str,
    max_len: usize,
    key: &VerifyingKey,
) -> Result<Verified, JoseError> {
    verify_inner(token, max_len, |_| Ok(key))
}

/// The protected header of a compact JWS **without verifying anything** (to find a key).
pub fn peek_header(token: &str, max_len: usize) -> Result<Map<String, Value>, JoseError> {
    if token.len() > max_len {
        return Err(JoseError::TooLarge);
    }
    let (header_b64, _, _) = split_compact(token)?;
    if header_b64.len() > MAX_HEADER_B64_LEN {
        return Err(JoseError::TooLarge);
    }
    decode_object(header_b64)
}

/// The claims of a compact JWS **without verifying anything**: only for choosing which key
/// to verify it with (e.g. by `iss`). Size and format checks still apply.
pub fn peek_claims(token: &str, max_len: usize) -> Result<Map<String, Value>, JoseError> {
    if token.len() > max_len {
        return Err(JoseError::TooLarge);
    }
    let (_, payload_b64, _) = split_compact(token)?;
    decode_object(payload_b64)
}

fn verify_inner<'k>(
    token: &str,
    max_len: usize,
    pick: impl FnOnce(&Map<String, Value>) -> Result<&'k VerifyingKey, JoseError>,
) -> Result<Verified, JoseError> {
    if token.len() > max_len {
        return Err(JoseError::TooLarge);
    }
    let (header_b64, payload_b64, sig_b64) = split_compact(token)?;
    if header_b64.len() > MAX_HEADER_B64_LEN {
        return Err(JoseError::TooLarge);
    }
    let header = decode_object(header_b64)?;
    for member in FORBIDDEN_HEADER_MEMBERS {
        if header.contains_key(member) {
            return Err(JoseError::ForbiddenHeader);
        }
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JoseError::Malformed)?;
    let key = pick(&header)?;
    // The key decides the algorithm; the header only has to agree with it, byte for byte.
    if alg != key.algorithm().as_str() {
        return Err(JoseError::AlgorithmMismatch);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| JoseError::Malformed)?;
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    key.verify(&token.as_bytes()[..signing_input_len], &signature)?;
    let claims = decode_object(payload_b64)?;
    let kid = key.kid().clone();
    Ok(Verified {
        header,
        claims,
        kid,
    })
}

/// Splits `h.p.s`, accepting only the base64url alphabet and exactly three non-empty parts.
pub(crate) fn split_compact(token: &str) -> Result<(&str, &str, &str), JoseError> {
    let ok_charset = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok_charset {
        return Err(JoseError::Malformed);
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() && !s.is_empty() => {
            Ok((h, p, s))
        }
        _ => Err(JoseError::Malformed),
    }
}

pub(crate) fn decode_object(b64: &str) -> Result<Map<String, Value>, JoseError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| JoseError::Malformed)?;
    match json::parse_strict(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JoseError::Malformed),
    }
}

/// Why a token was refused or could not be made. Variants are for logs and metrics; callers
/// facing a client answer all of them with one generic error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    #[error("token too large")]
    TooLarge,
    #[error("token is not a well-formed compact JWS")]
    Malformed,
    #[error("token header carries a member that is never accepted")]
    ForbiddenHeader,
    #[error("token names no known key")]
    UnknownKey,
    #[error("token algorithm does not match its key")]
    AlgorithmMismatch,
    #[error("bad signature")]
    BadSignature,
    #[error("key material is invalid")]
    InvalidKey,
    #[error("could not encode the token")]
    Encoding,
}

#[cfg(test)]
mod tests;
