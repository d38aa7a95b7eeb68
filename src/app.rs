//! `rollbackd run` over Kafka: wiring, recovery, readiness and shutdown
//! (CONTRACT §5).
//!
//! Threads and what connects them:
//! - the **control thread** follows `deploy-events`, `rollback-results` and
//!   `rollback-commands`, applies them, and ticks the engine on the wall
//!   clock (warm-ups ending, cooldowns ending, watches expiring);
//! - the **telemetry thread** polls the telemetry topics in batches,
//!   decodes a batch on every core (scoped threads), applies it under the
//!   engine's read lock, evaluates the deploys it touched, and only then
//!   stores the batch's offsets;
//! - the **publisher** (a tokio task) produces commands, audit records and
//!   dead letters; its queue is bounded, so a stalled broker blocks the
//!   engine threads instead of growing memory.
//!
//! Start-up: commands are read back first (guard state), then deploy
//! events, then results; telemetry partitions are rewound to
//! `now − longest window`. Only when all of that is applied does the
//! agent evaluate, and report ready.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::config::{Config, OtlpEncoding};
use crate::engine::Engine;
use crate::ingest::{self, DecodeError, Source};
use crate::kafka::consumer::{ControlReader, TelemetryConsumer};
use crate::kafka::producer;
use crate::kafka::InRecord;
use crate::model::{AuditEvent, Input, Output};
use crate::sinks::{self, Outgoing, Publisher};
use crate::telemetry::Metrics;
use crate::time::Timestamp;

/// Marks a control record applied when dropped (whatever path applied it).
struct AppliedOnDrop<'a>(&'a Agent, &'a InRecord);

impl Drop for AppliedOnDrop<'_> {
    fn drop(&mut self) {
        let (agent, rec) = (self.0, self.1);
        let mut next = agent
            .publisher
            .state
            .control_next
            .entry((rec.topic.clone(), rec.partition))
            .or_insert(rec.offset + 1);
        *next = (*next).max(rec.offset + 1);
    }
}

/// How long shutdown may take before the process exits anyway.
const GRACE: Duration = Duration::from_secs(20);
/// At most this many records are decoded as one batch.
const BATCH: usize = 256;

/// Shared state of a running agent.
pub struct Agent {
    pub config: Arc<Config>,
    pub engine: RwLock<Engine>,
    pub publisher: Publisher,
    pub shutdown: AtomicBool,
    /// Recovery done and windows rebuilt: the engine may decide.
    pub recovered: AtomicBool,
    pub ready: AtomicBool,
    pub metrics: Metrics,
    /// The latest audit records, for `GET /v1/audit`.
    pub recent_audit: std::sync::Mutex<std::collections::VecDeque<crate::model::AuditRecord>>,
    /// Bearer tokens read at start from the env vars named in `[http]`.
    pub webhook_token: Option<String>,
    pub admin_token: Option<String>,
    /// With Kafka: what HTTP calls publish for every instance — admin
    /// actions to the admin topic, deploy events to the deploy-events topic —
    /// is produced and acknowledged through this handle.
    pub producer: std::sync::OnceLock<rdkafka::producer::FutureProducer>,
}

/// How many audit records `GET /v1/audit` can show.
pub const RECENT_AUDIT: usize = 1000;

impl Agent {
    fn new(
        config: Arc<Config>,
        publisher: Publisher,
        metrics: Metrics,
        recovered: bool,
    ) -> Arc<Agent> {
        let agent = Arc::new(Agent {
            engine: RwLock::new(Engine::new(config.clone())),
            publisher,
            shutdown: AtomicBool::new(false),
            recovered: AtomicBool::new(recovered),
            ready: AtomicBool::new(false),
            metrics,
            recent_audit: Default::default(),
            webhook_token: token_from_env(&config.http.webhook_token_env),
            admin_token: token_from_env(&config.http.admin_token_env),
            producer: std::sync::OnceLock::new(),
            config,
        });
        // Commands are counted, and their audit records kept, once this
        // instance emitted them (not when another instance already had).
        let weak = Arc::downgrade(&agent);
        let _ = agent
            .publisher
            .state
            .on_emitted
            .set(crate::sinks::EmitHook(Arc::new(move |cmd, audits| {
                if let Some(agent) = weak.upgrade() {
                    agent.metrics.count_emitted(cmd, audits);
                    for a in audits {
                        agent.remember_audit(a);
                    }
                }
            })));
        agent
    }

    fn remember_audit(&self, a: &crate::model::AuditRecord) {
        if let Ok(mut recent) = self.recent_audit.lock() {
            if recent.len() == RECENT_AUDIT {
                recent.pop_front();
            }
            recent.push_back(a.clone());
        }
    }

    /// Copies engine state into the gauges (at scrape time).
    pub fn refresh_gauges(&self) {
        if let Ok(e) = self.engine.read() {
            self.metrics.active_deploys.set(e.active_deploys() as i64);
            let summary = e.burn_summary();
            self.metrics.deploys_by_state.reset();
            for (state, n) in summary.states {
                self.metrics
                    .deploys_by_state
                    .with_label_values(&[state])
                    .set(n as i64);
            }
            self.metrics.burn_rate_max.reset();
            for ((sli, window), burn) in summary.max_burn {
                self.metrics
                    .burn_rate_max
                    .with_label_values(&[sli, window.as_str()])
                    .set(burn);
            }
            self.metrics.breaker_open.set(i64::from(e.breaker_open()));
            self.metrics.paused.set(i64::from(e.paused()));
        }
        self.metrics
            .ready
            .set(i64::from(self.ready.load(Ordering::Acquire)));
    }

    /// Applies `input` to the engine on the wall clock; `None` when the
    /// engine's lock is poisoned.
    pub fn apply(&self, input: Input) -> Option<Vec<Output>> {
        let mut e = self.engine.write().ok()?;
        Some(e.apply(input, Timestamp::now_wall()))
    }

    /// Applies a decoded input from an HTTP request and publishes what it
    /// caused. Returns how many items it held.
    pub fn apply_http(
        &self,
        source: Source,
        bytes: &[u8],
        json: bool,
    ) -> Result<usize, DecodeError> {
        let _span = tracing::info_span!("http_input", source = source.label(), bytes = bytes.len())
            .entered();
        let consumed_at = Instant::now();
        let encoding = if json {
            OtlpEncoding::Json
        } else {
            OtlpEncoding::Proto
        };
        let input = match ingest::decode(source, bytes, encoding) {
            Ok(input) => input,
            Err(e) => {
                self.malformed_http(source, &e);
                return Err(e);
            }
        };
        let n = match &input {
            Input::Telemetry(b) => b.observation_count(),
            Input::Alerts(a) => a.len(),
            _ => 1,
        };
        let outputs = self.apply(input).unwrap_or_default();
        self.count_outcome(source.label(), &outputs);
        self.publish_decided(outputs, Some(consumed_at));
        self.tick_after(Some(consumed_at));
        Ok(n)
    }

    /// Counts a record of `source` by what it caused: `records_total`
    /// (ok, or the telemetry outcome) and `observations_total`.
    fn count_outcome(&self, source: &str, outputs: &[Output]) {
        let mut label = "ok";
        for o in outputs {
            if let Output::Telemetry(t) = o {
                self.metrics.observations.inc_by(t.observations);
                label = t.label();
            }
        }
        self.count_record(source, label);
    }

    /// A malformed HTTP input: counted and audited; it changed nothing.
    pub fn malformed_http(&self, source: Source, e: &DecodeError) {
        self.count_record(source.label(), "malformed");
        let input = Engine::malformed(source.label(), &e.0, serde_json::json!({"http": true}));
        if let Some(outputs) = self.apply(input) {
            self.publish(outputs);
        }
    }

    /// Applies an admin call and publishes what it produced.
    pub fn admin(&self, call: crate::model::AdminCall) -> Option<Vec<Output>> {
        let outputs = self.apply(Input::AdminCall(call))?;
        self.publish(outputs.clone());
        Some(outputs)
    }

    fn count_record(&self, source: &str, outcome: &str) {
        self.metrics
            .records
            .with_label_values(&[source, outcome])
            .inc();
    }

    fn publish(&self, outputs: Vec<Output>) {
        self.publish_decided(outputs, None);
    }

    /// Publishes outputs that the record consumed at `consumed_at` caused.
    fn publish_decided(&self, outputs: Vec<Output>, consumed_at: Option<Instant>) {
        // The audit records of a command's emission (`command`, and
        // `breaker` when it opened the breaker) travel with it: they are
        // published only if this instance emits the command.
        let mut emission: std::collections::HashMap<String, Vec<crate::model::AuditRecord>> =
            std::collections::HashMap::new();
        let mut rest = Vec::with_capacity(outputs.len());
        for o in outputs {
            match o {
                Output::Audit(a) => match emission_of(&a) {
                    Some(id) => emission.entry(id).or_default().push(a),
                    None => rest.push(Output::Audit(a)),
                },
                Output::Telemetry(_) | Output::Refused(_) => {}
                other => rest.push(other),
            }
        }
        self.metrics
            .count_audits(rest.iter().filter_map(|o| match o {
                Output::Audit(a) => Some(a),
                _ => None,
            }));
        for o in &rest {
            if let Output::Audit(a) = o {
                self.remember_audit(a);
            }
        }
        for o in rest {
            let out = match o {
                Output::Command(c) => {
                    if let Some(t) = consumed_at {
                        self.metrics
                            .decision_latency_seconds
                            .observe(t.elapsed().as_secs_f64());
                    }
                    let audits = emission.remove(&c.command_id).unwrap_or_default();
                    Outgoing::Command(Box::new(crate::sinks::CommandOut {
                        command: c,
                        consumed_at,
                        audits,
                    }))
                }
                Output::Audit(a) => Outgoing::Audit(a),
                Output::Telemetry(_) | Output::Refused(_) => continue,
            };
            if !self.publisher.send_blocking(out) {
                error!("publisher is gone; output dropped");
            }
        }
        // (Emission audits without their command do not happen; if they
        // did, they are published as they are.)
        for a in emission.into_values().flatten() {
            self.remember_audit(&a);
            let _ = self.publisher.send_blocking(Outgoing::Audit(a));
        }
    }

    fn tick(&self) {
        self.tick_after(None);
    }

    fn tick_after(&self, consumed_at: Option<Instant>) {
        if !self.recovered.load(Ordering::Acquire) {
            return;
        }
        let Some(outputs) = self.apply(Input::Tick) else {
            return;
        };
        self.publish_decided(outputs, consumed_at);
    }

    fn malformed(&self, rec: &InRecord, source: &str, err: &DecodeError) {
        self.count_record(source, "malformed");
        self.metrics.dead_letters.inc();
        warn!(topic = %rec.topic, partition = rec.partition, offset = rec.offset, error = %err, "malformed record sent to the dead-letter topic");
        let input = Engine::malformed(
            source,
            &err.0,
            serde_json::json!({"topic": rec.topic, "partition": rec.partition, "offset": rec.offset}),
        );
        for o in self.apply(input).unwrap_or_default() {
            if let Output::Audit(a) = o {
                self.publisher.send_blocking(Outgoing::Audit(a));
            }
        }
        self.publisher.send_blocking(Outgoing::DeadLetter {
            source_topic: rec.topic.clone(),
            partition: rec.partition,
            offset: rec.offset,
            error: err.0.clone(),
            key: rec.key.clone(),
            payload: rec.payload.clone(),
        });
    }

    fn apply_control(&self, rec: &InRecord, recovering: bool) {
        let _span = tracing::info_span!("control_record", topic = %rec.topic, partition = rec.partition, offset = rec.offset, recovering).entered();
        let _applied = AppliedOnDrop(self, rec);
        let Some(source) = Source::from_topic(&self.config, &rec.topic) else {
            return;
        };
        let input = match ingest::decode(source, &rec.payload, OtlpEncoding::Json) {
            Ok(input) => input,
            Err(e) => return self.malformed(rec, source.label(), &e),
        };
        match &input {
            Input::Command(cmd) => {
                self.publisher
                    .state
                    .on_topic
                    .insert(cmd.command_id.clone(), ());
            }
            Input::Admin(a) => {
                info!(action = a.action.as_str(), actor = %a.actor, instance = %a.instance, at = %a.at, recovering, "admin action read");
            }
            _ => {}
        }
        let Some(outputs) = self.apply(input) else {
            return;
        };
        self.count_record(source.label(), "ok");
        match source {
            // A breaker opened by a command read back was audited by the
            // instance that emitted the command: not again here.
            Source::Commands | Source::Admin => {}
            // Commands made while replaying history (a release cascade
            // whose commands never landed) still go out; audits of the
            // past do not.
            _ if recovering => self.publish(
                outputs
                    .into_iter()
                    .filter(|o| matches!(o, Output::Command(_)))
                    .collect(),
            ),
            _ => self.publish(outputs),
        }
    }
}

/// Why `run` could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Kafka(#[from] crate::kafka::Error),
    #[error("{0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("cannot open audit.path {path}: {source}")]
    AuditFile {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} (http.listen): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn audit_file(config: &Config) -> Result<Option<sinks::audit_file::AuditFile>, RunError> {
    if config.audit.path.is_empty() {
        return Ok(None);
    }
    sinks::audit_file::AuditFile::open(&config.audit.path)
        .map(Some)
        .map_err(|source| RunError::AuditFile {
            path: config.audit.path.clone(),
            source,
        })
}

fn token_from_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|t| !t.trim().is_empty())
}

fn telemetry_label(config: &Config, rec: &InRecord) -> &'static str {
    if rec.topic == config.topics.otlp_spans {
        "otlp_spans"
    } else {
        "otlp_metrics"
    }
}

fn decode_telemetry(config: &Config, rec: &InRecord) -> Option<Result<Input, DecodeError>> {
    let source = Source::from_topic(config, &rec.topic)
        .filter(|s| matches!(s, Source::Spans | Source::Metrics))?;
    Some(ingest::decode(
        source,
        &rec.payload,
        config.topics.otlp_encoding,
    ))
}

fn telemetry_loop(agent: Arc<Agent>, consumer: TelemetryConsumer) {
    let workers = thread::available_parallelism().map_or(2, |n| n.get());
    let lookback = agent.config.longest_window();
    let mut batch: Vec<InRecord> = Vec::with_capacity(BATCH);
    let mut last_settle = Instant::now();
    while !agent.shutdown.load(Ordering::Acquire) {
        batch.clear();
        let mut consumed_at = None;
        let deadline = Instant::now() + Duration::from_millis(5);
        while batch.len() < BATCH {
            let wait = deadline.saturating_duration_since(Instant::now());
            match consumer.poll(if batch.is_empty() {
                Duration::from_millis(100)
            } else {
                wait
            }) {
                Some(Ok(r)) => {
                    consumed_at.get_or_insert_with(Instant::now);
                    batch.push(r)
                }
                Some(Err(e)) => {
                    warn!(error = %e, "telemetry consumer error");
                    break;
                }
                None => break,
            }
        }
        if last_settle.elapsed() > Duration::from_millis(200) {
            consumer.settle_empty();
            last_settle = Instant::now();
            if let Some(lag) = consumer.lag() {
                agent.metrics.consumer_lag.set(lag);
            }
            // Until the group assignment arrives and every partition is read
            // back, decisions wait: a window with half its history decides
            // differently.
            if !agent.recovered.load(Ordering::Acquire) && consumer.caught_up() {
                agent.recovered.store(true, Ordering::Release);
                info!("telemetry windows rebuilt");
            }
        }
        if batch.is_empty() {
            continue;
        }
        let _span = tracing::info_span!("telemetry_batch", records = batch.len()).entered();
        // Records older than every window only cost decoding: skip them by
        // their Kafka timestamp (the bounded scan of a rewind).
        let horizon_ms = Timestamp::now_wall().saturating_sub(lookback).nanos() / 1_000_000;
        let chunk = batch.len().div_ceil(workers);
        let config = agent.config.clone();
        let decoded: Vec<Option<Result<Input, DecodeError>>> = thread::scope(|s| {
            let handles: Vec<_> = batch
                .chunks(chunk)
                .map(|part| {
                    let config = &config;
                    s.spawn(move || {
                        part.iter()
                            .map(|r| {
                                if r.timestamp_ms.is_some_and(|t| t < horizon_ms) {
                                    None
                                } else {
                                    decode_telemetry(config, r)
                                }
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for (rec, d) in batch.iter().zip(decoded) {
            match d {
                None => agent.count_record(telemetry_label(&agent.config, rec), "late"),
                Some(Ok(input)) => {
                    let Some(outputs) = agent.apply(input) else {
                        continue;
                    };
                    agent.count_outcome(telemetry_label(&agent.config, rec), &outputs);
                }
                Some(Err(err)) => agent.malformed(rec, telemetry_label(&agent.config, rec), &err),
            }
        }
        agent.tick_after(consumed_at);
        // Effects applied (and any command handed to the publisher): now
        // the offsets may move.
        let mut last: std::collections::HashMap<(&str, i32), i64> = Default::default();
        for r in &batch {
            let e = last
                .entry((r.topic.as_str(), r.partition))
                .or_insert(r.offset);
            *e = (*e).max(r.offset);
        }
        for ((topic, p), off) in last {
            consumer.applied(topic, p, off);
        }
    }
    match consumer.commit() {
        // Nothing consumed since the last commit: nothing to commit.
        Ok(())
        | Err(rdkafka::error::KafkaError::ConsumerCommit(
            rdkafka::error::RDKafkaErrorCode::NoOffset,
        )) => {}
        Err(e) => warn!(error = %e, "final offset commit failed"),
    }
}

/// Runs the agent without Kafka until SIGTERM or SIGINT: HTTP in, commands
/// as JSON lines on stdout, audit records to `audit.path` if set. There is
/// nothing to recover, so it is ready as soon as it listens.
pub fn run_local(config: Config) -> Result<(), RunError> {
    let config = Arc::new(config);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("rollbackd-io")
        .build()?;
    let metrics = Metrics::new();
    let (publisher, publisher_task) = sinks::stdout::spawn(rt.handle(), audit_file(&config)?);
    let agent = Agent::new(config.clone(), publisher, metrics, true);
    let http_task = start_http_and_signals(&rt, &agent)?;
    agent.ready.store(true, Ordering::Release);
    info!("rollbackd ready (no Kafka: HTTP in, commands on stdout)");
    while !agent.shutdown.load(Ordering::Acquire) {
        agent.tick();
        let ready = agent.publisher.state.can_emit();
        agent.ready.store(ready, Ordering::Release);
        thread::sleep(Duration::from_millis(200));
    }
    finish(
        &rt,
        agent,
        http_task,
        publisher_task,
        Instant::now() + GRACE,
    );
    Ok(())
}

/// Stops accepting HTTP, drains in-flight requests, then drops the last
/// publisher handle so the publisher flushes, all before `deadline`.
fn finish(
    rt: &tokio::runtime::Runtime,
    agent: Arc<Agent>,
    http_task: tokio::task::JoinHandle<()>,
    publisher_task: tokio::task::JoinHandle<()>,
    deadline: Instant,
) {
    rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(5), http_task).await;
    });
    let Agent { publisher, .. } = match Arc::try_unwrap(agent) {
        Ok(a) => a,
        Err(_) => {
            warn!("agent still shared at shutdown");
            return;
        }
    };
    drop(publisher);
    let remaining = deadline.saturating_duration_since(Instant::now());
    rt.block_on(async {
        if tokio::time::timeout(remaining, publisher_task)
            .await
            .is_err()
        {
            warn!("outputs not flushed within the grace period");
        }
    });
    info!("rollbackd stopped");
}

/// Binds the HTTP listener, serves it, and turns SIGTERM/SIGINT into the
/// shutdown flag.
fn start_http_and_signals(
    rt: &tokio::runtime::Runtime,
    agent: &Arc<Agent>,
) -> Result<tokio::task::JoinHandle<()>, RunError> {
    let addr = agent.config.http_listen;
    let listener = rt
        .block_on(crate::http::bind(addr))
        .map_err(|source| RunError::Listen { addr, source })?;
    let http_task = spawn_http(rt, agent, listener);
    let a = agent.clone();
    rt.spawn(async move {
        crate::shutdown::wait_for_signal().await;
        info!("shutdown requested");
        a.shutdown.store(true, Ordering::Release);
    });
    Ok(http_task)
}

fn spawn_http(
    rt: &tokio::runtime::Runtime,
    agent: &Arc<Agent>,
    listener: tokio::net::TcpListener,
) -> tokio::task::JoinHandle<()> {
    let agent = agent.clone();
    let stop = agent.clone();
    rt.spawn(async move {
        let shutdown = async move {
            while !stop.shutdown.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        if let Err(e) = crate::http::serve(listener, agent, shutdown).await {
            error!(error = %e, "http server failed");
        }
    })
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run_kafka(config: Config) -> Result<(), RunError> {
    let config = Arc::new(config);
    let k = config.kafka.clone().ok_or(crate::kafka::Error::NoKafka)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("rollbackd-io")
        .build()?;
    let producer = producer::producer(&k)?;
    let http_producer = producer.clone();
    let metrics = Metrics::new();
    let (publisher, publisher_task) = producer::spawn(
        rt.handle(),
        producer,
        config.topics.clone(),
        audit_file(&config)?,
    );
    let agent = Agent::new(config.clone(), publisher, metrics, false);
    let _ = agent.producer.set(http_producer);
    let http_task = start_http_and_signals(&rt, &agent)?;

    // A daemon waits for its broker (not ready meanwhile) rather than exit.
    while let Err(e) = crate::kafka::check_reachable(&k) {
        warn!(error = %e, "waiting for Kafka; retrying every 5 s");
        for _ in 0..50 {
            if agent.shutdown.load(Ordering::Acquire) {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
    // Recovery: guard state, then deploys, then results.
    let started = Instant::now();
    let mut control = ControlReader::new(&k)?;
    let t = &config.topics;
    for topic in [&t.commands, &t.admin, &t.deploy_events, &t.results] {
        let n = loop {
            match control.read_whole(topic, |rec| agent.apply_control(&rec, true)) {
                Ok(n) => break n,
                Err(e) => {
                    warn!(topic = %topic, error = %e, "recovery read failed; retrying");
                    if agent.shutdown.load(Ordering::Acquire) {
                        return Ok(());
                    }
                    thread::sleep(Duration::from_secs(1));
                }
            }
        };
        info!(topic = %topic, records = n, "recovered");
    }
    let control_topics = [
        t.commands.as_str(),
        t.admin.as_str(),
        t.deploy_events.as_str(),
        t.results.as_str(),
    ];
    control.follow(&control_topics)?;
    let telemetry = TelemetryConsumer::new(
        &k,
        &[&t.otlp_spans, &t.otlp_metrics],
        Duration::from_nanos(config.longest_window().nanos().max(0) as u64),
        agent.publisher.state.claim_slot.clone(),
    )?;
    info!(
        group = %k.group_id,
        topics = ?[&t.otlp_spans, &t.otlp_metrics],
        "waiting for telemetry partitions from the consumer group (the first join can take tens of seconds on some brokers); not ready until they are assigned and read back"
    );
    // Unknown until librdkafka's first statistics (every 5 s).
    agent.metrics.consumer_lag.set(-1);
    let telemetry_thread = {
        let agent = agent.clone();
        thread::Builder::new()
            .name("telemetry".into())
            .spawn(move || telemetry_loop(agent, telemetry))?
    };

    // The control loop runs on this thread.
    let mut last_tick = Instant::now();
    let mut last_check = Instant::now() - Duration::from_secs(10);
    let mut last_new_check = Instant::now();
    let mut broker_ok = true;
    while !agent.shutdown.load(Ordering::Acquire) {
        match control.poll(Duration::from_millis(50)) {
            Some(Ok(rec)) => agent.apply_control(&rec, false),
            Some(Err(e)) => warn!(error = %e, "control consumer error"),
            None => {}
        }
        if last_tick.elapsed() >= Duration::from_millis(200) {
            agent.tick();
            last_tick = Instant::now();
        }
        if last_check.elapsed() >= Duration::from_secs(2) {
            broker_ok = control.broker_reachable(&t.commands);
            last_check = Instant::now();
        }
        if last_new_check.elapsed() >= Duration::from_secs(10) {
            match control.follow_new(&control_topics) {
                Ok(0) => {}
                Ok(n) => info!(partitions = n, "following new control partitions"),
                Err(e) => warn!(error = %e, "looking for new control partitions failed"),
            }
            last_new_check = Instant::now();
        }
        let ready = agent.recovered.load(Ordering::Acquire)
            && broker_ok
            && agent.publisher.state.can_emit();
        if agent.ready.swap(ready, Ordering::AcqRel) != ready {
            if ready {
                info!(
                    after_ms = started.elapsed().as_millis() as u64,
                    "rollbackd ready"
                );
            } else {
                warn!(
                    broker_reachable = broker_ok,
                    brokers = %k.brokers,
                    can_emit = agent.publisher.state.can_emit(),
                    "rollbackd not ready"
                );
            }
        }
    }

    // Shutdown: stop fetching, let the telemetry thread finish its batch and
    // commit, then flush the producer.
    let deadline = Instant::now() + GRACE;
    if telemetry_thread.join().is_err() {
        error!("telemetry thread panicked");
    }
    drop(control);
    finish(&rt, agent, http_task, publisher_task, deadline);
    Ok(())
}

/// The command whose emission an audit record belongs to, if any: its
/// `command` record, or the `breaker` record of the breaker it opened.
fn emission_of(a: &crate::model::AuditRecord) -> Option<String> {
    match &a.event {
        AuditEvent::Command(c) => Some(c.command_id.clone()),
        AuditEvent::Breaker(crate::model::audit::BreakerAudit::Opened { by_command, .. }) => {
            by_command.clone()
        }
        _ => None,
    }
}
