//! The core without a wire protocol: clients of two projects on one gateway, over the real
//! in-process broker and a real (SQLite) service.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tollgate_broker::{Event, HistoryQuery, MemoryBroker, NewPublication};
use tollgate_service::gateway::ConnectionGrant;
use tollgate_service::{ManualClock, MasterKey, Settings, Tollgate};
use tollgate_token::ProjectId;

use super::client::{Client, ConnectRefused, Sub};
use crate::{Control, Gateway, GatewaySettings};

async fn gateway(settings: GatewaySettings) -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = Arc::new(tollgate_store::SqlStore::connect(&url).await.unwrap());
    let tollgate = Tollgate::new(
        store,
        &MasterKey::from_bytes([7; 32]),
        Settings::default(),
        Arc::new(ManualClock::at(1_800_000_000)),
    )
    .await
    .unwrap();
    let broker = Arc::new(MemoryBroker::new());
    (Gateway::new(tollgate, broker, settings), dir)
}

fn grant(project: ProjectId, user: &str) -> ConnectionGrant {
    ConnectionGrant {
        project,
        user: user.to_owned(),
        expires_at: None,
        caps: Vec::new(),
        info: None,
        subs: Vec::new(),
        typ: None,
        jti: None,
        issued_at: None,
    }
}

/// A connected client of `user` in `project` subscribed to `channels` with presence and
/// join/leave.
async fn client(gw: &Gateway, project: ProjectId, user: &str, channels: &[&str]) -> Client<()> {
    let mut c = Client::new(gw.clone());
    c.connect(grant(project, user)).unwrap();
    for channel in channels {
        c.attach(channel).await.unwrap();
        let sub = Sub {
            info: c.client_info(None),
            presence: true,
            join_leave: true,
            ext: (),
        };
        c.add(channel, sub).await;
    }
    c
}

/// What a client's queue holds now, as `channel:kind` strings (fan-out is synchronous in
/// the in-process broker, so whatever was delivered is already queued).
async fn drain(c: &Client<()>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(Some(batch)) =
        tokio::time::timeout(Duration::from_millis(10), c.queue.next_batch(64)).await
    {
        for d in batch {
            let kind = match d.event {
                Event::Publication(p) => String::from_utf8_lossy(&p.data).into_owned(),
                Event::Join(_) => "join".into(),
                Event::Leave(_) => "leave".into(),
                Event::Update(_) => "update".into(),
            };
            out.push(format!("{}:{kind}", d.channel));
        }
    }
    out
}

/// The client ids present in `channel`, as `c` sees them.
async fn present(c: &Client<()>, channel: &str) -> Vec<String> {
    let entries = c.presence(channel).await.unwrap();
    entries.into_iter().map(|e| e.client).collect()
}

fn data(s: &str) -> NewPublication {
    NewPublication {
        data: Bytes::from(format!("\"{s}\"")),
        ..NewPublication::default()
    }
}

#[tokio::test]
async fn clients_of_two_projects_share_nothing_under_one_channel_name() {
    let (gw, _dir) = gateway(GatewaySettings::default()).await;
    let (p1, p2) = (ProjectId::new_random(), ProjectId::new_random());
    let a = client(&gw, p1, "alice", &["room"]).await;
    let mut b = client(&gw, p2, "alice", &["room"]).await;
    // Each saw only its own join.
    assert_eq!(drain(&a).await, ["room:join"]);
    assert_eq!(drain(&b).await, ["room:join"]);

    a.publish("room", data("from-a"), None).await.unwrap();
    b.publish("room", data("from-b"), None).await.unwrap();
    assert_eq!(drain(&a).await, ["room:\"from-a\""]);
    assert_eq!(drain(&b).await, ["room:\"from-b\""]);

    assert_eq!(present(&a, "room").await, [a.id.as_str()]);
    assert_eq!(present(&b, "room").await, [b.id.as_str()]);
    assert_eq!(a.presence_stats("room").await.unwrap().clients, 1);

    // Leaving announces to its own project only, and removes only its own presence.
    b.leave("room").await.unwrap();
    assert!(drain(&a).await.is_empty(), "a heard nothing of b's leave");
    assert_eq!(present(&a, "room").await, [a.id.as_str()]);
    assert!(b.subs.is_empty());

    // The project scopes agree with the clients.
    assert_eq!(
        gw.project(p1).channels().await.unwrap(),
        [("room".to_owned(), 1)]
    );
    assert!(gw.project(p2).channels().await.unwrap().is_empty());
}

#[tokio::test]
async fn history_is_per_project() {
    let (gw, _dir) = gateway(GatewaySettings::default()).await;
    let (p1, p2) = (ProjectId::new_random(), ProjectId::new_random());
    let keep = Some(tollgate_broker::HistoryPolicy {
        size: 10,
        ttl: Duration::from_secs(60),
    });
    let s1 = gw.project(p1);
    let s2 = gw.project(p2);
    s1.publish("log", data("one"), keep).await.unwrap();
    let p = s2.publish("log", data("two"), keep).await.unwrap();
    assert_eq!(p.offset, 1, "p2's stream starts at 1");
    let h1 = s1.history("log", HistoryQuery::default()).await.unwrap();
    assert_eq!(h1.publications.len(), 1);
    assert_eq!(&h1.publications[0].data[..], b"\"one\"");
    s2.remove_history("log").await.unwrap();
    assert_eq!(
        s1.history("log", HistoryQuery::default())
            .await
            .unwrap()
            .publications
            .len(),
        1
    );
}

#[tokio::test]
async fn updates_refresh_presence_and_are_announced_in_the_project() {
    let (gw, _dir) = gateway(GatewaySettings::default()).await;
    let p = ProjectId::new_random();
    let mut a = client(&gw, p, "alice", &["room"]).await;
    let b = client(&gw, p, "bob", &["room"]).await;
    drain(&a).await;
    drain(&b).await;
    a.update_info(
        "room",
        Bytes::from_static(br#"{"user":"alice","chan_info":{"x":1}}"#),
    )
    .await;
    assert_eq!(drain(&b).await, ["room:update"]);
    let entries = b.presence("room").await.unwrap();
    let mine = entries.iter().find(|e| e.client == a.id).unwrap();
    assert!(String::from_utf8_lossy(&mine.info).contains("\"x\":1"));
    // Not subscribed: nothing happens.
    a.update_info("elsewhere", Bytes::from_static(b"{}")).await;
    assert!(drain(&b).await.is_empty());
}

#[tokio::test]
async fn connect_registers_per_project_and_close_undoes_everything() {
    let settings = GatewaySettings {
        max_connections_per_user: 1,
        ..GatewaySettings::default()
    };
    let (gw, _dir) = gateway(settings).await;
    let (p1, p2) = (ProjectId::new_random(), ProjectId::new_random());
    let mut a = client(&gw, p1, "alice", &["room", "hall"]).await;
    let _other = client(&gw, p2, "alice", &[]).await;
    let mut again = Client::<()>::new(gw.clone());
    assert_eq!(
        again.connect(grant(p1, "alice")),
        Err(ConnectRefused::ConnectionLimit),
        "p1's alice is at her limit; p2's alice did not count"
    );
    assert!(!again.is_connected());

    // A refreshed grant keeps the project and user; another project's is refused.
    assert!(!a.regrant(grant(p2, "alice")), "another project");
    assert!(!a.regrant(grant(p1, "bob")), "another user");
    assert_eq!(a.project(), Some(p1));
    assert!(a.regrant(grant(p1, "alice")));

    // The server API reaches the client through its project only.
    let mut control = a.take_control().unwrap();
    let bye = Control::Disconnect {
        code: 3000,
        reason: "bye".into(),
    };
    assert_eq!(
        gw.project(p2).control("alice", None, &[], &bye),
        1,
        "p2's own alice"
    );
    assert!(control.try_recv().is_err());
    assert_eq!(gw.project(p1).control("alice", None, &[], &bye), 1);
    assert!(control.try_recv().is_ok());

    let watcher = client(&gw, p1, "watcher", &["room"]).await;
    drain(&watcher).await;
    a.close().await;
    assert_eq!(drain(&watcher).await, ["room:leave"]);
    assert!(
        gw.project(p1)
            .presence("room")
            .await
            .unwrap()
            .iter()
            .all(|e| e.user != "alice")
    );
    assert_eq!(gw.project(p1).stats(), (1, 1), "only the watcher is left");
    // Her place is free again.
    let mut back = Client::<()>::new(gw.clone());
    assert!(back.connect(grant(p1, "alice")).is_ok());
}

#[tokio::test]
async fn a_dropped_client_leaves_the_registry_and_a_client_without_a_project_reaches_nothing() {
    let (gw, _dir) = gateway(GatewaySettings::default()).await;
    let p = ProjectId::new_random();
    {
        let _gone = client(&gw, p, "alice", &["room"]).await;
        assert_eq!(gw.stats(), (1, 1));
    }
    // Dropped without `close` (a panicking session): out of the registry at once.
    assert_eq!(gw.stats(), (0, 0));

    let unconnected = Client::<()>::new(gw.clone());
    assert!(unconnected.attach("room").await.is_err());
    assert!(unconnected.publish("room", data("x"), None).await.is_err());
    assert!(unconnected.presence("room").await.is_err());
}
