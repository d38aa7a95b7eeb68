//! The records around decisions: alerts, executor results, the circuit
//! breaker, pauses, maintenance windows, admin calls, malformed inputs, ownership of evidence
//! partitions, notifications that did not arrive, and late data.

use std::collections::BTreeMap;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::wire::need;
use crate::model::evidence::Role;
use crate::model::{AlertStatus, ResultStatus};
use crate::time::{Duration, Timestamp};

/// One alert of an Alertmanager notification, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertAudit {
    pub alertname: String,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub outcome: AlertOutcome,
    pub severity: String,
    pub starts_at: Timestamp,
    pub status: AlertStatus,
}

/// What became of an alert: `{"matched"}`, `{"cleared_pending_for",
/// "resolved": true}` or `{"ignored"}`.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertOutcome {
    /// Matched to this deploy: a rollback trigger.
    Matched(String),
    /// Resolved: held-back triggers of these deploys are cleared.
    Resolved { cleared_pending_for: Vec<String> },
    /// Not a trigger, and why.
    Ignored(String),
}

impl Serialize for AlertOutcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self {
            AlertOutcome::Matched(id) => m.serialize_entry("matched", id)?,
            AlertOutcome::Resolved {
                cleared_pending_for,
            } => {
                m.serialize_entry("cleared_pending_for", cleared_pending_for)?;
                m.serialize_entry("resolved", &true)?;
            }
            AlertOutcome::Ignored(why) => m.serialize_entry("ignored", why)?,
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for AlertOutcome {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            matched: Option<String>,
            #[serde(default)]
            resolved: bool,
            cleared_pending_for: Option<Vec<String>>,
            ignored: Option<String>,
        }
        let w = Wire::deserialize(d)?;
        if let Some(id) = w.matched {
            return Ok(AlertOutcome::Matched(id));
        }
        if w.resolved {
            return Ok(AlertOutcome::Resolved {
                cleared_pending_for: need(w.cleared_pending_for, "cleared_pending_for")?,
            });
        }
        Ok(AlertOutcome::Ignored(need(w.ignored, "ignored")?))
    }
}

/// An executor's result, read from the results topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultAudit {
    pub at: Timestamp,
    pub command_id: String,
    pub executor: String,
    pub message: String,
    pub status: ResultStatus,
    /// For a success of a command this instance knows: from the decision to
    /// the result (not part of the record, so `None` when read; measured).
    #[serde(skip)]
    pub time_to_rollback: Option<Duration>,
}

/// The circuit breaker opened or closed (`state` `open` or `closed`).
#[derive(Debug, Clone, PartialEq)]
pub enum BreakerAudit {
    Opened {
        /// The command whose emission opened it, if one did.
        by_command: Option<String>,
        automatic_commands: usize,
        max: u32,
        window: Duration,
    },
    /// An operator reset it.
    Reset { actor: String, was_open: bool },
}

impl Serialize for BreakerAudit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self {
            BreakerAudit::Opened {
                by_command,
                automatic_commands,
                max,
                window,
            } => {
                m.serialize_entry("automatic_commands", automatic_commands)?;
                m.serialize_entry("max", max)?;
                m.serialize_entry("opened_by_command", by_command)?;
                m.serialize_entry("state", &BreakerState::Open)?;
                m.serialize_entry("window", window)?;
            }
            BreakerAudit::Reset { actor, was_open } => {
                m.serialize_entry("actor", actor)?;
                m.serialize_entry("state", &BreakerState::Closed)?;
                m.serialize_entry("was_open", was_open)?;
            }
        }
        m.end()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BreakerState {
    Open,
    Closed,
}

impl<'de> Deserialize<'de> for BreakerAudit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            state: BreakerState,
            opened_by_command: Option<String>,
            automatic_commands: Option<usize>,
            max: Option<u32>,
            window: Option<Duration>,
            actor: Option<String>,
            was_open: Option<bool>,
        }
        let w = Wire::deserialize(d)?;
        Ok(match w.state {
            BreakerState::Open => BreakerAudit::Opened {
                by_command: w.opened_by_command,
                automatic_commands: need(w.automatic_commands, "automatic_commands")?,
                max: need(w.max, "max")?,
                window: need(w.window, "window")?,
            },
            BreakerState::Closed => BreakerAudit::Reset {
                actor: need(w.actor, "actor")?,
                was_open: need(w.was_open, "was_open")?,
            },
        })
    }
}

/// Automation paused or resumed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PauseAudit {
    pub actor: String,
    /// Whether the call changed anything (pausing twice does not).
    pub changed: bool,
    pub paused: bool,
}

/// A maintenance window opened or closed through the admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceAudit {
    pub actor: String,
    /// Whether the call changed anything (closing twice does not).
    pub changed: bool,
    pub id: String,
    pub reason: String,
    /// Empty: every service.
    pub services: Vec<String>,
    pub state: MaintenanceState,
    /// When the window ends; for a close, when it closed.
    pub until: Timestamp,
}

/// What a maintenance call did to its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaintenanceState {
    Open,
    Closed,
}

/// A person's rollback, taken through the admin API (`"call": "rollback"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AdminAudit {
    pub actor: String,
    pub deploy_id: String,
    pub reason: String,
}

impl Serialize for AdminAudit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("actor", &self.actor)?;
        m.serialize_entry("call", "rollback")?;
        m.serialize_entry("deploy_id", &self.deploy_id)?;
        m.serialize_entry("reason", &self.reason)?;
        m.end()
    }
}

/// An input that could not be decoded (`docs/guarantees.md#bad-input`); it changed nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MalformedAudit {
    pub error: String,
    /// Where it was: topic, partition and offset; a replay line; HTTP.
    pub location: Value,
    /// The input's `source` label (`deploy_events`, `otlp_spans`, …).
    pub source: String,
}

/// Which evidence partitions — and so which (service, environment) keys —
/// an instance decides for (`run` with Kafka only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerAudit {
    pub change: OwnerChange,
    /// The instance (its `kafka.instance_id_env` value, or its host name).
    pub instance: String,
    /// Every partition the instance owns after the change.
    pub owned: Vec<i32>,
    /// The partitions the change is about.
    pub partitions: Vec<i32>,
    /// Whether its commands go out in transactions.
    pub transactional: bool,
}

/// What changed in an instance's ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerChange {
    /// Read back and now decided for.
    Took,
    /// Assigned to another instance.
    Lost,
    /// A newer instance with the same transactional id fenced this one:
    /// it published nothing since and stops.
    Fenced,
}

impl OwnerChange {
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerChange::Took => "took",
            OwnerChange::Lost => "lost",
            OwnerChange::Fenced => "fenced",
        }
    }
}

/// A notification that did not reach its receiver (delivered ones are
/// counted, not audited).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationAudit {
    pub attempts: u32,
    pub error: String,
    /// The event (`decision`, `approval_required`, …).
    pub event: String,
    /// The notification's `X-Rollbackd-Event-Id`.
    pub event_id: String,
    pub outcome: NotificationOutcome,
    /// The `[[notify]]` sink's name.
    pub sink: String,
}

/// Why a notification did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationOutcome {
    /// The sink's queue was full.
    Dropped,
    /// Every attempt failed.
    Failed,
}

impl NotificationOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationOutcome::Dropped => "dropped",
            NotificationOutcome::Failed => "failed",
        }
    }
}

/// A deploy's first evidence that arrived later than its
/// `allowed_lateness` (once per deploy): it counts in the windows, but the
/// attribution test never reads it. Written with `late_by_seconds` too,
/// worked out from `late_by`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LateDataAudit {
    pub allowed_lateness: Duration,
    /// How long after its event time the latest-arriving of it came.
    pub late_by: Duration,
    /// Observations (spans, histogram points) that late so far.
    pub observations: u64,
    /// Whose evidence: the candidate's or the baseline's.
    pub side: Role,
}

impl Serialize for LateDataAudit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("allowed_lateness", &self.allowed_lateness)?;
        m.serialize_entry("late_by", &self.late_by)?;
        m.serialize_entry("late_by_seconds", &self.late_by.as_secs_f64())?;
        m.serialize_entry("observations", &self.observations)?;
        m.serialize_entry("side", &self.side)?;
        m.end()
    }
}
