//! Typed reads of the JSON bodies of Tollgate's own endpoints (admin API, Centrifugo token
//! endpoints): every field is either absent — and takes its default — or of the right type
//! and in range, never silently replaced by a default.
//!
//! One rule for every field: absent and `null` are the same (as SignalWire's and
//! Centrifugo's APIs treat them), so a client that serialises unset options as `null`
//! gets the defaults; a present value of the wrong type or out of range is a 422 naming
//! the field. [`Fields`] collects every failed field before the handler acts, so a request
//! is refused whole and nothing is written on the way.
//!
//! Unknown members are ignored, as everywhere in Tollgate's HTTP API: SignalWire's SDKs
//! send extras, and a client that reads a resource and writes it back (a namespace with its
//! `name`) must not be refused for it.

use std::ops::RangeInclusive;
use std::str::FromStr;

use serde_json::{Map, Value};
use tollgate_token::validation::FieldError;

use crate::ApiError;

/// Reads fields of one request body, recording what is wrong and carrying on.
pub(crate) struct Fields<'a> {
    body: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(body: &'a Map<String, Value>) -> Self {
        Self {
            body,
            errors: Vec::new(),
        }
    }

    /// The field's value, with `null` read as absent.
    fn present(&self, name: &str) -> Option<&'a Value> {
        self.body.get(name).filter(|v| !v.is_null())
    }

    /// Records a failed field.
    pub(crate) fn fail(&mut self, code: &'static str, name: &'static str, message: String) {
        self.errors.push(FieldError::new(code, name, message));
    }

    fn missing(&mut self, name: &'static str) {
        self.fail(
            "missing_required_parameter",
            name,
            format!("{name} is required"),
        );
    }

    /// An optional string of 1 to `max` bytes.
    pub(crate) fn optional_str(&mut self, name: &'static str, max: usize) -> Option<&'a str> {
        match self.present(name)? {
            Value::String(s) if !s.is_empty() && s.len() <= max => Some(s),
            Value::String(_) => {
                self.fail(
                    "invalid_parameter",
                    name,
                    format!("{name} must be 1 to {max} characters"),
                );
                None
            }
            other => {
                self.fail(
                    "not_a_string",
                    name,
                    format!("{name} must be a string, not {}", kind(other)),
                );
                None
            }
        }
    }

    /// A required string of 1 to `max` bytes; empty counts as missing (SignalWire's
    /// "blank or empty, but it is required").
    pub(crate) fn required_str(&mut self, name: &'static str, max: usize) -> Option<&'a str> {
        match self.present(name) {
            None => {
                self.missing(name);
                None
            }
            Some(Value::String(s)) if s.is_empty() => {
                self.missing(name);
                None
            }
            Some(_) => self.optional_str(name, max),
        }
    }

    /// An optional string parsed into `T`; `expected` says what it must be.
    pub(crate) fn optional_parsed<T: FromStr>(
        &mut self,
        name: &'static str,
        max: usize,
        expected: &str,
    ) -> Option<Option<T>> {
        let Some(s) = self.optional_str(name, max) else {
            // Absent is fine; a bad value has been recorded.
            return self.present(name).is_none().then_some(None);
        };
        match s.parse() {
            Ok(v) => Some(Some(v)),
            Err(_) => {
                self.fail(
                    "invalid_parameter",
                    name,
                    format!("{name} must be {expected}"),
                );
                None
            }
        }
    }

    /// An optional integer within `range`. Only JSON integers count: `"60"`, `60.5` and
    /// `true` are refused, not coerced.
    pub(crate) fn optional_int(
        &mut self,
        name: &'static str,
        range: RangeInclusive<i64>,
    ) -> Option<Option<i64>> {
        let Some(v) = self.present(name) else {
            return Some(None);
        };
        let range_text = format!("an integer from {} to {}", range.start(), range.end());
        match v.as_i64() {
            Some(n) if range.contains(&n) => Some(Some(n)),
            Some(_) => {
                self.fail(
                    "invalid_parameter",
                    name,
                    format!("{name} must be {range_text}"),
                );
                None
            }
            // A float, or an integer beyond i64: the right kind of value, out of range.
            None if v.is_number() => {
                self.fail(
                    "invalid_parameter",
                    name,
                    format!("{name} must be {range_text}"),
                );
                None
            }
            None => {
                self.fail(
                    "invalid_parameter",
                    name,
                    format!("{name} must be {range_text}, not {}", kind(v)),
                );
                None
            }
        }
    }

    /// A required array of 1 to `max_items` strings. The items' own grammar is the
    /// caller's (a batch judges each item on its own).
    pub(crate) fn required_str_array(
        &mut self,
        name: &'static str,
        max_items: usize,
    ) -> Option<Vec<String>> {
        let Some(v) = self.present(name) else {
            self.missing(name);
            return None;
        };
        let strings: Option<Vec<String>> = match v {
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect(),
            _ => None,
        };
        match strings {
            Some(s) if (1..=max_items).contains(&s.len()) => Some(s),
            Some(_) => {
                self.fail(
                    "invalid_parameter",
                    name,
                    format!("{name} must list 1 to {max_items} items"),
                );
                None
            }
            None => {
                self.fail(
                    "invalid_parameter",
                    name,
                    format!("{name} must be an array of strings"),
                );
                None
            }
        }
    }

    /// An optional JSON object whose compact serialisation is at most `max_bytes`.
    pub(crate) fn optional_object(
        &mut self,
        name: &'static str,
        max_bytes: usize,
    ) -> Option<Value> {
        match self.present(name)? {
            v @ Value::Object(_) if v.to_string().len() <= max_bytes => Some(v.clone()),
            Value::Object(_) => {
                self.fail(
                    "invalid_parameter",
                    name,
                    format!("{name} must be a JSON object of at most {max_bytes} bytes"),
                );
                None
            }
            other => {
                self.fail(
                    "not_a_hash",
                    name,
                    format!("{name} must be a JSON object, not {}", kind(other)),
                );
                None
            }
        }
    }

    /// `Ok` when every field read so far was acceptable, else the 422 listing them all.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

/// The JSON type of a value, for messages (never the value: it may be anything).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn failed(f: Fields<'_>) -> Vec<(&'static str, &'static str)> {
        match f.finish() {
            Ok(()) => Vec::new(),
            Err(ApiError::Validation(errors)) => {
                errors.iter().map(|e| (e.code, e.attribute)).collect()
            }
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn integers_are_integers_in_range() {
        let b = body(json!({
            "a": 60, "b": "60", "c": 60.5, "d": true, "e": null, "f": 59, "g": 18446744073709551615u64
        }));
        let mut f = Fields::new(&b);
        assert_eq!(f.optional_int("a", 60..=120), Some(Some(60)));
        assert_eq!(f.optional_int("b", 60..=120), None);
        assert_eq!(f.optional_int("c", 60..=120), None);
        assert_eq!(f.optional_int("d", 60..=120), None);
        assert_eq!(f.optional_int("e", 60..=120), Some(None), "null is absent");
        assert_eq!(f.optional_int("absent", 60..=120), Some(None));
        assert_eq!(f.optional_int("f", 60..=120), None);
        assert_eq!(f.optional_int("g", 60..=120), None);
        assert_eq!(
            failed(f),
            [
                ("invalid_parameter", "b"),
                ("invalid_parameter", "c"),
                ("invalid_parameter", "d"),
                ("invalid_parameter", "f"),
                ("invalid_parameter", "g"),
            ]
        );
    }

    #[test]
    fn strings_are_strings_of_bounded_length() {
        let b = body(json!({
            "a": "x", "b": 123, "c": "", "d": "toolong", "e": null, "f": ["x"], "g": ""
        }));
        let mut f = Fields::new(&b);
        assert_eq!(f.optional_str("a", 5), Some("x"));
        assert_eq!(f.optional_str("b", 5), None);
        assert_eq!(f.optional_str("c", 5), None);
        assert_eq!(f.optional_str("d", 5), None);
        assert_eq!(f.optional_str("e", 5), None);
        assert_eq!(f.required_str("e", 5), None);
        assert_eq!(f.required_str("absent", 5), None);
        assert_eq!(f.optional_str("f", 5), None);
        assert_eq!(f.required_str("g", 5), None);
        assert_eq!(
            failed(f),
            [
                ("not_a_string", "b"),
                ("invalid_parameter", "c"),
                ("invalid_parameter", "d"),
                ("missing_required_parameter", "e"),
                ("missing_required_parameter", "absent"),
                ("not_a_string", "f"),
                ("missing_required_parameter", "g"),
            ]
        );
    }

    #[test]
    fn parsed_strings_report_their_expectation() {
        let b = body(json!({"alg": 123, "ok": "7", "bad": "seven"}));
        let mut f = Fields::new(&b);
        assert_eq!(f.optional_parsed::<u8>("alg", 10, "a digit"), None);
        assert_eq!(f.optional_parsed::<u8>("ok", 10, "a digit"), Some(Some(7)));
        assert_eq!(f.optional_parsed::<u8>("bad", 10, "a digit"), None);
        assert_eq!(f.optional_parsed::<u8>("absent", 10, "a digit"), Some(None));
        assert_eq!(
            failed(f),
            [("not_a_string", "alg"), ("invalid_parameter", "bad")]
        );
    }

    #[test]
    fn arrays_and_objects() {
        let b = body(json!({
            "ok": ["a", "b"], "mixed": ["a", 1], "empty": [], "str": "a", "many": ["a", "b", "c"],
            "info": {"k": "v"}, "big": {"k": "v".repeat(100)}, "list": [1]
        }));
        let mut f = Fields::new(&b);
        assert_eq!(f.required_str_array("ok", 2).unwrap(), ["a", "b"]);
        assert!(f.required_str_array("mixed", 2).is_none());
        assert!(f.required_str_array("empty", 2).is_none());
        assert!(f.required_str_array("str", 2).is_none());
        assert!(f.required_str_array("many", 2).is_none());
        assert!(f.required_str_array("absent", 2).is_none());
        assert_eq!(f.optional_object("info", 64), Some(json!({"k": "v"})));
        assert_eq!(f.optional_object("big", 64), None);
        assert_eq!(f.optional_object("list", 64), None);
        assert_eq!(f.optional_object("absent", 64), None);
        assert_eq!(
            failed(f),
            [
                ("invalid_parameter", "mixed"),
                ("invalid_parameter", "empty"),
                ("invalid_parameter", "str"),
                ("invalid_parameter", "many"),
                ("missing_required_parameter", "absent"),
                ("invalid_parameter", "big"),
                ("not_a_hash", "list"),
            ]
        );
    }
}
