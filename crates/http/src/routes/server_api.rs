//! Centrifugo-compatible server HTTP API: `POST /api/<method>` and the legacy `POST /api`
//! `{method, params}`, authenticated by `X-API-Key` or `Authorization: apikey …`.
//! Success and API errors are HTTP 200 with `{"result"}` / `{"error"}`; bad auth is 401
//! with an empty body, a body that is not JSON 400 — as Centrifugo answers.
//!
//! The key decides the project: a project's own server API key, or the deployment-wide
//! `centrifugo.api_key` for the project it is bound to. Every method then runs on that
//! project's [`ProjectScope`] alone — its channels, presence, history and connections —
//! so no method can name another project's. The deployment key acting for no project
//! (several projects, no `centrifugo.project`) is refused with 403 and a message naming
//! the setting.
//!
//! Methods: publish, broadcast, subscribe, unsubscribe, disconnect, refresh, presence,
//! presence_stats, history, history_remove, channels, info and batch.

use std::net::IpAddr;

use axum::body::Bytes as Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde_json::{Map, Value, json};
use tollgate_gateway::{
    ChannelOptions, Control, HistoryParams, ProjectScope, history_policy, presence_map,
    publication_json, stream_position,
};
use tollgate_service::{PROJECT_SETTING, ServerApiCaller};

use crate::AppState;
use crate::extract::ClientIp;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api", post(legacy))
        .route("/api/{method}", post(method))
}

/// The key the caller sent, in Centrifugo's order: `X-API-Key` if present, else
/// `Authorization: apikey <key>`, else the `api_key` query parameter.
fn given_key<'r>(
    headers: &'r HeaderMap,
    query: Option<&'r str>,
) -> Option<std::borrow::Cow<'r, str>> {
    match headers.get("x-api-key") {
        Some(v) => v.to_str().ok().map(Into::into),
        None => match headers.get("authorization") {
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, k)| scheme.eq_ignore_ascii_case("apikey") && !k.contains(' '))
                .map(|(_, k)| k.into()),
            // Query values are percent-decoded, as Go's `URL.Query().Get` does.
            None => query.and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "api_key")
                    .map(|(_, v)| v)
            }),
        },
    }
}

/// The scope of the project the caller's key belongs to, or the refusal to send.
async fn caller(
    state: &AppState,
    addr: Option<IpAddr>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<ProjectScope, Response> {
    let Some(key) = given_key(headers, query) else {
        tracing::debug!("server API call without a key");
        return Err(StatusCode::UNAUTHORIZED.into_response());
    };
    // Wrong keys are counted per address (a key names no project until it matches).
    state
        .throttle
        .check(addr, None)
        .map_err(IntoResponse::into_response)?;
    match state.tollgate.authenticate_server_api(&key).await {
        Ok(ServerApiCaller::Project(project)) => Ok(state.gateway.project(project)),
        Ok(ServerApiCaller::Denied) => {
            tracing::info!("server API call refused: unknown or revoked key");
            state.throttle.failed(addr, None);
            Err(StatusCode::UNAUTHORIZED.into_response())
        }
        // Logged by the service with the same advice.
        Ok(ServerApiCaller::Unbound) => Err((
            StatusCode::FORBIDDEN,
            Json(json!({"error": {
                "code": 103,
                "message": format!(
                    "centrifugo.api_key acts for no project: there are several projects; set \
                     {PROJECT_SETTING} or use a project's own server API key"
                ),
            }})),
        )
            .into_response()),
        Err(e) => Err(crate::error::ApiError::from(e).into_response()),
    }
}

fn api_error(code: u32, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

/// Runs one server API method.
async fn call(
    state: &AppState,
    scope: &ProjectScope,
    method: &str,
    params: &Map<String, Value>,
) -> Value {
    if let Some(field) = super::server_api_params::ill_typed(method, params) {
        tracing::info!(
            method,
            field,
            "server API command refused (107): a parameter of the wrong type or out of range"
        );
        return api_error(107, "bad request");
    }
    match method {
        "batch" => {
            let Some(commands) = params.get("commands").and_then(Value::as_array) else {
                return api_error(107, "bad request");
            };
            if commands.len() > 1000 {
                return api_error(107, "bad request");
            }
            let mut replies = Vec::with_capacity(commands.len());
            for command in commands {
                let reply = match command.as_object().and_then(|c| c.iter().next()) {
                    Some((name, p)) if name != "batch" => {
                        let empty = Map::new();
                        let p = p.as_object().unwrap_or(&empty);
                        let out = Box::pin(call(state, scope, name, p)).await;
                        match (out.get("result"), out.get("error")) {
                            (Some(r), _) => json!({ name.as_str(): r }),
                            (_, Some(e)) => json!({ "error": e }),
                            _ => api_error(100, "internal server error"),
                        }
                    }
                    Some(_) => api_error(104, "not found"),
                    None => api_error(107, "bad request"),
                };
                replies.push(reply);
            }
            // Centrifugo's batch answer has no `result` wrapper.
            json!({ "replies": replies })
        }
        "publish" => match publish_one(state, scope, params, params.get("channel")).await {
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
            // The channels are independent, so their publishes overlap: over Redis each
            // is a round trip, and waiting for one before sending the next made a
            // broadcast to 100 channels cost 100 round trips end to end (BENCHMARKS.md
            // §5). Bounded, so one call cannot open a thousand requests at once; answers
            // keep the order of `channels`.
            // One idempotency key covers each channel once: a channel listed twice must
            // see its first publish remembered before the second checks, so such a
            // broadcast goes one channel at a time (over Redis the check and the publish
            // are separate round trips, and two overlapping ones would both publish).
            let keyed = params.get("idempotency_key").is_some_and(|k| !k.is_null());
            let mut seen = std::collections::HashSet::with_capacity(channels.len());
            let repeats = channels.iter().any(|c| !seen.insert(c.as_str()));
            let in_flight = if keyed && repeats {
                1
            } else {
                BROADCAST_CONCURRENCY
            };
            let publishes: Vec<_> = channels
                .iter()
                .map(|channel| publish_one(state, scope, params, Some(channel)))
                .collect();
            let responses: Vec<Value> = futures_util::stream::iter(publishes)
                .buffered(in_flight)
                .map(|published| match published {
                    Ok(result) => json!({ "result": result }),
                    Err(e) => e,
                })
                .collect()
                .await;
            json!({"result": {"responses": responses}})
        }
        "subscribe" | "unsubscribe" | "disconnect" | "refresh" => control(scope, method, params),
        "presence" => match channel_of(params) {
            None => api_error(107, "bad request"),
            Some(ch) if !options(state, ch).presence => api_error(108, "not available"),
            Some(ch) => match scope.presence(ch).await {
                Ok(entries) => json!({"result": {"presence": presence_map(entries)}}),
                Err(_) => api_error(100, "internal server error"),
            },
        },
        "presence_stats" => match channel_of(params) {
            None => api_error(107, "bad request"),
            Some(ch) if !options(state, ch).presence => api_error(108, "not available"),
            Some(ch) => match scope.presence_stats(ch).await {
                Ok(s) => json!({"result": {"num_clients": s.clients, "num_users": s.users}}),
                Err(_) => api_error(100, "internal server error"),
            },
        },
        "history" => history(state, scope, params).await,
        "history_remove" => match channel_of(params) {
            None => api_error(107, "bad request"),
            Some(ch) if !options(state, ch).history() => api_error(108, "not available"),
            Some(ch) => match scope.remove_history(ch).await {
                Ok(()) => json!({"result": {}}),
                Err(_) => api_error(100, "internal server error"),
            },
        },
        "channels" => match scope.channels().await {
            Ok(list) => {
                let pattern = params.get("pattern").and_then(Value::as_str).unwrap_or("*");
                let channels: Map<String, Value> = list
                    .into_iter()
                    .filter(|(name, _)| glob(pattern, name))
                    .map(|(name, n)| (name, json!({"num_clients": n})))
                    .collect();
                json!({"result": {"channels": channels}})
            }
            Err(_) => api_error(100, "internal server error"),
        },
        "info" => {
            // This project's share of each node: another project's activity is not theirs
            // to see. This node answers for itself now; the others as of their last
            // heartbeat (at most a third of the broker's node TTL old).
            let here = node_json(
                state.node_id.as_ref(),
                tollgate_gateway::NODE_NAME,
                env!("CARGO_PKG_VERSION"),
                state.gateway.uptime(),
                scope.node_counts().await,
            );
            let others = match scope.other_nodes().await {
                Ok(others) => others,
                Err(_) => return api_error(100, "internal server error"),
            };
            let mut nodes = vec![here];
            nodes.extend(
                others
                    .into_iter()
                    .map(|n| node_json(&n.uid, &n.name, &n.version, n.uptime, n.counts)),
            );
            json!({"result": {"nodes": nodes}})
        }
        _ => api_error(104, "not found"),
    }
}

/// One node in `info`'s answer, with one project's counts.
fn node_json(
    uid: &str,
    name: &str,
    version: &str,
    uptime: u64,
    c: tollgate_gateway::NodeCounts,
) -> Value {
    json!({
        "uid": uid,
        "name": name,
        "version": version,
        "num_clients": c.clients,
        "num_users": c.users,
        "num_channels": c.channels,
        "num_subs": c.subs,
        "uptime": uptime,
    })
}

fn options<'s>(state: &'s AppState, channel: &str) -> &'s ChannelOptions {
    state.gateway.settings().channels.options(channel)
}

fn channel_of(params: &Map<String, Value>) -> Option<&str> {
    params
        .get("channel")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty() && c.len() <= 1024)
}

/// A `*`-only glob (Centrifugo's `channels` pattern), enough for `chat:*`-style filters.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// subscribe / unsubscribe / disconnect / refresh: commands to a user's connections.
fn control(scope: &ProjectScope, method: &str, params: &Map<String, Value>) -> Value {
    let Some(user) = params.get("user").and_then(Value::as_str) else {
        return api_error(107, "bad request");
    };
    let client = params.get("client").and_then(Value::as_str);
    let channel = params
        .get("channel")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let command = match method {
        "subscribe"
            if channel.is_empty()
                || channel.len() > 1024
                || channel.chars().any(char::is_control) =>
        {
            return api_error(107, "bad request");
        }
        "subscribe" => {
            let Ok(overrides) = tollgate_service::gateway::overrides(params.get("override")) else {
                return api_error(107, "bad request");
            };
            Control::Subscribe(Box::new(tollgate_gateway::SubscribeCommand {
                sub: tollgate_service::gateway::ServerSub {
                    channel,
                    info: raw_or_b64(params, "info", "b64info"),
                    data: raw_or_b64(params, "data", "b64data"),
                    overrides,
                },
                expire_at: params
                    .get("expire_at")
                    .and_then(Value::as_i64)
                    .filter(|e| *e > 0),
                recover_since: stream_position(params.get("recover_since")),
            }))
        }
        "unsubscribe" => Control::Unsubscribe { channel },
        "disconnect" => {
            let d = params.get("disconnect");
            let code = d
                .and_then(|d| d.get("code"))
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| (3000..=4999).contains(c))
                .unwrap_or(3503);
            let reason = d
                .and_then(|d| d.get("reason"))
                .and_then(Value::as_str)
                .unwrap_or("force disconnect");
            // A close frame's reason is at most 123 bytes (RFC 6455 §5.5): cut on a
            // character boundary.
            let mut end = reason.len().min(123);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            let reason = reason[..end].to_owned();
            Control::Disconnect { code, reason }
        }
        _ => Control::Refresh {
            expired: params
                .get("expired")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            // Absent, 0 or negative: the connection no longer expires.
            expire_at: params
                .get("expire_at")
                .and_then(Value::as_i64)
                .filter(|e| *e > 0),
        },
    };
    // `disconnect.whitelist`: client ids to spare.
    let except: Vec<&str> = params
        .get("whitelist")
        .and_then(Value::as_array)
        .map(|w| w.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    scope.control(user, client, &except, &command);
    json!({"result": {}})
}

async fn history(state: &AppState, scope: &ProjectScope, params: &Map<String, Value>) -> Value {
    let Some(channel) = channel_of(params) else {
        return api_error(107, "bad request");
    };
    if !options(state, channel).history() {
        return api_error(108, "not available");
    }
    // The server API is not capped below what a channel can keep.
    let request = HistoryParams::parse(params, usize::MAX);
    let (since, query) = (&request.since, request.query());
    match scope.history(channel, query).await {
        Ok(h) if since.is_some() && !h.recovered => api_error(112, "unrecoverable position"),
        Ok(h) => {
            let publications: Vec<Value> =
                h.publications.iter().map(|p| publication_json(p)).collect();
            json!({"result": {"publications": publications, "epoch": h.position.epoch, "offset": h.position.offset}})
        }
        Err(_) => api_error(100, "internal server error"),
    }
}

/// A raw-JSON field, or its base64 twin (which wins when set) decoded; `None` when absent
/// or when the decoded bytes are not JSON (the JSON protocol embeds payloads as JSON).
fn raw_or_b64(params: &Map<String, Value>, key: &str, b64_key: &str) -> Option<Value> {
    use base64::Engine as _;
    match params
        .get(b64_key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok()),
        None => params.get(key).filter(|v| !v.is_null()).cloned(),
    }
}

async fn publish_one(
    state: &AppState,
    scope: &ProjectScope,
    params: &Map<String, Value>,
    channel: Option<&Value>,
) -> Result<Value, Value> {
    let channel = channel
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty() && c.len() <= 1024)
        .ok_or_else(|| api_error(107, "bad request"))?;
    let data =
        raw_or_b64(params, "data", "b64data").ok_or_else(|| api_error(107, "bad request"))?;
    let idempotency_key = match params.get("idempotency_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) if k.len() <= crate::idempotency::MAX_KEY_LEN => {
            Some(k.as_str()).filter(|k| !k.is_empty())
        }
        Some(_) => return Err(api_error(107, "bad request")),
    };
    if let Some(result) =
        idempotency_key.and_then(|k| state.idempotency.get(scope.project(), channel, k))
    {
        return Ok(result);
    }
    // A retry may reach another node: a broker shared by the nodes remembers for them all.
    if let Some(key) = idempotency_key {
        let remembered = scope
            .idempotent_result(channel, key)
            .await
            .map_err(|_| api_error(100, "internal server error"))?;
        if let Some(result) = remembered.and_then(|r| serde_json::from_slice(&r).ok()) {
            return Ok(result);
        }
    }
    let tags = match params.get("tags") {
        None | Some(Value::Null) => None,
        Some(Value::Object(t)) if t.values().all(Value::is_string) => {
            Some(Bytes::from(Value::Object(t.clone()).to_string()))
        }
        Some(_) => return Err(api_error(107, "bad request")),
    };
    // Compact re-serialisation: payloads travel inside newline-delimited frames.
    let data = Bytes::from(data.to_string());
    if data.len() > state.gateway.settings().max_publication_bytes {
        return Err(api_error(107, "bad request"));
    }
    let skip_history = params
        .get("skip_history")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let history = history_policy(options(state, channel)).filter(|_| !skip_history);
    let publication = tollgate_broker::NewPublication {
        data,
        info: None,
        tags,
        meta: None,
    };
    let position = scope
        .publish(channel, publication, history)
        .await
        .map_err(|_| api_error(100, "internal server error"))?;
    let result = if history.is_some() {
        json!({"offset": position.offset, "epoch": position.epoch})
    } else {
        json!({})
    };
    if let Some(key) = idempotency_key {
        state
            .idempotency
            .put(scope.project(), channel, key, result.clone());
        // Best effort: the publication is out; a retry on another node within the window
        // would publish again only if this write failed.
        let _ = scope
            .remember_idempotent(
                channel,
                key,
                Bytes::from(result.to_string()),
                crate::idempotency::WINDOW,
            )
            .await;
    }
    Ok(result)
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
    RawQuery(query): RawQuery,
    ClientIp(addr): ClientIp,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let scope = match caller(&state, addr, &headers, query.as_deref()).await {
        Ok(scope) => scope,
        Err(refused) => return refused,
    };
    let Some(params) = parse(&body) else {
        return (StatusCode::BAD_REQUEST, "Bad Request").into_response();
    };
    Json(call(&state, &scope, &method, &params).await).into_response()
}

/// The legacy single endpoint's method numbers (Centrifugo's `MethodType`).
const LEGACY_METHODS: [&str; 13] = [
    "publish",
    "broadcast",
    "unsubscribe",
    "disconnect",
    "presence",
    "presence_stats",
    "history",
    "history_remove",
    "channels",
    "info",
    "rpc",
    "subscribe",
    "refresh",
];

/// Most commands in one legacy request.
const MAX_LEGACY_COMMANDS: usize = 1000;

/// Publishes of one `broadcast` in flight at once.
const BROADCAST_CONCURRENCY: usize = 32;

/// Legacy `POST /api`: one or more newline-separated `{"id"?, "method", "params"}`; the
/// answer is one `{"id"?, "result"|"error"}` line per command, in order.
async fn legacy(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    ClientIp(addr): ClientIp,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let scope = match caller(&state, addr, &headers, query.as_deref()).await {
        Ok(scope) => scope,
        Err(refused) => return refused,
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "Bad Request").into_response();
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() || lines.len() > MAX_LEGACY_COMMANDS {
        return (StatusCode::BAD_REQUEST, "Bad Request").into_response();
    }
    let mut commands = Vec::with_capacity(lines.len());
    for line in lines {
        let Ok(Value::Object(command)) = serde_json::from_str::<Value>(line) else {
            return (StatusCode::BAD_REQUEST, "Bad Request").into_response();
        };
        commands.push(command);
    }
    let mut out = Vec::with_capacity(commands.len());
    for command in &commands {
        let method = match command.get("method") {
            Some(Value::String(m)) => m.to_ascii_lowercase(),
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|i| LEGACY_METHODS.get(usize::try_from(i).ok()?))
                .map_or_else(String::new, |m| (*m).to_owned()),
            None => "publish".to_owned(),
            Some(_) => String::new(),
        };
        let empty = Map::new();
        let mut reply = match command.get("params") {
            None | Some(Value::Null) => call(&state, &scope, &method, &empty).await,
            Some(Value::Object(params)) if method != "batch" => {
                call(&state, &scope, &method, params).await
            }
            Some(_) => api_error(107, "bad request"),
        };
        if let (Some(id), Value::Object(r)) =
            (command.get("id").filter(|i| !i.is_null()), &mut reply)
        {
            r.insert("id".into(), id.clone());
        }
        out.push(reply.to_string());
    }
    let mut response = out.join("\n").into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}
