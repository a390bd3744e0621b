//! The WebSocket endpoint: upgrade with bounded buffers and hand the socket to the gateway.

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use axum::routing::get;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/connection/websocket", get(websocket))
}

/// `GET /connection/websocket`: Centrifugo client protocol v2 (JSON).
async fn websocket(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    let limit = state.gateway.settings().max_message_bytes;
    let gateway = state.gateway.clone();
    upgrade
        // tungstenite's defaults (64 MiB messages, 128 KiB write buffer) do not suit tens of
        // thousands of sockets: bound the message, and write each (already batched) frame
        // eagerly instead of holding a per-socket write buffer.
        .max_message_size(limit)
        .max_frame_size(limit)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move { gateway.serve(socket).await })
}
