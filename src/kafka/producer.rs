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

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::config::{KafkaConfig, Topics};
use crate::model::{AuditRecord, Command};
use crate::time::Timestamp;

/// A command unacknowledged for this long makes the agent not ready.
pub const STUCK_AFTER: Duration = Duration::from_secs(3);

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

/// Records waiting for the publisher. Bounded: when it fills, the engine
/// thread that produced the outputs blocks, which stops consumption — back
/// pressure rather than unbounded memory.
const QUEUE: usize = 4096;

/// What the agent publishes.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A command to emit (see [`CommandOut`]).
    Command(Box<CommandOut>),
    Audit(AuditRecord),
    DeadLetter {
        source_topic: String,
        partition: i32,
        offset: i64,
        error: String,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
    },
}

/// A command, when the record that decided it was consumed (for the
/// decision latency) if a record did, and the audit records of its emission
/// (`command`, and `breaker` if it opened the breaker), published only if
/// this instance emits the command.
#[derive(Debug, Clone)]
pub struct CommandOut {
    pub command: Command,
    pub consumed_at: Option<Instant>,
    pub audits: Vec<AuditRecord>,
}

/// Shared producer state, read by readiness and metrics.
#[derive(Debug, Default)]
pub struct PublisherState {
    /// Commands handed to the producer and not yet acknowledged, by id,
    /// with when they were first handed over.
    pub pending_commands: DashMap<String, Instant>,
    /// Command ids read back from the commands topic (by the control
    /// consumer): the record of what was emitted.
    pub on_topic: DashMap<String, ()>,
    /// Per control topic and partition, the next offset the control
    /// consumer will apply: how far `on_topic` (the commands topic) and the
    /// engine's view of every control topic are complete.
    pub control_next: DashMap<(String, i32), i64>,
    pub commands_acked: AtomicU64,
    pub delivery_failures: AtomicU64,
    pub audit_failures: AtomicU64,
    /// The lowest partition of the spans topic this instance holds (-1:
    /// none), which sets its [`claim_delay`]; 0 without Kafka.
    pub claim_slot: Arc<AtomicI64>,
    /// Called for every command this instance emitted (not for one found on
    /// the topic already), with its audit record.
    pub on_emitted: std::sync::OnceLock<EmitHook>,
}

/// See [`PublisherState::on_emitted`].
#[derive(Clone)]
pub struct EmitHook(pub Arc<EmitFn>);

/// What [`EmitHook`] calls.
pub type EmitFn = dyn Fn(&Command, &[AuditRecord]) + Send + Sync;

impl std::fmt::Debug for EmitHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmitHook")
    }
}

impl PublisherState {
    fn emitted(&self, cmd: &Command, audits: &[AuditRecord]) {
        if let Some(h) = self.on_emitted.get() {
            (h.0)(cmd, audits);
        }
    }

    /// Whether every command was acknowledged (or is young enough).
    pub fn can_emit(&self) -> bool {
        self.pending_commands
            .iter()
            .all(|e| e.value().elapsed() < STUCK_AFTER)
    }
}

/// A cheap, cloneable handle to the publisher task.
#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Outgoing>,
    pub state: Arc<PublisherState>,
}

impl Publisher {
    /// Hands a record over from a non-async thread; blocks while the queue
    /// is full. Returns false once the publisher has shut down.
    pub fn send_blocking(&self, o: Outgoing) -> bool {
        if let Outgoing::Command(c) = &o {
            self.state
                .pending_commands
                .entry(c.command.command_id.clone())
                .or_insert_with(Instant::now);
        }
        self.tx.blocking_send(o).is_ok()
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

/// `[audit] path`: audit records appended as JSON lines, as well.
pub struct AuditFile(std::io::BufWriter<std::fs::File>);

impl AuditFile {
    pub fn open(path: &str) -> std::io::Result<AuditFile> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AuditFile(std::io::BufWriter::new(f)))
    }

    fn write(&mut self, a: &AuditRecord) {
        use std::io::Write;
        let ok = serde_json::to_writer(&mut self.0, a).is_ok()
            && self.0.write_all(b"\n").is_ok()
            && self.0.flush().is_ok();
        if !ok {
            error!("writing the audit file failed");
        }
    }
}

/// The publisher without Kafka: commands as JSON lines on stdout (flushed
/// one by one: someone may be piping them to an executor), audit records
/// to the audit file if there is one. Dead letters have nowhere to go: the
/// HTTP caller already got a 400 with the reason.
pub fn spawn_local(
    rt: &tokio::runtime::Handle,
    audit_file: Option<AuditFile>,
) -> (Publisher, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Outgoing>(QUEUE);
    let state = Arc::new(PublisherState {
        claim_slot: Arc::new(AtomicI64::new(0)),
        ..Default::default()
    });
    let st = state.clone();
    let mut audit_file = audit_file;
    let task = rt.spawn(async move {
        use std::io::Write;
        while let Some(o) = rx.recv().await {
            match o {
                Outgoing::Command(out) => {
                    let CommandOut {
                        command: mut c,
                        consumed_at,
                        audits,
                    } = *out;
                    c.issued_at = Timestamp::now_wall();
                    let written = serde_json::to_vec(&c).ok().is_some_and(|line| {
                        let mut out = std::io::stdout().lock();
                        out.write_all(&line).is_ok()
                            && out.write_all(b"\n").is_ok()
                            && out.flush().is_ok()
                    });
                    st.pending_commands.remove(&c.command_id);
                    if written {
                        st.commands_acked.fetch_add(1, Ordering::Relaxed);
                        info!(command_id = %c.command_id, deploy_id = %c.deploy_id, action = c.action.as_str(), trigger = c.trigger.as_str(), decision_latency_us = consumed_at.map(|t| t.elapsed().as_micros() as u64), "command written to stdout");
                        st.emitted(&c, &audits);
                        if let Some(f) = audit_file.as_mut() {
                            for a in &audits {
                                f.write(a);
                            }
                        }
                    } else {
                        st.delivery_failures.fetch_add(1, Ordering::Relaxed);
                        error!(command_id = %c.command_id, "writing a command to stdout failed");
                    }
                }
                Outgoing::Audit(a) => {
                    if let Some(f) = audit_file.as_mut() {
                        f.write(&a);
                    }
                }
                Outgoing::DeadLetter { .. } => {}
            }
        }
    });
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
