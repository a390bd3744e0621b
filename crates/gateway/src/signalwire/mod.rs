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
//!     ├─ frame over the size limit / not UTF-8 / broken framing ─────► closed 1009 / 1007 / 1002
//!     └─ server shutting down ───────────────────────────────────────────────► closed 1012
//! ```
//!
//! Every message (any method, `signalwire.*` included; replies; malformed ones) and every
//! WebSocket ping spends from the connection's budget; a request over it is answered with
//! error -32603 `Too many requests`.
//!
//! Channels are the gateway's channels: a message published here reaches Centrifugo
//! subscribers of the same channel and the other way round. A SignalWire message's
//! `content` is the publication's `data`, its `meta` travels beside it (and as Centrifugo
//! `tags` when every value is a string), and the publisher's member id and state are the
//! publication's `info` (`user`, `chan_info`/`conn_info`). Permissions are the token's
//! channel grants: `read` to subscribe, list members and read messages, `write` to publish.
//!
//! A thin adapter on the gateway core ([`crate::core::client::Client`]): this module is
//! the session loop (ping, disconnect, acknowledgements); [`connect`] holds
//! `signalwire.connect` and `reauthenticate`, [`shared`] the session's copy in a shared
//! broker for a resume on another node; [`chat`] holds the `chat.*` methods, server API
//! commands and event encoding, [`wire`] the JSON-RPC vocabulary and [`resume`] the
//! table of closed sessions waiting to be resumed — the client never re-sends
//! `chat.subscribe` after a reconnect; it presents the `protocol` it was given instead.

mod chat;
mod connect;
mod resume;
mod shared;
mod wire;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use tollgate_broker::{QueueState, StreamPosition};
use tungstenite::Message;

use crate::Gateway;
use crate::conn::{Socket, write};
use crate::core::client::Client;
pub(crate) use chat::{paginate, read_cursor};
pub(crate) use resume::Resumes;
use resume::{RESUME_FOR, SHARED_EVERY};
use wire::{End, Turn, close, error, now_secs_f64, request, response, rpc};
pub(crate) use wire::{Events, channel_names, decode_message, message_parts};

/// SignalWire's client drops the socket when a server ping is not followed by another
/// within 15 s, so pings go out well inside that.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Largest member state (serialised), as for the token's `state`.
const MAX_STATE_BYTES: usize = 2000;
/// Messages per `chat.messages.get` page.
pub(crate) const PAGE: usize = 50;
/// Most deliveries written per turn of the loop.
const BATCH: usize = 256;
/// Most written events awaiting the client's acknowledgement; beyond, the oldest counts as
/// acknowledged (the bound on a client that stops acknowledging).
const MAX_UNACKED: usize = 1024;

/// Most bytes of `signalwire.event`s one resume replays, all channels together. Without
/// it a session could hold `history_max_publication_limit` publications of up to
/// `max_publication_bytes` for each of `max_channels` channels (GiBs), and every
/// SignalWire socket of a node resumes at once after a broker interruption. 4 MiB is
/// about 60 of the largest messages, or thousands of ordinary chat lines: what a client
/// away for a reconnect's few seconds missed. A channel whose replay does not fit in what
/// is left is resumed live, without its missed messages (as when history lost them).
const MAX_REPLAY_BYTES: usize = 4 * 1024 * 1024;

pub(crate) struct SwSession {
    /// The connection; each subscription's own part is the events it asked for.
    c: Client<Events>,
    protocol: String,
    /// Member state per channel, from `chat.member.set_state` (else the token's).
    states: HashMap<String, Value>,
    /// The outstanding server ping: its id and when it went out.
    ping: Option<(String, Instant)>,
    /// Whether the client said goodbye (no resume then).
    said_goodbye: bool,
    /// Where each channel's stream is for this member (channels that keep history): the
    /// offset of the last publication the client acknowledged (with `event_acks`; else
    /// the last written). A resume replays what follows it.
    positions: HashMap<String, StreamPosition>,
    /// Per channel, the offset of the last publication written in order (no gap before).
    written: HashMap<String, u64>,
    /// Whether the client acknowledges events (`event_acks`, as `@signalwire/js` does).
    acks: bool,
    /// Publications written in order and not yet acknowledged, oldest first: (event id,
    /// channel, offset). An acknowledgement covers every event before it too.
    unacked: VecDeque<(String, String, u64)>,
    /// Per channel, the last offset a resume replayed: queued copies up to it are skipped.
    replayed: HashMap<String, u64>,
    /// `signalwire.event`s a resume replays, sent right after the connect result.
    replay: Vec<String>,
    /// The bytes in `replay`, within [`MAX_REPLAY_BYTES`].
    replay_bytes: usize,
    /// The server is shutting down: no resume on this node, but one on another.
    restarting: bool,
    /// With a broker that keeps sessions: when this session's copy was last written
    /// (`None`: there is none), and whether its positions moved since.
    shared_at: Option<Instant>,
    shared_dirty: bool,
    /// After a failed write, no periodic one before this (an unreachable broker costs a
    /// live session one bounded call per [`SHARED_REFRESH`], not one per second).
    shared_backoff: Option<Instant>,
    /// This session's [`shared_key`] while it is noted live on this node.
    live: Option<String>,
    /// This session's own id as the owner of its copy in a shared broker.
    owner: String,
    /// Another session took this one's copy over (the client resumed elsewhere while this
    /// socket looked alive): it is written no more, and not kept for a resume here.
    taken_over: bool,
}

impl SwSession {
    pub(crate) fn new(gw: Gateway) -> Self {
        Self {
            c: Client::new(gw),
            protocol: String::new(),
            states: HashMap::new(),
            ping: None,
            said_goodbye: false,
            positions: HashMap::new(),
            written: HashMap::new(),
            acks: false,
            unacked: VecDeque::new(),
            replayed: HashMap::new(),
            replay: Vec::new(),
            replay_bytes: 0,
            restarting: false,
            shared_at: None,
            shared_dirty: false,
            shared_backoff: None,
            live: None,
            owner: uuid::Uuid::new_v4().simple().to_string(),
            taken_over: false,
        }
    }

    fn member_id(&self) -> &str {
        self.c.user()
    }

    /// Whether the token's capability for `channel` includes `what` (`sub`, `pub`, `prs`,
    /// `hst`; SignalWire's `read` grants the first, third and fourth, `write` the second).
    fn can(&self, channel: &str, what: &str) -> bool {
        self.c.caps_allow(channel, what)
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
            .or_else(|| self.c.grant().and_then(|g| g.info.clone()))
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}))
    }

    /// The member's `ClientInfo` in `channel`: its state there is the `chan_info`.
    fn client_info(&self, channel: &str) -> Bytes {
        self.c.client_info(self.states.get(channel))
    }

    fn is_chat(&self) -> bool {
        self.c
            .grant()
            .is_some_and(|g| g.typ.as_deref() == Some("CRT"))
    }

    fn next_deadline(&self) -> Option<(Instant, u16, &'static str)> {
        let s = &self.c.gw.settings;
        let mut best: Option<(Instant, u16, &'static str)> = None;
        let mut consider = |at: Instant, code: u16, reason: &'static str| {
            if best.is_none_or(|b| at < b.0) {
                best = Some((at, code, reason));
            }
        };
        if !self.c.is_connected() {
            consider(
                self.c.started + s.stale_timeout,
                close::UNRESPONSIVE,
                "stale",
            );
        }
        if let Some((_, sent)) = &self.ping {
            consider(*sent + s.pong_timeout, close::UNRESPONSIVE, "no ping reply");
        }
        if let Some(expiry) = self.c.expiry {
            consider(
                expiry + s.expired_close_delay,
                close::EXPIRED,
                "token expired",
            );
        }
        best
    }

    pub(crate) async fn run(mut self, mut socket: Socket) {
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        let mut tick = tokio::time::interval_at(
            Instant::now() + self.c.gw.settings.presence_update_interval,
            self.c.gw.settings.presence_update_interval,
        );
        let mut sync = tokio::time::interval_at(Instant::now() + SHARED_EVERY, SHARED_EVERY);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shares = self.shares();
        let queue = self.c.queue.clone();
        let mut shutdown = std::pin::pin!(crate::conn::shutdown(self.c.gw.stopping.clone()));
        let mut timer = crate::conn::Deadline::new();
        let mut control: Option<tokio::sync::mpsc::Receiver<crate::Control>> = None;
        let end: Option<End> = loop {
            if control.is_none() {
                control = self.c.take_control();
            }
            let connected = self.c.is_connected();
            let (frames, end): Turn = tokio::select! {
                msg = socket.next() => match msg {
                    Some(Ok(Message::Text(text))) => Box::pin(self.handle(text.as_str())).await,
                    Some(Ok(Message::Binary(_))) => {
                        (Vec::new(), Some(Some((close::BAD_MESSAGE, "binary frames are not supported"))))
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        // Answered by tungstenite, but a message all the same: counted, so
                        // a flood of them spends the budget like any other.
                        self.c.budget.spend();
                        (Vec::new(), None)
                    }
                    // Only ever written, never read.
                    Some(Ok(Message::Frame(_))) => (Vec::new(), None),
                    Some(Ok(Message::Close(_))) => {
                        Box::pin(crate::conn::answer_close(&mut socket)).await;
                        (Vec::new(), Some(None))
                    }
                    Some(Err(e)) => (Vec::new(), Some(crate::conn::refusal(&e))),
                    None => (Vec::new(), Some(None)),
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
                _ = sync.tick(), if connected && shares => {
                    Box::pin(self.refresh_shared()).await;
                    (Vec::new(), None)
                }
                _ = tick.tick(), if connected => {
                    Box::pin(self.c.refresh_presence()).await;
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
        let mut linger = false;
        if let Some((code, reason)) = end {
            self.c.gw.metrics.disconnected(code);
            // Stopping: the process is about to end, and its sockets with it.
            linger = crate::conn::close(&mut socket, code, reason).await && code != close::RESTART;
            // The process is going away: a resume would die with it.
            // Another node sharing the broker can still take it over.
            if code == close::RESTART {
                self.restarting = true;
            }
        }
        // The connection is over for everyone else at once: only the TCP goodbye is left.
        Box::pin(self.cleanup()).await;
        if linger {
            Box::pin(crate::conn::linger(&mut socket)).await;
        }
    }

    /// Leaves the session's channels in [`Resumes`] unless the client said goodbye (or
    /// the node is stopping), then closes the connection in the core. With a broker that
    /// keeps sessions they are left there instead, for whichever node the client reaches
    /// next; only if the broker fails are they kept here.
    async fn cleanup(&mut self) {
        let mut kept = false;
        if self.shares() && self.c.is_connected() {
            if self.said_goodbye {
                self.drop_shared().await;
            } else {
                kept = self.save_shared(RESUME_FOR).await;
            }
        }
        if let Some(project) = self.c.project()
            && let Some(key) = self.live.take()
        {
            self.c.gw.resumes.gone(project, &key);
        }
        if let Some(project) = self.c.project()
            && !self.said_goodbye
            && !self.restarting
            && !self.taken_over
            && !kept
            && !self.c.subs.is_empty()
        {
            let resume = self.resume_state();
            self.c
                .gw
                .resumes
                .put(project, std::mem::take(&mut self.protocol), resume);
        }
        self.c.close().await;
    }

    /// One incoming message: a request (answered), or a response to our ping or event.
    async fn handle(&mut self, text: &str) -> Turn {
        // Every message spends from the budget, whatever it turns out to be: requests of
        // any method (`signalwire.reauthenticate` checks a token each time), replies to our
        // requests, malformed ones. None is a way around it.
        let within_budget = self.c.budget.spend();
        let Some(msg) = decode_message(text) else {
            let reply = response(&Value::Null, error(-32700, "Parse error"));
            return (vec![reply], None);
        };
        let (id, method, params) = message_parts(&msg);
        let Some(method) = method else {
            // A response: the ack of an event, or the answer to our ping.
            if let Some(acked) = id.as_str() {
                self.acked(acked);
            }
            if let Some((ping_id, _)) = &self.ping
                && id.as_str() == Some(ping_id)
            {
                self.ping = None;
            }
            return (Vec::new(), None);
        };
        self.c.gw.metrics.signalwire_request(method);
        let empty = Map::new();
        let params = params.unwrap_or(&empty);
        if method != "signalwire.connect" && !self.c.is_connected() {
            let reply = response(&id, error(rpc::AUTH, "Authentication required"));
            return (vec![reply], None);
        }
        // Over the budget, a request is refused unread. The SDK gives up on a refused
        // `signalwire.reauthenticate`, but only a client already flooding the connection
        // gets one: the SDK itself sends a handful of requests a minute.
        if !within_budget {
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
                // A resumed session's missed messages follow the result they belong to.
                let mut frames = Vec::with_capacity(1 + self.replay.len());
                if !id.is_null() {
                    frames.push(response(&id, reply));
                }
                if !self.replay.is_empty() {
                    self.c.gw.metrics.delivered(self.replay.len());
                }
                frames.append(&mut self.replay);
                self.replay_bytes = 0;
                return (frames, None);
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
            "chat.subscribe" | "chat.unsubscribe" | "chat.member.set_state" => {
                let reply = match method {
                    "chat.subscribe" => self.subscribe(params).await,
                    "chat.unsubscribe" => self.unsubscribe(params).await,
                    _ => self.set_state(params).await,
                };
                // What a resume on another node gets back changed: written by the next
                // periodic write (within [`SHARED_EVERY`]), never inline. A session's copy
                // is up to ~550 KB and a write may take the broker's whole timeout; a
                // typing indicator's `set_state` several times a second would otherwise
                // stall the socket on each.
                if reply.is_ok() {
                    self.shared_dirty = true;
                }
                reply
            }
            "chat.publish" => self.publish(params).await,
            "chat.members.get" => self.members(params).await,
            "chat.messages.get" => self.messages(params).await,
            "chat.member.get_state" => self.get_state(params).await,
            _ => error(rpc::METHOD_NOT_FOUND, format!("Method not found: {method}")),
        };
        if id.is_null() {
            return (Vec::new(), None);
        }
        (vec![response(&id, reply)], None)
    }

    /// Notes a publication event written in order: the resume position moves once the
    /// client acknowledges it (at once for a client that does not acknowledge).
    fn sent(&mut self, id: String, channel: &str, offset: u64) {
        if !self.acks {
            self.advance(channel, offset);
            return;
        }
        self.unacked.push_back((id, channel.to_owned(), offset));
        if self.unacked.len() > MAX_UNACKED
            && let Some((_, channel, offset)) = self.unacked.pop_front()
        {
            self.advance(&channel, offset);
        }
    }

    /// The client acknowledged event `id`: it has every event written before it too.
    fn acked(&mut self, id: &str) {
        let Some(i) = self.unacked.iter().position(|(e, _, _)| e == id) else {
            return;
        };
        let done: Vec<(String, String, u64)> = self.unacked.drain(..=i).collect();
        for (_, channel, offset) in done {
            self.advance(&channel, offset);
        }
    }

    fn advance(&mut self, channel: &str, offset: u64) {
        if let Some(position) = self.positions.get_mut(channel)
            && offset > position.offset
        {
            position.offset = offset;
            self.shared_dirty = true;
        }
    }
}
