//! Token checks at `/connection/websocket`: which connection and subscription tokens the
//! gateway accepts, and how it refuses the others (reply error, or close). Tokens here are
//! minted by Tollgate's endpoints or signed with a project's own key; the shared HMAC
//! secret is not configured, so every connection belongs to a project.

use serde_json::{Value, json};
use tollgate_token::jose::SigningKey;
use tollgate_token::{Scope, Scopes};

use crate::gateway::{API_KEY, Ws, app_token, next_or_close, open, send};
use crate::support::{TestServer, now, sign};

const ME: &str = "123e4567-e89b-12d3-a456-426614174000";
const OTHER: &str = "00000000-0000-4000-8000-000000000001";
const CONNECTION_TOKEN: &str = "/api/v1/centrifugo/connection-token";
const SUBSCRIPTION_TOKEN: &str = "/api/v1/centrifugo/subscription-token";

/// A project with a signed-in user ME (its SAT) and the project's signing key.
struct Project {
    id: String,
    sat: String,
    key: SigningKey,
}

async fn project(s: &TestServer) -> Project {
    let all: Scopes = Scope::ALL.into_iter().collect();
    let (id, token) = s.project_with(all).await;
    let (status, login) = s
        .post(
            "/api/fabric/subscribers/tokens",
            (&id, &token),
            &json!({"reference": ME}),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let key = s.project_signer(&id).await;
    Project {
        sat: login["token"].as_str().unwrap().to_owned(),
        id,
        key,
    }
}

/// Two projects on one server.
async fn setup() -> (TestServer, Project, Project) {
    let s = TestServer::start_with(&[("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY)]).await;
    let a = project(&s).await;
    let b = project(&s).await;
    (s, a, b)
}

/// Replaces one character in the middle of the signature with another base64url
/// character: still well-formed, no longer genuine.
fn tamper(token: &str) -> String {
    let sig_start = token.rfind('.').unwrap() + 1;
    let at = sig_start + (token.len() - sig_start) / 2;
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

/// Claims of a connection token of project `p` for ME, with `extra` merged in.
fn claims(p: &Project, extra: &Value) -> Value {
    let mut c =
        json!({"iss": "tollgate", "aud": p.id, "sub": ME, "iat": now(), "exp": now() + 600});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// Sends `connect` with `token`: the reply, or the close code.
async fn connect(s: &TestServer, token: &str) -> (Ws, Result<Value, u16>) {
    let mut ws = open(s).await;
    send(
        &mut ws,
        &json!({"id": 1, "connect": {"token": token}}).to_string(),
    )
    .await;
    let outcome = next_or_close(&mut ws).await;
    (ws, outcome)
}

#[derive(Debug)]
enum Expect {
    /// Connected; whether the result says the connection expires.
    Connected { expires: bool },
    /// A reply error, the socket stays open.
    Error(u64),
    /// The socket closes with this code.
    Closed(u16),
}

#[tokio::test]
async fn connection_tokens_are_checked() {
    let (s, a, b) = setup().await;
    let minted = app_token(&s, &a.sat, CONNECTION_TOKEN, json!({})).await;
    let cases: Vec<(&str, String, Expect)> = vec![
        (
            "minted by the endpoint",
            minted.clone(),
            Expect::Connected { expires: true },
        ),
        (
            "signed with the project key",
            sign(&a.key, &claims(&a, &json!({}))),
            Expect::Connected { expires: true },
        ),
        (
            "no aud: the key names the project",
            sign(&a.key, &claims(&a, &json!({"aud": null}))),
            Expect::Connected { expires: true },
        ),
        (
            "aud naming another project",
            sign(&a.key, &claims(&a, &json!({"aud": b.id}))),
            Expect::Closed(3500),
        ),
        (
            "aud array naming its own project and another",
            sign(&a.key, &claims(&a, &json!({"aud": [a.id, b.id]}))),
            Expect::Closed(3500),
        ),
        (
            "aud array naming only its own project",
            sign(&a.key, &claims(&a, &json!({"aud": [a.id, "my-app"]}))),
            Expect::Connected { expires: true },
        ),
        (
            "B's key, A's aud",
            sign(&b.key, &claims(&a, &json!({}))),
            Expect::Closed(3500),
        ),
        (
            "tampered signature (minted)",
            tamper(&minted),
            Expect::Closed(3500),
        ),
        (
            "tampered signature (signed)",
            tamper(&sign(&a.key, &claims(&a, &json!({})))),
            Expect::Closed(3500),
        ),
        (
            "nbf in the future",
            sign(&a.key, &claims(&a, &json!({"nbf": now() + 60}))),
            Expect::Error(109),
        ),
        (
            "nbf in the past",
            sign(&a.key, &claims(&a, &json!({"nbf": now() - 60}))),
            Expect::Connected { expires: true },
        ),
        (
            "exp in the past",
            sign(&a.key, &claims(&a, &json!({"exp": now() - 1}))),
            Expect::Error(109),
        ),
        (
            "expire_at 0: never expires",
            sign(&a.key, &claims(&a, &json!({"expire_at": 0}))),
            Expect::Connected { expires: false },
        ),
        (
            "no exp at all",
            sign(&a.key, &claims(&a, &json!({"exp": null}))),
            Expect::Connected { expires: false },
        ),
        (
            "expire_at past, token valid",
            sign(&a.key, &claims(&a, &json!({"expire_at": now() - 1}))),
            Expect::Error(110),
        ),
    ];
    for (name, token, expect) in cases {
        let (mut ws, outcome) = connect(&s, &token).await;
        match (&expect, outcome) {
            (Expect::Connected { expires }, Ok(reply)) => {
                let result = &reply["connect"];
                assert!(result["client"].is_string(), "{name}: {reply}");
                if *expires {
                    assert_eq!(result["expires"], true, "{name}: {reply}");
                    assert!(result["ttl"].as_i64().unwrap() > 500, "{name}: {reply}");
                } else {
                    assert!(result.get("expires").is_none(), "{name}: {reply}");
                    assert!(result.get("ttl").is_none(), "{name}: {reply}");
                }
            }
            (Expect::Error(code), Ok(reply)) => {
                assert_eq!(reply["error"]["code"], *code, "{name}: {reply}");
                // A refused connect leaves the socket unusable: the next command closes.
                send(
                    &mut ws,
                    &json!({"id": 2, "presence_stats": {"channel": "x"}}).to_string(),
                )
                .await;
                assert_eq!(next_or_close(&mut ws).await, Err(3501), "{name}");
            }
            (Expect::Closed(code), Err(got)) => assert_eq!(got, *code, "{name}"),
            (expect, got) => panic!("{name}: expected {expect:?}, got {got:?}"),
        }
    }
}

/// How the subscription token of a case is made, for the connection's client id.
type MakeToken<'a> = Box<dyn Fn(&str) -> String + 'a>;

#[tokio::test]
async fn subscription_tokens_are_checked() {
    let (s, a, b) = setup().await;
    let channel = format!("user:{ME}");
    let minted_a = app_token(&s, &a.sat, SUBSCRIPTION_TOKEN, json!({"channel": channel})).await;
    let minted_b = app_token(&s, &b.sat, SUBSCRIPTION_TOKEN, json!({"channel": channel})).await;
    let signed = |p: &Project, extra: Value| {
        let mut c = json!({"iss": "tollgate", "aud": p.id, "sub": ME, "channel": channel, "exp": now() + 600});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        sign(&p.key, &c)
    };
    let cases: Vec<(&str, MakeToken<'_>, Expect)> = vec![
        (
            "minted for this project",
            Box::new(|_| minted_a.clone()),
            Expect::Connected { expires: true },
        ),
        (
            "signed with the project key",
            Box::new(|_| signed(&a, json!({}))),
            Expect::Connected { expires: true },
        ),
        (
            "minted by another project for the same user and channel",
            Box::new(|_| minted_b.clone()),
            Expect::Error(103),
        ),
        (
            "signed by another project's key",
            Box::new(|_| signed(&b, json!({}))),
            Expect::Error(103),
        ),
        (
            "tampered signature",
            Box::new(|_| tamper(&minted_a)),
            Expect::Error(103),
        ),
        (
            "another user (sub)",
            Box::new(|_| signed(&a, json!({"sub": OTHER}))),
            Expect::Closed(3500),
        ),
        (
            "another client",
            Box::new(|_| signed(&a, json!({"client": "someone-else"}))),
            Expect::Closed(3500),
        ),
        (
            "this client",
            Box::new(|client| signed(&a, json!({"client": client}))),
            Expect::Connected { expires: true },
        ),
        (
            "another channel",
            Box::new(|_| signed(&a, json!({"channel": format!("user:{OTHER}")}))),
            Expect::Closed(3500),
        ),
        (
            "nbf in the future",
            Box::new(|_| signed(&a, json!({"nbf": now() + 60}))),
            Expect::Error(109),
        ),
        (
            "expired",
            Box::new(|_| signed(&a, json!({"exp": now() - 1}))),
            Expect::Error(109),
        ),
        (
            "expire_at 0: never expires",
            Box::new(|_| signed(&a, json!({"expire_at": 0}))),
            Expect::Connected { expires: false },
        ),
    ];
    let conn = app_token(&s, &a.sat, CONNECTION_TOKEN, json!({})).await;
    for (name, make, expect) in cases {
        let (mut ws, reply) = connect(&s, &conn).await;
        let client = reply.unwrap()["connect"]["client"]
            .as_str()
            .unwrap()
            .to_owned();
        let sub = json!({"id": 2, "subscribe": {"channel": channel, "token": make(&client)}});
        send(&mut ws, &sub.to_string()).await;
        match (&expect, next_or_close(&mut ws).await) {
            (Expect::Connected { expires }, Ok(reply)) => {
                let result = &reply["subscribe"];
                assert!(result.is_object(), "{name}: {reply}");
                assert_eq!(result.get("expires").is_some(), *expires, "{name}: {reply}");
            }
            (Expect::Error(code), Ok(reply)) => {
                assert_eq!(reply["error"]["code"], *code, "{name}: {reply}");
                // Refused, not closed: the connection still works, and its own token
                // still subscribes.
                let own = json!({"id": 3, "subscribe": {"channel": channel, "token": minted_a}});
                send(&mut ws, &own.to_string()).await;
                let reply = next_or_close(&mut ws).await.unwrap();
                assert!(reply["subscribe"].is_object(), "{name}: {reply}");
            }
            (Expect::Closed(code), Err(got)) => assert_eq!(got, *code, "{name}"),
            (expect, got) => panic!("{name}: expected {expect:?}, got {got:?}"),
        }
    }
}
