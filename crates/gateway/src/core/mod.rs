//! The protocol-neutral core of the gateway: everything a connection or the server API may
//! do with channels, always inside one project.
//!
//! - [`ProjectScope`] is the only way to the broker and the connection registry: it is
//!   made for one project and turns every channel name into a [`ChannelKey`] of that
//!   project, so no code path can name another project's channel, presence, history or
//!   connections. The server API holds one per call (the project its key belongs to);
//!   a connection holds one from `connect` on (the project its token belongs to).
//! - [`client::Client`] is one connection, whatever its wire protocol: its grant, its
//!   queue, its subscriptions with presence and join/leave, the command budget and the
//!   registry entry. The Centrifugo and SignalWire sessions are thin adapters on it: they
//!   parse frames, map commands and events, and pick their own error and close codes.

pub(crate) mod client;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tollgate_broker::{
    Broker, BrokerError, ChannelKey, Event, History, HistoryPolicy, HistoryQuery, NewPublication,
    PresenceEntry, PresenceStats, Queue, StreamPosition,
};
use tollgate_token::ProjectId;

use crate::registry::{Control, Registry};

/// One project's view of the gateway's shared state.
#[derive(Debug, Clone)]
pub struct ProjectScope {
    project: ProjectId,
    broker: Arc<dyn Broker>,
    registry: Arc<Registry>,
    /// How long a presence entry lives unless refreshed (two presence ticks and a margin).
    presence_ttl: Duration,
    /// Where server API commands go to other nodes, if any share the broker.
    outbox: Option<crate::cluster::ControlOutbox>,
}

impl ProjectScope {
    pub(crate) fn new(
        project: ProjectId,
        broker: Arc<dyn Broker>,
        registry: Arc<Registry>,
        presence_ttl: Duration,
        outbox: Option<crate::cluster::ControlOutbox>,
    ) -> Self {
        Self {
            project,
            broker,
            registry,
            presence_ttl,
            outbox,
        }
    }

    /// The project this scope is for.
    #[must_use]
    pub fn project(&self) -> ProjectId {
        self.project
    }

    fn key(&self, channel: &str) -> ChannelKey {
        ChannelKey::new(*self.project.as_uuid(), channel)
    }

    /// Publishes into `channel`, kept under `history` if given.
    pub async fn publish(
        &self,
        channel: &str,
        publication: NewPublication,
        history: Option<HistoryPolicy>,
    ) -> Result<StreamPosition, BrokerError> {
        self.broker
            .publish(&self.key(channel), publication, history)
            .await
    }

    /// The result of an earlier publish into `channel` with idempotency `key`, as the
    /// broker remembers it for every node (`None` from a broker that does not).
    pub async fn idempotent_result(
        &self,
        channel: &str,
        key: &str,
    ) -> Result<Option<Bytes>, BrokerError> {
        self.broker.idempotent_result(&self.key(channel), key).await
    }

    /// Remembers the `result` of a publish into `channel` with idempotency `key`, for
    /// every node, for `window`.
    pub async fn remember_idempotent(
        &self,
        channel: &str,
        key: &str,
        result: Bytes,
        window: Duration,
    ) -> Result<(), BrokerError> {
        self.broker
            .remember_idempotent(&self.key(channel), key, result, window)
            .await
    }

    /// Announces a join, leave or member update to `channel`'s subscribers.
    pub(crate) async fn announce(&self, channel: &str, event: Event) -> Result<(), BrokerError> {
        self.broker
            .publish_presence_event(&self.key(channel), event)
            .await
    }

    pub(crate) async fn subscribe(
        &self,
        channel: &str,
        queue: &Arc<Queue>,
    ) -> Result<(), BrokerError> {
        self.broker.subscribe(&self.key(channel), queue).await
    }

    pub(crate) async fn unsubscribe(
        &self,
        channel: &str,
        queue: &Queue,
    ) -> Result<(), BrokerError> {
        self.broker.unsubscribe(&self.key(channel), queue).await
    }

    /// Reads `channel`'s history.
    pub async fn history(
        &self,
        channel: &str,
        query: HistoryQuery<'_>,
    ) -> Result<History, BrokerError> {
        self.broker.history(&self.key(channel), query).await
    }

    /// Drops `channel`'s history (its stream position is kept).
    pub async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        self.broker.remove_history(&self.key(channel)).await
    }

    /// The clients present in `channel`.
    pub async fn presence(&self, channel: &str) -> Result<Vec<PresenceEntry>, BrokerError> {
        self.broker.presence(&self.key(channel)).await
    }

    /// Presence counts of `channel`.
    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, BrokerError> {
        self.broker.presence_stats(&self.key(channel)).await
    }

    /// Puts (or keeps) a client in `channel`'s presence, for long enough to outlive one
    /// presence tick: both protocols refresh it on every tick. Best effort: a broker
    /// failure only delays presence until the next tick.
    pub(crate) async fn keep_present(&self, channel: &str, client: &str, user: &str, info: &Bytes) {
        let entry = PresenceEntry {
            client: client.to_owned(),
            user: user.to_owned(),
            info: info.clone(),
        };
        let _ = self
            .broker
            .add_presence(&self.key(channel), entry, self.presence_ttl)
            .await;
    }

    pub(crate) async fn remove_presence(&self, channel: &str, client: &str) {
        let _ = self
            .broker
            .remove_presence(&self.key(channel), client)
            .await;
    }

    /// This project's channels with subscribers on this node, and how many.
    pub async fn channels(&self) -> Result<Vec<(String, usize)>, BrokerError> {
        self.broker.channels(*self.project.as_uuid()).await
    }

    /// Sends a server-side command to this project's connections of `user` (only
    /// `client`'s, if given; never those in `except`). Returns how many it reached on this
    /// node; with a shared broker, the command also goes to every other node (at most
    /// once, in order, not waited for: see `cluster`).
    pub fn control(
        &self,
        user: &str,
        client: Option<&str>,
        except: &[&str],
        control: &Control,
    ) -> usize {
        if let Some(outbox) = &self.outbox
            && let Some(wire) = crate::cluster::encode(self.project, user, client, except, control)
        {
            outbox.send(wire);
        }
        self.registry
            .send(self.project, user, client, except, control)
    }

    /// This project's connected clients and distinct users on this node.
    #[must_use]
    pub fn stats(&self) -> (usize, usize) {
        self.registry.project_stats(self.project)
    }

    /// This project's share of this node, for `info`: its clients and users, and its
    /// channels with subscribers here (an unreachable broker counts none).
    pub async fn node_counts(&self) -> tollgate_broker::NodeCounts {
        let (clients, users) = self.stats();
        let (channels, subs) = self
            .broker
            .local_channels(*self.project.as_uuid())
            .await
            .unwrap_or_default();
        tollgate_broker::NodeCounts {
            clients,
            users,
            channels,
            subs,
        }
    }

    /// The other live nodes sharing the broker, with this project's share of each (none
    /// with the in-process broker).
    pub async fn other_nodes(&self) -> Result<Vec<tollgate_broker::NodeInfo>, BrokerError> {
        self.broker.other_nodes(*self.project.as_uuid()).await
    }

    /// Registers a connection of `user` in this project (and its `queue`, by id) under the
    /// per-user `limit`; where its server API commands arrive, or `None` when the user is at
    /// the limit.
    pub(crate) fn register(
        &self,
        user: &str,
        client: &str,
        queue: u64,
        limit: usize,
    ) -> Option<tokio::sync::mpsc::Receiver<Control>> {
        let rx = self.registry.add(self.project, user, client, limit)?;
        self.registry.add_queue(self.project, user, client, queue);
        Some(rx)
    }

    /// Forgets a connection of `user` in this project.
    pub(crate) fn unregister(&self, user: &str, client: &str, queue: u64) {
        self.registry.remove(self.project, user, client);
        self.registry.remove_queue(queue);
    }
}
