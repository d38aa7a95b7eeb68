//! The live status: `GET /v1/status` (JSON, schema `rollbackd.status/v1`)
//! and `GET /`, a self-contained page (HTML, CSS and a small script, all in
//! the binary; nothing fetched from anywhere but `/v1/status`) that polls
//! it every 2 s. `rollbackd status` prints the same JSON as a table.
//!
//! The page holds no data itself, so it is served to anyone; the JSON
//! needs the admin token unless `http.status_public` is set (the page asks
//! for the token, or takes it from a link's `#token=…` fragment, which is
//! never sent to the server, and keeps it in the tab's sessionStorage).
//! Every label is set as text, never parsed as markup.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::{authorize, Api, Reply};
use crate::engine::maintenance::MaintenanceView;
use crate::engine::{DeployView, Engine, FinishedDeploy};
use crate::model::evidence::Ownership;
use crate::model::{summary, AuditRecord};
use crate::time::Timestamp;

/// The schema tag of the status JSON.
pub const STATUS_SCHEMA: &str = "rollbackd.status/v1";

/// How many audit records the status shows.
pub const STATUS_AUDIT: usize = 50;

/// How many active deploys the status shows (the newest).
pub const STATUS_DEPLOYS: usize = 200;

const PAGE: &str = include_str!("status.html");

/// What an instance is doing (`GET /v1/status`).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub schema: &'static str,
    /// The engine's clock.
    pub at: Timestamp,
    pub instance: String,
    pub ready: bool,
    /// Why not ready, when not.
    pub not_ready: Option<String>,
    /// What an operator must know about how this instance runs, in words
    /// (webhook routes open to anyone).
    pub warnings: Vec<String>,
    /// The stages stuck — work in hand, no progress for `kafka.stuck_after`
    /// (`/healthz` answers 503) — when some are.
    pub stuck: Option<String>,
    pub role: Role,
    pub automation: Automation,
    /// The newest [`STATUS_DEPLOYS`] active deploys, in arrival order, as
    /// of their last evaluation.
    pub deploys: Vec<DeployView>,
    /// How many deploys are active.
    pub deploys_total: usize,
    /// Deploys no longer watched, newest first.
    pub finished: Vec<FinishedDeploy>,
    /// This instance's latest audit records that people act on (decisions,
    /// suppressions, commands, results, verifications, breaker, pause,
    /// admin calls, notifications), newest first.
    pub audit: Vec<AuditLine>,
}

/// Which keys the instance decides for.
#[derive(Debug, Clone, Serialize)]
pub struct Role {
    /// `all` (one process, every key) or `partitions`.
    pub owns: &'static str,
    /// With Kafka: the evidence partitions, and those it owns.
    pub partitions: Option<u32>,
    pub owned: Option<Vec<i32>>,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Automation {
    pub paused: bool,
    pub paused_by: Option<String>,
    pub paused_at: Option<Timestamp>,
    pub breaker_open: bool,
    pub breaker_open_since: Option<Timestamp>,
    /// The maintenance windows running now: automatic commands of the
    /// services they cover are held back.
    pub maintenance: Vec<MaintenanceView>,
}

/// An audit record with its meaning in words.
#[derive(Debug, Clone, Serialize)]
pub struct AuditLine {
    pub at: Timestamp,
    pub kind: String,
    pub deploy_id: Option<String>,
    pub service: Option<String>,
    pub summary: String,
    /// The evidence or measurements, in words, when there are some.
    pub numbers: Option<String>,
    pub record: AuditRecord,
}

impl AuditLine {
    /// The lines of the latest records people act on, newest first, from
    /// `recent` (newest first).
    pub fn recent(recent: Vec<AuditRecord>) -> Vec<AuditLine> {
        recent
            .into_iter()
            .filter(|a| summary::notable(a.kind()))
            .take(STATUS_AUDIT)
            .map(AuditLine::new)
            .collect()
    }

    pub fn new(record: AuditRecord) -> AuditLine {
        AuditLine {
            at: record.at,
            kind: record.kind().to_string(),
            deploy_id: record.deploy_id.clone(),
            service: record.service.clone(),
            summary: summary::line(&record),
            numbers: summary::numbers(&record),
            record,
        }
    }
}

impl Status {
    /// The status of an instance from its engine (read under its lock:
    /// nothing here is slow), readiness, warnings and the lines of its
    /// recent audit records ([`AuditLine::recent`], made before taking the
    /// lock).
    pub fn new(
        engine: &Engine,
        instance: &str,
        not_ready: Option<String>,
        warnings: Vec<String>,
        stuck: Option<String>,
        audit: Vec<AuditLine>,
    ) -> Status {
        let role = match engine.ownership() {
            Ownership::All => Role {
                owns: "all",
                partitions: None,
                owned: None,
                description: "decides for every service".into(),
            },
            Ownership::Partitions { count, owned, .. } => Role {
                owns: "partitions",
                partitions: Some(*count),
                owned: Some(owned.iter().copied().collect()),
                description: format!(
                    "decides for the services of evidence partitions {:?} of {count}",
                    owned.iter().collect::<Vec<_>>()
                ),
            },
        };
        let paused = engine.paused_by();
        let (deploys, deploys_total) = engine.latest_views(STATUS_DEPLOYS);
        Status {
            schema: STATUS_SCHEMA,
            at: engine.now(),
            instance: instance.to_string(),
            ready: not_ready.is_none(),
            not_ready,
            warnings,
            stuck,
            role,
            automation: Automation {
                paused: paused.is_some(),
                paused_by: paused.map(|(_, by)| by.clone()),
                paused_at: paused.map(|(at, _)| *at),
                breaker_open: engine.breaker_open(),
                breaker_open_since: engine.breaker_open_since(),
                maintenance: engine.maintenance(),
            },
            deploys,
            deploys_total,
            finished: engine.finished().rev().cloned().collect(),
            audit,
        }
    }
}

/// `GET /`: the page.
pub(super) async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        ],
        PAGE,
    )
        .into_response()
}

/// `GET /v1/status`.
pub(super) async fn status<A: Api>(State(api): State<Arc<A>>, headers: HeaderMap) -> Reply {
    if !api.config().http.status_public {
        authorize(&headers, api.admin_token(), true)?;
    }
    // Off the async workers: it reads the engine under its lock.
    let status = tokio::task::spawn_blocking(move || api.status())
        .await
        .map_err(|e| super::error(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(status)).into_response())
}
