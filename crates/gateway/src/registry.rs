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
}

/// Control messages a connection may have waiting before more are dropped.
const CONTROL_QUEUE: usize = 64;

/// A connection's project (for the per-user limit) and where its commands go.
type Sender = (Option<ProjectId>, mpsc::Sender<Control>);

/// Open connections by user and client id.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    users: Mutex<HashMap<String, HashMap<String, Sender>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Sender>>> {
        self.users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a connection; returns where its control messages arrive, or `None` when
    /// the user already has `limit` connections in the same project (0: no limit;
    /// anonymous users are not limited, since they share the empty user id). Counting per
    /// project keeps one project from using up another's member ids' slots.
    pub(crate) fn add(
        &self,
        user: &str,
        project: Option<ProjectId>,
        client: &str,
        limit: usize,
    ) -> Option<mpsc::Receiver<Control>> {
        let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
        let mut users = self.lock();
        let clients = users.entry(user.to_owned()).or_default();
        let same = clients.values().filter(|(p, _)| *p == project).count();
        if limit > 0 && !user.is_empty() && same >= limit {
            return None;
        }
        clients.insert(client.to_owned(), (project, tx));
        Some(rx)
    }

    /// Forgets a connection.
    pub(crate) fn remove(&self, user: &str, client: &str) {
        let mut users = self.lock();
        if let Some(clients) = users.get_mut(user) {
            clients.remove(client);
            if clients.is_empty() {
                users.remove(user);
            }
        }
    }

    pub(crate) fn send(
        &self,
        user: &str,
        client: Option<&str>,
        except: &[&str],
        control: &Control,
    ) -> usize {
        let users = self.lock();
        let Some(clients) = users.get(user) else {
            return 0;
        };
        clients
            .iter()
            .filter(|(id, _)| client.is_none_or(|c| c == id.as_str()))
            .filter(|(id, _)| !except.contains(&id.as_str()))
            .filter(|(_, (_, tx))| tx.try_send(control.clone()).is_ok())
            .count()
    }

    pub(crate) fn stats(&self) -> (usize, usize) {
        let users = self.lock();
        (users.values().map(HashMap::len).sum(), users.len())
    }
}
