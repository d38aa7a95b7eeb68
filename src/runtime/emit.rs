//! Where the owner's outputs go, and the one place they are counted.
//!
//! With Kafka: commands to `rollback-commands` (key = service, header
//! `command_id`) and audit records to `rollbackd-audit`, through one
//! producer. With transactions, a batch — the outputs of one pass of the
//! owner loop — and the evidence offsets it consumed are committed in one
//! transaction (KIP-447: the offsets go with the consumer's group
//! metadata): all of it or none of it is seen by `read_committed` readers,
//! and an instance whose transactional id was taken over by a newer one is
//! fenced — it can never publish again and stops. Without transactions the
//! batch is produced idempotently and acknowledged, then the offsets are
//! committed.
//!
//! Without Kafka: commands as JSON lines on stdout (flushed one by one:
//! someone may be piping them to an executor), and offered to the
//! executor in this process when there is one (`super::local_exec`).
//!
//! Either way audit records are also appended to `audit.path` when set,
//! and a batch is counted in the metrics only once it is out. With
//! `[[notify]]` sinks, the audit records of notifications that failed or
//! were dropped join the next batch; without Kafka a batch's audit records
//! are offered to the notifier once out (with Kafka the notify consumer
//! reads them from the audit topic: `super::notify`).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::TopicPartitionList;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::local_exec::Queue;
use super::shared::Shared;
use crate::config::{KafkaConfig, Topics, Transactions};
use crate::kafka::producer::{Client, Failure, OutRecord, Producer};
use crate::model::{AuditRecord, Command, Output};
use crate::sinks::audit_file::AuditFile;
use crate::sinks::notify::Notifier;
use crate::time::Timestamp;

/// Why a batch could not be published.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// Another instance took this instance's transactional id (it was
    /// restarted while this one was frozen): this one must stop.
    #[error("fenced: a newer instance holds this transactional id ({0})")]
    Fenced(String),
    /// Stopping while the batch was still being retried.
    #[error("stopped before the batch was published")]
    Stopped,
    /// The producer's client is dead for good: a new one is built and
    /// the batch sent again on it.
    #[error("fatal error of the kafka client: {0}")]
    Fatal(KafkaError),
    #[error("{0}")]
    Kafka(#[from] KafkaError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The evidence offsets a batch consumed: committed with it.
pub struct Offsets<'a> {
    pub next: &'a TopicPartitionList,
    pub group: Option<ConsumerGroupMetadata>,
    /// Without transactions: commits them once the outputs are acknowledged.
    pub commit: &'a dyn Fn(&TopicPartitionList) -> Result<(), KafkaError>,
}

/// One batch to publish.
pub struct Batch<'a> {
    pub outputs: Vec<Output>,
    pub offsets: Option<Offsets<'a>>,
    /// When the oldest raw record behind this batch's evidence was
    /// consumed (wall time, by whichever instance's intake), for the
    /// decision latency.
    pub consumed_at: Option<Timestamp>,
}

/// Where a batch of outputs goes: the topics ([`KafkaSink`]) or stdout
/// ([`Stdout`]). The emitter around it does the rest the same way.
pub trait Sink: Send {
    /// Publishes the batch (with the evidence offsets it consumed, where
    /// they are committed with it); returns once it is out.
    fn publish(
        &self,
        shared: &Shared,
        outputs: &[&Output],
        offsets: Option<&Offsets<'_>>,
        issued: Timestamp,
    ) -> Result<(), EmitError>;

    /// Whether a batch and its offsets commit together.
    fn transactional(&self) -> bool {
        false
    }

    /// Whether published audit records are offered to the notifier here
    /// (with Kafka the notify consumer reads them from the audit topic).
    fn notifies(&self) -> bool;

    /// Flushes what is in flight (at shutdown).
    fn flush(&self) {}
}

/// Commands as JSON lines on stdout, each flushed: someone may be piping
/// them to an executor. Each printed is offered to `execute` as well, when
/// this process executes them.
pub struct Stdout {
    pub execute: Option<Queue>,
}

impl Sink for Stdout {
    fn publish(
        &self,
        _shared: &Shared,
        outputs: &[&Output],
        _offsets: Option<&Offsets<'_>>,
        issued: Timestamp,
    ) -> Result<(), EmitError> {
        let mut out = std::io::stdout().lock();
        for o in outputs {
            if let Output::Command(c) = o {
                let mut c = c.clone();
                c.issued_at = issued;
                serde_json::to_writer(&mut out, &c).map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
                out.flush()?;
                if let Some(q) = &self.execute {
                    q.offer(&c);
                }
            }
        }
        Ok(())
    }

    fn notifies(&self) -> bool {
        true
    }
}

pub struct Emitter {
    sink: Box<dyn Sink>,
    audit_file: Option<AuditFile>,
    notifier: Option<Arc<Notifier>>,
    shared: Arc<Shared>,
}

pub struct KafkaSink {
    /// Rebuilt after a fatal error (a transactional one initialised
    /// again): never a retry loop around a dead client.
    producer: Producer,
    topics: Topics,
    rt: tokio::runtime::Handle,
}

impl Emitter {
    pub fn stdout(
        shared: Arc<Shared>,
        audit_file: Option<AuditFile>,
        notifier: Option<Arc<Notifier>>,
        execute: Option<Queue>,
    ) -> Emitter {
        Emitter {
            sink: Box::new(Stdout { execute }),
            audit_file,
            notifier,
            shared,
        }
    }

    pub fn kafka(
        shared: Arc<Shared>,
        sink: KafkaSink,
        audit_file: Option<AuditFile>,
        notifier: Option<Arc<Notifier>>,
    ) -> Emitter {
        shared
            .readiness
            .emit
            .store(true, std::sync::atomic::Ordering::Release);
        Emitter {
            sink: Box::new(sink),
            audit_file,
            notifier,
            shared,
        }
    }

    pub fn transactional(&self) -> bool {
        self.sink.transactional()
    }

    /// Publishes a batch: with Kafka, retried until it is out (or the
    /// instance is fenced or stops).
    pub fn publish(&mut self, mut batch: Batch<'_>) -> Result<(), EmitError> {
        if let Some(n) = &self.notifier {
            batch
                .outputs
                .extend(n.take_audits().into_iter().map(Output::Audit));
        }
        let has_offsets = batch.offsets.as_ref().is_some_and(|o| o.next.count() > 0);
        let outputs: Vec<&Output> = batch.outputs.iter().filter(|o| o.is_published()).collect();
        if outputs.is_empty() && !has_offsets {
            return Ok(());
        }
        let issued = Timestamp::now_wall();
        self.sink
            .publish(&self.shared, &outputs, batch.offsets.as_ref(), issued)?;
        self.done(&outputs, batch.consumed_at);
        Ok(())
    }

    /// A batch is out: the audit file, the metrics, the recent audit.
    fn done(&mut self, outputs: &[&Output], consumed_at: Option<Timestamp>) {
        let m = &self.shared.metrics;
        let audits: Vec<AuditRecord> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Audit(a) => Some(a.clone()),
                _ => None,
            })
            .collect();
        if let Some(f) = self.audit_file.as_mut() {
            for a in &audits {
                f.write(a);
            }
        }
        m.count_audits(audits.iter());
        if let (true, Some(n)) = (self.sink.notifies(), &self.notifier) {
            for a in &audits {
                if let Ok(payload) = serde_json::to_vec(a) {
                    n.offer(&payload);
                }
            }
        }
        for o in outputs {
            if let Output::Command(c) = o {
                m.count_emitted(c, &audits);
                let latency = consumed_at.map(|t| Timestamp::now_wall().since(t));
                if let Some(l) = latency {
                    m.decision_latency_seconds.observe(l.as_secs_f64());
                }
                info!(
                    command_id = %c.command_id,
                    deploy_id = %c.deploy_id,
                    service = %c.service,
                    action = c.action.as_str(),
                    trigger = c.trigger.as_str(),
                    decision_latency_us = latency.map(|l| l.nanos().max(0) as u64 / 1000),
                    "command emitted"
                );
            }
        }
        self.shared.remember(audits);
    }
}

impl KafkaSink {
    /// The producer of the owner's outputs. With `kafka.transactions` auto
    /// or on it is transactional (`transactional_id`) if the broker
    /// supports transactions: probed with a transaction that commits the
    /// owner group's offset `probe` again (an offset, not a record: a broker
    /// without transactions then holds back no reader of any topic).
    pub fn new(
        k: &KafkaConfig,
        topics: &Topics,
        transactional_id: &str,
        rt: tokio::runtime::Handle,
        probe: Option<(ConsumerGroupMetadata, TopicPartitionList)>,
        rebuilds: IntCounter,
        cancel: CancellationToken,
    ) -> Result<KafkaSink, KafkaError> {
        let base = [
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "1"),
            ("compression.type", "zstd"),
        ];
        let plain = || -> Result<KafkaSink, KafkaError> {
            Ok(KafkaSink {
                producer: Producer::create(
                    "owner",
                    crate::kafka::client_config_with(k, &[("message.timeout.ms", "15000")], &base),
                    rebuilds.clone(),
                    cancel.clone(),
                )?,
                topics: topics.clone(),
                rt: rt.clone(),
            })
        };
        if k.transactions == Transactions::Off {
            info!("transactions off (kafka.transactions = \"off\")");
            return plain();
        }
        let mut overrides = base.to_vec();
        overrides.push(("transactional.id", transactional_id));
        let config = crate::kafka::client_config_with(
            k,
            &[
                ("transaction.timeout.ms", "10000"),
                ("message.timeout.ms", "9000"),
            ],
            &overrides,
        );
        match Producer::transactional("owner", config, probe, rebuilds.clone(), cancel.clone()) {
            Ok(producer) => {
                info!(
                    transactional_id,
                    "transactions on: commands, audit records and evidence offsets commit together"
                );
                Ok(KafkaSink {
                    producer,
                    topics: topics.clone(),
                    rt,
                })
            }
            Err(e) if k.transactions == Transactions::On => Err(e),
            Err(e) => {
                warn!(error = %e, "the broker does not support transactions: transactions off (kafka.transactions = \"auto\")");
                plain()
            }
        }
    }

    fn records(&self, outputs: &[&Output], issued: Timestamp) -> Vec<OutRecord> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Command(c) => {
                    let c = Command {
                        issued_at: issued,
                        ..c.clone()
                    };
                    let payload = serde_json::to_vec(&c).ok()?;
                    Some(OutRecord {
                        topic: self.topics.commands.clone(),
                        partition: None,
                        key: Some(c.service.clone().into_bytes()),
                        payload,
                        headers: vec![("command_id".into(), c.command_id.clone().into_bytes())],
                    })
                }
                Output::Deploy(ev) => Some(OutRecord {
                    topic: self.topics.deploy_events.clone(),
                    partition: None,
                    key: Some(ev.service.clone().into_bytes()),
                    payload: serde_json::to_vec(ev).ok()?,
                    headers: Vec::new(),
                }),
                Output::Audit(a) => {
                    let payload = serde_json::to_vec(a).ok()?;
                    let key = a.service.clone().unwrap_or_default().into_bytes();
                    Some(OutRecord {
                        topic: self.topics.audit.clone(),
                        partition: None,
                        key: Some(key),
                        payload,
                        headers: Vec::new(),
                    })
                }
                // For every instance: they answer the gate alike.
                Output::Gate(g) => Some(OutRecord {
                    topic: self.topics.admin.clone(),
                    partition: None,
                    key: Some(g.service.clone().into_bytes()),
                    payload: serde_json::to_vec(g).ok()?,
                    headers: Vec::new(),
                }),
                _ => None,
            })
            .collect()
    }

    /// An attempt to publish ended: whether the batch is out (the owner
    /// idle and `emit` ready again, or busy and not ready), and with
    /// transactions the outcome to count (`""`: none).
    fn settled(&self, shared: &Shared, out: bool, outcome: &str) {
        let live = &shared.liveness;
        live.busy(&live.owner, !out);
        shared
            .readiness
            .emit
            .store(out, std::sync::atomic::Ordering::Release);
        if self.producer.is_transactional() && !outcome.is_empty() {
            shared
                .metrics
                .transactions
                .with_label_values(&[outcome])
                .inc();
        }
    }

    /// Sends everything on `client` and waits for every acknowledgement.
    fn send_all(
        &self,
        client: &Client,
        outputs: &[&Output],
        issued: Timestamp,
    ) -> Result<(), KafkaError> {
        let records = self.records(outputs, issued);
        self.rt
            .block_on(Producer::send_on(client, &records))
            .map(|_| ())
    }

    /// What a failure of the owner's client means for the batch.
    fn failed(failure: Failure, e: KafkaError) -> EmitError {
        match failure {
            Failure::Fenced => {
                error!(error = %e, "this instance is fenced: its transactional id was taken over (by a newer instance, or by the broker aborting a transaction open past transaction.timeout.ms); it publishes nothing more and stops");
                EmitError::Fenced(e.to_string())
            }
            Failure::Fatal => EmitError::Fatal(e),
            Failure::Retriable => e.into(),
        }
    }

    fn transaction(
        &self,
        client: &Client,
        outputs: &[&Output],
        offsets: Option<&Offsets<'_>>,
        issued: Timestamp,
    ) -> Result<(), EmitError> {
        let records = self.records(outputs, issued);
        let offsets = offsets.and_then(|o| match &o.group {
            Some(g) if o.next.count() > 0 => Some((o.next, g)),
            _ => None,
        });
        let command = outputs.iter().any(|o| matches!(o, Output::Command(_)));
        let before_commit = || {
            if command && super::failpoint::once("owner-fatal") {
                warn!(
                    "failpoint owner-fatal: the owner's client is declared dead before its commit"
                );
                self.producer.kill_client();
                return Err(KafkaError::MessageProduction(
                    rdkafka::error::RDKafkaErrorCode::Fatal,
                ));
            }
            Ok(())
        };
        self.producer
            .transact(&self.rt, client, &records, offsets, before_commit)
            .map_err(|(failure, e)| KafkaSink::failed(failure, e))
    }

    fn idempotent(
        &self,
        client: &Client,
        outputs: &[&Output],
        offsets: Option<&Offsets<'_>>,
        issued: Timestamp,
    ) -> Result<(), EmitError> {
        if let Err(e) = self.send_all(client, outputs, issued) {
            return Err(KafkaSink::failed(self.producer.classify(client, &e), e));
        }
        if let Some(o) = offsets {
            if o.next.count() > 0 {
                (o.commit)(o.next)?;
            }
        }
        Ok(())
    }
}

impl Sink for KafkaSink {
    /// Publishes a batch, tried again whole until it is out — on a new
    /// client after a fatal error — or the instance is fenced or stops.
    fn publish(
        &self,
        shared: &Shared,
        outputs: &[&Output],
        offsets: Option<&Offsets<'_>>,
        issued: Timestamp,
    ) -> Result<(), EmitError> {
        let mut backoff = Duration::from_millis(50);
        loop {
            let client = self.producer.client();
            let result = if self.producer.is_transactional() {
                self.transaction(&client, outputs, offsets, issued)
            } else {
                self.idempotent(&client, outputs, offsets, issued)
            };
            match result {
                Ok(()) => {
                    self.producer.delivered();
                    self.settled(shared, true, "committed");
                    return Ok(());
                }
                Err(EmitError::Fenced(why)) => {
                    shared
                        .metrics
                        .transactions
                        .with_label_values(&["fenced"])
                        .inc();
                    return Err(EmitError::Fenced(why));
                }
                Err(EmitError::Fatal(e)) => {
                    self.settled(shared, false, "");
                    // The batch again, whole, on a new client.
                    if self.producer.rebuild(&client, &e).is_err() {
                        return Err(EmitError::Stopped);
                    }
                }
                Err(e) => {
                    self.settled(shared, false, "aborted");
                    warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "publishing a batch failed; retrying it whole");
                    if shared.cancel.is_cancelled() {
                        return Err(EmitError::Stopped);
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn transactional(&self) -> bool {
        self.producer.is_transactional()
    }

    fn notifies(&self) -> bool {
        false
    }

    /// Flushes what is in flight (at shutdown).
    fn flush(&self) {
        if let Err(e) = self.producer.flush(Duration::from_secs(10)) {
            error!(error = %e, "producer flush failed at shutdown");
        }
    }
}

impl Drop for Emitter {
    fn drop(&mut self) {
        self.sink.flush();
    }
}
