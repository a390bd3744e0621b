//! Every Fabric validation rule, at its boundaries.

use serde_json::{Value, json};

use super::*;

const NOW: UnixTime = UnixTime(1_800_000_000);
const MAX: i64 = 86_400;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().expect("object").clone()
}

fn token_codes(v: Value) -> Vec<(&'static str, &'static str)> {
    match parse_subscriber_token(&obj(v), NOW, MAX) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(|e| (e.code, e.attribute)).collect(),
    }
}

const OK: &[(&str, &str)] = &[];
const FP: &str = "Vg1h7IDV3AR6kTpCkZPHOVs32B81DX1naHiHbYoKXgY";

#[test]
fn subscriber_token_rules_and_boundaries() {
    let t = NOW.seconds();
    let cases: Vec<(Value, &[(&str, &str)])> = vec![
        (json!({}), &[("missing_required_parameter", "reference")]),
        (
            json!({"reference": ""}),
            &[("missing_required_parameter", "reference")],
        ),
        (json!({"reference": 5}), &[("not_a_string", "reference")]),
        (json!({"reference": "r".repeat(255)}), OK),
        // The reference is a user id: emails, UUIDs and OIDC subjects pass, path-like and
        // wildcard ids do not.
        (json!({"reference": "alice+news@example.com"}), OK),
        (json!({"reference": "auth0|5f7c8ec7c33c6c004bbafe82"}), OK),
        (
            json!({"reference": "123e4567-e89b-12d3-a456-426614174000"}),
            OK,
        ),
        (
            json!({"reference": ".."}),
            &[("invalid_parameter", "reference")],
        ),
        (
            json!({"reference": "a/b"}),
            &[("invalid_parameter", "reference")],
        ),
        (
            json!({"reference": "*"}),
            &[("invalid_parameter", "reference")],
        ),
        (
            json!({"reference": "John Smith"}),
            &[("invalid_parameter", "reference")],
        ),
        (
            json!({"reference": "r".repeat(256)}),
            &[("invalid_parameter", "reference")],
        ),
        (
            json!({"reference": "a", "expire_at": t}),
            &[("invalid_parameter", "expire_at")],
        ),
        (json!({"reference": "a", "expire_at": t + 1}), OK),
        (json!({"reference": "a", "expire_at": t + MAX}), OK),
        (
            json!({"reference": "a", "expire_at": t + MAX + 1}),
            &[("invalid_parameter", "expire_at")],
        ),
        (
            json!({"reference": "a", "expire_at": "soon"}),
            &[("invalid_parameter", "expire_at")],
        ),
        (
            json!({"reference": "a", "application_id": "nope"}),
            &[("invalid_parameter", "application_id")],
        ),
        (
            json!({"reference": "a", "application_id": "11111111-2222-3333-4444-555555555555"}),
            OK,
        ),
        (json!({"reference": "a", "password": ""}), OK),
        (
            json!({"reference": "a", "password": "1234567"}),
            &[("invalid_parameter", "password")],
        ),
        (json!({"reference": "a", "password": "12345678"}), OK),
        (json!({"reference": "a", "password": "p".repeat(72)}), OK),
        (
            json!({"reference": "a", "password": "p".repeat(73)}),
            &[("invalid_parameter", "password")],
        ),
        (json!({"reference": "a", "fingerprint": FP}), OK),
        (
            json!({"reference": "a", "fingerprint": &FP[..42]}),
            &[("invalid_parameter", "fingerprint")],
        ),
        (
            json!({"reference": "a", "fingerprint": format!("{FP}A")}),
            &[("invalid_parameter", "fingerprint")],
        ),
        (
            json!({"reference": "a", "fingerprint": format!("{}+", &FP[..42])}),
            &[("invalid_parameter", "fingerprint")],
        ),
        (json!({"reference": "a", "scope": "sat:refresh"}), OK),
        (
            json!({"reference": "a", "scope": "admin"}),
            &[("invalid_parameter", "scope")],
        ),
        (json!({"reference": "a", "region": "us-central"}), OK),
        (
            json!({"reference": "a", "region": "eu-west"}),
            &[("invalid_parameter", "region")],
        ),
        (
            json!({"reference": "a", "first_name": 3}),
            &[("not_a_string", "first_name")],
        ),
        (
            json!({"reference": "a", "time_zone": "x".repeat(256)}),
            &[("invalid_parameter", "time_zone")],
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(token_codes(body.clone()), expected, "{body}");
    }
}

#[test]
fn every_failed_field_is_listed() {
    let got =
        token_codes(json!({"expire_at": 1, "password": "x", "scope": "all", "fingerprint": "f"}));
    assert_eq!(
        got,
        [
            ("missing_required_parameter", "reference"),
            ("invalid_parameter", "expire_at"),
            ("invalid_parameter", "password"),
            ("invalid_parameter", "fingerprint"),
            ("invalid_parameter", "scope"),
        ]
    );
}

#[test]
fn lifetimes_default_and_cap() {
    let p = |v: Value| parse_subscriber_token(&obj(v), NOW, MAX).unwrap();
    assert_eq!(p(json!({"reference": "a"})).expires_at, NOW.plus(7200));
    let r = p(json!({"reference": "a", "scope": "sat:refresh"}));
    assert!(r.refreshable);
    assert_eq!(
        r.expires_at,
        NOW.plus(60),
        "sat:refresh without fingerprint: 60 s"
    );
    let r = p(json!({"reference": "a", "scope": "sat:refresh", "expire_at": NOW.seconds() + 30}));
    assert_eq!(r.expires_at, NOW.plus(30));
    let r = p(json!({"reference": "a", "scope": "sat:refresh", "fingerprint": FP}));
    assert_eq!(r.expires_at, NOW.plus(7200));
    assert_eq!(r.fingerprint.as_deref(), Some(FP));
    let r = p(json!({"reference": "a", "password": "", "time_zone": "UTC", "display_name": "A"}));
    assert_eq!(r.password, None);
    assert_eq!(r.profile.timezone.as_deref(), Some("UTC"));
    assert_eq!(r.profile.display_name.as_deref(), Some("A"));
    // A server configured for shorter tokens shortens the default too.
    let short = parse_subscriber_token(&obj(json!({"reference": "a"})), NOW, 600).unwrap();
    assert_eq!(short.expires_at, NOW.plus(600));
}

#[test]
fn subscriber_resource_rules() {
    let codes = |v: Value, create: bool| match parse_subscriber(&obj(v), create) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(|e| (e.code, e.attribute)).collect::<Vec<_>>(),
    };
    assert_eq!(
        codes(json!({}), true),
        [("missing_required_parameter", "email")]
    );
    assert_eq!(codes(json!({}), false), OK);
    assert_eq!(codes(json!({"email": "a@b.c"}), true), OK);
    for bad in [
        "nope",
        "@b",
        "a@",
        "a b@c.d",
        "a/b@c.d",
        "*@c.d",
        "o'brien@c.d",
    ] {
        assert_eq!(
            codes(json!({"email": bad}), true),
            [("invalid_parameter", "email")],
            "{bad}"
        );
    }
    assert_eq!(
        codes(json!({"email": "a@b.c", "password": "short"}), true),
        [("invalid_parameter", "password")]
    );
    assert_eq!(
        codes(json!({"timezone": 1, "country": "x".repeat(256)}), false),
        [
            ("not_a_string", "timezone"),
            ("invalid_parameter", "country")
        ]
    );
    let r = parse_subscriber(&obj(json!({"email": "a@b.c", "timezone": "UTC"})), true).unwrap();
    assert_eq!(r.profile.timezone.as_deref(), Some("UTC"));
}

#[test]
fn guest_and_invite_rules() {
    let ids = |n: usize| -> Value {
        (0..n)
            .map(|_| Value::from(Uuid::new_v4().to_string()))
            .collect()
    };
    let guest = |v: Value| match parse_guest_token(&obj(v), NOW, MAX) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(|e| (e.code, e.attribute)).collect::<Vec<_>>(),
    };
    assert_eq!(
        guest(json!({})),
        [("missing_required_parameter", "allowed_addresses")]
    );
    assert_eq!(
        guest(json!({"allowed_addresses": []})),
        [("missing_required_parameter", "allowed_addresses")]
    );
    assert_eq!(guest(json!({"allowed_addresses": ids(1)})), OK);
    assert_eq!(guest(json!({"allowed_addresses": ids(10)})), OK);
    assert_eq!(
        guest(json!({"allowed_addresses": ids(11)})),
        [("allowed_address_limit_exceeded", "allowed_addresses")]
    );
    assert_eq!(
        guest(json!({"allowed_addresses": ["x"]})),
        [("invalid_parameter", "allowed_addresses")]
    );
    assert_eq!(
        guest(json!({"allowed_addresses": ids(1), "expire_at": 5})),
        [("invalid_parameter", "expire_at")]
    );

    let invite = |v: Value| match parse_invite_token(&obj(v), NOW, MAX) {
        Ok(r) => Ok(r),
        Err(e) => Err(e
            .iter()
            .map(|e| (e.code, e.attribute, e.message.clone()))
            .collect::<Vec<_>>()),
    };
    let err = invite(json!({})).unwrap_err();
    assert_eq!(
        (err[0].0, err[0].1),
        ("missing_required_parameter", "address_id")
    );
    let err = invite(json!({"address_id": "x", "expires_at": NOW.seconds()})).unwrap_err();
    assert_eq!(
        err[0],
        (
            "invalid_parameter",
            "address_id",
            "Address is invalid".to_owned()
        )
    );
    assert_eq!(
        err[1],
        (
            "invalid_parameter",
            "expires_at",
            format!("Expires At must be greater than {NOW}")
        )
    );
    let id = Uuid::new_v4();
    let ok = invite(json!({"address_id": id.to_string()})).unwrap();
    assert_eq!(ok.address_id, id);
    assert_eq!(ok.expires_at, NOW.plus(7200));
}
