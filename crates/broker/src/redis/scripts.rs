//! The Lua scripts: every write that must be atomic on the Redis side is one script, kept
//! in `lua/` beside this file and sent by SHA (redis-rs loads it again after a Redis
//! restart forgot it).

use std::sync::LazyLock;

use ::redis::Script;

/// Numbers, keeps, positions and delivers a publication (one channel).
pub(super) static PUBLISH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/publish.lua")));
/// Reads history and the stream position, trimming what expired.
pub(super) static HISTORY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/history.lua")));
/// Adds or refreshes one presence entry.
pub(super) static PRESENCE_ADD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/presence_add.lua")));
/// Reads presence, dropping expired entries.
pub(super) static PRESENCE_GET: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/presence_get.lua")));
/// Removes one presence entry.
pub(super) static PRESENCE_REMOVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/presence_remove.lua")));
/// Writes one node's heartbeat, stamped with Redis's clock.
pub(super) static HEARTBEAT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/heartbeat.lua")));
/// Deletes stale heartbeat entries that still hold the value read.
pub(super) static HEARTBEAT_FORGET: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/heartbeat_forget.lua")));
