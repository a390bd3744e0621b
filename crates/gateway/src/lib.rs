//! The real-time gateway: Centrifugo's client protocol v2 (JSON) over WebSocket.
//!
//! Every connection is one [`session`] task: it waits for `connect` (closing stale sockets),
//! checks every token it is given through the service's token checks, registers the
//! connection's bounded queue with the broker for each subscription, and writes replies and
//! pushes batched into newline-separated frames.
//!
//! Implemented so far: `connect`, `subscribe` (subscription JWTs or PubSub/Chat token
//! capabilities; deny by default), `unsubscribe`, `publish`, `refresh`, `sub_refresh`,
//! server pings with pong checks, connection expiry, slow-consumer disconnects, shutdown,
//! and server-side commands from the server API. Presence and history over the protocol,
//! subscription expiry timers and per-namespace options are still to come.

mod protocol;
mod registry;
mod session;

pub use registry::Control;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tollgate_broker::Broker;
use tollgate_service::Tollgate;

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
    /// Largest inbound WebSocket message, bytes.
    pub max_message_bytes: usize,
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
            max_message_bytes: 65_536,
        }
    }
}

/// The gateway: shared by every connection.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub(crate) tollgate: Tollgate,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) settings: Arc<GatewaySettings>,
    /// Flips to `true` when the server shuts down: every session closes with 3001.
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    /// Open sessions, so shutdown can wait for their close frames to go out.
    active: Arc<AtomicUsize>,
    idle: Arc<Notify>,
    pub(crate) registry: Arc<registry::Registry>,
    started: std::time::Instant,
}

impl Gateway {
    /// A gateway over the service and a broker.
    #[must_use]
    pub fn new(tollgate: Tollgate, broker: Arc<dyn Broker>, settings: GatewaySettings) -> Self {
        let (stop, stopping) = tokio::sync::watch::channel(false);
        Self {
            tollgate,
            broker,
            settings: Arc::new(settings),
            stopping,
            stop: Arc::new(stop),
            active: Arc::default(),
            idle: Arc::default(),
            registry: Arc::default(),
            started: std::time::Instant::now(),
        }
    }

    /// Sends a server-side command to the connections of `user` (only `client`'s, if
    /// given). Returns how many connections it reached.
    pub fn control(&self, user: &str, client: Option<&str>, control: &Control) -> usize {
        self.registry.send(user, client, control)
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

    /// The broker (the server API publishes through it).
    #[must_use]
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// Limits to configure the WebSocket upgrade with.
    #[must_use]
    pub fn settings(&self) -> &GatewaySettings {
        &self.settings
    }

    /// Serves one WebSocket connection until it ends.
    pub async fn serve(&self, socket: axum::extract::ws::WebSocket) {
        self.active.fetch_add(1, Ordering::AcqRel);
        session::Session::new(self.clone()).run(socket).await;
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}
