//! Which connections are open, by user: how the server API reaches them (disconnect,
//! server-side subscribe and unsubscribe, refresh).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;
use tollgate_broker::StreamPosition;
use tollgate_service::gateway::ServerSub;
use tollgate_token::ProjectId;

/// The server API's `subscribe` for one connection (boxed in [`Control`]: every
/// connection's control channel preallocates slots, so the enum is kept small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeCommand {
    pub sub: ServerSub,
    pub expire_at: Option<i64>,
    pub recover_since: Option<StreamPosition>,
}

/// A command from the server API to one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Close with this code and reason.
    Disconnect { code: u16, reason: String },
    /// Subscribe server-side to a channel (with channel info, data for the push and
    /// overrides), until `expire_at` if given, recovering from `recover_since` if given.
    Subscribe(Box<SubscribeCommand>),
    /// Unsubscribe from a channel (all channels when empty).
    Unsubscribe { channel: String },
    /// Expire the connection now, or move its expiry (`None`: never expires).
    Refresh {
        expired: bool,
        expire_at: Option<i64>,
    },
    /// The broker may have lost deliveries of this channel to this node (its connection
    /// to a shared broker broke, or offsets jumped): the client should resubscribe and
    /// recover from history (Centrifugo's "insufficient state").
    Resubscribe { channel: String },
}

/// Control messages a connection may have waiting before more are dropped.
const CONTROL_QUEUE: usize = 64;

/// One project's open connections: by user, then client id.
type Users = HashMap<String, HashMap<String, mpsc::Sender<Control>>>;

/// Open connections by project, user and client id: connections are found, limited and
/// counted per project, so two projects' users with the same id never meet, and a
/// project's count never walks another's connections.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    projects: Mutex<HashMap<ProjectId, Users>>,
    /// The same connections by their queue's id: the broker names the queues that may
    /// have missed deliveries.
    queues: Mutex<HashMap<u64, mpsc::Sender<Control>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProjectId, Users>> {
        self.projects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a connection; returns where its control messages arrive, or `None` when
    /// the user already has `limit` connections in the project (0: no limit; anonymous
    /// users are not limited, since they share the empty user id).
    pub(crate) fn add(
        &self,
        project: ProjectId,
        user: &str,
        client: &str,
        limit: usize,
    ) -> Option<mpsc::Receiver<Control>> {
        let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
        let mut projects = self.lock();
        let clients = projects
            .entry(project)
            .or_default()
            .entry(user.to_owned())
            .or_default();
        if limit > 0 && !user.is_empty() && clients.len() >= limit {
            return None;
        }
        clients.insert(client.to_owned(), tx);
        Some(rx)
    }

    /// Forgets a connection.
    pub(crate) fn remove(&self, project: ProjectId, user: &str, client: &str) {
        let mut projects = self.lock();
        let Some(users) = projects.get_mut(&project) else {
            return;
        };
        if let Some(clients) = users.get_mut(user) {
            clients.remove(client);
            if clients.is_empty() {
                users.remove(user);
            }
        }
        if users.is_empty() {
            projects.remove(&project);
        }
    }

    /// Sends `control` to `project`'s connections of `user`.
    pub(crate) fn send(
        &self,
        project: ProjectId,
        user: &str,
        client: Option<&str>,
        except: &[&str],
        control: &Control,
    ) -> usize {
        let projects = self.lock();
        let Some(clients) = projects.get(&project).and_then(|users| users.get(user)) else {
            return 0;
        };
        clients
            .iter()
            .filter(|(id, _)| client.is_none_or(|c| c == id.as_str()))
            .filter(|(id, _)| !except.contains(&id.as_str()))
            .filter(|(_, tx)| tx.try_send(control.clone()).is_ok())
            .count()
    }

    /// Indexes a registered connection by its queue's id.
    pub(crate) fn add_queue(&self, project: ProjectId, user: &str, client: &str, queue: u64) {
        let tx = self
            .lock()
            .get(&project)
            .and_then(|users| users.get(user))
            .and_then(|clients| clients.get(client))
            .cloned();
        if let Some(tx) = tx {
            self.lock_queues().insert(queue, tx);
        }
    }

    /// Forgets a connection's queue.
    pub(crate) fn remove_queue(&self, queue: u64) {
        self.lock_queues().remove(&queue);
    }

    /// Sends `control` to the connections whose queues are `queues`. Returns how many
    /// it reached.
    pub(crate) fn send_to_queues(&self, queues: &[u64], control: &Control) -> usize {
        let index = self.lock_queues();
        queues
            .iter()
            .filter_map(|q| index.get(q))
            .filter(|tx| tx.try_send(control.clone()).is_ok())
            .count()
    }

    fn lock_queues(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<Control>>> {
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connected clients and distinct users on this node, all projects together.
    pub(crate) fn stats(&self) -> (usize, usize) {
        self.lock().values().fold((0, 0), |(clients, users), u| {
            (
                clients + u.values().map(HashMap::len).sum::<usize>(),
                users + u.len(),
            )
        })
    }

    /// Connected clients and distinct users of each project with connections on this
    /// node.
    pub(crate) fn stats_by_project(&self) -> Vec<(ProjectId, (usize, usize))> {
        self.lock()
            .iter()
            .map(|(p, users)| (*p, (users.values().map(HashMap::len).sum(), users.len())))
            .collect()
    }

    /// Connected clients and distinct users of one project on this node.
    pub(crate) fn project_stats(&self, project: ProjectId) -> (usize, usize) {
        self.lock().get(&project).map_or((0, 0), |users| {
            (users.values().map(HashMap::len).sum(), users.len())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disconnect() -> Control {
        Control::Disconnect {
            code: 3503,
            reason: "test".into(),
        }
    }

    #[test]
    fn the_same_user_id_in_two_projects_is_two_users() {
        let r = Registry::default();
        let (p1, p2) = (ProjectId::new_random(), ProjectId::new_random());
        let mut rx1 = r.add(p1, "alice", "c1", 1).expect("first connection");
        let mut rx2 = r
            .add(p2, "alice", "c2", 1)
            .expect("another project's alice has her own limit");
        assert!(
            r.add(p1, "alice", "c3", 1).is_none(),
            "p1's alice is at her limit"
        );

        assert_eq!(r.send(p1, "alice", None, &[], &disconnect()), 1);
        assert!(rx1.try_recv().is_ok());
        assert!(rx2.try_recv().is_err(), "p2's alice got nothing");
        assert_eq!(r.send(p2, "bob", None, &[], &disconnect()), 0);

        assert_eq!(r.project_stats(p1), (1, 1));
        assert_eq!(r.stats(), (2, 2));
        r.remove(p2, "alice", "c1");
        assert_eq!(
            r.project_stats(p2),
            (1, 1),
            "removing needs the right project"
        );
        r.remove(p2, "alice", "c2");
        assert_eq!(r.project_stats(p2), (0, 0));
        assert!(rx2.try_recv().is_err());
    }

    #[test]
    fn connections_are_reached_by_their_queue() {
        let r = Registry::default();
        let p = ProjectId::new_random();
        let mut rx = r.add(p, "u", "c", 0).expect("registered");
        r.add_queue(p, "u", "c", 7);
        r.add_queue(p, "u", "nobody", 8);
        let resubscribe = Control::Resubscribe {
            channel: "room".into(),
        };
        assert_eq!(r.send_to_queues(&[7, 8, 9], &resubscribe), 1);
        assert!(matches!(rx.try_recv(), Ok(Control::Resubscribe { channel }) if channel == "room"));
        r.remove_queue(7);
        assert_eq!(r.send_to_queues(&[7], &resubscribe), 0);
    }

    #[test]
    fn anonymous_users_are_not_limited_and_client_filters_apply() {
        let r = Registry::default();
        let p = ProjectId::new_random();
        let _a = r.add(p, "", "a", 1).expect("anonymous");
        let _b = r.add(p, "", "b", 1).expect("anonymous again");
        let _c = r.add(p, "u", "c", 0).expect("no limit");
        let _d = r.add(p, "u", "d", 0).expect("no limit");
        assert_eq!(r.send(p, "u", Some("c"), &[], &disconnect()), 1);
        assert_eq!(r.send(p, "u", None, &["c"], &disconnect()), 1);
    }
}
