//! Extractors: authentication and bounded JSON bodies, so handlers receive parsed values.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine as _;
use serde_json::{Map, Value};
use std::marker::PhantomData;

use tollgate_service::centrifugo::User;
use tollgate_service::fabric::{FabricCaller, SatInfo};
use tollgate_service::{Principal, ServiceError};
use tollgate_token::{ProjectId, Scope};

use crate::{ApiError, AppState};

/// Longest `Authorization` header considered; anything longer is refused unread.
const MAX_AUTHORIZATION_LEN: usize = 4096;

/// Which API-token scopes an endpoint accepts (any one of them suffices).
pub trait ScopePolicy: Send + Sync + 'static {
    /// The accepted scopes.
    const ANY_OF: &'static [Scope];
}

/// Scope policy of `POST /api/pubsub/tokens`.
#[derive(Debug)]
pub struct PubSubScope;
impl ScopePolicy for PubSubScope {
    const ANY_OF: &'static [Scope] = &[Scope::Pubsub];
}

/// Scope policy of `POST /api/chat/tokens`.
#[derive(Debug)]
pub struct ChatScope;
impl ScopePolicy for ChatScope {
    const ANY_OF: &'static [Scope] = &[Scope::Chat];
}

/// Scope policy of every Fabric endpoint: any of calling, messaging, fax, video.
#[derive(Debug)]
pub struct FabricScope;
impl ScopePolicy for FabricScope {
    const ANY_OF: &'static [Scope] = &tollgate_service::fabric::FABRIC_SCOPES;
}

/// Scope policy of the admin API (group membership, namespaces, keys): SignalWire's
/// `management` scope. Membership decides channel access, so a token that can only mint
/// (say `pubsub`) must not be able to grant itself a group.
#[derive(Debug)]
pub struct ManagementScope;
impl ScopePolicy for ManagementScope {
    const ANY_OF: &'static [Scope] = &[Scope::Management];
}

/// The caller's address, as the failed-credential limiter counts it (see
/// [`crate::client_addr`]); `None` for requests that did not come through [`crate::serve`].
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, std::convert::Infallible> {
        Ok(Self(state.client_ip(parts)))
    }
}

/// An app-facing request authenticated with `Authorization: Bearer <token>`: a subscriber
/// SAT or the application's own user JWT (see `Tollgate::authenticate_user`).
#[derive(Debug, Clone)]
pub struct BearerUser(pub User);

impl FromRequestParts<AppState> for BearerUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?.ok_or(ApiError::Unauthorized)?;
        Ok(Self(state.tollgate.authenticate_user(&token).await?))
    }
}

/// A request authenticated with `Authorization: Bearer <SAT>`: a subscriber access token
/// Tollgate issued, unexpired, whose family and subscriber are still alive.
#[derive(Debug, Clone)]
pub struct BearerSat(pub SatInfo);

impl FromRequestParts<AppState> for BearerSat {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?.ok_or(ApiError::Unauthorized)?;
        Ok(Self(state.tollgate.authenticate_sat(&token).await?))
    }
}

/// Either credential a guest or invite endpoint accepts: project Basic auth (with a Fabric
/// scope) or a subscriber's Bearer SAT.
#[derive(Debug, Clone)]
pub struct FabricAuth(pub FabricCaller);

impl FromRequestParts<AppState> for FabricAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(token) = bearer(parts)? {
            let sat = state.tollgate.authenticate_sat(&token).await?;
            return Ok(Self(FabricCaller::Subscriber(sat)));
        }
        let auth = BasicAuth::<FabricScope>::from_request_parts(parts, state).await?;
        Ok(Self(FabricCaller::Project(auth.principal)))
    }
}

/// The refresh endpoint's caller: project Basic auth if present, and the `DPoP` proof
/// header if present. Which of them a given refresh token needs is the service's decision.
#[derive(Debug, Clone)]
pub struct RefreshAuth {
    pub principal: Option<Principal>,
    pub dpop: Option<String>,
}

impl FromRequestParts<AppState> for RefreshAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = if parts.headers.contains_key(AUTHORIZATION) {
            Some(
                BasicAuth::<FabricScope>::from_request_parts(parts, state)
                    .await?
                    .principal,
            )
        } else {
            None
        };
        let mut proofs = parts.headers.get_all("dpop").iter();
        let dpop = match (proofs.next(), proofs.next()) {
            (None, _) => None,
            (Some(v), None) => Some(v.to_str().map_err(|_| ApiError::Unauthorized)?.to_owned()),
            (Some(_), Some(_)) => return Err(ApiError::BadRequest),
        };
        Ok(Self { principal, dpop })
    }
}

/// The token of a single `Authorization: Bearer …` header; `None` without one.
fn bearer(parts: &Parts) -> Result<Option<String>, ApiError> {
    let mut values = parts.headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::BadRequest);
    }
    let Ok(value) = value.to_str() else {
        return Err(ApiError::Unauthorized);
    };
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            if token.is_empty() || token.len() > MAX_AUTHORIZATION_LEN {
                return Err(ApiError::Unauthorized);
            }
            Ok(Some(token.trim().to_owned()))
        }
        _ => Ok(None),
    }
}

/// A request authenticated with HTTP Basic `project_id:api_token` whose token holds one of
/// `P`'s scopes.
///
/// Authentication *and* the scope check happen here, before the body is read, so a caller
/// without the right credentials learns nothing from body validation: any failure is 401
/// `{"error":"Unauthorized"}` (SignalWire answers 401, not 403, for a missing scope).
#[derive(Debug, Clone)]
pub struct BasicAuth<P> {
    pub principal: Principal,
    policy: PhantomData<P>,
}

impl<P: ScopePolicy> FromRequestParts<AppState> for BasicAuth<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (user, password) = basic_credentials(parts)?;
        // Counted per address and per project (the Basic user is the project id); a caller
        // that keeps failing is refused before its guess is checked (see `throttle`).
        let addr = state.client_ip(parts);
        let project = user.parse::<ProjectId>().ok();
        state.throttle.check(addr, project)?;
        let principal = match state.tollgate.authenticate(&user, &password).await {
            Ok(principal) => principal,
            Err(ServiceError::Unauthorized) => {
                state.throttle.failed(addr, project);
                return Err(ApiError::Unauthorized);
            }
            Err(e) => return Err(e.into()),
        };
        principal.require_any(P::ANY_OF)?;
        Ok(Self {
            principal,
            policy: PhantomData,
        })
    }
}

/// Parses exactly one `Authorization: Basic …` header strictly (RFC 7617). Two
/// `Authorization` headers are a malformed request (400); anything else wrong is 401.
fn basic_credentials(parts: &Parts) -> Result<(String, String), ApiError> {
    let mut values = parts.headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(ApiError::Unauthorized)?;
    if values.next().is_some() {
        return Err(ApiError::BadRequest);
    }
    parse_basic(value).ok_or(ApiError::Unauthorized)
}

fn parse_basic(value: &axum::http::HeaderValue) -> Option<(String, String)> {
    if value.len() > MAX_AUTHORIZATION_LEN {
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
/// JSON object, or repeats a member, is a 400; an oversized one a 413.
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
        // Duplicate members are refused rather than resolved last-wins, so what was sent and
        // what was validated can never differ.
        match tollgate_token::json::parse_strict(&bytes) {
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
        assert!(basic_credentials(&parts(&[&lower])).is_ok());
    }

    #[test]
    fn two_authorization_headers_are_a_bad_request() {
        let twice = parts(&[&basic("a:b"), &basic("a:b")]);
        assert!(matches!(
            basic_credentials(&twice),
            Err(ApiError::BadRequest)
        ));
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
            vec![basic(&format!("a:{}", "x".repeat(5000)))],
        ];
        for headers in cases {
            let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
            assert!(
                matches!(
                    basic_credentials(&parts(&refs)),
                    Err(ApiError::Unauthorized)
                ),
                "{headers:?}"
            );
        }
    }
}
