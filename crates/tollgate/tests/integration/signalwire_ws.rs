//! SignalWire's PubSub/Chat JSON-RPC protocol on `/`, driven raw: connect and its
//! `authorization`, permission errors, events and acks, history paging, reauthentication,
//! resuming subscriptions by `protocol`, expiry, and the server API reaching members.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::gateway::{API_KEY, api};
use crate::support::TestServer;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) struct Rpc {
    socket: Socket,
    next: u64,
}

impl Rpc {
    pub(crate) async fn open(s: &TestServer) -> Self {
        Self::open_at(&s.addr.to_string()).await
    }

    /// A socket to the server listening at `addr`.
    pub(crate) async fn open_at(addr: &str) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
            .await
            .unwrap();
        Self { socket, next: 0 }
    }

    /// Reads messages until `pred` matches one, answering server requests as the SDK does
    /// (acks for events, the timestamp for pings).
    pub(crate) async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let msg = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("timed out")
                .expect("socket open")
                .unwrap();
            let Message::Text(text) = msg else {
                if let Message::Close(frame) = msg {
                    panic!("closed: {frame:?}");
                }
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            // Events are acknowledged as the SDK does, the ones waited for too.
            let matched = pred(&v);
            if matched && v["method"] != "signalwire.event" {
                return v;
            }
            if v.get("method").is_some() {
                let ack = json!({"jsonrpc": "2.0", "id": v["id"], "result": {}});
                self.socket
                    .send(Message::Text(ack.to_string().into()))
                    .await
                    .unwrap();
            }
            if matched {
                return v;
            }
        }
    }

    /// The next message, read without answering it (a client that received an event but
    /// died before acknowledging it).
    pub(crate) async fn unanswered(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), self.socket.next())
                .await
                .expect("timed out")
                .expect("socket open")
                .unwrap();
            if let Message::Text(text) = msg {
                return serde_json::from_str(text.as_str()).unwrap();
            }
        }
    }

    pub(crate) async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = format!("req-{}", self.next);
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.socket
            .send(Message::Text(req.to_string().into()))
            .await
            .unwrap();
        self.until(|v| v["id"] == id.as_str() && v.get("method").is_none())
            .await
    }

    pub(crate) async fn event(&mut self, event_type: &str) -> Value {
        let e = self
            .until(|v| v["method"] == "signalwire.event" && v["params"]["event_type"] == event_type)
            .await;
        e["params"]["params"].clone()
    }

    pub(crate) async fn closed(&mut self) -> u16 {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.socket.next())
                .await
                .unwrap()
            {
                Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
                Some(Ok(_)) => {}
                other => panic!("no close frame: {other:?}"),
            }
        }
    }
}

async fn setup(env: &[(&str, &str)]) -> (TestServer, String, String) {
    let mut vars = vec![("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY)];
    vars.extend_from_slice(env);
    let s = TestServer::start_with(&vars).await;
    let (project, token) = s.project().await;
    (s, project, token)
}

pub(crate) async fn mint(s: &TestServer, auth: (&str, &str), kind: &str, body: Value) -> String {
    let (status, res) = s.post(&format!("/api/{kind}/tokens"), auth, &body).await;
    assert_eq!(status, 200, "{res}");
    res["token"].as_str().unwrap().to_owned()
}

pub(crate) fn connect_params(token: &str) -> Value {
    json!({"version": {"major": 3, "minor": 0, "revision": 0}, "event_acks": true,
           "authentication": {"jwt_token": token}})
}

#[tokio::test]
async fn the_signalwire_protocol_end_to_end() {
    let (s, project, api_token) = setup(&[]).await;
    let auth = (project.as_str(), api_token.as_str());
    let token = mint(
        &s,
        auth,
        "chat",
        json!({"ttl": 10, "member_id": "m1", "state": {"away": false},
               "channels": {"a": {"read": true, "write": true}, "b": {"read": true}}}),
    )
    .await;

    // Nothing before connect.
    let mut early = Rpc::open(&s).await;
    let r = early
        .call("chat.subscribe", json!({"channels": [{"name": "a"}]}))
        .await;
    assert_eq!(r["error"]["code"], -32002);

    let mut ws = Rpc::open(&s).await;
    let r = ws.call("signalwire.connect", connect_params(&token)).await;
    let auth_result = &r["result"]["authorization"];
    assert_eq!(auth_result["type"], "chat", "{r}");
    assert_eq!(auth_result["project_id"], project.as_str());
    assert_eq!(auth_result["member_id"], "m1");
    assert_eq!(
        auth_result["channels"]["b"],
        json!({"read": true, "write": false})
    );
    assert!(auth_result["expires_at"].as_i64().unwrap() > 0);
    assert!(
        auth_result.get("jti").is_none(),
        "a jti makes the SDK treat it as a SAT"
    );
    let protocol = r["result"]["protocol"].as_str().unwrap().to_owned();
    let signature = auth_result["signature"].as_str().unwrap();
    assert_eq!(protocol.split('_').nth(1), Some(signature));

    let r = ws
        .call("chat.subscribe", json!({"channels": [{"name": "a"}, {"name": "b"}],
                                       "events": ["chat.message", "chat.member.joined", "chat.member.updated"]}))
        .await;
    assert_eq!(r["result"]["code"], "200", "{r}");
    let r = ws
        .call("chat.subscribe", json!({"channels": [{"name": "c"}]}))
        .await;
    assert_eq!(r["error"]["code"], -32003, "no grant for c");
    let r = ws
        .call("chat.publish", json!({"channel": "b", "content": "x"}))
        .await;
    assert_eq!(r["error"]["code"], -32003, "read-only b");
    let r = ws.call("chat.nonsense", json!({})).await;
    assert_eq!(r["error"]["code"], -32601);
    let r = ws.call("signalwire.ping", json!({"timestamp": 12.5})).await;
    assert_eq!(r["result"]["timestamp"], 12.5);

    let r = ws
        .call(
            "chat.publish",
            json!({"channel": "a", "content": {"n": 0}, "meta": {"m": 1}}),
        )
        .await;
    assert_eq!(r["result"]["code"], "200");
    let msg = ws.event("chat.channel.message").await;
    assert_eq!(msg["channel"], "a");
    assert_eq!(msg["message"]["content"], json!({"n": 0}));
    assert_eq!(msg["message"]["meta"], json!({"m": 1}));
    assert_eq!(msg["message"]["member"]["id"], "m1");
    assert_eq!(msg["message"]["member"]["state"], json!({"away": false}));
    assert!(msg["message"]["published_at"].as_f64().unwrap() > 1.7e9);

    // State: set, announced, read back.
    let r = ws
        .call(
            "chat.member.set_state",
            json!({"channels": [{"name": "a"}], "state": {"away": true}}),
        )
        .await;
    assert_eq!(r["result"]["code"], "200");
    let updated = ws.event("chat.member.updated").await;
    assert_eq!(updated["member"]["state"], json!({"away": true}));
    let r = ws
        .call(
            "chat.member.get_state",
            json!({"member_id": "m1", "channels": [{"name": "a"}, {"name": "b"}]}),
        )
        .await;
    assert_eq!(r["result"]["channels"]["a"]["state"], json!({"away": true}));
    assert_eq!(
        r["result"]["channels"]["b"]["state"],
        json!({"away": false})
    );
    let r = ws
        .call(
            "chat.member.set_state",
            json!({"member_id": "someone-else", "state": {}}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32003);

    // History pages newest first, 50 at a time.
    // (Chat history keeps what SignalWire clients publish.)
    for n in 1..=60 {
        let r = ws
            .call("chat.publish", json!({"channel": "a", "content": {"n": n}}))
            .await;
        assert_eq!(r["result"]["code"], "200");
    }
    let page = ws.call("chat.messages.get", json!({"channel": "a"})).await;
    let messages = page["result"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 50);
    assert_eq!(messages[0]["content"], json!({"n": 60}));
    assert!(page["result"]["cursor"].get("after").is_none());
    let before = page["result"]["cursor"]["before"].clone();
    let older = ws
        .call(
            "chat.messages.get",
            json!({"channel": "a", "cursor": {"before": before}}),
        )
        .await;
    let older = older["result"]["messages"].as_array().unwrap().clone();
    assert_eq!(older.len(), 11);
    assert_eq!(older.last().unwrap()["content"], json!({"n": 0}));
    let stale = ws
        .call(
            "chat.messages.get",
            json!({"channel": "a", "cursor": {"before": "other-epoch:5"}}),
        )
        .await;
    assert_eq!(stale["error"]["code"], -32602);
    let members = ws.call("chat.members.get", json!({"channel": "a"})).await;
    assert_eq!(members["result"]["members"][0]["id"], "m1");

    // Reauthentication: another member is refused; the same member's narrower token
    // drops the channel it no longer grants.
    let other = mint(
        &s,
        auth,
        "chat",
        json!({"ttl": 10, "member_id": "m2", "channels": {"a": {"read": true}}}),
    )
    .await;
    let r = ws
        .call(
            "signalwire.reauthenticate",
            json!({"authentication": {"project": project, "jwt_token": other}}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32002);
    let narrower = mint(
        &s,
        auth,
        "chat",
        json!({"ttl": 20, "member_id": "m1", "channels": {"a": {"read": true, "write": true}}}),
    )
    .await;
    let r = ws
        .call(
            "signalwire.reauthenticate",
            json!({"authentication": {"project": project, "jwt_token": narrower}}),
        )
        .await;
    assert!(
        r["result"]["authorization"]["channels"].get("b").is_none(),
        "{r}"
    );
    let r = ws
        .call(
            "chat.member.get_state",
            json!({"channels": [{"name": "b"}]}),
        )
        .await;
    assert_eq!(r["result"]["channels"], json!({}));

    // A dropped connection resumes its subscriptions when the client presents `protocol`.
    drop(ws);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = Rpc::open(&s).await;
    let mut params = connect_params(&narrower);
    params["protocol"] = json!(protocol);
    let r = again.call("signalwire.connect", params).await;
    assert_eq!(r["result"]["protocol"], protocol.as_str());
    api(
        &s,
        "publish",
        json!({"channel": "a", "data": "after resume"}),
    )
    .await;
    let msg = again.event("chat.channel.message").await;
    assert_eq!(msg["message"]["content"], "after resume");

    let metrics = s.get_text("/metrics").await;
    assert!(
        metrics.contains("tollgate_gateway_signalwire_requests_total{method=\"chat.publish\"} 62"),
        "{metrics}"
    );

    // The server API reaches SignalWire members by member id.
    api(&s, "disconnect", json!({"user": "m1"})).await;
    again
        .until(|v| v["method"] == "signalwire.disconnect")
        .await;
    assert_eq!(again.closed().await, 1000);
}

#[tokio::test]
async fn expiry_and_bad_tokens_close_the_socket() {
    let (s, project, api_token) = setup(&[("TOLLGATE_GATEWAY__EXPIRED_CLOSE_DELAY", "0")]).await;
    let auth = (project.as_str(), api_token.as_str());

    // A bad token: the error, then the socket closes (the SDK would otherwise hang).
    let mut ws = Rpc::open(&s).await;
    let r = ws
        .call("signalwire.connect", connect_params("not.a.token"))
        .await;
    assert_eq!(
        r["error"],
        json!({"code": -32002, "message": "Authentication failed"})
    );
    assert_eq!(ws.closed().await, 4003);

    // A Centrifugo connection token is not a SignalWire token.
    let sat = s
        .post(
            "/api/fabric/subscribers/tokens",
            auth,
            &json!({"reference": "u1"}),
        )
        .await
        .1["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let conn: Value = s
        .client
        .post(s.url("/api/v1/centrifugo/connection-token"))
        .bearer_auth(&sat)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ws = Rpc::open(&s).await;
    let r = ws
        .call(
            "signalwire.connect",
            connect_params(conn["token"].as_str().unwrap()),
        )
        .await;
    assert_eq!(r["error"]["code"], -32002);

    // Expiry is enforced by the server: moved to "now" by the server API here.
    let token = mint(
        &s,
        auth,
        "pubsub",
        json!({"ttl": 10, "member_id": "m9", "channels": {"a": {"read": true}}}),
    )
    .await;
    let mut ws = Rpc::open(&s).await;
    ws.call("signalwire.connect", connect_params(&token)).await;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    api(&s, "refresh", json!({"user": "m9", "expire_at": now + 1})).await;
    assert_eq!(ws.closed().await, 4001);
}

impl Rpc {
    /// Reads until the server closes, up to `within`, answering nothing; returns the code
    /// and the methods of the server requests seen before it.
    async fn closed_within(&mut self, within: Duration) -> (u16, Vec<String>) {
        let deadline = tokio::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("timed out waiting for the close")
            {
                Some(Ok(Message::Close(Some(frame)))) => return (frame.code.into(), seen),
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if let Some(m) = v["method"].as_str() {
                        seen.push(m.to_owned());
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("no close frame: {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn a_session_that_never_connects_is_closed_with_4008() {
    let (s, _, _) = setup(&[("TOLLGATE_GATEWAY__STALE_TIMEOUT", "1")]).await;
    let started = tokio::time::Instant::now();
    let mut ws = Rpc::open(&s).await;
    let (code, seen) = ws.closed_within(Duration::from_secs(5)).await;
    assert_eq!(code, 4008);
    assert!(seen.is_empty(), "{seen:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_member_that_does_not_answer_pings_is_closed_with_4008() {
    // SignalWire pings every 10 s; the reply is due within pong_timeout.
    let (s, project, api_token) = setup(&[("TOLLGATE_GATEWAY__PONG_TIMEOUT", "1")]).await;
    let auth = (project.as_str(), api_token.as_str());
    let channels = json!({"a": {"read": true}});
    let mut polite = Rpc::open(&s).await;
    let token = mint(
        &s,
        auth,
        "pubsub",
        json!({"ttl": 10, "member_id": "polite", "channels": channels}),
    )
    .await;
    polite
        .call("signalwire.connect", connect_params(&token))
        .await;
    let mut quiet = Rpc::open(&s).await;
    let token = mint(
        &s,
        auth,
        "pubsub",
        json!({"ttl": 10, "member_id": "quiet", "channels": channels}),
    )
    .await;
    let r = quiet
        .call("signalwire.connect", connect_params(&token))
        .await;
    assert!(r["result"]["protocol"].is_string(), "{r}");

    // The polite member answers its ping as the SDK does.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let ping = loop {
        let msg = tokio::time::timeout_at(deadline, polite.socket.next())
            .await
            .expect("no ping within 15 s")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["method"] == "signalwire.ping" {
                break v;
            }
        }
    };
    assert!(
        ping["params"]["timestamp"].as_f64().unwrap() > 1.7e9,
        "{ping}"
    );
    let answer = json!({"jsonrpc": "2.0", "id": ping["id"], "result": {"timestamp": ping["params"]["timestamp"]}});
    polite
        .socket
        .send(Message::Text(answer.to_string().into()))
        .await
        .unwrap();

    let (code, seen) = quiet.closed_within(Duration::from_secs(5)).await;
    assert_eq!(code, 4008);
    assert_eq!(seen, ["signalwire.ping"], "pinged, then closed");
    // Past the polite member's own timeout it is still served.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = polite
        .call("signalwire.ping", json!({"timestamp": 1.5}))
        .await;
    assert_eq!(r["result"]["timestamp"], 1.5);
}

#[tokio::test]
async fn a_members_resumes_are_bounded() {
    let (s, project, api_token) = setup(&[]).await;
    let auth = (project.as_str(), api_token.as_str());
    let token = mint(
        &s,
        auth,
        "chat",
        json!({"ttl": 10, "member_id": "looper", "channels": {"a": {"read": true}}}),
    )
    .await;
    // A member reconnecting in a loop: nine sessions, each subscribed, each dropped
    // without a goodbye (so each leaves a resume), oldest first.
    let mut protocols = Vec::new();
    for _ in 0..9 {
        let mut ws = Rpc::open(&s).await;
        let r = ws.call("signalwire.connect", connect_params(&token)).await;
        protocols.push(r["result"]["protocol"].as_str().unwrap().to_owned());
        let r = ws
            .call("chat.subscribe", json!({"channels": [{"name": "a"}]}))
            .await;
        assert_eq!(r["result"]["code"], "200", "{r}");
        drop(ws);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resume = |protocol: &str| {
        let mut params = connect_params(&token);
        params["protocol"] = json!(protocol);
        params
    };
    // At most 8 per member: the oldest was pushed out and starts afresh ...
    let mut fresh = Rpc::open(&s).await;
    let r = fresh
        .call("signalwire.connect", resume(&protocols[0]))
        .await;
    let got = r["result"]["protocol"].as_str().unwrap();
    assert_ne!(got, protocols[0], "the oldest resume was evicted");
    assert!(!protocols.iter().any(|p| p == got), "a new protocol: {got}");
    // ... while the next oldest is still kept, with its subscription.
    let mut resumed = Rpc::open(&s).await;
    let r = resumed
        .call("signalwire.connect", resume(&protocols[1]))
        .await;
    assert_eq!(r["result"]["protocol"], protocols[1].as_str());
    api(
        &s,
        "publish",
        json!({"channel": "a", "data": "to the resumed"}),
    )
    .await;
    let msg = resumed.event("chat.channel.message").await;
    assert_eq!(msg["message"]["content"], "to the resumed");
    // A resume is taken once.
    let mut again = Rpc::open(&s).await;
    let r = again
        .call("signalwire.connect", resume(&protocols[1]))
        .await;
    assert_ne!(r["result"]["protocol"], protocols[1].as_str());
}
