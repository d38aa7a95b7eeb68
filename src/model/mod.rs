//! Domain values shared by every layer: what ingest produces and what the
//! engine consumes and emits. No I/O and no decision logic lives here.
//!
//! - this module: deploy events, telemetry observations, alerts, executor
//!   results, admin records, commands;
//! - [`input`]: the one value the engine takes ([`Input`]) and what it gives
//!   back ([`Output`]);
//! - [`audit`]: the typed audit records;
//! - [`evidence`]: what intake hands to the owner of a (service,
//!   environment), and which keys an instance owns.
//! - [`fleet`]: each deploy's view as its owner publishes it to every
//!   instance, and the fleet's views as an instance read them;
//! - [`gate`]: the gate's verdict, and the record that spreads a pass to
//!   every instance;
//! - [`summary`]: audit records and evidence in words,
//!   for every reader that shows them to people.

pub mod audit;
pub mod evidence;
pub mod fleet;
pub mod gate;
pub mod input;
pub mod summary;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::time::Timestamp;

/// The schema tag of every command (`docs/formats.md#rollback-commands`).
pub const COMMAND_SCHEMA: &str = "rollbackd.command/v1";
/// Schema of the records on the admin topic.
pub const ADMIN_SCHEMA: &str = "rollbackd.admin/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeployEventKind {
    #[serde(rename = "deploy.started")]
    Started,
    #[serde(rename = "deploy.progressed")]
    Progressed,
    #[serde(rename = "deploy.completed")]
    Completed,
    #[serde(rename = "deploy.rolled_back")]
    RolledBack,
    #[serde(rename = "deploy.aborted")]
    Aborted,
}

impl DeployEventKind {
    pub fn parse(s: &str) -> Option<DeployEventKind> {
        Some(match s {
            "deploy.started" => DeployEventKind::Started,
            "deploy.progressed" => DeployEventKind::Progressed,
            "deploy.completed" => DeployEventKind::Completed,
            "deploy.rolled_back" => DeployEventKind::RolledBack,
            "deploy.aborted" => DeployEventKind::Aborted,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeployEventKind::Started => "deploy.started",
            DeployEventKind::Progressed => "deploy.progressed",
            DeployEventKind::Completed => "deploy.completed",
            DeployEventKind::RolledBack => "deploy.rolled_back",
            DeployEventKind::Aborted => "deploy.aborted",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataMigration {
    #[default]
    None,
    Reversible,
    Irreversible,
}

impl DataMigration {
    pub fn is_none(&self) -> bool {
        *self == DataMigration::None
    }

    pub fn parse(s: &str) -> Option<DataMigration> {
        Some(match s {
            "none" => DataMigration::None,
            "reversible" => DataMigration::Reversible,
            "irreversible" => DataMigration::Irreversible,
            _ => return None,
        })
    }
}

/// A validated deploy event (`docs/formats.md#deploy-events`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployEvent {
    #[serde(rename = "type")]
    pub kind: DeployEventKind,
    pub deploy_id: String,
    pub service: String,
    pub version: String,
    pub at: Timestamp,
    /// `None` when the event did not say; the deploy then reports `"default"`
    /// and matches telemetry from any environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_id: Option<String>,
    #[serde(skip_serializing_if = "DataMigration::is_none")]
    pub data_migration: DataMigration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl DeployEvent {
    pub fn environment_or_default(&self) -> &str {
        self.environment.as_deref().unwrap_or(DEFAULT_ENVIRONMENT)
    }
}

pub const DEFAULT_ENVIRONMENT: &str = "default";

/// The strategy of a deploy rollbackd found in the telemetry.
pub const INFERRED: &str = "inferred";

/// The identity of the process that produced a batch of telemetry, taken
/// from OTLP resource attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceIdent {
    pub service: Option<String>,
    pub version: Option<String>,
    pub environment: Option<String>,
    pub deployment_id: Option<String>,
    /// Order-independent hash of all resource attributes; part of a metric
    /// series' identity.
    pub attrs_hash: u64,
}

/// What a request observation is (`docs/formats.md#what-counts-as-a-request`):
/// a policy's `requests` says which kinds count for a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    /// An HTTP server's request (any SERVER span that is not an RPC).
    Http,
    /// An RPC server's call (gRPC and other RPC systems).
    Rpc,
    /// A message a consumer processed.
    Messaging,
}

impl RequestKind {
    pub const ALL: [RequestKind; 3] = [RequestKind::Http, RequestKind::Rpc, RequestKind::Messaging];

    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Http => "http",
            RequestKind::Rpc => "rpc",
            RequestKind::Messaging => "messaging",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of [`RequestKind`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestKinds(u8);

impl RequestKinds {
    pub fn contains(self, kind: RequestKind) -> bool {
        self.0 & kind.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds in the set, in [`RequestKind::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = RequestKind> {
        RequestKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }
}

impl FromIterator<RequestKind> for RequestKinds {
    fn from_iter<I: IntoIterator<Item = RequestKind>>(kinds: I) -> RequestKinds {
        RequestKinds(kinds.into_iter().fold(0, |bits, k| bits | k.bit()))
    }
}

/// One SERVER or CONSUMER span reduced to what the SLIs need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanObs {
    /// Event time: the span's end.
    pub end: Timestamp,
    /// End − start in nanoseconds (zero when the clocks disagree).
    pub latency_ns: i64,
    pub error: bool,
    pub kind: RequestKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    Delta,
    Cumulative,
}

/// One data point of a request-duration histogram
/// (`http.server.request.duration`, `rpc.server.call.duration`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct HistPoint {
    /// Identity of the series (resource, metric and point attributes).
    pub series: u64,
    /// Zero when the exporter did not say.
    pub start: Timestamp,
    pub time: Timestamp,
    pub count: u64,
    /// Explicit bounds in the metric's unit; `bucket_counts` has one more
    /// entry than `bounds`, or is empty.
    pub bounds: Vec<f64>,
    pub bucket_counts: Vec<u64>,
    /// How many of the metric's unit make one second (1 for `s`, 1000 for `ms`).
    pub unit_per_sec: f64,
    /// Whether the point's requests failed (for HTTP, a status code ≥ 500).
    pub error: bool,
    pub temporality: Temporality,
    pub kind: RequestKind,
}

impl HistPoint {
    /// Requests in buckets whose lower bound is at or above `threshold_secs`.
    pub fn slow_count(&self, threshold_secs: f64) -> u64 {
        let threshold = threshold_secs * self.unit_per_sec;
        let mut slow = 0u64;
        for (i, &c) in self.bucket_counts.iter().enumerate() {
            let lower = if i == 0 {
                f64::NEG_INFINITY
            } else {
                self.bounds.get(i - 1).copied().unwrap_or(f64::INFINITY)
            };
            if lower >= threshold {
                slow = slow.saturating_add(c);
            }
        }
        slow
    }
}

/// The telemetry of one resource in one export.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceTelemetry {
    pub ident: ResourceIdent,
    pub spans: Vec<SpanObs>,
    pub points: Vec<HistPoint>,
}

/// One decoded OTLP export (trace or metrics), reduced to request observations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryBatch {
    pub resources: Vec<ResourceTelemetry>,
}

impl TelemetryBatch {
    pub fn observation_count(&self) -> usize {
        self.resources
            .iter()
            .map(|r| r.spans.len() + r.points.len())
            .sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// One alert of an Alertmanager webhook notification (`docs/formats.md#alertmanager-webhook`).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub status: AlertStatus,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: Timestamp,
    pub fingerprint: String,
    pub generator_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    Succeeded,
    Failed,
    Rejected,
}

impl ResultStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Succeeded => "succeeded",
            ResultStatus::Failed => "failed",
            ResultStatus::Rejected => "rejected",
        }
    }
}

/// An executor's report on a command (`docs/formats.md#executor-results`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutorResult {
    pub command_id: String,
    pub deploy_id: String,
    pub status: ResultStatus,
    pub at: Timestamp,
    #[serde(default)]
    pub executor: String,
    #[serde(default)]
    pub message: String,
}

/// An admin action that every instance applies (topic `topics.admin`):
/// pausing and resuming automation, resetting the circuit breaker and
/// maintenance windows opened and closed now are fleet-wide, and survive
/// restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminRecord {
    pub schema: String,
    pub action: AdminAction,
    pub actor: String,
    pub at: Timestamp,
    /// The instance that took the call (its host name), for the logs.
    #[serde(default)]
    pub instance: String,
    /// The window of `maintenance_open` and `maintenance_close`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenanceCall>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminAction {
    Pause,
    Resume,
    BreakerReset,
    MaintenanceOpen,
    MaintenanceClose,
}

impl AdminAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminAction::Pause => "pause",
            AdminAction::Resume => "resume",
            AdminAction::BreakerReset => "breaker_reset",
            AdminAction::MaintenanceOpen => "maintenance_open",
            AdminAction::MaintenanceClose => "maintenance_close",
        }
    }
}

/// A maintenance window opened (from the record's `at` to `until`) or
/// closed (by `id` alone) through the admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceCall {
    pub id: String,
    /// The services it covers; empty: every service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl MaintenanceCall {
    /// The id of a window opened at `at` on `instance` by `actor`: short,
    /// and the same wherever the record is read.
    pub fn id_for(at: Timestamp, instance: &str, actor: &str) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{}\n{instance}\n{actor}", at.0).as_bytes());
        format!("m-{}", hex(&digest[..6]))
    }
}

impl AdminRecord {
    /// Decodes an admin-topic record; anything else is malformed.
    pub fn decode(payload: &[u8]) -> Result<AdminRecord, String> {
        let r: AdminRecord =
            serde_json::from_slice(payload).map_err(|e| format!("invalid admin record: {e}"))?;
        if r.schema != ADMIN_SCHEMA {
            return Err(format!(
                "admin record schema {:?}, want {ADMIN_SCHEMA:?}",
                r.schema
            ));
        }
        let needs_window = matches!(
            r.action,
            AdminAction::MaintenanceOpen | AdminAction::MaintenanceClose
        );
        match &r.maintenance {
            None if needs_window => Err(format!(
                "admin record {} without maintenance",
                r.action.as_str()
            )),
            Some(m) if r.action == AdminAction::MaintenanceOpen && m.until.is_none() => {
                Err("admin record maintenance_open without maintenance.until".into())
            }
            _ => Ok(r),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Rollback,
    ApprovalRequired,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Rollback => "rollback",
            Action::ApprovalRequired => "approval_required",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    BurnRate,
    Alert,
    Manual,
    Release,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::BurnRate => "burn_rate",
            Trigger::Alert => "alert",
            Trigger::Manual => "manual",
            Trigger::Release => "release",
        }
    }

    /// Whether a person asked for it (bypasses guards 2–6).
    pub fn is_manual(self) -> bool {
        self == Trigger::Manual
    }
}

/// A rollback command (`docs/formats.md#rollback-commands`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub schema: String,
    pub command_id: String,
    pub action: Action,
    pub trigger: Trigger,
    pub deploy_id: String,
    pub release_id: Option<String>,
    pub service: String,
    pub environment: String,
    pub from_version: String,
    pub to_version: Option<String>,
    pub strategy: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub evidence: serde_json::Value,
    pub decided_at: Timestamp,
    pub issued_at: Timestamp,
}

/// The command id for (`deploy_id`, `action`): the same everywhere and
/// forever, so an id already on the commands topic is never emitted again.
pub fn command_id(deploy_id: &str, action: Action) -> String {
    let mut h = Sha256::new();
    h.update(b"rollbackd/command/v1\0");
    h.update(deploy_id.as_bytes());
    h.update(b"\0");
    h.update(action.as_str().as_bytes());
    hex(&h.finalize()[..16])
}

/// Lower-case hex, the form of every id rollbackd makes (command ids,
/// notification event ids, signatures).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub use audit::{AuditEvent, AuditRecord, Verdict, AUDIT_SCHEMA};
pub use input::{AdminCall, Input, Output, Refusal, TelemetryOutcome};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_ids_are_stable_and_distinct() {
        let a = command_id("d-42", Action::Rollback);
        assert_eq!(a, command_id("d-42", Action::Rollback));
        assert_eq!(a.len(), 32);
        assert_ne!(a, command_id("d-42", Action::ApprovalRequired));
        assert_ne!(a, command_id("d-43", Action::Rollback));
    }

    #[test]
    fn slow_count_uses_bucket_lower_bounds() {
        let p = HistPoint {
            series: 1,
            start: Timestamp(0),
            time: Timestamp(1),
            count: 10,
            bounds: vec![0.1, 0.5, 1.0],
            bucket_counts: vec![1, 2, 3, 4],
            unit_per_sec: 1.0,
            error: false,
            temporality: Temporality::Delta,
            kind: RequestKind::Http,
        };
        // buckets: (-inf,0.1] (0.1,0.5] (0.5,1] (1,inf)
        assert_eq!(p.slow_count(0.5), 7);
        assert_eq!(p.slow_count(0.3), 7);
        assert_eq!(p.slow_count(1.5), 0);
        assert_eq!(p.slow_count(0.05), 9);
        let ms = HistPoint {
            bounds: vec![100.0, 500.0, 1000.0],
            unit_per_sec: 1000.0,
            ..p
        };
        assert_eq!(ms.slow_count(0.5), 7);
    }
}
