//! Tollgate's pure token core.
//!
//! Everything that decides *what a token says and whether it is genuine* lives here, and
//! nothing here performs I/O: no clock reads, no database, no network. Callers pass `now`
//! in and get values or errors back, which keeps this crate easy to unit-test, fuzz and
//! benchmark.
//!
//! - [`ids`]: identifier newtypes parsed at the boundary (`ProjectId`, `KeyId`, …).
//! - [`scope`]: SignalWire API-token scopes.
//! - [`time`]: `UnixTime`, the only notion of time the core knows.
//! - [`pubsub`]: the SignalWire-compatible PubSub/Chat token request grammar and claims.
//! - [`fabric`]: the Fabric subscriber, guest and invite token and Subscribers grammar.
//! - [`validation`]: `FieldError`, the 422 vocabulary shared by every API family.
//! - [`jose`]: compact JWS signing and strict verification with algorithm-pinned keys.
//! - [`revocation`]: one project's revoked tokens and subjects, and the check.
//! - [`json`]: a duplicate-rejecting JSON reader used on untrusted token parts.

pub mod centrifugo;
pub mod fabric;
pub mod ids;
pub mod jose;
pub mod json;
pub mod pubsub;
pub mod revocation;
pub mod scope;
pub mod time;
pub mod validation;

pub use ids::{GroupId, GroupKind, KeyId, ProjectId, UserId};
pub use scope::{Scope, Scopes};
pub use time::UnixTime;
