//! Gateway channel behaviour driven by namespace options and token claims: presence,
//! join/leave, history and recovery, subscription expiry, token `channels`, user-limited
//! channels, protocol edge codes, limits, origins, and the server API's history results.
//! Tokens here are signed the way an application signs them for Centrifugo: HS256 with
//! the shared secret, no `kid`, no `aud` — the single-Centrifugo migration path, where the
//! installation's one project is what the shared secret and API key act for.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tollgate_token::KeyId;
use tollgate_token::jose::{Algorithm, SigningKey};

use crate::gateway::{API_KEY, Ws, api, closed, expect, open, send};
use crate::support::{TestServer, metric, now};

pub(crate) const SECRET: &str = "a-shared-hmac-secret-of-at-least-32-bytes";

const CONFIG: &str = r#"
[gateway]
presence_update_interval = "200ms"
expired_sub_close_delay = 0
stale_timeout = "1s"

[gateway.namespaces.chat]
presence = true
join_leave = true
history_size = 10
history_ttl = "5m"
allow_recovery = true
allow_subscribe_for_client = true
allow_publish_for_subscriber = true
allow_presence_for_subscriber = true
allow_history_for_subscriber = true

[gateway.namespaces.personal]
allow_user_limited_channels = true
"#;

async fn server(extra_toml: &str, env: &[(&str, &str)]) -> TestServer {
    let mut vars = vec![
        ("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY),
        ("TOLLGATE_CENTRIFUGO__TOKEN_HMAC_SECRET_KEY", SECRET),
    ];
    vars.extend_from_slice(env);
    let s = TestServer::start_with_config(&format!("{extra_toml}{CONFIG}"), &vars).await;
    // The one project the deployment-wide credentials act for.
    s.project().await;
    s
}

/// An HS256 JWT signed with the shared secret, without `kid`.
pub(crate) fn hs256(claims: &Value) -> String {
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    let input = format!(
        "{}.{}",
        b64(&json!({"alg": "HS256", "typ": "JWT"})),
        b64(claims)
    );
    let key = SigningKey::from_secret(
        Algorithm::HS256,
        "any".parse::<KeyId>().unwrap(),
        SECRET.as_bytes(),
    )
    .unwrap();
    let sig = key.sign(input.as_bytes()).unwrap();
    format!(
        "{input}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
    )
}

/// Connects as `user` with extra claims; returns the socket and the connect result.
async fn connect(s: &TestServer, user: &str, extra: Value) -> (Ws, Value) {
    let mut claims = json!({"sub": user, "exp": now() + 600});
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let mut ws = open(s).await;
    send(
        &mut ws,
        &json!({"id": 1, "connect": {"token": hs256(&claims)}}).to_string(),
    )
    .await;
    let reply = expect(&mut ws, |v| v["id"] == 1).await;
    (ws, reply)
}

async fn call(ws: &mut Ws, id: u64, method: &str, params: Value) -> Value {
    let mut cmd = json!({ "id": id });
    cmd[method] = params;
    send(ws, &cmd.to_string()).await;
    expect(ws, |v| v["id"] == id).await
}

#[tokio::test]
async fn namespaces_give_presence_join_leave_history_and_recovery() {
    let s = server("", &[]).await;
    let (mut alice, reply) = connect(&s, "alice", json!({"info": {"name": "Alice"}})).await;
    assert!(reply["connect"]["client"].is_string(), "{reply}");
    let sub = call(
        &mut alice,
        2,
        "subscribe",
        json!({"channel": "chat:1", "join_leave": true, "recoverable": true, "flag": 1}),
    )
    .await;
    let result = &sub["subscribe"];
    assert_eq!(result["recoverable"], true, "{sub}");
    assert_eq!(result["positioned"], true);
    assert_eq!(result["offset"], 0);
    let epoch = result["epoch"].as_str().unwrap().to_owned();

    let (mut bob, _) = connect(&s, "bob", json!({})).await;
    call(
        &mut bob,
        2,
        "subscribe",
        json!({"channel": "chat:1", "join_leave": true}),
    )
    .await;
    // Everyone who asked for join/leave sees joins, their own included.
    let join = expect(&mut alice, |v| v["push"]["join"]["info"]["user"] == "bob").await;
    assert_eq!(join["push"]["channel"], "chat:1");

    // Publishing needs the subscription (allow_publish_for_subscriber); both receive it
    // with its offset and the publisher's info.
    let published = call(
        &mut bob,
        3,
        "publish",
        json!({"channel": "chat:1", "data": {"n": 1}}),
    )
    .await;
    assert_eq!(published, json!({"id": 3, "publish": {}}));
    let push = expect(&mut alice, |v| v["push"]["pub"].is_object()).await;
    assert_eq!(push["push"]["pub"]["offset"], 1);
    assert_eq!(push["push"]["pub"]["info"]["user"], "bob");
    let own = expect(&mut bob, |v| v["push"]["pub"].is_object()).await;
    assert_eq!(own["push"]["pub"]["data"], json!({"n": 1}));

    let presence = call(&mut alice, 4, "presence", json!({"channel": "chat:1"})).await;
    let entries = presence["presence"]["presence"].as_object().unwrap();
    assert_eq!(entries.len(), 2, "{presence}");
    assert!(
        entries
            .values()
            .any(|e| e["user"] == "alice" && e["conn_info"] == json!({"name": "Alice"}))
    );
    let stats = call(
        &mut alice,
        5,
        "presence_stats",
        json!({"channel": "chat:1"}),
    )
    .await;
    assert_eq!(
        stats["presence_stats"],
        json!({"num_clients": 2, "num_users": 2})
    );
    let history = call(
        &mut alice,
        6,
        "history",
        json!({"channel": "chat:1", "limit": -1}),
    )
    .await;
    assert_eq!(history["history"]["offset"], 1);
    assert_eq!(history["history"]["epoch"], epoch.as_str());
    assert_eq!(
        history["history"]["publications"][0]["data"],
        json!({"n": 1})
    );
    let top = call(&mut alice, 7, "history", json!({"channel": "chat:1"})).await;
    assert_eq!(
        top["history"]["publications"],
        json!([]),
        "no limit: top only"
    );

    // The server API publishes into history and says where.
    let res = api(
        &s,
        "publish",
        json!({"channel": "chat:1", "data": {"n": 2}, "tags": {"k": "v"}}),
    )
    .await;
    assert_eq!(res["result"]["offset"], 2, "{res}");
    assert_eq!(res["result"]["epoch"], epoch.as_str());
    let push = expect(&mut alice, |v| v["push"]["pub"]["offset"] == 2).await;
    assert_eq!(push["push"]["pub"]["tags"], json!({"k": "v"}));

    // Bob leaves: Alice sees it. Coming back from offset 0 recovers both publications.
    call(&mut bob, 8, "unsubscribe", json!({"channel": "chat:1"})).await;
    let leave = expect(&mut alice, |v| v["push"]["leave"].is_object()).await;
    assert_eq!(leave["push"]["leave"]["info"]["user"], "bob");
    let back = call(
        &mut bob,
        9,
        "subscribe",
        json!({"channel": "chat:1", "recover": true, "recoverable": true, "offset": 0, "epoch": epoch}),
    )
    .await;
    let r = &back["subscribe"];
    assert_eq!(r["was_recovering"], true, "{back}");
    assert_eq!(r["recovered"], true);
    let offsets: Vec<&Value> = r["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["offset"])
        .collect();
    assert_eq!(offsets, [&json!(1), &json!(2)]);

    // A lost epoch: not recovered, or 112 when the client asked to be told.
    call(&mut bob, 10, "unsubscribe", json!({"channel": "chat:1"})).await;
    let lost = json!({"channel": "chat:1", "recover": true, "recoverable": true, "offset": 1, "epoch": "gone", "flag": 3});
    let refused = call(&mut bob, 11, "subscribe", lost.clone()).await;
    assert_eq!(refused["error"]["code"], 112, "{refused}");
    let mut lenient = lost;
    lenient["flag"] = json!(1);
    let not = call(&mut bob, 12, "subscribe", lenient).await;
    assert_eq!(not["subscribe"]["was_recovering"], true);
    assert!(not["subscribe"].get("recovered").is_none());
    assert_eq!(not["subscribe"]["offset"], 2);

    // Outside the configured namespace everything is off or denied.
    let off = call(&mut alice, 13, "presence", json!({"channel": "news:1"})).await;
    assert_eq!(off["error"]["code"], 108);
    let off = call(&mut alice, 14, "history", json!({"channel": "news:1"})).await;
    assert_eq!(off["error"]["code"], 108);
    let denied = call(&mut alice, 15, "subscribe", json!({"channel": "news:1"})).await;
    assert_eq!(denied["error"]["code"], 103);
    let denied = call(
        &mut alice,
        16,
        "publish",
        json!({"channel": "news:1", "data": {}}),
    )
    .await;
    assert_eq!(denied["error"]["code"], 103);
    // Not subscribed: no publishing, presence or history "for subscriber".
    let denied = call(
        &mut alice,
        17,
        "publish",
        json!({"channel": "chat:2", "data": {}}),
    )
    .await;
    assert_eq!(denied["error"]["code"], 103);
    let denied = call(&mut alice, 18, "history", json!({"channel": "chat:2"})).await;
    assert_eq!(denied["error"]["code"], 103);

    // The server API subscribes with recovery: the position in the push, then what was
    // missed as publications.
    let first = api(
        &s,
        "publish",
        json!({"channel": "chat:3", "data": {"m": 1}}),
    )
    .await;
    api(
        &s,
        "publish",
        json!({"channel": "chat:3", "data": {"m": 2}}),
    )
    .await;
    let epoch3 = first["result"]["epoch"].clone();
    api(
        &s,
        "subscribe",
        json!({"user": "alice", "channel": "chat:3", "recover_since": {"offset": 0, "epoch": epoch3}}),
    )
    .await;
    let push = expect(&mut alice, |v| v["push"]["subscribe"].is_object()).await;
    assert_eq!(push["push"]["channel"], "chat:3");
    assert!(push["push"]["subscribe"].get("publications").is_none());
    for n in [1, 2] {
        let p = expect(&mut alice, |v| {
            v["push"]["channel"] == "chat:3" && v["push"]["pub"].is_object()
        })
        .await;
        assert_eq!(p["push"]["pub"]["data"], json!({"m": n}));
    }

    // Anonymous connections are not "clients" for allow_subscribe_for_client.
    let (mut anon, reply) = connect(&s, "", json!({})).await;
    assert!(reply["connect"].is_object(), "{reply}");
    let denied = call(&mut anon, 2, "subscribe", json!({"channel": "chat:1"})).await;
    assert_eq!(denied["error"]["code"], 103);
}

#[tokio::test]
async fn token_claims_and_subscription_expiry() {
    let s = server("", &[]).await;
    // `channels` in the connection token: server-side subscriptions in the connect result.
    let (mut ws, reply) = connect(
        &s,
        "alice",
        json!({"channels": ["chat:srv"], "info": {"v": 1}}),
    )
    .await;
    let sub = &reply["connect"]["subs"]["chat:srv"];
    assert_eq!(sub["recoverable"], true, "{reply}");
    assert!(sub["epoch"].is_string());
    api(
        &s,
        "publish",
        json!({"channel": "chat:srv", "data": {"x": 1}}),
    )
    .await;
    let push = expect(&mut ws, |v| v["push"]["pub"].is_object()).await;
    assert_eq!(push["push"]["channel"], "chat:srv");

    // A subscription token: expired → 109; valid but `expire_at` past → 110.
    let sub_token = |exp: i64, extra: Value| {
        let mut c = json!({"sub": "alice", "channel": "$chat:priv", "exp": exp});
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        hs256(&c)
    };
    let r = call(
        &mut ws,
        2,
        "subscribe",
        json!({"channel": "$chat:priv", "token": sub_token(now() - 1, json!({}))}),
    )
    .await;
    assert_eq!(r["error"]["code"], 109);
    let r = call(
        &mut ws,
        3,
        "subscribe",
        json!({"channel": "$chat:priv", "token": sub_token(now() + 60, json!({"expire_at": now() - 1}))}),
    )
    .await;
    assert_eq!(r["error"]["code"], 110);
    // `data` comes back in the result; the subscription ends with 2501 once expired.
    let r = call(
        &mut ws,
        4,
        "subscribe",
        json!({"channel": "$chat:priv", "token": sub_token(now() + 60, json!({"expire_at": now() + 1, "data": {"hello": 1}}))}),
    )
    .await;
    assert_eq!(r["subscribe"]["expires"], true, "{r}");
    assert_eq!(r["subscribe"]["data"], json!({"hello": 1}));
    let push = expect(&mut ws, |v| v["push"]["unsubscribe"].is_object()).await;
    assert_eq!(push["push"]["channel"], "$chat:priv");
    assert_eq!(push["push"]["unsubscribe"]["code"], 2501);

    // User-limited channels admit their listed users only.
    let ok = call(
        &mut ws,
        5,
        "subscribe",
        json!({"channel": "personal:#alice,carol"}),
    )
    .await;
    assert!(ok["subscribe"].is_object(), "{ok}");
    let denied = call(&mut ws, 6, "subscribe", json!({"channel": "personal:#bob"})).await;
    assert_eq!(denied["error"]["code"], 103);

    // A server-side subscription from the server API, with data and an expiry: the
    // client cannot resubscribe it itself, so its expiry closes the connection (3006).
    api(
        &s,
        "subscribe",
        json!({"user": "alice", "channel": "chat:api", "expire_at": now() + 1, "data": {"d": 1}, "override": {"presence": {"value": false}}}),
    )
    .await;
    let push = expect(&mut ws, |v| v["push"]["subscribe"].is_object()).await;
    assert_eq!(push["push"]["channel"], "chat:api");
    assert_eq!(push["push"]["subscribe"]["data"], json!({"d": 1}));
    assert_eq!(push["push"]["subscribe"]["expires"], true);
    assert_eq!(closed(&mut ws).await, 3006);

    // A connect whose token subscription cannot be honoured (unrecoverable, flag 2) gets
    // the error and is then treated as never connected: the stale timer closes it.
    let mut ws = open(&s).await;
    let token = hs256(&json!({"sub": "dora", "channels": ["chat:srv", "chat:srv"], "exp": 1.0e10}));
    send(
        &mut ws,
        &json!({"id": 1, "connect": {"token": token, "subs": {"chat:srv": {"recover": true, "epoch": "gone", "offset": 3, "flag": 2}}}})
            .to_string(),
    )
    .await;
    assert_eq!(
        expect(&mut ws, |v| v["id"] == 1).await["error"]["code"],
        112
    );
    assert_eq!(closed(&mut ws).await, 3502);
    let stats = api(&s, "presence_stats", json!({"channel": "chat:srv"})).await;
    assert_eq!(
        stats["result"]["num_clients"], 0,
        "the abandoned connect left no presence: {stats}"
    );

    // Connection tokens: expired → 109, a `channel` claim → 3500.
    let (_, reply) = connect(&s, "alice", json!({"exp": now() - 5})).await;
    assert_eq!(reply["error"]["code"], 109);
    let (mut bad, _) = (open(&s).await, ());
    send(
        &mut bad,
        &json!({"id": 1, "connect": {"token": hs256(&json!({"sub": "a", "channel": "chat:1"}))}})
            .to_string(),
    )
    .await;
    assert_eq!(closed(&mut bad).await, 3500);
}

#[tokio::test]
async fn protocol_edges_answer_with_centrifugo_codes() {
    let s = server("", &[]).await;
    let (mut ws, _) = connect(&s, "alice", json!({})).await;
    let rpc = call(&mut ws, 2, "rpc", json!({"method": "x", "data": {}})).await;
    assert_eq!(rpc["error"]["code"], 108);
    // Several commands in one frame are answered in order, in one frame or more.
    send(
        &mut ws,
        &format!(
            "{}\n{}\n",
            json!({"id": 3, "subscribe": {"channel": "chat:a"}}),
            json!({"id": 4, "unsubscribe": {"channel": "chat:a"}})
        ),
    )
    .await;
    assert!(expect(&mut ws, |v| v["id"] == 3).await["subscribe"].is_object());
    assert_eq!(
        expect(&mut ws, |v| v["id"] == 4).await,
        json!({"id": 4, "unsubscribe": {}})
    );
    send(&mut ws, &json!({"send": {"data": {}}}).to_string()).await;
    assert_eq!(closed(&mut ws).await, 3508, "send without a handler");

    let (mut ws, _) = connect(&s, "alice", json!({})).await;
    send(&mut ws, &json!({"id": 2, "teleport": {}}).to_string()).await;
    assert_eq!(closed(&mut ws).await, 3501, "unknown command");

    let (mut ws, _) = connect(&s, "alice", json!({})).await;
    send(&mut ws, "").await;
    assert_eq!(closed(&mut ws).await, 3501, "empty frame");
}

#[tokio::test]
async fn limits_origins_and_metrics() {
    let s = server(
        "",
        &[
            ("TOLLGATE_GATEWAY__MAX_COMMANDS_PER_SECOND", "1"),
            ("TOLLGATE_GATEWAY__COMMAND_BURST", "3"),
            ("TOLLGATE_GATEWAY__MAX_CONNECTIONS", "2"),
            ("TOLLGATE_GATEWAY__MAX_CONNECTIONS_PER_USER", "1"),
            (
                "TOLLGATE_GATEWAY__ALLOWED_ORIGINS",
                "https://app.example.com",
            ),
        ],
    )
    .await;
    let counted = |text: &str| {
        (
            metric(text, "tollgate_gateway_connections_total"),
            metric(text, "tollgate_gateway_clients"),
            metric(text, "tollgate_gateway_disconnects_total{code=\"3504\"}"),
        )
    };
    assert_eq!(counted(&s.get_text("/metrics").await), (0.0, 0.0, 0.0));
    let (mut ws, _) = connect(&s, "alice", json!({})).await;
    assert_eq!(
        counted(&s.get_text("/metrics").await),
        (1.0, 1.0, 0.0),
        "one connection accepted and connected"
    );
    let mut frame = Vec::new();
    for id in 2..8 {
        frame.push(json!({"id": id, "presence_stats": {"channel": "chat:1"}}).to_string());
    }
    send(&mut ws, &frame.join("\n")).await;
    let last = expect(&mut ws, |v| v["id"] == 7).await;
    assert_eq!(last["error"]["code"], 111, "{last}");
    assert_eq!(last["error"]["temporary"], true);

    // A second socket fits, a third does not.
    let second = open(&s).await;
    let third = tokio_tungstenite::connect_async(format!("ws://{}/connection/websocket", s.addr))
        .await
        .unwrap_err();
    assert!(third.to_string().contains("503"), "{third}");
    // One connection per user here: Alice's second is refused with 3504.
    let mut second = second;
    let token = hs256(&json!({"sub": "alice"}));
    send(
        &mut second,
        &json!({"id": 1, "connect": {"token": token}}).to_string(),
    )
    .await;
    assert_eq!(closed(&mut second).await, 3504);
    assert_eq!(
        counted(&s.get_text("/metrics").await),
        (2.0, 1.0, 1.0),
        "the second socket was accepted, refused as a client and counted as a 3504"
    );
    drop(ws);

    // Browser origins: only the allowlist.
    let upgrade = |origin: &'static str| {
        let url = s.url("/connection/websocket");
        let client = s.client.clone();
        async move {
            client
                .get(url)
                .header("Connection", "Upgrade")
                .header("Upgrade", "websocket")
                .header("Sec-WebSocket-Version", "13")
                .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
                .header("Origin", origin)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(upgrade("https://evil.example.com").await, 403);
    // The sockets above may take a moment to deregister.
    let mut status = 0;
    for _ in 0..50 {
        status = upgrade("https://app.example.com").await;
        if status == 101 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 101);

    let metrics = s.get_text("/metrics").await;
    assert!(metrics.contains("tollgate_gateway_commands_total{method=\"presence_stats\"} 6"));
    // One node on the in-process broker never queues anything for other nodes.
    assert!(metrics.contains("\ntollgate_cluster_control_dropped_total 0\n"));
}

#[tokio::test]
async fn the_legacy_server_api_takes_batches_and_query_keys() {
    let s = server("", &[]).await;
    let body = format!(
        "{}\n{}\n{}",
        json!({"id": 1, "method": "publish", "params": {"channel": "chat:9", "data": {"a": 1}}}),
        json!({"id": 2, "method": 6, "params": {"channel": "chat:9", "limit": 5}}),
        json!({"method": "presence", "params": {"channel": "news"}}),
    );
    let res = s
        .client
        // Query keys are percent-decoded.
        .post(s.url(&format!("/api?api_key={}", API_KEY.replace('-', "%2D"))))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["id"], 1);
    assert_eq!(lines[0]["result"]["offset"], 1);
    assert_eq!(lines[1]["id"], 2);
    assert_eq!(
        lines[1]["result"]["publications"][0]["data"],
        json!({"a": 1})
    );
    assert_eq!(lines[2]["error"]["code"], 108);
    // A repeated idempotency key publishes once and answers the first result.
    for _ in 0..2 {
        let res = api(
            &s,
            "publish",
            json!({"channel": "chat:9", "data": {"a": 2}, "idempotency_key": "order-7"}),
        )
        .await;
        assert_eq!(res["result"]["offset"], 2, "{res}");
    }
    let top = api(&s, "history", json!({"channel": "chat:9"})).await;
    assert_eq!(top["result"]["offset"], 2);

    let res = s
        .client
        .post(s.url("/api?api_key=wrong"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn a_broadcast_answers_every_channel_in_order_with_its_own_error() {
    // The publishes of a broadcast overlap; the answers must still line up with
    // `channels`, and one bad channel must not spoil the others.
    let s = server("", &[]).await;
    let mut channels: Vec<String> = (0..100).map(|i| format!("chat:b{i}")).collect();
    channels[37] = String::new();
    let res = api(
        &s,
        "broadcast",
        json!({"channels": channels, "data": {"n": 1}}),
    )
    .await;
    let responses = res["result"]["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), 100, "{res}");
    for (i, r) in responses.iter().enumerate() {
        if i == 37 {
            assert_eq!(r["error"]["code"], 107, "{r}");
        } else {
            assert_eq!(r["result"]["offset"], 1, "{i}: {r}");
        }
    }
    let top = api(&s, "history", json!({"channel": "chat:b99"})).await;
    assert_eq!(top["result"]["offset"], 1, "{top}");
}
