//! Node heartbeats, for the server API's `info`: which nodes are alive and what each
//! carries for a project.
//!
//! Every node writes, every third of the node TTL (2 s of 6 s by default), on shard 0:
//!
//! - its identity in the hash `Names::nodes`: field = its broker node id (32 hex digits),
//!   value = JSON `{"uid", "name", "version", "uptime", "at"}` (`at`: Redis's clock, ms
//!   since the Unix epoch, stamped by the writing script);
//! - for each project with connections on it, that project's counts in the hash
//!   `Names::project_nodes`: same field, value `<at>:<clients>:<users>:<channels>:<subs>`.
//!   A project the node no longer serves has its field deleted on the next beat.
//!
//! A reader lists the nodes whose `at` is younger than the TTL by Redis's clock (read in the
//! same pipeline), so a dead node drops out of `info` within the TTL whatever the nodes'
//! clocks say. On the way it deletes entries whose `at` is older, each only if it still
//! holds the value read (a script compares): a node that beat again in between keeps its
//! fresh entry. Fields or parts a reader does not know (a newer node's, during a rolling
//! upgrade) are skipped, and an entry it cannot read is left alone. Counts are per project, so a project's `info` never shows another
//! project's activity. Both hashes get the TTL as expiry on every write: every node writes
//! with the same TTL, so a hash outlives its freshest entry and a cluster that is gone
//! leaves nothing behind.

use std::collections::HashMap;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use serde_json::Value;

use super::keys::Names;
use super::scripts;
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

/// Writes `report` for `node`, stamped with Redis's clock; `gone` are projects it
/// announced last time and no longer serves.
pub(super) async fn beat(
    conn: &mut ConnectionManager,
    names: &Names,
    node: uuid::Uuid,
    report: &NodeReport,
    gone: &[uuid::Uuid],
    ttl: Duration,
) -> ::redis::RedisResult<()> {
    let field = node_hex(node);
    let ttl_ms = millis(ttl).max(1);
    // The script appends `"at"` (Redis's clock) and the closing brace.
    let mut identity = serde_json::json!({
        "uid": report.uid,
        "name": report.name,
        "version": report.version,
        "uptime": report.uptime,
    })
    .to_string();
    identity.pop();
    let mut script = scripts::HEARTBEAT.prepare_invoke();
    script.key(names.nodes());
    for (project, _) in &report.projects {
        script.key(names.project_nodes(*project));
    }
    for project in gone {
        script.key(names.project_nodes(*project));
    }
    script
        .arg(ttl_ms)
        .arg(&field)
        .arg(report.projects.len())
        .arg(identity);
    for (_, c) in &report.projects {
        script.arg(format!(
            ":{}:{}:{}:{}",
            c.clients, c.users, c.channels, c.subs
        ));
    }
    script.invoke_async::<i64>(conn).await.map(drop)
}

/// A node's identity as read back, if well formed: (uid, name, version, uptime, at).
/// Fields it does not know (a newer node's) are skipped.
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
    Some((
        text("uid")?,
        text("name")?,
        text("version")?,
        m.get("uptime")?.as_u64()?,
        m.get("at")?.as_i64()?,
    ))
}

/// When an identity was written, if that much of it reads.
fn identity_at(value: &str) -> Option<i64> {
    if value.len() > MAX_VALUE_BYTES {
        return None;
    }
    serde_json::from_str::<Value>(value)
        .ok()?
        .get("at")?
        .as_i64()
}

/// A project's counts as read back, if well formed: (at, counts). Parts after the four
/// counts (a newer node's) are skipped.
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
    Some((at, c))
}

/// When a project's counts were written, if that much of them reads.
fn counts_at(value: &str) -> Option<i64> {
    value.split(':').next()?.parse().ok()
}

/// Deletes `stale` entries (field, value as read) of `key`, each only if it still holds
/// that value: a node that beat again since the read keeps its fresh entry.
async fn forget(
    conn: &mut ConnectionManager,
    key: &str,
    stale: &[(&String, &String)],
) -> ::redis::RedisResult<()> {
    if stale.is_empty() {
        return Ok(());
    }
    let mut script = scripts::HEARTBEAT_FORGET.prepare_invoke();
    script.key(key);
    for (field, value) in stale {
        script.arg(field.as_str()).arg(value.as_str());
    }
    script.invoke_async::<i64>(conn).await.map(drop)
}

/// The live nodes other than `node`, with `project`'s share of each. Entries older than
/// `ttl` by Redis's clock are deleted on the way (compare-and-delete); entries this node
/// cannot read (a newer node's) are skipped, never deleted.
pub(super) async fn others(
    conn: &mut ConnectionManager,
    names: &Names,
    node: uuid::Uuid,
    project: uuid::Uuid,
    ttl: Duration,
) -> ::redis::RedisResult<Vec<NodeInfo>> {
    let (nodes_key, project_key) = (names.nodes(), names.project_nodes(project));
    let ((secs, micros), nodes, shares): (
        (i64, i64),
        HashMap<String, String>,
        HashMap<String, String>,
    ) = ::redis::pipe()
        .cmd("TIME")
        .cmd("HGETALL")
        .arg(&nodes_key)
        .cmd("HGETALL")
        .arg(&project_key)
        .query_async(conn)
        .await?;
    let now = secs.saturating_mul(1000).saturating_add(micros / 1000);
    let (me, ttl) = (node_hex(node), millis(ttl));
    let live = |at: i64| now.saturating_sub(at) < ttl;
    let mut out = Vec::new();
    for (field, value) in &nodes {
        if *field == me {
            continue;
        }
        match identity(value) {
            Some((uid, name, version, uptime, at)) if live(at) => {
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
            Some(_) => {}
            None => tracing::debug!("unreadable node heartbeat in Redis skipped"),
        }
    }
    let dead: Vec<(&String, &String)> = nodes
        .iter()
        .filter(|(f, v)| **f != me && identity_at(v).is_some_and(|at| !live(at)))
        .collect();
    let stale: Vec<(&String, &String)> = shares
        .iter()
        .filter(|(f, v)| **f != me && counts_at(v).is_some_and(|at| !live(at)))
        .collect();
    forget(conn, &nodes_key, &dead).await?;
    forget(conn, &project_key, &stale).await?;
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
        for bad in ["7:1:2:3", "x:1:2:3:4", "7:-1:2:3:4", ""] {
            assert_eq!(counts(bad), None, "{bad}");
        }
        // A newer node's extra fields and parts are skipped, not refused: during a
        // rolling upgrade, older nodes read newer nodes' heartbeats.
        assert_eq!(
            identity(r#"{"uid":"u","name":"n","version":"1","uptime":3,"at":5,"x":1}"#),
            Some(("u".into(), "n".into(), "1".into(), 3, 5))
        );
        assert_eq!(counts("7:1:2:3:4:5").map(|(at, _)| at), Some(7));
        // What may be deleted once old: only what has a readable time.
        assert_eq!(identity_at(r#"{"at":5,"uid":1}"#), Some(5));
        assert_eq!(identity_at(r#"{"uid":"u"}"#), None);
        assert_eq!(counts_at("7:x"), Some(7));
        assert_eq!(counts_at("x:1:2:3:4"), None);
    }
}
