//! `rollbackd run`: the two stages, their threads, recovery, readiness and
//! shutdown (CONTRACT §5).
//!
//! With Kafka, on every instance:
//!
//! ```text
//!  otlp_spans, otlp_metrics ──► intake thread ──────────────► rollbackd-evidence ──► owner thread ──► rollback-commands
//!  (group kafka.group_id)       decode on every core,        key = service NUL env     (group …-owners)   rollbackd-audit
//!                               fold into evidence (stage 1)                           apply, tick, decide (stage 2);
//!  HTTP: OTLP, alerts ─────────► fold ─────────────────────────┘                       one transaction a pass:
//!  HTTP: manual rollback ──────► evidence for the owner ───────┘                       outputs + evidence offsets
//!  control topics (read whole: deploy events, commands, results, admin) ─────────────► owner thread
//! ```
//!
//! - [`intake`]: stage 1, the raw telemetry in a consumer group; evidence
//!   keyed by (service, environment) to the partition that owns the key.
//! - [`owner`]: stage 2, the one thread that changes the engine: control
//!   topics, owned evidence (read back from `now − longest window` when a
//!   partition is newly assigned), ticks, calls from HTTP.
//! - [`emit`]: the owner's outputs — transactional when the broker allows.
//! - [`notify`]: the audit topic to the `[[notify]]` sinks (a third
//!   consumer group), so each event is notified once.
//! - [`api`]: what the HTTP routes can do ([`crate::http::Api`]).
//! - [`failpoint`]: crash points for tests of recovery.
//! - [`shared`]: the engine behind one lock (a poisoned lock is fatal),
//!   metrics, readiness per stage, the cancellation token.
//!
//! Without Kafka both stages run in one process: HTTP inputs go to the
//! engine, which folds telemetry into evidence and applies it as the owner
//! of every key; commands go to stdout.
//!
//! Shutdown: SIGTERM or SIGINT cancels the token; the loops finish their
//! pass (intake sends what it gathered and commits), the HTTP server drains,
//! and the producers are flushed before exit, whatever HTTP is doing.

pub mod api;
pub mod emit;
pub mod failpoint;
pub mod intake;
pub mod notify;
pub mod owner;
pub mod shared;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::config::notify::ResolvedSink;
use crate::config::{Config, KafkaConfig, Secrets};
use crate::kafka::consumer::ControlReader;
use crate::kafka::group::{Group, GroupSpec, Start};
use crate::kafka::producer::Producer;
use crate::model::evidence::Ownership;
use crate::model::Input;
use crate::sinks::audit_file::AuditFile;
use crate::sinks::notify::Notifier;
use api::{Backend, Handle};
use emit::{Batch, Emitter, KafkaSink};
use shared::Shared;

/// How long shutdown may take before the process exits anyway.
const GRACE: Duration = Duration::from_secs(20);

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
    #[error("topic {0} does not exist or has no partitions (topics.evidence): create it before starting")]
    NoEvidenceTopic(String),
    /// Keys are routed by the evidence topic's partition count: instances
    /// that disagree on it would route a key to two owners.
    #[error("the evidence topic {topic} now has {now} partitions, not {was}: restarting so that every instance routes keys the same way")]
    EvidencePartitionsChanged { topic: String, was: u32, now: u32 },
    #[error("{0}")]
    Fenced(String),
    /// An env var the config names is missing or wrong (a token, a
    /// `[[notify]]` sink's URL or secret).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs the agent until SIGTERM or SIGINT: with Kafka when the config has
/// a `[kafka]` table, else HTTP only.
pub fn run(config: Config) -> Result<(), RunError> {
    // Tokens, the sinks' URLs and secrets, from the environment, before
    // anything.
    let secrets = config.secrets()?;
    if secrets.webhook_token.is_none() {
        warn!(
            env = %config.http.webhook_token_env,
            listen = %config.http_listen,
            "webhook routes are open to anyone who reaches the listener (http.allow_unauthenticated = true): {}",
            crate::config::WEBHOOK_ROUTES
        );
    }
    let config = Arc::new(config);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("rollbackd-io")
        .build()?;
    let audit_file = match config.audit.path.as_str() {
        "" => None,
        path => Some(AuditFile::open(path).map_err(|source| RunError::AuditFile {
            path: path.to_string(),
            source,
        })?),
    };
    let addr = config.http_listen;
    let listener = rt
        .block_on(crate::http::bind(addr))
        .map_err(|source| RunError::Listen { addr, source })?;
    let result = match config.kafka.clone() {
        Some(k) => run_kafka(&rt, config, k, listener, audit_file, secrets),
        None => run_local(&rt, config, listener, audit_file, secrets),
    };
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The `[[notify]]` sinks started; `None` without sinks.
fn notifier(shared: &Shared, sinks: Vec<ResolvedSink>) -> Result<Option<Arc<Notifier>>, RunError> {
    Ok(Notifier::start(
        sinks,
        &shared.config.http.admin_token_env,
        shared.metrics.notify.clone(),
    )?)
}

/// Cancels `shared` at SIGTERM or SIGINT.
fn watch_signals(rt: &tokio::runtime::Runtime, shared: &Arc<Shared>) {
    let cancel = shared.cancel.clone();
    rt.spawn(async move {
        tokio::select! {
            _ = crate::shutdown::wait_for_signal() => info!("shutdown requested"),
            _ = cancel.cancelled() => {}
        }
        cancel.cancel();
    });
}

/// Serves HTTP until cancelled.
fn serve(
    rt: &tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    handle: Arc<Handle>,
) -> tokio::task::JoinHandle<()> {
    let cancel = handle.shared.cancel.clone();
    rt.spawn(async move {
        if let Err(e) = crate::http::serve(listener, handle, cancel.cancelled_owned()).await {
            error!(error = %e, "http server failed");
        }
    })
}

/// Without Kafka: HTTP in, both stages in this process, commands on stdout.
fn run_local(
    rt: &tokio::runtime::Runtime,
    config: Arc<Config>,
    listener: tokio::net::TcpListener,
    audit_file: Option<AuditFile>,
    secrets: Secrets,
) -> Result<(), RunError> {
    let shared = Shared::new(config, instance_name(), &secrets);
    let notifier = notifier(&shared, secrets.sinks)?;
    watch_signals(rt, &shared);
    let emitter = Arc::new(std::sync::Mutex::new(Emitter::stdout(
        shared.clone(),
        audit_file,
        notifier.clone(),
    )));
    let handle = Arc::new(Handle {
        shared: shared.clone(),
        backend: Backend::Local {
            emitter: emitter.clone(),
        },
    });
    let http = serve(rt, listener, handle.clone());
    shared.readiness.all();
    info!("rollbackd ready (no Kafka: HTTP in, commands on stdout)");
    while !shared.cancel.is_cancelled() {
        handle.local(Input::Tick);
        thread::sleep(Duration::from_millis(200));
    }
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), http).await });
    if let Some(n) = notifier {
        n.stop(notify::STOP_GRACE);
        // The audit records of notifications that failed meanwhile.
        handle.local(Input::Tick);
    }
    info!("rollbackd stopped");
    Ok(())
}

/// The counter of `client`'s rebuilds, shown from the start (at 0).
fn rebuilds(shared: &Shared, client: &str) -> prometheus::IntCounter {
    shared
        .metrics
        .kafka_client_rebuilds
        .with_label_values(&[client])
}

/// This instance's stable id (static membership, the transactional id):
/// the value of the env var `kafka.instance_id_env` names, if set.
fn instance_id(k: &KafkaConfig) -> Option<String> {
    if k.instance_id_env.is_empty() {
        return None;
    }
    std::env::var(&k.instance_id_env)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The host's name (the pod's in Kubernetes), for logs and records.
pub fn instance_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "rollbackd".into())
}

/// A daemon waits for its brokers rather than exit: said once in the log,
/// and meanwhile the listener answers `/readyz` and the status page with
/// what it waits for. False when stopped while waiting.
fn wait_for_brokers(
    rt: &tokio::runtime::Runtime,
    shared: &Arc<Shared>,
    k: &KafkaConfig,
    listener: &tokio::net::TcpListener,
) -> bool {
    let Err(first) = crate::kafka::check_reachable(k) else {
        return true;
    };
    let started = std::time::Instant::now();
    warn!(error = %first.error, brokers = %first.brokers, "waiting for Kafka (kafka.brokers): not ready until it answers; /readyz says why meanwhile");
    let why = Arc::new(std::sync::Mutex::new(first.to_string()));
    let stop = tokio_util::sync::CancellationToken::new();
    let server = {
        let why = why.clone();
        let router = crate::http::waiting_router(Arc::new(move || {
            format!(
                "waiting for Kafka: {}",
                why.lock().unwrap_or_else(|p| p.into_inner())
            )
        }));
        let serving = crate::http::serve_while(listener, router, stop.clone().cancelled_owned());
        rt.spawn(async move {
            if let Err(e) = async { serving?.await }.await {
                warn!(error = %e, "http server failed while waiting for Kafka");
            }
        })
    };
    let reached = loop {
        let stopped = rt.block_on(async {
            tokio::select! {
                _ = shared.cancel.cancelled() => true,
                _ = tokio::time::sleep(Duration::from_secs(5)) => false,
            }
        });
        if stopped {
            break false;
        }
        match crate::kafka::check_reachable(k) {
            Ok(()) => break true,
            Err(e) => *why.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string(),
        }
    };
    stop.cancel();
    let _ = rt.block_on(server);
    if reached {
        info!(
            after_s = started.elapsed().as_secs(),
            brokers = %k.brokers,
            "Kafka answers"
        );
    }
    reached
}

fn run_kafka(
    rt: &tokio::runtime::Runtime,
    config: Arc<Config>,
    k: KafkaConfig,
    listener: tokio::net::TcpListener,
    audit_file: Option<AuditFile>,
    secrets: Secrets,
) -> Result<(), RunError> {
    let id = instance_id(&k);
    let name = id.clone().unwrap_or_else(instance_name);
    let shared = Shared::new(config.clone(), name.clone(), &secrets);
    let notifier = notifier(&shared, secrets.sinks)?;
    watch_signals(rt, &shared);
    let t = config.topics.clone();
    if !wait_for_brokers(rt, &shared, &k, &listener) {
        return Ok(());
    }
    shared.readiness.broker.store(true, Ordering::Release);
    let lookback = Duration::from_nanos(config.longest_window().nanos().max(0) as u64);
    let owner_group = format!("{}-owners", k.group_id);
    let group = Group::new(
        &k,
        &GroupSpec {
            name: "owner",
            group_id: &owner_group,
            topics: &[&t.evidence],
            start: Start::Rewind,
            lookback,
            instance_id: id.as_deref(),
            auto_commit: false,
        },
    )?;
    let partitions = group.partitions(&t.evidence)?;
    if partitions == 0 {
        return Err(RunError::NoEvidenceTopic(t.evidence.clone()));
    }
    shared.apply(Input::Own(Ownership::Partitions {
        count: partitions,
        owned: Default::default(),
        reading: Default::default(),
    }));
    let transactional_id = format!(
        "{}-owner-{}",
        k.group_id,
        id.clone()
            .unwrap_or_else(|| format!("{name}-{}", std::process::id()))
    );
    let probe = group
        .group_metadata()
        .map(|g| (g, group.committed_or_zero(&t.evidence, 0)));
    let sink = KafkaSink::new(
        &k,
        &t,
        &transactional_id,
        rt.handle().clone(),
        probe,
        rebuilds(&shared, "owner"),
        shared.cancel.clone(),
    )?;
    let mut emitter = Emitter::kafka(shared.clone(), sink, audit_file, notifier.clone());

    // Evidence, dead letters, and what HTTP hands to the owners.
    let sender = intake::Sender {
        producer: Producer::create(
            "evidence",
            crate::kafka::client_config(
                &k,
                &[
                    ("enable.idempotence", "true"),
                    ("acks", "all"),
                    ("linger.ms", "2"),
                    ("compression.type", "zstd"),
                ],
            ),
            rebuilds(&shared, "evidence"),
            shared.cancel.clone(),
        )?,
        shared: shared.clone(),
        rt: rt.handle().clone(),
        partitions,
        transactional: emitter.transactional(),
        fenced: Default::default(),
    };
    // Recovery: guard state, then admin actions, deploys, results.
    let started = std::time::Instant::now();
    let mut control = ControlReader::new(&k)?;
    let control_next = Arc::new(dashmap::DashMap::new());
    let mut recovered = Vec::new();
    for topic in [&t.commands, &t.admin, &t.deploy_events, &t.results] {
        let n = loop {
            let read = control.read_whole(topic, |rec| {
                control_next.insert((rec.topic.clone(), rec.partition), rec.offset + 1);
                recovered.extend(owner::control_record(&shared, &sender, &rec, true));
            });
            match read {
                Ok(n) => break n,
                Err(e) => {
                    warn!(topic = %topic, error = %e, "recovery read failed; retrying");
                    if shared.cancel.is_cancelled() {
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
    if let Err(e) = emitter.publish(Batch {
        outputs: recovered,
        offsets: None,
        consumed_at: None,
    }) {
        warn!(error = %e, "publishing what recovery decided failed");
    }
    shared.readiness.control.store(true, Ordering::Release);
    info!(
        after_ms = started.elapsed().as_millis() as u64,
        "control topics read"
    );

    // Stage 1.
    let raw = Group::new(
        &k,
        &GroupSpec {
            name: "intake",
            group_id: &k.group_id,
            topics: &[&t.otlp_spans, &t.otlp_metrics],
            start: Start::Committed,
            lookback,
            instance_id: id.as_deref(),
            auto_commit: true,
        },
    )?;
    info!(
        group = %k.group_id,
        owner_group = %owner_group,
        instance = %name,
        transactional = emitter.transactional(),
        "waiting for partitions from the consumer groups (the first join can take tens of seconds on some brokers); not ready until the owned evidence is read back"
    );
    let flush = Duration::from_nanos(k.evidence_flush.nanos().max(1) as u64);
    let intake_thread = {
        let (shared, sender) = (shared.clone(), sender.clone());
        thread::Builder::new()
            .name("intake".into())
            .spawn(move || intake::run(shared, raw, sender, flush))?
    };

    let notify_thread = match notifier {
        Some(n) => {
            let group = notify::group(&k, &t.audit, id.as_deref())?;
            let shared = shared.clone();
            Some(
                thread::Builder::new()
                    .name("notify".into())
                    .spawn(move || notify::run(shared, group, n))?,
            )
        }
        None => None,
    };

    // HTTP, then stage 2 on this thread.
    let sender_for_owner = sender.clone();
    let (calls_tx, calls) = mpsc::channel(256);
    let handle = Arc::new(Handle {
        shared: shared.clone(),
        backend: Backend::Kafka {
            sender,
            calls: calls_tx,
            control_next: control_next.clone(),
        },
    });
    let http = serve(rt, listener, handle);
    let ready_logger = {
        let shared = shared.clone();
        rt.spawn(async move {
            let mut was = false;
            loop {
                let ready = shared.readiness.not_ready();
                if ready.is_none() != was {
                    was = ready.is_none();
                    match ready {
                        None => info!(
                            after_ms = started.elapsed().as_millis() as u64,
                            "rollbackd ready"
                        ),
                        Some(why) => warn!(waiting_for = %why, "rollbackd not ready"),
                    }
                }
                tokio::select! {
                    _ = shared.cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        })
    };
    let owner = owner::Owner {
        shared: shared.clone(),
        control,
        group,
        emitter,
        calls,
        control_next,
        partitions,
        sender: sender_for_owner,
    };
    let owned = owner.run();
    shared.cancel.cancel();
    let deadline = std::time::Instant::now() + GRACE;
    let intake = intake_thread.join().unwrap_or_else(|_| {
        error!("intake thread panicked");
        Ok(())
    });
    let notified = notify_thread.map_or(Ok(()), |t| {
        t.join().unwrap_or_else(|_| {
            error!("notify thread panicked");
            Ok(())
        })
    });
    let result = owned.and(intake).and(notified);
    rt.block_on(async {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let _ = tokio::time::timeout(left.min(Duration::from_secs(5)), http).await;
        ready_logger.abort();
    });
    match &result {
        Ok(()) => info!("rollbackd stopped"),
        Err(e) => error!(error = %e, "rollbackd stopped"),
    }
    result
}
