//! `deploy` records: what became of a deploy event, or of a deploy.

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::wire::need;
use crate::model::{DataMigration, DeployEventKind};
use crate::time::{Duration, Timestamp};

/// Why a deploy is fast-tracked: its version was seen healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastTrack {
    /// When the version was last seen healthy.
    pub healthy_at: Timestamp,
    /// How: `watched` (a deploy of it finished its watch without a
    /// command) or `restored` (a rollback rollbackd commanded restored it).
    pub how: String,
}

/// What became of a deploy event, or a deploy's end.
#[derive(Debug, Clone, PartialEq)]
pub enum DeployAudit {
    Started {
        version: String,
        previous_version: Option<String>,
        environment: String,
        strategy: Option<String>,
        release_id: Option<String>,
        data_migration: DataMigration,
        at: Timestamp,
        /// Set when the deploy is of a version known to be good: watched as
        /// a recovery, not judged as a canary.
        fast_track: Option<FastTrack>,
    },
    Progressed {
        canary_weight: Option<f64>,
    },
    Completed {
        watched_until: Timestamp,
    },
    /// An event that changed nothing, and why.
    Ignored {
        event: DeployEventKind,
        why: String,
    },
    /// The deploy is no longer watched.
    Retired {
        why: String,
    },
    /// The deploy never completed and reached `limits.max_deploy_age`: it
    /// is no longer watched.
    Expired {
        started_at: Timestamp,
        max_deploy_age: Duration,
    },
}

impl DeployAudit {
    /// Why an expired deploy is no longer watched (its `retired` key).
    pub fn expired_because(max_deploy_age: Duration) -> String {
        format!("no deploy.completed within limits.max_deploy_age ({max_deploy_age})")
    }
}

/// Each variant has its own keys (`event` for events, `ignored`, `retired`
/// and `expired` for the rest), written in sorted order.
impl Serialize for DeployAudit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self {
            DeployAudit::Started {
                version,
                previous_version,
                environment,
                strategy,
                release_id,
                data_migration,
                at,
                fast_track,
            } => {
                m.serialize_entry("at", at)?;
                m.serialize_entry("data_migration", data_migration)?;
                m.serialize_entry("environment", environment)?;
                m.serialize_entry("event", &DeployEventKind::Started)?;
                if let Some(f) = fast_track {
                    m.serialize_entry("fast_track", f)?;
                }
                m.serialize_entry("previous_version", previous_version)?;
                m.serialize_entry("release_id", release_id)?;
                m.serialize_entry("strategy", strategy)?;
                m.serialize_entry("version", version)?;
            }
            DeployAudit::Progressed { canary_weight } => {
                m.serialize_entry("canary_weight", canary_weight)?;
                m.serialize_entry("event", &DeployEventKind::Progressed)?;
            }
            DeployAudit::Completed { watched_until } => {
                m.serialize_entry("event", &DeployEventKind::Completed)?;
                m.serialize_entry("watched_until", watched_until)?;
            }
            DeployAudit::Ignored { event, why } => {
                m.serialize_entry("event", event)?;
                m.serialize_entry("ignored", why)?;
            }
            DeployAudit::Retired { why } => m.serialize_entry("retired", why)?,
            DeployAudit::Expired {
                started_at,
                max_deploy_age,
            } => {
                m.serialize_entry("expired", &true)?;
                m.serialize_entry("max_deploy_age", max_deploy_age)?;
                m.serialize_entry("retired", &DeployAudit::expired_because(*max_deploy_age))?;
                m.serialize_entry("started_at", started_at)?;
            }
        }
        m.end()
    }
}

/// Every key a `deploy` detail may have.
#[derive(Deserialize)]
struct DeployWire {
    event: Option<DeployEventKind>,
    ignored: Option<String>,
    retired: Option<String>,
    #[serde(default)]
    expired: bool,
    version: Option<String>,
    previous_version: Option<String>,
    environment: Option<String>,
    strategy: Option<String>,
    release_id: Option<String>,
    data_migration: Option<DataMigration>,
    at: Option<Timestamp>,
    canary_weight: Option<f64>,
    watched_until: Option<Timestamp>,
    started_at: Option<Timestamp>,
    max_deploy_age: Option<Duration>,
    fast_track: Option<FastTrack>,
}

/// The variant is told by its keys: `ignored`, then `expired`, then
/// `retired`, else the `event`.
impl<'de> Deserialize<'de> for DeployAudit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = DeployWire::deserialize(d)?;
        if let Some(why) = w.ignored {
            return Ok(DeployAudit::Ignored {
                event: need(w.event, "event")?,
                why,
            });
        }
        if w.expired {
            return Ok(DeployAudit::Expired {
                started_at: need(w.started_at, "started_at")?,
                max_deploy_age: need(w.max_deploy_age, "max_deploy_age")?,
            });
        }
        if let Some(why) = w.retired {
            return Ok(DeployAudit::Retired { why });
        }
        Ok(match need(w.event, "event")? {
            DeployEventKind::Started => DeployAudit::Started {
                version: need(w.version, "version")?,
                previous_version: w.previous_version,
                environment: need(w.environment, "environment")?,
                strategy: w.strategy,
                release_id: w.release_id,
                data_migration: need(w.data_migration, "data_migration")?,
                at: need(w.at, "at")?,
                fast_track: w.fast_track,
            },
            DeployEventKind::Progressed => DeployAudit::Progressed {
                canary_weight: w.canary_weight,
            },
            DeployEventKind::Completed => DeployAudit::Completed {
                watched_until: need(w.watched_until, "watched_until")?,
            },
            other => {
                return Err(serde::de::Error::custom(format!(
                    "a deploy detail of {} says neither ignored nor retired",
                    other.as_str()
                )))
            }
        })
    }
}
