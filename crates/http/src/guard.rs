//! Request-body deadline and the headers every response carries.
//!
//! - A request body must arrive within `http.body_read_timeout` of its headers: a client
//!   that sends half a body and stalls gets 408 and loses the connection, instead of holding
//!   a socket and a task forever (header read time is bounded by the server loop, see
//!   [`crate::serve`]).
//! - A response sent before the body was read (a 401 from an extractor, a 413) carries
//!   `Connection: close`: the unread rest of the body is still on the socket, so the
//!   connection cannot be reused, and a pooled client must be told rather than find out from
//!   a reset.
//! - Every response carries `X-Content-Type-Options: nosniff`, and `Cache-Control: no-store`
//!   unless the handler chose a policy (the public JWKS does): responses carry tokens and
//!   must never sit in a shared cache or a browser's disk cache.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Body as _, Frame, SizeHint};
use tokio::time::Sleep;

use crate::ApiError;

/// What the middleware learns about a request body while the handler reads it.
#[derive(Debug, Default)]
struct BodyWatch {
    /// The body was read to its end.
    finished: AtomicBool,
    /// The deadline passed before it was.
    timed_out: AtomicBool,
}

/// A request body with a deadline for all of it (not per chunk: a client trickling one byte
/// a second would otherwise never time out).
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    watch: Arc<BodyWatch>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.watch.timed_out.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(axum::Error::new("request body read timed out"))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.watch.finished.store(true, Ordering::Relaxed);
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => {
                if this.inner.is_end_stream() {
                    this.watch.finished.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Some(frame))
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.watch.timed_out.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(axum::Error::new("request body read timed out"))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Applies the body deadline and the response headers described in the module docs.
pub async fn guard(State(body_timeout): State<Duration>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let mut response = if body.is_end_stream() {
        // No body (GETs, WebSocket upgrades): nothing to time or to leave unread.
        next.run(Request::from_parts(parts, body)).await
    } else {
        let watch = Arc::new(BodyWatch::default());
        let body = Body::new(DeadlineBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(body_timeout)),
            watch: watch.clone(),
        });
        let response = next.run(Request::from_parts(parts, body)).await;
        if watch.timed_out.load(Ordering::Relaxed) {
            tracing::info!(
                timeout_secs = body_timeout.as_secs_f64(),
                "request body not received in time (http.body_read_timeout); closing"
            );
            close(ApiError::RequestTimeout.into_response())
        } else if watch.finished.load(Ordering::Relaxed) {
            response
        } else {
            close(response)
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn close(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
