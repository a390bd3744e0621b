//! The WebSocket endpoints: each path hands the upgrade request to the gateway, which
//! checks it (handshake, `Origin`, connection limit), sets the socket's limits and runs
//! the session.

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use tollgate_gateway::Protocol;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/connection/websocket", get(websocket))
        .route("/", get(signalwire))
}

/// `GET /connection/websocket`: Centrifugo client protocol v2 (JSON).
async fn websocket(State(state): State<AppState>, req: Request) -> Response {
    state.gateway.accept(req, Protocol::Centrifugo)
}

/// `GET /` with `Upgrade: websocket`: SignalWire's PubSub/Chat JSON-RPC protocol (the
/// path `@signalwire/js` connects to). Without an upgrade, 404 like any unknown path.
async fn signalwire(State(state): State<AppState>, req: Request) -> Response {
    state.gateway.accept(req, Protocol::SignalWire)
}
