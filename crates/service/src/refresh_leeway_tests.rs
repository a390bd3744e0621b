//! The refresh-reuse leeway measured with sub-second precision (issue #13): a retry of a
//! just-spent refresh token inside `fabric.refresh_reuse_leeway` is the same client's retry
//! (refused, login kept), whatever the wall-clock second the refresh landed in; after it,
//! a replay (login revoked).

use serde_json::{Map, Value, json};
use tollgate_store::SqlStore;

use super::*;

/// The start of a wall-clock second, in milliseconds.
const SECOND: i64 = 1_800_000_000_000;

fn body(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

async fn setup() -> (tempfile::TempDir, Tollgate, Arc<ManualClock>, Principal) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = Arc::new(SqlStore::connect(&url).await.unwrap());
    let clock = Arc::new(ManualClock::default());
    clock.set_millis(SECOND);
    let settings = Settings::default();
    assert_eq!(settings.refresh_reuse_leeway, 2, "the documented default");
    let svc = Tollgate::new(
        store,
        &MasterKey::from_bytes([4; 32]),
        settings,
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

/// Spends a fresh login's refresh token at `spent_ms`, presents it again at `again_ms`,
/// and reports whether the login (the first refresh's new tokens) survived.
async fn login_survives_second_use(spent_ms: i64, again_ms: i64) -> bool {
    let (_dir, svc, clock, p) = setup().await;
    let login = svc
        .create_subscriber_token(&p, &body(json!({"reference": "a"})))
        .await
        .unwrap();
    let rt = json!({"refresh_token": login.refresh_token.unwrap()});
    clock.set_millis(spent_ms);
    let winner = svc
        .refresh_subscriber_token(Some(&p), None, &body(rt.clone()))
        .await
        .unwrap();
    clock.set_millis(again_ms);
    let err = svc
        .refresh_subscriber_token(Some(&p), None, &body(rt))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ServiceError::Validation(v) if v[0].code == "token_invalid"),
        "a spent token is refused either way: {err:?}"
    );
    svc.authenticate_sat(&winner.token).await.is_ok()
}

#[tokio::test]
async fn a_retry_inside_the_leeway_keeps_the_login_whatever_the_second() {
    // Spent late in one second, retried 1.5 s later: two seconds apart on a whole-second
    // clock, which used to make it a replay.
    for spent in [SECOND + 100, SECOND + 500, SECOND + 900, SECOND + 999] {
        assert!(
            login_survives_second_use(spent, spent + 1_500).await,
            "spent at +{} ms, retried 1.5 s later",
            spent - SECOND
        );
    }
}

#[tokio::test]
async fn a_second_use_after_the_leeway_revokes_the_login() {
    // Spent early in one second, presented again 2.5 s later: three seconds apart on a
    // whole-second clock too, so this holds either way; here for the boundary's other side.
    for spent in [SECOND + 100, SECOND + 900] {
        assert!(
            !login_survives_second_use(spent, spent + 2_500).await,
            "spent at +{} ms, presented again 2.5 s later",
            spent - SECOND
        );
        assert!(
            !login_survives_second_use(spent, spent + 2_000).await,
            "exactly the leeway is no longer inside it"
        );
    }
}
