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

/// `GET /connection/websocket`: Centrifugo client protocol v2 (JSON).
///
/// Checked before the upgrade, so nothing is allocated for a refused socket: the `Origin`
/// (a browser page not on the allowlist gets 403, as Centrifugo answers) and the node's
/// connection limit (503; clients back off and retry).
async fn websocket(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
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
        // tungstenite's defaults (64 MiB messages, 128 KiB write buffer) do not suit tens of
        // thousands of sockets: bound the message, and write each (already batched) frame
        // eagerly instead of holding a per-socket write buffer.
        .max_message_size(limit)
        .max_frame_size(limit)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move { gateway.serve(slot, socket).await })
}

/// `GET /` with `Upgrade: websocket`: SignalWire's PubSub/Chat JSON-RPC protocol (the
/// path `@signalwire/js` connects to). Without an upgrade, 404 like any unknown path.
async fn signalwire(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        return StatusCode::NOT_FOUND.into_response();
    };
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
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move { gateway.serve_signalwire(slot, socket).await })
}
