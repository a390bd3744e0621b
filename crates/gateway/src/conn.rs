//! What every WebSocket session shares, whatever its protocol: timed writes, the
//! session's deadline timer and shutdown signal, and the per-connection command budget.
//!
//! A session loop runs once per delivery batch, so what it does per turn is paid per
//! delivery at fan-out rates: the helpers here keep timers armed across turns instead of
//! registering fresh ones.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use tokio::time::{Instant, Sleep};

/// Longest a write may take before the peer is considered gone: a client that stops
/// reading must not hold a session (and its slot) forever.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a write, bounded by [`WRITE_TIMEOUT`]. The timer is armed only when the write
/// cannot finish on its first poll: almost every write fits the socket buffer at once,
/// and a timer registered and cancelled per write is a measurable share of fan-out.
async fn bounded<F: Future<Output = Result<(), axum::Error>>>(write: F) -> bool {
    let mut write = std::pin::pin!(write);
    if let Poll::Ready(done) = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await
    {
        return done.is_ok();
    }
    matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())))
}

/// Writes one text frame; `false` when the peer is gone or too slow to take it.
pub(crate) async fn write(socket: &mut WebSocket, frame: String) -> bool {
    bounded(socket.send(Message::Text(frame.into()))).await
}

/// Writes one text frame of shared bytes (UTF-8 by construction: JSON we encoded).
pub(crate) async fn write_bytes(socket: &mut WebSocket, frame: bytes::Bytes) -> bool {
    let Ok(text) = axum::extract::ws::Utf8Bytes::try_from(frame) else {
        return false;
    };
    bounded(socket.send(Message::Text(text))).await
}

/// WebSocket close code for a message over `gateway.max_message_bytes` (RFC 6455 §7.4.1).
pub(crate) const MESSAGE_TOO_BIG: u16 = 1009;

/// Whether a read failed because the peer's message was over the size limit (rather than
/// the peer going away): the session then says so with close 1009 before it ends.
pub(crate) fn too_big(e: &axum::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|inner| inner.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
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

/// Sends a close frame (bounded in time; the peer may already be gone).
pub(crate) async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(WRITE_TIMEOUT, socket.send(frame)).await;
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
