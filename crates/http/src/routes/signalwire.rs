//! SignalWire-compatible REST endpoints.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use tollgate_service::Principal;
use tollgate_token::pubsub::Product;

use crate::extract::{BasicAuth, ChatScope, JsonObject, PubSubScope};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/pubsub/tokens",
            post(|State(s), auth: BasicAuth<PubSubScope>, JsonObject(b)| {
                issue(Product::PubSub, s, auth.principal, b)
            }),
        )
        .route(
            "/api/chat/tokens",
            post(|State(s), auth: BasicAuth<ChatScope>, JsonObject(b)| {
                issue(Product::Chat, s, auth.principal, b)
            }),
        )
}

#[derive(Serialize)]
struct TokenResponse {
    token: String,
}

/// `POST /api/pubsub/tokens` (scope `pubsub`) and `POST /api/chat/tokens` (scope `chat`):
/// identical requests, differing only in product.
async fn issue(
    product: Product,
    state: AppState,
    principal: Principal,
    body: serde_json::Map<String, serde_json::Value>,
) -> Result<Json<TokenResponse>, ApiError> {
    let token = state
        .tollgate
        .issue_realtime_token(&principal, product, &body)
        .await?;
    Ok(Json(TokenResponse { token }))
}
