//! Stage 2, the owner: one thread that changes the engine. It follows the
//! control topics (read whole by every instance: deploys, commands,
//! results, admin actions), consumes the evidence partitions this instance
//! holds in the owner group, ticks the engine, takes the calls HTTP hands
//! it, and publishes each pass's outputs — with the evidence offsets it
//! consumed — as one batch ([`super::emit`]).
//!
//! A newly assigned evidence partition is read back from `now − longest
//! window` before its keys are decided for (the engine owns them only
//! then): their windows are rebuilt from the evidence, each raw record
//! once. The commands topic is also read to its end first (with
//! transactions a committed-only reader waits for an open transaction), so
//! a command the previous owner emitted is known.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::emit::{Batch, EmitError, Emitter, Offsets};
use super::intake::Sender;
use super::shared::Shared;
use super::views::Publisher;
use super::RunError;
use crate::engine::Engine;
use crate::ingest::evidence;
use crate::ingest::{self, Source};
use crate::kafka::consumer::ControlReader;
use crate::kafka::group::Group;
use crate::kafka::InRecord;
use crate::model::audit::{OwnerAudit, OwnerChange};
use crate::model::evidence::{Evidence, Item, Origin, Ownership};
use crate::model::{AuditRecord, Input, Output};
use crate::time::Timestamp;

/// What HTTP hands the owner thread: an input to apply here (an admin call
/// taken on this instance, alerts no deploy matched), and where to answer.
pub struct Call {
    pub input: Input,
    pub reply: oneshot::Sender<Vec<Output>>,
}

/// How often the engine is ticked without traffic.
const TICK: Duration = Duration::from_millis(200);
/// At most this many evidence records a pass.
const BATCH: usize = 512;

pub struct Owner {
    pub shared: Arc<Shared>,
    pub control: ControlReader,
    pub group: Group,
    pub emitter: Emitter,
    pub calls: mpsc::Receiver<Call>,
    /// Per control topic and partition, the next offset to apply (HTTP's
    /// read-your-writes).
    pub control_next: Arc<dashmap::DashMap<(String, i32), i64>>,
    /// Partitions of the evidence topic (the keys' partitioning).
    pub partitions: u32,
    /// Dead letters, and audit records outside the owner's batches.
    pub sender: Sender,
    /// The views of the deploys it decides for, to every instance.
    pub views: Publisher,
}

/// The owner loop's own state between passes.
struct State {
    /// The owner group's generation last seen.
    generation: i64,
    /// Partitions assigned and being read back: not decided for yet.
    rebuilding: BTreeSet<i32>,
    /// Partitions read back and decided for.
    owned: BTreeSet<i32>,
    /// Decisions read on partitions not yet owned (see `evidence_record`).
    deferred: Vec<(i32, Evidence)>,
    rebuild_started: Instant,
    last_tick: Instant,
    last_broker_check: Instant,
    last_topic_check: Instant,
}

/// The evidence one pass consumed.
#[derive(Default)]
struct Consumed {
    /// Per partition, the next offset.
    next: BTreeMap<i32, i64>,
    /// When the oldest raw record behind it was taken in.
    consumed_at: Option<Timestamp>,
}

impl Owner {
    /// Runs until cancelled; a fenced instance returns an error (and exits
    /// non-zero). A pass: calls from HTTP, control records, evidence, the
    /// group's assignment, read-backs finished, a tick, one batch
    /// published with the evidence offsets it consumed, housekeeping.
    pub fn run(mut self) -> Result<(), RunError> {
        let now = Instant::now();
        let mut state = State {
            generation: -1,
            rebuilding: BTreeSet::new(),
            owned: BTreeSet::new(),
            deferred: Vec::new(),
            rebuild_started: now,
            last_tick: now - TICK,
            last_broker_check: now - Duration::from_secs(10),
            last_topic_check: now,
        };
        while !self.shared.cancel.is_cancelled() {
            let mut outputs = self.calls();
            self.control_records(&mut outputs);
            let consumed = self.evidence(&mut state, &mut outputs)?;
            let live = &self.shared.liveness;
            if !consumed.next.is_empty() {
                live.progress(&live.owner);
            } else if state.owned.is_empty() && state.rebuilding.is_empty() {
                // Holding nothing while the group leaves evidence unread:
                // no key is decided for anywhere — stuck, not idle.
                live.busy(&live.owner, self.group.starved());
            }
            self.follow_assignment(&mut state, &mut outputs);
            self.finish_read_back(&mut state, &mut outputs);
            // Deploys touched by this pass's evidence are evaluated in this
            // pass (their decision leaves with the offsets that caused it);
            // the others when they are due.
            if !consumed.next.is_empty() || state.last_tick.elapsed() >= TICK {
                outputs.extend(self.shared.apply(Input::Tick));
            }
            if state.last_tick.elapsed() >= TICK {
                state.last_tick = Instant::now();
                if let Some(lag) = self.group.lag() {
                    self.shared.metrics.consumer_lag.set(lag);
                }
            }
            match self.publish(&state.owned, consumed, outputs) {
                Ok(()) => {}
                Err(EmitError::Fenced(why)) => return Err(self.fenced(why, &state.owned)),
                Err(EmitError::Stopped) => break,
                Err(e) => warn!(error = %e, "publishing failed"),
            }
            self.views.publish(&self.shared, &self.sender);
            self.housekeeping(&mut state)?;
        }
        Ok(())
    }

    /// Applies the calls HTTP handed over, and answers them.
    fn calls(&mut self) -> Vec<Output> {
        let mut outputs = Vec::new();
        while let Ok(call) = self.calls.try_recv() {
            let out = self.shared.apply(call.input);
            outputs.extend(out.iter().cloned());
            let _ = call.reply.send(out);
        }
        outputs
    }

    /// Applies what the control topics have.
    fn control_records(&mut self, outputs: &mut Vec<Output>) {
        for _ in 0..BATCH {
            match self.control.poll(Duration::ZERO) {
                Some(Ok(rec)) => outputs.extend(self.control_record(&rec, false)),
                Some(Err(e)) => {
                    warn!(error = %e, "control consumer error");
                    break;
                }
                None => break,
            }
        }
    }

    /// Applies up to a batch of evidence (for at most 20 ms); a fatal
    /// consumer error (fenced from the group) ends the instance.
    fn evidence(
        &mut self,
        state: &mut State,
        outputs: &mut Vec<Output>,
    ) -> Result<Consumed, RunError> {
        let mut consumed = Consumed::default();
        let deadline = Instant::now() + Duration::from_millis(20);
        while consumed.next.len() < BATCH {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Some(polled) = self.group.poll(wait) else {
                break;
            };
            let rec = match polled {
                Ok(rec) => rec,
                Err(e @ rdkafka::error::KafkaError::MessageConsumptionFatal(_)) => {
                    return Err(self.fenced(e.to_string(), &state.owned));
                }
                Err(e) => {
                    warn!(error = %e, "evidence consumer error");
                    break;
                }
            };
            consumed.next.insert(rec.partition, rec.offset + 1);
            outputs.extend(self.evidence_record(
                &rec,
                &mut consumed.consumed_at,
                &state.owned,
                &mut state.deferred,
            ));
            if Instant::now() >= deadline {
                break;
            }
        }
        Ok(consumed)
    }

    /// At a new group generation: partitions lost stop being decided for
    /// (audited), new ones start being read back.
    fn follow_assignment(&mut self, state: &mut State, outputs: &mut Vec<Output>) {
        if self.group.generation() == state.generation {
            return;
        }
        state.generation = self.group.generation();
        let held: BTreeSet<i32> = self.group.held().keys().map(|(_, p)| *p).collect();
        let lost: Vec<i32> = state.owned.difference(&held).copied().collect();
        state.rebuilding = held.difference(&state.owned).copied().collect();
        state.owned.retain(|p| held.contains(p));
        state.deferred.retain(|(p, _)| held.contains(p));
        state.rebuild_started = Instant::now();
        // Also when nothing owned was lost: a partition revoked while it
        // was read back takes its half-built windows along.
        self.own(&state.owned, &state.rebuilding);
        if !lost.is_empty() {
            info!(partitions = ?lost, "evidence partitions lost: no longer deciding for their keys");
            outputs.push(self.audit(OwnerChange::Lost, lost, &state.owned));
        }
        self.shared.readiness.owner.store(
            state.rebuilding.is_empty() && state.generation > 0,
            Ordering::Release,
        );
    }

    /// Partitions read back to their end (and the commands topic read to
    /// its end) are owned from now: audited, and the decisions deferred
    /// on them taken.
    fn finish_read_back(&mut self, state: &mut State, outputs: &mut Vec<Output>) {
        if state.rebuilding.is_empty() {
            return;
        }
        self.group.settle();
        let held = self.group.held();
        let evidence = &self.shared.config.topics.evidence;
        let done: Vec<i32> = state
            .rebuilding
            .iter()
            .copied()
            .filter(|p| {
                held.get(&(evidence.clone(), *p))
                    .is_none_or(|h| h.caught_up())
            })
            .collect();
        if done.is_empty() || !self.commands_known(outputs) {
            return;
        }
        for p in &done {
            state.rebuilding.remove(p);
            state.owned.insert(*p);
        }
        info!(
            partitions = ?done,
            owned = ?state.owned,
            read_back_ms = state.rebuild_started.elapsed().as_millis() as u64,
            "evidence partitions read back: deciding for their keys"
        );
        self.own(&state.owned, &state.rebuilding);
        outputs.push(self.audit(OwnerChange::Took, done, &state.owned));
        let ready;
        (ready, state.deferred) = std::mem::take(&mut state.deferred)
            .into_iter()
            .partition(|(p, _)| state.owned.contains(p));
        for (_, e) in ready {
            outputs.extend(self.shared.apply(Input::Evidence(e)));
        }
        self.shared
            .readiness
            .owner
            .store(state.rebuilding.is_empty(), Ordering::Release);
    }

    /// Publishes this pass's outputs with the evidence offsets it consumed.
    /// A pass with something to publish and no new evidence (a tick's
    /// decision, an HTTP call) commits the owned partitions' positions
    /// again: every transaction then carries the group's generation, so a
    /// zombie that lost its partitions while frozen is fenced by the
    /// broker instead of publishing (KIP-447).
    fn publish(
        &mut self,
        owned: &BTreeSet<i32>,
        consumed: Consumed,
        outputs: Vec<Output>,
    ) -> Result<(), EmitError> {
        let evidence = &self.shared.config.topics.evidence;
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &consumed.next {
            let _ = tpl.add_partition_offset(evidence, *p, Offset::Offset(*o));
        }
        let publishes = outputs.iter().any(Output::is_published);
        if consumed.next.is_empty() && publishes {
            for ((topic, p), h) in self.group.held() {
                if &topic == evidence && owned.contains(&p) {
                    let _ = tpl.add_partition_offset(&topic, p, Offset::Offset(h.next));
                }
            }
        }
        let group = &self.group;
        let commit = |tpl: &TopicPartitionList| {
            for e in tpl.elements() {
                if let Offset::Offset(o) = e.offset() {
                    group.store(e.topic(), e.partition(), o - 1);
                }
            }
            group.commit()
        };
        let batch = Batch {
            outputs,
            offsets: Some(Offsets {
                next: &tpl,
                group: self.group.group_metadata(),
                commit: &commit,
            }),
            consumed_at: consumed.consumed_at,
        };
        self.emitter.publish(batch)
    }

    /// Every 2 s whether the broker answers (readiness); every 10 s
    /// whether the evidence topic's partition count changed (the instance
    /// ends: keys would be routed two ways) and whether control topics
    /// gained partitions (followed).
    fn housekeeping(&mut self, state: &mut State) -> Result<(), RunError> {
        let t = &self.shared.config.topics;
        if state.last_broker_check.elapsed() >= Duration::from_secs(2) {
            let ok = self.control.broker_reachable(&t.commands);
            self.shared.readiness.broker.store(ok, Ordering::Release);
            state.last_broker_check = Instant::now();
        }
        if state.last_topic_check.elapsed() < Duration::from_secs(10) {
            return Ok(());
        }
        state.last_topic_check = Instant::now();
        if let Ok(now) = self.group.partitions(&t.evidence) {
            if now > 0 && now != self.partitions {
                return Err(RunError::EvidencePartitionsChanged {
                    topic: t.evidence.clone(),
                    was: self.partitions,
                    now,
                });
            }
        }
        let control_topics = [
            t.commands.as_str(),
            t.admin.as_str(),
            t.deploy_events.as_str(),
            t.results.as_str(),
        ];
        match self.control.follow_new(&control_topics) {
            Ok(0) => {}
            Ok(n) => info!(partitions = n, "following new control partitions"),
            Err(e) => warn!(error = %e, "looking for new control partitions failed"),
        }
        Ok(())
    }

    /// A new owner first reads the commands topic to its end as of now: a
    /// command the previous owner emitted is then known. With transactions
    /// "its end" waits for a transaction still open (the previous owner's,
    /// frozen mid-publish) to commit, abort or time out, so what it
    /// committed is known and what it did not commit never will be.
    fn commands_known(&mut self, outputs: &mut Vec<Output>) -> bool {
        let commands = self.shared.config.topics.commands.clone();
        let mut read = Vec::new();
        let done = self.control.read_to_end(&commands, |rec| read.push(rec));
        for rec in read {
            outputs.extend(self.control_record(&rec, false));
        }
        match done {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "reading the commands topic to its end failed; ownership waits");
                false
            }
        }
    }

    /// A newer instance with this instance's id took over (its
    /// transactional id, or its place in the owner group): nothing more is
    /// published; the audit says so (outside any transaction) and the
    /// instance stops.
    fn fenced(&self, why: String, owned: &BTreeSet<i32>) -> RunError {
        self.sender.fenced(&why, owned.iter().copied().collect())
    }

    /// The audit record of an ownership change.
    fn audit(&self, change: OwnerChange, partitions: Vec<i32>, owned: &BTreeSet<i32>) -> Output {
        Output::Audit(AuditRecord::new(
            Timestamp::now_wall(),
            OwnerAudit {
                instance: self.shared.instance.clone(),
                change,
                partitions,
                owned: owned.iter().copied().collect(),
                transactional: self.emitter.transactional(),
            },
        ))
    }

    /// Tells the engine which keys it decides for (`owned`) and whose
    /// evidence it keeps while reading it back (`reading`).
    fn own(&mut self, owned: &BTreeSet<i32>, reading: &BTreeSet<i32>) {
        self.shared.metrics.owned_partitions.set(owned.len() as i64);
        self.shared.apply(Input::Own(Ownership::Partitions {
            count: self.partitions,
            owned: owned.clone(),
            reading: reading.clone(),
        }));
    }

    /// Applies one control record; returns what is to be published.
    /// `recovering`: read at start, when only commands go out (a release
    /// cascade whose commands never landed); what it audits was audited
    /// when it happened.
    pub fn control_record(&mut self, rec: &InRecord, recovering: bool) -> Vec<Output> {
        let next = self
            .control_next
            .entry((rec.topic.clone(), rec.partition))
            .or_insert(rec.offset + 1)
            .value()
            .to_owned();
        self.control_next
            .insert((rec.topic.clone(), rec.partition), next.max(rec.offset + 1));
        control_record(&self.shared, &self.sender, rec, recovering)
    }

    /// Applies one evidence record; `consumed_at` becomes the earliest time
    /// a raw record behind this pass's evidence was taken in.
    ///
    /// While a partition is read back (not yet owned), its records rebuild
    /// windows only. The decisions they carry — alerts, a person's
    /// rollback — were taken by the previous holder when it committed
    /// past them (below the group's committed offset: dropped here, or a
    /// restart would take a stale alert again), or are still to be taken
    /// (at or after it: kept in `deferred` until the partition is owned and
    /// the commands topic read to its end).
    fn evidence_record(
        &mut self,
        rec: &InRecord,
        consumed_at: &mut Option<Timestamp>,
        owned: &BTreeSet<i32>,
        deferred: &mut Vec<(i32, Evidence)>,
    ) -> Vec<Output> {
        match evidence::decode(&rec.payload) {
            Ok((mut e, envelope)) => {
                let at = envelope.consumed_at.unwrap_or_else(Timestamp::now_wall);
                *consumed_at = Some(consumed_at.map_or(at, |c| c.min(at)));
                if tracing::enabled!(tracing::Level::DEBUG) {
                    debug!(
                        partition = rec.partition,
                        offset = rec.offset,
                        from = %envelope.instance,
                        service = %e.key.service,
                        environment = %e.key.environment,
                        owned = owned.contains(&rec.partition),
                        origin = ?e.origin,
                        items = %describe(&e.items),
                        "evidence record"
                    );
                }
                if !owned.contains(&rec.partition) {
                    let (decisions, rest): (Vec<Item>, Vec<Item>) = std::mem::take(&mut e.items)
                        .into_iter()
                        .partition(Item::is_decision);
                    e.items = rest;
                    let committed = self
                        .group
                        .held()
                        .get(&(rec.topic.clone(), rec.partition))
                        .and_then(|h| h.committed);
                    if !decisions.is_empty() && committed.is_none_or(|c| rec.offset >= c) {
                        let key = e.key.clone();
                        deferred.push((
                            rec.partition,
                            Evidence {
                                key,
                                origin: Origin::Http(None),
                                items: decisions,
                            },
                        ));
                    }
                }
                // Observations were counted by the intake that folded them;
                // an HTTP request's sent again are counted here.
                let outputs = self.shared.apply(Input::Evidence(e));
                for o in &outputs {
                    if let Output::Telemetry(t) = o {
                        self.shared.metrics.observations_repeated.inc_by(t.repeated);
                    }
                }
                outputs
            }
            Err(err) => {
                warn!(partition = rec.partition, offset = rec.offset, error = %err, "malformed evidence record skipped");
                self.shared
                    .metrics
                    .records
                    .with_label_values(&["evidence", "malformed"])
                    .inc();
                self.shared.apply(Engine::malformed(
                    "evidence",
                    &err.0,
                    serde_json::json!({"topic": rec.topic, "partition": rec.partition, "offset": rec.offset}),
                ))
            }
        }
    }
}

/// Applies one control record (deploy events, commands, results, admin
/// records); returns what is to be published. A malformed one goes to the
/// dead-letter topic (not again when read back at start: it went there
/// when it was first read).
pub fn control_record(
    shared: &Shared,
    dlq: &Sender,
    rec: &InRecord,
    recovering: bool,
) -> Vec<Output> {
    let Some(source) = Source::from_topic(&shared.config, &rec.topic) else {
        return Vec::new();
    };
    let now = Timestamp::now_wall();
    let skew = shared.config.limits.max_clock_skew;
    let input = match ingest::decode(source, &rec.payload, crate::config::OtlpEncoding::Json)
        .and_then(|input| ingest::check_clock(&input, now, skew).map(|()| input))
    {
        Ok(input) => input,
        Err(e) => {
            if recovering {
                // Read back at every start: counted and logged, not copied
                // to the dead-letter topic (and audited) again each time.
                shared
                    .metrics
                    .records
                    .with_label_values(&[source.label(), "malformed"])
                    .inc();
                warn!(topic = %rec.topic, partition = rec.partition, offset = rec.offset, error = %e.0, "malformed control record skipped while reading back");
            } else {
                dlq.dead_letter(rec, source.label(), &e);
            }
            return Vec::new();
        }
    };
    if let Input::Admin(a) = &input {
        info!(action = a.action.as_str(), actor = %a.actor, instance = %a.instance, at = %a.at, recovering, "admin action read");
    }
    shared
        .metrics
        .records
        .with_label_values(&[source.label(), "ok"])
        .inc();
    let outputs = shared.write().apply(input, now);
    match source {
        // A breaker opened by a command read back was audited by the
        // instance that emitted the command: not again here.
        Source::Commands | Source::Admin => Vec::new(),
        _ if recovering => outputs
            .into_iter()
            .filter(|o| matches!(o, Output::Command(_)))
            .collect(),
        _ => outputs,
    }
}

/// The raw records and request counts of evidence items, for the debug
/// log: `deploy/role@topic:partition:offsetxrequests` each.
fn describe(items: &[Item]) -> String {
    let mut out = String::new();
    for item in items {
        let raw = item
            .raw()
            .map(|r| format!("{}:{}:{}", r.topic, r.partition, r.offset))
            .unwrap_or_else(|| "-".to_string());
        let what = match item {
            Item::Counts {
                deploy_id,
                role,
                counts,
                ..
            } => format!("{deploy_id}/{role:?}@{raw}x{}", counts.requests),
            Item::Seen {
                version, counts, ..
            } => format!("seen {version}@{raw}x{}", counts.requests),
            Item::Cumulative {
                deploy_id, role, ..
            } => format!("{deploy_id}/{role:?}@{raw} cumulative"),
            Item::Handover {
                partition, next, ..
            } => format!("handover {partition}@{next}"),
            Item::Alerts(_) => "alerts".to_string(),
            Item::Rollback { deploy_id, .. } => format!("rollback {deploy_id}"),
        };
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&what);
    }
    out
}
