//! The deployment-wide Centrifugo credentials (`centrifugo.token_hmac_secret_key`,
//! `centrifugo.api_key`) act for exactly one project: the one `centrifugo.project` names,
//! else the only project. With several projects and no setting they are refused — never
//! applied to all projects — and a token verified with the shared secret belongs to that
//! one project whatever its claims say.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::gateway::API_KEY;
use crate::gateway_channels::{SECRET, hs256};
use crate::support::{TestServer, decode_part};

const SUB_TOKEN: &str = "/api/v1/centrifugo/subscription-token";
const ME: &str = "123e4567-e89b-12d3-a456-426614174000";

async fn server(env: &[(&str, &str)]) -> TestServer {
    let mut vars = vec![
        ("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY),
        ("TOLLGATE_CENTRIFUGO__TOKEN_HMAC_SECRET_KEY", SECRET),
    ];
    vars.extend_from_slice(env);
    TestServer::start_with(&vars).await
}

async fn deployment_api(s: &TestServer, method: &str, params: Value) -> (u16, Value) {
    let res = s
        .client
        .post(s.url(&format!("/api/{method}")))
        .header("X-API-Key", API_KEY)
        .json(&params)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Connects with `token` and subscribes to `chat:news` (no namespace rule needed: the
/// token's own `channels`), then waits for one publication. `Ok(data)` of the first
/// publication, or `Err(close code)` when the connection is refused.
async fn connect_and_listen(
    s: &TestServer,
    token: &str,
    published: impl std::future::Future<Output = ()>,
) -> Result<Value, u16> {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/connection/websocket", s.addr))
            .await
            .unwrap();
    let connect = json!({"id": 1, "connect": {"token": token}});
    ws.send(Message::Text(connect.to_string().into()))
        .await
        .unwrap();
    let mut published = Some(Box::pin(published));
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an answer")
            .expect("socket open")
            .unwrap();
        match msg {
            Message::Close(Some(frame)) => return Err(frame.code.into()),
            Message::Text(text) => {
                for line in text.as_str().lines() {
                    let v: Value = serde_json::from_str(line).unwrap();
                    if v["id"] == 1 {
                        assert!(v["connect"].is_object(), "{v}");
                        if let Some(p) = published.take() {
                            p.await;
                        }
                    }
                    if v["push"]["pub"].is_object() {
                        return Ok(v["push"]["pub"]["data"].clone());
                    }
                }
            }
            _ => {}
        }
    }
}

/// A project with every scope (server keys need `management`).
async fn new_project(s: &TestServer) -> (String, String) {
    let all: tollgate_token::Scopes = tollgate_token::Scope::ALL.into_iter().collect();
    s.project_with(all).await
}

async fn publish_with(s: &TestServer, key: &str, data: Value) {
    let res = s
        .client
        .post(s.url("/api/publish"))
        .header("X-API-Key", key)
        .json(&json!({"channel": "news", "data": data}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

fn far() -> i64 {
    4_000_000_000
}

#[tokio::test]
async fn with_several_projects_the_setting_decides_and_aud_cannot_move_them() {
    let s = server(&[]).await;
    let (p1, t1) = new_project(&s).await;
    let (p2, t2) = new_project(&s).await;
    // Two projects and no setting: the credentials act for none, and say why.
    let token = hs256(&json!({"sub": "u1", "channels": ["news"], "exp": far()}));
    let refused = connect_and_listen(&s, &token, async {}).await;
    assert_eq!(
        refused,
        Err(3500),
        "shared secret with two projects and no setting"
    );
    let (status, body) = deployment_api(&s, "info", json!({})).await;
    assert_eq!(status, 403, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("centrifugo.project"), "{message}");

    // The same database with the setting naming P2: its tokens land there, whatever
    // `aud` says.
    let s = TestServer::start_in(
        s.stop().await,
        &[
            ("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY),
            ("TOLLGATE_CENTRIFUGO__TOKEN_HMAC_SECRET_KEY", SECRET),
            ("TOLLGATE_CENTRIFUGO__PROJECT", &p2),
        ],
    )
    .await;
    let naming_p1 = hs256(&json!({"sub": "u1", "aud": p1, "channels": ["news"], "exp": far()}));
    assert_eq!(
        connect_and_listen(&s, &naming_p1, async {}).await,
        Err(3500),
        "an aud naming another project is refused"
    );
    // The shared-secret connection is P2's: P1's publication to `news` never reaches
    // it, P2's (by its own key, or the deployment key) does.
    let (k1, k2) = (s.server_key(&p1, &t1).await, s.server_key(&p2, &t2).await);
    let token = hs256(&json!({"sub": "u1", "channels": ["news"], "exp": far()}));
    let got = connect_and_listen(&s, &token, async {
        publish_with(&s, &k1, json!({"from": "p1"})).await;
        publish_with(&s, &k2, json!({"from": "p2"})).await;
    })
    .await;
    assert_eq!(got, Ok(json!({"from": "p2"})));
    let got = connect_and_listen(&s, &token, async {
        publish_with(&s, API_KEY, json!({"from": "deployment key"})).await;
    })
    .await;
    assert_eq!(got, Ok(json!({"from": "deployment key"})));

    // Minting: only the bound project's Centrifugo tokens carry the shared secret; the
    // other project's are signed with its own key (the gateway would take a shared-secret
    // token as P2's).
    for (project, token, shared) in [(&p1, &t1, false), (&p2, &t2, true)] {
        let (_, login) = s
            .post(
                "/api/fabric/subscribers/tokens",
                (project, token),
                &json!({"reference": ME}),
            )
            .await;
        let sat = login["token"].as_str().unwrap();
        let res: Value = s
            .client
            .post(s.url(SUB_TOKEN))
            .bearer_auth(sat)
            .json(&json!({"channel": format!("user:{ME}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let header = decode_part(res["token"].as_str().unwrap(), 0);
        assert_eq!(header["kid"] == "centrifugo-hmac", shared, "{header}");
        assert_eq!(header["alg"] == "HS256", shared, "{header}");
    }
}

#[tokio::test]
async fn the_shared_api_key_with_one_project_reaches_only_it() {
    let s = server(&[]).await;
    let (p, t) = new_project(&s).await;
    let own = s.server_key(&p, &t).await;
    let token = hs256(&json!({"sub": "u1", "channels": ["news"], "exp": far()}));
    let got = connect_and_listen(&s, &token, async {
        publish_with(&s, API_KEY, json!({"via": "deployment key"})).await;
    })
    .await;
    assert_eq!(got, Ok(json!({"via": "deployment key"})));
    let got = connect_and_listen(&s, &token, async {
        publish_with(&s, &own, json!({"via": "own key"})).await;
    })
    .await;
    assert_eq!(
        got,
        Ok(json!({"via": "own key"})),
        "both keys act for the one project"
    );
    // A wrong key is 401 with an empty body, as Centrifugo answers.
    let res = s
        .client
        .post(s.url("/api/info"))
        .header("X-API-Key", "sk_wrong")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().is_empty());
}
