//! `rollbackd run`: the two stages, their threads, recovery, readiness and
//! shutdown (`docs/guarantees.md#start-up-and-recovery`).
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
//! - `node`: `run` with Kafka, step by step: brokers, groups,
//!   producers, recovery, the threads, the stop.
//! - [`backend`]: where an input goes to be decided — [`backend::Local`]
//!   (this process) or [`backend::Kafka`] (the owners, the topics); the
//!   HTTP API ([`api`]) and the run loops never ask which.
//! - [`intake`]: stage 1, the raw telemetry in a consumer group; evidence
//!   keyed by (service, environment) to the partition that owns the key.
//! - [`owner`]: stage 2, the one thread that changes the engine: control
//!   topics, owned evidence (read back from `now − longest window` when a
//!   partition is newly assigned), ticks, calls from HTTP.
//! - [`emit`]: the owner's outputs — transactional when the broker allows.
//! - [`notify`]: the audit topic to the `[[notify]]` sinks (a third
//!   consumer group), so each event is notified once.
//! - [`api`]: what the HTTP routes can do ([`crate::http::Api`]).
//! - [`views`]: one view of the whole fleet — each owner publishes its
//!   deploys' views, every instance reads them all.
//! - [`local_exec`]: without Kafka, with executor templates or Git
//!   strategies, the commands executed in this process.
//! - [`failpoint`]: crash points for tests of recovery.
//! - [`shared`]: the engine behind one lock (a poisoned lock is fatal),
//!   metrics, readiness per stage, the cancellation token.
//!
//! Without Kafka both stages run in one process: HTTP inputs go to the
//! engine, which folds telemetry into evidence and applies it as the owner
//! of every key; commands go to stdout, and are executed here when the
//! config has `[executor]` templates or Git strategies ([`local_exec`]).
//!
//! Shutdown: SIGTERM or SIGINT cancels the token; the loops finish their
//! pass (intake sends what it gathered and commits), the HTTP server drains,
//! and the producers are flushed before exit, whatever HTTP is doing.

pub mod api;
pub mod backend;
pub mod emit;
pub mod failpoint;
pub mod intake;
pub mod local_exec;
mod node;
pub mod notify;
pub mod owner;
pub mod shared;
pub mod views;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::config::notify::ResolvedSink;
use crate::config::{Config, Secrets};
use crate::model::Input;
use crate::sinks::audit_file::AuditFile;
use crate::sinks::notify::Notifier;
use api::Handle;
use backend::Backend;
use emit::Emitter;
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
    config.check_run()?;
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
        Some(k) => node::run(&rt, config, k, listener, audit_file, secrets),
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
fn serve<B: Backend>(
    rt: &tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    handle: Arc<Handle<B>>,
) -> tokio::task::JoinHandle<()> {
    let cancel = handle.shared.cancel.clone();
    rt.spawn(async move {
        if let Err(e) = crate::http::serve(listener, handle, cancel.cancelled_owned()).await {
            error!(error = %e, "http server failed");
        }
    })
}

/// Without Kafka: HTTP in, both stages in this process, commands on stdout
/// (and executed here with executor templates or Git strategies).
fn run_local(
    rt: &tokio::runtime::Runtime,
    config: Arc<Config>,
    listener: tokio::net::TcpListener,
    audit_file: Option<AuditFile>,
    secrets: Secrets,
) -> Result<(), RunError> {
    let executes = config.executes_locally();
    let shared = Shared::new(config, instance_name(), &secrets);
    let notifier = notifier(&shared, secrets.sinks)?;
    watch_signals(rt, &shared);
    let (queue, commands) = local_exec::queue();
    let emitter = Emitter::stdout(
        shared.clone(),
        audit_file,
        notifier.clone(),
        executes.then_some(queue),
    );
    let handle = Arc::new(Handle {
        shared: shared.clone(),
        backend: backend::Local {
            shared: shared.clone(),
            emitter: std::sync::Mutex::new(emitter),
        },
    });
    let executor = match executes {
        false => None,
        true => {
            let h = handle.clone();
            let feed = move |r| {
                h.backend.apply_now(Input::Result(r));
            };
            let (config, cancel) = (shared.config.clone(), shared.cancel.clone());
            let path = config.audit.path.clone();
            let started = local_exec::start(config, commands, feed, cancel);
            Some(started.map_err(|source| RunError::AuditFile { path, source })?)
        }
    };
    let http = serve(rt, listener, handle.clone());
    shared.readiness.all();
    match executes {
        true => info!("rollbackd ready (no Kafka: HTTP in, commands on stdout and executed here)"),
        false => info!("rollbackd ready (no Kafka: HTTP in, commands on stdout)"),
    }
    while !shared.cancel.is_cancelled() {
        handle.backend.apply_now(Input::Tick);
        thread::sleep(Duration::from_millis(200));
    }
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), http).await });
    // The command in hand finishes and its result is recorded.
    if let Some(t) = executor {
        let _ = t.join();
    }
    if let Some(n) = notifier {
        n.stop(notify::STOP_GRACE);
        // The audit records of notifications that failed meanwhile.
        handle.backend.apply_now(Input::Tick);
    }
    info!("rollbackd stopped");
    Ok(())
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
