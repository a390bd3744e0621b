//! Centrifugo-compatible token endpoints (app-facing, Bearer), group membership and the
//! admin API for namespaces and signing keys (Basic), and the JWKS.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use tollgate_service::ServiceError;
use tollgate_token::jose::Algorithm;
use tollgate_token::validation::FieldError;

use crate::extract::{BasicAuth, BearerUser, JsonObject, ManagementScope};
use crate::{ApiError, AppState};

/// The endpoints a browser page calls (Bearer), which get CORS.
pub(crate) fn browser_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/centrifugo/subscription-token",
            post(subscription_token),
        )
        .route(
            "/api/v1/centrifugo/subscription-tokens",
            post(subscription_tokens),
        )
        .route(
            "/api/v1/centrifugo/connection-token",
            post(connection_token),
        )
        .route("/centrifuge/subscribe", post(legacy_subscribe))
}

/// The JWKS and the admin API, never called cross-origin from a browser.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/api/v1/projects/{project}/jwks.json", get(project_jwks))
        .route("/api/v1/groups/{kind}/{id}/members", get(members))
        .route(
            "/api/v1/groups/{kind}/{id}/members/{user}",
            put(add_member).delete(remove_member),
        )
        .route("/api/v1/namespaces", get(list_namespaces))
        .route(
            "/api/v1/namespaces/{name}",
            put(put_namespace).delete(delete_namespace),
        )
        .route("/api/v1/keys", get(list_keys))
        .route("/api/v1/keys/rotate", post(rotate_key))
}

fn required_string<'a>(
    body: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, ApiError> {
    match body.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(ApiError::Validation(vec![FieldError::new(
            "missing_required_parameter",
            field,
            format!("{field} is required and must be a string"),
        )])),
    }
}

fn string_list(body: &Map<String, Value>, field: &'static str) -> Result<Vec<String>, ApiError> {
    body.get(field)
        .and_then(Value::as_array)
        .and_then(|items| {
            items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .ok_or_else(|| {
            ApiError::Validation(vec![FieldError::new(
                "missing_required_parameter",
                field,
                format!("{field} must be an array of strings"),
            )])
        })
}

/// Optional `info`: a JSON object of at most 1 KiB (checklist 4.5).
fn optional_info(body: &Map<String, Value>) -> Result<Option<Value>, ApiError> {
    match body.get("info") {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) if v.to_string().len() <= 1024 => Ok(Some(v.clone())),
        Some(_) => Err(ApiError::Validation(vec![FieldError::new(
            "invalid_parameter",
            "info",
            "info must be a JSON object of at most 1024 bytes",
        )])),
    }
}

/// `POST /api/v1/centrifugo/subscription-token` → `{token}`; 401 / 403 / 422 (seed 000).
async fn subscription_token(
    State(state): State<AppState>,
    BearerUser(user): BearerUser,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let channel = required_string(&body, "channel")?;
    let info = optional_info(&body)?;
    let token = state
        .tollgate
        .subscription_token(&user, channel, info)
        .await?;
    Ok(Json(json!({ "token": token })))
}

fn item_error(e: &ServiceError) -> Value {
    let (status, message) = match e {
        ServiceError::Forbidden => (403, "no access to this channel".to_owned()),
        ServiceError::Validation(errors) => (
            422,
            errors
                .first()
                .map(|e| e.message.clone())
                .unwrap_or_default(),
        ),
        _ => (500, "internal error".to_owned()),
    };
    json!({"status": status, "message": message})
}

/// `POST /api/v1/centrifugo/subscription-tokens` `{channels: [...]}` → one entry per
/// channel: `{channel, token}` or `{channel, error: {status, message}}`.
async fn subscription_tokens(
    State(state): State<AppState>,
    BearerUser(user): BearerUser,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let channels = string_list(&body, "channels")?;
    let items = state
        .tollgate
        .subscription_tokens(&user, &channels, None)
        .await?;
    let tokens: Vec<Value> = items
        .iter()
        .map(|i| match &i.result {
            Ok(token) => json!({"channel": i.channel, "token": token}),
            Err(e) => json!({"channel": i.channel, "error": item_error(e)}),
        })
        .collect();
    Ok(Json(json!({ "tokens": tokens })))
}

/// `POST /centrifuge/subscribe` `{client, channels}` → `{channels: [{channel, token}]}`:
/// Centrifugo's v2/v3 private-channel endpoint. Channels the user may not use are left out,
/// which centrifuge-js reports as a 103 for that subscription.
async fn legacy_subscribe(
    State(state): State<AppState>,
    BearerUser(user): BearerUser,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let client = required_string(&body, "client")?;
    let channels = string_list(&body, "channels")?;
    let items = state
        .tollgate
        .subscription_tokens(&user, &channels, Some(client))
        .await?;
    let granted: Vec<Value> = items
        .into_iter()
        .filter_map(|i| {
            i.result
                .ok()
                .map(|token| json!({"channel": i.channel, "token": token}))
        })
        .collect();
    Ok(Json(json!({ "channels": granted })))
}

/// `POST /api/v1/centrifugo/connection-token` `{info?}` → `{token}`.
async fn connection_token(
    State(state): State<AppState>,
    BearerUser(user): BearerUser,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let info = optional_info(&body)?;
    let token = state.tollgate.connection_token(&user, info).await?;
    Ok(Json(json!({ "token": token })))
}

/// `GET /.well-known/jwks.json`: public keys of every project.
async fn jwks(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let keys = state.tollgate.jwks(None).await?;
    Ok(([(header::CACHE_CONTROL, "public, max-age=300")], Json(keys)))
}

/// `GET /api/v1/projects/{project}/jwks.json`: one project's public keys, for a Centrifugo
/// that serves that project only.
async fn project_jwks(
    State(state): State<AppState>,
    Path(project): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let project = project.parse().map_err(|_| ApiError::NotFound)?;
    let keys = state.tollgate.jwks(Some(project)).await?;
    Ok(([(header::CACHE_CONTROL, "public, max-age=300")], Json(keys)))
}

async fn members(
    State(state): State<AppState>,
    auth: BasicAuth<ManagementScope>,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let list = state.tollgate.members(&auth.principal, &kind, &id).await?;
    let data: Vec<Value> = list
        .iter()
        .map(|(user, at)| json!({"user_id": user, "added_at": at.to_rfc3339()}))
        .collect();
    Ok(Json(json!({"kind": kind, "id": id, "members": data})))
}

async fn add_member(
    State(state): State<AppState>,
    auth: BasicAuth<ManagementScope>,
    Path((kind, id, user)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let created = state
        .tollgate
        .add_member(&auth.principal, &kind, &id, &user)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"kind": kind, "id": id, "user_id": user})),
    ))
}

async fn remove_member(
    State(state): State<AppState>,
    auth: BasicAuth<ManagementScope>,
    Path((kind, id, user)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .tollgate
        .remove_member(&auth.principal, &kind, &id, &user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn namespace_view(ns: &tollgate_token::centrifugo::Namespace) -> Value {
    json!({
        "name": ns.name,
        "rule": ns.rule.to_stored(),
        "id_format": ns.id_format.as_str(),
        "token_ttl": ns.token_ttl,
    })
}

async fn list_namespaces(
    State(state): State<AppState>,
    auth: BasicAuth<ManagementScope>,
) -> Result<Json<Value>, ApiError> {
    let all = state.tollgate.namespaces(auth.principal.project_id).await?;
    Ok(Json(
        json!({"data": all.iter().map(namespace_view).collect::<Vec<_>>()}),
    ))
}

async fn put_namespace(
    State(state): State<AppState>,
    auth: BasicAuth<ManagementScope>,
    Path(name): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let rule = required_string(&body, "rule")?;
    let id_format = body
        .get("id_format")
        .and_then(Value::as_str)
        .unwrap_or("uuid");
    let ttl = body
        .get("token_ttl")
        .and_then(Value::as_i64)
        .unwrap_or(tollgate_token::centrifugo::DEFAULT_SUBSCRIPTION_TTL);
    let ns = state
        .tollgate
        .put_namespace(auth.principal.project_id, &name, rule, id_format, ttl)
        .await
        .map_err(|e| match e {
            ServiceError::InvalidInput(msg) => {
                ApiError::Validation(vec![FieldError::new("invalid_parameter", "namespace", msg)])
            }
            other => other.into(),
        })?;
    Ok(Json(namespace_view(&ns)))
}

async fn delete_namespace(
    State(state): State<AppState>,
    auth: BasicAuth<ManagementScope>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .tollgate
        .delete_namespace(auth.principal.project_id, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_keys(
    State(state): State<AppState>,
    auth: BasicAuth<ManagementScope>,
) -> Result<Json<Value>, ApiError> {
    let keys = state
        .tollgate
        .signing_keys(auth.principal.project_id)
        .await?;
    let data: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({
                "kid": k.kid.as_str(),
                "alg": k.alg.as_str(),
                "state": k.state.as_str(),
                "created_at": k.created_at.to_rfc3339(),
                "not_after": k.not_after.map(|t| t.to_rfc3339()),
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

async fn rotate_key(
    State(state): State<AppState>,
    auth: BasicAuth<ManagementScope>,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let alg: Algorithm = match body
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or("ES256")
        .parse()
    {
        Ok(a) => a,
        Err(_) => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "invalid_parameter",
                "alg",
                "alg must be one of HS256, HS384, HS512, ES256, EdDSA, RS256",
            )]));
        }
    };
    let retire_after = body
        .get("retire_after")
        .and_then(Value::as_i64)
        .unwrap_or(86_400);
    let kid = state
        .tollgate
        .rotate_signing_key(auth.principal.project_id, alg, retire_after)
        .await
        .map_err(|e| match e {
            ServiceError::InvalidInput(msg) => ApiError::Validation(vec![FieldError::new(
                "invalid_parameter",
                "retire_after",
                msg,
            )]),
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"kid": kid.as_str(), "alg": alg.as_str()})),
    ))
}
