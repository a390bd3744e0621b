//! The same behavioural checks against every backend: a real SQLite file always, and a real
//! PostgreSQL server when `TOLLGATE_TEST_POSTGRES_URL` names one (the project's test script
//! sets it to the local server).

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
    store.close().await;

    // Reopening applies no migration twice and keeps the data.
    let again = SqlStore::connect(&url).await.unwrap();
    assert_eq!(again.list_projects().await.unwrap().len(), 1);
}

#[tokio::test]
async fn postgres_store_behaves() {
    let Some(admin) = testing::PgTestDatabase::admin_url_from_env() else {
        return;
    };
    let db = testing::PgTestDatabase::create(&admin).await;
    let store = SqlStore::connect(&db.url).await.unwrap();
    exercise(&store).await;
    store.close().await;
    db.drop_now().await;
}
