//! Node heartbeats, for the server API's `info`: which nodes are alive and what each
//! carries for a project.
//!
//! Every node writes, every third of the node TTL (2 s of 6 s by default), on shard 0:
//!
//! - its identity in the hash `Names::nodes`: field = its broker node id (32 hex digits),
//!   value = JSON `{"uid", "name", "version", "uptime", "at"}` (`at`: the writer's clock,
//!   ms since the Unix epoch);
//! - for each project with connections on it, that project's counts in the hash
//!   `Names::project_nodes`: same field, value `<at>:<clients>:<users>:<channels>:<subs>`.
//!   A project the node no longer serves has its field deleted on the next beat.
//!
//! A reader lists the nodes whose `at` is younger than the TTL and deletes older entries on
//! the way, so a dead node drops out of `info` within the TTL (plus the clock skew between
//! writer and reader). Counts are per project, so a project's `info` never shows another
//! project's activity. Both hashes get the TTL as expiry on every write: every node writes
//! with the same TTL, so a hash outlives its freshest entry and a cluster that is gone
//! leaves nothing behind.

use std::collections::HashMap;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use serde_json::Value;

use super::keys::Names;
use crate::history::now_ms;
use crate::{NodeCounts, NodeInfo, NodeReport};

/// Longest heartbeat value read; longer is someone else's data.
const MAX_VALUE_BYTES: usize = 4096;
/// Longest uid, name or version accepted from another node.
const MAX_TEXT: usize = 256;

fn node_hex(node: uuid::Uuid) -> String {
    node.simple().to_string()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Writes `report` for `node`; `gone` are projects it announced last time and no longer
/// serves.
pub(super) async fn beat(
    conn: &mut ConnectionManager,
    names: &Names,
    node: uuid::Uuid,
    report: &NodeReport,
    gone: &[uuid::Uuid],
    ttl: Duration,
) -> ::redis::RedisResult<()> {
    let at = now_ms();
    let field = node_hex(node);
    let ttl_ms = millis(ttl).max(1);
    let identity = serde_json::json!({
        "uid": report.uid,
        "name": report.name,
        "version": report.version,
        "uptime": report.uptime,
        "at": at,
    })
    .to_string();
    let mut pipe = ::redis::pipe();
    pipe.cmd("HSET")
        .arg(names.nodes())
        .arg(&field)
        .arg(identity)
        .ignore();
    pipe.cmd("PEXPIRE").arg(names.nodes()).arg(ttl_ms).ignore();
    for (project, c) in &report.projects {
        let key = names.project_nodes(*project);
        let value = format!("{at}:{}:{}:{}:{}", c.clients, c.users, c.channels, c.subs);
        pipe.cmd("HSET").arg(&key).arg(&field).arg(value).ignore();
        pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
    }
    for project in gone {
        pipe.cmd("HDEL")
            .arg(names.project_nodes(*project))
            .arg(&field)
            .ignore();
    }
    pipe.query_async::<()>(conn).await
}

/// A node's identity as read back, if well formed: (uid, name, version, uptime, at).
fn identity(value: &str) -> Option<(String, String, String, u64, i64)> {
    if value.len() > MAX_VALUE_BYTES {
        return None;
    }
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(value) else {
        return None;
    };
    let text = |k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .filter(|s| s.len() <= MAX_TEXT)
            .map(str::to_owned)
    };
    (m.len() == 5).then_some(())?;
    Some((
        text("uid")?,
        text("name")?,
        text("version")?,
        m.get("uptime")?.as_u64()?,
        m.get("at")?.as_i64()?,
    ))
}

/// A project's counts as read back, if well formed: (at, counts).
fn counts(value: &str) -> Option<(i64, NodeCounts)> {
    if value.len() > MAX_VALUE_BYTES {
        return None;
    }
    let mut parts = value.split(':');
    let at = parts.next()?.parse().ok()?;
    let mut n = || parts.next().and_then(|p| p.parse::<usize>().ok());
    let c = NodeCounts {
        clients: n()?,
        users: n()?,
        channels: n()?,
        subs: n()?,
    };
    parts.next().is_none().then_some((at, c))
}

/// The live nodes other than `node`, with `project`'s share of each. Entries older than
/// `ttl` (and malformed ones) are deleted on the way.
pub(super) async fn others(
    conn: &mut ConnectionManager,
    names: &Names,
    node: uuid::Uuid,
    project: uuid::Uuid,
    ttl: Duration,
) -> ::redis::RedisResult<Vec<NodeInfo>> {
    let (nodes_key, project_key) = (names.nodes(), names.project_nodes(project));
    let (nodes, shares): (HashMap<String, String>, HashMap<String, String>) = ::redis::pipe()
        .cmd("HGETALL")
        .arg(&nodes_key)
        .cmd("HGETALL")
        .arg(&project_key)
        .query_async(conn)
        .await?;
    let (me, now, ttl) = (node_hex(node), now_ms(), millis(ttl));
    let live = |at: i64| now.saturating_sub(at) < ttl;
    let mut out = Vec::new();
    let mut dead = Vec::new();
    for (field, value) in &nodes {
        match identity(value) {
            Some((uid, name, version, uptime, at)) if live(at) => {
                if *field == me {
                    continue;
                }
                let counts = shares
                    .get(field)
                    .and_then(|v| counts(v))
                    .filter(|(at, _)| live(*at))
                    .map(|(_, c)| c)
                    .unwrap_or_default();
                let since = u64::try_from(now.saturating_sub(at) / 1000).unwrap_or(0);
                out.push(NodeInfo {
                    uid,
                    name,
                    version,
                    uptime: uptime.saturating_add(since),
                    counts,
                });
            }
            Some(_) => dead.push(field.as_str()),
            None => {
                tracing::warn!("malformed node heartbeat in Redis removed");
                dead.push(field.as_str());
            }
        }
    }
    let stale: Vec<&str> = shares
        .iter()
        .filter(|(f, v)| !counts(v).is_some_and(|(at, _)| live(at)) && **f != me)
        .map(|(f, _)| f.as_str())
        .collect();
    if !dead.is_empty() || !stale.is_empty() {
        let mut pipe = ::redis::pipe();
        if !dead.is_empty() {
            pipe.cmd("HDEL").arg(&nodes_key).arg(&dead).ignore();
        }
        if !stale.is_empty() {
            pipe.cmd("HDEL").arg(&project_key).arg(&stale).ignore();
        }
        pipe.query_async::<()>(conn).await?;
    }
    out.sort_by(|a, b| a.uid.cmp(&b.uid));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_values_decode_strictly() {
        let ok = r#"{"uid":"u","name":"n","version":"1","uptime":3,"at":5}"#;
        assert_eq!(
            identity(ok),
            Some(("u".into(), "n".into(), "1".into(), 3, 5))
        );
        for bad in [
            r#"{"uid":"u","name":"n","version":"1","uptime":3}"#,
            r#"{"uid":"u","name":"n","version":"1","uptime":-3,"at":5}"#,
            r#"{"uid":"u","name":"n","version":"1","uptime":3,"at":5,"x":1}"#,
            r#"{"uid":1,"name":"n","version":"1","uptime":3,"at":5}"#,
            "[]",
            "",
        ] {
            assert_eq!(identity(bad), None, "{bad}");
        }
        assert_eq!(
            counts("7:1:2:3:4"),
            Some((
                7,
                NodeCounts {
                    clients: 1,
                    users: 2,
                    channels: 3,
                    subs: 4
                }
            ))
        );
        for bad in ["7:1:2:3", "7:1:2:3:4:5", "x:1:2:3:4", "7:-1:2:3:4", ""] {
            assert_eq!(counts(bad), None, "{bad}");
        }
    }
}
