//! Presence in Redis: per channel a ZSET (client → expiry, by Redis's clock) and a HASH
//! (client → user and `ClientInfo`), written and read by scripts so the two never
//! disagree. Every node refreshes its own clients' entries on each presence tick; a node
//! that dies stops refreshing, and its entries drop out once their TTL passes (read
//! scripts trim them, and both keys expire with their longest-lived entry).

use std::time::Duration;

use ::redis::aio::ConnectionManager;

use super::codec;
use super::keys::ChannelKeys;
use super::scripts;
use crate::{PresenceEntry, PresenceStats};

pub(super) async fn add(
    conn: &mut ConnectionManager,
    keys: &ChannelKeys,
    entry: &PresenceEntry,
    ttl: Duration,
) -> ::redis::RedisResult<()> {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    scripts::PRESENCE_ADD
        .key(&keys.presence_zset)
        .key(&keys.presence_hash)
        .arg(&entry.client)
        .arg(codec::encode_presence(&entry.user, &entry.info))
        .arg(ttl_ms)
        .invoke_async::<i64>(conn)
        .await
        .map(drop)
}

pub(super) async fn remove(
    conn: &mut ConnectionManager,
    keys: &ChannelKeys,
    client: &str,
) -> ::redis::RedisResult<()> {
    scripts::PRESENCE_REMOVE
        .key(&keys.presence_zset)
        .key(&keys.presence_hash)
        .arg(client)
        .invoke_async::<i64>(conn)
        .await
        .map(drop)
}

/// The live entries, by client.
pub(super) async fn get(
    conn: &mut ConnectionManager,
    keys: &ChannelKeys,
) -> ::redis::RedisResult<Vec<PresenceEntry>> {
    let raw: Vec<(String, Vec<u8>)> = scripts::PRESENCE_GET
        .key(&keys.presence_zset)
        .key(&keys.presence_hash)
        .invoke_async(conn)
        .await?;
    let mut entries: Vec<PresenceEntry> = raw
        .into_iter()
        .filter_map(|(client, value)| {
            let (user, info) = codec::decode_presence(&value)?;
            Some(PresenceEntry { client, user, info })
        })
        .collect();
    entries.sort_by(|a, b| a.client.cmp(&b.client));
    Ok(entries)
}

/// Clients and distinct users among `entries`.
pub(super) fn stats(entries: &[PresenceEntry]) -> PresenceStats {
    let mut users: Vec<&str> = entries.iter().map(|e| e.user.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    PresenceStats {
        clients: entries.len(),
        users: users.len(),
    }
}
