//! SignalWire's JSON-RPC vocabulary: error and close codes, request and response frames,
//! the event selection of `chat.subscribe`, and how members and messages are shown.

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tollgate_broker::Publication;

/// JSON-RPC error codes.
pub(super) mod rpc {
    pub(crate) const INVALID_REQUEST: i64 = -32600;
    pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
    pub(crate) const INVALID_PARAMS: i64 = -32602;
    pub(crate) const INTERNAL: i64 = -32603;
    /// SignalWire: authentication failed or required.
    pub(crate) const AUTH: i64 = -32002;
    /// SignalWire: the token does not permit this.
    pub(crate) const FORBIDDEN: i64 = -32003;
}

/// Close codes (the application range: the SDK reconnects after any server close).
pub(super) mod close {
    pub(crate) const NORMAL: u16 = 1000;
    pub(crate) const RESTART: u16 = 1012;
    pub(crate) const TRY_AGAIN: u16 = 1013;
    pub(crate) const EXPIRED: u16 = 4001;
    pub(crate) const AUTH_FAILED: u16 = 4003;
    pub(crate) const UNRESPONSIVE: u16 = 4008;
    pub(crate) const BAD_MESSAGE: u16 = 4400;
}

/// Event kinds a subscription asked for (`events` of `chat.subscribe`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Events {
    pub(super) message: bool,
    pub(super) joined: bool,
    pub(super) updated: bool,
    pub(super) left: bool,
}

impl Events {
    pub(crate) fn from(list: Option<&Value>) -> Self {
        let mut e = Self::default();
        for name in list.and_then(Value::as_array).into_iter().flatten() {
            match name.as_str() {
                Some("chat.message" | "chat.channel.message") => e.message = true,
                Some("chat.member.joined") => e.joined = true,
                Some("chat.member.updated") => e.updated = true,
                Some("chat.member.left") => e.left = true,
                _ => {}
            }
        }
        // The SDK always subscribes with at least a message listener.
        if e == Self::default() {
            e.message = true;
        }
        e
    }

    pub(super) fn merge(&mut self, other: Self) {
        self.message |= other.message;
        self.joined |= other.joined;
        self.updated |= other.updated;
        self.left |= other.left;
    }
}

pub(super) type Reply = Result<Value, (i64, String)>;

/// A close code and reason.
pub(super) type End = (u16, &'static str);
/// What a turn of the loop produced: frames to write, then maybe the end (`Some(None)`:
/// the peer is gone, nothing to send).
pub(super) type Turn = (Vec<String>, Option<Option<End>>);

pub(super) fn error(code: i64, message: impl Into<String>) -> Reply {
    Err((code, message.into()))
}

pub(super) fn ok() -> Reply {
    Ok(json!({"code": "200", "message": "OK"}))
}

pub(super) fn response(id: &Value, reply: Reply) -> String {
    match reply {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, message)) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        }
    }
    .to_string()
}

pub(super) fn request(method: &str, params: &Value) -> (String, String) {
    let id = uuid::Uuid::new_v4().to_string();
    let text = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
    (id, text)
}

pub(super) fn now_secs_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Decodes one incoming WebSocket message: a JSON object, or `None` (answered with a
/// JSON-RPC parse error). Pure: the session loop and the fuzz targets both use it.
pub(crate) fn decode_message(text: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(msg)) => Some(msg),
        _ => None,
    }
}

/// A message's `id` (`null` when missing), its `method` (`None`: a response to one of our
/// requests) and its `params` when they are an object.
pub(crate) fn message_parts(
    msg: &Map<String, Value>,
) -> (Value, Option<&str>, Option<&Map<String, Value>>) {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let method = msg.get("method").and_then(Value::as_str);
    let params = msg.get("params").and_then(Value::as_object);
    (id, method, params)
}

pub(super) fn parse_bytes(b: &Bytes) -> Value {
    serde_json::from_slice(b).unwrap_or(Value::Null)
}

/// A member as SignalWire shows it, from a `ClientInfo`: its state is the channel state
/// (`chan_info`) or else the connection's (`conn_info`).
pub(super) fn member(info: &Value, channel: &str) -> Value {
    let state = info
        .get("chan_info")
        .or_else(|| info.get("conn_info"))
        .filter(|s| s.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    json!({
        "id": info.get("user").and_then(Value::as_str).unwrap_or_default(),
        "channel": channel,
        "state": state,
    })
}

/// A publication as a SignalWire message. `meta` is the SignalWire publisher's, else the
/// Centrifugo tags, else `{}`.
pub(super) fn message(p: &Publication, channel: &str) -> Value {
    let meta = p
        .meta
        .as_ref()
        .or(p.tags.as_ref())
        .map_or_else(|| json!({}), parse_bytes);
    let info = p.info.as_ref().map_or(Value::Null, parse_bytes);
    #[allow(clippy::cast_precision_loss)] // milliseconds since 1970 fit an f64 exactly
    let published_at = p.time_ms as f64 / 1000.0;
    json!({
        "id": p.id,
        "content": parse_bytes(&p.data),
        "meta": meta,
        "published_at": published_at,
        "member": member(&info, channel),
    })
}

/// The channel names of `{"channels": [{"name": …}]}` (plain strings accepted too), each
/// once; `None` when malformed or longer than `max` (one frame must not fan out into
/// thousands of broker operations).
pub(crate) fn channel_names(params: &Map<String, Value>, max: usize) -> Option<Vec<String>> {
    let list = params.get("channels")?.as_array()?;
    if list.len() > max {
        return None;
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for c in list {
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .or_else(|| c.as_str())?;
        if name.is_empty() || name.len() > 1024 {
            return None;
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    Some(out)
}
