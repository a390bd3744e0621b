//! Two Tollgate nodes of one installation (one database, one master key) on one private
//! `redis-server`: publications, join/leave and presence cross nodes in both protocols,
//! idempotency keys hold across nodes, a client recovers on another node from the shared
//! history, server API `unsubscribe` and `disconnect` reach connections on the other node,
//! and a Redis that goes away fails publishes and, back, asks subscribers to
//! recover.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_token::{Scope, Scopes};

use crate::gateway::{API_KEY, api, expect, open, send};
use crate::support::TestServer;

/// A `redis-server` of the test's own on a free port, persisting nothing; killed on drop.
pub(crate) struct RedisServer {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// `None` (the test is skipped) where there is no `redis-server`, except on CI.
    pub(crate) fn start() -> Option<Self> {
        let binary = std::env::var_os("TOLLGATE_TEST_REDIS_SERVER")
            .map_or_else(|| PathBuf::from("/usr/bin/redis-server"), PathBuf::from);
        if !binary.exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI needs redis-server (set TOLLGATE_TEST_REDIS_SERVER)"
            );
            eprintln!("note: no redis-server; cluster test skipped");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut server = Self {
            binary,
            port,
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        server.spawn();
        Some(server)
    }

    pub(crate) fn spawn(&mut self) {
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server, as a crash would.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Calls `check` every 20 ms until it returns `Some`, failing after `within`.
pub(crate) async fn within<T>(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(done) = check().await {
            return done;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Subscribes `ws` (command id 2) to `channel` with recovery on, as a fresh subscriber
/// at the top of the stream; the stream's epoch.
pub(crate) async fn positioned(ws: &mut crate::gateway::Ws, channel: &str) -> String {
    let sub = call(
        ws,
        2,
        "subscribe",
        json!({"channel": channel, "recoverable": true}),
    )
    .await;
    assert!(sub["subscribe"]["offset"].is_u64(), "{sub}");
    sub["subscribe"]["epoch"]
        .as_str()
        .unwrap_or_else(|| panic!("no epoch: {sub}"))
        .to_owned()
}

/// Two nodes of one installation on `redis`, and a project (all scopes) with its API
/// token; the deployment-wide server API key acts for that project.
pub(crate) async fn two_nodes(redis: &RedisServer) -> (TestServer, TestServer, String, String) {
    let url = redis.url();
    let common = [
        ("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY),
        ("TOLLGATE_BROKER_URL", url.as_str()),
    ];
    let a = TestServer::start_with(&common).await;
    let all: Scopes = Scope::ALL.into_iter().collect();
    let (project, token) = a.project_with(all).await;
    let shared = a.shared_settings();
    let mut env: Vec<(&str, &str)> = common.to_vec();
    env.extend(shared.iter().map(|(k, v)| (*k, v.as_str())));
    let b = TestServer::start_with(&env).await;
    (a, b, project, token)
}

/// A connected Centrifugo-protocol client of `node`, subscribed to `room`.
pub(crate) async fn subscriber(
    node: &TestServer,
    project: &str,
    token: &str,
) -> crate::gateway::Ws {
    let (_, res) = node
        .post(
            "/api/pubsub/tokens",
            (project, token),
            &json!({"ttl": 5, "channels": {"room": {"read": true}}, "member_id": "carol"}),
        )
        .await;
    let mut ws = open(node).await;
    send(
        &mut ws,
        &format!(
            "{}\n{}",
            json!({"id": 1, "connect": {"token": res["token"]}}),
            json!({"id": 2, "subscribe": {"channel": "room"}})
        ),
    )
    .await;
    expect(&mut ws, |v| v["id"] == 1).await;
    let subscribed = expect(&mut ws, |v| v["id"] == 2).await;
    assert!(subscribed["subscribe"].is_object(), "{subscribed}");
    ws
}

#[tokio::test]
async fn a_publication_on_one_node_reaches_subscribers_on_the_other() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b, project, token) = two_nodes(&redis).await;

    let mut on_a = subscriber(&a, &project, &token).await;
    let mut on_b = subscriber(&b, &project, &token).await;

    // Server API publish on A: delivered on both nodes.
    let published = api(&a, "publish", json!({"channel": "room", "data": {"n": 1}})).await;
    assert_eq!(published, json!({"result": {}}));
    for ws in [&mut on_a, &mut on_b] {
        let push = expect(ws, |v| v.get("push").is_some()).await;
        assert_eq!(push["push"]["channel"], "room");
        assert_eq!(push["push"]["pub"]["data"], json!({"n": 1}));
    }
    // And the other way round.
    api(&b, "publish", json!({"channel": "room", "data": {"n": 2}})).await;
    let push: Value = expect(&mut on_a, |v| v.get("push").is_some()).await;
    assert_eq!(push["push"]["pub"]["data"], json!({"n": 2}));

    // An idempotency key is one key for the whole cluster: a retry through B of a publish
    // made through A is not published again.
    let once = json!({"channel": "room", "data": {"n": 3}, "idempotency_key": "k1"});
    assert_eq!(
        api(&a, "publish", once.clone()).await,
        json!({"result": {}})
    );
    assert_eq!(api(&b, "publish", once).await, json!({"result": {}}));
    api(&b, "publish", json!({"channel": "room", "data": {"n": 4}})).await;
    for n in [3, 4] {
        let push = expect(&mut on_a, |v| v.get("push").is_some()).await;
        assert_eq!(push["push"]["pub"]["data"], json!({"n": n}), "no duplicate");
    }

    // `channels` on either node counts the subscribers of both.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let channels = api(&b, "channels", json!({})).await;
        if channels == json!({"result": {"channels": {"room": {"num_clients": 2}}}}) {
            break;
        }
        assert!(Instant::now() < deadline, "{channels}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn server_api_commands_on_one_node_reach_connections_on_the_other() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b, project, token) = two_nodes(&redis).await;
    let mut on_a = subscriber(&a, &project, &token).await;

    // `unsubscribe` and `disconnect` through B reach carol's connection on A.
    let done = api(
        &b,
        "unsubscribe",
        json!({"user": "carol", "channel": "room"}),
    )
    .await;
    assert_eq!(done, json!({"result": {}}));
    let push = expect(&mut on_a, |v| v["push"]["unsubscribe"].is_object()).await;
    assert_eq!(push["push"]["channel"], "room");
    assert_eq!(push["push"]["unsubscribe"]["code"], 2000);
    api(
        &b,
        "disconnect",
        json!({"user": "carol", "disconnect": {"code": 4000, "reason": "bye"}}),
    )
    .await;
    assert_eq!(crate::gateway::closed(&mut on_a).await, 4000);
}

#[tokio::test]
async fn redis_going_away_is_an_error_and_coming_back_asks_subscribers_to_recover() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let a = TestServer::start_with(&[
        ("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY),
        ("TOLLGATE_BROKER_URL", url.as_str()),
    ])
    .await;
    let all: Scopes = Scope::ALL.into_iter().collect();
    let (project, token) = a.project_with(all).await;
    let mut ws = subscriber(&a, &project, &token).await;

    // Redis is gone: the server API says so in Centrifugo's shape, nothing is "published".
    redis.stop();
    let failed = api(&a, "publish", json!({"channel": "room", "data": {"n": 1}})).await;
    assert_eq!(failed["error"]["code"], 100, "{failed}");
    assert!(api(&a, "channels", json!({})).await["error"].is_object());

    // Back (empty): the node resubscribes in Redis and tells its subscriber it may have
    // missed publications (insufficient state: the SDK resubscribes and recovers).
    redis.spawn();
    let told = tokio::time::timeout(Duration::from_secs(10), async {
        expect(&mut ws, |v| v["push"].get("unsubscribe").is_some()).await
    })
    .await
    .expect("the subscriber is told to resubscribe");
    assert_eq!(told["push"]["channel"], "room");
    assert_eq!(told["push"]["unsubscribe"]["code"], 2500, "{told}");
    send(
        &mut ws,
        &json!({"id": 3, "subscribe": {"channel": "room"}}).to_string(),
    )
    .await;
    let again = expect(&mut ws, |v| v["id"] == 3).await;
    assert!(again["subscribe"].is_object(), "{again}");
    let n = api(&a, "publish", json!({"channel": "room", "data": {"n": 2}})).await;
    assert_eq!(n, json!({"result": {}}));
    let push = expect(&mut ws, |v| v["push"].get("pub").is_some()).await;
    assert_eq!(push["push"]["pub"]["data"], json!({"n": 2}));
}

#[tokio::test]
async fn signalwire_chat_members_on_two_nodes_chat_and_see_each_other() {
    use crate::signalwire_ws::{Rpc, connect_params, mint};
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let a = TestServer::start_with(&[("TOLLGATE_BROKER_URL", url.as_str())]).await;
    let (project, api_token) = a.project().await;
    let shared = a.shared_settings();
    let mut env = vec![("TOLLGATE_BROKER_URL", url.as_str())];
    env.extend(shared.iter().map(|(k, v)| (*k, v.as_str())));
    let b = TestServer::start_with(&env).await;
    let auth = (project.as_str(), api_token.as_str());

    let member = |id: &str| {
        json!({"ttl": 10, "member_id": id,
               "channels": {"room": {"read": true, "write": true}}})
    };
    let alice_token = mint(&a, auth, "chat", member("alice")).await;
    let bob_token = mint(&b, auth, "chat", member("bob")).await;
    let mut alice = Rpc::open(&a).await;
    let r = alice
        .call("signalwire.connect", connect_params(&alice_token))
        .await;
    assert!(r["result"].is_object(), "{r}");
    let events = json!(["chat.message", "chat.member.joined"]);
    let r = alice
        .call(
            "chat.subscribe",
            json!({"channels": [{"name": "room"}], "events": events}),
        )
        .await;
    assert_eq!(r["result"]["code"], "200", "{r}");

    let mut bob = Rpc::open(&b).await;
    bob.call("signalwire.connect", connect_params(&bob_token))
        .await;
    let r = bob
        .call(
            "chat.subscribe",
            json!({"channels": [{"name": "room"}], "events": events}),
        )
        .await;
    assert_eq!(r["result"]["code"], "200", "{r}");

    // Bob's join, announced on node B, reaches Alice on node A.
    // (Her own join comes first.)
    alice
        .until(|v| {
            v["params"]["event_type"] == "chat.member.joined"
                && v["params"]["params"]["member"]["id"] == "bob"
        })
        .await;
    // Members of both nodes are present in the channel.
    let r = alice
        .call("chat.members.get", json!({"channel": "room"}))
        .await;
    let ids: Vec<&str> = r["result"]["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["id"].as_str()).collect())
        .unwrap_or_default();
    assert!(ids.contains(&"alice") && ids.contains(&"bob"), "{r}");

    let r = bob
        .call(
            "chat.publish",
            json!({"channel": "room", "content": "hi from B"}),
        )
        .await;
    assert_eq!(r["result"]["code"], "200", "{r}");
    let msg = alice.event("chat.channel.message").await;
    assert_eq!(msg["message"]["content"], "hi from B");
    assert_eq!(msg["message"]["member"]["id"], "bob");
}

pub(crate) const HISTORY_CONFIG: &str = r#"
[gateway]
presence_update_interval = "200ms"

[gateway.namespaces.chat]
presence = true
history_size = 10
history_ttl = "5m"
allow_recovery = true
allow_subscribe_for_client = true
allow_presence_for_subscriber = true
"#;

/// A Centrifugo client of `node` connected as `user` (HS256 token with the shared secret).
pub(crate) async fn connect_as(node: &TestServer, user: &str) -> crate::gateway::Ws {
    let claims = json!({"sub": user, "exp": crate::support::now() + 600});
    let token = crate::gateway_channels::hs256(&claims);
    let mut ws = open(node).await;
    send(
        &mut ws,
        &json!({"id": 1, "connect": {"token": token}}).to_string(),
    )
    .await;
    let reply = expect(&mut ws, |v| v["id"] == 1).await;
    assert!(reply["connect"].is_object(), "{reply}");
    ws
}

pub(crate) async fn call(
    ws: &mut crate::gateway::Ws,
    id: u64,
    method: &str,
    params: Value,
) -> Value {
    let mut cmd = json!({ "id": id });
    cmd[method] = params;
    send(ws, &cmd.to_string()).await;
    expect(ws, |v| v["id"] == id).await
}

#[tokio::test]
async fn a_client_recovers_on_another_node_and_presence_spans_both() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let common = [
        ("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY),
        (
            "TOLLGATE_CENTRIFUGO__TOKEN_HMAC_SECRET_KEY",
            crate::gateway_channels::SECRET,
        ),
        ("TOLLGATE_BROKER_URL", url.as_str()),
    ];
    let a = TestServer::start_with_config(HISTORY_CONFIG, &common).await;
    // The one project the deployment-wide credentials act for.
    a.project().await;
    let shared = a.shared_settings();
    let mut env: Vec<(&str, &str)> = common.to_vec();
    env.extend(shared.iter().map(|(k, v)| (*k, v.as_str())));
    let b = TestServer::start_with_config(HISTORY_CONFIG, &env).await;

    // Alice on B takes a position; Bob on A is present too.
    let mut alice = connect_as(&b, "alice").await;
    let epoch = positioned(&mut alice, "chat:1").await;
    let mut bob = connect_as(&a, "bob").await;
    call(&mut bob, 2, "subscribe", json!({"channel": "chat:1"})).await;
    let stats = api(&b, "presence_stats", json!({"channel": "chat:1"})).await;
    assert_eq!(stats, json!({"result": {"num_clients": 2, "num_users": 2}}));

    // Alice's node goes away; two publications through A while she is gone.
    drop(alice);
    drop(b);
    for n in 1..=2 {
        let res = api(
            &a,
            "publish",
            json!({"channel": "chat:1", "data": {"n": n}}),
        )
        .await;
        assert_eq!(res["result"]["offset"], n, "{res}");
        assert_eq!(res["result"]["epoch"], epoch.as_str());
    }
    // She comes back on A and recovers both from the shared history.
    let mut alice = connect_as(&a, "alice").await;
    let back = call(
        &mut alice,
        2,
        "subscribe",
        json!({"channel": "chat:1", "recover": true, "recoverable": true, "offset": 0, "epoch": epoch}),
    )
    .await;
    let r = &back["subscribe"];
    assert_eq!(r["recovered"], true, "{back}");
    let data: Vec<&Value> = r["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(|p| &p["data"])
        .collect();
    assert_eq!(data, [&json!({"n": 1}), &json!({"n": 2})]);
}

#[tokio::test]
async fn a_broadcast_naming_a_channel_twice_under_one_idempotency_key_publishes_it_once() {
    // Over Redis the idempotency check and the publish are separate round trips, so
    // overlapping publishes of one channel would both pass the check.
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let node = TestServer::start_with_config(
        HISTORY_CONFIG,
        &[
            ("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY),
            ("TOLLGATE_BROKER_URL", url.as_str()),
        ],
    )
    .await;
    node.project().await;
    let channels: Vec<&str> = ["chat:twice"; 8].into_iter().chain(["chat:once"]).collect();
    let res = api(
        &node,
        "broadcast",
        json!({"channels": channels, "data": {"n": 1}, "idempotency_key": "k-1"}),
    )
    .await;
    let responses = res["result"]["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), 9, "{res}");
    for r in &responses[..8] {
        assert_eq!(r["result"]["offset"], 1, "{res}");
    }
    let top = api(&node, "history", json!({"channel": "chat:twice"})).await;
    assert_eq!(top["result"]["offset"], 1, "published once: {top}");
}
