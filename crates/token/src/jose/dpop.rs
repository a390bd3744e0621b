//! DPoP proofs (RFC 9449) and JWK thumbprints (RFC 7638): how a device proves it holds the
//! key a token was bound to.
//!
//! A subscriber token created with a `fingerprint` is bound to the key whose RFC 7638
//! thumbprint that fingerprint is (`cnf.jkt`). To refresh it, the holder sends a DPoP
//! proof: a JWS with `typ: dpop+jwt`, its public key in the `jwk` header, and claims
//! `jti`, `htm` (HTTP method), `htu` (request URL) and `iat`, signed with the private key.
//! ES256, EdDSA and RS256 (≥ 2048-bit) proofs are accepted.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;

use super::{Algorithm, JoseError, VerifyingKey};
use crate::ids::KeyId;
use crate::time::UnixTime;

/// Longest DPoP proof accepted.
pub const MAX_PROOF_LEN: usize = 4096;
/// How far a proof's `iat` may be from now, either way.
pub const MAX_CLOCK_SKEW: i64 = 60;

/// Why a proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("proof is not a well-formed DPoP JWS")]
    Malformed,
    #[error("proof key or algorithm is not acceptable")]
    UnsupportedKey,
    #[error("proof signature is invalid")]
    BadSignature,
    #[error("proof is for another method or URL")]
    WrongTarget,
    #[error("proof is too old or from the future")]
    Stale,
    #[error("proof key is not the key the token is bound to")]
    WrongKey,
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK, base64url (43 characters).
///
/// Supports EC P-256, OKP Ed25519 and RSA keys; members are taken in the RFC's required
/// order.
pub fn thumbprint(jwk: &Map<String, Value>) -> Result<String, DpopError> {
    let s = |k: &str| {
        jwk.get(k)
            .and_then(Value::as_str)
            .ok_or(DpopError::UnsupportedKey)
    };
    let crv = s("crv").unwrap_or_default();
    let canonical = match (s("kty")?, crv) {
        ("EC", "P-256") => format!(
            r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#,
            Value::from(s("x")?),
            Value::from(s("y")?)
        ),
        ("OKP", "Ed25519") => format!(
            r#"{{"crv":"Ed25519","kty":"OKP","x":{}}}"#,
            Value::from(s("x")?)
        ),
        _ => match s("kty")? {
            "RSA" => format!(
                r#"{{"e":{},"kty":"RSA","n":{}}}"#,
                Value::from(s("e")?),
                Value::from(s("n")?)
            ),
            _ => return Err(DpopError::UnsupportedKey),
        },
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    Ok(URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

/// Builds a verifying key from a public JWK, refusing anything that carries private parts.
fn key_from_jwk(alg: Algorithm, jwk: &Map<String, Value>) -> Result<VerifyingKey, DpopError> {
    if jwk.contains_key("d") {
        return Err(DpopError::UnsupportedKey);
    }
    let part = |k: &str| {
        jwk.get(k)
            .and_then(Value::as_str)
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
            .ok_or(DpopError::UnsupportedKey)
    };
    let kid: KeyId = "dpop".parse().map_err(|_| DpopError::Malformed)?;
    let bytes = match (alg, jwk.get("kty").and_then(Value::as_str)) {
        (Algorithm::ES256, Some("EC")) => {
            let (x, y) = (part("x")?, part("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err(DpopError::UnsupportedKey);
            }
            let mut point = vec![0x04];
            point.extend(x);
            point.extend(y);
            point
        }
        (Algorithm::EdDSA, Some("OKP")) => part("x")?,
        (Algorithm::RS256, Some("RSA")) => {
            return VerifyingKey::rsa(kid, &part("n")?, &part("e")?)
                .map_err(|_| DpopError::UnsupportedKey);
        }
        _ => return Err(DpopError::UnsupportedKey),
    };
    VerifyingKey::public(alg, kid, &bytes).map_err(|_| DpopError::UnsupportedKey)
}

/// A proof that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The proof's unique id; the caller rejects a repeat within the skew window.
    pub jti: String,
    /// Thumbprint of the proof key.
    pub jkt: String,
    pub iat: UnixTime,
}

/// Verifies a DPoP proof for a request `method` to a URL whose path is `path`, made with
/// the key whose thumbprint is `expected_jkt`.
///
/// `htu` is compared by path (scheme and host are ignored) because behind a proxy the
/// server cannot know the exact URL the client used.
pub fn verify_proof(
    proof: &str,
    method: &str,
    path: &str,
    expected_jkt: &str,
    now: UnixTime,
) -> Result<Proof, DpopError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(DpopError::Malformed);
    }
    let (h, p, sig) = super::split_compact(proof).map_err(|_| DpopError::Malformed)?;
    let header = super::decode_object(h).map_err(|_| DpopError::Malformed)?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") || header.contains_key("crit")
    {
        return Err(DpopError::Malformed);
    }
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("ES256") => Algorithm::ES256,
        Some("EdDSA") => Algorithm::EdDSA,
        Some("RS256") => Algorithm::RS256,
        _ => return Err(DpopError::UnsupportedKey),
    };
    let jwk = header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or(DpopError::Malformed)?;
    let key = key_from_jwk(alg, jwk)?;
    let signature = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| DpopError::Malformed)?;
    key.verify(&proof.as_bytes()[..h.len() + 1 + p.len()], &signature)
        .map_err(|_: JoseError| DpopError::BadSignature)?;
    let claims = super::decode_object(p).map_err(|_| DpopError::Malformed)?;

    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty() && j.len() <= 128)
        .ok_or(DpopError::Malformed)?;
    let htm = claims.get("htm").and_then(Value::as_str);
    let htu = claims.get("htu").and_then(Value::as_str).unwrap_or("");
    if htm != Some(method) || htu_path(htu) != Some(path) {
        return Err(DpopError::WrongTarget);
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(DpopError::Malformed)?;
    // `abs_diff`: a subtraction overflows for an `iat` near `i64::MIN` (found by fuzzing).
    if iat.abs_diff(now.seconds()) > MAX_CLOCK_SKEW.unsigned_abs() {
        return Err(DpopError::Stale);
    }
    let jkt = thumbprint(jwk)?;
    if !bool::from(jkt.as_bytes().ct_eq(expected_jkt.as_bytes())) {
        return Err(DpopError::WrongKey);
    }
    Ok(Proof {
        jti: jti.to_owned(),
        jkt,
        iat: UnixTime(iat),
    })
}

/// The path of an absolute `http(s)` URL, without query or fragment. The authority ends
/// at the first `/`, `?` or `#` (RFC 3986 §3.2) and must not be empty; the path must
/// follow it, so `https://host?/path` has no path (found by fuzzing: the first `/`
/// anywhere used to start the path).
fn htu_path(htu: &str) -> Option<&str> {
    let rest = htu
        .strip_prefix("https://")
        .or_else(|| htu.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    let path = rest[end..].split(['?', '#']).next().unwrap_or_default();
    path.starts_with('/').then_some(path)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::SigningKey;
    use super::*;

    const PATH: &str = "/api/fabric/subscribers/tokens/refresh";

    /// Makes a proof the way a browser SDK would.
    fn proof(key: &SigningKey, claims: Value, header_extra: Option<(&str, Value)>) -> String {
        let jwk = key.verifying_key().to_jwk().unwrap();
        let mut header = Map::new();
        header.insert("typ".into(), "dpop+jwt".into());
        header.insert("alg".into(), key.algorithm().as_str().into());
        let mut public = jwk.clone();
        for k in ["kid", "alg", "use"] {
            public.remove(k);
        }
        header.insert("jwk".into(), Value::Object(public));
        if let Some((k, v)) = header_extra {
            header.insert(k.into(), v);
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(Value::Object(header).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = key.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn device(alg: Algorithm) -> (SigningKey, String) {
        let key = SigningKey::generate(alg, "dev".parse().unwrap()).unwrap().0;
        let jwk = key.verifying_key().to_jwk().unwrap();
        let jkt = thumbprint(&jwk).unwrap();
        (key, jkt)
    }

    fn claims(now: i64) -> Value {
        json!({"jti": "p1", "htm": "POST", "htu": format!("https://api.example.com{PATH}"), "iat": now})
    }

    #[test]
    fn rfc9449_example_thumbprint() {
        // The proof key and `jkt` of RFC 9449's examples (§6.1).
        let jwk = json!({"kty": "EC", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
                         "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", "crv": "P-256"});
        assert_eq!(
            thumbprint(jwk.as_object().unwrap()).unwrap(),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }

    #[test]
    fn thumbprint_is_canonical() {
        // The thumbprint depends only on crv/kty/x/y, not on member order or extra members.
        let a = json!({"kty":"EC","crv":"P-256","x":"AAAA","y":"BBBB","kid":"1"});
        let b = json!({"y":"BBBB","x":"AAAA","crv":"P-256","kty":"EC","use":"sig"});
        let ta = thumbprint(a.as_object().unwrap()).unwrap();
        assert_eq!(ta, thumbprint(b.as_object().unwrap()).unwrap());
        assert_eq!(ta.len(), 43);
        assert!(thumbprint(json!({"kty":"RSA"}).as_object().unwrap()).is_err());
        assert!(thumbprint(json!({"kty":"oct","k":"AA"}).as_object().unwrap()).is_err());
    }

    #[test]
    fn valid_proofs_for_every_algorithm() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
            let (key, jkt) = device(alg);
            let p = proof(&key, claims(1000), None);
            let ok = verify_proof(&p, "POST", PATH, &jkt, UnixTime(1000)).unwrap();
            assert_eq!(ok.jti, "p1");
            assert_eq!(ok.jkt, jkt);
            // Query strings on htu are ignored, as RFC 9449 says.
            let mut c = claims(1030);
            c["htu"] = json!(format!("http://10.0.0.1:8000{PATH}?x=1"));
            assert!(
                verify_proof(&proof(&key, c, None), "POST", PATH, &jkt, UnixTime(1000)).is_ok()
            );
        }
    }

    #[test]
    fn htu_path_starts_after_the_authority() {
        let (key, jkt) = device(Algorithm::EdDSA);
        let now = UnixTime(1000);
        for htu in [
            format!("https://evil.example?{PATH}"),
            format!("https://evil.example#{PATH}"),
            format!("https://evil.example?x=1{PATH}"),
            format!("https://{PATH}"),
            "https://api.example.com".to_owned(),
        ] {
            let mut c = claims(1000);
            c["htu"] = json!(htu);
            assert_eq!(
                verify_proof(&proof(&key, c, None), "POST", PATH, &jkt, now).unwrap_err(),
                DpopError::WrongTarget,
                "{htu}"
            );
        }
        assert_eq!(htu_path("https://h/a?b#c"), Some("/a"));
        assert_eq!(htu_path("http://h:80/a#/b"), Some("/a"));
        assert_eq!(htu_path("https://h?/a"), None);
        assert_eq!(htu_path("https:///a"), None);
    }

    #[test]
    fn extreme_iat_is_stale_not_an_overflow() {
        let (key, jkt) = device(Algorithm::EdDSA);
        for (iat, now) in [(i64::MIN, 1000), (i64::MAX, -1000), (i64::MIN, i64::MAX)] {
            let c =
                json!({"jti": "p1", "htm": "POST", "htu": format!("https://a{PATH}"), "iat": iat});
            assert_eq!(
                verify_proof(&proof(&key, c, None), "POST", PATH, &jkt, UnixTime(now)).unwrap_err(),
                DpopError::Stale
            );
        }
    }

    #[test]
    fn every_wrong_proof_is_refused() {
        let (key, jkt) = device(Algorithm::ES256);
        let (other, other_jkt) = device(Algorithm::ES256);
        let now = UnixTime(1000);
        let check = |p: &str| verify_proof(p, "POST", PATH, &jkt, now);

        assert_eq!(
            check(&proof(&other, claims(1000), None)).unwrap_err(),
            DpopError::WrongKey
        );
        assert!(
            verify_proof(
                &proof(&other, claims(1000), None),
                "POST",
                PATH,
                &other_jkt,
                now
            )
            .is_ok()
        );
        let mut c = claims(1000);
        c["htm"] = json!("GET");
        assert_eq!(
            check(&proof(&key, c, None)).unwrap_err(),
            DpopError::WrongTarget
        );
        let mut c = claims(1000);
        c["htu"] = json!("https://api.example.com/api/other");
        assert_eq!(
            check(&proof(&key, c, None)).unwrap_err(),
            DpopError::WrongTarget
        );
        assert_eq!(
            check(&proof(&key, claims(1000 - 61), None)).unwrap_err(),
            DpopError::Stale
        );
        assert_eq!(
            check(&proof(&key, claims(1000 + 61), None)).unwrap_err(),
            DpopError::Stale
        );
        let mut c = claims(1000);
        c.as_object_mut().unwrap().remove("jti");
        assert_eq!(
            check(&proof(&key, c, None)).unwrap_err(),
            DpopError::Malformed
        );
        assert_eq!(
            check(&proof(&key, claims(1000), Some(("typ", json!("JWT"))))).unwrap_err(),
            DpopError::Malformed
        );
        assert_eq!(
            check(&proof(&key, claims(1000), Some(("alg", json!("HS256"))))).unwrap_err(),
            DpopError::UnsupportedKey
        );
        // A signature made by another key than the one in the header.
        let good = proof(&key, claims(1000), None);
        let forged_sig = proof(&other, claims(1000), None);
        let forged = format!(
            "{}.{}",
            good.rsplit_once('.').unwrap().0,
            forged_sig.rsplit_once('.').unwrap().1
        );
        assert_eq!(check(&forged).unwrap_err(), DpopError::BadSignature);
        // A private key in the header is refused outright.
        let mut with_d = key.verifying_key().to_jwk().unwrap();
        with_d.insert("d".into(), "AAAA".into());
        assert_eq!(
            key_from_jwk(Algorithm::ES256, &with_d).unwrap_err(),
            DpopError::UnsupportedKey
        );
        assert_eq!(
            check("x".repeat(5000).as_str()).unwrap_err(),
            DpopError::Malformed
        );
    }
}
