//! The in-process broker's behaviour.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::{
    Broker, ChannelKey, Event, HistoryPolicy, HistoryQuery, MemoryBroker, PresenceEntry, Queue,
    QueueState,
};

/// The project every test channel belongs to unless a test says otherwise.
const PROJECT: uuid::Uuid = uuid::Uuid::from_u128(1);

fn ch(name: &str) -> ChannelKey {
    ChannelKey::new(PROJECT, name)
}

const KEEP: Option<HistoryPolicy> = Some(HistoryPolicy {
    size: 3,
    ttl: Duration::from_secs(60),
});

fn pubn(data: Bytes) -> crate::NewPublication {
    crate::NewPublication {
        data,
        ..Default::default()
    }
}

fn data(s: &str) -> Bytes {
    Bytes::from(format!("{{\"v\":\"{s}\"}}"))
}

async fn received(q: &Queue) -> Vec<String> {
    let batch = tokio::time::timeout(Duration::from_millis(200), q.next_batch(100))
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

#[tokio::test]
async fn fans_out_to_every_subscriber_and_only_them() {
    let b = MemoryBroker::new();
    let (q1, q2, other) = (
        Queue::new(1 << 20),
        Queue::new(1 << 20),
        Queue::new(1 << 20),
    );
    b.subscribe(&ch("news"), &q1).await.unwrap();
    b.subscribe(&ch("news"), &q2).await.unwrap();
    b.subscribe(&ch("sport"), &other).await.unwrap();
    b.publish(&ch("news"), pubn(data("a")), None).await.unwrap();
    assert_eq!(received(&q1).await, [r#"news:{"v":"a"}"#]);
    assert_eq!(received(&q2).await, [r#"news:{"v":"a"}"#]);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), other.next_batch(10))
            .await
            .is_err(),
        "another channel's subscriber gets nothing"
    );
    b.unsubscribe(&ch("news"), &q2).await.unwrap();
    b.publish(&ch("news"), pubn(data("b")), None).await.unwrap();
    assert_eq!(received(&q1).await, [r#"news:{"v":"b"}"#]);
    assert_eq!(
        b.channels(PROJECT).await.unwrap(),
        [("news".to_owned(), 1), ("sport".to_owned(), 1)]
    );

    // A dropped connection's queue is forgotten on the next publication.
    drop(q1);
    b.publish(&ch("news"), pubn(data("c")), None).await.unwrap();
    assert_eq!(
        b.channels(PROJECT).await.unwrap(),
        [("sport".to_owned(), 1)]
    );
}

#[tokio::test]
async fn history_keeps_positions_size_and_ttl() {
    let b = MemoryBroker::new();
    let p1 = b.publish(&ch("c"), pubn(data("1")), KEEP).await.unwrap();
    let p2 = b.publish(&ch("c"), pubn(data("2")), KEEP).await.unwrap();
    assert_eq!((p1.offset, p2.offset), (1, 2));
    assert_eq!(p1.epoch, p2.epoch);
    assert_eq!(p1.epoch.len(), 8);
    for i in 3..=5 {
        b.publish(&ch("c"), pubn(data(&i.to_string())), KEEP)
            .await
            .unwrap();
    }
    let h = b.history(&ch("c"), HistoryQuery::default()).await.unwrap();
    let offsets: Vec<u64> = h.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [3, 4, 5], "size 3 keeps the newest three");
    assert_eq!(h.position.offset, 5);
    let rev = b
        .history(
            &ch("c"),
            HistoryQuery {
                limit: Some(2),
                reverse: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let offsets: Vec<u64> = rev.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [5, 4]);

    // Without a history policy nothing is kept and no offset is taken.
    let p = b
        .publish(&ch("plain"), pubn(data("x")), None)
        .await
        .unwrap();
    assert_eq!(p.offset, 0);
    assert!(
        b.history(&ch("plain"), HistoryQuery::default())
            .await
            .unwrap()
            .publications
            .is_empty()
    );

    // TTL.
    let short = Some(HistoryPolicy {
        size: 10,
        ttl: Duration::from_millis(40),
    });
    b.publish(&ch("t"), pubn(data("x")), short).await.unwrap();
    b.publish(&ch("t"), pubn(data("y")), KEEP).await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let h = b.history(&ch("t"), HistoryQuery::default()).await.unwrap();
    assert_eq!(h.publications.len(), 1);
    assert_eq!(h.publications[0].offset, 2);
}

#[tokio::test]
async fn recovery_reports_whether_the_stream_is_continuous() {
    let b = MemoryBroker::new();
    let q = Queue::new(1 << 20);
    b.subscribe(&ch("c"), &q).await.unwrap();
    let mut last = b.publish(&ch("c"), pubn(data("1")), KEEP).await.unwrap();
    for i in 2..=3 {
        last = b
            .publish(&ch("c"), pubn(data(&i.to_string())), KEEP)
            .await
            .unwrap();
    }
    let since = crate::StreamPosition {
        offset: 1,
        epoch: last.epoch.clone(),
    };
    let h = b
        .history(
            &ch("c"),
            HistoryQuery {
                since: Some(&since),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(h.recovered);
    assert_eq!(
        h.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        [2, 3]
    );

    // Nothing missed: recovered, empty.
    let top = b
        .history(
            &ch("c"),
            HistoryQuery {
                since: Some(&last),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(top.recovered && top.publications.is_empty());

    // A gap (publication 1 pushed out of a size-3 history) or another epoch: not recovered.
    b.publish(&ch("c"), pubn(data("4")), KEEP).await.unwrap();
    let old = crate::StreamPosition {
        offset: 0,
        epoch: last.epoch.clone(),
    };
    let gap = b
        .history(
            &ch("c"),
            HistoryQuery {
                since: Some(&old),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!gap.recovered && gap.publications.is_empty());
    assert_eq!(gap.position.offset, 4);
    let other = crate::StreamPosition {
        offset: 3,
        epoch: "ffffffff".into(),
    };
    assert!(
        !b.history(
            &ch("c"),
            HistoryQuery {
                since: Some(&other),
                ..Default::default()
            }
        )
        .await
        .unwrap()
        .recovered
    );
    let future = crate::StreamPosition {
        offset: 99,
        epoch: last.epoch.clone(),
    };
    assert!(
        !b.history(
            &ch("c"),
            HistoryQuery {
                since: Some(&future),
                ..Default::default()
            }
        )
        .await
        .unwrap()
        .recovered
    );
}

#[tokio::test]
async fn a_slow_consumer_overflows_without_stalling_the_publisher() {
    let b = MemoryBroker::new();
    let slow = Queue::new(1024);
    let fast = Queue::new(1 << 20);
    b.subscribe(&ch("c"), &slow).await.unwrap();
    b.subscribe(&ch("c"), &fast).await.unwrap();
    let big = Bytes::from(vec![b'x'; 300]);
    for _ in 0..10 {
        // Never blocks, whatever the slow queue's state.
        tokio::time::timeout(
            Duration::from_millis(50),
            b.publish(&ch("c"), pubn(big.clone()), None),
        )
        .await
        .expect("publishing never waits for a subscriber")
        .unwrap();
    }
    assert_eq!(slow.state(), QueueState::Overflowed);
    assert!(
        slow.next_batch(10).await.is_none(),
        "an overflowed queue ends its connection"
    );
    assert_eq!(fast.state(), QueueState::Open);
    assert_eq!(fast.next_batch(100).await.unwrap().len(), 10);

    // Batches are bounded by the caller.
    for _ in 0..5 {
        b.publish(&ch("c"), pubn(data("s")), None).await.unwrap();
    }
    assert_eq!(fast.next_batch(2).await.unwrap().len(), 2);
    assert_eq!(fast.next_batch(10).await.unwrap().len(), 3);
    fast.close();
    assert!(fast.next_batch(10).await.is_none());
    assert!(!fast.push(crate::Delivery {
        channel: Arc::from("c"),
        event: Event::Join(data("j"))
    }));
}

#[tokio::test]
async fn presence_and_join_leave() {
    let b = MemoryBroker::new();
    let q = Queue::new(1 << 20);
    b.subscribe(&ch("room"), &q).await.unwrap();
    let entry = |client: &str, user: &str| PresenceEntry {
        client: client.into(),
        user: user.into(),
        info: Bytes::from(format!(r#"{{"user":"{user}","client":"{client}"}}"#)),
    };
    let ttl = Duration::from_secs(60);
    b.add_presence(&ch("room"), entry("c1", "u1"), ttl)
        .await
        .unwrap();
    b.add_presence(&ch("room"), entry("c2", "u1"), ttl)
        .await
        .unwrap();
    b.add_presence(&ch("room"), entry("c3", "u2"), ttl)
        .await
        .unwrap();
    let stats = b.presence_stats(&ch("room")).await.unwrap();
    assert_eq!((stats.clients, stats.users), (3, 2));
    b.remove_presence(&ch("room"), "c2").await.unwrap();
    let clients: Vec<String> = b
        .presence(&ch("room"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.client)
        .collect();
    assert_eq!(clients, ["c1", "c3"]);

    b.add_presence(&ch("room"), entry("c9", "u9"), Duration::from_millis(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        b.presence_stats(&ch("room")).await.unwrap().clients,
        2,
        "expired presence is gone"
    );

    b.publish_presence_event(&ch("room"), Event::Join(data("j")))
        .await
        .unwrap();
    b.publish_presence_event(&ch("room"), Event::Leave(data("l")))
        .await
        .unwrap();
    assert_eq!(
        received(&q).await,
        [r#"room:join:{"v":"j"}"#, r#"room:leave:{"v":"l"}"#]
    );
}

#[tokio::test]
async fn stream_positions_outlive_history_and_the_sweeper_frees_the_rest() {
    let b = MemoryBroker::with_meta_ttl(Duration::from_millis(200));
    let short = Some(HistoryPolicy {
        size: 3,
        ttl: Duration::from_millis(20),
    });
    let first = b
        .publish(&ch("kept"), pubn(data("1")), short)
        .await
        .unwrap();
    b.publish(&ch("plain"), pubn(data("x")), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    b.sweep();
    {
        let projects = b.projects.lock().unwrap();
        let channels = &projects[&PROJECT].channels;
        let kept = channels
            .get("kept")
            .expect("position kept after its history expired");
        assert!(
            kept.history.is_empty(),
            "expired history swept without a touch"
        );
        assert!(!channels.contains_key("plain"));
    }
    // The epoch survives history expiry and removal, so a returning client recovers "nothing
    // missed" instead of "stream reset".
    b.remove_history(&ch("kept")).await.unwrap();
    let h = b
        .history(
            &ch("kept"),
            HistoryQuery {
                since: Some(&first),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(h.position, first);
    assert!(h.recovered);

    tokio::time::sleep(Duration::from_millis(200)).await;
    b.sweep();
    assert!(
        b.projects.lock().unwrap().is_empty(),
        "position dropped after its ttl"
    );
}

#[tokio::test]
async fn history_stays_within_the_byte_budget() {
    let b = MemoryBroker::with_limits(Duration::from_secs(60), 1000);
    let big = Bytes::from(format!("\"{}\"", "x".repeat(500)));
    let first = b.publish(&ch("c"), pubn(big.clone()), KEEP).await.unwrap();
    let second = b.publish(&ch("c"), pubn(big.clone()), KEEP).await.unwrap();
    assert_eq!(second.offset, first.offset + 1, "still numbered");
    assert!(b.history_bytes() <= 1000, "{}", b.history_bytes());
    let h = b
        .history(
            &ch("c"),
            HistoryQuery {
                since: Some(&first),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        !h.recovered,
        "the publication not kept is a gap, not a silent loss"
    );
    b.remove_history(&ch("c")).await.unwrap();
    assert_eq!(b.history_bytes(), 0);
    b.publish(&ch("c"), pubn(big), KEEP).await.unwrap();
    assert!(b.history_bytes() > 0, "room again once history is freed");
}

#[tokio::test]
async fn projects_share_nothing_under_the_same_channel_name() {
    let b = MemoryBroker::new();
    let other = uuid::Uuid::from_u128(2);
    let theirs = ChannelKey::new(other, "news");
    let (mine_q, their_q) = (Queue::new(1 << 20), Queue::new(1 << 20));
    b.subscribe(&ch("news"), &mine_q).await.unwrap();
    b.subscribe(&theirs, &their_q).await.unwrap();

    // Publications, history and stream positions.
    b.publish(&ch("news"), pubn(data("mine")), KEEP)
        .await
        .unwrap();
    assert_eq!(received(&mine_q).await, [r#"news:{"v":"mine"}"#]);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), their_q.next_batch(10))
            .await
            .is_err(),
        "the other project's subscriber of the same name gets nothing"
    );
    let h = b.history(&theirs, HistoryQuery::default()).await.unwrap();
    assert!(h.publications.is_empty());
    assert_eq!(h.position.offset, 0);
    b.remove_history(&theirs).await.unwrap();
    let mine = b
        .history(&ch("news"), HistoryQuery::default())
        .await
        .unwrap();
    assert_eq!(
        mine.publications.len(),
        1,
        "their history_remove leaves mine"
    );

    // Presence and join/leave.
    let entry = PresenceEntry {
        client: "c1".into(),
        user: "u1".into(),
        info: Bytes::from_static(b"{}"),
    };
    b.add_presence(&ch("news"), entry, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(b.presence(&theirs).await.unwrap().is_empty());
    assert_eq!(b.presence_stats(&theirs).await.unwrap().clients, 0);
    b.remove_presence(&theirs, "c1").await.unwrap();
    assert_eq!(b.presence(&ch("news")).await.unwrap().len(), 1);
    b.publish_presence_event(&theirs, Event::Join(Bytes::from_static(b"{}")))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(50), mine_q.next_batch(10))
            .await
            .is_err(),
        "their join is not announced to my subscribers"
    );

    // Channel listings.
    assert_eq!(b.channels(PROJECT).await.unwrap(), [("news".to_owned(), 1)]);
    assert_eq!(b.channels(other).await.unwrap(), [("news".to_owned(), 1)]);
    assert_eq!(b.channel_count().await.unwrap(), (2, 2));
}

#[tokio::test]
async fn one_project_filling_its_history_share_leaves_the_others_theirs() {
    // 3,000 bytes in all, 1,000 per project.
    let b = MemoryBroker::with_budgets(Duration::from_secs(60), 3000, 1000);
    let noisy = |name: &str| ChannelKey::new(uuid::Uuid::from_u128(9), name);
    let big = Bytes::from(format!("\"{}\"", "x".repeat(500)));
    for i in 0..10 {
        b.publish(&noisy(&format!("c{i}")), pubn(big.clone()), KEEP)
            .await
            .unwrap();
    }
    assert!(
        b.history_bytes() <= 1000,
        "noisy kept {}",
        b.history_bytes()
    );
    // The quiet project still keeps its history.
    let first = b
        .publish(&ch("quiet"), pubn(big.clone()), KEEP)
        .await
        .unwrap();
    b.publish(&ch("quiet"), pubn(data("2")), KEEP)
        .await
        .unwrap();
    let h = b
        .history(
            &ch("quiet"),
            HistoryQuery {
                since: Some(&crate::StreamPosition {
                    offset: first.offset - 1,
                    epoch: first.epoch.clone(),
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(h.recovered, "nothing of the quiet project was dropped");
    assert_eq!(h.publications.len(), 2);
}

#[tokio::test]
async fn the_sweeper_forgets_subscribers_whose_connection_is_gone() {
    let b = MemoryBroker::new();
    let q = Queue::new(1 << 20);
    b.subscribe(&ch("room"), &q).await.unwrap();
    assert_eq!(b.channels(PROJECT).await.unwrap(), [("room".to_owned(), 1)]);
    // The connection ends without unsubscribing (a session that panicked).
    drop(q);
    b.sweep();
    assert!(b.channels(PROJECT).await.unwrap().is_empty());
    assert!(b.projects.lock().unwrap().is_empty());
}
