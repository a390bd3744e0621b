//! One shard's PUB/SUB side: which channels this node has local subscribers for, the one
//! dedicated PUB/SUB connection they are multiplexed over, and the task that reads it and
//! fans each message out to the local queues.
//!
//! The node subscribes in Redis only to channels it has local subscribers for: the first
//! local subscriber SUBSCRIBEs (and `subscribe` returns only once Redis confirmed, so a
//! publication made after it is delivered), the last one leaving UNSUBSCRIBEs. Changes of
//! the Redis subscription set are serialised by one async lock per shard, which also
//! guards the connection's sink, and first subscriptions queued meanwhile go out together
//! in one SUBSCRIBE; joining a channel the node already receives takes no Redis round trip
//! at all.
//!
//! PUB/SUB is at most once. When the connection breaks, the task reconnects with back-off,
//! resubscribes to every channel that still has local subscribers, and announces an
//! [`Interruption`] naming them (and their queues): what was published meanwhile never
//! reached this node, and their clients must recover from history. A publication whose
//! offset does not follow the last one seen on that channel is announced the same way.
//! While the connection is down, new subscriptions fail (a temporary error the client
//! retries) rather than wait for deliveries that cannot come.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ::redis::aio::PubSubSink;
use futures_util::StreamExt;
use tokio::sync::{broadcast, oneshot};

use super::codec;
use super::keys::Names;
use crate::{BrokerError, ChannelKey, Delivery, Event, Interruption, InterruptionCause, Queue};

/// A channel this node receives, and its local subscribers.
#[derive(Debug)]
struct Local {
    key: ChannelKey,
    queues: HashMap<u64, Weak<Queue>>,
    /// The last publication with history seen: (epoch, offset), to notice gaps.
    last: Option<(String, u64)>,
}

impl Local {
    fn live_queues(&mut self) -> usize {
        self.queues.retain(|_, q| q.strong_count() > 0);
        self.queues.len()
    }
}

/// First subscribers of a channel not yet subscribed in Redis, waiting for the next batch.
#[derive(Debug)]
struct Waiting {
    key: ChannelKey,
    queues: Vec<Arc<Queue>>,
    waiters: Vec<oneshot::Sender<Result<Change, BrokerError>>>,
}

/// One shard's PUB/SUB state.
#[derive(Debug)]
pub(super) struct Dispatcher {
    client: ::redis::Client,
    names: Names,
    timeout: Duration,
    /// By PUB/SUB channel name.
    channels: Mutex<HashMap<String, Local>>,
    /// Channels waiting for the next SUBSCRIBE batch, by PUB/SUB channel name.
    pending: Mutex<HashMap<String, Waiting>>,
    /// The live connection's sink; `None` while disconnected. Held across every change of
    /// the Redis subscription set.
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
    up: AtomicBool,
    interruptions: broadcast::Sender<Arc<Interruption>>,
    /// On the shard that carries the cluster's control channel (shard 0): its PUB/SUB name,
    /// this node's id (messages start with the sender's 16-byte id, so a node skips its
    /// own) and where the others' arrive.
    control: Option<ControlChannel>,
}

/// The cluster's control channel as one node receives it.
#[derive(Debug, Clone)]
pub(super) struct ControlChannel {
    pub(super) name: String,
    pub(super) node: uuid::Uuid,
    pub(super) sender: broadcast::Sender<bytes::Bytes>,
}

/// What a subscribe or unsubscribe changed in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    /// The node started (or stopped) receiving the channel.
    Redis,
    /// Only the local subscriber set changed.
    Local,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(format!("{what}: {e}"))
}

impl Dispatcher {
    pub(super) fn new(
        client: ::redis::Client,
        names: Names,
        timeout: Duration,
        interruptions: broadcast::Sender<Arc<Interruption>>,
        control: Option<ControlChannel>,
    ) -> Self {
        Self {
            client,
            names,
            timeout,
            channels: Mutex::default(),
            pending: Mutex::default(),
            sink: tokio::sync::Mutex::new(None),
            up: AtomicBool::new(false),
            interruptions,
            control,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Local>> {
        self.channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the PUB/SUB connection is up.
    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Adds `queue` as a local subscriber of `key`, subscribing in Redis if it is the first.
    ///
    /// First subscribers of new channels are grouped: each queues its channel, and whoever
    /// holds the sink next sends one SUBSCRIBE for every channel queued meanwhile and
    /// answers all their waiters. A storm of subscriptions (a node restarting, every client
    /// with a personal channel) then costs a few round trips, not one each in a row.
    pub(super) async fn subscribe(
        &self,
        key: &ChannelKey,
        queue: &Arc<Queue>,
    ) -> Result<Change, BrokerError> {
        let name = self.names.pubsub(key);
        if self.is_up()
            && let Some(local) = self.lock().get_mut(&name)
        {
            local.queues.insert(queue.id(), Arc::downgrade(queue));
            return Ok(Change::Local);
        }
        let (tx, mut rx) = oneshot::channel();
        {
            let mut pending = self.lock_pending();
            let waiting = pending.entry(name).or_insert_with(|| Waiting {
                key: key.clone(),
                queues: Vec::new(),
                waiters: Vec::new(),
            });
            waiting.queues.push(queue.clone());
            waiting.waiters.push(tx);
        }
        let mut sink = self.sink.lock().await;
        // Answered by a batch sent while this one waited for the sink?
        if let Ok(result) = rx.try_recv() {
            return result;
        }
        let batch = std::mem::take(&mut *self.lock_pending());
        let new: Vec<&str> = {
            let channels = self.lock();
            batch
                .keys()
                .filter(|n| !channels.contains_key(*n))
                .map(String::as_str)
                .collect()
        };
        let sent = match sink.as_mut() {
            None => Err(BrokerError::Unavailable(
                "no PUB/SUB connection to Redis".into(),
            )),
            Some(_) if new.is_empty() => Ok(()),
            Some(s) => tokio::time::timeout(self.timeout, s.subscribe(&new))
                .await
                .map_err(|e| unavailable("SUBSCRIBE", e))
                .and_then(|r| r.map_err(|e| unavailable("SUBSCRIBE", e))),
        };
        let new: std::collections::HashSet<String> = new.into_iter().map(str::to_owned).collect();
        let mut channels = self.lock();
        for (name, waiting) in batch {
            if let Err(e) = &sent {
                for waiter in waiting.waiters {
                    let _ = waiter.send(Err(e.clone()));
                }
                continue;
            }
            let first = new.contains(&name);
            let local = channels.entry(name).or_insert_with(|| Local {
                key: waiting.key,
                queues: HashMap::new(),
                last: None,
            });
            for q in &waiting.queues {
                local.queues.insert(q.id(), Arc::downgrade(q));
            }
            for (i, waiter) in waiting.waiters.into_iter().enumerate() {
                let change = if first && i == 0 {
                    Change::Redis
                } else {
                    Change::Local
                };
                let _ = waiter.send(Ok(change));
            }
        }
        drop(channels);
        drop(sink);
        rx.try_recv().unwrap_or_else(|_| {
            Err(BrokerError::Unavailable(
                "subscription lost in a batch".into(),
            ))
        })
    }

    /// Removes `queue` from `key`'s local subscribers, unsubscribing in Redis if it was the
    /// last. Never fails: a channel left subscribed by a broken connection is not
    /// resubscribed on reconnect.
    pub(super) async fn unsubscribe(&self, key: &ChannelKey, queue_id: u64) -> Change {
        let name = self.names.pubsub(key);
        let empty = |channels: &mut HashMap<String, Local>, queue_id: Option<u64>| {
            channels.get_mut(&name).is_some_and(|local| {
                if let Some(id) = queue_id {
                    local.queues.remove(&id);
                }
                local.live_queues() == 0
            })
        };
        if !empty(&mut self.lock(), Some(queue_id)) {
            return Change::Local;
        }
        self.drop_channels(vec![name]).await;
        Change::Redis
    }

    /// Unsubscribes in Redis from those of `names` that (still) have no live local
    /// subscriber, and forgets them.
    async fn drop_channels(&self, names: Vec<String>) {
        let mut sink = self.sink.lock().await;
        let gone: Vec<String> = {
            let mut channels = self.lock();
            names
                .into_iter()
                .filter(|n| {
                    let empty = channels.get_mut(n).is_some_and(|l| l.live_queues() == 0);
                    if empty {
                        channels.remove(n);
                    }
                    empty
                })
                .collect()
        };
        if let (Some(s), false) = (sink.as_mut(), gone.is_empty()) {
            match tokio::time::timeout(self.timeout, s.unsubscribe(&gone)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "UNSUBSCRIBE failed"),
                Err(_) => tracing::debug!("UNSUBSCRIBE timed out"),
            }
        }
    }

    /// Unsubscribes from channels whose every subscriber's connection is gone without
    /// unsubscribing (the periodic sweep). Returns the keys dropped.
    pub(super) async fn sweep(&self) -> Vec<ChannelKey> {
        let dead: Vec<(String, ChannelKey)> = self
            .lock()
            .iter_mut()
            .filter_map(|(n, l)| (l.live_queues() == 0).then(|| (n.clone(), l.key.clone())))
            .collect();
        if dead.is_empty() {
            return Vec::new();
        }
        let (names, keys) = dead.into_iter().unzip();
        self.drop_channels(names).await;
        keys
    }

    /// This node's channels on this shard with their live local subscriber counts.
    pub(super) fn local_channels(&self) -> Vec<(ChannelKey, usize)> {
        self.lock()
            .values_mut()
            .map(|l| (l.key.clone(), l.live_queues()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// `project`'s channels on this shard with live local subscribers, and how many
    /// subscribers: counted under the lock, nothing cloned.
    pub(super) fn local_counts(&self, project: uuid::Uuid) -> (usize, usize) {
        self.lock()
            .values_mut()
            .filter(|l| l.key.project() == project)
            .map(|l| l.live_queues())
            .filter(|n| *n > 0)
            .fold((0, 0), |(channels, subs), n| (channels + 1, subs + n))
    }

    /// Hands one PUB/SUB message to the channel's local subscribers.
    fn dispatch(&self, channel: &str, payload: &[u8]) {
        if let Some(control) = &self.control
            && control.name == channel
        {
            // Sender id first; a node's own commands were already applied where the call
            // arrived. An empty body is this broker's own "reconnected" marker (caches
            // forget everything on it): no other node may send one.
            if let Some((origin, body)) = payload.split_at_checked(16)
                && origin != control.node.as_bytes()
                && !body.is_empty()
            {
                let _ = control.sender.send(bytes::Bytes::copy_from_slice(body));
            }
            return;
        }
        let Some(message) = codec::decode_message(payload) else {
            tracing::warn!(channel, "undecodable PUB/SUB message dropped");
            return;
        };
        let mut gap = None;
        {
            let mut channels = self.lock();
            let Some(local) = channels.get_mut(channel) else {
                return;
            };
            if let (Event::Publication(p), Some(epoch)) = (&message.event, message.epoch)
                && p.offset > 0
            {
                let follows = local
                    .last
                    .as_ref()
                    .is_none_or(|(e, o)| *e == epoch && p.offset == o + 1);
                if !follows {
                    gap = Some((local.key.clone(), local.queues.keys().copied().collect()));
                }
                local.last = Some((epoch, p.offset));
            }
            let delivery = Delivery {
                channel: local.key.name_arc().clone(),
                event: message.event,
            };
            local.queues.retain(|_, weak| match weak.upgrade() {
                Some(queue) => {
                    // A full queue marks itself overflowed; the publisher never waits.
                    queue.push(delivery.clone());
                    true
                }
                None => false,
            });
        }
        if let Some(channel) = gap {
            let _ = self.interruptions.send(Arc::new(Interruption {
                cause: InterruptionCause::Gap,
                channels: vec![channel],
            }));
        }
    }

    /// Connects, resubscribes what has local subscribers, and reads until the connection
    /// breaks; forever, with back-off. Runs as the shard's task until the broker is dropped.
    pub(super) async fn run(self: Arc<Self>) {
        const MIN_BACKOFF: Duration = Duration::from_millis(50);
        const MAX_BACKOFF: Duration = Duration::from_secs(2);
        let mut backoff = MIN_BACKOFF;
        loop {
            match self.connect().await {
                Ok(stream) => {
                    backoff = MIN_BACKOFF;
                    self.read(stream).await;
                    self.up.store(false, Ordering::Release);
                    *self.sink.lock().await = None;
                    tracing::warn!("Redis PUB/SUB connection lost; reconnecting");
                }
                Err(e) => tracing::debug!(error = %e, "Redis PUB/SUB connect failed"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Opens the connection and resubscribes; announces the interruption if any channel
    /// was resubscribed.
    async fn connect(&self) -> Result<::redis::aio::PubSubStream, BrokerError> {
        let pubsub = tokio::time::timeout(self.timeout, self.client.get_async_pubsub())
            .await
            .map_err(|e| unavailable("PUB/SUB connect", e))?
            .map_err(|e| unavailable("PUB/SUB connect", e))?;
        let (mut sink, stream) = pubsub.split();
        let mut guard = self.sink.lock().await;
        if let Some(control) = &self.control {
            tokio::time::timeout(self.timeout, sink.subscribe(&control.name))
                .await
                .map_err(|e| unavailable("SUBSCRIBE", e))?
                .map_err(|e| unavailable("SUBSCRIBE", e))?;
        }
        if let Some(control) = &self.control {
            // Whatever other nodes sent while this connection was down is lost: an empty
            // message (never a node's: those carry at least the sender id) tells the
            // receivers so.
            let _ = control.sender.send(bytes::Bytes::new());
        }
        let resubscribed: Vec<(String, ChannelKey, Vec<u64>)> = self
            .lock()
            .iter_mut()
            .map(|(n, l)| {
                // Whatever arrives next starts a new run of offsets.
                l.last = None;
                (n.clone(), l.key.clone(), l.queues.keys().copied().collect())
            })
            .collect();
        for chunk in resubscribed.chunks(500) {
            let names: Vec<&str> = chunk.iter().map(|(n, _, _)| n.as_str()).collect();
            tokio::time::timeout(self.timeout, sink.subscribe(&names))
                .await
                .map_err(|e| unavailable("SUBSCRIBE", e))?
                .map_err(|e| unavailable("SUBSCRIBE", e))?;
        }
        *guard = Some(sink);
        self.up.store(true, Ordering::Release);
        drop(guard);
        if !resubscribed.is_empty() {
            tracing::info!(channels = resubscribed.len(), "Redis PUB/SUB resubscribed");
            let _ = self.interruptions.send(Arc::new(Interruption {
                cause: InterruptionCause::Reconnected,
                channels: resubscribed
                    .into_iter()
                    .map(|(_, key, queues)| (key, queues))
                    .collect(),
            }));
        }
        Ok(stream)
    }

    /// Delivers messages until the connection ends or stops answering pings.
    async fn read(&self, mut stream: ::redis::aio::PubSubStream) {
        let mut ping = tokio::time::interval(Duration::from_secs(5));
        ping.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => self.dispatch(msg.get_channel_name(), msg.get_payload_bytes()),
                    None => return,
                },
                _ = ping.tick() => {
                    // A half-open socket (a partition, a frozen Redis) never ends the
                    // stream by itself.
                    let sink = self.sink.lock().await.clone();
                    let Some(mut sink) = sink else { return };
                    let answered = tokio::time::timeout(self.timeout, sink.ping::<::redis::Value>()).await;
                    if !matches!(answered, Ok(Ok(_))) {
                        return;
                    }
                }
            }
        }
    }
}
