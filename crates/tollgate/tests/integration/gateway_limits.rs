//! Close codes, timers and limits of `/connection/websocket`: connection expiry and its
//! grace (3005), `refresh` (3500, 3010), slow consumers (3008), frame size (1009), channel
//! limits (106, 3505), publication size (106 from a client, 107 from the server API),
//! missing pongs (3012), and the `Origin` allowlist. Tokens are minted by Tollgate or
//! signed with the project's own key.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tollgate_token::jose::SigningKey;

use crate::gateway::{
    API_KEY, Ws, api, closed, ended, expect, next_or_close, open, send, send_raw,
};
use crate::support::{TestServer, metric, now, sign};

const ME: &str = "alice";

/// A server with one project: its id, API token and signing key.
struct Setup {
    s: TestServer,
    project: String,
    token: String,
    key: SigningKey,
}

async fn setup(env: &[(&str, &str)]) -> Setup {
    let mut vars = vec![("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY)];
    vars.extend_from_slice(env);
    let s = TestServer::start_with(&vars).await;
    let (project, token) = s.project().await;
    let key = s.project_signer(&project).await;
    Setup {
        s,
        project,
        token,
        key,
    }
}

impl Setup {
    /// A connection token for `user` with `extra` claims.
    fn conn_token(&self, user: &str, extra: &Value) -> String {
        let mut c =
            json!({"iss": "tollgate", "aud": self.project, "sub": user, "exp": now() + 600});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        sign(&self.key, &c)
    }

    /// A PubSub token minted by the endpoint.
    async fn pubsub(&self, member: &str, channels: Value) -> String {
        let (status, res) = self
            .s
            .post(
                "/api/pubsub/tokens",
                (&self.project, &self.token),
                &json!({"ttl": 10, "member_id": member, "channels": channels}),
            )
            .await;
        assert_eq!(status, 200, "{res}");
        res["token"].as_str().unwrap().to_owned()
    }

    /// Opens a socket and connects with `token`; panics unless connected.
    async fn connected(&self, token: &str) -> (Ws, Value) {
        let mut ws = open(&self.s).await;
        send(
            &mut ws,
            &json!({"id": 1, "connect": {"token": token}}).to_string(),
        )
        .await;
        let reply = expect(&mut ws, |v| v["id"] == 1).await;
        assert!(reply["connect"].is_object(), "{reply}");
        (ws, reply["connect"].clone())
    }
}

async fn call(ws: &mut Ws, id: u64, method: &str, params: Value) -> Value {
    let mut cmd = json!({ "id": id });
    cmd[method] = params;
    send(ws, &cmd.to_string()).await;
    expect(ws, |v| v["id"] == id).await
}

/// A command any connected client may send, to show the connection is alive.
async fn alive(ws: &mut Ws, id: u64) {
    let r = call(ws, id, "rpc", json!({"method": "x"})).await;
    assert_eq!(r["error"]["code"], 108, "{r}");
}

#[tokio::test]
async fn an_expired_connection_closes_with_3005_after_the_grace() {
    let t = setup(&[("TOLLGATE_GATEWAY__EXPIRED_CLOSE_DELAY", "1")]).await;
    let started = tokio::time::Instant::now();
    let (mut ws, result) = t
        .connected(&t.conn_token(ME, &json!({"exp": now() + 2})))
        .await;
    assert_eq!(result["expires"], true);
    assert!(result["ttl"].as_i64().unwrap() <= 2, "{result}");
    alive(&mut ws, 2).await;
    assert_eq!(closed(&mut ws).await, 3005);
    // Expired after 1 to 2 s (whole seconds), closed a 1 s grace later.
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "not before the grace: {:?}",
        started.elapsed()
    );
    let metrics = t.s.get_text("/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "tollgate_gateway_disconnects_total{code=\"3005\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn refresh_extends_the_connection_or_closes_it() {
    let t = setup(&[("TOLLGATE_GATEWAY__EXPIRED_CLOSE_DELAY", "1")]).await;
    let first = json!({"exp": now() + 2, "channels": ["news"]});

    // A fresh token for the same user and channels: the connection outlives the old one.
    let (mut ws, result) = t.connected(&t.conn_token(ME, &first)).await;
    assert!(result["subs"]["news"].is_object(), "{result}");
    let r = call(
        &mut ws,
        2,
        "refresh",
        json!({"token": t.conn_token(ME, &json!({"exp": now() + 600, "channels": ["news"]}))}),
    )
    .await;
    assert_eq!(r["refresh"]["expires"], true, "{r}");
    assert!(r["refresh"]["ttl"].as_i64().unwrap() > 500, "{r}");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    alive(&mut ws, 3).await;
    api(
        &t.s,
        "publish",
        json!({"channel": "news", "data": {"still": "here"}}),
    )
    .await;
    let push = expect(&mut ws, |v| v["push"]["pub"].is_object()).await;
    assert_eq!(push["push"]["pub"]["data"], json!({"still": "here"}));

    // Refusals close the connection.
    let cases = [
        (
            "another user",
            t.conn_token("mallory", &json!({"channels": ["news"]})),
            3500,
        ),
        (
            "other token channels",
            t.conn_token(ME, &json!({"channels": ["news", "sports"]})),
            3010,
        ),
        ("no token channels", t.conn_token(ME, &json!({})), 3010),
        (
            "an expired token",
            t.conn_token(ME, &json!({"exp": now() - 1, "channels": ["news"]})),
            3005,
        ),
        ("not a token", "garbage".to_owned(), 3500),
    ];
    for (name, token, code) in cases {
        let (mut ws, _) = t
            .connected(&t.conn_token(ME, &json!({"channels": ["news"]})))
            .await;
        send(
            &mut ws,
            &json!({"id": 2, "refresh": {"token": token}}).to_string(),
        )
        .await;
        assert_eq!(next_or_close(&mut ws).await, Err(code), "{name}");
    }
}

#[tokio::test]
async fn a_consumer_that_stops_reading_is_closed_with_3008() {
    let t = setup(&[("TOLLGATE_GATEWAY__QUEUE_BYTES", "65536")]).await;
    let token = t.pubsub("slow", json!({"flood": {"read": true}})).await;
    let (mut ws, _) = t.connected(&token).await;
    let r = call(&mut ws, 2, "subscribe", json!({"channel": "flood"})).await;
    assert!(r["subscribe"].is_object(), "{r}");
    // The client reads nothing while far more than the socket buffers and the 64 KiB
    // queue can hold is published. The publisher is never stalled.
    let data = "x".repeat(60_000);
    for n in 0..400 {
        let r = api(
            &t.s,
            "publish",
            json!({"channel": "flood", "data": {"n": n, "pad": data}}),
        )
        .await;
        assert_eq!(r, json!({"result": {}}), "publication {n}");
    }
    // What was written before the backlog overflowed arrives, then the close.
    assert_eq!(closed(&mut ws).await, 3008);
    let metrics = t.s.get_text("/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "tollgate_gateway_disconnects_total{code=\"3008\"}"
        ),
        1.0
    );
}

/// Connects under `max_message_bytes` = 64 KiB and sends a 60 KB publish (read) and then
/// a 70 KB one; returns how the socket ended.
async fn oversized_frame() -> Option<u16> {
    let t = setup(&[("TOLLGATE_GATEWAY__MAX_MESSAGE_BYTES", "65536")]).await;
    let token = t
        .pubsub("big", json!({"room": {"read": true, "write": true}}))
        .await;
    let (mut ws, _) = t.connected(&token).await;
    // Just under the limit is read.
    let pad = "y".repeat(60_000);
    let r = call(
        &mut ws,
        2,
        "publish",
        json!({"channel": "room", "data": {"pad": pad}}),
    )
    .await;
    assert_eq!(r, json!({"id": 2, "publish": {}}));
    let over =
        json!({"id": 3, "publish": {"channel": "room", "data": {"pad": "z".repeat(70_000)}}});
    send_raw(&mut ws, Message::Text(over.to_string().into())).await;
    let end = ended(&mut ws).await;
    // The server goes on serving others.
    let (mut other, _) = t.connected(&token).await;
    alive(&mut other, 2).await;
    end
}

#[tokio::test]
async fn a_frame_over_the_size_limit_closes_with_1009() {
    assert_eq!(oversized_frame().await, Some(1009));
}

#[tokio::test]
async fn channel_limits_answer_106_and_close_with_3505() {
    let t = setup(&[("TOLLGATE_GATEWAY__MAX_CHANNELS", "2")]).await;
    let grants = json!({"a": {"read": true}, "b": {"read": true}, "c": {"read": true}});
    let (mut ws, _) = t.connected(&t.pubsub("m", grants).await).await;
    for (id, channel) in [(2, "a"), (3, "b")] {
        let r = call(&mut ws, id, "subscribe", json!({"channel": channel})).await;
        assert!(r["subscribe"].is_object(), "{channel}: {r}");
    }
    let r = call(&mut ws, 4, "subscribe", json!({"channel": "c"})).await;
    assert_eq!(r["error"]["code"], 106, "{r}");
    // The limit counts subscriptions: after leaving one, another fits.
    call(&mut ws, 5, "unsubscribe", json!({"channel": "a"})).await;
    let r = call(&mut ws, 6, "subscribe", json!({"channel": "c"})).await;
    assert!(r["subscribe"].is_object(), "{r}");

    // Token-side channels: as many as the limit connect, one more closes 3505.
    let (_, result) = t
        .connected(&t.conn_token(ME, &json!({"channels": ["x", "y"]})))
        .await;
    assert_eq!(result["subs"].as_object().unwrap().len(), 2, "{result}");
    let mut ws = open(&t.s).await;
    let token = t.conn_token(ME, &json!({"channels": ["x", "y", "z"]}));
    send(
        &mut ws,
        &json!({"id": 1, "connect": {"token": token}}).to_string(),
    )
    .await;
    assert_eq!(next_or_close(&mut ws).await, Err(3505));
}

#[tokio::test]
async fn publications_over_the_size_limit_are_refused() {
    let t = setup(&[("TOLLGATE_GATEWAY__MAX_PUBLICATION_BYTES", "100")]).await;
    let token = t
        .pubsub("p", json!({"room": {"read": true, "write": true}}))
        .await;
    let (mut ws, _) = t.connected(&token).await;
    // `data` is measured compactly serialised: {"t":"…"} is 8 bytes plus the text.
    for (id, len, client_code, api_code) in [
        (2, 92, None, None),
        (3, 93, Some(106), Some(107)),
        (4, 1000, Some(106), Some(107)),
    ] {
        let data = json!({"t": "x".repeat(len)});
        let r = call(
            &mut ws,
            id,
            "publish",
            json!({"channel": "room", "data": data}),
        )
        .await;
        assert_eq!(
            r["error"]["code"].as_u64(),
            client_code,
            "client, {len}: {r}"
        );
        let r = api(&t.s, "publish", json!({"channel": "room", "data": data})).await;
        assert_eq!(
            r["error"]["code"].as_u64(),
            api_code,
            "server API, {len}: {r}"
        );
        if api_code.is_none() {
            assert_eq!(r, json!({"result": {}}));
        }
    }
    alive(&mut ws, 10).await;
}

#[tokio::test]
async fn a_client_that_does_not_pong_is_closed_with_3012() {
    let t = setup(&[
        ("TOLLGATE_GATEWAY__PING_INTERVAL", "2s"),
        ("TOLLGATE_GATEWAY__PONG_TIMEOUT", "1s"),
    ])
    .await;
    let (mut polite, result) = t.connected(&t.conn_token("polite", &json!({}))).await;
    assert_eq!(result["ping"], 2);
    assert_eq!(result["pong"], true);
    let (mut silent, _) = t.connected(&t.conn_token("silent", &json!({}))).await;
    // Two pings answered with an empty command keep a connection: past the second
    // ping's timeout it still works.
    for _ in 0..2 {
        expect(&mut polite, |v| *v == json!({})).await;
        send(&mut polite, "{}").await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    alive(&mut polite, 2).await;
    // The silent one got its ping and never answered.
    assert_eq!(closed(&mut silent).await, 3012);
}

#[tokio::test]
async fn origins_follow_the_allowlist() {
    async fn upgrade(s: &TestServer, origin: Option<&str>) -> u16 {
        let mut req = s
            .client
            .get(s.url("/connection/websocket"))
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        req.send().await.unwrap().status().as_u16()
    }
    // Empty allowlist (the default): only clients that send no Origin.
    let closed_list = TestServer::start().await;
    for (origin, status) in [
        (None, 101),
        (Some("https://app.example.com"), 403),
        (Some("http://127.0.0.1"), 403),
        (Some("null"), 403),
    ] {
        assert_eq!(upgrade(&closed_list, origin).await, status, "{origin:?}");
    }
    let wildcard =
        TestServer::start_with(&[("TOLLGATE_GATEWAY__ALLOWED_ORIGINS", "https://*.example.com")])
            .await;
    for (origin, status) in [
        (None, 101),
        (Some("https://a.example.com"), 101),
        (Some("https://A.Example.com"), 101),
        (Some("https://a.b.example.com"), 101),
        (Some("https://example.com"), 403),
        (Some("https://a.example.org"), 403),
        (Some("http://a.example.com"), 403),
        (Some("https://evilexample.com"), 403),
        (Some("https://a.example.com.evil.org"), 403),
    ] {
        assert_eq!(upgrade(&wildcard, origin).await, status, "{origin:?}");
    }
}
