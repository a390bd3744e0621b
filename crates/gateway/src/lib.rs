//! The real-time gateway: Centrifugo's client protocol v2 (JSON) over WebSocket.
//!
//! Every connection is one [`session`] task: it waits for `connect` (closing stale sockets),
//! checks every token it is given through the service's token checks, registers the
//! connection's bounded queue with the broker for each subscription, and writes replies and
//! pushes batched into newline-separated frames.
//!
//! Channel behaviour (presence, join/leave, history and recovery, who may publish) comes
//! from per-namespace [`ChannelOptions`], as in Centrifugo; who may subscribe comes from
//! tokens (subscription JWTs, PubSub/Chat capabilities) and, where an operator opens a
//! namespace, from its `allow_*` options. Deny by default.

mod centrifugo;
mod cluster;
mod conn;
mod core;
#[doc(hidden)]
pub mod fuzzing;
mod metrics;
pub mod origins;
mod registry;
mod signalwire;
mod upgrade;

pub use centrifugo::channels::{
    HistoryParams, history_policy, presence_map, publication_json, stream_position,
};
pub use cluster::ControlOutbox;
pub use core::ProjectScope;
pub use metrics::GatewayMetrics;
pub use registry::{Control, SubscribeCommand};
pub use tollgate_broker::{NodeCounts, NodeInfo};
pub use tollgate_token::centrifugo::{ChannelConfig, ChannelOptions};
pub use upgrade::{ORIGIN_REFUSED, Protocol};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tollgate_broker::Broker;
use tollgate_service::Tollgate;
use tollgate_token::ProjectId;

/// Gateway limits and timers (Centrifugo's defaults).
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Server ping interval.
    pub ping_interval: Duration,
    /// How long a pong may take.
    pub pong_timeout: Duration,
    /// How long a socket may stay without `connect`.
    pub stale_timeout: Duration,
    /// Grace after a connection's expiry before it is closed (time to refresh).
    pub expired_close_delay: Duration,
    /// Outbound queue budget per connection, bytes.
    pub queue_bytes: usize,
    /// Most channels one connection may subscribe to.
    pub max_channels: usize,
    /// Largest inbound WebSocket message, bytes: room for a connect carrying the largest
    /// valid token (a PubSub token with 500 channels is about 200 KB).
    pub max_message_bytes: usize,
    /// Largest publication payload a client may publish, bytes.
    pub max_publication_bytes: usize,
    /// Most open WebSocket connections on this node (0: no limit).
    pub max_connections: usize,
    /// Most connections of one user on this node (0: no limit); more close with 3504.
    pub max_connections_per_user: usize,
    /// Sustained commands per second one connection may send (0: no limit).
    pub max_commands_per_second: u32,
    /// Commands one connection may send in a burst above the sustained rate.
    pub command_burst: u32,
    /// How often presence is refreshed and subscription expiry checked.
    pub presence_update_interval: Duration,
    /// Grace after a subscription's expiry before it is ended (time to `sub_refresh`).
    pub expired_sub_close_delay: Duration,
    /// Most publications one history or recovery read returns.
    pub history_max_publication_limit: usize,
    /// `Origin` patterns allowed to open a WebSocket (`*` for all; `*.example.com` for
    /// subdomains). Empty: only clients that send no `Origin` (non-browsers).
    pub allowed_origins: Vec<String>,
    /// Per-namespace channel options.
    pub channels: ChannelConfig,
    /// History kept for messages SignalWire clients publish where the namespace keeps
    /// none, so `chat.messages.get` has something to page (size 0: none).
    pub chat_history_size: usize,
    pub chat_history_ttl: Duration,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(8),
            stale_timeout: Duration::from_secs(10),
            expired_close_delay: Duration::from_secs(25),
            queue_bytes: 1024 * 1024,
            max_channels: 128,
            max_message_bytes: 512 * 1024,
            max_publication_bytes: 64 * 1024,
            max_connections: 0,
            max_connections_per_user: 0,
            max_commands_per_second: 100,
            command_burst: 300,
            presence_update_interval: Duration::from_secs(27),
            expired_sub_close_delay: Duration::from_secs(25),
            history_max_publication_limit: 300,
            allowed_origins: Vec::new(),
            channels: ChannelConfig::default(),
            chat_history_size: 100,
            chat_history_ttl: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// The node name the server API's `info` reports.
pub const NODE_NAME: &str = "tollgate";

/// A reserved place for one connection; released when dropped.
#[derive(Debug)]
pub struct Slot {
    active: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// The gateway: shared by every connection. One `Arc`: every session holds a clone, so a
/// clone is one reference-count increment and a session's task holds one pointer.
#[derive(Debug, Clone)]
pub struct Gateway(Arc<Shared>);

/// What every connection shares (its fields are the gateway's own; outside the crate it
/// is only reached through [`Gateway`]'s methods).
#[derive(Debug)]
pub struct Shared {
    pub(crate) tollgate: Tollgate,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) settings: Arc<GatewaySettings>,
    /// Flips to `true` when the server shuts down: every session closes with 3001.
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
    stop: tokio::sync::watch::Sender<bool>,
    /// Open sessions, so shutdown can wait for their close frames to go out.
    active: Arc<AtomicUsize>,
    idle: Arc<Notify>,
    pub(crate) registry: Arc<registry::Registry>,
    pub(crate) metrics: GatewayMetrics,
    pub(crate) resumes: signalwire::Resumes,
    /// Refused browser origins: logged, but not once per refusal.
    origin_log: upgrade::RefusalLog,
    started: std::time::Instant,
    /// This node's id, as the server API's `info` reports it (to every node's callers).
    node_id: Arc<str>,
    /// This node's queue to the other nodes sharing the broker, if any: server API
    /// commands leave through it in order.
    outbox: Option<cluster::ControlOutbox>,
}

impl std::ops::Deref for Gateway {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Tells the connections whose deliveries the broker may have lost to resubscribe, until
/// the broker goes away.
async fn relay_interruptions(
    mut interruptions: tokio::sync::broadcast::Receiver<Arc<tollgate_broker::Interruption>>,
    registry: Arc<registry::Registry>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match interruptions.recv().await {
            Ok(interruption) => {
                for (channel, queues) in &interruption.channels {
                    let control = Control::Resubscribe {
                        channel: channel.name().to_owned(),
                    };
                    registry.send_to_queues(queues, &control);
                }
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "broker interruptions missed; some clients keep a gap"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}

impl Gateway {
    /// A gateway over the service and a broker.
    #[must_use]
    pub fn new(tollgate: Tollgate, broker: Arc<dyn Broker>, settings: GatewaySettings) -> Self {
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let registry: Arc<registry::Registry> = Arc::default();
        if let Some(interruptions) = broker.interruptions() {
            tokio::spawn(relay_interruptions(interruptions, registry.clone()));
        }
        let control = broker.control();
        let outbox = control
            .is_some()
            .then(|| cluster::ControlOutbox::new(Arc::downgrade(&broker)));
        if let Some(control) = control {
            tokio::spawn(cluster::relay(control, registry.clone()));
        }
        let gateway = Self(Arc::new(Shared {
            tollgate,
            broker,
            settings: Arc::new(settings),
            stopping,
            stop,
            active: Arc::default(),
            idle: Arc::default(),
            registry,
            metrics: GatewayMetrics::default(),
            resumes: signalwire::Resumes::default(),
            origin_log: upgrade::RefusalLog::default(),
            started: std::time::Instant::now(),
            node_id: Arc::from(uuid::Uuid::new_v4().to_string()),
            outbox,
        }));
        // Other nodes' `info` lists this one while it beats.
        if let Some(interval) = gateway.broker.heartbeat_interval() {
            tokio::spawn(cluster::heartbeat(Arc::downgrade(&gateway.0), interval));
        }
        gateway
    }

    /// This node's id, as the server API's `info` reports it.
    #[must_use]
    pub fn node_id(&self) -> &Arc<str> {
        &self.node_id
    }

    /// The gateway as one project sees it: its channels, presence, history and
    /// connections, and nothing of any other project's.
    #[must_use]
    pub fn project(&self, project: ProjectId) -> ProjectScope {
        let presence_ttl = self.settings.presence_update_interval * 2 + Duration::from_secs(5);
        ProjectScope::new(
            project,
            self.broker.clone(),
            self.registry.clone(),
            presence_ttl,
            self.outbox.clone(),
        )
    }

    /// How many server API commands for other nodes were dropped because this node's
    /// queue to the broker was full (the broker slow or down).
    #[must_use]
    pub fn control_dropped(&self) -> u64 {
        self.outbox
            .as_ref()
            .map_or(0, cluster::ControlOutbox::dropped)
    }

    /// Connected clients and distinct users on this node.
    #[must_use]
    pub fn stats(&self) -> (usize, usize) {
        self.registry.stats()
    }

    /// Seconds since the gateway started.
    #[must_use]
    pub fn uptime(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Tells every session to close with Centrifugo's reconnect-allowed "shutdown" code.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Resolves once no session is open.
    pub async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.active.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// How a SignalWire client's publication into `channel` is kept: the namespace's
    /// history, or else SignalWire's chat history (`chat_history_size`/`_ttl`), so
    /// `chat.messages.get` works out of the box. Other publishers follow the namespace
    /// alone: history the operator did not configure is never kept for them.
    #[must_use]
    pub(crate) fn publish_history(&self, channel: &str) -> Option<tollgate_broker::HistoryPolicy> {
        let s = &self.settings;
        centrifugo::channels::history_policy(s.channels.options(channel)).or_else(|| {
            (s.chat_history_size > 0 && !s.chat_history_ttl.is_zero()).then_some(
                tollgate_broker::HistoryPolicy {
                    size: s.chat_history_size,
                    ttl: s.chat_history_ttl,
                },
            )
        })
    }

    /// Channels with subscribers on this node and their subscriptions, all projects
    /// together (for `/metrics`: counts, never names).
    pub async fn channel_count(&self) -> (usize, usize) {
        self.broker.channel_count().await.unwrap_or_default()
    }

    /// The gateway's limits and timers.
    #[must_use]
    pub fn settings(&self) -> &GatewaySettings {
        &self.settings
    }

    /// Counters for `/metrics`.
    #[must_use]
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    /// Open WebSocket connections (connected or not yet).
    #[must_use]
    pub fn open_connections(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Reserves a place for one more connection, or `None` when the node is full. Checked
    /// before the upgrade, so an over-full node answers 503 and the client's backoff does
    /// the rest; the reservation is atomic, so simultaneous handshakes cannot overshoot.
    #[must_use]
    pub fn reserve(&self) -> Option<Slot> {
        let max = self.settings.max_connections;
        let taken = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (max == 0 || n < max).then_some(n + 1)
            });
        taken.ok().map(|_| Slot {
            active: self.active.clone(),
            idle: self.idle.clone(),
        })
    }

    /// Whether a browser page from `origin` may connect (Centrifugo's `allowed_origins`).
    #[must_use]
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        origins::origin_matches(&self.settings.allowed_origins, origin)
    }

    /// Serves one WebSocket connection speaking `protocol`, in the place `slot` reserved,
    /// until it ends.
    async fn serve(&self, slot: Slot, socket: conn::Socket, protocol: Protocol) {
        self.metrics.connection_opened();
        match protocol {
            Protocol::Centrifugo => centrifugo::Session::new(self.clone()).run(socket).await,
            Protocol::SignalWire => signalwire::SwSession::new(self.clone()).run(socket).await,
        }
        // The slot is released when dropped, even if the session panicked.
        drop(slot);
    }
}
