//! rollbackd's own metrics (Prometheus text format, prefix `rollbackd_`).
//!
//! Label values are bounded sets (sources, outcomes, verdicts, actions,
//! triggers, reasons, statuses); deploy ids and services never become
//! labels — they are in the logs and the audit records.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::model::audit::DeployAudit;
use crate::model::{AuditEvent, AuditRecord, Command};

/// Every metric handle, registered in one registry.
pub struct Metrics {
    pub registry: Registry,
    pub records: IntCounterVec,
    pub observations: IntCounter,
    pub observations_repeated: IntCounter,
    pub active_deploys: IntGauge,
    pub deploys_by_state: IntGaugeVec,
    pub burn_rate_max: GaugeVec,
    pub decisions: IntCounterVec,
    pub commands: IntCounterVec,
    pub suppressions: IntCounterVec,
    pub breaker_open: IntGauge,
    pub paused: IntGauge,
    pub ready: IntGauge,
    pub stage_ready: IntGaugeVec,
    pub stage_stuck: IntGaugeVec,
    pub stage_busy: IntGaugeVec,
    pub kafka_client_rebuilds: IntCounterVec,
    pub evidence_records: IntCounter,
    pub evidence_bytes: IntCounter,
    pub owned_partitions: IntGauge,
    pub transactions: IntCounterVec,
    pub consumer_lag: IntGauge,
    pub dead_letters: IntCounter,
    pub deploys_expired: IntCounter,
    pub results: IntCounterVec,
    pub detection_seconds: Histogram,
    pub decision_latency_seconds: Histogram,
    pub time_to_rollback_seconds: Histogram,
    pub verifications: IntCounterVec,
    pub recovery_seconds: Histogram,
    pub notify: NotifyMetrics,
}

/// The notification sinks' metrics, labelled by sink name (a bounded set:
/// the config's `[[notify]]` tables); cloned into the sinks' workers.
#[derive(Clone)]
pub struct NotifyMetrics {
    /// By sink and outcome: delivered, failed (after its retries, or
    /// refused), dropped (its queue was full).
    pub notifications: IntCounterVec,
    pub retries: IntCounterVec,
    pub queued: IntGaugeVec,
    /// From the audit record being offered to the receiver's 2xx.
    pub delivery_seconds: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help).namespace("rollbackd"), labels)
        .expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c =
        IntCounter::with_opts(Opts::new(name, help).namespace("rollbackd")).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn int_gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help).namespace("rollbackd"), labels)
        .expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g =
        GaugeVec::new(Opts::new(name, help).namespace("rollbackd"), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g =
        IntGauge::with_opts(Opts::new(name, help).namespace("rollbackd")).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(
        HistogramOpts::new(name, help)
            .namespace("rollbackd")
            .buckets(buckets),
    )
    .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        Metrics {
            records: counter_vec(
                &r,
                "records_total",
                "Input records by source and outcome (ok, malformed, late, unmatched).",
                &["source", "outcome"],
            ),
            observations: counter(
                &r,
                "observations_total",
                "Request observations added to deploy windows.",
            ),
            observations_repeated: counter(
                &r,
                "observations_repeated_total",
                "Observations of an HTTP request applied before (its exporter sent it again after an error): skipped, counted once.",
            ),
            active_deploys: gauge(&r, "active_deploys", "Deploys being watched."),
            deploys_by_state: int_gauge_vec(
                &r,
                "deploys",
                "Active deploys by state: commanded, awaiting_approval, verifying (rolled back, restored version under watch), or the latest verdict (pending: not evaluated yet).",
                &["state"],
            ),
            burn_rate_max: gauge_vec(
                &r,
                "burn_rate_max",
                "The highest long-window burn rate across active deploys, per SLI and window pair (short/long).",
                &["sli", "window"],
            ),
            decisions: counter_vec(
                &r,
                "decisions_total",
                "Verdicts reached (audited decisions) by verdict.",
                &["verdict"],
            ),
            commands: counter_vec(
                &r,
                "commands_total",
                "Commands emitted by action and trigger.",
                &["action", "trigger"],
            ),
            suppressions: counter_vec(
                &r,
                "suppressions_total",
                "Decisions held back by a guard, by reason.",
                &["reason"],
            ),
            breaker_open: gauge(&r, "breaker_open", "1 while the circuit breaker is open."),
            paused: gauge(&r, "automation_paused", "1 while automation is paused."),
            ready: gauge(
                &r,
                "ready",
                "1 while the agent is ready (recovered, broker reachable, commands flowing).",
            ),
            stage_ready: int_gauge_vec(
                &r,
                "stage_ready",
                "1 while a stage of the agent is ready: control (control topics read), intake (telemetry partitions held), owner (owned evidence read back), broker (reachable), emit (outputs acknowledged).",
                &["stage"],
            ),
            stage_stuck: int_gauge_vec(
                &r,
                "stage_stuck",
                "1 while a stage (intake, owner) has had work in hand and made no progress for kafka.stuck_after: /healthz answers 503.",
                &["stage"],
            ),
            stage_busy: int_gauge_vec(
                &r,
                "stage_busy",
                "1 while a stage (intake, owner) has work in hand: records consumed and not yet acknowledged downstream, a batch being retried.",
                &["stage"],
            ),
            kafka_client_rebuilds: counter_vec(
                &r,
                "kafka_client_rebuilds_total",
                "Kafka producer clients built again after a fatal error, by client (evidence, owner).",
                &["client"],
            ),
            evidence_records: counter(
                &r,
                "evidence_records_total",
                "Evidence records intake sent to the owners.",
            ),
            evidence_bytes: counter(
                &r,
                "evidence_bytes_total",
                "Bytes of the evidence records intake sent to the owners.",
            ),
            owned_partitions: gauge(
                &r,
                "owned_partitions",
                "Evidence partitions this instance owns (decides for), read back.",
            ),
            transactions: counter_vec(
                &r,
                "transactions_total",
                "Owner transactions (commands, audit records and evidence offsets) by outcome: committed, aborted, fenced.",
                &["outcome"],
            ),
            consumer_lag: gauge(
                &r,
                "consumer_lag_records",
                "Telemetry records on this instance's partitions not yet applied (high watermark minus applied offset; -1 until known).",
            ),
            dead_letters: counter(
                &r,
                "dead_letters_total",
                "Malformed records copied to the dead-letter topic.",
            ),
            deploys_expired: counter(
                &r,
                "deploys_expired_total",
                "Deploys retired because they never completed within limits.max_deploy_age.",
            ),
            results: counter_vec(
                &r,
                "results_total",
                "Executor results by status: the inputs of rollback success rate.",
                &["status"],
            ),
            detection_seconds: histogram(
                &r,
                "detection_seconds",
                "From the deploy's start to the decision to roll it back.",
                vec![
                    5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1800.0,
                ],
            ),
            decision_latency_seconds: histogram(
                &r,
                "decision_latency_seconds",
                "From consuming the decisive record to handing the command to the sink (Kafka producer or stdout).",
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            ),
            time_to_rollback_seconds: histogram(
                &r,
                "time_to_rollback_seconds",
                "From the decision to the executor's succeeded result.",
                vec![5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0],
            ),
            verifications: counter_vec(
                &r,
                "rollback_verifications_total",
                "How successful rollbacks turned out: recovered, not_recovered (the restored version still burns), inconclusive.",
                &["outcome"],
            ),
            recovery_seconds: histogram(
                &r,
                "rollback_recovery_seconds",
                "From the executor's succeeded result to the restored version confidently below every threshold.",
                vec![5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0],
            ),
            notify: NotifyMetrics {
                notifications: counter_vec(
                    &r,
                    "notifications_total",
                    "Notifications by sink and outcome: delivered, failed (after its retries, or refused by the receiver), dropped (the sink's queue was full).",
                    &["sink", "outcome"],
                ),
                retries: counter_vec(
                    &r,
                    "notification_retries_total",
                    "Delivery attempts after a notification's first, by sink.",
                    &["sink"],
                ),
                queued: int_gauge_vec(
                    &r,
                    "notification_queue",
                    "Notifications waiting for delivery, by sink.",
                    &["sink"],
                ),
                delivery_seconds: {
                    let h = HistogramVec::new(
                        HistogramOpts::new(
                            "notification_delivery_seconds",
                            "From an audit record's arrival at the notifier to the receiver's 2xx, by sink.",
                        )
                        .namespace("rollbackd")
                        .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
                        &["sink"],
                    )
                    .expect("valid metric");
                    r.register(Box::new(h.clone())).expect("unique metric");
                    h
                },
            },
            registry: r,
        }
    }

    /// Counts the audit records the engine produced (decisions,
    /// suppressions, results). Commands are counted by [`Metrics::count_emitted`]
    /// once this instance emitted them.
    pub fn count_audits<'a>(&self, audits: impl Iterator<Item = &'a AuditRecord>) {
        for a in audits {
            match &a.event {
                AuditEvent::Decision(d) => {
                    self.decisions
                        .with_label_values(&[d.verdict.as_str()])
                        .inc();
                }
                AuditEvent::Suppressed(s) => {
                    self.suppressions
                        .with_label_values(&[s.reason().as_str()])
                        .inc();
                }
                AuditEvent::Result(r) => {
                    self.results.with_label_values(&[r.status.as_str()]).inc();
                    if let Some(took) = r.time_to_rollback {
                        self.time_to_rollback_seconds
                            .observe(took.as_secs_f64().max(0.0));
                    }
                }
                AuditEvent::Verification(v) => {
                    self.verifications
                        .with_label_values(&[v.outcome.as_str()])
                        .inc();
                    if let Some(took) = v.time_to_recover_from_result {
                        self.recovery_seconds.observe(took.as_secs_f64().max(0.0));
                    }
                }
                AuditEvent::Deploy(DeployAudit::Expired { .. }) => self.deploys_expired.inc(),
                _ => {}
            }
        }
    }

    /// Counts a command this instance emitted, and the time to detect it.
    pub fn count_emitted(&self, cmd: &Command, audits: &[AuditRecord]) {
        self.commands
            .with_label_values(&[cmd.action.as_str(), cmd.trigger.as_str()])
            .inc();
        let detected = audits.iter().find_map(|a| match &a.event {
            AuditEvent::Command(c) => c.detected_after,
            _ => None,
        });
        if let Some(d) = detected {
            self.detection_seconds.observe(d.as_secs_f64());
        }
    }

    /// Every sample name the agent can export (histograms with their
    /// `_bucket`, `_sum` and `_count` series): what dashboards and alert
    /// rules may query.
    pub fn names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let plain: [&dyn Collector; 28] = [
            &self.records,
            &self.observations,
            &self.observations_repeated,
            &self.active_deploys,
            &self.deploys_by_state,
            &self.burn_rate_max,
            &self.decisions,
            &self.commands,
            &self.suppressions,
            &self.breaker_open,
            &self.paused,
            &self.ready,
            &self.stage_ready,
            &self.stage_stuck,
            &self.stage_busy,
            &self.kafka_client_rebuilds,
            &self.evidence_records,
            &self.evidence_bytes,
            &self.owned_partitions,
            &self.transactions,
            &self.consumer_lag,
            &self.dead_letters,
            &self.deploys_expired,
            &self.results,
            &self.verifications,
            &self.notify.notifications,
            &self.notify.retries,
            &self.notify.queued,
        ];
        let mut names: Vec<String> = plain
            .iter()
            .flat_map(|c| c.desc().into_iter().map(|d| d.fq_name.clone()))
            .collect();
        let histograms: [&dyn Collector; 5] = [
            &self.detection_seconds,
            &self.decision_latency_seconds,
            &self.time_to_rollback_seconds,
            &self.recovery_seconds,
            &self.notify.delivery_seconds,
        ];
        for h in histograms {
            for d in h.desc() {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.push(format!("{}{suffix}", d.fq_name));
                }
            }
        }
        names
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
