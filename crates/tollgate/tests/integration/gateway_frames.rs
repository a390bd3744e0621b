//! The gateway's frame-level edges on both protocols, with a real WebSocket client: an
//! oversized frame ends with a close 1009 the client can read (not a reset), invalid UTF-8
//! in a text frame with 1007; every inbound message (any method, replies, pongs,
//! WebSocket pings, malformed ones) spends from the per-connection command budget; and a
//! refused browser origin is told which setting to change.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

use crate::signalwire_ws::{connect_params, mint};
use crate::support::{TestServer, metric, now, sign};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Both protocols' paths.
const PATHS: [&str; 2] = ["/connection/websocket", "/"];

async fn open(s: &TestServer, path: &str) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{}{path}", s.addr))
        .await
        .unwrap();
    socket
}

/// Reads until the server's close frame: its code, and how the connection then ended
/// (`Ok` for a clean end of stream, the error otherwise).
async fn close_code(ws: &mut Socket) -> (u16, Result<(), String>) {
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no close within 5 s")
        {
            Some(Ok(Message::Close(Some(frame)))) => break frame.code.into(),
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    };
    // The client answers the close; the server then ends the TCP connection.
    let rest = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("the server kept the connection open after its close")
        {
            None => break Ok(()),
            Some(Ok(_)) => {}
            Some(Err(e)) => break Err(e.to_string()),
        }
    };
    (code, rest)
}

#[tokio::test]
async fn a_frame_far_over_the_size_limit_gets_a_readable_1009_on_both_protocols() {
    let s = TestServer::start_with(&[("TOLLGATE_GATEWAY__MAX_MESSAGE_BYTES", "65536")]).await;
    // Far more than the socket buffers hold: the server refuses the frame on its header and
    // must still let the client finish writing and read the close, instead of resetting
    // the connection with the rest of the frame unread.
    let huge = "x".repeat(8 * 1024 * 1024);
    for path in PATHS {
        let mut ws = open(&s, path).await;
        let sent = ws.send(Message::Text(huge.clone().into())).await;
        assert!(sent.is_ok(), "{path}: the write was cut off: {sent:?}");
        let (code, rest) = close_code(&mut ws).await;
        assert_eq!(code, 1009, "{path}");
        assert_eq!(rest, Ok(()), "{path}: the connection did not end cleanly");
    }
    let metrics = s.get_text("/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "tollgate_gateway_disconnects_total{code=\"1009\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007_on_both_protocols() {
    let s = TestServer::start().await;
    for path in PATHS {
        // Whole, and split across fragments (checked as the fragments arrive).
        let whole = vec![Frame::message(
            b"{\"id\":1,\xff}".to_vec(),
            OpCode::Data(Data::Text),
            true,
        )];
        let fragmented = vec![
            Frame::message(b"{\"id\":1,".to_vec(), OpCode::Data(Data::Text), false),
            Frame::message(b"\xc3\x28}".to_vec(), OpCode::Data(Data::Continue), true),
        ];
        for frames in [whole, fragmented] {
            let mut ws = open(&s, path).await;
            for frame in frames {
                ws.send(Message::Frame(frame)).await.unwrap();
            }
            let (code, rest) = close_code(&mut ws).await;
            assert_eq!(code, 1007, "{path}");
            assert_eq!(rest, Ok(()), "{path}");
        }
    }
    let metrics = s.get_text("/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "tollgate_gateway_disconnects_total{code=\"1007\"}"
        ),
        4.0
    );
}

#[tokio::test]
async fn a_close_the_client_starts_is_answered_on_both_protocols() {
    let s = TestServer::start().await;
    for path in PATHS {
        let mut ws = open(&s, path).await;
        let bye = CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        };
        ws.close(Some(bye)).await.unwrap();
        // The server's close frame comes back (echoing the code), then the end of the
        // connection.
        let (code, rest) = close_code(&mut ws).await;
        assert_eq!(code, 1000, "{path}");
        assert_eq!(rest, Ok(()), "{path}");
    }
}

/// A server whose connections may send 3 messages at once and 1 a second after that.
async fn tight_budget() -> TestServer {
    TestServer::start_with(&[
        ("TOLLGATE_GATEWAY__MAX_COMMANDS_PER_SECOND", "1"),
        ("TOLLGATE_GATEWAY__COMMAND_BURST", "3"),
    ])
    .await
}

/// Sends each text as its own frame, without waiting for answers.
async fn send_all(ws: &mut Socket, texts: &[String]) {
    for t in texts {
        ws.feed(Message::Text(t.clone().into())).await.unwrap();
    }
    ws.flush().await.unwrap();
}

/// The next JSON message whose `id` is `id`, skipping others (server pings, pushes).
async fn reply_to(ws: &mut Socket, id: &Value) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no reply within 5 s")
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = msg {
            for line in t.as_str().split('\n') {
                let v: Value = serde_json::from_str(line).unwrap();
                if v["id"] == *id && v.get("method").is_none() {
                    return v;
                }
            }
        }
    }
}

/// A SignalWire client connected with a PubSub token (the connect spends one message).
async fn signalwire_connected(s: &TestServer) -> (Socket, String) {
    let (project, api_token) = s.project().await;
    let token = mint(
        s,
        (&project, &api_token),
        "pubsub",
        json!({"ttl": 10, "member_id": "m1", "channels": {"room": {"read": true}}}),
    )
    .await;
    let mut ws = open(s, "/").await;
    let connect = json!({"jsonrpc": "2.0", "id": "c", "method": "signalwire.connect",
                         "params": connect_params(&token)});
    send_all(&mut ws, &[connect.to_string()]).await;
    let r = reply_to(&mut ws, &json!("c")).await;
    assert!(r["result"]["authorization"].is_object(), "{r}");
    (ws, token)
}

fn rpc(id: &str, method: &str, params: &Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

const TOO_MANY: i64 = -32603;

#[tokio::test]
async fn signalwire_housekeeping_methods_spend_the_command_budget() {
    let s = tight_budget().await;
    let (mut ws, token) = signalwire_connected(&s).await;
    // Two messages left after the connect: two pings answered, the rest refused.
    let pings: Vec<String> = (0..8)
        .map(|n| {
            rpc(
                &format!("p{n}"),
                "signalwire.ping",
                &json!({"timestamp": 1.5}),
            )
        })
        .collect();
    let started = tokio::time::Instant::now();
    send_all(&mut ws, &pings).await;
    let mut refused = 0;
    for n in 0..8 {
        let r = reply_to(&mut ws, &json!(format!("p{n}"))).await;
        if r["error"]["code"] == TOO_MANY {
            assert_eq!(r["error"]["message"], "Too many requests", "{r}");
            refused += 1;
        } else {
            assert_eq!(r["result"]["timestamp"], 1.5, "{r}");
        }
    }
    // One more may have been earned per second the exchange took.
    let refills = i32::try_from(started.elapsed().as_secs()).unwrap() + 1;
    assert!(refused >= 6 - refills, "refused {refused} of 8 pings");

    // Reauthentication (a full token check each time) is counted as well: a flood of them
    // is refused without checking the token.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let auth = json!({"authentication": {"jwt_token": token}});
    let reauths: Vec<String> = (0..8)
        .map(|n| rpc(&format!("r{n}"), "signalwire.reauthenticate", &auth))
        .collect();
    let started = tokio::time::Instant::now();
    send_all(&mut ws, &reauths).await;
    let mut refused = 0;
    for n in 0..8 {
        let r = reply_to(&mut ws, &json!(format!("r{n}"))).await;
        if r["error"]["code"] == TOO_MANY {
            refused += 1;
        } else {
            assert!(r["result"]["authorization"].is_object(), "{r}");
        }
    }
    let refills = i32::try_from(started.elapsed().as_secs()).unwrap() + 1;
    assert!(
        refused >= 7 - refills,
        "refused {refused} of 8 reauthentications"
    );
}

#[tokio::test]
async fn signalwire_replies_malformed_messages_and_websocket_pings_spend_the_budget() {
    let s = tight_budget().await;
    // Before connecting: malformed messages drain the budget too, so even the connect is
    // refused once it is spent.
    let mut ws = open(&s, "/").await;
    send_all(
        &mut ws,
        &["not json".to_owned(), "[]".to_owned(), "{".to_owned()],
    )
    .await;
    let connect = rpc("c", "signalwire.connect", &json!({}));
    send_all(&mut ws, &[connect]).await;
    let r = reply_to(&mut ws, &json!("c")).await;
    assert_eq!(r["error"]["code"], TOO_MANY, "{r}");

    // Connected: replies (acks, unsolicited results) spend the last two messages.
    let (mut ws, _) = signalwire_connected(&s).await;
    let ack = json!({"jsonrpc": "2.0", "id": "x", "result": {}}).to_string();
    send_all(&mut ws, &[ack.clone(), ack]).await;
    send_all(&mut ws, &[rpc("p", "signalwire.ping", &json!({}))]).await;
    let r = reply_to(&mut ws, &json!("p")).await;
    assert_eq!(r["error"]["code"], TOO_MANY, "{r}");

    // WebSocket-level pings are messages too.
    let (mut ws, _) = signalwire_connected(&s).await;
    for _ in 0..2 {
        ws.feed(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    }
    send_all(&mut ws, &[rpc("p", "signalwire.ping", &json!({}))]).await;
    let r = reply_to(&mut ws, &json!("p")).await;
    assert_eq!(r["error"]["code"], TOO_MANY, "{r}");
}

/// A Centrifugo client connected with a token the project's key signed (one message).
async fn centrifugo_connected(s: &TestServer) -> Socket {
    let (project, _) = s.project().await;
    let key = s.project_signer(&project).await;
    let token = sign(
        &key,
        &json!({"iss": "tollgate", "aud": project, "sub": "alice", "exp": now() + 600}),
    );
    let mut ws = open(s, "/connection/websocket").await;
    send_all(
        &mut ws,
        &[json!({"id": 1, "connect": {"token": token}}).to_string()],
    )
    .await;
    let r = reply_to(&mut ws, &json!(1)).await;
    assert!(r["connect"].is_object(), "{r}");
    ws
}

/// `rpc` has no handler: 108 when the budget allows, 111 when it does not.
fn centrifugo_rpc(id: u64) -> String {
    json!({"id": id, "rpc": {"method": "x"}}).to_string()
}

#[tokio::test]
async fn centrifugo_connect_pongs_and_websocket_pings_spend_the_budget() {
    let s = tight_budget().await;
    // `connect` and two pongs (`{}`, in one frame with the command) spend the burst.
    let mut ws = centrifugo_connected(&s).await;
    send_all(&mut ws, &[format!("{{}}\n{{}}\n{}", centrifugo_rpc(2))]).await;
    let r = reply_to(&mut ws, &json!(2)).await;
    assert_eq!(r["error"]["code"], 111, "{r}");
    assert_eq!(r["error"]["temporary"], true, "{r}");

    // WebSocket-level pings count too.
    let mut ws = centrifugo_connected(&s).await;
    for _ in 0..2 {
        ws.feed(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    }
    send_all(&mut ws, &[centrifugo_rpc(2)]).await;
    let r = reply_to(&mut ws, &json!(2)).await;
    assert_eq!(r["error"]["code"], 111, "{r}");

    // Within the budget the same command is answered normally.
    let mut ws = centrifugo_connected(&s).await;
    send_all(&mut ws, &[centrifugo_rpc(2)]).await;
    let r = reply_to(&mut ws, &json!(2)).await;
    assert_eq!(r["error"]["code"], 108, "{r}");
}

#[tokio::test]
async fn a_refused_origin_is_told_which_setting_to_change() {
    let s = TestServer::start_with(&[(
        "TOLLGATE_GATEWAY__ALLOWED_ORIGINS",
        "https://app.example.com",
    )])
    .await;
    for path in PATHS {
        let res = s
            .client
            .get(s.url(path))
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Origin", "https://evil.example.com")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{path}");
        let kind = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("text/plain"), "{path}: {kind}");
        let body = res.text().await.unwrap();
        assert!(
            body.contains("gateway.allowed_origins")
                && body.contains("TOLLGATE_GATEWAY__ALLOWED_ORIGINS"),
            "{path}: {body}"
        );
        // The attacker-chosen origin is not reflected.
        assert!(!body.contains("evil"), "{path}: {body}");
    }
}
