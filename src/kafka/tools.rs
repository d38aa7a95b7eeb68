//! `rollbackd announce` and `rollbackd tail`: the pipeline's and the
//! on-call engineer's tools around the topics.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use super::client_config;
use crate::config::{Config, KafkaConfig};

/// Publishes one deploy event and waits for the broker's acknowledgement.
pub fn announce_kafka(
    k: &KafkaConfig,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> anyhow::Result<(i32, i64)> {
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
        Err((e, _)) => Err(anyhow::anyhow!(
            "the broker did not acknowledge the event: {e}"
        )),
    }
}

/// POSTs one deploy event to `{base}/v1/deploy-events` (plain HTTP).
pub fn announce_http(base: &str, token: Option<&str>, payload: &[u8]) -> anyhow::Result<u16> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("--url must start with http://"))?;
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let path = format!("{prefix}/v1/deploy-events");
    let mut stream = TcpStream::connect(authority)
        .map_err(|e| anyhow::anyhow!("cannot connect to {authority}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        payload.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    stream.write_all(payload)?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status: u16 = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no HTTP response from {authority}"))?;
    if !(200..300).contains(&status) {
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("").trim();
        anyhow::bail!("{base} answered {status}: {body}");
    }
    Ok(status)
}

/// Prints the commands topic as JSON lines, from now or from the beginning,
/// until interrupted.
pub fn tail(config: &Config, from_beginning: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let k = config
        .kafka
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no [kafka] table in the config"))?;
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
    let topic = &config.topics.commands;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics().iter().filter(|t| t.name() == topic.as_str()) {
        for p in t.partitions() {
            let start = if from_beginning {
                Offset::Beginning
            } else {
                Offset::End
            };
            tpl.add_partition_offset(topic, p.id(), start)?;
        }
    }
    if tpl.count() == 0 {
        anyhow::bail!("topic {topic} has no partitions (does it exist?)");
    }
    consumer.assign(&tpl)?;
    loop {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                if let Some(p) = m.payload() {
                    out.write_all(p)?;
                    out.write_all(b"\n")?;
                    out.flush()?;
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "tail: consumer error"),
            None => {}
        }
    }
}
