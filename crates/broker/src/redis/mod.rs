//! The Redis broker: what a cluster of Tollgate nodes shares.
//!
//! [`RedisBroker`] implements [`Broker`] over one Redis, or several sharded by channel
//! (`shard`). Per channel, on its shard:
//!
//! - publications and join/leave/update events cross nodes over PUB/SUB (at most once);
//!   each node subscribes only to channels it has local subscribers for (`pubsub`);
//! - history is a Redis stream plus a meta hash (epoch, offset), written together with the
//!   PUB/SUB delivery by one Lua script (`scripts`), so a publication's offset, its place in
//!   history and its delivery always agree; what a history read returns is decided by the
//!   same code as in the in-process broker (`crate::history`);
//! - presence is a ZSET + HASH with expiry (`presence`);
//! - which channels have subscribers anywhere is announced per node (`registry`);
//! - which nodes are alive, and each one's share of a project, for `info` (`nodes`).
//!
//! Every Redis key and PUB/SUB channel carries the project (`keys`). Every operation is
//! bounded by the configured timeout; an unreachable Redis is a [`BrokerError`], never a
//! silent success. Lost deliveries (a broken PUB/SUB connection, an offset gap) are
//! announced as [`Interruption`]s through [`Broker::interruptions`].
//!
//! Differences from [`crate::MemoryBroker`], all deliberate: history has no byte budget
//! (Redis's `maxmemory` bounds it); reading the history of a channel that has no stream yet
//! fixes its epoch for the meta TTL (the in-process broker makes a new one per read until
//! the channel is used), so a subscriber that took that position recovers against it.

mod codec;
mod keys;
mod nodes;
mod presence;
mod pubsub;
mod registry;
mod scripts;
mod shard;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::history::{new_epoch, now_ms};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;

use self::keys::Names;
use self::pubsub::{Change, Dispatcher};
use crate::{
    Broker, BrokerError, ChannelKey, Event, History, HistoryPolicy, HistoryQuery, Interruption,
    NewPublication, PresenceEntry, PresenceStats, Publication, Queue, StreamPosition,
};

/// How to reach Redis and how to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// One `redis://host:port[/db]` per shard; every node must list the same, in the same
    /// order.
    pub urls: Vec<String>,
    /// Starts every key and PUB/SUB channel name, so deployments can share a Redis.
    pub prefix: String,
    /// How long a stream position outlives its channel's last publication with history.
    pub meta_ttl: Duration,
    /// Bound on each Redis operation (and connection attempt).
    pub timeout: Duration,
    /// How long a node's announcement of its channels lives unless refreshed (it is
    /// refreshed every third of it).
    pub channel_ttl: Duration,
    /// How long a node's heartbeat counts it as alive (it beats every third of it): a
    /// dead node leaves the server API's `info` within this.
    pub node_ttl: Duration,
}

impl RedisConfig {
    /// Settings for `broker_url`: one `redis://…` URL, or several separated by commas
    /// (sharded by channel).
    pub fn from_broker_url(broker_url: &str) -> Result<Self, BrokerError> {
        let urls: Vec<String> = broker_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            return Err(BrokerError::Unavailable("no Redis URL".into()));
        }
        for url in &urls {
            if !url.starts_with("redis://") {
                return Err(BrokerError::Unavailable(format!(
                    "a Redis broker URL starts with redis:// (got {url:?})"
                )));
            }
            ::redis::Client::open(url.as_str())
                .map_err(|e| BrokerError::Unavailable(format!("bad Redis URL {url:?}: {e}")))?;
        }
        Ok(Self {
            urls,
            prefix: "tollgate".into(),
            meta_ttl: crate::DEFAULT_META_TTL,
            timeout: Duration::from_secs(2),
            channel_ttl: Duration::from_secs(30),
            node_ttl: Duration::from_secs(6),
        })
    }
}

/// One Redis instance: a multiplexed command connection and the PUB/SUB side.
#[derive(Debug)]
struct Shard {
    conn: ConnectionManager,
    pubsub: Arc<Dispatcher>,
}

/// The Redis broker. Dropping it stops its tasks.
#[derive(Debug)]
pub struct RedisBroker {
    shards: Arc<Vec<Shard>>,
    names: Names,
    config: RedisConfig,
    /// This node, in the channel registry.
    node: uuid::Uuid,
    interruptions: broadcast::Sender<Arc<Interruption>>,
    /// Control messages from other nodes (see [`Broker::control`]).
    control: broadcast::Sender<Bytes>,
    /// Projects this node's last heartbeat carried (the next one withdraws those gone).
    beating: std::sync::Mutex<std::collections::HashSet<uuid::Uuid>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(format!("redis: {e}"))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RedisBroker {
    /// A broker on `config`'s Redis instances. Connections are made lazily and remade
    /// when lost, so this succeeds while Redis is down ([`Self::ping`] tells); it must be
    /// called inside a Tokio runtime (it starts one PUB/SUB task per shard and the channel
    /// announcer).
    pub fn new(config: RedisConfig) -> Result<Self, BrokerError> {
        let names = Names::new(&config.prefix);
        let (interruptions, _) = broadcast::channel(1024);
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let mut shards = Vec::with_capacity(config.urls.len());
        let mut tasks = Vec::new();
        let node = uuid::Uuid::new_v4();
        let (control, _) = broadcast::channel(1024);
        for (i, url) in config.urls.iter().enumerate() {
            let client = ::redis::Client::open(url.as_str()).map_err(unavailable)?;
            let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager.clone())
                .map_err(unavailable)?;
            let pubsub = Arc::new(Dispatcher::new(
                client,
                names.clone(),
                config.timeout,
                interruptions.clone(),
                (i == 0).then(|| pubsub::ControlChannel {
                    name: names.control(),
                    node,
                    sender: control.clone(),
                }),
            ));
            tasks.push(tokio::spawn(pubsub.clone().run()));
            shards.push(Shard { conn, pubsub });
        }
        let shards = Arc::new(shards);
        tasks.push(tokio::spawn(announcer(
            shards.clone(),
            names.clone(),
            node,
            config.channel_ttl,
        )));
        Ok(Self {
            shards,
            names,
            config,
            node,
            interruptions,
            control,
            beating: std::sync::Mutex::default(),
            tasks,
        })
    }

    /// Whether every shard answers.
    pub async fn ping(&self) -> Result<(), BrokerError> {
        for shard in self.shards.iter() {
            let mut conn = shard.conn.clone();
            self.bounded(::redis::cmd("PING").query_async::<String>(&mut conn))
                .await?;
        }
        Ok(())
    }

    /// Whether every shard's PUB/SUB connection is up (deliveries can arrive).
    #[must_use]
    pub fn is_receiving(&self) -> bool {
        self.shards.iter().all(|s| s.pubsub.is_up())
    }

    fn shard(&self, key: &ChannelKey) -> &Shard {
        &self.shards[shard::shard_of(key, self.shards.len())]
    }

    /// The shard keeping `project`'s session under `key` (spread like a channel).
    fn session_shard(&self, project: uuid::Uuid, key: &str) -> &Shard {
        self.shard(&ChannelKey::new(project, &format!("\u{0}sw.{key}")))
    }

    async fn bounded<T>(
        &self,
        op: impl Future<Output = ::redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        tokio::time::timeout(self.config.timeout, op)
            .await
            .map_err(|_| BrokerError::Unavailable("redis: timed out".into()))?
            .map_err(unavailable)
    }
}

/// Re-announces this node's channels and drops those whose subscribers all vanished,
/// every third of `ttl`.
async fn announcer(shards: Arc<Vec<Shard>>, names: Names, node: uuid::Uuid, ttl: Duration) {
    let mut tick = tokio::time::interval((ttl / 3).max(Duration::from_millis(10)));
    loop {
        tick.tick().await;
        for shard in shards.iter() {
            let mut conn = shard.conn.clone();
            for gone in shard.pubsub.sweep().await {
                let _ = registry::withdraw(&mut conn, &names, node, &gone).await;
            }
            let mut by_project: HashMap<uuid::Uuid, Vec<(String, usize)>> = HashMap::new();
            for (key, count) in shard.pubsub.local_channels() {
                by_project
                    .entry(key.project())
                    .or_default()
                    .push((key.name().to_owned(), count));
            }
            for (project, channels) in by_project {
                let announced = tokio::time::timeout(
                    ttl / 3,
                    registry::announce(&mut conn, &names, node, project, &channels, ttl),
                )
                .await;
                if !matches!(announced, Ok(Ok(()))) {
                    tracing::debug!("announcing channels to Redis failed");
                }
            }
        }
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn publish(
        &self,
        channel: &ChannelKey,
        new: NewPublication,
        history: Option<HistoryPolicy>,
    ) -> Result<StreamPosition, BrokerError> {
        let keys = self.names.channel(channel);
        let body = codec::encode_body(&new, &uuid::Uuid::new_v4().to_string(), now_ms());
        let (size, ttl) = history
            .filter(|h| h.size > 0 && !h.ttl.is_zero())
            .map_or((0, 0), |h| (h.size, millis(h.ttl).max(1)));
        let mut conn = self.shard(channel).conn.clone();
        let (offset, epoch): (String, String) = self
            .bounded(
                scripts::PUBLISH
                    .key(&keys.stream)
                    .key(&keys.meta)
                    .arg(&keys.pubsub)
                    .arg(body)
                    .arg(size)
                    .arg(ttl)
                    .arg(millis(self.config.meta_ttl))
                    .arg(new_epoch())
                    .invoke_async(&mut conn),
            )
            .await?;
        let offset = offset
            .parse()
            .map_err(|_| unavailable(format!("bad offset {offset:?}")))?;
        Ok(StreamPosition { offset, epoch })
    }

    async fn publish_presence_event(
        &self,
        channel: &ChannelKey,
        event: Event,
    ) -> Result<(), BrokerError> {
        let Some(message) = codec::encode_presence_event(&event) else {
            return Err(BrokerError::Unavailable(
                "a publication is not a presence event".into(),
            ));
        };
        let mut conn = self.shard(channel).conn.clone();
        self.bounded(
            ::redis::cmd("PUBLISH")
                .arg(self.names.pubsub(channel))
                .arg(message)
                .query_async::<i64>(&mut conn),
        )
        .await
        .map(drop)
    }

    async fn subscribe(&self, channel: &ChannelKey, queue: &Arc<Queue>) -> Result<(), BrokerError> {
        let shard = self.shard(channel);
        if shard.pubsub.subscribe(channel, queue).await? == Change::Redis {
            // Announced in the background: the subscriber need not wait for `channels`.
            let (mut conn, names, node) = (shard.conn.clone(), self.names.clone(), self.node);
            let (key, ttl) = (channel.clone(), self.config.channel_ttl);
            tokio::spawn(async move {
                let entry = [(key.name().to_owned(), 1)];
                let _ = tokio::time::timeout(
                    ttl,
                    registry::announce(&mut conn, &names, node, key.project(), &entry, ttl),
                )
                .await;
            });
        }
        Ok(())
    }

    async fn unsubscribe(&self, channel: &ChannelKey, queue: &Queue) -> Result<(), BrokerError> {
        let shard = self.shard(channel);
        if shard.pubsub.unsubscribe(channel, queue.id()).await == Change::Redis {
            let mut conn = shard.conn.clone();
            // Best effort: an announcement not withdrawn expires with its TTL.
            let _ = tokio::time::timeout(
                self.config.timeout,
                registry::withdraw(&mut conn, &self.names, self.node, channel),
            )
            .await;
        }
        Ok(())
    }

    async fn history(
        &self,
        channel: &ChannelKey,
        query: HistoryQuery<'_>,
    ) -> Result<History, BrokerError> {
        let keys = self.names.channel(channel);
        let mut conn = self.shard(channel).conn.clone();
        // Only what the answer can use crosses the wire: after `since` (all of it: whether
        // recovery is complete depends on every entry after it), or the `limit` oldest or
        // newest.
        let since = query.since.map_or(String::new(), |s| s.offset.to_string());
        let count = match (query.since, query.limit) {
            (None, Some(limit)) => limit.to_string(),
            _ => String::new(),
        };
        let newest = query.since.is_none() && query.reverse;
        let raw: Vec<Vec<u8>> = self
            .bounded(
                scripts::HISTORY
                    .key(&keys.stream)
                    .key(&keys.meta)
                    .arg(new_epoch())
                    .arg(millis(self.config.meta_ttl))
                    .arg(since)
                    .arg(count)
                    .arg(if newest { "1" } else { "0" })
                    .invoke_async(&mut conn),
            )
            .await?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let (epoch, offset) = match raw.get(..2) {
            Some([e, o]) => (text(e), text(o)),
            _ => return Err(unavailable("short history reply")),
        };
        let offset: u64 = offset
            .parse()
            .map_err(|_| unavailable(format!("bad offset {offset:?}")))?;
        let mut kept: Vec<Arc<Publication>> = Vec::with_capacity(raw.len() / 2);
        for entry in raw[2..].chunks_exact(2) {
            let id = text(&entry[0]);
            let decoded = id
                .split_once('-')
                .and_then(|(o, _)| o.parse().ok())
                .and_then(|o| codec::decode_body(&entry[1], o));
            match decoded {
                Some(p) => kept.push(Arc::new(p)),
                // Left out: recovery across it then reports a gap, never skips silently.
                None => tracing::warn!(id, "undecodable history entry"),
            }
        }
        if newest {
            // Read newest first; the answer takes them oldest first.
            kept.reverse();
        }
        Ok(crate::history::answer(
            kept,
            StreamPosition { offset, epoch },
            query,
        ))
    }

    async fn remove_history(&self, channel: &ChannelKey) -> Result<(), BrokerError> {
        let keys = self.names.channel(channel);
        let mut conn = self.shard(channel).conn.clone();
        self.bounded(
            ::redis::cmd("DEL")
                .arg(&keys.stream)
                .query_async::<i64>(&mut conn),
        )
        .await
        .map(drop)
    }

    async fn add_presence(
        &self,
        channel: &ChannelKey,
        entry: PresenceEntry,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        let keys = self.names.channel(channel);
        let mut conn = self.shard(channel).conn.clone();
        self.bounded(presence::add(&mut conn, &keys, &entry, ttl))
            .await
    }

    async fn remove_presence(&self, channel: &ChannelKey, client: &str) -> Result<(), BrokerError> {
        let keys = self.names.channel(channel);
        let mut conn = self.shard(channel).conn.clone();
        self.bounded(presence::remove(&mut conn, &keys, client))
            .await
    }

    async fn presence(&self, channel: &ChannelKey) -> Result<Vec<PresenceEntry>, BrokerError> {
        let keys = self.names.channel(channel);
        let mut conn = self.shard(channel).conn.clone();
        self.bounded(presence::get(&mut conn, &keys)).await
    }

    async fn presence_stats(&self, channel: &ChannelKey) -> Result<PresenceStats, BrokerError> {
        Ok(presence::stats(&self.presence(channel).await?))
    }

    /// Channels with subscribers on any live node: this node's exactly, other nodes' as
    /// they last announced them (see `registry`).
    async fn channels(&self, project: uuid::Uuid) -> Result<Vec<(String, usize)>, BrokerError> {
        let mut all: BTreeMap<String, usize> = BTreeMap::new();
        for shard in self.shards.iter() {
            let mut conn = shard.conn.clone();
            self.bounded(registry::read_others(
                &mut conn,
                &self.names,
                self.node,
                project,
                &mut all,
            ))
            .await?;
            for (key, count) in shard.pubsub.local_channels() {
                if key.project() == project {
                    *all.entry(key.name().to_owned()).or_default() += count;
                }
            }
        }
        Ok(all.into_iter().collect())
    }

    /// This node's channels with local subscribers, and how many (node statistics).
    async fn channel_count(&self) -> Result<(usize, usize), BrokerError> {
        Ok(self
            .shards
            .iter()
            .flat_map(|s| s.pubsub.local_channels())
            .fold((0, 0), |(n, subs), (_, c)| (n + 1, subs + c)))
    }

    async fn idempotent_result(
        &self,
        channel: &ChannelKey,
        key: &str,
    ) -> Result<Option<bytes::Bytes>, BrokerError> {
        let mut conn = self.shard(channel).conn.clone();
        let found: Option<Vec<u8>> = self
            .bounded(
                ::redis::cmd("GET")
                    .arg(self.names.idempotency(channel, key))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(found.map(bytes::Bytes::from))
    }

    async fn remember_idempotent(
        &self,
        channel: &ChannelKey,
        key: &str,
        result: bytes::Bytes,
        window: Duration,
    ) -> Result<(), BrokerError> {
        let mut conn = self.shard(channel).conn.clone();
        // NX: the first publish's result stands, as on one node.
        self.bounded(
            ::redis::cmd("SET")
                .arg(self.names.idempotency(channel, key))
                .arg(result.as_ref())
                .arg("PX")
                .arg(millis(window).max(1))
                .arg("NX")
                .query_async::<Option<String>>(&mut conn),
        )
        .await
        .map(drop)
    }

    fn keeps_sessions(&self) -> bool {
        true
    }

    async fn put_session(
        &self,
        project: uuid::Uuid,
        key: &str,
        owner: &str,
        state: Bytes,
        ttl: Duration,
    ) -> Result<bool, BrokerError> {
        // The value is `owner \n state`. Written unless another owner's mark is there (a
        // value without a newline is from before owners: replaced).
        static PUT: std::sync::LazyLock<::redis::Script> = std::sync::LazyLock::new(|| {
            ::redis::Script::new(
                r"local cur = redis.call('GET', KEYS[1])
if cur then
  local nl = string.find(cur, '\n', 1, true)
  if nl and string.sub(cur, 1, nl - 1) ~= ARGV[1] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '\n' .. ARGV[2], 'PX', ARGV[3])
return 1",
            )
        });
        let name = self.names.session(project, key);
        let mut conn = self.session_shard(project, key).conn.clone();
        let written: i64 = self
            .bounded(
                PUT.key(name)
                    .arg(owner)
                    .arg(state.as_ref())
                    .arg(millis(ttl).max(1))
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(written == 1)
    }

    async fn take_session(
        &self,
        project: uuid::Uuid,
        key: &str,
        taker: &str,
        ttl: Duration,
    ) -> Result<Option<Bytes>, BrokerError> {
        // One script: of several nodes taking at once, one gets the state; a take that
        // finds one leaves the taker's mark (an empty state) in its place.
        static TAKE: std::sync::LazyLock<::redis::Script> = std::sync::LazyLock::new(|| {
            ::redis::Script::new(
                r"local cur = redis.call('GET', KEYS[1])
if not cur then return false end
redis.call('SET', KEYS[1], ARGV[1] .. '\n', 'PX', ARGV[2])
local nl = string.find(cur, '\n', 1, true)
if nl then cur = string.sub(cur, nl + 1) end
return cur",
            )
        });
        let name = self.names.session(project, key);
        let mut conn = self.session_shard(project, key).conn.clone();
        let found: Option<Vec<u8>> = self
            .bounded(
                TAKE.key(name)
                    .arg(taker)
                    .arg(millis(ttl).max(1))
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(found.filter(|s| !s.is_empty()).map(Bytes::from))
    }

    fn interruptions(&self) -> Option<broadcast::Receiver<Arc<Interruption>>> {
        Some(self.interruptions.subscribe())
    }

    async fn publish_control(&self, payload: Bytes) -> Result<(), BrokerError> {
        let mut message = Vec::with_capacity(16 + payload.len());
        message.extend_from_slice(self.node.as_bytes());
        message.extend_from_slice(&payload);
        let mut conn = self.shards[0].conn.clone();
        self.bounded(
            ::redis::cmd("PUBLISH")
                .arg(self.names.control())
                .arg(message)
                .query_async::<i64>(&mut conn),
        )
        .await
        .map(drop)
    }

    fn control(&self) -> Option<broadcast::Receiver<Bytes>> {
        Some(self.control.subscribe())
    }

    fn heartbeat_interval(&self) -> Option<Duration> {
        Some((self.config.node_ttl / 3).max(Duration::from_millis(10)))
    }

    async fn heartbeat(&self, report: &crate::NodeReport) -> Result<(), BrokerError> {
        let now: std::collections::HashSet<uuid::Uuid> =
            report.projects.iter().map(|(p, _)| *p).collect();
        let gone: Vec<uuid::Uuid> = {
            let mut beating = self
                .beating
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let gone = beating
                .iter()
                .filter(|p| !now.contains(*p))
                .copied()
                .collect();
            *beating = now;
            gone
        };
        let mut conn = self.shards[0].conn.clone();
        self.bounded(nodes::beat(
            &mut conn,
            &self.names,
            self.node,
            report,
            &gone,
            self.config.node_ttl,
        ))
        .await
    }

    async fn other_nodes(&self, project: uuid::Uuid) -> Result<Vec<crate::NodeInfo>, BrokerError> {
        let mut conn = self.shards[0].conn.clone();
        self.bounded(nodes::others(
            &mut conn,
            &self.names,
            self.node,
            project,
            self.config.node_ttl,
        ))
        .await
    }

    async fn local_channels_by_project(
        &self,
    ) -> Result<HashMap<uuid::Uuid, (usize, usize)>, BrokerError> {
        let mut by_project: HashMap<uuid::Uuid, (usize, usize)> = HashMap::new();
        for (key, count) in self.shards.iter().flat_map(|s| s.pubsub.local_channels()) {
            let entry = by_project.entry(key.project()).or_default();
            entry.0 += 1;
            entry.1 += count;
        }
        Ok(by_project)
    }

    async fn local_channels(&self, project: uuid::Uuid) -> Result<(usize, usize), BrokerError> {
        Ok(self
            .shards
            .iter()
            .map(|s| s.pubsub.local_counts(project))
            .fold((0, 0), |(n, subs), (c, q)| (n + c, subs + q)))
    }
}
