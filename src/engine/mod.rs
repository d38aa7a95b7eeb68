//! The decision engine: all state and every decision (CONTRACT §2, §3).
//!
//! The engine is deterministic. It is given inputs and a clock
//! ([`Engine::set_clock`]) and returns [`Output`]s; it never reads the wall
//! clock and never does I/O. `run`, `replay`, `demo` and the tests all drive
//! this same type.
//!
//! Concurrency: telemetry is applied through `&self`
//! ([`Engine::apply_telemetry`]) into sharded maps (windows and cumulative
//! series are `DashMap`s keyed by series), so several decoders can feed one
//! engine under a shared lock; deploy events, alerts, results, admin calls
//! and evaluation take `&mut self`, which serializes every decision.

pub mod evaluate;
pub mod guards;
pub mod registry;
pub mod stats;
pub mod window;

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::Config;
use crate::model::{
    command_id, Action, AdminAction, AdminRecord, Alert, AlertStatus, AuditRecord, Command,
    DataMigration, DeployEvent, DeployEventKind, ExecutorResult, Output, ResultStatus,
    TelemetryBatch, Temporality, Trigger, COMMAND_SCHEMA,
};
use crate::time::{Duration, Timestamp};
use evaluate::{evaluate, Evaluation, Verdict};
use guards::Guards;
use registry::{Deploy, Registry, Role};
use window::{Kind, SeriesWindows};

/// How many (fingerprint, startsAt, status) alert keys are remembered to
/// recognise Alertmanager's repeated deliveries.
const MAX_ALERTS_REMEMBERED: usize = 100_000;

/// Counters the adapters export as Prometheus metrics.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Request observations added to windows (per deploy side).
    pub observations: AtomicU64,
    /// Observations older than the longest window.
    pub late: AtomicU64,
    /// Observations no active deploy claims.
    pub unmatched: AtomicU64,
    /// Observations dropped because a cap in `[limits]` was reached.
    pub over_limit: AtomicU64,
    /// Repeated Alertmanager deliveries recognised and ignored.
    pub duplicate_alerts: AtomicU64,
}

/// What became of one telemetry batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TelemetryOutcome {
    pub observations: u64,
    pub late: u64,
    pub unmatched: u64,
    pub over_limit: u64,
}

impl TelemetryOutcome {
    /// The record-level outcome label: `ok` when anything was used.
    pub fn label(&self) -> &'static str {
        if self.observations > 0 {
            "ok"
        } else if self.late > 0 {
            "late"
        } else if self.unmatched > 0 || self.over_limit > 0 {
            "unmatched"
        } else {
            "ok"
        }
    }
}

/// Why a manual rollback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManualError {
    #[error("no active deploy {0}")]
    NotFound(String),
    #[error("a rollback command was already emitted for this deploy ({0})")]
    AlreadyEmitted(String),
}

/// A deploy as the admin API and the demo show it.
/// See [`Engine::burn_summary`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BurnSummary {
    pub states: std::collections::BTreeMap<&'static str, usize>,
    pub max_burn: std::collections::BTreeMap<(&'static str, String), f64>,
}

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

#[derive(Debug, Clone, Copy)]
struct CumState {
    start: i64,
    time: i64,
    count: u64,
    slow: u64,
}

/// The engine. See the module docs.
pub struct Engine {
    config: Arc<Config>,
    /// The clock (ns since epoch): wall time in `run`, record time in `replay`.
    clock: AtomicI64,
    registry: Registry,
    windows: DashMap<(u64, Role), SeriesWindows>,
    /// Last cumulative histogram state per series, to turn it into deltas.
    cumulative: DashMap<u64, CumState>,
    guards: Guards,
    alerts_seen: HashSet<(String, i64, AlertStatus)>,
    alerts_seen_order: VecDeque<(String, i64, AlertStatus)>,
    /// Firing alerts matched to deploys whose command was held back by a
    /// guard: tried again at every evaluation until emitted or resolved.
    pending_alerts: std::collections::HashMap<String, (String, Value)>,
    stats: EngineStats,
    next_sweep: Timestamp,
}

impl Engine {
    pub fn new(config: Arc<Config>) -> Engine {
        Engine {
            guards: Guards::new(&config.guards),
            config,
            clock: AtomicI64::new(i64::MIN),
            registry: Registry::default(),
            windows: DashMap::new(),
            cumulative: DashMap::new(),
            alerts_seen: HashSet::new(),
            alerts_seen_order: VecDeque::new(),
            pending_alerts: Default::default(),
            stats: EngineStats::default(),
            next_sweep: Timestamp::MIN,
        }
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The engine's clock.
    pub fn now(&self) -> Timestamp {
        Timestamp(self.clock.load(Ordering::Acquire))
    }

    /// Moves the clock forward to `t` (never backwards).
    pub fn set_clock(&self, t: Timestamp) {
        self.clock.fetch_max(t.0, Ordering::AcqRel);
    }

    pub fn active_deploys(&self) -> usize {
        self.registry.len()
    }

    /// The on-call summary of the active deploys, keyed by bounded values
    /// only: how many are in each state — `commanded` (a rollback command
    /// was emitted), `awaiting_approval` (an approval_required command was),
    /// `pending` (not evaluated yet), else the latest verdict — and the
    /// highest long-window burn rate per SLI and window pair (`"1m/5m"`).
    pub fn burn_summary(&self) -> BurnSummary {
        let mut summary = BurnSummary::default();
        for d in self.registry.iter() {
            let state = match (&d.decided, &d.last_eval) {
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

    pub fn paused(&self) -> bool {
        self.guards.paused().is_some()
    }

    pub fn breaker_open(&self) -> bool {
        self.guards.breaker_open_since().is_some()
    }

    /// Number of series with window or cumulative state.
    pub fn series_count(&self) -> usize {
        self.windows.len() + self.cumulative.len()
    }

    // ------------------------------------------------------------------
    // Telemetry

    /// Adds a decoded OTLP export to the windows of the deploys it belongs to.
    pub fn apply_telemetry(&self, batch: &TelemetryBatch) -> TelemetryOutcome {
        let now = self.now();
        let mut out = TelemetryOutcome::default();
        for res in &batch.resources {
            let targets = self.registry.correlate(&res.ident);
            let Some(first) = targets.first() else {
                out.unmatched += (res.spans.len() + res.points.len()) as u64;
                continue;
            };
            let threshold = first.deploy.policy.latency_threshold;
            let earliest_at = targets
                .iter()
                .map(|t| t.deploy.info.at)
                .min()
                .unwrap_or(first.deploy.info.at);
            let deltas: Vec<(Timestamp, u64, u64, u64)> = res
                .points
                .iter()
                .filter_map(|p| {
                    let d = self.point_delta(p, threshold.as_secs_f64(), earliest_at, &mut out);
                    d.map(|(req, slow)| (p.time, req, if p.error { req } else { 0 }, slow))
                })
                .collect();
            for t in &targets {
                let d = t.deploy;
                let late_before = now.saturating_sub(d.policy.longest());
                let threshold_ns = d.policy.latency_threshold.nanos();
                let key = (d.seq, t.role);
                if !self.windows.contains_key(&key)
                    && self.windows.len() >= self.config.limits.max_series
                {
                    out.over_limit += (res.spans.len() + deltas.len()) as u64;
                    continue;
                }
                let mut w = self
                    .windows
                    .entry(key)
                    .or_insert_with(|| SeriesWindows::new(&d.policy.lengths));
                d.touched.store(true, Ordering::Relaxed);
                for s in &res.spans {
                    if s.end < d.info.at {
                        // Before the deploy: outside every window of it.
                        continue;
                    }
                    if s.end <= late_before {
                        out.late += 1;
                        continue;
                    }
                    let slow = u64::from(s.latency_ns > threshold_ns);
                    w.add(s.end.min(now), Kind::Span, 1, u64::from(s.error), slow);
                    out.observations += 1;
                }
                for &(time, req, err, slow) in &deltas {
                    if time < d.info.at {
                        continue;
                    }
                    if time <= late_before {
                        out.late += 1;
                        continue;
                    }
                    w.add(time.min(now), Kind::Metric, req, err, slow);
                    out.observations += 1;
                }
            }
        }
        self.stats
            .observations
            .fetch_add(out.observations, Ordering::Relaxed);
        self.stats.late.fetch_add(out.late, Ordering::Relaxed);
        self.stats
            .unmatched
            .fetch_add(out.unmatched, Ordering::Relaxed);
        self.stats
            .over_limit
            .fetch_add(out.over_limit, Ordering::Relaxed);
        out
    }

    /// Requests and slow requests a histogram point adds: the point itself
    /// for delta temporality; the difference from the series' previous point
    /// for cumulative (a drop or a new start time is a reset). The first
    /// cumulative point of a series counts only when its start time is known
    /// and not before the deploy; otherwise it is the reference.
    fn point_delta(
        &self,
        p: &crate::model::HistPoint,
        threshold_secs: f64,
        earliest_at: Timestamp,
        out: &mut TelemetryOutcome,
    ) -> Option<(u64, u64)> {
        let slow = p.slow_count(threshold_secs).min(p.count);
        if p.temporality == Temporality::Delta {
            return Some((p.count, slow));
        }
        if let Some(mut st) = self.cumulative.get_mut(&p.series) {
            if p.time.0 <= st.time {
                // A repeat or out-of-order point: its counts are already in.
                return None;
            }
            let restarted = p.start.0 != 0 && st.start != 0 && p.start.0 != st.start;
            let delta = if restarted || p.count < st.count || slow < st.slow {
                (p.count, slow)
            } else {
                (p.count - st.count, slow - st.slow)
            };
            *st = CumState {
                start: p.start.0,
                time: p.time.0,
                count: p.count,
                slow,
            };
            return Some(delta);
        }
        if self.cumulative.len() >= self.config.limits.max_series {
            out.over_limit += 1;
            return None;
        }
        self.cumulative.insert(
            p.series,
            CumState {
                start: p.start.0,
                time: p.time.0,
                count: p.count,
                slow,
            },
        );
        (p.start.0 != 0 && p.start >= earliest_at).then_some((p.count, slow))
    }

    // ------------------------------------------------------------------
    // Deploy lifecycle

    pub fn apply_deploy_event(&mut self, ev: DeployEvent) -> Vec<Output> {
        let now = self.now();
        let mut out = Vec::new();
        let audit = |detail: Value| {
            Output::Audit(
                AuditRecord::new(now, "deploy", detail).for_deploy(&ev.deploy_id, &ev.service),
            )
        };
        match ev.kind {
            DeployEventKind::Started => {
                if self.registry.get(&ev.deploy_id).is_some()
                    || self.registry.was_retired(&ev.deploy_id)
                {
                    out.push(audit(
                        json!({"event": ev.kind.as_str(), "ignored": "deploy id already seen"}),
                    ));
                    return out;
                }
                let env = ev.environment_or_default().to_string();
                let older: Vec<(String, Timestamp)> = self
                    .registry
                    .of_service_env(&ev.service, &env)
                    .iter()
                    .map(|d| (d.info.deploy_id.clone(), d.info.at))
                    .collect();
                if older.iter().any(|(_, at)| *at > ev.at) {
                    out.push(audit(json!({"event": ev.kind.as_str(), "ignored": "a newer deploy of this service and environment is active"})));
                    return out;
                }
                for (old, _) in older {
                    self.retire(&old, &format!("superseded by {}", ev.deploy_id), &mut out);
                }
                if self.registry.len() >= self.config.limits.max_active_deploys {
                    self.stats.over_limit.fetch_add(1, Ordering::Relaxed);
                    out.push(audit(json!({"event": ev.kind.as_str(), "ignored": "limits.max_active_deploys reached"})));
                    return out;
                }
                let policy = self.config.policy(&ev.service).clone();
                out.push(audit(json!({
                    "event": ev.kind.as_str(),
                    "version": ev.version,
                    "previous_version": ev.previous_version,
                    "environment": env,
                    "strategy": ev.strategy,
                    "release_id": ev.release_id,
                    "data_migration": ev.data_migration,
                    "at": ev.at,
                })));
                let deploy_id = ev.deploy_id.clone();
                self.registry.insert(ev, policy, now);
                // Restored commands (read back before the deploy events on a
                // restart) already decided this deploy.
                for action in [Action::Rollback, Action::ApprovalRequired] {
                    let id = command_id(&deploy_id, action);
                    if self.guards.was_emitted(&id) {
                        if let Some(d) = self.registry.get_mut(&deploy_id) {
                            d.decided = Some((id, action));
                        }
                    }
                }
            }
            DeployEventKind::Progressed => match self.registry.get_mut(&ev.deploy_id) {
                Some(d) => {
                    if ev.canary_weight.is_some() {
                        d.info.canary_weight = ev.canary_weight;
                    }
                    out.push(audit(
                        json!({"event": ev.kind.as_str(), "canary_weight": ev.canary_weight}),
                    ));
                }
                None => out.push(audit(
                    json!({"event": ev.kind.as_str(), "ignored": "no active deploy with this id"}),
                )),
            },
            DeployEventKind::Completed => match self.registry.get_mut(&ev.deploy_id) {
                Some(d) => {
                    d.completed_at = Some(ev.at);
                    let until = ev.at.saturating_add(d.policy.watch_after_complete);
                    out.push(audit(
                        json!({"event": ev.kind.as_str(), "watched_until": until}),
                    ));
                }
                None => out.push(audit(
                    json!({"event": ev.kind.as_str(), "ignored": "no active deploy with this id"}),
                )),
            },
            DeployEventKind::RolledBack | DeployEventKind::Aborted => {
                let release = self
                    .registry
                    .get(&ev.deploy_id)
                    .and_then(|d| d.info.release_id.clone());
                if self.retire(&ev.deploy_id, ev.kind.as_str(), &mut out) {
                    if let (DeployEventKind::RolledBack, Some(release)) = (ev.kind, release) {
                        self.cascade_release(&release, &ev.deploy_id, None, now, &mut out);
                    }
                } else {
                    out.push(audit(json!({"event": ev.kind.as_str(), "ignored": "no active deploy with this id"})));
                }
            }
        }
        out
    }

    fn retire(&mut self, deploy_id: &str, why: &str, out: &mut Vec<Output>) -> bool {
        let Some(d) = self.registry.retire(deploy_id) else {
            return false;
        };
        self.windows.remove(&(d.seq, Role::Candidate));
        self.windows.remove(&(d.seq, Role::Baseline));
        self.pending_alerts.remove(deploy_id);
        out.push(Output::Audit(
            AuditRecord::new(self.now(), "deploy", json!({"retired": why}))
                .for_deploy(deploy_id, &d.info.service),
        ));
        true
    }

    // ------------------------------------------------------------------
    // Evaluation

    /// Evaluates every deploy that is due at the current clock, retires
    /// deploys whose watch ended, and acts on the verdicts.
    pub fn tick(&mut self) -> Vec<Output> {
        let now = self.now();
        let mut out = Vec::new();
        for id in self.registry.ids() {
            let Some(d) = self.registry.get(&id) else {
                continue;
            };
            if let Some(done) = d.completed_at {
                if now >= done.saturating_add(d.policy.watch_after_complete) {
                    self.retire(&id, "watch after completion ended", &mut out);
                    continue;
                }
            }
            if now < d.next_eval && !d.touched.swap(false, Ordering::Relaxed) {
                continue;
            }
            d.touched.store(false, Ordering::Relaxed);
            let interval = d.policy.evaluation_interval.nanos().max(1);
            let next_eval = Timestamp((now.0.div_euclid(interval) + 1).saturating_mul(interval));
            let ev = self.evaluate_deploy(d, now);
            let verdict = ev.verdict;
            let evidence = ev.decisive_pair().map(|p| p.evidence());
            let decided = d.decided.is_some();
            let audited = d.previous_verdict;
            let service = d.info.service.clone();
            if let Some(d) = self.registry.get_mut(&id) {
                d.next_eval = next_eval;
                d.last_eval = Some(ev);
                d.previous_verdict = Some(verdict);
                if verdict != Verdict::Rollback && !self.pending_alerts.contains_key(&id) {
                    d.audited_suppression = None;
                }
            }
            if decided {
                continue;
            }
            let notable = |v: Option<Verdict>| {
                matches!(v, Some(Verdict::Rollback | Verdict::NotAttributable))
            };
            if audited != Some(verdict) && (notable(Some(verdict)) || notable(audited)) {
                out.push(Output::Audit(
                    AuditRecord::new(
                        now,
                        "decision",
                        json!({"verdict": verdict.as_str(), "evidence": evidence}),
                    )
                    .for_deploy(&id, &service),
                ));
            }
            if verdict == Verdict::Rollback {
                self.decide(
                    &id,
                    Trigger::BurnRate,
                    evidence.unwrap_or(Value::Null),
                    None,
                    &mut out,
                );
            } else if let Some((_, evidence)) = self.pending_alerts.get(&id).cloned() {
                self.decide(&id, Trigger::Alert, evidence, None, &mut out);
            }
        }
        if now >= self.next_sweep {
            let keep_after = now
                .saturating_sub(self.config.longest_window())
                .saturating_sub(self.config.longest_window());
            self.cumulative.retain(|_, st| st.time > keep_after.0);
            self.next_sweep = now.saturating_add(Duration::from_secs(60));
        }
        out
    }

    fn evaluate_deploy(&self, d: &Deploy, now: Timestamp) -> Evaluation {
        let cand = self.windows.get(&(d.seq, Role::Candidate));
        let base = self.windows.get(&(d.seq, Role::Baseline));
        evaluate(&d.policy, d.info.at, cand.as_deref(), base.as_deref(), now)
    }

    // ------------------------------------------------------------------
    // Guards and commands

    /// Runs the guards (CONTRACT §3, in order) for one decision on one
    /// deploy and emits its command when they allow. Returns whether a
    /// command was emitted.
    fn decide(
        &mut self,
        deploy_id: &str,
        trigger: Trigger,
        evidence: Value,
        actor: Option<&str>,
        out: &mut Vec<Output>,
    ) -> bool {
        let now = self.now();
        let Some(d) = self.registry.get(deploy_id) else {
            return false;
        };
        let manual = trigger.is_manual();
        // 6. decides the action up front: the command id depends on it.
        let action = if !manual && d.info.data_migration == DataMigration::Irreversible {
            Action::ApprovalRequired
        } else {
            Action::Rollback
        };
        let id = command_id(deploy_id, action);
        let suppression = if self.guards.was_emitted(&id) {
            Some(("already_emitted", json!({"command_id": id})))
        } else if manual {
            None
        } else if let Some((since, by)) = self.guards.paused() {
            Some(("paused", json!({"paused_at": since, "paused_by": by})))
        } else if d.policy.dry_run {
            Some(("dry_run", Value::Null))
        } else if let Some(until) =
            self.guards
                .cooldown_until(&d.info.service, d.environment(), now)
        {
            Some(("cooldown", json!({"until": until})))
        } else {
            self.guards
                .breaker_open_since()
                .map(|since| ("breaker_open", json!({"open_since": since})))
        };
        let cmd = build_command(d, action, trigger, evidence, now);
        if let Some((reason, mut detail)) = suppression {
            let service = d.info.service.clone();
            if reason == "dry_run" {
                detail = json!({"command": cmd});
            }
            if trigger == Trigger::Alert {
                let fingerprint = self.pending_alerts.get(deploy_id).map(|(f, _)| f.clone());
                if let (Value::Object(m), Some(f)) = (&mut detail, fingerprint) {
                    m.insert("alert_fingerprint".into(), Value::String(f));
                }
            }
            let d = self.registry.get_mut(deploy_id);
            let first_time = d
                .as_ref()
                .is_none_or(|d| d.audited_suppression.as_deref() != Some(reason));
            if let Some(d) = d {
                d.audited_suppression = Some(reason.to_string());
            }
            if first_time {
                out.push(Output::Audit(
                    AuditRecord::new(
                        now,
                        "suppressed",
                        json!({"reason": reason, "trigger": trigger, "action": action, "detail": detail}),
                    )
                    .for_deploy(deploy_id, &service),
                ));
            }
            return false;
        }
        let release = d.info.release_id.clone();
        self.emit(cmd, !manual, actor, out);
        if let (Action::Rollback, Some(release)) = (action, release) {
            self.cascade_release(&release, deploy_id, Some(trigger), now, out);
        }
        true
    }

    fn emit(
        &mut self,
        cmd: Command,
        counts_for_breaker: bool,
        actor: Option<&str>,
        out: &mut Vec<Output>,
    ) {
        let opened = self.guards.record(&cmd, counts_for_breaker);
        self.pending_alerts.remove(&cmd.deploy_id);
        if let Some(d) = self.registry.get_mut(&cmd.deploy_id) {
            d.decided = Some((cmd.command_id.clone(), cmd.action));
        }
        let started = self.registry.get(&cmd.deploy_id).map(|d| d.info.at);
        let mut detail = json!({
            "command_id": cmd.command_id,
            "action": cmd.action,
            "trigger": cmd.trigger,
            "to_version": cmd.to_version,
            "evidence": cmd.evidence,
            "detected_after_seconds": started.map(|at| cmd.decided_at.since(at).as_secs_f64()),
        });
        if let (Some(actor), Value::Object(m)) = (actor, &mut detail) {
            m.insert("actor".into(), Value::String(actor.into()));
        }
        out.push(Output::Audit(
            AuditRecord::new(cmd.decided_at, "command", detail)
                .for_deploy(&cmd.deploy_id, &cmd.service),
        ));
        let at = cmd.decided_at;
        let id = cmd.command_id.clone();
        out.push(Output::Command(cmd));
        if opened {
            out.push(self.breaker_opened_audit(at, Some(&id)));
        }
    }

    /// `by`: the command whose emission opened it, if one did.
    fn breaker_opened_audit(&self, at: Timestamp, by: Option<&str>) -> Output {
        Output::Audit(AuditRecord::new(
            at,
            "breaker",
            json!({
                "state": "open",
                "opened_by_command": by,
                "automatic_commands": self.guards.breaker_count(at),
                "max": self.config.guards.breaker_max_rollbacks,
                "window": self.config.guards.breaker_window,
            }),
        ))
    }

    /// Gives every other active deploy of `release` its own command
    /// (CONTRACT §3.2). `cause` is the trigger of the command that rolled
    /// back `origin`, or `None` when a `deploy.rolled_back` event did.
    fn cascade_release(
        &mut self,
        release: &str,
        origin: &str,
        cause: Option<Trigger>,
        now: Timestamp,
        out: &mut Vec<Output>,
    ) {
        let manual = cause == Some(Trigger::Manual);
        let siblings: Vec<String> = self
            .registry
            .iter()
            .filter(|d| d.info.release_id.as_deref() == Some(release) && d.info.deploy_id != origin)
            .map(|d| d.info.deploy_id.clone())
            .collect();
        if siblings.is_empty() {
            return;
        }
        if cause.is_none() {
            // Started by an event, not by one of our commands: the automatic
            // guards that apply to a whole decision apply here, once.
            let reason = if self.guards.paused().is_some() {
                Some("paused")
            } else if self.guards.breaker_open_since().is_some() {
                Some("breaker_open")
            } else {
                None
            };
            if let Some(reason) = reason {
                out.push(Output::Audit(AuditRecord::new(
                    now,
                    "suppressed",
                    json!({"reason": reason, "trigger": Trigger::Release, "release_id": release, "caused_by": origin, "deploys": siblings}),
                )));
                return;
            }
        }
        let mut emitted_any = false;
        for sib in siblings {
            let Some(d) = self.registry.get(&sib) else {
                continue;
            };
            let action = if d.info.data_migration == DataMigration::Irreversible {
                Action::ApprovalRequired
            } else {
                Action::Rollback
            };
            let evidence = json!({
                "release_id": release,
                "caused_by": origin,
                "cause": cause.map_or("deploy.rolled_back", |t| t.as_str()),
            });
            let cmd = build_command(d, action, Trigger::Release, evidence, now);
            let reason = if self.guards.was_emitted(&cmd.command_id) {
                Some("already_emitted")
            } else if !manual && d.policy.dry_run {
                Some("dry_run")
            } else {
                None
            };
            if let Some(reason) = reason {
                let detail = if reason == "dry_run" {
                    json!({"reason": reason, "trigger": Trigger::Release, "command": cmd})
                } else {
                    json!({"reason": reason, "trigger": Trigger::Release, "command_id": cmd.command_id})
                };
                out.push(Output::Audit(
                    AuditRecord::new(now, "suppressed", detail).for_deploy(&sib, &d.info.service),
                ));
                continue;
            }
            self.emit(cmd, false, None, out);
            emitted_any = true;
        }
        if emitted_any && cause.is_none() && self.guards.count_for_breaker(now) {
            out.push(self.breaker_opened_audit(now, None));
        }
    }

    // ------------------------------------------------------------------
    // Alerts and results

    /// Applies one Alertmanager notification's alerts. Repeated deliveries
    /// (same fingerprint, `startsAt` and status) change nothing.
    pub fn apply_alerts(&mut self, alerts: &[Alert]) -> Vec<Output> {
        let now = self.now();
        let mut out = Vec::new();
        for a in alerts {
            let key = (a.fingerprint.clone(), a.starts_at.0, a.status);
            if self.alerts_seen.contains(&key) {
                self.stats.duplicate_alerts.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.alerts_seen.insert(key.clone());
            self.alerts_seen_order.push_back(key);
            if self.alerts_seen_order.len() > MAX_ALERTS_REMEMBERED {
                if let Some(old) = self.alerts_seen_order.pop_front() {
                    self.alerts_seen.remove(&old);
                }
            }
            let name = a.labels.get("alertname").cloned().unwrap_or_default();
            let severity = a.labels.get("severity").cloned().unwrap_or_default();
            let base = json!({
                "alertname": name,
                "severity": severity,
                "status": a.status,
                "fingerprint": a.fingerprint,
                "starts_at": a.starts_at,
                "labels": a.labels,
            });
            let audit = |outcome: Value, deploy: Option<(&str, &str)>| {
                let mut detail = base.clone();
                if let Value::Object(m) = &mut detail {
                    m.insert("outcome".into(), outcome);
                }
                let rec = AuditRecord::new(now, "alert", detail);
                Output::Audit(match deploy {
                    Some((id, svc)) => rec.for_deploy(id, svc),
                    None => rec,
                })
            };
            if a.status == AlertStatus::Resolved {
                let cleared: Vec<String> = self
                    .pending_alerts
                    .iter()
                    .filter(|(_, (f, _))| *f == a.fingerprint)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &cleared {
                    self.pending_alerts.remove(id);
                }
                out.push(audit(
                    json!({"resolved": true, "cleared_pending_for": cleared}),
                    None,
                ));
                continue;
            }
            if !self.config.alerts.rollback_on_severity.contains(&severity) {
                out.push(audit(
                    json!({"ignored": "severity not in alerts.rollback_on_severity"}),
                    None,
                ));
                continue;
            }
            let matched = match self.match_alert(a) {
                Ok(id) => id,
                Err(why) => {
                    out.push(audit(json!({"ignored": why}), None));
                    continue;
                }
            };
            let service = self
                .registry
                .get(&matched)
                .map(|d| d.info.service.clone())
                .unwrap_or_default();
            out.push(audit(
                json!({"matched": matched}),
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
            self.pending_alerts
                .insert(matched.clone(), (a.fingerprint.clone(), evidence.clone()));
            self.decide(&matched, Trigger::Alert, evidence, None, &mut out);
        }
        out
    }

    fn match_alert(&self, a: &Alert) -> Result<String, String> {
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
        let env = a.labels.get("environment");
        let candidates: Vec<&Deploy> = self
            .registry
            .iter()
            .filter(|d| &d.info.service == service && env.is_none_or(|e| d.environment() == e))
            .collect();
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

    /// Applies an executor result. Returns the audit and, for a success, the
    /// time from decision to rollback.
    pub fn apply_result(&mut self, r: &ExecutorResult) -> (Vec<Output>, Option<Duration>) {
        let now = self.now();
        let mut out = Vec::new();
        let service = self
            .registry
            .get(&r.deploy_id)
            .map(|d| d.info.service.clone());
        let rec = AuditRecord::new(
            now,
            "result",
            json!({
                "command_id": r.command_id,
                "status": r.status,
                "at": r.at,
                "executor": r.executor,
                "message": r.message,
            }),
        );
        out.push(Output::Audit(match &service {
            Some(s) => rec.for_deploy(&r.deploy_id, s),
            None => AuditRecord {
                deploy_id: Some(r.deploy_id.clone()),
                ..rec
            },
        }));
        let mut took = None;
        if r.status == ResultStatus::Succeeded {
            took = self
                .guards
                .emitted_at(&r.command_id)
                .map(|decided| r.at.since(decided));
            self.retire(&r.deploy_id, "rollback succeeded", &mut out);
        }
        (out, took)
    }

    /// Rebuilds guard state from a command read back from the commands
    /// topic (recovery, CONTRACT §5).
    pub fn restore_command(&mut self, cmd: &Command) -> Vec<Output> {
        let mut out = Vec::new();
        if self.guards.restore(cmd) {
            out.push(self.breaker_opened_audit(cmd.decided_at, None));
        }
        if let Some(d) = self.registry.get_mut(&cmd.deploy_id) {
            if cmd.trigger != Trigger::Manual || cmd.action == Action::Rollback {
                d.decided = Some((cmd.command_id.clone(), cmd.action));
            }
        }
        self.pending_alerts.remove(&cmd.deploy_id);
        out
    }

    /// Whether a command id has been emitted (or restored).
    pub fn was_emitted(&self, command_id: &str) -> bool {
        self.guards.was_emitted(command_id)
    }

    // ------------------------------------------------------------------
    // Admin

    /// A person's rollback: bypasses pause, dry run, cooldown, breaker and
    /// approval, never once-per-deploy (CONTRACT §3).
    pub fn manual_rollback(
        &mut self,
        deploy_id: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Vec<Output>, ManualError> {
        if self.registry.get(deploy_id).is_none() {
            return Err(ManualError::NotFound(deploy_id.to_string()));
        }
        let id = command_id(deploy_id, Action::Rollback);
        if self.guards.was_emitted(&id) {
            return Err(ManualError::AlreadyEmitted(id));
        }
        let mut out = vec![Output::Audit(AuditRecord::new(
            self.now(),
            "admin",
            json!({"call": "rollback", "deploy_id": deploy_id, "reason": reason, "actor": actor}),
        ))];
        let evidence = json!({"reason": reason, "actor": actor});
        self.decide(deploy_id, Trigger::Manual, evidence, Some(actor), &mut out);
        Ok(out)
    }

    pub fn pause(&mut self, actor: &str) -> Vec<Output> {
        self.admin_call(AdminAction::Pause, actor, self.now())
    }

    pub fn resume(&mut self, actor: &str) -> Vec<Output> {
        self.admin_call(AdminAction::Resume, actor, self.now())
    }

    pub fn reset_breaker(&mut self, actor: &str) -> Vec<Output> {
        self.admin_call(AdminAction::BreakerReset, actor, self.now())
    }

    /// An admin call taken on this instance as of `at`: applied and audited.
    pub fn admin_call(&mut self, action: AdminAction, actor: &str, at: Timestamp) -> Vec<Output> {
        let changed = self.apply_admin_action(action, actor, at);
        let (kind, detail) = match action {
            AdminAction::Pause => (
                "pause",
                json!({"paused": true, "actor": actor, "changed": changed}),
            ),
            AdminAction::Resume => (
                "pause",
                json!({"paused": false, "actor": actor, "changed": changed}),
            ),
            AdminAction::BreakerReset => (
                "breaker",
                json!({"state": "closed", "actor": actor, "was_open": changed}),
            ),
        };
        vec![Output::Audit(AuditRecord::new(self.now(), kind, detail))]
    }

    /// An admin call taken on any instance, read from the admin topic:
    /// applied, not audited again (the instance that took it audited it).
    /// Reading the same record twice, or an older one after a newer one,
    /// changes nothing. Returns whether the state changed.
    pub fn apply_admin(&mut self, record: &AdminRecord) -> bool {
        self.apply_admin_action(record.action, &record.actor, record.at)
    }

    fn apply_admin_action(&mut self, action: AdminAction, actor: &str, at: Timestamp) -> bool {
        match action {
            AdminAction::Pause => self.guards.set_paused(true, at, actor),
            AdminAction::Resume => self.guards.set_paused(false, at, actor),
            AdminAction::BreakerReset => self.guards.reset_breaker_at(at),
        }
    }

    /// The audit record of a malformed input (CONTRACT §6). Changes nothing.
    pub fn malformed_audit(&self, source: &str, error: &str, location: Value) -> AuditRecord {
        AuditRecord::new(
            self.now(),
            "malformed",
            json!({"source": source, "error": error, "location": location}),
        )
    }

    // ------------------------------------------------------------------
    // Views

    /// A deploy with a fresh evaluation at the current clock.
    pub fn deploy_view(&self, deploy_id: &str) -> Option<DeployView> {
        let d = self.registry.get(deploy_id)?;
        let evaluation = self.evaluate_deploy(d, self.now());
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

    /// Bytes of window state per active deploy (for the memory bench).
    pub fn window_bytes(&self) -> usize {
        self.windows.iter().map(|w| w.memory_bytes()).sum()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlertStatus, DeployEventKind};

    const SEC: i64 = 1_000_000_000;

    fn engine(extra: &str) -> Engine {
        let e = Engine::new(Arc::new(Config::from_toml(extra).unwrap()));
        e.set_clock(Timestamp(1_000 * SEC));
        e
    }

    fn started(id: &str, service: &str, migration: DataMigration, at: i64) -> DeployEvent {
        DeployEvent {
            kind: DeployEventKind::Started,
            deploy_id: id.into(),
            service: service.into(),
            version: "v2".into(),
            at: Timestamp(at * SEC),
            environment: None,
            previous_version: Some("v1".into()),
            strategy: None,
            release_id: None,
            data_migration: migration,
            canary_weight: None,
            labels: Default::default(),
        }
    }

    fn commands(outputs: &[Output]) -> Vec<&Command> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Command(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    fn alert(service: &str, fingerprint: &str, at: i64) -> Alert {
        Alert {
            status: AlertStatus::Firing,
            labels: [("service", service), ("severity", "critical")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: Default::default(),
            starts_at: Timestamp(at * SEC),
            fingerprint: fingerprint.into(),
            generator_url: None,
        }
    }

    #[test]
    fn admin_records_apply_once_and_in_time_order() {
        let mut e = engine("[guards]\nbreaker_max_rollbacks = 1\n");
        let rec = |action, at: i64| AdminRecord {
            schema: crate::model::ADMIN_SCHEMA.into(),
            action,
            actor: "alice".into(),
            at: Timestamp(at * SEC),
            instance: String::new(),
        };
        assert!(e.apply_admin(&rec(AdminAction::Pause, 900)));
        assert!(e.paused());
        assert!(!e.apply_admin(&rec(AdminAction::Pause, 900)), "read back");
        assert!(e.apply_admin(&rec(AdminAction::Resume, 950)));
        assert!(
            !e.apply_admin(&rec(AdminAction::Pause, 900)),
            "an older pause read late does not undo the resume"
        );
        assert!(!e.paused());
        // The breaker (max 1) opens at 1000; a reset taken before that
        // does not close it, one taken after does, once.
        e.apply_deploy_event(started("d-1", "web", DataMigration::None, 900));
        assert_eq!(
            commands(&e.apply_alerts(&[alert("web", "a", 950)])).len(),
            1
        );
        assert!(e.breaker_open());
        assert!(!e.apply_admin(&rec(AdminAction::BreakerReset, 999)));
        assert!(e.breaker_open());
        assert!(e.apply_admin(&rec(AdminAction::BreakerReset, 1000)));
        assert!(!e.breaker_open());
        assert!(!e.apply_admin(&rec(AdminAction::BreakerReset, 1000)));
        // Decoding: the schema is checked, garbage refused.
        let ok = serde_json::to_vec(&rec(AdminAction::Pause, 1)).unwrap();
        assert!(AdminRecord::decode(&ok).is_ok());
        let other = String::from_utf8(ok)
            .unwrap()
            .replace("admin/v1", "admin/v9");
        assert!(AdminRecord::decode(other.as_bytes()).is_err());
        assert!(AdminRecord::decode(b"{\"action\": \"explode\"}").is_err());
    }

    #[test]
    fn burn_summary_counts_states_with_bounded_keys() {
        let mut e = engine("");
        e.apply_deploy_event(started("d-1", "web", DataMigration::None, 990));
        e.apply_deploy_event(started("d-2", "db", DataMigration::Irreversible, 990));
        e.apply_deploy_event(started("d-3", "api", DataMigration::None, 990));
        assert_eq!(
            e.burn_summary().states,
            [("pending", 3)].into_iter().collect()
        );
        e.tick();
        let out = e.apply_alerts(&[alert("web", "a", 995), alert("db", "b", 995)]);
        assert_eq!(commands(&out).len(), 2);
        let s = e.burn_summary();
        assert_eq!(
            s.states,
            [
                ("awaiting_approval", 1),
                ("commanded", 1),
                ("warming_up", 1)
            ]
            .into_iter()
            .collect()
        );
        // One key per SLI and window pair of the default policy.
        let keys: Vec<_> = s.max_burn.keys().cloned().collect();
        assert_eq!(
            keys,
            [
                ("errors", "1m/5m".to_string()),
                ("errors", "5m/30m".to_string()),
                ("latency", "1m/5m".to_string()),
                ("latency", "5m/30m".to_string())
            ]
        );
    }

    #[test]
    fn manual_rollback_bypasses_pause_cooldown_breaker_and_approval_but_not_once() {
        let mut e =
            engine("[guards]\nbreaker_max_rollbacks = 1\n[slo.services.db]\ndry_run = true\n");
        e.apply_deploy_event(started("d-1", "web", DataMigration::None, 900));
        // An automatic rollback opens the breaker (max 1) and starts web's cooldown.
        let out = e.apply_alerts(&[alert("web", "a", 950)]);
        assert_eq!(commands(&out).len(), 1);
        assert!(e.breaker_open());
        e.pause("oncall");
        // A new web deploy: paused, in cooldown, breaker open — and
        // irreversible, and its service is not dry-run… a person decides.
        e.apply_deploy_event(started("d-2", "web", DataMigration::Irreversible, 990));
        let out = e.apply_alerts(&[alert("web", "b", 995)]);
        assert!(commands(&out).is_empty(), "automatic: suppressed");
        let out = e.manual_rollback("d-2", "broken", "alice").unwrap();
        let cmds = commands(&out);
        assert_eq!(cmds.len(), 1);
        assert_eq!(cmds[0].trigger, Trigger::Manual);
        assert_eq!(
            cmds[0].action,
            Action::Rollback,
            "a manual rollback is the approval"
        );
        assert_eq!(cmds[0].evidence["actor"], "alice");
        // Never twice.
        assert_eq!(
            e.manual_rollback("d-2", "again", "bob"),
            Err(ManualError::AlreadyEmitted(command_id(
                "d-2",
                Action::Rollback
            )))
        );
        assert!(matches!(
            e.manual_rollback("nope", "x", "y"),
            Err(ManualError::NotFound(_))
        ));
        // Dry run for a service: audited, not emitted; a person still can.
        e.resume("oncall");
        e.reset_breaker("oncall");
        e.apply_deploy_event(started("d-3", "db", DataMigration::None, 999));
        let out = e.apply_alerts(&[alert("db", "c", 999)]);
        assert!(commands(&out).is_empty());
        assert!(out.iter().any(|o| matches!(o, Output::Audit(a) if a.kind == "suppressed" && a.detail["reason"] == "dry_run")));
        assert_eq!(
            commands(&e.manual_rollback("d-3", "x", "y").unwrap()).len(),
            1
        );
    }

    #[test]
    fn restored_commands_are_never_emitted_again() {
        let mut e = engine("");
        e.apply_deploy_event(started("d-1", "web", DataMigration::None, 900));
        let out = e.apply_alerts(&[alert("web", "a", 950)]);
        let cmd = commands(&out)[0].clone();
        // A fresh engine (a restart) that reads the command back first.
        let mut fresh = engine("");
        fresh.restore_command(&cmd);
        fresh.apply_deploy_event(started("d-1", "web", DataMigration::None, 900));
        let out = fresh.apply_alerts(&[alert("web", "a2", 960)]);
        assert!(commands(&out).is_empty());
        assert!(fresh.deploy_view("d-1").unwrap().command_id.is_some());
        // The cooldown came back too: another web deploy waits.
        fresh.apply_deploy_event(started("d-2", "web", DataMigration::None, 970));
        let out = fresh.apply_alerts(&[alert("web", "b", 975)]);
        assert!(commands(&out).is_empty());
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::Audit(a) if a.detail["reason"] == "cooldown")));
    }

    #[test]
    fn completed_deploys_are_watched_then_retired() {
        let mut e = engine("[slo]\nwatch_after_complete = \"1m\"\n");
        e.apply_deploy_event(started("d-1", "web", DataMigration::None, 900));
        let mut done = started("d-1", "web", DataMigration::None, 990);
        done.kind = DeployEventKind::Completed;
        e.apply_deploy_event(done);
        e.tick();
        assert_eq!(e.active_deploys(), 1);
        e.set_clock(Timestamp(1_051 * SEC));
        e.tick();
        assert_eq!(e.active_deploys(), 0);
        // A late event for it does not bring it back.
        e.apply_deploy_event(started("d-1", "web", DataMigration::None, 900));
        assert_eq!(e.active_deploys(), 0);
    }

    #[test]
    fn resolved_alerts_clear_a_held_back_trigger() {
        let mut e = engine("");
        e.apply_deploy_event(started("d-1", "web", DataMigration::None, 900));
        e.pause("oncall");
        assert!(commands(&e.apply_alerts(&[alert("web", "a", 950)])).is_empty());
        let mut resolved = alert("web", "a", 950);
        resolved.status = AlertStatus::Resolved;
        e.apply_alerts(&[resolved]);
        e.resume("oncall");
        e.set_clock(Timestamp(1_010 * SEC));
        assert!(
            commands(&e.tick()).is_empty(),
            "the alert resolved while paused"
        );
    }
}
