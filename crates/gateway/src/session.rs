//! One WebSocket connection: the protocol state machine.
//!
//! ```text
//!  accepted ──connect ok──► connected ──(subscribe/publish/…)──► connected
//!     │                        │  ├─ no pong within pong_timeout ─► closed 3012
//!     │                        │  ├─ expired + grace, no refresh ─► closed 3005
//!     │                        │  ├─ queue overflowed ────────────► closed 3008
//!     │                        │  └─ invalid token / mismatch ────► closed 3500
//!     ├─ no connect in time ─────────────────────────────────────► closed 3502
//!     ├─ server shutting down (any state) ───────────────────────► closed 3001 (reconnect)
//!     └─ command before connect / malformed frame ───────────────► closed 3501
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use tollgate_broker::{Delivery, Event, Queue, QueueState};
use tollgate_service::gateway::{ConnectionGrant, GatewayTokenError};

use crate::Gateway;
use crate::protocol::{self, code, disconnect};

/// Longest channel name accepted (bytes): PubSub channel names are up to 250 characters
/// of any Unicode.
const MAX_CHANNEL_BYTES: usize = 1024;
/// Most deliveries written in one frame.
const BATCH: usize = 256;

struct Subscription {
    can_publish: bool,
}

pub(crate) struct Session {
    gw: Gateway,
    client: String,
    grant: Option<ConnectionGrant>,
    subs: HashMap<String, Subscription>,
    queue: Arc<Queue>,
    /// When the connection must be closed unless refreshed.
    expiry: Option<Instant>,
    /// When the last unanswered ping was sent.
    ping_sent: Option<Instant>,
    started: Instant,
}

/// What handling a frame produced: replies to send, then maybe a close.
struct Outcome {
    replies: Vec<String>,
    close: Option<(u16, &'static str)>,
}

fn unix_to_instant(unix: i64, now_unix: i64) -> Instant {
    let ahead = u64::try_from(unix - now_unix).unwrap_or(0);
    Instant::now() + Duration::from_secs(ahead)
}

impl Session {
    pub(crate) fn new(gw: Gateway) -> Self {
        let queue = Queue::new(gw.settings.queue_bytes);
        Self {
            gw,
            client: uuid::Uuid::new_v4().to_string(),
            grant: None,
            subs: HashMap::new(),
            queue,
            expiry: None,
            ping_sent: None,
            started: Instant::now(),
        }
    }

    fn next_deadline(&self) -> (Instant, u16, &'static str) {
        let s = &self.gw.settings;
        let mut best = (
            Instant::now() + Duration::from_secs(3600),
            disconnect::SHUTDOWN,
            "",
        );
        let mut consider = |at: Instant, code: u16, reason: &'static str| {
            if at < best.0 {
                best = (at, code, reason);
            }
        };
        if self.grant.is_none() {
            consider(self.started + s.stale_timeout, disconnect::STALE, "stale");
        }
        if let Some(sent) = self.ping_sent {
            consider(sent + s.pong_timeout, disconnect::NO_PONG, "no pong");
        }
        if let Some(expiry) = self.expiry {
            consider(
                expiry + s.expired_close_delay,
                disconnect::CONNECTION_EXPIRED,
                "connection expired",
            );
        }
        best
    }

    pub(crate) async fn run(mut self, mut socket: WebSocket) {
        let mut ping = tokio::time::interval_at(
            Instant::now() + self.gw.settings.ping_interval,
            self.gw.settings.ping_interval,
        );
        let queue = self.queue.clone();
        let mut stopping = self.gw.stopping.clone();
        let mut control: Option<tokio::sync::mpsc::Receiver<crate::Control>> = None;
        let close: Option<(u16, std::borrow::Cow<'static, str>)> = loop {
            if control.is_none()
                && let Some(grant) = &self.grant
            {
                control = Some(self.gw.registry.add(&grant.user, &self.client));
            }
            let (deadline, timer_code, timer_reason) = self.next_deadline();
            let connected = self.grant.is_some();
            tokio::select! {
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        let outcome = self.handle_frame(text.as_str()).await;
                        if !outcome.replies.is_empty() {
                            let frame = outcome.replies.join("\n");
                            if socket.send(Message::Text(frame.into())).await.is_err() {
                                break None;
                            }
                        }
                        if let Some((code, reason)) = outcome.close {
                            break Some((code, reason.into()));
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        break Some((disconnect::BAD_REQUEST, "protobuf is not supported".into()));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                },
                batch = queue.next_batch(BATCH), if connected => match batch {
                    Some(batch) => {
                        let frame = encode_pushes(&batch);
                        if socket.send(Message::Text(frame.into())).await.is_err() {
                            break None;
                        }
                    }
                    None => {
                        if queue.state() == QueueState::Overflowed {
                            break Some((disconnect::SLOW, "slow".into()));
                        }
                        break None;
                    }
                },
                _ = ping.tick(), if connected => {
                    if self.ping_sent.is_none() {
                        if socket.send(Message::Text("{}".into())).await.is_err() {
                            break None;
                        }
                        self.ping_sent = Some(Instant::now());
                    }
                }
                Some(ctrl) = async {
                    match control.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match self.apply(ctrl).await {
                        Ok(Some(push)) => {
                            if socket.send(Message::Text(push.into())).await.is_err() {
                                break None;
                            }
                        }
                        Ok(None) => {}
                        Err(close) => break Some(close),
                    }
                }
                Ok(()) = stopping.changed() => {
                    break Some((disconnect::SHUTDOWN, "shutdown".into()));
                }
                () = tokio::time::sleep_until(deadline) => {
                    if timer_code != disconnect::SHUTDOWN {
                        break Some((timer_code, timer_reason.into()));
                    }
                }
            }
        };
        if let Some((code, reason)) = close {
            let reason: &str = &reason;
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })))
                .await;
        }
        self.cleanup().await;
    }

    async fn cleanup(&mut self) {
        if let Some(grant) = &self.grant {
            self.gw.registry.remove(&grant.user, &self.client);
        }
        self.queue.close();
        for channel in self.subs.keys() {
            let _ = self.gw.broker.unsubscribe(channel, &self.queue).await;
        }
    }

    /// Applies a server API command; returns a push to send, or a close.
    async fn apply(
        &mut self,
        control: crate::Control,
    ) -> Result<Option<String>, (u16, std::borrow::Cow<'static, str>)> {
        use crate::Control;
        match control {
            Control::Disconnect { code, reason } => Err((code, reason.into())),
            Control::Subscribe { channel } => {
                if self.subs.contains_key(&channel)
                    || self
                        .gw
                        .broker
                        .subscribe(&channel, &self.queue)
                        .await
                        .is_err()
                {
                    return Ok(None);
                }
                let can_publish = self.caps_allow(&channel, "pub");
                let push = json!({"push": {"channel": channel, "subscribe": {}}}).to_string();
                self.subs.insert(channel, Subscription { can_publish });
                Ok(Some(push))
            }
            Control::Unsubscribe { channel } => {
                let channels: Vec<String> = if channel.is_empty() {
                    self.subs.keys().cloned().collect()
                } else {
                    self.subs
                        .contains_key(&channel)
                        .then_some(channel)
                        .into_iter()
                        .collect()
                };
                let mut pushes = Vec::new();
                for ch in channels {
                    self.subs.remove(&ch);
                    let _ = self.gw.broker.unsubscribe(&ch, &self.queue).await;
                    pushes.push(
                        json!({"push": {"channel": ch, "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}})
                            .to_string(),
                    );
                }
                Ok((!pushes.is_empty()).then(|| pushes.join("\n")))
            }
            Control::Refresh { expired: true, .. } => {
                Err((disconnect::CONNECTION_EXPIRED, "connection expired".into()))
            }
            Control::Refresh { expire_at, .. } => {
                let now = self.gw.tollgate.now().seconds();
                self.expiry = expire_at.map(|e| unix_to_instant(e, now));
                let mut result = self.expiry_fields(expire_at);
                if expire_at.is_none() {
                    result.insert("expires".into(), false.into());
                }
                Ok(Some(json!({"push": {"refresh": result}}).to_string()))
            }
        }
    }

    async fn handle_frame(&mut self, text: &str) -> Outcome {
        let mut out = Outcome {
            replies: Vec::new(),
            close: None,
        };
        let text = text.trim();
        if text.is_empty() {
            out.close = Some((disconnect::BAD_REQUEST, "bad request"));
            return out;
        }
        for line in text.split('\n') {
            let Ok(Value::Object(command)) = serde_json::from_str::<Value>(line) else {
                out.close = Some((disconnect::BAD_REQUEST, "bad request"));
                return out;
            };
            if command.is_empty() {
                // A pong to our ping.
                self.ping_sent = None;
                continue;
            }
            let id = command.get("id").and_then(Value::as_u64).unwrap_or(0);
            match self.handle_command(id, &command).await {
                Ok(Some(reply)) => out.replies.push(reply),
                Ok(None) => {}
                Err(close) => {
                    out.close = Some(close);
                    return out;
                }
            }
        }
        out
    }

    /// Handles one command: `Ok(Some(reply))`, `Ok(None)` (no reply), or `Err(close)`.
    async fn handle_command(
        &mut self,
        id: u64,
        command: &Map<String, Value>,
    ) -> Result<Option<String>, (u16, &'static str)> {
        const METHODS: [&str; 12] = [
            "connect",
            "subscribe",
            "unsubscribe",
            "publish",
            "presence",
            "presence_stats",
            "history",
            "ping",
            "send",
            "rpc",
            "refresh",
            "sub_refresh",
        ];
        let Some((method, params)) = METHODS
            .iter()
            .find_map(|m| command.get(*m).map(|p| (*m, p)))
        else {
            return Ok(Some(protocol::error(
                id,
                code::METHOD_NOT_FOUND,
                "method not found",
            )));
        };
        let empty = Map::new();
        let params = params.as_object().unwrap_or(&empty);
        if method != "connect" && self.grant.is_none() {
            return Err((disconnect::BAD_REQUEST, "connect first"));
        }
        match method {
            "connect" => self.connect(id, params).await,
            "subscribe" => self.subscribe(id, params).await,
            "unsubscribe" => self.unsubscribe(id, params).await,
            "publish" => self.publish(id, params).await,
            "refresh" => self.refresh(id, params).await,
            "sub_refresh" => self.sub_refresh(id, params).await,
            "ping" => Ok(Some(protocol::reply(id, "ping", json!({})))),
            "send" => Ok(None),
            _ => Ok(Some(protocol::error(
                id,
                code::NOT_AVAILABLE,
                "not available",
            ))),
        }
    }

    fn expiry_fields(&self, exp: Option<i64>) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(exp) = exp {
            let now = self.gw.tollgate.now().seconds();
            m.insert("expires".into(), true.into());
            m.insert("ttl".into(), (exp - now).max(0).into());
        }
        m
    }

    async fn connect(
        &mut self,
        id: u64,
        params: &Map<String, Value>,
    ) -> Result<Option<String>, (u16, &'static str)> {
        if self.grant.is_some() {
            return Err((disconnect::BAD_REQUEST, "already connected"));
        }
        let Some(token) = non_empty(params, "token") else {
            return Err((disconnect::BAD_REQUEST, "bad request"));
        };
        match self.gw.tollgate.verify_connection_token(token).await {
            Ok(grant) => {
                let now = self.gw.tollgate.now().seconds();
                self.expiry = grant.expires_at.map(|e| unix_to_instant(e, now));
                let mut result = self.expiry_fields(grant.expires_at);
                result.insert("client".into(), self.client.clone().into());
                result.insert(
                    "version".into(),
                    format!("tollgate {}", env!("CARGO_PKG_VERSION")).into(),
                );
                result.insert(
                    "ping".into(),
                    self.gw.settings.ping_interval.as_secs().into(),
                );
                result.insert("pong".into(), true.into());
                self.grant = Some(grant);
                Ok(Some(protocol::reply(id, "connect", Value::Object(result))))
            }
            Err(GatewayTokenError::Expired) => Ok(Some(protocol::error(
                id,
                code::TOKEN_EXPIRED,
                "token expired",
            ))),
            Err(GatewayTokenError::Invalid(why)) => {
                tracing::debug!(why, "connection token refused");
                Err((disconnect::INVALID_TOKEN, "invalid token"))
            }
            Err(GatewayTokenError::Unavailable(e)) => {
                tracing::warn!(error = %e, "token check unavailable");
                Ok(Some(protocol::internal(id)))
            }
        }
    }

    fn caps_allow(&self, channel: &str, what: &str) -> bool {
        let Some(grant) = &self.grant else {
            return false;
        };
        // Centrifugo applies the first capability object that lists the channel.
        grant
            .caps
            .iter()
            .find(|c| c.channels.iter().any(|ch| ch == channel))
            .is_some_and(|c| c.allow.iter().any(|a| a == what))
    }

    async fn subscribe(
        &mut self,
        id: u64,
        params: &Map<String, Value>,
    ) -> Result<Option<String>, (u16, &'static str)> {
        let Some(channel) = params.get("channel").and_then(Value::as_str).filter(|c| {
            !c.is_empty() && c.len() <= MAX_CHANNEL_BYTES && !c.chars().any(char::is_control)
        }) else {
            return Ok(Some(protocol::error(id, code::BAD_REQUEST, "bad request")));
        };
        if self.subs.contains_key(channel) {
            return Ok(Some(protocol::error(
                id,
                code::ALREADY_SUBSCRIBED,
                "already subscribed",
            )));
        }
        if self.subs.len() >= self.gw.settings.max_channels {
            return Ok(Some(protocol::error(
                id,
                code::LIMIT_EXCEEDED,
                "limit exceeded",
            )));
        }
        let Some(grant) = &self.grant else {
            return Err((disconnect::BAD_REQUEST, "connect first"));
        };
        let token = non_empty(params, "token");
        let mut result = Map::new();
        match token {
            Some(token) => {
                match self
                    .gw
                    .tollgate
                    .verify_subscription_token(
                        token,
                        grant.project,
                        &grant.user,
                        &self.client,
                        channel,
                    )
                    .await
                {
                    Ok(sub) => result = self.expiry_fields(sub.expires_at),
                    Err(GatewayTokenError::Expired) => {
                        return Ok(Some(protocol::error(
                            id,
                            code::TOKEN_EXPIRED,
                            "token expired",
                        )));
                    }
                    Err(GatewayTokenError::Invalid(why @ ("channel" | "sub" | "client"))) => {
                        tracing::debug!(why, "subscription token does not match");
                        return Err((disconnect::INVALID_TOKEN, "invalid token"));
                    }
                    Err(GatewayTokenError::Invalid(_)) => {
                        return Ok(Some(protocol::error(
                            id,
                            code::PERMISSION_DENIED,
                            "permission denied",
                        )));
                    }
                    Err(GatewayTokenError::Unavailable(_)) => {
                        return Ok(Some(protocol::internal(id)));
                    }
                }
            }
            // Without a token: only a capability of the connection token opens a channel,
            // and a private `$` channel always needs a token. Deny by default.
            None if !channel.starts_with('$') && self.caps_allow(channel, "sub") => {}
            None => {
                return Ok(Some(protocol::error(
                    id,
                    code::PERMISSION_DENIED,
                    "permission denied",
                )));
            }
        }
        if self
            .gw
            .broker
            .subscribe(channel, &self.queue)
            .await
            .is_err()
        {
            return Ok(Some(protocol::internal(id)));
        }
        let can_publish = self.caps_allow(channel, "pub");
        self.subs
            .insert(channel.to_owned(), Subscription { can_publish });
        Ok(Some(protocol::reply(
            id,
            "subscribe",
            Value::Object(result),
        )))
    }

    async fn unsubscribe(
        &mut self,
        id: u64,
        params: &Map<String, Value>,
    ) -> Result<Option<String>, (u16, &'static str)> {
        let Some(channel) = params.get("channel").and_then(Value::as_str) else {
            return Ok(Some(protocol::error(id, code::BAD_REQUEST, "bad request")));
        };
        if self.subs.remove(channel).is_some() {
            let _ = self.gw.broker.unsubscribe(channel, &self.queue).await;
        }
        Ok(Some(protocol::reply(id, "unsubscribe", json!({}))))
    }

    async fn publish(
        &mut self,
        id: u64,
        params: &Map<String, Value>,
    ) -> Result<Option<String>, (u16, &'static str)> {
        let (Some(channel), Some(data)) = (
            params.get("channel").and_then(Value::as_str),
            params.get("data"),
        ) else {
            return Ok(Some(protocol::error(id, code::BAD_REQUEST, "bad request")));
        };
        // Publishing needs the `pub` capability of the connection token.
        let allowed = self
            .subs
            .get(channel)
            .map_or_else(|| self.caps_allow(channel, "pub"), |s| s.can_publish);
        if !allowed {
            return Ok(Some(protocol::error(
                id,
                code::PERMISSION_DENIED,
                "permission denied",
            )));
        }
        let Some(grant) = &self.grant else {
            return Err((disconnect::BAD_REQUEST, "connect first"));
        };
        let mut info = json!({"user": grant.user, "client": self.client});
        if let Some(conn_info) = &grant.info {
            info["conn_info"] = conn_info.clone();
        }
        // Re-serialised compactly: raw payloads must not carry newlines, which delimit
        // messages in a frame.
        let data = Bytes::from(data.to_string());
        let info = Bytes::from(info.to_string());
        match self
            .gw
            .broker
            .publish(channel, data, Some(info), None)
            .await
        {
            Ok(_) => Ok(Some(protocol::reply(id, "publish", json!({})))),
            Err(_) => Ok(Some(protocol::internal(id))),
        }
    }

    /// `sub_refresh`: a new subscription token for a channel the client is subscribed to.
    async fn sub_refresh(
        &mut self,
        id: u64,
        params: &Map<String, Value>,
    ) -> Result<Option<String>, (u16, &'static str)> {
        let Some(channel) = non_empty(params, "channel") else {
            return Err((disconnect::BAD_REQUEST, "bad request"));
        };
        let Some(token) = non_empty(params, "token") else {
            return Ok(Some(protocol::error(id, code::BAD_REQUEST, "bad request")));
        };
        if !self.subs.contains_key(channel) {
            return Ok(Some(protocol::error(
                id,
                code::PERMISSION_DENIED,
                "permission denied",
            )));
        }
        let Some(grant) = &self.grant else {
            return Err((disconnect::BAD_REQUEST, "connect first"));
        };
        match self
            .gw
            .tollgate
            .verify_subscription_token(token, grant.project, &grant.user, &self.client, channel)
            .await
        {
            Ok(sub) => Ok(Some(protocol::reply(
                id,
                "sub_refresh",
                Value::Object(self.expiry_fields(sub.expires_at)),
            ))),
            // Centrifugo's fixed behaviour (centrifuge#627): an expired token ends the
            // subscription's connection with 3006 rather than being accepted.
            Err(GatewayTokenError::Expired) => {
                Err((disconnect::SUBSCRIPTION_EXPIRED, "subscription expired"))
            }
            Err(GatewayTokenError::Invalid(_)) => Err((disconnect::INVALID_TOKEN, "invalid token")),
            Err(GatewayTokenError::Unavailable(_)) => Ok(Some(protocol::internal(id))),
        }
    }

    async fn refresh(
        &mut self,
        id: u64,
        params: &Map<String, Value>,
    ) -> Result<Option<String>, (u16, &'static str)> {
        let Some(token) = non_empty(params, "token") else {
            return Err((disconnect::BAD_REQUEST, "bad request"));
        };
        let user = self
            .grant
            .as_ref()
            .map(|g| g.user.clone())
            .unwrap_or_default();
        match self.gw.tollgate.verify_connection_token(token).await {
            Ok(grant) if grant.user == user => {
                let now = self.gw.tollgate.now().seconds();
                self.expiry = grant.expires_at.map(|e| unix_to_instant(e, now));
                let result = self.expiry_fields(grant.expires_at);
                self.grant = Some(grant);
                Ok(Some(protocol::reply(id, "refresh", Value::Object(result))))
            }
            Ok(_) | Err(GatewayTokenError::Invalid(_)) => {
                Err((disconnect::INVALID_TOKEN, "invalid token"))
            }
            Err(GatewayTokenError::Expired) => {
                Err((disconnect::CONNECTION_EXPIRED, "connection expired"))
            }
            Err(GatewayTokenError::Unavailable(_)) => Ok(Some(protocol::internal(id))),
        }
    }
}

/// A string parameter, if present and not empty.
fn non_empty<'p>(params: &'p Map<String, Value>, key: &str) -> Option<&'p str> {
    params
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Pushes for a batch of deliveries, one per line. Payloads are raw JSON, inserted as is.
fn encode_pushes(batch: &[Delivery]) -> String {
    let mut frame = String::new();
    for (i, d) in batch.iter().enumerate() {
        if i > 0 {
            frame.push('\n');
        }
        let channel = Value::from(d.channel.as_ref()).to_string();
        match &d.event {
            Event::Publication(p) => {
                frame.push_str(r#"{"push":{"channel":"#);
                frame.push_str(&channel);
                frame.push_str(r#","pub":{"data":"#);
                frame.push_str(&String::from_utf8_lossy(&p.data));
                if let Some(info) = &p.info {
                    frame.push_str(r#","info":"#);
                    frame.push_str(&String::from_utf8_lossy(info));
                }
                if p.offset > 0 {
                    frame.push_str(&format!(r#","offset":{}"#, p.offset));
                }
                frame.push_str("}}}");
            }
            Event::Join(info) | Event::Leave(info) => {
                let kind = if matches!(d.event, Event::Join(_)) {
                    "join"
                } else {
                    "leave"
                };
                frame.push_str(&format!(
                    r#"{{"push":{{"channel":{channel},"{kind}":{{"info":{}}}}}}}"#,
                    String::from_utf8_lossy(info)
                ));
            }
        }
    }
    frame
}
