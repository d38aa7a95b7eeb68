//! Stage 1, intake, on every instance: the raw telemetry topics in the
//! intake consumer group (correct under any upstream partitioning — keyless,
//! by trace id, by resource attributes), decoded on every core, matched to
//! deploys and folded into evidence ([`crate::engine::fold`]), sent to the
//! owner of each key through the evidence topic every flush interval.
//!
//! A raw record's offset is stored for commit only once the evidence it
//! went into is acknowledged: a crash re-reads it, and the owner, who
//! applies each raw record once per key, counts it once. A partition read
//! again from an earlier offset before the flush (revoked and assigned
//! anew) is not folded twice: within one evidence item the owner could
//! not tell the two apart. Malformed raw records go to the dead-letter
//! topic with their headers.
//!
//! Cumulative series of keyed raw records are turned into deltas here
//! ([`crate::engine::series`]): when partitions are revoked, and at
//! shutdown, intake hands the last point of each series, as of the offsets
//! it stored, to their owners before those offsets are committed; a new
//! assignment starts every series afresh.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use tracing::{error, info, warn};

use super::shared::Shared;
use super::RunError;
use crate::engine::fold::Fold;
use crate::engine::series::Handovers;
use crate::engine::Engine;
use crate::ingest::evidence::Envelope;
use crate::ingest::{self, DecodeError, Source};
use crate::kafka::group::Group;
use crate::kafka::producer::{OutRecord, ProduceError, Producer, Until};
use crate::kafka::InRecord;
use crate::model::audit::{OwnerAudit, OwnerChange};
use crate::model::evidence::{Evidence, Origin, RawOffset};
use crate::model::{AuditRecord, Input, Output};
use crate::time::Timestamp;

/// At most this many raw records are decoded as one batch.
const BATCH: usize = 256;

/// Why a raw record in a batch gave no input.
enum Skipped {
    /// Older than every window by its Kafka timestamp: not decoded.
    Late,
    Malformed(DecodeError),
}

/// Sends evidence (and dead letters) for intake and for HTTP.
#[derive(Clone)]
pub struct Sender {
    /// Rebuilds its client after a fatal error ([`Producer`]).
    pub producer: Producer,
    pub shared: Arc<Shared>,
    pub rt: tokio::runtime::Handle,
    /// Partitions of the evidence topic.
    pub partitions: u32,
    /// Whether the owner's outputs go out in transactions (for the audit).
    pub transactional: bool,
    /// Set once this instance is fenced (audited once).
    pub fenced: Arc<AtomicBool>,
}

/// How long a dead letter, an out-of-band audit record or an HTTP input
/// may wait for the broker's acknowledgement.
pub const ACK_WITHIN: Duration = Duration::from_secs(10);

impl Sender {
    /// Produces `evidence` to each key's partition and waits for every
    /// acknowledgement, tried again whole until `until`. `consumed_at`:
    /// when the oldest raw record (or HTTP request) behind it was taken
    /// in.
    pub async fn send(
        &self,
        evidence: Vec<Evidence>,
        consumed_at: Option<Timestamp>,
        until: Until,
    ) -> Result<(), ProduceError> {
        let topic = &self.shared.config.topics.evidence;
        let envelope = Envelope {
            instance: self.shared.instance.clone(),
            consumed_at,
        };
        let records: Vec<OutRecord> = evidence
            .iter()
            .map(|e| OutRecord {
                topic: topic.clone(),
                partition: Some(e.key.partition(self.partitions)),
                key: Some(crate::ingest::evidence::record_key(&e.key)),
                payload: crate::ingest::evidence::encode(e, &envelope),
                headers: Vec::new(),
            })
            .collect();
        self.producer.deliver(&records, until).await?;
        let m = &self.shared.metrics;
        m.evidence_records.inc_by(records.len() as u64);
        m.evidence_bytes
            .inc_by(records.iter().map(|r| r.payload.len() as u64).sum());
        Ok(())
    }

    /// [`Sender::send`] from a plain thread, until acknowledged or stopped
    /// (on a new client after a fatal error); returns whether it was sent.
    fn send_blocking(&self, evidence: Vec<Evidence>, consumed_at: Option<Timestamp>) -> bool {
        if super::failpoint::once("evidence-fatal") {
            // The batch reaches the broker, then the client dies before
            // its sender learns so: sent again whole on a new client.
            let until = Until::Deadline(Instant::now() + ACK_WITHIN);
            let sent = self
                .rt
                .block_on(self.send(evidence.clone(), consumed_at, until));
            warn!(
                delivered = sent.is_ok(),
                "failpoint evidence-fatal: the evidence client is declared dead"
            );
            self.producer.kill_client();
        }
        match self
            .rt
            .block_on(self.send(evidence, consumed_at, Until::Acknowledged))
        {
            Ok(()) => true,
            Err(ProduceError::Stopped) => false,
            Err(e) => {
                error!(error = %e, "sending evidence failed; stopping");
                self.shared.cancel.cancel();
                false
            }
        }
    }

    /// Produces one record, waiting up to [`ACK_WITHIN`] for the
    /// acknowledgement: its partition and offset.
    pub async fn send_one(&self, record: OutRecord) -> Result<(i32, i64), ProduceError> {
        let until = Until::Deadline(Instant::now() + ACK_WITHIN);
        let positions = self.producer.deliver(&[record], until).await?;
        Ok(positions.first().copied().unwrap_or((-1, -1)))
    }

    /// Copies a malformed record to the dead-letter topic and audits it.
    pub fn dead_letter(&self, rec: &InRecord, source: &str, err: &DecodeError) {
        let m = &self.shared.metrics;
        m.records.with_label_values(&[source, "malformed"]).inc();
        m.dead_letters.inc();
        warn!(topic = %rec.topic, partition = rec.partition, offset = rec.offset, error = %err, "malformed record sent to the dead-letter topic");
        let headers = vec![
            ("source_topic".to_string(), rec.topic.as_bytes().to_vec()),
            (
                "partition".to_string(),
                rec.partition.to_string().into_bytes(),
            ),
            ("offset".to_string(), rec.offset.to_string().into_bytes()),
            ("error".to_string(), err.0.as_bytes().to_vec()),
        ];
        let out = OutRecord {
            topic: self.shared.config.topics.dead_letter.clone(),
            partition: None,
            key: rec.key.clone(),
            payload: rec.payload.clone(),
            headers,
        };
        if let Err(e) = self.rt.block_on(self.send_one(out)) {
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
            let out = OutRecord {
                topic: self.shared.config.topics.audit.clone(),
                payload,
                ..OutRecord::default()
            };
            if let Err(e) = self.rt.block_on(self.send_one(out)) {
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
    let handovers = hand_over_when_revoked(&group, &sender);
    let mut generation = group.generation();
    // The last offset folded per raw partition: stored once sent.
    let mut read: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut batch: Vec<InRecord> = Vec::with_capacity(BATCH);
    let mut flush_at = Instant::now() + flush;
    let mut last_settle = Instant::now();
    let mut assigned_once = false;
    // When the oldest record not yet sent was consumed.
    let mut oldest: Option<Timestamp> = None;
    while !shared.cancel.is_cancelled() {
        poll_batch(&group, &sender, &mut batch, flush_at)?;
        if group.generation() != generation {
            generation = group.generation();
            fold.reassigned();
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
        let live = &shared.liveness;
        if !batch.is_empty() {
            live.progress(&live.intake);
            oldest.get_or_insert_with(Timestamp::now_wall);
            fold_batch(&shared, &sender, &mut fold, &batch, workers, lookback);
            for r in &batch {
                let last = read
                    .entry((r.topic.clone(), r.partition))
                    .or_insert(r.offset);
                *last = (*last).max(r.offset);
            }
        }
        // Records folded and not yet acknowledged downstream are work in
        // hand. (Consumer lag is not: a transaction marker or a broker's
        // watermark can hold it above zero for good, and an instance
        // restarted for that would be restarted forever.)
        // So is telemetry the group leaves unread while this member holds
        // nothing (a group that never assigns again is blind, not idle).
        live.busy(&live.intake, !read.is_empty() || group.starved());
        if Instant::now() >= flush_at {
            flush_at = Instant::now() + flush;
            if !send(&sender, &mut fold, &group, &mut read, oldest) {
                break;
            }
            keep_handovers(&handovers, &mut fold);
            oldest = None;
        }
    }
    if send(&sender, &mut fold, &group, &mut read, oldest) {
        keep_handovers(&handovers, &mut fold);
    }
    if let Err(e) = group.commit() {
        warn!(error = %e, "final offset commit failed");
        return Ok(());
    }
    // Whoever reads these partitions next starts where this instance
    // stopped: its first points count from these.
    let held = group.held();
    let evidence = lock(&handovers).take(|t, p| held.contains_key(&(t.to_string(), p)));
    if !evidence.is_empty() {
        sender.send_blocking(evidence, None);
    }
    Ok(())
}

/// What intake hands over, as of the offsets it last stored: set after
/// every send, taken by the revocation hook it returns.
type Kept = Arc<Mutex<Handovers>>;

fn lock(kept: &Kept) -> std::sync::MutexGuard<'_, Handovers> {
    kept.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sets `group` to hand over the series of the partitions it revokes,
/// before their offsets are committed.
fn hand_over_when_revoked(group: &Group, sender: &Sender) -> Kept {
    let kept = Kept::default();
    let (hook_kept, sender) = (kept.clone(), sender.clone());
    group.on_revoke(Box::new(move |revoked| {
        let evidence = lock(&hook_kept).take(|t, p| revoked.iter().any(|r| r.0 == t && r.1 == p));
        if !evidence.is_empty() {
            sender.send_blocking(evidence, None);
        }
    }));
    kept
}

/// Keeps the fold's series as of the offsets just stored.
fn keep_handovers(kept: &Kept, fold: &mut Fold) {
    fold.keep_handovers(&mut lock(kept));
}

/// Takes up to a batch of raw records into `batch`: waits for the first
/// until the next flush (at most 100 ms), then up to 5 ms for more. A
/// fatal consumer error (fenced from the group) ends the instance.
fn poll_batch(
    group: &Group,
    sender: &Sender,
    batch: &mut Vec<InRecord>,
    flush_at: Instant,
) -> Result<(), RunError> {
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
    let live = &sender.shared.liveness;
    live.progress(&live.intake);
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
    let decoded: Vec<Option<(Source, Result<Input, Skipped>)>> = thread::scope(|s| {
        let handles: Vec<_> = batch
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|r| {
                            let source = Source::from_topic(config, &r.topic)?;
                            if r.timestamp_ms.is_some_and(|t| t < horizon_ms) {
                                return Some((source, Err(Skipped::Late)));
                            }
                            let encoding = config.topics.otlp_encoding;
                            let d = ingest::decode(source, &r.payload, encoding)
                                .map_err(Skipped::Malformed);
                            Some((source, d))
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
            if !fold.read(&rec.topic, rec.partition, rec.offset) {
                // Read again before the flush: in the fold already.
                continue;
            }
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
                    let raw = crate::engine::fold::Raw {
                        offset: &raw,
                        keyed: rec.key.is_some(),
                    };
                    let outcome = engine.fold_telemetry(fold, &b, Some(raw), now);
                    shared.metrics.observations.inc_by(outcome.observations);
                    shared
                        .metrics
                        .records
                        .with_label_values(&[label, outcome.label()])
                        .inc();
                }
                Ok(_) => {}
                Err(Skipped::Late) => {
                    shared
                        .metrics
                        .records
                        .with_label_values(&[label, "late"])
                        .inc();
                }
                Err(Skipped::Malformed(e)) => malformed.push((rec, label, e)),
            }
        }
    }
    for (rec, label, e) in malformed {
        sender.dead_letter(rec, label, &e);
    }
}
