//! Every validation rule of the PubSub/Chat token request, at its boundaries.

use serde_json::{Value, json};

use super::*;

fn parse(product: Product, body: Value) -> Result<TokenRequest, Vec<FieldError>> {
    parse_request(product, body.as_object().expect("test body is an object"))
}

/// `(code, attribute)` pairs of a failed parse.
fn codes(product: Product, body: Value) -> Vec<(&'static str, &'static str)> {
    match parse(product, body) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(|e| (e.code, e.attribute)).collect(),
    }
}

fn channels(n: usize) -> Value {
    let map: Map<String, Value> = (0..n)
        .map(|i| (format!("c{i}"), json!({"read": true})))
        .collect();
    Value::Object(map)
}

const OK: &[(&str, &str)] = &[];

#[test]
fn ttl_rules_and_boundaries() {
    let cases: &[(Value, &[(&str, &str)])] = &[
        (json!(0), &[("invalid_parameter", "ttl")]),
        (json!(1), OK),
        (json!(43200), OK),
        (json!(43201), &[("invalid_parameter", "ttl")]),
        (json!(-5), &[("invalid_parameter", "ttl")]),
        (json!("15"), OK),
        (json!("fifteen"), &[("invalid_parameter", "ttl")]),
        (json!(1.5), &[("invalid_parameter", "ttl")]),
        (json!(true), &[("invalid_parameter", "ttl")]),
        (json!({}), &[("invalid_parameter", "ttl")]),
        (Value::Null, &[("missing_required_parameter", "ttl")]),
        (json!(i64::MAX), &[("invalid_parameter", "ttl")]),
    ];
    for (ttl, expected) in cases {
        let body = json!({"ttl": ttl, "channels": {"a": {"read": true}}});
        assert_eq!(codes(Product::PubSub, body), *expected, "ttl = {ttl}");
    }
    let missing = codes(Product::PubSub, json!({"channels": {"a": {"read": true}}}));
    assert_eq!(missing, [("missing_required_parameter", "ttl")]);
}

#[test]
fn ttl_messages_follow_signalwire_wording() {
    let err = parse(
        Product::PubSub,
        json!({"ttl": 0, "channels": {"a": {"read": true}}}),
    )
    .unwrap_err();
    assert_eq!(err[0].message, "Ttl must be greater than or equal to 1");
    let err = parse(
        Product::PubSub,
        json!({"ttl": 43201, "channels": {"a": {"read": true}}}),
    )
    .unwrap_err();
    assert_eq!(err[0].message, "Ttl must be less than or equal to 43200");
    let err = parse(Product::Chat, json!({"channels": {"a": {"read": true}}})).unwrap_err();
    assert_eq!(err[0].message, MISSING_MESSAGE);
}

#[test]
fn channel_rules_and_boundaries() {
    let long = |n: usize| "é".repeat(n); // two bytes per character: limits count characters
    let cases: Vec<(Value, &[(&str, &str)])> = vec![
        (Value::Null, &[("missing_required_parameter", "channels")]),
        (json!({}), &[("missing_required_parameter", "channels")]),
        (json!(["a", "b"]), &[("not_a_hash", "channels")]),
        (json!(7), &[("not_a_hash", "channels")]),
        (json!(r#"{"a":{"read":true}}"#), OK),
        (json!(r#"{"a":"#), &[("not_a_valid_json", "channels")]),
        (json!("[1]"), &[("not_a_hash", "channels")]),
        (channels(1), OK),
        (channels(500), OK),
        (
            channels(501),
            &[("channel_size_limit_exceeded", "channels")],
        ),
        (json!({ long(250): {"read": true} }), OK),
        (
            json!({ long(251): {"read": true} }),
            &[("channel_name_size_limit_exceeded", "channels")],
        ),
        (
            json!({"": {"read": true}}),
            &[("invalid_parameter", "channels")],
        ),
        (
            json!({"a": {}}),
            &[("channel_has_missing_properties", "channels")],
        ),
        (
            json!({"a": {"read": null}}),
            &[("channel_has_missing_properties", "channels")],
        ),
        (
            json!({"a": {"admin": true}}),
            &[("channel_has_missing_properties", "channels")],
        ),
        (json!({"a": {"read": false}}), OK),
        (json!({"a": {"write": true}}), OK),
        (
            json!({"a": {"read": "yes"}}),
            &[("not_a_boolean", "channels")],
        ),
        (json!({"a": true}), &[("not_a_hash", "channels")]),
        (json!({"sw_system": {"read": true}}), OK),
        (json!({"Straße 🚀 канал": {"read": true}}), OK),
    ];
    for (ch, expected) in cases {
        let body = json!({"ttl": 5, "channels": ch});
        assert_eq!(codes(Product::PubSub, body), expected, "channels = {ch}");
    }
}

#[test]
fn chat_reserves_the_sw_prefix() {
    let body = json!({"ttl": 5, "channels": {"sw_system": {"read": true}, "ok": {"read": true}}});
    assert_eq!(
        codes(Product::Chat, body.clone()),
        [("channel_name_is_reserved", "channels")]
    );
    assert!(parse(Product::PubSub, body).is_ok());
    let body = json!({"ttl": 5, "channels": {"SW_upper": {"read": true}, "xsw_": {"read": true}}});
    assert!(parse(Product::Chat, body).is_ok());
}

#[test]
fn many_bad_channels_yield_a_bounded_error_list() {
    let map: Map<String, Value> = (0..400).map(|i| (format!("c{i}"), json!({}))).collect();
    let err = parse(Product::PubSub, json!({"ttl": 5, "channels": map})).unwrap_err();
    assert_eq!(err.len(), MAX_LISTED_PER_CODE + 1);
    assert!(
        err.iter()
            .all(|e| e.code == "channel_has_missing_properties")
    );
    assert_eq!(
        err.last().unwrap().message,
        "380 more channels have the same problem"
    );
}

#[test]
fn member_id_rules_and_boundaries() {
    let base = |m: Value| json!({"ttl": 5, "channels": {"a": {"read": true}}, "member_id": m});
    let cases: &[(Value, &[(&str, &str)])] = &[
        (json!("x".repeat(250)), OK),
        (json!("ж".repeat(250)), OK),
        (
            json!("x".repeat(251)),
            &[("invalid_parameter", "member_id")],
        ),
        (json!(42), &[("not_a_string", "member_id")]),
        (json!(["a"]), &[("not_a_string", "member_id")]),
        (json!(""), OK),
        (Value::Null, OK),
    ];
    for (m, expected) in cases {
        assert_eq!(codes(Product::PubSub, base(m.clone())), *expected, "{m}");
    }
    let given = parse(Product::PubSub, base(json!("alice"))).unwrap();
    assert_eq!(given.member_id.as_str(), "alice");
    for absent in [Value::Null, json!("")] {
        let req = parse(Product::PubSub, base(absent)).unwrap();
        let id = Uuid::parse_str(req.member_id.as_str()).expect("default member id is a UUID");
        assert_eq!(id.get_version_num(), 4);
    }
}

#[test]
fn state_rules_and_boundaries() {
    let base = |s: Value| json!({"ttl": 5, "channels": {"a": {"read": true}}, "state": s});
    // {"k":"…"} serialises to 8 characters plus the value.
    let sized = |total: usize| json!({"k": "x".repeat(total - 8)});
    assert_eq!(sized(2000).to_string().chars().count(), 2000);
    let cases: &[(Value, &[(&str, &str)])] = &[
        (sized(2000), OK),
        (sized(2001), &[("state_size_limit_exceeded", "state")]),
        (json!({}), OK),
        (Value::Null, OK),
        (json!([1, 2]), &[("not_a_hash", "state")]),
        (json!("{\"a\":1}"), OK),
        (json!("{nope"), &[("not_a_valid_json", "state")]),
        (json!(3), &[("not_a_hash", "state")]),
    ];
    for (s, expected) in cases {
        assert_eq!(codes(Product::Chat, base(s.clone())), *expected, "{s}");
    }
    let req = parse(Product::Chat, base(Value::Null)).unwrap();
    assert!(req.state.as_map().is_empty());
}

#[test]
fn every_failed_field_is_reported_at_once() {
    let body = json!({
        "ttl": 0,
        "channels": {"sw_x": {}},
        "member_id": 1,
        "state": "[]",
    });
    let got = codes(Product::Chat, body);
    assert_eq!(
        got,
        [
            ("invalid_parameter", "ttl"),
            ("channel_has_missing_properties", "channels"),
            ("channel_name_is_reserved", "channels"),
            ("not_a_string", "member_id"),
            ("not_a_hash", "state"),
        ]
    );
}

#[test]
fn claims_carry_grants_as_centrifugo_capabilities() {
    let req = parse(
        Product::Chat,
        json!({
            "ttl": 15,
            "channels": {
                "both": {"read": true, "write": true},
                "ro": {"read": true},
                "wo": {"write": true, "read": false},
                "none": {"read": false},
            },
            "member_id": "m1",
            "state": {"display_name": "Alice"},
        }),
    )
    .unwrap();
    let project: ProjectId = "11111111-2222-3333-4444-555555555555".parse().unwrap();
    let claims = req.claims("tollgate", project, UnixTime(1_700_000_000));
    let v = serde_json::to_value(&claims).unwrap();
    assert_eq!(v["sub"], "m1");
    assert_eq!(v["aud"], project.to_string());
    assert_eq!(v["iat"], 1_700_000_000);
    assert_eq!(v["exp"], 1_700_000_000 + 15 * 60);
    assert_eq!(v["t"], 15);
    assert_eq!(v["info"], json!({"display_name": "Alice"}));
    assert_eq!(
        v["caps"],
        json!([
            {"channels": ["both"], "allow": ["sub", "prs", "hst", "pub"]},
            {"channels": ["ro"], "allow": ["sub", "prs", "hst"]},
            {"channels": ["wo"], "allow": ["pub"]},
            {"channels": ["none"], "allow": []},
        ])
    );
    assert!(Uuid::parse_str(v["jti"].as_str().unwrap()).is_ok());
    let other = req.claims("tollgate", project, UnixTime(1_700_000_000));
    assert_ne!(claims.jti, other.jti, "jti must be unique per token");
}
