//! Names: every Redis key and PUB/SUB channel the broker uses, one channel's
//! and one project's.
//!
//! A channel is identified in Redis as `<project>:<name>`, the project being its UUID in
//! 32 hex digits. The project part has a fixed length, so no name of one project can spell
//! a channel of another ("a:b" in project P is never "b" in a project "P…a"). Every name
//! starts with the configured prefix, so deployments can share one Redis.
//!
//! The per-channel keys put the channel identity in a hash tag (`{…}`): all keys of one
//! channel hash to one slot, which the publish script (touching stream and meta at once)
//! will need behind a Redis Cluster proxy one day, and which costs nothing meanwhile.

use crate::ChannelKey;

/// The names of one channel's keys.
#[derive(Debug, Clone)]
pub(super) struct ChannelKeys {
    /// The history stream (entry id = offset).
    pub(super) stream: String,
    /// The stream's meta hash: `e` epoch, `o` offset.
    pub(super) meta: String,
    /// Presence: client → expiry (ms since the epoch, Redis's clock).
    pub(super) presence_zset: String,
    /// Presence: client → user and `ClientInfo`.
    pub(super) presence_hash: String,
    /// The PUB/SUB channel publications and join/leave travel on.
    pub(super) pubsub: String,
}

/// The naming scheme under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Names {
    prefix: String,
}

impl Names {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    fn id(key: &ChannelKey) -> String {
        format!("{}:{}", key.project().simple(), key.name())
    }

    pub(super) fn channel(&self, key: &ChannelKey) -> ChannelKeys {
        let id = Self::id(key);
        let p = &self.prefix;
        ChannelKeys {
            stream: format!("{p}.s.{{{id}}}"),
            meta: format!("{p}.m.{{{id}}}"),
            presence_zset: format!("{p}.pz.{{{id}}}"),
            presence_hash: format!("{p}.ph.{{{id}}}"),
            pubsub: self.pubsub(key),
        }
    }

    pub(super) fn pubsub(&self, key: &ChannelKey) -> String {
        format!("{}.c.{}", self.prefix, Self::id(key))
    }

    /// Where the result of a publish with idempotency `key` into `channel` is kept: the
    /// key's length first, so no key of one channel can spell another channel's.
    pub(super) fn idempotency(&self, channel: &ChannelKey, key: &str) -> String {
        format!(
            "{}.i.{}:{key}.{{{}}}",
            self.prefix,
            key.len(),
            Self::id(channel)
        )
    }

    /// Where a session of `project` waiting to be resumed is kept: the caller's `key` (a
    /// digest of fixed length) after the project's 32 hex digits.
    pub(super) fn session(&self, project: uuid::Uuid, key: &str) -> String {
        format!("{}.sw.{}.{key}", self.prefix, project.simple())
    }

    /// The cluster's control PUB/SUB channel (on shard 0): every node listens to it.
    pub(super) fn control(&self) -> String {
        format!("{}.control", self.prefix)
    }

    /// The hash where nodes announce `project`'s channels with local subscribers: field
    /// `<node id><name>` (the node id is 32 hex digits), value `<expires ms>:<count>`.
    pub(super) fn project_channels(&self, project: uuid::Uuid) -> String {
        format!("{}.n.{}", self.prefix, project.simple())
    }

    /// The hash of live nodes' heartbeats (on shard 0): field = node id, value = identity.
    pub(super) fn nodes(&self) -> String {
        format!("{}.nodes", self.prefix)
    }

    /// The hash of each node's share of `project` (on shard 0): field = node id.
    pub(super) fn project_nodes(&self, project: uuid::Uuid) -> String {
        format!("{}.nodes.{}", self.prefix, project.simple())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_project_and_come_back() {
        let n = Names::new("tg");
        let p = uuid::Uuid::from_u128(7);
        let key = ChannelKey::new(p, "chat:room}1");
        let k = n.channel(&key);
        assert_eq!(k.meta, format!("tg.m.{{{}:chat:room}}1}}", p.simple()));
        assert_eq!(k.pubsub, format!("tg.c.{}:chat:room}}1", p.simple()));
        // The same name in two projects: different everything.
        let other = n.channel(&ChannelKey::new(uuid::Uuid::from_u128(8), "chat:room}1"));
        assert_ne!(other.pubsub, k.pubsub);
        assert_ne!(other.stream, k.stream);
        // Idempotency keys: the key's length keeps channel and key apart.
        let (a, ab) = (ChannelKey::new(p, "a"), ChannelKey::new(p, "a}b"));
        assert_ne!(n.idempotency(&a, "b}c"), n.idempotency(&ab, "c"));
        // Sessions: the project's fixed-length id before the caller's key.
        assert_eq!(n.session(p, "abc"), format!("tg.sw.{}.abc", p.simple()));
        assert_ne!(
            n.session(p, "abc"),
            n.session(uuid::Uuid::from_u128(8), "abc")
        );
    }
}
