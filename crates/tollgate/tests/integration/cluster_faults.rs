//! Faults of a cluster, each with the behaviour docs/cluster.md states for it: Redis
//! restarted empty under Centrifugo and SignalWire clients, and a SignalWire session
//! resumed after its socket dropped (replaying from its last acknowledged message, within
//! its budget, written to Redis by its periodic write, never overwritten by a stale
//! owner). A node killed with SIGKILL is `cluster_kill`.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{HISTORY_CONFIG, RedisServer, call, connect_as, positioned, within};
use crate::gateway::{API_KEY, api, expect};
use crate::gateway_channels::SECRET;
use crate::signalwire_ws::{Rpc, connect_params, mint};
use crate::support::TestServer;

/// Server API `publish` through `node`, retried until the node's broker answers (after a
/// Redis restart, until the node has reconnected).
async fn publish_when_up(node: &TestServer, channel: &str, data: Value) -> Value {
    let params = json!({"channel": channel, "data": data});
    within(
        Duration::from_secs(10),
        "a publish to succeed",
        async || {
            let res = api(node, "publish", params.clone()).await;
            res.get("result").is_some().then_some(res)
        },
    )
    .await
}

/// Two nodes of one installation on `redis`, with `config` and Centrifugo's credentials.
async fn two_nodes(redis: &RedisServer, config: &str) -> (TestServer, TestServer) {
    let url = redis.url();
    let common = [
        ("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY),
        ("TOLLGATE_CENTRIFUGO__TOKEN_HMAC_SECRET_KEY", SECRET),
        ("TOLLGATE_BROKER_URL", url.as_str()),
    ];
    let a = TestServer::start_with_config(config, &common).await;
    let shared = a.shared_settings();
    let mut env: Vec<(&str, &str)> = common.to_vec();
    env.extend(shared.iter().map(|(k, v)| (*k, v.as_str())));
    let b = TestServer::start_with_config(config, &env).await;
    (a, b)
}

#[tokio::test]
async fn redis_restarted_empty_gives_a_recovering_client_a_new_epoch_never_a_gap() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let config = format!("{HISTORY_CONFIG}allow_publish_for_subscriber = true\n");
    let (a, b) = two_nodes(&redis, &config).await;
    a.project().await;

    // Alice on A holds a position in chat:1 after one publication through B.
    let mut alice = connect_as(&a, "alice").await;
    let epoch = positioned(&mut alice, "chat:1").await;
    let res = api(
        &b,
        "publish",
        json!({"channel": "chat:1", "data": {"n": 1}}),
    )
    .await;
    assert_eq!(res["result"]["offset"], 1, "{res}");
    let push = expect(&mut alice, |v| v["push"]["pub"].is_object()).await;
    assert_eq!(push["push"]["pub"]["offset"], 1);

    // Redis is gone.
    redis.stop();
    // The server API says so in Centrifugo's shape: nothing is reported published.
    for node in [&a, &b] {
        let failed = api(
            node,
            "publish",
            json!({"channel": "chat:1", "data": {"n": 2}}),
        )
        .await;
        assert_eq!(
            failed,
            json!({"error": {"code": 100, "message": "internal server error"}})
        );
    }
    // A client's publish and a new subscription get the temporary error 100.
    let mut carol = connect_as(&b, "carol").await;
    let refused = call(&mut carol, 2, "subscribe", json!({"channel": "chat:2"})).await;
    assert_eq!(refused["error"]["code"], 100, "{refused}");
    assert_eq!(refused["error"]["temporary"], true, "{refused}");
    let refused = call(
        &mut alice,
        3,
        "publish",
        json!({"channel": "chat:1", "data": {"n": 2}}),
    )
    .await;
    assert_eq!(refused["error"]["code"], 100, "{refused}");

    // Redis back, empty: Alice is told to resubscribe and her recovery from the old
    // position says it is not complete, with the new stream's epoch.
    redis.spawn();
    let told = tokio::time::timeout(Duration::from_secs(10), async {
        expect(&mut alice, |v| v["push"]["unsubscribe"].is_object()).await
    })
    .await
    .expect("told to resubscribe");
    assert_eq!(told["push"]["unsubscribe"]["code"], 2500, "{told}");
    let after = publish_when_up(&b, "chat:1", json!({"n": 3})).await;
    assert_eq!(after["result"]["offset"], 1, "a new stream: {after}");
    assert_ne!(after["result"]["epoch"], epoch.as_str());
    let back = call(
        &mut alice,
        4,
        "subscribe",
        json!({"channel": "chat:1", "recover": true, "recoverable": true,
               "offset": 1, "epoch": epoch}),
    )
    .await;
    let r = &back["subscribe"];
    assert_eq!(
        r["recovered"],
        json!(null),
        "never claimed recovered: {back}"
    );
    assert_eq!(r["was_recovering"], true, "{back}");
    assert_eq!(r["epoch"], after["result"]["epoch"], "{back}");
    assert_eq!(r["offset"], 1, "{back}");
    // And the new subscription carries on across nodes.
    api(
        &b,
        "publish",
        json!({"channel": "chat:1", "data": {"n": 4}}),
    )
    .await;
    let push = expect(&mut alice, |v| v["push"]["pub"].is_object()).await;
    assert_eq!(push["push"]["pub"]["data"], json!({"n": 4}));
}

/// A Chat member's socket on `node`, connected and subscribed to `room` (messages and
/// joins); returns it with its session's `protocol`.
async fn chat_member(node: &TestServer, auth: (&str, &str), id: &str) -> (Rpc, String) {
    let body = json!({"ttl": 60, "member_id": id,
                      "channels": {"room": {"read": true, "write": true}}});
    let token = mint(node, auth, "chat", body).await;
    let mut rpc = Rpc::open(node).await;
    let r = rpc.call("signalwire.connect", connect_params(&token)).await;
    let protocol = r["result"]["protocol"]
        .as_str()
        .expect("protocol")
        .to_owned();
    let r = rpc
        .call(
            "chat.subscribe",
            json!({"channels": [{"name": "room"}], "events": ["chat.message"]}),
        )
        .await;
    assert_eq!(r["result"]["code"], "200", "{r}");
    (rpc, protocol)
}

/// Reconnects as the SDK does after a dropped socket: `signalwire.connect` with the
/// previous session's `protocol`, never `chat.subscribe`.
async fn resume(node: &TestServer, auth: (&str, &str), id: &str, protocol: &str) -> Rpc {
    let body = json!({"ttl": 60, "member_id": id,
                      "channels": {"room": {"read": true, "write": true}}});
    let token = mint(node, auth, "chat", body).await;
    let mut rpc = Rpc::open(node).await;
    let mut params = connect_params(&token);
    params["protocol"] = json!(protocol);
    let r = rpc.call("signalwire.connect", params).await;
    assert_eq!(r["result"]["protocol"], protocol, "resumed: {r}");
    rpc
}

/// The contents of the next `n` chat messages.
pub(crate) async fn messages(rpc: &mut Rpc, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    for _ in 0..n {
        got.push(rpc.event("chat.channel.message").await["message"]["content"].clone());
    }
    got
}

/// `chat.publish` of `text` into `room`, answered 200.
pub(crate) async fn sw_say(rpc: &mut Rpc, text: &str) {
    let r = rpc
        .call("chat.publish", json!({"channel": "room", "content": text}))
        .await;
    assert_eq!(r["result"]["code"], "200", "{r}");
}

#[tokio::test]
async fn a_resumed_signalwire_session_gets_what_was_published_while_it_was_away() {
    let s = TestServer::start_with(&[("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY)]).await;
    let (project, token) = s.project().await;
    let auth = (project.as_str(), token.as_str());
    let (mut alice, protocol) = chat_member(&s, auth, "alice").await;
    let (mut bob, _) = chat_member(&s, auth, "bob").await;
    sw_say(&mut bob, "seen").await;
    assert_eq!(messages(&mut alice, 1).await, ["seen"]);
    // One more reaches her socket, but she dies before acknowledging it.
    sw_say(&mut bob, "unacknowledged").await;
    let got = alice.unanswered().await;
    assert_eq!(
        got["params"]["params"]["message"]["content"],
        "unacknowledged"
    );

    // The socket drops (no goodbye); two messages while the SDK waits to reconnect, once
    // the node has noticed (its presence entry gone).
    drop(alice);
    let (mut watcher, _) = chat_member(&s, auth, "watcher").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = watcher
            .call("chat.members.get", json!({"channel": "room"}))
            .await;
        let mut ids: Vec<&str> = r["result"]["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str())
            .collect();
        ids.sort_unstable();
        if ids == ["bob", "watcher"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dropped session never ended: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sw_say(&mut bob, "missed 1").await;
    sw_say(&mut bob, "missed 2").await;
    let mut alice = resume(&s, auth, "alice", &protocol).await;
    sw_say(&mut bob, "live").await;
    // What she did not acknowledge and what she missed, once, in order, then the live
    // one: no gap, no repeat.
    assert_eq!(
        messages(&mut alice, 4).await,
        ["unacknowledged", "missed 1", "missed 2", "live"]
    );
}

/// Waits until `node` no longer lists `gone` among `room`'s members (its dropped session
/// ended there). The watcher used for it leaves before anything is published.
async fn left_the_room(node: &TestServer, auth: (&str, &str), gone: &str) {
    let (mut watcher, _) = chat_member(node, auth, "watcher").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = watcher
            .call("chat.members.get", json!({"channel": "room"}))
            .await;
        let listed = r["result"]["members"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["id"] == gone);
        if !listed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dropped session never ended: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watcher.call("signalwire.disconnect", json!({})).await;
}

#[tokio::test]
async fn a_replay_the_client_never_acknowledged_is_replayed_again() {
    let s = TestServer::start_with(&[("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY)]).await;
    let (project, token) = s.project().await;
    let auth = (project.as_str(), token.as_str());
    let (mut alice, protocol) = chat_member(&s, auth, "alice").await;
    let (mut bob, _) = chat_member(&s, auth, "bob").await;
    sw_say(&mut bob, "seen").await;
    assert_eq!(messages(&mut alice, 1).await, ["seen"]);
    drop(alice);
    left_the_room(&s, auth, "alice").await;
    sw_say(&mut bob, "missed 1").await;
    sw_say(&mut bob, "missed 2").await;
    // Resumed, the replay reaches her socket, but it dies again before she acknowledges.
    let mut alice = resume(&s, auth, "alice", &protocol).await;
    let got = alice.unanswered().await;
    assert_eq!(got["params"]["params"]["message"]["content"], "missed 1");
    drop(alice);
    left_the_room(&s, auth, "alice").await;
    // The next resume replays them again: nothing acknowledged was skipped.
    let mut alice = resume(&s, auth, "alice", &protocol).await;
    sw_say(&mut bob, "live").await;
    assert_eq!(
        messages(&mut alice, 3).await,
        ["missed 1", "missed 2", "live"]
    );
    // Acknowledged now: a third resume replays nothing of it.
    drop(alice);
    left_the_room(&s, auth, "alice").await;
    let mut alice = resume(&s, auth, "alice", &protocol).await;
    sw_say(&mut bob, "after").await;
    assert_eq!(messages(&mut alice, 1).await, ["after"]);
}

#[tokio::test]
async fn a_replay_over_the_sessions_budget_resumes_the_channel_live() {
    let s = TestServer::start_with(&[("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY)]).await;
    let (project, token) = s.project().await;
    let auth = (project.as_str(), token.as_str());
    let (alice, protocol) = chat_member(&s, auth, "alice").await;
    let (mut bob, _) = chat_member(&s, auth, "bob").await;
    drop(alice);
    left_the_room(&s, auth, "alice").await;
    // 80 messages of 60 KB (under the 64 KiB publication limit, within the chat history
    // of 100): about 4.8 MB missed, over the 4 MiB a resume replays.
    let big = "x".repeat(60_000);
    for n in 0..80 {
        let r = bob
            .call(
                "chat.publish",
                json!({"channel": "room", "content": format!("{n} {big}")}),
            )
            .await;
        assert_eq!(r["result"]["code"], "200", "{r}");
    }
    let mut alice = resume(&s, auth, "alice", &protocol).await;
    let r = bob
        .call(
            "chat.publish",
            json!({"channel": "room", "content": "live"}),
        )
        .await;
    assert_eq!(r["result"]["code"], "200", "{r}");
    // None of the oversized replay, and the channel carries on live.
    assert_eq!(messages(&mut alice, 1).await, ["live"]);
}

/// How many `SET` commands `redis` has run (`INFO commandstats`, over raw RESP).
fn redis_sets(redis: &RedisServer) -> u64 {
    use std::io::{Read as _, Write as _};
    let addr = redis.url().trim_start_matches("redis://").to_owned();
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
        .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    // The bulk reply ends with an empty line after the last section.
    while !text.ends_with("\r\n\r\n") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "redis closed: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("cmdstat_set:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn signalwire_state_changes_reach_redis_by_the_periodic_write_not_each_request() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let s = TestServer::start_with(&[
        ("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY),
        ("TOLLGATE_BROKER_URL", url.as_str()),
    ])
    .await;
    let (project, token) = s.project().await;
    let auth = (project.as_str(), token.as_str());
    let (mut alice, protocol) = chat_member(&s, auth, "alice").await;
    // The subscription's own write, within the periodic one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A typing indicator: twenty state changes as fast as the socket answers them.
    let before = redis_sets(&redis);
    for n in 0..20 {
        let r = alice
            .call(
                "chat.member.set_state",
                json!({"channels": [{"name": "room"}], "state": {"typing": n}}),
            )
            .await;
        assert_eq!(r["result"]["code"], "200", "{r}");
    }
    let writes = redis_sets(&redis) - before;
    assert!(writes <= 3, "{writes} session writes for 20 state changes");
    // The last state is what a resume gets back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(alice);
    left_the_room(&s, auth, "alice").await;
    let mut alice = resume(&s, auth, "alice", &protocol).await;
    let r = alice
        .call(
            "chat.member.get_state",
            json!({"channels": [{"name": "room"}]}),
        )
        .await;
    assert_eq!(
        r["result"]["channels"]["room"]["state"],
        json!({"typing": 19})
    );
}

#[tokio::test]
async fn a_stale_owner_cannot_overwrite_a_session_another_node_took_over() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = two_nodes(&redis, "").await;
    let (project, token) = a.project().await;
    let auth = (project.as_str(), token.as_str());
    let set_state = async |rpc: &mut Rpc, state: Value| {
        let r = rpc
            .call(
                "chat.member.set_state",
                json!({"channels": [{"name": "room"}], "state": state}),
            )
            .await;
        assert_eq!(r["result"]["code"], "200", "{r}");
    };
    let (mut stale, protocol) = chat_member(&a, auth, "alice").await;
    // Written to Redis by A's periodic write.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The client gave up on A's socket, which A still thinks live (half-open), and
    // resumed on B, which took the session.
    let mut taker = resume(&b, auth, "alice", &protocol).await;
    set_state(&mut taker, json!({"on": "b"})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    taker
        .call("chat.members.get", json!({"channel": "room"}))
        .await;
    // (A's stale session keeps Alice among the room's members: B's end is waited for.)
    drop(taker);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A's stale session changes and ends: neither its periodic write nor its last one
    // may replace what B left.
    set_state(&mut stale, json!({"on": "a"})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(stale);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut back = resume(&b, auth, "alice", &protocol).await;
    let r = back
        .call(
            "chat.member.get_state",
            json!({"channels": [{"name": "room"}]}),
        )
        .await;
    assert_eq!(r["result"]["channels"]["room"]["state"], json!({"on": "b"}));
}

#[tokio::test]
async fn signalwire_members_reconnect_and_resume_across_a_redis_restart() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = two_nodes(&redis, "").await;
    let (project, token) = a.project().await;
    let auth = (project.as_str(), token.as_str());
    let (mut alice, protocol) = chat_member(&a, auth, "alice").await;
    let (mut bob, bob_protocol) = chat_member(&b, auth, "bob").await;
    let r = bob
        .call(
            "chat.publish",
            json!({"channel": "room", "content": "before"}),
        )
        .await;
    assert_eq!(r["result"]["code"], "200", "{r}");
    assert_eq!(messages(&mut alice, 1).await, ["before"]);

    // Redis restarts empty. Each node, reconnected, closes its members' sockets with
    // 1013 (try again): the SDK reconnects on any close and resumes.
    redis.stop();
    redis.spawn();
    let code = tokio::time::timeout(Duration::from_secs(10), alice.closed())
        .await
        .expect("alice's socket is closed");
    assert_eq!(code, 1013);
    assert_eq!(bob.closed().await, 1013);

    // Bob, resumed on B, writes while Alice reconnects: she gets it on resuming.
    let mut bob = resume(&b, auth, "bob", &bob_protocol).await;
    let r = bob
        .call(
            "chat.publish",
            json!({"channel": "room", "content": "while away"}),
        )
        .await;
    assert_eq!(r["result"]["code"], "200", "{r}");
    let mut alice = resume(&a, auth, "alice", &protocol).await;
    // Her subscription works again without a chat.subscribe, across nodes, in order.
    let r = bob
        .call(
            "chat.publish",
            json!({"channel": "room", "content": "after"}),
        )
        .await;
    assert_eq!(r["result"]["code"], "200", "{r}");
    assert_eq!(messages(&mut alice, 2).await, ["while away", "after"]);
    // Bob's resumed subscription works too (his call above read past "while away").
    assert_eq!(messages(&mut bob, 1).await, ["after"]);
    // And she is a member again, seen from the other node.
    let members = within(
        Duration::from_secs(5),
        "alice among the members",
        async || {
            let mut rpc = Rpc::open(&b).await;
            let body =
                json!({"ttl": 60, "member_id": "dave", "channels": {"room": {"read": true}}});
            let t = mint(&b, auth, "chat", body).await;
            rpc.call("signalwire.connect", connect_params(&t)).await;
            let r = rpc
                .call("chat.members.get", json!({"channel": "room"}))
                .await;
            let ids: Vec<String> = r["result"]["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["id"].as_str().map(str::to_owned))
                .collect();
            ids.contains(&"alice".to_owned()).then_some(ids)
        },
    )
    .await;
    assert!(members.contains(&"alice".to_owned()));
}
