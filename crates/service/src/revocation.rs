//! Revocations: making, listing and deleting them, and the in-memory sets every token
//! check consults.
//!
//! Every node holds every project's live revocations in memory (one
//! `tollgate_token::revocation::RevocationSet` per project), so a check is two hash
//! lookups and never a database round trip. The database is the truth; a node learns of
//! a revocation three ways, fastest first:
//!
//! 1. it made it (applied before the call returns);
//! 2. another node announced it (`Invalidation::Revocations`, over the broker's control
//!    channel): the project's set is reloaded from the database at once;
//! 3. the poll ([`Tollgate::run_revocation_sync`]): every second, rows created since the
//!    last poll (with an overlap for clocks and commit order), every 30 s everything (which
//!    also drops deleted and lapsed revocations). This is what picks up the CLI's, and
//!    what a lost control message falls back to.
//!
//! Whenever a project's set gains a revocation, its id is sent on
//! [`Tollgate::revocation_changes`]: the gateway closes the connections it now refuses.
//! `Tollgate::new` loads everything before the first check, so a restart loses nothing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tollgate_store::RevocationRecord;
use tollgate_token::ProjectId;
use tollgate_token::revocation::{Presented, Revocation, RevocationSet, Target};

use crate::{Invalidation, ServiceError, Tollgate};

/// How long a revocation is kept when the caller gives no `expire_at`: longer than any
/// token Tollgate mints may live (PubSub/Chat tokens: 30 days; token families: 30 days).
pub const DEFAULT_REVOCATION_TTL: i64 = 31 * 24 * 60 * 60;

/// Latest `expire_at` a revocation may ask for (a year).
pub const MAX_REVOCATION_TTL: i64 = 366 * 24 * 60 * 60;

/// Most live revocations one project may hold: memory on every node is bounded by it.
pub const MAX_REVOCATIONS_PER_PROJECT: usize = 100_000;

/// Most revocations one full reload reads (every project together).
const MAX_LOADED: u32 = 2_000_000;

/// How often nodes poll for new revocations, and how far back each poll looks (clocks of
/// nodes differ, and a row may commit after a later-stamped one).
const POLL_EVERY: Duration = Duration::from_secs(1);
const POLL_OVERLAP_MS: i64 = 10_000;
/// How often everything is reloaded (and lapsed rows swept).
const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// Revocation counters for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationStats {
    /// Live revocations held, every project together.
    pub active: u64,
    /// Token checks made.
    pub checks: u64,
    /// Checks that found the token revoked.
    pub refused: u64,
}

/// One project's revocations: the ids known (so a poll that sees a row again adds
/// nothing) and the set checks read.
#[derive(Debug, Default)]
struct ProjectRevocations {
    ids: HashSet<uuid::Uuid>,
    set: Arc<RevocationSet>,
}

/// Every project's live revocations, and what keeps them current.
#[derive(Debug)]
pub(crate) struct RevocationCache {
    projects: RwLock<HashMap<ProjectId, ProjectRevocations>>,
    changes: broadcast::Sender<ProjectId>,
    /// Projects another node announced a change for: reloaded by the sync task.
    stale: Mutex<HashSet<ProjectId>>,
    wake: Notify,
    /// Newest `created_ms` seen (polls look back from it).
    seen_ms: AtomicI64,
    checks: AtomicU64,
    refused: AtomicU64,
}

impl Default for RevocationCache {
    fn default() -> Self {
        Self {
            projects: RwLock::default(),
            // A receiver that falls this far behind reconciles everything (see the gateway).
            changes: broadcast::channel(1024).0,
            stale: Mutex::default(),
            wake: Notify::new(),
            seen_ms: AtomicI64::new(0),
            checks: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }
}

impl RevocationCache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ProjectId, ProjectRevocations>> {
        self.projects
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ProjectId, ProjectRevocations>> {
        self.projects
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn note_seen(&self, records: &[RevocationRecord]) {
        if let Some(newest) = records.iter().map(|r| r.created_ms).max() {
            self.seen_ms.fetch_max(newest, Ordering::Relaxed);
        }
    }

    /// Adds records not yet known; returns the projects that gained one.
    fn add(&self, records: &[RevocationRecord], now: i64) -> HashSet<ProjectId> {
        self.note_seen(records);
        let mut gained = HashSet::new();
        let mut projects = self.write();
        for r in records {
            let entry = projects.entry(r.project_id).or_default();
            if entry.ids.insert(r.revocation.id) {
                Arc::make_mut(&mut entry.set).insert(&r.revocation, now);
                gained.insert(r.project_id);
            }
        }
        gained
    }

    /// Replaces one project's revocations; whether it gained one it did not have.
    fn replace_project(&self, project: ProjectId, records: &[RevocationRecord], now: i64) -> bool {
        self.note_seen(records);
        let ids: HashSet<uuid::Uuid> = records.iter().map(|r| r.revocation.id).collect();
        let set = RevocationSet::new(records.iter().map(|r| &r.revocation), now);
        let mut projects = self.write();
        let gained = projects
            .get(&project)
            .is_none_or(|old| ids.iter().any(|id| !old.ids.contains(id)));
        let gained = gained && !ids.is_empty();
        if ids.is_empty() {
            projects.remove(&project);
        } else {
            projects.insert(
                project,
                ProjectRevocations {
                    ids,
                    set: Arc::new(set),
                },
            );
        }
        gained
    }

    /// Replaces everything; returns the projects that gained a revocation.
    fn replace_all(&self, records: &[RevocationRecord], now: i64) -> HashSet<ProjectId> {
        self.note_seen(records);
        let mut by_project: HashMap<ProjectId, Vec<&Revocation>> = HashMap::new();
        for r in records {
            by_project
                .entry(r.project_id)
                .or_default()
                .push(&r.revocation);
        }
        let mut fresh: HashMap<ProjectId, ProjectRevocations> = HashMap::new();
        for (project, revocations) in by_project {
            fresh.insert(
                project,
                ProjectRevocations {
                    ids: revocations.iter().map(|r| r.id).collect(),
                    set: Arc::new(RevocationSet::new(revocations, now)),
                },
            );
        }
        let mut projects = self.write();
        let gained = fresh
            .iter()
            .filter(|(p, new)| {
                projects
                    .get(p)
                    .is_none_or(|old| new.ids.iter().any(|id| !old.ids.contains(id)))
            })
            .map(|(p, _)| *p)
            .collect();
        *projects = fresh;
        gained
    }

    fn announce(&self, projects: impl IntoIterator<Item = ProjectId>) {
        for p in projects {
            // No receiver (the CLI, a test without a gateway) is fine.
            let _ = self.changes.send(p);
        }
    }
}

impl Tollgate {
    fn revocations(&self) -> &RevocationCache {
        &self.inner.revocations
    }

    /// Whether `token`, presented to `project`, is revoked. Counted for `/metrics`.
    #[must_use]
    pub fn is_revoked(&self, project: ProjectId, token: Presented<'_>) -> bool {
        let cache = self.revocations();
        cache.checks.fetch_add(1, Ordering::Relaxed);
        let revoked = cache.read().get(&project).is_some_and(|p| {
            !p.set.is_empty() && p.set.is_revoked(token, self.inner.clock.now().seconds())
        });
        if revoked {
            cache.refused.fetch_add(1, Ordering::Relaxed);
        }
        revoked
    }

    /// Projects whose revocations grew, as they grow on this node (made here, announced
    /// by another node, or found by the poll). A receiver that lags should recheck every
    /// project it serves.
    #[must_use]
    pub fn revocation_changes(&self) -> broadcast::Receiver<ProjectId> {
        self.revocations().changes.subscribe()
    }

    /// The counters `/metrics` shows.
    #[must_use]
    pub fn revocation_stats(&self) -> RevocationStats {
        let cache = self.revocations();
        let active = cache.read().values().map(|p| p.set.len() as u64).sum();
        RevocationStats {
            active,
            checks: cache.checks.load(Ordering::Relaxed),
            refused: cache.refused.load(Ordering::Relaxed),
        }
    }

    /// Revokes `target` in `project` until `expire_at` (default: longer than any token
    /// Tollgate mints lives). Takes effect on this node before it returns, on others as
    /// soon as they hear of it (the control channel, else their next poll).
    pub async fn revoke(
        &self,
        project: ProjectId,
        target: Target,
        expire_at: Option<i64>,
        actor: &str,
    ) -> Result<RevocationRecord, ServiceError> {
        target
            .validate()
            .map_err(|why| ServiceError::InvalidInput(format!("revocation target {why}")))?;
        let now_ms = self.inner.clock.now_millis();
        let now = now_ms.div_euclid(1000);
        let expire_at = match expire_at {
            None | Some(0) => now + DEFAULT_REVOCATION_TTL,
            Some(at) if at <= now => {
                return Err(ServiceError::InvalidInput(
                    "expire_at must be in the future".into(),
                ));
            }
            Some(at) if at > now + MAX_REVOCATION_TTL => {
                return Err(ServiceError::InvalidInput(
                    "expire_at must be at most a year ahead".into(),
                ));
            }
            Some(at) => at,
        };
        if self
            .revocations()
            .read()
            .get(&project)
            .is_some_and(|p| p.ids.len() >= MAX_REVOCATIONS_PER_PROJECT)
        {
            return Err(ServiceError::InvalidInput(format!(
                "the project holds {MAX_REVOCATIONS_PER_PROJECT} live revocations; \
                 delete some or let them lapse"
            )));
        }
        let record = RevocationRecord {
            project_id: project,
            revocation: Revocation {
                id: uuid::Uuid::now_v7(),
                target,
                expire_at,
            },
            created_ms: now_ms,
            actor: actor.to_owned(),
        };
        self.inner
            .store
            .insert_revocation(&record)
            .await
            .map_err(|e| match e {
                tollgate_store::StoreError::NotFound => ServiceError::NotFound("project"),
                e => e.into(),
            })?;
        let gained = self.revocations().add(std::slice::from_ref(&record), now);
        self.revocations().announce(gained);
        self.announce(Invalidation::Revocations(project));
        tracing::info!(%project, id = %record.revocation.id, actor, "revocation created");
        Ok(record)
    }

    /// `project`'s live revocations, oldest first.
    pub async fn list_revocations(
        &self,
        project: ProjectId,
    ) -> Result<Vec<RevocationRecord>, ServiceError> {
        let now = self.inner.clock.now().seconds();
        Ok(self.inner.store.list_revocations(project, now).await?)
    }

    /// Deletes one of `project`'s revocations: tokens it refused are accepted again (on
    /// other nodes within the reload period at most). `NotFound` if there is none.
    pub async fn delete_revocation(
        &self,
        project: ProjectId,
        id: uuid::Uuid,
    ) -> Result<(), ServiceError> {
        if !self.inner.store.delete_revocation(project, id).await? {
            return Err(ServiceError::NotFound("revocation"));
        }
        self.reload_project_revocations(project).await?;
        self.announce(Invalidation::Revocations(project));
        tracing::info!(%project, %id, "revocation deleted");
        Ok(())
    }

    /// Another node changed `project`'s revocations: the sync task reloads it now.
    pub(crate) fn revocations_stale(&self, project: ProjectId) {
        let cache = self.revocations();
        cache
            .stale
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(project);
        cache.wake.notify_one();
    }

    async fn reload_project_revocations(&self, project: ProjectId) -> Result<(), ServiceError> {
        let now = self.inner.clock.now().seconds();
        let records = self.inner.store.list_revocations(project, now).await?;
        if self.revocations().replace_project(project, &records, now) {
            self.revocations().announce([project]);
        }
        Ok(())
    }

    /// Reads every live revocation (start-up, and every 30 s).
    pub(crate) async fn reload_all_revocations(&self) -> Result<(), ServiceError> {
        let now = self.inner.clock.now().seconds();
        let records = self
            .inner
            .store
            .revocations_since(0, now, MAX_LOADED)
            .await?;
        if records.len() >= MAX_LOADED as usize {
            tracing::warn!(
                limit = MAX_LOADED,
                "revocations beyond the load limit are not held"
            );
        }
        let gained = self.revocations().replace_all(&records, now);
        self.revocations().announce(gained);
        Ok(())
    }

    async fn poll_revocations(&self) -> Result<(), ServiceError> {
        let now = self.inner.clock.now().seconds();
        let since = self.revocations().seen_ms.load(Ordering::Relaxed) - POLL_OVERLAP_MS;
        let records = self
            .inner
            .store
            .revocations_since(since, now, MAX_LOADED)
            .await?;
        let gained = self.revocations().add(&records, now);
        self.revocations().announce(gained);
        Ok(())
    }

    /// Keeps this node's revocations current until the returned future is dropped: reloads
    /// projects other nodes announce, polls every second, reloads everything and sweeps
    /// lapsed rows every 30 s. Errors are logged and retried on the next turn.
    pub async fn run_revocation_sync(self) {
        let mut poll = tokio::time::interval(POLL_EVERY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reload = tokio::time::interval(RELOAD_EVERY);
        reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reload.tick().await; // `new` loaded everything just now
        loop {
            tokio::select! {
                () = self.revocations().wake.notified() => {
                    let stale: Vec<ProjectId> = self
                        .revocations()
                        .stale
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .drain()
                        .collect();
                    for project in stale {
                        if let Err(e) = self.reload_project_revocations(project).await {
                            tracing::warn!(%project, error = %e, "cannot reload revocations");
                            self.revocations_stale(project);
                            tokio::time::sleep(POLL_EVERY).await;
                        }
                    }
                }
                _ = poll.tick() => {
                    if let Err(e) = self.poll_revocations().await {
                        tracing::warn!(error = %e, "cannot poll revocations");
                    }
                }
                _ = reload.tick() => {
                    let now = self.inner.clock.now().seconds();
                    if let Err(e) = self.inner.store.sweep_revocations(now).await {
                        tracing::warn!(error = %e, "cannot sweep lapsed revocations");
                    }
                    if let Err(e) = self.reload_all_revocations().await {
                        tracing::warn!(error = %e, "cannot reload revocations");
                    }
                }
            }
        }
    }
}
