//! The WebSocket gateway with a real WebSocket client: seed 000's client flow (connection
//! token, subscription token, publication from the server API), PubSub-token capabilities,
//! and deny-by-default.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tollgate_token::{Scope, Scopes};

use crate::support::TestServer;

const ME: &str = "123e4567-e89b-12d3-a456-426614174000";
pub(crate) const API_KEY: &str = "server-api-key-for-tests-0123456789abcdef";

/// A protocol client: a socket plus the messages of frames read but not yet consumed
/// (replies and pushes arrive batched, several per frame).
pub(crate) struct Ws {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    pending: std::collections::VecDeque<Value>,
}

pub(crate) async fn open(s: &TestServer) -> Ws {
    open_at(&s.addr.to_string()).await
}

/// A Centrifugo-protocol socket to the server listening on `addr` (`host:port`).
pub(crate) async fn open_at(addr: &str) -> Ws {
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/connection/websocket"))
        .await
        .unwrap();
    Ws {
        socket,
        pending: std::collections::VecDeque::new(),
    }
}

pub(crate) async fn send(ws: &mut Ws, frame: &str) {
    ws.socket.send(Message::Text(frame.into())).await.unwrap();
}

/// Reads messages until one satisfies `pred`; others are skipped.
pub(crate) async fn expect(ws: &mut Ws, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        while let Some(v) = ws.pending.pop_front() {
            if pred(&v) {
                return v;
            }
        }
        let msg = tokio::time::timeout_at(deadline, ws.socket.next())
            .await
            .expect("timed out waiting for a message")
            .expect("socket open")
            .unwrap();
        match msg {
            Message::Text(t) => {
                for line in t.as_str().split('\n') {
                    ws.pending.push_back(serde_json::from_str(line).unwrap());
                }
            }
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// The next message (pending first), or the close code if the server closes instead.
pub(crate) async fn next_or_close(ws: &mut Ws) -> Result<Value, u16> {
    loop {
        if let Some(v) = ws.pending.pop_front() {
            return Ok(v);
        }
        match tokio::time::timeout(Duration::from_secs(5), ws.socket.next())
            .await
            .expect("timed out waiting for a message or a close")
        {
            Some(Ok(Message::Text(t))) => {
                for line in t.as_str().split('\n') {
                    ws.pending.push_back(serde_json::from_str(line).unwrap());
                }
            }
            Some(Ok(Message::Close(Some(frame)))) => return Err(frame.code.into()),
            Some(Ok(_)) => {}
            other => panic!("no message and no close frame: {other:?}"),
        }
    }
}

/// Sends a frame without waiting (a client that stops reading after it).
pub(crate) async fn send_raw(ws: &mut Ws, message: Message) {
    ws.socket.send(message).await.unwrap();
}

/// Waits for the socket to end, skipping messages: the close code, or `None` when the
/// connection was dropped without a close frame (reset or end of stream).
pub(crate) async fn ended(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.socket.next())
            .await
            .expect("the socket is still open")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code.into()),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

/// Waits for the server to close the socket; returns the close code.
pub(crate) async fn closed(ws: &mut Ws) -> u16 {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.socket.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    }
}

async fn setup() -> (TestServer, String, String, String) {
    let s = TestServer::start_with(&[("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY)]).await;
    let all: Scopes = Scope::ALL.into_iter().collect();
    let (project, token) = s.project_with(all).await;
    let (_, login) = s
        .post(
            "/api/fabric/subscribers/tokens",
            (&project, &token),
            &json!({"reference": ME}),
        )
        .await;
    let sat = login["token"].as_str().unwrap().to_owned();
    (s, project, token, sat)
}

pub(crate) async fn app_token(s: &TestServer, sat: &str, path: &str, body: Value) -> String {
    let res: Value = s
        .client
        .post(s.url(path))
        .bearer_auth(sat)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res["token"].as_str().unwrap().to_owned()
}

async fn server_publish(s: &TestServer, channel: &str, data: Value) -> (u16, Value) {
    let res = s
        .client
        .post(s.url("/api/publish"))
        .header("X-API-Key", API_KEY)
        .json(&json!({"channel": channel, "data": data}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn seed_000_client_flow_end_to_end() {
    let (s, _, _, sat) = setup().await;
    let channel = format!("user:{ME}");
    let conn = app_token(&s, &sat, "/api/v1/centrifugo/connection-token", json!({})).await;
    let sub = app_token(
        &s,
        &sat,
        "/api/v1/centrifugo/subscription-token",
        json!({"channel": channel}),
    )
    .await;

    let mut ws = open(&s).await;
    // centrifuge-js sends connect and its subscribes in one frame.
    send(
        &mut ws,
        &format!(
            "{}\n{}",
            json!({"id": 1, "connect": {"token": conn, "name": "js"}}),
            json!({"id": 2, "subscribe": {"channel": channel, "token": sub}})
        ),
    )
    .await;
    let connected = expect(&mut ws, |v| v["id"] == 1).await;
    let result = &connected["connect"];
    assert!(uuid::Uuid::parse_str(result["client"].as_str().unwrap()).is_ok());
    assert_eq!(result["ping"], 25);
    assert_eq!(result["pong"], true);
    assert_eq!(result["expires"], true);
    assert!(result["ttl"].as_i64().unwrap() > 3000);
    let subscribed = expect(&mut ws, |v| v["id"] == 2).await;
    assert!(subscribed["subscribe"].is_object(), "{subscribed}");

    let (status, res) =
        server_publish(&s, &channel, json!({"event": "notification.created"})).await;
    assert_eq!((status, res), (200, json!({"result": {}})));
    let push = expect(&mut ws, |v| v.get("push").is_some()).await;
    assert_eq!(push["push"]["channel"], channel);
    assert_eq!(
        push["push"]["pub"]["data"],
        json!({"event": "notification.created"})
    );

    // Another user's channel: no token, no capability → 103; the connection stays.
    send(
        &mut ws,
        &json!({"id": 3, "subscribe": {"channel": "user:00000000-0000-4000-8000-000000000000"}})
            .to_string(),
    )
    .await;
    let denied = expect(&mut ws, |v| v["id"] == 3).await;
    assert_eq!(denied["error"]["code"], 103);
    send(
        &mut ws,
        &json!({"id": 4, "subscribe": {"channel": channel}}).to_string(),
    )
    .await;
    assert_eq!(
        expect(&mut ws, |v| v["id"] == 4).await["error"]["code"],
        105
    );
    // sub_refresh with a fresh token for the same channel.
    let again = app_token(
        &s,
        &sat,
        "/api/v1/centrifugo/subscription-token",
        json!({"channel": channel}),
    )
    .await;
    send(
        &mut ws,
        &json!({"id": 6, "sub_refresh": {"channel": channel, "token": again}}).to_string(),
    )
    .await;
    let refreshed = expect(&mut ws, |v| v["id"] == 6).await;
    assert_eq!(refreshed["sub_refresh"]["expires"], true, "{refreshed}");
    send(
        &mut ws,
        &json!({"id": 7, "sub_refresh": {"channel": "not-subscribed", "token": again}}).to_string(),
    )
    .await;
    assert_eq!(
        expect(&mut ws, |v| v["id"] == 7).await["error"]["code"],
        103
    );
    // A subscription token for another channel is a mismatch: 3500.
    send(
        &mut ws,
        &json!({"id": 5, "subscribe": {"channel": "user:x", "token": sub}}).to_string(),
    )
    .await;
    assert_eq!(closed(&mut ws).await, 3500);
}

#[tokio::test]
async fn pubsub_tokens_open_channels_by_capability() {
    let (s, project, token, _) = setup().await;
    let mint = |channels: Value, member: &str| {
        let body = json!({"ttl": 5, "channels": channels, "member_id": member});
        let (p, t) = (project.clone(), token.clone());
        let s = &s;
        async move {
            let (_, res) = s.post("/api/pubsub/tokens", (&p, &t), &body).await;
            res["token"].as_str().unwrap().to_owned()
        }
    };
    let writer = mint(json!({"room": {"read": true, "write": true}}), "alice").await;
    let reader = mint(json!({"room": {"read": true}}), "bob").await;

    let mut alice = open(&s).await;
    let mut bob = open(&s).await;
    for (ws, tok) in [(&mut alice, &writer), (&mut bob, &reader)] {
        send(
            ws,
            &format!(
                "{}\n{}",
                json!({"id": 1, "connect": {"token": tok}}),
                json!({"id": 2, "subscribe": {"channel": "room"}})
            ),
        )
        .await;
        expect(ws, |v| v["id"] == 1 && v["connect"].is_object()).await;
        let sub = expect(ws, |v| v["id"] == 2).await;
        assert!(sub["subscribe"].is_object(), "{sub}");
    }
    // Read-only Bob may not publish; Alice may, and Bob receives it with her info.
    send(
        &mut bob,
        &json!({"id": 3, "publish": {"channel": "room", "data": {"t": "no"}}}).to_string(),
    )
    .await;
    assert_eq!(
        expect(&mut bob, |v| v["id"] == 3).await["error"]["code"],
        103
    );
    send(
        &mut alice,
        &json!({"id": 3, "publish": {"channel": "room", "data": {"t": "hi"}}}).to_string(),
    )
    .await;
    assert!(expect(&mut alice, |v| v["id"] == 3).await["publish"].is_object());
    let push = expect(&mut bob, |v| v.get("push").is_some()).await;
    assert_eq!(push["push"]["pub"]["data"], json!({"t": "hi"}));
    assert_eq!(push["push"]["pub"]["info"]["user"], "alice");
    // A channel the token does not list, and private channels, need a subscription token.
    send(
        &mut bob,
        &json!({"id": 4, "subscribe": {"channel": "other"}}).to_string(),
    )
    .await;
    assert_eq!(
        expect(&mut bob, |v| v["id"] == 4).await["error"]["code"],
        103
    );
}

#[tokio::test]
async fn bad_connections_are_closed_with_centrifugo_codes() {
    let (s, _, _, _) = setup().await;
    let mut ws = open(&s).await;
    send(
        &mut ws,
        &json!({"id": 1, "connect": {"token": "not-a-token"}}).to_string(),
    )
    .await;
    assert_eq!(closed(&mut ws).await, 3500);

    let mut ws = open(&s).await;
    send(
        &mut ws,
        &json!({"id": 1, "subscribe": {"channel": "room"}}).to_string(),
    )
    .await;
    assert_eq!(closed(&mut ws).await, 3501, "commands before connect");

    let mut ws = open(&s).await;
    send(&mut ws, "this is not json").await;
    assert_eq!(closed(&mut ws).await, 3501);

    // The server API refuses callers without the key.
    let res = s
        .client
        .post(s.url("/api/publish"))
        .json(&json!({"channel": "x", "data": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = s
        .client
        .post(s.url("/api"))
        .header("Authorization", format!("apikey {API_KEY}"))
        .json(&json!({"method": "publish", "params": {"channel": "x", "data": {"a": 1}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"result": {}}));
}

#[tokio::test]
async fn shutdown_closes_websockets_with_a_reconnect_code() {
    let (s, project, token, _) = setup().await;
    let (_, res) = s
        .post(
            "/api/pubsub/tokens",
            (&project, &token),
            &json!({"ttl": 5, "channels": {"room": {"read": true}}}),
        )
        .await;
    let mut ws = open(&s).await;
    send(
        &mut ws,
        &json!({"id": 1, "connect": {"token": res["token"]}}).to_string(),
    )
    .await;
    expect(&mut ws, |v| v["id"] == 1).await;
    let stopping = tokio::spawn(s.stop());
    assert_eq!(
        closed(&mut ws).await,
        3001,
        "reconnect-allowed shutdown code"
    );
    stopping.await.unwrap();
}

pub(crate) async fn api(s: &TestServer, method: &str, params: Value) -> Value {
    s.client
        .post(s.url(&format!("/api/{method}")))
        .header("X-API-Key", API_KEY)
        .json(&params)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_server_api_reaches_connections() {
    let (s, project, token, _) = setup().await;
    let (_, res) = s
        .post(
            "/api/pubsub/tokens",
            (&project, &token),
            &json!({"ttl": 5, "channels": {"room": {"read": true}}, "member_id": "carol"}),
        )
        .await;
    let mut ws = open(&s).await;
    send(
        &mut ws,
        &format!(
            "{}\n{}",
            json!({"id": 1, "connect": {"token": res["token"]}}),
            json!({"id": 2, "subscribe": {"channel": "room"}})
        ),
    )
    .await;
    let client = expect(&mut ws, |v| v["id"] == 1).await["connect"]["client"].clone();
    expect(&mut ws, |v| v["id"] == 2).await;

    let channels = api(&s, "channels", json!({"pattern": "ro*"})).await;
    assert_eq!(
        channels,
        json!({"result": {"channels": {"room": {"num_clients": 1}}}})
    );
    let info = api(&s, "info", json!({})).await;
    assert_eq!(info["result"]["nodes"][0]["num_clients"], 1);
    assert_eq!(info["result"]["nodes"][0]["num_users"], 1);
    // Presence and history are off unless a namespace turns them on.
    let stats = api(&s, "presence_stats", json!({"channel": "room"})).await;
    assert_eq!(
        stats,
        json!({"error": {"code": 108, "message": "not available"}})
    );
    let history = api(&s, "history", json!({"channel": "room", "limit": 10})).await;
    assert_eq!(history["error"]["code"], 108);

    // Server-side subscribe and unsubscribe arrive as pushes.
    assert_eq!(
        api(&s, "subscribe", json!({"user": "carol", "channel": "news"})).await,
        json!({"result": {}})
    );
    let push = expect(&mut ws, |v| v["push"]["subscribe"].is_object()).await;
    assert_eq!(push["push"]["channel"], "news");
    api(
        &s,
        "unsubscribe",
        json!({"user": "carol", "channel": "room"}),
    )
    .await;
    let push = expect(&mut ws, |v| v["push"]["unsubscribe"].is_object()).await;
    assert_eq!(push["push"]["channel"], "room");
    assert_eq!(push["push"]["unsubscribe"]["code"], 2000);

    // Batch: no `result` wrapper, one reply per command.
    let batch = api(
        &s,
        "batch",
        json!({"commands": [{"publish": {"channel": "news", "data": {"n": 1}}}, {"nope": {}}, null]}),
    )
    .await;
    assert_eq!(
        batch,
        json!({"replies": [{"publish": {}}, {"error": {"code": 104, "message": "not found"}}, {"error": {"code": 107, "message": "bad request"}}]})
    );
    let push = expect(&mut ws, |v| v["push"]["pub"].is_object()).await;
    assert_eq!(push["push"]["pub"]["data"], json!({"n": 1}));

    // A whitelisted client is spared; the connection still receives.
    api(
        &s,
        "disconnect",
        json!({"user": "carol", "whitelist": [client]}),
    )
    .await;
    api(&s, "publish", json!({"channel": "news", "data": {"n": 2}})).await;
    let push = expect(&mut ws, |v| v["push"]["pub"]["data"]["n"] == 2).await;
    assert_eq!(push["push"]["channel"], "news");

    // Disconnect with a custom code.
    api(
        &s,
        "disconnect",
        json!({"user": "carol", "disconnect": {"code": 4000, "reason": "bye"}}),
    )
    .await;
    assert_eq!(closed(&mut ws).await, 4000);
    // The session deregisters right after its close frame: allow it a moment.
    let mut clients = Value::Null;
    for _ in 0..50 {
        clients = api(&s, "info", json!({})).await["result"]["nodes"][0]["num_clients"].clone();
        if clients == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(clients, 0);
}

#[tokio::test]
async fn the_largest_pubsub_token_fits_in_a_connect_frame() {
    let (s, project, token, _) = setup().await;
    // 500 channels of 250 characters: the largest grant SignalWire's grammar allows.
    let channels: serde_json::Map<String, Value> = (0..500)
        .map(|i| {
            (
                format!("{i:03}{}", "c".repeat(247)),
                json!({"read": true, "write": true}),
            )
        })
        .collect();
    let (status, res) = s
        .post(
            "/api/pubsub/tokens",
            (&project, &token),
            &json!({"ttl": 5, "channels": channels}),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let big = res["token"].as_str().unwrap();
    assert!(big.len() > 150_000, "{}", big.len());
    let mut ws = open(&s).await;
    send(
        &mut ws,
        &json!({"id": 1, "connect": {"token": big}}).to_string(),
    )
    .await;
    let reply = expect(&mut ws, |v| v["id"] == 1).await;
    assert!(reply["connect"]["client"].is_string(), "{reply}");
    let channel = format!("499{}", "c".repeat(247));
    let sub = json!({"id": 2, "subscribe": {"channel": channel}}).to_string();
    send(&mut ws, &sub).await;
    assert!(expect(&mut ws, |v| v["id"] == 2).await["subscribe"].is_object());
}
