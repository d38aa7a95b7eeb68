//! With Kafka, notifications come from the audit topic: a consumer group
//! of its own (`<kafka.group_id>-notify`, static membership with the
//! instance's id) reads the committed records (`read_committed`: what an
//! aborted transaction wrote is never notified), offers each to the
//! [`Notifier`], and commits a record's offset once every sink is finished
//! with it — and with every record before it on its partition.
//!
//! So each event is notified by the one instance that holds its audit
//! partition, whichever instance decided it; a restart resumes after the
//! last committed record. Only a crash between a delivery and its commit
//! sends one again — with the same `X-Rollbackd-Event-Id`. A group that
//! never committed starts [`NEW_GROUP_LOOKBACK`] back, so that decisions
//! made while it first joined are not missed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use tracing::{info, warn};

use super::shared::Shared;
use super::RunError;
use crate::config::KafkaConfig;
use crate::kafka::group::{Group, GroupSpec, Start};
use crate::sinks::notify::{Notifier, Pending};

/// Where a group with no committed offsets starts.
pub const NEW_GROUP_LOOKBACK: Duration = Duration::from_secs(300);

/// How long queued notifications may take at shutdown.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// The notify consumer, joined to its group.
pub fn group(
    k: &KafkaConfig,
    audit_topic: &str,
    instance_id: Option<&str>,
) -> Result<Group, KafkaError> {
    let group_id = format!("{}-notify", k.group_id);
    Group::new(
        k,
        &GroupSpec {
            name: "notify",
            group_id: &group_id,
            topics: &[audit_topic],
            start: Start::Committed,
            lookback: NEW_GROUP_LOOKBACK,
            instance_id,
            auto_commit: true,
        },
    )
}

/// Reads the audit topic into the notifier until cancelled.
pub fn run(shared: Arc<Shared>, group: Group, notifier: Arc<Notifier>) -> Result<(), RunError> {
    // Per partition, the records offered and not yet stored, in order.
    let mut pending: BTreeMap<(String, i32), VecDeque<(i64, Pending)>> = BTreeMap::new();
    let mut generation = group.generation();
    while !shared.cancel.is_cancelled() {
        let polled = group.poll(Duration::from_millis(100));
        // Rebalances happen inside poll: a record it returns already
        // belongs to the new assignment.
        if group.generation() != generation {
            generation = group.generation();
            // Every partition held after an assignment change resumes at
            // its committed offset (on this instance again, or another):
            // what is still queued is taken back and read again. Only a
            // delivery already under way can be sent twice, with the same
            // event id.
            for queue in std::mem::take(&mut pending).into_values() {
                queue.iter().for_each(|(_, p)| p.cancel());
            }
            info!(
                partitions = group.held().len(),
                "notify: audit partitions assigned"
            );
        }
        match polled {
            Some(Ok(rec)) => {
                let offered = notifier.offer(&rec.payload);
                pending
                    .entry((rec.topic, rec.partition))
                    .or_default()
                    .push_back((rec.offset, offered));
            }
            Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                warn!(error = %e, "the notify consumer was replaced in its group: this instance sends no more notifications");
                return Ok(());
            }
            Some(Err(e)) => warn!(error = %e, "audit consumer error"),
            None => {}
        }
        store_done(&group, &mut pending);
    }
    // What is delivered in the grace period is committed too.
    notifier.stop(STOP_GRACE);
    store_done(&group, &mut pending);
    if let Err(e) = group.commit() {
        warn!(error = %e, "notify: final offset commit failed");
    }
    Ok(())
}

/// Stores, per partition, the last offset before the first record some
/// sink is still working on.
fn store_done(group: &Group, pending: &mut BTreeMap<(String, i32), VecDeque<(i64, Pending)>>) {
    for ((topic, partition), queue) in pending.iter_mut() {
        let mut last = None;
        while let Some((offset, p)) = queue.front() {
            if !p.done() {
                break;
            }
            last = Some(*offset);
            queue.pop_front();
        }
        if let Some(o) = last {
            group.store(topic, *partition, o);
        }
    }
}
