//! Gateway counters for `/metrics`: connections, commands by method, deliveries, and
//! disconnects by code. Atomics on the hot paths; label sets are fixed by construction
//! (the protocol's method names and disconnect codes), so no client can grow them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Client protocol methods counted, in the order of [`GatewayMetrics::command`]'s index.
pub(crate) const METHODS: [&str; 12] = [
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "ping",
    "send",
    "rpc",
    "refresh",
    "sub_refresh",
];

/// SignalWire JSON-RPC methods counted, in the order of
/// [`GatewayMetrics::signalwire_request`]'s index; anything else counts as `other`.
pub(crate) const SIGNALWIRE_METHODS: [&str; 12] = [
    "signalwire.connect",
    "signalwire.reauthenticate",
    "signalwire.ping",
    "signalwire.disconnect",
    "chat.subscribe",
    "chat.unsubscribe",
    "chat.publish",
    "chat.members.get",
    "chat.messages.get",
    "chat.member.set_state",
    "chat.member.get_state",
    "other",
];

/// The gateway's counters.
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    connections_total: AtomicU64,
    commands: [AtomicU64; METHODS.len()],
    signalwire: [AtomicU64; SIGNALWIRE_METHODS.len()],
    deliveries: AtomicU64,
    frames_out: AtomicU64,
    disconnects: Mutex<BTreeMap<u16, u64>>,
}

impl GatewayMetrics {
    pub(crate) fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn command(&self, method_index: usize) {
        if let Some(c) = self.commands.get(method_index) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn signalwire_request(&self, method: &str) {
        let i = SIGNALWIRE_METHODS
            .iter()
            .position(|m| *m == method)
            .unwrap_or(SIGNALWIRE_METHODS.len() - 1);
        self.signalwire[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn delivered(&self, pushes: usize) {
        self.deliveries
            .fetch_add(u64::try_from(pushes).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.frames_out.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn disconnected(&self, code: u16) {
        *self
            .disconnects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(code)
            .or_default() += 1;
    }

    /// The Prometheus text for these counters plus the current connection gauges.
    #[must_use]
    pub fn render(&self, open: usize, clients: usize, users: usize, channels: usize) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, v: usize| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            "tollgate_gateway_connections",
            "Open WebSocket connections.",
            open,
        );
        gauge(
            "tollgate_gateway_clients",
            "Connected (authenticated) clients.",
            clients,
        );
        gauge("tollgate_gateway_users", "Distinct users connected.", users);
        gauge(
            "tollgate_gateway_channels",
            "Channels with subscribers on this node.",
            channels,
        );
        let _ = writeln!(
            out,
            "# HELP tollgate_gateway_connections_total WebSocket connections accepted.\n\
             # TYPE tollgate_gateway_connections_total counter\n\
             tollgate_gateway_connections_total {}",
            self.connections_total.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tollgate_gateway_commands_total Client protocol commands by method.\n\
             # TYPE tollgate_gateway_commands_total counter"
        );
        for (method, c) in METHODS.iter().zip(&self.commands) {
            let _ = writeln!(
                out,
                "tollgate_gateway_commands_total{{method=\"{method}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tollgate_gateway_signalwire_requests_total SignalWire JSON-RPC requests by method.\n\
             # TYPE tollgate_gateway_signalwire_requests_total counter"
        );
        for (method, c) in SIGNALWIRE_METHODS.iter().zip(&self.signalwire) {
            let _ = writeln!(
                out,
                "tollgate_gateway_signalwire_requests_total{{method=\"{method}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tollgate_gateway_deliveries_total Pushes written to clients.\n\
             # TYPE tollgate_gateway_deliveries_total counter\n\
             tollgate_gateway_deliveries_total {}\n\
             # HELP tollgate_gateway_push_frames_total WebSocket frames of pushes written.\n\
             # TYPE tollgate_gateway_push_frames_total counter\n\
             tollgate_gateway_push_frames_total {}",
            self.deliveries.load(Ordering::Relaxed),
            self.frames_out.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tollgate_gateway_disconnects_total Connections closed by the server, by code.\n\
             # TYPE tollgate_gateway_disconnects_total counter"
        );
        for (code, n) in self
            .disconnects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "tollgate_gateway_disconnects_total{{code=\"{code}\"}} {n}"
            );
        }
        out
    }
}
