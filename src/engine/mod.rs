//! The decision engine: all state and every decision (CONTRACT §2, §3).
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
//! - [`intake`]: telemetry into rolling windows: correlation to deploys,
//!   cumulative histograms into deltas, late and over-limit data.
//! - [`decide`]: evaluation of due deploys, the guard chain and the
//!   commands it lets through, release cascades.
//! - [`alerts`]: Alertmanager alerts as rollback triggers.
//! - [`admin`]: pause, resume, breaker reset, manual rollback, and guard
//!   state read back from the commands topic.
//! - [`views`]: what the admin API, the metrics and the demo show.
//! - state: [`registry`] (deploys, indexes, schedule), [`window`] (rolling
//!   windows), [`guards`] (the guards' state and chain), [`bounded`].
//! - math: [`evaluate`] (burn-rate pairs and attribution, on
//!   [`crate::stats`]).

pub mod admin;
pub mod alerts;
pub mod bounded;
pub mod decide;
pub mod evaluate;
pub mod guards;
pub mod intake;
pub mod lifecycle;
pub mod registry;

pub mod views;
pub mod window;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::config::Config;
use crate::model::{AlertStatus, AuditRecord, Input, Output};
use crate::time::Timestamp;
use bounded::Bounded;
use guards::Guards;
use registry::{Registry, Role};
use window::SeriesWindows;

pub use views::{BurnSummary, DeployView};

/// How many (fingerprint, startsAt, status) alert keys are remembered to
/// recognise Alertmanager's repeated deliveries.
const MAX_ALERTS_REMEMBERED: usize = 100_000;

/// The engine. See the module docs.
pub struct Engine {
    config: Arc<Config>,
    /// The clock: the largest `now` given so far (wall time in `run`,
    /// record time in `replay`).
    clock: Timestamp,
    registry: Registry,
    windows: HashMap<(u64, Role), SeriesWindows>,
    /// Last cumulative histogram state per series, to turn it into deltas.
    cumulative: HashMap<u64, intake::CumState>,
    guards: Guards,
    /// Alertmanager deliveries already applied.
    alerts_seen: Bounded<(String, i64, AlertStatus)>,
    /// Firing alerts matched to deploys whose command was held back by a
    /// guard, by deploy id: tried again at every evaluation until emitted
    /// or resolved.
    pending_alerts: HashMap<String, alerts::Pending>,
    /// When cumulative series not updated for a while are next forgotten.
    next_sweep: Timestamp,
}

impl Engine {
    pub fn new(config: Arc<Config>) -> Engine {
        Engine {
            guards: Guards::new(&config.guards),
            config,
            clock: Timestamp::MIN,
            registry: Registry::default(),
            windows: HashMap::new(),
            cumulative: HashMap::new(),
            alerts_seen: Bounded::new(MAX_ALERTS_REMEMBERED),
            pending_alerts: HashMap::new(),
            next_sweep: Timestamp::MIN,
        }
    }

    /// The one door: applies `input` as of `now` (the clock moves to `now`
    /// unless it is already later) and returns what it caused.
    pub fn apply(&mut self, input: Input, now: Timestamp) -> Vec<Output> {
        self.clock = self.clock.max(now);
        let mut out = Vec::new();
        match input {
            Input::Deploy(ev) => self.deploy_event(ev, &mut out),
            Input::Telemetry(batch) => {
                let outcome = self.telemetry(&batch);
                out.push(Output::Telemetry(outcome));
            }
            Input::Alerts(alerts) => self.alerts(&alerts, &mut out),
            Input::Result(r) => self.result(&r, &mut out),
            Input::Command(cmd) => self.restore_command(&cmd, &mut out),
            Input::Admin(record) => {
                self.admin_record(&record);
            }
            Input::AdminCall(call) => self.admin_call(call, &mut out),
            Input::Malformed(m) => out.push(Output::Audit(AuditRecord::new(self.clock, m))),
            Input::Tick => self.tick(&mut out),
        }
        out
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The engine's clock.
    pub fn now(&self) -> Timestamp {
        self.clock
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
