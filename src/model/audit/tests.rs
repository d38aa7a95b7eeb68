//! The bytes of `rollbackd.audit/v1`: one sample record of every kind and
//! layout, and the JSON each must serialize to (`golden.jsonl`, one line per
//! sample, in order). The golden lines were written by the code that built
//! details with `serde_json::Value`; they pin the layout for every reader
//! of the audit topic, the audit file and `GET /v1/audit`.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::model::evidence::Role;
use crate::model::{
    Action, AlertStatus, Command, DataMigration, DeployEventKind, ResultStatus, Trigger,
};
use crate::time::{Duration, Timestamp};

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
            fast_track: None,
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
            fast_track: None,
        }
        .into()),
        d(DeployAudit::Started {
            version: "v1".into(),
            previous_version: Some("v2".into()),
            environment: "prod".into(),
            strategy: Some("inferred".into()),
            release_id: None,
            data_migration: DataMigration::None,
            at: ts("2026-11-26T12:00:00Z"),
            fast_track: Some(FastTrack {
                healthy_at: ts("2026-11-25T08:00:00Z"),
                how: "watched".into(),
            }),
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
            event: DeployEventKind::Progressed,
            why: "unknown deploy".into(),
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
            reason: SuppressionReason::Cooldown,
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
            sli: "errors".into(),
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
            sli: "latency".into(),
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
            sli: "errors".into(),
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
            event: "approval_required".into(),
            event_id: "abcd".into(),
            outcome: NotificationOutcome::Dropped,
            attempts: 0,
            error: "the sink's queue is full".into(),
        }
        .into()),
        d(NotificationAudit {
            sink: "hook".into(),
            event: "breaker_opened".into(),
            event_id: "ef01".into(),
            outcome: NotificationOutcome::Failed,
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
    let maintenance = || Suppression::Maintenance {
        window: "saturday-patching".into(),
        until: ts("2026-11-26T14:00:00Z"),
    };
    v.extend([
        d(SuppressedAudit::Decision {
            suppression: maintenance(),
            trigger: Trigger::BurnRate,
            action: Action::Rollback,
            alert_fingerprint: None,
        }
        .into()),
        d(SuppressedAudit::ReleaseMember {
            suppression: maintenance(),
        }
        .into()),
        AuditRecord::new(
            at,
            MaintenanceAudit {
                actor: "alice".into(),
                changed: true,
                id: "m-1f2e".into(),
                reason: "database failover".into(),
                services: vec!["checkout".into()],
                state: MaintenanceState::Open,
                until: ts("2026-11-26T14:00:00Z"),
            },
        ),
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

/// Written, read and written again: the same bytes, and the same value
/// (but for what a record does not carry).
fn round_trip(record: &AuditRecord) -> Result<(), TestCaseError> {
    let bytes = serde_json::to_vec(record).unwrap();
    let read: AuditRecord = serde_json::from_slice(&bytes)
        .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
    prop_assert_eq!(
        String::from_utf8(serde_json::to_vec(&read).unwrap()).unwrap(),
        String::from_utf8(bytes).unwrap()
    );
    let mut want = record.clone();
    if let AuditEvent::Result(r) = &mut want.event {
        r.time_to_rollback = None;
    }
    prop_assert_eq!(read, want);
    Ok(())
}

#[test]
fn every_golden_line_reads_and_is_written_again_byte_for_byte() {
    for (line, sample) in GOLDEN.lines().zip(samples()) {
        let read: AuditRecord = serde_json::from_str(line).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), line);
        round_trip(&sample).unwrap();
    }
}

/// Its place in the list of kinds: no wildcard, so a new kind does not
/// compile here until it has samples.
fn kind_index(e: &AuditEvent) -> usize {
    match e {
        AuditEvent::Deploy(_) => 0,
        AuditEvent::Decision(_) => 1,
        AuditEvent::Suppressed(_) => 2,
        AuditEvent::Command(_) => 3,
        AuditEvent::Alert(_) => 4,
        AuditEvent::Result(_) => 5,
        AuditEvent::Breaker(_) => 6,
        AuditEvent::Pause(_) => 7,
        AuditEvent::Admin(_) => 8,
        AuditEvent::Malformed(_) => 9,
        AuditEvent::Owner(_) => 10,
        AuditEvent::Verification(_) => 11,
        AuditEvent::Notification(_) => 12,
        AuditEvent::LateData(_) => 13,
        AuditEvent::Maintenance(_) => 14,
        AuditEvent::Other(_) => 15,
    }
}

#[test]
fn the_samples_cover_every_known_kind() {
    let covered: std::collections::BTreeSet<usize> =
        samples().iter().map(|r| kind_index(&r.event)).collect();
    assert_eq!(covered, (0..15).collect());
}

#[test]
fn a_kind_from_a_newer_version_reads_as_other() {
    let line = r#"{"schema":"rollbackd.audit/v1","at":"2026-11-26T12:00:00Z","kind":"forecast","service":"checkout","detail":{"b":[1,2.5],"a":null}}"#;
    let read: AuditRecord = serde_json::from_str(line).unwrap();
    assert_eq!(read.kind(), "forecast");
    assert_eq!(
        read.event,
        AuditEvent::Other(OtherAudit {
            kind: "forecast".into(),
            detail: json!({"a": null, "b": [1, 2.5]}),
        })
    );
    // Written again with its detail's keys sorted, like every detail.
    assert_eq!(
        serde_json::to_string(&read).unwrap(),
        r#"{"schema":"rollbackd.audit/v1","at":"2026-11-26T12:00:00Z","kind":"forecast","service":"checkout","detail":{"a":null,"b":[1,2.5]}}"#
    );
    // Keys a newer version adds to a known kind are passed over.
    let line = r#"{"schema":"rollbackd.audit/v1","at":"2026-11-26T12:00:00Z","kind":"pause","detail":{"actor":"a","changed":true,"paused":false,"ticket":"T-1"}}"#;
    let read: AuditRecord = serde_json::from_str(line).unwrap();
    assert!(matches!(
        read.event,
        AuditEvent::Pause(PauseAudit { paused: false, .. })
    ));
}

#[test]
fn what_is_not_v1_does_not_read() {
    let bad = [
        r#"{"schema":"rollbackd.audit/v2","at":"2026-11-26T12:00:00Z","kind":"pause","detail":{"actor":"a","changed":true,"paused":false}}"#,
        r#"{"schema":"rollbackd.audit/v1","at":"2026-11-26T12:00:00Z","kind":"pause","detail":{"actor":"a"}}"#,
        r#"{"schema":"rollbackd.audit/v1","at":"2026-11-26T12:00:00Z","kind":"suppressed","detail":{"reason":"cooldown","trigger":"release"}}"#,
        r#"{"schema":"rollbackd.audit/v1","at":"2026-11-26T12:00:00Z","kind":"deploy","detail":{"event":"deploy.aborted"}}"#,
        r#"{"schema":"rollbackd.audit/v1","kind":"pause","detail":{"actor":"a","changed":true,"paused":false}}"#,
    ];
    for line in bad {
        assert!(serde_json::from_str::<AuditRecord>(line).is_err(), "{line}");
    }
    let err = serde_json::from_str::<AuditRecord>(bad[1]).unwrap_err();
    assert!(
        err.to_string().contains("invalid pause audit detail"),
        "{err}"
    );
}

#[test]
fn an_event_alone_is_its_kind_and_detail() {
    let event = AuditEvent::from(PauseAudit {
        actor: "alice".into(),
        changed: true,
        paused: true,
    });
    let json = serde_json::to_string(&event).unwrap();
    assert_eq!(
        json,
        r#"{"kind":"pause","detail":{"actor":"alice","changed":true,"paused":true}}"#
    );
    assert_eq!(serde_json::from_str::<AuditEvent>(&json).unwrap(), event);
}

proptest! {
    /// Whatever the text, the numbers and the durations (to the
    /// nanosecond, up to about 19 hours: past that see `wire::seconds`), a
    /// record reads back as it was written, byte for byte.
    #[test]
    fn any_record_round_trips(
        text in "\\PC{0,40}",
        nanos in 0i64..(1 << 46),
        millis in 0i64..4_102_444_800_000,
        weight in proptest::option::of(0.0f64..1.0),
        count in any::<u64>(),
        pick in 0usize..1000,
    ) {
        let at = Timestamp(millis * 1_000_000);
        let took = Duration(nanos);
        let mut all = samples();
        for r in &mut all {
            r.at = at;
            if r.service.is_some() {
                r.service = Some(text.clone());
            }
        }
        all.extend([
            AuditRecord::new(at, DeployAudit::Progressed { canary_weight: weight }),
            AuditRecord::new(at, DeployAudit::Retired { why: text.clone() }),
            AuditRecord::new(at, DeployAudit::Expired { started_at: at, max_deploy_age: took }),
            AuditRecord::new(at, CommandAudit {
                action: Action::ApprovalRequired,
                actor: Some(text.clone()),
                command_id: text.clone(),
                detected_after: Some(took),
                environment: text.clone(),
                evidence: json!({"text": text, "count": count}),
                from_version: text.clone(),
                to_version: None,
                trigger: Trigger::Manual,
            }),
            AuditRecord::new(at, LateDataAudit {
                allowed_lateness: took,
                late_by: took,
                observations: count,
                side: Role::Baseline,
            }),
            AuditRecord::new(at, BreakerAudit::Opened {
                by_command: Some(text.clone()),
                automatic_commands: pick,
                max: 3,
                window: took,
            }),
            AuditRecord::new(at, VerificationAudit {
                after: Ratio::new(count % 1000, pick as u64),
                before: None,
                command_id: text.clone(),
                during: Some(Ratio::new(pick as u64, 1000)),
                evidence: Value::Null,
                outcome: VerificationOutcome::Inconclusive,
                restored_version: Some(text.clone()),
                sli: "latency".into(),
                time_to_decide: Some(took),
                time_to_detect: Some(Duration(nanos / 3)),
                time_to_recover_from_result: Some(Duration(nanos / 7)),
                time_to_recover: Some(took),
                time_to_rollback: None,
            }),
        ]);
        for r in &all {
            round_trip(r)?;
        }
    }
}
