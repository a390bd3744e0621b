//! Which connections are open, by user: how the server API reaches them (disconnect,
//! server-side subscribe and unsubscribe, refresh).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;
use tollgate_broker::StreamPosition;
use tollgate_service::gateway::ServerSub;

/// A command from the server API to one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Close with this code and reason.
    Disconnect { code: u16, reason: String },
    /// Subscribe server-side to a channel (with channel info, data for the push and
    /// overrides), until `expire_at` if given, recovering from `recover_since` if given.
    Subscribe {
        sub: ServerSub,
        expire_at: Option<i64>,
        recover_since: Option<StreamPosition>,
    },
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

type Sender = mpsc::Sender<Control>;

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
    /// the user already has `limit` connections (0: no limit; anonymous users are not
    /// limited, since they share the empty user id).
    pub(crate) fn add(
        &self,
        user: &str,
        client: &str,
        limit: usize,
    ) -> Option<mpsc::Receiver<Control>> {
        let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
        let mut users = self.lock();
        let clients = users.entry(user.to_owned()).or_default();
        if limit > 0 && !user.is_empty() && clients.len() >= limit {
            return None;
        }
        clients.insert(client.to_owned(), tx);
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
            .filter(|(_, tx)| tx.try_send(control.clone()).is_ok())
            .count()
    }

    pub(crate) fn stats(&self) -> (usize, usize) {
        let users = self.lock();
        (users.values().map(HashMap::len).sum(), users.len())
    }
}
