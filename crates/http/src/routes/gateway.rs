//! The WebSocket endpoint: upgrade with bounded buffers and hand the socket to the gateway.

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/connection/websocket", get(websocket))
        .route("/", get(signalwire))
}

/// Bytes read from a socket at a time. tungstenite's default read buffer (128 KiB) and
/// write buffer (128 KiB) would cost more per idle connection than everything else
/// together; frames larger than this are still read, in several reads.
const READ_BUFFER: usize = 1024;

/// Which protocol a socket speaks.
#[derive(Clone, Copy)]
enum Protocol {
    Centrifugo,
    SignalWire,
}

/// The checks before an upgrade (so nothing is allocated for a refused socket): the
/// `Origin` (a browser page not on the allowlist gets 403, as Centrifugo answers) and the
/// node's connection limit (503; clients back off and retry). Then the upgrade, with
/// bounded messages, a small read buffer, and each (already batched) frame written
/// eagerly instead of through a per-socket write buffer.
fn accept(
    state: &AppState,
    headers: &HeaderMap,
    upgrade: WebSocketUpgrade,
    protocol: Protocol,
) -> Response {
    let origin = headers
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or("\u{0}"));
    if !state.gateway.origin_allowed(origin) {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let Some(slot) = state.gateway.reserve() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "connection limit reached").into_response();
    };
    let limit = state.gateway.settings().max_message_bytes;
    let gateway = state.gateway.clone();
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            match protocol {
                Protocol::Centrifugo => gateway.serve(slot, socket).await,
                Protocol::SignalWire => gateway.serve_signalwire(slot, socket).await,
            }
        })
}

/// `GET /connection/websocket`: Centrifugo client protocol v2 (JSON).
async fn websocket(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    accept(&state, &headers, upgrade, Protocol::Centrifugo)
}

/// `GET /` with `Upgrade: websocket`: SignalWire's PubSub/Chat JSON-RPC protocol (the
/// path `@signalwire/js` connects to). Without an upgrade, 404 like any unknown path.
async fn signalwire(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(upgrade) => accept(&state, &headers, upgrade, Protocol::SignalWire),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}
