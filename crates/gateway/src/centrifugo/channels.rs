//! Channel commands of a session: subscribe (client-side, token-side and server API),
//! unsubscribe, publish, presence, presence_stats, history, sub_refresh, and the periodic
//! tick that refreshes presence and ends expired subscriptions.
//!
//! Who may do what follows Centrifugo's order (reference §4.3): a subscription token alone
//! decides for its channel; otherwise a user-limited channel admits its listed users; then
//! the connection token's capabilities (PubSub/Chat `caps`); then the namespace's
//! `allow_*` options. Anything else is 103. Features that are off in the namespace
//! (presence, history) answer 108 before any permission check.

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tollgate_broker::{
    HistoryPolicy, HistoryQuery, NewPublication, PresenceEntry, Publication, StreamPosition,
};
use tollgate_service::gateway::{GatewayTokenError, Overrides, ServerSub};
use tollgate_token::ProjectId;
use tollgate_token::centrifugo::{Action, ChannelOptions, user_limited_allows};

use super::protocol::{self, code, disconnect};
use super::{Close, Handled, Session, SubState, close, non_empty};
use crate::core::client::Sub;

/// Longest channel name accepted (bytes): PubSub channel names are up to 250 characters
/// of any Unicode.
const MAX_CHANNEL_BYTES: usize = 1024;
/// `subscribe` flag bit: refuse rather than silently not recover (js/py `getState`).
const FLAG_REJECT_UNRECOVERED: i64 = 2;

/// A subscribe request's client-side wishes.
#[derive(Debug, Default)]
pub(crate) struct Wishes {
    pub(crate) recover: Option<StreamPosition>,
    pub(crate) positioned: bool,
    pub(crate) recoverable: bool,
    pub(crate) join_leave: bool,
    pub(crate) reject_unrecovered: bool,
}

impl Wishes {
    pub(crate) fn from(params: &Map<String, Value>) -> Self {
        let flag = |k: &str| params.get(k).and_then(Value::as_bool).unwrap_or(false);
        Self {
            recover: flag("recover").then(|| StreamPosition {
                offset: params.get("offset").and_then(Value::as_u64).unwrap_or(0),
                epoch: params
                    .get("epoch")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            }),
            positioned: flag("positioned"),
            recoverable: flag("recoverable"),
            join_leave: flag("join_leave"),
            reject_unrecovered: params
                .get("flag")
                .and_then(Value::as_i64)
                .is_some_and(|f| f & FLAG_REJECT_UNRECOVERED != 0),
        }
    }
}

pub(crate) fn valid_channel(c: &str) -> bool {
    c.len() <= MAX_CHANNEL_BYTES && !c.chars().any(char::is_control)
}

/// The broker's history policy for a namespace's options (`None`: history is off).
#[must_use]
pub fn history_policy(o: &ChannelOptions) -> Option<HistoryPolicy> {
    o.history().then_some(HistoryPolicy {
        size: o.history_size as usize,
        ttl: o.history_ttl,
    })
}

/// What a subscription was granted with.
#[derive(Debug)]
struct Grant {
    overrides: Overrides,
    /// Channel info from the token (`chan_info`).
    info: Option<Value>,
    expires_at: Option<i64>,
    /// Server-side rather than asked for by the client.
    server_side: bool,
}

/// A publication as the protocol and the server API show it (history, recovery).
pub fn publication_json(p: &Publication) -> Value {
    let parse = |b: &Bytes| serde_json::from_slice::<Value>(b).unwrap_or(Value::Null);
    let mut v = json!({ "data": parse(&p.data) });
    if let Some(info) = &p.info {
        v["info"] = parse(info);
    }
    if p.offset > 0 {
        v["offset"] = p.offset.into();
    }
    if let Some(tags) = &p.tags {
        v["tags"] = parse(tags);
    }
    v
}

impl Session {
    fn options(&self, channel: &str) -> &ChannelOptions {
        self.c.gw.settings.channels.options(channel)
    }

    fn caps_allow(&self, channel: &str, what: &str) -> bool {
        self.c.caps_allow(channel, what)
    }

    /// The connection's project; every channel command runs connected, so there is one.
    fn project(&self) -> Result<ProjectId, Close> {
        self.c
            .project()
            .ok_or_else(|| close(disconnect::BAD_REQUEST, "connect first"))
    }

    /// Whether the connection may use presence or history of `channel` (not whether the
    /// feature is on).
    fn may(&self, action: Action, channel: &str) -> bool {
        let cap = match action {
            Action::Publish => "pub",
            Action::Presence => "prs",
            Action::History => "hst",
        };
        self.caps_allow(channel, cap)
            || self.options(channel).allows(
                action,
                self.c.user(),
                self.c.subs.contains_key(channel),
            )
    }

    /// The shared part of every subscribe: registers with the broker, reads the stream
    /// position (and recovers), joins presence and announces the join. Returns the
    /// `SubscribeResult` fields, or a reply error code.
    async fn open(
        &mut self,
        channel: &str,
        grant: Grant,
        wishes: &Wishes,
    ) -> Result<Map<String, Value>, u32> {
        let Grant {
            overrides,
            info: chan_info,
            expires_at,
            server_side,
        } = grant;
        let o = self.options(channel).clone();
        let presence = overrides.presence.unwrap_or(o.presence);
        let join_leave = overrides.join_leave.unwrap_or(o.join_leave);
        let force_push = overrides
            .force_push_join_leave
            .unwrap_or(o.force_push_join_leave);
        // Centrifugo: at subscribe time, "for subscriber" permissions count as granted.
        let user = self.c.user().to_owned();
        // A subscription token grants the subscription, not history: recovery needs
        // history access as Centrifugo defines it (reference §2.6).
        let history_access =
            self.caps_allow(channel, "hst") || o.allows(Action::History, &user, true);
        let presence_access =
            self.caps_allow(channel, "prs") || o.allows(Action::Presence, &user, true);
        let history = history_policy(&o);
        let recoverable = history.is_some()
            && (overrides.force_recovery.unwrap_or(o.force_recovery)
                || (wishes.recoverable && (o.allow_recovery || history_access)));
        let positioned = recoverable
            || (history.is_some()
                && (overrides.force_positioning.unwrap_or(o.force_positioning)
                    || (wishes.positioned && (o.allow_positioning || history_access))));

        // Subscribe before reading the stream: publications in between then arrive both in
        // the recovery and the queue, and the queue copy is skipped by offset. None is lost.
        self.c.attach(channel).await.map_err(|_| code::INTERNAL)?;
        let mut result = self.expiry_fields(expires_at);
        let mut last_offset = 0;
        if positioned {
            let limit = self.c.gw.settings.history_max_publication_limit;
            let query = HistoryQuery {
                since: wishes.recover.as_ref().filter(|_| recoverable),
                limit: Some(limit + 1),
                reverse: false,
            };
            let h = match self.c.history(channel, query).await {
                Ok(h) => h,
                Err(_) => {
                    self.c.detach(channel).await;
                    return Err(code::INTERNAL);
                }
            };
            // More missed than one read returns is as unrecoverable as a lost epoch.
            let recovered = h.recovered && h.publications.len() <= limit;
            if recoverable {
                result.insert("recoverable".into(), true.into());
            }
            result.insert("positioned".into(), true.into());
            result.insert("epoch".into(), h.position.epoch.clone().into());
            last_offset = h.position.offset;
            match &wishes.recover {
                Some(since) if recoverable => {
                    result.insert("was_recovering".into(), true.into());
                    if recovered {
                        result.insert("recovered".into(), true.into());
                        result.insert("offset".into(), since.offset.into());
                        result.insert(
                            "publications".into(),
                            h.publications.iter().map(|p| publication_json(p)).collect(),
                        );
                    } else if wishes.reject_unrecovered {
                        self.c.detach(channel).await;
                        return Err(code::UNRECOVERABLE_POSITION);
                    } else {
                        result.insert("offset".into(), h.position.offset.into());
                    }
                }
                _ => {
                    result.insert("offset".into(), h.position.offset.into());
                }
            }
        }
        let info = self.c.client_info(chan_info.as_ref());
        let sub = Sub {
            info,
            presence,
            join_leave,
            ext: SubState {
                expires_at,
                push_join_leave: join_leave
                    && (force_push || (wishes.join_leave && presence_access)),
                last_offset,
                server_side,
            },
        };
        self.c.add(channel, sub).await;
        Ok(result)
    }

    pub(crate) async fn subscribe(&mut self, id: u64, params: &Map<String, Value>) -> Handled {
        let Some(channel) = non_empty(params, "channel") else {
            return Err(close(disconnect::BAD_REQUEST, "bad request"));
        };
        if self.c.subs.contains_key(channel) {
            return Ok(Some(protocol::error_code(id, code::ALREADY_SUBSCRIBED)));
        }
        if !valid_channel(channel) {
            return Ok(Some(protocol::error_code(id, code::BAD_REQUEST)));
        }
        if self.c.subs.len() >= self.c.gw.settings.max_channels {
            return Ok(Some(protocol::error_code(id, code::LIMIT_EXCEEDED)));
        }
        let user = self.c.user().to_owned();
        let project = self.project()?;
        let (overrides, info, data, expires_at) = match non_empty(params, "token") {
            Some(token) => {
                match self
                    .c
                    .gw
                    .tollgate
                    .verify_subscription_token(token, project, &user, &self.c.id, channel)
                    .await
                {
                    Ok(sub) => (sub.overrides, sub.info, sub.data, sub.expires_at),
                    Err(GatewayTokenError::Expired) => {
                        return Ok(Some(protocol::error_code(id, code::TOKEN_EXPIRED)));
                    }
                    Err(GatewayTokenError::Invalid(why @ ("channel" | "sub" | "client"))) => {
                        tracing::debug!(why, "subscription token does not match");
                        return Err(close(disconnect::INVALID_TOKEN, "invalid token"));
                    }
                    Err(GatewayTokenError::Invalid(_)) => {
                        return Ok(Some(protocol::error_code(id, code::PERMISSION_DENIED)));
                    }
                    Err(GatewayTokenError::Unavailable(_)) => {
                        return Ok(Some(protocol::internal(id)));
                    }
                }
            }
            // A private `$` channel always needs a token.
            None if channel.starts_with('$') => {
                return Ok(Some(protocol::error_code(id, code::PERMISSION_DENIED)));
            }
            None => {
                let o = self.options(channel);
                let limited = o
                    .allow_user_limited_channels
                    .then(|| user_limited_allows(channel, &user))
                    .flatten();
                let allowed = limited.unwrap_or_else(|| {
                    self.caps_allow(channel, "sub") || o.allows_subscribe(&user)
                });
                if !allowed {
                    return Ok(Some(protocol::error_code(id, code::PERMISSION_DENIED)));
                }
                (Overrides::default(), None, None, None)
            }
        };
        if expires_at.is_some_and(|e| e <= self.c.now_unix()) {
            return Ok(Some(protocol::error_code(id, code::EXPIRED)));
        }
        let wishes = Wishes::from(params);
        let grant = Grant {
            overrides,
            info,
            expires_at,
            server_side: false,
        };
        match self.open(channel, grant, &wishes).await {
            Ok(mut result) => {
                if let Some(data) = data {
                    result.insert("data".into(), data);
                }
                Ok(Some(protocol::reply(
                    id,
                    "subscribe",
                    Value::Object(result),
                )))
            }
            Err(c) => Ok(Some(protocol::error_code(id, c))),
        }
    }

    /// A server-side subscription — from the connection token (`channels`/`subs`) or the
    /// server API — already granted by whoever asked for it. `request` is what the client
    /// sent for it in `connect.subs` (or the API's `recover_since`).
    pub(crate) async fn server_subscribe(
        &mut self,
        sub: &ServerSub,
        request: &Map<String, Value>,
        expires_at: Option<i64>,
    ) -> Result<Map<String, Value>, u32> {
        if self.c.subs.contains_key(&sub.channel) {
            return Err(code::ALREADY_SUBSCRIBED);
        }
        let wishes = Wishes {
            // A server-side subscription is recoverable whenever the namespace allows it.
            recoverable: true,
            positioned: true,
            ..Wishes::from(request)
        };
        let grant = Grant {
            overrides: sub.overrides,
            info: sub.info.clone(),
            expires_at,
            server_side: true,
        };
        let mut result = self.open(&sub.channel, grant, &wishes).await?;
        result.extend(self.expiry_fields(expires_at));
        if let Some(data) = &sub.data {
            result.insert("data".into(), data.clone());
        }
        Ok(result)
    }

    /// The server API's `subscribe`: a `subscribe` push, or nothing when it cannot apply.
    pub(crate) async fn api_subscribe(
        &mut self,
        sub: ServerSub,
        expire_at: Option<i64>,
        recover_since: Option<StreamPosition>,
    ) -> Option<String> {
        if self.c.subs.contains_key(&sub.channel)
            || self.c.subs.len() >= self.c.gw.settings.max_channels
            || expire_at.is_some_and(|e| e <= self.c.now_unix())
        {
            return None;
        }
        let mut request = Map::new();
        if let Some(since) = recover_since {
            request.insert("recover".into(), true.into());
            request.insert("offset".into(), since.offset.into());
            request.insert("epoch".into(), since.epoch.into());
        }
        let mut result = self
            .server_subscribe(&sub, &request, expire_at)
            .await
            .ok()?;
        // The `subscribe` push carries a position only (reference §2.4); what was recovered
        // follows it as ordinary publications.
        let recovered = result.remove("publications");
        result.remove("was_recovering");
        result.remove("recovered");
        let mut pushes = vec![protocol::push(
            &sub.channel,
            "subscribe",
            Value::Object(result),
        )];
        for publication in recovered
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            pushes.push(protocol::push(&sub.channel, "pub", publication.clone()));
        }
        Some(pushes.join("\n"))
    }

    pub(crate) async fn unsubscribe(&mut self, id: u64, params: &Map<String, Value>) -> Handled {
        let Some(channel) = non_empty(params, "channel") else {
            return Err(close(disconnect::BAD_REQUEST, "bad request"));
        };
        self.c.leave(channel).await;
        Ok(Some(protocol::reply(id, "unsubscribe", json!({}))))
    }

    pub(crate) async fn publish(&mut self, id: u64, params: &Map<String, Value>) -> Handled {
        let Some(channel) = non_empty(params, "channel") else {
            return Err(close(disconnect::BAD_REQUEST, "bad request"));
        };
        let Some(data) = params.get("data").filter(|d| !d.is_null()) else {
            return Ok(Some(protocol::error_code(id, code::BAD_REQUEST)));
        };
        if !valid_channel(channel) {
            return Ok(Some(protocol::error_code(id, code::BAD_REQUEST)));
        }
        if !self.may(Action::Publish, channel) {
            return Ok(Some(protocol::error_code(id, code::PERMISSION_DENIED)));
        }
        // Re-serialised compactly: raw payloads must not carry newlines, which delimit
        // messages in a frame.
        let data = data.to_string();
        if data.len() > self.c.gw.settings.max_publication_bytes {
            return Ok(Some(protocol::error_code(id, code::LIMIT_EXCEEDED)));
        }
        let info = match self.c.subs.get(channel) {
            Some(sub) => sub.info.clone(),
            None => self.c.client_info(None),
        };
        let history = history_policy(self.options(channel));
        let publication = NewPublication {
            data: Bytes::from(data),
            info: Some(info),
            tags: None,
            meta: None,
        };
        match self.c.publish(channel, publication, history).await {
            Ok(_) => Ok(Some(protocol::reply(id, "publish", json!({})))),
            Err(_) => Ok(Some(protocol::internal(id))),
        }
    }

    /// `presence` (`stats: false`) and `presence_stats`.
    pub(crate) async fn presence(
        &mut self,
        id: u64,
        params: &Map<String, Value>,
        stats: bool,
    ) -> Handled {
        let Some(channel) = non_empty(params, "channel") else {
            return Err(close(disconnect::BAD_REQUEST, "bad request"));
        };
        if !self.options(channel).presence {
            return Ok(Some(protocol::error_code(id, code::NOT_AVAILABLE)));
        }
        if !self.may(Action::Presence, channel) {
            return Ok(Some(protocol::error_code(id, code::PERMISSION_DENIED)));
        }
        if stats {
            return Ok(Some(match self.c.presence_stats(channel).await {
                Ok(s) => protocol::reply(
                    id,
                    "presence_stats",
                    json!({"num_clients": s.clients, "num_users": s.users}),
                ),
                Err(_) => protocol::internal(id),
            }));
        }
        Ok(Some(match self.c.presence(channel).await {
            Ok(entries) => {
                protocol::reply(id, "presence", json!({ "presence": presence_map(entries) }))
            }
            Err(_) => protocol::internal(id),
        }))
    }

    pub(crate) async fn history(&mut self, id: u64, params: &Map<String, Value>) -> Handled {
        let Some(channel) = non_empty(params, "channel") else {
            return Err(close(disconnect::BAD_REQUEST, "bad request"));
        };
        if !self.options(channel).history() {
            return Ok(Some(protocol::error_code(id, code::NOT_AVAILABLE)));
        }
        if !self.may(Action::History, channel) {
            return Ok(Some(protocol::error_code(id, code::PERMISSION_DENIED)));
        }
        let request =
            HistoryParams::parse(params, self.c.gw.settings.history_max_publication_limit);
        let (since, query) = (&request.since, request.query());
        Ok(Some(match self.c.history(channel, query).await {
            Ok(h) if since.is_some() && !h.recovered => {
                protocol::error_code(id, code::UNRECOVERABLE_POSITION)
            }
            Ok(h) => protocol::reply(
                id,
                "history",
                json!({
                    "publications": h.publications.iter().map(|p| publication_json(p)).collect::<Vec<_>>(),
                    "epoch": h.position.epoch,
                    "offset": h.position.offset,
                }),
            ),
            Err(_) => protocol::internal(id),
        }))
    }

    /// `sub_refresh`: a new subscription token for a channel the client is subscribed to.
    pub(crate) async fn sub_refresh(&mut self, id: u64, params: &Map<String, Value>) -> Handled {
        let Some(channel) = non_empty(params, "channel") else {
            return Err(close(disconnect::BAD_REQUEST, "bad request"));
        };
        let Some(token) = non_empty(params, "token") else {
            return Ok(Some(protocol::error_code(id, code::BAD_REQUEST)));
        };
        if !self.c.subs.contains_key(channel) {
            return Ok(Some(protocol::error_code(id, code::PERMISSION_DENIED)));
        }
        let user = self.c.user().to_owned();
        let project = self.project()?;
        match self
            .c
            .gw
            .tollgate
            .verify_subscription_token(token, project, &user, &self.c.id, channel)
            .await
        {
            Ok(grant) if grant.expires_at.is_some_and(|e| e <= self.c.now_unix()) => {
                Ok(Some(protocol::error_code(id, code::EXPIRED)))
            }
            Ok(grant) => {
                let result = self.expiry_fields(grant.expires_at);
                if let Some(sub) = self.c.subs.get_mut(channel) {
                    sub.ext.expires_at = grant.expires_at;
                }
                Ok(Some(protocol::reply(
                    id,
                    "sub_refresh",
                    Value::Object(result),
                )))
            }
            // Centrifugo's fixed behaviour (centrifuge#627): an expired token ends the
            // connection with 3006 rather than being accepted.
            Err(GatewayTokenError::Expired) => Err(close(
                disconnect::SUBSCRIPTION_EXPIRED,
                "subscription expired",
            )),
            Err(GatewayTokenError::Invalid(_)) => {
                Err(close(disconnect::INVALID_TOKEN, "invalid token"))
            }
            Err(GatewayTokenError::Unavailable(_)) => Ok(Some(protocol::internal(id))),
        }
    }

    /// The periodic tick: refreshes this client's presence and ends subscriptions whose
    /// expiry (plus grace) has passed: an `unsubscribe` push 2501 for client-side ones (the
    /// SDK resubscribes with a fresh token), a 3006 close for token-side ones.
    pub(crate) async fn on_tick(&mut self) -> Result<Vec<String>, Close> {
        let grace =
            i64::try_from(self.c.gw.settings.expired_sub_close_delay.as_secs()).unwrap_or(0);
        // A far-future expiry is as good as none (and must not overflow).
        let now = self.c.now_unix();
        let expired: Vec<(String, bool)> = self
            .c
            .subs
            .iter()
            .filter(|(_, s)| {
                s.ext
                    .expires_at
                    .is_some_and(|e| now > e.saturating_add(grace))
            })
            .map(|(c, s)| (c.clone(), s.ext.server_side))
            .collect();
        if expired.iter().any(|(_, server_side)| *server_side) {
            return Err(close(
                disconnect::SUBSCRIPTION_EXPIRED,
                "subscription expired",
            ));
        }
        let mut pushes = Vec::with_capacity(expired.len());
        for (channel, _) in expired {
            self.c.leave(&channel).await;
            pushes.push(protocol::push(
                &channel,
                "unsubscribe",
                json!({"code": protocol::unsubscribe::EXPIRED, "reason": "subscription expired"}),
            ));
        }
        self.c.refresh_presence().await;
        Ok(pushes)
    }
}

/// A history read's parameters, as the client protocol and the server API both take them:
/// `limit` 0 or absent reads only the stream top, a negative one everything (capped).
#[derive(Debug)]
pub struct HistoryParams {
    pub since: Option<StreamPosition>,
    pub limit: usize,
    pub reverse: bool,
}

impl HistoryParams {
    /// Reads `since`, `limit` (capped at `max`) and `reverse`.
    #[must_use]
    pub fn parse(params: &Map<String, Value>, max: usize) -> Self {
        let limit = match params.get("limit").and_then(Value::as_i64).unwrap_or(0) {
            l if l < 0 => max,
            l => usize::try_from(l).unwrap_or(max).min(max),
        };
        Self {
            since: stream_position(params.get("since")),
            limit,
            reverse: params
                .get("reverse")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }

    /// The broker query.
    #[must_use]
    pub fn query(&self) -> HistoryQuery<'_> {
        HistoryQuery {
            since: self.since.as_ref(),
            limit: Some(self.limit),
            reverse: self.reverse,
        }
    }
}

/// A `{offset, epoch}` object (history `since`, server API `recover_since`).
#[must_use]
pub fn stream_position(v: Option<&Value>) -> Option<StreamPosition> {
    let v = v?.as_object()?;
    Some(StreamPosition {
        offset: v.get("offset").and_then(Value::as_u64).unwrap_or(0),
        epoch: v
            .get("epoch")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}

/// Presence entries as Centrifugo's `{client_id: ClientInfo}` map.
#[must_use]
pub fn presence_map(entries: Vec<PresenceEntry>) -> Map<String, Value> {
    entries
        .into_iter()
        .map(|e| {
            let info = serde_json::from_slice(&e.info)
                .unwrap_or_else(|_| json!({"user": e.user, "client": e.client}));
            (e.client, info)
        })
        .collect()
}
