//! Which channels have subscribers anywhere in the cluster, for the server API's
//! `channels`.
//!
//! Each node announces, per project, the channels it has local subscribers for in a hash
//! on the channel's shard (`Names::project_channels`): field `<node id><name>`, value
//! `<expires ms>:<count>`. A node announces a channel when it starts receiving it,
//! withdraws it when its last local subscriber leaves, and re-announces all of them with
//! fresh counts every third of the entry TTL. So: this node's own channels and counts are
//! exact; another node's counts lag by at most a third of the TTL; a node that died drops
//! out within the TTL (30 s by default). Expiry uses the writer's clock, read against the
//! reader's: clock skew between nodes shifts that bound by as much. One read is one HGETALL
//! per shard, bounded by the project's channels × nodes.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::aio::ConnectionManager;

use super::keys::Names;
use crate::ChannelKey;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn node_hex(node: uuid::Uuid) -> String {
    node.simple().to_string()
}

/// Announces `channels` (one project's, on one shard) for `ttl`.
pub(super) async fn announce(
    conn: &mut ConnectionManager,
    names: &Names,
    node: uuid::Uuid,
    project: uuid::Uuid,
    channels: &[(String, usize)],
    ttl: Duration,
) -> ::redis::RedisResult<()> {
    if channels.is_empty() {
        return Ok(());
    }
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let expires = now_ms().saturating_add(ttl_ms);
    let node = node_hex(node);
    let key = names.project_channels(project);
    let mut pipe = ::redis::pipe();
    let mut hset = ::redis::cmd("HSET");
    hset.arg(&key);
    for (name, count) in channels {
        hset.arg(format!("{node}{name}"))
            .arg(format!("{expires}:{count}"));
    }
    pipe.add_command(hset).ignore();
    // Every node announces with the same TTL, so the hash outlives exactly its freshest
    // entry: a project whose nodes all died is gone.
    pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
    pipe.query_async::<()>(conn).await
}

/// Withdraws this node's announcement of `channel`.
pub(super) async fn withdraw(
    conn: &mut ConnectionManager,
    names: &Names,
    node: uuid::Uuid,
    channel: &ChannelKey,
) -> ::redis::RedisResult<()> {
    ::redis::cmd("HDEL")
        .arg(names.project_channels(channel.project()))
        .arg(format!("{}{}", node_hex(node), channel.name()))
        .query_async::<i64>(conn)
        .await
        .map(drop)
}

/// Other nodes' live announcements of `project`'s channels on one shard, added into
/// `out` (name → subscribers). Expired fields are removed on the way.
pub(super) async fn read_others(
    conn: &mut ConnectionManager,
    names: &Names,
    node: uuid::Uuid,
    project: uuid::Uuid,
    out: &mut BTreeMap<String, usize>,
) -> ::redis::RedisResult<()> {
    let key = names.project_channels(project);
    let fields: Vec<(String, String)> = ::redis::cmd("HGETALL").arg(&key).query_async(conn).await?;
    let (me, now) = (node_hex(node), now_ms());
    let mut expired = Vec::new();
    for (field, value) in fields {
        let (Some(field_node), Some(name)) = (field.get(..32), field.get(32..)) else {
            continue;
        };
        let Some((expires, count)) = value.split_once(':') else {
            continue;
        };
        let (Ok(expires), Ok(count)) = (expires.parse::<u64>(), count.parse::<usize>()) else {
            continue;
        };
        if expires <= now {
            expired.push(field);
        } else if field_node != me && count > 0 {
            *out.entry(name.to_owned()).or_default() += count;
        }
    }
    if !expired.is_empty() {
        ::redis::cmd("HDEL")
            .arg(&key)
            .arg(&expired)
            .query_async::<i64>(conn)
            .await?;
    }
    Ok(())
}
