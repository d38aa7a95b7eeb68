//! The engine's one door: every input is an [`Input`], every effect an
//! [`Output`] (`Engine::apply(Input, now) -> Vec<Output>`).

use super::{
    AdminRecord, Alert, AuditRecord, Command, DeployEvent, ExecutorResult, TelemetryBatch,
};

/// Everything the engine can be told.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A deploy event (`docs/formats.md#deploy-events`).
    Deploy(DeployEvent),
    /// A decoded OTLP export (`docs/formats.md#otlp-telemetry`), given to the engine itself:
    /// folded into evidence and applied at once (both stages in this
    /// process).
    Telemetry(TelemetryBatch),
    /// One Alertmanager notification's alerts (`docs/formats.md#alertmanager-webhook`).
    Alerts(Vec<Alert>),
    /// An executor's result (`docs/formats.md#executor-results`).
    Result(ExecutorResult),
    /// A command read back from the commands topic: restores guard state
    /// (recovery, `docs/guarantees.md#start-up-and-recovery`).
    Command(Command),
    /// A pause, resume or breaker reset read from the admin topic (taken
    /// on any instance, audited there): applied, not audited again.
    Admin(AdminRecord),
    /// An admin call taken here: applied and audited.
    AdminCall(AdminCall),
    /// A deploy shown healthy by the owner of its key, read from the admin
    /// topic: the gate answers `pass` for it here too.
    Gate(super::gate::GateRecord),
    /// Evidence for a key this instance owns (stage 2).
    Evidence(super::evidence::Evidence),
    /// Which keys this instance now decides for (evidence partitions
    /// assigned, and read back); what it no longer owns is forgotten.
    Own(super::evidence::Ownership),
    /// An input that could not be decoded: audited, changes nothing.
    Malformed(super::audit::MalformedAudit),
    /// Time passed: evaluate what is due (warm-ups, cooldowns and watches
    /// ending, the evaluation interval).
    Tick,
}

/// An admin call (`docs/http.md#routes`), with who made it.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminCall {
    /// Pause, resume or breaker reset, as recorded on the admin topic.
    Guard(AdminRecord),
    /// A person's rollback: bypasses the guards but once-per-deploy.
    Rollback {
        deploy_id: String,
        reason: String,
        actor: String,
    },
}

/// What the engine asks its adapters to do or count.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Publish this command (`docs/formats.md#rollback-commands`).
    Command(Command),
    /// Publish this audit record (`docs/formats.md#audit-records`).
    Audit(AuditRecord),
    /// What became of a telemetry input (for `records_total` and
    /// `observations_total`).
    Telemetry(TelemetryOutcome),
    /// An admin call that was refused, and why.
    Refused(Refusal),
    /// Publish this deploy event, which rollbackd learned from the
    /// telemetry (`docs/formats.md#deploy-events`): the engine that made it
    /// has applied it; every other instance applies it from the
    /// deploy-events topic.
    Deploy(DeployEvent),
    /// A deploy was shown healthy here: published on the admin topic for
    /// every other instance (`docs/formats.md#gate-records`).
    Gate(super::gate::GateRecord),
}

impl Output {
    /// Whether it goes to a topic (or stdout): a command, an audit record,
    /// a deploy event or a gate record rollbackd made.
    pub fn is_published(&self) -> bool {
        matches!(
            self,
            Output::Command(_) | Output::Audit(_) | Output::Deploy(_) | Output::Gate(_)
        )
    }
}

/// Why a manual rollback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no active deploy {0}")]
    NotFound(String),
    #[error("a rollback command was already emitted for this deploy ({0})")]
    AlreadyEmitted(String),
}

/// What became of one telemetry batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TelemetryOutcome {
    /// Request observations added to windows (per deploy side).
    pub observations: u64,
    /// Observations older than the longest window: dropped.
    pub late: u64,
    /// Observations that arrived later than `allowed_lateness` after their
    /// event time: in the windows (and `observations`), too late for the
    /// attribution test.
    pub too_late: u64,
    /// Observations no active deploy claims.
    pub unmatched: u64,
    /// Observations dropped because a cap in `[limits]` was reached.
    pub over_limit: u64,
    /// Observations of an HTTP request applied before (sent again by its
    /// exporter): skipped.
    pub repeated: u64,
}

impl TelemetryOutcome {
    /// The record-level outcome label: `ok` when anything was used in
    /// time, `late` when all of it was late.
    pub fn label(&self) -> &'static str {
        if self.observations > self.too_late {
            "ok"
        } else if self.late > 0 || self.too_late > 0 {
            "late"
        } else if self.unmatched > 0 || self.over_limit > 0 {
            "unmatched"
        } else {
            "ok"
        }
    }
}
