//! `run` with Kafka: one instance of a fleet, step by step — wait for the
//! brokers, join the owner and intake groups, build the owner's producer (probing
//! transactions) and the evidence sender, recover from the control topics,
//! start stage 1 (intake), the views reader and the notifier, serve HTTP,
//! run stage 2 (the owner) on this thread until stopped, then stop the
//! rest in order.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::api::Handle;
use super::emit::{Batch, Emitter, KafkaSink};
use super::shared::Shared;
use super::{backend, intake, notify, owner, views, RunError, GRACE};
use crate::config::{Config, KafkaConfig, Secrets, Topics, Transactions};
use crate::kafka::consumer::ControlReader;
use crate::kafka::group::{Group, GroupSpec, Start};
use crate::kafka::producer::Producer;
use crate::model::evidence::Ownership;
use crate::model::Input;
use crate::sinks::audit_file::AuditFile;
use crate::sinks::notify::Notifier;

/// What every step needs: the instance, its config, its clock of start.
struct Node<'a> {
    rt: &'a tokio::runtime::Runtime,
    shared: Arc<Shared>,
    k: KafkaConfig,
    t: Topics,
    /// The stable id (`kafka.instance_id_env`), if set.
    id: Option<String>,
    /// The id, or the host's name.
    name: String,
    /// How far back a newly assigned partition is read.
    lookback: Duration,
    started: Instant,
}

/// Control records read per topic and partition: the next offset to
/// apply (HTTP's deploy events wait for theirs).
type ControlNext = Arc<dashmap::DashMap<(String, i32), i64>>;

/// Runs this instance until stopped.
pub(super) fn run(
    rt: &tokio::runtime::Runtime,
    config: Arc<Config>,
    k: KafkaConfig,
    listener: tokio::net::TcpListener,
    audit_file: Option<AuditFile>,
    secrets: Secrets,
) -> Result<(), RunError> {
    let id = instance_id(&k);
    let name = id.clone().unwrap_or_else(super::instance_name);
    let shared = Shared::new(config.clone(), name.clone(), &secrets);
    let notifier = super::notifier(&shared, secrets.sinks)?;
    super::watch_signals(rt, &shared);
    if !wait_for_brokers(rt, &shared, &k, &listener) {
        return Ok(());
    }
    shared.readiness.broker.store(true, Ordering::Release);
    let node = Node {
        rt,
        shared,
        t: config.topics.clone(),
        lookback: Duration::from_nanos(config.longest_window().nanos().max(0) as u64),
        k,
        id,
        name,
        started: Instant::now(),
    };
    // Both groups are joined first, together: each instance of a fleet
    // started at once asks to join at once, whatever its recovery takes,
    // so the groups form in one rebalance rather than one per latecomer
    // (a broker holds each join for a while to gather the members).
    let (group, partitions) = node.owner_group()?;
    let raw = node.intake_group()?;
    let mut emitter = node.emitter(&group, audit_file, notifier.clone())?;
    let sender = node.sender(partitions, emitter.transactional())?;
    let Some((control, control_next)) = node.recover(&sender, &mut emitter)? else {
        return Ok(());
    };
    let intake = node.start_intake(raw, &sender, emitter.transactional())?;
    let mut others = vec![("views", node.start_views()?)];
    if let Some(n) = notifier {
        others.push(("notify", node.start_notify(n)?));
    }
    let (calls_tx, calls) = mpsc::channel(256);
    let handle = Arc::new(Handle {
        shared: node.shared.clone(),
        backend: backend::Kafka {
            shared: node.shared.clone(),
            sender: sender.clone(),
            calls: calls_tx,
            control_next: control_next.clone(),
        },
    });
    let http = super::serve(rt, listener, handle);
    let ready_logger = node.log_readiness();
    let owner = owner::Owner {
        shared: node.shared.clone(),
        control,
        group,
        emitter,
        calls,
        control_next,
        partitions,
        sender,
        views: Default::default(),
    };
    let owned = owner.run();
    node.stop(owned, intake, others, http, ready_logger)
}

impl Node<'_> {
    /// Stage 2's consumer group on the evidence topic, and the topic's
    /// partition count (keys are routed by it).
    fn owner_group(&self) -> Result<(Group, u32), RunError> {
        let group = Group::new(
            &self.k,
            &GroupSpec {
                name: "owner",
                group_id: &format!("{}-owners", self.k.group_id),
                topics: &[&self.t.evidence],
                start: Start::Rewind,
                lookback: self.lookback,
                instance_id: self.id.as_deref(),
                auto_commit: false,
            },
        )?;
        let partitions = group.partitions(&self.t.evidence)?;
        if partitions == 0 {
            return Err(RunError::NoEvidenceTopic(self.t.evidence.clone()));
        }
        self.shared.apply(Input::Own(Ownership::Partitions {
            count: partitions,
            owned: Default::default(),
            reading: Default::default(),
        }));
        Ok((group, partitions))
    }

    /// The owner's outputs: transactional (with this instance's
    /// transactional id) when the broker keeps transactions.
    fn emitter(
        &self,
        group: &Group,
        audit_file: Option<AuditFile>,
        notifier: Option<Arc<Notifier>>,
    ) -> Result<Emitter, RunError> {
        let unique = self
            .id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.name, std::process::id()));
        let transactional_id = format!("{}-owner-{unique}", self.k.group_id);
        // The probe waits for the owner group's join: only when it is
        // asked for.
        let probe = (self.k.transactions != Transactions::Off)
            .then(|| group.group_metadata())
            .flatten()
            .map(|g| (g, group.committed_or_zero(&self.t.evidence, 0)));
        let sink = KafkaSink::new(
            &self.k,
            &self.t,
            &transactional_id,
            self.rt.handle().clone(),
            probe,
            rebuilds(&self.shared, "owner"),
            self.shared.cancel.clone(),
        )?;
        Ok(Emitter::kafka(
            self.shared.clone(),
            sink,
            audit_file,
            notifier,
        ))
    }

    /// Evidence, dead letters, and what HTTP hands to the owners.
    fn sender(&self, partitions: u32, transactional: bool) -> Result<intake::Sender, RunError> {
        let config = crate::kafka::client_config(
            &self.k,
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("linger.ms", "2"),
                ("compression.type", "zstd"),
            ],
        );
        Ok(intake::Sender {
            producer: Producer::create(
                "evidence",
                config,
                rebuilds(&self.shared, "evidence"),
                self.shared.cancel.clone(),
            )?,
            shared: self.shared.clone(),
            rt: self.rt.handle().clone(),
            partitions,
            transactional,
            fenced: Default::default(),
        })
    }

    /// Recovery: guard state (the commands topic), then admin actions,
    /// deploys and results, each read whole; then followed. `None` when
    /// stopped meanwhile.
    fn recover(
        &self,
        sender: &intake::Sender,
        emitter: &mut Emitter,
    ) -> Result<Option<(ControlReader, ControlNext)>, RunError> {
        let t = &self.t;
        let mut control = ControlReader::new(&self.k)?;
        let control_next: ControlNext = Arc::new(dashmap::DashMap::new());
        let mut recovered = Vec::new();
        for topic in [&t.commands, &t.admin, &t.deploy_events, &t.results] {
            let n = loop {
                let read = control.read_whole(topic, |rec| {
                    control_next.insert((rec.topic.clone(), rec.partition), rec.offset + 1);
                    recovered.extend(owner::control_record(&self.shared, sender, &rec, true));
                });
                match read {
                    Ok(n) => break n,
                    Err(e) => {
                        warn!(topic = %topic, error = %e, "recovery read failed; retrying");
                        if self.shared.cancel.is_cancelled() {
                            return Ok(None);
                        }
                        thread::sleep(Duration::from_secs(1));
                    }
                }
            };
            info!(topic = %topic, records = n, "recovered");
        }
        control.follow(&[
            t.commands.as_str(),
            t.admin.as_str(),
            t.deploy_events.as_str(),
            t.results.as_str(),
        ])?;
        let batch = Batch {
            outputs: recovered,
            offsets: None,
            consumed_at: None,
        };
        if let Err(e) = emitter.publish(batch) {
            warn!(error = %e, "publishing what recovery decided failed");
        }
        self.shared.readiness.control.store(true, Ordering::Release);
        info!(
            after_ms = self.started.elapsed().as_millis() as u64,
            "control topics read"
        );
        Ok(Some((control, control_next)))
    }

    /// Stage 1's consumer group on the raw telemetry topics: joined at
    /// start, polled (and its partitions taken) once intake runs.
    fn intake_group(&self) -> Result<Group, RunError> {
        Ok(Group::new(
            &self.k,
            &GroupSpec {
                name: "intake",
                group_id: &self.k.group_id,
                topics: &[&self.t.otlp_spans, &self.t.otlp_metrics],
                start: Start::Committed,
                lookback: self.lookback,
                instance_id: self.id.as_deref(),
                auto_commit: true,
            },
        )?)
    }

    /// Stage 1 on its own thread: the raw telemetry topics in the intake
    /// group.
    fn start_intake(
        &self,
        raw: Group,
        sender: &intake::Sender,
        transactional: bool,
    ) -> Result<JoinHandle<Result<(), RunError>>, RunError> {
        let k = &self.k;
        info!(
            group = %k.group_id,
            owner_group = %format!("{}-owners", k.group_id),
            instance = %self.name,
            transactional,
            "waiting for partitions from the consumer groups (the first join can take tens of seconds on some brokers); not ready until the owned evidence is read back"
        );
        let flush = Duration::from_nanos(k.evidence_flush.nanos().max(1) as u64);
        let (shared, sender) = (self.shared.clone(), sender.clone());
        Ok(thread::Builder::new()
            .name("intake".into())
            .spawn(move || intake::run(shared, raw, sender, flush))?)
    }

    /// The audit topic to the `[[notify]]` sinks, on its own thread.
    fn start_notify(
        &self,
        notifier: Arc<Notifier>,
    ) -> Result<JoinHandle<Result<(), RunError>>, RunError> {
        let group = notify::group(&self.k, &self.t.audit, self.id.as_deref())?;
        let shared = self.shared.clone();
        Ok(thread::Builder::new()
            .name("notify".into())
            .spawn(move || notify::run(shared, group, notifier))?)
    }

    /// The views topic read whole, then followed, into the fleet's views,
    /// on its own thread.
    fn start_views(&self) -> Result<JoinHandle<Result<(), RunError>>, RunError> {
        let reader = ControlReader::new(&self.k)?;
        let shared = self.shared.clone();
        Ok(thread::Builder::new()
            .name("views".into())
            .spawn(move || views::read(shared, reader))?)
    }

    /// Logs each change of readiness, and why it is not ready.
    fn log_readiness(&self) -> tokio::task::JoinHandle<()> {
        let shared = self.shared.clone();
        let started = self.started;
        self.rt.spawn(async move {
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
    }

    /// After the owner returned (stopped, or failed): stops intake and the
    /// notifier, drains HTTP within the grace period; the first error.
    fn stop(
        &self,
        owned: Result<(), RunError>,
        intake: JoinHandle<Result<(), RunError>>,
        others: Vec<(&str, JoinHandle<Result<(), RunError>>)>,
        http: tokio::task::JoinHandle<()>,
        ready_logger: tokio::task::JoinHandle<()>,
    ) -> Result<(), RunError> {
        self.shared.cancel.cancel();
        let deadline = Instant::now() + GRACE;
        let joined = |t: JoinHandle<Result<(), RunError>>, name: &str| {
            t.join().unwrap_or_else(|_| {
                error!(thread = name, "thread panicked");
                Ok(())
            })
        };
        let mut result = owned.and(joined(intake, "intake"));
        for (name, t) in others {
            result = result.and(joined(t, name));
        }
        self.rt.block_on(async {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(left.min(Duration::from_secs(5)), http).await;
            ready_logger.abort();
        });
        match &result {
            Ok(()) => info!("rollbackd stopped"),
            Err(e) => error!(error = %e, "rollbackd stopped"),
        }
        result
    }
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
