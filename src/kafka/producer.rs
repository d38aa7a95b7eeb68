//! The producer side: commands to `rollback-commands` (key = service,
//! header `command_id`), audit records to `rollbackd-audit`, malformed
//! records to `rollbackd-dlq` with headers `source_topic`, `partition`,
//! `offset`, `error`.
//!
//! Everything goes through one idempotent producer with `acks=all` and a
//! short linger: decisions are latency-critical and rare.
//!
//! Commands are *claimed*. Several instances (one consumer group) may reach
//! the same decision at about the same moment — a release cascade or an
//! alert is seen by all of them, and telemetry without a key is spread over
//! every partition — and a command id must reach the commands topic once.
//! So before producing, an instance makes sure it has read the commands
//! topic up to its current end and produces only if the command is not
//! there. Instances claim one after another, not together: the one holding
//! partition 0 of the spans topic at once, each other one after a delay set
//! by the lowest spans partition it holds ([`claim_delay`]: 500 ms plus
//! 100 ms per partition index; 3 s without a partition), so that two
//! instances deciding the same thing at the same moment — an alert that
//! Alertmanager's HA pair delivered to two of them — claim at least 100 ms
//! apart, and the later one finds the earlier one's command on the topic.
//! (Two instances could still both emit if one decided later than another
//! by about the difference of their delays; Kafka transactions would close
//! that gap, but they are not available on every Kafka-compatible broker.)
//!
//! A command counts as emitted only when the broker acknowledged it. A
//! failure is retried with the same `command_id`, and the claim makes the
//! retry safe when the failed attempt was in fact persisted. While a command
//! waits longer than [`STUCK_AFTER`], the agent reports itself not ready.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::config::{KafkaConfig, Topics};
use crate::model::{AuditRecord, Command};
use crate::sinks::audit_file::AuditFile;
use crate::sinks::{CommandOut, Outgoing, Publisher, PublisherState, QUEUE};
use crate::time::Timestamp;

/// How long an instance that does not claim first waits at least.
pub const FOLLOWER_DELAY: Duration = Duration::from_millis(500);

/// How long an instance waits before claiming a command, given the lowest
/// spans partition it holds (`None`: none).
pub fn claim_delay(lowest_partition: Option<u32>) -> Duration {
    const MAX: Duration = Duration::from_secs(3);
    match lowest_partition {
        Some(0) => Duration::ZERO,
        Some(p) => (FOLLOWER_DELAY + Duration::from_millis(100) * p).min(MAX),
        None => MAX,
    }
}

/// The producer settings the adapter relies on.
pub fn producer(k: &KafkaConfig) -> rdkafka::error::KafkaResult<FutureProducer> {
    super::client_config(
        k,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "1"),
            ("message.timeout.ms", "15000"),
            ("compression.type", "zstd"),
        ],
    )
    .create()
}

/// Starts the publisher task on `rt`. It ends when every [`Publisher`]
/// handle is dropped, after flushing what is in flight.
pub fn spawn(
    rt: &tokio::runtime::Handle,
    producer: FutureProducer,
    topics: Topics,
    audit_file: Option<AuditFile>,
) -> (Publisher, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    // No spans partition until the group assigns some: claim last.
    let state = Arc::new(PublisherState {
        claim_slot: Arc::new(AtomicI64::new(-1)),
        ..Default::default()
    });
    let task = rt.spawn(run(producer, topics, rx, state.clone(), audit_file));
    (Publisher { tx, state }, task)
}

async fn run(
    producer: FutureProducer,
    topics: Topics,
    mut rx: mpsc::Receiver<Outgoing>,
    state: Arc<PublisherState>,
    mut audit_file: Option<AuditFile>,
) {
    let topics = Arc::new(topics);
    let mut inflight: JoinSet<Option<Emitted>> = JoinSet::new();
    // A command this instance emitted: count it, and publish its audit record.
    let on_emitted = |e: Emitted,
                      inflight: &mut JoinSet<Option<Emitted>>,
                      audit_file: &mut Option<AuditFile>| {
        state.emitted(&e.0, &e.1);
        for a in e.1 {
            if let Some(f) = audit_file.as_mut() {
                f.write(&a);
            }
            inflight.spawn(deliver_other(
                producer.clone(),
                topics.clone(),
                state.clone(),
                Outgoing::Audit(a),
            ));
        }
    };
    loop {
        tokio::select! {
            o = rx.recv() => {
                let Some(o) = o else { break };
                if let (Outgoing::Audit(a), Some(f)) = (&o, audit_file.as_mut()) {
                    f.write(a);
                }
                let (p, t, s) = (producer.clone(), topics.clone(), state.clone());
                match o {
                    Outgoing::Command(out) => {
                        let span = tracing::info_span!("emit_command", command_id = %out.command.command_id, deploy_id = %out.command.deploy_id);
                        inflight.spawn(tracing::Instrument::instrument(
                            deliver_command(p, t, s, *out),
                            span,
                        ));
                    }
                    other => {
                        inflight.spawn(deliver_other(p, t, s, other));
                    }
                }
            }
            Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                if let Ok(Some(e)) = done {
                    on_emitted(e, &mut inflight, &mut audit_file);
                }
            }
        }
    }
    while let Some(done) = inflight.join_next().await {
        if let Ok(Some(e)) = done {
            on_emitted(e, &mut inflight, &mut audit_file);
        }
    }
    if let Err(e) = producer.flush(Timeout::After(Duration::from_secs(10))) {
        error!(error = %e, "producer flush failed at shutdown");
    }
}

async fn deliver_command(
    producer: FutureProducer,
    topics: Arc<Topics>,
    state: Arc<PublisherState>,
    out: CommandOut,
) -> Option<Emitted> {
    let CommandOut {
        command: cmd,
        consumed_at,
        audits,
    } = out;
    let mut backoff = Duration::from_millis(20);
    let started = Instant::now();
    // Instances claim one after another (module docs).
    let slot = state.claim_slot.load(Ordering::Relaxed);
    let delay = claim_delay(u32::try_from(slot).ok());
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    loop {
        if state.on_topic.contains_key(&cmd.command_id) {
            state.pending_commands.remove(&cmd.command_id);
            info!(command_id = %cmd.command_id, deploy_id = %cmd.deploy_id, "command already on the commands topic; not sent again");
            return None;
        }
        match claim(&producer, &topics, &state, &cmd).await {
            Ok(sent) => {
                state.pending_commands.remove(&cmd.command_id);
                state.on_topic.insert(cmd.command_id.clone(), ());
                if sent {
                    state.commands_acked.fetch_add(1, Ordering::Relaxed);
                    info!(
                        command_id = %cmd.command_id,
                        deploy_id = %cmd.deploy_id,
                        service = %cmd.service,
                        action = cmd.action.as_str(),
                        trigger = cmd.trigger.as_str(),
                        took_ms = started.elapsed().as_millis() as u64,
                        decision_latency_us = consumed_at.map(|t| t.elapsed().as_micros() as u64),
                        "command acknowledged"
                    );
                    return Some(Emitted(cmd, audits));
                }
                info!(command_id = %cmd.command_id, deploy_id = %cmd.deploy_id, "command found on the commands topic; not sent again");
                return None;
            }
            Err(e) => {
                state.delivery_failures.fetch_add(1, Ordering::Relaxed);
                warn!(command_id = %cmd.command_id, error = %e, retry_in_ms = backoff.as_millis() as u64, "command delivery failed; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The claim: make sure the control consumer has read the commands topic
/// up to its current end, and produce the command (idempotent, `acks=all`)
/// only if it is not there. Returns whether this call emitted it.
async fn claim(
    producer: &FutureProducer,
    topics: &Arc<Topics>,
    state: &Arc<PublisherState>,
    cmd: &Command,
) -> anyhow::Result<bool> {
    let (p, topic) = (producer.clone(), topics.commands.clone());
    let ends = tokio::task::spawn_blocking(move || end_offsets(&p, &topic))
        .await
        .map_err(|e| anyhow::anyhow!("claim task failed: {e}"))??;
    let deadline = Instant::now() + Duration::from_secs(5);
    let ends: Vec<((String, i32), i64)> = ends
        .into_iter()
        .map(|(p, end)| ((topics.commands.clone(), p), end))
        .collect();
    while !ends
        .iter()
        .all(|(key, end)| state.control_next.get(key).map_or(0, |n| *n) >= *end)
    {
        if Instant::now() > deadline {
            anyhow::bail!("the commands topic was not read to its end within 5s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    if state.on_topic.contains_key(&cmd.command_id) {
        return Ok(false);
    }
    let mut cmd = cmd.clone();
    cmd.issued_at = Timestamp::now_wall();
    let payload = serde_json::to_vec(&cmd)?;
    let headers = OwnedHeaders::new().insert(Header {
        key: "command_id",
        value: Some(cmd.command_id.as_bytes()),
    });
    producer
        .send(
            FutureRecord::to(&topics.commands)
                .key(&cmd.service)
                .payload(&payload)
                .headers(headers),
            Timeout::After(Duration::from_secs(5)),
        )
        .await
        .map_err(|(e, _)| e)?;
    Ok(true)
}

/// The end (high watermark) of every partition of `topic`.
fn end_offsets(producer: &FutureProducer, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
    let client = producer.client();
    let md = client.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let mut ends = Vec::new();
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            let (_, high) = client.fetch_watermarks(topic, p.id(), Duration::from_secs(5))?;
            ends.push((p.id(), high));
        }
    }
    Ok(ends)
}

async fn deliver_other(
    producer: FutureProducer,
    topics: Arc<Topics>,
    state: Arc<PublisherState>,
    o: Outgoing,
) -> Option<Emitted> {
    // Audit records and dead letters are retried a few times, then counted
    // as lost: they must never hold back commands.
    for attempt in 0..5u32 {
        let result = match &o {
            Outgoing::Audit(a) => {
                let payload = serde_json::to_vec(a).unwrap_or_default();
                let key = a.service.clone().unwrap_or_default();
                producer
                    .send(
                        FutureRecord::to(&topics.audit).key(&key).payload(&payload),
                        Timeout::After(Duration::from_secs(5)),
                    )
                    .await
            }
            Outgoing::DeadLetter {
                source_topic,
                partition,
                offset,
                error,
                key,
                payload,
            } => {
                let (p, off) = (partition.to_string(), offset.to_string());
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "source_topic",
                        value: Some(source_topic.as_bytes()),
                    })
                    .insert(Header {
                        key: "partition",
                        value: Some(p.as_bytes()),
                    })
                    .insert(Header {
                        key: "offset",
                        value: Some(off.as_bytes()),
                    })
                    .insert(Header {
                        key: "error",
                        value: Some(error.as_bytes()),
                    });
                let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topics.dead_letter)
                    .payload(payload.as_slice())
                    .headers(headers);
                if let Some(k) = key {
                    rec = rec.key(k.as_slice());
                }
                producer
                    .send(rec, Timeout::After(Duration::from_secs(5)))
                    .await
            }
            Outgoing::Command(..) => return None,
        };
        match result {
            Ok(_) => return None,
            Err((e, _)) => {
                debug!(attempt, error = %e, "audit or dead-letter delivery failed");
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
    }
    state.audit_failures.fetch_add(1, Ordering::Relaxed);
    error!("audit or dead-letter record dropped after 5 failed deliveries");
    None
}

/// A command this instance emitted, with the audit records of its emission.
struct Emitted(Command, Vec<AuditRecord>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_claim_one_after_another() {
        assert_eq!(claim_delay(Some(0)), Duration::ZERO);
        assert_eq!(claim_delay(Some(1)), Duration::from_millis(600));
        assert_eq!(claim_delay(Some(2)), Duration::from_millis(700));
        assert_eq!(claim_delay(Some(400)), Duration::from_secs(3));
        assert_eq!(claim_delay(None), Duration::from_secs(3));
    }
}
