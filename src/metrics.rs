//! rollbackd's own metrics (Prometheus text format, prefix `rollbackd_`).
//!
//! Label values are bounded sets (sources, outcomes, verdicts, actions,
//! triggers, reasons, statuses); deploy ids and services never become
//! labels — they are in the logs and the audit records.

mod catalog;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use catalog::Spec;
use prometheus::core::Collector;

use crate::model::audit::{DeployAudit, VerificationAudit};
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
    pub deploys_started: IntCounterVec,
    pub results: IntCounterVec,
    pub detection_seconds: Histogram,
    pub decision_latency_seconds: Histogram,
    pub time_to_rollback_seconds: Histogram,
    pub verifications: IntCounterVec,
    pub recovery_seconds: Histogram,
    /// The rollback guide's measures the audit records carry (M1, M4, M6).
    pub measures: MeasureMetrics,
    pub gate_answers: IntCounterVec,
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

/// The measures of a rollback that only its verification knows: time to
/// detect (M1), time to recover (M4), and how much better off users were
/// (M6). The others are [`Metrics::detection_seconds`] (time to decide,
/// M2), [`Metrics::time_to_rollback_seconds`] (M3), and the counters
/// behind the success rate (M5: `results`, `verifications`) and
/// rollbacks per deploy (M7: `commands` over `deploys_started`).
pub struct MeasureMetrics {
    pub time_to_detect_seconds: Histogram,
    pub time_to_recover_seconds: Histogram,
    /// By SLI (`errors`, `latency`).
    pub sli_delta: HistogramVec,
}

impl MeasureMetrics {
    fn new(r: &Registry) -> MeasureMetrics {
        use catalog::*;
        MeasureMetrics {
            time_to_detect_seconds: histogram(r, &TIME_TO_DETECT_SECONDS),
            time_to_recover_seconds: histogram(r, &TIME_TO_RECOVER_SECONDS),
            sli_delta: histogram_vec(r, &ROLLBACK_SLI_DELTA),
        }
    }

    /// Observes the measures of one verification.
    fn observe(&self, v: &VerificationAudit) {
        if let Some(took) = v.time_to_detect {
            self.time_to_detect_seconds
                .observe(took.as_secs_f64().max(0.0));
        }
        if let Some(took) = v.time_to_recover {
            self.time_to_recover_seconds
                .observe(took.as_secs_f64().max(0.0));
        }
        // Without traffic since the rollback there is nothing to compare.
        if let (Some(during), true) = (v.during, v.after.requests > 0) {
            let sli = if v.sli == "latency" {
                "latency"
            } else {
                "errors"
            };
            self.sli_delta
                .with_label_values(&[sli])
                .observe(during.ratio - v.after.ratio);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl NotifyMetrics {
    /// The notification metrics, registered in `r`.
    fn new(r: &Registry) -> NotifyMetrics {
        use catalog::*;
        NotifyMetrics {
            notifications: counter_vec(r, &NOTIFICATIONS),
            retries: counter_vec(r, &NOTIFICATION_RETRIES),
            queued: int_gauge_vec(r, &NOTIFICATION_QUEUE),
            delivery_seconds: histogram_vec(r, &NOTIFICATION_DELIVERY_SECONDS),
        }
    }
}

/// The options of `s`, in rollbackd's namespace.
fn opts(s: &Spec) -> Opts {
    Opts::new(s.name, s.help).namespace("rollbackd")
}

/// The histogram options of `s`, in rollbackd's namespace.
fn histogram_opts(s: &Spec) -> HistogramOpts {
    HistogramOpts::new(s.name, s.help)
        .namespace("rollbackd")
        .buckets(s.buckets.to_vec())
}

/// `m`, registered in `r`.
fn registered<M: Collector + Clone + 'static>(r: &Registry, m: M) -> M {
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

// One constructor per metric type: the metric `s` describes, registered
// in `r`.

fn counter_vec(r: &Registry, s: &Spec) -> IntCounterVec {
    registered(
        r,
        IntCounterVec::new(opts(s), s.labels).expect("valid metric"),
    )
}

fn counter(r: &Registry, s: &Spec) -> IntCounter {
    registered(r, IntCounter::with_opts(opts(s)).expect("valid metric"))
}

fn int_gauge_vec(r: &Registry, s: &Spec) -> IntGaugeVec {
    registered(
        r,
        IntGaugeVec::new(opts(s), s.labels).expect("valid metric"),
    )
}

fn gauge_vec(r: &Registry, s: &Spec) -> GaugeVec {
    registered(r, GaugeVec::new(opts(s), s.labels).expect("valid metric"))
}

fn gauge(r: &Registry, s: &Spec) -> IntGauge {
    registered(r, IntGauge::with_opts(opts(s)).expect("valid metric"))
}

fn histogram(r: &Registry, s: &Spec) -> Histogram {
    registered(
        r,
        Histogram::with_opts(histogram_opts(s)).expect("valid metric"),
    )
}

fn histogram_vec(r: &Registry, s: &Spec) -> HistogramVec {
    registered(
        r,
        HistogramVec::new(histogram_opts(s), s.labels).expect("valid metric"),
    )
}

impl Metrics {
    /// Every metric of the catalog (`metrics/catalog.rs`), registered in a
    /// registry of its own.
    pub fn new() -> Metrics {
        use catalog::*;
        let r = Registry::new();
        Metrics {
            records: counter_vec(&r, &RECORDS),
            observations: counter(&r, &OBSERVATIONS),
            observations_repeated: counter(&r, &OBSERVATIONS_REPEATED),
            active_deploys: gauge(&r, &ACTIVE_DEPLOYS),
            deploys_by_state: int_gauge_vec(&r, &DEPLOYS),
            burn_rate_max: gauge_vec(&r, &BURN_RATE_MAX),
            decisions: counter_vec(&r, &DECISIONS),
            commands: counter_vec(&r, &COMMANDS),
            suppressions: counter_vec(&r, &SUPPRESSIONS),
            breaker_open: gauge(&r, &BREAKER_OPEN),
            paused: gauge(&r, &AUTOMATION_PAUSED),
            ready: gauge(&r, &READY),
            stage_ready: int_gauge_vec(&r, &STAGE_READY),
            stage_stuck: int_gauge_vec(&r, &STAGE_STUCK),
            stage_busy: int_gauge_vec(&r, &STAGE_BUSY),
            kafka_client_rebuilds: counter_vec(&r, &KAFKA_CLIENT_REBUILDS),
            evidence_records: counter(&r, &EVIDENCE_RECORDS),
            evidence_bytes: counter(&r, &EVIDENCE_BYTES),
            owned_partitions: gauge(&r, &OWNED_PARTITIONS),
            transactions: counter_vec(&r, &TRANSACTIONS),
            consumer_lag: gauge(&r, &CONSUMER_LAG_RECORDS),
            dead_letters: counter(&r, &DEAD_LETTERS),
            deploys_expired: counter(&r, &DEPLOYS_EXPIRED),
            deploys_started: counter_vec(&r, &DEPLOYS_STARTED),
            results: counter_vec(&r, &RESULTS),
            detection_seconds: histogram(&r, &DETECTION_SECONDS),
            decision_latency_seconds: histogram(&r, &DECISION_LATENCY_SECONDS),
            time_to_rollback_seconds: histogram(&r, &TIME_TO_ROLLBACK_SECONDS),
            verifications: counter_vec(&r, &ROLLBACK_VERIFICATIONS),
            recovery_seconds: histogram(&r, &ROLLBACK_RECOVERY_SECONDS),
            measures: MeasureMetrics::new(&r),
            gate_answers: counter_vec(&r, &GATE_ANSWERS),
            notify: NotifyMetrics::new(&r),
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
                    self.measures.observe(v);
                }
                AuditEvent::Deploy(DeployAudit::Expired { .. }) => self.deploys_expired.inc(),
                AuditEvent::Deploy(DeployAudit::Started {
                    strategy,
                    fast_track,
                    ..
                }) => {
                    let inferred = strategy.as_deref() == Some(crate::model::INFERRED);
                    self.deploys_started
                        .with_label_values(&[
                            if inferred { "inferred" } else { "announced" },
                            if fast_track.is_some() {
                                "true"
                            } else {
                                "false"
                            },
                        ])
                        .inc();
                }
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
        let plain: [&dyn Collector; 30] = [
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
            &self.deploys_started,
            &self.results,
            &self.gate_answers,
            &self.verifications,
            &self.notify.notifications,
            &self.notify.retries,
            &self.notify.queued,
        ];
        let mut names: Vec<String> = plain
            .iter()
            .flat_map(|c| c.desc().into_iter().map(|d| d.fq_name.clone()))
            .collect();
        let histograms: [&dyn Collector; 8] = [
            &self.detection_seconds,
            &self.measures.time_to_detect_seconds,
            &self.measures.time_to_recover_seconds,
            &self.measures.sli_delta,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::audit::{Ratio, VerificationOutcome};
    use crate::time::{Duration, Timestamp};

    fn verification(outcome: VerificationOutcome, after: Ratio) -> AuditRecord {
        let recovered = outcome == VerificationOutcome::Recovered;
        AuditRecord::new(
            Timestamp(0),
            VerificationAudit {
                after,
                before: Some(Ratio::new(0, 990)),
                command_id: "c".into(),
                during: Some(Ratio::new(6, 110)),
                evidence: serde_json::Value::Null,
                outcome,
                restored_version: Some("v1".into()),
                sli: "errors".into(),
                time_to_decide: Some(Duration::from_secs(11)),
                time_to_detect: Some(Duration::from_secs(10)),
                time_to_recover_from_result: recovered.then(|| Duration::from_secs(12)),
                time_to_recover: recovered.then(|| Duration::from_secs(24)),
                time_to_rollback: Some(Duration::from_secs(12)),
            },
        )
    }

    #[test]
    fn a_verification_is_measured_once_per_measure() {
        let m = Metrics::new();
        let recovered = verification(VerificationOutcome::Recovered, Ratio::new(28, 60_000));
        let quiet = verification(VerificationOutcome::Inconclusive, Ratio::new(0, 0));
        m.count_audits([&recovered, &quiet].into_iter());
        let text = m.render();
        let value = |series: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {series} in {text}"))
        };
        assert_eq!(value("rollbackd_time_to_detect_seconds_count"), 2.0);
        assert_eq!(value("rollbackd_time_to_detect_seconds_sum"), 20.0);
        assert_eq!(value("rollbackd_time_to_recover_seconds_count"), 1.0);
        // The inconclusive one had no traffic after the rollback: no delta.
        assert_eq!(
            value("rollbackd_rollback_sli_delta_count{sli=\"errors\"}"),
            1.0
        );
        let delta = value("rollbackd_rollback_sli_delta_sum{sli=\"errors\"}");
        assert!((delta - (0.054545 - 0.000467)).abs() < 1e-9, "{delta}");
    }
}
