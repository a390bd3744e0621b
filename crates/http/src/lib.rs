//! The HTTP front end.
//!
//! Only this crate (and the gateway, for WebSocket sessions) knows axum; only this crate
//! knows HTTP status codes and response JSON shapes. Handlers are thin:
//! extract (authentication and body parsing are extractors), call one service method, map
//! the result through [`ApiError`].
//!
//! - [`error`]: `ApiError`, the one place errors become responses.
//! - [`extract`]: `BasicAuth` (SignalWire HTTP Basic) and `JsonObject` (bounded JSON body).
//! - [`middleware`]: request ids, access logs and request metrics.
//! - [`metrics`]: Prometheus metrics served at `/metrics`.
//! - [`routes`]: the endpoints, grouped by API family.

pub mod error;
pub mod extract;
mod idempotency;
pub mod metrics;
pub mod middleware;
pub mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tollgate_gateway::Gateway;
use tollgate_service::Tollgate;

pub use error::ApiError;

/// Settings of the HTTP layer itself.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        // 500 channels of 250 characters plus 2,000 characters of state is about 150 KB
        // of JSON (more with multi-byte characters); 1 MiB leaves room without inviting abuse.
        Self {
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// What every handler can reach. Cloned for every request (axum hands each `State`
/// extractor its own copy), so it is one `Arc` rather than a dozen.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

/// The contents of [`AppState`].
#[derive(Debug)]
pub struct Shared {
    pub tollgate: Tollgate,
    pub metrics: Arc<metrics::HttpMetrics>,
    pub gateway: Gateway,
    /// This node's id, reported by the server API's `info`.
    pub node_id: Arc<str>,
    /// Recent `idempotency_key`s of server API publishes.
    pub(crate) idempotency: Arc<idempotency::Idempotency>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// State around a service and its gateway, with fresh metrics.
    #[must_use]
    pub fn new(tollgate: Tollgate, gateway: Gateway) -> Self {
        Self(Arc::new(Shared {
            tollgate,
            metrics: Arc::default(),
            gateway,
            node_id: Arc::from(uuid::Uuid::new_v4().to_string()),
            idempotency: Arc::default(),
        }))
    }
}

/// The complete router: every endpoint on one listener.
pub fn router(state: AppState, settings: &HttpSettings) -> Router {
    routes::routes()
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            middleware::panic_response,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::request_id_and_log,
        ))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
