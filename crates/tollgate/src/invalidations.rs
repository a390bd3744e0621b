//! Cache invalidations between nodes: the service's [`Invalidations`] over the broker's
//! control channel (topic [`ControlTopic::Cache`]), and the relay that applies other
//! nodes' to this node's service. Lives in the binary because it is the one crate that
//! knows both the service and the broker; the two know nothing of each other.
//!
//! Same delivery as the gateway's commands on that channel: at most once, never to the
//! sender. When messages may have been missed — the control channel reconnected (the
//! broker says so with an empty message) or this receiver fell behind — every cache entry
//! is forgotten. A message lost without either sign (Redis dropping it) leaves the
//! receiver on its caches' time bound (5 s, 30 s for keys), which is why those bounds stay.

use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};
use tollgate_broker::{Broker, ControlTopic};
use tollgate_gateway::ControlOutbox;
use tollgate_service::{Invalidation, InvalidationError, Invalidations, Tollgate};

/// Publishes invalidations on the broker's control channel, in order, through one
/// bounded queue ([`ControlOutbox`]: what does not fit while the broker is slow is dropped
/// with a warning). The queue holds the broker weakly: the service outlives the server
/// that owns the broker (tests, the CLI), and must not keep its Redis connections alive.
#[derive(Debug)]
pub(crate) struct BrokerInvalidations(pub(crate) ControlOutbox);

impl Invalidations for BrokerInvalidations {
    fn publish(&self, invalidation: Invalidation) {
        // Not waited for: the change is committed and this node already forgot; the
        // others fall back on their caches' time bound if this is lost.
        self.0
            .send(ControlTopic::Cache.frame(&invalidation.encode()));
    }
}

/// Applies the invalidations other nodes send to `tollgate`'s caches, until the broker
/// goes away. The gateway's commands share the channel and are skipped silently.
pub(crate) async fn relay(mut messages: broadcast::Receiver<bytes::Bytes>, tollgate: Tollgate) {
    loop {
        match messages.recv().await {
            Ok(payload) if payload.is_empty() => {
                // The control channel was down for a while: whatever was invalidated
                // meanwhile is unknown, so forget everything rather than wait out the TTLs.
                tollgate.forget_everything();
            }
            Ok(payload) => {
                let Some(body) = ControlTopic::Cache.body(&payload) else {
                    continue;
                };
                match Invalidation::decode(body) {
                    Ok(invalidation) => tollgate.forget(invalidation),
                    Err(InvalidationError::UnknownKind) => {
                        tracing::debug!("cache invalidation of an unknown kind skipped");
                    }
                    Err(InvalidationError::Malformed) => {
                        tracing::warn!("malformed cache invalidation from another node dropped");
                    }
                }
            }
            Err(RecvError::Lagged(n)) => {
                // Which projects is unknown: forget them all.
                tracing::warn!(missed = n, "cache invalidations from other nodes missed");
                tollgate.forget_everything();
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Connects `tollgate` to the other nodes sharing `broker`, if any: what it changes is
/// announced, what they change is forgotten here. Returns the relay task.
pub(crate) fn connect(
    tollgate: &Tollgate,
    broker: &Arc<dyn Broker>,
) -> Option<tokio::task::JoinHandle<()>> {
    let messages = broker.control()?;
    tollgate.set_invalidations(Arc::new(BrokerInvalidations(ControlOutbox::new(
        Arc::downgrade(broker),
    ))));
    Some(tokio::spawn(relay(messages, tollgate.clone())))
}
