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

use super::fold::key_of;
use super::infer::INFERRED;
use super::registry::Role;
use super::Engine;
use crate::model::evidence::Key;

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
    /// it is the executor's redeploy of a version rollbackd restored, a
    /// newer deploy holds its service and environment, or the cap is
    /// reached; the older deploys it replaces are retired. An announced
    /// deploy of a version rollbackd inferred takes the inferred one over;
    /// a deploy of a version known to be good is fast-tracked.
    fn started(&mut self, ev: DeployEvent, out: &mut Vec<Output>) {
        let now = self.clock;
        let inferred = ev.strategy.as_deref() == Some(INFERRED);
        let seen =
            self.registry.get(&ev.deploy_id).is_some() || self.registry.was_retired(&ev.deploy_id);
        if seen && inferred {
            // Its owner published it: applied there already.
            return;
        }
        if seen {
            out.push(ignored(now, &ev, "deploy id already seen"));
            return;
        }
        let key = key_of(&ev);
        let env = ev.environment_or_default().to_string();
        let taken_over = match self.same_version(&ev, &key, inferred) {
            Ok(taken_over) => taken_over,
            Err(why) => {
                out.push(ignored_because(now, &ev, why));
                return;
            }
        };
        let older: Vec<(String, Timestamp)> = self
            .registry
            .of_service(&ev.service, Some(&env))
            .filter(|d| Some(&d.info.deploy_id) != taken_over.as_ref())
            .map(|d| (d.info.deploy_id.clone(), d.info.at))
            .collect();
        if older.iter().any(|(_, at)| *at > ev.at) {
            let why = "a newer deploy of this service and environment is active";
            out.push(ignored(now, &ev, why));
            return;
        }
        let replaced = older.len() + usize::from(taken_over.is_some());
        let cap_reached = self.registry.len() - replaced >= self.config.limits.max_active_deploys;
        if cap_reached {
            out.push(ignored(now, &ev, "limits.max_active_deploys reached"));
            return;
        }
        for (old, _) in older {
            self.retire(&old, &format!("superseded by {}", ev.deploy_id), out);
        }
        let window = self.config.deploys.fast_track_window;
        let fast_track = self.known.fast_track(&key, &ev, now, window);
        let policy = self.config.policy(&ev.service).clone();
        let started = DeployAudit::Started {
            version: ev.version.clone(),
            previous_version: ev.previous_version.clone(),
            environment: env,
            strategy: ev.strategy.clone(),
            release_id: ev.release_id.clone(),
            data_migration: ev.data_migration,
            at: ev.at,
            fast_track: fast_track.clone(),
        };
        out.push(deploy_audit(now, &ev, started));
        let (deploy_id, at) = (ev.deploy_id.clone(), ev.at);
        let seq = self.registry.insert(ev, policy, now);
        if let Some(inferred_id) = taken_over {
            self.take_over(&inferred_id, seq, out);
        }
        self.restore_decision(&deploy_id);
        if let Some(f) = fast_track {
            self.start_fast_track(&deploy_id, at, f);
        }
    }

    /// What an active deploy of the same version, or the last rollback of
    /// `key`, makes of `ev`: the inferred deploy it takes over (if any), or
    /// why it is ignored — the executor's redeploy of the version a
    /// rollback restored, an inferred deploy decided already, an inferred
    /// event for a version an announced deploy holds.
    fn same_version(
        &self,
        ev: &DeployEvent,
        key: &Key,
        inferred: bool,
    ) -> Result<Option<String>, String> {
        if let Some(r) = self.known.restored(key, &ev.version) {
            if self.registry.get(&r.deploy_id).is_some() {
                return Err(format!(
                    "the redeploy of {} by the rollback rollbackd commanded ({})",
                    ev.version, r.command_id
                ));
            }
        }
        let Some(d) = self
            .registry
            .of_service(&ev.service, Some(&key.environment))
            .find(|d| d.info.version == ev.version)
        else {
            return Ok(None);
        };
        let id = d.info.deploy_id.clone();
        match (d.info.strategy.as_deref() == Some(INFERRED), inferred) {
            (true, false) if d.decided.is_some() => Err(format!(
                "rollbackd inferred this deploy as {id} and decided it"
            )),
            (true, false) => Ok(Some(id)),
            (false, true) => Err(format!("deploy {id} of this version is active")),
            _ => Ok(None),
        }
    }

    /// An announced deploy (`seq`) of the version rollbackd inferred as
    /// `inferred_id`: it takes the inferred deploy's windows (its baseline's
    /// only when it names the same one) and the inferred deploy retires.
    fn take_over(&mut self, inferred_id: &str, seq: u64, out: &mut Vec<Output>) {
        let Some(old) = self.registry.get(inferred_id) else {
            return;
        };
        let old_seq = old.seq;
        let same_baseline = self
            .registry
            .by_seq(seq)
            .is_some_and(|d| d.info.previous_version == old.info.previous_version);
        let mut roles = vec![Role::Candidate];
        if same_baseline {
            roles.push(Role::Baseline);
            if let Some(j) = self.judges.remove(&old_seq) {
                self.judges.insert(seq, j);
            }
        }
        for role in roles {
            if let Some(w) = self.windows.remove(&(old_seq, role)) {
                self.windows.insert((seq, role), w);
            }
            let series: Vec<_> = self
                .cumulative
                .keys()
                .filter(|k| k.1 == old_seq && k.2 == role)
                .copied()
                .collect();
            for k in series {
                if let Some(st) = self.cumulative.remove(&k) {
                    self.cumulative.insert((k.0, seq, role), st);
                }
            }
        }
        if let Some(late) = self.late_data.remove(&old_seq) {
            self.late_data.insert(seq, late);
        }
        self.registry.touch(seq);
        let why = match self.registry.by_seq(seq) {
            Some(d) => format!("announced as {}", d.info.deploy_id),
            None => "announced".to_string(),
        };
        self.retire(inferred_id, &why, out);
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
        if ev.strategy.as_deref() == Some(INFERRED)
            && self
                .registry
                .get(&ev.deploy_id)
                .is_none_or(|d| d.completed_at.is_some())
        {
            // Its owner published it: applied there already.
            return;
        }
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
    ignored_because(now, ev, why.to_string())
}

/// [`ignored`], with a reason made for it.
fn ignored_because(now: Timestamp, ev: &DeployEvent, why: String) -> Output {
    let a = DeployAudit::Ignored {
        event: ev.kind,
        why,
    };
    deploy_audit(now, ev, a)
}
