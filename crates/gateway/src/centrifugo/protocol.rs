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
    pub(crate) const EXPIRED: u32 = 110;
    pub(crate) const TOO_MANY_REQUESTS: u32 = 111;
    pub(crate) const UNRECOVERABLE_POSITION: u32 = 112;
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
    pub(crate) const CONNECTION_LIMIT: u16 = 3504;
    pub(crate) const CHANNEL_LIMIT: u16 = 3505;
    pub(crate) const NOT_AVAILABLE: u16 = 3508;
    pub(crate) const INSUFFICIENT_STATE: u16 = 3010;
}

/// Unsubscribe push codes (reference §2.12).
pub(crate) mod unsubscribe {
    pub(crate) const SERVER: u32 = 2000;
    pub(crate) const EXPIRED: u32 = 2501;
    /// The client resubscribes (code ≥ 2500) and recovers from its last position.
    pub(crate) const INSUFFICIENT_STATE: u32 = 2500;
}

/// An error reply. Codes the SDKs should retry carry `temporary` (reference §2.10).
pub(crate) fn error(id: u64, code: u32, message: &str) -> String {
    if matches!(code, code::INTERNAL | code::TOO_MANY_REQUESTS) {
        json!({"id": id, "error": {"code": code, "message": message, "temporary": true}})
            .to_string()
    } else {
        json!({"id": id, "error": {"code": code, "message": message}}).to_string()
    }
}

/// The error reply for a code, with Centrifugo's message for it.
pub(crate) fn error_code(id: u64, code: u32) -> String {
    let message = match code {
        code::INTERNAL => "internal server error",
        code::PERMISSION_DENIED => "permission denied",
        code::METHOD_NOT_FOUND => "method not found",
        code::ALREADY_SUBSCRIBED => "already subscribed",
        code::LIMIT_EXCEEDED => "limit exceeded",
        code::NOT_AVAILABLE => "not available",
        code::TOKEN_EXPIRED => "token expired",
        code::EXPIRED => "expired",
        code::TOO_MANY_REQUESTS => "too many requests",
        code::UNRECOVERABLE_POSITION => "unrecoverable position",
        _ => "bad request",
    };
    error(id, code, message)
}

/// A push for one channel: `{"push":{"channel":…,"<kind>":body}}`.
pub(crate) fn push(channel: &str, kind: &str, body: Value) -> String {
    let mut p = serde_json::Map::new();
    p.insert("channel".into(), channel.into());
    p.insert(kind.into(), body);
    json!({ "push": p }).to_string()
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
