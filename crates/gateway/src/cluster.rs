//! Server API commands across nodes: the node that receives a `disconnect`,
//! `unsubscribe` or `refresh` applies it to its own connections, then hands it to the
//! broker's control channel ([`tollgate_broker::Broker::publish_control`]); every other
//! node applies it on receipt. Centrifugo answers these methods without per-node counts,
//! so fire-and-forget is enough: delivery is at most once, like Centrifugo's own control
//! channel. The in-process broker has no other node, so a single node behaves as before.
//!
//! A message is JSON: `{"p": project, "u": user, "c": client?, "x": [except…], "k": kind,
//! …}`. The server API's `subscribe` is not sent yet (its overrides have no wire form).

use std::sync::Arc;

use serde_json::{Value, json};
use tollgate_token::ProjectId;

use crate::registry::{Control, Registry};

/// The wire form of `control` for `project`'s connections of `user`; `None` for commands
/// that stay on this node.
pub(crate) fn encode(
    project: ProjectId,
    user: &str,
    client: Option<&str>,
    except: &[&str],
    control: &Control,
) -> Option<bytes::Bytes> {
    let mut message = json!({
        "p": project.as_uuid().to_string(),
        "u": user,
        "c": client,
        "x": except,
    });
    let fields = match control {
        Control::Disconnect { code, reason } => json!({"k": "d", "code": code, "reason": reason}),
        Control::Unsubscribe { channel } => json!({"k": "u", "channel": channel}),
        Control::Refresh { expired, expire_at } => {
            json!({"k": "r", "expired": expired, "expire_at": expire_at})
        }
        Control::Subscribe(_) | Control::Resubscribe { .. } => return None,
    };
    if let (Value::Object(m), Value::Object(f)) = (&mut message, fields) {
        m.extend(f);
    }
    serde_json::to_vec(&message).ok().map(bytes::Bytes::from)
}

/// Applies one control message from another node to this node's connections.
pub(crate) fn apply(registry: &Registry, payload: &[u8]) -> Option<usize> {
    let m: Value = serde_json::from_slice(payload).ok()?;
    let project: ProjectId = m.get("p")?.as_str()?.parse().ok()?;
    let user = m.get("u")?.as_str()?;
    let client = m.get("c").and_then(Value::as_str);
    let except: Vec<&str> = m
        .get("x")
        .and_then(Value::as_array)
        .map(|x| x.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let control = match m.get("k")?.as_str()? {
        "d" => Control::Disconnect {
            code: u16::try_from(m.get("code")?.as_u64()?).ok()?,
            reason: m.get("reason")?.as_str()?.to_owned(),
        },
        "u" => Control::Unsubscribe {
            channel: m.get("channel")?.as_str()?.to_owned(),
        },
        "r" => Control::Refresh {
            expired: m.get("expired")?.as_bool()?,
            expire_at: m.get("expire_at").and_then(Value::as_i64),
        },
        _ => return None,
    };
    Some(registry.send(project, user, client, &except, &control))
}

/// Applies other nodes' control messages until the broker goes away.
pub(crate) async fn relay(
    mut messages: tokio::sync::broadcast::Receiver<bytes::Bytes>,
    registry: Arc<Registry>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match messages.recv().await {
            Ok(payload) => {
                if apply(&registry, &payload).is_none() {
                    tracing::warn!("undecodable control message dropped");
                }
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "control messages from other nodes missed");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_to_the_right_connections() {
        let registry = Registry::default();
        let project = ProjectId::new_random();
        let mut rx = registry.add(project, "u1", "c1", 0).unwrap();
        let _spared = registry.add(project, "u1", "c2", 0).unwrap();
        let bye = Control::Disconnect {
            code: 3501,
            reason: "bye".into(),
        };
        let wire = encode(project, "u1", None, &["c2"], &bye).unwrap();
        assert_eq!(apply(&registry, &wire), Some(1));
        assert_eq!(rx.try_recv().ok(), Some(bye.clone()));
        let other = encode(ProjectId::new_random(), "u1", None, &[], &bye).unwrap();
        assert_eq!(apply(&registry, &other), Some(0));
        let refresh = Control::Refresh {
            expired: false,
            expire_at: None,
        };
        let wire = encode(project, "u1", Some("c1"), &[], &refresh).unwrap();
        assert_eq!(apply(&registry, &wire), Some(1));
        assert_eq!(rx.try_recv().ok(), Some(refresh));
        let unsub = Control::Unsubscribe {
            channel: "room".into(),
        };
        let wire = encode(project, "u1", Some("c1"), &[], &unsub).unwrap();
        assert_eq!(apply(&registry, &wire), Some(1));
        assert_eq!(rx.try_recv().ok(), Some(unsub));
    }
}
