//! Stage 1, intake, on every instance: the raw telemetry topics in the
//! intake consumer group (correct under any upstream partitioning — keyless,
//! by trace id, by resource attributes), decoded on every core, matched to
//! deploys and folded into evidence ([`crate::engine::fold`]), sent to the
//! owner of each key through the evidence topic every flush interval.
//!
//! A raw record's offset is stored for commit only once the evidence it
//! went into is acknowledged: a crash re-reads it, and the owner, who
//! applies each raw record once per key, counts it once. Malformed raw
//! records go to the dead-letter topic with their headers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use tracing::{error, info, warn};

use super::shared::Shared;
use super::RunError;
use crate::engine::fold::Fold;
use crate::engine::Engine;
use crate::evidence::Envelope;
use crate::ingest::{self, DecodeError, Source};
use crate::kafka::group::Group;
use crate::kafka::InRecord;
use crate::model::audit::{OwnerAudit, OwnerChange};
use crate::model::evidence::{Evidence, Origin, RawOffset};
use crate::model::{AuditRecord, Input, Output};
use crate::time::Timestamp;

/// At most this many raw records are decoded as one batch.
const BATCH: usize = 256;

/// A record older than every window, skipped by its Kafka timestamp.
const LATE: &str = "late";

/// Sends evidence (and dead letters) for intake and for HTTP.
#[derive(Clone)]
pub struct Sender {
    pub producer: FutureProducer,
    pub shared: Arc<Shared>,
    pub rt: tokio::runtime::Handle,
    /// Partitions of the evidence topic.
    pub partitions: u32,
    /// Whether the owner's outputs go out in transactions (for the audit).
    pub transactional: bool,
    /// Set once this instance is fenced (audited once).
    pub fenced: Arc<AtomicBool>,
}

impl Sender {
    /// Produces `evidence` to each key's partition and waits for every
    /// acknowledgement. `consumed_at`: when the oldest raw record (or HTTP
    /// request) behind it was taken in.
    pub async fn send(
        &self,
        evidence: Vec<Evidence>,
        consumed_at: Option<Timestamp>,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let topic = &self.shared.config.topics.evidence;
        let envelope = Envelope {
            instance: self.shared.instance.clone(),
            consumed_at,
        };
        let mut deliveries = Vec::with_capacity(evidence.len());
        for e in &evidence {
            let payload = crate::evidence::encode(e, &envelope);
            let key = crate::evidence::record_key(&e.key);
            self.shared.metrics.evidence_records.inc();
            self.shared
                .metrics
                .evidence_bytes
                .inc_by(payload.len() as u64);
            let rec = FutureRecord::to(topic)
                .partition(e.key.partition(self.partitions))
                .key(key.as_slice())
                .payload(payload.as_slice());
            deliveries.push(self.producer.send_result(rec).map_err(|(e, _)| e)?);
        }
        for d in deliveries {
            match d.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(e),
                Err(_) => return Err(rdkafka::error::KafkaError::Canceled),
            }
        }
        Ok(())
    }

    /// [`Sender::send`] from a plain thread, retried until acknowledged or
    /// stopped; returns whether it was sent.
    fn send_blocking(&self, evidence: Vec<Evidence>, consumed_at: Option<Timestamp>) -> bool {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.rt.block_on(self.send(evidence.clone(), consumed_at)) {
                Ok(()) => return true,
                Err(e) => {
                    warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "sending evidence failed; retrying");
                    if self.shared.cancel.is_cancelled() {
                        return false;
                    }
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Copies a malformed record to the dead-letter topic and audits it.
    pub fn dead_letter(&self, rec: &InRecord, source: &str, err: &DecodeError) {
        let m = &self.shared.metrics;
        m.records.with_label_values(&[source, "malformed"]).inc();
        m.dead_letters.inc();
        warn!(topic = %rec.topic, partition = rec.partition, offset = rec.offset, error = %err, "malformed record sent to the dead-letter topic");
        let (p, off) = (rec.partition.to_string(), rec.offset.to_string());
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "source_topic",
                value: Some(rec.topic.as_bytes()),
            })
            .insert(Header {
                key: "partition",
                value: Some(p.as_bytes()),
            })
            .insert(Header {
                key: "offset",
                value: Some(off.as_bytes()),
            })
            .insert(Header {
                key: "error",
                value: Some(err.0.as_bytes()),
            });
        let mut out: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.shared.config.topics.dead_letter)
                .payload(rec.payload.as_slice())
                .headers(headers);
        if let Some(k) = &rec.key {
            out = out.key(k.as_slice());
        }
        let sent = self.rt.block_on(async {
            self.producer
                .send(out, Timeout::After(Duration::from_secs(10)))
                .await
                .map_err(|(e, _)| e)
        });
        if let Err(e) = sent {
            warn!(error = %e, "the dead-letter topic did not acknowledge a malformed record");
        }
        let audit = self.shared.apply(Engine::malformed(
            source,
            &err.0,
            serde_json::json!({"topic": rec.topic, "partition": rec.partition, "offset": rec.offset}),
        ));
        for o in audit {
            if let Output::Audit(a) = o {
                self.audit(a);
            }
        }
    }

    /// This instance was fenced — a newer one with its id took its
    /// transactional id or its place in a consumer group — while owning
    /// `owned`: the audit says so, once, outside any transaction.
    pub fn fenced(&self, why: &str, owned: Vec<i32>) -> RunError {
        error!(reason = %why, "fenced: a newer instance with this instance's id took over; nothing more is published, stopping");
        if !self.fenced.swap(true, Ordering::AcqRel) {
            let record = AuditRecord::new(
                Timestamp::now_wall(),
                OwnerAudit {
                    instance: self.shared.instance.clone(),
                    change: OwnerChange::Fenced,
                    partitions: owned,
                    owned: Vec::new(),
                    transactional: self.transactional,
                },
            );
            self.audit(record);
        }
        self.shared.cancel.cancel();
        RunError::Fenced(why.to_string())
    }

    /// Publishes an audit record outside the owner's batches (a malformed
    /// raw record; an instance that was fenced and can no longer publish
    /// transactionally) and keeps it for `GET /v1/audit`.
    pub fn audit(&self, record: AuditRecord) {
        if let Ok(payload) = serde_json::to_vec(&record) {
            let sent = self.rt.block_on(async {
                self.producer
                    .send(
                        FutureRecord::<[u8], [u8]>::to(&self.shared.config.topics.audit)
                            .payload(payload.as_slice()),
                        Timeout::After(Duration::from_secs(10)),
                    )
                    .await
            });
            if let Err((e, _)) = sent {
                warn!(error = %e, kind = record.kind(), "the audit topic did not acknowledge a record");
            }
        }
        self.shared.remember([record]);
    }
}

/// Runs intake until cancelled, then sends what it gathered and commits.
/// A fatal consumer error — a newer instance with this instance's id took
/// its place in the group — stops the instance.
pub fn run(
    shared: Arc<Shared>,
    group: Group,
    sender: Sender,
    flush: Duration,
) -> Result<(), RunError> {
    let workers = thread::available_parallelism().map_or(2, |n| n.get());
    let lookback = shared.config.longest_window();
    let mut fold = Fold::default();
    // The last offset folded per raw partition: stored once sent.
    let mut read: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut batch: Vec<InRecord> = Vec::with_capacity(BATCH);
    let mut flush_at = Instant::now() + flush;
    let mut last_settle = Instant::now();
    let mut assigned_once = false;
    // When the oldest record not yet sent was consumed.
    let mut oldest: Option<Timestamp> = None;
    while !shared.cancel.is_cancelled() {
        batch.clear();
        let deadline = Instant::now() + Duration::from_millis(5);
        while batch.len() < BATCH {
            let wait = if batch.is_empty() {
                flush_at
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100))
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            match group.poll(wait) {
                Some(Ok(r)) => batch.push(r),
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                    return Err(sender.fenced(&e.to_string(), Vec::new()));
                }
                Some(Err(e)) => {
                    warn!(error = %e, "telemetry consumer error");
                    break;
                }
                None => break,
            }
        }
        if !assigned_once && group.generation() > 0 {
            assigned_once = true;
            shared.readiness.intake.store(true, Ordering::Release);
            info!("telemetry partitions assigned: intake running");
        }
        if last_settle.elapsed() > Duration::from_secs(1) {
            last_settle = Instant::now();
            if let Some(lag) = group.lag() {
                shared.metrics.consumer_lag.set(lag);
            }
        }
        if !batch.is_empty() {
            oldest.get_or_insert_with(Timestamp::now_wall);
            fold_batch(&shared, &sender, &mut fold, &batch, workers, lookback);
            for r in &batch {
                let last = read
                    .entry((r.topic.clone(), r.partition))
                    .or_insert(r.offset);
                *last = (*last).max(r.offset);
            }
        }
        if Instant::now() >= flush_at {
            flush_at = Instant::now() + flush;
            if !send(&sender, &mut fold, &group, &mut read, oldest) {
                break;
            }
            oldest = None;
        }
    }
    send(&sender, &mut fold, &group, &mut read, oldest);
    if let Err(e) = group.commit() {
        warn!(error = %e, "final offset commit failed");
    }
    Ok(())
}

/// Sends what was folded, then stores the offsets it covers. When it could
/// not be sent (stopped while retrying) nothing is stored: those records are
/// read again after the restart.
fn send(
    sender: &Sender,
    fold: &mut Fold,
    group: &Group,
    read: &mut BTreeMap<(String, i32), i64>,
    consumed_at: Option<Timestamp>,
) -> bool {
    if read.is_empty() {
        return true;
    }
    let evidence = fold.flush(Origin::Kafka(Vec::new()));
    if !evidence.is_empty() {
        if !sender.send_blocking(evidence, consumed_at) {
            read.clear();
            return false;
        }
        super::failpoint::hit("intake-after-send");
    }
    for ((topic, p), off) in std::mem::take(read) {
        group.store(&topic, p, off);
    }
    true
}

/// Decodes a batch on every core and folds it.
fn fold_batch(
    shared: &Arc<Shared>,
    sender: &Sender,
    fold: &mut Fold,
    batch: &[InRecord],
    workers: usize,
    lookback: crate::time::Duration,
) {
    let _span = tracing::info_span!("telemetry_batch", records = batch.len()).entered();
    // Records older than every window only cost decoding: skip them by
    // their Kafka timestamp.
    let now = Timestamp::now_wall();
    let horizon_ms = now.saturating_sub(lookback).nanos() / 1_000_000;
    let config = &shared.config;
    let chunk = batch.len().div_ceil(workers);
    let decoded: Vec<Option<(Source, Result<Input, DecodeError>)>> = thread::scope(|s| {
        let handles: Vec<_> = batch
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|r| {
                            let source = Source::from_topic(config, &r.topic)?;
                            if r.timestamp_ms.is_some_and(|t| t < horizon_ms) {
                                return Some((source, Err(DecodeError::new(LATE))));
                            }
                            Some((
                                source,
                                ingest::decode(source, &r.payload, config.topics.otlp_encoding),
                            ))
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
    let mut malformed = Vec::new();
    {
        let engine = shared.read();
        for (rec, d) in batch.iter().zip(decoded) {
            fold.read(&rec.topic, rec.partition, rec.offset);
            let Some((source, d)) = d else {
                continue;
            };
            let label = source.label();
            match d {
                Ok(Input::Telemetry(b)) => {
                    let raw = RawOffset {
                        topic: rec.topic.clone(),
                        partition: rec.partition,
                        offset: rec.offset,
                    };
                    let outcome = engine.fold_telemetry(fold, &b, Some(&raw), now);
                    shared.metrics.observations.inc_by(outcome.observations);
                    shared
                        .metrics
                        .records
                        .with_label_values(&[label, outcome.label()])
                        .inc();
                }
                Ok(_) => {}
                Err(e) if e.0 == LATE => {
                    shared
                        .metrics
                        .records
                        .with_label_values(&[label, "late"])
                        .inc();
                }
                Err(e) => malformed.push((rec, label, e)),
            }
        }
    }
    for (rec, label, e) in malformed {
        sender.dead_letter(rec, label, &e);
    }
}
