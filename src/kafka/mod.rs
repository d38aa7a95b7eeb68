//! Kafka adapters (`docs/formats.md#topics`, `docs/guarantees.md#start-up-and-recovery`, `docs/guarantees.md#bad-input`): consumers for the input topics, the
//! one producer every stage sends with ([`producer::Producer`], which
//! rebuilds its client after a fatal error), and recovery.
//!
//! librdkafka is polled on plain threads, never on the async reactor; the
//! producer side runs on tokio because delivery reports are futures.

pub mod consumer;
pub mod group;
pub mod polled;
pub mod producer;
pub mod tools;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers, Message};

use crate::config::{kafka_property_string, KafkaConfig};

/// A base client config: brokers, then `[kafka.properties]` as is (so
/// security settings need no code), then `overrides`, which the adapter's
/// correctness depends on.
pub fn client_config(k: &KafkaConfig, overrides: &[(&str, &str)]) -> ClientConfig {
    client_config_with(k, &[], overrides)
}

/// [`client_config`] with `defaults` first, which `[kafka.properties]` may
/// change.
pub fn client_config_with(
    k: &KafkaConfig,
    defaults: &[(&str, &str)],
    overrides: &[(&str, &str)],
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers);
    for (key, v) in defaults {
        c.set(*key, *v);
    }
    for (key, v) in &k.properties {
        if let Some(v) = kafka_property_string(v) {
            c.set(key, v);
        }
    }
    for (key, v) in overrides {
        c.set(*key, *v);
    }
    c
}

/// A consumer's poll timeout rounded up to whole milliseconds. librdkafka
/// waits in whole milliseconds, and the client polls again without waiting
/// for whatever is left under one: a timeout with a fraction of a
/// millisecond (one measured to a deadline) would end every wait with up
/// to a millisecond of busy polling — 5 % of a core for the owner's 20 ms
/// polls with nothing to read.
fn poll_timeout(timeout: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_millis(timeout.as_nanos().div_ceil(1_000_000) as u64)
}

/// How many partitions of `topic` a reader has not yet read up to the
/// given end offsets: judged by the consumer's position, not by the last
/// record — a transaction's commit marker takes an offset but is no record
/// — or by `read` (the offset after the last record read), whichever is
/// further.
pub fn behind<C: Consumer>(
    consumer: &C,
    topic: &str,
    ends: impl Iterator<Item = (i32, i64)>,
    read: impl Fn(i32) -> Option<i64>,
) -> KafkaResult<usize> {
    let positions = consumer.position()?;
    Ok(ends
        .filter(|&(p, end)| {
            let at = positions
                .find_partition(topic, p)
                .and_then(|e| e.offset().to_raw())
                .unwrap_or(-1);
            at.max(read(p).unwrap_or(-1)) < end
        })
        .count())
}

/// The brokers did not answer: the message names the address and the
/// config key it came from, so a person knows what to fix. (The client's
/// error is part of the message, not a `source`: its own chain would
/// repeat it.)
#[derive(Debug, thiserror::Error)]
#[error("cannot reach Kafka at {brokers} (kafka.brokers): {error}")]
pub struct Unreachable {
    pub brokers: String,
    pub error: String,
}

/// What can go wrong talking to Kafka, said so that a person can act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no [kafka] table in the config")]
    NoKafka,
    #[error(transparent)]
    Unreachable(#[from] Unreachable),
    #[error(
        "Kafka at {brokers} (kafka.brokers) did not acknowledge the record on {topic}: {error}"
    )]
    NotAcknowledged {
        brokers: String,
        topic: String,
        error: String,
    },
    #[error("topic {0} has no partitions (does it exist?)")]
    NoPartitions(String),
    #[error("topic {0} was not read to its end within 30 s")]
    Stalled(String),
    #[error("{0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// How long [`check_reachable`] waits for the brokers.
pub const REACH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Fails with [`Unreachable`] unless the brokers answer a metadata request
/// within [`REACH_TIMEOUT`].
pub fn check_reachable(k: &KafkaConfig) -> Result<(), Unreachable> {
    let unreachable = |error: rdkafka::error::KafkaError| Unreachable {
        brokers: k.brokers.clone(),
        error: error.to_string(),
    };
    let probe: rdkafka::consumer::BaseConsumer =
        client_config(k, &[]).create().map_err(unreachable)?;
    rdkafka::consumer::Consumer::fetch_metadata(&probe, None, REACH_TIMEOUT)
        .map(|_| ())
        .map_err(unreachable)
}

/// One consumed record, owned, so it can cross to a decoding thread.
#[derive(Debug, Clone)]
pub struct InRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch, when the broker gave one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl InRecord {
    pub fn from_message(m: &BorrowedMessage<'_>) -> InRecord {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        InRecord {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn poll_timeouts_are_whole_milliseconds_rounded_up() {
        assert_eq!(super::poll_timeout(Duration::ZERO), Duration::ZERO);
        assert_eq!(
            super::poll_timeout(Duration::from_millis(20)),
            Duration::from_millis(20)
        );
        assert_eq!(
            super::poll_timeout(Duration::from_micros(19_001)),
            Duration::from_millis(20)
        );
        assert_eq!(
            super::poll_timeout(Duration::from_nanos(1)),
            Duration::from_millis(1)
        );
    }
}
