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
//!
//! With a broker shared by several nodes ([`tollgate_broker::Broker::keeps_sessions`]),
//! a session's resumable state is also kept in the broker ([`Shared`]), so a client whose
//! node died can resume on another: written when its channels, states or the positions of
//! what the client acknowledged change, by the session loop's periodic write at most every
//! [`SHARED_EVERY`] (never inline in a request), and kept for [`SHARED_LIVE_FOR`] +
//! [`RESUME_FOR`] after the last write. It is named by a SHA-256 of the member and the
//! `protocol` ([`shared_key`]), never the `protocol` itself, and taken atomically, so it
//! is resumed once. Each write names the writing session (its owner id) and a take leaves
//! the taker's mark: a previous owner still live behind a half-open socket has its writes
//! refused, and stops writing and keeping the session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
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

/// How often a live session's changes (channels, states, stream positions) are written to
/// a shared broker, at most: a resume on another node may replay what was acknowledged in
/// the last one, and miss a `chat.subscribe` or state change made in it.
pub(super) const SHARED_EVERY: Duration = Duration::from_secs(1);
/// How often a live session's copy in a shared broker is rewritten even if unchanged.
pub(super) const SHARED_REFRESH: Duration = Duration::from_secs(10);
/// How long a live session's copy outlives its last write, on top of [`RESUME_FOR`]: more
/// than [`SHARED_REFRESH`], so a session whose node died stays resumable for at least
/// [`RESUME_FOR`].
pub(super) const SHARED_LIVE_FOR: Duration = Duration::from_secs(15);
/// The version of [`Shared`]'s encoding.
const SHARED_VERSION: u8 = 1;
/// Longest channel name (as `chat.subscribe` accepts).
const MAX_NAME_BYTES: usize = 1024;
/// Longest stream epoch kept.
const MAX_EPOCH_BYTES: usize = 128;

/// The name of `member`'s session with `protocol` in a shared broker: SHA-256, in hex, of
/// the member's length, the member and the protocol. The member is part of it, so another
/// member presenting the same protocol asks for another key and cannot take (and so
/// destroy) this one.
pub(super) fn shared_key(member: &str, protocol: &str) -> String {
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    digest.update(&(member.len() as u64).to_be_bytes());
    digest.update(member.as_bytes());
    digest.update(protocol.as_bytes());
    hex::encode(digest.finish().as_ref())
}

/// A session's resumable state as a shared broker keeps it (JSON).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Shared {
    v: u8,
    member: String,
    channels: Vec<SharedChannel>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedChannel {
    name: String,
    /// `chat.subscribe` events: bit 0 message, 1 joined, 2 updated, 3 left.
    events: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<serde_json::Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    position: Option<(u64, String)>,
}

/// The most bytes a shared session of at most `max_channels` channels may take.
fn max_shared_bytes(max_channels: usize) -> usize {
    1024 + max_channels * (2 * MAX_NAME_BYTES + super::MAX_STATE_BYTES + MAX_EPOCH_BYTES + 128)
}

impl Resume {
    /// The session as a shared broker keeps it.
    pub(super) fn encode(&self) -> Bytes {
        let channels = self
            .channels
            .iter()
            .map(|(name, e)| SharedChannel {
                name: name.clone(),
                events: u8::from(e.message)
                    | u8::from(e.joined) << 1
                    | u8::from(e.updated) << 2
                    | u8::from(e.left) << 3,
                state: self.states.get(name).and_then(Value::as_object).cloned(),
                position: self
                    .positions
                    .get(name)
                    .map(|p| (p.offset, p.epoch.clone())),
            })
            .collect();
        let shared = Shared {
            v: SHARED_VERSION,
            member: self.member.clone(),
            channels,
        };
        Bytes::from(serde_json::to_vec(&shared).unwrap_or_default())
    }

    /// A session a shared broker gave back, if it is `member`'s, well-formed and within
    /// the bounds a live session keeps (`max_channels` channels, names, states, epochs).
    pub(super) fn decode(bytes: &[u8], member: &str, max_channels: usize) -> Option<Self> {
        if bytes.len() > max_shared_bytes(max_channels) {
            return None;
        }
        let shared: Shared = serde_json::from_slice(bytes).ok()?;
        if shared.v != SHARED_VERSION
            || shared.member != member
            || shared.channels.len() > max_channels
        {
            return None;
        }
        let mut resume = Self {
            member: shared.member,
            channels: Vec::with_capacity(shared.channels.len()),
            states: HashMap::new(),
            positions: HashMap::new(),
            until: Instant::now() + RESUME_FOR,
        };
        for c in shared.channels {
            let bad_name = c.name.is_empty()
                || c.name.len() > MAX_NAME_BYTES
                || resume.channels.iter().any(|(n, _)| *n == c.name);
            if bad_name || c.events == 0 || c.events > 0b1111 {
                return None;
            }
            let events = Events {
                message: c.events & 1 != 0,
                joined: c.events & 2 != 0,
                updated: c.events & 4 != 0,
                left: c.events & 8 != 0,
            };
            if let Some(state) = c.state {
                let state = Value::Object(state);
                if state.to_string().len() > super::MAX_STATE_BYTES {
                    return None;
                }
                resume.states.insert(c.name.clone(), state);
            }
            if let Some((offset, epoch)) = c.position {
                if epoch.len() > MAX_EPOCH_BYTES {
                    return None;
                }
                resume
                    .positions
                    .insert(c.name.clone(), StreamPosition { offset, epoch });
            }
            resume.channels.push((c.name, events));
        }
        Some(resume)
    }
}

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

/// Closed sessions waiting to be resumed, by project; and, with a broker that keeps
/// sessions, the [`shared_key`]s of this node's live ones.
#[derive(Debug, Default)]
pub(crate) struct Resumes {
    projects: Mutex<HashMap<ProjectId, Table>>,
    live: Mutex<std::collections::HashSet<(ProjectId, String)>>,
}

impl Resumes {
    fn live(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<(ProjectId, String)>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes a session live on this node under `key`; `false` if one already is (a
    /// second connection presenting its `protocol` resumes nothing, as on one node).
    pub(super) fn go_live(&self, project: ProjectId, key: &str) -> bool {
        self.live().insert((project, key.to_owned()))
    }

    /// Whether a session is live on this node under `key`.
    pub(super) fn is_live(&self, project: ProjectId, key: &str) -> bool {
        self.live().contains(&(project, key.to_owned()))
    }

    /// The session under `key` ended on this node.
    pub(super) fn gone(&self, project: ProjectId, key: &str) {
        self.live().remove(&(project, key.to_owned()));
    }

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
    fn a_shared_session_comes_back_as_it_was_and_only_to_its_member() {
        let mut r = resume("alice", Instant::now());
        // A subscription always asks for some event.
        r.channels[0].1.joined = true;
        r.channels.push((
            "lobby".to_owned(),
            Events {
                message: true,
                left: true,
                ..Events::default()
            },
        ));
        r.states
            .insert("lobby".to_owned(), serde_json::json!({"typing": true}));
        r.positions.insert(
            "lobby".to_owned(),
            StreamPosition {
                offset: 7,
                epoch: "ep".to_owned(),
            },
        );
        let bytes = r.encode();
        let back = Resume::decode(&bytes, "alice", 10).unwrap();
        assert_eq!(back.channels, r.channels);
        assert_eq!(back.states, r.states);
        assert_eq!(back.positions, r.positions);
        assert!(
            Resume::decode(&bytes, "bob", 10).is_none(),
            "another member"
        );
        assert!(
            Resume::decode(&bytes, "alice", 1).is_none(),
            "over the bound"
        );
        assert!(Resume::decode(b"{\"v\":1}", "alice", 10).is_none());
        let unknown = br#"{"v":1,"member":"alice","channels":[],"x":1}"#;
        assert!(Resume::decode(unknown, "alice", 10).is_none());
        let no_events = br#"{"v":1,"member":"alice","channels":[{"name":"a","events":0}]}"#;
        assert!(Resume::decode(no_events, "alice", 10).is_none());
        let huge = vec![b' '; max_shared_bytes(10) + 1];
        assert!(Resume::decode(&huge, "alice", 10).is_none());
    }

    #[test]
    fn the_shared_key_hides_the_protocol_and_depends_on_the_member() {
        let k = shared_key("alice", "signalwire_abc_def");
        assert_eq!(k.len(), 64);
        assert!(!k.contains("signalwire"));
        assert_ne!(k, shared_key("bob", "signalwire_abc_def"));
        assert_ne!(k, shared_key("alice", "signalwire_abc_deg"));
        // The member's length is part of it: no member/protocol split spells another.
        assert_ne!(shared_key("ab", "c"), shared_key("a", "bc"));
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
