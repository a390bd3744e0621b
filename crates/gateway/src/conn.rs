//! What every WebSocket session shares, whatever its protocol: timed writes and the
//! per-connection command budget.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use tokio::time::Instant;

/// Longest a write may take before the peer is considered gone: a client that stops
/// reading must not hold a session (and its slot) forever.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes one text frame; `false` when the peer is gone or too slow to take it.
pub(crate) async fn write(socket: &mut WebSocket, frame: String) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Text(frame.into()))).await,
        Ok(Ok(()))
    )
}

/// Writes one text frame of shared bytes (UTF-8 by construction: JSON we encoded).
pub(crate) async fn write_bytes(socket: &mut WebSocket, frame: bytes::Bytes) -> bool {
    let Ok(text) = axum::extract::ws::Utf8Bytes::try_from(frame) else {
        return false;
    };
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Text(text))).await,
        Ok(Ok(()))
    )
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
