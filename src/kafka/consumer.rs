//! The consumers.
//!
//! - [`ControlReader`]: `deploy-events`, `rollback-results` and
//!   `rollback-commands`, read whole by every instance (partitions assigned,
//!   never group-subscribed, never committed). On start it reads each topic
//!   up to its high watermark — the recovery of CONTRACT §5 — then follows.
//! - [`TelemetryConsumer`]: `otlp_spans` and `otlp_metrics` in consumer group
//!   `kafka.group_id`, so instances share partitions. On every assignment a
//!   partition is rewound to `now − longest window` (by timestamp lookup) to
//!   rebuild windows — except partitions this instance already applied,
//!   which resume where they were so nothing is counted twice. Offsets are
//!   stored only after a record's effects are applied (auto offset store
//!   is off) and committed in the background and at shutdown.
//!
//! Both are polled on their own threads. Whoever holds a poll loop must
//! call poll at least every `max.poll.interval.ms` (5 minutes by default);
//! the loops here never block longer than one batch of decoding.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{info, warn};

use super::{client_config, InRecord};
use crate::config::KafkaConfig;

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the control topics whole.
pub struct ControlReader {
    consumer: BaseConsumer,
    /// Next offset to read, per (topic, partition), for following after recovery.
    positions: HashMap<(String, i32), i64>,
}

impl ControlReader {
    pub fn new(k: &KafkaConfig) -> KafkaResult<ControlReader> {
        let group = format!("{}-control", k.group_id);
        let consumer: BaseConsumer = client_config(
            k,
            &[
                ("group.id", group.as_str()),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                ("fetch.wait.max.ms", "50"),
            ],
        )
        .create()?;
        Ok(ControlReader {
            consumer,
            positions: HashMap::new(),
        })
    }

    fn partitions(&self, topic: &str) -> KafkaResult<Vec<i32>> {
        let md = self
            .consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect())
    }

    /// Whether the broker answers (a metadata round trip).
    pub fn broker_reachable(&self, topic: &str) -> bool {
        self.consumer
            .fetch_metadata(Some(topic), Duration::from_secs(2))
            .is_ok()
    }

    /// Reads `topic` from the beginning up to its high watermark as of now,
    /// handing every record to `f` in partition order.
    pub fn read_whole(&mut self, topic: &str, mut f: impl FnMut(InRecord)) -> KafkaResult<u64> {
        let mut targets: HashMap<i32, i64> = HashMap::new();
        for p in self.partitions(topic)? {
            let (low, high) = self.consumer.fetch_watermarks(topic, p, METADATA_TIMEOUT)?;
            self.positions.insert((topic.to_string(), p), high);
            if high > low {
                targets.insert(p, high);
            }
        }
        if targets.is_empty() {
            return Ok(0);
        }
        let mut tpl = TopicPartitionList::new();
        for &p in targets.keys() {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        self.consumer.assign(&tpl)?;
        let mut read = 0u64;
        let mut last_progress = Instant::now();
        // Done when every partition is read up to its high watermark and a
        // poll comes back empty: tansu 0.6 reports a watermark inside the
        // last batch, whose other records follow.
        let mut next: HashMap<i32, i64> = HashMap::new();
        loop {
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let rec = InRecord::from_message(&m);
                    drop(m);
                    last_progress = Instant::now();
                    next.insert(rec.partition, rec.offset + 1);
                    let pos = self
                        .positions
                        .entry((topic.to_string(), rec.partition))
                        .or_insert(0);
                    *pos = (*pos).max(rec.offset + 1);
                    read += 1;
                    f(rec);
                }
                Some(Err(e)) => {
                    warn!(topic, error = %e, "error while reading a control topic; retrying");
                }
                None => {
                    let behind = targets
                        .iter()
                        .filter(|(p, &high)| next.get(p).is_none_or(|&n| n < high))
                        .count();
                    if behind == 0 {
                        break;
                    }
                    if last_progress.elapsed() > Duration::from_secs(30) {
                        warn!(
                            topic,
                            remaining = behind,
                            "recovery read stalled; still waiting for the broker"
                        );
                        last_progress = Instant::now();
                    }
                }
            }
        }
        Ok(read)
    }

    /// Follows every partition of `topics` from where recovery stopped (new
    /// partitions from the beginning).
    pub fn follow(&mut self, topics: &[&str]) -> KafkaResult<()> {
        let mut tpl = TopicPartitionList::new();
        for topic in topics {
            for p in self.partitions(topic)? {
                let off = match self.positions.get(&(topic.to_string(), p)) {
                    Some(&o) => Offset::Offset(o),
                    None => {
                        self.positions.insert((topic.to_string(), p), 0);
                        Offset::Beginning
                    }
                };
                tpl.add_partition_offset(topic, p, off)?;
            }
        }
        self.consumer.assign(&tpl)
    }

    pub fn poll(&mut self, timeout: Duration) -> Option<KafkaResult<InRecord>> {
        let rec = self
            .consumer
            .poll(timeout)
            .map(|r| r.map(|m| InRecord::from_message(&m)));
        if let Some(Ok(r)) = &rec {
            self.positions
                .insert((r.topic.clone(), r.partition), r.offset + 1);
        }
        rec
    }

    /// While following: reads on until every partition of `topic` is read
    /// up to its end as of now, handing every record read meanwhile (of
    /// any followed topic) to `f`.
    pub fn read_to_end(&mut self, topic: &str, mut f: impl FnMut(InRecord)) -> KafkaResult<()> {
        let mut ends = Vec::new();
        for p in self.partitions(topic)? {
            let (_, high) = self.consumer.fetch_watermarks(topic, p, METADATA_TIMEOUT)?;
            ends.push((p, high));
        }
        let started = Instant::now();
        loop {
            match self.poll(Duration::from_millis(100)) {
                Some(Ok(rec)) => f(rec),
                Some(Err(e)) => warn!(topic, error = %e, "error while reading a control topic"),
                // Nothing more in hand: done once every partition is read
                // up to where it ended when called.
                None => {
                    let behind = ends.iter().any(|&(p, high)| {
                        high > 0
                            && self
                                .positions
                                .get(&(topic.to_string(), p))
                                .is_none_or(|&pos| pos < high)
                    });
                    if !behind {
                        return Ok(());
                    }
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::OperationTimedOut,
                ));
            }
        }
    }

    /// Starts following partitions of `topics` that appeared since
    /// [`ControlReader::follow`] (a topic created after start, say by the
    /// first record produced to it), from their beginning. Returns how many.
    pub fn follow_new(&mut self, topics: &[&str]) -> KafkaResult<usize> {
        let mut tpl = TopicPartitionList::new();
        for topic in topics {
            for p in self.partitions(topic)? {
                if let std::collections::hash_map::Entry::Vacant(e) =
                    self.positions.entry((topic.to_string(), p))
                {
                    tpl.add_partition_offset(topic, p, Offset::Beginning)?;
                    e.insert(0);
                }
            }
        }
        if tpl.count() > 0 {
            self.consumer.incremental_assign(&tpl)?;
        }
        Ok(tpl.count())
    }
}

/// Rewinds newly assigned telemetry partitions (see the module docs).
pub struct RewindContext {
    lookback: Duration,
    /// Next offset to apply, per (topic, partition) this instance applied.
    applied: Mutex<HashMap<(String, i32), i64>>,
    /// High watermarks at assignment: readiness waits until applied.
    catch_up: Mutex<HashMap<(String, i32), i64>>,
    assigned_once: std::sync::atomic::AtomicBool,
    /// The lowest partition of the first topic this instance holds (-1: none).
    claim_slot: std::sync::Arc<std::sync::atomic::AtomicI64>,
    first_topic: String,
    /// Records not yet applied on the assigned partitions (-1: unknown).
    lag: std::sync::atomic::AtomicI64,
}

impl ClientContext for RewindContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        // Assigned partitions report their lag; others (and the internal
        // partition -1) report -1.
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.consumer_lag_stored >= 0)
            .map(|p| p.consumer_lag_stored)
            .sum();
        self.lag.store(lag, std::sync::atomic::Ordering::Relaxed);
    }
}

impl ConsumerContext for RewindContext {
    fn rebalance(
        &self,
        base: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut assign = tpl.clone();
                let since = crate::time::Timestamp::now_wall()
                    .saturating_sub(crate::time::Duration(self.lookback.as_nanos() as i64))
                    .nanos()
                    / 1_000_000;
                let mut lookups = TopicPartitionList::new();
                let applied = self.applied.lock().map(|a| a.clone()).unwrap_or_default();
                for e in tpl.elements() {
                    let key = (e.topic().to_string(), e.partition());
                    if let Some(&next) = applied.get(&key) {
                        let _ = assign.set_partition_offset(
                            e.topic(),
                            e.partition(),
                            Offset::Offset(next),
                        );
                    } else {
                        let _ = lookups.add_partition_offset(
                            e.topic(),
                            e.partition(),
                            Offset::Offset(since),
                        );
                    }
                }
                if lookups.count() > 0 {
                    match base.offsets_for_times(lookups, METADATA_TIMEOUT) {
                        Ok(found) => {
                            for e in found.elements() {
                                // No record at or after the time (End) — or
                                // a broker that answers 0 there — falls back
                                // to a scan that skips old records by time.
                                let off = match e.offset() {
                                    Offset::Offset(o) => Offset::Offset(o),
                                    _ => Offset::End,
                                };
                                let _ = assign.set_partition_offset(e.topic(), e.partition(), off);
                            }
                        }
                        Err(err) => {
                            warn!(error = %err, "timestamp lookup failed; rebuilding windows by scanning from the beginning");
                            for e in tpl.elements() {
                                if !applied.contains_key(&(e.topic().to_string(), e.partition())) {
                                    let _ = assign.set_partition_offset(
                                        e.topic(),
                                        e.partition(),
                                        Offset::Beginning,
                                    );
                                }
                            }
                        }
                    }
                }
                if let Ok(mut c) = self.catch_up.lock() {
                    c.clear();
                    for e in tpl.elements() {
                        if let Ok((_, high)) =
                            base.fetch_watermarks(e.topic(), e.partition(), METADATA_TIMEOUT)
                        {
                            c.insert((e.topic().to_string(), e.partition()), high);
                        }
                    }
                }
                let slot = tpl
                    .elements()
                    .iter()
                    .filter(|e| e.topic() == self.first_topic)
                    .map(|e| i64::from(e.partition()))
                    .min()
                    .unwrap_or(-1);
                self.claim_slot
                    .store(slot, std::sync::atomic::Ordering::Release);
                info!(
                    partitions = tpl.count(),
                    claims_first = slot == 0,
                    claim_slot = slot,
                    "telemetry partitions assigned"
                );
                if let Err(e) = base.assign(&assign) {
                    warn!(error = %e, "assigning telemetry partitions failed");
                }
                self.assigned_once
                    .store(true, std::sync::atomic::Ordering::Release);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                info!(partitions = tpl.count(), "telemetry partitions revoked");
                let _ = base.commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
                let _ = base.unassign();
            }
            other => {
                warn!(error = ?other, "telemetry rebalance error");
                let _ = base.unassign();
            }
        }
    }
}

/// The group consumer of the telemetry topics.
pub struct TelemetryConsumer {
    consumer: BaseConsumer<RewindContext>,
}

impl TelemetryConsumer {
    /// `claim_slot` is kept at the lowest partition of `topics[0]` this
    /// instance holds (-1: none).
    pub fn new(
        k: &KafkaConfig,
        topics: &[&str],
        lookback: Duration,
        claim_slot: std::sync::Arc<std::sync::atomic::AtomicI64>,
    ) -> KafkaResult<TelemetryConsumer> {
        let ctx = RewindContext {
            claim_slot,
            first_topic: topics.first().map(|t| t.to_string()).unwrap_or_default(),
            lookback,
            applied: Mutex::new(HashMap::new()),
            catch_up: Mutex::new(HashMap::new()),
            assigned_once: std::sync::atomic::AtomicBool::new(false),
            lag: std::sync::atomic::AtomicI64::new(-1),
        };
        let consumer: BaseConsumer<RewindContext> = client_config(
            k,
            &[
                ("group.id", k.group_id.as_str()),
                ("enable.auto.commit", "true"),
                ("auto.commit.interval.ms", "1000"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                ("fetch.wait.max.ms", "20"),
                ("partition.assignment.strategy", "range"),
                ("statistics.interval.ms", "5000"),
            ],
        )
        .create_with_context(ctx)?;
        consumer.subscribe(topics)?;
        Ok(TelemetryConsumer { consumer })
    }

    pub fn poll(&self, timeout: Duration) -> Option<KafkaResult<InRecord>> {
        self.consumer
            .poll(timeout)
            .map(|r| r.map(|m| InRecord::from_message(&m)))
    }

    /// Records that the records of a partition up to `offset` are applied.
    pub fn applied(&self, topic: &str, partition: i32, offset: i64) {
        if let Err(e) = self.consumer.store_offset(topic, partition, offset) {
            // After a revoke the partition is no longer ours: nothing to store.
            if !matches!(
                e,
                KafkaError::StoreOffset(RDKafkaErrorCode::UnknownPartition)
            ) {
                warn!(topic, partition, error = %e, "storing an offset failed");
            }
        }
        if let Ok(mut a) = self.consumer.context().applied.lock() {
            a.insert((topic.to_string(), partition), offset + 1);
        }
        if let Ok(mut c) = self.consumer.context().catch_up.lock() {
            if c.get(&(topic.to_string(), partition))
                .is_some_and(|&h| offset + 1 >= h)
            {
                c.remove(&(topic.to_string(), partition));
            }
        }
    }

    /// Whether every assigned partition has been read up to where it stood
    /// when assigned (the windows are rebuilt).
    pub fn caught_up(&self) -> bool {
        self.consumer
            .context()
            .assigned_once
            .load(std::sync::atomic::Ordering::Acquire)
            && self
                .consumer
                .context()
                .catch_up
                .lock()
                .map(|c| c.is_empty())
                .unwrap_or(false)
    }

    /// Marks partitions with nothing to read as caught up.
    pub fn settle_empty(&self) {
        let Ok(mut c) = self.consumer.context().catch_up.lock() else {
            return;
        };
        let Ok(pos) = self.consumer.position() else {
            return;
        };
        for e in pos.elements() {
            let key = (e.topic().to_string(), e.partition());
            if let (Some(&high), Offset::Offset(p)) = (c.get(&key), e.offset()) {
                if p >= high {
                    c.remove(&key);
                }
            }
            if let Some(&high) = c.get(&key) {
                if high == 0 {
                    c.remove(&key);
                }
            }
        }
    }

    /// Records on the assigned partitions not yet applied (high watermark
    /// minus the stored offset), from librdkafka's latest statistics; `None`
    /// until the first statistics arrive.
    pub fn lag(&self) -> Option<i64> {
        let lag = self
            .consumer
            .context()
            .lag
            .load(std::sync::atomic::Ordering::Relaxed);
        (lag >= 0).then_some(lag)
    }

    pub fn commit(&self) -> KafkaResult<()> {
        self.consumer
            .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
    }
}
