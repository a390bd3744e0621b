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
//! - [`guard`]: the request-body deadline, `Connection: close` after an unread body, and
//!   `nosniff` / `no-store` on every response.
//! - [`cors`]: CORS for the browser-facing endpoints only.
//! - [`throttle`] and [`client_addr`]: the failed-credential limiter and who the caller is.
//! - [`metrics`]: Prometheus metrics served at `/metrics`.
//! - [`routes`]: the endpoints, grouped by API family.
//! - [`serve`](mod@serve): the accept loop, with header deadlines and a head-size cap.

pub mod client_addr;
pub mod cors;
pub mod error;
pub mod extract;
pub mod guard;
mod idempotency;
pub mod metrics;
pub mod middleware;
pub mod routes;
pub mod serve;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tollgate_gateway::Gateway;
use tollgate_service::Tollgate;

pub use error::ApiError;
pub use serve::serve;

/// Settings of the HTTP layer itself.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Browser origins allowed by CORS on the browser-facing endpoints.
    pub cors_allowed_origins: Vec<String>,
    /// Which setting `cors_allowed_origins` came from (named in the refusal log).
    pub cors_origin_source: cors::OriginSource,
    /// Time a client has to send a request's line and headers (and that a keep-alive
    /// connection may sit idle) before the connection is closed.
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's body once its headers arrived; 408 after.
    pub body_read_timeout: Duration,
    /// Proxies whose `X-Forwarded-For` is believed when telling callers apart.
    pub trusted_proxies: Vec<client_addr::IpNet>,
    /// Failed credentials one client address may make (see [`throttle`]).
    pub failed_auth: throttle::Limit,
}

impl Default for HttpSettings {
    fn default() -> Self {
        // 500 channels of 250 characters plus 2,000 characters of state is about 150 KB
        // of JSON (more with multi-byte characters); 1 MiB leaves room without inviting abuse.
        Self {
            max_body_bytes: 1024 * 1024,
            cors_allowed_origins: Vec::new(),
            cors_origin_source: cors::OriginSource::Gateway,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            failed_auth: throttle::ADDRESS,
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
    /// Failed credentials per address and project.
    pub throttle: throttle::Throttle,
    /// See [`HttpSettings::trusted_proxies`].
    pub(crate) trusted_proxies: Vec<client_addr::IpNet>,
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
    pub fn new(tollgate: Tollgate, gateway: Gateway, settings: &HttpSettings) -> Self {
        Self(Arc::new(Shared {
            tollgate,
            metrics: Arc::default(),
            node_id: gateway.node_id().clone(),
            gateway,
            idempotency: Arc::default(),
            throttle: throttle::Throttle::with_limits(settings.failed_auth, throttle::PROJECT),
            trusted_proxies: settings.trusted_proxies.clone(),
        }))
    }

    /// The address a request came from (see [`client_addr`]); `None` when the request did
    /// not come through [`serve`] (in-process tests).
    pub(crate) fn client_ip(&self, parts: &axum::http::request::Parts) -> Option<std::net::IpAddr> {
        serve::peer(parts)
            .map(|peer| client_addr::client_ip(peer, &parts.headers, &self.trusted_proxies))
    }
}

/// The complete router: every endpoint on one listener.
pub fn router(state: AppState, settings: &HttpSettings) -> Router {
    let cors = cors::layer(
        settings.cors_allowed_origins.clone(),
        settings.cors_origin_source,
    );
    routes::routes(cors)
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            middleware::panic_response,
        ))
        .layer(axum::middleware::from_fn_with_state(
            settings.body_read_timeout,
            guard::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::request_id_and_log,
        ))
        .with_state(state)
}
