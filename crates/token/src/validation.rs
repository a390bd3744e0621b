//! Request-validation vocabulary shared by every API family: SignalWire's 422 entries.

use serde::Serialize;

/// One failed field, in SignalWire's catalogue terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Catalogue code, e.g. `invalid_parameter`.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The request field at fault.
    pub attribute: &'static str,
}

impl FieldError {
    pub fn new(code: &'static str, attribute: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            attribute,
        }
    }
}

/// The message SignalWire uses for a missing required parameter.
pub const MISSING_MESSAGE: &str = "A required parameter is missing from the request. Please refer to the technical reference for a complete list of parameters.";
