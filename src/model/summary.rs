//! Audit records and evidence in words, for people: the notifications, the
//! status page, the replay report and `tail --follow-audit` all say the
//! same thing the same way.
//!
//! They read an audit record's JSON (`rollbackd.audit/v1`) — the form every
//! reader has: the audit topic, the audit file, the admin API — and never
//! fail: a field that is missing reads as `?`.

use serde_json::Value;

/// Whether people act on audit records of this kind: decisions,
/// suppressions, commands, results, verifications, the breaker, pauses,
/// admin calls and failed notifications (not deploy events, alerts,
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

/// One line saying what an audit record is about.
pub fn line(record: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let d = &record["detail"];
    let service = text(&record["service"]);
    let deploy = text(&record["deploy_id"]);
    let versions = || {
        let from = text(&d["from_version"]);
        match d["to_version"].as_str() {
            Some(to) => format!("{from} → {to}"),
            None => from,
        }
    };
    match record["kind"].as_str().unwrap_or("?") {
        "decision" => format!("{service}: verdict {} for deploy {deploy}", text(&d["verdict"])),
        "command" if d["action"] == "approval_required" => format!(
            "Approval required: roll back {service} {} in {}?",
            versions(),
            text(&d["environment"])
        ),
        "command" => format!(
            "Rolling back {service} {} in {}",
            versions(),
            text(&d["environment"])
        ),
        "suppressed" => format!(
            "{service}: a rollback of deploy {deploy} was held back ({})",
            text(&d["reason"])
        ),
        "breaker" if d["state"] == "open" => format!(
            "Circuit breaker open: {} automatic rollbacks within {}; automatic rollbacks are held",
            d["automatic_commands"],
            text(&d["window"])
        ),
        "breaker" => format!("Circuit breaker reset by {}", text(&d["actor"])),
        "verification" => match d["outcome"].as_str() {
            Some("recovered") => format!("{service} recovered after the rollback of {deploy}"),
            Some("not_recovered") => format!(
                "{service} did NOT recover after the rollback of {deploy}: the restored version still burns"
            ),
            _ => format!(
                "{service}: too little traffic to tell whether the rollback of {deploy} worked"
            ),
        },
        "deploy" => match d["event"].as_str() {
            Some("deploy.started") => format!(
                "{service}: deploy {deploy} started ({} → {} in {})",
                text(&d["previous_version"]),
                text(&d["version"]),
                text(&d["environment"])
            ),
            Some(event) if d["why"].is_string() => {
                format!("{service}: {event} of {deploy} ignored: {}", text(&d["why"]))
            }
            Some(event) => format!("{service}: {event} for deploy {deploy}"),
            None => format!("{service}: deploy {deploy} no longer watched: {}", text(&d["why"])),
        },
        "result" => format!(
            "{service}: executor {} says {} for deploy {deploy}{}",
            text(&d["executor"]),
            text(&d["status"]),
            d["message"]
                .as_str()
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
        "alert" => format!(
            "alert {} ({}) {}",
            text(&d["alertname"]),
            text(&d["severity"]),
            text(&d["status"])
        ),
        "pause" if d["paused"] == true => format!("automation paused by {}", text(&d["actor"])),
        "pause" => format!("automation resumed by {}", text(&d["actor"])),
        "admin" => format!(
            "{} asked to roll back {}: {}",
            text(&d["actor"]),
            text(&d["deploy_id"]),
            text(&d["reason"])
        ),
        "malformed" => format!("malformed {} input: {}", text(&d["source"]), text(&d["error"])),
        "owner" => format!(
            "instance {} {} evidence partitions {}",
            text(&d["instance"]),
            text(&d["change"]),
            d["partitions"]
        ),
        "late_data" => format!(
            "{service}: {} evidence of deploy {deploy} arrived {} after its event time, later than the allowed {}: counted in its windows, too late to compare with the baseline",
            text(&d["side"]),
            text(&d["late_by"]),
            text(&d["allowed_lateness"])
        ),
        "notification" => format!(
            "notification of {} {} for sink {}: {}",
            text(&d["event"]),
            text(&d["outcome"]),
            text(&d["sink"]),
            text(&d["error"])
        ),
        other => format!("{other} {service} {deploy}"),
    }
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
pub fn verification(detail: &Value) -> Option<String> {
    let pct = |v: &Value| v["ratio"].as_f64().map(|r| format!("{:.2}%", r * 100.0));
    let sli = detail["sli"].as_str()?;
    let after = pct(&detail["after"])?;
    let mut s = match pct(&detail["during"]) {
        Some(during) => format!("{sli} {during} → {after}"),
        None => format!("{sli} {after} since the rollback"),
    };
    if let Some(v) = detail["restored_version"].as_str() {
        s.push_str(&format!(" on {v}"));
    }
    if let Some(t) = detail["time_to_recover_from_result_seconds"].as_f64() {
        s.push_str(&format!(", recovered {t:.0}s after the rollback"));
    }
    Some(s)
}

/// The numbers behind a record, when it has some: a decision's or a
/// command's evidence, a verification's before and after.
pub fn numbers(record: &Value) -> Option<String> {
    let d = &record["detail"];
    match record["kind"].as_str()? {
        "verification" => verification(d),
        _ => evidence(&d["evidence"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kind_reads_as_a_sentence() {
        let r = |kind: &str, detail: Value| {
            line(
                &json!({"kind": kind, "service": "checkout", "deploy_id": "d-1", "detail": detail}),
            )
        };
        assert_eq!(
            r(
                "command",
                json!({"action": "rollback", "from_version": "v2", "to_version": "v1", "environment": "prod"})
            ),
            "Rolling back checkout v2 → v1 in prod"
        );
        assert_eq!(
            r("suppressed", json!({"reason": "cooldown"})),
            "checkout: a rollback of deploy d-1 was held back (cooldown)"
        );
        assert_eq!(
            r(
                "result",
                json!({"executor": "argo", "status": "succeeded", "message": ""})
            ),
            "checkout: executor argo says succeeded for deploy d-1"
        );
        assert_eq!(
            r("deploy", json!({"why": "rollback succeeded"})),
            "checkout: deploy d-1 no longer watched: rollback succeeded"
        );
        assert_eq!(
            r(
                "late_data",
                json!({"side": "candidate", "late_by": "45s", "allowed_lateness": "1m"})
            ),
            "checkout: candidate evidence of deploy d-1 arrived 45s after its event time, later than the allowed 1m: counted in its windows, too late to compare with the baseline"
        );
        assert_eq!(line(&json!(null)), "? ? ?");
        assert_eq!(printable("a\u{1b}[31mred\n"), "a?[31mred?");
        assert_eq!(
            numbers(&json!({"kind": "verification", "detail": {"sli": "errors", "during": {"ratio": 0.0545}, "after": {"ratio": 0.0005}, "restored_version": "v42", "time_to_recover_from_result_seconds": 12.0}})).unwrap(),
            "errors 5.45% → 0.05% on v42, recovered 12s after the rollback"
        );
    }
}
