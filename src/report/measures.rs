//! The report's rollback measures: time to detect, decide, roll back and
//! recover (M1–M4), the rollback success rate (M5), the SLI delta after a
//! rollback (M6) and rollbacks per release and service (M7) — over the
//! whole replay, per service, and per deploy rolled back. The same
//! numbers as the metrics of docs/http.md (The rollback measures), read
//! from the audit records.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{escape, ReportDeploy};
use crate::model::audit::{VerificationAudit, VerificationOutcome};
use crate::model::{Action, AuditEvent, AuditRecord, ResultStatus};
use crate::time::Duration;

/// What the audit records tell of one deploy.
struct Measured<'a> {
    report: &'a ReportDeploy,
    /// A rollback command was emitted for it.
    rolled_back: bool,
    /// M2: from the deploy's start to the decision.
    decide: Option<Duration>,
    /// M3: from the decision to the succeeded result.
    rollback: Option<Duration>,
    /// The last executor result.
    result: Option<ResultStatus>,
    /// M1, M4 and M6.
    verification: Option<&'a VerificationAudit>,
}

fn measured<'a>(report: &'a ReportDeploy, records: &[&'a AuditRecord]) -> Measured<'a> {
    let mut m = Measured {
        report,
        rolled_back: false,
        decide: None,
        rollback: None,
        result: None,
        verification: None,
    };
    for a in records {
        match &a.event {
            AuditEvent::Command(c) if c.action == Action::Rollback => {
                m.rolled_back = true;
                m.decide = m.decide.or(c.detected_after);
            }
            AuditEvent::Result(r) => {
                m.result = Some(r.status);
                m.rollback = r.time_to_rollback.or(m.rollback);
            }
            AuditEvent::Verification(v) => m.verification = Some(v),
            _ => {}
        }
    }
    m
}

/// How much lower the decided SLI's bad ratio was after the rollback than
/// on the candidate at the decision, in percentage points (negative:
/// higher); `None` without traffic after the rollback.
fn delta_points(v: &VerificationAudit) -> Option<f64> {
    let during = v.during?;
    (v.after.requests > 0).then_some((during.ratio - v.after.ratio) * 100.0)
}

fn seconds(d: Duration) -> String {
    secs_text(d.as_secs_f64())
}

fn secs_text(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.0} s")
    }
}

fn points(p: f64) -> String {
    if p >= 0.0 {
        format!("{p:.2} points lower")
    } else {
        format!("{:.2} points higher", -p)
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

fn share(part: usize, whole: usize) -> String {
    if whole == 0 {
        "—".into()
    } else {
        format!("{:.0}%", part as f64 / whole as f64 * 100.0)
    }
}

/// The median and the longest of `times`, in words (`none`: why there is
/// nothing).
fn times(times: Vec<Duration>, none: &str) -> String {
    let longest = times.iter().copied().max_by_key(|d| d.nanos());
    match (
        median(times.iter().map(|d| d.as_secs_f64()).collect()),
        longest,
    ) {
        (Some(m), Some(l)) => format!(
            "{} (median of {}; longest {})",
            secs_text(m),
            times.len(),
            seconds(l)
        ),
        _ => format!("— ({none})"),
    }
}

/// The measures' section of the report.
pub(super) fn section(
    h: &mut String,
    deploys: &[ReportDeploy],
    by_deploy: &BTreeMap<&str, Vec<&AuditRecord>>,
) {
    let all: Vec<Measured<'_>> = deploys
        .iter()
        .map(|d| {
            let records = by_deploy
                .get(d.view.deploy_id.as_str())
                .map_or(&[][..], |r| &r[..]);
            measured(d, records)
        })
        .collect();
    h.push_str("<h2 id=\"measures\">rollback measures</h2>");
    overall(h, &all);
    by_service(h, &all);
    by_deploy_table(h, &all);
}

fn overall(h: &mut String, all: &[Measured<'_>]) {
    let verifications: Vec<&VerificationAudit> =
        all.iter().filter_map(|m| m.verification).collect();
    let results: Vec<ResultStatus> = all.iter().filter_map(|m| m.result).collect();
    let succeeded = results
        .iter()
        .filter(|s| **s == ResultStatus::Succeeded)
        .count();
    let recovered = verifications
        .iter()
        .filter(|v| v.outcome == VerificationOutcome::Recovered)
        .count();
    let rollbacks = all.iter().filter(|m| m.rolled_back).count();
    let deltas: Vec<f64> = verifications
        .iter()
        .filter_map(|v| delta_points(v))
        .collect();
    let delta = match median(deltas.clone()) {
        Some(p) => format!("{} (median of {})", points(p), deltas.len()),
        None => "— (no rollback verified with traffic after it)".into(),
    };
    let mut rows = vec![
        ("m1", "M1 time to detect: the candidate's first bad request → decision", times(verifications.iter().filter_map(|v| v.time_to_detect).collect(), "no verified rollback")),
        ("m2", "M2 time to decide: the deploy's start → decision", times(all.iter().filter_map(|m| m.decide).collect(), "no rollback")),
        ("m3", "M3 time to roll back: decision → the executor's succeeded result", times(all.iter().filter_map(|m| m.rollback).collect(), "no succeeded result in the input")),
        ("m4", "M4 time to recover: decision → the restored version confidently healthy", times(verifications.iter().filter_map(|v| v.time_to_recover).collect(), "no recovered rollback")),
        ("m5", "M5 rollback success rate", format!(
            "{succeeded} of {} executor results succeeded ({}); {recovered} of {} verified rollbacks recovered ({})",
            results.len(), share(succeeded, results.len()), verifications.len(), share(recovered, verifications.len())
        )),
        ("m6", "M6 the decided SLI's bad ratio after a rollback, against the candidate's at the decision", delta),
        ("m7", "M7 rollbacks per deploy", format!("{rollbacks} of {} deploys rolled back ({})", all.len(), share(rollbacks, all.len()))),
    ];
    let mut releases: BTreeMap<&str, bool> = BTreeMap::new();
    for m in all {
        if let Some(r) = m.report.view.release_id.as_deref() {
            *releases.entry(r).or_default() |= m.rolled_back;
        }
    }
    if !releases.is_empty() {
        let back = releases.values().filter(|b| **b).count();
        rows.push((
            "m7-releases",
            "M7 rollbacks per release",
            format!(
                "{back} of {} releases rolled back ({})",
                releases.len(),
                share(back, releases.len())
            ),
        ));
    }
    h.push_str("<table id=\"measures-overall\"><thead><tr><th>measure</th><th>over the replay</th></tr></thead><tbody>");
    for (id, what, value) in rows {
        let _ = write!(
            h,
            "<tr data-measure=\"{id}\"><td>{}</td><td>{}</td></tr>",
            escape(what),
            escape(&value)
        );
    }
    h.push_str("</tbody></table>");
}

/// M7 per service: deploys watched and rolled back.
fn by_service(h: &mut String, all: &[Measured<'_>]) {
    let mut services: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for m in all {
        let e = services.entry(m.report.view.service.as_str()).or_default();
        e.0 += 1;
        e.1 += usize::from(m.rolled_back);
    }
    h.push_str("<p class=\"meta\">M7 per service:</p><table id=\"measures-by-service\"><thead><tr><th>service</th><th class=\"num\">deploys</th>\
<th class=\"num\">rolled back</th><th class=\"num\">rollbacks per deploy</th></tr></thead><tbody>");
    for (service, (deploys, back)) in services {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"num\">{deploys}</td><td class=\"num\">{back}</td><td class=\"num\">{}</td></tr>",
            escape(service),
            share(back, deploys)
        );
    }
    h.push_str("</tbody></table>");
}

/// Every deploy rolled back, with its measures.
fn by_deploy_table(h: &mut String, all: &[Measured<'_>]) {
    let rolled: Vec<&Measured<'_>> = all.iter().filter(|m| m.rolled_back).collect();
    if rolled.is_empty() {
        h.push_str("<p class=\"meta\">No deploy was rolled back.</p>");
        return;
    }
    h.push_str("<p class=\"meta\">Each deploy rolled back:</p><table id=\"measures-by-deploy\"><thead><tr><th>deploy rolled back</th><th>service</th>\
<th class=\"num\">M1 detect</th><th class=\"num\">M2 decide</th><th class=\"num\">M3 roll back</th><th class=\"num\">M4 recover</th>\
<th>M5 result, verification</th><th>M6 bad ratio: candidate at the decision → restored version after</th></tr></thead><tbody>");
    let dash = |d: Option<Duration>| d.map_or_else(|| "—".to_string(), seconds);
    for m in rolled {
        let v = m.verification;
        let sli_delta = v
            .and_then(|v| {
                let during = v.during?;
                let p = delta_points(v)?;
                Some(format!(
                    "{}: {:.2}% → {:.2}% ({})",
                    v.sli,
                    during.ratio * 100.0,
                    v.after.ratio * 100.0,
                    points(p)
                ))
            })
            .unwrap_or_else(|| "—".into());
        let _ = write!(
            h,
            "<tr data-deploy-id=\"{id}\"><td><a href=\"#deploy-{id}\">{id}</a></td><td>{}</td><td class=\"num\">{}</td>\
<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}, {}</td><td>{}</td></tr>",
            escape(&m.report.view.service),
            dash(v.and_then(|v| v.time_to_detect)),
            dash(m.decide),
            dash(m.rollback),
            dash(v.and_then(|v| v.time_to_recover)),
            m.result.map_or("no result", |r| r.as_str()),
            v.map_or("not verified", |v| v.outcome.as_str()),
            escape(&sli_delta),
            id = escape(&m.report.view.deploy_id),
        );
    }
    h.push_str("</tbody></table>");
}
