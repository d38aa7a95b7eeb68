//! Kafka adapters (CONTRACT §1, §5, §6): consumers for the input topics, the
//! producer for commands, audit records and dead letters, and recovery.
//!
//! librdkafka is polled on plain threads, never on the async reactor; the
//! producer side runs on tokio because delivery reports are futures.

pub mod consumer;
pub mod executor;
pub mod producer;
pub mod tools;

use rdkafka::config::ClientConfig;
use rdkafka::message::{BorrowedMessage, Headers, Message};

use crate::config::{kafka_property_string, KafkaConfig};

/// A base client config: brokers, then `[kafka.properties]` as is (so
/// security settings need no code), then `overrides`, which the adapter's
/// correctness depends on.
pub fn client_config(k: &KafkaConfig, overrides: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers);
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
