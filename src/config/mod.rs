//! Configuration: TOML → validated [`Config`] (CONTRACT §7).
//!
//! Every key has a default (the named `default_*` functions say where each
//! value comes from), durations and sizes are human strings, and unknown keys
//! or invalid values are errors that name the key. Per-service `[slo]`
//! overrides are resolved here, once, into an effective [`Policy`] per
//! service, so the engine never merges config on its hot path.

mod describe;
pub mod notify;
mod secrets;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::stats::sequential::RateTest;
use crate::time::Duration;
pub use secrets::{Secrets, WEBHOOK_ROUTES};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

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

/// `kafka.transactions` (CONTRACT §5, §7).
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
struct SloTable {
    objective: Option<f64>,
    latency_threshold: Option<Duration>,
    latency_objective: Option<f64>,
    min_requests: Option<u64>,
    confidence: Option<f64>,
    warmup: Option<Duration>,
    evaluation_interval: Option<Duration>,
    watch_after_complete: Option<Duration>,
    allowed_lateness: Option<Duration>,
    windows: Option<Vec<WindowPair>>,
    /// Only valid inside `[slo.services.NAME]`.
    dry_run: Option<bool>,
    /// Only valid at the top level.
    services: Option<BTreeMap<String, SloTable>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardsConfig {
    pub dry_run: bool,
    pub cooldown: Duration,
    pub breaker_max_rollbacks: u32,
    pub breaker_window: Duration,
}

impl Default for GuardsConfig {
    fn default() -> Self {
        GuardsConfig {
            dry_run: false,
            // Long enough for a rollback to finish and its effect to show.
            cooldown: Duration::from_secs(600),
            breaker_max_rollbacks: 3,
            breaker_window: Duration::from_secs(900),
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
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            group_id: "rollbackd-executor".into(),
            name: "rollbackd-executor".into(),
            // Long enough for a Helm or Argo rollback on a big service.
            timeout: Duration::from_secs(300),
            templates: BTreeMap::new(),
        }
    }
}

/// The placeholders an executor template may use.
pub const PLACEHOLDERS: [&str; 4] = ["{service}", "{environment}", "{to_version}", "{deploy_id}"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    kafka: Option<KafkaConfig>,
    #[serde(default)]
    topics: Topics,
    #[serde(default)]
    http: HttpConfig,
    #[serde(default)]
    slo: SloTable,
    #[serde(default)]
    guards: GuardsConfig,
    #[serde(default)]
    alerts: AlertsConfig,
    #[serde(default)]
    limits: LimitsConfig,
    #[serde(default)]
    audit: AuditConfig,
    #[serde(default)]
    verify: VerifyConfig,
    #[serde(default)]
    log: LogConfig,
    #[serde(default)]
    telemetry: TelemetryConfig,
    #[serde(default)]
    executor: ExecutorConfig,
    #[serde(default)]
    notify: Vec<notify::NotifyConfig>,
}

/// The effective SLO policy of one service, with derived constants.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub objective: f64,
    pub latency_threshold: Duration,
    pub latency_objective: f64,
    pub min_requests: u64,
    pub confidence: f64,
    pub warmup: Duration,
    pub evaluation_interval: Duration,
    pub watch_after_complete: Duration,
    /// How long after its event time evidence is still judged: a slot of
    /// the attribution test is read for the last time this long after it
    /// ends; what arrives later is counted late and audited.
    pub allowed_lateness: Duration,
    pub windows: Vec<WindowPair>,
    pub dry_run: bool,
    /// Per window pair, the threshold tests of its errors and latency SLIs
    /// (H0: bad ratio ≤ burn_rate × budget).
    pub rate_tests: Vec<[RateTest; 2]>,
    /// Per SLI, the test that its bad ratio is below the lowest threshold
    /// of any pair (H0: ratio ≥ it): a restored version has recovered.
    pub recovery_tests: [RateTest; 2],
    /// Distinct window lengths, ascending; windows are kept per length.
    pub lengths: Vec<Duration>,
    /// For each pair, the indices of its short and long length in `lengths`.
    pub pair_index: Vec<(usize, usize)>,
}

impl Policy {
    pub fn longest(&self) -> Duration {
        self.lengths.last().copied().unwrap_or(Duration::ZERO)
    }

    pub fn error_budget(&self) -> f64 {
        1.0 - self.objective
    }

    pub fn latency_budget(&self) -> f64 {
        1.0 - self.latency_objective
    }

    /// This policy with other objectives and confidence, its derived
    /// constants computed again (what `simulate` varies over a grid).
    pub fn with_slo(&self, objective: f64, latency_objective: f64, confidence: f64) -> Policy {
        let mut p = Policy {
            objective,
            latency_objective,
            confidence,
            ..self.clone()
        };
        (p.rate_tests, p.recovery_tests) = (rate_tests(&p), recovery_tests(&p));
        p
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: Option<KafkaConfig>,
    pub topics: Topics,
    pub http: HttpConfig,
    pub http_listen: SocketAddr,
    pub http_max_body: usize,
    pub guards: GuardsConfig,
    pub alerts: AlertsConfig,
    pub limits: LimitsConfig,
    pub audit: AuditConfig,
    pub verify: VerifyConfig,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    pub executor: ExecutorConfig,
    /// `[[notify]]` sinks, validated and named.
    pub notify: Vec<notify::NotifyConfig>,
    pub default_policy: Arc<Policy>,
    pub service_policies: HashMap<String, Arc<Policy>>,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_toml("").expect("built-in defaults are valid")
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml(&text)
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string().trim().into()))?;
        Config::validate(raw)
    }

    /// The effective policy for `service`.
    pub fn policy(&self, service: &str) -> &Arc<Policy> {
        self.service_policies
            .get(service)
            .unwrap_or(&self.default_policy)
    }

    /// The longest window of any policy: how far back telemetry matters.
    pub fn longest_window(&self) -> Duration {
        self.service_policies
            .values()
            .map(|p| p.longest())
            .chain(std::iter::once(self.default_policy.longest()))
            .max()
            .unwrap_or(Duration::ZERO)
    }

    fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        if let Some(k) = &raw.kafka {
            if k.brokers.trim().is_empty() {
                return Err(invalid("kafka.brokers", "must not be empty"));
            }
            if k.group_id.trim().is_empty() {
                return Err(invalid("kafka.group_id", "must not be empty"));
            }
            if k.evidence_flush.nanos() <= 0 || k.evidence_flush > Duration::from_secs(10) {
                return Err(invalid(
                    "kafka.evidence_flush",
                    "must be greater than zero and at most 10s",
                ));
            }
            if k.stuck_after < Duration::from_secs(1)
                || k.stuck_after > Duration::from_secs(3600)
                || k.stuck_after <= k.evidence_flush
            {
                return Err(invalid(
                    "kafka.stuck_after",
                    "must be between 1s and 1h, and longer than kafka.evidence_flush",
                ));
            }
            for (key, v) in &k.properties {
                if kafka_property_string(v).is_none() {
                    return Err(invalid(
                        format!("kafka.properties.{key}"),
                        "must be a string, integer, float or boolean",
                    ));
                }
            }
        }
        let topics = [
            ("topics.deploy_events", &raw.topics.deploy_events),
            ("topics.otlp_spans", &raw.topics.otlp_spans),
            ("topics.otlp_metrics", &raw.topics.otlp_metrics),
            ("topics.commands", &raw.topics.commands),
            ("topics.results", &raw.topics.results),
            ("topics.audit", &raw.topics.audit),
            ("topics.dead_letter", &raw.topics.dead_letter),
            ("topics.admin", &raw.topics.admin),
            ("topics.evidence", &raw.topics.evidence),
        ];
        for (i, (key, v)) in topics.iter().enumerate() {
            if v.trim().is_empty() {
                return Err(invalid(*key, "must not be empty"));
            }
            if v.as_str() == "alertmanager" {
                return Err(invalid(
                    *key,
                    "\"alertmanager\" is reserved for replay records",
                ));
            }
            if let Some((other, _)) = topics[..i].iter().find(|(_, o)| o == v) {
                return Err(invalid(*key, format!("{v:?} is already used by {other}")));
            }
        }
        let http_listen = resolve_listen(&raw.http.listen).ok_or_else(|| {
            invalid(
                "http.listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:9464 or localhost:9464",
                    raw.http.listen
                ),
            )
        })?;
        let http_max_body = parse_size(&raw.http.max_body).ok_or_else(|| {
            invalid(
                "http.max_body",
                format!("{:?} is not a size like \"4MiB\"", raw.http.max_body),
            )
        })?;
        if http_max_body == 0 {
            return Err(invalid("http.max_body", "must be greater than zero"));
        }
        let verify = raw.verify.window.nanos();
        if !(1_000_000_000..=86_400 * 1_000_000_000).contains(&verify) {
            return Err(invalid("verify.window", "must be 1s to 1d"));
        }
        if raw.guards.cooldown.nanos() < 0 {
            return Err(invalid("guards.cooldown", "must not be negative"));
        }
        if raw.guards.breaker_max_rollbacks == 0 {
            return Err(invalid(
                "guards.breaker_max_rollbacks",
                "must be at least 1",
            ));
        }
        if raw.guards.breaker_window.nanos() <= 0 {
            return Err(invalid(
                "guards.breaker_window",
                "must be greater than zero",
            ));
        }
        if raw.alerts.service_label.is_empty() {
            return Err(invalid("alerts.service_label", "must not be empty"));
        }
        if raw.alerts.deploy_id_label.is_empty() {
            return Err(invalid("alerts.deploy_id_label", "must not be empty"));
        }
        if raw.limits.max_active_deploys == 0 {
            return Err(invalid("limits.max_active_deploys", "must be at least 1"));
        }
        if raw.limits.max_series == 0 {
            return Err(invalid("limits.max_series", "must be at least 1"));
        }
        if raw.limits.max_clock_skew.nanos() < 0 {
            return Err(invalid("limits.max_clock_skew", "must not be negative"));
        }
        if raw.limits.max_deploy_age.nanos() < 60_000_000_000 {
            return Err(invalid("limits.max_deploy_age", "must be at least 1m"));
        }
        if raw.executor.timeout.nanos() <= 0 {
            return Err(invalid("executor.timeout", "must be greater than zero"));
        }
        for (strategy, argv) in &raw.executor.templates {
            let key = format!("executor.templates.{strategy}");
            if argv.is_empty() || argv[0].trim().is_empty() {
                return Err(invalid(key, "must start with a program"));
            }
            if PLACEHOLDERS.contains(&argv[0].as_str()) {
                return Err(invalid(key, "the program must not be a placeholder"));
            }
            for a in argv {
                if a.contains('{') && !PLACEHOLDERS.contains(&a.as_str()) {
                    return Err(invalid(
                        key,
                        format!("{a:?}: placeholders are whole arguments, one of {PLACEHOLDERS:?}"),
                    ));
                }
            }
        }
        if raw.slo.dry_run.is_some() {
            return Err(invalid(
                "slo.dry_run",
                "unknown key here: use guards.dry_run, or dry_run in [slo.services.NAME]",
            ));
        }
        let notify = notify::validate(raw.notify, &raw.http.listen)?;
        let base = resolve_policy("slo", &SloTable::default(), &raw.slo, raw.guards.dry_run)?;
        let mut service_policies = HashMap::new();
        for (name, table) in raw.slo.services.iter().flatten() {
            let prefix = format!("slo.services.{name}");
            if table.services.is_some() {
                return Err(invalid(
                    format!("{prefix}.services"),
                    "services cannot be nested",
                ));
            }
            let inherited = SloTable {
                services: None,
                dry_run: None,
                ..raw.slo.clone()
            };
            let policy = resolve_policy(&prefix, &inherited, table, raw.guards.dry_run)?;
            service_policies.insert(name.clone(), Arc::new(policy));
        }
        Ok(Config {
            kafka: raw.kafka,
            topics: raw.topics,
            http: raw.http,
            http_listen,
            http_max_body,
            guards: raw.guards,
            alerts: raw.alerts,
            limits: raw.limits,
            audit: raw.audit,
            verify: raw.verify,
            log: raw.log,
            telemetry: raw.telemetry,
            executor: raw.executor,
            notify,
            default_policy: Arc::new(base),
            service_policies,
        })
    }
}

/// An address to listen on: an IP address and port, or a host name (such as
/// `localhost`) and port, resolved now; IPv4 preferred when a name has both.
fn resolve_listen(s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse() {
        return Some(a);
    }
    let (host, port) = s.rsplit_once(':')?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return None;
    }
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(s).ok()?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
}

/// A Kafka property as the string librdkafka wants.
pub fn kafka_property_string(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

// The contract's defaults (CONTRACT §7): a 99.9% availability and 99% of
// requests under 500ms, with the SRE workbook's fast- and slow-burn pairs.
fn default_windows() -> Vec<WindowPair> {
    vec![
        WindowPair {
            short: Duration::from_secs(60),
            long: Duration::from_secs(300),
            burn_rate: 14.4,
        },
        WindowPair {
            short: Duration::from_secs(300),
            long: Duration::from_secs(1800),
            burn_rate: 6.0,
        },
    ]
}

fn resolve_policy(
    prefix: &str,
    parent: &SloTable,
    own: &SloTable,
    global_dry_run: bool,
) -> Result<Policy, ConfigError> {
    macro_rules! pick {
        ($field:ident, $default:expr) => {
            own.$field
                .clone()
                .or_else(|| parent.$field.clone())
                .unwrap_or_else(|| $default)
        };
    }
    let objective = pick!(objective, 0.999);
    let latency_threshold = pick!(latency_threshold, Duration::from_millis(500));
    let latency_objective = pick!(latency_objective, 0.99);
    let min_requests = pick!(min_requests, 0);
    let confidence = pick!(confidence, 0.95);
    let warmup = pick!(warmup, Duration::from_secs(5));
    let evaluation_interval = pick!(evaluation_interval, Duration::from_secs(5));
    let watch_after_complete = pick!(watch_after_complete, Duration::from_secs(900));
    // A minute covers what usually stands between a request and rollbackd:
    // a Collector's tail sampling holds spans for its decision_wait (30s by
    // default) before it exports them, then batching and consumer lag add
    // seconds. Longer keeps each slot open (and remembered) longer and makes
    // a side that stopped reporting wait longer before its slots are read.
    // Never longer than the longest window when not set (windows of
    // seconds, as tests use, keep their own length).
    let allowed_lateness = own.allowed_lateness.or(parent.allowed_lateness);
    let windows = pick!(windows, default_windows());
    let key = |k: &str| format!("{prefix}.{k}");

    if !(objective > 0.0 && objective < 1.0) {
        return Err(invalid(
            key("objective"),
            "must be between 0 and 1 (exclusive)",
        ));
    }
    if !(latency_objective > 0.0 && latency_objective < 1.0) {
        return Err(invalid(
            key("latency_objective"),
            "must be between 0 and 1 (exclusive)",
        ));
    }
    if latency_threshold.nanos() <= 0 {
        return Err(invalid(
            key("latency_threshold"),
            "must be greater than zero",
        ));
    }
    if !(0.5..1.0).contains(&confidence) {
        return Err(invalid(key("confidence"), "must be in [0.5, 1)"));
    }
    if warmup.nanos() < 0 {
        return Err(invalid(key("warmup"), "must not be negative"));
    }
    if evaluation_interval.nanos() < 1_000_000 {
        return Err(invalid(key("evaluation_interval"), "must be at least 1ms"));
    }
    if watch_after_complete.nanos() < 0 {
        return Err(invalid(key("watch_after_complete"), "must not be negative"));
    }
    if windows.is_empty() {
        return Err(invalid(key("windows"), "needs at least one window pair"));
    }
    let longest = windows
        .iter()
        .map(|w| w.long.max(w.short))
        .max()
        .unwrap_or(Duration::ZERO);
    let allowed_lateness = match allowed_lateness {
        None => Duration::from_secs(60).min(longest),
        Some(l) if l.nanos() < 0 => {
            return Err(invalid(key("allowed_lateness"), "must not be negative"));
        }
        Some(l) if l > longest => {
            return Err(invalid(
                key("allowed_lateness"),
                format!("must not be longer than the longest window ({longest}): older evidence is outside every window"),
            ));
        }
        Some(l) => l,
    };
    for (i, w) in windows.iter().enumerate() {
        let wk = format!("{prefix}.windows[{i}]");
        if w.short.nanos() < 1_000_000_000 {
            return Err(invalid(format!("{wk}.short"), "must be at least 1s"));
        }
        if w.long.nanos() < w.short.nanos() {
            return Err(invalid(
                format!("{wk}.long"),
                "must not be shorter than short",
            ));
        }
        if w.long.nanos() > 7 * 86_400 * 1_000_000_000 {
            return Err(invalid(format!("{wk}.long"), "must be at most 7d"));
        }
        if !(w.burn_rate.is_finite() && w.burn_rate > 0.0) {
            return Err(invalid(
                format!("{wk}.burn_rate"),
                "must be greater than zero",
            ));
        }
    }
    let mut lengths: Vec<Duration> = windows.iter().flat_map(|w| [w.short, w.long]).collect();
    lengths.sort();
    lengths.dedup();
    let index = |d: Duration| lengths.iter().position(|&l| l == d).unwrap_or(0);
    let pair_index = windows
        .iter()
        .map(|w| (index(w.short), index(w.long)))
        .collect();
    let mut policy = Policy {
        objective,
        latency_threshold,
        latency_objective,
        min_requests,
        confidence,
        warmup,
        evaluation_interval,
        watch_after_complete,
        allowed_lateness,
        dry_run: global_dry_run || own.dry_run.unwrap_or(false),
        rate_tests: Vec::new(),
        recovery_tests: [RateTest::below(1.0), RateTest::below(1.0)],
        windows,
        lengths,
        pair_index,
    };
    (policy.rate_tests, policy.recovery_tests) = (rate_tests(&policy), recovery_tests(&policy));
    Ok(policy)
}

fn recovery_tests(p: &Policy) -> [RateTest; 2] {
    let lowest = p
        .windows
        .iter()
        .map(|w| w.burn_rate)
        .fold(f64::INFINITY, f64::min);
    [
        RateTest::below(lowest * p.error_budget()),
        RateTest::below(lowest * p.latency_budget()),
    ]
}

fn rate_tests(p: &Policy) -> Vec<[RateTest; 2]> {
    p.windows
        .iter()
        .map(|w| {
            [
                RateTest::new(w.burn_rate * p.error_budget()),
                RateTest::new(w.burn_rate * p.latency_budget()),
            ]
        })
        .collect()
}

/// `"4MiB"`, `"512KiB"`, `"1GiB"`, `"1MB"`, `"4096"` → bytes.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}
