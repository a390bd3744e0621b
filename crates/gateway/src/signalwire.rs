//! SignalWire's PubSub/Chat protocol: JSON-RPC 2.0 over a WebSocket on `/`, as
//! `@signalwire/js` v3 `PubSub.Client` and `Chat.Client` speak it.
//!
//! ```text
//!  accepted ──signalwire.connect ok──► connected ──(chat.* / reauthenticate)──► connected
//!     │            │                      ├─ token expired + grace, no reauth ─► closed 4001
//!     │            └─ bad token ──────────┤  error -32002, then closed 4003
//!     │                                   ├─ no ping result within pong_timeout ► closed 4008
//!     │                                   └─ queue overflowed ─────────────────► closed 4008
//!     ├─ no connect within stale_timeout ────────────────────────────────────► closed 4008
//!     └─ server shutting down ───────────────────────────────────────────────► closed 1012
//! ```
//!
//! Channels are the gateway's channels: a message published here reaches Centrifugo
//! subscribers of the same channel and the other way round. A SignalWire message's
//! `content` is the publication's `data`, its `meta` travels beside it (and as Centrifugo
//! `tags` when every value is a string), and the publisher's member id and state are the
//! publication's `info` (`user`, `chan_info`/`conn_info`). Permissions are the token's
//! channel grants: `read` to subscribe, list members and read messages, `write` to publish.
//!
//! The client never re-sends `chat.subscribe` after a reconnect; it sends the `protocol`
//! it was given instead, so a closed session leaves its subscriptions in
//! [`Resumes`] for a short while, keyed by that protocol.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use tollgate_broker::{
    Delivery, Event, HistoryQuery, NewPublication, Publication, Queue, QueueState,
};
use tollgate_service::gateway::{ConnectionGrant, GatewayTokenError};

use crate::Gateway;
use crate::conn::{Budget, write};
use crate::session::{MAX_TTL, unix_to_instant};

/// SignalWire's client drops the socket when a server ping is not followed by another
/// within 15 s, so pings go out well inside that.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// How long a closed session's subscriptions wait for the client to reconnect.
const RESUME_FOR: Duration = Duration::from_secs(60);
/// Most sessions waiting to be resumed (each at most `max_channels` names and states).
const MAX_RESUMES: usize = 10_000;
/// Most sessions of one member waiting to be resumed: a member reconnecting in a loop
/// replaces its own entries instead of filling the map.
const MAX_RESUMES_PER_MEMBER: usize = 8;
/// Largest member state (serialised), as for the token's `state`.
const MAX_STATE_BYTES: usize = 2000;
/// Messages per `chat.messages.get` page.
const PAGE: usize = 50;
/// Most deliveries written per turn of the loop.
const BATCH: usize = 256;

/// JSON-RPC error codes.
mod rpc {
    pub(super) const INVALID_REQUEST: i64 = -32600;
    pub(super) const METHOD_NOT_FOUND: i64 = -32601;
    pub(super) const INVALID_PARAMS: i64 = -32602;
    pub(super) const INTERNAL: i64 = -32603;
    /// SignalWire: authentication failed or required.
    pub(super) const AUTH: i64 = -32002;
    /// SignalWire: the token does not permit this.
    pub(super) const FORBIDDEN: i64 = -32003;
}

/// Close codes (the application range: the SDK reconnects after any server close).
mod close {
    pub(super) const NORMAL: u16 = 1000;
    pub(super) const RESTART: u16 = 1012;
    pub(super) const TRY_AGAIN: u16 = 1013;
    pub(super) const EXPIRED: u16 = 4001;
    pub(super) const AUTH_FAILED: u16 = 4003;
    pub(super) const UNRESPONSIVE: u16 = 4008;
    pub(super) const BAD_MESSAGE: u16 = 4400;
}

/// Event kinds a subscription asked for (`events` of `chat.subscribe`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Events {
    message: bool,
    joined: bool,
    updated: bool,
    left: bool,
}

impl Events {
    fn from(list: Option<&Value>) -> Self {
        let mut e = Self::default();
        for name in list.and_then(Value::as_array).into_iter().flatten() {
            match name.as_str() {
                Some("chat.message" | "chat.channel.message") => e.message = true,
                Some("chat.member.joined") => e.joined = true,
                Some("chat.member.updated") => e.updated = true,
                Some("chat.member.left") => e.left = true,
                _ => {}
            }
        }
        // The SDK always subscribes with at least a message listener.
        if e == Self::default() {
            e.message = true;
        }
        e
    }

    fn merge(&mut self, other: Self) {
        self.message |= other.message;
        self.joined |= other.joined;
        self.updated |= other.updated;
        self.left |= other.left;
    }
}

#[derive(Debug)]
struct Sub {
    events: Events,
    /// This member's `ClientInfo` in the channel (its state as `chan_info`).
    info: Bytes,
}

/// What a reconnecting client gets back: its channels, events and states.
#[derive(Debug, Clone)]
struct Resume {
    project: Option<tollgate_token::ProjectId>,
    member: String,
    channels: Vec<(String, Events)>,
    states: HashMap<String, Value>,
    until: Instant,
}

/// Closed sessions waiting to be resumed, by protocol.
#[derive(Debug, Default)]
pub(crate) struct Resumes {
    map: Mutex<HashMap<String, Resume>>,
}

impl Resumes {
    fn put(&self, protocol: String, resume: Resume) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let same = |r: &Resume| r.member == resume.member && r.project == resume.project;
        let mine = map.values().filter(|r| same(r)).count();
        if mine >= MAX_RESUMES_PER_MEMBER || map.len() >= MAX_RESUMES {
            map.retain(|_, r| r.until > now);
        }
        // Still full: the oldest entry (of this member first) makes room.
        for own in [true, false] {
            let full = if own {
                map.values().filter(|r| same(r)).count() >= MAX_RESUMES_PER_MEMBER
            } else {
                map.len() >= MAX_RESUMES
            };
            if full
                && let Some(oldest) = map
                    .iter()
                    .filter(|(_, r)| !own || same(r))
                    .min_by_key(|(_, r)| r.until)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(protocol, resume);
    }

    /// The resume for `protocol`, if it is this member's of this project and still fresh.
    fn take(
        &self,
        protocol: &str,
        member: &str,
        project: Option<tollgate_token::ProjectId>,
    ) -> Option<Resume> {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = map.get(protocol)?;
        if r.member != member || r.project != project {
            return None;
        }
        map.remove(protocol).filter(|r| r.until > Instant::now())
    }
}

pub(crate) struct SwSession {
    gw: Gateway,
    /// This connection's id (`ClientInfo.client`).
    client: String,
    grant: Option<ConnectionGrant>,
    protocol: String,
    subs: HashMap<String, Sub>,
    /// Member state per channel, from `chat.member.set_state` (else the token's).
    states: HashMap<String, Value>,
    queue: Arc<Queue>,
    expiry: Option<Instant>,
    started: Instant,
    /// The outstanding server ping: its id and when it went out.
    ping: Option<(String, Instant)>,
    budget: Budget,
    control: Option<tokio::sync::mpsc::Receiver<crate::Control>>,
    /// Whether the client said goodbye (no resume then).
    said_goodbye: bool,
}

type Reply = Result<Value, (i64, String)>;

/// A close code and reason.
type End = (u16, &'static str);
/// What a turn of the loop produced: frames to write, then maybe the end (`Some(None)`:
/// the peer is gone, nothing to send).
type Turn = (Vec<String>, Option<Option<End>>);

fn error(code: i64, message: impl Into<String>) -> Reply {
    Err((code, message.into()))
}

fn ok() -> Reply {
    Ok(json!({"code": "200", "message": "OK"}))
}

fn response(id: &Value, reply: Reply) -> String {
    match reply {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, message)) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        }
    }
    .to_string()
}

fn request(method: &str, params: &Value) -> (String, String) {
    let id = uuid::Uuid::new_v4().to_string();
    let text = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
    (id, text)
}

fn now_secs_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn parse_bytes(b: &Bytes) -> Value {
    serde_json::from_slice(b).unwrap_or(Value::Null)
}

/// A member as SignalWire shows it, from a `ClientInfo`: its state is the channel state
/// (`chan_info`) or else the connection's (`conn_info`).
fn member(info: &Value, channel: &str) -> Value {
    let state = info
        .get("chan_info")
        .or_else(|| info.get("conn_info"))
        .filter(|s| s.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    json!({
        "id": info.get("user").and_then(Value::as_str).unwrap_or_default(),
        "channel": channel,
        "state": state,
    })
}

/// A publication as a SignalWire message. `meta` is the SignalWire publisher's, else the
/// Centrifugo tags, else `{}`.
fn message(p: &Publication, channel: &str) -> Value {
    let meta = p
        .meta
        .as_ref()
        .or(p.tags.as_ref())
        .map_or_else(|| json!({}), parse_bytes);
    let info = p.info.as_ref().map_or(Value::Null, parse_bytes);
    #[allow(clippy::cast_precision_loss)] // milliseconds since 1970 fit an f64 exactly
    let published_at = p.time_ms as f64 / 1000.0;
    json!({
        "id": p.id,
        "content": parse_bytes(&p.data),
        "meta": meta,
        "published_at": published_at,
        "member": member(&info, channel),
    })
}

/// The channel names of `{"channels": [{"name": …}]}` (plain strings accepted too), each
/// once; `None` when malformed or longer than `max` (one frame must not fan out into
/// thousands of broker operations).
fn channel_names(params: &Map<String, Value>, max: usize) -> Option<Vec<String>> {
    let list = params.get("channels")?.as_array()?;
    if list.len() > max {
        return None;
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for c in list {
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .or_else(|| c.as_str())?;
        if name.is_empty() || name.len() > 1024 {
            return None;
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    Some(out)
}

impl SwSession {
    pub(crate) fn new(gw: Gateway) -> Self {
        let queue = Queue::new(gw.settings.queue_bytes);
        let budget = Budget::for_settings(&gw.settings);
        Self {
            gw,
            client: uuid::Uuid::new_v4().to_string(),
            grant: None,
            protocol: String::new(),
            subs: HashMap::new(),
            states: HashMap::new(),
            queue,
            expiry: None,
            started: Instant::now(),
            ping: None,
            budget,
            control: None,
            said_goodbye: false,
        }
    }

    fn member_id(&self) -> &str {
        self.grant.as_ref().map_or("", |g| g.user.as_str())
    }

    /// Whether the token's capability for `channel` includes `what` (`sub`, `pub`, `prs`,
    /// `hst`; SignalWire's `read` grants the first, third and fourth, `write` the second).
    fn can(&self, channel: &str, what: &str) -> bool {
        self.grant
            .as_ref()
            .and_then(|g| {
                g.caps
                    .iter()
                    .find(|c| c.channels.iter().any(|ch| ch == channel))
            })
            .is_some_and(|c| c.allow.iter().any(|x| x == what))
    }

    /// The token's grant for `channel`: (read, write).
    fn grant_for(&self, channel: &str) -> (bool, bool) {
        (self.can(channel, "sub"), self.can(channel, "pub"))
    }

    /// The member's state in `channel`: set with `set_state`, else the token's `state`.
    fn state(&self, channel: &str) -> Value {
        self.states
            .get(channel)
            .cloned()
            .or_else(|| self.grant.as_ref().and_then(|g| g.info.clone()))
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}))
    }

    fn client_info(&self, channel: &str) -> Bytes {
        let mut info = json!({"user": self.member_id(), "client": self.client});
        if let Some(conn) = self.grant.as_ref().and_then(|g| g.info.clone()) {
            info["conn_info"] = conn;
        }
        if let Some(state) = self.states.get(channel) {
            info["chan_info"] = state.clone();
        }
        Bytes::from(info.to_string())
    }

    fn is_chat(&self) -> bool {
        self.grant
            .as_ref()
            .is_some_and(|g| g.typ.as_deref() == Some("CRT"))
    }

    fn next_deadline(&self) -> Option<(Instant, u16, &'static str)> {
        let s = &self.gw.settings;
        let mut best: Option<(Instant, u16, &'static str)> = None;
        let mut consider = |at: Instant, code: u16, reason: &'static str| {
            if best.is_none_or(|b| at < b.0) {
                best = Some((at, code, reason));
            }
        };
        if self.grant.is_none() {
            consider(self.started + s.stale_timeout, close::UNRESPONSIVE, "stale");
        }
        if let Some((_, sent)) = &self.ping {
            consider(*sent + s.pong_timeout, close::UNRESPONSIVE, "no ping reply");
        }
        if let Some(expiry) = self.expiry {
            consider(
                expiry + s.expired_close_delay,
                close::EXPIRED,
                "token expired",
            );
        }
        best
    }

    pub(crate) async fn run(mut self, mut socket: WebSocket) {
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        let mut tick = tokio::time::interval_at(
            Instant::now() + self.gw.settings.presence_update_interval,
            self.gw.settings.presence_update_interval,
        );
        let queue = self.queue.clone();
        let mut shutdown = std::pin::pin!(crate::conn::shutdown(self.gw.stopping.clone()));
        let mut timer = crate::conn::Deadline::new();
        let mut control: Option<tokio::sync::mpsc::Receiver<crate::Control>> = None;
        let end: Option<End> = loop {
            if control.is_none() {
                control = self.control.take();
            }
            let connected = self.grant.is_some();
            let (frames, end): Turn = tokio::select! {
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Text(text))) => Box::pin(self.handle(text.as_str())).await,
                    Some(Ok(Message::Binary(_))) => {
                        (Vec::new(), Some(Some((close::BAD_MESSAGE, "binary frames are not supported"))))
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => (Vec::new(), None),
                    Some(Ok(Message::Close(_)) | Err(_)) | None => (Vec::new(), Some(None)),
                },
                batch = queue.next_batch(BATCH), if connected => match batch {
                    Some(batch) => (self.encode(&batch), None),
                    None if queue.state() == QueueState::Overflowed => {
                        (Vec::new(), Some(Some((close::UNRESPONSIVE, "slow consumer"))))
                    }
                    None => (Vec::new(), Some(None)),
                },
                _ = ping.tick(), if connected => {
                    if self.ping.is_none() {
                        let (id, text) = request("signalwire.ping", &json!({"timestamp": now_secs_f64()}));
                        self.ping = Some((id, Instant::now()));
                        (vec![text], None)
                    } else {
                        (Vec::new(), None)
                    }
                }
                _ = tick.tick(), if connected => {
                    Box::pin(self.refresh_presence()).await;
                    (Vec::new(), None)
                }
                Some(ctrl) = async {
                    match control.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => Box::pin(self.apply(ctrl)).await,
                () = &mut shutdown => (Vec::new(), Some(Some((close::RESTART, "shutdown")))),
                (code, reason) = timer.until(self.next_deadline()) => {
                    (Vec::new(), Some(Some((code, reason))))
                }
            };
            let mut gone = false;
            for frame in frames {
                if !write(&mut socket, frame).await {
                    gone = true;
                    break;
                }
            }
            if gone {
                break None;
            }
            if let Some(end) = end {
                break end;
            }
        };
        if let Some((code, reason)) = end {
            self.gw.metrics.disconnected(code);
            crate::conn::close(&mut socket, code, reason).await;
            // The process is going away: a resume would die with it.
            if code == close::RESTART {
                self.said_goodbye = true;
            }
        }
        Box::pin(self.cleanup()).await;
    }

    async fn cleanup(&mut self) {
        if let Some(grant) = &self.grant
            && !self.said_goodbye
            && !self.subs.is_empty()
        {
            self.gw.resumes.put(
                self.protocol.clone(),
                Resume {
                    project: grant.project,
                    member: grant.user.clone(),
                    channels: self
                        .subs
                        .iter()
                        .map(|(c, s)| (c.clone(), s.events))
                        .collect(),
                    states: self
                        .states
                        .iter()
                        .filter(|(c, _)| self.subs.contains_key(*c))
                        .map(|(c, v)| (c.clone(), v.clone()))
                        .collect(),
                    until: Instant::now() + RESUME_FOR,
                },
            );
        }
        if let Some(grant) = &self.grant {
            self.gw.registry.remove(&grant.user, &self.client);
        }
        self.queue.close();
        let channels: Vec<String> = self.subs.keys().cloned().collect();
        for channel in channels {
            self.leave(&channel).await;
        }
    }

    /// One incoming message: a request (answered), or a response to our ping or event.
    async fn handle(&mut self, text: &str) -> Turn {
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(text) else {
            let reply = response(&Value::Null, error(-32700, "Parse error"));
            return (vec![reply], None);
        };
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        let Some(method) = msg.get("method").and_then(Value::as_str) else {
            // A response: the ack of an event, or the answer to our ping.
            if let Some((ping_id, _)) = &self.ping
                && id.as_str() == Some(ping_id)
            {
                self.ping = None;
            }
            return (Vec::new(), None);
        };
        self.gw.metrics.signalwire_request(method);
        let empty = Map::new();
        let params = msg
            .get("params")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        if method != "signalwire.connect" && self.grant.is_none() {
            let reply = response(&id, error(rpc::AUTH, "Authentication required"));
            return (vec![reply], None);
        }
        // Housekeeping is exempt: a refused reauthentication would end the client for good.
        if !method.starts_with("signalwire.") && !self.budget.spend() {
            let reply = response(&id, error(rpc::INTERNAL, "Too many requests"));
            return (vec![reply], None);
        }
        let reply = match method {
            "signalwire.connect" => {
                let reply = self.connect(params).await;
                if matches!(&reply, Err((rpc::INTERNAL, _))) {
                    // Any error answer ends the SDK for good; a close without one makes it
                    // retry, which is right when the token store is briefly unreachable.
                    return (
                        Vec::new(),
                        Some(Some((close::TRY_AGAIN, "try again later"))),
                    );
                }
                if reply.is_err() {
                    // The client only rejects its pending calls; close so it cannot hang.
                    return (
                        vec![response(&id, reply)],
                        Some(Some((close::AUTH_FAILED, "authentication failed"))),
                    );
                }
                reply
            }
            "signalwire.reauthenticate" => self.reauthenticate(params).await,
            "signalwire.ping" => Ok(json!({
                "timestamp": params.get("timestamp").cloned().unwrap_or_else(|| now_secs_f64().into())
            })),
            "signalwire.disconnect" => {
                self.said_goodbye = true;
                return (
                    vec![response(&id, Ok(json!({})))],
                    Some(Some((close::NORMAL, "disconnect"))),
                );
            }
            "chat.subscribe" => self.subscribe(params).await,
            "chat.unsubscribe" => self.unsubscribe(params).await,
            "chat.publish" => self.publish(params).await,
            "chat.members.get" => self.members(params).await,
            "chat.messages.get" => self.messages(params).await,
            "chat.member.set_state" => self.set_state(params).await,
            "chat.member.get_state" => self.get_state(params).await,
            _ => error(rpc::METHOD_NOT_FOUND, format!("Method not found: {method}")),
        };
        if id.is_null() {
            return (Vec::new(), None);
        }
        (vec![response(&id, reply)], None)
    }

    /// The `authorization` and connect result for the current grant.
    fn connect_result(&self) -> Value {
        let Some(g) = &self.grant else {
            return json!({});
        };
        let channels: Map<String, Value> = g
            .caps
            .iter()
            .flat_map(|c| {
                let read = c.allow.iter().any(|a| a == "sub");
                let write = c.allow.iter().any(|a| a == "pub");
                c.channels
                    .iter()
                    .map(move |ch| (ch.clone(), json!({"read": read, "write": write})))
            })
            .collect();
        let project = g.project.map(|p| p.to_string()).unwrap_or_default();
        let signature = self
            .protocol
            .split('_')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let ttl_minutes = g.expires_at.map(|e| {
            e.saturating_sub(self.gw.tollgate.now().seconds())
                .clamp(0, MAX_TTL)
                / 60
        });
        json!({
            "identity": g.user,
            "protocol": self.protocol,
            "authorization": {
                "type": if self.is_chat() { "chat" } else { "pubsub" },
                "project": project,
                "project_id": project,
                "member_id": g.user,
                "resource": g.user,
                "channels": channels,
                "expires_at": g.expires_at,
                "ttl": ttl_minutes,
                "signature": signature,
                "scope_id": Value::Null,
                "scopes": [],
            },
        })
    }

    async fn verify(&self, params: &Map<String, Value>) -> Result<ConnectionGrant, (i64, String)> {
        let token = params
            .get("authentication")
            .and_then(|a| a.get("jwt_token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or((rpc::AUTH, "Authentication failed".to_owned()))?;
        let grant = match self.gw.tollgate.verify_connection_token(token).await {
            Ok(g) => g,
            Err(GatewayTokenError::Unavailable(e)) => {
                tracing::warn!(error = %e, "token check unavailable");
                return Err((rpc::INTERNAL, "Internal error".to_owned()));
            }
            Err(e) => {
                tracing::debug!(error = %e, "signalwire token refused");
                return Err((rpc::AUTH, "Authentication failed".to_owned()));
            }
        };
        // Only SignalWire realtime tokens carry channel grants for this protocol.
        if !matches!(grant.typ.as_deref(), Some("PRT" | "CRT")) {
            return Err((rpc::AUTH, "Authentication failed".to_owned()));
        }
        Ok(grant)
    }

    async fn connect(&mut self, params: &Map<String, Value>) -> Reply {
        if self.grant.is_some() {
            return error(rpc::INVALID_REQUEST, "Already connected");
        }
        let grant = self.verify(params).await?;
        let Some(rx) = self.gw.register(&grant, &self.client) else {
            return error(rpc::FORBIDDEN, "Connection limit reached");
        };
        self.control = Some(rx);
        let now = self.gw.tollgate.now().seconds();
        self.expiry = grant.expires_at.map(|e| unix_to_instant(e, now));
        let resume = params
            .get("protocol")
            .and_then(Value::as_str)
            .and_then(|p| {
                self.gw
                    .resumes
                    .take(p, &grant.user, grant.project)
                    .map(|r| (p.to_owned(), r))
            });
        let signature = grant
            .jti
            .as_deref()
            .map(|j| j.replace(['-', '_'], ""))
            .filter(|j| !j.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        self.grant = Some(grant);
        match resume {
            Some((protocol, r)) => {
                self.protocol = protocol;
                self.states = r.states;
                for (channel, events) in r.channels {
                    // The new token decides again.
                    if self.grant_for(&channel).0 {
                        let _ = self.join(&channel, events).await;
                    }
                }
            }
            None => {
                self.protocol = format!("signalwire_{signature}_{}", uuid::Uuid::new_v4().simple());
            }
        }
        Ok(self.connect_result())
    }

    async fn reauthenticate(&mut self, params: &Map<String, Value>) -> Reply {
        let grant = self.verify(params).await?;
        let same = self.grant.as_ref().is_some_and(|g| {
            g.user == grant.user && g.project == grant.project && g.typ == grant.typ
        });
        if !same {
            return error(
                rpc::AUTH,
                "Authentication failed: another member, project or token type",
            );
        }
        let now = self.gw.tollgate.now().seconds();
        self.expiry = grant.expires_at.map(|e| unix_to_instant(e, now));
        self.grant = Some(grant);
        // Channels the new token no longer grants are left.
        let lost: Vec<String> = self
            .subs
            .keys()
            .filter(|c| !self.grant_for(c).0)
            .cloned()
            .collect();
        for channel in lost {
            self.leave(&channel).await;
        }
        // The new token's state is the member's state where none was set since.
        let channels: Vec<String> = self.subs.keys().cloned().collect();
        for channel in channels {
            let info = self.client_info(&channel);
            if let Some(sub) = self.subs.get_mut(&channel) {
                sub.info = info;
            }
        }
        self.refresh_presence().await;
        Ok(self.connect_result())
    }

    /// Joins `channel`: broker, presence, and a join for Chat members.
    async fn join(&mut self, channel: &str, events: Events) -> Result<(), ()> {
        if let Some(sub) = self.subs.get_mut(channel) {
            sub.events.merge(events);
            return Ok(());
        }
        let broker = self.gw.broker.clone();
        broker
            .subscribe(channel, &self.queue)
            .await
            .map_err(|_| ())?;
        let info = self.client_info(channel);
        self.gw
            .keep_present(channel, &self.client, self.member_id(), &info)
            .await;
        if self.is_chat() {
            let _ = broker
                .publish_presence_event(channel, Event::Join(info.clone()))
                .await;
        }
        self.subs.insert(channel.to_owned(), Sub { events, info });
        Ok(())
    }

    async fn leave(&mut self, channel: &str) {
        let Some(sub) = self.subs.remove(channel) else {
            return;
        };
        let broker = self.gw.broker.clone();
        let _ = broker.unsubscribe(channel, &self.queue).await;
        let _ = broker.remove_presence(channel, &self.client).await;
        if self.is_chat() {
            let _ = broker
                .publish_presence_event(channel, Event::Leave(sub.info))
                .await;
        }
    }

    async fn refresh_presence(&self) {
        for (channel, sub) in &self.subs {
            self.gw
                .keep_present(channel, &self.client, self.member_id(), &sub.info)
                .await;
        }
    }

    async fn subscribe(&mut self, params: &Map<String, Value>) -> Reply {
        let Some(channels) =
            channel_names(params, self.gw.settings.max_channels).filter(|c| !c.is_empty())
        else {
            return error(rpc::INVALID_PARAMS, "channels must be a list of {name}");
        };
        // All or nothing: every channel must be readable before any is joined.
        if let Some(denied) = channels.iter().find(|c| !self.grant_for(c).0) {
            return error(
                rpc::FORBIDDEN,
                format!("Permission denied: no read access to channel '{denied}'"),
            );
        }
        let new = channels
            .iter()
            .filter(|c| !self.subs.contains_key(*c))
            .count();
        if self.subs.len() + new > self.gw.settings.max_channels {
            return error(rpc::FORBIDDEN, "Too many channels");
        }
        let events = Events::from(params.get("events"));
        let mut joined: Vec<String> = Vec::new();
        for channel in &channels {
            let fresh = !self.subs.contains_key(channel);
            if self.join(channel, events).await.is_err() {
                for channel in joined {
                    self.leave(&channel).await;
                }
                return error(rpc::INTERNAL, "Internal error");
            }
            if fresh {
                joined.push(channel.clone());
            }
        }
        ok()
    }

    async fn unsubscribe(&mut self, params: &Map<String, Value>) -> Reply {
        let Some(channels) = channel_names(params, self.gw.settings.max_channels) else {
            return error(rpc::INVALID_PARAMS, "channels must be a list of {name}");
        };
        for channel in channels {
            self.leave(&channel).await;
        }
        ok()
    }

    async fn publish(&mut self, params: &Map<String, Value>) -> Reply {
        let Some(channel) = params
            .get("channel")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
        else {
            return error(rpc::INVALID_PARAMS, "channel is required");
        };
        let Some(content) = params.get("content") else {
            return error(rpc::INVALID_PARAMS, "content is required");
        };
        if !self.grant_for(channel).1 {
            return error(
                rpc::FORBIDDEN,
                format!("Permission denied: no write access to channel '{channel}'"),
            );
        }
        let meta = match params.get("meta") {
            None | Some(Value::Null) => None,
            Some(m @ Value::Object(_)) => Some(m),
            Some(_) => return error(rpc::INVALID_PARAMS, "meta must be an object"),
        };
        // Re-serialised compactly: Centrifugo frames are newline-delimited.
        let data = content.to_string();
        let meta_text = meta.map(Value::to_string);
        let size = data.len() + meta_text.as_ref().map_or(0, String::len);
        if size > self.gw.settings.max_publication_bytes {
            return error(rpc::INVALID_PARAMS, "message too large");
        }
        // String-valued meta is also Centrifugo's `tags`, so those clients see it.
        let tags = meta
            .and_then(Value::as_object)
            .filter(|m| m.values().all(Value::is_string))
            .map(|_| Bytes::from(meta_text.clone().unwrap_or_default()));
        let info = self
            .subs
            .get(channel)
            .map_or_else(|| self.client_info(channel), |s| s.info.clone());
        let publication = NewPublication {
            data: Bytes::from(data),
            info: Some(info),
            tags,
            meta: meta_text.map(Bytes::from),
        };
        let history = self.gw.publish_history(channel);
        match self.gw.broker.publish(channel, publication, history).await {
            Ok(_) => ok(),
            Err(_) => error(rpc::INTERNAL, "Internal error"),
        }
    }

    /// The request's `channel`, if the token's capability for it includes `what`.
    fn readable_channel<'p>(
        &self,
        params: &'p Map<String, Value>,
        what: &str,
    ) -> Result<&'p str, (i64, String)> {
        let channel = params
            .get("channel")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .ok_or((rpc::INVALID_PARAMS, "channel is required".to_owned()))?;
        if !self.can(channel, what) {
            return Err((
                rpc::FORBIDDEN,
                format!("Permission denied: no read access to channel '{channel}'"),
            ));
        }
        Ok(channel)
    }

    async fn members(&mut self, params: &Map<String, Value>) -> Reply {
        let channel = self.readable_channel(params, "prs")?;
        let entries = self
            .gw
            .broker
            .presence(channel)
            .await
            .map_err(|_| (rpc::INTERNAL, "Internal error".to_owned()))?;
        let mut seen = std::collections::HashSet::new();
        let mut members: Vec<Value> = Vec::new();
        for e in &entries {
            // One member may be connected several times: list it once.
            if seen.insert(e.user.as_str()) {
                members.push(member(&parse_bytes(&e.info), channel));
            }
        }
        Ok(json!({"code": "200", "message": "OK", "members": members}))
    }

    /// `chat.messages.get`: newest first, [`PAGE`] at a time. Cursors are stream offsets:
    /// `before` pages to older messages, `after` to newer ones.
    async fn messages(&mut self, params: &Map<String, Value>) -> Reply {
        let channel = self.readable_channel(params, "hst")?.to_owned();
        let history = self
            .gw
            .broker
            .history(&channel, HistoryQuery::default())
            .await
            .map_err(|_| (rpc::INTERNAL, "Internal error".to_owned()))?;
        let epoch = history.position.epoch.as_str();
        // Cursors are `<epoch>:<offset>`: an offset from another epoch (the stream was
        // reset) would page the wrong messages, so it is refused.
        let cursor = params.get("cursor").filter(|c| !c.is_null());
        let at = |k: &str| -> Result<Option<u64>, (i64, String)> {
            let Some(v) = cursor.and_then(|c| c.get(k)).filter(|v| !v.is_null()) else {
                return Ok(None);
            };
            v.as_str()
                .and_then(|c| c.split_once(':'))
                .filter(|(e, _)| *e == epoch)
                .and_then(|(_, o)| o.parse::<u64>().ok())
                .map(Some)
                .ok_or((rpc::INVALID_PARAMS, format!("invalid or stale cursor.{k}")))
        };
        if cursor.is_some_and(|c| !c.is_object()) {
            return error(rpc::INVALID_PARAMS, "cursor must be an object");
        }
        let (before, after) = (at("before")?, at("after")?);
        // Oldest first from the broker.
        let kept: Vec<&Arc<Publication>> = history
            .publications
            .iter()
            .filter(|p| before.is_none_or(|b| p.offset < b) && after.is_none_or(|a| p.offset > a))
            .collect();
        let page: Vec<&Arc<Publication>> = if after.is_some() {
            kept.iter().take(PAGE).copied().collect()
        } else {
            kept.iter().rev().take(PAGE).rev().copied().collect()
        };
        let first_kept = history.publications.first().map(|p| p.offset);
        let last_kept = history.publications.last().map(|p| p.offset);
        // The page's bounds; an empty page keeps the request's, so the client can turn back.
        let oldest = page
            .first()
            .map(|p| p.offset)
            .or_else(|| after.map(|a| a + 1));
        let newest = page
            .last()
            .map(|p| p.offset)
            .or_else(|| before.map(|b| b.saturating_sub(1)));
        let mut cursor = Map::new();
        if let (Some(o), Some(f)) = (oldest, first_kept)
            && o > f
        {
            cursor.insert("before".into(), format!("{epoch}:{o}").into());
        }
        if let (Some(n), Some(l)) = (newest, last_kept)
            && n < l
        {
            cursor.insert("after".into(), format!("{epoch}:{n}").into());
        }
        let messages: Vec<Value> = page.iter().rev().map(|p| message(p, &channel)).collect();
        Ok(json!({"code": "200", "message": "OK", "messages": messages, "cursor": cursor}))
    }

    async fn set_state(&mut self, params: &Map<String, Value>) -> Reply {
        if let Some(m) = params.get("member_id").and_then(Value::as_str)
            && m != self.member_id()
        {
            return error(rpc::FORBIDDEN, "A member may only set its own state");
        }
        let Some(state) = params.get("state").filter(|s| s.is_object()) else {
            return error(rpc::INVALID_PARAMS, "state must be an object");
        };
        if state.to_string().len() > MAX_STATE_BYTES {
            return error(rpc::INVALID_PARAMS, "state is too large");
        }
        let channels = match channel_names(params, self.gw.settings.max_channels) {
            Some(c) if !c.is_empty() => c,
            None if params.get("channels").is_none() => self.subs.keys().cloned().collect(),
            _ => return error(rpc::INVALID_PARAMS, "channels must be a list of {name}"),
        };
        if let Some(denied) = channels.iter().find(|c| !self.grant_for(c).0) {
            return error(
                rpc::FORBIDDEN,
                format!("Permission denied: no read access to channel '{denied}'"),
            );
        }
        for channel in channels {
            if self.states.get(&channel) == Some(state) {
                continue;
            }
            // Bounded: at most max_channels states are remembered per session.
            if !self.states.contains_key(&channel)
                && self.states.len() >= self.gw.settings.max_channels
            {
                continue;
            }
            self.states.insert(channel.clone(), state.clone());
            let info = self.client_info(&channel);
            if let Some(sub) = self.subs.get_mut(&channel) {
                sub.info = info.clone();
                self.gw
                    .keep_present(&channel, &self.client, self.member_id(), &info)
                    .await;
                let _ = self
                    .gw
                    .broker
                    .publish_presence_event(&channel, Event::Update(info))
                    .await;
            }
        }
        ok()
    }

    async fn get_state(&mut self, params: &Map<String, Value>) -> Reply {
        let member_id = params
            .get("member_id")
            .and_then(Value::as_str)
            .unwrap_or(self.member_id())
            .to_owned();
        let channels = match channel_names(params, self.gw.settings.max_channels) {
            Some(c) if !c.is_empty() => c,
            _ => self.subs.keys().cloned().collect(),
        };
        let mut out = Map::new();
        for channel in channels {
            if !self.grant_for(&channel).0 {
                continue;
            }
            let state = if member_id == self.member_id() {
                self.state(&channel)
            } else {
                let entries = self.gw.broker.presence(&channel).await.unwrap_or_default();
                match entries.iter().find(|e| e.user == member_id) {
                    Some(e) => member(&parse_bytes(&e.info), &channel)["state"].clone(),
                    None => continue,
                }
            };
            out.insert(channel, json!({ "state": state }));
        }
        Ok(json!({"code": "200", "message": "OK", "channels": out}))
    }

    /// Server API commands (the registry reaches SignalWire members by member id).
    async fn apply(&mut self, control: crate::Control) -> Turn {
        use crate::Control;
        match control {
            // The SDK reconnects after a server disconnect and, never re-subscribing, relies
            // on the resume: keep it.
            Control::Disconnect { .. } => {
                let (_, text) = request("signalwire.disconnect", &json!({}));
                (vec![text], Some(Some((close::NORMAL, "disconnected"))))
            }
            Control::Subscribe(command) => {
                let sub = command.sub;
                let events = Events {
                    message: true,
                    ..Events::default()
                };
                let _ = self.join(&sub.channel, events).await;
                (Vec::new(), None)
            }
            Control::Unsubscribe { channel } => {
                let channels: Vec<String> = if channel.is_empty() {
                    self.subs.keys().cloned().collect()
                } else {
                    vec![channel]
                };
                for channel in channels {
                    self.leave(&channel).await;
                }
                (Vec::new(), None)
            }
            Control::Refresh { expired: true, .. } => {
                (Vec::new(), Some(Some((close::EXPIRED, "token expired"))))
            }
            Control::Refresh { expire_at, .. } => {
                let now = self.gw.tollgate.now().seconds();
                self.expiry = expire_at.map(|e| unix_to_instant(e, now));
                (Vec::new(), None)
            }
        }
    }

    /// `signalwire.event`s for a batch of deliveries, one frame each, only for channels
    /// and events this member subscribed to.
    fn encode(&self, batch: &[Delivery]) -> Vec<String> {
        let mut frames = Vec::with_capacity(batch.len());
        for d in batch {
            let channel: &str = &d.channel;
            let Some(sub) = self.subs.get(channel) else {
                continue;
            };
            let (event_type, params) = match &d.event {
                Event::Publication(p) if sub.events.message => (
                    "chat.channel.message",
                    json!({"channel": channel, "message": message(p, channel)}),
                ),
                Event::Join(info) if sub.events.joined => (
                    "chat.member.joined",
                    json!({"channel": channel, "member": member(&parse_bytes(info), channel)}),
                ),
                Event::Update(info) if sub.events.updated => (
                    "chat.member.updated",
                    json!({"channel": channel, "member": member(&parse_bytes(info), channel)}),
                ),
                Event::Leave(info) if sub.events.left => (
                    "chat.member.left",
                    json!({"channel": channel, "member": member(&parse_bytes(info), channel)}),
                ),
                _ => continue,
            };
            let (_, text) = request(
                "signalwire.event",
                &json!({
                    "event_type": event_type,
                    "event_channel": channel,
                    "timestamp": now_secs_f64(),
                    "params": params,
                }),
            );
            frames.push(text);
        }
        if !frames.is_empty() {
            self.gw.metrics.delivered(frames.len());
        }
        frames
    }
}

impl Drop for SwSession {
    fn drop(&mut self) {
        if let Some(grant) = &self.grant {
            self.gw.registry.remove(&grant.user, &self.client);
        }
        self.queue.close();
    }
}
