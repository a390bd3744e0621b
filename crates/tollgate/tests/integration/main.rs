//! Integration tests: the real server on port 0 over a temporary SQLite database (and
//! PostgreSQL when `TOLLGATE_TEST_POSTGRES_URL` is set), driven over real HTTP; and the
//! real binary, driven as a user would.

// Tests fail loudly by design.
#![allow(clippy::unwrap_used)]

mod api;
mod binary;
mod centrifugo;
mod fabric;
mod gateway;
mod gateway_channels;
mod server_keys;
mod shared_credentials;
mod signalwire_ws;
mod support;
mod tenancy;
