//! Refresh-token rotation with its store round trip: each iteration spends the current
//! refresh token and records its successor (one SQLite transaction), then encrypts the new
//! SAT and refresh token. Run with `./bench/run crypto`; results in BENCHMARKS.md.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use tollgate_service::clock::SystemClock;
use tollgate_service::secrets::MasterKey;
use tollgate_service::{Settings, Tollgate};
use tollgate_store::SqlStore;
use tollgate_token::Scopes;

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn rotation(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = std::env::temp_dir().join(format!("tollgate-refresh-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (svc, principal, mut refresh) = rt.block_on(async {
        let store = SqlStore::connect(&format!("sqlite://{}/bench.db", dir.display()))
            .await
            .unwrap();
        let settings = Settings {
            issuer: "tollgate".into(),
            public_gateway_url: None,
            max_subscriber_token_lifetime: 86_400,
            refresh_reuse_leeway: 0,
            max_family_lifetime: 30 * 86_400,
            ..Settings::default()
        };
        let svc = Tollgate::new(
            Arc::new(store),
            &MasterKey::generate(),
            settings,
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        let created = svc
            .create_project("bench", Scopes::project_default())
            .await
            .unwrap();
        let principal = svc
            .authenticate(
                &created.project.id.to_string(),
                created.api_token.expose(),
            )
            .await
            .unwrap();
        let issued = svc
            .create_subscriber_token(&principal, &object(json!({"reference": "bench-user"})))
            .await
            .unwrap();
        (svc, principal, issued.refresh_token.unwrap())
    });
    c.bench_function("refresh rotation (SQLite round trip + 2 JWEs)", |b| {
        b.iter(|| {
            let next = rt
                .block_on(svc.refresh_subscriber_token(
                    Some(&principal),
                    None,
                    &object(json!({"refresh_token": refresh})),
                ))
                .unwrap();
            refresh = next.refresh_token.unwrap();
        });
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, rotation);
criterion_main!(benches);
