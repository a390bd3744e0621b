//! Service behaviour against a real SQLite database.

use serde_json::json;
use tollgate_store::SqlStore;
use tollgate_token::jose;

use super::*;

/// The time every test service's clock stands at.
pub(crate) const NOW: i64 = 1_800_000_000;

/// A service over a fresh SQLite database in `dir`, with `settings`, its clock at [`NOW`].
pub(crate) async fn service_with(
    dir: &tempfile::TempDir,
    master: [u8; 32],
    settings: Settings,
) -> Result<Tollgate, ServiceError> {
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = Arc::new(SqlStore::connect(&url).await.unwrap());
    Tollgate::new(
        store,
        &MasterKey::from_bytes(master),
        settings,
        Arc::new(ManualClock::at(NOW)),
    )
    .await
}

async fn service(dir: &tempfile::TempDir, master: [u8; 32]) -> Result<Tollgate, ServiceError> {
    let settings = Settings {
        issuer: "tollgate-test".into(),
        public_gateway_url: Some("ws://127.0.0.1:9".into()),
        ..Settings::default()
    };
    service_with(dir, master, settings).await
}

#[tokio::test]
async fn wrong_master_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    service(&dir, [1; 32]).await.unwrap();
    let err = service(&dir, [2; 32]).await.unwrap_err();
    assert!(matches!(err, ServiceError::InvalidInput(_)), "{err:?}");
    service(&dir, [1; 32]).await.unwrap();
}

#[tokio::test]
async fn authentication_requires_the_exact_token_of_that_project() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&dir, [1; 32]).await.unwrap();
    let a = svc
        .create_project("A", Scopes::project_default())
        .await
        .unwrap();
    let b = svc
        .create_project("B", Scopes::project_default())
        .await
        .unwrap();
    let a_id = a.project.id.to_string();
    let b_id = b.project.id.to_string();

    let p = svc.authenticate(&a_id, a.api_token.expose()).await.unwrap();
    assert_eq!(p.project_id, a.project.id);
    assert_eq!(p.token_id, a.token_id);

    for (project, token) in [
        (a_id.as_str(), b.api_token.expose()),
        (b_id.as_str(), a.api_token.expose()),
        (a_id.as_str(), ""),
        (a_id.as_str(), "PT00"),
        ("not-a-uuid", a.api_token.expose()),
        ("00000000-0000-0000-0000-000000000000", a.api_token.expose()),
    ] {
        assert!(
            matches!(
                svc.authenticate(project, token).await,
                Err(ServiceError::Unauthorized)
            ),
            "{project} accepted a wrong token"
        );
    }
    let upper = a.api_token.expose().to_uppercase();
    assert!(svc.authenticate(&a_id, &upper).await.is_err());
}

#[tokio::test]
async fn tokens_can_be_added_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&dir, [1; 32]).await.unwrap();
    let p = svc
        .create_project("P", Scopes::project_default())
        .await
        .unwrap();
    let only_chat: Scopes = [Scope::Chat].into_iter().collect();
    let (id, secret) = svc
        .create_api_token(p.project.id, "ci", only_chat)
        .await
        .unwrap();
    let principal = svc
        .authenticate(&p.project.id.to_string(), secret.expose())
        .await
        .unwrap();
    assert_eq!(principal.scopes, only_chat);
    assert_eq!(svc.list_api_tokens(p.project.id).await.unwrap().len(), 2);

    svc.revoke_api_token(p.project.id, id).await.unwrap();
    assert!(
        svc.authenticate(&p.project.id.to_string(), secret.expose())
            .await
            .is_err()
    );
    assert!(matches!(
        svc.revoke_api_token(p.project.id, id).await,
        Err(ServiceError::NotFound(_))
    ));
    assert!(matches!(
        svc.create_api_token(ProjectId::new_random(), "x", only_chat)
            .await,
        Err(ServiceError::NotFound("project"))
    ));
    assert!(matches!(
        svc.create_api_token(p.project.id, "x", Scopes::default())
            .await,
        Err(ServiceError::InvalidInput(_))
    ));
    assert!(matches!(
        svc.create_project("  ", Scopes::project_default()).await,
        Err(ServiceError::InvalidInput(_))
    ));
    assert_eq!(svc.list_projects().await.unwrap().len(), 1);
}

#[tokio::test]
async fn server_keys_name_their_project_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&dir, [1; 32]).await.unwrap();
    let a = svc
        .create_project("A", Scopes::project_default())
        .await
        .unwrap()
        .project
        .id;
    let b = svc
        .create_project("B", Scopes::project_default())
        .await
        .unwrap()
        .project
        .id;

    let (key, secret) = svc
        .create_server_key(a, Some("backend".into()))
        .await
        .unwrap();
    assert_eq!(key.project_id, a);
    assert_eq!(key.name, "backend");
    assert_eq!(key.revoked_at, None);
    let (unnamed, other) = svc.create_server_key(a, None).await.unwrap();
    assert_eq!(unnamed.name, server_keys::DEFAULT_SERVER_KEY_NAME);
    let (_, b_secret) = svc.create_server_key(b, None).await.unwrap();

    // The key alone names its project.
    assert_eq!(
        svc.authenticate_server_key(secret.expose()).await.unwrap(),
        Some(a)
    );
    assert_eq!(
        svc.authenticate_server_key(b_secret.expose())
            .await
            .unwrap(),
        Some(b)
    );

    // Listing shows metadata only: neither the key nor its hash.
    // (Both were made in the same second, which orders them by id only.)
    let mut listed = svc.list_server_keys(a).await.unwrap();
    listed.sort_by_key(|k| k.id);
    let mut expected = vec![key.clone(), unnamed.clone()];
    expected.sort_by_key(|k| k.id);
    assert_eq!(listed, expected);
    let shown = format!("{listed:?}");
    let hash = Secrets::new(&MasterKey::from_bytes([1; 32])).hash_server_key(secret.expose());
    assert!(!shown.contains(&secret.expose()[3..]), "{shown}");
    assert!(!shown.contains(&hash), "{shown}");
    assert!(!format!("{secret:?}").contains(&secret.expose()[3..]));

    // An API token is not a server key, nor is garbage or anything oversized.
    let api_token = svc
        .create_project("C", Scopes::project_default())
        .await
        .unwrap();
    let oversized = format!("{}{}", secret.expose(), "0".repeat(200));
    let upper = secret.expose().to_uppercase();
    for garbage in [
        "",
        "sk_",
        "sk_00",
        api_token.api_token.expose(),
        &upper,
        &secret.expose()[1..],
        &oversized,
        &"x".repeat(100_000),
    ] {
        assert_eq!(
            svc.authenticate_server_key(garbage).await.unwrap(),
            None,
            "{garbage:.20} accepted"
        );
    }

    // Another project cannot revoke it; its own project can, once, and it stops at once.
    assert!(!svc.revoke_server_key(b, key.id).await.unwrap());
    assert!(
        !svc.revoke_server_key(a, uuid::Uuid::new_v4())
            .await
            .unwrap()
    );
    assert_eq!(
        svc.authenticate_server_key(secret.expose()).await.unwrap(),
        Some(a)
    );
    assert!(svc.revoke_server_key(a, key.id).await.unwrap());
    assert!(!svc.revoke_server_key(a, key.id).await.unwrap());
    assert_eq!(
        svc.authenticate_server_key(secret.expose()).await.unwrap(),
        None
    );
    assert_eq!(
        svc.authenticate_server_key(other.expose()).await.unwrap(),
        Some(a),
        "revoking one key leaves the others"
    );
    let listed = svc.list_server_keys(a).await.unwrap();
    let revoked = listed.iter().find(|k| k.id == key.id).unwrap();
    assert!(revoked.revoked_at.is_some(), "revoked keys stay listed");

    // Names are bounded and printable; the project must exist.
    for bad in ["", "  ", "a\nb", "\u{7f}", &"n".repeat(MAX_NAME_CHARS + 1)] {
        assert!(
            matches!(
                svc.create_server_key(a, Some(bad.to_owned())).await,
                Err(ServiceError::InvalidInput(_))
            ),
            "{bad:?} accepted"
        );
    }
    let nowhere = ProjectId::new_random();
    assert!(matches!(
        svc.create_server_key(nowhere, None).await,
        Err(ServiceError::NotFound("project"))
    ));
    assert!(matches!(
        svc.list_server_keys(nowhere).await,
        Err(ServiceError::NotFound("project"))
    ));
    assert!(!svc.revoke_server_key(nowhere, key.id).await.unwrap());
}

#[tokio::test]
async fn issued_tokens_verify_with_the_project_key_and_carry_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&dir, [1; 32]).await.unwrap();
    let p = svc
        .create_project("P", Scopes::project_default())
        .await
        .unwrap();
    let principal = svc
        .authenticate(&p.project.id.to_string(), p.api_token.expose())
        .await
        .unwrap();
    let body = json!({"ttl": 15, "channels": {"room": {"read": true, "write": true}},
                      "member_id": "alice", "state": {"n": 1}});
    let token = svc
        .issue_realtime_token(&principal, Product::Chat, body.as_object().unwrap())
        .await
        .unwrap();

    let header_kid: tollgate_token::KeyId = {
        let unverified = token.split('.').next().unwrap();
        use base64::Engine as _;
        let h: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(unverified)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(h["alg"], "ES256");
        assert_eq!(h["typ"], "CRT");
        assert_eq!(h["ch"], "ws://127.0.0.1:9");
        h["kid"].as_str().unwrap().parse().unwrap()
    };
    let vk = svc.verifying_key(&header_kid).await.unwrap().unwrap();
    let verified = jose::verify(&token, 1 << 20, |_| Some(&*vk)).unwrap();
    let c = &verified.claims;
    assert_eq!(c["iss"], "tollgate-test");
    assert_eq!(c["aud"], p.project.id.to_string());
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["iat"], 1_800_000_000);
    assert_eq!(c["exp"], 1_800_000_000 + 900);
    assert_eq!(c["info"], json!({"n": 1}));

    // The key survives a restart: a new service over the same database verifies it.
    let again = service(&dir, [1; 32]).await.unwrap();
    let vk2 = again.verifying_key(&header_kid).await.unwrap().unwrap();
    assert!(jose::verify(&token, 1 << 20, |_| Some(&*vk2)).is_ok());
}

#[tokio::test]
async fn scope_and_validation_failures_mint_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&dir, [1; 32]).await.unwrap();
    let p = svc
        .create_project("P", Scopes::project_default())
        .await
        .unwrap();
    let (_, chat_only) = svc
        .create_api_token(p.project.id, "chat", [Scope::Chat].into_iter().collect())
        .await
        .unwrap();
    let principal = svc
        .authenticate(&p.project.id.to_string(), chat_only.expose())
        .await
        .unwrap();
    let body = json!({"ttl": 1, "channels": {"a": {"read": true}}});
    assert!(matches!(
        svc.issue_realtime_token(&principal, Product::PubSub, body.as_object().unwrap())
            .await,
        Err(ServiceError::Unauthorized)
    ));
    let bad = json!({"ttl": 0});
    match svc
        .issue_realtime_token(&principal, Product::Chat, bad.as_object().unwrap())
        .await
    {
        Err(ServiceError::Validation(errors)) => assert_eq!(errors.len(), 2),
        other => panic!("expected validation errors, got {other:?}"),
    }
}

mod fabric {
    use serde_json::{Map, Value, json};
    use tollgate_token::jose::{Algorithm, SigningKey, dpop};

    use tollgate_token::UnixTime;

    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    async fn setup() -> (tempfile::TempDir, Tollgate, Arc<ManualClock>, Principal) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let store = Arc::new(SqlStore::connect(&url).await.unwrap());
        let clock = Arc::new(ManualClock::at(1_800_000_000));
        let svc = Tollgate::new(
            store,
            &MasterKey::from_bytes([1; 32]),
            Settings::default(),
            clock.clone(),
        )
        .await
        .unwrap();
        let p = svc
            .create_project("P", Scopes::project_default())
            .await
            .unwrap();
        let principal = svc
            .authenticate(&p.project.id.to_string(), p.api_token.expose())
            .await
            .unwrap();
        (dir, svc, clock, principal)
    }

    fn codes(e: ServiceError) -> Vec<&'static str> {
        match e {
            ServiceError::Validation(v) => v.iter().map(|e| e.code).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn expired_tokens_are_refused_with_token_expired() {
        let (_dir, svc, clock, p) = setup().await;
        let t = svc
            .create_subscriber_token(
                &p,
                &body(json!({"reference": "a", "expire_at": 1_800_000_100})),
            )
            .await
            .unwrap();
        let rt = t.refresh_token.unwrap();
        // The refresh token outlives the access token by five minutes.
        clock.set(1_800_000_100);
        assert!(svc.authenticate_sat(&t.token).await.is_err(), "SAT expired");
        clock.set(1_800_000_399);
        let again = svc
            .refresh_subscriber_token(Some(&p), None, &body(json!({"refresh_token": rt})))
            .await
            .unwrap();
        clock.set(1_800_000_399 + 7200 + 300);
        let err = svc
            .refresh_subscriber_token(
                Some(&p),
                None,
                &body(json!({"refresh_token": again.refresh_token.unwrap()})),
            )
            .await
            .unwrap_err();
        assert_eq!(codes(err), ["token_expired"]);
    }

    #[tokio::test]
    async fn rotating_the_encryption_key_keeps_live_tokens_working() {
        let (_dir, svc, clock, p) = setup().await;
        let kid_of = |t: &str| tollgate_token::jose::jwe::peek_kid(t, 8192).unwrap();
        let before = svc
            .create_subscriber_token(&p, &body(json!({"reference": "a"})))
            .await
            .unwrap();
        let old_kid = kid_of(&before.token);
        let new_kid = svc.rotate_subscriber_token_key(p.project_id).await.unwrap();
        assert_ne!(old_kid, new_kid);

        // Old tokens still work; new ones use the new key.
        svc.authenticate_sat(&before.token).await.unwrap();
        let after = svc
            .create_subscriber_token(&p, &body(json!({"reference": "b"})))
            .await
            .unwrap();
        assert_eq!(kid_of(&after.token), new_kid);
        let refreshed = svc
            .refresh_subscriber_token(
                Some(&p),
                None,
                &body(json!({"refresh_token": before.refresh_token.unwrap()})),
            )
            .await
            .unwrap();
        assert_eq!(
            kid_of(&refreshed.token),
            new_kid,
            "a refresh moves to the new key"
        );

        // The old key decrypts until its retiring period is over, then nothing. (A fresh
        // service, so no cache answers for it.)
        let max = Settings::default().max_subscriber_token_lifetime;
        let retire_at = clock.now().seconds() + max + 300;
        let fresh = Tollgate::new(
            svc.inner.store.clone(),
            &MasterKey::from_bytes([1; 32]),
            Settings::default(),
            clock.clone(),
        )
        .await
        .unwrap();
        let decrypts = |t: i64| {
            let fresh = fresh.clone();
            let kid = old_kid.clone();
            async move {
                fresh
                    .inner
                    .keys
                    .decryption(&*fresh.inner.store, &fresh.inner.secrets, &kid, UnixTime(t))
                    .await
                    .unwrap()
                    .is_some()
            }
        };
        assert!(decrypts(retire_at - 1).await);
        let gone = Tollgate::new(
            svc.inner.store.clone(),
            &MasterKey::from_bytes([1; 32]),
            Settings::default(),
            clock.clone(),
        )
        .await
        .unwrap();
        assert!(
            gone.inner
                .keys
                .decryption(
                    &*gone.inner.store,
                    &gone.inner.secrets,
                    &old_kid,
                    UnixTime(retire_at)
                )
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_family_cannot_be_refreshed_beyond_its_lifetime() {
        let (_dir, svc, clock, p) = setup().await;
        let t = svc
            .create_subscriber_token(&p, &body(json!({"reference": "a"})))
            .await
            .unwrap();
        let mut rt = t.refresh_token.unwrap();
        let start = clock.now().seconds();
        let limit = Settings::default().max_family_lifetime;
        // Refresh every hour and a half until the family is thirty days old.
        let mut at = start;
        while at + 5400 <= start + limit {
            at += 5400;
            clock.set(at);
            rt = svc
                .refresh_subscriber_token(Some(&p), None, &body(json!({"refresh_token": rt})))
                .await
                .unwrap()
                .refresh_token
                .unwrap();
        }
        clock.set(start + limit + 1);
        let err = svc
            .refresh_subscriber_token(Some(&p), None, &body(json!({"refresh_token": rt})))
            .await
            .unwrap_err();
        assert_eq!(codes(err), ["token_expired"]);
    }

    #[tokio::test]
    async fn stale_device_proofs_are_refused_and_burn_nothing() {
        let (_dir, svc, clock, p) = setup().await;
        let key = SigningKey::generate(Algorithm::EdDSA, "d".parse().unwrap())
            .unwrap()
            .0;
        let jwk = key.verifying_key().to_jwk().unwrap();
        let jkt = dpop::thumbprint(&jwk).unwrap();
        let t = svc
            .create_subscriber_token(&p, &body(json!({"reference": "a", "fingerprint": jkt})))
            .await
            .unwrap();
        let rt = t.refresh_token.unwrap();
        let proof = |iat: i64, jti: &str| {
            use base64::Engine as _;
            let b64 =
                |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
            let mut public = jwk.clone();
            public.remove("kid");
            let input = format!(
                "{}.{}",
                b64(json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": public})),
                b64(json!({"jti": jti, "htm": "POST",
                           "htu": format!("http://x{}", crate::fabric::REFRESH_PATH), "iat": iat}))
            );
            let sig = key.sign(input.as_bytes()).unwrap();
            format!(
                "{input}.{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
            )
        };
        let refresh = |proof: String| {
            let svc = svc.clone();
            let p = p.clone();
            let rt = rt.clone();
            async move {
                svc.refresh_subscriber_token(
                    Some(&p),
                    Some(&proof),
                    &body(json!({"refresh_token": rt})),
                )
                .await
            }
        };
        let now = clock.now().seconds();
        for stale in [now - 61, now + 61] {
            assert!(matches!(
                refresh(proof(stale, &format!("s{stale}"))).await,
                Err(ServiceError::Unauthorized)
            ));
        }
        // The refused attempts spent nothing: a good proof still refreshes.
        assert!(refresh(proof(now, "ok")).await.is_ok());
    }
}

/// Records what a node announces, as the broker would carry it.
#[derive(Debug, Default)]
struct Recorder(std::sync::Mutex<Vec<Invalidation>>);

impl Invalidations for Recorder {
    fn publish(&self, invalidation: Invalidation) {
        self.0.lock().unwrap().push(invalidation);
    }
}

#[tokio::test]
async fn changes_are_announced_and_forgetting_them_reloads_another_nodes_caches() {
    use tollgate_token::centrifugo::{IdFormat, Namespace, Rule};
    let dir = tempfile::tempdir().unwrap();
    // Two services on one database: two nodes of one installation.
    let a = service(&dir, [7; 32]).await.unwrap();
    let b = service(&dir, [7; 32]).await.unwrap();
    let sent = Arc::new(Recorder::default());
    a.set_invalidations(sent.clone());
    let created = a
        .create_project("P", Scopes::project_default())
        .await
        .unwrap();
    let p = created.project.id;
    let names = |all: &[Namespace]| all.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
    assert!(!names(&b.namespaces(p).await.unwrap()).contains(&"team".to_owned()));
    let team = Namespace {
        name: "team".into(),
        rule: Rule::Member("team".into()),
        id_format: IdFormat::Token,
        token_ttl: 600,
    };
    a.put_namespace(p, team).await.unwrap();
    // B still answers from its cache, until it is told.
    assert!(!names(&b.namespaces(p).await.unwrap()).contains(&"team".to_owned()));
    let announced = sent.0.lock().unwrap().clone();
    assert_eq!(
        announced,
        [Invalidation::ProjectCreated(p), Invalidation::Namespaces(p)]
    );
    // Another project's invalidation changes nothing for this one; this one's reloads.
    b.forget(Invalidation::Namespaces(ProjectId::new_random()));
    assert!(!names(&b.namespaces(p).await.unwrap()).contains(&"team".to_owned()));
    b.forget(Invalidation::Namespaces(p));
    assert!(names(&b.namespaces(p).await.unwrap()).contains(&"team".to_owned()));

    // A rotated signing key: B signs with the old one until told.
    let signer = |t: &Tollgate| {
        let t = t.clone();
        async move {
            t.inner
                .keys
                .active(&*t.inner.store, &t.inner.secrets, p)
                .await
                .unwrap()
                .kid()
                .clone()
        }
    };
    let old = signer(&b).await;
    let new = a
        .rotate_signing_key(p, jose::Algorithm::ES256, 86_400)
        .await
        .unwrap();
    assert_eq!(signer(&b).await, old);
    assert_eq!(sent.0.lock().unwrap().last(), Some(&Invalidation::Keys(p)));
    b.forget_everything();
    assert_eq!(signer(&b).await, new);
}
