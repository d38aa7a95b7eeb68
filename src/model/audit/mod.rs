//! Audit records (CONTRACT §3.3): one typed event per thing rollbackd does
//! or refuses to do. Everything inside is typed; the JSON of
//! `rollbackd.audit/v1` — `{"schema","at","kind","deploy_id"?,"service"?,"detail"}`
//! — is made only when a record is serialized, and metrics and the runtime
//! match on the variants, never on the text.

use std::collections::BTreeMap;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::{json, Value};

use super::{Action, AlertStatus, Command, DataMigration, ResultStatus, Trigger};
use crate::time::{Duration, Timestamp};

/// The schema tag of every audit record.
pub const AUDIT_SCHEMA: &str = "rollbackd.audit/v1";

/// One audit record: when, for which deploy and service (when there is
/// one), and what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub at: Timestamp,
    pub deploy_id: Option<String>,
    pub service: Option<String>,
    pub event: AuditEvent,
}

impl AuditRecord {
    pub fn new(at: Timestamp, event: impl Into<AuditEvent>) -> AuditRecord {
        AuditRecord {
            at,
            deploy_id: None,
            service: None,
            event: event.into(),
        }
    }

    pub fn for_deploy(mut self, deploy_id: &str, service: &str) -> AuditRecord {
        self.deploy_id = Some(deploy_id.into());
        self.service = Some(service.into());
        self
    }

    /// The `kind` field.
    pub fn kind(&self) -> &'static str {
        self.event.kind()
    }

    /// The `detail` field.
    pub fn detail(&self) -> Value {
        self.event.detail()
    }
}

impl Serialize for AuditRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("schema", AUDIT_SCHEMA)?;
        m.serialize_entry("at", &self.at)?;
        m.serialize_entry("kind", self.kind())?;
        if let Some(d) = &self.deploy_id {
            m.serialize_entry("deploy_id", d)?;
        }
        if let Some(svc) = &self.service {
            m.serialize_entry("service", svc)?;
        }
        m.serialize_entry("detail", &self.detail())?;
        m.end()
    }
}

/// What an audit record is about.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditEvent {
    Deploy(DeployAudit),
    Decision(DecisionAudit),
    Suppressed(SuppressedAudit),
    Command(CommandAudit),
    Alert(AlertAudit),
    Result(ResultAudit),
    Breaker(BreakerAudit),
    Pause(PauseAudit),
    Admin(AdminAudit),
    Malformed(MalformedAudit),
    Owner(OwnerAudit),
    Verification(VerificationAudit),
    Notification(NotificationAudit),
    LateData(LateDataAudit),
}

impl AuditEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEvent::Deploy(_) => "deploy",
            AuditEvent::Decision(_) => "decision",
            AuditEvent::Suppressed(_) => "suppressed",
            AuditEvent::Command(_) => "command",
            AuditEvent::Alert(_) => "alert",
            AuditEvent::Result(_) => "result",
            AuditEvent::Breaker(_) => "breaker",
            AuditEvent::Pause(_) => "pause",
            AuditEvent::Admin(_) => "admin",
            AuditEvent::Malformed(_) => "malformed",
            AuditEvent::Owner(_) => "owner",
            AuditEvent::Verification(_) => "verification",
            AuditEvent::Notification(_) => "notification",
            AuditEvent::LateData(_) => "late_data",
        }
    }

    pub fn detail(&self) -> Value {
        match self {
            AuditEvent::Deploy(d) => d.detail(),
            AuditEvent::Decision(d) => json!({"verdict": d.verdict, "evidence": d.evidence}),
            AuditEvent::Suppressed(s) => s.detail(),
            AuditEvent::Command(c) => c.detail(),
            AuditEvent::Alert(a) => a.detail(),
            AuditEvent::Result(r) => json!({
                "command_id": r.command_id,
                "status": r.status,
                "at": r.at,
                "executor": r.executor,
                "message": r.message,
            }),
            AuditEvent::Breaker(b) => b.detail(),
            AuditEvent::Pause(p) => {
                json!({"paused": p.paused, "actor": p.actor, "changed": p.changed})
            }
            AuditEvent::Admin(a) => json!({
                "call": "rollback",
                "deploy_id": a.deploy_id,
                "reason": a.reason,
                "actor": a.actor,
            }),
            AuditEvent::Malformed(m) => {
                json!({"source": m.source, "error": m.error, "location": m.location})
            }
            AuditEvent::Verification(v) => v.detail(),
            AuditEvent::Notification(n) => json!({
                "sink": n.sink,
                "event": n.event,
                "event_id": n.event_id,
                "outcome": n.outcome,
                "attempts": n.attempts,
                "error": n.error,
            }),
            AuditEvent::LateData(l) => json!({
                "side": l.side,
                "late_by": l.late_by,
                "late_by_seconds": l.late_by.as_secs_f64(),
                "allowed_lateness": l.allowed_lateness,
                "observations": l.observations,
            }),
            AuditEvent::Owner(o) => json!({
                "instance": o.instance,
                "change": o.change,
                "partitions": o.partitions,
                "owned": o.owned,
                "transactional": o.transactional,
            }),
        }
    }
}

macro_rules! into_event {
    ($($t:ident => $v:ident),* $(,)?) => {
        $(impl From<$t> for AuditEvent {
            fn from(x: $t) -> AuditEvent {
                AuditEvent::$v(x)
            }
        })*
    };
}

into_event!(
    VerificationAudit => Verification,
    NotificationAudit => Notification,
    DeployAudit => Deploy,
    DecisionAudit => Decision,
    SuppressedAudit => Suppressed,
    CommandAudit => Command,
    AlertAudit => Alert,
    ResultAudit => Result,
    BreakerAudit => Breaker,
    PauseAudit => Pause,
    AdminAudit => Admin,
    MalformedAudit => Malformed,
    OwnerAudit => Owner,
    LateDataAudit => LateData,
);

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
    },
    Progressed {
        canary_weight: Option<f64>,
    },
    Completed {
        watched_until: Timestamp,
    },
    /// An event that changed nothing, and why.
    Ignored {
        event: &'static str,
        why: &'static str,
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
    fn detail(&self) -> Value {
        match self {
            DeployAudit::Started {
                version,
                previous_version,
                environment,
                strategy,
                release_id,
                data_migration,
                at,
            } => json!({
                "event": "deploy.started",
                "version": version,
                "previous_version": previous_version,
                "environment": environment,
                "strategy": strategy,
                "release_id": release_id,
                "data_migration": data_migration,
                "at": at,
            }),
            DeployAudit::Progressed { canary_weight } => {
                json!({"event": "deploy.progressed", "canary_weight": canary_weight})
            }
            DeployAudit::Completed { watched_until } => {
                json!({"event": "deploy.completed", "watched_until": watched_until})
            }
            DeployAudit::Ignored { event, why } => json!({"event": event, "ignored": why}),
            DeployAudit::Retired { why } => json!({"retired": why}),
            DeployAudit::Expired {
                started_at,
                max_deploy_age,
            } => json!({
                "retired": format!("no deploy.completed within limits.max_deploy_age ({max_deploy_age})"),
                "expired": true,
                "started_at": started_at,
                "max_deploy_age": max_deploy_age.to_string(),
            }),
        }
    }
}

/// A verdict that changed to or from rollback / not_attributable.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionAudit {
    pub verdict: Verdict,
    pub evidence: Option<Value>,
}

/// The verdict of an evaluation (CONTRACT §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// Why a command was held back (CONTRACT §3, in the guards' order).
#[derive(Debug, Clone, PartialEq)]
pub enum Suppression {
    /// Guard 1: this command id was emitted already.
    AlreadyEmitted { command_id: String },
    /// Guard 2: automation is paused.
    Paused { since: Timestamp, by: String },
    /// Guard 3: dry run (global or for the service); the command that
    /// would have been emitted.
    DryRun { command: Box<Command> },
    /// Guard 4: the service and environment had an automatic command within
    /// `cooldown`.
    Cooldown { until: Timestamp },
    /// Guard 5: the circuit breaker is open.
    BreakerOpen { since: Timestamp },
}

impl Suppression {
    /// The `reason` label: a bounded set, used in metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Suppression::AlreadyEmitted { .. } => "already_emitted",
            Suppression::Paused { .. } => "paused",
            Suppression::DryRun { .. } => "dry_run",
            Suppression::Cooldown { .. } => "cooldown",
            Suppression::BreakerOpen { .. } => "breaker_open",
        }
    }

    /// Every reason, for metrics.
    pub const REASONS: [&'static str; 5] = [
        "already_emitted",
        "paused",
        "dry_run",
        "cooldown",
        "breaker_open",
    ];

    fn detail(&self) -> Value {
        match self {
            Suppression::AlreadyEmitted { command_id } => json!({"command_id": command_id}),
            Suppression::Paused { since, by } => json!({"paused_at": since, "paused_by": by}),
            Suppression::DryRun { command } => json!({"command": command}),
            Suppression::Cooldown { until } => json!({"until": until}),
            Suppression::BreakerOpen { since } => json!({"open_since": since}),
        }
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
    /// A whole release cascade started by a `deploy.rolled_back` event.
    Release {
        suppression: Suppression,
        release_id: String,
        caused_by: String,
        deploys: Vec<String>,
    },
}

impl SuppressedAudit {
    pub fn suppression(&self) -> &Suppression {
        match self {
            SuppressedAudit::Decision { suppression, .. }
            | SuppressedAudit::ReleaseMember { suppression }
            | SuppressedAudit::Release { suppression, .. } => suppression,
        }
    }

    fn detail(&self) -> Value {
        match self {
            SuppressedAudit::Decision {
                suppression,
                trigger,
                action,
                alert_fingerprint,
            } => {
                let mut detail = suppression.detail();
                if let (Value::Object(m), Some(f)) = (&mut detail, alert_fingerprint) {
                    m.insert("alert_fingerprint".into(), Value::String(f.clone()));
                }
                json!({"reason": suppression.reason(), "trigger": trigger, "action": action, "detail": detail})
            }
            SuppressedAudit::ReleaseMember { suppression } => {
                let mut detail =
                    json!({"reason": suppression.reason(), "trigger": Trigger::Release});
                if let (Value::Object(m), Value::Object(extra)) =
                    (&mut detail, suppression.detail())
                {
                    m.extend(extra);
                }
                detail
            }
            SuppressedAudit::Release {
                suppression,
                release_id,
                caused_by,
                deploys,
            } => json!({
                "reason": suppression.reason(),
                "trigger": Trigger::Release,
                "release_id": release_id,
                "caused_by": caused_by,
                "deploys": deploys,
            }),
        }
    }
}

/// A command emitted: its audit record travels with it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandAudit {
    pub command_id: String,
    pub action: Action,
    pub trigger: Trigger,
    pub environment: String,
    pub from_version: String,
    pub to_version: Option<String>,
    pub evidence: Value,
    /// From the deploy's start to the decision.
    pub detected_after: Option<Duration>,
    /// Who asked, for a manual rollback.
    pub actor: Option<String>,
}

impl CommandAudit {
    fn detail(&self) -> Value {
        let mut detail = json!({
            "command_id": self.command_id,
            "action": self.action,
            "trigger": self.trigger,
            "environment": self.environment,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "evidence": self.evidence,
            "detected_after_seconds": self.detected_after.map(|d| d.as_secs_f64()),
        });
        if let (Some(actor), Value::Object(m)) = (&self.actor, &mut detail) {
            m.insert("actor".into(), Value::String(actor.clone()));
        }
        detail
    }
}

/// One alert of an Alertmanager notification, and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertAudit {
    pub alertname: String,
    pub severity: String,
    pub status: AlertStatus,
    pub fingerprint: String,
    pub starts_at: Timestamp,
    pub labels: BTreeMap<String, String>,
    pub outcome: AlertOutcome,
}

/// What became of an alert.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertOutcome {
    /// Matched to this deploy: a rollback trigger.
    Matched(String),
    /// Resolved: held-back triggers of these deploys are cleared.
    Resolved { cleared_pending_for: Vec<String> },
    /// Not a trigger, and why.
    Ignored(String),
}

impl AlertAudit {
    fn detail(&self) -> Value {
        let outcome = match &self.outcome {
            AlertOutcome::Matched(id) => json!({"matched": id}),
            AlertOutcome::Resolved {
                cleared_pending_for,
            } => json!({"resolved": true, "cleared_pending_for": cleared_pending_for}),
            AlertOutcome::Ignored(why) => json!({"ignored": why}),
        };
        json!({
            "alertname": self.alertname,
            "severity": self.severity,
            "status": self.status,
            "fingerprint": self.fingerprint,
            "starts_at": self.starts_at,
            "labels": self.labels,
            "outcome": outcome,
        })
    }
}

/// An executor's result, read from the results topic.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultAudit {
    pub command_id: String,
    pub status: ResultStatus,
    pub at: Timestamp,
    pub executor: String,
    pub message: String,
    /// For a success of a command this instance knows: from the decision to
    /// the result (not part of the record; measured).
    pub time_to_rollback: Option<Duration>,
}

/// The circuit breaker opened or closed.
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

impl BreakerAudit {
    fn detail(&self) -> Value {
        match self {
            BreakerAudit::Opened {
                by_command,
                automatic_commands,
                max,
                window,
            } => json!({
                "state": "open",
                "opened_by_command": by_command,
                "automatic_commands": automatic_commands,
                "max": max,
                "window": window,
            }),
            BreakerAudit::Reset { actor, was_open } => {
                json!({"state": "closed", "actor": actor, "was_open": was_open})
            }
        }
    }
}

/// Automation paused or resumed.
#[derive(Debug, Clone, PartialEq)]
pub struct PauseAudit {
    pub paused: bool,
    pub actor: String,
    pub changed: bool,
}

/// A person's rollback, taken through the admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminAudit {
    pub deploy_id: String,
    pub reason: String,
    pub actor: String,
}

/// An input that could not be decoded (CONTRACT §6); it changed nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct MalformedAudit {
    /// The input's `source` label (`deploy_events`, `otlp_spans`, …).
    pub source: String,
    pub error: String,
    /// Where it was: topic, partition and offset; a replay line; HTTP.
    pub location: Value,
}

/// A deploy's first evidence that arrived later than its
/// `allowed_lateness` (once per deploy): it counts in the windows, but the
/// attribution test never reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct LateDataAudit {
    /// Whose evidence: the candidate's or the baseline's.
    pub side: super::evidence::Role,
    /// How long after its event time the latest-arriving of it came.
    pub late_by: Duration,
    pub allowed_lateness: Duration,
    /// Observations (spans, histogram points) that late so far.
    pub observations: u64,
}

/// Which evidence partitions — and so which (service, environment) keys —
/// an instance decides for (`run` with Kafka only).
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerAudit {
    /// The instance (its `kafka.instance_id_env` value, or its host name).
    pub instance: String,
    pub change: OwnerChange,
    /// The partitions the change is about.
    pub partitions: Vec<i32>,
    /// Every partition the instance owns after the change.
    pub owned: Vec<i32>,
    /// Whether its commands go out in transactions.
    pub transactional: bool,
}

/// What changed in an instance's ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// How a successful rollback turned out (the restored version watched for
/// `verify.window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationOutcome {
    /// The restored version is confidently below every firing threshold.
    Recovered,
    /// The restored version still burns: a firing pair on it.
    NotRecovered,
    /// Too little traffic (or the deploy was superseded) to tell.
    Inconclusive,
}

impl VerificationOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationOutcome::Recovered => "recovered",
            VerificationOutcome::NotRecovered => "not_recovered",
            VerificationOutcome::Inconclusive => "inconclusive",
        }
    }
}

/// A bad ratio with the counts behind it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Ratio {
    pub requests: u64,
    pub bad: u64,
    /// `bad / requests` to six decimals (0 without requests).
    pub ratio: f64,
}

impl Ratio {
    pub fn new(bad: u64, requests: u64) -> Ratio {
        let ratio = if requests == 0 {
            0.0
        } else {
            (bad as f64 / requests as f64 * 1e6).round() / 1e6
        };
        Ratio {
            requests,
            bad,
            ratio,
        }
    }
}

/// The outcome of watching a rolled-back deploy's restored version.
#[derive(Debug, Clone, PartialEq)]
pub struct VerificationAudit {
    pub outcome: VerificationOutcome,
    pub command_id: String,
    pub restored_version: Option<String>,
    /// The SLI the decision was about.
    pub sli: &'static str,
    /// The restored version's bad ratio while the deploy ran (the
    /// baseline at the decision), the candidate's at the decision, and the
    /// restored version's since the rollback.
    pub before: Option<Ratio>,
    pub during: Option<Ratio>,
    pub after: Ratio,
    /// From the candidate's first bad request to the decision.
    pub time_to_detect: Option<Duration>,
    /// From the deploy's start to the decision.
    pub time_to_decide: Option<Duration>,
    /// From the decision to the executor's result.
    pub time_to_rollback: Option<Duration>,
    /// From the decision, and from the result, to recovery.
    pub time_to_recover: Option<Duration>,
    pub time_to_recover_from_result: Option<Duration>,
    /// Why, for `not_recovered` (the firing pair) and `inconclusive`.
    pub evidence: Value,
}

impl VerificationAudit {
    fn detail(&self) -> Value {
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        json!({
            "outcome": self.outcome.as_str(),
            "command_id": self.command_id,
            "restored_version": self.restored_version,
            "sli": self.sli,
            "before": self.before,
            "during": self.during,
            "after": self.after,
            "time_to_detect_seconds": secs(self.time_to_detect),
            "time_to_decide_seconds": secs(self.time_to_decide),
            "time_to_rollback_seconds": secs(self.time_to_rollback),
            "time_to_recover_seconds": secs(self.time_to_recover),
            "time_to_recover_from_result_seconds": secs(self.time_to_recover_from_result),
            "evidence": self.evidence,
        })
    }
}

/// A notification that did not reach its receiver (delivered ones are
/// counted, not audited).
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationAudit {
    /// The `[[notify]]` sink's name.
    pub sink: String,
    /// The event (`decision`, `approval_required`, …).
    pub event: &'static str,
    /// The notification's `X-Rollbackd-Event-Id`.
    pub event_id: String,
    /// `dropped` (the sink's queue was full) or `failed`.
    pub outcome: &'static str,
    pub attempts: u32,
    pub error: String,
}

#[cfg(test)]
mod tests;
