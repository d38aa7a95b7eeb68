//! [`Producer`]: the one producer every stage uses — intake's evidence,
//! dead letters and out-of-band audit records, the owner's commands and
//! audit records (in transactions when the broker has them), HTTP's deploy
//! events and admin records.
//!
//! It sends a batch, waits for every acknowledgement, backs off and tries
//! the batch again when the failure is passing (a broker away, a timeout),
//! and tells the three kinds of failure apart ([`Failure`]):
//!
//! - retriable: the same client tries again;
//! - fatal (`rd_kafka_fatal_error`: after an `OutOfOrderSequenceNumber`
//!   when a broker restarts under load, say): the client never recovers, so
//!   it is dropped and a new one is built from the same config — a
//!   transactional one calls `init_transactions` again — and the batch is
//!   sent whole on the new client. A dead client is never retried. When
//!   building keeps failing (or every new client dies again before a batch
//!   gets through) past [`GIVE_UP_AFTER`] attempts, the process exits with
//!   [`CLIENT_LOST`] and the orchestrator restarts it;
//! - fenced: a newer instance took this transactional id — or the broker
//!   aborted a transaction of this client that outlived
//!   `transaction.timeout.ms` (a broker away that long), which looks the
//!   same; nothing is retried and the caller stops. A new client would
//!   take the id back from a newer instance, so only a restart (which is
//!   the newest instance by then) takes it again.
//!
//! A batch sent again after a rebuild may have partly reached the broker
//! from the dead client: every reader of what this producer writes
//! tolerates that (evidence is applied once per raw offset, commands are
//! deduplicated by id, transactions of the dead client are aborted by the
//! new one's `init_transactions`).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _};
use rdkafka::TopicPartitionList;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::polled::{Polled, Record};
use tracing::{error, warn};

/// The exit status when a Kafka client cannot be rebuilt: a restart of the
/// process recovers from the topics.
pub const CLIENT_LOST: i32 = 75;

/// How many rebuild attempts in a row may fail — a client that cannot be
/// built, or a new client that dies again before any batch gets through —
/// before the process exits.
pub const GIVE_UP_AFTER: u32 = 10;

/// How long one step of a transaction (`init_transactions` included) may
/// take.
const TXN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a tool's record may wait for its acknowledgement.
pub const TOOL_ACK_WITHIN: Duration = Duration::from_secs(10);

/// One record to produce.
#[derive(Debug, Clone, Default)]
pub struct OutRecord {
    pub topic: String,
    /// `None`: the partitioner chooses (by key).
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    /// Empty: sent as null (a tombstone).
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// What a failure means for the client that had it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Passing: the same client tries again after a back-off.
    Retriable,
    /// The client is dead for good: build a new one.
    Fatal,
    /// A newer instance took this transactional id (or the broker aborted
    /// a transaction that outlived its timeout): stop.
    Fenced,
}

/// Why a batch was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// Not acknowledged before the caller's deadline.
    #[error("{0}")]
    Kafka(KafkaError),
    #[error("fenced: a newer instance holds this transactional id ({0})")]
    Fenced(String),
    #[error("stopped before the batch was acknowledged")]
    Stopped,
}

/// How long [`Producer::deliver`] keeps trying.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// Until acknowledged (or fenced, or stopped).
    Acknowledged,
    /// No new attempt after then; the last error. (An attempt under way
    /// is not cut short: what it sent could still be delivered, and the
    /// caller would answer that it was not.)
    Deadline(Instant),
}

/// One librdkafka client, and the generation it belongs to.
pub struct Client {
    producer: Polled,
    generation: u64,
    /// Set when this client was found dead (or declared so by a test's
    /// failpoint): every later send on it fails as fatal.
    dead: AtomicBool,
}

impl Client {
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

struct Inner {
    /// For logs and the rebuild counter's label.
    name: &'static str,
    config: ClientConfig,
    transactional: bool,
    current: RwLock<Arc<Client>>,
    /// Rebuild attempts in a row that did not end in a delivered batch.
    failed_rebuilds: AtomicU32,
    /// Held while a client is rebuilt: one rebuild at a time.
    rebuilding: Mutex<()>,
    rebuilds: IntCounter,
    cancel: CancellationToken,
}

/// See the module docs. Cheap to clone: every clone shares the client.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl Producer {
    /// A producer whose first client is `first` (built, and for a
    /// transactional one initialised, from `config` by the caller);
    /// `rebuilds` counts the clients built after a fatal error.
    pub fn new(
        name: &'static str,
        config: ClientConfig,
        first: Polled,
        transactional: bool,
        rebuilds: IntCounter,
        cancel: CancellationToken,
    ) -> Producer {
        Producer {
            inner: Arc::new(Inner {
                name,
                config,
                transactional,
                current: RwLock::new(Arc::new(Client {
                    producer: first,
                    generation: 0,
                    dead: AtomicBool::new(false),
                })),
                failed_rebuilds: AtomicU32::new(0),
                rebuilding: Mutex::new(()),
                rebuilds,
                cancel,
            }),
        }
    }

    /// A non-transactional producer built from `config`.
    pub fn create(
        name: &'static str,
        config: ClientConfig,
        rebuilds: IntCounter,
        cancel: CancellationToken,
    ) -> Result<Producer, KafkaError> {
        let first = Polled::create(&config)?;
        Ok(Producer::new(name, config, first, false, rebuilds, cancel))
    }

    /// A producer for a tool that sends a record now and then (`announce`,
    /// the executor's results): built like any other, its rebuilds not
    /// counted in a registry.
    pub fn standalone(name: &'static str, config: ClientConfig) -> Result<Producer, KafkaError> {
        let rebuilds = IntCounter::new("kafka_client_rebuilds", "unregistered")
            .map_err(|e| KafkaError::ClientCreation(e.to_string()))?;
        Producer::create(name, config, rebuilds, CancellationToken::new())
    }

    /// A transactional producer from `config` (which names the
    /// `transactional.id`), if the broker keeps transactions: probed with
    /// one that commits `probe` — the consumer group's offsets as they are,
    /// not a record, so a broker without transactions holds back no
    /// reader. Only an answer decides: a probe that timed out (a broker
    /// rolling at start) is tried again, never taken for "no
    /// transactions". The broker's refusal is the error.
    pub fn transactional(
        name: &'static str,
        config: ClientConfig,
        probe: Option<(ConsumerGroupMetadata, TopicPartitionList)>,
        rebuilds: IntCounter,
        cancel: CancellationToken,
    ) -> Result<Producer, KafkaError> {
        loop {
            let producer = Polled::create(&config)?;
            let probed = producer
                .init_transactions(TXN_TIMEOUT)
                .and_then(|()| producer.begin_transaction())
                .and_then(|()| match &probe {
                    Some((g, offsets)) => {
                        producer.send_offsets_to_transaction(offsets, g, TXN_TIMEOUT)
                    }
                    None => Ok(()),
                })
                .and_then(|()| producer.commit_transaction(TXN_TIMEOUT));
            match probed {
                Ok(()) => {
                    return Ok(Producer::new(
                        name, config, producer, true, rebuilds, cancel,
                    ))
                }
                Err(KafkaError::Transaction(e)) if e.is_retriable() && !cancel.is_cancelled() => {
                    warn!(error = %e, "the broker did not answer the transactions probe; probing again");
                    std::thread::sleep(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.inner.transactional
    }

    /// One transaction on `client` (of a transactional producer):
    /// `records`, then the consumer's `offsets` with its group metadata,
    /// then `before_commit` (tests' failpoints), then the commit. A passing
    /// failure aborts it; a dead or fenced client cannot abort (a new
    /// client's `init_transactions` aborts what it left open). What the
    /// failure means, and the error.
    pub fn transact(
        &self,
        rt: &tokio::runtime::Handle,
        client: &Client,
        records: &[OutRecord],
        offsets: Option<(&TopicPartitionList, &ConsumerGroupMetadata)>,
        before_commit: impl FnOnce() -> Result<(), KafkaError>,
    ) -> Result<(), (Failure, KafkaError)> {
        let p = &client.producer;
        let run = || -> Result<(), KafkaError> {
            p.begin_transaction()?;
            rt.block_on(Producer::send_on(client, records))?;
            if let Some((next, group)) = offsets {
                p.send_offsets_to_transaction(next, group, TXN_TIMEOUT)?;
            }
            before_commit()?;
            p.commit_transaction(TXN_TIMEOUT)
        };
        let e = match run() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        match self.classify(client, &e) {
            Failure::Retriable => {
                if let Err(abort) = p.abort_transaction(TXN_TIMEOUT) {
                    match self.classify(client, &abort) {
                        Failure::Retriable => {
                            warn!(client = self.inner.name, error = %abort, "aborting the transaction failed")
                        }
                        dead => return Err((dead, abort)),
                    }
                }
                Err((Failure::Retriable, e))
            }
            dead => Err((dead, e)),
        }
    }

    /// The live client.
    pub fn client(&self) -> Arc<Client> {
        self.inner
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Declares the live client dead, as a fatal error would (tests'
    /// failpoints): its next send fails as fatal.
    pub fn kill_client(&self) {
        self.client().dead.store(true, Ordering::Release);
    }

    /// What `e`, which `client` returned, means.
    pub fn classify(&self, client: &Client, e: &KafkaError) -> Failure {
        let fencing = |code: RDKafkaErrorCode| {
            self.inner.transactional
                && matches!(
                    code,
                    RDKafkaErrorCode::Fenced
                        | RDKafkaErrorCode::ProducerFenced
                        | RDKafkaErrorCode::InvalidProducerEpoch
                )
        };
        if let Some(code) = e.rdkafka_error_code() {
            if fencing(code) {
                return Failure::Fenced;
            }
        }
        if let Some((code, _)) = client.producer.client().fatal_error() {
            client.dead.store(true, Ordering::Release);
            return if fencing(code) {
                Failure::Fenced
            } else {
                Failure::Fatal
            };
        }
        let fatal = match e {
            KafkaError::Transaction(t) => t.is_fatal(),
            other => other.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal),
        };
        if fatal || client.dead.load(Ordering::Acquire) {
            client.dead.store(true, Ordering::Release);
            Failure::Fatal
        } else {
            Failure::Retriable
        }
    }

    /// A batch got through: the rebuilds before it were not in vain.
    pub fn delivered(&self) {
        self.inner.failed_rebuilds.store(0, Ordering::Release);
    }

    /// Replaces `dead` by a new client built from the same config (a
    /// transactional one initialised again). Blocking. Does nothing when
    /// `dead` was already replaced (another caller saw it die first). Exits
    /// the process with [`CLIENT_LOST`] past [`GIVE_UP_AFTER`] failed
    /// attempts in a row; [`ProduceError::Stopped`] when stopping meanwhile.
    pub fn rebuild(&self, dead: &Client, why: &KafkaError) -> Result<(), ProduceError> {
        let inner = &self.inner;
        let _one_at_a_time = inner.rebuilding.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.client().generation;
        if generation != dead.generation {
            return Ok(());
        }
        let mut backoff = Duration::from_millis(500);
        loop {
            let failed = inner.failed_rebuilds.fetch_add(1, Ordering::AcqRel) + 1;
            if failed > GIVE_UP_AFTER {
                error!(
                    client = inner.name,
                    attempts = failed - 1,
                    error = %why,
                    "the kafka client cannot be rebuilt: exiting so that a restart recovers from the topics"
                );
                std::process::exit(CLIENT_LOST);
            }
            match self.build() {
                Ok(producer) => {
                    let client = Arc::new(Client {
                        producer,
                        generation: generation + 1,
                        dead: AtomicBool::new(false),
                    });
                    // The dead client is dropped once its last user lets
                    // go of it; what it still held is purged then.
                    *inner.current.write().unwrap_or_else(|p| p.into_inner()) = client;
                    inner.rebuilds.inc();
                    warn!(
                        client = inner.name,
                        generation = generation + 1,
                        transactional = inner.transactional,
                        error = %why,
                        "kafka client rebuilt after a fatal error"
                    );
                    return Ok(());
                }
                Err(e) => {
                    warn!(client = inner.name, error = %e, retry_in_ms = backoff.as_millis() as u64, "building a new kafka client failed; retrying");
                    if inner.cancel.is_cancelled() {
                        return Err(ProduceError::Stopped);
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    fn build(&self) -> Result<Polled, KafkaError> {
        let producer = Polled::create(&self.inner.config)?;
        if self.inner.transactional {
            producer.init_transactions(TXN_TIMEOUT)?;
        }
        Ok(producer)
    }

    /// Sends `records` on `client` and waits for every acknowledgement:
    /// each record's partition and offset.
    pub async fn send_on(
        client: &Client,
        records: &[OutRecord],
    ) -> Result<Vec<(i32, i64)>, KafkaError> {
        if client.dead.load(Ordering::Acquire) {
            return Err(KafkaError::MessageProduction(RDKafkaErrorCode::Fatal));
        }
        let mut deliveries = Vec::with_capacity(records.len());
        for r in records {
            // An empty payload goes out as null: a tombstone, which a
            // compacted topic forgets the key by.
            let (ack, acked) = oneshot::channel();
            let mut rec: Record<'_> = BaseRecord::with_opaque_to(&r.topic, Box::new(ack));
            if !r.payload.is_empty() {
                rec = rec.payload(r.payload.as_slice());
            }
            if let Some(p) = r.partition {
                rec = rec.partition(p);
            }
            if let Some(k) = &r.key {
                rec = rec.key(k.as_slice());
            }
            if !r.headers.is_empty() {
                let mut headers = OwnedHeaders::new();
                for (key, value) in &r.headers {
                    headers = headers.insert(Header {
                        key,
                        value: Some(value.as_slice()),
                    });
                }
                rec = rec.headers(headers);
            }
            client.producer.send(rec)?;
            deliveries.push(acked);
        }
        let mut positions = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            match d.await {
                Ok(Ok(at)) => positions.push(at),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(KafkaError::Canceled),
            }
        }
        Ok(positions)
    }

    /// Sends `records` and waits for every acknowledgement, tried again
    /// whole — on a new client after a fatal error — until acknowledged or
    /// `until`. Each record's partition and offset.
    pub async fn deliver(
        &self,
        records: &[OutRecord],
        until: Until,
    ) -> Result<Vec<(i32, i64)>, ProduceError> {
        let mut backoff = Duration::from_millis(50);
        loop {
            let client = self.client();
            let e = match Producer::send_on(&client, records).await {
                Ok(positions) => {
                    self.delivered();
                    return Ok(positions);
                }
                Err(e) => e,
            };
            match self.classify(&client, &e) {
                Failure::Fenced => return Err(ProduceError::Fenced(e.to_string())),
                Failure::Fatal => {
                    let this = self.clone();
                    let why = e.clone();
                    tokio::task::spawn_blocking(move || this.rebuild(&client, &why))
                        .await
                        .map_err(|_| ProduceError::Stopped)??;
                    continue;
                }
                Failure::Retriable => {}
            }
            if self.inner.cancel.is_cancelled() {
                return Err(ProduceError::Stopped);
            }
            if let Until::Deadline(at) = until {
                if Instant::now() + backoff > at {
                    return Err(ProduceError::Kafka(e));
                }
            }
            warn!(client = self.inner.name, error = %e, retry_in_ms = backoff.as_millis() as u64, "sending failed; retrying the batch");
            tokio::select! {
                _ = self.inner.cancel.cancelled() => return Err(ProduceError::Stopped),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Flushes what is in flight (at shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.client().producer.flush(timeout)
    }
}
