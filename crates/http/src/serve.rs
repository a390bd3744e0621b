//! The accept loop: one HTTP/1.1 connection per socket, bounded where `axum::serve` is not.
//!
//! `axum::serve` sets no timer, so hyper's header read timeout never runs: a client that
//! sends half a request line keeps its socket (and its task) forever. Here every connection
//! has a header deadline (`http.header_read_timeout`, which also closes idle keep-alive
//! connections), a cap on the size of the request head ([`MAX_HEAD_BYTES`]: an oversize
//! head gets 431), the peer address for the failed-credential limiter, and WebSocket
//! upgrades. Shutdown stops accepting, lets requests in flight finish (bounded by
//! [`DRAIN`]), and leaves upgraded WebSockets to the gateway's own shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use crate::HttpSettings;

/// Largest request line plus headers. Tokens travel in `Authorization` (at most 16 KiB
/// accepted) and nothing else needs more; hyper's default would buffer ~400 KiB per socket.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &HttpSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_HEAD_BYTES * 2);
    // Every connection task holds a sender: when all are gone, every connection has ended.
    let (alive, mut all_ended) = tokio::sync::mpsc::channel::<()>(1);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, mostly: back off rather than spin, and say so.
                    tracing::warn!(error = %e, "accepting a connection failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            // The router never fails (errors are responses): its error type is Infallible.
            app.oneshot(req)
        });
        let conn = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let alive = alive.clone();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let _alive = alive;
            tokio::pin!(conn);
            let stop_requested = async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            };
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                () = stop_requested => {
                    // Finish the request in flight, then close; idle connections close now.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                // Timeouts, resets and malformed requests: the client's problem, not ours.
                tracing::debug!(error = %e, peer = %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(alive);
    if tokio::time::timeout(DRAIN, all_ended.recv()).await.is_err() {
        tracing::warn!("requests still in flight after {DRAIN:?}; stopping anyway");
    }
    Ok(())
}

/// The peer address of a request, when it came through [`serve`].
pub(crate) fn peer(parts: &axum::http::request::Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}
