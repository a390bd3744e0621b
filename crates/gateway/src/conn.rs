//! What every WebSocket session shares, whatever its protocol: the socket type, timed
//! writes, the closing handshake, the session's deadline timer and shutdown signal, and the
//! per-connection command budget.
//!
//! A session loop runs once per delivery batch, so what it does per turn is paid per
//! delivery at fan-out rates: the helpers here keep timers armed across turns instead of
//! registering fresh ones.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use futures_util::SinkExt as _;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::{Instant, Sleep};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, Utf8Bytes};

/// One client's WebSocket, over the upgraded HTTP connection (see [`crate::upgrade`]).
pub(crate) type Socket = tokio_tungstenite::WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Longest a write may take before the peer is considered gone: a client that stops
/// reading must not hold a session (and its slot) forever.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest the connection stays open after the server's close frame, for the peer to
/// finish what it was sending, read the close and answer it (see [`close`]).
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// Runs a write, bounded by [`WRITE_TIMEOUT`]. The timer is armed only when the write
/// cannot finish on its first poll: almost every write fits the socket buffer at once,
/// and a timer registered and cancelled per write is a measurable share of fan-out.
async fn bounded<F: Future<Output = Result<(), tungstenite::Error>>>(write: F) -> bool {
    let mut write = std::pin::pin!(write);
    if let Poll::Ready(done) = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await
    {
        return done.is_ok();
    }
    matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())))
}

/// Writes one text frame; `false` when the peer is gone or too slow to take it.
pub(crate) async fn write(socket: &mut Socket, frame: String) -> bool {
    bounded(socket.send(Message::Text(frame.into()))).await
}

/// Writes one text frame of shared bytes (UTF-8 by construction: JSON we encoded).
pub(crate) async fn write_bytes(socket: &mut Socket, frame: bytes::Bytes) -> bool {
    let Ok(text) = Utf8Bytes::try_from(frame) else {
        return false;
    };
    bounded(socket.send(Message::Text(text))).await
}

/// WebSocket close code for a message over `gateway.max_message_bytes` (RFC 6455 §7.4.1).
pub(crate) const MESSAGE_TOO_BIG: u16 = 1009;
/// Close code for a text message that is not UTF-8 (RFC 6455 §7.4.1, §8.1).
pub(crate) const INVALID_PAYLOAD: u16 = 1007;
/// Close code for a frame that breaks the framing rules (RFC 6455 §7.4.1).
pub(crate) const PROTOCOL_ERROR: u16 = 1002;

/// The close a failed read calls for, when the peer broke a rule rather than went away: a
/// message over the size limit (1009; refused on its frame header, before it is buffered),
/// a text message that is not UTF-8 (1007), or a malformed frame (1002). `None`: the peer
/// is gone (reset, end of stream), and there is no one to tell.
pub(crate) fn refusal(e: &tungstenite::Error) -> Option<(u16, &'static str)> {
    use tungstenite::error::ProtocolError as P;
    match e {
        tungstenite::Error::Capacity(_) => Some((MESSAGE_TOO_BIG, "message too big")),
        tungstenite::Error::Utf8(_) => Some((INVALID_PAYLOAD, "invalid frame payload data")),
        tungstenite::Error::Protocol(
            P::NonZeroReservedBits
            | P::UnmaskedFrameFromClient
            | P::FragmentedControlFrame
            | P::ControlFrameTooBig
            | P::UnknownControlFrameType(_)
            | P::UnknownDataFrameType(_)
            | P::UnexpectedContinueFrame
            | P::ExpectedFragment(_)
            | P::InvalidOpcode(_)
            | P::InvalidCloseSequence,
        ) => Some((PROTOCOL_ERROR, "protocol error")),
        _ => None,
    }
}

/// A session's deadline (stale, pong, expiry): one timer for the session's life, re-armed
/// only when the deadline moves.
#[derive(Debug)]
pub(crate) struct Deadline {
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl Deadline {
    pub(crate) fn new() -> Self {
        Self {
            // Never polled until a deadline is set.
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
        }
    }

    /// Resolves when `deadline` (when, close code, reason) is due, with its close code and
    /// reason; never for `None`.
    pub(crate) async fn until(
        &mut self,
        deadline: Option<(Instant, u16, &'static str)>,
    ) -> (u16, &'static str) {
        let Some((at, code, reason)) = deadline else {
            return std::future::pending().await;
        };
        if self.armed != Some(at) {
            self.sleep.as_mut().reset(at);
            self.armed = Some(at);
        }
        self.sleep.as_mut().await;
        (code, reason)
    }
}

/// Resolves when the gateway starts shutting down (the flag only ever flips to `true`);
/// never if the gateway is dropped without a shutdown. One future per session, polled
/// across turns: a fresh `changed()` per turn would take the shared channel's lock for
/// every delivery of every connection.
pub(crate) async fn shutdown(mut stopping: tokio::sync::watch::Receiver<bool>) {
    if stopping.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Sends the close frame that ends a session from our side, flushed and bounded in time
/// (the peer may already be gone); whether it went out. Follow it with [`linger`].
pub(crate) async fn close(socket: &mut Socket, code: u16, reason: &str) -> bool {
    let frame = Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }));
    tokio::time::timeout(WRITE_TIMEOUT, socket.send(frame))
        .await
        .is_ok_and(|sent| sent.is_ok())
}

/// Answers the peer's close: its close frame was read, and the reply tungstenite queued
/// goes out with the next write or flush, which must happen before the socket is dropped
/// (RFC 6455 §5.5.1); then the TCP connection is ended from our side (§7.1.1).
pub(crate) async fn answer_close(socket: &mut Socket) {
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        let _ = socket.flush().await;
        let _ = socket.get_mut().shutdown().await;
    })
    .await;
}

/// The lingering close that follows our close frame: half-closes the TCP connection and
/// reads (and drops) what the peer still sends until it closes its side, for at most
/// [`LINGER`].
///
/// Dropping the socket while the peer's bytes sit unread makes the kernel answer with a TCP
/// reset, and a reset can destroy the close frame before the peer reads it: exactly what
/// happens after a frame over the size limit, refused on its header with the rest of it
/// still arriving. So the write side is shut (FIN: nothing follows the close frame) and
/// whatever the peer still sends — the rest of that frame, its close reply — is read and
/// discarded. Reads go to the raw stream: tungstenite may have given up on it (a refused
/// frame leaves its payload unparsed).
pub(crate) async fn linger(socket: &mut Socket) {
    let stream = socket.get_mut();
    let _ = tokio::time::timeout(LINGER, async {
        if stream.shutdown().await.is_err() {
            return;
        }
        // Allocated only here: a buffer in the session's own state would be paid by every
        // idle connection.
        let mut sink = vec![0u8; 8 * 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// A token bucket of commands: `rate` per second sustained, `burst` at once.
#[derive(Debug)]
pub(crate) struct Budget {
    rate: u32,
    burst: u32,
    left: f64,
    at: Instant,
}

impl Budget {
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate,
            burst,
            left: f64::from(burst),
            at: Instant::now(),
        }
    }

    /// A connection's budget under the gateway's settings.
    pub(crate) fn for_settings(s: &crate::GatewaySettings) -> Self {
        Self::new(s.max_commands_per_second, s.command_burst)
    }

    /// Takes one command; `false` when the client is over its rate (0: no limit).
    pub(crate) fn spend(&mut self) -> bool {
        if self.rate == 0 {
            return true;
        }
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * f64::from(self.rate);
        self.left = (self.left + refill).min(f64::from(self.burst));
        self.at = now;
        if self.left >= 1.0 {
            self.left -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `fut` completes within `within` of (paused, auto-advancing) time.
    async fn done_within<T>(fut: impl Future<Output = T>, within: Duration) -> bool {
        tokio::time::timeout(within, fut).await.is_ok()
    }

    /// A deadline at `at` that closes with 3012.
    fn due(at: Instant) -> Option<(Instant, u16, &'static str)> {
        Some((at, 3012, "no pong"))
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_fires_when_due_follows_moves_and_never_fires_without_one() {
        let mut timer = Deadline::new();
        let start = Instant::now();
        // No deadline: pending for as long as anyone waits.
        assert!(!done_within(timer.until(None), Duration::from_secs(3600)).await);

        // A deadline 10 s out: not yet after 9 s, fired by 10 s.
        let at = start + Duration::from_secs(3610);
        assert!(!done_within(timer.until(due(at)), Duration::from_secs(9)).await);
        assert_eq!(timer.until(due(at)).await, (3012, "no pong"));
        assert!(Instant::now() >= at);

        // Moved later: the fired timer is re-armed, not reported again at once.
        let later = Instant::now() + Duration::from_secs(30);
        assert!(!done_within(timer.until(due(later)), Duration::from_secs(10)).await);
        // Moved earlier than what is armed (20 s left): fires at the new time.
        let earlier = Instant::now() + Duration::from_secs(5);
        assert!(done_within(timer.until(due(earlier)), Duration::from_secs(6)).await);
        assert!(Instant::now() >= earlier && Instant::now() < later);
    }

    #[tokio::test]
    async fn shutdown_resolves_on_the_flag_even_if_it_flipped_before() {
        let (tx, rx) = tokio::sync::watch::channel(false);
        // Flipped before the session's future exists: still seen.
        tx.send(true).expect("receiver alive");
        assert!(done_within(shutdown(rx.clone()), Duration::from_secs(1)).await);

        // A gateway dropped without a shutdown never ends its sessions this way.
        let (tx, rx) = tokio::sync::watch::channel(false);
        drop(tx);
        assert!(!done_within(shutdown(rx), Duration::from_millis(50)).await);
    }
}
