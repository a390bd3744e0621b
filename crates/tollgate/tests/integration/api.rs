//! The HTTP API over real sockets.

use serde_json::{Value, json};
use tollgate_token::{Scope, Scopes};

use crate::support::{TestServer, decode_part, verify};

fn unauthorized() -> Value {
    json!({"error": "Unauthorized"})
}

#[tokio::test]
async fn health_and_readiness() {
    let s = TestServer::start().await;
    for path in ["/healthz", "/readyz"] {
        let res = s.client.get(s.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let s = TestServer::start().await;
    let res = s.client.get(s.url("/healthz")).send().await.unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");

    let res = s
        .client
        .get(s.url("/nowhere"))
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["x-request-id"], "req-123");
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"error": "Not Found"})
    );

    // An unsafe caller id is replaced, not echoed.
    let res = s
        .client
        .get(s.url("/healthz"))
        .header("x-request-id", "x".repeat(500))
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"], "x".repeat(500).as_str());

    let (status, headers, _) = s.post_raw("/api/pubsub/tokens", None, "{}").await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn pubsub_and_chat_tokens_are_minted_and_verifiable() {
    let s =
        TestServer::start_with(&[("TOLLGATE_GATEWAY__PUBLIC_URL", "ws://127.0.0.1:4321")]).await;
    let (project, token) = s.project().await;
    for (path, typ) in [("/api/pubsub/tokens", "PRT"), ("/api/chat/tokens", "CRT")] {
        let body = json!({
            "ttl": 15,
            "channels": {"room": {"read": true, "write": true}, "news": {"read": true}},
            "member_id": "alice",
            "state": {"display_name": "Alice"},
        });
        let (status, res) = s.post(path, (&project, &token), &body).await;
        assert_eq!(status, 200, "{path}: {res}");
        let minted = res["token"].as_str().unwrap();
        assert_eq!(res.as_object().unwrap().len(), 1);

        let header = decode_part(minted, 0);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["typ"], typ);
        assert_eq!(header["ch"], "ws://127.0.0.1:4321");

        let claims = verify(&s.app, minted).await;
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], project);
        assert_eq!(claims["iss"], "tollgate");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            15 * 60
        );
        assert_eq!(claims["t"], 15);
        assert_eq!(claims["info"], json!({"display_name": "Alice"}));
        assert_eq!(
            claims["caps"],
            json!([
                {"channels": ["room"], "allow": ["sub", "prs", "hst", "pub"]},
                {"channels": ["news"], "allow": ["sub", "prs", "hst"]},
            ])
        );
    }

    // Defaults: a random UUID member and empty state; no `ch` without a public URL.
    let plain = TestServer::start().await;
    let (project, token) = plain.project().await;
    let (status, res) = plain
        .post(
            "/api/pubsub/tokens",
            (&project, &token),
            &json!({"ttl": 1, "channels": {"a": {"write": true}}}),
        )
        .await;
    assert_eq!(status, 200);
    let minted = res["token"].as_str().unwrap();
    assert!(decode_part(minted, 0).get("ch").is_none());
    let claims = verify(&plain.app, minted).await;
    assert!(uuid::Uuid::parse_str(claims["sub"].as_str().unwrap()).is_ok());
    assert_eq!(claims["info"], json!({}));
}

#[tokio::test]
async fn bad_credentials_and_missing_scopes_get_401() {
    let s = TestServer::start().await;
    let (project, token) = s.project().await;
    let (other_project, other_token) = s.project().await;
    let pubsub_only: Scopes = [Scope::Pubsub].into_iter().collect();
    let (ps_project, ps_token) = s.project_with(pubsub_only).await;
    let body = json!({"ttl": 5, "channels": {"a": {"read": true}}}).to_string();

    let cases: Vec<(&str, Option<(&str, &str)>)> = vec![
        ("/api/pubsub/tokens", None),
        ("/api/pubsub/tokens", Some((&project, "PTwrong"))),
        ("/api/pubsub/tokens", Some((&project, &other_token))),
        ("/api/pubsub/tokens", Some((&other_project, &token))),
        (
            "/api/pubsub/tokens",
            Some(("00000000-0000-0000-0000-000000000000", &token)),
        ),
        ("/api/pubsub/tokens", Some(("not-a-project", &token))),
        ("/api/chat/tokens", Some((&ps_project, &ps_token))),
    ];
    for (path, auth) in cases {
        let (status, headers, res) = s.post_raw(path, auth, body.clone()).await;
        assert_eq!(status, 401, "{path} {auth:?}");
        assert_eq!(res, unauthorized());
        assert_eq!(headers["content-type"], "application/json");
    }
    // The pubsub-only token does work where its scope applies.
    let (status, _, _) = s
        .post_raw(
            "/api/pubsub/tokens",
            Some((&ps_project, &ps_token)),
            body.clone(),
        )
        .await;
    assert_eq!(status, 200);

    // Authentication is checked before the body is even looked at.
    let (status, _, res) = s
        .post_raw(
            "/api/pubsub/tokens",
            Some((&project, "PTwrong")),
            "not json",
        )
        .await;
    assert_eq!((status, res), (401, unauthorized()));

    // A bearer token is not Basic auth.
    let res = s
        .client
        .post(s.url("/api/pubsub/tokens"))
        .bearer_auth(&token)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn revoked_api_tokens_stop_working_at_once() {
    let s = TestServer::start().await;
    let (project, _) = s.project().await;
    let pid = project.parse().unwrap();
    let (id, secret) = s
        .app
        .tollgate
        .create_api_token(pid, "temp", Scopes::project_default())
        .await
        .unwrap();
    let body = json!({"ttl": 5, "channels": {"a": {"read": true}}});
    let (status, _) = s
        .post("/api/chat/tokens", (&project, secret.expose()), &body)
        .await;
    assert_eq!(status, 200);
    s.app.tollgate.revoke_api_token(pid, id).await.unwrap();
    let (status, res) = s
        .post("/api/chat/tokens", (&project, secret.expose()), &body)
        .await;
    assert_eq!((status, res), (401, unauthorized()));
}

#[tokio::test]
async fn malformed_bodies_get_400_and_oversized_ones_413() {
    let s = TestServer::start().await;
    let (project, token) = s.project().await;
    let auth = Some((project.as_str(), token.as_str()));
    for body in [
        "",
        "not json",
        "[1,2]",
        "\"ttl\"",
        "null",
        "{\"ttl\":",
        r#"{"ttl":0,"ttl":5,"channels":{"a":{"read":true}}}"#,
    ] {
        let (status, _, res) = s.post_raw("/api/pubsub/tokens", auth, body).await;
        assert_eq!(status, 400, "{body:?}");
        assert_eq!(res, json!({"error": "Bad Request"}));
    }
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024));
    let (status, _, res) = s.post_raw("/api/pubsub/tokens", auth, huge).await;
    assert_eq!(status, 413);
    assert_eq!(res, json!({"error": "Payload Too Large"}));

    // The largest valid request fits: 500 channels of 250 multi-byte characters and
    // 2,000 characters of state.
    let channels: serde_json::Map<String, Value> = (0..500)
        .map(|i| (format!("{i:03}{}", "é".repeat(247)), json!({"read": true})))
        .collect();
    let body = json!({"ttl": 43200, "channels": channels, "state": {"k": "x".repeat(1992)}});
    let (status, res) = s
        .post("/api/pubsub/tokens", (&project, &token), &body)
        .await;
    assert_eq!(status, 200, "{res}");
}

#[tokio::test]
async fn validation_errors_use_signalwires_422_shape() {
    let s = TestServer::start().await;
    let (project, token) = s.project().await;
    let (status, res) = s
        .post(
            "/api/chat/tokens",
            (&project, &token),
            &json!({"ttl": 43201, "channels": {"sw_x": {"read": true}}, "member_id": 5, "state": [1]}),
        )
        .await;
    assert_eq!(status, 422);
    let errors = res["errors"].as_array().unwrap();
    let got: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| {
            (
                e["code"].as_str().unwrap(),
                e["attribute"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("invalid_parameter", "ttl"),
            ("channel_name_is_reserved", "channels"),
            ("not_a_string", "member_id"),
            ("not_a_hash", "state"),
        ]
    );
    for e in errors {
        let e = e.as_object().unwrap();
        let keys: Vec<&str> = e.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 5);
        assert_eq!(e["type"], "validation_error");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(
            e["url"],
            format!(
                "https://developer.signalwire.com/rest/overview/error-codes/#{}",
                e["code"].as_str().unwrap()
            )
        );
    }
    assert_eq!(
        errors[0]["message"],
        "Ttl must be less than or equal to 43200"
    );

    let (status, res) = s
        .post("/api/pubsub/tokens", (&project, &token), &json!({}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(res["errors"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn wrong_methods_get_405_in_the_error_shape() {
    let s = TestServer::start().await;
    let res = s
        .client
        .get(s.url("/api/chat/tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"error": "Method Not Allowed"})
    );
}

#[tokio::test]
async fn a_restarted_server_keeps_projects_keys_and_api_tokens() {
    let s = TestServer::start().await;
    let (project, token) = s.project().await;
    let body = json!({"ttl": 5, "channels": {"a": {"read": true}}});
    let (_, res) = s
        .post("/api/pubsub/tokens", (&project, &token), &body)
        .await;
    let before = res["token"].as_str().unwrap().to_owned();
    let dir = s.stop().await;

    let s = TestServer::start_in(dir, &[]).await;
    // The old token still verifies, and the same API token mints with the same key.
    verify(&s.app, &before).await;
    let (status, res) = s
        .post("/api/pubsub/tokens", (&project, &token), &body)
        .await;
    assert_eq!(status, 200);
    let after = res["token"].as_str().unwrap();
    assert_eq!(decode_part(after, 0)["kid"], decode_part(&before, 0)["kid"]);
    assert_eq!(s.app.tollgate.list_projects().await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_database_never_holds_an_api_token_in_clear() {
    // Reads the SQLite file itself.
    let s = TestServer::start_sqlite().await;
    let created = s
        .app
        .tollgate
        .create_project("p", Scopes::project_default())
        .await
        .unwrap();
    let secret = created.api_token.expose().to_owned();
    let dir = s.stop().await;
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("tollgate.db") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!bytes.is_empty());
    let haystack = String::from_utf8_lossy(&bytes);
    assert!(!haystack.contains(&secret), "API token stored in clear");
    assert!(
        !haystack.contains(&secret[2..]),
        "API token hex stored in clear"
    );
    assert!(
        haystack.contains("pubsub"),
        "sanity: the token row was written"
    );
}

#[tokio::test]
async fn runs_on_postgresql_and_reports_unreadiness() {
    use tollgate_store::testing::PgTestDatabase;
    let Some(admin) = PgTestDatabase::admin_url_from_env() else {
        return;
    };
    let db = PgTestDatabase::create(&admin).await;
    let url = db.url.clone();
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [5u8; 32]);
    let s = TestServer::start_with(&[
        ("TOLLGATE_DATABASE_URL", &url),
        ("TOLLGATE_SECRET_KEY", &key),
    ])
    .await;
    let (project, token) = s.project().await;
    let (status, res) = s
        .post(
            "/api/chat/tokens",
            (&project, &token),
            &json!({"ttl": 5, "channels": {"a": {"read": true}}}),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let res = s.client.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);

    // Take the database away: readiness must say so, liveness must not.
    db.drop_now().await;
    let res = s.client.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"error": "Service Unavailable"})
    );
    let res = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // Minting needs the database for authentication: 503, so clients retry.
    let (status, _) = s
        .post(
            "/api/chat/tokens",
            (&project, &token),
            &json!({"ttl": 5, "channels": {"a": {"read": true}}}),
        )
        .await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let s = TestServer::start().await;
    let (project, token) = s.project().await;
    let body = json!({"ttl": 5, "channels": {"a": {"read": true}}});
    s.post("/api/pubsub/tokens", (&project, &token), &body)
        .await;
    s.post("/api/pubsub/tokens", (&project, "wrong"), &body)
        .await;
    s.client.get(s.url("/scan/me/123")).send().await.unwrap();
    let res = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = res.text().await.unwrap();
    for line in [
        r#"tollgate_http_requests_total{route="/api/pubsub/tokens",method="POST",status="200"} 1"#,
        r#"tollgate_http_requests_total{route="/api/pubsub/tokens",method="POST",status="401"} 1"#,
        r#"tollgate_http_requests_total{route="unmatched",method="GET",status="404"} 1"#,
        r#"tollgate_http_request_duration_seconds_count{route="/api/pubsub/tokens"} 2"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert!(
        !text.contains("/scan/me"),
        "raw paths must not become labels"
    );
}
