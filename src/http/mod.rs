//! The HTTP listener (`http.listen`, `docs/http.md#routes`): Alertmanager webhooks,
//! OTLP/HTTP, deploy events, the admin API, liveness, readiness and
//! Prometheus metrics. Handlers authenticate, check the request's shape and
//! hand over to the runtime through the narrow [`Api`] it implements;
//! nothing here decides, and nothing here knows how the runtime is built.
//!
//! Auth: `Authorization: Bearer …` compared in constant time with the
//! tokens read at start from the env vars named in `[http]`. Webhook routes
//! are open only when the config says `http.allow_unauthenticated` (else
//! `run` does not start without the token); admin routes answer 403 when no
//! admin token is set. JSON routes take `application/json` only and OTLP
//! routes protobuf or JSON, anything else (no content type included) 415: a
//! web page can POST cross-origin without asking (a CORS "simple request")
//! only as `text/plain`, a form or with no content type at all, so no page
//! a person opens can reach a route that changes anything. Bodies over
//! `http.max_body` (after gzip decoding too) answer 413; malformed ones 400
//! with the reason, and nothing of them is applied.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;
use tracing::info;

use crate::config::Config;
use crate::engine::DeployView;
use crate::ingest::Source;
use crate::model::{AdminAction, AuditRecord, MaintenanceCall, Refusal};

pub mod gate;
pub mod maintenance;
pub mod status;

/// Why an input taken over HTTP was not taken.
#[derive(Debug)]
pub enum InputError {
    /// The input is malformed (400); nothing changed.
    Malformed(String),
    /// It could not be recorded (the broker is down, the runtime is
    /// stopping): 503; nothing changed.
    Unavailable(String),
    /// What it names does not exist (404); nothing changed.
    NotFound(String),
}

/// What the runtime offers the HTTP routes.
pub trait Api: Send + Sync + 'static {
    fn config(&self) -> &Config;
    /// Bearer tokens read at start from the env vars named in `[http]`.
    fn webhook_token(&self) -> Option<&str>;
    fn admin_token(&self) -> Option<&str>;
    /// `None` when ready, else why not.
    fn not_ready(&self) -> Option<String>;
    /// `None` when live, else which stage is stuck (`/healthz`).
    fn stuck(&self) -> Option<String> {
        None
    }
    /// The Prometheus text exposition.
    fn metrics(&self) -> String;
    /// An OTLP export (spans or metrics), a deploy event or an Alertmanager
    /// notification; returns how many items it held.
    fn input(
        &self,
        source: Source,
        body: Vec<u8>,
        json: bool,
    ) -> impl std::future::Future<Output = Result<usize, InputError>> + Send;
    /// Pause, resume, breaker reset, or a maintenance window (`window`)
    /// opened or closed, by `actor`: the state after it.
    fn admin(
        &self,
        action: AdminAction,
        actor: String,
        window: Option<MaintenanceCall>,
    ) -> impl std::future::Future<Output = Result<serde_json::Value, InputError>> + Send;
    /// A person's rollback: the command id, or why not.
    fn rollback(
        &self,
        deploy_id: String,
        reason: String,
        actor: String,
    ) -> impl std::future::Future<Output = Result<Result<String, Refusal>, InputError>> + Send;
    fn deploys(&self) -> Vec<DeployView>;
    fn deploy(&self, id: &str) -> Option<DeployView>;
    /// The latest audit records, newest first.
    fn audit(&self, limit: usize) -> Vec<AuditRecord>;
    /// What the instance is doing: `GET /v1/status` and the page.
    fn status(&self) -> status::Status;
    /// The gate's answer for `key`, counted for `route`; `None` when it
    /// has no active deploy.
    fn gate(
        &self,
        key: &gate::GateKey,
        route: gate::GateRoute,
    ) -> Option<crate::engine::gate::GateAnswer>;
}

/// How many audit records `GET /v1/audit` can show.
pub const RECENT_AUDIT: usize = 1000;

/// The routes.
pub fn router<A: Api>(api: Arc<A>) -> Router {
    let limit = api.config().http_max_body;
    Router::new()
        .route("/", get(status::page))
        .route("/v1/status", get(status::status::<A>))
        .route("/healthz", get(healthz::<A>))
        .route("/readyz", get(readyz::<A>))
        .route("/metrics", get(metrics::<A>))
        .route("/v1/alerts/alertmanager", post(alertmanager::<A>))
        .route("/v1/traces", post(traces::<A>))
        .route("/v1/metrics", post(otlp_metrics::<A>))
        .route("/v1/deploy-events", post(deploy_events::<A>))
        .route("/v1/deploys", get(deploys::<A>))
        .route("/v1/deploys/{id}", get(deploy::<A>))
        .route("/v1/deploys/{id}/rollback", post(rollback::<A>))
        .route("/v1/automation/pause", post(pause::<A>))
        .route("/v1/automation/resume", post(resume::<A>))
        .route("/v1/breaker/reset", post(breaker_reset::<A>))
        .route("/v1/maintenance", post(maintenance::open::<A>))
        .route("/v1/maintenance/{id}", delete(maintenance::close::<A>))
        .route("/v1/audit", get(audit::<A>))
        .route("/v1/gate", get(gate::argo::<A>))
        .route("/v1/gate/flagger", post(gate::flagger::<A>))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(api)
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

fn authorize(headers: &HeaderMap, token: Option<&str>, admin: bool) -> Result<(), HttpError> {
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

/// The body's media type, from `Content-Type`: JSON (`Some(true)`),
/// protobuf (`Some(false)`), or neither — also when the header is missing.
fn is_json(headers: &HeaderMap) -> Option<bool> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())?
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

/// A JSON route's body must say it is JSON (see the module docs).
fn require_json(headers: &HeaderMap) -> Result<(), HttpError> {
    match is_json(headers) {
        Some(true) => Ok(()),
        _ => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type must be application/json",
        )),
    }
}

async fn healthz<A: Api>(State(api): State<Arc<A>>) -> Response {
    match api.stuck() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("stuck: {why}\n")).into_response(),
    }
}

async fn readyz<A: Api>(State(api): State<Arc<A>>) -> Response {
    match api.not_ready() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics<A: Api>(State(api): State<Arc<A>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        api.metrics(),
    )
}

fn input_error(e: InputError) -> HttpError {
    match e {
        InputError::Malformed(why) => error(StatusCode::BAD_REQUEST, why),
        InputError::Unavailable(why) => error(StatusCode::SERVICE_UNAVAILABLE, why),
        InputError::NotFound(why) => error(StatusCode::NOT_FOUND, why),
    }
}

async fn alertmanager<A: Api>(
    State(api): State<Arc<A>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Reply {
    authorize(&headers, api.webhook_token(), false)?;
    require_json(&headers)?;
    let bytes = body(&headers, bytes, api.config().http_max_body)?;
    let n = api
        .input(Source::Alertmanager, bytes, true)
        .await
        .map_err(input_error)?;
    Ok(Json(json!({"accepted": n})).into_response())
}

async fn deploy_events<A: Api>(
    State(api): State<Arc<A>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Reply {
    authorize(&headers, api.webhook_token(), false)?;
    require_json(&headers)?;
    let bytes = body(&headers, bytes, api.config().http_max_body)?;
    let n = api
        .input(Source::DeployEvents, bytes, true)
        .await
        .map_err(input_error)?;
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
    // google.rpc.Code: INVALID_ARGUMENT for client errors, UNAVAILABLE for
    // a 503 (the client retries), INTERNAL otherwise.
    let code = if e.status.is_client_error() {
        3
    } else if e.status == StatusCode::SERVICE_UNAVAILABLE {
        14
    } else {
        13
    };
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

async fn otlp<A: Api>(api: Arc<A>, headers: HeaderMap, bytes: Bytes, source: Source) -> Reply {
    authorize(&headers, api.webhook_token(), false)?;
    let json = is_json(&headers).ok_or_else(|| {
        error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type must be application/x-protobuf or application/json",
        )
    })?;
    let applied = match body(&headers, bytes, api.config().http_max_body) {
        Ok(bytes) => api.input(source, bytes, json).await.map_err(input_error),
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

async fn traces<A: Api>(State(api): State<Arc<A>>, headers: HeaderMap, bytes: Bytes) -> Reply {
    otlp(api, headers, bytes, Source::Spans).await
}

async fn otlp_metrics<A: Api>(
    State(api): State<Arc<A>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Reply {
    otlp(api, headers, bytes, Source::Metrics).await
}

async fn deploys<A: Api>(State(api): State<Arc<A>>, headers: HeaderMap) -> Reply {
    authorize(&headers, api.admin_token(), true)?;
    Ok(Json(api.deploys()).into_response())
}

async fn deploy<A: Api>(
    State(api): State<Arc<A>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    authorize(&headers, api.admin_token(), true)?;
    match api.deploy(&id) {
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

fn admin_body(
    headers: &HeaderMap,
    bytes: &Bytes,
    need_reason: bool,
) -> Result<AdminBody, HttpError> {
    let b: AdminBody = if bytes.is_empty() {
        AdminBody::default()
    } else {
        require_json(headers)?;
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

async fn rollback<A: Api>(
    State(api): State<Arc<A>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Reply {
    authorize(&headers, api.admin_token(), true)?;
    let b = admin_body(&headers, &bytes, true)?;
    info!(call = "rollback", deploy_id = %id, actor = %b.actor, "admin call");
    match api
        .rollback(id, b.reason, b.actor)
        .await
        .map_err(input_error)?
    {
        Ok(command_id) => Ok(Json(json!({"command_id": command_id})).into_response()),
        Err(r @ Refusal::NotFound(_)) => Err(error(StatusCode::NOT_FOUND, r.to_string())),
        Err(r @ Refusal::AlreadyEmitted(_)) => Err(error(StatusCode::CONFLICT, r.to_string())),
    }
}

async fn guard_call<A: Api>(
    api: Arc<A>,
    headers: HeaderMap,
    bytes: Bytes,
    action: AdminAction,
) -> Reply {
    authorize(&headers, api.admin_token(), true)?;
    let who = actor(&admin_body(&headers, &bytes, false)?);
    info!(call = action.as_str(), actor = %who, "admin call");
    let state = api.admin(action, who, None).await.map_err(input_error)?;
    Ok(Json(state).into_response())
}

async fn pause<A: Api>(State(api): State<Arc<A>>, headers: HeaderMap, bytes: Bytes) -> Reply {
    guard_call(api, headers, bytes, AdminAction::Pause).await
}

async fn resume<A: Api>(State(api): State<Arc<A>>, headers: HeaderMap, bytes: Bytes) -> Reply {
    guard_call(api, headers, bytes, AdminAction::Resume).await
}

async fn breaker_reset<A: Api>(
    State(api): State<Arc<A>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Reply {
    guard_call(api, headers, bytes, AdminAction::BreakerReset).await
}

#[derive(serde::Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn audit<A: Api>(
    State(api): State<Arc<A>>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Reply {
    authorize(&headers, api.admin_token(), true)?;
    let limit = q.limit.unwrap_or(100).min(RECENT_AUDIT);
    Ok(Json(api.audit(limit)).into_response())
}

/// What the listener answers while `run` waits for something it needs
/// before its API can exist (the brokers): `/healthz` (the process is
/// alive), the status page, and 503 saying what it waits for to anything
/// else (`/readyz`, `/v1/status`, …).
pub fn waiting_router(waiting_for: Arc<dyn Fn() -> String + Send + Sync>) -> Router {
    let why = move || {
        let w = waiting_for.clone();
        async move { w() }
    };
    let ready = {
        let why = why.clone();
        move || {
            let why = why.clone();
            async move {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {}\n", why().await),
                )
            }
        }
    };
    let unavailable = move || {
        let why = why.clone();
        async move {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("starting: {}", why().await),
            )
            .into_response()
        }
    };
    Router::new()
        .route("/", get(status::page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .fallback(unavailable)
}

/// Serves `router` on a second handle of `listener`'s socket until `stop`
/// resolves; the socket stays open for the routes served after it.
pub fn serve_while(
    listener: &tokio::net::TcpListener,
    router: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<impl std::future::Future<Output = std::io::Result<()>> + Send + 'static> {
    use std::os::fd::AsFd;
    let second = std::net::TcpListener::from(listener.as_fd().try_clone_to_owned()?);
    second.set_nonblocking(true)?;
    Ok(async move {
        axum::serve(tokio::net::TcpListener::from_std(second)?, router)
            .with_graceful_shutdown(stop)
            .await
    })
}

/// Binds `addr`; logs the bound address (useful with port 0).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    info!(addr = %listener.local_addr()?, "http listening");
    Ok(listener)
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve<A: Api>(
    listener: tokio::net::TcpListener,
    api: Arc<A>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(api))
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
