//! Centrifugo-compatible server HTTP API: `POST /api/<method>` and the legacy `POST /api`
//! `{method, params}`, authenticated by `X-API-Key` or `Authorization: apikey …`.
//! Success and API errors are HTTP 200 with `{"result"}` / `{"error"}`; bad auth is 401
//! with an empty body, a body that is not JSON 400 — as Centrifugo answers.
//!
//! Implemented so far: `publish` and `broadcast`. The other methods answer error 108
//! (not available) until the gateway work that backs them lands.

use axum::body::Bytes as Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq as _;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api", post(legacy))
        .route("/api/{method}", post(method))
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(key) = state.api_key.as_deref() else {
        return false;
    };
    let given = match headers.get("x-api-key") {
        Some(v) => v.to_str().ok(),
        None => headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("apikey"))
            .map(|(_, k)| k),
    };
    given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(key.as_bytes())))
}

fn api_error(code: u32, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

async fn call(state: &AppState, method: &str, params: &Map<String, Value>) -> Value {
    match method {
        "publish" => match publish_one(state, params, params.get("channel")).await {
            Ok(result) => json!({ "result": result }),
            Err(e) => e,
        },
        "broadcast" => {
            let Some(channels) = params.get("channels").and_then(Value::as_array) else {
                return api_error(107, "bad request");
            };
            if channels.is_empty() || channels.len() > 1000 {
                return api_error(107, "bad request");
            }
            let mut responses = Vec::with_capacity(channels.len());
            for channel in channels {
                responses.push(match publish_one(state, params, Some(channel)).await {
                    Ok(result) => json!({ "result": result }),
                    Err(e) => e,
                });
            }
            json!({"result": {"responses": responses}})
        }
        "subscribe" | "unsubscribe" | "disconnect" | "refresh" | "presence" | "presence_stats"
        | "history" | "history_remove" | "channels" | "info" | "batch" => {
            api_error(108, "not available")
        }
        _ => api_error(104, "not found"),
    }
}

async fn publish_one(
    state: &AppState,
    params: &Map<String, Value>,
    channel: Option<&Value>,
) -> Result<Value, Value> {
    let channel = channel
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty() && c.len() <= 1024)
        .ok_or_else(|| api_error(107, "bad request"))?;
    let data = params
        .get("data")
        .filter(|d| !d.is_null())
        .ok_or_else(|| api_error(107, "bad request"))?;
    // Compact re-serialisation: payloads travel inside newline-delimited frames.
    let data = Bytes::from(data.to_string());
    state
        .gateway
        .broker()
        .publish(channel, data, None, None)
        .await
        .map(|_| json!({}))
        .map_err(|_| api_error(100, "internal server error"))
}

fn parse(body: &Body) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// `POST /api/<method>`.
async fn method(
    State(state): State<AppState>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !authorized(&state, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(params) = parse(&body) else {
        return (StatusCode::BAD_REQUEST, "Bad Request").into_response();
    };
    Json(call(&state, &method, &params).await).into_response()
}

/// Legacy `POST /api` `{method, params}`.
async fn legacy(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if !authorized(&state, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(command) = parse(&body) else {
        return (StatusCode::BAD_REQUEST, "Bad Request").into_response();
    };
    let method = command
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let empty = Map::new();
    let params = command
        .get("params")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    Json(call(&state, method, params).await).into_response()
}
