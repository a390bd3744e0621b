//! One WebSocket connection: the protocol state machine, its timers, and the
//! connection-level commands (`connect`, `refresh`, pings). Channel commands live in
//! [`crate::channels`].
//!
//! ```text
//!  accepted ──connect ok──► connected ──(subscribe/publish/…)──► connected
//!     │                        │  ├─ no pong within pong_timeout ─► closed 3012
//!     │                        │  ├─ expired + grace, no refresh ─► closed 3005
//!     │                        │  ├─ server-side sub expired ─────► closed 3006
//!     │                        │  ├─ queue overflowed ────────────► closed 3008
//!     │                        │  ├─ token channels changed ──────► closed 3010
//!     │                        │  ├─ invalid token / mismatch ────► closed 3500
//!     │                        │  └─ `send` (no handler) ─────────► closed 3508
//!     ├─ no connect in time ─────────────────────────────────────► closed 3502
//!     ├─ server shutting down (any state) ───────────────────────► closed 3001 (reconnect)
//!     └─ command before connect / malformed frame ───────────────► closed 3501
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use tollgate_broker::{Delivery, Event, Queue, QueueState};
use tollgate_service::gateway::{ConnectionGrant, GatewayTokenError};

use crate::Gateway;
use crate::channels::Subscription;
use crate::conn::{Budget, write};
use crate::metrics::METHODS;
use crate::protocol::{self, code, disconnect};

/// Most deliveries written in one frame.
const BATCH: usize = 256;
/// Replies to one frame are written as soon as this many bytes are waiting, so a frame of
/// many large commands (history reads) never piles up its answers in memory.
const FLUSH_BYTES: usize = 64 * 1024;

/// Replies waiting to be written, newline-joined into frames.
#[derive(Default)]
struct Outbox {
    frame: String,
}

impl Outbox {
    fn push(&mut self, reply: &str) {
        if !self.frame.is_empty() {
            self.frame.push('\n');
        }
        self.frame.push_str(reply);
    }

    /// Writes what is waiting when there is enough of it (or `force`).
    async fn flush(&mut self, socket: &mut WebSocket, force: bool) -> bool {
        if self.frame.is_empty() || (!force && self.frame.len() < FLUSH_BYTES) {
            return true;
        }
        write(socket, std::mem::take(&mut self.frame)).await
    }
}

/// Why a session ends: a close code and its reason.
pub(crate) type Close = (u16, Cow<'static, str>);

/// What a command produced.
pub(crate) type Handled = Result<Option<String>, Close>;

pub(crate) fn close(code: u16, reason: &'static str) -> Close {
    (code, Cow::Borrowed(reason))
}

pub(crate) struct Session {
    pub(crate) gw: Gateway,
    pub(crate) client: String,
    pub(crate) grant: Option<ConnectionGrant>,
    pub(crate) subs: HashMap<String, Subscription>,
    pub(crate) queue: Arc<Queue>,
    /// When the connection must be closed unless refreshed.
    expiry: Option<Instant>,
    /// When the last unanswered ping was sent.
    ping_sent: Option<Instant>,
    started: Instant,
    /// Command budget.
    budget: Budget,
    /// A failed connect leaves the connection unusable: every later command gets 3501.
    unusable: bool,
    /// Where server API commands arrive, from `connect` until the run loop takes it.
    control: Option<tokio::sync::mpsc::Receiver<crate::Control>>,
}

/// Longest expiry honoured (Centrifugo caps `ttl` the same way): a far-future `exp` or
/// `expire_at` cannot overflow a timer.
pub(crate) const MAX_TTL: i64 = 365 * 24 * 60 * 60;

pub(crate) fn unix_to_instant(unix: i64, now_unix: i64) -> Instant {
    let ahead = u64::try_from(unix.saturating_sub(now_unix).clamp(0, MAX_TTL)).unwrap_or(0);
    Instant::now() + Duration::from_secs(ahead)
}

impl Session {
    pub(crate) fn new(gw: Gateway) -> Self {
        let queue = Queue::new(gw.settings.queue_bytes);
        let budget = Budget::for_settings(&gw.settings);
        Self {
            gw,
            client: uuid::Uuid::new_v4().to_string(),
            grant: None,
            subs: HashMap::new(),
            queue,
            expiry: None,
            ping_sent: None,
            started: Instant::now(),
            budget,
            unusable: false,
            control: None,
        }
    }

    /// The connection's user (empty: anonymous or not connected).
    pub(crate) fn user(&self) -> &str {
        self.grant.as_ref().map_or("", |g| g.user.as_str())
    }

    pub(crate) fn now_unix(&self) -> i64 {
        self.gw.tollgate.now().seconds()
    }

    /// The earliest timer that ends the session, if any.
    fn next_deadline(&self) -> Option<(Instant, u16, &'static str)> {
        let s = &self.gw.settings;
        let mut best: Option<(Instant, u16, &'static str)> = None;
        let mut consider = |at: Instant, code: u16, reason: &'static str| {
            if best.is_none_or(|(b, _, _)| at < b) {
                best = Some((at, code, reason));
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

    /// Runs the session until it ends. The command handlers are boxed: an idle connection's
    /// task then holds only the loop's own state (the select over its sources), not room
    /// for the largest command in flight, which keeps idle connections to a few KB.
    pub(crate) async fn run(mut self, mut socket: WebSocket) {
        let settings = self.gw.settings.clone();
        let mut ping = tokio::time::interval_at(
            Instant::now() + settings.ping_interval,
            settings.ping_interval,
        );
        let mut tick = tokio::time::interval_at(
            Instant::now() + settings.presence_update_interval,
            settings.presence_update_interval,
        );
        let queue = self.queue.clone();
        let mut shutdown = std::pin::pin!(crate::conn::shutdown(self.gw.stopping.clone()));
        let mut timer = crate::conn::Deadline::new();
        let mut control: Option<tokio::sync::mpsc::Receiver<crate::Control>> = None;
        let close: Option<Close> = loop {
            if control.is_none() {
                control = self.control.take();
            }
            let connected = self.grant.is_some();
            // What to write this turn, then whether to close.
            let (frame, end): (Option<String>, Option<Option<Close>>) = tokio::select! {
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        match Box::pin(self.handle_frame(text.as_str(), &mut socket)).await {
                            Ok(close) => (None, close.map(Some)),
                            Err(()) => (None, Some(None)),
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        (None, Some(Some(close(disconnect::BAD_REQUEST, "protobuf is not supported"))))
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => (None, None),
                    Some(Ok(Message::Close(_)) | Err(_)) | None => (None, Some(None)),
                },
                batch = queue.next_batch(BATCH), if connected => match batch {
                    Some(batch) => match self.encode_pushes(&batch) {
                        Some(frame) => {
                            if crate::conn::write_bytes(&mut socket, frame).await {
                                (None, None)
                            } else {
                                (None, Some(None))
                            }
                        }
                        None => (None, None),
                    },
                    None if queue.state() == QueueState::Overflowed => {
                        (None, Some(Some(close(disconnect::SLOW, "slow"))))
                    }
                    None => (None, Some(None)),
                },
                _ = ping.tick(), if connected => {
                    if self.ping_sent.is_none() {
                        self.ping_sent = Some(Instant::now());
                        (Some("{}".to_owned()), None)
                    } else {
                        (None, None)
                    }
                }
                _ = tick.tick(), if connected => match Box::pin(self.on_tick()).await {
                    Ok(pushes) => ((!pushes.is_empty()).then(|| pushes.join("\n")), None),
                    Err(c) => (None, Some(Some(c))),
                },
                Some(ctrl) = async {
                    match control.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => match Box::pin(self.apply(ctrl)).await {
                    Ok(push) => (push, None),
                    Err(c) => (None, Some(Some(c))),
                },
                () = &mut shutdown => {
                    (None, Some(Some(close(disconnect::SHUTDOWN, "shutdown"))))
                }
                (code, reason) = timer.until(self.next_deadline()) => {
                    (None, Some(Some(close(code, reason))))
                }
            };
            if let Some(frame) = frame
                && !write(&mut socket, frame).await
            {
                break None;
            }
            if let Some(end) = end {
                break end;
            }
        };
        if let Some((code, reason)) = close {
            self.gw.metrics.disconnected(code);
            crate::conn::close(&mut socket, code, &reason).await;
        }
        Box::pin(self.cleanup()).await;
    }
}

impl Drop for Session {
    /// The synchronous part of cleanup, so a panicking session still leaves the registry
    /// (presence entries expire on their own).
    fn drop(&mut self) {
        if let Some(grant) = &self.grant {
            self.gw.registry.remove(&grant.user, &self.client);
        }
        self.queue.close();
    }
}

impl Session {
    async fn cleanup(&mut self) {
        if let Some(grant) = &self.grant {
            self.gw.registry.remove(&grant.user, &self.client);
        }
        self.queue.close();
        let channels: Vec<String> = self.subs.keys().cloned().collect();
        for channel in channels {
            self.leave(&channel).await;
        }
    }

    /// Handles a frame: its commands in order, writing replies as they accumulate.
    /// Returns maybe a close, or `Err` when the peer is gone.
    async fn handle_frame(
        &mut self,
        text: &str,
        socket: &mut WebSocket,
    ) -> Result<Option<Close>, ()> {
        let mut out = Outbox::default();
        let text = text.strip_suffix('\n').unwrap_or(text);
        let mut close_with = None;
        if text.trim().is_empty() {
            close_with = Some(close(disconnect::BAD_REQUEST, "bad request"));
        } else {
            for line in text.split('\n') {
                let Ok(Value::Object(command)) = serde_json::from_str::<Value>(line) else {
                    close_with = Some(close(disconnect::BAD_REQUEST, "bad request"));
                    break;
                };
                if command.is_empty() {
                    // A pong to our ping. Centrifugo is strict about unsolicited ones; being
                    // lenient is compatible with every SDK.
                    self.ping_sent = None;
                    continue;
                }
                let id = command.get("id").and_then(Value::as_u64).unwrap_or(0);
                match self.handle_command(id, &command).await {
                    Ok(Some(reply)) => {
                        out.push(&reply);
                        if !out.flush(socket, false).await {
                            return Err(());
                        }
                    }
                    Ok(None) => {}
                    Err(c) => {
                        close_with = Some(c);
                        break;
                    }
                }
            }
        }
        if out.flush(socket, true).await {
            Ok(close_with)
        } else {
            Err(())
        }
    }

    /// Handles one command: `Ok(Some(reply))`, `Ok(None)` (no reply), or `Err(close)`.
    async fn handle_command(&mut self, id: u64, command: &Map<String, Value>) -> Handled {
        let Some((index, method, params)) = METHODS
            .iter()
            .enumerate()
            .find_map(|(i, m)| command.get(*m).map(|p| (i, *m, p)))
        else {
            return Err(close(disconnect::BAD_REQUEST, "bad request"));
        };
        self.gw.metrics.command(index);
        let empty = Map::new();
        let params = params.as_object().unwrap_or(&empty);
        if self.unusable || (method != "connect" && self.grant.is_none()) {
            return Err(close(disconnect::BAD_REQUEST, "connect first"));
        }
        if method == "send" {
            // No application message handler: Centrifugo closes with "not available".
            return Err(close(disconnect::NOT_AVAILABLE, "not available"));
        }
        if id == 0 {
            return Err(close(disconnect::BAD_REQUEST, "bad request"));
        }
        if method != "connect" && !self.budget.spend() {
            return Ok(Some(protocol::error_code(id, code::TOO_MANY_REQUESTS)));
        }
        match method {
            "connect" => self.connect(id, params).await,
            "subscribe" => self.subscribe(id, params).await,
            "unsubscribe" => self.unsubscribe(id, params).await,
            "publish" => self.publish(id, params).await,
            "presence" => self.presence(id, params, false).await,
            "presence_stats" => self.presence(id, params, true).await,
            "history" => self.history(id, params).await,
            "refresh" => self.refresh(id, params).await,
            "sub_refresh" => self.sub_refresh(id, params).await,
            // No RPC handler is configured; protocol v2 has no `ping` command.
            _ => Ok(Some(protocol::error_code(id, code::NOT_AVAILABLE))),
        }
    }

    /// `expires`/`ttl` for an expiration time.
    pub(crate) fn expiry_fields(&self, exp: Option<i64>) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(exp) = exp {
            m.insert("expires".into(), true.into());
            m.insert(
                "ttl".into(),
                exp.saturating_sub(self.now_unix()).clamp(0, MAX_TTL).into(),
            );
        }
        m
    }

    async fn connect(&mut self, id: u64, params: &Map<String, Value>) -> Handled {
        if self.grant.is_some() {
            return Err(close(disconnect::BAD_REQUEST, "already connected"));
        }
        let Some(token) = non_empty(params, "token") else {
            return Err(close(disconnect::BAD_REQUEST, "bad request"));
        };
        let grant = match self.gw.tollgate.verify_connection_token(token).await {
            Ok(grant) => grant,
            Err(GatewayTokenError::Expired) => {
                self.unusable = true;
                return Ok(Some(protocol::error_code(id, code::TOKEN_EXPIRED)));
            }
            Err(GatewayTokenError::Invalid(why)) => {
                tracing::debug!(why, "connection token refused");
                return Err(close(disconnect::INVALID_TOKEN, "invalid token"));
            }
            Err(GatewayTokenError::Unavailable(e)) => {
                tracing::warn!(error = %e, "token check unavailable");
                self.unusable = true;
                return Ok(Some(protocol::internal(id)));
            }
        };
        let now = self.now_unix();
        if grant.expires_at.is_some_and(|e| e <= now) {
            // The token is valid, but the connection it describes has already expired.
            self.unusable = true;
            return Ok(Some(protocol::error_code(id, code::EXPIRED)));
        }
        if grant.subs.len() > self.gw.settings.max_channels {
            return Err(close(disconnect::CHANNEL_LIMIT, "channel limit"));
        }
        let Some(rx) = self.gw.register(&grant, &self.client) else {
            return Err(close(disconnect::CONNECTION_LIMIT, "connection limit"));
        };
        self.control = Some(rx);
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
        let server_subs = grant.subs.clone();
        self.grant = Some(grant);
        // Server-side subscriptions from the token, recovering where the client says it
        // was (`connect.subs`).
        let recover = params.get("subs").and_then(Value::as_object);
        let mut subs = Map::new();
        for sub in server_subs {
            let request = recover
                .and_then(|r| r.get(&sub.channel))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            match self.server_subscribe(&sub, &request, None).await {
                Ok(r) => {
                    subs.insert(sub.channel.clone(), Value::Object(r));
                }
                Err(code) => {
                    tracing::debug!(code, channel = %sub.channel, "token subscription failed");
                    self.abandon_connect().await;
                    return Ok(Some(protocol::error_code(id, code)));
                }
            }
        }
        if !subs.is_empty() {
            result.insert("subs".into(), Value::Object(subs));
        }
        Ok(Some(protocol::reply(id, "connect", Value::Object(result))))
    }

    /// Undoes a connect that failed part-way (a token subscription refused): the
    /// connection goes back to unauthenticated, so the stale timer closes it, and is
    /// unusable meanwhile.
    async fn abandon_connect(&mut self) {
        let channels: Vec<String> = self.subs.keys().cloned().collect();
        for channel in channels {
            self.leave(&channel).await;
        }
        if let Some(grant) = self.grant.take() {
            self.gw.registry.remove(&grant.user, &self.client);
        }
        self.control = None;
        self.expiry = None;
        self.unusable = true;
    }

    async fn refresh(&mut self, id: u64, params: &Map<String, Value>) -> Handled {
        let Some(token) = non_empty(params, "token") else {
            return Err(close(disconnect::BAD_REQUEST, "bad request"));
        };
        let user = self.user().to_owned();
        let project = self.grant.as_ref().and_then(|g| g.project);
        match self.gw.tollgate.verify_connection_token(token).await {
            Ok(grant) if grant.user == user && grant.project == project => {
                let now = self.now_unix();
                if grant.expires_at.is_some_and(|e| e <= now) {
                    // centrifuge#628: an already-past expiry reconnects rather than 110.
                    return Err(close(disconnect::CONNECTION_EXPIRED, "connection expired"));
                }
                let old: Vec<&str> = self.token_channels();
                let mut new: Vec<&str> = grant.subs.iter().map(|s| s.channel.as_str()).collect();
                new.sort_unstable();
                if old != new {
                    // The token's server-side channel set changed (centrifugo#543).
                    return Err(close(disconnect::INSUFFICIENT_STATE, "insufficient state"));
                }
                self.expiry = grant.expires_at.map(|e| unix_to_instant(e, now));
                let result = self.expiry_fields(grant.expires_at);
                self.grant = Some(grant);
                Ok(Some(protocol::reply(id, "refresh", Value::Object(result))))
            }
            Ok(_) | Err(GatewayTokenError::Invalid(_)) => {
                Err(close(disconnect::INVALID_TOKEN, "invalid token"))
            }
            Err(GatewayTokenError::Expired) => {
                Err(close(disconnect::CONNECTION_EXPIRED, "connection expired"))
            }
            Err(GatewayTokenError::Unavailable(_)) => Ok(Some(protocol::internal(id))),
        }
    }

    /// The channels the connection token subscribed to, sorted.
    fn token_channels(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .grant
            .as_ref()
            .map(|g| g.subs.iter().map(|s| s.channel.as_str()).collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Applies a server API command; returns pushes to send, or a close.
    async fn apply(&mut self, control: crate::Control) -> Result<Option<String>, Close> {
        use crate::Control;
        match control {
            Control::Disconnect { code, reason } => Err((code, reason.into())),
            Control::Subscribe(command) => {
                let crate::SubscribeCommand {
                    sub,
                    expire_at,
                    recover_since,
                } = *command;
                Ok(self.api_subscribe(sub, expire_at, recover_since).await)
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
                    self.leave(&ch).await;
                    pushes.push(protocol::push(
                        &ch,
                        "unsubscribe",
                        json!({"code": protocol::unsubscribe::SERVER, "reason": "server unsubscribe"}),
                    ));
                }
                Ok((!pushes.is_empty()).then(|| pushes.join("\n")))
            }
            Control::Refresh { expired: true, .. } => {
                Err(close(disconnect::CONNECTION_EXPIRED, "connection expired"))
            }
            Control::Refresh { expire_at, .. } => {
                let now = self.now_unix();
                self.expiry = expire_at.map(|e| unix_to_instant(e, now));
                let mut result = self.expiry_fields(expire_at);
                if expire_at.is_none() {
                    result.insert("expires".into(), false.into());
                }
                Ok(Some(json!({"push": {"refresh": result}}).to_string()))
            }
        }
    }

    /// Pushes for a batch of deliveries, one per line, skipping what this connection must
    /// not see: channels it has left, publications it already got through recovery, and
    /// join/leave it did not ask for. A publication's push is encoded once and shared by
    /// every subscriber ([`Publication::encoded`]); payloads are raw JSON, inserted as is.
    fn encode_pushes(&mut self, batch: &[Delivery]) -> Option<Bytes> {
        let mut pushes: Vec<Bytes> = Vec::with_capacity(batch.len());
        for d in batch {
            let Some(sub) = self.subs.get_mut(d.channel.as_ref()) else {
                continue;
            };
            match &d.event {
                Event::Publication(p) => {
                    if p.offset > 0 {
                        if p.offset <= sub.last_offset {
                            continue;
                        }
                        sub.last_offset = p.offset;
                    }
                    pushes.push(p.encoded.get_or_init(|| encode_pub(&d.channel, p)).clone());
                }
                // Centrifugo's protocol has no push for a member's state change.
                Event::Update(_) => {}
                Event::Join(info) | Event::Leave(info) => {
                    if !sub.push_join_leave {
                        continue;
                    }
                    let kind = if matches!(d.event, Event::Join(_)) {
                        "join"
                    } else {
                        "leave"
                    };
                    let channel = Value::from(d.channel.as_ref()).to_string();
                    pushes.push(Bytes::from(format!(
                        r#"{{"push":{{"channel":{channel},"{kind}":{{"info":{}}}}}}}"#,
                        String::from_utf8_lossy(info)
                    )));
                }
            }
        }
        self.gw.metrics.delivered(pushes.len());
        match pushes.len() {
            0 => None,
            1 => pushes.pop(),
            _ => Some(Bytes::from(pushes.join(&b'\n'))),
        }
    }
}

/// A publication's push: `{"push":{"channel":…,"pub":{"data":…,"info":…,"offset":…,"tags":…}}}`.
fn encode_pub(channel: &str, p: &tollgate_broker::Publication) -> Bytes {
    let channel = Value::from(channel).to_string();
    let mut frame = String::with_capacity(64 + channel.len() + p.data.len());
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
    if let Some(tags) = &p.tags {
        frame.push_str(r#","tags":"#);
        frame.push_str(&String::from_utf8_lossy(tags));
    }
    frame.push_str("}}}");
    Bytes::from(frame)
}

/// A string parameter, if present and not empty.
pub(crate) fn non_empty<'p>(params: &'p Map<String, Value>, key: &str) -> Option<&'p str> {
    params
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}
