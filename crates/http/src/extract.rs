//! Extractors: authentication and bounded JSON bodies, so handlers receive parsed values.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine as _;
use serde_json::{Map, Value};
use tollgate_service::Principal;

use crate::{ApiError, AppState};

/// Longest `Authorization` header considered; anything longer is refused unread.
const MAX_AUTHORIZATION_LEN: usize = 4096;

/// A request authenticated with HTTP Basic `project_id:api_token`.
#[derive(Debug, Clone)]
pub struct BasicAuth(pub Principal);

impl FromRequestParts<AppState> for BasicAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (user, password) = basic_credentials(parts).ok_or(ApiError::Unauthorized)?;
        let principal = state.tollgate.authenticate(&user, &password).await?;
        Ok(Self(principal))
    }
}

/// Parses exactly one `Authorization: Basic …` header strictly (RFC 7617).
fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let mut values = parts.headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() || value.len() > MAX_AUTHORIZATION_LEN {
        return None;
    }
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    if user.is_empty() || password.is_empty() {
        return None;
    }
    Some((user.to_owned(), password.to_owned()))
}

/// A request body that is a JSON object, within the configured size limit.
///
/// Any content type is accepted (SignalWire's clients all send JSON); a body that is not a
/// JSON object is a 400, an oversized one a 413.
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest
            }
        })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            _ => Err(ApiError::BadRequest),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(headers: &[&str]) -> Parts {
        let mut b = Request::builder();
        for h in headers {
            b = b.header(AUTHORIZATION, *h);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn basic(s: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }

    #[test]
    fn parses_well_formed_credentials() {
        let got = basic_credentials(&parts(&[&basic("p:t:with:colons")])).unwrap();
        assert_eq!(got, ("p".to_owned(), "t:with:colons".to_owned()));
        let lower = basic("p:t").replace("Basic", "basic");
        assert!(basic_credentials(&parts(&[&lower])).is_some());
    }

    #[test]
    fn rejects_everything_else() {
        let cases = [
            vec![],
            vec!["Bearer abc".to_owned()],
            vec!["Basic !!!notbase64".to_owned()],
            vec![basic("no-colon")],
            vec![basic(":secret")],
            vec![basic("user:")],
            vec![format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode([0xff, b':', b'x'])
            )],
            vec![basic("a:b"), basic("a:b")],
            vec![basic(&format!("a:{}", "x".repeat(5000)))],
        ];
        for headers in cases {
            let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
            assert!(basic_credentials(&parts(&refs)).is_none(), "{headers:?}");
        }
    }
}
