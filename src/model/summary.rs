//! Audit records and evidence in words, for people: the notifications, the
//! status page, the replay report and `tail --follow-audit` all say the
//! same thing the same way.
//!
//! They read typed audit records ([`AuditRecord`], as read from the audit
//! topic, the audit file or the admin API) and never fail: what a record
//! does not say (no service, an unknown kind) reads as `?` or as the kind's
//! name.

use serde_json::Value;

use super::audit::{
    AlertAudit, BreakerAudit, CommandAudit, DeployAudit, LateDataAudit, MaintenanceAudit,
    MaintenanceState, OwnerAudit, ResultAudit, VerificationAudit, VerificationOutcome,
};
use super::{Action, AuditEvent, AuditRecord};

/// Whether people act on audit records of this kind: decisions,
/// suppressions, commands, results, verifications, the breaker, pauses,
/// maintenance windows, admin calls and failed notifications (not deploy events, alerts,
/// malformed inputs or ownership changes).
pub fn notable(kind: &str) -> bool {
    matches!(
        kind,
        "decision"
            | "suppressed"
            | "command"
            | "result"
            | "verification"
            | "breaker"
            | "pause"
            | "maintenance"
            | "admin"
            | "notification"
    )
}

/// `s` for a terminal: control characters (an escape sequence in a label)
/// shown as `?`.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The service and deploy a record is about, `?` when it names none.
struct About<'a> {
    service: &'a str,
    deploy: &'a str,
}

/// One line saying what an audit record is about.
pub fn line(record: &AuditRecord) -> String {
    let about = About {
        service: record.service.as_deref().unwrap_or("?"),
        deploy: record.deploy_id.as_deref().unwrap_or("?"),
    };
    let About { service, deploy } = about;
    match &record.event {
        AuditEvent::Decision(d) => {
            format!(
                "{service}: verdict {} for deploy {deploy}",
                d.verdict.as_str()
            )
        }
        AuditEvent::Command(c) => command(&about, c),
        AuditEvent::Suppressed(s) => format!(
            "{service}: a rollback of deploy {deploy} was held back ({})",
            s.reason()
        ),
        AuditEvent::Breaker(b) => breaker(b),
        AuditEvent::Verification(v) => verification_line(&about, v),
        AuditEvent::Deploy(d) => deploy_line(&about, d),
        AuditEvent::Result(r) => result(&about, r),
        AuditEvent::Alert(a) => alert(a),
        AuditEvent::Pause(p) if p.paused => format!("automation paused by {}", p.actor),
        AuditEvent::Pause(p) => format!("automation resumed by {}", p.actor),
        AuditEvent::Maintenance(m) => maintenance(m),
        AuditEvent::Admin(a) => format!(
            "{} asked to roll back {}: {}",
            a.actor, a.deploy_id, a.reason
        ),
        AuditEvent::Malformed(m) => format!("malformed {} input: {}", m.source, m.error),
        AuditEvent::Owner(o) => owner(o),
        AuditEvent::LateData(l) => late_data(&about, l),
        AuditEvent::Notification(n) => format!(
            "notification of {} {} for sink {}: {}",
            n.event,
            n.outcome.as_str(),
            n.sink,
            n.error
        ),
        AuditEvent::Other(o) => format!("{} {service} {deploy}", o.kind),
    }
}

fn command(about: &About<'_>, c: &CommandAudit) -> String {
    let versions = match &c.to_version {
        Some(to) => format!("{} → {to}", c.from_version),
        None => c.from_version.clone(),
    };
    match c.action {
        Action::ApprovalRequired => format!(
            "Approval required: roll back {} {versions} in {}?",
            about.service, c.environment
        ),
        Action::Rollback => format!(
            "Rolling back {} {versions} in {}",
            about.service, c.environment
        ),
    }
}

fn maintenance(m: &MaintenanceAudit) -> String {
    let services = if m.services.is_empty() {
        "every service".to_string()
    } else {
        m.services.join(", ")
    };
    let reason = if m.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", m.reason)
    };
    match m.state {
        MaintenanceState::Open => format!(
            "maintenance window {} opened by {} until {} for {services}{reason}; automatic rollbacks are held",
            m.id, m.actor, m.until
        ),
        MaintenanceState::Closed => format!(
            "maintenance window {} closed by {} ({services})",
            m.id, m.actor
        ),
    }
}

fn breaker(b: &BreakerAudit) -> String {
    match b {
        BreakerAudit::Opened {
            automatic_commands,
            window,
            ..
        } => format!(
            "Circuit breaker open: {automatic_commands} automatic rollbacks within {window}; automatic rollbacks are held"
        ),
        BreakerAudit::Reset { actor, .. } => format!("Circuit breaker reset by {actor}"),
    }
}

fn verification_line(about: &About<'_>, v: &VerificationAudit) -> String {
    let About { service, deploy } = about;
    if v.command_id.is_empty() {
        // A fast-tracked deploy, watched on its own version.
        let version = v.restored_version.as_deref().unwrap_or("?");
        return match v.outcome {
            VerificationOutcome::Recovered => {
                format!("{service}: fast-tracked deploy {deploy} of {version} is healthy")
            }
            VerificationOutcome::NotRecovered => format!(
                "{service}: fast-tracked deploy {deploy} of {version} is NOT healthy: it burns the error budget"
            ),
            VerificationOutcome::Inconclusive => format!(
                "{service}: too little traffic to tell whether fast-tracked deploy {deploy} of {version} is healthy"
            ),
        };
    }
    match v.outcome {
        VerificationOutcome::Recovered => {
            format!("{service} recovered after the rollback of {deploy}")
        }
        VerificationOutcome::NotRecovered => format!(
            "{service} did NOT recover after the rollback of {deploy}: the restored version still burns"
        ),
        VerificationOutcome::Inconclusive => format!(
            "{service}: too little traffic to tell whether the rollback of {deploy} worked"
        ),
    }
}

fn deploy_line(about: &About<'_>, d: &DeployAudit) -> String {
    let About { service, deploy } = about;
    match d {
        DeployAudit::Started {
            version,
            previous_version,
            environment,
            strategy,
            fast_track,
            ..
        } => format!(
            "{service}: deploy {deploy} {}started ({} → {version} in {environment}){}",
            if strategy.as_deref() == Some("inferred") {
                "found in the telemetry, "
            } else {
                ""
            },
            previous_version.as_deref().unwrap_or("?"),
            match fast_track {
                Some(f) => format!(
                    ", fast-tracked: {version} was seen healthy at {} ({})",
                    f.healthy_at, f.how
                ),
                None => String::new(),
            }
        ),
        DeployAudit::Progressed { .. } => {
            format!("{service}: deploy.progressed for deploy {deploy}")
        }
        DeployAudit::Completed { .. } => format!("{service}: deploy.completed for deploy {deploy}"),
        DeployAudit::Ignored { event, why } => {
            format!("{service}: {} of {deploy} ignored: {why}", event.as_str())
        }
        DeployAudit::Retired { why } => {
            format!("{service}: deploy {deploy} no longer watched: {why}")
        }
        DeployAudit::Expired { max_deploy_age, .. } => format!(
            "{service}: deploy {deploy} no longer watched: {}",
            DeployAudit::expired_because(*max_deploy_age)
        ),
    }
}

fn result(about: &About<'_>, r: &ResultAudit) -> String {
    let message = if r.message.is_empty() {
        String::new()
    } else {
        format!(": {}", r.message)
    };
    format!(
        "{}: executor {} says {} for deploy {}{message}",
        about.service,
        r.executor,
        r.status.as_str(),
        about.deploy
    )
}

fn alert(a: &AlertAudit) -> String {
    format!(
        "alert {} ({}) {}",
        a.alertname,
        a.severity,
        a.status.as_str()
    )
}

fn owner(o: &OwnerAudit) -> String {
    let partitions: Vec<String> = o.partitions.iter().map(i32::to_string).collect();
    format!(
        "instance {} {} evidence partitions [{}]",
        o.instance,
        o.change.as_str(),
        partitions.join(",")
    )
}

fn late_data(about: &About<'_>, l: &LateDataAudit) -> String {
    format!(
        "{}: {} evidence of deploy {} arrived {} after its event time, later than the allowed {}: counted in its windows, too late to compare with the baseline",
        about.service,
        l.side.as_str(),
        about.deploy,
        l.late_by,
        l.allowed_lateness
    )
}

/// The evidence of a decision in a few words: "errors 5.45% (11/132
/// requests) vs baseline 0.00% (0/1320 requests), threshold 1.44% over
/// 1m/5m"; `None` when it is not a burn-rate evidence object.
pub fn evidence(evidence: &Value) -> Option<String> {
    let ratio = |side: &Value| -> Option<String> {
        let (bad, req) = (side["bad"].as_u64()?, side["requests"].as_u64()?);
        let pct = if req == 0 {
            0.0
        } else {
            bad as f64 / req as f64 * 100.0
        };
        Some(format!("{pct:.2}% ({bad}/{req} requests)"))
    };
    let sli = evidence["sli"].as_str()?;
    let mut s = format!("{sli} {}", ratio(&evidence["candidate"])?);
    if let Some(b) = ratio(&evidence["baseline"]) {
        s.push_str(&format!(" vs baseline {b}"));
    }
    if let (Some(t), Some(short), Some(long)) = (
        evidence["threshold"].as_f64(),
        evidence["short"].as_str(),
        evidence["long"].as_str(),
    ) {
        s.push_str(&format!(
            ", threshold {:.2}% over {short}/{long}",
            t * 100.0
        ));
    }
    Some(s)
}

/// What a verification measured: "errors 5.45% → 0.05% on v42, recovered
/// 12s after the rollback".
pub fn verification(v: &VerificationAudit) -> String {
    let pct = |r: f64| format!("{:.2}%", r * 100.0);
    let after = pct(v.after.ratio);
    let mut s = match &v.during {
        Some(during) => format!("{} {} → {after}", v.sli, pct(during.ratio)),
        None => format!("{} {after} since the rollback", v.sli),
    };
    if let Some(version) = &v.restored_version {
        s.push_str(&format!(" on {version}"));
    }
    if let Some(t) = v.time_to_recover_from_result {
        s.push_str(&format!(
            ", recovered {:.0}s after the rollback",
            t.as_secs_f64()
        ));
    }
    s
}

/// The numbers behind a record, when it has some: a decision's or a
/// command's evidence, a verification's before and after.
pub fn numbers(record: &AuditRecord) -> Option<String> {
    match &record.event {
        AuditEvent::Verification(v) => Some(verification(v)),
        AuditEvent::Decision(d) => d.evidence.as_ref().and_then(evidence),
        AuditEvent::Command(c) => evidence(&c.evidence),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::audit::{LateDataAudit, OtherAudit, Ratio, SuppressedAudit, Suppression};
    use crate::model::evidence::Role;
    use crate::model::{ResultStatus, Trigger};
    use crate::time::{Duration, Timestamp};
    use serde_json::json;

    fn record(event: impl Into<AuditEvent>) -> AuditRecord {
        AuditRecord::new(Timestamp(0), event).for_deploy("d-1", "checkout")
    }

    #[test]
    fn every_kind_reads_as_a_sentence() {
        let r = |event: AuditEvent| line(&record(event));
        assert_eq!(
            r(CommandAudit {
                action: Action::Rollback,
                actor: None,
                command_id: "c".into(),
                detected_after: None,
                environment: "prod".into(),
                evidence: Value::Null,
                from_version: "v2".into(),
                to_version: Some("v1".into()),
                trigger: Trigger::BurnRate,
            }
            .into()),
            "Rolling back checkout v2 → v1 in prod"
        );
        assert_eq!(
            r(SuppressedAudit::ReleaseMember {
                suppression: Suppression::Cooldown {
                    until: Timestamp(0)
                }
            }
            .into()),
            "checkout: a rollback of deploy d-1 was held back (cooldown)"
        );
        assert_eq!(
            r(ResultAudit {
                at: Timestamp(0),
                command_id: "c".into(),
                executor: "argo".into(),
                message: "".into(),
                status: ResultStatus::Succeeded,
                time_to_rollback: None,
            }
            .into()),
            "checkout: executor argo says succeeded for deploy d-1"
        );
        assert_eq!(
            r(DeployAudit::Retired {
                why: "rollback succeeded".into()
            }
            .into()),
            "checkout: deploy d-1 no longer watched: rollback succeeded"
        );
        assert_eq!(
            r(LateDataAudit {
                allowed_lateness: Duration::from_secs(60),
                late_by: Duration::from_secs(45),
                observations: 1,
                side: Role::Candidate,
            }
            .into()),
            "checkout: candidate evidence of deploy d-1 arrived 45s after its event time, later than the allowed 1m: counted in its windows, too late to compare with the baseline"
        );
        let newer = AuditEvent::Other(OtherAudit {
            kind: "forecast".into(),
            detail: json!({}),
        });
        assert_eq!(line(&AuditRecord::new(Timestamp(0), newer)), "forecast ? ?");
        assert_eq!(printable("a\u{1b}[31mred\n"), "a?[31mred?");
        let verification = VerificationAudit {
            after: Ratio::new(1, 2000),
            before: None,
            command_id: "c".into(),
            during: Some(Ratio::new(109, 2000)),
            evidence: Value::Null,
            outcome: VerificationOutcome::Recovered,
            restored_version: Some("v42".into()),
            sli: "errors".into(),
            time_to_decide: None,
            time_to_detect: None,
            time_to_recover_from_result: Some(Duration::from_secs(12)),
            time_to_recover: None,
            time_to_rollback: None,
        };
        assert_eq!(
            numbers(&record(verification)).unwrap(),
            "errors 5.45% → 0.05% on v42, recovered 12s after the rollback"
        );
    }
}
