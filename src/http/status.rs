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
use crate::engine::{DeployView, Engine};
use crate::model::evidence::Ownership;
use crate::model::fleet::{Finished, Fleet, STALE};
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
    /// The newest [`STATUS_DEPLOYS`] active deploys of the whole fleet, in
    /// arrival order, each as of its owner's last evaluation.
    pub deploys: Vec<FleetDeploy>,
    /// How many deploys are active.
    pub deploys_total: usize,
    /// Deploys no longer watched, newest first.
    pub finished: Vec<FleetDeploy>,
    /// This instance's latest audit records that people act on (decisions,
    /// suppressions, commands, results, verifications, breaker, pause,
    /// admin calls, notifications), newest first.
    pub audit: Vec<AuditLine>,
}

/// A deploy as the status shows it: the view of the instance that decides
/// for it, with whose view it is and how old.
#[derive(Debug, Clone, Serialize)]
pub struct FleetDeploy {
    #[serde(flatten)]
    pub deploy: ViewBody,
    /// Set for a finished deploy.
    #[serde(flatten)]
    pub finished: Option<Finished>,
    /// The instance whose view this is — the one that decides for the
    /// deploy's key, or did last; `None` before any published one.
    pub owner: Option<String>,
    /// When the view was made, on its owner's clock.
    pub as_of: Timestamp,
    /// From `as_of` to this instance's clock.
    pub view_age_seconds: f64,
    pub view: ViewSource,
}

/// The deploy's view: this instance's, or as its owner published it.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ViewBody {
    Here(Box<DeployView>),
    Published(serde_json::Map<String, serde_json::Value>),
}

/// Whose view a [`FleetDeploy`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ViewSource {
    /// This instance decides for the deploy's key: its own view.
    #[serde(rename = "live")]
    Live,
    /// The view its owner published.
    #[serde(rename = "published")]
    Published,
    /// The last view its owner published, which no longer holds the key
    /// or went silent ([`STALE`]): until the new owner's view arrives.
    #[serde(rename = "owner changing")]
    OwnerChanging,
    /// No owner's view yet: this instance's, which does not evaluate it.
    #[serde(rename = "local")]
    Local,
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
    /// nothing here is slow), the views the owners published, readiness,
    /// warnings and the lines of its recent audit records
    /// ([`AuditLine::recent`], made before taking the lock).
    pub fn new(
        engine: &Engine,
        fleet: &Fleet,
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
        let merge = Merge {
            engine,
            fleet,
            instance,
        };
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
            deploys: deploys.into_iter().map(|d| merge.deploy(d, None)).collect(),
            deploys_total,
            finished: engine
                .finished()
                .rev()
                .map(|f| {
                    let done = Finished {
                        finished_at: f.finished_at,
                        finished_because: f.finished_because.clone(),
                    };
                    merge.deploy(f.deploy.clone(), Some(done))
                })
                .collect(),
            audit,
        }
    }
}

/// Each deploy this instance knows, as the fleet sees it.
struct Merge<'a> {
    engine: &'a Engine,
    fleet: &'a Fleet,
    instance: &'a str,
}

impl Merge<'_> {
    /// `here`, this instance's view of a deploy (and how it finished), as
    /// the status shows it: its own when it decides for the deploy's key
    /// (a finished deploy's last published view stays), else the view its
    /// owner published — "owner changing" when that owner no longer holds
    /// the key or went silent — and its own until there is one.
    fn deploy(&self, here: DeployView, finished: Option<Finished>) -> FleetDeploy {
        let now = self.engine.now();
        let owned = self
            .engine
            .ownership()
            .owns(&here.service, &here.environment);
        let published = self.fleet.get(&here.deploy_id);
        let last = finished.is_some() && published.is_some_and(|p| p.finished.is_some());
        match published {
            Some(p) if last || !owned => {
                let age = now.since(p.as_of);
                let silent = age.as_secs_f64() > STALE.as_secs_f64();
                let view = if last {
                    ViewSource::Published
                } else if p.owner == self.instance || silent {
                    // This instance published it and holds the key no
                    // more, or its owner stopped refreshing it.
                    ViewSource::OwnerChanging
                } else {
                    ViewSource::Published
                };
                FleetDeploy {
                    deploy: ViewBody::Published(p.deploy.clone()),
                    finished: p.finished.clone().or(finished),
                    owner: Some(p.owner.clone()),
                    as_of: p.as_of,
                    view_age_seconds: age.as_secs_f64().max(0.0),
                    view,
                }
            }
            _ => FleetDeploy {
                deploy: ViewBody::Here(Box::new(here)),
                finished,
                owner: owned.then(|| self.instance.to_string()),
                as_of: now,
                view_age_seconds: 0.0,
                view: if owned {
                    ViewSource::Live
                } else {
                    ViewSource::Local
                },
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::EngineConfig;
    use crate::model::evidence::partition_of;
    use crate::model::fleet::{self, ViewRecord, VIEW_SCHEMA};
    use crate::model::{DeployEvent, DeployEventKind, Input};

    const SEC: i64 = 1_000_000_000;

    /// An engine that knows `d-1` (service `shop`) and owns `owned` of 6
    /// evidence partitions, at `t` s.
    fn engine(owns_shop: bool, t: i64) -> Engine {
        let mut e = Engine::new(EngineConfig::from(&Config::from_toml("").unwrap()));
        let p = partition_of("shop", "default", 6);
        e.apply(
            Input::Own(Ownership::Partitions {
                count: 6,
                owned: owns_shop.then_some(p).into_iter().collect(),
                reading: Default::default(),
            }),
            Timestamp(1000 * SEC),
        );
        let started = DeployEvent {
            kind: DeployEventKind::Started,
            deploy_id: "d-1".into(),
            service: "shop".into(),
            version: "v2".into(),
            at: Timestamp(1000 * SEC),
            environment: None,
            previous_version: Some("v1".into()),
            strategy: None,
            release_id: None,
            data_migration: Default::default(),
            canary_weight: None,
            labels: Default::default(),
        };
        e.apply(Input::Deploy(started), Timestamp(1000 * SEC));
        e.apply(Input::Tick, Timestamp(t * SEC));
        e
    }

    /// The fleet's views with `d-1` published by `owner` at `as_of` s.
    fn published(owner: &str, as_of: i64) -> Fleet {
        let deploy = serde_json::json!({"deploy_id": "d-1", "state": "healthy so far"});
        let record = fleet::encode(&ViewRecord {
            schema: VIEW_SCHEMA,
            deploy_id: "d-1",
            owner,
            as_of: Timestamp(as_of * SEC),
            finished: None,
            deploy: &deploy,
        });
        let mut f = Fleet::default();
        f.apply(Some(b"d-1"), &record).unwrap();
        f
    }

    fn shown(e: &Engine, f: &Fleet) -> serde_json::Value {
        let s = Status::new(e, f, "i0", None, Vec::new(), None, Vec::new());
        serde_json::to_value(&s.deploys[0]).unwrap()
    }

    #[test]
    fn each_deploy_is_shown_as_its_owner_saw_it_and_never_dropped() {
        // Owned here: its own view, whatever was published.
        let d = shown(&engine(true, 1010), &published("i1", 1009));
        assert_eq!(
            (d["view"].as_str(), d["owner"].as_str()),
            (Some("live"), Some("i0"))
        );
        // Owned elsewhere: the owner's view, with its age.
        let d = shown(&engine(false, 1010), &published("i1", 1007));
        assert_eq!(
            (d["view"].as_str(), d["owner"].as_str()),
            (Some("published"), Some("i1"))
        );
        assert_eq!(d["state"], "healthy so far");
        assert_eq!(d["view_age_seconds"], 3.0);
        // Its owner went silent: its last view, owner changing.
        let d = shown(&engine(false, 1030), &published("i1", 1010));
        assert_eq!(
            (d["view"].as_str(), d["owner"].as_str()),
            (Some("owner changing"), Some("i1"))
        );
        assert_eq!(d["state"], "healthy so far");
        // This instance published it and holds the key no more.
        let d = shown(&engine(false, 1010), &published("i0", 1009));
        assert_eq!(d["view"], "owner changing");
        // No owner's view yet: this instance's own.
        let d = shown(&engine(false, 1010), &Fleet::default());
        assert_eq!(
            (d["view"].as_str(), d["owner"].as_str()),
            (Some("local"), None)
        );
        assert_eq!(d["deploy_id"], "d-1");
    }
}
