//! What every part of a running agent shares: the engine behind one lock,
//! metrics, the recent audit records, readiness per stage, and the token
//! that stops everything.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::config::{Config, Secrets};
use crate::engine::Engine;
use crate::http::RECENT_AUDIT;
use crate::model::{AuditRecord, Input, Output};
use crate::telemetry::Metrics;
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

pub struct Shared {
    pub config: Arc<Config>,
    engine: RwLock<Engine>,
    pub metrics: Metrics,
    recent_audit: Mutex<VecDeque<AuditRecord>>,
    pub webhook_token: Option<String>,
    pub admin_token: Option<String>,
    pub readiness: Readiness,
    /// Cancelled by SIGTERM/SIGINT or a fatal error: every loop ends.
    pub cancel: CancellationToken,
    /// This instance, for logs and evidence records.
    pub instance: String,
}

impl Shared {
    /// `secrets`: the tokens read at start ([`Config::secrets`]).
    pub fn new(config: Arc<Config>, instance: String, secrets: &Secrets) -> Arc<Shared> {
        Arc::new(Shared {
            engine: RwLock::new(Engine::new(config.clone())),
            metrics: Metrics::new(),
            recent_audit: Mutex::new(VecDeque::new()),
            webhook_token: secrets.webhook_token.clone(),
            admin_token: secrets.admin_token.clone(),
            readiness: Readiness::default(),
            cancel: CancellationToken::new(),
            instance,
            config,
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
    }
}

fn poisoned() -> ! {
    error!("the engine lock is poisoned (a panic while deciding): exiting; a restart recovers from the topics");
    std::process::exit(POISONED)
}
