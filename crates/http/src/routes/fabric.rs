//! SignalWire Fabric endpoints: subscriber, guest and invite tokens, refresh, subscriber
//! info, and the Subscribers resource. Views (the JSON shapes) live here; the service
//! returns records.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tollgate_service::fabric::{IssuedTokens, SatInfo};
use tollgate_store::{AddressRecord, SubscriberRecord};
use tollgate_token::validation::FieldError;
use uuid::Uuid;

use crate::extract::{BasicAuth, BearerSat, FabricAuth, FabricScope, JsonObject, RefreshAuth};
use crate::{ApiError, AppState};

const SUBSCRIBERS: &str = "/api/fabric/resources/subscribers";

/// The endpoints a subscriber's browser calls (refresh with DPoP, its own info, guest,
/// invite and embed tokens), which get CORS.
pub(crate) fn browser_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/fabric/subscribers/tokens/refresh",
            post(refresh_token),
        )
        .route("/api/fabric/subscriber/info", get(info))
        .route("/api/fabric/guests/tokens", post(guest_token))
        .route("/api/fabric/subscriber/invites", post(invite_token))
        .route("/api/fabric/embeds/tokens", post(embed_token))
}

/// Token issue with project credentials and the Subscribers resource.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/fabric/subscribers/tokens", post(create_token))
        .route(SUBSCRIBERS, get(list).post(create))
        .route(
            "/api/fabric/resources/subscribers/{id}",
            get(show).put(update).patch(update).delete(remove),
        )
        .route(
            "/api/fabric/resources/subscribers/{id}/addresses",
            get(addresses),
        )
}

type Fabric = BasicAuth<FabricScope>;

fn token_pair(t: IssuedTokens) -> Value {
    json!({"token": t.token, "refresh_token": t.refresh_token})
}

/// `POST /api/fabric/subscribers/tokens` → 200 `{subscriber_id, token, refresh_token}`.
async fn create_token(
    State(state): State<AppState>,
    auth: Fabric,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let t = state
        .tollgate
        .create_subscriber_token(&auth.principal, &body)
        .await?;
    Ok(Json(json!({
        "subscriber_id": t.subscriber_id,
        "token": t.token,
        "refresh_token": t.refresh_token,
    })))
}

/// `POST /api/fabric/subscribers/tokens/refresh` → 201 `{token, refresh_token}`.
async fn refresh_token(
    State(state): State<AppState>,
    auth: RefreshAuth,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let t = state
        .tollgate
        .refresh_subscriber_token(auth.principal.as_ref(), auth.dpop.as_deref(), &body)
        .await?;
    Ok((StatusCode::CREATED, Json(token_pair(t))))
}

/// `GET /api/fabric/subscriber/info` (Bearer SAT).
async fn info(BearerSat(SatInfo { payload }): BearerSat) -> Json<Value> {
    let mut out = json!({
        "subscriber_id": payload.sub,
        "project_id": payload.prj,
        "scope": payload.scope,
        "expires_at": payload.exp,
    });
    if let Some(cnf) = payload.cnf {
        out["cnf"] = json!({"jkt": cnf.jkt});
    }
    Json(out)
}

/// `POST /api/fabric/guests/tokens` → 201 `{token, refresh_token}`.
async fn guest_token(
    State(state): State<AppState>,
    FabricAuth(caller): FabricAuth,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let t = state.tollgate.create_guest_token(&caller, &body).await?;
    Ok((StatusCode::CREATED, Json(token_pair(t))))
}

/// `POST /api/fabric/subscriber/invites` → 201 `{token}`.
async fn invite_token(
    State(state): State<AppState>,
    FabricAuth(caller): FabricAuth,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let t = state.tollgate.create_invite_token(&caller, &body).await?;
    Ok((StatusCode::CREATED, Json(json!({"token": t.token}))))
}

/// `POST /api/fabric/embeds/tokens` → 201 `{token}`. No authentication: the `c2c_` token in
/// the body is the credential (SignalWire's client may send Basic auth; it is ignored).
async fn embed_token(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let t = state.tollgate.create_embed_token(&body).await?;
    Ok((StatusCode::CREATED, Json(json!({"token": t.token}))))
}

#[derive(Serialize)]
struct SubscriberFields<'a> {
    id: Uuid,
    email: &'a str,
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    display_name: Option<&'a str>,
    job_title: Option<&'a str>,
    timezone: Option<&'a str>,
    country: Option<&'a str>,
    company_name: Option<&'a str>,
}

#[derive(Serialize)]
struct SubscriberView<'a> {
    id: Uuid,
    project_id: String,
    display_name: Option<&'a str>,
    r#type: &'static str,
    created_at: String,
    updated_at: String,
    subscriber: SubscriberFields<'a>,
}

fn view(s: &SubscriberRecord) -> SubscriberView<'_> {
    let p = &s.profile;
    SubscriberView {
        id: s.id,
        project_id: s.project_id.to_string(),
        display_name: p.display_name.as_deref(),
        r#type: "subscriber",
        created_at: s.created_at.to_rfc3339(),
        updated_at: s.updated_at.to_rfc3339(),
        subscriber: SubscriberFields {
            id: s.id,
            email: &s.reference,
            first_name: p.first_name.as_deref(),
            last_name: p.last_name.as_deref(),
            display_name: p.display_name.as_deref(),
            job_title: p.job_title.as_deref(),
            timezone: p.timezone.as_deref(),
            country: p.country.as_deref(),
            company_name: p.company_name.as_deref(),
        },
    }
}

fn address_view(a: &AddressRecord) -> Value {
    let channel = |c: &str| format!("{}?channel={c}", a.name);
    json!({
        "id": a.id,
        "name": a.name,
        "display_name": a.display_name,
        "type": "subscriber",
        "cover_url": null,
        "preview_url": null,
        "locked": false,
        "channels": {"audio": channel("audio"), "messaging": channel("messaging"), "video": channel("video")},
        "created_at": a.created_at.to_rfc3339(),
    })
}

/// A path id that is not a UUID names nothing: 404, like an unknown one.
fn subscriber_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw).map_err(|_| ApiError::NotFound)
}

async fn create(
    State(state): State<AppState>,
    auth: Fabric,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let s = state
        .tollgate
        .create_subscriber(&auth.principal, &body)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(view(&s)))))
}

async fn show(
    State(state): State<AppState>,
    auth: Fabric,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let s = state
        .tollgate
        .subscriber(&auth.principal, subscriber_id(&id)?)
        .await?;
    Ok(Json(json!(view(&s))))
}

async fn update(
    State(state): State<AppState>,
    auth: Fabric,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let id = subscriber_id(&id)?;
    let s = state
        .tollgate
        .update_subscriber(&auth.principal, id, &body)
        .await?;
    Ok(Json(json!(view(&s))))
}

async fn remove(
    State(state): State<AppState>,
    auth: Fabric,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = subscriber_id(&id)?;
    state
        .tollgate
        .delete_subscriber(&auth.principal, id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn addresses(
    State(state): State<AppState>,
    auth: Fabric,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = subscriber_id(&id)?;
    let list = state
        .tollgate
        .subscriber_addresses(&auth.principal, id)
        .await?;
    let own = format!("{SUBSCRIBERS}/{id}/addresses");
    Ok(Json(json!({
        "data": list.iter().map(address_view).collect::<Vec<_>>(),
        "links": {"self": own, "first": own},
    })))
}

/// Query of a list request. Everything arrives as text so bad values get a 422, not a
/// generic extractor rejection.
#[derive(Debug, Deserialize)]
struct ListQuery {
    page_size: Option<String>,
    page_token: Option<String>,
    page_number: Option<String>,
}

/// Default and largest page sizes.
const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 1000;

fn page_query(q: &ListQuery) -> Result<(u32, Option<Uuid>, u32), ApiError> {
    let mut errors = Vec::new();
    let size = match q.page_size.as_deref() {
        None => DEFAULT_PAGE_SIZE,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(
                    "invalid_parameter",
                    "page_size",
                    format!("Page Size must be an integer from 1 to {MAX_PAGE_SIZE}"),
                ));
                DEFAULT_PAGE_SIZE
            }
        },
    };
    let after = match q.page_token.as_deref() {
        None | Some("") => None,
        Some(t) => match t.strip_prefix("PA").and_then(|u| Uuid::try_parse(u).ok()) {
            Some(u) => Some(u),
            None => {
                errors.push(FieldError::new(
                    "page_token_is_invalid",
                    "page_token",
                    "Page Token is invalid",
                ));
                None
            }
        },
    };
    let number = match q.page_number.as_deref() {
        None => 0,
        Some(s) => s.parse::<u32>().unwrap_or_else(|_| {
            errors.push(FieldError::new(
                "invalid_parameter",
                "page_number",
                "Page Number must be a non-negative integer",
            ));
            0
        }),
    };
    if errors.is_empty() {
        Ok((size, after, number))
    } else {
        Err(ApiError::Validation(errors))
    }
}

async fn list(
    State(state): State<AppState>,
    auth: Fabric,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let (size, after, number) = page_query(&q)?;
    let page = state
        .tollgate
        .list_subscribers(&auth.principal, after, size)
        .await?;
    let link = |n: u32, token: Option<Uuid>| match token {
        Some(t) => format!("{SUBSCRIBERS}?page_number={n}&page_size={size}&page_token=PA{t}"),
        None => format!("{SUBSCRIBERS}?page_size={size}"),
    };
    let mut links = json!({
        "self": link(number, after),
        "first": link(0, None),
    });
    if let Some(next) = page.next {
        // The next link carries the complete query: SignalWire's clients re-request the
        // same path with exactly these parameters.
        links["next"] = json!(link(number + 1, Some(next)));
    }
    Ok(Json(json!({
        "data": page.items.iter().map(view).collect::<Vec<_>>(),
        "links": links,
    })))
}
