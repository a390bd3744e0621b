//! Crypto micro-benchmarks for the token core: sign and verify per algorithm (claims the
//! size of a Centrifugo subscription token), and the subscriber token JWE (encrypt and
//! decrypt). Run with `cargo bench -p tollgate-token --bench crypto`; results and what
//! bounds them are in BENCHMARKS.md.

#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use tollgate_token::KeyId;
use tollgate_token::jose::jwe::{self, EncryptionKey};
use tollgate_token::jose::{self, Algorithm, HeaderExtras, SigningKey};

fn claims() -> Value {
    json!({
        "iss": "tollgate", "aud": "123e4567-e89b-12d3-a456-426614174000",
        "sub": "123e4567-e89b-12d3-a456-426614174000",
        "channel": "company:123e4567-e89b-12d3-a456-426614174000",
        "iat": 1_893_456_000, "exp": 1_893_459_600, "jti": "0c951315-be0e-4516-b99e-05e60b0cc307",
    })
}

fn sign_verify(c: &mut Criterion) {
    let claims = claims();
    for alg in [
        Algorithm::HS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
        Algorithm::RS256,
    ] {
        let kid: KeyId = format!("bench-{}", alg.as_str()).parse().unwrap();
        let key = if alg.is_symmetric() {
            SigningKey::from_secret(alg, kid, &[7u8; 32]).unwrap()
        } else {
            SigningKey::generate(alg, kid).unwrap().0
        };
        let verifier = key.verifying_key();
        let token = jose::sign(&key, HeaderExtras::default(), &claims).unwrap();
        c.bench_function(&format!("sign/{}", alg.as_str()), |b| {
            b.iter(|| jose::sign(&key, HeaderExtras::default(), &claims).unwrap());
        });
        c.bench_function(&format!("verify/{}", alg.as_str()), |b| {
            b.iter(|| jose::verify_pinned(&token, 8192, &verifier).unwrap());
        });
    }
}

fn sat(c: &mut Criterion) {
    let (key, _) = EncryptionKey::generate("bench-jwe".parse().unwrap()).unwrap();
    let mut payload = Map::new();
    for (k, v) in [
        ("sub", json!("123e4567-e89b-12d3-a456-426614174000")),
        ("project", json!("9c3d0e7a-0f2e-4d4f-8c1e-6f7a8b9c0d1e")),
        ("scope", json!("sat:refresh")),
        ("iat", json!(1_893_456_000)),
        ("exp", json!(1_893_463_200)),
        ("jti", json!("0c951315-be0e-4516-b99e-05e60b0cc307")),
    ] {
        payload.insert(k.into(), v);
    }
    let token = jwe::encrypt(&key, "SAT", None, &payload).unwrap();
    c.bench_function("sat/encrypt (A256GCM)", |b| {
        b.iter(|| jwe::encrypt(&key, "SAT", None, &payload).unwrap());
    });
    c.bench_function("sat/decrypt (A256GCM)", |b| {
        b.iter(|| jwe::decrypt(&token, 8192, |_| Some(&key)).unwrap());
    });
}

criterion_group!(benches, sign_verify, sat);
criterion_main!(benches);
