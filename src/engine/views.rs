//! What the engine shows (read-only): a deploy with a fresh evaluation for
//! the admin API and the demo, and the bounded on-call summary behind the
//! Prometheus gauges.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Action, DataMigration};
use crate::time::Timestamp;

use super::evaluate::Evaluation;
use super::Engine;

/// A deploy as the admin API and the demo show it.
#[derive(Debug, Clone, Serialize)]
pub struct DeployView {
    pub deploy_id: String,
    pub service: String,
    pub environment: String,
    pub version: String,
    pub previous_version: Option<String>,
    pub strategy: Option<String>,
    pub release_id: Option<String>,
    pub data_migration: DataMigration,
    pub canary_weight: Option<f64>,
    pub started_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub command_id: Option<String>,
    pub action: Option<Action>,
    pub evaluation: Evaluation,
}

/// See [`Engine::burn_summary`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BurnSummary {
    pub states: BTreeMap<&'static str, usize>,
    pub max_burn: BTreeMap<(&'static str, String), f64>,
}

impl Engine {
    pub fn active_deploys(&self) -> usize {
        self.registry.len()
    }

    pub fn paused(&self) -> bool {
        self.guards.paused().is_some()
    }

    pub fn breaker_open(&self) -> bool {
        self.guards.breaker_open_since().is_some()
    }

    /// Whether a command id has been emitted (or read back).
    pub fn was_emitted(&self, command_id: &str) -> bool {
        self.guards.was_emitted(command_id)
    }

    /// Number of series with window or cumulative state.
    pub fn series_count(&self) -> usize {
        self.windows.len() + self.cumulative.len()
    }

    /// Bytes of window and sequential-test state (for the memory bench).
    pub fn window_bytes(&self) -> usize {
        self.windows
            .values()
            .map(|w| w.memory_bytes())
            .sum::<usize>()
            + self
                .judges
                .values()
                .map(|j| j.memory_bytes())
                .sum::<usize>()
    }

    /// The on-call summary of the active deploys, keyed by bounded values
    /// only: how many are in each state — `commanded` (a rollback command
    /// was emitted), `verifying` (rolled back, its restored version under
    /// watch), `awaiting_approval` (an approval_required command was),
    /// `pending` (not evaluated yet), else the latest verdict — and the
    /// highest long-window burn rate per SLI and window pair (`"1m/5m"`).
    pub fn burn_summary(&self) -> BurnSummary {
        let mut summary = BurnSummary::default();
        for d in self.registry.iter() {
            let state = match (&d.decided, &d.last_eval) {
                _ if d.verifying.is_some() => "verifying",
                (Some((_, Action::ApprovalRequired)), _) => "awaiting_approval",
                (Some(_), _) => "commanded",
                (None, Some(ev)) => ev.verdict.as_str(),
                (None, None) => "pending",
            };
            *summary.states.entry(state).or_default() += 1;
            let Some(ev) = &d.last_eval else {
                continue;
            };
            for p in &ev.pairs {
                let key = (p.sli.as_str(), format!("{}/{}", p.short, p.long));
                let max = summary.max_burn.entry(key).or_insert(0.0);
                if p.burn_long.is_finite() && p.burn_long > *max {
                    *max = p.burn_long;
                }
            }
        }
        summary
    }

    /// A deploy with a fresh evaluation at the clock.
    pub fn deploy_view(&self, deploy_id: &str) -> Option<DeployView> {
        let d = self.registry.get(deploy_id)?;
        let evaluation = self.evaluate_deploy(d, self.clock);
        Some(DeployView {
            deploy_id: d.info.deploy_id.clone(),
            service: d.info.service.clone(),
            environment: d.environment().to_string(),
            version: d.info.version.clone(),
            previous_version: d.info.previous_version.clone(),
            strategy: d.info.strategy.clone(),
            release_id: d.info.release_id.clone(),
            data_migration: d.info.data_migration,
            canary_weight: d.info.canary_weight,
            started_at: d.info.at,
            completed_at: d.completed_at,
            command_id: d.decided.as_ref().map(|(id, _)| id.clone()),
            action: d.decided.as_ref().map(|(_, a)| *a),
            evaluation,
        })
    }

    /// Every active deploy, in arrival order.
    pub fn deploy_views(&self) -> Vec<DeployView> {
        self.registry
            .iter()
            .filter_map(|d| self.deploy_view(&d.info.deploy_id))
            .collect()
    }
}
