//! The configuration's tests: defaults, layering of file and environment, and every
//! validation refusal naming its setting.

use super::*;

/// `TOLLGATE_*` pairs as `load` takes them.
pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn defaults_are_the_embedded_setup() {
    let c = load(None, env(&[])).unwrap().config;
    assert_eq!(c.listen.to_string(), "127.0.0.1:8000");
    assert!(
        matches!(&c.database, Database::Sqlite(p) if p == Path::new("tollgate-data/tollgate.db"))
    );
    assert!(matches!(
        &c.master_key,
        MasterKeySource::File(p) if p == Path::new("tollgate-data/tollgate.key")
    ));
    assert_eq!(c.http.max_body_bytes, 1024 * 1024);
    assert!(c.public_gateway_url.is_none());
}

#[test]
fn env_overrides_file_and_unknown_vars_warn() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9000\"\n[http]\nmax_body_bytes = 200000\n[gateway]\npublic_url = \"wss://rt.example.com\"\n",
    )
    .unwrap();
    let loaded = load(
        Some(&file),
        env(&[
            ("TOLLGATE_LISTEN", "0.0.0.0:7000"),
            ("TOLLGATE_HTTP__MAX_BODY_BYTES", "300000"),
            // 32 digits parse as a u128; the secret must still arrive as a string.
            (
                "TOLLGATE_CENTRIFUGO__TOKEN_HMAC_SECRET_KEY",
                &"1".repeat(32),
            ),
            ("TOLLGATE_NOPE", "x"),
            ("OTHER", "ignored"),
        ]),
    )
    .unwrap();
    let c = loaded.config;
    assert_eq!(c.listen.to_string(), "0.0.0.0:7000");
    assert_eq!(c.http.max_body_bytes, 300_000);
    assert_eq!(
        c.public_gateway_url.as_deref(),
        Some("wss://rt.example.com")
    );
    assert_eq!(
        c.centrifugo_hmac_secret.unwrap().expose(),
        "1".repeat(32),
        "a numeric-looking secret stays a string"
    );
    assert_eq!(
        loaded.warnings,
        ["unknown setting TOLLGATE_NOPE is ignored"]
    );
}

#[test]
fn broker_url_is_memory_or_redis_shards() {
    let c = load(None, env(&[])).unwrap().config;
    assert_eq!(c.broker, BrokerSetting::Memory);
    let broker =
        |url: &str| load(None, env(&[("TOLLGATE_BROKER_URL", url)])).map(|l| l.config.broker);
    let Ok(BrokerSetting::Redis(r)) = broker("redis://127.0.0.1:6400/2") else {
        panic!("one Redis")
    };
    assert_eq!(r.urls, ["redis://127.0.0.1:6400/2"]);
    let Ok(BrokerSetting::Redis(r)) = broker("redis://a:1, redis://b:2") else {
        panic!("two shards")
    };
    assert_eq!(r.urls, ["redis://a:1", "redis://b:2"]);
    for bad in [
        "redis://a:1,memory",
        "rediss://a:1",
        "redis://a:1,rediss://b:2",
        "redis://[::1",
    ] {
        let err = broker(bad).expect_err(bad).to_string();
        assert!(err.contains("TOLLGATE_BROKER_URL"), "{err}");
    }
}

#[test]
fn every_bad_setting_is_named() {
    let cases: &[(&str, &str, &str)] = &[
        ("TOLLGATE_LISTEN", "nope", "TOLLGATE_LISTEN (listen)"),
        (
            "TOLLGATE_DATABASE_URL",
            "mysql://x",
            "TOLLGATE_DATABASE_URL",
        ),
        ("TOLLGATE_BROKER_URL", "kafka://x", "TOLLGATE_BROKER_URL"),
        ("TOLLGATE_LOG", "info,[", "TOLLGATE_LOG"),
        ("TOLLGATE_LOG_FORMAT", "xml", "TOLLGATE_LOG_FORMAT"),
        ("TOLLGATE_SECRET_KEY", "short", "TOLLGATE_SECRET_KEY"),
        (
            "TOLLGATE_GATEWAY__PUBLIC_URL",
            "http://x",
            "TOLLGATE_GATEWAY__PUBLIC_URL",
        ),
        (
            "TOLLGATE_CENTRIFUGO__TOKEN_HMAC_SECRET_KEY",
            "secret",
            "TOLLGATE_CENTRIFUGO__TOKEN_HMAC_SECRET_KEY",
        ),
        (
            "TOLLGATE_CENTRIFUGO__API_KEY",
            " ",
            "TOLLGATE_CENTRIFUGO__API_KEY",
        ),
        (
            "TOLLGATE_CENTRIFUGO__API_KEY",
            "k",
            "TOLLGATE_CENTRIFUGO__API_KEY",
        ),
        (
            "TOLLGATE_HTTP__MAX_BODY_BYTES",
            "10",
            "TOLLGATE_HTTP__MAX_BODY_BYTES",
        ),
        (
            "TOLLGATE_HTTP__MAX_BODY_BYTES",
            "lots",
            "TOLLGATE_HTTP__MAX_BODY_BYTES",
        ),
        ("TOLLGATE_TOKENS__ISSUER", " ", "TOLLGATE_TOKENS__ISSUER"),
        (
            "TOLLGATE_FABRIC__MAX_TOKEN_LIFETIME",
            "59",
            "TOLLGATE_FABRIC__MAX_TOKEN_LIFETIME",
        ),
    ];
    for (var, value, named) in cases {
        let err = load(None, env(&[(var, value)])).unwrap_err().to_string();
        assert!(err.contains(named), "{var}={value:?} gave {err:?}");
        assert!(!err.contains('\n'), "one line: {err:?}");
    }
    let err = load(
        None,
        env(&[("TOLLGATE_DATABASE_URL", "postgres://u:pw@h/db")]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("TOLLGATE_SECRET_KEY"), "{err}");
    assert!(
        !err.contains("pw"),
        "the database password must not leak: {err}"
    );
}

#[test]
fn empty_values_unset_and_bare_hosts_are_accepted() {
    let c = load(
        None,
        env(&[
            ("TOLLGATE_CENTRIFUGO__TOKEN_HMAC_SECRET_KEY", ""),
            ("TOLLGATE_GATEWAY__PUBLIC_URL", "rt.example.com:8443"),
        ]),
    )
    .unwrap()
    .config;
    assert!(c.centrifugo_hmac_secret.is_none());
    assert_eq!(c.public_gateway_url.as_deref(), Some("rt.example.com:8443"));
}

#[test]
fn file_errors_are_one_line_and_never_echo_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(&file, "listen = \n[[broken\n").unwrap();
    let err = load(Some(&file), env(&[])).unwrap_err().to_string();
    assert!(!err.contains('\n'), "{err:?}");
    std::fs::write(&file, "secret_key = 12345678\n").unwrap();
    let err = load(Some(&file), env(&[])).unwrap_err().to_string();
    assert!(err.contains("TOLLGATE_SECRET_KEY"), "{err}");
    assert!(!err.contains("12345678"), "{err}");
}

#[test]
fn unknown_file_keys_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(&file, "[http]\nmax_body = 1\n").unwrap();
    let err = load(Some(&file), env(&[])).unwrap_err().to_string();
    assert!(err.contains("max_body"), "{err}");
    let missing = load(Some(&dir.path().join("none.toml")), env(&[]));
    assert!(missing.unwrap_err().to_string().contains("none.toml"));
}

#[test]
fn secrets_are_redacted_in_debug() {
    let c = load(
        None,
        env(&[(
            "TOLLGATE_CENTRIFUGO__API_KEY",
            "super-secret-api-key-0123456789abcdef",
        )]),
    )
    .unwrap()
    .config;
    assert!(!format!("{c:?}").contains("super-secret-api-key"));
}

#[test]
fn sqlite_durability_is_an_explicit_choice() {
    let c = load(None, env(&[])).unwrap().config;
    assert_eq!(
        c.sqlite_synchronous,
        tollgate_store::SqliteSynchronous::Full
    );
    let c = load(None, env(&[("TOLLGATE_SQLITE_SYNCHRONOUS", "normal")])).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        c.config.sqlite_synchronous,
        tollgate_store::SqliteSynchronous::Normal
    );
    let err = load(None, env(&[("TOLLGATE_SQLITE_SYNCHRONOUS", "off")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("TOLLGATE_SQLITE_SYNCHRONOUS"), "{err}");
}

#[test]
fn private_jwks_hosts_are_an_explicit_choice() {
    let c = load(None, env(&[])).unwrap().config;
    assert!(!c.jwks_allow_private_hosts);
    let c = load(None, env(&[("TOLLGATE_JWKS__ALLOW_PRIVATE_HOSTS", "true")])).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(c.config.jwks_allow_private_hosts);
    let err = load(
        None,
        env(&[("TOLLGATE_JWKS__ALLOW_PRIVATE_HOSTS", "maybe")]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("TOLLGATE_JWKS__ALLOW_PRIVATE_HOSTS"), "{err}");
}

#[test]
fn the_server_api_key_is_long_enough_to_resist_guessing() {
    let load_key = |key: &str| load(None, env(&[("TOLLGATE_CENTRIFUGO__API_KEY", key)]));
    // Keys written so that an echo would show in the message.
    for short in ["Q", "short-secret-xyz", &"Z".repeat(31)] {
        let err = load_key(short).unwrap_err().to_string();
        assert!(
            err.contains("TOLLGATE_CENTRIFUGO__API_KEY (centrifugo.api_key)")
                && err.contains("32 to 256 characters"),
            "{err}"
        );
        assert!(!err.contains(short), "the key is not echoed: {err}");
    }
    let err = load_key(&"k".repeat(257)).unwrap_err().to_string();
    assert!(err.contains("32 to 256 characters"), "{err}");
    for ok in ["k".repeat(32), "k".repeat(256)] {
        let c = load_key(&ok).unwrap().config;
        assert_eq!(c.centrifugo_api_key.unwrap().expose(), ok);
    }
    // The HMAC secret has had its floor since it was added; it stays.
    let err = load(
        None,
        env(&[(
            "TOLLGATE_CENTRIFUGO__TOKEN_HMAC_SECRET_KEY",
            &"s".repeat(31),
        )]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("at least 32 bytes"), "{err}");
}

#[test]
fn centrifugo_project_is_a_project_id() {
    let id = "0b0e7c52-5f3e-4a4b-9c55-4b1a1f0d2e33";
    let c = load(None, env(&[("TOLLGATE_CENTRIFUGO__PROJECT", id)]))
        .unwrap()
        .config;
    assert_eq!(
        c.centrifugo_project.map(|p| p.to_string()).as_deref(),
        Some(id)
    );
    let unset = load(None, env(&[("TOLLGATE_CENTRIFUGO__PROJECT", "")])).unwrap();
    assert!(
        unset.config.centrifugo_project.is_none(),
        "empty means unset"
    );
    let err = load(None, env(&[("TOLLGATE_CENTRIFUGO__PROJECT", "acme")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("centrifugo.project"), "{err}");
}
