//! One connection, whatever its wire protocol: the grant it connected with (and so its
//! project), its bounded queue, its subscriptions with their presence and join/leave, the
//! command budget, its expiry and its place in the registry.
//!
//! A protocol adapter keeps a `Client<S>` and adds only what its protocol needs per
//! subscription (`S`: Centrifugo's recovery offset and expiry, SignalWire's event
//! selection). Joining is split in two — [`Client::attach`] registers the queue with the
//! broker, [`Client::add`] announces the subscription — because Centrifugo reads the
//! stream position in between: a publication arriving meanwhile is then in both the
//! recovery and the queue (and skipped by offset), never in neither.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tollgate_broker::{
    BrokerError, Event, History, HistoryPolicy, HistoryQuery, NewPublication, PresenceEntry,
    PresenceStats, Queue, StreamPosition,
};
use tollgate_service::gateway::ConnectionGrant;
use tollgate_token::ProjectId;

use super::ProjectScope;
use crate::Gateway;
use crate::conn::Budget;
use crate::registry::Control;

/// One subscription: what both protocols share, and the protocol's own part.
#[derive(Debug)]
pub(crate) struct Sub<S> {
    /// This client's `ClientInfo` in the channel (raw JSON): presence, join/leave and
    /// the `info` of its publications.
    pub(crate) info: Bytes,
    /// Kept in the channel's presence.
    pub(crate) presence: bool,
    /// Announces join/leave (and member updates) for this client.
    pub(crate) join_leave: bool,
    pub(crate) ext: S,
}

/// Why a connect was refused by the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectRefused {
    /// The user already has `max_connections_per_user` connections in the project.
    ConnectionLimit,
}

/// A connected client's grant and the scope of its project.
#[derive(Debug)]
struct Connected {
    grant: ConnectionGrant,
    scope: ProjectScope,
}

#[derive(Debug)]
pub(crate) struct Client<S> {
    pub(crate) gw: Gateway,
    /// This connection's id (`ClientInfo.client`).
    pub(crate) id: String,
    /// Boxed: every open socket's task holds a `Client`, and keeping the grant (a few
    /// hundred bytes) off the task keeps an idle connection's task within a smaller
    /// allocation class (BENCHMARKS.md, 3a).
    connected: Option<Box<Connected>>,
    pub(crate) subs: HashMap<String, Sub<S>>,
    pub(crate) queue: Arc<Queue>,
    pub(crate) budget: Budget,
    /// When the connection must end unless its token is refreshed.
    pub(crate) expiry: Option<Instant>,
    pub(crate) started: Instant,
    /// Where server API commands arrive, from `connect` until the session loop takes it.
    control: Option<mpsc::Receiver<Control>>,
}

impl<S> Client<S> {
    pub(crate) fn new(gw: Gateway) -> Self {
        let queue = Queue::new(gw.settings.queue_bytes);
        let budget = Budget::for_settings(&gw.settings);
        Self {
            gw,
            id: uuid::Uuid::new_v4().to_string(),
            connected: None,
            subs: HashMap::new(),
            queue,
            budget,
            expiry: None,
            started: Instant::now(),
            control: None,
        }
    }

    pub(crate) fn grant(&self) -> Option<&ConnectionGrant> {
        self.connected.as_ref().map(|c| &c.grant)
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected.is_some()
    }

    /// The connection's project, once connected.
    pub(crate) fn project(&self) -> Option<ProjectId> {
        self.grant().map(|g| g.project)
    }

    /// The connection's user (empty: anonymous or not connected).
    pub(crate) fn user(&self) -> &str {
        self.grant().map_or("", |g| g.user.as_str())
    }

    pub(crate) fn now_unix(&self) -> i64 {
        self.gw.tollgate.now().seconds()
    }

    /// The project's scope. Channel operations only happen on connected clients; before
    /// `connect` there is no project, and so nothing to reach.
    fn scope(&self) -> Result<&ProjectScope, BrokerError> {
        self.connected
            .as_ref()
            .map(|c| &c.scope)
            .ok_or_else(|| BrokerError::Unavailable("not connected".into()))
    }

    /// Becomes connected with `grant`: registers under the per-user limit of its project
    /// and arms the expiry.
    pub(crate) fn connect(&mut self, grant: ConnectionGrant) -> Result<(), ConnectRefused> {
        let limit = self.gw.settings.max_connections_per_user;
        let scope = self.gw.project(grant.project);
        let rx = scope
            .register(&grant.user, &self.id, self.queue.id(), limit)
            .ok_or(ConnectRefused::ConnectionLimit)?;
        self.control = Some(rx);
        self.expiry = grant
            .expires_at
            .map(|e| unix_to_instant(e, self.now_unix()));
        self.connected = Some(Box::new(Connected { grant, scope }));
        Ok(())
    }

    /// Replaces the grant of a connected client with a refreshed one, moving the expiry.
    /// A connection's project and user never change: a grant for another is refused
    /// (`false`, nothing changed), whatever the protocol adapter checked before.
    #[must_use]
    pub(crate) fn regrant(&mut self, grant: ConnectionGrant) -> bool {
        let now = self.now_unix();
        let Some(c) = self.connected.as_mut() else {
            return false;
        };
        if c.grant.project != grant.project || c.grant.user != grant.user {
            return false;
        }
        self.expiry = grant.expires_at.map(|e| unix_to_instant(e, now));
        c.grant = grant;
        true
    }

    /// Undoes a connect: leaves every channel and the registry, back to unauthenticated.
    pub(crate) async fn disconnect(&mut self) {
        self.leave_all().await;
        if let Some(c) = self.connected.take() {
            c.scope.unregister(&c.grant.user, &self.id, self.queue.id());
        }
        self.control = None;
        self.expiry = None;
    }

    /// Where server API commands arrive; taken once by the session loop.
    pub(crate) fn take_control(&mut self) -> Option<mpsc::Receiver<Control>> {
        self.control.take()
    }

    /// Whether the token's capabilities allow `what` (`sub`, `pub`, `prs`, `hst`) on
    /// `channel`. The first capability that lists the channel decides, as in Centrifugo.
    pub(crate) fn caps_allow(&self, channel: &str, what: &str) -> bool {
        self.grant().is_some_and(|g| {
            g.caps
                .iter()
                .find(|c| c.channels.iter().any(|ch| ch == channel))
                .is_some_and(|c| c.allow.iter().any(|a| a == what))
        })
    }

    /// This client's `ClientInfo`: user, client, the token's info and, per channel,
    /// `chan_info` (Centrifugo's channel info, SignalWire's member state).
    pub(crate) fn client_info(&self, chan_info: Option<&Value>) -> Bytes {
        let mut info = json!({"user": self.user(), "client": self.id});
        if let Some(conn_info) = self.grant().and_then(|g| g.info.as_ref()) {
            info["conn_info"] = conn_info.clone();
        }
        if let Some(chan_info) = chan_info {
            info["chan_info"] = chan_info.clone();
        }
        Bytes::from(info.to_string())
    }

    /// Registers the queue with `channel` (the first half of a subscribe).
    pub(crate) async fn attach(&self, channel: &str) -> Result<(), BrokerError> {
        self.scope()?.subscribe(channel, &self.queue).await
    }

    /// Takes the queue off `channel` again (a subscribe that failed after [`attach`]).
    ///
    /// [`attach`]: Client::attach
    pub(crate) async fn detach(&self, channel: &str) {
        if let Ok(scope) = self.scope() {
            let _ = scope.unsubscribe(channel, &self.queue).await;
        }
    }

    /// Completes a subscribe: presence, the join announcement, and the subscription.
    pub(crate) async fn add(&mut self, channel: &str, sub: Sub<S>) {
        if let Ok(scope) = self.scope() {
            if sub.presence {
                scope
                    .keep_present(channel, &self.id, self.user(), &sub.info)
                    .await;
            }
            if sub.join_leave {
                let _ = scope.announce(channel, Event::Join(sub.info.clone())).await;
            }
        }
        self.subs.insert(channel.to_owned(), sub);
    }

    /// Ends a subscription: broker, presence, the leave announcement. Returns it, if there
    /// was one.
    pub(crate) async fn leave(&mut self, channel: &str) -> Option<Sub<S>> {
        let sub = self.subs.remove(channel)?;
        if let Ok(scope) = self.scope() {
            let _ = scope.unsubscribe(channel, &self.queue).await;
            if sub.presence {
                scope.remove_presence(channel, &self.id).await;
            }
            if sub.join_leave {
                let _ = scope
                    .announce(channel, Event::Leave(sub.info.clone()))
                    .await;
            }
        }
        Some(sub)
    }

    pub(crate) async fn leave_all(&mut self) {
        let channels: Vec<String> = self.subs.keys().cloned().collect();
        for channel in channels {
            self.leave(&channel).await;
        }
    }

    /// Changes this client's info in a channel it is subscribed to, refreshing presence and
    /// announcing the update (SignalWire's `chat.member.updated`; Centrifugo's protocol has
    /// no push for it).
    pub(crate) async fn update_info(&mut self, channel: &str, info: Bytes) {
        let Some(sub) = self.subs.get_mut(channel) else {
            return;
        };
        sub.info = info.clone();
        let presence = sub.presence;
        if let Ok(scope) = self.scope() {
            if presence {
                scope
                    .keep_present(channel, &self.id, self.user(), &info)
                    .await;
            }
            let _ = scope.announce(channel, Event::Update(info)).await;
        }
    }

    /// Refreshes this client's presence in every channel that keeps it (the tick).
    pub(crate) async fn refresh_presence(&self) {
        let Ok(scope) = self.scope() else {
            return;
        };
        for (channel, sub) in self.subs.iter().filter(|(_, s)| s.presence) {
            scope
                .keep_present(channel, &self.id, self.user(), &sub.info)
                .await;
        }
    }

    pub(crate) async fn publish(
        &self,
        channel: &str,
        publication: NewPublication,
        history: Option<HistoryPolicy>,
    ) -> Result<StreamPosition, BrokerError> {
        self.scope()?.publish(channel, publication, history).await
    }

    pub(crate) async fn presence(&self, channel: &str) -> Result<Vec<PresenceEntry>, BrokerError> {
        self.scope()?.presence(channel).await
    }

    pub(crate) async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, BrokerError> {
        self.scope()?.presence_stats(channel).await
    }

    pub(crate) async fn history(
        &self,
        channel: &str,
        query: HistoryQuery<'_>,
    ) -> Result<History, BrokerError> {
        self.scope()?.history(channel, query).await
    }

    /// Ends the connection's life in the gateway: out of the registry, queue closed, every
    /// subscription left (presence removed, leaves announced).
    pub(crate) async fn close(&mut self) {
        self.queue.close();
        self.disconnect().await;
    }
}

impl<S> Drop for Client<S> {
    /// The synchronous part of [`Client::close`], so a panicking session still leaves the
    /// registry (presence entries expire on their own).
    fn drop(&mut self) {
        if let Some(c) = &self.connected {
            c.scope.unregister(&c.grant.user, &self.id, self.queue.id());
        }
        self.queue.close();
    }
}

/// Longest expiry honoured (Centrifugo caps `ttl` the same way): a far-future `exp` or
/// `expire_at` cannot overflow a timer.
pub(crate) const MAX_TTL: i64 = 365 * 24 * 60 * 60;

/// The instant a unix time falls on, clamped to `[now, now + MAX_TTL]`.
pub(crate) fn unix_to_instant(unix: i64, now_unix: i64) -> Instant {
    let ahead = u64::try_from(unix.saturating_sub(now_unix).clamp(0, MAX_TTL)).unwrap_or(0);
    Instant::now() + std::time::Duration::from_secs(ahead)
}
