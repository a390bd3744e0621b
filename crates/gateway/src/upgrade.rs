//! The WebSocket endpoints' front door: the checks before an upgrade (the handshake's
//! headers, the `Origin` allowlist, the node's connection limit), the handshake itself
//! (RFC 6455 §4.2.2), and the socket's buffers and size limits. A refused socket costs a
//! short HTTP answer and nothing else.
//!
//! The upgrade is done here rather than by axum's `WebSocketUpgrade` so the session owns
//! the TCP stream under the WebSocket, which its closing handshake needs
//! ([`crate::conn::close`]).

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::Gateway;

/// Which protocol a socket speaks: the path it was opened on decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Centrifugo's client protocol v2 (JSON), on `/connection/websocket`.
    Centrifugo,
    /// SignalWire's PubSub/Chat JSON-RPC protocol, on `/`.
    SignalWire,
}

/// The body of the 403 a browser page from an origin off the allowlist gets: the page's
/// developer sees it in the network panel, and it names the setting to change. The origin
/// itself is not echoed (it is the client's to choose).
pub const ORIGIN_REFUSED: &str = "WebSocket refused: this page's origin is not in \
    gateway.allowed_origins (TOLLGATE_GATEWAY__ALLOWED_ORIGINS)\n";

/// Bytes read from a socket at a time. Every open socket keeps this buffer: tungstenite's
/// default (128 KiB) would cost more per idle connection than everything else together.
/// Frames larger than this are still read, in several reads.
const READ_BUFFER: usize = 1024;

/// Most characters of a refused origin shown in the log: the header is the client's to
/// fill, and a log line is no place for kilobytes of it.
const SHOWN_ORIGIN_CHARS: usize = 100;

/// Refused origins are logged at most once per this many seconds; the next line says how
/// many refusals were not logged meanwhile. A page that retries, or anyone with a script,
/// must not be able to flood the log.
const REFUSAL_LOG_EVERY_SECS: u64 = 10;

/// When a refused origin was last logged, and how many refusals went unlogged since.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    /// Seconds since the gateway started, plus one (0: never logged).
    last: AtomicU64,
    unlogged: AtomicU64,
}

impl RefusalLog {
    /// Whether to log a refusal at `now` (seconds since start), and if so how many were
    /// not logged before it. One winner per period, without a lock.
    fn admit(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now + 1 >= last + REFUSAL_LOG_EVERY_SECS;
        if due
            && self
                .last
                .compare_exchange(last, now + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.unlogged.swap(0, Ordering::Relaxed));
        }
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// A refused origin as the log shows it: at most [`SHOWN_ORIGIN_CHARS`] characters (bytes
/// that are not UTF-8 replaced), to be printed with `Debug` so control characters and
/// quotes are escaped and the line stays one line.
fn shown_origin(raw: &HeaderValue) -> String {
    let text = String::from_utf8_lossy(raw.as_bytes());
    let mut shown: String = text.chars().take(SHOWN_ORIGIN_CHARS).collect();
    if text.chars().nth(SHOWN_ORIGIN_CHARS).is_some() {
        shown.push('…');
    }
    shown
}

/// The handshake's own checks (RFC 6455 §4.2.1), answered as axum's `WebSocketUpgrade`
/// answers them; the `Sec-WebSocket-Key` to answer and the upgrade to wait for.
fn handshake(
    req: &mut Request,
) -> Result<(HeaderValue, hyper::upgrade::OnUpgrade), (StatusCode, &'static str)> {
    let bad = |why| (StatusCode::BAD_REQUEST, why);
    if req.method() != Method::GET {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "Request method must be `GET`",
        ));
    }
    let headers = req.headers();
    if !header_contains(headers, &header::CONNECTION, "upgrade") {
        return Err(bad("Connection header did not include 'upgrade'"));
    }
    if !header_is(headers, &header::UPGRADE, "websocket") {
        return Err(bad("`Upgrade` header did not include 'websocket'"));
    }
    if !header_is(headers, &header::SEC_WEBSOCKET_VERSION, "13") {
        return Err(bad("`Sec-WebSocket-Version` header did not include '13'"));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .cloned()
        .ok_or_else(|| bad("`Sec-WebSocket-Key` header missing"))?;
    let on_upgrade = req
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or((
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket request couldn't be upgraded since no upgrade state was present",
        ))?;
    Ok((key, on_upgrade))
}

fn header_is(headers: &HeaderMap, name: &header::HeaderName, value: &str) -> bool {
    headers
        .get(name)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

fn header_contains(headers: &HeaderMap, name: &header::HeaderName, value: &str) -> bool {
    headers.get(name).is_some_and(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains(value))
    })
}

impl Gateway {
    /// Answers a WebSocket upgrade request for `protocol`: 101 and a session for it, or a
    /// plain-text refusal — 400/405/426 for a request that is not a WebSocket handshake
    /// (404 on SignalWire's `/`, where it is just an unknown page), 403 for a browser page
    /// whose `Origin` is not allowed (logged, naming the setting), 503 when the node is
    /// full (clients back off and retry). Nothing is allocated for a refused socket.
    #[must_use]
    pub fn accept(&self, mut req: Request, protocol: Protocol) -> Response {
        let (key, on_upgrade) = match handshake(&mut req) {
            Ok(handshake) => handshake,
            Err(_) if protocol == Protocol::SignalWire => {
                return StatusCode::NOT_FOUND.into_response();
            }
            Err(refusal) => return refusal.into_response(),
        };
        let origin = req.headers().get(header::ORIGIN);
        // A header that is not visible ASCII is no origin on the allowlist.
        if !self.origin_allowed(origin.map(|o| o.to_str().unwrap_or("\u{0}"))) {
            if let Some(origin) = origin {
                self.log_refused_origin(origin);
            }
            return (StatusCode::FORBIDDEN, ORIGIN_REFUSED).into_response();
        }
        let Some(slot) = self.reserve() else {
            return (StatusCode::SERVICE_UNAVAILABLE, "connection limit reached").into_response();
        };
        let gateway = self.clone();
        let config = self.socket_config();
        tokio::spawn(async move {
            // A failed upgrade (the client left during the handshake) frees the slot.
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            gateway.serve(slot, socket, protocol).await;
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (
                    header::SEC_WEBSOCKET_ACCEPT,
                    HeaderValue::from_str(&tungstenite::handshake::derive_accept_key(
                        key.as_bytes(),
                    ))
                    .unwrap_or_else(|_| HeaderValue::from_static("")),
                ),
            ],
        )
            .into_response()
    }

    /// Every buffer and size limit of a socket, set on purpose rather than left to
    /// tungstenite's defaults (sized for a few large connections, not tens of thousands).
    fn socket_config(&self) -> WebSocketConfig {
        let limit = self.settings.max_message_bytes;
        WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            // Each frame is written (and flushed) as it is handed over: replies and pushes
            // are already batched into frames, and a write buffer per socket would be
            // memory every idle connection keeps (the default is 128 KiB).
            .write_buffer_size(0)
            // Left unlimited on purpose, because it cannot grow: every write waits until it
            // is flushed (`conn::write`, bounded in time), so the buffer holds at most the
            // frame being written plus the one pong and one close tungstenite queues
            // itself. A cap would only turn one of our own large replies into an error.
            .max_write_buffer_size(usize::MAX)
            // One limit for a whole message and for each frame of it: a frame announcing
            // more is refused on its header, before any of it is buffered (close 1009).
            .max_message_size(Some(limit))
            .max_frame_size(Some(limit))
            // RFC 6455 §5.1: a server must fail a connection whose client does not mask.
            .accept_unmasked_frames(false)
    }

    /// Logs a refused browser origin (rate-limited; the origin capped and escaped): an
    /// operator whose page cannot connect learns why, and which setting to change.
    fn log_refused_origin(&self, origin: &HeaderValue) {
        let Some(unlogged) = self.origin_log.admit(self.uptime()) else {
            return;
        };
        tracing::info!(
            origin = ?shown_origin(origin),
            unlogged,
            "WebSocket refused: the page's Origin is not in gateway.allowed_origins; add it \
             there (or to TOLLGATE_GATEWAY__ALLOWED_ORIGINS) if that page should connect"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_origin_is_shown_short_and_escaped() {
        let long = HeaderValue::from_str(&format!("https://{}.example", "a".repeat(5000)))
            .expect("visible ASCII");
        let shown = shown_origin(&long);
        assert_eq!(shown.chars().count(), SHOWN_ORIGIN_CHARS + 1);
        assert!(shown.ends_with('…'));
        // Bytes that are not UTF-8 are replaced; Debug escapes quotes and control bytes.
        let odd = HeaderValue::from_bytes(b"https://x\"\t\xff.example").expect("header bytes");
        let shown = format!("{:?}", shown_origin(&odd));
        assert_eq!(shown, "\"https://x\\\"\\t\u{fffd}.example\"");
        assert_eq!(shown_origin(&HeaderValue::from_static("null")), "null");
    }

    #[test]
    fn refusals_are_logged_once_per_period_with_the_count_of_those_not_logged() {
        let log = RefusalLog::default();
        assert_eq!(log.admit(0), Some(0));
        assert_eq!(log.admit(0), None);
        assert_eq!(log.admit(REFUSAL_LOG_EVERY_SECS - 1), None);
        assert_eq!(log.admit(REFUSAL_LOG_EVERY_SECS), Some(2));
        assert_eq!(log.admit(REFUSAL_LOG_EVERY_SECS + 1), None);
        assert_eq!(log.admit(REFUSAL_LOG_EVERY_SECS * 5), Some(1));
    }
}
