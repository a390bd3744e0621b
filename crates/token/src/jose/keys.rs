//! Key material. A key knows its algorithm; nothing else gets a say in how it is used.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, UnparsedPublicKey,
    VerificationAlgorithm,
};

use super::JoseError;
use crate::ids::KeyId;

/// A JWS algorithm Tollgate signs or verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    ES256,
    EdDSA,
    RS256,
}

impl Algorithm {
    /// The JOSE name, as it appears in `alg`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::RS256 => "RS256",
        }
    }

    /// Whether keys of this algorithm are shared secrets.
    #[must_use]
    pub fn is_symmetric(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }

    /// The smallest acceptable HMAC secret: the hash output size (RFC 7518 §3.2).
    #[must_use]
    pub fn min_secret_len(self) -> usize {
        match self {
            Algorithm::HS256 => 32,
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
            Algorithm::ES256 | Algorithm::EdDSA | Algorithm::RS256 => 0,
        }
    }

    fn hmac(self) -> Option<hmac::Algorithm> {
        match self {
            Algorithm::HS256 => Some(hmac::HMAC_SHA256),
            Algorithm::HS384 => Some(hmac::HMAC_SHA384),
            Algorithm::HS512 => Some(hmac::HMAC_SHA512),
            Algorithm::ES256 | Algorithm::EdDSA | Algorithm::RS256 => None,
        }
    }
}

impl FromStr for Algorithm {
    type Err = JoseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Exact, case-sensitive names only: "none", "NONE" and friends never match.
        match s {
            "HS256" => Ok(Algorithm::HS256),
            "HS384" => Ok(Algorithm::HS384),
            "HS512" => Ok(Algorithm::HS512),
            "ES256" => Ok(Algorithm::ES256),
            "EdDSA" => Ok(Algorithm::EdDSA),
            "RS256" => Ok(Algorithm::RS256),
            _ => Err(JoseError::InvalidKey),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An HMAC key for `alg`, refusing secrets shorter than the hash output (RFC 7518 §3.2).
fn hmac_key(alg: Algorithm, secret: &[u8]) -> Result<Box<hmac::Key>, JoseError> {
    let h = alg.hmac().ok_or(JoseError::InvalidKey)?;
    if secret.len() < alg.min_secret_len() {
        return Err(JoseError::InvalidKey);
    }
    Ok(Box::new(hmac::Key::new(h, secret)))
}

enum Signer {
    // aws-lc's HMAC key embeds precomputed inner/outer states (~1.2 KB): box it so the
    // asymmetric variants stay small.
    Hmac(Box<hmac::Key>),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(Box<RsaKeyPair>),
}

/// A private (or shared-secret) key pinned to one algorithm and one key id.
pub struct SigningKey {
    kid: KeyId,
    alg: Algorithm,
    signer: Signer,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh key. Returns the key and its secret encoding (PKCS#8 DER for
    /// asymmetric keys, the raw secret for HMAC), which is what [`SigningKey::from_secret`]
    /// takes back.
    pub fn generate(alg: Algorithm, kid: KeyId) -> Result<(Self, Vec<u8>), JoseError> {
        let secret = match alg {
            Algorithm::HS256 => super::random_bytes::<32>().to_vec(),
            Algorithm::HS384 => super::random_bytes::<48>().to_vec(),
            Algorithm::HS512 => super::random_bytes::<64>().to_vec(),
            Algorithm::ES256 => EcdsaKeyPair::generate_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .map_err(|_| JoseError::InvalidKey)?
            .as_ref()
            .to_vec(),
            Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| JoseError::InvalidKey)?
                .as_ref()
                .to_vec(),
            Algorithm::RS256 => {
                let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| JoseError::InvalidKey)?;
                let der: aws_lc_rs::encoding::Pkcs8V1Der<'_> =
                    pair.as_der().map_err(|_| JoseError::InvalidKey)?;
                der.as_ref().to_vec()
            }
        };
        let key = Self::from_secret(alg, kid, &secret)?;
        Ok((key, secret))
    }

    /// Rebuilds a key from its secret encoding.
    pub fn from_secret(alg: Algorithm, kid: KeyId, secret: &[u8]) -> Result<Self, JoseError> {
        let signer = match alg.hmac() {
            Some(_) => Signer::Hmac(hmac_key(alg, secret)?),
            None => match alg {
                Algorithm::ES256 => Signer::Ecdsa(
                    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, secret)
                        .map_err(|_| JoseError::InvalidKey)?,
                ),
                Algorithm::RS256 => {
                    let pair = RsaKeyPair::from_pkcs8(secret).map_err(|_| JoseError::InvalidKey)?;
                    // RFC 7518 §3.3: at least 2048 bits.
                    if pair.public_modulus_len() < 256 {
                        return Err(JoseError::InvalidKey);
                    }
                    Signer::Rsa(Box::new(pair))
                }
                _ => Signer::Ed25519(
                    Ed25519KeyPair::from_pkcs8_maybe_unchecked(secret)
                        .map_err(|_| JoseError::InvalidKey)?,
                ),
            },
        };
        Ok(Self { kid, alg, signer })
    }

    /// The key id.
    #[must_use]
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// The one algorithm this key signs with.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The matching verification key. For HMAC it holds the same secret.
    #[must_use]
    pub fn verifying_key(&self) -> VerifyingKey {
        let verifier = match &self.signer {
            Signer::Hmac(k) => Verifier::Hmac(k.clone()),
            Signer::Ecdsa(k) => Verifier::Public(
                &signature::ECDSA_P256_SHA256_FIXED,
                k.public_key().as_ref().to_vec(),
            ),
            Signer::Ed25519(k) => {
                Verifier::Public(&signature::ED25519, k.public_key().as_ref().to_vec())
            }
            Signer::Rsa(k) => {
                let public = k.public_key();
                Verifier::Rsa {
                    n: public.modulus().big_endian_without_leading_zero().to_vec(),
                    e: public.exponent().big_endian_without_leading_zero().to_vec(),
                }
            }
        };
        VerifyingKey {
            kid: self.kid.clone(),
            alg: self.alg,
            verifier,
        }
    }

    /// Signs raw bytes (a JWS signing input) with this key's algorithm.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, JoseError> {
        match &self.signer {
            Signer::Hmac(k) => Ok(hmac::sign(k, msg).as_ref().to_vec()),
            Signer::Ecdsa(k) => k
                .sign(&SystemRandom::new(), msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| JoseError::InvalidKey),
            Signer::Ed25519(k) => Ok(k.sign(msg).as_ref().to_vec()),
            Signer::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    msg,
                    &mut sig,
                )
                .map_err(|_| JoseError::InvalidKey)?;
                Ok(sig)
            }
        }
    }
}

enum Verifier {
    Hmac(Box<hmac::Key>),
    Public(&'static dyn VerificationAlgorithm, Vec<u8>),
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// A key that checks signatures, pinned to one algorithm and one key id.
pub struct VerifyingKey {
    kid: KeyId,
    alg: Algorithm,
    verifier: Verifier,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// A verification key for a shared HMAC secret (e.g. Centrifugo's `hmac_secret_key`).
    pub fn hmac(alg: Algorithm, kid: KeyId, secret: &[u8]) -> Result<Self, JoseError> {
        Ok(Self {
            kid,
            alg,
            verifier: Verifier::Hmac(hmac_key(alg, secret)?),
        })
    }

    /// A verification key from raw public-key bytes: an uncompressed SEC1 P-256 point
    /// (65 bytes) for ES256, 32 bytes for EdDSA.
    pub fn public(alg: Algorithm, kid: KeyId, bytes: &[u8]) -> Result<Self, JoseError> {
        let (verify_alg, len): (&'static dyn VerificationAlgorithm, usize) = match alg {
            Algorithm::ES256 => (&signature::ECDSA_P256_SHA256_FIXED, 65),
            Algorithm::EdDSA => (&signature::ED25519, 32),
            _ => return Err(JoseError::InvalidKey),
        };
        if bytes.len() != len || (alg == Algorithm::ES256 && bytes[0] != 0x04) {
            return Err(JoseError::InvalidKey);
        }
        Ok(Self {
            kid,
            alg,
            verifier: Verifier::Public(verify_alg, bytes.to_vec()),
        })
    }

    /// A verification key from a public JWK: EC P-256 → ES256, OKP Ed25519 → EdDSA,
    /// RSA → RS256. A JWK that names another `alg`, carries private members, or is a
    /// symmetric (`oct`) key is refused.
    pub fn from_jwk(
        kid: KeyId,
        jwk: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, JoseError> {
        use base64::Engine as _;
        let s = |k: &str| jwk.get(k).and_then(serde_json::Value::as_str);
        let b = |k: &str| {
            s(k).and_then(|v| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(v)
                    .ok()
            })
            .ok_or(JoseError::InvalidKey)
        };
        if ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
            .iter()
            .any(|m| jwk.contains_key(*m))
        {
            return Err(JoseError::InvalidKey);
        }
        let key = match (s("kty"), s("crv")) {
            (Some("EC"), Some("P-256")) => {
                let (x, y) = (b("x")?, b("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(JoseError::InvalidKey);
                }
                let mut point = vec![0x04];
                point.extend(x);
                point.extend(y);
                Self::public(Algorithm::ES256, kid, &point)?
            }
            (Some("OKP"), Some("Ed25519")) => Self::public(Algorithm::EdDSA, kid, &b("x")?)?,
            (Some("RSA"), _) => Self::rsa(kid, &b("n")?, &b("e")?)?,
            _ => return Err(JoseError::InvalidKey),
        };
        if let Some(alg) = s("alg")
            && alg != key.algorithm().as_str()
        {
            return Err(JoseError::InvalidKey);
        }
        Ok(key)
    }

    /// A verification key from a PEM `PUBLIC KEY` (SubjectPublicKeyInfo): P-256 → ES256,
    /// Ed25519 → EdDSA, RSA (≥ 2048 bits) → RS256. The algorithm follows from the key.
    pub fn from_public_pem(kid: KeyId, pem: &str) -> Result<Self, JoseError> {
        use base64::Engine as _;
        let body: String = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("-----"))
            .collect();
        if !pem.contains("-----BEGIN PUBLIC KEY-----") {
            return Err(JoseError::InvalidKey);
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| JoseError::InvalidKey)?;
        Self::from_spki_der(kid, &der)
    }

    /// A verification key from DER SubjectPublicKeyInfo (see [`Self::from_public_pem`]).
    pub fn from_spki_der(kid: KeyId, der: &[u8]) -> Result<Self, JoseError> {
        const P256: [u8; 26] = [
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        const ED25519: [u8; 12] = [
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        if let Some(point) = der.strip_prefix(&P256) {
            return Self::public(Algorithm::ES256, kid, point);
        }
        if let Some(raw) = der.strip_prefix(&ED25519) {
            return Self::public(Algorithm::EdDSA, kid, raw);
        }
        let rsa =
            signature::RsaSubjectPublicKey::from_der(der).map_err(|_| JoseError::InvalidKey)?;
        Self::rsa(
            kid,
            rsa.modulus().big_endian_without_leading_zero(),
            rsa.exponent().big_endian_without_leading_zero(),
        )
    }

    /// An RS256 verification key from its modulus and exponent (big-endian), at least
    /// 2048 bits.
    pub fn rsa(kid: KeyId, n: &[u8], e: &[u8]) -> Result<Self, JoseError> {
        let n = n.strip_prefix(&[0]).unwrap_or(n);
        if n.len() < 256 || n.len() > 1024 || e.is_empty() || e.len() > 8 {
            return Err(JoseError::InvalidKey);
        }
        Ok(Self {
            kid,
            alg: Algorithm::RS256,
            verifier: Verifier::Rsa {
                n: n.to_vec(),
                e: e.to_vec(),
            },
        })
    }

    /// The public key as a JWK (RFC 7517) with `kid`, `alg` and `use: sig`; `None` for a
    /// shared secret, which must never be published.
    #[must_use]
    pub fn to_jwk(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let mut jwk = serde_json::Map::new();
        if let Verifier::Rsa { n, e } = &self.verifier {
            jwk.insert("kty".into(), "RSA".into());
            jwk.insert("n".into(), b64(n).into());
            jwk.insert("e".into(), b64(e).into());
        }
        let public = self.public_key_bytes()?;
        match self.alg {
            Algorithm::ES256 => {
                jwk.insert("kty".into(), "EC".into());
                jwk.insert("crv".into(), "P-256".into());
                jwk.insert("x".into(), b64(&public[1..33]).into());
                jwk.insert("y".into(), b64(&public[33..65]).into());
            }
            Algorithm::EdDSA => {
                jwk.insert("kty".into(), "OKP".into());
                jwk.insert("crv".into(), "Ed25519".into());
                jwk.insert("x".into(), b64(public).into());
            }
            Algorithm::RS256 => {}
            _ => return None,
        }
        jwk.insert("kid".into(), self.kid.as_str().into());
        jwk.insert("alg".into(), self.alg.as_str().into());
        jwk.insert("use".into(), "sig".into());
        Some(jwk)
    }

    /// The key id.
    #[must_use]
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// The one algorithm this key accepts.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The raw public key (uncompressed SEC1 point for ES256, 32 bytes for EdDSA, the
    /// modulus for RS256), or `None` for a shared secret, which must never be published.
    #[must_use]
    pub fn public_key_bytes(&self) -> Option<&[u8]> {
        match &self.verifier {
            Verifier::Hmac(_) => None,
            Verifier::Public(_, bytes) => Some(bytes),
            Verifier::Rsa { n, .. } => Some(n),
        }
    }

    pub(super) fn verify(&self, msg: &[u8], signature: &[u8]) -> Result<(), JoseError> {
        match &self.verifier {
            Verifier::Hmac(k) => hmac::verify(k, msg, signature),
            Verifier::Public(alg, public) => {
                UnparsedPublicKey::new(*alg, public.as_slice()).verify(msg, signature)
            }
            Verifier::Rsa { n, e } => signature::RsaPublicKeyComponents {
                n: n.as_slice(),
                e: e.as_slice(),
            }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, signature),
        }
        .map_err(|_| JoseError::BadSignature)
    }
}
