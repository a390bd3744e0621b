//! Attack-vector tests from the security checklist (JWT-01…13, ECD-01/03, ENC-01…03).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::*;

fn kid(s: &str) -> KeyId {
    s.parse().unwrap()
}

fn key(alg: Algorithm, id: &str) -> SigningKey {
    SigningKey::generate(alg, kid(id)).unwrap().0
}

const MAX: usize = 16 * 1024;

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// Builds `header.payload.sig` from raw JSON text, signing with `signer`.
fn forge(header: &str, payload: &str, signer: &SigningKey) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = signer.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&sig))
}

#[test]
fn round_trips_every_algorithm() {
    for alg in [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::ES256,
        Algorithm::EdDSA,
        Algorithm::RS256,
    ] {
        let k = key(alg, "k1");
        let vk = k.verifying_key();
        let token = sign(
            &k,
            HeaderExtras {
                typ: Some("JWT"),
                ch: Some("ws://127.0.0.1:1"),
            },
            &json!({"sub": "u"}),
        )
        .unwrap();
        let v = verify(&token, MAX, |id| (id == vk.kid()).then_some(&vk)).unwrap();
        assert_eq!(v.claims["sub"], "u", "{alg}");
        assert_eq!(v.header["alg"], alg.as_str());
        assert_eq!(v.header["kid"], "k1");
        assert_eq!(v.header["ch"], "ws://127.0.0.1:1");
        assert_eq!(v.typ(), Some("JWT"));
        assert_eq!(vk.public_key_bytes().is_none(), alg.is_symmetric());
    }
}

#[test]
fn jwt01_alg_none_in_every_spelling_is_rejected() {
    let k = key(Algorithm::HS256, "k1");
    let vk = k.verifying_key();
    for alg in ["none", "None", "NONE", "nOnE", "noNE", "hs256"] {
        let header = format!(r#"{{"alg":"{alg}","kid":"k1"}}"#);
        let unsigned = format!("{}.{}.", b64(header.as_bytes()), b64(br#"{"sub":"u"}"#));
        assert!(verify(&unsigned, MAX, |_| Some(&vk)).is_err(), "{alg}");
        // Even with a valid MAC the header must name the key's algorithm exactly.
        let signed = forge(&header, r#"{"sub":"u"}"#, &k);
        assert_eq!(
            verify(&signed, MAX, |_| Some(&vk)).unwrap_err(),
            JoseError::AlgorithmMismatch,
            "{alg}"
        );
    }
}

#[test]
fn jwt02_public_key_as_hmac_secret_is_rejected() {
    let es = key(Algorithm::ES256, "k1");
    let vk = es.verifying_key();
    let public = vk.public_key_bytes().unwrap().to_vec();
    // An attacker MACs with the published public key bytes and claims HS256.
    let mac = SigningKey::from_secret(Algorithm::HS256, kid("k1"), &public).unwrap();
    let forged = forge(r#"{"alg":"HS256","kid":"k1"}"#, r#"{"sub":"admin"}"#, &mac);
    assert_eq!(
        verify(&forged, MAX, |_| Some(&vk)).unwrap_err(),
        JoseError::AlgorithmMismatch
    );
}

#[test]
fn jwt03_unknown_or_hostile_kid_is_rejected_without_lookup() {
    let k = key(Algorithm::HS256, "k1");
    let vk = k.verifying_key();
    for hostile in [
        "../../../../../../dev/null",
        "x' UNION SELECT 'k' -- ",
        "a\r\nb",
        "",
    ] {
        let header = json!({"alg": "HS256", "kid": hostile}).to_string();
        let t = forge(&header, "{}", &k);
        let mut looked_up = false;
        let r = verify(&t, MAX, |_| {
            looked_up = true;
            Some(&vk)
        });
        assert_eq!(r.unwrap_err(), JoseError::UnknownKey);
        assert!(
            !looked_up,
            "hostile kid reached the key lookup: {hostile:?}"
        );
    }
    let big = format!(r#"{{"alg":"HS256","kid":"{}"}}"#, "a".repeat(100_000));
    assert_eq!(
        verify(&forge(&big, "{}", &k), 1 << 20, |_| Some(&vk)).unwrap_err(),
        JoseError::TooLarge
    );
    let missing = forge(r#"{"alg":"HS256"}"#, "{}", &k);
    assert_eq!(
        verify(&missing, MAX, |_| Some(&vk)).unwrap_err(),
        JoseError::UnknownKey
    );
    let other = forge(r#"{"alg":"HS256","kid":"k2"}"#, "{}", &k);
    assert_eq!(
        verify(&other, MAX, |id| (id == vk.kid()).then_some(&vk)).unwrap_err(),
        JoseError::UnknownKey
    );
}

#[test]
fn jwt04_and_jwt13_key_carrying_and_critical_headers_are_rejected() {
    let k = key(Algorithm::HS256, "k1");
    let vk = k.verifying_key();
    for extra in [
        r#""jku":"http://127.0.0.1:9/jwks.json""#,
        r#""x5u":"http://127.0.0.1:6379/""#,
        r#""jwk":{"kty":"EC"}"#,
        r#""x5c":["AA"]"#,
        r#""x5t":"AA""#,
        r#""crit":["x-unknown"],"x-unknown":1"#,
        r#""zip":"DEF""#,
        r#""enc":"A256GCM""#,
    ] {
        let header = format!(r#"{{"alg":"HS256","kid":"k1",{extra}}}"#);
        let t = forge(&header, "{}", &k);
        assert_eq!(
            verify(&t, MAX, |_| Some(&vk)).unwrap_err(),
            JoseError::ForbiddenHeader,
            "{extra}"
        );
    }
}

#[test]
fn jwt05_short_hmac_secrets_are_refused() {
    assert!(SigningKey::from_secret(Algorithm::HS256, kid("k"), b"").is_err());
    assert!(SigningKey::from_secret(Algorithm::HS256, kid("k"), &[7; 31]).is_err());
    assert!(SigningKey::from_secret(Algorithm::HS256, kid("k"), &[7; 32]).is_ok());
    assert!(SigningKey::from_secret(Algorithm::HS512, kid("k"), &[7; 63]).is_err());
    assert!(VerifyingKey::hmac(Algorithm::HS384, kid("k"), &[7; 47]).is_err());
    assert!(VerifyingKey::hmac(Algorithm::ES256, kid("k"), &[7; 64]).is_err());
    let (_, a) = SigningKey::generate(Algorithm::HS256, kid("k")).unwrap();
    let (_, b) = SigningKey::generate(Algorithm::HS256, kid("k")).unwrap();
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);
}

#[test]
fn ecd01_ecd03_bad_ecdsa_signatures_are_rejected() {
    let k = key(Algorithm::ES256, "k1");
    let vk = k.verifying_key();
    let good = sign(&k, HeaderExtras::default(), &json!({"sub": "u"})).unwrap();
    let input = good.rsplit_once('.').unwrap().0;
    let zero = format!("{input}.{}", b64(&[0u8; 64]));
    assert_eq!(
        verify(&zero, MAX, |_| Some(&vk)).unwrap_err(),
        JoseError::BadSignature
    );
    let sig = URL_SAFE_NO_PAD
        .decode(good.rsplit_once('.').unwrap().1)
        .unwrap();
    let mut long = sig.clone();
    long.push(0);
    let t = format!("{input}.{}", b64(&long));
    assert!(verify(&t, MAX, |_| Some(&vk)).is_err());
}

#[test]
fn any_single_character_change_breaks_the_token() {
    let k = key(Algorithm::EdDSA, "k1");
    let vk = k.verifying_key();
    let good = sign(&k, HeaderExtras::default(), &json!({"sub":"u","exp":1})).unwrap();
    assert!(verify(&good, MAX, |_| Some(&vk)).is_ok());
    let bytes = good.as_bytes();
    for i in 0..bytes.len() {
        let mut mutated = bytes.to_vec();
        mutated[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let mutated = String::from_utf8(mutated).unwrap();
        if mutated == good {
            continue;
        }
        assert!(
            verify(&mutated, MAX, |_| Some(&vk)).is_err(),
            "mutation at {i} accepted"
        );
    }
}

#[test]
fn enc01_enc03_size_and_encoding_are_strict() {
    let k = key(Algorithm::HS256, "k1");
    let vk = k.verifying_key();
    let good = sign(&k, HeaderExtras::default(), &json!({"sub": "u"})).unwrap();
    assert!(verify(&good, MAX, |_| Some(&vk)).is_ok());
    assert_eq!(
        verify(&good, good.len() - 1, |_| Some(&vk)).unwrap_err(),
        JoseError::TooLarge
    );
    for bad in [
        format!("{good}="),
        format!(" {good}"),
        format!("{good}\n"),
        format!("{good}.x"),
        good.replacen('.', "+.", 1),
        good.rsplit_once('.').unwrap().0.to_owned() + ".",
        "{\"protected\":\"x\"}".to_owned(),
        String::new(),
    ] {
        assert!(verify(&bad, MAX, |_| Some(&vk)).is_err(), "{bad:?}");
    }
}

#[test]
fn enc02_duplicate_members_are_rejected() {
    let k = key(Algorithm::HS256, "k1");
    let vk = k.verifying_key();
    let dup_claim = forge(
        r#"{"alg":"HS256","kid":"k1"}"#,
        r#"{"caps":[{"channels":["a"],"allow":["sub"]}],"caps":[]}"#,
        &k,
    );
    assert_eq!(
        verify(&dup_claim, MAX, |_| Some(&vk)).unwrap_err(),
        JoseError::Malformed
    );
    let dup_alg = forge(r#"{"alg":"HS256","alg":"HS256","kid":"k1"}"#, "{}", &k);
    assert_eq!(
        verify(&dup_alg, MAX, |_| Some(&vk)).unwrap_err(),
        JoseError::Malformed
    );
    let not_object = forge(r#"{"alg":"HS256","kid":"k1"}"#, "[1]", &k);
    assert_eq!(
        verify(&not_object, MAX, |_| Some(&vk)).unwrap_err(),
        JoseError::Malformed
    );
}

#[test]
fn debug_output_never_contains_key_material() {
    let (k, secret) = SigningKey::generate(Algorithm::HS256, kid("k1")).unwrap();
    let printed = format!("{k:?} {:?}", k.verifying_key());
    assert!(printed.contains("k1"));
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!printed.contains(&hex));
}

#[test]
fn jwks_keys_are_public_signature_keys_of_a_known_type() {
    for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
        let k = key(alg, "k1");
        let jwk = k.verifying_key().to_jwk().unwrap();
        let vk = VerifyingKey::from_jwk(kid("k1"), &jwk).unwrap();
        assert_eq!(vk.algorithm(), alg);
        let t = sign(&k, HeaderExtras::default(), &json!({"sub": "u"})).unwrap();
        assert!(verify_pinned(&t, MAX, &vk).is_ok(), "{alg}");

        let mut wrong_alg = jwk.clone();
        wrong_alg.insert("alg".into(), "HS256".into());
        assert!(VerifyingKey::from_jwk(kid("k1"), &wrong_alg).is_err());
        let mut private = jwk.clone();
        private.insert("d".into(), "AAAA".into());
        assert!(VerifyingKey::from_jwk(kid("k1"), &private).is_err());
    }
    let oct = json!({"kty": "oct", "k": "c2VjcmV0"});
    assert!(VerifyingKey::from_jwk(kid("k1"), oct.as_object().unwrap()).is_err());
}
