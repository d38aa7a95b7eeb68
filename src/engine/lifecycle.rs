//! Deploy lifecycle (`docs/formats.md#deploy-events`, `docs/formats.md#executor-results`): `deploy.started` makes a deploy
//! active (retiring an older one of the same service and environment),
//! `deploy.progressed` updates its traffic split, `deploy.completed` starts
//! its final watch, `deploy.rolled_back` and `deploy.aborted` retire it (a
//! rollback taking its release along), and so does a `succeeded` executor
//! result — except that a deploy rollbackd rolled back is first watched on
//! its restored version (`verify`).

use crate::model::audit::{DeployAudit, ResultAudit, VerificationOutcome};
use crate::model::{
    command_id, Action, AuditRecord, DeployEvent, DeployEventKind, ExecutorResult, Output,
    ResultStatus,
};
use crate::time::Timestamp;

use super::Engine;

impl Engine {
    /// Every instance applies every deploy event (the registry is whole
    /// everywhere); the owner of its key audits it.
    pub(super) fn deploy_event(&mut self, ev: DeployEvent, out: &mut Vec<Output>) {
        let owned = self.owns(&ev);
        let start = out.len();
        self.lifecycle(ev, out);
        if !owned {
            out.truncate(start);
        }
    }

    /// Applies one deploy event by its kind.
    fn lifecycle(&mut self, ev: DeployEvent, out: &mut Vec<Output>) {
        match ev.kind {
            DeployEventKind::Started => self.started(ev, out),
            DeployEventKind::Progressed => self.progressed(&ev, out),
            DeployEventKind::Completed => self.completed(&ev, out),
            DeployEventKind::RolledBack | DeployEventKind::Aborted => self.ended(&ev, out),
        }
    }

    /// `deploy.started`: a new deploy is watched, unless its id was seen,
    /// a newer deploy holds its service and environment, or the cap is
    /// reached; the older deploys it replaces are retired.
    fn started(&mut self, ev: DeployEvent, out: &mut Vec<Output>) {
        let now = self.clock;
        if self.registry.get(&ev.deploy_id).is_some() || self.registry.was_retired(&ev.deploy_id) {
            out.push(ignored(now, &ev, "deploy id already seen"));
            return;
        }
        let env = ev.environment_or_default().to_string();
        let older: Vec<(String, Timestamp)> = self
            .registry
            .of_service(&ev.service, Some(&env))
            .map(|d| (d.info.deploy_id.clone(), d.info.at))
            .collect();
        if older.iter().any(|(_, at)| *at > ev.at) {
            let why = "a newer deploy of this service and environment is active";
            out.push(ignored(now, &ev, why));
            return;
        }
        let cap_reached =
            self.registry.len() - older.len() >= self.config.limits.max_active_deploys;
        if cap_reached {
            out.push(ignored(now, &ev, "limits.max_active_deploys reached"));
            return;
        }
        for (old, _) in older {
            self.retire(&old, &format!("superseded by {}", ev.deploy_id), out);
        }
        let policy = self.config.policy(&ev.service).clone();
        let started = DeployAudit::Started {
            version: ev.version.clone(),
            previous_version: ev.previous_version.clone(),
            environment: env,
            strategy: ev.strategy.clone(),
            release_id: ev.release_id.clone(),
            data_migration: ev.data_migration,
            at: ev.at,
        };
        out.push(deploy_audit(now, &ev, started));
        let deploy_id = ev.deploy_id.clone();
        self.registry.insert(ev, policy, now);
        self.restore_decision(&deploy_id);
    }

    /// Commands read back before the deploy events on a restart already
    /// decided this deploy.
    fn restore_decision(&mut self, deploy_id: &str) {
        for action in [Action::Rollback, Action::ApprovalRequired] {
            let id = command_id(deploy_id, action);
            if self.guards.was_emitted(&id) {
                if let Some(d) = self.registry.get_mut(deploy_id) {
                    d.decided = Some((id, action));
                }
            }
        }
    }

    /// `deploy.progressed`: the deploy's traffic split, if it says one.
    fn progressed(&mut self, ev: &DeployEvent, out: &mut Vec<Output>) {
        let now = self.clock;
        let weight = ev.canary_weight;
        match self.registry.get_mut(&ev.deploy_id) {
            Some(d) => {
                if weight.is_some() {
                    d.info.canary_weight = weight;
                }
                let progressed = DeployAudit::Progressed {
                    canary_weight: weight,
                };
                out.push(deploy_audit(now, ev, progressed));
            }
            None => out.push(ignored(now, ev, "no active deploy with this id")),
        }
    }

    /// `deploy.completed`: the deploy's final watch starts.
    fn completed(&mut self, ev: &DeployEvent, out: &mut Vec<Output>) {
        let now = self.clock;
        let until = self.registry.update(&ev.deploy_id, |d| {
            d.completed_at = Some(ev.at);
            d.watched_until()
        });
        match until {
            Some(Some(watched_until)) => out.push(deploy_audit(
                now,
                ev,
                DeployAudit::Completed { watched_until },
            )),
            _ => out.push(ignored(now, ev, "no active deploy with this id")),
        }
    }

    /// `deploy.rolled_back` or `deploy.aborted`: the deploy is retired (a
    /// rollback first watched on its restored version), and a rollback
    /// not made by rollbackd takes its release along.
    fn ended(&mut self, ev: &DeployEvent, out: &mut Vec<Output>) {
        let release = self
            .registry
            .get(&ev.deploy_id)
            .and_then(|d| d.info.release_id.clone());
        let owned = self.owns(ev);
        // Rolled back by rollbackd: its release went along then.
        let ours = self
            .registry
            .get(&ev.deploy_id)
            .is_some_and(|d| d.decided.is_some());
        let verifying =
            ev.kind == DeployEventKind::RolledBack && self.start_verification(&ev.deploy_id, ev.at);
        if verifying || self.retire(&ev.deploy_id, ev.kind.as_str(), out) {
            // The owner of the rolled-back deploy takes its release
            // along (the commands topic tells the other instances).
            if let (DeployEventKind::RolledBack, Some(release), true, false) =
                (ev.kind, release, owned, ours)
            {
                self.cascade_release(&release, &ev.deploy_id, None, out);
            }
        } else {
            out.push(ignored(self.clock, ev, "no active deploy with this id"));
        }
    }

    /// Stops watching a deploy: its windows and held-back alert go with it.
    pub(super) fn retire(&mut self, deploy_id: &str, why: &str, out: &mut Vec<Output>) -> bool {
        let audit = DeployAudit::Retired { why: why.into() };
        self.retire_as(deploy_id, why, audit, out)
    }

    /// Retires a deploy that never completed and reached
    /// `limits.max_deploy_age` (a CI job that died): it no longer holds
    /// its service, nor a place under `limits.max_active_deploys`.
    pub(super) fn expire(&mut self, deploy_id: &str, started_at: Timestamp, out: &mut Vec<Output>) {
        let max_deploy_age = self.config.limits.max_deploy_age;
        let audit = DeployAudit::Expired {
            started_at,
            max_deploy_age,
        };
        let why = format!("no deploy.completed within {max_deploy_age}");
        self.retire_as(deploy_id, &why, audit, out);
    }

    /// [`Engine::retire`], audited (by the owner) as `audit`.
    fn retire_as(
        &mut self,
        deploy_id: &str,
        why: &str,
        audit: DeployAudit,
        out: &mut Vec<Output>,
    ) -> bool {
        // A restored version still under watch: the watch ends unfinished.
        if let Some(d) = self.registry.get(deploy_id) {
            if let (Some(v), true) = (&d.verifying, self.owns(&d.info)) {
                let rec = self.verification_audit(
                    d,
                    v,
                    VerificationOutcome::Inconclusive,
                    serde_json::json!({ "why": why }),
                );
                out.push(Output::Audit(rec));
            }
        }
        self.remember_finished(deploy_id, why);
        let Some(d) = self.registry.retire(deploy_id) else {
            return false;
        };
        self.forget_evidence(d.seq);
        self.pending_alerts.remove(deploy_id);
        if self.owns(&d.info) {
            out.push(Output::Audit(
                AuditRecord::new(self.clock, audit).for_deploy(deploy_id, &d.info.service),
            ));
        }
        true
    }

    /// An executor result: audited (with the time from decision to rollback
    /// for a success), and a success retires the deploy.
    pub(super) fn result(&mut self, r: &ExecutorResult, out: &mut Vec<Output>) {
        let deploy = self.registry.get(&r.deploy_id);
        // Audited once: by the owner of the deploy's key (of the deploy id,
        // for a deploy no longer active).
        let owned = match deploy {
            Some(d) => self.owns(&d.info),
            None => self.ownership.owns(&r.deploy_id, ""),
        };
        let service = deploy.map(|d| d.info.service.clone());
        let time_to_rollback = (r.status == ResultStatus::Succeeded)
            .then(|| self.guards.emitted_at(&r.command_id))
            .flatten()
            .map(|decided| r.at.since(decided));
        let mut rec = AuditRecord::new(
            self.clock,
            ResultAudit {
                command_id: r.command_id.clone(),
                status: r.status,
                at: r.at,
                executor: r.executor.clone(),
                message: r.message.clone(),
                time_to_rollback,
            },
        );
        rec.deploy_id = Some(r.deploy_id.clone());
        rec.service = service;
        if owned {
            out.push(Output::Audit(rec));
        }
        let ours = deploy
            .and_then(|d| d.decided.as_ref())
            .is_some_and(|(id, _)| *id == r.command_id);
        if r.status == ResultStatus::Succeeded
            && !(ours && self.start_verification(&r.deploy_id, r.at))
        {
            self.retire(&r.deploy_id, "rollback succeeded", out);
        }
    }
}

/// The audit record `a` of deploy event `ev`, as of `now`.
fn deploy_audit(now: Timestamp, ev: &DeployEvent, a: DeployAudit) -> Output {
    Output::Audit(AuditRecord::new(now, a).for_deploy(&ev.deploy_id, &ev.service))
}

/// The audit record of a deploy event that changed nothing, and why.
fn ignored(now: Timestamp, ev: &DeployEvent, why: &'static str) -> Output {
    let a = DeployAudit::Ignored {
        event: ev.kind,
        why: why.into(),
    };
    deploy_audit(now, ev, a)
}
