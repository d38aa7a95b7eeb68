//! [`ControlReader`]: the control topics — `deploy-events`,
//! `rollback-results`, `rollback-commands`, `rollbackd-admin` — read whole
//! by every instance (partitions assigned, never group-subscribed, never
//! committed; `read_committed`, so a command in a transaction that did not
//! commit is never seen). On start it reads each topic up to its end — the
//! recovery of `docs/guarantees.md#start-up-and-recovery` — then follows them. The group consumers of the
//! two stages are in [`super::group`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tracing::warn;

use super::{behind, client_config, InRecord};
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
                ("isolation.level", "read_committed"),
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
                    let ends = targets.iter().map(|(&p, &h)| (p, h));
                    let behind = behind(&self.consumer, topic, ends, |p| next.get(&p).copied())?;
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
            .poll(super::poll_timeout(timeout))
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
                    let ends = ends.iter().copied().filter(|&(_, high)| high > 0);
                    let read = |p| self.positions.get(&(topic.to_string(), p)).copied();
                    if behind(&self.consumer, topic, ends, read)? == 0 {
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
