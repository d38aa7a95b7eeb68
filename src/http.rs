//! The HTTP listener (`http.listen`): liveness, readiness and Prometheus
//! metrics. Handlers only read shared state; nothing here decides.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tracing::info;

use crate::app::Agent;

/// The routes.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(agent)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(agent): State<Arc<Agent>>) -> impl IntoResponse {
    if agent.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(agent): State<Arc<Agent>>) -> impl IntoResponse {
    agent.refresh_gauges();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        agent.metrics.render(),
    )
}

/// Binds `addr` and serves until `shutdown` resolves. Returns the bound
/// address (useful with port 0) once listening.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    info!(addr = %listener.local_addr()?, "http listening");
    Ok(listener)
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    agent: Arc<Agent>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(agent))
        .with_graceful_shutdown(shutdown)
        .await
}
