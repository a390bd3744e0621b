//! Publish/subscribe for the real-time gateway.
//!
//! [`Broker`] is the one interface the gateway uses: publish into a channel, register a
//! connection's [`Queue`] as a local subscriber, read history with stream positions
//! (offset + epoch, for Centrifugo's recovery), and keep presence. Everything is async and
//! fallible so a remote broker can sit behind the same trait: [`MemoryBroker`] is the
//! in-process one (one node), [`RedisBroker`] the one a cluster of nodes shares.
//!
//! Every channel belongs to one project: the broker keys everything — subscribers,
//! history and stream positions, presence — by [`ChannelKey`] (project, name), so two
//! projects using the same channel name share nothing. Names inside a key are what
//! clients see and send, byte for byte.
//!
//! Fan-out never waits for a subscriber: each connection has a bounded [`Queue`]
//! (by bytes); a publication that does not fit marks that queue overflowed, and the
//! gateway disconnects the slow consumer (Centrifugo's code 3008) instead of stalling the
//! publisher or buffering without bound.

mod history;
mod memory;
mod queue;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use memory::{DEFAULT_MAX_HISTORY_BYTES, DEFAULT_META_TTL, MemoryBroker};
pub use queue::{Queue, QueueState};
pub use redis::{RedisBroker, RedisConfig};

/// A channel as the broker keys it: the project it belongs to, then the name its clients
/// use. There is no way to reach a channel without naming its project.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelKey {
    project: uuid::Uuid,
    name: Arc<str>,
}

impl ChannelKey {
    /// The channel `name` of `project`.
    #[must_use]
    pub fn new(project: uuid::Uuid, name: &str) -> Self {
        Self {
            project,
            name: Arc::from(name),
        }
    }

    /// The project the channel belongs to.
    #[must_use]
    pub fn project(&self) -> uuid::Uuid {
        self.project
    }

    /// The channel's name, as its clients see it.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared.
    #[must_use]
    pub fn name_arc(&self) -> &Arc<str> {
        &self.name
    }
}

/// One message in a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// A unique id (SignalWire's message id).
    pub id: String,
    /// Position in the channel's stream (0 when the channel keeps no history).
    pub offset: u64,
    /// The payload: raw JSON, passed through untouched.
    pub data: Bytes,
    /// Who published it (raw JSON `ClientInfo`), for client-side publications.
    pub info: Option<Bytes>,
    /// Publication tags (raw JSON object of strings), from the server API.
    pub tags: Option<Bytes>,
    /// SignalWire's message `meta` (raw JSON), when a SignalWire client published it.
    pub meta: Option<Bytes>,
    /// Unix time in milliseconds.
    pub time_ms: i64,
    /// A front end's encoding of this publication, made once and shared by every
    /// subscriber (a publication belongs to one channel, so the bytes are the same for all
    /// of them): fan-out to 10,000 sockets serialises once, not 10,000 times.
    pub encoded: std::sync::OnceLock<Bytes>,
}

/// What a publisher hands the broker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewPublication {
    /// The payload: raw JSON without newlines.
    pub data: Bytes,
    /// The publisher's `ClientInfo` (raw JSON), for client-side publications.
    pub info: Option<Bytes>,
    /// Tags (raw JSON object).
    pub tags: Option<Bytes>,
    /// SignalWire's `meta` (raw JSON).
    pub meta: Option<Bytes>,
}

/// A position in a channel's stream. A new epoch means the stream was reset (history
/// lost), so offsets from another epoch are meaningless.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamPosition {
    pub offset: u64,
    pub epoch: String,
}

/// How much history a channel keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryPolicy {
    /// Most publications kept.
    pub size: usize,
    /// How long each is kept.
    pub ttl: Duration,
}

/// What happened in a channel, as delivered to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Publication(Arc<Publication>),
    /// A client joined (raw JSON `ClientInfo`).
    Join(Bytes),
    /// A client left (raw JSON `ClientInfo`).
    Leave(Bytes),
    /// A member changed its state (raw JSON `ClientInfo`; SignalWire's
    /// `chat.member.updated`, which Centrifugo's protocol has no push for).
    Update(Bytes),
}

/// An event with the channel it happened in. Only the name travels: a queue belongs to one
/// connection of one project, so it only ever receives that project's channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub channel: Arc<str>,
    pub event: Event,
}

impl Delivery {
    /// Bytes this delivery counts against a queue's budget.
    #[must_use]
    pub fn weight(&self) -> usize {
        let payload = match &self.event {
            Event::Publication(p) => {
                p.data.len()
                    + p.info.as_ref().map_or(0, Bytes::len)
                    + p.tags.as_ref().map_or(0, Bytes::len)
                    + p.meta.as_ref().map_or(0, Bytes::len)
            }
            Event::Join(i) | Event::Leave(i) | Event::Update(i) => i.len(),
        };
        // Fixed overhead approximates the envelope the gateway wraps around it.
        payload + self.channel.len() + 64
    }
}

/// A history read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryQuery<'a> {
    /// Only publications after this position (recovery).
    pub since: Option<&'a StreamPosition>,
    /// At most this many (newest-first when `reverse`). `None`: all kept.
    pub limit: Option<usize>,
    pub reverse: bool,
}

/// The answer to a history read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct History {
    pub publications: Vec<Arc<Publication>>,
    /// The stream's current top.
    pub position: StreamPosition,
    /// With `since`: whether every publication after it was still kept (same epoch, no
    /// gap). `false` means the client must re-sync another way.
    pub recovered: bool,
}

/// Presence counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PresenceStats {
    pub clients: usize,
    pub users: usize,
}

/// A presence entry: a client, its user and its info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEntry {
    pub client: String,
    pub user: String,
    pub info: Bytes,
}

/// A broker failure (a remote broker being unreachable); in-process never fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// Why local subscribers may have missed deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptionCause {
    /// The node's PUB/SUB connection to the broker broke and was re-established:
    /// whatever was published meanwhile never reached this node.
    Reconnected,
    /// A publication arrived whose offset does not follow the last one this node saw (or
    /// with another epoch): something in between was lost on the way.
    Gap,
}

/// Local subscribers that may have missed deliveries: the gateway should tell their
/// clients to resubscribe and recover from history (Centrifugo's "insufficient state").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    pub cause: InterruptionCause,
    /// Each channel affected, with the ids ([`Queue::id`]) of its local subscribers then.
    pub channels: Vec<(ChannelKey, Vec<u64>)>,
}

/// One project's share of one node, as the server API's `info` reports it: counts only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeCounts {
    pub clients: usize,
    pub users: usize,
    pub channels: usize,
    pub subs: usize,
}

/// What a node says about itself in its heartbeat ([`Broker::heartbeat`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeReport {
    /// The node's id as `info` shows it.
    pub uid: String,
    pub name: String,
    pub version: String,
    /// Seconds since the node started.
    pub uptime: u64,
    /// Each project with connections on the node, and its share. A project not listed has
    /// nothing on the node.
    pub projects: Vec<(uuid::Uuid, NodeCounts)>,
}

/// Another live node as one project sees it ([`Broker::other_nodes`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfo {
    pub uid: String,
    pub name: String,
    pub version: String,
    /// Seconds since the node started, as of now.
    pub uptime: u64,
    /// The project's share of the node at its last heartbeat.
    pub counts: NodeCounts,
}

/// What a control message is about. The control channel is one opaque byte stream shared
/// by several receivers on every node (the gateway's server API commands, the service's
/// cache invalidations); the first byte of every payload names its topic, so each receiver
/// takes its own and skips the others' without decoding them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlTopic {
    /// A server API command for connections (`tollgate_gateway`'s `cluster`).
    Gateway,
    /// A cache entry another node's change made stale (`tollgate_service`'s
    /// `Invalidation`).
    Cache,
}

impl ControlTopic {
    fn byte(self) -> u8 {
        match self {
            Self::Gateway => b'g',
            Self::Cache => b'c',
        }
    }

    /// `body` prefixed with this topic, ready for [`Broker::publish_control`].
    #[must_use]
    pub fn frame(self, body: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(1 + body.len());
        out.push(self.byte());
        out.extend_from_slice(body);
        Bytes::from(out)
    }

    /// The body of `payload` if it is about this topic; `None` for another topic's (or an
    /// empty) payload.
    #[must_use]
    pub fn body(self, payload: &[u8]) -> Option<&[u8]> {
        payload
            .split_first()
            .filter(|(topic, _)| **topic == self.byte())
            .map(|(_, body)| body)
    }
}

/// The broker interface.
#[async_trait]
pub trait Broker: Send + Sync + std::fmt::Debug + 'static {
    /// Publishes into `channel`, keeping it in history under `history` if given.
    /// Returns the stream position it got.
    async fn publish(
        &self,
        channel: &ChannelKey,
        publication: NewPublication,
        history: Option<HistoryPolicy>,
    ) -> Result<StreamPosition, BrokerError>;

    /// Tells subscribers that a client joined, left or changed (`Event::Join`, `Leave`,
    /// `Update`).
    async fn publish_presence_event(
        &self,
        channel: &ChannelKey,
        event: Event,
    ) -> Result<(), BrokerError>;

    /// Registers `queue` as a local subscriber of `channel`.
    async fn subscribe(&self, channel: &ChannelKey, queue: &Arc<Queue>) -> Result<(), BrokerError>;

    /// Removes `queue` from `channel`.
    async fn unsubscribe(&self, channel: &ChannelKey, queue: &Queue) -> Result<(), BrokerError>;

    /// Reads history.
    async fn history(
        &self,
        channel: &ChannelKey,
        query: HistoryQuery<'_>,
    ) -> Result<History, BrokerError>;

    /// Drops a channel's history (the stream position is kept).
    async fn remove_history(&self, channel: &ChannelKey) -> Result<(), BrokerError>;

    /// Adds or refreshes a client's presence for `ttl`.
    async fn add_presence(
        &self,
        channel: &ChannelKey,
        entry: PresenceEntry,
        ttl: Duration,
    ) -> Result<(), BrokerError>;

    /// Removes a client's presence.
    async fn remove_presence(&self, channel: &ChannelKey, client: &str) -> Result<(), BrokerError>;

    /// The clients present in a channel.
    async fn presence(&self, channel: &ChannelKey) -> Result<Vec<PresenceEntry>, BrokerError>;

    /// Presence counts.
    async fn presence_stats(&self, channel: &ChannelKey) -> Result<PresenceStats, BrokerError>;

    /// `project`'s channels with subscribers, and how many: this node's for the in-process
    /// broker; every live node's for a shared one (see [`RedisBroker`] for how fresh).
    async fn channels(&self, project: uuid::Uuid) -> Result<Vec<(String, usize)>, BrokerError>;

    /// Channels with local subscribers in all projects together (node statistics only:
    /// no names leave the broker).
    async fn channel_count(&self) -> Result<(usize, usize), BrokerError>;

    /// The result remembered for a publish with idempotency `key` into `channel`, for a
    /// broker shared by several nodes (so a retry sent to another node is not published
    /// twice). `None` from a broker that remembers nothing (the in-process one: each node
    /// keeps its own).
    async fn idempotent_result(
        &self,
        _channel: &ChannelKey,
        _key: &str,
    ) -> Result<Option<Bytes>, BrokerError> {
        Ok(None)
    }

    /// Remembers `result` for idempotency `key` in `channel` for `window` (see
    /// [`Broker::idempotent_result`]).
    async fn remember_idempotent(
        &self,
        _channel: &ChannelKey,
        _key: &str,
        _result: Bytes,
        _window: Duration,
    ) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Whether the broker keeps closed sessions for other nodes to resume
    /// ([`Broker::put_session`]); `false` for the in-process broker (one node keeps its
    /// own in memory).
    fn keeps_sessions(&self) -> bool {
        false
    }

    /// Keeps an opaque session `state` of `project` under `key` for `ttl`, written by
    /// `owner` (the writing session's own id, without a newline), replacing what was there,
    /// so that any node sharing the broker can take it back ([`Broker::take_session`]).
    /// `key` is the caller's (a digest, never a secret). `Ok(false)`, and nothing written,
    /// when another owner has taken the session since (a stale owner, e.g. behind a
    /// half-open socket, cannot bring back what a newer one took). The in-process broker
    /// keeps nothing.
    async fn put_session(
        &self,
        _project: uuid::Uuid,
        _key: &str,
        _owner: &str,
        _state: Bytes,
        _ttl: Duration,
    ) -> Result<bool, BrokerError> {
        Ok(true)
    }

    /// Takes the session state of `project` under `key` for `taker` (its new owner),
    /// atomically: of any number of nodes asking at once, one gets it. `None` when there
    /// is none (or it expired). A session found is replaced by `taker`'s mark for `ttl`,
    /// so only `taker` puts it again meanwhile.
    async fn take_session(
        &self,
        _project: uuid::Uuid,
        _key: &str,
        _taker: &str,
        _ttl: Duration,
    ) -> Result<Option<Bytes>, BrokerError> {
        Ok(None)
    }

    /// Where the broker announces [`Interruption`]s, for a broker that can lose deliveries
    /// (one across a network). `None`: it never does (the in-process broker).
    fn interruptions(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<Interruption>>> {
        None
    }

    /// Sends an opaque control message (framed by [`ControlTopic::frame`]) to every
    /// *other* node sharing this broker: at most once, like Centrifugo's control channel.
    /// The in-process broker has no other node, so there is nothing to send.
    async fn publish_control(&self, _payload: Bytes) -> Result<(), BrokerError> {
        Ok(())
    }

    /// How often this node should send [`Broker::heartbeat`]; `None`: there are no other
    /// nodes to tell (the in-process broker), and `info` lists this node alone.
    fn heartbeat_interval(&self) -> Option<Duration> {
        None
    }

    /// Records this node's statistics for the other nodes' `info`.
    async fn heartbeat(&self, _report: &NodeReport) -> Result<(), BrokerError> {
        Ok(())
    }

    /// The other live nodes (never this one), with `project`'s share of each. Empty for a
    /// broker with no other nodes.
    async fn other_nodes(&self, _project: uuid::Uuid) -> Result<Vec<NodeInfo>, BrokerError> {
        Ok(Vec::new())
    }

    /// This node's channels with subscribers and their subscriptions, per project, in one
    /// pass: what a heartbeat carries (one walk, however many projects). Only a broker
    /// with a [`Broker::heartbeat_interval`] needs to count; the default counts nothing.
    async fn local_channels_by_project(
        &self,
    ) -> Result<std::collections::HashMap<uuid::Uuid, (usize, usize)>, BrokerError> {
        Ok(std::collections::HashMap::new())
    }

    /// `project`'s channels with subscribers on *this node*, and their subscriptions.
    async fn local_channels(&self, project: uuid::Uuid) -> Result<(usize, usize), BrokerError> {
        // The in-process broker's `channels` are this node's.
        let channels = self.channels(project).await?;
        Ok((channels.len(), channels.iter().map(|(_, n)| n).sum()))
    }

    /// Where control messages from other nodes arrive (never this node's own). An *empty*
    /// message comes from no node: the broker (re)connected its control channel, so
    /// messages sent meanwhile were missed. `None`: a broker with no other nodes (the
    /// in-process one).
    fn control(&self) -> Option<tokio::sync::broadcast::Receiver<Bytes>> {
        None
    }
}
