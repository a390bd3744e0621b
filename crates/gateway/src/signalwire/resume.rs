//! Closed SignalWire sessions waiting to be resumed.
//!
//! `@signalwire/js` never re-sends `chat.subscribe` after a reconnect; it presents the
//! `protocol` string it was given instead. So a session that closes leaves its channels,
//! event selection and member states here for [`RESUME_FOR`], and a reconnect of the same
//! member of the same project with that `protocol` takes them back.
//!
//! Everything is per project: each project has its own table with its own bound, and when
//! the node's overall bound is reached the largest table gives up its oldest entry, so one
//! tenant opening and dropping sessions in a loop only ever evicts its own entries, never
//! a smaller project's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tollgate_broker::StreamPosition;
use tollgate_token::ProjectId;

use super::wire::Events;

/// How long a closed session's subscriptions wait for the client to reconnect.
pub(super) const RESUME_FOR: Duration = Duration::from_secs(60);
/// Most sessions waiting to be resumed on this node, all projects together (each at most
/// `max_channels` names and states): what bounds the table's memory.
pub(super) const MAX_RESUMES: usize = 10_000;
/// Most sessions of one project waiting to be resumed.
pub(super) const MAX_RESUMES_PER_PROJECT: usize = MAX_RESUMES / 2;
/// Most sessions of one member waiting to be resumed: a member reconnecting in a loop
/// replaces its own entries instead of filling its project's table.
pub(super) const MAX_RESUMES_PER_MEMBER: usize = 8;

/// What a reconnecting client gets back: its channels, events and states, and where each
/// channel's stream was when the session closed (what it missed meanwhile is replayed
/// from history).
#[derive(Debug, Clone)]
pub(super) struct Resume {
    pub(super) member: String,
    pub(super) channels: Vec<(String, Events)>,
    pub(super) states: HashMap<String, Value>,
    pub(super) positions: HashMap<String, StreamPosition>,
    pub(super) until: Instant,
}

/// One project's closed sessions: by member, each member's few sessions by protocol.
/// Keyed by member so that a put or take touches one member's handful of entries, not the
/// whole table; `len` counts them all for the project bound.
#[derive(Debug, Default)]
struct Table {
    members: HashMap<String, Vec<(String, Resume)>>,
    len: usize,
}

impl Table {
    /// Drops expired entries everywhere (only when the table is full: it is a full scan).
    fn prune(&mut self, now: Instant) {
        let mut len = 0;
        self.members.retain(|_, sessions| {
            sessions.retain(|(_, r)| r.until > now);
            len += sessions.len();
            !sessions.is_empty()
        });
        self.len = len;
    }

    /// Drops the project's oldest entry.
    fn evict_oldest(&mut self) {
        let oldest = self
            .members
            .iter()
            .flat_map(|(m, sessions)| sessions.iter().map(move |(p, r)| (r.until, m, p)))
            .min()
            .map(|(_, m, p)| (m.clone(), p.clone()));
        if let Some((member, protocol)) = oldest {
            self.remove(&member, &protocol);
        }
    }

    fn remove(&mut self, member: &str, protocol: &str) -> Option<Resume> {
        let sessions = self.members.get_mut(member)?;
        let i = sessions.iter().position(|(p, _)| p == protocol)?;
        let (_, resume) = sessions.swap_remove(i);
        if sessions.is_empty() {
            self.members.remove(member);
        }
        self.len -= 1;
        Some(resume)
    }
}

/// Closed sessions waiting to be resumed, by project.
#[derive(Debug, Default)]
pub(crate) struct Resumes {
    projects: Mutex<HashMap<ProjectId, Table>>,
}

impl Resumes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProjectId, Table>> {
        self.projects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `resume` under `protocol` in `project`'s table, within the member's bound (its
    /// oldest entry makes room) and the project's (expired entries, then the project's
    /// oldest, make room). Another project's table is never touched.
    pub(super) fn put(&self, project: ProjectId, protocol: String, resume: Resume) {
        let mut projects = self.lock();
        let table = projects.entry(project).or_default();
        let now = Instant::now();
        table.remove(&resume.member, &protocol);
        let mine = table.members.get(&resume.member).map_or(0, Vec::len);
        if mine >= MAX_RESUMES_PER_MEMBER
            && let Some(oldest) = table.members.get(&resume.member).and_then(|sessions| {
                sessions
                    .iter()
                    .min_by_key(|(_, r)| r.until)
                    .map(|(p, _)| p.clone())
            })
        {
            table.remove(&resume.member, &oldest);
        }
        if table.len >= MAX_RESUMES_PER_PROJECT {
            table.prune(now);
        }
        if table.len >= MAX_RESUMES_PER_PROJECT {
            table.evict_oldest();
        }
        table.len += 1;
        table
            .members
            .entry(resume.member.clone())
            .or_default()
            .push((protocol, resume));
        // The node's bound: the largest project makes room (the one putting, unless a
        // larger one exists), so a project within its share is never the one to lose.
        let total = |p: &HashMap<ProjectId, Table>| p.values().map(|t| t.len).sum::<usize>();
        if total(&projects) > MAX_RESUMES
            && let Some(largest) = projects.values_mut().max_by_key(|t| t.len)
        {
            largest.prune(now);
            if total(&projects) > MAX_RESUMES
                && let Some(largest) = projects.values_mut().max_by_key(|t| t.len)
            {
                largest.evict_oldest();
            }
        }
    }

    /// The resume for `protocol`, if it is this member's of this project and still fresh.
    pub(super) fn take(&self, project: ProjectId, protocol: &str, member: &str) -> Option<Resume> {
        let mut projects = self.lock();
        let table = projects.get_mut(&project)?;
        let resume = table
            .remove(member, protocol)
            .filter(|r| r.until > Instant::now());
        if table.len == 0 {
            projects.remove(&project);
        }
        resume
    }

    /// Sessions waiting in `project`'s table.
    #[cfg(test)]
    fn waiting(&self, project: ProjectId) -> usize {
        self.lock().get(&project).map_or(0, |t| t.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resume(member: &str, until: Instant) -> Resume {
        Resume {
            member: member.to_owned(),
            channels: vec![("room".to_owned(), Events::default())],
            states: HashMap::new(),
            positions: HashMap::new(),
            until,
        }
    }

    #[test]
    fn a_resume_is_taken_once_by_its_member_of_its_project() {
        let r = Resumes::default();
        let (p1, p2) = (ProjectId::new_random(), ProjectId::new_random());
        let later = Instant::now() + RESUME_FOR;
        r.put(p1, "proto".into(), resume("alice", later));
        assert!(
            r.take(p2, "proto", "alice").is_none(),
            "another project's alice"
        );
        assert!(r.take(p1, "proto", "bob").is_none(), "another member");
        assert!(r.take(p1, "proto", "alice").is_some());
        assert!(r.take(p1, "proto", "alice").is_none(), "taken once");
    }

    #[test]
    fn an_expired_resume_is_not_given_back() {
        let r = Resumes::default();
        let p = ProjectId::new_random();
        r.put(p, "proto".into(), resume("alice", Instant::now()));
        assert!(r.take(p, "proto", "alice").is_none());
    }

    #[test]
    fn a_member_reconnecting_in_a_loop_replaces_its_own_oldest_entries() {
        let r = Resumes::default();
        let p = ProjectId::new_random();
        let now = Instant::now() + RESUME_FOR;
        r.put(p, "other".into(), resume("bob", now));
        for i in 0..20u64 {
            r.put(
                p,
                format!("p{i}"),
                resume("alice", now + Duration::from_secs(i)),
            );
        }
        assert_eq!(r.waiting(p), MAX_RESUMES_PER_MEMBER + 1);
        assert!(r.take(p, "p0", "alice").is_none(), "the oldest went first");
        assert!(r.take(p, "p19", "alice").is_some(), "the newest stays");
        assert!(
            r.take(p, "other", "bob").is_some(),
            "another member is untouched"
        );
    }

    #[test]
    fn at_the_nodes_bound_the_largest_project_gives_way() {
        let r = Resumes::default();
        let later = Instant::now() + RESUME_FOR;
        let quiet = ProjectId::new_random();
        r.put(quiet, "keep".into(), resume("carol", later));
        // Two projects at their share fill the node.
        let (big, bigger) = (ProjectId::new_random(), ProjectId::new_random());
        for i in 0..MAX_RESUMES_PER_PROJECT {
            r.put(big, format!("b{i}"), resume(&format!("m{i}"), later));
        }
        for i in 0..MAX_RESUMES_PER_PROJECT {
            r.put(bigger, format!("p{i}"), resume(&format!("m{i}"), later));
        }
        let total = r.waiting(quiet) + r.waiting(big) + r.waiting(bigger);
        assert_eq!(total, MAX_RESUMES, "one over the bound, and one evicted");
        assert_eq!(r.waiting(big) + r.waiting(bigger), MAX_RESUMES - 1);
        assert!(
            r.take(quiet, "keep", "carol").is_some(),
            "the small project kept its own"
        );
    }

    #[test]
    fn one_project_filling_its_table_never_evicts_another_projects_resumes() {
        let r = Resumes::default();
        let (noisy, quiet) = (ProjectId::new_random(), ProjectId::new_random());
        let later = Instant::now() + RESUME_FOR;
        r.put(quiet, "keep".into(), resume("carol", later));
        for i in 0..(MAX_RESUMES_PER_PROJECT + 100) {
            r.put(noisy, format!("p{i}"), resume(&format!("m{i}"), later));
        }
        assert_eq!(r.waiting(noisy), MAX_RESUMES_PER_PROJECT);
        assert!(r.take(quiet, "keep", "carol").is_some());
    }
}
