//! `ApiError`: every error response Tollgate's HTTP API sends, in SignalWire's shapes.
//!
//! Plain errors are `{"error": "<Reason Phrase>"}`; validation errors are SignalWire's 422
//! `{"errors": [{type, code, message, attribute, url}]}`. Internal details are logged
//! here, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use tollgate_service::ServiceError;
use tollgate_token::pubsub::FieldError;

/// Where 422 entries point for documentation of their code.
const ERROR_DOC_URL: &str = "https://developer.signalwire.com/rest/overview/error-codes/";

/// An error answer.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the body is not a JSON object, or the request is malformed.
    BadRequest,
    /// 401: credentials missing, wrong, revoked or lacking scope.
    Unauthorized,
    /// 403: a credential that grants nothing here.
    Forbidden,
    /// 404.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 408: the request body did not arrive within `http.body_read_timeout`.
    RequestTimeout,
    /// 413: the body is over the configured limit.
    PayloadTooLarge,
    /// 429: too many failed credentials from this address (or against this project); the
    /// caller may retry after this many seconds.
    TooManyRequests { retry_after: u64 },
    /// 422: every failed field.
    Validation(Vec<FieldError>),
    /// 503: a dependency is down; nothing was changed and the client may retry.
    Unavailable(String),
    /// 500: a bug. The detail is logged.
    Internal(String),
}

/// SignalWire's 422 body. A struct, not `json!`, so members keep SignalWire's order.
#[derive(Serialize)]
struct ValidationBody<'a> {
    errors: Vec<ValidationItem<'a>>,
}

#[derive(Serialize)]
struct ValidationItem<'a> {
    r#type: &'static str,
    code: &'static str,
    message: &'a str,
    attribute: &'static str,
    url: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body): (StatusCode, Option<Response>) = match self {
            ApiError::BadRequest => (StatusCode::BAD_REQUEST, None),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, None),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, None),
            ApiError::NotFound => (StatusCode::NOT_FOUND, None),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, None),
            ApiError::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, None),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, None),
            ApiError::TooManyRequests { retry_after } => {
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({ "error": "Too Many Requests" })),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                (StatusCode::TOO_MANY_REQUESTS, Some(response))
            }
            ApiError::Validation(errors) => {
                let items: Vec<ValidationItem<'_>> = errors
                    .iter()
                    .map(|e| ValidationItem {
                        r#type: "validation_error",
                        code: e.code,
                        message: &e.message,
                        attribute: e.attribute,
                        url: format!("{ERROR_DOC_URL}#{}", e.code),
                    })
                    .collect();
                let body = Json(ValidationBody { errors: items }).into_response();
                (StatusCode::UNPROCESSABLE_ENTITY, Some(body))
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "dependency unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, None)
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, None)
            }
        };
        let body = body.unwrap_or_else(|| {
            let reason = status.canonical_reason().unwrap_or("Error");
            Json(json!({ "error": reason })).into_response()
        });
        let mut response = (status, body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tollgate\""),
            );
        }
        response
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Unauthorized => ApiError::Unauthorized,
            ServiceError::Forbidden => ApiError::Forbidden,
            ServiceError::Validation(errors) => ApiError::Validation(errors),
            ServiceError::InvalidInput(_) => ApiError::BadRequest,
            ServiceError::NotFound(_) => ApiError::NotFound,
            ServiceError::Unavailable(detail) => ApiError::Unavailable(detail),
            ServiceError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}
