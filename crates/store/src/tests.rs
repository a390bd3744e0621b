//! The same behavioural checks against every backend: a real SQLite file always, and a real
//! PostgreSQL server when `TOLLGATE_TEST_POSTGRES_URL` names one (the project's test script
//! sets it to the local server).

use std::sync::Arc;

use tollgate_token::Scope;

use super::*;

fn project(name: &str, at: i64) -> ProjectRecord {
    ProjectRecord {
        id: ProjectId::new_random(),
        name: name.into(),
        created_at: UnixTime(at),
    }
}

fn token(project: ProjectId, hash: &str) -> NewApiToken {
    NewApiToken {
        id: ApiTokenId::new_random(),
        project_id: project,
        name: "t".into(),
        token_hash: hash.into(),
        scopes: [Scope::Pubsub, Scope::Chat].into_iter().collect(),
        created_at: UnixTime(10),
    }
}

fn key(project: ProjectId) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: KeyId::new_random(),
        project_id: project,
        alg: tollgate_token::jose::Algorithm::ES256,
        state: KeyState::Active,
        sealed_secret: "c2VhbGVk".into(),
        public_key: Some("cHVi".into()),
        created_at: UnixTime(10),
        not_after: None,
    }
}

fn subscriber(project: ProjectId, reference: &str, at: i64) -> (SubscriberRecord, AddressRecord) {
    let id = uuid::Uuid::new_v4();
    (
        SubscriberRecord {
            id,
            project_id: project,
            reference: reference.into(),
            profile: SubscriberProfile {
                first_name: Some("Ada".into()),
                ..SubscriberProfile::default()
            },
            password_hash: None,
            created_at: UnixTime(at),
            updated_at: UnixTime(at),
        },
        AddressRecord {
            id: uuid::Uuid::new_v4(),
            project_id: project,
            subscriber_id: id,
            name: format!("/private/{reference}"),
            display_name: reference.into(),
            created_at: UnixTime(at),
        },
    )
}

fn refresh(family: uuid::Uuid, parent: Option<uuid::Uuid>) -> NewRefreshToken {
    NewRefreshToken {
        jti: uuid::Uuid::new_v4(),
        family_id: family,
        parent_jti: parent,
        expires_at: UnixTime(10_000),
        created_at: UnixTime(10),
    }
}

async fn exercise_subscribers(store: Arc<dyn Store>) {
    let p = project("subs", 1);
    store
        .create_project(&p, &token(p.id, "hash-subs"), &key(p.id))
        .await
        .unwrap();

    // Upsert creates once, then updates only the given fields, keeping the id.
    let (s, a) = subscriber(p.id, "ada@example.com", 5);
    let created = store.upsert_subscriber(&s, &a, None).await.unwrap();
    assert_eq!(created.id, s.id);
    let (mut again, a2) = subscriber(p.id, "ada@example.com", 6);
    again.profile = SubscriberProfile {
        last_name: Some("Lovelace".into()),
        ..SubscriberProfile::default()
    };
    again.password_hash = Some("$argon2id$x".into());
    let family_id = uuid::Uuid::new_v4();
    let login = Login {
        family_id,
        kind: "subscriber".into(),
        first_refresh: refresh(family_id, None),
    };
    let updated = store
        .upsert_subscriber(&again, &a2, Some(&login))
        .await
        .unwrap();
    let fam_of_login = store.family(login.family_id).await.unwrap().unwrap();
    assert_eq!(
        fam_of_login.subscriber_id,
        Some(s.id),
        "the login joins the existing subscriber"
    );
    assert_eq!(
        updated.id, s.id,
        "the same reference keeps its subscriber id"
    );
    assert_eq!(updated.profile.first_name.as_deref(), Some("Ada"));
    assert_eq!(updated.profile.last_name.as_deref(), Some("Lovelace"));
    assert_eq!(updated.password_hash.as_deref(), Some("$argon2id$x"));
    assert_eq!(
        store.subscriber_addresses(p.id, s.id).await.unwrap(),
        vec![a.clone()],
        "exactly the first address"
    );
    assert_eq!(store.address(p.id, a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        store.address(ProjectId::new_random(), a.id).await.unwrap(),
        None
    );

    // Insert refuses a taken reference.
    let (dup, dup_a) = subscriber(p.id, "ada@example.com", 7);
    assert!(matches!(
        store.insert_subscriber(&dup, &dup_a).await.unwrap_err(),
        StoreError::Conflict
    ));

    // Pagination walks every subscriber once, in creation order.
    let mut ids = vec![s.id];
    for i in 0..4 {
        let (x, xa) = subscriber(p.id, &format!("u{i}@example.com"), 10 + i);
        store.insert_subscriber(&x, &xa).await.unwrap();
        ids.push(x.id);
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_subscribers(p.id, after, 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| r.id);
        seen.extend(page.iter().map(|r| r.id));
    }
    assert_eq!(seen, ids);

    // Updates: partial, reference conflicts refused, unknown id is None.
    let patch = SubscriberProfile {
        country: Some("UK".into()),
        ..SubscriberProfile::default()
    };
    let u = store
        .update_subscriber(
            p.id,
            s.id,
            Some("ada@new.example"),
            &patch,
            None,
            UnixTime(50),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.reference, "ada@new.example");
    assert_eq!(u.profile.country.as_deref(), Some("UK"));
    assert_eq!(u.profile.last_name.as_deref(), Some("Lovelace"));
    assert_eq!(u.updated_at, UnixTime(50));
    assert!(matches!(
        store
            .update_subscriber(
                p.id,
                s.id,
                Some("u0@example.com"),
                &patch,
                None,
                UnixTime(51)
            )
            .await
            .unwrap_err(),
        StoreError::Conflict
    ));
    assert_eq!(
        store
            .update_subscriber(p.id, uuid::Uuid::new_v4(), None, &patch, None, UnixTime(1))
            .await
            .unwrap(),
        None
    );

    // Refresh rotation: once, then a replay revokes the family.
    let fam = FamilyRecord {
        id: uuid::Uuid::new_v4(),
        project_id: p.id,
        subscriber_id: Some(s.id),
        kind: "subscriber".into(),
        created_at: UnixTime(10),
        revoked_at: None,
    };
    let rt1 = refresh(fam.id, None);
    store.insert_family(&fam, Some(&rt1)).await.unwrap();
    let rt2 = refresh(fam.id, Some(rt1.jti));
    assert_eq!(
        store
            .rotate_refresh_token(fam.id, rt1.jti, &rt2, 20_000, 0)
            .await
            .unwrap(),
        Rotation::Rotated
    );
    let rt3 = refresh(fam.id, Some(rt1.jti));
    assert_eq!(
        store
            .rotate_refresh_token(fam.id, rt1.jti, &rt3, 21_000, 0)
            .await
            .unwrap(),
        Rotation::Reused
    );
    assert_eq!(
        store.family(fam.id).await.unwrap().unwrap().revoked_at,
        Some(UnixTime(21))
    );
    // The legitimate successor dies with its family.
    assert_eq!(
        store
            .rotate_refresh_token(fam.id, rt2.jti, &rt3, 22_000, 0)
            .await
            .unwrap(),
        Rotation::Reused
    );
    assert_eq!(
        store
            .rotate_refresh_token(fam.id, uuid::Uuid::new_v4(), &rt3, 22_000, 0)
            .await
            .unwrap(),
        Rotation::Unknown
    );

    // Concurrent rotations of one token: exactly one wins.
    let fam2 = FamilyRecord {
        id: uuid::Uuid::new_v4(),
        ..fam.clone()
    };
    let first = refresh(fam2.id, None);
    store.insert_family(&fam2, Some(&first)).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        let next = refresh(fam2.id, Some(first.jti));
        let (f, j) = (fam2.id, first.jti);
        tasks.push(tokio::spawn(async move {
            store.rotate_refresh_token(f, j, &next, 30_000, 2_000).await
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap().unwrap());
    }
    let rotated = outcomes.iter().filter(|o| **o == Rotation::Rotated).count();
    assert_eq!(
        rotated, 1,
        "exactly one concurrent rotation wins: {outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Rotation::Rotated | Rotation::Contended)),
        "losers within the leeway are contended, not replays: {outcomes:?}"
    );
    assert_eq!(
        store.family(fam2.id).await.unwrap().unwrap().revoked_at,
        None,
        "the winner's family survives contention"
    );
    // After the leeway, the same token is a replay.
    let late = refresh(fam2.id, Some(first.jti));
    assert_eq!(
        store
            .rotate_refresh_token(fam2.id, first.jti, &late, 32_000, 2_000)
            .await
            .unwrap(),
        Rotation::Reused
    );

    // The leeway is measured in milliseconds: spent at 40.9 s, presented again at 42.4 s
    // is 1.5 s later (contended), though the whole seconds differ by two.
    let fam3 = FamilyRecord {
        id: uuid::Uuid::new_v4(),
        ..fam.clone()
    };
    let first = refresh(fam3.id, None);
    store.insert_family(&fam3, Some(&first)).await.unwrap();
    let rotate = |at_ms: i64| {
        let (store, next) = (store.clone(), refresh(fam3.id, Some(first.jti)));
        let (f, j) = (fam3.id, first.jti);
        async move { store.rotate_refresh_token(f, j, &next, at_ms, 2_000).await }
    };
    assert_eq!(rotate(40_900).await.unwrap(), Rotation::Rotated);
    assert_eq!(rotate(42_400).await.unwrap(), Rotation::Contended);
    assert_eq!(rotate(42_899).await.unwrap(), Rotation::Contended);
    assert_eq!(rotate(42_900).await.unwrap(), Rotation::Reused);
    assert_eq!(
        store.family(fam3.id).await.unwrap().unwrap().revoked_at,
        Some(UnixTime(42)),
        "revoked_at keeps whole seconds"
    );

    // DPoP proof ids: fresh once, then a replay.
    assert!(
        store
            .record_dpop_proof("jkt:p1", UnixTime(100), UnixTime(10))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_dpop_proof("jkt:p1", UnixTime(100), UnixTime(11))
            .await
            .unwrap()
    );
    // Expired ids are forgotten.
    assert!(
        store
            .record_dpop_proof("jkt:p1", UnixTime(300), UnixTime(200))
            .await
            .unwrap()
    );

    // Deleting a subscriber removes its addresses and families.
    assert!(store.delete_subscriber(p.id, s.id).await.unwrap());
    assert!(!store.delete_subscriber(p.id, s.id).await.unwrap());
    assert_eq!(store.subscriber(p.id, s.id).await.unwrap(), None);
    assert_eq!(store.address(p.id, a.id).await.unwrap(), None);
    assert_eq!(store.family(fam.id).await.unwrap(), None);
}

async fn exercise_channels(store: &dyn Store) {
    let p = project("chan", 1);
    let k1 = key(p.id);
    store
        .create_project(&p, &token(p.id, "hash-chan"), &k1)
        .await
        .unwrap();
    let t = UnixTime(5);
    assert!(
        store
            .put_member(p.id, "company", "c1", "u1", t)
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_member(p.id, "company", "c1", "u1", t)
            .await
            .unwrap()
    );
    assert!(
        store
            .put_member(p.id, "company", "c1", "u2", UnixTime(6))
            .await
            .unwrap()
    );
    assert!(store.is_member(p.id, "company", "c1", "u1").await.unwrap());
    assert!(
        !store
            .is_member(p.id, "organization", "c1", "u1")
            .await
            .unwrap()
    );
    assert!(
        !store
            .is_member(ProjectId::new_random(), "company", "c1", "u1")
            .await
            .unwrap()
    );
    let members = store.members(p.id, "company", "c1").await.unwrap();
    assert_eq!(
        members,
        vec![("u1".to_owned(), t), ("u2".to_owned(), UnixTime(6))]
    );
    assert!(
        store
            .delete_member(p.id, "company", "c1", "u1")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_member(p.id, "company", "c1", "u1")
            .await
            .unwrap()
    );
    assert!(!store.is_member(p.id, "company", "c1", "u1").await.unwrap());

    let ns = NamespaceRecord {
        name: "team".into(),
        rule: "member:team".into(),
        id_format: "token".into(),
        token_ttl: 60,
    };
    store.put_namespace(p.id, &ns, t).await.unwrap();
    let replaced = NamespaceRecord {
        token_ttl: 120,
        ..ns.clone()
    };
    store.put_namespace(p.id, &replaced, t).await.unwrap();
    assert_eq!(store.namespaces(p.id).await.unwrap(), vec![replaced]);
    assert!(store.delete_namespace(p.id, "team").await.unwrap());
    assert!(store.namespaces(p.id).await.unwrap().is_empty());

    let auth = UserAuthKeyRecord {
        id: uuid::Uuid::new_v4(),
        project_id: p.id,
        issuer: "https://app.example".into(),
        audience: "tollgate".into(),
        alg: "HS256".into(),
        key_data: "sealed".into(),
        created_at: t,
    };
    store.insert_user_auth_key(&auth).await.unwrap();
    assert_eq!(
        store.user_auth_key("https://app.example").await.unwrap(),
        Some(auth.clone())
    );
    assert!(matches!(
        store
            .insert_user_auth_key(&UserAuthKeyRecord {
                id: uuid::Uuid::new_v4(),
                ..auth
            })
            .await
            .unwrap_err(),
        StoreError::Conflict
    ));

    // Rotation: the new key is active, the old one retiring until a time, then not live.
    let k2 = SigningKeyRecord {
        created_at: UnixTime(50),
        ..key(p.id)
    };
    store.rotate_signing_key(&k2, UnixTime(100)).await.unwrap();
    let all = store.all_signing_keys(p.id).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].kid, k2.kid);
    assert_eq!(all[1].state, KeyState::Retiring);
    assert_eq!(all[1].not_after, Some(UnixTime(100)));
    let live = |at| async move {
        store
            .live_signing_keys(UnixTime(at))
            .await
            .unwrap()
            .into_iter()
            .filter(|k| k.project_id == p.id)
            .map(|k| k.kid)
            .collect::<Vec<_>>()
    };
    assert_eq!(live(99).await, vec![k2.kid.clone(), k1.kid.clone()]);
    assert_eq!(live(100).await, vec![k2.kid.clone()]);
}

async fn exercise_server_keys(store: &dyn Store) {
    let a = project("keys-a", 1);
    let b = project("keys-b", 1);
    for (p, h) in [(&a, "hash-keys-a"), (&b, "hash-keys-b")] {
        store
            .create_project(p, &token(p.id, h), &key(p.id))
            .await
            .unwrap();
    }
    let server_key = |project: ProjectId, hash: &str, at: i64| ServerKeyRecord {
        id: uuid::Uuid::new_v4(),
        project_id: project,
        name: format!("key {hash}"),
        key_hash: hash.into(),
        created_at: UnixTime(at),
        revoked_at: None,
    };
    let k1 = server_key(a.id, "sk-hash-1", 20);
    let k2 = server_key(a.id, "sk-hash-2", 10);
    let kb = server_key(b.id, "sk-hash-b", 10);
    for k in [&k1, &k2, &kb] {
        store.insert_server_key(k).await.unwrap();
    }

    // The hash alone finds the key and so its project.
    assert_eq!(
        store.active_server_key("sk-hash-1").await.unwrap(),
        Some(k1.clone())
    );
    assert_eq!(
        store
            .active_server_key("sk-hash-b")
            .await
            .unwrap()
            .map(|k| k.project_id),
        Some(b.id)
    );
    assert_eq!(store.active_server_key("sk-hash-x").await.unwrap(), None);

    // Hashes are unique across projects; a missing project is refused.
    assert!(matches!(
        store
            .insert_server_key(&server_key(b.id, "sk-hash-1", 30))
            .await
            .unwrap_err(),
        StoreError::Conflict
    ));
    assert!(matches!(
        store
            .insert_server_key(&server_key(ProjectId::new_random(), "sk-hash-3", 30))
            .await
            .unwrap_err(),
        StoreError::NotFound
    ));

    // Listing is per project, oldest first.
    assert_eq!(
        store.list_server_keys(a.id).await.unwrap(),
        vec![k2.clone(), k1.clone()]
    );

    // Revocation is project-scoped, immediate and reported once.
    assert!(
        !store
            .revoke_server_key(b.id, k1.id, UnixTime(40))
            .await
            .unwrap(),
        "another project cannot revoke the key"
    );
    assert!(
        !store
            .revoke_server_key(a.id, uuid::Uuid::new_v4(), UnixTime(40))
            .await
            .unwrap()
    );
    assert!(
        store
            .revoke_server_key(a.id, k1.id, UnixTime(41))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_server_key(a.id, k1.id, UnixTime(42))
            .await
            .unwrap()
    );
    assert_eq!(store.active_server_key("sk-hash-1").await.unwrap(), None);
    let listed = store.list_server_keys(a.id).await.unwrap();
    assert_eq!(listed.len(), 2, "revoked keys stay listed");
    assert_eq!(listed[1].revoked_at, Some(UnixTime(41)));
    assert!(
        store
            .active_server_key("sk-hash-2")
            .await
            .unwrap()
            .is_some()
    );
}

async fn exercise(store: &dyn Store) {
    store.ping().await.unwrap();

    // Settings: first writer wins, later callers read it back.
    assert_eq!(store.setting_or_init("s", "one").await.unwrap(), "one");
    assert_eq!(store.setting_or_init("s", "two").await.unwrap(), "one");

    let p = project("first", 1);
    let t = token(p.id, "hash-1");
    let k = key(p.id);
    store.create_project(&p, &t, &k).await.unwrap();
    assert_eq!(store.project(p.id).await.unwrap(), Some(p.clone()));
    assert_eq!(store.list_projects().await.unwrap(), vec![p.clone()]);

    // A failed creation leaves nothing behind: the token hash collides, so the project and
    // key inserted before it in the same transaction must not survive.
    let p2 = project("second", 2);
    let k2 = key(p2.id);
    let err = store
        .create_project(&p2, &token(p2.id, "hash-1"), &k2)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(store.project(p2.id).await.unwrap(), None);
    assert_eq!(store.signing_key(&k2.kid).await.unwrap(), None);
    assert_eq!(store.list_projects().await.unwrap().len(), 1);

    // Token lookup needs both the project and the hash.
    let found = store
        .active_api_token(p.id, "hash-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, t.id);
    assert!(found.scopes.contains(Scope::Chat));
    assert_eq!(store.active_api_token(p2.id, "hash-1").await.unwrap(), None);
    assert_eq!(store.active_api_token(p.id, "hash-2").await.unwrap(), None);

    // More tokens; revocation is immediate and idempotent.
    let extra = token(p.id, "hash-2");
    store.insert_api_token(&extra).await.unwrap();
    assert_eq!(store.list_api_tokens(p.id).await.unwrap().len(), 2);
    assert!(
        store
            .revoke_api_token(p.id, extra.id, UnixTime(99))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_api_token(p.id, extra.id, UnixTime(100))
            .await
            .unwrap()
    );
    assert_eq!(store.active_api_token(p.id, "hash-2").await.unwrap(), None);
    let listed = store.list_api_tokens(p.id).await.unwrap();
    let revoked = listed.iter().find(|r| r.id == extra.id).unwrap();
    assert_eq!(revoked.revoked_at, Some(UnixTime(99)));
    // Revoking through the wrong project does nothing.
    assert!(
        !store
            .revoke_api_token(p2.id, t.id, UnixTime(1))
            .await
            .unwrap()
    );

    // Tokens for a missing project are refused.
    let orphan = token(ProjectId::new_random(), "hash-3");
    assert!(matches!(
        store.insert_api_token(&orphan).await.unwrap_err(),
        StoreError::NotFound
    ));
    assert!(matches!(
        store
            .insert_api_token(&token(p.id, "hash-1"))
            .await
            .unwrap_err(),
        StoreError::Conflict
    ));

    // Keys.
    let got = store.signing_key(&k.kid).await.unwrap().unwrap();
    assert_eq!(got, k);
    assert_eq!(
        store.signing_keys(p.id, KeyState::Active).await.unwrap(),
        vec![k.clone()]
    );
    assert!(
        store
            .signing_keys(p.id, KeyState::Retiring)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn sqlite_store_behaves() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/db.sqlite", dir.path().display());
    let store = SqlStore::connect(&url).await.unwrap();
    exercise(&store).await;
    exercise_subscribers(Arc::new(store.clone())).await;
    exercise_channels(&store).await;
    exercise_server_keys(&store).await;
    store.close().await;

    // Reopening applies no migration twice and keeps the data.
    let again = SqlStore::connect(&url).await.unwrap();
    assert_eq!(again.list_projects().await.unwrap().len(), 5);
}

#[tokio::test]
async fn postgres_store_behaves() {
    let Some(admin) = testing::PgTestDatabase::admin_url_from_env() else {
        return;
    };
    let db = testing::PgTestDatabase::create(&admin).await;
    let store = SqlStore::connect(&db.url).await.unwrap();
    exercise(&store).await;
    exercise_subscribers(Arc::new(store.clone())).await;
    exercise_channels(&store).await;
    exercise_server_keys(&store).await;
    store.close().await;
    db.drop_now().await;
}

/// `PRAGMA synchronous` as every pooled connection reports it (0 OFF, 1 NORMAL, 2 FULL).
async fn synchronous_levels(store: &SqlStore) -> Vec<i64> {
    // Hold every connection at once, so the answer covers the whole pool.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(store.pool.acquire().await.unwrap());
    }
    let mut levels = Vec::new();
    for conn in &mut held {
        let row = sqlx::query("PRAGMA synchronous")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        levels.push(sqlx::Row::try_get::<i64, _>(&row, 0).unwrap());
    }
    levels
}

#[tokio::test]
async fn sqlite_commits_reach_the_disk_by_default() {
    // A commit acknowledged before it is on disk can come back after a power loss: a spent
    // refresh token would be spendable again.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/db.sqlite", dir.path().display());
    let store = SqlStore::connect(&url).await.unwrap();
    assert_eq!(
        synchronous_levels(&store).await,
        [2; 4],
        "FULL on every connection"
    );
    store.close().await;
}

#[tokio::test]
async fn sqlite_normal_durability_is_an_explicit_choice() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/db.sqlite", dir.path().display());
    let options = SqlOptions {
        sqlite_synchronous: SqliteSynchronous::Normal,
    };
    let store = SqlStore::connect_with(&url, options).await.unwrap();
    assert_eq!(
        synchronous_levels(&store).await,
        [1; 4],
        "NORMAL when asked"
    );
    store.close().await;
}
