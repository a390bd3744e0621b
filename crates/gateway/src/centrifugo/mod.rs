//! Centrifugo's client protocol v2 (JSON) over WebSocket: a thin adapter on the gateway
//! core ([`crate::core::client::Client`]). This module is the session loop (frames in,
//! pushes out, timers) and the command dispatch; [`connect`] holds the connection-level
//! commands (`connect`, `refresh`, server API control), [`channels`] the channel commands,
//! [`push`] the push encoding and [`protocol`] the codes.
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
//!     ├─ command before connect / malformed frame ───────────────► closed 3501
//!     └─ frame over the size limit / not UTF-8 / broken framing ─► closed 1009 / 1007 / 1002
//! ```
//!
//! Every command (pongs and `connect` included) and every WebSocket ping spends from the
//! connection's budget; a command over it is answered with error 111.

pub(crate) mod channels;
mod connect;
pub(crate) mod protocol;
mod push;

use std::borrow::Cow;

use futures_util::StreamExt as _;
use serde_json::{Map, Value};
use tokio::time::Instant;
use tollgate_broker::QueueState;
use tungstenite::Message;

use crate::Gateway;
use crate::conn::{Socket, write};
use crate::core::client::Client;
use crate::metrics::METHODS;
use protocol::{code, disconnect};

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
    async fn flush(&mut self, socket: &mut Socket, force: bool) -> bool {
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

/// What a Centrifugo subscription adds to the core's: its expiry, whether the client gets
/// join/leave pushes, the recovery position, and whether the client may undo it.
#[derive(Debug)]
pub(crate) struct SubState {
    /// When it expires (unix seconds), if it does.
    pub(crate) expires_at: Option<i64>,
    /// Receives join/leave of others.
    pub(crate) push_join_leave: bool,
    /// The newest publication offset handed to the client (duplicates from the live
    /// stream after a recovery are skipped).
    pub(crate) last_offset: u64,
    /// Server-side (connection token `channels`/`subs`, server API `subscribe`): the
    /// client cannot resubscribe it, so its expiry closes the connection with 3006.
    pub(crate) server_side: bool,
}

pub(crate) struct Session {
    pub(crate) c: Client<SubState>,
    /// When the last unanswered ping was sent.
    ping_sent: Option<Instant>,
    /// A failed connect leaves the connection unusable: every later command gets 3501.
    pub(crate) unusable: bool,
}

impl Session {
    pub(crate) fn new(gw: Gateway) -> Self {
        Self {
            c: Client::new(gw),
            ping_sent: None,
            unusable: false,
        }
    }

    /// The earliest timer that ends the session, if any.
    fn next_deadline(&self) -> Option<(Instant, u16, &'static str)> {
        let s = &self.c.gw.settings;
        let mut best: Option<(Instant, u16, &'static str)> = None;
        let mut consider = |at: Instant, code: u16, reason: &'static str| {
            if best.is_none_or(|(b, _, _)| at < b) {
                best = Some((at, code, reason));
            }
        };
        if !self.c.is_connected() {
            consider(self.c.started + s.stale_timeout, disconnect::STALE, "stale");
        }
        if let Some(sent) = self.ping_sent {
            consider(sent + s.pong_timeout, disconnect::NO_PONG, "no pong");
        }
        if let Some(expiry) = self.c.expiry {
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
    pub(crate) async fn run(mut self, mut socket: Socket) {
        let settings = self.c.gw.settings.clone();
        let mut ping = tokio::time::interval_at(
            Instant::now() + settings.ping_interval,
            settings.ping_interval,
        );
        let mut tick = tokio::time::interval_at(
            Instant::now() + settings.presence_update_interval,
            settings.presence_update_interval,
        );
        let queue = self.c.queue.clone();
        let mut shutdown = std::pin::pin!(crate::conn::shutdown(self.c.gw.stopping.clone()));
        let mut timer = crate::conn::Deadline::new();
        let mut control: Option<tokio::sync::mpsc::Receiver<crate::Control>> = None;
        let close: Option<Close> = loop {
            if control.is_none() {
                control = self.c.take_control();
            }
            let connected = self.c.is_connected();
            // What to write this turn, then whether to close.
            let (frame, end): (Option<String>, Option<Option<Close>>) = tokio::select! {
                msg = socket.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        match Box::pin(self.handle_frame(text.as_str(), &mut socket)).await {
                            Ok(close) => (None, close.map(Some)),
                            Err(()) => (None, Some(None)),
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        (None, Some(Some(close(disconnect::BAD_REQUEST, "protobuf is not supported"))))
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        // Answered by tungstenite, but a message all the same: counted, so
                        // a flood of them spends the budget like any other.
                        self.c.budget.spend();
                        (None, None)
                    }
                    // Only ever written, never read.
                    Some(Ok(Message::Frame(_))) => (None, None),
                    Some(Ok(Message::Close(_))) => {
                        Box::pin(crate::conn::answer_close(&mut socket)).await;
                        (None, Some(None))
                    }
                    Some(Err(e)) => match crate::conn::refusal(&e) {
                        Some((code, reason)) => (None, Some(Some(close(code, reason)))),
                        None => (None, Some(None)),
                    },
                    None => (None, Some(None)),
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
        let mut linger = false;
        if let Some((code, reason)) = close {
            self.c.gw.metrics.disconnected(code);
            // Stopping: the process is about to end, and its sockets with it.
            linger = crate::conn::close(&mut socket, code, &reason).await
                && code != disconnect::SHUTDOWN;
        }
        // The connection is over for everyone else at once: only the TCP goodbye is left.
        Box::pin(self.c.close()).await;
        if linger {
            Box::pin(crate::conn::linger(&mut socket)).await;
        }
    }
}

impl Session {
    /// Handles a frame: its commands in order, writing replies as they accumulate.
    /// Returns maybe a close, or `Err` when the peer is gone.
    async fn handle_frame(&mut self, text: &str, socket: &mut Socket) -> Result<Option<Close>, ()> {
        let mut out = Outbox::default();
        let mut close_with = None;
        for command in decode_frame(text) {
            let Ok(command) = command else {
                close_with = Some(close(disconnect::BAD_REQUEST, "bad request"));
                break;
            };
            if command.is_empty() {
                // A pong to our ping. Centrifugo is strict about unsolicited ones; being
                // lenient is compatible with every SDK. It spends from the budget like any
                // command (a flood of them is no cheaper to read).
                self.c.budget.spend();
                self.ping_sent = None;
                continue;
            }
            let id = command_id(&command);
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
        if out.flush(socket, true).await {
            Ok(close_with)
        } else {
            Err(())
        }
    }

    /// Handles one command: `Ok(Some(reply))`, `Ok(None)` (no reply), or `Err(close)`.
    async fn handle_command(&mut self, id: u64, command: &Map<String, Value>) -> Handled {
        let Some((index, method, params)) = command_method(command) else {
            return Err(close(disconnect::BAD_REQUEST, "bad request"));
        };
        self.c.gw.metrics.command(index);
        let empty = Map::new();
        let params = params.as_object().unwrap_or(&empty);
        if self.unusable || (method != "connect" && !self.c.is_connected()) {
            return Err(close(disconnect::BAD_REQUEST, "connect first"));
        }
        if method == "send" {
            // No application message handler: Centrifugo closes with "not available".
            return Err(close(disconnect::NOT_AVAILABLE, "not available"));
        }
        if id == 0 {
            return Err(close(disconnect::BAD_REQUEST, "bad request"));
        }
        // Every command spends from the budget, `connect` and `refresh` (a token check each)
        // included: none is a way around it.
        if !self.c.budget.spend() {
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
}

/// A frame line that is not a JSON object (or a frame with no command at all): the
/// session closes with 3501.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadFrame;

/// Decodes a frame into its commands, lazily and in order: one JSON object per line (one
/// trailing newline allowed), `Err` for the first line that is not one, after which the
/// session stops reading. A frame of nothing but whitespace is a single `Err`. Pure: the
/// session loop and the fuzz targets both use it.
pub(crate) fn decode_frame(
    text: &str,
) -> impl Iterator<Item = Result<Map<String, Value>, BadFrame>> + '_ {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let empty = text.trim().is_empty();
    let lines = (!empty)
        .then(|| text.split('\n'))
        .into_iter()
        .flatten()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(command)) => Ok(command),
            _ => Err(BadFrame),
        });
    std::iter::once(Err(BadFrame))
        .filter(move |_| empty)
        .chain(lines)
}

/// A command's `id` (0 when missing or not an unsigned integer).
pub(crate) fn command_id(command: &Map<String, Value>) -> u64 {
    command.get("id").and_then(Value::as_u64).unwrap_or(0)
}

/// A command's method (its index in [`METHODS`], its name) and parameters: the first
/// method of [`METHODS`] the command carries as a member.
pub(crate) fn command_method(
    command: &Map<String, Value>,
) -> Option<(usize, &'static str, &Value)> {
    METHODS
        .iter()
        .enumerate()
        .find_map(|(i, m)| command.get(*m).map(|p| (i, *m, p)))
}

/// A string parameter, if present and not empty.
pub(crate) fn non_empty<'p>(params: &'p Map<String, Value>, key: &str) -> Option<&'p str> {
    params
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}
