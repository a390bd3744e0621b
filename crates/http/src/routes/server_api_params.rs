//! The parameter types of each Centrifugo server API method, checked before the method
//! runs: a parameter of the wrong JSON type (or out of range) is Centrifugo's 107 "bad
//! request" — as Centrifugo's own decoder refuses it — instead of being read as absent.
//! Before this check `{"expire_at": "1700000000"}` on `refresh` made a connection never
//! expire, and `{"client": 5}` on `disconnect` reached every connection of the user.
//!
//! Absent and `null` are the same (Centrifugo's protobuf JSON reads `null` as unset).
//! Unknown parameters are ignored, as Centrifugo ignores them. What a value must *mean*
//! (a non-empty channel, decodable base64) stays with the method.

use serde_json::{Map, Value};

/// The JSON shape a parameter must have when present.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Str,
    Bool,
    /// A signed 64-bit integer (unix times, `limit`).
    Int,
    /// An unsigned 64-bit integer (`version`).
    UInt,
    /// An object; its members are the method's business.
    Object,
    /// An array of strings, at most [`MAX_LIST`] of them.
    StrList,
    /// A stream position `{offset?: u64, epoch?: string}`.
    Position,
    /// `disconnect`'s `{code?: 3000..=4999, reason?: string}`.
    Disconnect,
    /// Any JSON (raw payloads: `data`, `info`).
    Any,
}

/// Longest list parameter (`whitelist`); `channels` and `commands` have their own bound.
const MAX_LIST: usize = 1000;

/// Close codes a `disconnect` may ask for: the application range of RFC 6455 (3000–4999).
const DISCONNECT_CODES: std::ops::RangeInclusive<u64> = 3000..=4999;

const PUBLISH: &[(&str, Shape)] = &[
    ("channel", Shape::Str),
    ("data", Shape::Any),
    ("b64data", Shape::Str),
    ("skip_history", Shape::Bool),
    ("tags", Shape::Object),
    ("idempotency_key", Shape::Str),
    ("delta", Shape::Bool),
    ("version", Shape::UInt),
    ("version_epoch", Shape::Str),
];

const BROADCAST: &[(&str, Shape)] = &[
    ("channels", Shape::Any),
    ("data", Shape::Any),
    ("b64data", Shape::Str),
    ("skip_history", Shape::Bool),
    ("tags", Shape::Object),
    ("idempotency_key", Shape::Str),
    ("delta", Shape::Bool),
    ("version", Shape::UInt),
    ("version_epoch", Shape::Str),
];

const SUBSCRIBE: &[(&str, Shape)] = &[
    ("user", Shape::Str),
    ("channel", Shape::Str),
    ("client", Shape::Str),
    ("session", Shape::Str),
    ("info", Shape::Any),
    ("b64info", Shape::Str),
    ("data", Shape::Any),
    ("b64data", Shape::Str),
    ("expire_at", Shape::Int),
    ("recover_since", Shape::Position),
    ("override", Shape::Object),
];

const UNSUBSCRIBE: &[(&str, Shape)] = &[
    ("user", Shape::Str),
    ("channel", Shape::Str),
    ("client", Shape::Str),
    ("session", Shape::Str),
];

const DISCONNECT: &[(&str, Shape)] = &[
    ("user", Shape::Str),
    ("client", Shape::Str),
    ("session", Shape::Str),
    ("whitelist", Shape::StrList),
    ("disconnect", Shape::Disconnect),
];

const REFRESH: &[(&str, Shape)] = &[
    ("user", Shape::Str),
    ("client", Shape::Str),
    ("session", Shape::Str),
    ("expired", Shape::Bool),
    ("expire_at", Shape::Int),
    ("info", Shape::Any),
];

const CHANNEL: &[(&str, Shape)] = &[("channel", Shape::Str)];

const HISTORY: &[(&str, Shape)] = &[
    ("channel", Shape::Str),
    ("limit", Shape::Int),
    ("since", Shape::Position),
    ("reverse", Shape::Bool),
];

const CHANNELS: &[(&str, Shape)] = &[("pattern", Shape::Str)];

const BATCH: &[(&str, Shape)] = &[("commands", Shape::Any), ("parallel", Shape::Bool)];

/// The parameters `method` reads; `None` for a method the server API does not have.
fn schema(method: &str) -> Option<&'static [(&'static str, Shape)]> {
    Some(match method {
        "publish" => PUBLISH,
        "broadcast" => BROADCAST,
        "subscribe" => SUBSCRIBE,
        "unsubscribe" => UNSUBSCRIBE,
        "disconnect" => DISCONNECT,
        "refresh" => REFRESH,
        "presence" | "presence_stats" | "history_remove" => CHANNEL,
        "history" => HISTORY,
        "channels" => CHANNELS,
        "batch" => BATCH,
        "info" => &[],
        _ => return None,
    })
}

fn fits(v: &Value, shape: Shape) -> bool {
    match shape {
        Shape::Str => v.is_string(),
        Shape::Bool => v.is_boolean(),
        Shape::Int => v.is_i64(),
        Shape::UInt => v.is_u64(),
        Shape::Object => v.is_object(),
        Shape::StrList => v
            .as_array()
            .is_some_and(|l| l.len() <= MAX_LIST && l.iter().all(Value::is_string)),
        Shape::Position => v.as_object().is_some_and(|p| {
            absent_or(p, "offset", Value::is_u64) && absent_or(p, "epoch", Value::is_string)
        }),
        Shape::Disconnect => v.as_object().is_some_and(|d| {
            absent_or(d, "code", |c| {
                c.as_u64().is_some_and(|c| DISCONNECT_CODES.contains(&c))
            }) && absent_or(d, "reason", Value::is_string)
        }),
        Shape::Any => true,
    }
}

/// Whether member `key` of `obj` is absent, `null`, or passes `ok`.
fn absent_or(obj: &Map<String, Value>, key: &str, ok: impl Fn(&Value) -> bool) -> bool {
    obj.get(key).is_none_or(|v| v.is_null() || ok(v))
}

/// The first parameter of `method` whose value has the wrong type or is out of range, if
/// any. Unknown methods have none (they are answered 104 by the caller).
pub(crate) fn ill_typed(method: &str, params: &Map<String, Value>) -> Option<&'static str> {
    schema(method)?
        .iter()
        .find(|(name, shape)| {
            params
                .get(*name)
                .is_some_and(|v| !v.is_null() && !fits(v, *shape))
        })
        .map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(method: &str, params: Value) -> Option<&'static str> {
        ill_typed(method, params.as_object().unwrap())
    }

    #[test]
    fn well_typed_parameters_pass() {
        let ok = [
            (
                "publish",
                json!({"channel": "c", "data": {"x": 1}, "skip_history": true, "tags": {"k": "v"}}),
            ),
            (
                "publish",
                json!({"channel": "c", "data": "text", "skip_history": null}),
            ),
            (
                "subscribe",
                json!({"user": "42", "channel": "c", "expire_at": 1, "recover_since": {"offset": 3, "epoch": "e"}}),
            ),
            (
                "disconnect",
                json!({"user": "42", "whitelist": ["a"], "disconnect": {"code": 4000, "reason": "bye"}}),
            ),
            (
                "refresh",
                json!({"user": "42", "expired": false, "expire_at": -1}),
            ),
            (
                "history",
                json!({"channel": "c", "limit": -1, "since": {}, "reverse": true}),
            ),
            ("channels", json!({"pattern": "chat:*"})),
            ("info", json!({"anything": "ignored"})),
            ("unknown", json!({"user": 5})),
        ];
        for (method, params) in ok {
            assert_eq!(check(method, params.clone()), None, "{method} {params}");
        }
    }

    #[test]
    fn each_ill_typed_parameter_is_named() {
        let bad = [
            (
                "refresh",
                json!({"user": "42", "expire_at": "1700000000"}),
                "expire_at",
            ),
            (
                "refresh",
                json!({"user": "42", "expired": "yes"}),
                "expired",
            ),
            ("disconnect", json!({"user": "42", "client": 5}), "client"),
            (
                "disconnect",
                json!({"user": "42", "whitelist": [1]}),
                "whitelist",
            ),
            (
                "disconnect",
                json!({"user": "42", "whitelist": "a"}),
                "whitelist",
            ),
            (
                "disconnect",
                json!({"user": "42", "disconnect": {"code": "4000"}}),
                "disconnect",
            ),
            (
                "disconnect",
                json!({"user": "42", "disconnect": {"code": 1000}}),
                "disconnect",
            ),
            ("disconnect", json!({"user": 42}), "user"),
            (
                "publish",
                json!({"channel": "c", "data": {}, "skip_history": 1}),
                "skip_history",
            ),
            ("publish", json!({"channel": "c", "b64data": 5}), "b64data"),
            (
                "subscribe",
                json!({"user": "u", "channel": "c", "expire_at": 1.5}),
                "expire_at",
            ),
            (
                "subscribe",
                json!({"user": "u", "channel": "c", "recover_since": {"offset": -1}}),
                "recover_since",
            ),
            ("unsubscribe", json!({"user": "u", "channel": 7}), "channel"),
            ("history", json!({"channel": "c", "limit": "10"}), "limit"),
            ("history", json!({"channel": "c", "reverse": 0}), "reverse"),
            ("channels", json!({"pattern": 5}), "pattern"),
            (
                "batch",
                json!({"commands": [], "parallel": "no"}),
                "parallel",
            ),
        ];
        for (method, params, field) in bad {
            assert_eq!(
                check(method, params.clone()),
                Some(field),
                "{method} {params}"
            );
        }
        let long: Vec<String> = (0..=MAX_LIST).map(|i| i.to_string()).collect();
        assert_eq!(
            check("disconnect", json!({"user": "u", "whitelist": long})),
            Some("whitelist")
        );
    }
}
