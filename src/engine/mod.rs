//! The decision engine: all state and every decision (`docs/guarantees.md#verdicts`, `docs/guarantees.md#guards`).
//!
//! It has one door, [`Engine::apply`]: an [`Input`] and the clock in, the
//! [`Output`]s it causes out. It never reads the wall clock and never does
//! I/O, so `run`, `replay`, `demo`, the benches and the tests all drive the
//! same deterministic state machine — which is what lets a replay
//! reproduce production.
//!
//! # Map
//!
//! - [`lifecycle`]: deploy events (start, progress, completion, rollback,
//!   abort), executor results, retirement.
//! - [`fold`]: stage 1 — telemetry, alerts and manual rollbacks matched to
//!   deploys and folded into evidence per (service, environment);
//!   [`infer`]: deploys found in the telemetry, by the versions that serve;
//!   [`known`]: versions known good (a deploy of one is fast-tracked);
//!   [`absorb`]: stage 2 — evidence into rolling windows (each raw record
//!   and each HTTP request once, by [`applied`]), cumulative histograms
//!   into deltas — by stage 1 itself for series that stay on one raw
//!   partition ([`series`]).
//! - [`decide`]: evaluation of due deploys, the guard chain and the
//!   commands it lets through, release cascades; [`verify`]: after a
//!   successful rollback, whether the restored version recovered;
//!   [`gate`]: the verdict progressive-delivery controllers ask for
//!   (pass, fail, wait), and the passes every instance keeps.
//! - [`alerts`]: Alertmanager alerts as rollback triggers.
//! - [`admin`]: pause, resume, breaker reset, maintenance windows opened
//!   and closed, manual rollback, and guard state read back from the
//!   commands topic.
//! - [`views`]: what the admin API, the status page, the metrics and the
//!   demo show, with each deploy's [`history`] and the recently finished
//!   deploys.
//! - state: [`registry`] (deploys, indexes, schedule), [`window`] (rolling
//!   windows), [`guards`] (the guards' state and chain, with
//!   [`maintenance`] windows), [`bounded`], [`idmap`] (maps keyed by ids:
//!   windows and cumulative series, looked up per point).
//! - math: [`evaluate`] (burn-rate pairs and attribution) on [`judge`]
//!   (each deploy's sequential tests, on [`crate::stats`]).
//! - [`EngineConfig`]: the sections of the configuration it reads (SLO
//!   policies, guards, alerts, limits, verification).
//!
//! # Event time
//!
//! Windows and tests are in event time: the attribution test reads a slot
//! once both versions' evidence has passed it (their watermarks) or
//! `allowed_lateness` has run out since it ended — never by the clock
//! alone — and reads what arrives for it later, until that lateness runs
//! out ([`judge`]). Evidence later still counts in the windows, and is
//! counted and audited (`late_data`, once per deploy) by [`absorb`].

pub mod absorb;
pub mod admin;
pub mod alerts;
pub mod applied;
pub mod bounded;
mod config;
pub mod decide;
pub mod evaluate;
pub mod fold;
pub mod gate;
pub mod guards;
pub mod history;
pub mod idmap;
pub mod infer;
pub mod judge;
pub mod known;
pub mod lifecycle;
pub mod maintenance;
pub mod registry;
pub mod series;
pub mod verify;
pub mod views;
pub mod window;

use std::collections::HashMap;

use serde_json::Value;

use crate::model::evidence::{Key, Ownership};
use crate::model::{
    Alert, AlertStatus, AuditRecord, Input, Output, TelemetryBatch, TelemetryOutcome,
};
use crate::time::Timestamp;
use bounded::Bounded;
use guards::Guards;
use idmap::IdMap;
use judge::Judge;
use registry::{Registry, Role};
use window::SeriesWindows;

pub use config::EngineConfig;
pub use views::{BurnSummary, DeployView, FinishedDeploy, ViewMark};

/// How many (fingerprint, startsAt, status) alert keys are remembered to
/// recognise Alertmanager's repeated deliveries.
const MAX_ALERTS_REMEMBERED: usize = 100_000;

/// The engine. See the module docs.
pub struct Engine {
    config: EngineConfig,
    /// The clock: the largest `now` given so far (wall time in `run`,
    /// record time in `replay`).
    clock: Timestamp,
    registry: Registry,
    windows: IdMap<(u64, Role), SeriesWindows>,
    /// Each deploy's sequential tests, by its `seq`.
    judges: HashMap<u64, Judge>,
    /// Per deploy (by `seq`), the observations that came later than its
    /// `allowed_lateness` (see `intake`): its first is audited.
    late_data: HashMap<u64, u64>,
    /// Last cumulative histogram state per series and deploy side, to turn
    /// it into deltas.
    cumulative: IdMap<absorb::CumKey, absorb::Last>,
    /// Per (key, raw topic, raw partition), the last handover of stage 1's
    /// series (`series`).
    handovers: HashMap<(Key, String, i32), absorb::Handed>,
    /// Per key, the raw records and HTTP requests whose evidence is
    /// applied.
    applied: HashMap<Key, applied::Applied>,
    /// Per key whose deploys are inferred, the versions seen serving.
    books: HashMap<Key, infer::VersionBook>,
    /// Versions known good, rolled back, and the last rollbacks.
    known: known::Known,
    /// Which keys this instance decides for.
    ownership: Ownership,
    guards: Guards,
    /// Alertmanager deliveries already applied.
    alerts_seen: Bounded<(String, i64, AlertStatus)>,
    /// Firing alerts matched to deploys whose command was held back by a
    /// guard, by deploy id: tried again at every evaluation until emitted
    /// or resolved.
    pending_alerts: HashMap<String, alerts::HeldAlert>,
    /// Deploys shown healthy (the gate's `pass`), by deploy id: shown
    /// here or read from the admin topic.
    gate_passes: Bounded<String, gate::Passed>,
    /// When cumulative series not updated for a while are next forgotten.
    next_sweep: Timestamp,
    /// The last deploys that stopped being watched, newest last, at most
    /// `keep_finished`.
    finished: std::collections::VecDeque<FinishedDeploy>,
    keep_finished: usize,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            guards: Guards::new(&config.guards),
            config,
            clock: Timestamp::MIN,
            registry: Registry::default(),
            windows: IdMap::default(),
            judges: HashMap::new(),
            late_data: HashMap::new(),
            cumulative: IdMap::default(),
            handovers: HashMap::new(),
            applied: HashMap::new(),
            books: HashMap::new(),
            known: known::Known::default(),
            ownership: Ownership::All,
            alerts_seen: Bounded::new(MAX_ALERTS_REMEMBERED),
            pending_alerts: HashMap::new(),
            gate_passes: Bounded::new(gate::MAX_PASSES_REMEMBERED),
            next_sweep: Timestamp::MIN,
            finished: Default::default(),
            keep_finished: views::KEEP_FINISHED,
        }
    }

    /// The one door: applies `input` as of `now` (the clock moves to `now`
    /// unless it is already later) and returns what it caused.
    pub fn apply(&mut self, input: Input, now: Timestamp) -> Vec<Output> {
        self.clock = self.clock.max(now);
        let mut out = Vec::new();
        match input {
            Input::Deploy(ev) => self.deploy_event(ev, &mut out),
            Input::Telemetry(batch) => self.telemetry(&batch, &mut out),
            Input::Evidence(e) => {
                let outcome = self.evidence(e, &mut out);
                out.push(Output::Telemetry(outcome));
            }
            Input::Own(ownership) => self.own(ownership),
            Input::Alerts(alerts) => self.alerts(&alerts, &mut out),
            Input::Result(r) => self.result(&r, &mut out),
            Input::Command(cmd) => self.restore_command(&cmd, &mut out),
            Input::Admin(record) => {
                self.admin_record(&record);
            }
            Input::AdminCall(call) => self.admin_call(call, &mut out),
            Input::Gate(record) => self.gate_record(&record),
            Input::Malformed(m) => out.push(Output::Audit(AuditRecord::new(self.clock, m))),
            Input::Tick => self.tick(&mut out),
        }
        out
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The engine's clock.
    pub fn now(&self) -> Timestamp {
        self.clock
    }

    /// Stage 1 (read-only): matches an export to deploys and folds it into
    /// `fold`. `raw` is the Kafka record it came from.
    pub fn fold_telemetry(
        &self,
        fold: &mut fold::Fold,
        batch: &TelemetryBatch,
        raw: Option<fold::Raw<'_>>,
        now: Timestamp,
    ) -> TelemetryOutcome {
        fold.telemetry(&self.registry, &self.config, batch, raw, now)
    }

    /// Stage 1 (read-only): routes alerts to the owners of the deploys they
    /// match; returns those that match none (for this instance to audit).
    pub fn fold_alerts(&self, fold: &mut fold::Fold, alerts: Vec<Alert>) -> Vec<Alert> {
        fold.alerts(&self.registry, alerts, |a| self.match_alert(a).ok())
    }

    /// Stage 1 (read-only): routes a person's rollback to the owner of the
    /// deploy; `None` when there is no such active deploy.
    pub fn fold_rollback(
        &self,
        fold: &mut fold::Fold,
        deploy_id: &str,
        reason: &str,
        actor: &str,
    ) -> Option<Key> {
        fold.rollback(&self.registry, deploy_id, reason, actor)
    }

    /// Whether this instance decides for the deploy's key.
    fn owns(&self, d: &crate::model::DeployEvent) -> bool {
        self.ownership.owns(&d.service, d.environment_or_default())
    }

    /// Forgets a deploy's windows, what its sequential tests saw, and the
    /// last points of its cumulative series (evidence read back later
    /// counts them again from the start).
    fn forget_evidence(&mut self, seq: u64) {
        self.windows.remove(&(seq, Role::Candidate));
        self.windows.remove(&(seq, Role::Baseline));
        self.judges.remove(&seq);
        self.late_data.remove(&seq);
        self.cumulative.retain(|&(_, s, _), _| s != seq);
    }

    /// Takes a new ownership: the windows, evidence offsets and held-back
    /// alerts of keys no longer owned are forgotten (a new owner rebuilds
    /// them from the evidence topic).
    fn own(&mut self, ownership: Ownership) {
        // Every key whose evidence is not kept any more — owned before, or
        // being read back before (a partition revoked while it was read
        // back): its windows go, with the record of what was applied, or a
        // later read-back would count it again on top.
        let lost: Vec<(u64, String)> = self
            .registry
            .iter()
            .filter(|d| self.ownership.keeps(&d.info.service, d.environment()))
            .filter(|d| !ownership.keeps(&d.info.service, d.environment()))
            .map(|d| (d.seq, d.info.deploy_id.clone()))
            .collect();
        for (seq, id) in lost {
            self.forget_evidence(seq);
            self.pending_alerts.remove(&id);
            self.registry.update(&id, |d| {
                d.previous_verdict = None;
                d.last_eval = None;
                d.audited_suppression = None;
                d.history = Default::default();
            });
        }
        self.applied
            .retain(|k, _| ownership.keeps(&k.service, &k.environment));
        self.handovers
            .retain(|(k, _, _), _| ownership.keeps(&k.service, &k.environment));
        self.books
            .retain(|k, _| ownership.keeps(&k.service, &k.environment));
        self.ownership = ownership;
    }

    /// An audit record of the malformed input `error` from `source`, as the
    /// engine would write it (for adapters that report it themselves).
    pub fn malformed(source: &str, error: &str, location: Value) -> Input {
        Input::Malformed(crate::model::audit::MalformedAudit {
            source: source.to_string(),
            error: error.to_string(),
            location,
        })
    }
}

#[cfg(test)]
mod tests;
