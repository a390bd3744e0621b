//! Centrifugo's connection-level commands: `connect` (with the token's server-side
//! subscriptions), `refresh`, and the server API's commands to one connection.

use serde_json::{Map, Value, json};
use tollgate_service::gateway::GatewayTokenError;

use super::protocol::{self, code, disconnect};
use super::{Close, Handled, Session, close, non_empty};
use crate::core::client::{ConnectRefused, MAX_TTL, unix_to_instant};

impl Session {
    /// `expires`/`ttl` for an expiration time.
    pub(crate) fn expiry_fields(&self, exp: Option<i64>) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(exp) = exp {
            m.insert("expires".into(), true.into());
            m.insert(
                "ttl".into(),
                exp.saturating_sub(self.c.now_unix())
                    .clamp(0, MAX_TTL)
                    .into(),
            );
        }
        m
    }

    pub(super) async fn connect(&mut self, id: u64, params: &Map<String, Value>) -> Handled {
        if self.c.is_connected() {
            return Err(close(disconnect::BAD_REQUEST, "already connected"));
        }
        let Some(token) = non_empty(params, "token") else {
            return Err(close(disconnect::BAD_REQUEST, "bad request"));
        };
        let grant = match self.c.gw.tollgate.verify_connection_token(token).await {
            Ok(grant) => grant,
            Err(GatewayTokenError::Expired) => {
                self.unusable = true;
                return Ok(Some(protocol::error_code(id, code::TOKEN_EXPIRED)));
            }
            Err(GatewayTokenError::Invalid(why)) => {
                tracing::debug!(why, "connection token refused");
                return Err(close(disconnect::INVALID_TOKEN, "invalid token"));
            }
            Err(GatewayTokenError::Unavailable(e)) => {
                tracing::warn!(error = %e, "token check unavailable");
                self.unusable = true;
                return Ok(Some(protocol::internal(id)));
            }
        };
        let now = self.c.now_unix();
        if grant.expires_at.is_some_and(|e| e <= now) {
            // The token is valid, but the connection it describes has already expired.
            self.unusable = true;
            return Ok(Some(protocol::error_code(id, code::EXPIRED)));
        }
        if grant.subs.len() > self.c.gw.settings.max_channels {
            return Err(close(disconnect::CHANNEL_LIMIT, "channel limit"));
        }
        let server_subs = grant.subs.clone();
        let expires_at = grant.expires_at;
        if let Err(ConnectRefused::ConnectionLimit) = self.c.connect(grant) {
            return Err(close(disconnect::CONNECTION_LIMIT, "connection limit"));
        }
        let mut result = self.expiry_fields(expires_at);
        result.insert("client".into(), self.c.id.clone().into());
        result.insert(
            "version".into(),
            format!("tollgate {}", env!("CARGO_PKG_VERSION")).into(),
        );
        result.insert(
            "ping".into(),
            self.c.gw.settings.ping_interval.as_secs().into(),
        );
        result.insert("pong".into(), true.into());
        // Server-side subscriptions from the token, recovering where the client says it
        // was (`connect.subs`).
        let recover = params.get("subs").and_then(Value::as_object);
        let mut subs = Map::new();
        for sub in server_subs {
            let request = recover
                .and_then(|r| r.get(&sub.channel))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            match self.server_subscribe(&sub, &request, None).await {
                Ok(r) => {
                    subs.insert(sub.channel.clone(), Value::Object(r));
                }
                Err(code) => {
                    tracing::debug!(
                        code,
                        project = %self.c.project().map(|p| p.to_string()).unwrap_or_default(),
                        channel = %sub.channel,
                        "token subscription failed"
                    );
                    self.abandon_connect().await;
                    return Ok(Some(protocol::error_code(id, code)));
                }
            }
        }
        if !subs.is_empty() {
            result.insert("subs".into(), Value::Object(subs));
        }
        Ok(Some(protocol::reply(id, "connect", Value::Object(result))))
    }

    /// Undoes a connect that failed part-way (a token subscription refused): the
    /// connection goes back to unauthenticated, so the stale timer closes it, and is
    /// unusable meanwhile.
    async fn abandon_connect(&mut self) {
        self.c.disconnect().await;
        self.unusable = true;
    }

    pub(super) async fn refresh(&mut self, id: u64, params: &Map<String, Value>) -> Handled {
        let Some(token) = non_empty(params, "token") else {
            return Err(close(disconnect::BAD_REQUEST, "bad request"));
        };
        let user = self.c.user().to_owned();
        let project = self.c.project();
        match self.c.gw.tollgate.verify_connection_token(token).await {
            Ok(grant) if grant.user == user && Some(grant.project) == project => {
                let now = self.c.now_unix();
                if grant.expires_at.is_some_and(|e| e <= now) {
                    // centrifuge#628: an already-past expiry reconnects rather than 110.
                    return Err(close(disconnect::CONNECTION_EXPIRED, "connection expired"));
                }
                let old: Vec<&str> = self.token_channels();
                let mut new: Vec<&str> = grant.subs.iter().map(|s| s.channel.as_str()).collect();
                new.sort_unstable();
                if old != new {
                    // The token's server-side channel set changed (centrifugo#543).
                    return Err(close(disconnect::INSUFFICIENT_STATE, "insufficient state"));
                }
                let result = self.expiry_fields(grant.expires_at);
                if !self.c.regrant(grant) {
                    return Err(close(disconnect::INVALID_TOKEN, "invalid token"));
                }
                Ok(Some(protocol::reply(id, "refresh", Value::Object(result))))
            }
            Ok(_) | Err(GatewayTokenError::Invalid(_)) => {
                Err(close(disconnect::INVALID_TOKEN, "invalid token"))
            }
            Err(GatewayTokenError::Expired) => {
                Err(close(disconnect::CONNECTION_EXPIRED, "connection expired"))
            }
            Err(GatewayTokenError::Unavailable(_)) => Ok(Some(protocol::internal(id))),
        }
    }

    /// The channels the connection token subscribed to, sorted.
    fn token_channels(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .c
            .grant()
            .map(|g| g.subs.iter().map(|s| s.channel.as_str()).collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Applies a server API command; returns pushes to send, or a close.
    pub(super) async fn apply(&mut self, control: crate::Control) -> Result<Option<String>, Close> {
        use crate::Control;
        match control {
            Control::Disconnect { code, reason } => Err((code, reason.into())),
            Control::Subscribe(command) => {
                let crate::SubscribeCommand {
                    sub,
                    expire_at,
                    recover_since,
                } = *command;
                Ok(self.api_subscribe(sub, expire_at, recover_since).await)
            }
            Control::Unsubscribe { channel } => {
                let channels: Vec<String> = if channel.is_empty() {
                    self.c.subs.keys().cloned().collect()
                } else {
                    self.c
                        .subs
                        .contains_key(&channel)
                        .then_some(channel)
                        .into_iter()
                        .collect()
                };
                let mut pushes = Vec::new();
                for ch in channels {
                    self.c.leave(&ch).await;
                    pushes.push(protocol::push(
                        &ch,
                        "unsubscribe",
                        json!({"code": protocol::unsubscribe::SERVER, "reason": "server unsubscribe"}),
                    ));
                }
                Ok((!pushes.is_empty()).then(|| pushes.join("\n")))
            }
            Control::Resubscribe { channel } => {
                if !self.c.subs.contains_key(&channel) {
                    return Ok(None);
                }
                // Dropped here so the SDK's resubscribe is a fresh subscribe, recovering
                // from the position it holds.
                self.c.leave(&channel).await;
                Ok(Some(protocol::push(
                    &channel,
                    "unsubscribe",
                    json!({"code": protocol::unsubscribe::INSUFFICIENT_STATE, "reason": "insufficient state"}),
                )))
            }
            Control::Refresh { expired: true, .. } => {
                Err(close(disconnect::CONNECTION_EXPIRED, "connection expired"))
            }
            Control::Refresh { expire_at, .. } => {
                let now = self.c.now_unix();
                self.c.expiry = expire_at.map(|e| unix_to_instant(e, now));
                let mut result = self.expiry_fields(expire_at);
                if expire_at.is_none() {
                    result.insert("expires".into(), false.into());
                }
                Ok(Some(json!({"push": {"refresh": result}}).to_string()))
            }
        }
    }
}
