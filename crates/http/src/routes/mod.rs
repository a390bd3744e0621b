//! Endpoints, one module per API family.

pub mod centrifugo;
pub mod fabric;
mod fields;
pub mod gateway;
pub mod health;
pub mod server_api;
mod server_api_params;
pub mod server_keys;
pub mod signalwire;

use axum::Router;

use crate::{ApiError, AppState};

/// Every route, without the cross-cutting layers; `cors` wraps the browser-facing ones.
///
/// The 405 fallback is set on each group before `cors` wraps it: set afterwards, it would
/// replace the wrapped fallback and a preflight (`OPTIONS`) would get 405 instead of CORS.
pub fn routes(cors: tower_http::cors::CorsLayer) -> Router<AppState> {
    let browser = Router::new()
        .merge(centrifugo::browser_routes())
        .merge(fabric::browser_routes())
        .method_not_allowed_fallback(method_not_allowed)
        .layer(cors);
    Router::new()
        .merge(health::routes())
        .merge(signalwire::routes())
        .merge(fabric::routes())
        .merge(centrifugo::routes())
        .merge(gateway::routes())
        .merge(server_api::routes())
        .merge(server_keys::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .merge(browser)
}

/// 404 for any unknown path, in the API's error shape.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// 405 for a known path with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
