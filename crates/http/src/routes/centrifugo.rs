//! Centrifugo-compatible token endpoints (app-facing, Bearer), group membership and the
//! admin API for namespaces and signing keys (Basic), and the JWKS.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use tollgate_service::ServiceError;
use tollgate_service::centrifugo::{
    DEFAULT_RETIRE_AFTER, MAX_BATCH_CHANNELS, MAX_RETIRE_AFTER, MIN_RETIRE_AFTER,
};
use tollgate_token::centrifugo::{self, IdFormat, Namespace, Rule};
use tollgate_token::ids::ID_RULE;
use tollgate_token::jose::Algorithm;
use tollgate_token::validation::FieldError;
use tollgate_token::{GroupId, GroupKind, UserId};

use super::fields::Fields;
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

/// Largest `info` object, serialised (checklist 4.5).
const MAX_INFO_BYTES: usize = 1024;
/// Longest `rule` or `id_format` read; anything valid is far shorter.
const MAX_ENUM_LEN: usize = 128;

/// `POST /api/v1/centrifugo/subscription-token` → `{token}`; 401 / 403 / 422 (seed 000).
async fn subscription_token(
    State(state): State<AppState>,
    BearerUser(user): BearerUser,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let mut f = Fields::new(&body);
    // The channel's grammar is the service's (a 422 with attribute `channel`).
    let channel = f.required_str("channel", usize::MAX);
    let info = f.optional_object("info", MAX_INFO_BYTES);
    f.finish()?;
    let channel = channel.ok_or(ApiError::BadRequest)?;
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
    let mut f = Fields::new(&body);
    // Each channel's grammar is checked per item, so one bad name fails only its entry.
    let channels = f.required_str_array("channels", MAX_BATCH_CHANNELS);
    f.finish()?;
    let channels = channels.ok_or(ApiError::BadRequest)?;
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
    let mut f = Fields::new(&body);
    let info = f.optional_object("info", MAX_INFO_BYTES);
    f.finish()?;
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

/// A new membership's ids, parsed against their grammars; every failed one is named
/// (`kind`, `id`, `user_id`).
fn new_membership(
    kind: &str,
    id: &str,
    user: &str,
) -> Result<(GroupKind, GroupId, UserId), ApiError> {
    let mut errors = Vec::new();
    let kind = kind.parse::<GroupKind>().map_err(|_| {
        errors.push(FieldError::new(
            "invalid_parameter",
            "kind",
            format!("kind must be {}", GroupKind::RULE),
        ));
    });
    let id = id.parse::<GroupId>().map_err(|_| {
        errors.push(FieldError::new(
            "invalid_parameter",
            "id",
            format!("id must be {ID_RULE}"),
        ));
    });
    let user = user.parse::<UserId>().map_err(|_| {
        errors.push(FieldError::new(
            "invalid_parameter",
            "user_id",
            format!("user_id must be {ID_RULE}"),
        ));
    });
    match (kind, id, user) {
        (Ok(kind), Ok(id), Ok(user)) => Ok((kind, id, user)),
        _ => {
            tracing::info!("membership refused: ids outside the id grammar");
            Err(ApiError::Validation(errors))
        }
    }
}

async fn add_member(
    State(state): State<AppState>,
    auth: BasicAuth<ManagementScope>,
    Path((kind, id, user)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (kind, id, user) = new_membership(&kind, &id, &user)?;
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

/// Removal accepts any id an earlier version could have stored, so such members can be
/// removed (the service checks that looser rule).
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

/// `PUT /api/v1/namespaces/{name}` `{rule, id_format?, token_ttl?}`: every field is
/// checked (types, then values) and all failures reported before anything is stored.
async fn put_namespace(
    State(state): State<AppState>,
    auth: BasicAuth<ManagementScope>,
    Path(name): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let mut f = Fields::new(&body);
    if !centrifugo::valid_name(&name) {
        f.fail(
            "invalid_parameter",
            "name",
            format!("namespace name must be {}", centrifugo::NAME_RULE),
        );
    }
    let rule = f
        .required_str("rule", MAX_ENUM_LEN)
        .and_then(|r| match Rule::parse_input(r) {
            Ok(rule) => Some(rule),
            Err(message) => {
                f.fail("invalid_parameter", "rule", message);
                None
            }
        });
    let id_format = f.optional_parsed::<IdFormat>("id_format", MAX_ENUM_LEN, "uuid or token");
    let token_ttl = f.optional_int("token_ttl", centrifugo::TOKEN_TTL_RANGE);
    f.finish()?;
    let (Some(rule), Some(id_format), Some(token_ttl)) = (rule, id_format, token_ttl) else {
        return Err(ApiError::BadRequest);
    };
    let ns = Namespace {
        name,
        rule,
        id_format: id_format.unwrap_or(IdFormat::Uuid),
        token_ttl: token_ttl.unwrap_or(centrifugo::DEFAULT_SUBSCRIPTION_TTL),
    };
    let ns = state
        .tollgate
        .put_namespace(auth.principal.project_id, ns)
        .await?;
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

/// `POST /api/v1/keys/rotate` `{alg?, retire_after?}` → 201 `{kid, alg}`.
async fn rotate_key(
    State(state): State<AppState>,
    auth: BasicAuth<ManagementScope>,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut f = Fields::new(&body);
    let alg = f.optional_parsed::<Algorithm>(
        "alg",
        MAX_ENUM_LEN,
        "one of HS256, HS384, HS512, ES256, EdDSA, RS256",
    );
    let retire_after = f.optional_int("retire_after", MIN_RETIRE_AFTER..=MAX_RETIRE_AFTER);
    f.finish()?;
    let (Some(alg), Some(retire_after)) = (alg, retire_after) else {
        return Err(ApiError::BadRequest);
    };
    let alg = alg.unwrap_or(Algorithm::ES256);
    let retire_after = retire_after.unwrap_or(DEFAULT_RETIRE_AFTER);
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
