//! A connection's outbound queue: bounded by bytes, never blocking the publisher.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use tokio::sync::Notify;

use crate::Delivery;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Where a queue is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    Open,
    /// A delivery did not fit: the consumer is too slow and must be disconnected.
    Overflowed,
    /// The connection is gone.
    Closed,
}

#[derive(Debug)]
struct Inner {
    items: VecDeque<Delivery>,
    bytes: usize,
}

/// A connection's outbound queue.
#[derive(Debug)]
pub struct Queue {
    id: u64,
    max_bytes: usize,
    inner: Mutex<Inner>,
    state: AtomicU8,
    ready: Notify,
}

impl Queue {
    /// A queue that holds at most `max_bytes` of deliveries (by [`Delivery::weight`]).
    #[must_use]
    pub fn new(max_bytes: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            max_bytes,
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                bytes: 0,
            }),
            state: AtomicU8::new(0),
            ready: Notify::new(),
        })
    }

    /// A process-unique id.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> QueueState {
        match self.state.load(Ordering::Acquire) {
            0 => QueueState::Open,
            1 => QueueState::Overflowed,
            _ => QueueState::Closed,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a delivery without waiting. Returns `false` (and, if it did not fit, marks the
    /// queue overflowed) when it was not queued.
    pub fn push(&self, delivery: Delivery) -> bool {
        if self.state() != QueueState::Open {
            return false;
        }
        let weight = delivery.weight();
        {
            let mut inner = self.lock();
            if inner.bytes + weight > self.max_bytes {
                drop(inner);
                let _ = self
                    .state
                    .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire);
                self.ready.notify_one();
                return false;
            }
            inner.bytes += weight;
            inner.items.push_back(delivery);
        }
        self.ready.notify_one();
        true
    }

    /// Waits for deliveries and takes up to `max` of them (the writer batches them into
    /// one frame). `None` once the queue is overflowed or closed: the connection ends.
    pub async fn next_batch(&self, max: usize) -> Option<Vec<Delivery>> {
        loop {
            if self.state() != QueueState::Open {
                return None;
            }
            {
                let mut inner = self.lock();
                if !inner.items.is_empty() {
                    let n = max.max(1).min(inner.items.len());
                    let batch: Vec<Delivery> = inner.items.drain(..n).collect();
                    inner.bytes -= batch.iter().map(Delivery::weight).sum::<usize>();
                    return Some(batch);
                }
            }
            self.ready.notified().await;
        }
    }

    /// Closes the queue; later pushes are dropped and waiters wake up.
    pub fn close(&self) {
        self.state.store(2, Ordering::Release);
        self.ready.notify_one();
    }
}
