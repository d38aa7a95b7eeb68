//! The bytes of `rollbackd.audit/v1`: one sample record of every kind and
//! layout, and the JSON each must serialize to (`golden.jsonl`, one line per
//! sample, in order). The golden lines were written by the code that built
//! details with `serde_json::Value`; they pin the layout for every reader
//! of the audit topic, the audit file and `GET /v1/audit`.

use super::*;
use crate::model::evidence::Role;
use serde_json::json;

fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn command() -> Command {
    Command {
        schema: "rollbackd.command/v1".into(),
        command_id: "c0ffee".into(),
        action: Action::Rollback,
        trigger: Trigger::BurnRate,
        deploy_id: "d-7".into(),
        release_id: Some("r-1".into()),
        service: "checkout".into(),
        environment: "prod".into(),
        from_version: "v2".into(),
        to_version: Some("v1".into()),
        strategy: None,
        labels: [("team".to_string(), "pay".to_string())].into(),
        evidence: json!({"sli": "errors", "candidate": {"bad": 11, "requests": 132}, "threshold": 0.0144}),
        decided_at: ts("2026-11-26T12:01:30.500Z"),
        issued_at: ts("2026-11-26T12:01:30.750Z"),
    }
}

fn suppressions() -> Vec<Suppression> {
    vec![
        Suppression::AlreadyEmitted {
            command_id: "c0ffee".into(),
        },
        Suppression::Paused {
            since: ts("2026-11-26T11:00:00Z"),
            by: "alice".into(),
        },
        Suppression::DryRun {
            command: Box::new(command()),
        },
        Suppression::Cooldown {
            until: ts("2026-11-26T12:30:00Z"),
        },
        Suppression::BreakerOpen {
            since: ts("2026-11-26T11:59:00Z"),
        },
    ]
}

fn samples() -> Vec<AuditRecord> {
    let at = ts("2026-11-26T12:01:30.500Z");
    let d = |e: AuditEvent| AuditRecord::new(at, e).for_deploy("d-7", "checkout");
    let mut v = vec![
        d(DeployAudit::Started {
            version: "v2".into(),
            previous_version: Some("v1".into()),
            environment: "prod".into(),
            strategy: Some("canary".into()),
            release_id: None,
            data_migration: DataMigration::Reversible,
            at: ts("2026-11-26T12:00:00Z"),
        }
        .into()),
        d(DeployAudit::Started {
            version: "v2".into(),
            previous_version: None,
            environment: "default".into(),
            strategy: None,
            release_id: Some("r-1".into()),
            data_migration: DataMigration::None,
            at: ts("2026-11-26T12:00:00.001Z"),
        }
        .into()),
        d(DeployAudit::Progressed {
            canary_weight: Some(0.25),
        }
        .into()),
        d(DeployAudit::Progressed {
            canary_weight: None,
        }
        .into()),
        d(DeployAudit::Completed {
            watched_until: ts("2026-11-26T12:31:00Z"),
        }
        .into()),
        d(DeployAudit::Ignored {
            event: "deploy.progressed",
            why: "unknown deploy",
        }
        .into()),
        d(DeployAudit::Retired {
            why: "rollback succeeded".into(),
        }
        .into()),
        d(DeployAudit::Expired {
            started_at: ts("2026-11-25T12:00:00Z"),
            max_deploy_age: Duration::from_secs(86_400 + 90),
        }
        .into()),
        d(DecisionAudit {
            verdict: Verdict::Rollback,
            evidence: Some(json!({"sli": "errors", "burn_rate": 14.4})),
        }
        .into()),
        d(DecisionAudit {
            verdict: Verdict::Healthy,
            evidence: None,
        }
        .into()),
    ];
    for (i, s) in suppressions().into_iter().enumerate() {
        v.push(d(SuppressedAudit::Decision {
            suppression: s,
            trigger: Trigger::Alert,
            action: Action::ApprovalRequired,
            alert_fingerprint: (i % 2 == 0).then(|| "fp-1".to_string()),
        }
        .into()));
    }
    for s in suppressions() {
        v.push(d(SuppressedAudit::ReleaseMember { suppression: s }.into()));
    }
    v.push(AuditRecord::new(
        at,
        SuppressedAudit::Release {
            suppression: Suppression::Cooldown { until: at },
            release_id: "r-1".into(),
            caused_by: "d-7".into(),
            deploys: vec!["d-7".into(), "d-8".into()],
        },
    ));
    v.extend([
        d(CommandAudit {
            command_id: "c0ffee".into(),
            action: Action::Rollback,
            trigger: Trigger::BurnRate,
            environment: "prod".into(),
            from_version: "v2".into(),
            to_version: Some("v1".into()),
            evidence: json!({"sli": "latency"}),
            detected_after: Some(Duration::from_millis(90_500)),
            actor: None,
        }
        .into()),
        d(CommandAudit {
            command_id: "c0ffee".into(),
            action: Action::Rollback,
            trigger: Trigger::Manual,
            environment: "prod".into(),
            from_version: "v2".into(),
            to_version: None,
            evidence: Value::Null,
            detected_after: None,
            actor: Some("bob".into()),
        }
        .into()),
        d(AlertAudit {
            alertname: "HighErrors".into(),
            severity: "page".into(),
            status: AlertStatus::Firing,
            fingerprint: "fp-1".into(),
            starts_at: at,
            labels: [("service".to_string(), "checkout".to_string())].into(),
            outcome: AlertOutcome::Matched("d-7".into()),
        }
        .into()),
        AuditRecord::new(
            at,
            AlertAudit {
                alertname: "HighErrors".into(),
                severity: "page".into(),
                status: AlertStatus::Resolved,
                fingerprint: "fp-1".into(),
                starts_at: at,
                labels: BTreeMap::new(),
                outcome: AlertOutcome::Resolved {
                    cleared_pending_for: vec!["d-7".into()],
                },
            },
        ),
        AuditRecord::new(
            at,
            AlertAudit {
                alertname: "Other".into(),
                severity: "".into(),
                status: AlertStatus::Firing,
                fingerprint: "fp-2".into(),
                starts_at: at,
                labels: BTreeMap::new(),
                outcome: AlertOutcome::Ignored("no deploy matches".into()),
            },
        ),
        d(ResultAudit {
            command_id: "c0ffee".into(),
            status: ResultStatus::Succeeded,
            at,
            executor: "argo".into(),
            message: "".into(),
            time_to_rollback: Some(Duration::from_secs(3)),
        }
        .into()),
        AuditRecord::new(
            at,
            BreakerAudit::Opened {
                by_command: Some("c0ffee".into()),
                automatic_commands: 3,
                max: 3,
                window: Duration::from_secs(3600),
            },
        ),
        AuditRecord::new(
            at,
            BreakerAudit::Opened {
                by_command: None,
                automatic_commands: 4,
                max: 3,
                window: Duration::from_secs(90),
            },
        ),
        AuditRecord::new(
            at,
            BreakerAudit::Reset {
                actor: "alice".into(),
                was_open: true,
            },
        ),
        AuditRecord::new(
            at,
            PauseAudit {
                paused: true,
                actor: "alice".into(),
                changed: false,
            },
        ),
        d(AdminAudit {
            deploy_id: "d-7".into(),
            reason: "looks bad".into(),
            actor: "alice".into(),
        }
        .into()),
        AuditRecord::new(
            at,
            MalformedAudit {
                source: "deploy_events".into(),
                error: "missing field `service`".into(),
                location: json!({"topic": "deploy-events", "partition": 0, "offset": 42}),
            },
        ),
        AuditRecord::new(
            at,
            OwnerAudit {
                instance: "i-1".into(),
                change: OwnerChange::Took,
                partitions: vec![0, 2],
                owned: vec![0, 1, 2],
                transactional: true,
            },
        ),
        AuditRecord::new(
            at,
            OwnerAudit {
                instance: "i-1".into(),
                change: OwnerChange::Lost,
                partitions: vec![1],
                owned: vec![],
                transactional: false,
            },
        ),
        AuditRecord::new(
            at,
            OwnerAudit {
                instance: "i-1".into(),
                change: OwnerChange::Fenced,
                partitions: vec![],
                owned: vec![],
                transactional: true,
            },
        ),
        d(VerificationAudit {
            outcome: VerificationOutcome::Recovered,
            command_id: "c0ffee".into(),
            restored_version: Some("v1".into()),
            sli: "errors",
            before: Some(Ratio::new(1, 1320)),
            during: Some(Ratio::new(11, 132)),
            after: Ratio::new(1, 2000),
            time_to_detect: Some(Duration::from_millis(41_250)),
            time_to_decide: Some(Duration::from_secs(90)),
            time_to_rollback: Some(Duration(3_123_456_789)),
            time_to_recover: Some(Duration::from_secs(75)),
            time_to_recover_from_result: Some(Duration::from_secs(12)),
            evidence: Value::Null,
        }
        .into()),
        d(VerificationAudit {
            outcome: VerificationOutcome::NotRecovered,
            command_id: "c0ffee".into(),
            restored_version: None,
            sli: "latency",
            before: None,
            during: None,
            after: Ratio::new(0, 0),
            time_to_detect: None,
            time_to_decide: None,
            time_to_rollback: None,
            time_to_recover: None,
            time_to_recover_from_result: None,
            evidence: json!({"sli": "latency", "burn_rate": 20.5}),
        }
        .into()),
        d(VerificationAudit {
            outcome: VerificationOutcome::Inconclusive,
            command_id: "c0ffee".into(),
            restored_version: Some("v1".into()),
            sli: "errors",
            before: None,
            during: Some(Ratio::new(3, 7)),
            after: Ratio::new(0, 3),
            time_to_detect: None,
            time_to_decide: Some(Duration::from_secs(60)),
            time_to_rollback: None,
            time_to_recover: None,
            time_to_recover_from_result: None,
            evidence: json!({"why": "too little traffic"}),
        }
        .into()),
        d(NotificationAudit {
            sink: "slack-oncall".into(),
            event: "approval_required",
            event_id: "abcd".into(),
            outcome: "dropped",
            attempts: 0,
            error: "the sink's queue is full".into(),
        }
        .into()),
        d(NotificationAudit {
            sink: "hook".into(),
            event: "breaker_opened",
            event_id: "ef01".into(),
            outcome: "failed",
            attempts: 5,
            error: "HTTP 500".into(),
        }
        .into()),
        d(LateDataAudit {
            side: Role::Candidate,
            late_by: Duration::from_millis(45_250),
            allowed_lateness: Duration::from_secs(60),
            observations: 17,
        }
        .into()),
        d(LateDataAudit {
            side: Role::Baseline,
            late_by: Duration(1_000_000_007),
            allowed_lateness: Duration::from_secs(30),
            observations: 1,
        }
        .into()),
    ]);
    v
}

const GOLDEN: &str = include_str!("golden.jsonl");

#[test]
fn every_sample_serializes_to_its_golden_line() {
    let samples = samples();
    let golden: Vec<&str> = GOLDEN.lines().collect();
    assert_eq!(samples.len(), golden.len());
    for (record, want) in samples.iter().zip(golden) {
        assert_eq!(serde_json::to_string(record).unwrap(), want);
    }
}
