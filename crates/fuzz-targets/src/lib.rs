//! The bodies of Tollgate's fuzz targets, one function per parser of untrusted input.
//!
//! Each function takes the fuzzer's bytes, runs the real parser(s) on them and asserts the
//! invariants that must hold whatever the input: no panic (overflow checks are on in both
//! the fuzz build and the tests), parse → serialize → parse round trips where they exist,
//! and that verification with a fixed key never accepts what that key did not sign.
//!
//! `fuzz/fuzz_targets/<name>.rs` are thin libFuzzer wrappers around these (nightly,
//! `cargo fuzz`); `tests/replay.rs` feeds every file of the committed corpora
//! (`fuzz/corpus/<name>/`) and kept regressions (`fuzz/regressions/<name>/`) through the
//! same functions on stable Rust, so CI replays them with the rest of the test suite.
//! See `docs/fuzzing.md`.

#![allow(clippy::missing_panics_doc)] // asserting is what a fuzz target is for

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value, json};
use tollgate_gateway::fuzzing as gw;
use tollgate_token::centrifugo::{self, UserJwtPolicy};
use tollgate_token::jose::dpop;
use tollgate_token::jose::jwe::{self, EncryptionKey};
use tollgate_token::jose::{self, Algorithm, SigningKey, VerifyingKey};
use tollgate_token::{GroupId, GroupKind, KeyId, ProjectId, Scopes, UnixTime, UserId, json};

/// A target body: takes the fuzzer's bytes, panics when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target, by name: the names of `fuzz/fuzz_targets/*.rs` and `fuzz/corpus/*/`.
pub const TARGETS: [(&str, Target); 7] = [
    ("compact_jws", compact_jws),
    ("jwe", jwe),
    ("dpop_proof", dpop_proof),
    ("strict_json", strict_json),
    ("channel_grammar", channel_grammar),
    ("centrifugo_frame", centrifugo_frame),
    ("signalwire_frame", signalwire_frame),
];

/// The fixed "now" of every time check.
pub const NOW: i64 = 1_700_000_000;
/// Size limit passed to the JOSE verifiers.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// The HMAC secret of the `hs` key (seeds are signed with it).
pub const HS_SECRET: &[u8; 32] = b"tollgate-fuzz-hs256-secret-key!!";
/// The Ed25519 seed of the `ed` key (seeds and DPoP proofs are signed with it).
pub const ED_SEED: [u8; 32] = [7; 32];
/// The Ed25519 seed of a key nothing is ever signed with.
pub const NEVER_SEED: [u8; 32] = [9; 32];
/// The JWE key (seeds are encrypted with it) and a second key with the same `kid`.
pub const JWE_KEY: [u8; 32] = [0x11; 32];
pub const JWE_OTHER_KEY: [u8; 32] = [0x22; 32];
/// The request a DPoP proof is checked against.
pub const DPOP_METHOD: &str = "POST";
pub const DPOP_PATH: &str = "/api/fabric/subscribers/tokens/refresh";
/// The issuer and audience user JWTs are validated against.
pub const ISSUER: &str = "https://app.example.com";
pub const AUDIENCE: &str = "tollgate";

fn kid(s: &str) -> KeyId {
    s.parse().expect("valid key id")
}

/// An Ed25519 PKCS#8 (v1) document for a 32-byte seed.
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der
}

/// The `hs` HMAC key (HS256).
#[must_use]
pub fn hs_key() -> SigningKey {
    SigningKey::from_secret(Algorithm::HS256, kid("hs"), HS_SECRET).expect("HS256 key")
}

/// The `ed` Ed25519 key.
#[must_use]
pub fn ed_key() -> SigningKey {
    SigningKey::from_secret(Algorithm::EdDSA, kid("ed"), &ed25519_pkcs8(&ED_SEED))
        .expect("Ed25519 key")
}

fn never_key() -> VerifyingKey {
    SigningKey::from_secret(Algorithm::EdDSA, kid("ed"), &ed25519_pkcs8(&NEVER_SEED))
        .expect("Ed25519 key")
        .verifying_key()
}

/// The JWE key, `kid` `e1`.
#[must_use]
pub fn jwe_key() -> EncryptionKey {
    EncryptionKey::from_bytes(kid("e1"), &JWE_KEY).expect("JWE key")
}

/// The public JWK of the `ed` key as a DPoP proof carries it.
#[must_use]
pub fn dpop_jwk() -> Map<String, Value> {
    let mut jwk = ed_key().verifying_key().to_jwk().expect("public JWK");
    for k in ["kid", "alg", "use"] {
        jwk.remove(k);
    }
    jwk
}

/// A DPoP proof over `claims` (any bytes) signed with the `ed` key.
#[must_use]
pub fn dpop_sign(claims: &[u8]) -> String {
    let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": dpop_jwk()});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let sig = ed_key().sign(input.as_bytes()).expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// JSON values equal up to one unit in the last place of floating-point numbers:
/// `serde_json` (without `float_roundtrip`) may read a printed `f64` back one ulp off.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || ((x - y).abs() <= (x.abs() * 4.0 * f64::EPSILON)),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn map_eq(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    json_eq(&Value::Object(a.clone()), &Value::Object(b.clone()))
}

// ---------------------------------------------------------------------------------------
// compact JWS

/// Compact JWS: `peek_header`, `peek_claims`, `verify` with an HS256 and an Ed25519 key,
/// `verify_pinned` with a key nothing is signed with, and user-JWT claim validation.
pub fn compact_jws(data: &[u8]) {
    let token = text(data);
    let token = token.as_ref();
    let hs = hs_key().verifying_key();
    let ed = ed_key().verifying_key();
    let header = jose::peek_header(token, MAX_TOKEN_LEN);
    let claims = jose::peek_claims(token, MAX_TOKEN_LEN);
    if let Ok(claims) = &claims {
        check_user_claims(claims);
    }
    let verified = jose::verify(token, MAX_TOKEN_LEN, |k| match k.as_str() {
        "hs" => Some(&hs),
        "ed" => Some(&ed),
        _ => None,
    });
    if let Ok(v) = verified {
        // Only a token one of the two keys really signed is accepted: check the signature
        // again, independently of the verifier.
        assert!(token.len() <= MAX_TOKEN_LEN);
        let mut parts = token.split('.');
        let (h, p, s) = (
            parts.next().expect("h"),
            parts.next().expect("p"),
            parts.next().expect("s"),
        );
        assert!(parts.next().is_none());
        let input = &token[..h.len() + 1 + p.len()];
        let sig = URL_SAFE_NO_PAD.decode(s).expect("canonical signature");
        assert_eq!(URL_SAFE_NO_PAD.encode(&sig), s, "non-canonical signature");
        match v.kid.as_str() {
            "hs" => {
                let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, HS_SECRET);
                assert!(aws_lc_rs::hmac::verify(&key, input.as_bytes(), &sig).is_ok());
                assert_eq!(v.header.get("alg"), Some(&json!("HS256")));
            }
            "ed" => {
                let public = ed.public_key_bytes().expect("public key");
                let key = aws_lc_rs::signature::UnparsedPublicKey::new(
                    &aws_lc_rs::signature::ED25519,
                    public,
                );
                assert!(key.verify(input.as_bytes(), &sig).is_ok());
                assert_eq!(v.header.get("alg"), Some(&json!("EdDSA")));
            }
            other => panic!("accepted with unknown key {other}"),
        }
        // What was verified is what the peeks read.
        assert!(map_eq(&v.header, header.as_ref().expect("header")));
        assert!(map_eq(&v.claims, claims.as_ref().expect("claims")));
        for forbidden in ["jku", "x5u", "jwk", "x5c", "crit", "zip", "enc"] {
            assert!(!v.header.contains_key(forbidden));
        }
    }
    assert!(
        jose::verify_pinned(token, MAX_TOKEN_LEN, &never_key()).is_err(),
        "a key that signed nothing accepted a token"
    );
}

fn check_user_claims(claims: &Map<String, Value>) {
    let policy = UserJwtPolicy {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
    };
    if let Ok(sub) = centrifugo::validate_user_claims(claims, &policy, UnixTime(NOW)) {
        assert_eq!(
            claims.get("sub").and_then(Value::as_str),
            Some(sub.as_str())
        );
        let exp = claims.get("exp").and_then(Value::as_i64).expect("exp");
        assert!(exp > NOW);
        assert!(exp <= NOW + centrifugo::MAX_USER_JWT_LIFETIME + centrifugo::CLOCK_SKEW);
        assert_eq!(claims.get("iss"), Some(&json!(ISSUER)));
    }
}

// ---------------------------------------------------------------------------------------
// JWE

/// Compact JWE (`dir`, `A256GCM`): `peek_kid` and `decrypt` with a fixed key; another key
/// with the same `kid` never decrypts anything; what decrypts re-encrypts and decrypts
/// back to the same payload.
pub fn jwe(data: &[u8]) {
    let token = text(data);
    let token = token.as_ref();
    let key = jwe_key();
    let other = EncryptionKey::from_bytes(kid("e1"), &JWE_OTHER_KEY).expect("JWE key");
    let peeked = jwe::peek_kid(token, MAX_TOKEN_LEN);
    let decrypted = jwe::decrypt(token, MAX_TOKEN_LEN, |k| {
        (k.as_str() == "e1").then_some(&key)
    });
    if let Ok(d) = decrypted {
        assert_eq!(peeked.expect("kid").as_str(), "e1");
        assert_eq!(d.kid.as_str(), "e1");
        assert_eq!(d.header.get("alg"), Some(&json!("dir")));
        assert_eq!(d.header.get("enc"), Some(&json!("A256GCM")));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 5);
        assert!(parts[1].is_empty());
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).expect("iv").len(), 12);
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[4]).expect("tag").len(), 16);
        let typ = d.typ().unwrap_or("JWT").to_owned();
        let again = jwe::encrypt(&key, &typ, None, &d.payload).expect("encrypt");
        let back = jwe::decrypt(&again, usize::MAX, |_| Some(&key)).expect("round trip");
        assert!(map_eq(&back.payload, &d.payload));
    }
    assert!(
        jwe::decrypt(token, MAX_TOKEN_LEN, |_| Some(&other)).is_err(),
        "a key that encrypted nothing decrypted a token"
    );
}

// ---------------------------------------------------------------------------------------
// DPoP

/// DPoP proofs. The first byte picks the mode: even, the rest is a proof as it arrives;
/// odd, the rest is a claims set, signed into a proof with the `ed` key, so the checks
/// after the signature (`htm`, `htu`, `iat`, `jti`) are fuzzed too — and then the verdict
/// must be exactly the one the claims call for.
pub fn dpop_proof(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let jkt = dpop::thumbprint(&dpop_jwk()).expect("thumbprint");
    if mode % 2 == 0 {
        let proof = text(rest);
        if let Ok(p) = dpop::verify_proof(&proof, DPOP_METHOD, DPOP_PATH, &jkt, UnixTime(NOW)) {
            assert_eq!(p.jkt, jkt);
            let claims = jose::peek_claims(&proof, usize::MAX).expect("claims");
            assert!(dpop_claims_acceptable(&claims), "accepted {claims:?}");
        }
        return;
    }
    let proof = dpop_sign(rest);
    let verdict = dpop::verify_proof(&proof, DPOP_METHOD, DPOP_PATH, &jkt, UnixTime(NOW));
    let expected = proof.len() <= dpop::MAX_PROOF_LEN
        && matches!(json::parse_strict(rest), Ok(Value::Object(c)) if dpop_claims_acceptable(&c));
    assert_eq!(
        verdict.is_ok(),
        expected,
        "verdict {verdict:?} for claims {}",
        String::from_utf8_lossy(rest)
    );
    if let Ok(p) = verdict {
        assert!((p.iat.seconds() - NOW).abs() <= dpop::MAX_CLOCK_SKEW);
    }
}

/// What a proof's claims must say to be accepted for `POST` to [`DPOP_PATH`] at [`NOW`].
fn dpop_claims_acceptable(claims: &Map<String, Value>) -> bool {
    let jti_ok = claims
        .get("jti")
        .and_then(Value::as_str)
        .is_some_and(|j| !j.is_empty() && j.len() <= 128);
    let htm_ok = claims.get("htm").and_then(Value::as_str) == Some(DPOP_METHOD);
    let htu_ok = claims
        .get("htu")
        .and_then(Value::as_str)
        .is_some_and(htu_acceptable);
    let iat_ok = claims
        .get("iat")
        .and_then(Value::as_i64)
        .is_some_and(|iat| (i128::from(iat) - i128::from(NOW)).abs() <= 60);
    jti_ok && htm_ok && htu_ok && iat_ok
}

/// An `http(s)` URL whose authority is not empty and whose path is exactly [`DPOP_PATH`]
/// (any query or fragment after it). Written independently of the verifier's parser.
fn htu_acceptable(htu: &str) -> bool {
    let Some(rest) = htu
        .strip_prefix("https://")
        .or_else(|| htu.strip_prefix("http://"))
    else {
        return false;
    };
    let authority_len = rest.bytes().take_while(|b| !b"/?#".contains(b)).count();
    let (authority, rest) = rest.split_at(authority_len);
    if authority.is_empty() {
        return false;
    }
    let Some(after) = rest.strip_prefix(DPOP_PATH) else {
        return false;
    };
    after.is_empty() || after.starts_with('?') || after.starts_with('#')
}

// ---------------------------------------------------------------------------------------
// strict JSON

/// Counts the object members of a document as written, duplicates included, and those
/// with names `serde_json` reserves (`$serde_json::private::…`, which `serde_json::Value`
/// may read as something else than an object, and the strict reader refuses).
struct MemberCount(usize, usize);

impl<'de> Deserialize<'de> for MemberCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CountVisitor)
    }
}

struct CountVisitor;

impl<'de> Visitor<'de> for CountVisitor {
    type Value = MemberCount;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<MemberCount, E> {
        Ok(MemberCount(0, 0))
    }
    fn visit_i64<E>(self, _: i64) -> Result<MemberCount, E> {
        Ok(MemberCount(0, 0))
    }
    fn visit_u64<E>(self, _: u64) -> Result<MemberCount, E> {
        Ok(MemberCount(0, 0))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<MemberCount, E> {
        serde_json::Number::from_f64(v)
            .map(|_| MemberCount(0, 0))
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, _: &str) -> Result<MemberCount, E> {
        Ok(MemberCount(0, 0))
    }
    fn visit_unit<E>(self) -> Result<MemberCount, E> {
        Ok(MemberCount(0, 0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MemberCount, A::Error> {
        let (mut n, mut r) = (0, 0);
        while let Some(MemberCount(m, q)) = seq.next_element()? {
            n += m;
            r += q;
        }
        Ok(MemberCount(n, r))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MemberCount, A::Error> {
        let (mut n, mut r) = (0, 0);
        while let Some(key) = map.next_key::<String>()? {
            let MemberCount(m, q) = map.next_value()?;
            n += 1 + m;
            r += q + usize::from(key.starts_with("$serde_json::private::"));
        }
        Ok(MemberCount(n, r))
    }
}

fn members(v: &Value) -> usize {
    match v {
        Value::Array(items) => items.iter().map(members).sum(),
        Value::Object(m) => m.values().map(|v| 1 + members(v)).sum(),
        _ => 0,
    }
}

/// The duplicate-rejecting JSON reader: it agrees with `serde_json` on every document
/// without duplicate members, refuses exactly the documents with some, and what it
/// reads prints and reads back the same.
pub fn strict_json(data: &[u8]) {
    let strict = json::parse_strict(data);
    let loose = serde_json::from_slice::<Value>(data);
    let counted = serde_json::from_slice::<MemberCount>(data);
    match (&strict, &loose) {
        (Ok(s), Ok(l)) => {
            assert_eq!(s, l);
            let counted = counted.expect("counted");
            assert_eq!(counted.0, members(l));
            assert_eq!(counted.1, 0, "accepted a reserved member");
            let printed = s.to_string();
            let back = json::parse_strict(printed.as_bytes()).expect("printed JSON reads back");
            assert!(json_eq(s, &back), "{s} read back as {back}");
        }
        (Err(_), Ok(l)) => {
            let MemberCount(written, reserved) = counted.expect("counted");
            assert!(
                written > members(l) || reserved > 0,
                "refused a document without duplicate or reserved members"
            );
        }
        (Ok(s), Err(e)) => panic!("strict reader accepted {s} that serde_json refuses: {e}"),
        (Err(_), Err(_)) => {}
    }
}

// ---------------------------------------------------------------------------------------
// channel grammar and identifiers

/// The channel grammar (`[$]namespace:id`), namespace rules, user-limited channels and
/// the identifier types. Input: the channel, then optionally `\n` and a user id.
pub fn channel_grammar(data: &[u8]) {
    let input = text(data);
    let (name, user) = input.split_once('\n').unwrap_or((&input, ""));
    if let Ok(c) = centrifugo::parse_channel(name) {
        assert_eq!(c.name, name);
        assert!(!name.is_empty() && name.len() <= centrifugo::MAX_CHANNEL_LEN);
        assert_eq!(c.private, name.starts_with('$'));
        let rebuilt = format!(
            "{}{}:{}",
            if c.private { "$" } else { "" },
            c.namespace,
            c.id
        );
        assert_eq!(rebuilt, name);
        assert!(centrifugo::valid_name(&c.namespace));
        assert!(!c.id.is_empty() && !c.id.contains(':'));
        let namespaces = centrifugo::default_namespaces();
        if let Ok((access, ns)) = centrifugo::decide(&namespaces, &c, user) {
            assert_eq!(ns.name, c.namespace);
            if access == centrifugo::Access::Granted && c.namespace == "user" {
                assert_eq!(c.id, user, "a user channel granted to another user");
            }
        }
    }
    if let Some(allowed) = centrifugo::user_limited_allows(name, user)
        && allowed
    {
        assert!(!user.is_empty());
        let (_, users) = name.rsplit_once('#').expect("#");
        assert!(users.split(',').any(|u| u == user));
    }
    let roundtrip = |s: &str, shown: Option<String>| {
        if let Some(shown) = shown {
            assert_eq!(shown, s, "an identifier does not print as it was read");
        }
    };
    for s in [name, user] {
        roundtrip(s, s.parse::<UserId>().ok().map(|v| v.to_string()));
        roundtrip(s, s.parse::<GroupId>().ok().map(|v| v.to_string()));
        roundtrip(s, s.parse::<GroupKind>().ok().map(|v| v.to_string()));
        roundtrip(s, s.parse::<KeyId>().ok().map(|v| v.to_string()));
        roundtrip(s, s.parse::<ProjectId>().ok().map(|v| v.to_string()));
        if let Ok(rule) = s.parse::<centrifugo::Rule>() {
            assert_eq!(rule.to_stored().parse::<centrifugo::Rule>(), Ok(rule));
        }
        let _ = centrifugo::Rule::parse_input(s);
        let _ = centrifugo::parse_duration(s);
        if let Ok(scopes) = Scopes::parse_list(s) {
            assert_eq!(Scopes::parse_list(&scopes.to_string()), Ok(scopes));
        }
    }
}

// ---------------------------------------------------------------------------------------
// gateway frames

/// A Centrifugo protocol v2 JSON frame (newline-separated commands), read as the session
/// reads it, with each command's id, method and parameters.
pub fn centrifugo_frame(data: &[u8]) {
    // The socket refuses a text frame that is not UTF-8 (close 1007) before this.
    let Ok(frame) = std::str::from_utf8(data) else {
        return;
    };
    let (commands, bad) = gw::centrifugo_frame(frame);
    let body = frame.strip_suffix('\n').unwrap_or(frame);
    let lines = body.split('\n').count();
    assert!(commands.len() <= lines);
    if !bad {
        assert_eq!(commands.len(), lines);
        assert!(!body.trim().is_empty());
    }
    for c in &commands {
        // Each command, printed alone, is read back as the same command.
        let printed = Value::Object(c.command.clone()).to_string();
        let (again, again_bad) = gw::centrifugo_frame(&printed);
        assert!(!again_bad && again.len() == 1, "{printed}");
        assert!(map_eq(&again[0].command, &c.command));
        assert_eq!(again[0].method, c.method);
        assert_eq!(again[0].id, c.id);
        assert_eq!(
            c.id,
            c.command.get("id").and_then(Value::as_u64).unwrap_or(0)
        );
        if let Some(m) = c.method {
            assert!(c.command.contains_key(m));
        }
        if let Some(params) = &c.params {
            let p = gw::centrifugo_params(params, 100);
            assert!(p.history_limit <= 100);
            if params
                .get("limit")
                .and_then(Value::as_i64)
                .is_some_and(|l| l < 0)
            {
                assert_eq!(p.history_limit, 100);
            }
            if let Some(ok) = p.channel_ok {
                let channel = params
                    .get("channel")
                    .and_then(Value::as_str)
                    .expect("channel");
                assert_eq!(
                    ok,
                    channel.len() <= 1024 && !channel.chars().any(char::is_control)
                );
            }
            assert_eq!(
                p.recover.is_some(),
                params.get("recover").and_then(Value::as_bool) == Some(true)
            );
        }
    }
}

/// A SignalWire JSON-RPC message, read as the session reads it, with the parameters of
/// the `chat.*` methods (channel lists, event selection, message cursors and paging over
/// a stream of offsets around both ends of `u64`).
pub fn signalwire_frame(data: &[u8]) {
    let Ok(frame) = std::str::from_utf8(data) else {
        return;
    };
    let Some(msg) = gw::signalwire_message(frame) else {
        assert!(!matches!(
            serde_json::from_str::<Value>(frame),
            Ok(Value::Object(_))
        ));
        return;
    };
    assert_eq!(
        msg.id,
        msg.message.get("id").cloned().unwrap_or(Value::Null)
    );
    let printed = Value::Object(msg.message.clone()).to_string();
    let again = gw::signalwire_message(&printed).expect("printed message reads back");
    assert_eq!(again.method, msg.method);
    let Some(params) = &msg.params else {
        return;
    };
    if let Some(names) = gw::signalwire_channels(params, 100) {
        assert!(names.len() <= 100);
        for (i, n) in names.iter().enumerate() {
            assert!(!n.is_empty() && n.len() <= 1024);
            assert!(!names[..i].contains(n), "channel {n} listed twice");
        }
    }
    let _ = gw::signalwire_events(params);
    const EPOCH: &str = "ep";
    let Ok((before, after)) = gw::signalwire_cursor(params, EPOCH) else {
        return;
    };
    let low: Vec<u64> = (0..120).collect();
    let high: Vec<u64> = (u64::MAX - 120..=u64::MAX).collect();
    for offsets in [&low[..], &high[..], &[][..]] {
        let (page, cursor) = gw::signalwire_page(offsets, EPOCH, before, after);
        assert!(page.len() <= gw::SIGNALWIRE_PAGE);
        assert!(page.windows(2).all(|w| w[0] < w[1]));
        for &i in &page {
            assert!(before.is_none_or(|b| offsets[i] < b));
            assert!(after.is_none_or(|a| offsets[i] > a));
        }
        // The cursor answered is one the next request may send back.
        let next = json!({ "cursor": cursor });
        let next = next.as_object().expect("object");
        let (b, a) = gw::signalwire_cursor(next, EPOCH).expect("answered cursor reads back");
        assert_eq!(b.is_some(), cursor.contains_key("before"));
        assert_eq!(a.is_some(), cursor.contains_key("after"));
    }
}

// ---------------------------------------------------------------------------------------
// seeds

/// Valid inputs for every target, made by the real signers (`tests/replay.rs` checks them
/// and `cargo test -p tollgate-fuzz-targets --test replay -- --ignored write_seeds` writes
/// them into `fuzz/corpus/<target>/seed-<name>`): (target, name, bytes).
#[must_use]
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let claims = json!({"sub": "user-1", "exp": NOW + 3600, "iat": NOW, "iss": ISSUER, "aud": AUDIENCE,
                        "channels": ["user:1"], "info": {"name": "A"}});
    let extras = jose::HeaderExtras::default();
    let hs = jose::sign(&hs_key(), extras, &claims).expect("sign");
    out.push(("compact_jws", "hs256", hs.into_bytes()));
    let typed = jose::HeaderExtras {
        typ: Some("JWT"),
        ch: Some("wss://rt.example.com"),
    };
    let ed = jose::sign(
        &ed_key(),
        typed,
        &json!({"sub": "u", "exp": NOW + 60, "iss": ISSUER, "aud": [AUDIENCE]}),
    )
    .expect("sign");
    out.push(("compact_jws", "eddsa", ed.into_bytes()));
    let forbidden = format!(
        "{}.{}.AAAA",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"hs","jku":"https://x"}"#),
        URL_SAFE_NO_PAD.encode(r#"{"sub":"u"}"#)
    );
    out.push(("compact_jws", "forbidden-header", forbidden.into_bytes()));

    let payload = json!({"sub": "s1", "perm": "r", "exp": NOW + 600, "ch": ["room"]});
    let sat = jwe::encrypt(
        &jwe_key(),
        "SAT",
        Some("wss://rt.example.com"),
        payload.as_object().expect("object"),
    )
    .expect("encrypt");
    out.push(("jwe", "sat", sat.into_bytes()));

    let good = json!({"jti": "p1", "htm": "POST", "htu": format!("https://api.example.com{DPOP_PATH}"), "iat": NOW})
        .to_string();
    let mut raw = vec![0];
    raw.extend(dpop_sign(good.as_bytes()).into_bytes());
    out.push(("dpop_proof", "proof", raw));
    let mut structured = vec![1];
    structured.extend(good.as_bytes());
    out.push(("dpop_proof", "claims", structured));
    let query = json!({"jti": "p2", "htm": "POST", "htu": format!("http://10.0.0.1:8000{DPOP_PATH}?x=1#f"), "iat": NOW - 60})
        .to_string();
    let mut structured = vec![1];
    structured.extend(query.as_bytes());
    out.push(("dpop_proof", "claims-query", structured));

    for (name, doc) in [
        (
            "object",
            r#"{"a":[1,2.5,{"b":null}],"c":"d\u00e9\n","e":-3,"f":true,"g":1e10}"#,
        ),
        ("duplicate", r#"{"a":{"b":1,"b":2}}"#),
        (
            "array",
            r#"[[],{},"",0,-0.0,18446744073709551615,-9223372036854775808]"#,
        ),
    ] {
        out.push(("strict_json", name, doc.as_bytes().to_vec()));
    }

    for (name, channel) in [
        (
            "user",
            "user:123e4567-e89b-12d3-a456-426614174000\n123e4567-e89b-12d3-a456-426614174000",
        ),
        (
            "private",
            "$company:123e4567-e89b-12d3-a456-426614174000\nu",
        ),
        ("limited", "chat:room#alice,bob\nbob"),
        ("rule", "member:company"),
        ("project", "123e4567-e89b-12d3-a456-426614174000"),
        ("scopes", "pubsub,chat"),
        ("duration", "1h30m"),
    ] {
        out.push(("channel_grammar", name, channel.as_bytes().to_vec()));
    }

    for (name, frame) in [
        (
            "connect",
            r#"{"id":1,"connect":{"token":"x.y.z","name":"js","data":{"a":1}}}"#,
        ),
        (
            "subscribe",
            "{\"id\":2,\"subscribe\":{\"channel\":\"chat:index\",\"recover\":true,\"offset\":5,\"epoch\":\"ab\",\"flag\":2,\"positioned\":true,\"join_leave\":true}}\n{\"id\":3,\"history\":{\"channel\":\"chat:index\",\"limit\":-1,\"since\":{\"offset\":1,\"epoch\":\"ab\"},\"reverse\":true}}\n",
        ),
        ("pong", "{}\n{}"),
        (
            "publish",
            r#"{"id":4,"publish":{"channel":"chat:index","data":{"text":"hi"}}}"#,
        ),
        (
            "bad",
            "{\"id\":5,\"presence\":{\"channel\":\"a:b\"}}\nnot json",
        ),
    ] {
        out.push(("centrifugo_frame", name, frame.as_bytes().to_vec()));
    }

    for (name, msg) in [
        (
            "connect",
            r#"{"jsonrpc":"2.0","id":"c1","method":"signalwire.connect","params":{"version":{"major":3,"minor":0,"revision":0},"authorization":{"jwt_token":"a.b.c"},"protocol":"p","event_acks":true}}"#,
        ),
        (
            "subscribe",
            r#"{"jsonrpc":"2.0","id":"s1","method":"chat.subscribe","params":{"channels":[{"name":"room"},"other",{"name":"room"}],"events":["chat.message","chat.member.joined","chat.member.left"]}}"#,
        ),
        (
            "messages",
            r#"{"jsonrpc":"2.0","id":"m1","method":"chat.messages.get","params":{"channel_id":"room","cursor":{"before":"ep:60","after":"ep:3"}}}"#,
        ),
        ("response", r#"{"jsonrpc":"2.0","id":"ping-1","result":{}}"#),
        (
            "publish",
            r#"{"jsonrpc":"2.0","id":7,"method":"chat.publish","params":{"channel":"room","content":"hi","meta":{"k":"v"}}}"#,
        ),
    ] {
        out.push(("signalwire_frame", name, msg.as_bytes().to_vec()));
    }
    out
}
