//! What the engine shows (read-only): a deploy with a fresh evaluation,
//! its state in words and its history for the admin API, the status page,
//! the replay report and the demo; the recently finished deploys; and the
//! bounded on-call summary behind the Prometheus gauges.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Action, DataMigration};
use crate::time::Timestamp;

use super::evaluate::Evaluation;
use super::history::Point;
use super::registry::Deploy;
use super::Engine;

/// How many finished deploys the engine remembers by default (the status
/// page's "recently finished").
pub const KEEP_FINISHED: usize = 20;

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
    /// In words: `watching`, `warming up`, `healthy so far`, `rollback`
    /// (commanded), `not_attributable`, `suppressed: <reason>`,
    /// `approval required`, `verifying`.
    pub state: String,
    /// From its start to the engine's clock.
    pub age_seconds: f64,
    /// In words: the evidence of its command when it was decided, else
    /// the decisive pair's when a pair fires.
    pub evidence: Option<String>,
    pub evaluation: Evaluation,
    /// Its evaluations over its life (see [`super::history`]).
    pub history: Vec<Point>,
    /// Observations of it that came later than its `allowed_lateness`:
    /// in its windows, too late for the attribution test (the first is
    /// audited as `late_data`).
    pub late_observations: u64,
}

/// A deploy no longer watched, as it was when it left.
#[derive(Debug, Clone, Serialize)]
pub struct FinishedDeploy {
    #[serde(flatten)]
    pub deploy: DeployView,
    pub finished_at: Timestamp,
    pub finished_because: String,
}

/// What a deploy's view changes with: its last evaluation, its state, its
/// command, its completion and its late observations (see
/// [`Engine::owned_marks`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ViewMark {
    evaluated: Option<Timestamp>,
    state: String,
    command_id: Option<String>,
    completed_at: Option<Timestamp>,
    late_observations: u64,
}

/// A deploy's state in words (see [`DeployView::state`]).
fn state(d: &Deploy) -> String {
    if d.verifying.is_some() {
        return "verifying".into();
    }
    match (&d.decided, &d.last_eval) {
        (Some((_, Action::ApprovalRequired)), _) => "approval required".into(),
        (Some(_), _) => "rollback".into(),
        (None, None) => "watching".into(),
        (None, Some(ev)) => match ev.verdict {
            crate::model::Verdict::WarmingUp => "warming up".into(),
            crate::model::Verdict::Healthy => "healthy so far".into(),
            crate::model::Verdict::NotAttributable => "not_attributable".into(),
            crate::model::Verdict::Rollback => match d.audited_suppression {
                Some(reason) => format!("suppressed: {reason}"),
                None => "rollback".into(),
            },
        },
    }
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
            // Bounded values: the verdict, not the suppression reason.
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
        Some(self.view(d, self.evaluate_deploy(d, self.clock)))
    }

    /// Up to `limit` active deploys, the newest, in arrival order, each as
    /// of its last evaluation (a fresh one only if it has none): cheap
    /// enough for a page that polls every few seconds, whatever the
    /// number of deploys. Also how many are active.
    pub fn latest_views(&self, limit: usize) -> (Vec<DeployView>, usize) {
        let all: Vec<&Deploy> = self.registry.iter().collect();
        let views = all[all.len().saturating_sub(limit)..]
            .iter()
            .map(|d| self.last_view(d))
            .collect();
        (views, all.len())
    }

    /// The active deploys whose key this engine decides for, each with
    /// the mark of its view: cheap, so an owner can ask every pass which
    /// views changed.
    pub fn owned_marks(&self) -> Vec<(String, ViewMark)> {
        self.registry
            .iter()
            .filter(|d| self.ownership.owns(&d.info.service, d.environment()))
            .map(|d| {
                let mark = ViewMark {
                    evaluated: d.last_eval.as_ref().map(|ev| ev.at),
                    state: state(d),
                    command_id: d.decided.as_ref().map(|(id, _)| id.clone()),
                    completed_at: d.completed_at,
                    late_observations: self.late_data.get(&d.seq).copied().unwrap_or(0),
                };
                (d.info.deploy_id.clone(), mark)
            })
            .collect()
    }

    /// An active deploy as of its last evaluation (see
    /// [`Engine::latest_views`]).
    pub fn latest_view(&self, deploy_id: &str) -> Option<DeployView> {
        self.registry.get(deploy_id).map(|d| self.last_view(d))
    }

    /// Whether the deploy is active (watched).
    pub fn is_active(&self, deploy_id: &str) -> bool {
        self.registry.get(deploy_id).is_some()
    }

    /// A deploy as of its last evaluation (a fresh one if it has none).
    fn last_view(&self, d: &Deploy) -> DeployView {
        let evaluation = match &d.last_eval {
            Some(ev) => ev.clone(),
            None => self.evaluate_deploy(d, self.clock),
        };
        self.view(d, evaluation)
    }

    fn view(&self, d: &Deploy, evaluation: Evaluation) -> DeployView {
        DeployView {
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
            state: state(d),
            age_seconds: self.clock.since(d.info.at).as_secs_f64().max(0.0),
            // A decided deploy shows what it was decided on: its windows
            // empty out after the rollback, and so do later evaluations.
            evidence: d
                .command
                .as_ref()
                .and_then(|c| crate::model::summary::evidence(&c.evidence))
                .or_else(|| {
                    evaluation
                        .decisive_pair()
                        .and_then(|p| crate::model::summary::evidence(&p.evidence()))
                }),
            evaluation,
            history: d.history.points().to_vec(),
            late_observations: self.late_data.get(&d.seq).copied().unwrap_or(0),
        }
    }

    /// Keeps a deploy that is about to stop being watched among the
    /// finished ones.
    pub(super) fn remember_finished(&mut self, deploy_id: &str, why: &str) {
        if self.keep_finished == 0 {
            return;
        }
        let Some(deploy) = self.registry.get(deploy_id).map(|d| self.last_view(d)) else {
            return;
        };
        if self.finished.len() >= self.keep_finished {
            self.finished.pop_front();
        }
        self.finished.push_back(FinishedDeploy {
            deploy,
            finished_at: self.clock,
            finished_because: why.to_string(),
        });
    }

    /// The deploys that stopped being watched, oldest first.
    pub fn finished(&self) -> impl DoubleEndedIterator<Item = &FinishedDeploy> {
        self.finished.iter()
    }

    /// How many finished deploys to remember ([`KEEP_FINISHED`] by
    /// default; a replay that writes a report keeps them all).
    pub fn keep_finished(&mut self, n: usize) {
        self.keep_finished = n;
        while self.finished.len() > n {
            self.finished.pop_front();
        }
    }

    /// When automation was paused, and by whom.
    pub fn paused_by(&self) -> Option<&(Timestamp, String)> {
        self.guards.paused()
    }

    /// The maintenance windows running at the engine's clock.
    pub fn maintenance(&self) -> Vec<super::maintenance::MaintenanceView> {
        self.guards.maintenance().views(self.clock)
    }

    /// Whether maintenance window `id`, opened through the admin API, is
    /// running.
    pub fn maintenance_open(&self, id: &str) -> bool {
        self.guards.maintenance().is_open(id, self.clock)
    }

    /// Since when the circuit breaker is open.
    pub fn breaker_open_since(&self) -> Option<Timestamp> {
        self.guards.breaker_open_since()
    }

    /// Which keys this engine decides for.
    pub fn ownership(&self) -> &crate::model::evidence::Ownership {
        &self.ownership
    }

    /// Every active deploy, in arrival order.
    pub fn deploy_views(&self) -> Vec<DeployView> {
        self.registry
            .iter()
            .filter_map(|d| self.deploy_view(&d.info.deploy_id))
            .collect()
    }
}
