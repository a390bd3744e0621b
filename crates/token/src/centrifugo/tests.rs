//! Channel grammar, rules and user-JWT claim checks.

use serde_json::json;

use super::*;

const U: &str = "123e4567-e89b-12d3-a456-426614174000";

#[test]
fn channel_grammar() {
    let c = parse_channel(&format!("user:{U}")).unwrap();
    assert_eq!(
        (c.private, c.namespace.as_str(), c.id.as_str()),
        (false, "user", U)
    );
    let p = parse_channel(&format!("$company:{U}")).unwrap();
    assert!(p.private);
    assert_eq!(p.namespace, "company");
    for bad in [
        "",
        "user",
        "user:",
        ":x",
        "u:x",
        "user:a b",
        "user:é",
        "user:a#b",
        "user:a,b",
        "user:*",
        "$$user:x",
        "user:a:b",
        &"x".repeat(256),
    ] {
        assert!(parse_channel(bad).is_err(), "{bad:?}");
    }
    assert!(parse_channel(&format!("team:{}", "a".repeat(250))).is_ok());
}

#[test]
fn default_rules_follow_seed_000() {
    let ns = default_namespaces();
    let ch = |s: &str| parse_channel(s).unwrap();
    let me = U;
    let other = "00000000-0000-4000-8000-000000000000";
    assert_eq!(
        decide(&ns, &ch(&format!("user:{me}")), me).unwrap().0,
        Access::Granted
    );
    assert_eq!(
        decide(&ns, &ch(&format!("user:{other}")), me).unwrap().0,
        Access::Denied
    );
    assert_eq!(
        decide(&ns, &ch(&format!("$user:{me}")), me).unwrap().0,
        Access::Granted
    );
    assert_eq!(
        decide(&ns, &ch(&format!("company:{other}")), me).unwrap().0,
        Access::NeedsMembership {
            kind: "company".into(),
            id: other.into()
        }
    );
    assert_eq!(
        decide(&ns, &ch(&format!("organization:{other}")), me)
            .unwrap()
            .0,
        Access::NeedsMembership {
            kind: "organization".into(),
            id: other.into()
        }
    );
    // Wrong id format and unknown namespaces are invalid names (422), not denials.
    assert!(decide(&ns, &ch("user:42"), "42").is_err());
    assert!(decide(&ns, &ch(&format!("team:{me}")), me).is_err());
    // The owner check is exact: case or spacing variants are other users.
    assert_eq!(
        decide(&ns, &ch(&format!("user:{}", me.to_uppercase())), me).unwrap_err(),
        ChannelError("user channel ids must be lower-case UUIDs".into())
    );
}

#[test]
fn custom_rules() {
    let ns = vec![
        Namespace {
            name: "team".into(),
            rule: "member:team".parse().unwrap(),
            id_format: IdFormat::Token,
            token_ttl: 60,
        },
        Namespace {
            name: "lobby".into(),
            rule: "authenticated".parse().unwrap(),
            id_format: IdFormat::Token,
            token_ttl: 60,
        },
        Namespace {
            name: "system".into(),
            rule: "deny".parse().unwrap(),
            id_format: IdFormat::Token,
            token_ttl: 60,
        },
    ];
    let ch = |s: &str| parse_channel(s).unwrap();
    assert!(matches!(
        decide(&ns, &ch("team:red"), "u").unwrap().0,
        Access::NeedsMembership { .. }
    ));
    assert_eq!(
        decide(&ns, &ch("lobby:main"), "u").unwrap().0,
        Access::Granted
    );
    assert_eq!(decide(&ns, &ch("system:x"), "u").unwrap().0, Access::Denied);
    assert!("member".parse::<Rule>().is_err());
    assert!(
        "member:x".parse::<Rule>().is_err(),
        "group kinds need two characters"
    );
    assert!("admin".parse::<Rule>().is_err());
    assert_eq!(
        "member:team".parse::<Rule>().unwrap().to_stored(),
        "member:team"
    );
    assert!("guid".parse::<IdFormat>().is_err());
}

#[test]
fn user_jwt_claims() {
    let policy = UserJwtPolicy {
        issuer: "https://app.example".into(),
        audience: "tollgate".into(),
    };
    let now = UnixTime(1_800_000_000);
    let base =
        json!({"sub": U, "iss": "https://app.example", "aud": "tollgate", "exp": 1_800_000_100});
    let check = |v: serde_json::Value| validate_user_claims(v.as_object().unwrap(), &policy, now);
    assert_eq!(check(base.clone()).unwrap(), U);
    let mut arr = base.clone();
    arr["aud"] = json!(["tollgate"]);
    assert!(check(arr).is_ok());
    let cases = [
        ("aud", json!(null), ClaimsError::Missing),
        ("aud", json!(["tollgate", "other"]), ClaimsError::Missing),
        ("aud", json!("Tollgate"), ClaimsError::WrongParty),
        (
            "iss",
            json!("https://app.example.evil"),
            ClaimsError::WrongParty,
        ),
        ("exp", json!(1_800_000_000), ClaimsError::Time),
        ("exp", json!(1_800_000_000 + 315_360_000), ClaimsError::Time),
        ("exp", json!("1800000100"), ClaimsError::Missing),
        ("exp", json!(1.8e9), ClaimsError::Missing),
        ("sub", json!(""), ClaimsError::Missing),
        ("sub", json!(42), ClaimsError::Missing),
        ("nbf", json!(1_800_000_061), ClaimsError::Time),
        ("iat", json!(1_800_086_400), ClaimsError::Time),
    ];
    for (claim, value, err) in cases {
        let mut v = base.clone();
        if value.is_null() {
            v.as_object_mut().unwrap().remove(claim);
        } else {
            v[claim] = value.clone();
        }
        assert_eq!(check(v).unwrap_err(), err, "{claim} = {value}");
    }
}

#[test]
fn rules_as_input_name_a_group_kind_of_the_grammar() {
    assert_eq!(
        Rule::parse_input("member:team"),
        Ok(Rule::Member("team".into()))
    );
    assert_eq!(Rule::parse_input("owner"), Ok(Rule::Owner));
    // `..` passes the namespace grammar (Centrifugo's) but is no group kind.
    assert_eq!("member:..".parse::<Rule>(), Ok(Rule::Member("..".into())));
    assert!(Rule::parse_input("member:..").is_err());
    assert!(Rule::parse_input("member:a/b").is_err());
    assert!(Rule::parse_input("everyone").is_err());
}

#[test]
fn namespace_checks_name_each_failed_field() {
    let ns = |name: &str, rule: Rule, ttl: i64| Namespace {
        name: name.into(),
        rule,
        id_format: IdFormat::Token,
        token_ttl: ttl,
    };
    assert!(check_namespace(&ns("team", Rule::Owner, 60)).is_empty());
    assert!(check_namespace(&ns("team", Rule::Owner, 604_800)).is_empty());
    let failed = |n: &Namespace| -> Vec<&'static str> {
        check_namespace(n).iter().map(|e| e.attribute).collect()
    };
    assert_eq!(failed(&ns("t", Rule::Owner, 59)), ["name", "token_ttl"]);
    assert_eq!(
        failed(&ns("team", Rule::Member("..".into()), 604_801)),
        ["rule", "token_ttl"]
    );
}
