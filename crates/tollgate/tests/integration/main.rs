//! Integration tests: the real server on port 0 over a temporary SQLite database, or a
//! fresh PostgreSQL database per server with `TOLLGATE_TEST_DATABASE=postgres` (on the
//! server `TOLLGATE_TEST_POSTGRES_URL` names), driven over real HTTP; and the real binary,
//! driven as a user would.

// Tests fail loudly by design.
#![allow(clippy::unwrap_used)]

mod api;
mod audit;
mod binary;
mod centrifugo;
mod cluster;
mod cluster_control;
mod cluster_faults;
mod cluster_kill;
mod fabric;
mod gateway;
mod gateway_channels;
mod gateway_frames;
mod gateway_limits;
mod gateway_tokens;
mod http_edge;
mod jwks;
mod revocation_api;
mod revocation_gateway;
mod server_keys;
mod shared_credentials;
mod signalwire_ws;
mod strict_input;
mod support;
mod tenancy;
