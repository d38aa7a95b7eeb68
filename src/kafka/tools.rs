//! The clients behind `rollbackd announce` and `rollbackd tail`: the
//! pipeline's and the on-call engineer's tools around the topics.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use super::{check_reachable, client_config, Error};
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
    let producer: FutureProducer = client_config(
        k,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("message.timeout.ms", "10000"),
        ],
    )
    .create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sent = rt.block_on(producer.send(
        FutureRecord::to(topic).key(key).payload(payload),
        Timeout::After(Duration::from_secs(10)),
    ));
    match sent {
        Ok(d) => Ok((d.partition, d.offset)),
        Err((error, _)) => Err(Error::NotAcknowledged {
            brokers: k.brokers.clone(),
            topic: topic.to_string(),
            error: error.to_string(),
        }),
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
