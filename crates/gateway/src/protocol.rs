//! Centrifugo protocol v2 (JSON) vocabulary: error and disconnect codes, and frame helpers.

use serde_json::{Value, json};

/// Reply error codes (reference §2.10).
pub(crate) mod code {
    pub(crate) const INTERNAL: u32 = 100;
    pub(crate) const PERMISSION_DENIED: u32 = 103;
    pub(crate) const METHOD_NOT_FOUND: u32 = 104;
    pub(crate) const ALREADY_SUBSCRIBED: u32 = 105;
    pub(crate) const LIMIT_EXCEEDED: u32 = 106;
    pub(crate) const BAD_REQUEST: u32 = 107;
    pub(crate) const NOT_AVAILABLE: u32 = 108;
    pub(crate) const TOKEN_EXPIRED: u32 = 109;
}

/// Disconnect codes, sent as the WebSocket close code (reference §2.11).
pub(crate) mod disconnect {
    pub(crate) const SHUTDOWN: u16 = 3001;
    pub(crate) const CONNECTION_EXPIRED: u16 = 3005;
    pub(crate) const SUBSCRIPTION_EXPIRED: u16 = 3006;
    pub(crate) const SLOW: u16 = 3008;
    pub(crate) const NO_PONG: u16 = 3012;
    pub(crate) const INVALID_TOKEN: u16 = 3500;
    pub(crate) const BAD_REQUEST: u16 = 3501;
    pub(crate) const STALE: u16 = 3502;
}

/// An error reply.
pub(crate) fn error(id: u64, code: u32, message: &str) -> String {
    json!({"id": id, "error": {"code": code, "message": message}}).to_string()
}

/// The reply to a command that failed on our side (store or broker unavailable).
pub(crate) fn internal(id: u64) -> String {
    error(id, code::INTERNAL, "internal server error")
}

/// A successful reply: `{"id": id, "<method>": result}`. The result object is always
/// present, even empty: the SDKs crash without it.
pub(crate) fn reply(id: u64, method: &str, result: Value) -> String {
    let mut m = serde_json::Map::new();
    m.insert("id".into(), id.into());
    m.insert(method.into(), result);
    Value::Object(m).to_string()
}
