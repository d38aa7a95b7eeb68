//! The HTTP listener (`http.listen`, CONTRACT §4): Alertmanager webhooks,
//! OTLP/HTTP, deploy events, the admin API, liveness, readiness and
//! Prometheus metrics. Handlers authenticate, decode and hand over to the
//! agent; nothing here decides.
//!
//! Auth: `Authorization: Bearer …` compared in constant time with the
//! tokens read at start from the env vars named in `[http]`. Webhook routes
//! are open when no webhook token is set (a loopback sidecar); admin routes
//! answer 403 when no admin token is set. Bodies over `http.max_body`
//! (after gzip decoding too) answer 413; malformed ones 400 with the reason,
//! and nothing of them is applied.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tracing::info;

use crate::app::Agent;
use crate::fleet::HttpInputError;
use crate::ingest::Source;
use crate::model::{AdminAction, AdminCall, Output, Refusal};

/// The routes.
pub fn router(agent: Arc<Agent>) -> Router {
    let limit = agent.config.http_max_body;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/alerts/alertmanager", post(alertmanager))
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(otlp_metrics))
        .route("/v1/deploy-events", post(deploy_events))
        .route("/v1/deploys", get(deploys))
        .route("/v1/deploys/{id}", get(deploy))
        .route("/v1/deploys/{id}/rollback", post(rollback))
        .route("/v1/automation/pause", post(pause))
        .route("/v1/automation/resume", post(resume))
        .route("/v1/breaker/reset", post(breaker_reset))
        .route("/v1/audit", get(audit))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(agent)
}

type Reply = Result<Response, HttpError>;

/// A refusal: a status and the reason, answered as `{"error": reason}`.
#[derive(Debug)]
struct HttpError {
    status: StatusCode,
    reason: String,
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.reason}))).into_response()
    }
}

fn error(status: StatusCode, reason: impl Into<String>) -> HttpError {
    HttpError {
        status,
        reason: reason.into(),
    }
}

/// Constant-time comparison: the time taken does not depend on where the
/// first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn authorize(headers: &HeaderMap, token: &Option<String>, admin: bool) -> Result<(), HttpError> {
    match token {
        None if admin => Err(error(
            StatusCode::FORBIDDEN,
            "admin API disabled: no admin token configured",
        )),
        None => Ok(()),
        Some(t) => match bearer(headers) {
            Some(given) if same(given.as_bytes(), t.as_bytes()) => Ok(()),
            _ => Err(error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token",
            )),
        },
    }
}

/// The request body, gunzipped when the client says so, within the limit.
fn body(headers: &HeaderMap, bytes: Bytes, limit: usize) -> Result<Vec<u8>, HttpError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(bytes.to_vec()),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}")))?;
            if out.len() > limit {
                return Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "decoded body exceeds http.max_body",
                ));
            }
            Ok(out)
        }
        other => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content-encoding {other:?}"),
        )),
    }
}

fn is_json(headers: &HeaderMap) -> Option<bool> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let ct = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/json" => Some(true),
        "application/x-protobuf" | "application/protobuf" => Some(false),
        _ => None,
    }
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

/// Runs a blocking apply off the reactor.
async fn apply(
    agent: Arc<Agent>,
    source: Source,
    bytes: Vec<u8>,
    json: bool,
) -> Result<usize, HttpError> {
    tokio::task::spawn_blocking(move || agent.apply_http(source, &bytes, json))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.0))
}

async fn alertmanager(State(agent): State<Arc<Agent>>, headers: HeaderMap, bytes: Bytes) -> Reply {
    authorize(&headers, &agent.webhook_token, false)?;
    let bytes = body(&headers, bytes, agent.config.http_max_body)?;
    let n = apply(agent, Source::Alertmanager, bytes, true).await?;
    Ok(Json(json!({"accepted": n})).into_response())
}

async fn deploy_events(State(agent): State<Arc<Agent>>, headers: HeaderMap, bytes: Bytes) -> Reply {
    authorize(&headers, &agent.webhook_token, false)?;
    let bytes = body(&headers, bytes, agent.config.http_max_body)?;
    let n = agent
        .deploy_event_over_http(bytes)
        .await
        .map_err(|e| match e {
            HttpInputError::Malformed(e) => error(StatusCode::BAD_REQUEST, e.0),
            HttpInputError::Unavailable(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        })?;
    Ok(Json(json!({"accepted": n})).into_response())
}

/// `google.rpc.Status`, the body of OTLP/HTTP error responses.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// An OTLP/HTTP error: the status code, and a `google.rpc.Status` body in
/// the request's encoding (OTLP/HTTP specification).
fn otlp_error(e: HttpError, json: bool) -> Response {
    // google.rpc.Code: INVALID_ARGUMENT for client errors, INTERNAL otherwise.
    let code = if e.status.is_client_error() { 3 } else { 13 };
    if json {
        (e.status, Json(json!({"code": code, "message": e.reason}))).into_response()
    } else {
        let body = prost::Message::encode_to_vec(&RpcStatus {
            code,
            message: e.reason,
        });
        (
            e.status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            body,
        )
            .into_response()
    }
}

async fn otlp(agent: Arc<Agent>, headers: HeaderMap, bytes: Bytes, source: Source) -> Reply {
    authorize(&headers, &agent.webhook_token, false)?;
    let json = is_json(&headers).ok_or_else(|| {
        error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type must be application/x-protobuf or application/json",
        )
    })?;
    let applied = match body(&headers, bytes, agent.config.http_max_body) {
        Ok(bytes) => apply(agent, source, bytes, json).await,
        Err(e) => Err(e),
    };
    if let Err(e) = applied {
        return Ok(otlp_error(e, json));
    }
    // An empty Export*ServiceResponse: full success.
    Ok(if json {
        ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            Vec::<u8>::new(),
        )
            .into_response()
    })
}

async fn traces(State(agent): State<Arc<Agent>>, headers: HeaderMap, bytes: Bytes) -> Reply {
    otlp(agent, headers, bytes, Source::Spans).await
}

async fn otlp_metrics(State(agent): State<Arc<Agent>>, headers: HeaderMap, bytes: Bytes) -> Reply {
    otlp(agent, headers, bytes, Source::Metrics).await
}

async fn deploys(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> Reply {
    authorize(&headers, &agent.admin_token, true)?;
    let views = agent
        .engine
        .read()
        .map(|e| e.deploy_views())
        .unwrap_or_default();
    Ok(Json(views).into_response())
}

async fn deploy(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    authorize(&headers, &agent.admin_token, true)?;
    match agent.engine.read().ok().and_then(|e| e.deploy_view(&id)) {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(error(
            StatusCode::NOT_FOUND,
            format!("no active deploy {id}"),
        )),
    }
}

#[derive(serde::Deserialize, Default)]
struct AdminBody {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    actor: String,
}

fn admin_body(bytes: &Bytes, need_reason: bool) -> Result<AdminBody, HttpError> {
    let b: AdminBody = if bytes.is_empty() {
        AdminBody::default()
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))?
    };
    if need_reason && (b.reason.trim().is_empty() || b.actor.trim().is_empty()) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "body must give \"reason\" and \"actor\"",
        ));
    }
    Ok(b)
}

fn actor(b: &AdminBody) -> String {
    if b.actor.trim().is_empty() {
        "admin".into()
    } else {
        b.actor.clone()
    }
}

async fn rollback(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Reply {
    authorize(&headers, &agent.admin_token, true)?;
    let b = admin_body(&bytes, true)?;
    let command_id = crate::model::command_id(&id, crate::model::Action::Rollback);
    let call = AdminCall::Rollback {
        deploy_id: id,
        reason: b.reason,
        actor: b.actor,
    };
    let outputs = tokio::task::spawn_blocking(move || agent.admin(call))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .ok_or_else(|| error(StatusCode::INTERNAL_SERVER_ERROR, "engine unavailable"))?;
    let refused = outputs.into_iter().find_map(|o| match o {
        Output::Refused(r) => Some(r),
        _ => None,
    });
    match refused {
        None => Ok(Json(json!({"command_id": command_id})).into_response()),
        Some(r @ Refusal::NotFound(_)) => Err(error(StatusCode::NOT_FOUND, r.to_string())),
        Some(r @ Refusal::AlreadyEmitted(_)) => Err(error(StatusCode::CONFLICT, r.to_string())),
    }
}

async fn guard_call(
    agent: Arc<Agent>,
    headers: HeaderMap,
    bytes: Bytes,
    call: &'static str,
) -> Reply {
    authorize(&headers, &agent.admin_token, true)?;
    let who = actor(&admin_body(&bytes, false)?);
    info!(call, actor = %who, "admin call");
    let action = match call {
        "pause" => AdminAction::Pause,
        "resume" => AdminAction::Resume,
        _ => AdminAction::BreakerReset,
    };
    let state = agent
        .admin_call(action, who)
        .await
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e))?;
    Ok(Json(state).into_response())
}

async fn pause(State(agent): State<Arc<Agent>>, headers: HeaderMap, bytes: Bytes) -> Reply {
    guard_call(agent, headers, bytes, "pause").await
}

async fn resume(State(agent): State<Arc<Agent>>, headers: HeaderMap, bytes: Bytes) -> Reply {
    guard_call(agent, headers, bytes, "resume").await
}

async fn breaker_reset(State(agent): State<Arc<Agent>>, headers: HeaderMap, bytes: Bytes) -> Reply {
    guard_call(agent, headers, bytes, "breaker_reset").await
}

#[derive(serde::Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn audit(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Reply {
    authorize(&headers, &agent.admin_token, true)?;
    let limit = q.limit.unwrap_or(100).min(crate::app::RECENT_AUDIT);
    let records: Vec<_> = agent
        .recent_audit
        .lock()
        .map(|r| r.iter().rev().take(limit).cloned().collect())
        .unwrap_or_default();
    Ok(Json(records).into_response())
}

/// Binds `addr`; logs the bound address (useful with port 0).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    info!(addr = %listener.local_addr()?, "http listening");
    Ok(listener)
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    agent: Arc<Agent>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(agent))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }
}
