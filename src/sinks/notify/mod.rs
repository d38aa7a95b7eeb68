//! `[[notify]]`: audit records people should hear of, posted to Slack, a
//! webhook, or Grafana's annotation API ([`grafana`]).
//!
//! ```text
//!  audit record (JSON) ─► Notifier::offer ─► per sink: filter by event ─► bounded queue ─► worker thread
//!                          (parse once, id)    (decision, approval_required, …)   full: dropped,     POST, retry with
//!                                                                                  counted, audited   backoff + jitter
//! ```
//!
//! [`Notifier::offer`] never waits: a sink whose queue is full drops the
//! notification (counted in `rollbackd_notifications_total{outcome="dropped"}`
//! and audited as kind `notification`), so a slow or dead receiver never
//! delays a decision. Each sink's worker delivers in order, one at a time:
//! a 2xx is delivered; a timeout, a connection error, 408, 429 (its
//! `Retry-After` honoured up to 60 s) or 5xx is retried after
//! `backoff × 2^n` (at most 60 s) with jitter (half to all of it), up to
//! `retries` times; any other status fails at once. A notification that
//! fails for good is counted and audited.
//!
//! Who offers: without Kafka the emitter, once a batch is out; with Kafka
//! the notify consumer (`crate::runtime::notify`) over the committed audit
//! topic, which commits a record's offset once [`Pending::done`] — so a
//! notification is sent by one instance, and again after a crash only if
//! the crash came between the delivery and the commit. It then carries the
//! same `X-Rollbackd-Event-Id` (a hash of the record), for the receiver to
//! drop.

pub mod grafana;
pub mod hmac;
pub mod message;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::config::notify::{NotifyEvent, NotifyKind, ResolvedSink};
use crate::metrics::NotifyMetrics;
use crate::model::audit::{NotificationAudit, NotificationOutcome};
use crate::model::AuditRecord;
use crate::time::Timestamp;
use message::{Api, Event};

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How many sinks have yet to finish with one offered record (deliver it,
/// give up on it, or drop it), and whether it was taken back.
#[derive(Debug, Clone, Default)]
pub struct Pending(Arc<(AtomicUsize, AtomicBool)>);

impl Pending {
    /// Every sink is finished with the record: its offset may be committed.
    pub fn done(&self) -> bool {
        self.0 .0.load(Ordering::Acquire) == 0
    }

    /// Takes the record back (its partition was revoked: whoever holds it
    /// now reads it again): a sink that has not started on it skips it.
    pub fn cancel(&self) {
        self.0 .1.store(true, Ordering::Release);
    }

    fn cancelled(&self) -> bool {
        self.0 .1.load(Ordering::Acquire)
    }

    fn finish(&self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One notification for one sink.
struct Job {
    event: Arc<Event>,
    offered: Instant,
    pending: Pending,
}

struct Queue {
    name: String,
    events: Vec<NotifyEvent>,
    tx: SyncSender<Job>,
}

/// What the workers share with the notifier.
struct State {
    stop: AtomicBool,
    /// Dropped and failed notifications, for the emitter to publish.
    audits: Mutex<Vec<AuditRecord>>,
    metrics: NotifyMetrics,
}

impl State {
    fn audit(&self, a: NotificationAudit) {
        self.audits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(AuditRecord::new(Timestamp::now_wall(), a));
    }
}

/// How many deploys' environments the notifier remembers; past it, it
/// starts again (an annotation then lacks the environment tag).
const MAX_ENVIRONMENTS: usize = 10_000;

/// The sinks' queues and workers.
pub struct Notifier {
    queues: Vec<Queue>,
    state: Arc<State>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// deploy id → environment, from the deploy and command records
    /// offered: most records about a deploy do not name it.
    environments: Mutex<HashMap<String, String>>,
}

impl Notifier {
    /// Starts one worker per sink; `None` without sinks. `token_env`: the
    /// env var of the admin token, for how to approve.
    pub fn start(
        sinks: Vec<ResolvedSink>,
        token_env: &str,
        metrics: NotifyMetrics,
    ) -> std::io::Result<Option<Arc<Notifier>>> {
        if sinks.is_empty() {
            return Ok(None);
        }
        let state = Arc::new(State {
            stop: AtomicBool::new(false),
            audits: Mutex::new(Vec::new()),
            metrics,
        });
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for sink in sinks {
            let (tx, rx) = mpsc::sync_channel(sink.config.queue);
            let name = sink.config.name.clone();
            for outcome in ["delivered", "failed", "dropped"] {
                state
                    .metrics
                    .notifications
                    .with_label_values(&[name.as_str(), outcome]);
            }
            state
                .metrics
                .queued
                .with_label_values(&[name.as_str()])
                .set(0);
            info!(
                sink = %name,
                kind = sink.config.kind.as_str(),
                events = ?sink.config.events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
                "notifications on"
            );
            queues.push(Queue {
                name: name.clone(),
                events: sink.config.events.clone(),
                tx,
            });
            let (state, token_env) = (state.clone(), token_env.to_string());
            workers.push(
                std::thread::Builder::new()
                    .name(format!("notify-{name}"))
                    .spawn(move || Worker::new(sink, &token_env, state).run(rx))?,
            );
        }
        Ok(Some(Arc::new(Notifier {
            queues,
            state,
            workers: Mutex::new(workers),
            environments: Mutex::new(HashMap::new()),
        })))
    }

    /// Queues an audit record's JSON for every sink that wants its event;
    /// never waits.
    pub fn offer(&self, payload: &[u8]) -> Pending {
        let pending = Pending::default();
        let Some(mut event) = Event::parse(payload) else {
            return pending;
        };
        self.environment(&mut event);
        let event = Arc::new(event);
        let wanted: Vec<&Queue> = self
            .queues
            .iter()
            .filter(|q| q.events.contains(&event.kind))
            .collect();
        pending.0 .0.store(wanted.len(), Ordering::Release);
        let m = &self.state.metrics;
        for q in wanted {
            let job = Job {
                event: event.clone(),
                offered: Instant::now(),
                pending: pending.clone(),
            };
            match q.tx.try_send(job) {
                Ok(()) => m.queued.with_label_values(&[q.name.as_str()]).inc(),
                Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                    m.notifications
                        .with_label_values(&[q.name.as_str(), "dropped"])
                        .inc();
                    warn!(sink = %q.name, event = event.kind.as_str(), event_id = %event.id, "notification queue full: dropped");
                    self.state.audit(NotificationAudit {
                        sink: q.name.clone(),
                        event: event.kind.as_str().into(),
                        event_id: event.id.clone(),
                        outcome: NotificationOutcome::Dropped,
                        attempts: 0,
                        error: "the sink's queue is full".into(),
                    });
                    job.pending.finish();
                }
            }
        }
        pending
    }

    /// Remembers the environment of `e`'s deploy when it names it, or
    /// gives it the one remembered.
    fn environment(&self, e: &mut Event) {
        let Some(deploy) = e.record.deploy_id.as_ref() else {
            return;
        };
        let mut known = self.environments.lock().unwrap_or_else(|p| p.into_inner());
        match &e.environment {
            Some(env) => {
                if known.len() >= MAX_ENVIRONMENTS {
                    known.clear();
                }
                known.insert(deploy.clone(), env.clone());
            }
            None => e.environment = known.get(deploy).cloned(),
        }
    }

    /// The audit records of dropped and failed notifications since the
    /// last call.
    pub fn take_audits(&self) -> Vec<AuditRecord> {
        std::mem::take(&mut *self.state.audits.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Stops retrying; the workers make one more attempt at what is queued
    /// and are waited for up to `grace`. What is left is not acknowledged
    /// (with Kafka: sent after the next start).
    pub fn stop(&self, grace: Duration) {
        self.state.stop.store(true, Ordering::Release);
        let deadline = Instant::now() + grace;
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        while Instant::now() < deadline && workers.iter().any(|w| !w.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for w in workers {
            if w.is_finished() {
                let _ = w.join();
            } else {
                warn!("a notification worker is still sending at shutdown; leaving it");
            }
        }
    }
}

/// How one delivery ended.
enum Outcome {
    Delivered {
        attempts: u32,
    },
    Failed {
        attempts: u32,
        error: String,
    },
    /// Stopping: not acknowledged.
    Abandoned,
}

struct Worker {
    sink: ResolvedSink,
    client: Option<reqwest::blocking::Client>,
    api_url: String,
    token_env: String,
    state: Arc<State>,
    rng: crate::rng::Rng,
}

impl Worker {
    fn new(sink: ResolvedSink, token_env: &str, state: Arc<State>) -> Worker {
        let timeout = Duration::from_nanos(sink.config.timeout.nanos().max(0) as u64);
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("rollbackd/", env!("CARGO_PKG_VERSION")))
            // A redirect would turn the POST into a GET without the body.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| error!(sink = %sink.config.name, error = %e, "cannot make an HTTP client: every notification will fail"))
            .ok();
        let seed = Timestamp::now_wall().0 as u64 ^ crate::rng::splitmix(sink.url.len() as u64);
        Worker {
            api_url: sink.config.api_url.clone(),
            sink,
            client,
            token_env: token_env.to_string(),
            state,
            rng: crate::rng::Rng::new(seed),
        }
    }

    fn run(mut self, rx: Receiver<Job>) {
        let name = self.sink.config.name.clone();
        let m = self.state.metrics.clone();
        loop {
            let job = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) if self.stopping() => break,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            m.queued.with_label_values(&[name.as_str()]).dec();
            if job.pending.cancelled() {
                continue;
            }
            let e = &job.event;
            match self.deliver(e) {
                Outcome::Delivered { attempts } => {
                    m.notifications
                        .with_label_values(&[name.as_str(), "delivered"])
                        .inc();
                    m.delivery_seconds
                        .with_label_values(&[name.as_str()])
                        .observe(job.offered.elapsed().as_secs_f64());
                    info!(sink = %name, event = e.kind.as_str(), event_id = %e.id, attempts, "notification delivered");
                    job.pending.finish();
                }
                Outcome::Failed { attempts, error } => {
                    m.notifications
                        .with_label_values(&[name.as_str(), "failed"])
                        .inc();
                    error!(sink = %name, event = e.kind.as_str(), event_id = %e.id, attempts, error = %error, "notification failed");
                    self.state.audit(NotificationAudit {
                        sink: name.clone(),
                        event: e.kind.as_str().into(),
                        event_id: e.id.clone(),
                        outcome: NotificationOutcome::Failed,
                        attempts,
                        error,
                    });
                    job.pending.finish();
                }
                Outcome::Abandoned => {
                    warn!(sink = %name, event = e.kind.as_str(), event_id = %e.id, "stopping: notification not delivered");
                }
            }
        }
    }

    fn stopping(&self) -> bool {
        self.state.stop.load(Ordering::Acquire)
    }

    fn deliver(&mut self, e: &Event) -> Outcome {
        let Some(client) = self.client.clone() else {
            return Outcome::Failed {
                attempts: 0,
                error: "no HTTP client".into(),
            };
        };
        let api = Api {
            url: &self.api_url,
            token_env: &self.token_env,
        };
        let req = match self.sink.config.kind {
            NotifyKind::Slack => message::slack_request(e, &api),
            NotifyKind::Webhook => message::webhook(e, &api, self.sink.secret.as_deref()),
            NotifyKind::Grafana => grafana::request(
                e,
                self.sink.token.as_deref().unwrap_or_default(),
                &self.sink.config.dashboard_uid,
            ),
        };
        let name = self.sink.config.name.clone();
        let mut backoff = Duration::from_nanos(self.sink.config.backoff.nanos().max(0) as u64);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut post = client
                .post(&self.sink.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(req.body.clone());
            for (k, v) in &req.headers {
                post = post.header(*k, v.as_str());
            }
            let (error, wait) = match post.send() {
                Ok(r) if r.status().is_success() => return Outcome::Delivered { attempts },
                Ok(r) => {
                    let s = r.status();
                    if !(s.is_server_error() || s.as_u16() == 408 || s.as_u16() == 429) {
                        return Outcome::Failed {
                            attempts,
                            error: format!("HTTP {s} (not retried)"),
                        };
                    }
                    let retry_after = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s).min(MAX_BACKOFF));
                    (format!("HTTP {s}"), retry_after)
                }
                // Without the URL: it may be a secret.
                Err(err) => (err.without_url().to_string(), None),
            };
            if attempts > self.sink.config.retries {
                return Outcome::Failed { attempts, error };
            }
            if self.stopping() {
                return Outcome::Abandoned;
            }
            let jittered = backoff.mul_f64(0.5 + 0.5 * self.rng.unit());
            let wait = wait.unwrap_or(jittered);
            warn!(sink = %name, event_id = %e.id, attempts, error = %error, retry_in_ms = wait.as_millis() as u64, "notification failed; retrying");
            self.state
                .metrics
                .retries
                .with_label_values(&[name.as_str()])
                .inc();
            if !self.sleep(wait) {
                return Outcome::Abandoned;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Sleeps `d` unless stopping; false if it stopped.
    fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.stopping() {
                return false;
            }
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
        }
        true
    }
}
