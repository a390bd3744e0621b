//! The in-process broker: one node, no persistence.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::history::{new_epoch, now_ms};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    Broker, BrokerError, ChannelKey, Delivery, Event, History, HistoryPolicy, HistoryQuery,
    NewPublication, PresenceEntry, PresenceStats, Publication, Queue, StreamPosition,
};

#[derive(Debug)]
struct Kept {
    publication: Arc<Publication>,
    expires: Instant,
    /// Payload bytes, counted against the broker's history budget.
    weight: usize,
}

#[derive(Debug)]
struct Channel {
    name: Arc<str>,
    subscribers: HashMap<u64, Weak<Queue>>,
    epoch: String,
    offset: u64,
    history: VecDeque<Kept>,
    presence: HashMap<String, (PresenceEntry, Instant)>,
    /// Bytes of payload kept in `history`.
    history_bytes: usize,
    /// Until when the stream position (epoch + offset) outlives an otherwise idle channel,
    /// so a client coming back after a quiet spell can still tell it missed nothing.
    meta_expires: Option<Instant>,
}

impl Channel {
    fn new(key: &ChannelKey) -> Self {
        Self {
            name: key.name_arc().clone(),
            subscribers: HashMap::new(),
            epoch: new_epoch(),
            offset: 0,
            history: VecDeque::new(),
            presence: HashMap::new(),
            meta_expires: None,
            history_bytes: 0,
        }
    }

    fn pop_history(&mut self) {
        if let Some(k) = self.history.pop_front() {
            self.history_bytes -= k.weight;
        }
    }

    fn prune(&mut self, now: Instant) {
        while self.history.front().is_some_and(|k| k.expires <= now) {
            self.pop_history();
        }
        self.presence.retain(|_, (_, expires)| *expires > now);
    }

    fn position(&self) -> StreamPosition {
        StreamPosition {
            offset: self.offset,
            epoch: self.epoch.clone(),
        }
    }

    /// Whether nothing but (possibly) its stream position would be lost by forgetting it.
    fn unused(&self) -> bool {
        self.subscribers.is_empty() && self.history.is_empty() && self.presence.is_empty()
    }

    /// Whether nothing at all would be lost by forgetting the channel.
    fn idle(&self, now: Instant) -> bool {
        self.unused() && self.meta_expires.is_none_or(|e| e <= now)
    }

    /// Hands `event` to every live subscriber, dropping queues that are gone.
    fn fan_out(&mut self, event: &Event) {
        let delivery = Delivery {
            channel: self.name.clone(),
            event: event.clone(),
        };
        self.subscribers.retain(|_, weak| match weak.upgrade() {
            Some(queue) => {
                // A full queue marks itself overflowed; its connection is then closed by
                // the gateway. The publisher never waits.
                queue.push(delivery.clone());
                true
            }
            None => false,
        });
    }
}

/// How long a stream position outlives its channel's last publication by default (a
/// day; Centrifugo's `history_meta_ttl` is 30 days, but this one lives in process memory).
pub const DEFAULT_META_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Most channels one project keeps; past it, that project's channels kept only for their
/// stream position go first (never another project's).
const MAX_CHANNELS_PER_PROJECT: usize = 1_000_000;
/// Most payload bytes kept in history across all channels by default. Past it a
/// publication is still delivered and numbered but not kept, which recovery reports as a
/// gap: memory stays bounded however many channels keep history.
pub const DEFAULT_MAX_HISTORY_BYTES: usize = 512 * 1024 * 1024;
/// Most payload bytes one project keeps in history by default: a quarter of the whole, so
/// one tenant publishing with history in a loop fills its own share and leaves the rest
/// to the others (its publications past the share are gaps, theirs are kept).
pub(crate) const DEFAULT_MAX_PROJECT_HISTORY_BYTES: usize = DEFAULT_MAX_HISTORY_BYTES / 4;

/// One project's channels, by name, and the history bytes they keep.
#[derive(Debug, Default)]
struct Project {
    channels: HashMap<Arc<str>, Channel>,
    history_bytes: usize,
}

/// The in-process broker.
#[derive(Debug)]
pub struct MemoryBroker {
    /// Channels by project, then name: a project's work (listing, sweeping, evicting)
    /// never walks another project's channels.
    projects: Mutex<HashMap<uuid::Uuid, Project>>,
    meta_ttl: Duration,
    max_history_bytes: usize,
    max_project_history_bytes: usize,
    /// Payload bytes kept in history, all channels together.
    history_bytes: std::sync::atomic::AtomicUsize,
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBroker {
    /// An empty broker keeping stream positions for [`DEFAULT_META_TTL`].
    #[must_use]
    pub fn new() -> Self {
        Self::with_meta_ttl(DEFAULT_META_TTL)
    }

    /// An empty broker keeping stream positions for `meta_ttl` after a channel's last
    /// publication with history.
    #[must_use]
    pub fn with_meta_ttl(meta_ttl: Duration) -> Self {
        Self::with_budgets(
            meta_ttl,
            DEFAULT_MAX_HISTORY_BYTES,
            DEFAULT_MAX_PROJECT_HISTORY_BYTES,
        )
    }

    /// An empty broker keeping stream positions for `meta_ttl` and at most
    /// `max_history_bytes` of history payload, which any one project may use all of.
    #[must_use]
    pub fn with_limits(meta_ttl: Duration, max_history_bytes: usize) -> Self {
        Self::with_budgets(meta_ttl, max_history_bytes, max_history_bytes)
    }

    /// An empty broker keeping at most `max_history_bytes` of history payload in all, and
    /// at most `max_project_history_bytes` of it for any one project.
    #[must_use]
    pub fn with_budgets(
        meta_ttl: Duration,
        max_history_bytes: usize,
        max_project_history_bytes: usize,
    ) -> Self {
        Self {
            projects: Mutex::default(),
            meta_ttl,
            max_history_bytes,
            max_project_history_bytes,
            history_bytes: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<uuid::Uuid, Project>> {
        self.projects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Payload bytes kept in history now.
    #[must_use]
    pub fn history_bytes(&self) -> usize {
        self.history_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Applies the change of one channel's history bytes to its project's and the total.
    fn account(&self, project_bytes: &mut usize, before: usize, after: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        if after >= before {
            self.history_bytes.fetch_add(after - before, Relaxed);
            *project_bytes += after - before;
        } else {
            self.history_bytes.fetch_sub(before - after, Relaxed);
            *project_bytes -= before - after;
        }
    }

    /// Drops expired history and presence everywhere, subscribers whose connection is
    /// gone, and channels nothing refers to. Touching a channel prunes it too; this catches
    /// the channels nobody touches again.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut projects = self.lock();
        for project in projects.values_mut() {
            let mut channels = std::mem::take(&mut project.channels);
            channels.retain(|_, ch| {
                let before = ch.history_bytes;
                ch.prune(now);
                ch.subscribers.retain(|_, q| q.strong_count() > 0);
                self.account(&mut project.history_bytes, before, ch.history_bytes);
                !ch.idle(now)
            });
            if channels.len() > MAX_CHANNELS_PER_PROJECT {
                channels.retain(|_, ch| !ch.unused());
            }
            project.channels = channels;
        }
        projects.retain(|_, p| !p.channels.is_empty());
    }

    /// Sweeps every `every` until the broker is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let broker = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match broker.upgrade() {
                    Some(b) => b.sweep(),
                    None => return,
                }
            }
        })
    }

    /// Runs `f` on the channel `key` (made if new) with room to keep `history` bytes in
    /// its project's share, then forgets the channel if nothing refers to it any more.
    fn with_channel<T>(&self, key: &ChannelKey, f: impl FnOnce(&mut Channel, Budget) -> T) -> T {
        let mut projects = self.lock();
        let now = Instant::now();
        let Project {
            channels,
            history_bytes: project_bytes,
        } = projects.entry(key.project()).or_default();
        // Cloning the name is a reference-count increment, not an allocation.
        let channel = channels
            .entry(key.name_arc().clone())
            .or_insert_with(|| Channel::new(key));
        let before = channel.history_bytes;
        channel.prune(now);
        self.account(project_bytes, before, channel.history_bytes);
        let budget = Budget {
            total: self.max_history_bytes.saturating_sub(self.history_bytes()),
            project: self
                .max_project_history_bytes
                .saturating_sub(*project_bytes),
        };
        let before = channel.history_bytes;
        let out = f(channel, budget);
        self.account(project_bytes, before, channel.history_bytes);
        if channel.idle(now) {
            channels.remove(key.name());
            if channels.is_empty() {
                projects.remove(&key.project());
            }
        }
        out
    }
}

/// History bytes a publication may still add: to the whole broker, and to its project.
#[derive(Debug, Clone, Copy)]
struct Budget {
    total: usize,
    project: usize,
}

impl Budget {
    fn fits(self, weight: usize) -> bool {
        weight <= self.total && weight <= self.project
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(
        &self,
        channel: &ChannelKey,
        new: NewPublication,
        history: Option<HistoryPolicy>,
    ) -> Result<StreamPosition, BrokerError> {
        Ok(self.with_channel(channel, |ch, budget| {
            let keep = history.filter(|h| h.size > 0 && !h.ttl.is_zero());
            if keep.is_some() {
                ch.offset += 1;
            }
            let publication = Arc::new(Publication {
                id: uuid::Uuid::new_v4().to_string(),
                offset: if keep.is_some() { ch.offset } else { 0 },
                data: new.data,
                info: new.info,
                tags: new.tags,
                meta: new.meta,
                time_ms: now_ms(),
                encoded: std::sync::OnceLock::new(),
            });
            if let Some(policy) = keep {
                ch.meta_expires = Some(Instant::now() + self.meta_ttl.max(policy.ttl));
                let weight = publication.data.len()
                    + publication.info.as_ref().map_or(0, Bytes::len)
                    + publication.meta.as_ref().map_or(0, Bytes::len)
                    + publication.tags.as_ref().map_or(0, Bytes::len)
                    + 128;
                if budget.fits(weight) {
                    ch.history_bytes += weight;
                    ch.history.push_back(Kept {
                        publication: publication.clone(),
                        expires: Instant::now() + policy.ttl,
                        weight,
                    });
                }
                while ch.history.len() > policy.size {
                    ch.pop_history();
                }
            }
            ch.fan_out(&Event::Publication(publication));
            ch.position()
        }))
    }

    async fn publish_presence_event(
        &self,
        channel: &ChannelKey,
        event: Event,
    ) -> Result<(), BrokerError> {
        self.with_channel(channel, |ch, _| ch.fan_out(&event));
        Ok(())
    }

    async fn subscribe(&self, channel: &ChannelKey, queue: &Arc<Queue>) -> Result<(), BrokerError> {
        self.with_channel(channel, |ch, _| {
            ch.subscribers.insert(queue.id(), Arc::downgrade(queue));
        });
        Ok(())
    }

    async fn unsubscribe(&self, channel: &ChannelKey, queue: &Queue) -> Result<(), BrokerError> {
        self.with_channel(channel, |ch, _| {
            ch.subscribers.remove(&queue.id());
        });
        Ok(())
    }

    async fn history(
        &self,
        channel: &ChannelKey,
        query: HistoryQuery<'_>,
    ) -> Result<History, BrokerError> {
        Ok(self.with_channel(channel, |ch, _| {
            let kept = ch.history.iter().map(|k| k.publication.clone()).collect();
            crate::history::answer(kept, ch.position(), query)
        }))
    }

    async fn remove_history(&self, channel: &ChannelKey) -> Result<(), BrokerError> {
        self.with_channel(channel, |ch, _| {
            while !ch.history.is_empty() {
                ch.pop_history();
            }
        });
        Ok(())
    }

    async fn add_presence(
        &self,
        channel: &ChannelKey,
        entry: PresenceEntry,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        self.with_channel(channel, |ch, _| {
            ch.presence
                .insert(entry.client.clone(), (entry, Instant::now() + ttl));
        });
        Ok(())
    }

    async fn remove_presence(&self, channel: &ChannelKey, client: &str) -> Result<(), BrokerError> {
        self.with_channel(channel, |ch, _| {
            ch.presence.remove(client);
        });
        Ok(())
    }

    async fn presence(&self, channel: &ChannelKey) -> Result<Vec<PresenceEntry>, BrokerError> {
        Ok(self.with_channel(channel, |ch, _| {
            let mut entries: Vec<PresenceEntry> =
                ch.presence.values().map(|(e, _)| e.clone()).collect();
            entries.sort_by(|a, b| a.client.cmp(&b.client));
            entries
        }))
    }

    async fn presence_stats(&self, channel: &ChannelKey) -> Result<PresenceStats, BrokerError> {
        Ok(self.with_channel(channel, |ch, _| {
            let mut users: Vec<&str> = ch.presence.values().map(|(e, _)| e.user.as_str()).collect();
            users.sort_unstable();
            users.dedup();
            PresenceStats {
                clients: ch.presence.len(),
                users: users.len(),
            }
        }))
    }

    async fn channels(&self, project: uuid::Uuid) -> Result<Vec<(String, usize)>, BrokerError> {
        let projects = self.lock();
        let mut out: Vec<(String, usize)> = projects
            .get(&project)
            .into_iter()
            .flat_map(|p| p.channels.values())
            .filter(|c| !c.subscribers.is_empty())
            .map(|c| (c.name.to_string(), c.subscribers.len()))
            .collect();
        out.sort();
        Ok(out)
    }

    async fn channel_count(&self) -> Result<(usize, usize), BrokerError> {
        let projects = self.lock();
        Ok(projects
            .values()
            .flat_map(|p| p.channels.values())
            .filter(|c| !c.subscribers.is_empty())
            .fold((0, 0), |(n, subs), c| (n + 1, subs + c.subscribers.len())))
    }
}

#[cfg(test)]
mod tests;
