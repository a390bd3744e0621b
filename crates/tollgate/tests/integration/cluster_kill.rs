//! A node killed with SIGKILL, as real processes: two `tollgate serve` processes of one
//! installation (one PostgreSQL database, one master key, one private `redis-server`).
//! A Centrifugo client of the dead node recovers on the other and the dead node's presence
//! expires; a SignalWire session of the dead node resumes on the other.

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{HISTORY_CONFIG, RedisServer, call, positioned, within};
use crate::cluster_faults::{messages, sw_say};
use crate::gateway::{API_KEY, Ws, expect, open_at};
use crate::gateway_channels::{SECRET, hs256};
use crate::signalwire_ws::{Rpc, connect_params};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// A `tollgate serve` process; SIGKILLed on drop.
struct Node {
    child: Child,
    addr: String,
}

impl Node {
    fn start(env: &[(String, String)]) -> Self {
        let mut child = Command::new(BIN)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("TOLLGATE_LISTEN", "127.0.0.1:0")
            .env("TOLLGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("addr=").nth(1) {
                    let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the node did not report its address");
        Self { child, addr }
    }

    async fn api(&self, method: &str, params: Value) -> Value {
        reqwest::Client::new()
            .post(format!("http://{}/api/{method}", self.addr))
            .header("X-API-Key", API_KEY)
            .json(&params)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// SIGKILL: no goodbye to anyone.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One installation run as real processes: a private `redis-server`, a fresh PostgreSQL
/// database, one master key, and the settings every node shares.
struct Installation {
    env: Vec<(String, String)>,
    db: tollgate_store::testing::PgTestDatabase,
    _redis: RedisServer,
    _dir: tempfile::TempDir,
}

impl Installation {
    /// `None` (the test is skipped) where there is no `redis-server` or no PostgreSQL,
    /// except on CI.
    async fn start(config: Option<&str>) -> Option<Self> {
        let redis = RedisServer::start()?;
        let admin = std::env::var("TOLLGATE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        if TcpStream::connect("127.0.0.1:5432").is_err() && admin.contains("127.0.0.1:5432") {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI needs PostgreSQL"
            );
            eprintln!("note: no PostgreSQL on 127.0.0.1:5432; SIGKILL test skipped");
            return None;
        }
        let db = tollgate_store::testing::PgTestDatabase::create(&admin).await;
        let dir = tempfile::tempdir().unwrap();
        use base64::Engine as _;
        let mut env: Vec<(String, String)> = [
            ("TOLLGATE_DATABASE_URL", db.url.clone()),
            (
                "TOLLGATE_SECRET_KEY",
                base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
            ),
            ("TOLLGATE_BROKER_URL", redis.url()),
            ("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY.to_owned()),
            (
                "TOLLGATE_CENTRIFUGO__TOKEN_HMAC_SECRET_KEY",
                SECRET.to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(config) = config {
            let file = dir.path().join("tollgate.toml");
            std::fs::write(&file, config).unwrap();
            env.push(("TOLLGATE_CONFIG".to_owned(), file.display().to_string()));
        }
        Some(Self {
            env,
            db,
            _redis: redis,
            _dir: dir,
        })
    }

    /// A node of the installation.
    fn node(&self) -> Node {
        Node::start(&self.env)
    }

    /// `tollgate project create --json` on the shared database: the project's id and API
    /// token.
    fn create_project(&self) -> Value {
        let out = Command::new(BIN)
            .args(["project", "create", "--name", "p", "--json"])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Drops the database (the nodes must be gone).
    async fn finish(self) {
        self.db.drop_now().await;
    }
}

/// A Centrifugo client of the node at `addr`, connected as `user`; returns its client id.
async fn client_of(addr: &str, user: &str) -> (Ws, String) {
    let claims = json!({"sub": user, "exp": crate::support::now() + 600});
    let mut ws = open_at(addr).await;
    let reply = call(&mut ws, 1, "connect", json!({"token": hs256(&claims)})).await;
    let client = reply["connect"]["client"]
        .as_str()
        .expect("client")
        .to_owned();
    (ws, client)
}

/// The client ids `node`'s server API lists in `channel`'s presence.
async fn present(node: &Node, channel: &str) -> Vec<String> {
    let res = node.api("presence", json!({"channel": channel})).await;
    let mut ids: Vec<String> = res["result"]["presence"]
        .as_object()
        .unwrap_or_else(|| panic!("{res}"))
        .keys()
        .cloned()
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_node_killed_with_sigkill_its_client_recovers_on_another_and_its_presence_expires() {
    // Presence refreshed every 200 ms: entries live 2 × 200 ms + 5 s = 5.4 s.
    let Some(installation) = Installation::start(Some(HISTORY_CONFIG)).await else {
        return;
    };
    let mut a = installation.node();
    // The one project the deployment-wide credentials act for, made with the CLI.
    installation.create_project();
    let b = installation.node();

    // Alice on A takes a position; Bob on B is present too.
    let (mut alice, alice_on_a) = client_of(&a.addr, "alice").await;
    let epoch = positioned(&mut alice, "chat:1").await;
    let (mut bob, bob_on_b) = client_of(&b.addr, "bob").await;
    call(&mut bob, 2, "subscribe", json!({"channel": "chat:1"})).await;
    let res = b
        .api("publish", json!({"channel": "chat:1", "data": {"n": 1}}))
        .await;
    assert_eq!(res["result"]["offset"], 1, "{res}");
    expect(&mut alice, |v| v["push"]["pub"]["offset"] == 1).await;
    let mut both = vec![alice_on_a.clone(), bob_on_b.clone()];
    both.sort();
    assert_eq!(present(&b, "chat:1").await, both);

    // A dies without a word; two publications through B meanwhile.
    a.kill();
    let killed = Instant::now();
    for n in 2..=3 {
        let res = b
            .api("publish", json!({"channel": "chat:1", "data": {"n": n}}))
            .await;
        assert_eq!(res["result"]["offset"], n, "{res}");
        assert_eq!(res["result"]["epoch"], epoch.as_str());
    }
    // Alice reconnects to B and recovers exactly what she missed.
    let (mut alice, alice_on_b) = client_of(&b.addr, "alice").await;
    let back = call(
        &mut alice,
        2,
        "subscribe",
        json!({"channel": "chat:1", "recover": true, "recoverable": true,
               "offset": 1, "epoch": epoch}),
    )
    .await;
    let r = &back["subscribe"];
    assert_eq!(r["recovered"], true, "{back}");
    assert_eq!(r["epoch"], epoch.as_str(), "{back}");
    let data: Vec<&Value> = r["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(|p| &p["data"])
        .collect();
    assert_eq!(data, [&json!({"n": 2}), &json!({"n": 3})]);

    // A's entry for Alice stays until the presence TTL, then only B's clients are left.
    let mut left = vec![alice_on_b, bob_on_b];
    left.sort();
    within(
        Duration::from_secs(10),
        "A's presence entry to expire",
        async || {
            let now = present(&b, "chat:1").await;
            (now == left).then_some(())
        },
    )
    .await;
    assert!(
        killed.elapsed() >= Duration::from_secs(4),
        "expired by its TTL, not removed: {:?}",
        killed.elapsed()
    );
    drop(b);
    installation.finish().await;
}

/// A Chat token of `member` for `room`, minted through the node at `addr` with the
/// project's API token.
async fn chat_token_at(addr: &str, auth: (&str, &str), member: &str) -> String {
    let body = json!({"ttl": 60, "member_id": member,
                      "channels": {"room": {"read": true, "write": true}}});
    let res: Value = reqwest::Client::new()
        .post(format!("http://{addr}/api/chat/tokens"))
        .basic_auth(auth.0, Some(auth.1))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{res}"))
        .to_owned()
}

/// `signalwire.connect` of `member` at `addr`, presenting `protocol` if given; returns
/// the socket and the session's protocol.
async fn sw_connect_at(
    addr: &str,
    auth: (&str, &str),
    member: &str,
    protocol: Option<&str>,
) -> (Rpc, String) {
    let token = chat_token_at(addr, auth, member).await;
    let mut rpc = Rpc::open_at(addr).await;
    let mut params = connect_params(&token);
    if let Some(p) = protocol {
        params["protocol"] = json!(p);
    }
    let r = rpc.call("signalwire.connect", params).await;
    let got = r["result"]["protocol"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    (rpc, got)
}

/// `chat.subscribe` to `room`'s messages.
async fn sw_subscribe(rpc: &mut Rpc) {
    let r = rpc
        .call(
            "chat.subscribe",
            json!({"channels": [{"name": "room"}], "events": ["chat.message"]}),
        )
        .await;
    assert_eq!(r["result"]["code"], "200", "{r}");
}

#[tokio::test]
async fn a_signalwire_session_whose_node_was_killed_resumes_on_another_node() {
    let Some(installation) = Installation::start(None).await else {
        return;
    };
    let mut a = installation.node();
    let created = installation.create_project();
    let project = created["project_id"]
        .as_str()
        .expect("project_id")
        .to_owned();
    let api_token = created["api_token"].as_str().expect("api_token").to_owned();
    let auth = (project.as_str(), api_token.as_str());
    let b = installation.node();

    // Alice is a member on A, Bob on B.
    let (mut alice, protocol) = sw_connect_at(&a.addr, auth, "alice", None).await;
    sw_subscribe(&mut alice).await;
    let (mut bob, _) = sw_connect_at(&b.addr, auth, "bob", None).await;
    sw_subscribe(&mut bob).await;
    sw_say(&mut bob, "seen").await;
    // Read and acknowledged, as the SDK does; A writes her position to Redis within a
    // second or two.
    assert_eq!(messages(&mut alice, 1).await, ["seen"]);
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // A dies without a word; Bob writes meanwhile.
    a.kill();
    sw_say(&mut bob, "missed").await;

    // Mallory, another member of the project, presents Alice's protocol: nothing of
    // Alice's session is hers, and Alice's is still there afterwards.
    let (_mallory, theirs) = sw_connect_at(&b.addr, auth, "mallory", Some(&protocol)).await;
    assert_ne!(theirs, protocol, "another member's session resumed");

    // Alice reconnects to B with her protocol and no chat.subscribe: what she missed
    // (not what she had acknowledged), then live messages.
    let (mut alice, resumed) = sw_connect_at(&b.addr, auth, "alice", Some(&protocol)).await;
    assert_eq!(resumed, protocol, "not resumed on B");
    sw_say(&mut bob, "live").await;
    assert_eq!(messages(&mut alice, 2).await, ["missed", "live"]);

    // Taken once: another connection presenting it resumes nothing.
    let (mut again, second) = sw_connect_at(&b.addr, auth, "alice", Some(&protocol)).await;
    assert_ne!(second, protocol, "resumed twice");
    sw_say(&mut bob, "after").await;
    assert_eq!(messages(&mut alice, 1).await, ["after"]);
    let r = again
        .call("chat.messages.get", json!({"channel": "room"}))
        .await;
    assert!(r.get("result").is_some(), "{r}");
    // The second connection has no subscription: it gets no event for "after".
    let nothing = tokio::time::timeout(
        Duration::from_millis(500),
        again.event("chat.channel.message"),
    )
    .await;
    assert!(nothing.is_err(), "the second connection got an event");
    drop(b);
    installation.finish().await;
}
