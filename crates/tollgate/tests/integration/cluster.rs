//! Two Tollgate nodes of one installation (one database, one master key) on one private
//! `redis-server`: what is published through one node reaches WebSocket subscribers on
//! the other.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_token::{Scope, Scopes};

use crate::gateway::{API_KEY, api, expect, open, send};
use crate::support::TestServer;

/// A `redis-server` of the test's own on a free port, persisting nothing; killed on drop.
struct RedisServer {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// `None` (the test is skipped) where there is no `redis-server`, except on CI.
    fn start() -> Option<Self> {
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
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self {
            port,
            child,
            _dir: dir,
        })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connected Centrifugo-protocol client of `node`, subscribed to `room`.
async fn subscriber(node: &TestServer, project: &str, token: &str) -> crate::gateway::Ws {
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
