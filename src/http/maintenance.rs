//! `POST /v1/maintenance` and `DELETE /v1/maintenance/{id}`
//! (`docs/http.md#maintenance-windows`): maintenance windows opened and
//! closed now, admin calls like pause and resume — recorded on the admin
//! topic, applied by every instance, audited.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use tracing::info;

use super::{authorize, error, input_error, require_json, Api, HttpError, Reply};
use crate::model::{AdminAction, MaintenanceCall};
use crate::time::{Duration, Timestamp};

/// The longest window opened by hand: a longer one is planned, and
/// belongs in `[[guards.maintenance]]`.
pub const MAX_OPENED_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenBody {
    #[serde(default)]
    services: Vec<String>,
    until: Option<Timestamp>,
    duration: Option<Duration>,
    reason: String,
    #[serde(default)]
    actor: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    #[serde(default)]
    actor: String,
}

fn bad(reason: impl Into<String>) -> HttpError {
    error(StatusCode::BAD_REQUEST, reason)
}

fn actor(given: &str) -> String {
    match given.trim() {
        "" => "admin".into(),
        a => a.to_string(),
    }
}

/// When a window asked for at `now` ends: `until`, or `duration` from now.
fn window_end(b: &OpenBody, now: Timestamp) -> Result<Timestamp, HttpError> {
    let until = match (b.until, b.duration) {
        (Some(u), None) => u,
        (None, Some(d)) => now.saturating_add(d),
        _ => return Err(bad("body must give one of \"until\" and \"duration\"")),
    };
    if until <= now {
        return Err(bad("the window must end in the future"));
    }
    if until.since(now) > MAX_OPENED_FOR {
        return Err(bad(
            "a window opened by hand ends within 7 days; plan longer ones in [[guards.maintenance]]",
        ));
    }
    Ok(until)
}

/// `POST /v1/maintenance`: opens a window now.
pub(super) async fn open<A: Api>(
    State(api): State<Arc<A>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Reply {
    authorize(&headers, api.admin_token(), true)?;
    require_json(&headers)?;
    let b: OpenBody =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    if b.reason.trim().is_empty() {
        return Err(bad("body must give \"reason\""));
    }
    if b.services.iter().any(|s| s.trim().is_empty()) {
        return Err(bad("a service name is empty"));
    }
    let until = window_end(&b, Timestamp::now_wall())?;
    let who = actor(&b.actor);
    info!(call = "maintenance_open", actor = %who, services = ?b.services, %until, "admin call");
    let call = MaintenanceCall {
        // Named by the instance that takes the call.
        id: String::new(),
        services: b.services,
        until: Some(until),
        reason: b.reason,
    };
    let state = api
        .admin(AdminAction::MaintenanceOpen, who, Some(call))
        .await
        .map_err(input_error)?;
    Ok(Json(state).into_response())
}

/// `DELETE /v1/maintenance/{id}`: closes a window opened through the API.
pub(super) async fn close<A: Api>(
    State(api): State<Arc<A>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Reply {
    authorize(&headers, api.admin_token(), true)?;
    let b: CloseBody = if bytes.is_empty() {
        CloseBody::default()
    } else {
        require_json(&headers)?;
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON body: {e}")))?
    };
    let who = actor(&b.actor);
    info!(call = "maintenance_close", actor = %who, id = %id, "admin call");
    let call = MaintenanceCall {
        id,
        services: Vec::new(),
        until: None,
        reason: String::new(),
    };
    let state = api
        .admin(AdminAction::MaintenanceClose, who, Some(call))
        .await
        .map_err(input_error)?;
    Ok(Json(state).into_response())
}
