//! A session's copy in a shared broker, so that another node can resume it: what is
//! kept ([`Resume`]), writing it (when it changed, at most once a second, and under this
//! session's owner id, so a node that lost the session cannot write it back), removing it,
//! and taking another node's copy on connect. With the in-process broker none of this
//! runs: a single node keeps only its own table of closed sessions ([`super::Resumes`]).

use bytes::Bytes;
use tokio::time::Instant;
use tollgate_token::ProjectId;

use super::SwSession;
use super::resume::{RESUME_FOR, Resume, SHARED_LIVE_FOR, SHARED_REFRESH, shared_key};

impl SwSession {
    /// Whether this session's resumable state is also kept in the broker, for other nodes.
    pub(super) fn shares(&self) -> bool {
        self.c.gw.broker.keeps_sessions()
    }

    /// What a resume of this session would get back now.
    pub(super) fn resume_state(&self) -> Resume {
        Resume {
            member: self.member_id().to_owned(),
            channels: self
                .c
                .subs
                .iter()
                .map(|(c, s)| (c.clone(), s.ext))
                .collect(),
            states: self
                .states
                .iter()
                .filter(|(c, _)| self.c.subs.contains_key(*c))
                .map(|(c, v)| (c.clone(), v.clone()))
                .collect(),
            positions: self
                .positions
                .iter()
                .filter(|(c, _)| self.c.subs.contains_key(*c))
                .map(|(c, p)| (c.clone(), p.clone()))
                .collect(),
            until: Instant::now() + RESUME_FOR,
        }
    }

    /// Writes this session's resumable state to a broker that keeps sessions, to outlive
    /// its last write by `ttl` (or removes it: a session without channels has nothing to
    /// resume). A broker failure leaves it for the next write. Whether it was written.
    pub(super) async fn save_shared(&mut self, ttl: std::time::Duration) -> bool {
        let Some(project) = self.c.project() else {
            return false;
        };
        if !self.shares() || self.protocol.is_empty() || self.taken_over {
            return false;
        }
        let key = shared_key(self.member_id(), &self.protocol);
        let broker = self.c.gw.broker.clone();
        if self.c.subs.is_empty() {
            if self.shared_at.is_some() {
                self.remove_shared(project).await;
            }
            self.shared_dirty = false;
            return false;
        }
        let state = self.resume_state().encode();
        match broker
            .put_session(*project.as_uuid(), &key, &self.owner, state, ttl)
            .await
        {
            Ok(false) => {
                tracing::debug!("signalwire session taken over by another connection");
                self.taken_over = true;
                false
            }
            Ok(true) => {
                self.shared_at = Some(Instant::now());
                self.shared_dirty = false;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "signalwire session not kept in the broker");
                self.shared_backoff = Some(Instant::now() + SHARED_REFRESH);
                false
            }
        }
    }

    /// Removes this session's copy from the broker: the client said goodbye.
    pub(super) async fn drop_shared(&mut self) {
        if let Some(project) = self.c.project()
            && !self.protocol.is_empty()
        {
            self.remove_shared(project).await;
        }
    }

    /// Replaces this session's copy by its owner's mark alone (nothing to resume), unless
    /// another session took it over: never a take, which would destroy the taker's copy.
    pub(super) async fn remove_shared(&mut self, project: ProjectId) {
        if self.taken_over {
            return;
        }
        let key = shared_key(self.member_id(), &self.protocol);
        let removed = self
            .c
            .gw
            .broker
            .put_session(
                *project.as_uuid(),
                &key,
                &self.owner,
                Bytes::new(),
                SHARED_LIVE_FOR + RESUME_FOR,
            )
            .await;
        match removed {
            Ok(true) => {}
            Ok(false) => self.taken_over = true,
            Err(e) => {
                tracing::warn!(error = %e, "signalwire session not removed from the broker");
            }
        }
        self.shared_at = None;
    }

    /// The periodic write of a live session: changes (positions, channels, states) at most
    /// every [`SHARED_EVERY`], and the whole at least every [`SHARED_REFRESH`].
    pub(super) async fn refresh_shared(&mut self) {
        if self
            .shared_backoff
            .is_some_and(|until| Instant::now() < until)
        {
            return;
        }
        let stale = self
            .shared_at
            .is_none_or(|at| at.elapsed() >= SHARED_REFRESH);
        // A session that left its last channel removes its copy (`save_shared` does).
        if self.shared_dirty || (stale && !self.c.subs.is_empty()) {
            let _ = self.save_shared(SHARED_LIVE_FOR + RESUME_FOR).await;
        }
    }

    /// The session `member` of `project` left in the broker under `protocol`, taken (so
    /// no other node resumes it too), if well-formed and the member's.
    pub(super) async fn take_shared(
        &self,
        project: ProjectId,
        protocol: &str,
        member: &str,
    ) -> Option<Resume> {
        let key = shared_key(member, protocol);
        let found = match self
            .c
            .gw
            .broker
            .take_session(
                *project.as_uuid(),
                &key,
                &self.owner,
                SHARED_LIVE_FOR + RESUME_FOR,
            )
            .await
        {
            Ok(found) => found?,
            Err(e) => {
                tracing::warn!(error = %e, "signalwire session not read from the broker");
                return None;
            }
        };
        let resume = Resume::decode(&found, member, self.c.gw.settings.max_channels);
        if resume.is_none() {
            tracing::warn!("malformed signalwire session in the broker dropped");
        }
        resume
    }
}
