//! Server API commands across nodes: the node that receives a `subscribe`, `disconnect`,
//! `unsubscribe` or `refresh` applies it to its own connections, then hands it to the
//! broker's control channel ([`tollgate_broker::Broker::publish_control`], topic
//! [`ControlTopic::Gateway`]); every other node applies it on receipt. Centrifugo answers
//! these methods without per-node counts, so fire-and-forget is enough: delivery is at
//! most once, like Centrifugo's own control channel. The in-process broker has no other
//! node, so a single node behaves as before.
//!
//! A message is one JSON object: `{"p": project, "u": user, "c": client?, "x": [except…],
//! "k": kind, …}`, the rest depending on the kind — `d` (disconnect: `code`, `reason`),
//! `u` (unsubscribe: `channel`), `r` (refresh: `expired`, `expire_at`), `s` (subscribe:
//! `channel`, `info`, `data`, `o` overrides, `expire_at`, `since` {`offset`, `epoch`}).
//! What arrives from Redis is decoded strictly: bounded in size, every field typed, no
//! field a kind does not define; a kind this node does not know (a newer node's) is
//! skipped with a debug line, anything else malformed with a warning. Nothing received
//! can reach another project's connections: the project is part of every lookup. The
//! server API's own rules apply as on the node that received the call: a close reason is
//! cut to 123 bytes, an `expire_at` of 0 or less means none.
//!
//! Also this node's heartbeat ([`heartbeat`]): with a shared broker, every
//! `Broker::heartbeat_interval` it reports its id, version, uptime and each project's
//! clients, users, channels and subscriptions here, which the other nodes' `info` lists.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use serde_json::{Map, Value, json};
use tollgate_broker::{Broker, ControlTopic, StreamPosition};
use tollgate_service::gateway::{Overrides, ServerSub};
use tollgate_token::ProjectId;

use crate::registry::{Control, Registry, SubscribeCommand};

/// Largest control message accepted from another node. A `subscribe` carries the API
/// caller's `info` and `data`, which the HTTP body limit (1 MiB by default) bounds.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The override flags a `subscribe` may carry, by wire name.
const OVERRIDES: [&str; 5] = [
    "presence",
    "join_leave",
    "force_push_join_leave",
    "force_positioning",
    "force_recovery",
];

fn overrides_json(o: &Overrides) -> Value {
    let flags = [
        o.presence,
        o.join_leave,
        o.force_push_join_leave,
        o.force_positioning,
        o.force_recovery,
    ];
    OVERRIDES
        .iter()
        .zip(flags)
        .filter_map(|(name, flag)| flag.map(|f| ((*name).to_owned(), Value::Bool(f))))
        .collect::<Map<String, Value>>()
        .into()
}

/// The wire form of `control` for `project`'s connections of `user` (framed with its
/// topic); `None` for commands that stay on this node (`Resubscribe` is about this node's
/// own broker connection).
pub(crate) fn encode(
    project: ProjectId,
    user: &str,
    client: Option<&str>,
    except: &[&str],
    control: &Control,
) -> Option<bytes::Bytes> {
    let mut message = json!({
        "p": project.as_uuid().to_string(),
        "u": user,
        "c": client,
        "x": except,
    });
    let fields = match control {
        Control::Disconnect { code, reason } => json!({"k": "d", "code": code, "reason": reason}),
        Control::Unsubscribe { channel } => json!({"k": "u", "channel": channel}),
        Control::Refresh { expired, expire_at } => {
            json!({"k": "r", "expired": expired, "expire_at": expire_at})
        }
        Control::Subscribe(command) => json!({
            "k": "s",
            "channel": command.sub.channel,
            "info": command.sub.info,
            "data": command.sub.data,
            "o": overrides_json(&command.sub.overrides),
            "expire_at": command.expire_at,
            "since": command.recover_since.as_ref().map(|s| json!({"offset": s.offset, "epoch": s.epoch})),
        }),
        Control::Resubscribe { .. } => return None,
    };
    if let (Value::Object(m), Value::Object(f)) = (&mut message, fields) {
        m.extend(f);
    }
    serde_json::to_vec(&message)
        .ok()
        .map(|body| ControlTopic::Gateway.frame(&body))
}

/// How many control messages may wait for the broker, per node.
const OUTBOX_MESSAGES: usize = 1024;
/// How many bytes they may hold together (a `subscribe` may carry up to ~1 MiB).
const OUTBOX_BYTES: usize = 16 * 1024 * 1024;

/// A node's queue to the broker's control channel (the gateway has one for its server API
/// commands, the service one for its cache invalidations): a single task sends them in
/// the order they were queued, so a `subscribe` followed by an `unsubscribe` reaches the other
/// nodes in that order. Bounded in messages and bytes: while the broker is slow or down,
/// what does not fit is dropped with a warning and counted ([`ControlOutbox::dropped`]);
/// the channel is at most once anyway.
#[derive(Debug, Clone)]
pub struct ControlOutbox {
    tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
    state: Arc<OutboxState>,
}

#[derive(Debug)]
struct OutboxState {
    /// Bytes queued and not yet sent, and how many may be.
    queued_bytes: AtomicUsize,
    max_bytes: usize,
    dropped: AtomicU64,
    /// Whether the last message offered was dropped (one warning per run of drops).
    dropping: AtomicBool,
}

impl ControlOutbox {
    /// Starts the sender task. It holds `broker` weakly: it stops once the broker is gone
    /// or every handle to this outbox is.
    #[must_use]
    pub fn new(broker: Weak<dyn Broker>) -> Self {
        let publish = move |payload| {
            let broker = broker.upgrade()?;
            Some(async move { broker.publish_control(payload).await })
        };
        Self::with_limits(publish, OUTBOX_MESSAGES, OUTBOX_BYTES)
    }

    /// An outbox whose task hands each message to `publish` (`None`: the broker is gone,
    /// stop), at most `messages` and `max_bytes` waiting.
    pub(crate) fn with_limits<F, Fut>(mut publish: F, messages: usize, max_bytes: usize) -> Self
    where
        F: FnMut(bytes::Bytes) -> Option<Fut> + Send + 'static,
        Fut: std::future::Future<Output = Result<(), tollgate_broker::BrokerError>> + Send,
    {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(messages.max(1));
        let state = Arc::new(OutboxState {
            queued_bytes: AtomicUsize::new(0),
            max_bytes,
            dropped: AtomicU64::new(0),
            dropping: AtomicBool::new(false),
        });
        let sender = state.clone();
        tokio::spawn(async move {
            while let Some(payload) = rx.recv().await {
                let len = payload.len();
                let Some(sent) = publish(payload) else {
                    return;
                };
                if let Err(e) = sent.await {
                    tracing::warn!(error = %e, "control message not sent to other nodes");
                }
                sender.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            }
        });
        Self { tx, state }
    }

    /// Queues `payload` (framed with its topic) for the other nodes; `false` if it was
    /// dropped because the queue is full (or the broker is gone).
    pub fn send(&self, payload: bytes::Bytes) -> bool {
        let len = payload.len();
        let s = &self.state;
        let fits = s
            .queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q == 0 || q + len <= s.max_bytes).then_some(q + len)
            })
            .is_ok();
        let sent = fits
            && match self.tx.try_send(payload) {
                Ok(()) => true,
                Err(_) => {
                    s.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                    false
                }
            };
        if sent {
            s.dropping.store(false, Ordering::Relaxed);
        } else {
            s.dropped.fetch_add(1, Ordering::Relaxed);
            if !s.dropping.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "control queue to other nodes full (broker slow or down): messages dropped"
                );
            }
        }
        sent
    }

    /// How many messages were dropped because the queue was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.state.dropped.load(Ordering::Relaxed)
    }
}

/// One command decoded from another node.
#[derive(Debug, PartialEq)]
pub(crate) struct Command {
    project: ProjectId,
    user: String,
    client: Option<String>,
    except: Vec<String>,
    control: Control,
}

/// Why a message was not applied.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Another topic's message: not ours to read.
    OtherTopic,
    /// A kind this node does not know (a newer node's).
    UnknownKind,
    /// Too large, not JSON, or a field missing, mistyped or unexpected.
    Malformed,
}

/// Fields every message has.
const ENVELOPE: [&str; 5] = ["p", "u", "c", "x", "k"];

fn string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// An `expire_at`: `null`, absent, 0 or negative is `None` (as the server API reads it
/// on the node that received it); anything but an integer is malformed.
fn expire_at(m: &Map<String, Value>) -> Result<Option<i64>, Refused> {
    match m.get("expire_at") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(|e| (e > 0).then_some(e))
            .ok_or(Refused::Malformed),
    }
}

/// Longest close reason: a close frame's reason is at most 123 bytes (RFC 6455 §5.5).
const MAX_REASON_BYTES: usize = 123;

/// `reason` cut to [`MAX_REASON_BYTES`] on a character boundary, as the server API cuts it
/// on the node that received it.
fn close_reason(mut reason: String) -> String {
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.truncate(end);
    reason
}

fn optional_json(m: &Map<String, Value>, key: &str) -> Option<Value> {
    m.get(key).filter(|v| !v.is_null()).cloned()
}

fn decode_overrides(v: Option<&Value>) -> Option<Overrides> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Some(Overrides::default());
    };
    let o = v.as_object()?;
    if o.keys().any(|k| !OVERRIDES.contains(&k.as_str())) {
        return None;
    }
    let flag = |k: &str| match o.get(k) {
        None => Some(None),
        Some(v) => v.as_bool().map(Some),
    };
    Some(Overrides {
        presence: flag(OVERRIDES[0])?,
        join_leave: flag(OVERRIDES[1])?,
        force_push_join_leave: flag(OVERRIDES[2])?,
        force_positioning: flag(OVERRIDES[3])?,
        force_recovery: flag(OVERRIDES[4])?,
    })
}

fn decode_since(v: Option<&Value>) -> Option<Option<StreamPosition>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Some(None);
    };
    let s = v.as_object()?;
    if s.len() != 2 {
        return None;
    }
    Some(Some(StreamPosition {
        offset: s.get("offset")?.as_u64()?,
        epoch: string(s.get("epoch")?)?,
    }))
}

/// Decodes one control message (as framed by [`encode`]).
pub(crate) fn decode(payload: &[u8]) -> Result<Command, Refused> {
    let body = ControlTopic::Gateway
        .body(payload)
        .ok_or(Refused::OtherTopic)?;
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(Refused::Malformed);
    }
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) else {
        return Err(Refused::Malformed);
    };
    let kind = m
        .get("k")
        .and_then(Value::as_str)
        .ok_or(Refused::Malformed)?;
    let fields: &[&str] = match kind {
        "d" => &["code", "reason"],
        "u" => &["channel"],
        "r" => &["expired", "expire_at"],
        "s" => &["channel", "info", "data", "o", "expire_at", "since"],
        _ => return Err(Refused::UnknownKind),
    };
    if m.keys()
        .any(|k| !ENVELOPE.contains(&k.as_str()) && !fields.contains(&k.as_str()))
    {
        return Err(Refused::Malformed);
    }
    let envelope = || -> Option<(ProjectId, String, Option<String>, Vec<String>)> {
        let project = m.get("p")?.as_str()?.parse().ok()?;
        let user = string(m.get("u")?)?;
        let client = match m.get("c")? {
            Value::Null => None,
            c => Some(string(c)?),
        };
        let except = m
            .get("x")?
            .as_array()?
            .iter()
            .map(string)
            .collect::<Option<Vec<_>>>()?;
        Some((project, user, client, except))
    };
    let (project, user, client, except) = envelope().ok_or(Refused::Malformed)?;
    let channel = || m.get("channel").and_then(string).ok_or(Refused::Malformed);
    let control = match kind {
        "d" => Control::Disconnect {
            code: m
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| (3000..=4999).contains(c))
                .ok_or(Refused::Malformed)?,
            reason: close_reason(m.get("reason").and_then(string).ok_or(Refused::Malformed)?),
        },
        "u" => Control::Unsubscribe {
            channel: channel()?,
        },
        "r" => Control::Refresh {
            expired: m
                .get("expired")
                .and_then(Value::as_bool)
                .ok_or(Refused::Malformed)?,
            expire_at: expire_at(&m)?,
        },
        _ => {
            let channel = channel()?;
            if channel.is_empty() || channel.len() > 1024 || channel.chars().any(char::is_control) {
                return Err(Refused::Malformed);
            }
            Control::Subscribe(Box::new(SubscribeCommand {
                sub: ServerSub {
                    channel,
                    info: optional_json(&m, "info"),
                    data: optional_json(&m, "data"),
                    overrides: decode_overrides(m.get("o")).ok_or(Refused::Malformed)?,
                },
                expire_at: expire_at(&m)?,
                recover_since: decode_since(m.get("since")).ok_or(Refused::Malformed)?,
            }))
        }
    };
    Ok(Command {
        project,
        user,
        client,
        except,
        control,
    })
}

/// Applies one control message from another node to this node's connections: how many
/// it reached.
pub(crate) fn apply(registry: &Registry, payload: &[u8]) -> Result<usize, Refused> {
    let c = decode(payload)?;
    let except: Vec<&str> = c.except.iter().map(String::as_str).collect();
    Ok(registry.send(c.project, &c.user, c.client.as_deref(), &except, &c.control))
}

/// Applies other nodes' control messages until the broker goes away. Other topics'
/// messages share the channel and are skipped silently.
pub(crate) async fn relay(
    mut messages: tokio::sync::broadcast::Receiver<bytes::Bytes>,
    registry: Arc<Registry>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match messages.recv().await {
            Ok(payload) => match apply(&registry, &payload) {
                Ok(_) | Err(Refused::OtherTopic) => {}
                Err(Refused::UnknownKind) => {
                    tracing::debug!("control message of an unknown kind skipped");
                }
                Err(Refused::Malformed) => {
                    tracing::warn!("malformed control message from another node dropped");
                }
            },
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "control messages from other nodes missed");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Tells the other nodes, every `interval` until the gateway is gone, that this node is
/// alive and what each project has on it (for their `info`). A failed beat is retried on
/// the next tick: missing one only ages this node's entry, and three in a row (the broker's
/// TTL) make it look dead until the next one lands.
pub(crate) async fn heartbeat(
    gateway: std::sync::Weak<crate::Shared>,
    interval: std::time::Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(gw) = gateway.upgrade() else {
            return;
        };
        let channels = gw
            .broker
            .local_channels_by_project()
            .await
            .unwrap_or_default();
        let projects = gw
            .registry
            .stats_by_project()
            .into_iter()
            .map(|(project, (clients, users))| {
                let project = *project.as_uuid();
                let (channels, subs) = channels.get(&project).copied().unwrap_or_default();
                let counts = tollgate_broker::NodeCounts {
                    clients,
                    users,
                    channels,
                    subs,
                };
                (project, counts)
            })
            .collect();
        let report = tollgate_broker::NodeReport {
            uid: gw.node_id.to_string(),
            name: crate::NODE_NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime: gw.started.elapsed().as_secs(),
            projects,
        };
        let broker = gw.broker.clone();
        // Not held across the write: a gateway being dropped is not kept alive by it.
        drop(gw);
        if let Err(e) = broker.heartbeat(&report).await {
            tracing::debug!(error = %e, "node heartbeat not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_to_the_right_connections() {
        let registry = Registry::default();
        let project = ProjectId::new_random();
        let mut rx = registry.add(project, "u1", "c1", 0).unwrap();
        let _spared = registry.add(project, "u1", "c2", 0).unwrap();
        let bye = Control::Disconnect {
            code: 3501,
            reason: "bye".into(),
        };
        let wire = encode(project, "u1", None, &["c2"], &bye).unwrap();
        assert_eq!(apply(&registry, &wire), Ok(1));
        assert_eq!(rx.try_recv().ok(), Some(bye.clone()));
        let other = encode(ProjectId::new_random(), "u1", None, &[], &bye).unwrap();
        assert_eq!(apply(&registry, &other), Ok(0));
        let refresh = Control::Refresh {
            expired: false,
            expire_at: None,
        };
        let wire = encode(project, "u1", Some("c1"), &[], &refresh).unwrap();
        assert_eq!(apply(&registry, &wire), Ok(1));
        assert_eq!(rx.try_recv().ok(), Some(refresh));
        let unsub = Control::Unsubscribe {
            channel: "room".into(),
        };
        let wire = encode(project, "u1", Some("c1"), &[], &unsub).unwrap();
        assert_eq!(apply(&registry, &wire), Ok(1));
        assert_eq!(rx.try_recv().ok(), Some(unsub));

        // A subscribe with everything it can carry, and one with nothing optional.
        let full = Control::Subscribe(Box::new(SubscribeCommand {
            sub: ServerSub {
                channel: "news:1".into(),
                info: Some(json!({"role": "guest"})),
                data: Some(json!([1, "two"])),
                overrides: Overrides {
                    presence: Some(true),
                    join_leave: Some(false),
                    force_push_join_leave: None,
                    force_positioning: Some(true),
                    force_recovery: Some(false),
                },
            },
            expire_at: Some(1_900_000_000),
            recover_since: Some(StreamPosition {
                offset: 42,
                epoch: "ep".into(),
            }),
        }));
        let bare = Control::Subscribe(Box::new(SubscribeCommand {
            sub: ServerSub {
                channel: "news:2".into(),
                info: None,
                data: None,
                overrides: Overrides::default(),
            },
            expire_at: None,
            recover_since: None,
        }));
        for subscribe in [full, bare] {
            let wire = encode(project, "u1", None, &["c2"], &subscribe).unwrap();
            assert_eq!(apply(&registry, &wire), Ok(1));
            assert_eq!(rx.try_recv().ok(), Some(subscribe));
        }
        let resubscribe = Control::Resubscribe {
            channel: "room".into(),
        };
        assert!(encode(project, "u1", None, &[], &resubscribe).is_none());
    }

    /// The outbox sends in order even when the broker is slow, and drops (and counts)
    /// what does not fit instead of piling up.
    #[tokio::test(start_paused = true)]
    async fn the_outbox_keeps_order_and_bounds_what_waits() {
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<bytes::Bytes>();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        // The first call is slow (as Redis at 2 s a call), the next ones fast: with one task
        // per message, the second would overtake the first.
        let publish = move |payload: bytes::Bytes| {
            let seen_tx = seen_tx.clone();
            let slow = c.fetch_add(1, Ordering::SeqCst) == 0;
            Some(async move {
                if slow {
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
                let _ = seen_tx.send(payload);
                Ok(())
            })
        };
        let outbox = ControlOutbox::with_limits(publish, 3, 12);
        let m = |s: &'static str| bytes::Bytes::from_static(s.as_bytes());
        assert!(outbox.send(m("sub")));
        tokio::task::yield_now().await;
        // One in flight (still counted); at most 3 messages and 12 bytes wait.
        assert!(outbox.send(m("unsub")));
        assert!(outbox.send(m("bye")));
        assert!(!outbox.send(m("xx")), "over the byte bound");
        assert_eq!(outbox.dropped(), 1);
        let got: Vec<bytes::Bytes> = [
            seen.recv().await.unwrap(),
            seen.recv().await.unwrap(),
            seen.recv().await.unwrap(),
        ]
        .into();
        assert_eq!(got, [m("sub"), m("unsub"), m("bye")]);
        // Drained: room again.
        assert!(outbox.send(m("again")));
        assert_eq!(seen.recv().await.unwrap(), m("again"));
        assert_eq!(outbox.dropped(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_outbox_bounds_messages_too() {
        let publish = |_payload: bytes::Bytes| {
            Some(async {
                std::future::pending::<()>().await;
                Ok(())
            })
        };
        let outbox = ControlOutbox::with_limits(publish, 2, 1 << 20);
        let m = bytes::Bytes::from_static(b"m");
        assert!(outbox.send(m.clone()));
        tokio::task::yield_now().await;
        assert!(outbox.send(m.clone()));
        assert!(outbox.send(m.clone()));
        assert!(!outbox.send(m.clone()));
        assert!(!outbox.send(m));
        assert_eq!(outbox.dropped(), 2);
    }

    #[test]
    fn what_is_not_a_well_formed_command_is_refused() {
        let project = ProjectId::new_random();
        let p = project.as_uuid().to_string();
        let gw = |v: Value| ControlTopic::Gateway.frame(v.to_string().as_bytes());
        let ok = json!({"p": p, "u": "u", "c": null, "x": [], "k": "u", "channel": "a"});
        assert!(decode(&gw(ok.clone())).is_ok());
        // Another topic's message, even one that would decode: not ours.
        let cache = ControlTopic::Cache.frame(ok.to_string().as_bytes());
        assert_eq!(decode(&cache), Err(Refused::OtherTopic));
        assert_eq!(decode(b""), Err(Refused::OtherTopic));
        // A newer node's kind: skipped, not an alarm.
        let newer = json!({"p": p, "u": "u", "c": null, "x": [], "k": "z"});
        assert_eq!(decode(&gw(newer)), Err(Refused::UnknownKind));
        let malformed = [
            json!({"p": p, "u": "u", "c": null, "x": [], "k": "u", "channel": "a", "more": 1}),
            json!({"p": "not-a-project", "u": "u", "c": null, "x": [], "k": "u", "channel": "a"}),
            json!({"p": p, "u": 7, "c": null, "x": [], "k": "u", "channel": "a"}),
            json!({"p": p, "u": "u", "x": [], "k": "u", "channel": "a"}),
            json!({"p": p, "u": "u", "c": null, "x": [1], "k": "u", "channel": "a"}),
            json!({"p": p, "u": "u", "c": null, "x": [], "k": "d", "code": 99999, "reason": ""}),
            json!({"p": p, "u": "u", "c": null, "x": [], "k": "d", "code": 1000, "reason": ""}),
            json!({"p": p, "u": "u", "c": null, "x": [], "k": "r", "expired": "no"}),
            json!({"p": p, "u": "u", "c": null, "x": [], "k": "r", "expired": true, "expire_at": "1"}),
            json!({"p": p, "u": "u", "c": null, "x": [], "k": "s", "channel": ""}),
            json!({"p": p, "u": "u", "c": null, "x": [], "k": "s", "channel": "a", "o": {"x": true}}),
            json!({"p": p, "u": "u", "c": null, "x": [], "k": "s", "channel": "a", "o": {"presence": 1}}),
            json!({"p": p, "u": "u", "c": null, "x": [], "k": "s", "channel": "a", "since": {"offset": -1, "epoch": "e"}}),
            json!({"p": p, "u": "u", "c": null, "x": [], "k": "s", "channel": "a", "since": {"offset": 1}}),
            json!(["not", "an", "object"]),
        ];
        for m in malformed {
            assert_eq!(decode(&gw(m.clone())), Err(Refused::Malformed), "{m}");
        }
        let huge = ControlTopic::Gateway.frame(&vec![b' '; MAX_MESSAGE_BYTES + 1]);
        assert_eq!(decode(&huge), Err(Refused::Malformed));
    }

    /// What the server API would not hand a local connection is not handed one from
    /// another node either: a reason longer than a close frame allows is cut (on a
    /// character boundary), and an `expire_at` of 0 or less means none.
    #[test]
    fn decoding_applies_the_local_rules() {
        let project = ProjectId::new_random();
        let p = project.as_uuid().to_string();
        let gw = |v: Value| ControlTopic::Gateway.frame(v.to_string().as_bytes());
        let long = format!("{}é{}", "a".repeat(122), "b".repeat(500));
        let m =
            json!({"p": p, "u": "u", "c": null, "x": [], "k": "d", "code": 3500, "reason": long});
        let Control::Disconnect { reason, .. } = decode(&gw(m)).unwrap().control else {
            panic!("not a disconnect");
        };
        assert_eq!(reason, "a".repeat(122));
        let short =
            json!({"p": p, "u": "u", "c": null, "x": [], "k": "d", "code": 3500, "reason": "bye"});
        let Control::Disconnect { reason, .. } = decode(&gw(short)).unwrap().control else {
            panic!("not a disconnect");
        };
        assert_eq!(reason, "bye");
        for e in [0, -5] {
            let r = json!({"p": p, "u": "u", "c": null, "x": [], "k": "r", "expired": false, "expire_at": e});
            let Control::Refresh { expire_at, .. } = decode(&gw(r)).unwrap().control else {
                panic!("not a refresh");
            };
            assert_eq!(expire_at, None);
            let s = json!({"p": p, "u": "u", "c": null, "x": [], "k": "s", "channel": "a", "expire_at": e});
            let Control::Subscribe(s) = decode(&gw(s)).unwrap().control else {
                panic!("not a subscribe");
            };
            assert_eq!(s.expire_at, None);
        }
    }
}
