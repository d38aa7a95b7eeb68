//! The gate's routes (`docs/http.md#gate`): one read-only verdict per
//! deploy in the shapes progressive-delivery controllers consume.
//!
//! - `GET /v1/gate` for the Argo Rollouts `web` metric provider: always
//!   200 with `{"verdict", …}` once the deploy is known, so that the
//!   AnalysisTemplate's `successCondition` / `failureCondition` read it
//!   and `wait` is neither (an inconclusive measurement: measured again).
//!   A non-2xx answer is a measurement error to Argo Rollouts.
//! - `POST /v1/gate/flagger` for Flagger's webhooks: Flagger reads only
//!   the status (2xx go, anything else not), and its payload does not say
//!   which kind of hook is calling, so the Canary says it in the hook's
//!   `metadata.type`; the status follows from the verdict and that type
//!   ([`Hook::go`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::Value;

use super::{authorize, bearer, error, require_json, same, Api, HttpError, Reply};
use crate::engine::gate::GateAnswer;
use crate::model::gate::GateVerdict;
use crate::model::DEFAULT_ENVIRONMENT;

/// Which deploy a controller asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateKey {
    pub service: String,
    pub environment: String,
    /// The newest active deploy of the service when `None`.
    pub version: Option<String>,
}

/// Which route asked, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateRoute {
    Argo,
    Flagger,
}

impl GateRoute {
    pub fn label(self) -> &'static str {
        match self {
            GateRoute::Argo => "argo",
            GateRoute::Flagger => "flagger",
        }
    }
}

/// The 404 of a key with no active deploy.
fn unknown(key: &GateKey) -> HttpError {
    let version = key
        .version
        .as_deref()
        .map_or(String::new(), |v| format!(" to version {v}"));
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no active deploy of service {} in environment {}{version}",
            key.service, key.environment
        ),
    )
}

/// A query or metadata value: absent when missing or blank.
fn given(v: Option<&String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// `GET /v1/gate?service=S&environment=E&version=V`.
pub(super) async fn argo<A: Api>(
    State(api): State<Arc<A>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Reply {
    authorize(&headers, api.webhook_token(), false)?;
    let Some(service) = given(q.get("service")) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "query parameter \"service\" is required",
        ));
    };
    let key = GateKey {
        service,
        environment: given(q.get("environment")).unwrap_or_else(|| DEFAULT_ENVIRONMENT.into()),
        version: given(q.get("version")),
    };
    let answer = api
        .gate(&key, GateRoute::Argo)
        .ok_or_else(|| unknown(&key))?;
    Ok(Json(answer).into_response())
}

/// The kinds of Flagger webhook the gate answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    ConfirmRollout,
    PreRollout,
    ConfirmTrafficIncrease,
    Rollout,
    ConfirmPromotion,
    Rollback,
}

impl Hook {
    const NAMES: &'static str =
        "confirm-rollout, pre-rollout, confirm-traffic-increase, rollout, confirm-promotion or rollback";

    const ALL: [Hook; 6] = [
        Hook::ConfirmRollout,
        Hook::PreRollout,
        Hook::ConfirmTrafficIncrease,
        Hook::Rollout,
        Hook::ConfirmPromotion,
        Hook::Rollback,
    ];

    fn parse(s: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Hook::ConfirmRollout => "confirm-rollout",
            Hook::PreRollout => "pre-rollout",
            Hook::ConfirmTrafficIncrease => "confirm-traffic-increase",
            Hook::Rollout => "rollout",
            Hook::ConfirmPromotion => "confirm-promotion",
            Hook::Rollback => "rollback",
        }
    }

    /// Whether Flagger is told to go (2xx) on `verdict`. Promotion only
    /// on evidence of health; the rollback hook (2xx = roll back) only on
    /// `fail`; the others, called before the canary has served anything
    /// or at every step of the analysis (where non-2xx counts a failed
    /// check), only hold a canary back that was decided against.
    pub fn go(self, verdict: GateVerdict) -> bool {
        match self {
            Hook::ConfirmPromotion => verdict == GateVerdict::Pass,
            Hook::Rollback => verdict == GateVerdict::Fail,
            Hook::ConfirmRollout
            | Hook::PreRollout
            | Hook::ConfirmTrafficIncrease
            | Hook::Rollout => verdict != GateVerdict::Fail,
        }
    }
}

/// Flagger's webhook payload (its `CanaryWebhookPayload`).
#[derive(Debug, serde::Deserialize)]
struct Payload {
    name: String,
    namespace: String,
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

/// A payload's token (`metadata.token`; Flagger sends no headers of its
/// own), read before anything else of it is checked.
fn payload_token(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    v.get("metadata")?.get("token")?.as_str().map(String::from)
}

/// The bearer token or `metadata.token`, checked before anything else.
fn authorize_flagger(
    headers: &HeaderMap,
    bytes: &[u8],
    token: Option<&str>,
) -> Result<(), HttpError> {
    let Some(t) = token else {
        return Ok(());
    };
    let header_ok = bearer(headers).is_some_and(|g| same(g.as_bytes(), t.as_bytes()));
    let payload_ok = || payload_token(bytes).is_some_and(|g| same(g.as_bytes(), t.as_bytes()));
    if header_ok || payload_ok() {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (or metadata.token)",
        ))
    }
}

/// The answer to a Flagger webhook: the gate's answer with the hook and
/// whether it was told to go.
#[derive(serde::Serialize)]
struct FlaggerAnswer {
    hook: &'static str,
    go: bool,
    #[serde(flatten)]
    answer: GateAnswer,
}

/// `POST /v1/gate/flagger`.
pub(super) async fn flagger<A: Api>(
    State(api): State<Arc<A>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Reply {
    authorize_flagger(&headers, &bytes, api.webhook_token())?;
    require_json(&headers)?;
    let p: Payload = serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("invalid Flagger webhook payload: {e}"),
        )
    })?;
    let meta = p.metadata.unwrap_or_default();
    let hook_name = given(meta.get("type")).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            format!(
                "metadata.type must name the webhook's type: {}",
                Hook::NAMES
            ),
        )
    })?;
    let hook = Hook::parse(&hook_name).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            format!("metadata.type {hook_name:?} is not a gate: {}", Hook::NAMES),
        )
    })?;
    let (Some(name), Some(namespace)) = (given(Some(&p.name)), given(Some(&p.namespace))) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "payload must give the canary's \"name\" and \"namespace\"",
        ));
    };
    let key = GateKey {
        service: given(meta.get("service")).unwrap_or(name),
        environment: given(meta.get("environment")).unwrap_or(namespace),
        version: given(meta.get("version")),
    };
    let answer = api
        .gate(&key, GateRoute::Flagger)
        .ok_or_else(|| unknown(&key))?;
    let go = hook.go(answer.verdict);
    tracing::debug!(
        hook = hook.as_str(),
        phase = p.phase.as_deref().unwrap_or(""),
        verdict = answer.verdict.as_str(),
        go,
        "flagger gate"
    );
    let status = if go {
        StatusCode::OK
    } else {
        StatusCode::PRECONDITION_FAILED
    };
    Ok((
        status,
        Json(FlaggerAnswer {
            hook: hook.as_str(),
            go,
            answer,
        }),
    )
        .into_response())
}
