//! The clients behind `rollbackd announce`, `tail` and `loadgen`: the
//! pipeline's and the on-call engineer's tools around the topics.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};

use super::producer::{OutRecord, Producer, Until, TOOL_ACK_WITHIN};
use super::{check_reachable, client_config, Error, InRecord};
use crate::config::KafkaConfig;

/// Publishes one record and waits for the broker's acknowledgement: its
/// partition and offset.
pub fn announce(
    k: &KafkaConfig,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> Result<(i32, i64), Error> {
    check_reachable(k)?;
    let producer = Producer::standalone(
        "announce",
        client_config(k, &[("enable.idempotence", "true"), ("acks", "all")]),
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let record = OutRecord {
        topic: topic.to_string(),
        key: Some(key.as_bytes().to_vec()),
        payload: payload.to_vec(),
        ..OutRecord::default()
    };
    let until = Until::Deadline(Instant::now() + TOOL_ACK_WITHIN);
    match rt.block_on(producer.deliver(&[record], until)) {
        Ok(positions) => Ok(positions.first().copied().unwrap_or((-1, -1))),
        Err(error) => Err(Error::NotAcknowledged {
            brokers: k.brokers.clone(),
            topic: topic.to_string(),
            error: error.to_string(),
        }),
    }
}

/// Generated traffic (`loadgen`) to one topic: keyless, like the
/// OpenTelemetry Collector's exporter, so records spread over the
/// partitions; not waited for one by one.
pub struct Spray {
    producer: BaseProducer,
    topic: String,
    brokers: String,
}

impl Spray {
    pub fn new(k: &KafkaConfig, topic: &str) -> Result<Spray, Error> {
        check_reachable(k)?;
        let producer: BaseProducer =
            client_config(k, &[("linger.ms", "5"), ("compression.type", "zstd")]).create()?;
        Ok(Spray {
            producer,
            topic: topic.to_string(),
            brokers: k.brokers.clone(),
        })
    }

    fn refused(&self, error: impl std::fmt::Display) -> Error {
        Error::NotAcknowledged {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            error: error.to_string(),
        }
    }

    /// Queues one record (librdkafka sends it in the background).
    pub fn send(&self, payload: &[u8]) -> Result<(), Error> {
        self.producer
            .send(BaseRecord::<(), [u8]>::to(&self.topic).payload(payload))
            .map_err(|(e, _)| self.refused(e))?;
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    /// Waits until the broker took every queued record.
    pub fn flush(&self) -> Result<(), Error> {
        self.producer
            .flush(Duration::from_secs(15))
            .map_err(|e| self.refused(e))
    }
}

/// Hands each record of `topic` to `print`, from now or from the
/// beginning, until interrupted or until `print` printed `limit` of them
/// (it says whether it printed one).
pub fn tail(
    k: &KafkaConfig,
    topic: &str,
    from_beginning: bool,
    limit: Option<u64>,
    mut print: impl FnMut(&[u8]) -> std::io::Result<bool>,
) -> Result<(), Error> {
    check_reachable(k)?;
    // Assign-only: never joins or commits in this group.
    let group = format!("{}-tail", k.group_id);
    let consumer: BaseConsumer = client_config(
        k,
        &[
            ("group.id", group.as_str()),
            ("enable.auto.commit", "false"),
            ("fetch.wait.max.ms", "50"),
        ],
    )
    .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let start = if from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), start)?;
        }
    }
    if tpl.count() == 0 {
        return Err(Error::NoPartitions(topic.to_string()));
    }
    consumer.assign(&tpl)?;
    let mut printed = 0u64;
    while limit.is_none_or(|l| printed < l) {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                if let Some(p) = m.payload() {
                    if print(p)? {
                        printed += 1;
                    }
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "tail: consumer error"),
            None => {}
        }
    }
    Ok(())
}

/// Hands `each` every record of `topic` from where consumer group
/// `group_id` stands (its committed offsets; the beginning where it has
/// none) to the topic's end as of now; how many. Joins no group and
/// commits nothing: an assign-only consumer with auto commit off only
/// looks the group's offsets up.
pub fn read_from_committed(
    k: &KafkaConfig,
    group_id: &str,
    topic: &str,
    mut each: impl FnMut(InRecord) -> std::io::Result<()>,
) -> Result<u64, Error> {
    let consumer: BaseConsumer = client_config(
        k,
        &[
            ("group.id", group_id),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("fetch.wait.max.ms", "50"),
        ],
    )
    .create()?;
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut partitions = TopicPartitionList::new();
    for t in md.topics().iter().filter(|m| m.name() == topic) {
        for p in t.partitions() {
            partitions.add_partition(topic, p.id());
        }
    }
    if partitions.count() == 0 {
        return Err(Error::NoPartitions(topic.to_string()));
    }
    let committed = consumer.committed_offsets(partitions, timeout)?;
    let mut assign = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for e in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(topic, e.partition(), timeout)?;
        let from = match e.offset() {
            Offset::Offset(o) => o.max(low),
            _ => low,
        };
        if from < high {
            assign.add_partition_offset(topic, e.partition(), Offset::Offset(from))?;
            ends.insert(e.partition(), high);
        }
    }
    let mut read = 0u64;
    if ends.is_empty() {
        return Ok(read);
    }
    consumer.assign(&assign)?;
    // The end: every partition read up to its high watermark, and nothing
    // more in hand (tansu 0.6 reports a watermark inside the last batch,
    // whose other records follow).
    let mut next: std::collections::HashMap<i32, i64> = Default::default();
    let mut last_progress = std::time::Instant::now();
    loop {
        let m = match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::warn!(topic, error = %e, "consumer error");
                continue;
            }
            None => {
                let ends = ends.iter().map(|(&p, &high)| (p, high));
                if super::behind(&consumer, topic, ends, |p| next.get(&p).copied())? == 0 {
                    return Ok(read);
                }
                if last_progress.elapsed() > Duration::from_secs(30) {
                    return Err(Error::Stalled(topic.to_string()));
                }
                continue;
            }
        };
        last_progress = std::time::Instant::now();
        let rec = InRecord::from_message(&m);
        drop(m);
        next.insert(rec.partition, rec.offset + 1);
        read += 1;
        each(rec)?;
    }
}
