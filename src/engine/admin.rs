//! What people and the record of the past change (`docs/guarantees.md#guards`, `docs/guarantees.md#start-up-and-recovery`): pause,
//! resume, breaker resets and maintenance windows — taken here (applied and audited) or read
//! from the admin topic (applied only) —, manual rollbacks, and guard state
//! rebuilt from commands read back from the commands topic.

use serde_json::json;

use crate::model::audit::{
    AdminAudit, BreakerAudit, MaintenanceAudit, MaintenanceState, PauseAudit,
};
use crate::model::{
    command_id, Action, AdminAction, AdminCall, AdminRecord, AuditRecord, Command, Output, Refusal,
    Trigger,
};

use super::Engine;

impl Engine {
    /// An admin action taken on any instance, read from the admin topic:
    /// applied, not audited again (the instance that took it audited it).
    /// Reading the same record twice, or an older one after a newer one,
    /// changes nothing. Returns whether the state changed.
    pub(super) fn admin_record(&mut self, r: &AdminRecord) -> bool {
        match r.action {
            AdminAction::Pause => self.guards.set_paused(true, r.at, &r.actor),
            AdminAction::Resume => self.guards.set_paused(false, r.at, &r.actor),
            AdminAction::BreakerReset => self.guards.reset_breaker_at(r.at),
            AdminAction::MaintenanceOpen | AdminAction::MaintenanceClose => self
                .maintenance_record(r)
                .is_some_and(|audit| audit.changed),
        }
    }

    /// Opens or closes the window of a maintenance record; its audit
    /// detail, or `None` when the record names no window, or closes one
    /// not known here.
    fn maintenance_record(&mut self, r: &AdminRecord) -> Option<MaintenanceAudit> {
        let m = r.maintenance.as_ref()?;
        let windows = self.guards.maintenance_mut();
        let (change, state) = match r.action {
            AdminAction::MaintenanceOpen => {
                (windows.open(m, r.at, &r.actor), MaintenanceState::Open)
            }
            AdminAction::MaintenanceClose => {
                (windows.close(&m.id, r.at)?, MaintenanceState::Closed)
            }
            _ => return None,
        };
        Some(MaintenanceAudit {
            actor: r.actor.clone(),
            changed: change.changed,
            id: m.id.clone(),
            reason: change.reason,
            services: change.services,
            state,
            until: change.until,
        })
    }

    pub(super) fn admin_call(&mut self, call: AdminCall, out: &mut Vec<Output>) {
        let r = match call {
            AdminCall::Guard(r) => r,
            AdminCall::Rollback {
                deploy_id,
                reason,
                actor,
            } => return self.manual_rollback(&deploy_id, &reason, &actor, out),
        };
        let event: crate::model::AuditEvent = match r.action {
            AdminAction::Pause | AdminAction::Resume => PauseAudit {
                changed: self.admin_record(&r),
                paused: r.action == AdminAction::Pause,
                actor: r.actor,
            }
            .into(),
            AdminAction::BreakerReset => BreakerAudit::Reset {
                was_open: self.admin_record(&r),
                actor: r.actor,
            }
            .into(),
            AdminAction::MaintenanceOpen | AdminAction::MaintenanceClose => {
                match self.maintenance_record(&r) {
                    Some(audit) => audit.into(),
                    None => return,
                }
            }
        };
        out.push(Output::Audit(AuditRecord::new(self.clock, event)));
    }

    /// A person's rollback: bypasses pause, maintenance, dry run, cooldown,
    /// breaker and approval, never once-per-deploy (`docs/guarantees.md#guards`).
    pub(super) fn manual_rollback(
        &mut self,
        deploy_id: &str,
        reason: &str,
        actor: &str,
        out: &mut Vec<Output>,
    ) {
        if self.registry.get(deploy_id).is_none() {
            out.push(Output::Refused(Refusal::NotFound(deploy_id.to_string())));
            return;
        }
        let id = command_id(deploy_id, Action::Rollback);
        if self.guards.was_emitted(&id) {
            out.push(Output::Refused(Refusal::AlreadyEmitted(id)));
            return;
        }
        out.push(Output::Audit(AuditRecord::new(
            self.clock,
            AdminAudit {
                deploy_id: deploy_id.to_string(),
                reason: reason.to_string(),
                actor: actor.to_string(),
            },
        )));
        let evidence = json!({"reason": reason, "actor": actor});
        self.decide(deploy_id, Trigger::Manual, evidence, Some(actor), out);
    }

    /// Rebuilds guard state from a command read back from the commands
    /// topic (recovery, `docs/guarantees.md#start-up-and-recovery`).
    pub(super) fn restore_command(&mut self, cmd: &Command, out: &mut Vec<Output>) {
        if self.guards.restore(cmd) {
            out.push(self.breaker_opened(cmd.decided_at, None));
        }
        self.known
            .commanded(&super::decide::key_of_command(cmd), cmd);
        if let Some(d) = self.registry.get_mut(&cmd.deploy_id) {
            if cmd.trigger != Trigger::Manual || cmd.action == Action::Rollback {
                d.decided = Some((cmd.command_id.clone(), cmd.action));
                d.command = Some(cmd.clone());
            }
        }
        self.pending_alerts.remove(&cmd.deploy_id);
    }
}
