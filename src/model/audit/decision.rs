//! `decision`, `suppressed` and `command` records: what the engine decided
//! about a deploy, what a guard held back, and what it published.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::wire::{need, seconds, sorted};
use crate::model::{Action, Command, Trigger};
use crate::time::{Duration, Timestamp};

/// A verdict that changed to or from rollback / not_attributable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionAudit {
    /// `null` when the verdict has no decisive pair of windows.
    pub evidence: Option<Value>,
    pub verdict: Verdict,
}

/// The verdict of an evaluation (`docs/guarantees.md#verdicts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    WarmingUp,
    Healthy,
    NotAttributable,
    Rollback,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::WarmingUp => "warming_up",
            Verdict::Healthy => "healthy",
            Verdict::NotAttributable => "not_attributable",
            Verdict::Rollback => "rollback",
        }
    }
}

/// Why a command was held back: the guard, in the guards' order (the
/// `reason` key, and a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    AlreadyEmitted,
    Paused,
    Maintenance,
    DryRun,
    Cooldown,
    BreakerOpen,
}

impl SuppressionReason {
    pub const ALL: [SuppressionReason; 6] = [
        SuppressionReason::AlreadyEmitted,
        SuppressionReason::Paused,
        SuppressionReason::Maintenance,
        SuppressionReason::DryRun,
        SuppressionReason::Cooldown,
        SuppressionReason::BreakerOpen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::AlreadyEmitted => "already_emitted",
            SuppressionReason::Paused => "paused",
            SuppressionReason::Maintenance => "maintenance",
            SuppressionReason::DryRun => "dry_run",
            SuppressionReason::Cooldown => "cooldown",
            SuppressionReason::BreakerOpen => "breaker_open",
        }
    }
}

impl fmt::Display for SuppressionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a command was held back (`docs/guarantees.md#guards`, in the guards' order), with
/// what the guard saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Suppression {
    /// Guard 1: this command id was emitted already.
    AlreadyEmitted { command_id: String },
    /// Guard 2: automation is paused.
    Paused { since: Timestamp, by: String },
    /// Guard 3: a maintenance window covers the service: its name (of
    /// `[[guards.maintenance]]`, or the id of one opened through the admin
    /// API) and when it ends.
    Maintenance { window: String, until: Timestamp },
    /// Guard 4: dry run (global or for the service); the command that
    /// would have been emitted.
    DryRun { command: Box<Command> },
    /// Guard 5: the service and environment had an automatic command within
    /// `cooldown`.
    Cooldown { until: Timestamp },
    /// Guard 6: the circuit breaker is open.
    BreakerOpen { since: Timestamp },
}

impl Suppression {
    pub fn reason(&self) -> SuppressionReason {
        match self {
            Suppression::AlreadyEmitted { .. } => SuppressionReason::AlreadyEmitted,
            Suppression::Paused { .. } => SuppressionReason::Paused,
            Suppression::Maintenance { .. } => SuppressionReason::Maintenance,
            Suppression::DryRun { .. } => SuppressionReason::DryRun,
            Suppression::Cooldown { .. } => SuppressionReason::Cooldown,
            Suppression::BreakerOpen { .. } => SuppressionReason::BreakerOpen,
        }
    }

    /// Its keys (no `reason`).
    fn wire(&self) -> SuppressedWire<'_> {
        match self {
            Suppression::AlreadyEmitted { command_id } => SuppressedWire {
                command_id: Some(command_id.into()),
                ..SuppressedWire::default()
            },
            Suppression::Paused { since, by } => SuppressedWire {
                paused_at: Some(*since),
                paused_by: Some(by.into()),
                ..SuppressedWire::default()
            },
            Suppression::Maintenance { window, until } => SuppressedWire {
                until: Some(*until),
                window: Some(window.into()),
                ..SuppressedWire::default()
            },
            Suppression::DryRun { command } => SuppressedWire {
                command: Some(Cow::Borrowed(command)),
                ..SuppressedWire::default()
            },
            Suppression::Cooldown { until } => SuppressedWire {
                until: Some(*until),
                ..SuppressedWire::default()
            },
            Suppression::BreakerOpen { since } => SuppressedWire {
                open_since: Some(*since),
                ..SuppressedWire::default()
            },
        }
    }

    /// The suppression of `reason` whose keys are in `w`.
    fn read<E: serde::de::Error>(
        reason: SuppressionReason,
        w: SuppressedWire<'_>,
    ) -> Result<Suppression, E> {
        Ok(match reason {
            SuppressionReason::AlreadyEmitted => Suppression::AlreadyEmitted {
                command_id: need(w.command_id, "command_id")?.into_owned(),
            },
            SuppressionReason::Paused => Suppression::Paused {
                since: need(w.paused_at, "paused_at")?,
                by: need(w.paused_by, "paused_by")?.into_owned(),
            },
            SuppressionReason::Maintenance => Suppression::Maintenance {
                window: need(w.window, "window")?.into_owned(),
                until: need(w.until, "until")?,
            },
            SuppressionReason::DryRun => Suppression::DryRun {
                command: Box::new(need(w.command, "command")?.into_owned()),
            },
            SuppressionReason::Cooldown => Suppression::Cooldown {
                until: need(w.until, "until")?,
            },
            SuppressionReason::BreakerOpen => Suppression::BreakerOpen {
                since: need(w.open_since, "open_since")?,
            },
        })
    }
}

/// A decision held back by a guard.
#[derive(Debug, Clone, PartialEq)]
pub enum SuppressedAudit {
    /// An automatic decision on one deploy.
    Decision {
        suppression: Suppression,
        trigger: Trigger,
        action: Action,
        /// The alert that triggered it, when one did.
        alert_fingerprint: Option<String>,
    },
    /// One deploy of a release rolled back with another one.
    ReleaseMember { suppression: Suppression },
    /// A whole release cascade started by a `deploy.rolled_back` event: the
    /// record says which guard, not what it saw.
    Release {
        reason: SuppressionReason,
        release_id: String,
        caused_by: String,
        deploys: Vec<String>,
    },
}

impl SuppressedAudit {
    pub fn reason(&self) -> SuppressionReason {
        match self {
            SuppressedAudit::Decision { suppression, .. }
            | SuppressedAudit::ReleaseMember { suppression } => suppression.reason(),
            SuppressedAudit::Release { reason, .. } => *reason,
        }
    }
}

/// Every key of a `suppressed` detail, in sorted order; the same keys
/// (only the suppression's and `alert_fingerprint`) make the nested
/// `detail` of a [`SuppressedAudit::Decision`]. A release member's
/// suppression keys sit beside `reason` and `trigger`.
#[derive(Default, Serialize, Deserialize)]
struct SuppressedWire<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    action: Option<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alert_fingerprint: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    caused_by: Option<Cow<'a, str>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "sorted"
    )]
    command: Option<Cow<'a, Command>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command_id: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deploys: Option<Cow<'a, [String]>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<Box<SuppressedWire<'a>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    open_since: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    paused_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    paused_by: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<SuppressionReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    release_id: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trigger: Option<Trigger>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window: Option<Cow<'a, str>>,
}

impl Serialize for SuppressedAudit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let wire = match self {
            SuppressedAudit::Decision {
                suppression,
                trigger,
                action,
                alert_fingerprint,
            } => SuppressedWire {
                action: Some(*action),
                detail: Some(Box::new(SuppressedWire {
                    alert_fingerprint: alert_fingerprint.as_deref().map(Cow::Borrowed),
                    ..suppression.wire()
                })),
                reason: Some(suppression.reason()),
                trigger: Some(*trigger),
                ..SuppressedWire::default()
            },
            SuppressedAudit::ReleaseMember { suppression } => SuppressedWire {
                reason: Some(suppression.reason()),
                trigger: Some(Trigger::Release),
                ..suppression.wire()
            },
            SuppressedAudit::Release {
                reason,
                release_id,
                caused_by,
                deploys,
            } => SuppressedWire {
                caused_by: Some(caused_by.into()),
                deploys: Some(deploys.into()),
                reason: Some(*reason),
                release_id: Some(release_id.into()),
                trigger: Some(Trigger::Release),
                ..SuppressedWire::default()
            },
        };
        wire.serialize(s)
    }
}

/// A nested `detail` makes a decision's suppression; a `release_id`, a
/// release's; otherwise it is a release member's.
impl<'de> Deserialize<'de> for SuppressedAudit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut w = SuppressedWire::deserialize(d)?;
        let reason = need(w.reason, "reason")?;
        if let Some(detail) = w.detail.take() {
            return Ok(SuppressedAudit::Decision {
                alert_fingerprint: detail.alert_fingerprint.clone().map(Cow::into_owned),
                suppression: Suppression::read(reason, *detail)?,
                trigger: need(w.trigger, "trigger")?,
                action: need(w.action, "action")?,
            });
        }
        if let Some(release_id) = w.release_id {
            return Ok(SuppressedAudit::Release {
                reason,
                release_id: release_id.into_owned(),
                caused_by: need(w.caused_by, "caused_by")?.into_owned(),
                deploys: need(w.deploys, "deploys")?.into_owned(),
            });
        }
        Ok(SuppressedAudit::ReleaseMember {
            suppression: Suppression::read(reason, w)?,
        })
    }
}

/// A command emitted: its audit record travels with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandAudit {
    pub action: Action,
    /// Who asked, for a manual rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    pub command_id: String,
    /// From the deploy's start to the decision.
    #[serde(rename = "detected_after_seconds", with = "seconds", default)]
    pub detected_after: Option<Duration>,
    pub environment: String,
    pub evidence: Value,
    pub from_version: String,
    pub to_version: Option<String>,
    pub trigger: Trigger,
}
