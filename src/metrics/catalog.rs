//! Every metric rollbackd exports: its name (after the `rollbackd_`
//! prefix), help text, labels and buckets, grouped by what it tells.
//! `GET /metrics`, the reference in docs/ and the dashboards depend on
//! these exactly.

/// What identifies one metric.
pub(super) struct Spec {
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    /// Empty for a single series.
    pub(super) labels: &'static [&'static str],
    /// Histograms only.
    pub(super) buckets: &'static [f64],
}

impl Spec {
    const fn new(name: &'static str, help: &'static str) -> Spec {
        Spec {
            name,
            help,
            labels: &[],
            buckets: &[],
        }
    }

    const fn labels(self, labels: &'static [&'static str]) -> Spec {
        Spec { labels, ..self }
    }

    const fn buckets(self, buckets: &'static [f64]) -> Spec {
        Spec { buckets, ..self }
    }
}

// Intake: records read, the observations and evidence made of them.
pub(super) const RECORDS: Spec = Spec::new(
    "records_total",
    "Input records by source and outcome (ok, malformed, late, unmatched).",
)
.labels(&["source", "outcome"]);
pub(super) const OBSERVATIONS: Spec = Spec::new(
    "observations_total",
    "Request observations added to deploy windows.",
);
pub(super) const OBSERVATIONS_REPEATED: Spec = Spec::new("observations_repeated_total", "Observations of an HTTP request applied before (its exporter sent it again after an error): skipped, counted once.");
pub(super) const EVIDENCE_RECORDS: Spec = Spec::new(
    "evidence_records_total",
    "Evidence records intake sent to the owners.",
);
pub(super) const EVIDENCE_BYTES: Spec = Spec::new(
    "evidence_bytes_total",
    "Bytes of the evidence records intake sent to the owners.",
);
pub(super) const CONSUMER_LAG_RECORDS: Spec = Spec::new("consumer_lag_records", "Telemetry records on this instance's partitions not yet applied (high watermark minus applied offset; -1 until known).");
pub(super) const DEAD_LETTERS: Spec = Spec::new(
    "dead_letters_total",
    "Malformed records copied to the dead-letter topic.",
);

// Deploys and decisions: what is watched, how it burns, what was decided and held back.
pub(super) const ACTIVE_DEPLOYS: Spec = Spec::new("active_deploys", "Deploys being watched.");
pub(super) const DEPLOYS: Spec = Spec::new("deploys", "Active deploys by state: commanded, awaiting_approval, verifying (rolled back, restored version under watch), or the latest verdict (pending: not evaluated yet).").labels(&["state"]);
pub(super) const BURN_RATE_MAX: Spec = Spec::new("burn_rate_max", "The highest long-window burn rate across active deploys, per SLI and window pair (short/long).").labels(&["sli", "window"]);
pub(super) const DECISIONS: Spec = Spec::new(
    "decisions_total",
    "Verdicts reached (audited decisions) by verdict.",
)
.labels(&["verdict"]);
pub(super) const COMMANDS: Spec =
    Spec::new("commands_total", "Commands emitted by action and trigger.")
        .labels(&["action", "trigger"]);
pub(super) const SUPPRESSIONS: Spec = Spec::new(
    "suppressions_total",
    "Decisions held back by a guard, by reason.",
)
.labels(&["reason"]);
pub(super) const BREAKER_OPEN: Spec =
    Spec::new("breaker_open", "1 while the circuit breaker is open.");
pub(super) const AUTOMATION_PAUSED: Spec =
    Spec::new("automation_paused", "1 while automation is paused.");
pub(super) const DEPLOYS_EXPIRED: Spec = Spec::new(
    "deploys_expired_total",
    "Deploys retired because they never completed within limits.max_deploy_age.",
);
pub(super) const DEPLOYS_STARTED: Spec = Spec::new(
    "deploys_started_total",
    "Deploys this instance started watching (as the owner of their key): how rollbackd learnt of them (announced, inferred) and whether they were fast-tracked.",
)
.labels(&["source", "fast_track"]);
pub(super) const DETECTION_SECONDS: Spec = Spec::new(
    "detection_seconds",
    "From the deploy's start to the decision to roll it back.",
)
.buckets(&[
    5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1800.0,
]);
pub(super) const DECISION_LATENCY_SECONDS: Spec = Spec::new("decision_latency_seconds", "From consuming the decisive record to handing the command to the sink (Kafka producer or stdout).").buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]);

// After a command: the executor's results and the restored version's verification.
pub(super) const RESULTS: Spec = Spec::new(
    "results_total",
    "Executor results by status: the inputs of rollback success rate.",
)
.labels(&["status"]);
pub(super) const TIME_TO_ROLLBACK_SECONDS: Spec = Spec::new(
    "time_to_rollback_seconds",
    "From the decision to the executor's succeeded result.",
)
.buckets(&[5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0]);
pub(super) const ROLLBACK_VERIFICATIONS: Spec = Spec::new("rollback_verifications_total", "How successful rollbacks turned out: recovered, not_recovered (the restored version still burns), inconclusive.").labels(&["outcome"]);
pub(super) const TIME_TO_DETECT_SECONDS: Spec = Spec::new(
    "time_to_detect_seconds",
    "From the candidate's first bad request to the decision, per verified rollback.",
)
.buckets(&[
    5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1800.0,
]);
pub(super) const TIME_TO_RECOVER_SECONDS: Spec = Spec::new(
    "time_to_recover_seconds",
    "From the decision to the restored version confidently below every threshold, per recovered rollback.",
)
.buckets(&[10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0]);
pub(super) const ROLLBACK_SLI_DELTA: Spec = Spec::new(
    "rollback_sli_delta",
    "The decided SLI's bad ratio on the candidate at the decision minus the restored version's since the rollback (positive: users better off), per verification with traffic after it, by SLI.",
)
.labels(&["sli"])
.buckets(&[
    -0.01, 0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
]);
pub(super) const ROLLBACK_RECOVERY_SECONDS: Spec = Spec::new("rollback_recovery_seconds", "From the executor's succeeded result to the restored version confidently below every threshold.").buckets(&[5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0]);

// The gate progressive-delivery controllers ask.
pub(super) const GATE_ANSWERS: Spec = Spec::new(
    "gate_answers_total",
    "Gate answers by route (argo, flagger) and verdict (pass, fail, wait).",
)
.labels(&["route", "verdict"]);

// The instance: readiness per stage, Kafka clients, owned partitions, transactions.
pub(super) const READY: Spec = Spec::new(
    "ready",
    "1 while the agent is ready (recovered, broker reachable, commands flowing).",
);
pub(super) const STAGE_READY: Spec = Spec::new("stage_ready", "1 while a stage of the agent is ready: control (control topics read), intake (telemetry partitions held), owner (owned evidence read back), broker (reachable), emit (outputs acknowledged).").labels(&["stage"]);
pub(super) const STAGE_STUCK: Spec = Spec::new("stage_stuck", "1 while a stage (intake, owner) has had work in hand and made no progress for kafka.stuck_after: /healthz answers 503.").labels(&["stage"]);
pub(super) const STAGE_BUSY: Spec = Spec::new("stage_busy", "1 while a stage (intake, owner) has work in hand: records consumed and not yet acknowledged downstream, a batch being retried.").labels(&["stage"]);
pub(super) const KAFKA_CLIENT_REBUILDS: Spec = Spec::new(
    "kafka_client_rebuilds_total",
    "Kafka producer clients built again after a fatal error, by client (evidence, owner).",
)
.labels(&["client"]);
pub(super) const OWNED_PARTITIONS: Spec = Spec::new(
    "owned_partitions",
    "Evidence partitions this instance owns (decides for), read back.",
);
pub(super) const TRANSACTIONS: Spec = Spec::new("transactions_total", "Owner transactions (commands, audit records and evidence offsets) by outcome: committed, aborted, fenced.").labels(&["outcome"]);

// Notifications, by sink.
pub(super) const NOTIFICATIONS: Spec = Spec::new("notifications_total", "Notifications by sink and outcome: delivered, failed (after its retries, or refused by the receiver), dropped (the sink's queue was full).").labels(&["sink", "outcome"]);
pub(super) const NOTIFICATION_RETRIES: Spec = Spec::new(
    "notification_retries_total",
    "Delivery attempts after a notification's first, by sink.",
)
.labels(&["sink"]);
pub(super) const NOTIFICATION_QUEUE: Spec = Spec::new(
    "notification_queue",
    "Notifications waiting for delivery, by sink.",
)
.labels(&["sink"]);
pub(super) const NOTIFICATION_DELIVERY_SECONDS: Spec = Spec::new(
    "notification_delivery_seconds",
    "From an audit record's arrival at the notifier to the receiver's 2xx, by sink.",
)
.labels(&["sink"])
.buckets(&[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]);
