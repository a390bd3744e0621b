//! The HTTP layer's edges, over real sockets: CORS on the browser-facing endpoints only,
//! read deadlines for heads and bodies, the head-size cap, `Connection: close` after an
//! unread body, `nosniff` / `no-store`, and the failed-credential limiter.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::TestServer;

const PAGE: &str = "http://127.0.0.1:8090";

async fn preflight(s: &TestServer, path: &str, origin: &str) -> reqwest::Response {
    s.client
        .request(reqwest::Method::OPTIONS, s.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, dpop",
        )
        .send()
        .await
        .unwrap()
}

fn allow_origin(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn browser_facing_endpoints_answer_preflights_from_allowed_origins() {
    let s = TestServer::start_with(&[("TOLLGATE_GATEWAY__ALLOWED_ORIGINS", PAGE)]).await;
    for path in [
        "/api/v1/centrifugo/subscription-token",
        "/api/v1/centrifugo/subscription-tokens",
        "/api/v1/centrifugo/connection-token",
        "/centrifuge/subscribe",
        "/api/fabric/subscribers/tokens/refresh",
        "/api/fabric/subscriber/info",
        "/api/fabric/guests/tokens",
        "/api/fabric/subscriber/invites",
        "/api/fabric/embeds/tokens",
    ] {
        let res = preflight(&s, path, PAGE).await;
        assert!(res.status().is_success(), "{path}: {}", res.status());
        assert_eq!(allow_origin(&res).as_deref(), Some(PAGE), "{path}");
        let headers = res.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        for h in ["authorization", "content-type", "dpop"] {
            assert!(headers.contains(h), "{path}: {headers}");
        }
        // No credentials mode: cookies are never part of it.
        assert!(
            res.headers()
                .get("access-control-allow-credentials")
                .is_none()
        );
        // Another origin gets no permission.
        let res = preflight(&s, path, "http://evil.example").await;
        assert_eq!(allow_origin(&res), None, "{path}");
    }
    // The real request carries the header too, on an error as on success.
    let res = s
        .client
        .post(s.url("/api/v1/centrifugo/subscription-token"))
        .header("origin", PAGE)
        .json(&json!({"channel": "news"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(allow_origin(&res).as_deref(), Some(PAGE));
}

#[tokio::test]
async fn admin_basic_and_server_api_endpoints_never_send_cors_headers() {
    let s = TestServer::start_with(&[("TOLLGATE_GATEWAY__ALLOWED_ORIGINS", "*")]).await;
    for path in [
        "/api/pubsub/tokens",
        "/api/chat/tokens",
        "/api/fabric/subscribers/tokens",
        "/api/fabric/resources/subscribers",
        "/api/v1/namespaces/news",
        "/api/v1/keys/rotate",
        "/api/v1/server-keys",
        "/api/publish",
        "/api",
    ] {
        let res = preflight(&s, path, PAGE).await;
        assert_eq!(allow_origin(&res), None, "{path}");
        assert!(!res.status().is_success(), "{path}: {}", res.status());
    }
}

#[tokio::test]
async fn cors_origins_can_be_set_apart_from_the_gateway() {
    let s = TestServer::start_with(&[
        (
            "TOLLGATE_GATEWAY__ALLOWED_ORIGINS",
            "https://ws-only.example",
        ),
        (
            "TOLLGATE_HTTP__CORS_ALLOWED_ORIGINS",
            "https://*.app.example, http://127.0.0.1:8090",
        ),
    ])
    .await;
    let path = "/api/v1/centrifugo/connection-token";
    assert_eq!(
        allow_origin(&preflight(&s, path, PAGE).await).as_deref(),
        Some(PAGE)
    );
    let sub = "https://eu.app.example";
    assert_eq!(
        allow_origin(&preflight(&s, path, sub).await).as_deref(),
        Some(sub)
    );
    assert_eq!(
        allow_origin(&preflight(&s, path, "https://ws-only.example").await),
        None
    );
}

#[tokio::test]
async fn every_response_is_nosniff_and_token_responses_are_never_stored() {
    let s = TestServer::start().await;
    let (project, token) = s.project().await;
    let (status, headers, _) = s
        .post_raw(
            "/api/pubsub/tokens",
            Some((&project, &token)),
            json!({"ttl": 60, "member_id": "m", "channels": {"c": {"read": true}}}).to_string(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    // Errors too; the public JWKS keeps its own cache policy.
    let res = s.client.get(s.url("/nowhere")).send().await.unwrap();
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let res = s
        .client
        .get(s.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["cache-control"], "public, max-age=300");
}

/// Writes `request` on a fresh connection and reads until the server closes it (or
/// `limit` passes); returns what was read and how long until the close.
async fn raw(s: &TestServer, request: &[u8], limit: Duration) -> (String, Option<Duration>) {
    let mut sock = TcpStream::connect(s.addr).await.unwrap();
    sock.write_all(request).await.unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), sock.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {
                return (
                    String::from_utf8_lossy(&got).into_owned(),
                    Some(started.elapsed()),
                );
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), None),
        }
    }
}

#[tokio::test]
async fn half_sent_heads_and_bodies_are_cut_off() {
    let s = TestServer::start_with(&[
        ("TOLLGATE_HTTP__HEADER_READ_TIMEOUT", "1s"),
        ("TOLLGATE_HTTP__BODY_READ_TIMEOUT", "1s"),
    ])
    .await;
    // Half a head: the connection is closed, without an answer, once the deadline passes.
    let (_, closed) = raw(
        &s,
        b"POST /api/pubsub/tokens HTTP/1.1\r\nHost: x\r\n",
        Duration::from_secs(5),
    )
    .await;
    let closed = closed.expect("a half-sent head must not hold the connection");
    assert!(closed >= Duration::from_millis(900), "{closed:?}");
    // An idle keep-alive connection too.
    let (_, closed) = raw(&s, b"", Duration::from_secs(5)).await;
    assert!(closed.is_some());

    // Half a body: 408, and the connection is closed.
    let (project, token) = s.project().await;
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{project}:{token}"),
    );
    let head = format!(
        "POST /api/pubsub/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"ttl\":"
    );
    let (answer, closed) = raw(&s, head.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(closed.is_some());
}

#[tokio::test]
async fn an_oversize_head_gets_431() {
    let s = TestServer::start().await;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let (answer, _) = raw(&s, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[tokio::test]
async fn an_answer_sent_before_the_body_was_read_closes_the_connection() {
    let s = TestServer::start().await;
    let (project, _) = s.project().await;
    let (status, headers, _) = s
        .post_raw(
            "/api/pubsub/tokens",
            Some((&project, "wrong")),
            "x".repeat(64 * 1024),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(headers["connection"], "close");
    // A body that was read leaves the connection reusable.
    let (project, token) = s.project().await;
    let (status, headers, _) = s
        .post_raw("/api/pubsub/tokens", Some((&project, &token)), "{}")
        .await;
    assert_eq!(status, 422);
    assert!(headers.get("connection").is_none());
}

#[tokio::test]
async fn repeated_wrong_credentials_are_throttled_without_slowing_other_callers() {
    // Callers are told apart by the address a trusted proxy (this test) reports.
    let s = TestServer::start_with(&[
        ("TOLLGATE_HTTP__TRUSTED_PROXIES", "127.0.0.1"),
        // One failure forgiven a minute: no refill can happen during the test.
        ("TOLLGATE_HTTP__FAILED_AUTH_PER_MINUTE", "1"),
    ])
    .await;
    let (project, token) = s.project().await;
    let body = json!({"ttl": 60, "member_id": "m", "channels": {"c": {"read": true}}});
    let attempt = |from: &'static str, password: String| {
        let req = s
            .client
            .post(s.url("/api/pubsub/tokens"))
            .header("x-forwarded-for", from)
            .basic_auth(&project, Some(password))
            .json(&body);
        async move { req.send().await.unwrap() }
    };
    let mut statuses = Vec::new();
    for i in 0..25 {
        let res = attempt("198.51.100.1", format!("guess-{i}")).await;
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            let retry: u64 = res.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
        }
    }
    assert_eq!(statuses[..20], [401; 20]);
    assert_eq!(statuses[20..], [429; 5]);
    // Even the right credentials wait, from the address that kept failing…
    assert_eq!(attempt("198.51.100.1", token.clone()).await.status(), 429);
    // …while every other caller is served at once.
    assert_eq!(attempt("203.0.113.5", token.clone()).await.status(), 200);
    assert_eq!(attempt("203.0.113.6", "wrong".into()).await.status(), 401);

    // Wrong server API keys count the same way.
    let mut last = 0;
    for i in 0..21 {
        let res = s
            .client
            .post(s.url("/api/info"))
            .header("x-forwarded-for", "192.0.2.44")
            .header("x-api-key", format!("not-a-key-{i}"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        last = res.status().as_u16();
        if i < 20 {
            assert_eq!(last, 401, "attempt {i}");
        }
    }
    assert_eq!(last, 429);
}
