//! What every part of a running agent shares: the engine behind one lock,
//! metrics, the recent audit records, the views the owners published,
//! readiness and liveness per stage, and the token that stops everything.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::config::{Config, Secrets};
use crate::engine::{Engine, EngineConfig};
use crate::http::RECENT_AUDIT;
use crate::metrics::Metrics;
use crate::model::fleet::Fleet;
use crate::model::{AuditRecord, Input, Output};
use crate::time::Timestamp;

/// The exit status of a process whose engine lock was poisoned (a panic
/// while deciding): it stops at once and a restart recovers from the topics.
pub const POISONED: i32 = 70;

/// Readiness, stage by stage (`/readyz` reports which one is not).
#[derive(Debug, Default)]
pub struct Readiness {
    /// The control topics were read whole (guards, deploys, results).
    pub control: AtomicBool,
    /// Intake holds its telemetry partitions (or was assigned none).
    pub intake: AtomicBool,
    /// Every evidence partition this instance owns was read back.
    pub owner: AtomicBool,
    /// The broker answers.
    pub broker: AtomicBool,
    /// Outputs are acknowledged (no command waiting for long).
    pub emit: AtomicBool,
}

impl Readiness {
    /// `None` when every stage is ready, else the stages that are not.
    pub fn not_ready(&self) -> Option<String> {
        let stages = [
            ("control", &self.control),
            ("intake", &self.intake),
            ("owner", &self.owner),
            ("broker", &self.broker),
            ("emit", &self.emit),
        ];
        let missing: Vec<&str> = stages
            .iter()
            .filter(|(_, f)| !f.load(Ordering::Acquire))
            .map(|(n, _)| *n)
            .collect();
        (!missing.is_empty()).then(|| missing.join(", "))
    }

    /// Every stage ready (without Kafka there is one stage).
    pub fn all(&self) {
        for f in [
            &self.control,
            &self.intake,
            &self.owner,
            &self.broker,
            &self.emit,
        ] {
            f.store(true, Ordering::Release);
        }
    }
}

/// Liveness of one stage: whether it has work in hand (records consumed
/// and not yet acknowledged downstream, a batch being retried, consumer
/// lag) and when it last made progress. Idle counts as progress: a stage
/// is stuck only while it has work and gets none of it done.
#[derive(Debug)]
pub struct Stage {
    pub name: &'static str,
    busy: AtomicBool,
    /// Milliseconds since [`Liveness::start`] of the last progress.
    progress_ms: AtomicU64,
}

impl Stage {
    fn new(name: &'static str) -> Stage {
        Stage {
            name,
            busy: AtomicBool::new(false),
            progress_ms: AtomicU64::new(0),
        }
    }
}

/// Liveness per stage (`/healthz`): a stage that has had work and made no
/// progress for `kafka.stuck_after` is stuck, and a restart is the cure
/// (`docs/http.md#routes`). Without Kafka nothing is ever stuck.
#[derive(Debug)]
pub struct Liveness {
    start: Instant,
    /// `None`: never stuck (no Kafka).
    stuck_after: Option<Duration>,
    /// Stage 1: raw telemetry to evidence acknowledged by the broker.
    pub intake: Stage,
    /// Stage 2: evidence to a published batch (commands, audit, offsets).
    pub owner: Stage,
}

impl Liveness {
    pub fn new(stuck_after: Option<Duration>) -> Liveness {
        Liveness {
            start: Instant::now(),
            stuck_after,
            intake: Stage::new("intake"),
            owner: Stage::new("owner"),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// `stage` got some of its work done.
    pub fn progress(&self, stage: &Stage) {
        stage.progress_ms.store(self.now_ms(), Ordering::Release);
    }

    /// Whether `stage` has work in hand now; without work it is not
    /// waiting for anything, which counts as progress.
    pub fn busy(&self, stage: &Stage, busy: bool) {
        stage.busy.store(busy, Ordering::Release);
        if !busy {
            self.progress(stage);
        }
    }

    /// How long `stage` has been stuck, if it is.
    pub fn stuck_for(&self, stage: &Stage) -> Option<Duration> {
        let after = self.stuck_after?;
        if !stage.busy.load(Ordering::Acquire) {
            return None;
        }
        let idle = Duration::from_millis(
            self.now_ms()
                .saturating_sub(stage.progress_ms.load(Ordering::Acquire)),
        );
        (idle >= after).then_some(idle)
    }

    /// The stages that are stuck, with how long: `None` when none is.
    pub fn stuck(&self) -> Option<String> {
        let stuck: Vec<String> = [&self.intake, &self.owner]
            .into_iter()
            .filter_map(|s| {
                self.stuck_for(s).map(|d| {
                    format!(
                        "{} (work pending, no progress for {} s)",
                        s.name,
                        d.as_secs()
                    )
                })
            })
            .collect();
        (!stuck.is_empty()).then(|| stuck.join(", "))
    }
}

pub struct Shared {
    pub config: Arc<Config>,
    engine: RwLock<Engine>,
    pub metrics: Metrics,
    recent_audit: Mutex<VecDeque<AuditRecord>>,
    pub webhook_token: Option<String>,
    pub admin_token: Option<String>,
    pub readiness: Readiness,
    pub liveness: Liveness,
    /// Cancelled by SIGTERM/SIGINT or a fatal error: every loop ends.
    pub cancel: CancellationToken,
    /// This instance, for logs and evidence records.
    pub instance: String,
    /// The views the owners published (with Kafka; else empty).
    fleet: Mutex<Fleet>,
}

impl Shared {
    /// `secrets`: the tokens read at start ([`Config::secrets`]).
    pub fn new(config: Arc<Config>, instance: String, secrets: &Secrets) -> Arc<Shared> {
        Arc::new(Shared {
            engine: RwLock::new(Engine::new(EngineConfig::from(&*config))),
            metrics: Metrics::new(),
            recent_audit: Mutex::new(VecDeque::new()),
            webhook_token: secrets.webhook_token.clone(),
            admin_token: secrets.admin_token.clone(),
            readiness: Readiness::default(),
            liveness: Liveness::new(
                config
                    .kafka
                    .as_ref()
                    .map(|k| Duration::from_nanos(k.stuck_after.nanos().max(0) as u64)),
            ),
            cancel: CancellationToken::new(),
            instance,
            config,
            fleet: Mutex::new(Fleet::default()),
        })
    }

    /// The engine, to read. A poisoned lock is fatal (see [`POISONED`]).
    pub fn read(&self) -> RwLockReadGuard<'_, Engine> {
        self.engine.read().unwrap_or_else(|_| poisoned())
    }

    /// The engine, to change. A poisoned lock is fatal (see [`POISONED`]).
    pub fn write(&self) -> RwLockWriteGuard<'_, Engine> {
        self.engine.write().unwrap_or_else(|_| poisoned())
    }

    /// The views the owners published. Taken after the engine's lock when
    /// both are.
    pub fn fleet(&self) -> MutexGuard<'_, Fleet> {
        self.fleet.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `input` on the wall clock.
    pub fn apply(&self, input: Input) -> Vec<Output> {
        self.write().apply(input, Timestamp::now_wall())
    }

    /// What the status page warns of: how this instance runs that an
    /// operator must know.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.webhook_token.is_none() {
            out.push(format!(
                "webhook routes are open to anyone who reaches {} (http.allow_unauthenticated = true, {} not set)",
                self.config.http_listen, self.config.http.webhook_token_env
            ));
        }
        out
    }

    /// Keeps published audit records for `GET /v1/audit`.
    pub fn remember(&self, records: impl IntoIterator<Item = AuditRecord>) {
        let mut recent = self.recent_audit.lock().unwrap_or_else(|p| p.into_inner());
        for a in records {
            if recent.len() == RECENT_AUDIT {
                recent.pop_front();
            }
            recent.push_back(a);
        }
    }

    pub fn recent_audit(&self, limit: usize) -> Vec<AuditRecord> {
        self.recent_audit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// Copies engine state into the gauges (at scrape time).
    pub fn refresh_gauges(&self) {
        let m = &self.metrics;
        {
            let e = self.read();
            m.active_deploys.set(e.active_deploys() as i64);
            let summary = e.burn_summary();
            m.deploys_by_state.reset();
            for (state, n) in summary.states {
                m.deploys_by_state.with_label_values(&[state]).set(n as i64);
            }
            m.burn_rate_max.reset();
            for ((sli, window), burn) in summary.max_burn {
                m.burn_rate_max
                    .with_label_values(&[sli, window.as_str()])
                    .set(burn);
            }
            m.breaker_open.set(i64::from(e.breaker_open()));
            m.paused.set(i64::from(e.paused()));
        }
        let r = &self.readiness;
        m.ready.set(i64::from(r.not_ready().is_none()));
        for (stage, f) in [
            ("control", &r.control),
            ("intake", &r.intake),
            ("owner", &r.owner),
            ("broker", &r.broker),
            ("emit", &r.emit),
        ] {
            m.stage_ready
                .with_label_values(&[stage])
                .set(i64::from(f.load(Ordering::Acquire)));
        }
        let l = &self.liveness;
        for stage in [&l.intake, &l.owner] {
            m.stage_stuck
                .with_label_values(&[stage.name])
                .set(i64::from(l.stuck_for(stage).is_some()));
            m.stage_busy
                .with_label_values(&[stage.name])
                .set(i64::from(stage.busy.load(Ordering::Acquire)));
        }
    }

    /// Why the instance is not ready, stuck stages included.
    pub fn not_ready(&self) -> Option<String> {
        let stuck = self.liveness.stuck().map(|s| format!("stuck: {s}"));
        match (self.readiness.not_ready(), stuck) {
            (None, None) => None,
            (Some(a), None) | (None, Some(a)) => Some(a),
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        }
    }
}

fn poisoned() -> ! {
    error!("the engine lock is poisoned (a panic while deciding): exiting; a restart recovers from the topics");
    std::process::exit(POISONED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_is_stuck_only_with_work_and_no_progress() {
        let l = Liveness::new(Some(Duration::from_millis(50)));
        assert_eq!(l.stuck(), None);
        // Idle for longer than the bound: not stuck.
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(l.stuck(), None);
        // Work taken in just now: not stuck yet.
        l.progress(&l.intake);
        l.busy(&l.intake, true);
        assert_eq!(l.stuck(), None);
        std::thread::sleep(Duration::from_millis(80));
        let stuck = l.stuck().expect("stuck");
        assert!(stuck.starts_with("intake "), "{stuck}");
        assert!(l.stuck_for(&l.owner).is_none());
        // Progress ends it; so does running out of work.
        l.progress(&l.intake);
        assert_eq!(l.stuck(), None);
        std::thread::sleep(Duration::from_millis(80));
        assert!(l.stuck().is_some());
        l.busy(&l.intake, false);
        assert_eq!(l.stuck(), None);
    }

    #[test]
    fn without_kafka_nothing_is_stuck() {
        let l = Liveness::new(None);
        l.busy(&l.owner, true);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(l.stuck(), None);
    }
}
