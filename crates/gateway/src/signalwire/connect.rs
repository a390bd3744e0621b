//! The connection-level methods of a session: `signalwire.connect` (verifying the token,
//! registering the client, resuming a session by `protocol`) and
//! `signalwire.reauthenticate`, and the connect result both answer with.

use serde_json::{Map, Value, json};
use tollgate_service::gateway::{ConnectionGrant, GatewayTokenError};

use super::SwSession;
use super::resume::{RESUME_FOR, SHARED_LIVE_FOR, shared_key};
use super::wire::{Reply, error, rpc};
use crate::core::client::{ConnectRefused, MAX_TTL};

impl SwSession {
    /// The `authorization` and connect result for the current grant.
    pub(super) fn connect_result(&self) -> Value {
        let Some(g) = self.c.grant() else {
            return json!({});
        };
        let channels: Map<String, Value> = g
            .caps
            .iter()
            .flat_map(|c| {
                let read = c.allow.iter().any(|a| a == "sub");
                let write = c.allow.iter().any(|a| a == "pub");
                c.channels
                    .iter()
                    .map(move |ch| (ch.clone(), json!({"read": read, "write": write})))
            })
            .collect();
        let project = g.project.to_string();
        let signature = self
            .protocol
            .split('_')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let ttl_minutes = g
            .expires_at
            .map(|e| e.saturating_sub(self.c.now_unix()).clamp(0, MAX_TTL) / 60);
        json!({
            "identity": g.user,
            "protocol": self.protocol,
            "authorization": {
                "type": if self.is_chat() { "chat" } else { "pubsub" },
                "project": project,
                "project_id": project,
                "member_id": g.user,
                "resource": g.user,
                "channels": channels,
                "expires_at": g.expires_at,
                "ttl": ttl_minutes,
                "signature": signature,
                "scope_id": Value::Null,
                "scopes": [],
            },
        })
    }

    pub(super) async fn verify(
        &self,
        params: &Map<String, Value>,
    ) -> Result<ConnectionGrant, (i64, String)> {
        let token = params
            .get("authentication")
            .and_then(|a| a.get("jwt_token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or((rpc::AUTH, "Authentication failed".to_owned()))?;
        let grant = match self.c.gw.tollgate.verify_connection_token(token).await {
            Ok(g) => g,
            Err(GatewayTokenError::Unavailable(e)) => {
                tracing::warn!(error = %e, "token check unavailable");
                return Err((rpc::INTERNAL, "Internal error".to_owned()));
            }
            Err(e) => {
                tracing::debug!(error = %e, "signalwire token refused");
                return Err((rpc::AUTH, "Authentication failed".to_owned()));
            }
        };
        // Only SignalWire realtime tokens carry channel grants for this protocol.
        if !matches!(grant.typ.as_deref(), Some("PRT" | "CRT")) {
            return Err((rpc::AUTH, "Authentication failed".to_owned()));
        }
        Ok(grant)
    }

    pub(super) async fn connect(&mut self, params: &Map<String, Value>) -> Reply {
        if self.c.is_connected() {
            return error(rpc::INVALID_REQUEST, "Already connected");
        }
        let grant = self.verify(params).await?;
        self.acks = params.get("event_acks").and_then(Value::as_bool) == Some(true);
        let (project, member) = (grant.project, grant.user.clone());
        let signature = grant
            .jti
            .as_deref()
            .map(|j| j.replace(['-', '_'], ""))
            .filter(|j| !j.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        // Registered before the resume is taken: a reconnect refused by the connection
        // limit leaves the resume for the next attempt.
        if let Err(ConnectRefused::ConnectionLimit) = self.c.connect(grant) {
            return error(rpc::FORBIDDEN, "Connection limit reached");
        }
        let resume = match params.get("protocol").and_then(Value::as_str) {
            Some(p) => {
                let local = self.c.gw.resumes.take(project, p, &member);
                // Taken from the broker either way, so it is not resumed twice.
                let live_here =
                    self.shares() && self.c.gw.resumes.is_live(project, &shared_key(&member, p));
                let shared = if self.shares() && !live_here {
                    self.take_shared(project, p, &member).await
                } else {
                    None
                };
                local.or(shared).map(|r| (p.to_owned(), r))
            }
            None => None,
        };
        let resumed = resume.is_some();
        match resume {
            Some((protocol, mut r)) => {
                self.protocol = protocol;
                self.states = r.states;
                for (channel, events) in r.channels {
                    // The new token decides again.
                    if self.grant_for(&channel).0 {
                        let since = r.positions.remove(&channel);
                        let _ = self.join_from(&channel, events, since).await;
                    }
                }
            }
            None => {
                self.protocol = format!("signalwire_{signature}_{}", uuid::Uuid::new_v4().simple());
            }
        }
        if self.shares() {
            let key = shared_key(&member, &self.protocol);
            if self.c.gw.resumes.go_live(project, &key) {
                self.live = Some(key);
            }
        }
        if resumed {
            let _ = self.save_shared(SHARED_LIVE_FOR + RESUME_FOR).await;
        }
        Ok(self.connect_result())
    }

    pub(super) async fn reauthenticate(&mut self, params: &Map<String, Value>) -> Reply {
        let grant = self.verify(params).await?;
        let same = self.c.grant().is_some_and(|g| {
            g.user == grant.user && g.project == grant.project && g.typ == grant.typ
        });
        if !same {
            return error(
                rpc::AUTH,
                "Authentication failed: another member, project or token type",
            );
        }
        if !self.c.regrant(grant) {
            return error(rpc::AUTH, "Authentication failed");
        }
        // Channels the new token no longer grants are left.
        let lost: Vec<String> = self
            .c
            .subs
            .keys()
            .filter(|c| !self.grant_for(c).0)
            .cloned()
            .collect();
        for channel in lost {
            self.c.leave(&channel).await;
        }
        // The new token's state is the member's state where none was set since.
        let channels: Vec<String> = self.c.subs.keys().cloned().collect();
        for channel in channels {
            let info = self.client_info(&channel);
            if let Some(sub) = self.c.subs.get_mut(&channel) {
                sub.info = info;
            }
        }
        self.c.refresh_presence().await;
        let _ = self.save_shared(SHARED_LIVE_FOR + RESUME_FOR).await;
        Ok(self.connect_result())
    }
}
