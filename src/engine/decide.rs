//! Decisions (`docs/guarantees.md#verdicts`, `docs/guarantees.md#guards`): evaluating what is due, the guard chain,
//! the commands it lets through, and release cascades (§3.2).
//!
//! A deploy is evaluated at every `evaluation_interval` of the clock and as
//! soon as telemetry touched its windows. A verdict is audited when it
//! changes to or from `rollback` / `not_attributable`; a suppression when
//! its reason changes — not at every evaluation.

use serde_json::{json, Value};

use crate::model::audit::{BreakerAudit, CommandAudit, DecisionAudit, SuppressedAudit};
use crate::model::{
    command_id, Action, AuditRecord, Command, DataMigration, Output, Trigger, Verdict,
    COMMAND_SCHEMA,
};
use crate::time::Timestamp;

use super::evaluate::{evaluate, Evaluation};
use super::fold::key_of;
use super::guards::Chain;
use super::idmap::IdMap;
use super::judge::Judge;
use super::known;
use super::registry::{Deploy, Role};
use super::window::SeriesWindows;
use super::Engine;

impl Engine {
    /// Evaluates every deploy that is due at the clock, retires deploys
    /// whose watch ended, and acts on the verdicts.
    pub(super) fn tick(&mut self, out: &mut Vec<Output>) {
        let now = self.clock;
        for seq in self.registry.take_due(now) {
            if !self.verify_or_retire(seq, now, out) {
                self.evaluate_due(seq, now, out);
            }
        }
        self.sweep_cumulative();
    }

    /// Whether deploy `seq` is done with at this tick without an
    /// evaluation: gone, its restored version under watch (verified
    /// instead), or its watch ended — after completion, or at
    /// `limits.max_deploy_age` without one — and it is retired.
    fn verify_or_retire(&mut self, seq: u64, now: Timestamp, out: &mut Vec<Output>) -> bool {
        let Some(d) = self.registry.by_seq(seq) else {
            return true;
        };
        let id = d.info.deploy_id.clone();
        if d.verifying.is_some() {
            self.verify(seq, out);
            return true;
        }
        if d.watched_until().is_some_and(|end| now >= end) {
            if d.decided.is_none() {
                let key = key_of(&d.info);
                let version = d.info.version.clone();
                self.known.good(&key, &version, now, known::WATCHED);
            }
            self.retire(&id, "watch after completion ended", out);
            return true;
        }
        let started_at = d.info.at;
        if d.completed_at.is_none()
            && now >= started_at.saturating_add(self.config.limits.max_deploy_age)
        {
            self.expire(&id, started_at, out);
            return true;
        }
        false
    }

    /// Evaluates a due deploy, if this instance decides for it, and acts
    /// on its verdict; schedules its next evaluation either way.
    fn evaluate_due(&mut self, seq: u64, now: Timestamp, out: &mut Vec<Output>) {
        let Some(d) = self.registry.by_seq(seq) else {
            return;
        };
        let id = d.info.deploy_id.clone();
        let interval = d.policy.evaluation_interval.nanos().max(1);
        let next_eval = Timestamp((now.0.div_euclid(interval) + 1).saturating_mul(interval));
        if !self.owns(&d.info) {
            // Another instance decides for it.
            self.registry.update(&id, |d| d.next_eval = next_eval);
            return;
        }
        let Some(ev) = self.judge_deploy(seq, now) else {
            return;
        };
        self.act_on(seq, ev, next_eval, out);
    }

    /// Records evaluation `ev` of deploy `seq` and, unless it was decided
    /// already, acts on it: audits a notable change of verdict, decides a
    /// rollback, or tries a held-back alert again.
    fn act_on(&mut self, seq: u64, ev: Evaluation, next_eval: Timestamp, out: &mut Vec<Output>) {
        let now = self.clock;
        let Some(d) = self.registry.by_seq(seq) else {
            return;
        };
        let id = d.info.deploy_id.clone();
        let verdict = ev.verdict;
        let evidence = ev.decisive_pair().map(|p| p.evidence());
        let decided = d.decided.is_some();
        let previous = d.previous_verdict;
        let service = d.info.service.clone();
        let pending = self.pending_alerts.contains_key(&id);
        self.registry.update(&id, |d| {
            d.next_eval = next_eval;
            d.history.record(&ev);
            d.last_eval = Some(ev);
            d.previous_verdict = Some(verdict);
            if verdict != Verdict::Rollback && !pending {
                d.audited_suppression = None;
            }
        });
        if decided {
            return;
        }
        let notable =
            |v: Option<Verdict>| matches!(v, Some(Verdict::Rollback | Verdict::NotAttributable));
        if previous != Some(verdict) && (notable(Some(verdict)) || notable(previous)) {
            let audit = DecisionAudit {
                verdict,
                evidence: evidence.clone(),
            };
            out.push(Output::Audit(
                AuditRecord::new(now, audit).for_deploy(&id, &service),
            ));
        }
        if verdict == Verdict::Rollback {
            let evidence = evidence.unwrap_or(Value::Null);
            self.decide(&id, Trigger::BurnRate, evidence, None, out);
        } else if let Some(p) = self.pending_alerts.get(&id) {
            let evidence = p.evidence.clone();
            self.decide(&id, Trigger::Alert, evidence, None, out);
        } else {
            self.gate_check(seq, out);
        }
    }

    /// Evaluates a deploy, its sequential tests taking in what arrived
    /// since they last looked.
    fn judge_deploy(&mut self, seq: u64, now: Timestamp) -> Option<Evaluation> {
        let d = self.registry.by_seq(seq)?;
        let judge = self
            .judges
            .entry(seq)
            .or_insert_with(|| Judge::new(&d.policy, d.info.at));
        Some(evaluate_with(judge, d, &self.windows, now))
    }

    /// A deploy's evaluation at `now` for a view: its tests as they stand,
    /// unchanged.
    pub(super) fn evaluate_deploy(&self, d: &Deploy, now: Timestamp) -> Evaluation {
        let mut judge = self
            .judges
            .get(&d.seq)
            .cloned()
            .unwrap_or_else(|| Judge::new(&d.policy, d.info.at));
        evaluate_with(&mut judge, d, &self.windows, now)
    }

    /// One decision on one deploy: the guard chain (`docs/guarantees.md#guards`, in order),
    /// then the command if they let it through. Returns whether a command
    /// was emitted.
    pub(super) fn decide(
        &mut self,
        deploy_id: &str,
        trigger: Trigger,
        evidence: Value,
        actor: Option<&str>,
        out: &mut Vec<Output>,
    ) -> bool {
        let now = self.clock;
        let Some(d) = self.registry.get(deploy_id) else {
            return false;
        };
        let manual = trigger.is_manual();
        // 7. decides the action up front: the command id depends on it.
        let action = if manual {
            Action::Rollback
        } else {
            self.automatic_action(d)
        };
        let cmd = build_command(d, action, trigger, evidence, now);
        let chain = if manual {
            Chain::MANUAL
        } else {
            Chain::AUTOMATIC
        };
        if let Some(suppression) = self.guards.check(chain, Some(&cmd), d.policy.dry_run, now) {
            let service = d.info.service.clone();
            let reason = suppression.reason();
            let first_time = d.audited_suppression != Some(reason);
            let alert_fingerprint = (trigger == Trigger::Alert)
                .then(|| {
                    self.pending_alerts
                        .get(deploy_id)
                        .map(|p| p.fingerprint.clone())
                })
                .flatten();
            if let Some(d) = self.registry.get_mut(deploy_id) {
                d.audited_suppression = Some(reason);
            }
            if first_time {
                out.push(Output::Audit(
                    AuditRecord::new(
                        now,
                        SuppressedAudit::Decision {
                            suppression,
                            trigger,
                            action,
                            alert_fingerprint,
                        },
                    )
                    .for_deploy(deploy_id, &service),
                ));
            }
            return false;
        }
        let release = d.info.release_id.clone();
        self.emit(cmd, !manual, actor, out);
        if let (Action::Rollback, Some(release)) = (action, release) {
            self.cascade_release(&release, deploy_id, Some(trigger), out);
        }
        true
    }

    /// The action of a command rollbackd decides on its own for `d`: a
    /// person approves it when it cannot be undone (an irreversible data
    /// migration) or when it would restore a version rolled back before
    /// (a fast-tracked revert whose `previous_version` is the one that
    /// failed).
    fn automatic_action(&self, d: &Deploy) -> Action {
        let to_bad = d
            .info
            .previous_version
            .as_deref()
            .is_some_and(|v| self.known.is_bad(&super::fold::key_of(&d.info), v));
        if d.info.data_migration == DataMigration::Irreversible || to_bad {
            Action::ApprovalRequired
        } else {
            Action::Rollback
        }
    }

    /// Records and outputs a command, with its audit record (and the
    /// breaker's, if it opened it).
    fn emit(
        &mut self,
        cmd: Command,
        counts_for_breaker: bool,
        actor: Option<&str>,
        out: &mut Vec<Output>,
    ) {
        let opened = self.guards.record(&cmd, counts_for_breaker);
        self.known.commanded(&key_of_command(&cmd), &cmd);
        self.pending_alerts.remove(&cmd.deploy_id);
        let started = self.registry.get(&cmd.deploy_id).map(|d| d.info.at);
        if let Some(d) = self.registry.get_mut(&cmd.deploy_id) {
            d.decided = Some((cmd.command_id.clone(), cmd.action));
            d.command = Some(cmd.clone());
        }
        out.push(Output::Audit(
            AuditRecord::new(
                cmd.decided_at,
                CommandAudit {
                    command_id: cmd.command_id.clone(),
                    action: cmd.action,
                    trigger: cmd.trigger,
                    environment: cmd.environment.clone(),
                    from_version: cmd.from_version.clone(),
                    to_version: cmd.to_version.clone(),
                    evidence: cmd.evidence.clone(),
                    detected_after: started.map(|at| cmd.decided_at.since(at)),
                    actor: actor.map(String::from),
                },
            )
            .for_deploy(&cmd.deploy_id, &cmd.service),
        ));
        let at = cmd.decided_at;
        let id = cmd.command_id.clone();
        out.push(Output::Command(cmd));
        if opened {
            out.push(self.breaker_opened(at, Some(id)));
        }
    }

    /// The audit record of the breaker opening; `by`: the command whose
    /// emission opened it, if one did.
    pub(super) fn breaker_opened(&self, at: Timestamp, by: Option<String>) -> Output {
        Output::Audit(AuditRecord::new(
            at,
            BreakerAudit::Opened {
                by_command: by,
                automatic_commands: self.guards.breaker_count(at),
                max: self.config.guards.breaker_max_rollbacks,
                window: self.config.guards.breaker_window,
            },
        ))
    }

    /// Gives every other active deploy of `release` its own command
    /// (`docs/guarantees.md#release-rollbacks`). `cause` is the trigger of the command that rolled
    /// back `origin`, or `None` when a `deploy.rolled_back` event did.
    pub(super) fn cascade_release(
        &mut self,
        release: &str,
        origin: &str,
        cause: Option<Trigger>,
        out: &mut Vec<Output>,
    ) {
        let now = self.clock;
        let members: Vec<String> = self
            .registry
            .of_release(release)
            .filter(|d| d.info.deploy_id != origin)
            .map(|d| d.info.deploy_id.clone())
            .collect();
        if members.is_empty() {
            return;
        }
        if cause.is_none() {
            // Started by an event, not by one of our commands: the guards of
            // a whole decision apply here, once.
            if let Some(suppression) = self.guards.check(Chain::RELEASE, None, false, now) {
                out.push(Output::Audit(AuditRecord::new(
                    now,
                    SuppressedAudit::Release {
                        reason: suppression.reason(),
                        release_id: release.to_string(),
                        caused_by: origin.to_string(),
                        deploys: members,
                    },
                )));
                return;
            }
        }
        let chain = if cause == Some(Trigger::Manual) {
            Chain::MANUAL
        } else {
            Chain::RELEASE_MEMBER
        };
        let mut emitted_any = false;
        for member in members {
            let Some(d) = self.registry.get(&member) else {
                continue;
            };
            let action = self.automatic_action(d);
            let evidence = json!({
                "release_id": release,
                "caused_by": origin,
                "cause": cause.map_or("deploy.rolled_back", |t| t.as_str()),
            });
            let cmd = build_command(d, action, Trigger::Release, evidence, now);
            if let Some(suppression) = self.guards.check(chain, Some(&cmd), d.policy.dry_run, now) {
                out.push(Output::Audit(
                    AuditRecord::new(now, SuppressedAudit::ReleaseMember { suppression })
                        .for_deploy(&member, &d.info.service),
                ));
                continue;
            }
            self.emit(cmd, false, None, out);
            emitted_any = true;
        }
        if emitted_any && cause.is_none() && self.guards.count_for_breaker(now) {
            out.push(self.breaker_opened(now, None));
        }
    }
}

fn build_command(
    d: &Deploy,
    action: Action,
    trigger: Trigger,
    evidence: Value,
    now: Timestamp,
) -> Command {
    Command {
        schema: COMMAND_SCHEMA.into(),
        command_id: command_id(&d.info.deploy_id, action),
        action,
        trigger,
        deploy_id: d.info.deploy_id.clone(),
        release_id: d.info.release_id.clone(),
        service: d.info.service.clone(),
        environment: d.environment().to_string(),
        from_version: d.info.version.clone(),
        to_version: d.info.previous_version.clone(),
        strategy: d.info.strategy.clone(),
        labels: d.info.labels.clone(),
        evidence,
        decided_at: now,
        // The engine has no wall clock: adapters stamp the issue time.
        issued_at: now,
    }
}

/// Evaluates `d` on its windows with `judge`'s tests.
fn evaluate_with(
    judge: &mut Judge,
    d: &Deploy,
    windows: &IdMap<(u64, Role), SeriesWindows>,
    now: Timestamp,
) -> Evaluation {
    let cand = windows.get(&(d.seq, Role::Candidate));
    let base = windows.get(&(d.seq, Role::Baseline));
    evaluate(judge, &d.policy, cand, base, now)
}

/// The key a command is for.
pub(super) fn key_of_command(cmd: &Command) -> crate::model::evidence::Key {
    crate::model::evidence::Key {
        service: cmd.service.clone(),
        environment: cmd.environment.clone(),
    }
}
