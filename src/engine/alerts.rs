//! Alertmanager alerts as rollback triggers (`docs/formats.md#alertmanager-webhook`). A firing alert
//! whose severity is configured is matched to an active deploy (by its
//! deploy id label, else by service and environment, if it started after
//! the deploy) and triggers a rollback decision; one held back by a guard
//! stays pending until emitted or resolved. Repeated deliveries (same
//! fingerprint, `startsAt` and status) change nothing.

use serde_json::{json, Value};

use crate::model::audit::{AlertAudit, AlertOutcome};
use crate::model::{Alert, AlertStatus, AuditRecord, Output, Trigger};
use crate::time::Timestamp;

use super::registry::Deploy;
use super::Engine;

/// A firing alert matched to a deploy whose command was held back.
#[derive(Debug, Clone)]
pub struct HeldAlert {
    pub fingerprint: String,
    /// The command's evidence: the alert.
    pub evidence: Value,
}

impl Engine {
    /// Applies Alertmanager alerts, each delivery once.
    pub(super) fn alerts(&mut self, alerts: &[Alert], out: &mut Vec<Output>) {
        for a in alerts {
            let key = (a.fingerprint.clone(), a.starts_at.0, a.status);
            if !self.alerts_seen.insert(key, ()) {
                continue;
            }
            if a.status == AlertStatus::Resolved {
                let cleared = self.clear_pending(&a.fingerprint);
                let outcome = AlertOutcome::Resolved {
                    cleared_pending_for: cleared,
                };
                out.push(alert_audit(self.clock, a, outcome, None));
            } else {
                self.firing(a, out);
            }
        }
    }

    /// Forgets the held-back alerts with `fingerprint`; returns their
    /// deploy ids, sorted.
    fn clear_pending(&mut self, fingerprint: &str) -> Vec<String> {
        let mut cleared: Vec<String> = self
            .pending_alerts
            .iter()
            .filter(|(_, p)| p.fingerprint == fingerprint)
            .map(|(id, _)| id.clone())
            .collect();
        cleared.sort();
        for id in &cleared {
            self.pending_alerts.remove(id);
        }
        cleared
    }

    /// A firing alert: of a configured severity and matched to an active
    /// deploy, it is held for the deploy and triggers a decision.
    fn firing(&mut self, a: &Alert, out: &mut Vec<Output>) {
        let now = self.clock;
        let severity = label(a, "severity");
        if !self.config.alerts.rollback_on_severity.contains(&severity) {
            let why = "severity not in alerts.rollback_on_severity".into();
            out.push(alert_audit(now, a, AlertOutcome::Ignored(why), None));
            return;
        }
        let matched = match self.match_alert(a) {
            Ok(id) => id,
            Err(why) => {
                out.push(alert_audit(now, a, AlertOutcome::Ignored(why), None));
                return;
            }
        };
        let service = self
            .registry
            .get(&matched)
            .map(|d| d.info.service.clone())
            .unwrap_or_default();
        let outcome = AlertOutcome::Matched(matched.clone());
        out.push(alert_audit(now, a, outcome, Some((&matched, &service))));
        let evidence = json!({
            "alert": {
                "alertname": label(a, "alertname"),
                "severity": severity,
                "fingerprint": a.fingerprint,
                "starts_at": a.starts_at,
                "labels": a.labels,
                "annotations": a.annotations,
                "generator_url": a.generator_url,
            }
        });
        self.pending_alerts.insert(
            matched.clone(),
            HeldAlert {
                fingerprint: a.fingerprint.clone(),
                evidence: evidence.clone(),
            },
        );
        self.decide(&matched, Trigger::Alert, evidence, None, out);
    }

    pub(super) fn match_alert(&self, a: &Alert) -> Result<String, String> {
        let cfg = &self.config.alerts;
        let started_ok = |d: &Deploy| a.starts_at >= d.info.at;
        if let Some(d) = a
            .labels
            .get(&cfg.deploy_id_label)
            .and_then(|id| self.registry.get(id))
        {
            return if started_ok(d) {
                Ok(d.info.deploy_id.clone())
            } else {
                Err("alert started before the deploy".into())
            };
        }
        let Some(service) = a.labels.get(&cfg.service_label) else {
            return Err(format!(
                "no active deploy: neither {} nor {} label matches",
                cfg.deploy_id_label, cfg.service_label
            ));
        };
        let env = a.labels.get("environment").map(String::as_str);
        let candidates: Vec<&Deploy> = self.registry.of_service(service, env).collect();
        match candidates.as_slice() {
            [] => Err(format!("no active deploy of service {service}")),
            [d] if started_ok(d) => Ok(d.info.deploy_id.clone()),
            [_] => Err("alert started before the deploy".into()),
            many => Err(format!(
                "ambiguous: {} active deploys of service {service}; add an environment or {} label",
                many.len(),
                cfg.deploy_id_label
            )),
        }
    }
}

/// The value of an alert's label `k`, empty when it has none.
fn label(a: &Alert, k: &str) -> String {
    a.labels.get(k).cloned().unwrap_or_default()
}

/// The audit record of alert `a` as of `now`: what became of it, for the
/// deploy it matched, if any.
fn alert_audit(
    now: Timestamp,
    a: &Alert,
    outcome: AlertOutcome,
    deploy: Option<(&str, &str)>,
) -> Output {
    let rec = AuditRecord::new(
        now,
        AlertAudit {
            alertname: label(a, "alertname"),
            severity: label(a, "severity"),
            status: a.status,
            fingerprint: a.fingerprint.clone(),
            starts_at: a.starts_at,
            labels: a.labels.clone(),
            outcome,
        },
    );
    Output::Audit(match deploy {
        Some((id, svc)) => rec.for_deploy(id, svc),
        None => rec,
    })
}
