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

/// Every route, without the cross-cutting layers.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(health::routes())
        .merge(signalwire::routes())
        .merge(fabric::routes())
        .merge(centrifugo::routes())
        .merge(gateway::routes())
        .merge(server_api::routes())
        .merge(server_keys::routes())
}

/// 404 for any unknown path, in the API's error shape.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// 405 for a known path with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
