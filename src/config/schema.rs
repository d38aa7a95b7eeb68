//! The TOML schema: one struct per table, as serde reads it, with the
//! built-in default of every key (the named `default_*` functions and the
//! `Default` impls say where each value comes from).
//!
//! Nothing here is checked beyond its type: [`super::validate`] does that.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::maintenance::MaintenanceWindow;
use super::notify;
use crate::model::RequestKind;
use crate::time::Duration;

/// How OTLP payloads on the telemetry topics are encoded, as the
/// Collector's Kafka exporter names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpEncoding {
    #[serde(rename = "otlp_proto")]
    Proto,
    #[serde(rename = "otlp_json")]
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    #[serde(default = "default_brokers")]
    pub brokers: String,
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Commands, audit records and evidence offsets in one transaction.
    #[serde(default)]
    pub transactions: Transactions,
    /// The env var holding this instance's stable id (a DaemonSet's node
    /// name, a pod name): both consumer groups then use static membership
    /// (`group.instance.id`) and the owner's transactional id is derived
    /// from it, so a restarted instance takes its place at once and fences
    /// its predecessor. Empty: dynamic membership.
    #[serde(default)]
    pub instance_id_env: String,
    /// How often intake sends the evidence it gathered to the owners.
    #[serde(default = "default_evidence_flush")]
    pub evidence_flush: Duration,
    /// A stage (intake, owner) with work in hand and no progress for this
    /// long is stuck: `/healthz` answers 503 naming it, so the
    /// orchestrator restarts the instance.
    #[serde(default = "default_stuck_after")]
    pub stuck_after: Duration,
    /// Passed to librdkafka as is (security.protocol, sasl.*, ssl.*).
    #[serde(default)]
    pub properties: BTreeMap<String, toml::Value>,
}

/// `kafka.transactions` (`docs/guarantees.md#start-up-and-recovery`, `docs/config.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transactions {
    /// On when the broker supports them (probed at start), off otherwise.
    #[default]
    Auto,
    /// Required: start fails without them.
    On,
    Off,
}

// Short enough that a decision follows its evidence within a few hundred
// milliseconds; long enough that a busy partition's requests are folded
// into a few records a second.
fn default_evidence_flush() -> Duration {
    Duration::from_millis(100)
}

// Longer than a broker's rolling restart or a leader election (tens of
// seconds) and than librdkafka's message timeouts used here (15 s), so
// that only a stage that cannot recover by itself restarts the instance.
fn default_stuck_after() -> Duration {
    Duration::from_secs(60)
}

// The broker a local install listens on.
fn default_brokers() -> String {
    "127.0.0.1:9092".into()
}
fn default_group_id() -> String {
    "rollbackd".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    pub deploy_events: String,
    pub otlp_spans: String,
    pub otlp_metrics: String,
    pub otlp_encoding: OtlpEncoding,
    pub commands: String,
    pub results: String,
    pub audit: String,
    pub dead_letter: String,
    /// Admin actions every instance applies (pause, resume, breaker reset).
    pub admin: String,
    /// Internal: evidence from intake to the owner of each (service,
    /// environment).
    pub evidence: String,
    /// Each deploy's view, published by its owner and read whole by
    /// every instance (compacted, key = deploy id).
    pub views: String,
}

impl Default for Topics {
    // The OpenTelemetry Collector Kafka exporter's default topic names and
    // encoding, and rollbackd's own topics.
    fn default() -> Self {
        Topics {
            deploy_events: "deploy-events".into(),
            otlp_spans: "otlp_spans".into(),
            otlp_metrics: "otlp_metrics".into(),
            otlp_encoding: OtlpEncoding::Proto,
            commands: "rollback-commands".into(),
            results: "rollback-results".into(),
            audit: "rollbackd-audit".into(),
            dead_letter: "rollbackd-dlq".into(),
            admin: "rollbackd-admin".into(),
            evidence: "rollbackd-evidence".into(),
            views: "rollbackd-views".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
    pub webhook_token_env: String,
    pub admin_token_env: String,
    pub max_body: String,
    /// `GET /v1/status` without the admin token (read-only; the page itself
    /// is always served).
    pub status_public: bool,
    /// Serve the webhook routes (deploy events, Alertmanager, OTLP) with no
    /// webhook token set. Off: `run` refuses to start without the token,
    /// since anyone who reaches the port could start a deploy and fire an
    /// alert that rolls it back.
    pub allow_unauthenticated: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            // 9464 is the port OpenTelemetry's Prometheus exporters use; loopback
            // by default so nothing is exposed until an operator says so.
            listen: "127.0.0.1:9464".into(),
            webhook_token_env: "ROLLBACKD_WEBHOOK_TOKEN".into(),
            admin_token_env: "ROLLBACKD_ADMIN_TOKEN".into(),
            max_body: "4MiB".into(),
            status_public: false,
            allow_unauthenticated: false,
        }
    }
}

/// One multi-window burn-rate pair (Google SRE workbook, ch. 5).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowPair {
    pub short: Duration,
    pub long: Duration,
    pub burn_rate: f64,
}

/// `[slo]` and `[slo.services.NAME]`: every key optional; absent keys
/// inherit (service → `[slo]` → built-in default).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SloTable {
    pub(super) objective: Option<f64>,
    pub(super) latency_threshold: Option<Duration>,
    pub(super) latency_objective: Option<f64>,
    pub(super) min_requests: Option<u64>,
    pub(super) confidence: Option<f64>,
    pub(super) warmup: Option<Duration>,
    pub(super) evaluation_interval: Option<Duration>,
    pub(super) watch_after_complete: Option<Duration>,
    pub(super) allowed_lateness: Option<Duration>,
    pub(super) windows: Option<Vec<WindowPair>>,
    pub(super) requests: Option<Vec<RequestKind>>,
    /// Only valid inside `[slo.services.NAME]`.
    pub(super) dry_run: Option<bool>,
    /// Only valid at the top level.
    pub(super) services: Option<BTreeMap<String, SloTable>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardsConfig {
    pub dry_run: bool,
    pub cooldown: Duration,
    pub breaker_max_rollbacks: u32,
    pub breaker_window: Duration,
    /// `[[guards.maintenance]]`: when automatic commands are held back.
    pub maintenance: Vec<MaintenanceWindow>,
}

impl Default for GuardsConfig {
    fn default() -> Self {
        GuardsConfig {
            dry_run: false,
            // Long enough for a rollback to finish and its effect to show.
            cooldown: Duration::from_secs(600),
            breaker_max_rollbacks: 3,
            breaker_window: Duration::from_secs(900),
            maintenance: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    pub rollback_on_severity: Vec<String>,
    pub service_label: String,
    pub deploy_id_label: String,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            rollback_on_severity: vec!["critical".into()],
            service_label: "service".into(),
            deploy_id_label: "deploy_id".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_active_deploys: usize,
    pub max_series: usize,
    /// A deploy event whose `at` is further ahead of the clock than this is
    /// malformed: a wrong clock must not hold a service for years.
    pub max_clock_skew: Duration,
    /// An active deploy that never completes (a CI job that died) retires
    /// after this long.
    pub max_deploy_age: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_active_deploys: 10_000,
            max_series: 100_000,
            // Hosts synchronised by NTP agree within milliseconds; minutes
            // leave room for a CI runner with a drifting clock.
            max_clock_skew: Duration::from_secs(300),
            // A rollout that has not completed within a day is over.
            max_deploy_age: Duration::from_secs(86_400),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub path: String,
}

/// `[verify]`: after a successful rollback, how long the restored version
/// is watched to tell whether users are fine again.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    pub window: Duration,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            window: Duration::from_secs(600),
        }
    }
}

/// `[deploys]`: deploys found in the telemetry, and deploys of versions
/// known to be good.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploysConfig {
    /// A version of a service seen serving for the first time (recently)
    /// starts a deploy, its baseline the version that served before.
    pub infer: bool,
    /// The services whose deploys are inferred; empty: every service.
    pub infer_services: Vec<String>,
    /// A version seen serving within this is not new.
    pub version_memory: Duration,
    /// How long a version must be absent to be gone, and how long after a
    /// service is first seen its versions are all taken as known.
    pub infer_settle: Duration,
    /// A deploy of a version seen healthy within this is fast-tracked;
    /// zero: never.
    pub fast_track_window: Duration,
}

impl Default for DeploysConfig {
    fn default() -> Self {
        DeploysConfig {
            infer: false,
            infer_services: Vec::new(),
            version_memory: Duration::from_secs(24 * 3600),
            infer_settle: Duration::from_secs(120),
            fast_track_window: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl DeploysConfig {
    /// Whether deploys of `service` are inferred from its telemetry.
    pub fn infers(&self, service: &str) -> bool {
        self.infer
            && (self.infer_services.is_empty() || self.infer_services.iter().any(|s| s == service))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub otlp_endpoint: String,
}

/// `[executor]`: the reference executor (`rollbackd execute`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorConfig {
    /// Its own consumer group on the commands topic.
    pub group_id: String,
    /// The `executor` field of the results it writes.
    pub name: String,
    /// How long one command may run before it is killed and failed.
    pub timeout: Duration,
    /// argv templates by strategy (`canary`, `rolling`, …, or `default`).
    /// Placeholders `{service}`, `{environment}`, `{to_version}`,
    /// `{deploy_id}` must be whole arguments.
    pub templates: BTreeMap<String, Vec<String>>,
    /// Strategies executed as a commit to a Git repository instead of a
    /// program (`[executor.git.<strategy>]`; `default` as for templates).
    pub git: BTreeMap<String, GitStrategy>,
    /// Where the Git strategies keep their clones, one directory per
    /// strategy; empty: `rollbackd-executor` in the system's temp dir.
    pub work_dir: String,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            group_id: "rollbackd-executor".into(),
            name: "rollbackd-executor".into(),
            // Long enough for a Helm or Argo rollback on a big service.
            timeout: Duration::from_secs(300),
            templates: BTreeMap::new(),
            git: BTreeMap::new(),
            work_dir: String::new(),
        }
    }
}

/// `[executor.git.<strategy>]`: a rollback is a commit that sets the
/// version in one file of a repository back to `to_version`
/// (`rollbackd::executor::git`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitStrategy {
    /// A URL or a path, as `git fetch` takes it.
    pub repository: String,
    #[serde(default = "default_git_branch")]
    pub branch: String,
    /// The file that holds the version, relative to the repository's root;
    /// placeholders as in templates.
    pub file: String,
    /// The text around the version, `{version}` marking it; placeholders
    /// as in templates.
    pub pattern: String,
    /// `Name <email>`, the commit's author and committer.
    #[serde(default = "default_git_author")]
    pub author: String,
    /// The env var holding the HTTPS password or token; empty: none.
    #[serde(default)]
    pub token_env: String,
    /// A file holding the HTTPS password or token (a mounted secret), read
    /// for every command so that a rotated one is used; empty: none.
    #[serde(default)]
    pub credentials_file: String,
    /// The HTTPS user name sent with the token.
    #[serde(default = "default_git_username")]
    pub username: String,
}

/// Where GitOps controllers watch by default.
fn default_git_branch() -> String {
    "main".into()
}

fn default_git_author() -> String {
    "rollbackd <rollbackd@localhost>".into()
}

/// What GitHub expects with an app's or a fine-grained token; GitLab and
/// most servers accept any user name with a token.
fn default_git_username() -> String {
    "x-access-token".into()
}

/// The placeholders an executor template may use.
pub const PLACEHOLDERS: [&str; 4] = ["{service}", "{environment}", "{to_version}", "{deploy_id}"];

/// The whole file as written: every table, before it is checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) kafka: Option<KafkaConfig>,
    #[serde(default)]
    pub(super) topics: Topics,
    #[serde(default)]
    pub(super) http: HttpConfig,
    #[serde(default)]
    pub(super) slo: SloTable,
    #[serde(default)]
    pub(super) guards: GuardsConfig,
    #[serde(default)]
    pub(super) alerts: AlertsConfig,
    #[serde(default)]
    pub(super) limits: LimitsConfig,
    #[serde(default)]
    pub(super) audit: AuditConfig,
    #[serde(default)]
    pub(super) verify: VerifyConfig,
    #[serde(default)]
    pub(super) deploys: DeploysConfig,
    #[serde(default)]
    pub(super) log: LogConfig,
    #[serde(default)]
    pub(super) telemetry: TelemetryConfig,
    #[serde(default)]
    pub(super) executor: ExecutorConfig,
    #[serde(default)]
    pub(super) notify: Vec<notify::NotifyConfig>,
}
