//! The Redis broker against real `redis-server` processes, each test with its own.

#![allow(clippy::unwrap_used)]

mod conformance;
mod server;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use server::RedisServer;
use tollgate_broker::{
    Broker, BrokerError, ChannelKey, ControlTopic, Event, HistoryPolicy, HistoryQuery,
    InterruptionCause, MemoryBroker, NewPublication, NodeCounts, NodeReport, PresenceEntry, Queue,
    RedisBroker, RedisConfig,
};

const PROJECT: uuid::Uuid = uuid::Uuid::from_u128(1);

fn ch(name: &str) -> ChannelKey {
    ChannelKey::new(PROJECT, name)
}

const KEEP: Option<HistoryPolicy> = Some(HistoryPolicy {
    size: 3,
    ttl: Duration::from_secs(60),
});

fn pubn(s: &str) -> NewPublication {
    NewPublication {
        data: Bytes::from(format!("{{\"v\":\"{s}\"}}")),
        ..Default::default()
    }
}

fn config(urls: &[String]) -> RedisConfig {
    let mut config = RedisConfig::from_broker_url(&urls.join(",")).unwrap();
    // Short enough for the outage tests, long enough for a loaded CI machine.
    config.timeout = Duration::from_secs(2);
    config.channel_ttl = Duration::from_secs(3);
    config
}

/// A node on these Redis servers, with its PUB/SUB connections up.
async fn node(servers: &[&RedisServer]) -> RedisBroker {
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    let broker = RedisBroker::new(config(&urls)).unwrap();
    wait_until("PUB/SUB up", || broker.is_receiving()).await;
    broker
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn received(q: &Queue) -> Vec<String> {
    let batch = tokio::time::timeout(Duration::from_secs(2), q.next_batch(100))
        .await
        .expect("a delivery arrives")
        .expect("queue open");
    batch
        .into_iter()
        .map(|d| match d.event {
            Event::Publication(p) => format!("{}:{}", d.channel, String::from_utf8_lossy(&p.data)),
            Event::Join(i) => format!("{}:join:{}", d.channel, String::from_utf8_lossy(&i)),
            Event::Leave(i) => format!("{}:leave:{}", d.channel, String::from_utf8_lossy(&i)),
            Event::Update(i) => format!("{}:update:{}", d.channel, String::from_utf8_lossy(&i)),
        })
        .collect()
}

async fn nothing(q: &Queue) -> bool {
    tokio::time::timeout(Duration::from_millis(150), q.next_batch(10))
        .await
        .is_err()
}

#[tokio::test]
async fn publications_reach_subscribers_on_every_node() {
    if !server::available() {
        return;
    }
    let redis = RedisServer::start();
    let (a, b) = (node(&[&redis]).await, node(&[&redis]).await);
    let (qa, qb, other) = (
        Queue::new(1 << 20),
        Queue::new(1 << 20),
        Queue::new(1 << 20),
    );
    a.subscribe(&ch("news"), &qa).await.unwrap();
    b.subscribe(&ch("news"), &qb).await.unwrap();
    b.subscribe(&ch("sport"), &other).await.unwrap();

    let p = a.publish(&ch("news"), pubn("1"), KEEP).await.unwrap();
    assert_eq!(p.offset, 1);
    assert_eq!(received(&qa).await, [r#"news:{"v":"1"}"#]);
    assert_eq!(received(&qb).await, [r#"news:{"v":"1"}"#], "across nodes");
    assert!(
        nothing(&other).await,
        "another channel's subscriber gets nothing"
    );

    // Join/leave cross nodes too, in order with publications.
    b.publish_presence_event(&ch("news"), Event::Join(Bytes::from_static(b"{\"j\":1}")))
        .await
        .unwrap();
    b.publish(&ch("news"), pubn("2"), None).await.unwrap();
    b.publish_presence_event(&ch("news"), Event::Leave(Bytes::from_static(b"{}")))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        got.extend(received(&qa).await);
    }
    assert_eq!(
        got,
        [r#"news:join:{"j":1}"#, r#"news:{"v":"2"}"#, "news:leave:{}"]
    );

    // The last local subscriber leaving stops delivery to that node only.
    a.unsubscribe(&ch("news"), &qa).await.unwrap();
    b.publish(&ch("news"), pubn("3"), None).await.unwrap();
    // `qb` still holds the join, "2" and leave from above; they may arrive in
    // one batch or several, so read until "3" (or a timeout fails the test).
    let mut got = Vec::new();
    while !got
        .iter()
        .any(|d: &String| d.as_str() == r#"news:{"v":"3"}"#)
    {
        got.extend(received(&qb).await);
    }
    assert_eq!(
        got,
        [
            r#"news:join:{"j":1}"#,
            r#"news:{"v":"2"}"#,
            "news:leave:{}",
            r#"news:{"v":"3"}"#
        ]
    );
    assert!(nothing(&qa).await);

    // `channels` sees every node; `channel_count` is this node's.
    let mut listed = Vec::new();
    for _ in 0..100 {
        listed = a.channels(PROJECT).await.unwrap();
        if listed.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listed, [("news".to_owned(), 1), ("sport".to_owned(), 1)]);
    assert_eq!(b.channel_count().await.unwrap(), (2, 2));
    assert_eq!(a.channel_count().await.unwrap(), (0, 0));
}

#[tokio::test]
async fn history_and_recovery_match_the_in_process_broker() {
    if !server::available() {
        return;
    }
    let redis = RedisServer::start();
    let memory = MemoryBroker::new();
    let remote = node(&[&redis]).await;
    let expected = conformance::run(&memory, PROJECT).await;
    let got = conformance::run(&remote, PROJECT).await;
    assert_eq!(got, expected, "\nredis:  {got:#?}\nmemory: {expected:#?}");
    // A second node reading the same channel sees the same stream.
    let other = node(&[&redis]).await;
    let h1 = remote
        .history(&ch("c"), HistoryQuery::default())
        .await
        .unwrap();
    let h2 = other
        .history(&ch("c"), HistoryQuery::default())
        .await
        .unwrap();
    assert_eq!(h1, h2);
}

#[tokio::test]
async fn presence_spans_nodes_and_expires() {
    if !server::available() {
        return;
    }
    let redis = RedisServer::start();
    let (a, b) = (node(&[&redis]).await, node(&[&redis]).await);
    let entry = |client: &str, user: &str| PresenceEntry {
        client: client.into(),
        user: user.into(),
        info: Bytes::from(format!(r#"{{"user":"{user}","client":"{client}"}}"#)),
    };
    let ttl = Duration::from_secs(60);
    a.add_presence(&ch("room"), entry("c1", "u1"), ttl)
        .await
        .unwrap();
    b.add_presence(&ch("room"), entry("c2", "u1"), ttl)
        .await
        .unwrap();
    b.add_presence(&ch("room"), entry("c3", "u2"), ttl)
        .await
        .unwrap();
    let stats = a.presence_stats(&ch("room")).await.unwrap();
    assert_eq!((stats.clients, stats.users), (3, 2));
    a.remove_presence(&ch("room"), "c2").await.unwrap();
    let present = b.presence(&ch("room")).await.unwrap();
    assert_eq!(present, [entry("c1", "u1"), entry("c3", "u2")]);

    // A node that stops refreshing (it died): its entries go after their TTL.
    b.add_presence(&ch("room"), entry("c9", "u9"), Duration::from_millis(800))
        .await
        .unwrap();
    assert_eq!(a.presence_stats(&ch("room")).await.unwrap().clients, 3);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(a.presence_stats(&ch("room")).await.unwrap().clients, 2);
    // …and a channel whose every entry expired leaves no key behind.
    a.add_presence(&ch("gone"), entry("c1", "u1"), Duration::from_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*gone*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test]
async fn projects_share_nothing_under_the_same_channel_name() {
    if !server::available() {
        return;
    }
    let redis = RedisServer::start();
    let (a, b) = (node(&[&redis]).await, node(&[&redis]).await);
    let theirs = ChannelKey::new(uuid::Uuid::from_u128(2), "news");
    let (mine_q, their_q) = (Queue::new(1 << 20), Queue::new(1 << 20));
    a.subscribe(&ch("news"), &mine_q).await.unwrap();
    b.subscribe(&theirs, &their_q).await.unwrap();
    a.publish(&ch("news"), pubn("mine"), KEEP).await.unwrap();
    assert_eq!(received(&mine_q).await, [r#"news:{"v":"mine"}"#]);
    assert!(nothing(&their_q).await);
    let h = b.history(&theirs, HistoryQuery::default()).await.unwrap();
    assert!(h.publications.is_empty());
    assert_eq!(h.position.offset, 0);
    b.remove_history(&theirs).await.unwrap();
    assert_eq!(
        a.history(&ch("news"), HistoryQuery::default())
            .await
            .unwrap()
            .publications
            .len(),
        1
    );

    let entry = PresenceEntry {
        client: "c1".into(),
        user: "u1".into(),
        info: Bytes::from_static(b"{}"),
    };
    a.add_presence(&ch("news"), entry, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(b.presence(&theirs).await.unwrap().is_empty());
    b.remove_presence(&theirs, "c1").await.unwrap();
    assert_eq!(a.presence(&ch("news")).await.unwrap().len(), 1);
    b.publish_presence_event(&theirs, Event::Join(Bytes::from_static(b"{}")))
        .await
        .unwrap();
    assert!(
        nothing(&mine_q).await,
        "their join is not announced to my subscribers"
    );
    assert_eq!(a.channels(PROJECT).await.unwrap(), [("news".to_owned(), 1)]);
    assert_eq!(a.channels(uuid::Uuid::from_u128(3)).await.unwrap(), []);
}

#[tokio::test]
async fn channels_spread_over_shards_and_each_works() {
    if !server::available() {
        return;
    }
    let (r1, r2) = (RedisServer::start(), RedisServer::start());
    let (a, b) = (node(&[&r1, &r2]).await, node(&[&r1, &r2]).await);
    let mut queues = Vec::new();
    for i in 0..20 {
        let q = Queue::new(1 << 20);
        b.subscribe(&ch(&format!("c{i}")), &q).await.unwrap();
        queues.push(q);
    }
    for i in 0..20 {
        a.publish(&ch(&format!("c{i}")), pubn(&i.to_string()), KEEP)
            .await
            .unwrap();
    }
    for (i, q) in queues.iter().enumerate() {
        assert_eq!(received(q).await, [format!("c{i}:{{\"v\":\"{i}\"}}")]);
        let h = b
            .history(&ch(&format!("c{i}")), HistoryQuery::default())
            .await
            .unwrap();
        assert_eq!(h.publications.len(), 1);
    }
    let mut streams = Vec::new();
    for r in [&r1, &r2] {
        let mut conn = r.client().get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("tollgate.s.*")
            .query_async(&mut conn)
            .await
            .unwrap();
        streams.push(keys.len());
    }
    assert_eq!(streams.iter().sum::<usize>(), 20);
    assert!(
        streams.iter().all(|&n| n >= 3),
        "both shards used: {streams:?}"
    );
    let listed = a.channels(PROJECT).await.unwrap();
    assert_eq!(listed.len(), 20, "listing gathers every shard");
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_and_an_empty_one_a_new_epoch() {
    if !server::available() {
        return;
    }
    let mut redis = RedisServer::start();
    let a = node(&[&redis]).await;
    let before = a.publish(&ch("c"), pubn("1"), KEEP).await.unwrap();
    a.publish(&ch("c"), pubn("2"), KEEP).await.unwrap();

    redis.stop();
    let started = std::time::Instant::now();
    let err = a.publish(&ch("c"), pubn("lost"), KEEP).await;
    assert!(matches!(err, Err(BrokerError::Unavailable(_))), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fails within the timeout"
    );
    assert!(a.history(&ch("c"), HistoryQuery::default()).await.is_err());
    assert!(a.presence(&ch("c")).await.is_err());
    assert!(a.ping().await.is_err());
    wait_until("PUB/SUB down", || !a.is_receiving()).await;
    assert!(
        a.subscribe(&ch("new"), &Queue::new(1 << 20)).await.is_err(),
        "a new subscription while Redis is away is a (temporary) error"
    );

    // Redis comes back empty: a new epoch, so a client's old position does not recover.
    redis.restart();
    let mut after = None;
    for _ in 0..100 {
        if let Ok(p) = a.publish(&ch("c"), pubn("3"), KEEP).await {
            after = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = after.expect("publishing works again");
    assert_ne!(after.epoch, before.epoch);
    assert_eq!(after.offset, 1);
    let h = a
        .history(
            &ch("c"),
            HistoryQuery {
                since: Some(&before),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!h.recovered && h.publications.is_empty());
}

#[tokio::test]
async fn a_broken_pubsub_connection_resubscribes_and_says_what_may_be_lost() {
    if !server::available() {
        return;
    }
    let mut redis = RedisServer::start();
    let a = node(&[&redis]).await;
    let mut interruptions = a.interruptions().expect("Redis can lose deliveries");
    let q = Queue::new(1 << 20);
    a.subscribe(&ch("live"), &q).await.unwrap();

    redis.restart();
    let interruption = tokio::time::timeout(Duration::from_secs(10), interruptions.recv())
        .await
        .expect("announced")
        .unwrap();
    assert_eq!(interruption.cause, InterruptionCause::Reconnected);
    assert_eq!(interruption.channels, [(ch("live"), vec![q.id()])]);

    // Delivery works again, from another node too.
    let b = node(&[&redis]).await;
    b.publish(&ch("live"), pubn("again"), None).await.unwrap();
    assert_eq!(received(&q).await, [r#"live:{"v":"again"}"#]);
}

#[tokio::test]
async fn a_gap_in_offsets_is_announced() {
    if !server::available() {
        return;
    }
    let redis = RedisServer::start();
    let a = node(&[&redis]).await;
    let mut interruptions = a.interruptions().unwrap();
    let q = Queue::new(1 << 20);
    a.subscribe(&ch("g"), &q).await.unwrap();
    a.publish(&ch("g"), pubn("1"), KEEP).await.unwrap();
    received(&q).await;
    // The stream is reset behind the node's back (its meta lost): the next publication
    // carries a new epoch.
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(format!("tollgate.m.{{{}:g}}", PROJECT.simple()))
        .query_async(&mut conn)
        .await
        .unwrap();
    a.publish(&ch("g"), pubn("2"), KEEP).await.unwrap();
    received(&q).await;
    let interruption = tokio::time::timeout(Duration::from_secs(2), interruptions.recv())
        .await
        .expect("announced")
        .unwrap();
    assert_eq!(interruption.cause, InterruptionCause::Gap);
    assert_eq!(interruption.channels, [(ch("g"), vec![q.id()])]);
}

#[tokio::test]
async fn memory_broker_announces_no_interruptions() {
    let memory: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    assert!(memory.interruptions().is_none());
}

#[tokio::test]
async fn idempotent_results_are_shared_by_the_nodes() {
    if !server::available() {
        return;
    }
    let redis = RedisServer::start();
    let (a, b) = (node(&[&redis]).await, node(&[&redis]).await);
    let window = Duration::from_secs(60);
    assert_eq!(a.idempotent_result(&ch("c"), "k").await.unwrap(), None);
    a.remember_idempotent(&ch("c"), "k", Bytes::from_static(b"{\"offset\":1}"), window)
        .await
        .unwrap();
    // The first result stands.
    b.remember_idempotent(&ch("c"), "k", Bytes::from_static(b"{}"), window)
        .await
        .unwrap();
    assert_eq!(
        b.idempotent_result(&ch("c"), "k").await.unwrap().as_deref(),
        Some(&b"{\"offset\":1}"[..])
    );
    assert_eq!(
        b.idempotent_result(&ch("d"), "k").await.unwrap(),
        None,
        "per channel"
    );
    let other = ChannelKey::new(uuid::Uuid::from_u128(2), "c");
    assert_eq!(
        b.idempotent_result(&other, "k").await.unwrap(),
        None,
        "per project"
    );
    // The in-process broker leaves it to each node.
    let memory = MemoryBroker::new();
    memory
        .remember_idempotent(&ch("c"), "k", Bytes::from_static(b"{}"), window)
        .await
        .unwrap();
    assert_eq!(memory.idempotent_result(&ch("c"), "k").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_subscriptions_are_batched_and_all_delivered() {
    if !server::available() {
        return;
    }
    let redis = RedisServer::start();
    let (a, b) = (Arc::new(node(&[&redis]).await), node(&[&redis]).await);
    // 50 channels, 4 subscribers each, all at once.
    let subs: Vec<(String, Arc<Queue>)> = (0..200)
        .map(|i| (format!("c{}", i % 50), Queue::new(1 << 20)))
        .collect();
    let tasks: Vec<_> = subs
        .iter()
        .map(|(name, q)| {
            let (a, key, q) = (a.clone(), ch(name), q.clone());
            tokio::spawn(async move { a.subscribe(&key, &q).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(a.channel_count().await.unwrap(), (50, 200));
    for i in 0..50 {
        b.publish(&ch(&format!("c{i}")), pubn(&i.to_string()), None)
            .await
            .unwrap();
    }
    for (name, q) in &subs {
        let i = &name[1..];
        assert_eq!(received(q).await, [format!("{name}:{{\"v\":\"{i}\"}}")]);
    }
}

fn report(uid: &str, projects: Vec<(uuid::Uuid, NodeCounts)>) -> NodeReport {
    NodeReport {
        uid: uid.into(),
        name: "tollgate".into(),
        version: "1.0".into(),
        uptime: 5,
        projects,
    }
}

#[tokio::test]
async fn heartbeats_list_live_nodes_per_project_and_forget_dead_ones() {
    if !server::available() {
        return;
    }
    let redis = RedisServer::start();
    let short = |urls: &[String]| {
        let mut c = config(urls);
        c.node_ttl = Duration::from_millis(600);
        c
    };
    let urls = [redis.url()];
    let a = RedisBroker::new(short(&urls)).unwrap();
    let b = RedisBroker::new(short(&urls)).unwrap();
    assert_eq!(a.heartbeat_interval(), Some(Duration::from_millis(200)));
    let busy = NodeCounts {
        clients: 2,
        users: 1,
        channels: 3,
        subs: 4,
    };
    a.heartbeat(&report("node-a", vec![(PROJECT, busy)]))
        .await
        .unwrap();
    b.heartbeat(&report("node-b", vec![])).await.unwrap();

    // Each node sees the other, never itself; a project sees its own counts only.
    let seen_by_b = b.other_nodes(PROJECT).await.unwrap();
    assert_eq!(seen_by_b.len(), 1);
    assert_eq!(seen_by_b[0].uid, "node-a");
    assert_eq!(seen_by_b[0].counts, busy);
    assert!(seen_by_b[0].uptime >= 5);
    let other_project = b.other_nodes(uuid::Uuid::from_u128(2)).await.unwrap();
    assert_eq!(other_project[0].counts, NodeCounts::default());
    let seen_by_a = a.other_nodes(PROJECT).await.unwrap();
    assert_eq!(seen_by_a.len(), 1);
    assert_eq!(seen_by_a[0].uid, "node-b");

    // A project a node no longer serves is withdrawn on its next beat.
    a.heartbeat(&report("node-a", vec![])).await.unwrap();
    assert_eq!(
        b.other_nodes(PROJECT).await.unwrap()[0].counts,
        NodeCounts::default()
    );

    // A silent node is gone once its heartbeat is older than the TTL.
    drop(a);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(b.other_nodes(PROJECT).await.unwrap().is_empty());

    // The in-process broker has no other node and no heartbeat.
    let memory = MemoryBroker::new();
    assert_eq!(memory.heartbeat_interval(), None);
    assert!(memory.other_nodes(PROJECT).await.unwrap().is_empty());
}

#[tokio::test]
async fn control_messages_carry_their_topic_to_the_other_nodes() {
    if !server::available() {
        return;
    }
    let mut redis = RedisServer::start();
    let (a, b) = (node(&[&redis]).await, node(&[&redis]).await);
    let mut at_b = b.control().unwrap();
    let mut at_a = a.control().unwrap();
    a.publish_control(ControlTopic::Cache.frame(b"forget"))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), at_b.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ControlTopic::Cache.body(&got), Some(&b"forget"[..]));
    assert_eq!(ControlTopic::Gateway.body(&got), None);
    // Never back to the sender.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), at_a.recv())
            .await
            .is_err()
    );

    // An empty body from another node (or anyone on Redis) would read as "reconnected"
    // and make every cache forget everything: dropped.
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg("*control")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(channels.len(), 1, "{channels:?}");
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&channels[0])
        .arg(&[7u8; 16][..])
        .query_async(&mut conn)
        .await
        .unwrap();
    b.publish_control(ControlTopic::Cache.frame(b"after"))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), at_a.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ControlTopic::Cache.body(&got),
        Some(&b"after"[..]),
        "{got:?}"
    );

    // Back after an outage, the control channel says (with an empty message, from no
    // node) that messages sent meanwhile were missed.
    redis.restart();
    let said = tokio::time::timeout(Duration::from_secs(10), at_b.recv())
        .await
        .expect("announced")
        .unwrap();
    assert!(said.is_empty());
}

#[tokio::test]
async fn a_session_put_by_one_node_is_taken_once_by_another() {
    if !server::available() {
        return;
    }
    let (r1, r2) = (RedisServer::start(), RedisServer::start());
    // Two shards: every node finds a session on the shard its key picks.
    let (a, b) = (node(&[&r1, &r2]).await, node(&[&r1, &r2]).await);
    assert!(a.keeps_sessions());
    let ttl = Duration::from_secs(60);
    assert_eq!(
        b.take_session(PROJECT, "k1", "taker", ttl).await.unwrap(),
        None
    );
    a.put_session(PROJECT, "k1", "a", Bytes::from_static(b"old"), ttl)
        .await
        .unwrap();
    // A later put replaces the earlier one.
    a.put_session(PROJECT, "k1", "a", Bytes::from_static(b"new"), ttl)
        .await
        .unwrap();
    a.put_session(PROJECT, "k2", "a", Bytes::from_static(b"two"), ttl)
        .await
        .unwrap();
    let other = uuid::Uuid::from_u128(2);
    assert_eq!(
        b.take_session(other, "k1", "taker", ttl).await.unwrap(),
        None,
        "per project"
    );
    assert_eq!(
        b.take_session(PROJECT, "k1", "taker", ttl)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(
        a.take_session(PROJECT, "k1", "taker", ttl).await.unwrap(),
        None,
        "taken once"
    );
    assert_eq!(
        a.take_session(PROJECT, "k2", "taker", ttl)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"two"[..]),
        "per key"
    );
    // It expires.
    a.put_session(
        PROJECT,
        "k3",
        "a",
        Bytes::from_static(b"x"),
        Duration::from_millis(50),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        b.take_session(PROJECT, "k3", "taker", ttl).await.unwrap(),
        None
    );
    // A stale owner cannot bring back a session another took over: the taker's mark
    // refuses its puts, the taker's own go through.
    assert!(
        a.put_session(PROJECT, "k4", "a", Bytes::from_static(b"mine"), ttl)
            .await
            .unwrap()
    );
    assert_eq!(
        b.take_session(PROJECT, "k4", "b", ttl)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"mine"[..])
    );
    assert!(
        !a.put_session(PROJECT, "k4", "a", Bytes::from_static(b"stale"), ttl)
            .await
            .unwrap()
    );
    assert!(
        b.put_session(PROJECT, "k4", "b", Bytes::from_static(b"newer"), ttl)
            .await
            .unwrap()
    );
    assert!(
        !a.put_session(PROJECT, "k4", "a", Bytes::from_static(b"stale"), ttl)
            .await
            .unwrap()
    );
    assert_eq!(
        a.take_session(PROJECT, "k4", "c", ttl)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"newer"[..])
    );
    // A mark alone holds no state.
    assert_eq!(b.take_session(PROJECT, "k4", "d", ttl).await.unwrap(), None);
    // The in-process broker keeps nothing: each node keeps its own.
    let memory = MemoryBroker::new();
    assert!(!memory.keeps_sessions());
    memory
        .put_session(PROJECT, "k1", "a", Bytes::from_static(b"x"), ttl)
        .await
        .unwrap();
    assert_eq!(
        memory
            .take_session(PROJECT, "k1", "taker", ttl)
            .await
            .unwrap(),
        None
    );
}

/// During a rolling upgrade, a node reads heartbeats written by newer nodes: what it does
/// not know is skipped, never deleted; only entries whose time reads and is older than the
/// TTL (by Redis's clock, which also stamps them) are deleted.
#[tokio::test]
async fn heartbeats_of_newer_nodes_survive_older_readers() {
    if !server::available() {
        return;
    }
    let redis = RedisServer::start();
    let a = node(&[&redis]).await;
    a.heartbeat(&report("node-a", vec![])).await.unwrap();
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*.nodes")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let nodes_key = keys[0].clone();
    let project_key = format!("{nodes_key}.{}", PROJECT.simple());
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let now = secs * 1000 + micros / 1000;
    // Stamped with Redis's clock.
    let written: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(&nodes_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let at =
        serde_json::from_str::<serde_json::Value>(written.values().next().unwrap()).unwrap()["at"]
            .as_i64()
            .unwrap();
    assert!((now - at).abs() < 5_000, "at {at}, redis now {now}");

    let newer = "f".repeat(32);
    let unreadable = "e".repeat(32);
    let stale = "d".repeat(32);
    let entries = [
        (
            &newer,
            format!(
                r#"{{"uid":"node-new","name":"t","version":"9","uptime":1,"at":{now},"zone":"x"}}"#
            ),
        ),
        (&unreadable, "not json".to_owned()),
        (
            &stale,
            r#"{"uid":"node-old","name":"t","version":"1","uptime":1,"at":1}"#.to_owned(),
        ),
    ];
    for (field, value) in &entries {
        let _: i64 = redis::cmd("HSET")
            .arg(&nodes_key)
            .arg(field.as_str())
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    for (field, value) in [
        (&newer, format!("{now}:1:2:3:4:5")),
        (&stale, "1:1:1:1:1".into()),
    ] {
        let _: i64 = redis::cmd("HSET")
            .arg(&project_key)
            .arg(field.as_str())
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let b = node(&[&redis]).await;
    let seen = b.other_nodes(PROJECT).await.unwrap();
    let uids: Vec<&str> = seen.iter().map(|n| n.uid.as_str()).collect();
    assert_eq!(uids, ["node-a", "node-new"]);
    assert_eq!(
        seen[1].counts,
        NodeCounts {
            clients: 1,
            users: 2,
            channels: 3,
            subs: 4
        }
    );
    let left: Vec<String> = redis::cmd("HKEYS")
        .arg(&nodes_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        left.contains(&newer) && left.contains(&unreadable),
        "{left:?}"
    );
    assert!(!left.contains(&stale), "{left:?}");
    let left: Vec<String> = redis::cmd("HKEYS")
        .arg(&project_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, [newer]);
}

/// A reader deletes a stale heartbeat only if it still holds what the reader saw: a node
/// that beat again in between keeps its fresh entry.
#[tokio::test]
async fn a_stale_heartbeat_is_deleted_only_if_unchanged() {
    if !server::available() {
        return;
    }
    let redis = RedisServer::start();
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let forget = redis::Script::new(include_str!("../../src/redis/lua/heartbeat_forget.lua"));
    for (field, value) in [("a", "1:0:0:0:0"), ("b", "9:0:0:0:0")] {
        let _: i64 = redis::cmd("HSET")
            .arg("h")
            .arg(field)
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // Both were seen stale ("1:…"); "b" has beaten since.
    let removed: i64 = forget
        .key("h")
        .arg("a")
        .arg("1:0:0:0:0")
        .arg("b")
        .arg("1:0:0:0:0")
        .invoke_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let left: Vec<String> = redis::cmd("HKEYS")
        .arg("h")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, ["b"]);
}
