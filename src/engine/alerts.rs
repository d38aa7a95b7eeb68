//! Alertmanager alerts as rollback triggers (CONTRACT §1.3). A firing alert
//! whose severity is configured is matched to an active deploy (by its
//! deploy id label, else by service and environment, if it started after
//! the deploy) and triggers a rollback decision; one held back by a guard
//! stays pending until emitted or resolved. Repeated deliveries (same
//! fingerprint, `startsAt` and status) change nothing.

use serde_json::{json, Value};

use crate::model::audit::{AlertAudit, AlertOutcome};
use crate::model::{Alert, AlertStatus, AuditRecord, Output, Trigger};

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
    pub(super) fn alerts(&mut self, alerts: &[Alert], out: &mut Vec<Output>) {
        let now = self.clock;
        for a in alerts {
            let key = (a.fingerprint.clone(), a.starts_at.0, a.status);
            if !self.alerts_seen.insert(key, ()) {
                continue;
            }
            let labels = |k: &str| a.labels.get(k).cloned().unwrap_or_default();
            let (name, severity) = (labels("alertname"), labels("severity"));
            let audit = |outcome: AlertOutcome, deploy: Option<(&str, &str)>| {
                let rec = AuditRecord::new(
                    now,
                    AlertAudit {
                        alertname: name.clone(),
                        severity: severity.clone(),
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
            };
            if a.status == AlertStatus::Resolved {
                let mut cleared: Vec<String> = self
                    .pending_alerts
                    .iter()
                    .filter(|(_, p)| p.fingerprint == a.fingerprint)
                    .map(|(id, _)| id.clone())
                    .collect();
                cleared.sort();
                for id in &cleared {
                    self.pending_alerts.remove(id);
                }
                out.push(audit(
                    AlertOutcome::Resolved {
                        cleared_pending_for: cleared,
                    },
                    None,
                ));
                continue;
            }
            if !self.config.alerts.rollback_on_severity.contains(&severity) {
                out.push(audit(
                    AlertOutcome::Ignored("severity not in alerts.rollback_on_severity".into()),
                    None,
                ));
                continue;
            }
            let matched = match self.match_alert(a) {
                Ok(id) => id,
                Err(why) => {
                    out.push(audit(AlertOutcome::Ignored(why), None));
                    continue;
                }
            };
            let service = self
                .registry
                .get(&matched)
                .map(|d| d.info.service.clone())
                .unwrap_or_default();
            out.push(audit(
                AlertOutcome::Matched(matched.clone()),
                Some((&matched, &service)),
            ));
            let evidence = json!({
                "alert": {
                    "alertname": name,
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
