//! [`Polled`]: one librdkafka producer client, served by a thread of its
//! own whose waits for acknowledgements resolve each record's future — what
//! rdkafka's `FutureProducer` does, but waiting a second at a time rather
//! than 100 ms.
//!
//! Why: the client polls again, without waiting, for whatever is left of a
//! wait under a millisecond, so every wait ends with up to a millisecond of
//! busy polling — about 1 % of a core per client at 100 ms, paid by every
//! instance all the time, idle or not. Acknowledgements are handed over as
//! they arrive either way; only a dropped client's thread lingers up to a
//! wait before it ends.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::ClientContext;
use tokio::sync::oneshot;

/// How long each wait of the serving thread lasts.
const WAIT: Duration = Duration::from_secs(1);

/// Where a record was written (partition, offset), or why not.
pub type Ack = Result<(i32, i64), KafkaError>;

/// A record to send: its acknowledgement goes to the sender it carries.
pub type Record<'a> = BaseRecord<'a, [u8], [u8], Box<oneshot::Sender<Ack>>>;

/// Hands each acknowledgement to the future of its record.
pub struct Acks;

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<oneshot::Sender<Ack>>;

    fn delivery(&self, result: &DeliveryResult<'_>, to: Self::DeliveryOpaque) {
        let ack = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.clone()),
        };
        // The caller may have stopped waiting.
        let _ = to.send(ack);
    }
}

/// See the module docs. Dereferences to the client (transactions, flush,
/// fatal errors).
pub struct Polled {
    client: Arc<BaseProducer<Acks>>,
    stop: Arc<AtomicBool>,
}

impl Polled {
    /// A client from `config`, and its serving thread.
    pub fn create(config: &ClientConfig) -> Result<Polled, KafkaError> {
        let client = Arc::new(BaseProducer::from_config_and_context(config, Acks)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (client.clone(), stop.clone());
        std::thread::Builder::new()
            .name("producer acks".into())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    c.poll(WAIT);
                }
            })
            .map_err(|e| KafkaError::ClientCreation(e.to_string()))?;
        Ok(Polled { client, stop })
    }

    /// Queues `record`; its acknowledgement goes to the sender it carries.
    /// A full queue or a client that cannot take it is the error.
    pub fn send(&self, record: Record<'_>) -> Result<(), KafkaError> {
        self.client.send(record).map_err(|(e, _)| e)
    }
}

impl Deref for Polled {
    type Target = BaseProducer<Acks>;

    fn deref(&self) -> &BaseProducer<Acks> {
        &self.client
    }
}

impl Drop for Polled {
    /// The serving thread ends after its current wait, and lets go of the
    /// client then.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
