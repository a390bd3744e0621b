//! A strict JSON reader for untrusted token parts.
//!
//! `serde_json` keeps the last of duplicate object members. Issuer, gateway and SDKs may use
//! different parsers, so a token with duplicate members could mean different things to each
//! of them (security checklist ENC-02). This reader rejects duplicates at every depth.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Member names `serde_json` reserves: with its `raw_value` or `arbitrary_precision`
/// feature (which a build may unify in from any crate), `serde_json::Value` reads
/// `{"$serde_json::private::RawValue":"<json>"}` as the embedded document instead of an
/// object. No token has such members; refusing them keeps this reader's answer the same
/// whatever features the build has (found by the `strict_json` fuzz target).
const RESERVED_MEMBER_PREFIX: &str = "$serde_json::private::";

/// Parses `bytes` as JSON, rejecting duplicate object members anywhere in the document,
/// and members whose names `serde_json` reserves.
///
/// Nesting is bounded by `serde_json`'s recursion limit (128), which answers deeply nested
/// input quickly (ENC-06).
pub fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let StrictValue(v) = serde_json::from_slice(bytes)?;
    Ok(v)
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key.starts_with(RESERVED_MEMBER_PREFIX) {
                return Err(de::Error::custom("reserved object member"));
            }
            let StrictValue(v) = map.next_value()?;
            if out.insert(key, v).is_some() {
                return Err(de::Error::custom("duplicate object member"));
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_json() {
        let v = parse_strict(br#"{"a":[1,2,{"b":null}],"c":"d","e":1.5,"f":-3}"#).unwrap();
        assert_eq!(v["a"][2]["b"], Value::Null);
        assert_eq!(v["f"], -3);
    }

    #[test]
    fn rejects_duplicates_at_any_depth() {
        assert!(parse_strict(br#"{"exp":1,"exp":2}"#).is_err());
        assert!(parse_strict(br#"{"caps":[{"a":1,"a":2}]}"#).is_err());
        assert!(parse_strict(br#"{"x":{"y":{"z":1,"z":1}}}"#).is_err());
    }

    #[test]
    fn rejects_serde_json_reserved_members() {
        // With serde_json's `raw_value` feature, `serde_json::Value` reads this as `{"a":1}`.
        assert!(parse_strict(br#"{"$serde_json::private::RawValue":"{\"a\":1}"}"#).is_err());
        assert!(parse_strict(br#"{"$serde_json::private::RawValue":892}"#).is_err());
        assert!(parse_strict(br#"[{"x":{"$serde_json::private::Number":"1"}}]"#).is_err());
        assert!(parse_strict(br#"{"$serde_json":1,"private::RawValue":2}"#).is_ok());
    }

    #[test]
    fn rejects_bad_encodings_and_deep_nesting() {
        assert!(parse_strict(b"\xEF\xBB\xBF{}").is_err());
        assert!(parse_strict(b"{\"a\":\"\xC3\x28\"}").is_err());
        assert!(parse_strict(br#"{"sub":"\ud800"}"#).is_err());
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(parse_strict(deep.as_bytes()).is_err());
        assert!(parse_strict(b"1e400").is_err());
    }
}
