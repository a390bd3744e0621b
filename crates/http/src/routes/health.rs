//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// 200 whenever the process is serving.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when the database answers, 503 otherwise.
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.tollgate.ready().await?;
    Ok(Json(json!({"status": "ok"})))
}

/// Prometheus text exposition.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let gw = &state.gateway;
    let (clients, users) = gw.stats();
    let (channels, _) = gw.channel_count().await;
    let mut text = state.metrics.render();
    text.push_str(
        &gw.metrics()
            .render(gw.open_connections(), clients, users, channels),
    );
    // Lost on the way to other nodes before reaching the broker (its queue was full):
    // the one sign an operator has that a server API command did not cross the cluster.
    text.push_str(&format!(
        "# HELP tollgate_cluster_control_dropped_total Server API commands for other nodes dropped because the queue to the broker was full.\n\
         # TYPE tollgate_cluster_control_dropped_total counter\n\
         tollgate_cluster_control_dropped_total {}\n",
        gw.control_dropped()
    ));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
