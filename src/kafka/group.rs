//! A consumer in a consumer group that knows its assignment: which
//! partitions it holds, where each new one starts, and when it has read
//! each one up to where the partition ended when it was assigned.
//!
//! Two starts:
//! - [`Start::Committed`] (intake over the raw telemetry): a partition
//!   resumes at the group's committed offset; one the group never committed
//!   starts at `now − lookback` (by timestamp lookup), so a new deployment
//!   reads the telemetry its windows need and no more;
//! - [`Start::Rewind`] (the owner over the evidence topic): every newly
//!   assigned partition starts at `now − lookback`, the longest window: the
//!   new owner rebuilds its keys' windows from the evidence (each raw
//!   record counts once whatever was read before).
//!
//! With a stable instance id the member is static (`group.instance.id`,
//! KIP-345): restarted with the same id it gets its partitions back at
//! once, with no rebalance.
//!
//! Whoever holds a [`Group`] must poll it at least every
//! `max.poll.interval.ms` (5 minutes by default); the loops here never
//! block longer than one batch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{info, warn};

use super::{client_config_with, InRecord};
use crate::config::KafkaConfig;
use crate::time::Timestamp;

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a newly assigned partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Committed,
    Rewind,
}

/// One assigned partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The partition's end when it was assigned: read up to here, it is
    /// caught up.
    pub end: i64,
    /// The next offset to read (as far as this member knows).
    pub next: i64,
    /// The group's committed offset when it was assigned, if any: what
    /// the previous holder had finished with.
    pub committed: Option<i64>,
}

impl Held {
    pub fn caught_up(&self) -> bool {
        self.next >= self.end
    }
}

/// Called with the partitions being revoked, before their offsets are
/// committed (intake hands over what it keeps of them).
pub type RevokeHook = Box<dyn FnMut(&[(String, i32)]) + Send>;

/// What the rebalance callbacks keep.
pub struct GroupContext {
    on_revoke: Mutex<Option<RevokeHook>>,
    start: Start,
    lookback: Duration,
    /// (topic, partition) → held.
    held: Mutex<BTreeMap<(String, i32), Held>>,
    /// Bumped at every assignment change.
    generation: AtomicI64,
    /// Records not yet consumed on the assigned partitions (-1: unknown).
    lag: AtomicI64,
    name: &'static str,
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        // Assigned partitions report their lag; others (and the internal
        // partition -1) report -1.
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag)
            .sum();
        self.lag.store(lag, Ordering::Relaxed);
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        base: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let (assign, committed) = self.starts(base, tpl);
                let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                held.clear();
                for e in assign.elements() {
                    let (low, high) = base
                        .fetch_watermarks(e.topic(), e.partition(), METADATA_TIMEOUT)
                        .unwrap_or((0, 0));
                    let next = match e.offset() {
                        Offset::Offset(o) => o,
                        Offset::Beginning => low,
                        _ => high,
                    };
                    let committed = committed.as_ref().and_then(|c| {
                        match c.find_partition(e.topic(), e.partition())?.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        }
                    });
                    held.insert(
                        (e.topic().to_string(), e.partition()),
                        Held {
                            end: high,
                            next,
                            committed,
                        },
                    );
                }
                drop(held);
                info!(
                    group = self.name,
                    partitions = tpl.count(),
                    "partitions assigned"
                );
                if let Err(e) = base.assign(&assign) {
                    warn!(group = self.name, error = %e, "assigning partitions failed");
                }
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                info!(
                    group = self.name,
                    partitions = tpl.count(),
                    "partitions revoked"
                );
                let revoked: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                if let Some(hook) = self
                    .on_revoke
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                {
                    hook(&revoked);
                }
                if self.start == Start::Committed {
                    let _ = base.commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
                }
                let _ = base.unassign();
                self.held.lock().unwrap_or_else(|p| p.into_inner()).clear();
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            other => {
                warn!(group = self.name, error = ?other, "rebalance error");
                let _ = base.unassign();
                self.held.lock().unwrap_or_else(|p| p.into_inner()).clear();
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

impl GroupContext {
    /// The assignment with each partition's start offset, and the group's
    /// committed offsets.
    fn starts(
        &self,
        base: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> (TopicPartitionList, Option<TopicPartitionList>) {
        let mut assign = tpl.clone();
        let mut rewind = TopicPartitionList::new();
        let since = Timestamp::now_wall()
            .saturating_sub(crate::time::Duration(self.lookback.as_nanos() as i64))
            .nanos()
            / 1_000_000;
        let committed = base.committed_offsets(tpl.clone(), METADATA_TIMEOUT).ok();
        let start_at_committed = match self.start {
            Start::Committed => committed.as_ref(),
            Start::Rewind => None,
        };
        for e in tpl.elements() {
            let known = start_at_committed.and_then(|c| {
                match c.find_partition(e.topic(), e.partition())?.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                }
            });
            match known {
                Some(o) => {
                    let _ =
                        assign.set_partition_offset(e.topic(), e.partition(), Offset::Offset(o));
                }
                None => {
                    let _ = rewind.add_partition_offset(
                        e.topic(),
                        e.partition(),
                        Offset::Offset(since),
                    );
                }
            }
        }
        if rewind.count() > 0 {
            match base.offsets_for_times(rewind.clone(), METADATA_TIMEOUT) {
                Ok(found) => {
                    for e in found.elements() {
                        // No record at or after the time (End), or a broker
                        // that answers nothing useful: from the beginning,
                        // old records are outside every window anyway.
                        let off = match e.offset() {
                            Offset::Offset(o) if o >= 0 => Offset::Offset(o),
                            Offset::End => Offset::End,
                            _ => Offset::Beginning,
                        };
                        let _ = assign.set_partition_offset(e.topic(), e.partition(), off);
                    }
                }
                Err(err) => {
                    warn!(group = self.name, error = %err, "timestamp lookup failed; reading the partitions from their beginning");
                    for e in rewind.elements() {
                        let _ = assign.set_partition_offset(
                            e.topic(),
                            e.partition(),
                            Offset::Beginning,
                        );
                    }
                }
            }
        }
        (assign, committed)
    }
}

/// A group consumer. See the module docs.
pub struct Group {
    consumer: BaseConsumer<GroupContext>,
    /// The topics it consumes.
    topics: Vec<String>,
    /// The last look at the whole group while this member held nothing:
    /// when, and the sum of the group's committed offsets then.
    starving: Mutex<Option<(std::time::Instant, i64)>>,
}

/// How often a member that holds nothing looks at the whole group.
const STARVED_CHECK: Duration = Duration::from_secs(5);
/// How long each of those looks may wait for the broker: the member's
/// poll loop waits meanwhile (a broker away fails the first at once).
const BACKLOG_TIMEOUT: Duration = Duration::from_secs(1);

/// How a [`Group`] is set up.
pub struct GroupSpec<'a> {
    /// For logs: "intake" or "owner".
    pub name: &'static str,
    pub group_id: &'a str,
    pub topics: &'a [&'a str],
    pub start: Start,
    pub lookback: Duration,
    /// `group.instance.id` (static membership), if the instance has a
    /// stable id.
    pub instance_id: Option<&'a str>,
    /// Whether the consumer commits its own offsets (intake) or a
    /// transaction does (the owner).
    pub auto_commit: bool,
}

impl Group {
    pub fn new(k: &KafkaConfig, spec: &GroupSpec<'_>) -> KafkaResult<Group> {
        let ctx = GroupContext {
            on_revoke: Mutex::new(None),
            start: spec.start,
            lookback: spec.lookback,
            held: Mutex::new(BTreeMap::new()),
            generation: AtomicI64::new(0),
            lag: AtomicI64::new(-1),
            name: spec.name,
        };
        let mut overrides = vec![
            ("group.id", spec.group_id),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("isolation.level", "read_committed"),
            // Range: cooperative rebalancing does not complete on every
            // Kafka-compatible broker.
            ("partition.assignment.strategy", "range"),
            ("statistics.interval.ms", "5000"),
        ];
        overrides.push((
            "enable.auto.commit",
            if spec.auto_commit { "true" } else { "false" },
        ));
        if let Some(id) = spec.instance_id {
            overrides.push(("group.instance.id", id));
        }
        // A dead member's partitions move after this; a member that does
        // not poll within max.poll.interval.ms leaves.
        let defaults = [
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "2000"),
            ("fetch.wait.max.ms", "50"),
            ("auto.commit.interval.ms", "1000"),
        ];
        let consumer: BaseConsumer<GroupContext> =
            client_config_with(k, &defaults, &overrides).create_with_context(ctx)?;
        consumer.subscribe(spec.topics)?;
        Ok(Group {
            consumer,
            topics: spec.topics.iter().map(|t| t.to_string()).collect(),
            starving: Mutex::new(None),
        })
    }

    pub fn poll(&self, timeout: Duration) -> Option<KafkaResult<InRecord>> {
        let rec = self
            .consumer
            .poll(super::poll_timeout(timeout))
            .map(|r| r.map(|m| InRecord::from_message(&m)));
        if let Some(Ok(r)) = &rec {
            let mut held = self.ctx().held.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = held.get_mut(&(r.topic.clone(), r.partition)) {
                h.next = h.next.max(r.offset + 1);
            }
        }
        rec
    }

    /// Sets what is called when partitions are revoked.
    pub fn on_revoke(&self, hook: RevokeHook) {
        *self
            .ctx()
            .on_revoke
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    fn ctx(&self) -> &GroupContext {
        self.consumer.context()
    }

    /// What this member holds now.
    pub fn held(&self) -> BTreeMap<(String, i32), Held> {
        self.ctx()
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Bumped at every assignment change: compare to notice one.
    pub fn generation(&self) -> i64 {
        self.ctx().generation.load(Ordering::Acquire)
    }

    /// Marks partitions whose position reached their end (or that are
    /// empty) as caught up, from the consumer's own positions.
    pub fn settle(&self) {
        let Ok(pos) = self.consumer.position() else {
            return;
        };
        let mut held = self.ctx().held.lock().unwrap_or_else(|p| p.into_inner());
        for e in pos.elements() {
            if let (Some(h), Offset::Offset(p)) = (
                held.get_mut(&(e.topic().to_string(), e.partition())),
                e.offset(),
            ) {
                h.next = h.next.max(p);
            }
        }
    }

    /// Records on the assigned partitions not yet consumed, from
    /// librdkafka's latest statistics; `None` until they arrive.
    /// Whether this member holds no partition while the group as a whole
    /// leaves records unread: its committed offsets did not move in the
    /// last `STARVED_CHECK` and records wait behind them. A member that
    /// holds nothing because others consume everything sees the offsets
    /// move; a group that assigns nobody anything (a coordinator that never
    /// completes a rebalance) starves, and so is everyone's liveness.
    pub fn starved(&self) -> bool {
        if !self.held().is_empty() {
            *self.starving.lock().unwrap_or_else(|p| p.into_inner()) = None;
            return false;
        }
        let mut last = self.starving.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|(at, _)| at.elapsed() < STARVED_CHECK) {
            return false;
        }
        let Some((committed, waiting)) = self.group_backlog() else {
            return false;
        };
        let before = last.replace((std::time::Instant::now(), committed));
        waiting > 0 && before.is_some_and(|(_, c)| c == committed)
    }

    /// For the whole group: the sum of its committed offsets over every
    /// partition of its topics, and how many records wait behind them.
    fn group_backlog(&self) -> Option<(i64, i64)> {
        let mut tpl = TopicPartitionList::new();
        for topic in &self.topics {
            let md = self
                .consumer
                .fetch_metadata(Some(topic), BACKLOG_TIMEOUT)
                .ok()?;
            for t in md.topics().iter().filter(|t| t.name() == topic) {
                for p in t.partitions() {
                    tpl.add_partition(topic, p.id());
                }
            }
        }
        let committed = self.consumer.committed_offsets(tpl, BACKLOG_TIMEOUT).ok()?;
        let (mut sum, mut waiting) = (0, 0);
        for e in committed.elements() {
            let (low, high) = self
                .consumer
                .fetch_watermarks(e.topic(), e.partition(), BACKLOG_TIMEOUT)
                .ok()?;
            let at = match e.offset() {
                Offset::Offset(o) => o,
                _ => low,
            };
            sum += at;
            waiting += (high - at).max(0);
        }
        Some((sum, waiting))
    }

    pub fn lag(&self) -> Option<i64> {
        let lag = self.ctx().lag.load(Ordering::Relaxed);
        (lag >= 0).then_some(lag)
    }

    /// Stores `offset` (the last one applied) of a partition for the next
    /// commit.
    pub fn store(&self, topic: &str, partition: i32, offset: i64) {
        if let Err(e) = self.consumer.store_offset(topic, partition, offset) {
            // After a revoke the partition is no longer ours.
            if !matches!(
                e,
                rdkafka::error::KafkaError::StoreOffset(
                    rdkafka::error::RDKafkaErrorCode::UnknownPartition
                )
            ) {
                warn!(topic, partition, error = %e, "storing an offset failed");
            }
        }
    }

    /// Commits what was stored (at shutdown); nothing stored is fine.
    pub fn commit(&self) -> KafkaResult<()> {
        match self
            .consumer
            .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        {
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::error::RDKafkaErrorCode::NoOffset,
            )) => Ok(()),
            other => other,
        }
    }

    /// The group metadata a transaction commits offsets with.
    pub fn group_metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata> {
        self.consumer.group_metadata()
    }

    /// The group's committed offset of one partition (0 if none), as a
    /// list to commit again.
    pub fn committed_or_zero(&self, topic: &str, partition: i32) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let offset = self
            .consumer
            .committed_offsets(tpl, METADATA_TIMEOUT)
            .ok()
            .and_then(|c| match c.find_partition(topic, partition)?.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(0);
        let mut out = TopicPartitionList::new();
        let _ = out.add_partition_offset(topic, partition, Offset::Offset(offset));
        out
    }

    /// How many partitions `topic` has.
    pub fn partitions(&self, topic: &str) -> KafkaResult<u32> {
        let md = self
            .consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len() as u32)
            .sum())
    }
}
