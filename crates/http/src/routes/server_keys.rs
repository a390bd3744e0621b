//! The admin API for a project's Centrifugo server API keys (`/api/v1/server-keys`):
//! list, create (the key is in that one response only) and revoke. Project Basic auth with
//! the `management` scope, since a server key can publish to and disconnect anyone.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::{Value, json};
use tollgate_service::{ServerKey, ServiceError};
use tollgate_token::validation::FieldError;

use crate::extract::{BasicAuth, JsonObject, ManagementScope};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/server-keys", get(list).post(create))
        .route("/api/v1/server-keys/{id}", delete(revoke))
}

fn view(key: &ServerKey) -> Value {
    json!({
        "id": key.id,
        "name": key.name,
        "created_at": key.created_at.to_rfc3339(),
        "revoked_at": key.revoked_at.map(|t| t.to_rfc3339()),
    })
}

fn invalid_name(message: impl Into<String>) -> ApiError {
    ApiError::Validation(vec![FieldError::new(
        "invalid_parameter",
        "name",
        message.into(),
    )])
}

/// `GET /api/v1/server-keys` → `{data: [{id, name, created_at, revoked_at}]}`, oldest
/// first, revoked keys included. Never a key or its hash.
async fn list(
    State(state): State<AppState>,
    auth: BasicAuth<ManagementScope>,
) -> Result<Json<Value>, ApiError> {
    let keys = state
        .tollgate
        .list_server_keys(auth.principal.project_id)
        .await?;
    Ok(Json(
        json!({ "data": keys.iter().map(view).collect::<Vec<_>>() }),
    ))
}

/// `POST /api/v1/server-keys` `{name?}` → 201 `{id, key, name, created_at}`. The key is
/// shown here only; Tollgate keeps its hash.
async fn create(
    State(state): State<AppState>,
    auth: BasicAuth<ManagementScope>,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = match body.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid_name("name must be a string")),
    };
    let (key, secret) = state
        .tollgate
        .create_server_key(auth.principal.project_id, name)
        .await
        .map_err(|e| match e {
            ServiceError::InvalidInput(msg) => invalid_name(msg),
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": key.id,
            "key": secret.expose(),
            "name": key.name,
            "created_at": key.created_at.to_rfc3339(),
        })),
    ))
}

/// `DELETE /api/v1/server-keys/{id}` → 204; 404 if the caller's project has no such
/// active key (another project's key looks exactly like a missing one).
async fn revoke(
    State(state): State<AppState>,
    auth: BasicAuth<ManagementScope>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = uuid::Uuid::try_parse(&id).map_err(|_| ApiError::NotFound)?;
    if state
        .tollgate
        .revoke_server_key(auth.principal.project_id, id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
