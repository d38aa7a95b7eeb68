//! The evidence topic's record format, `rollbackd.evidence/v1`: one
//! protobuf message per record (compact: evidence stays a small fraction of
//! the raw telemetry it stands for), key = `service NUL environment`.
//!
//! ```text
//! Evidence        version=1 (uint32), service=2, environment=3, instance=4 (the producer, for logs),
//!                 sources=5 (repeated Source), deploys=6 (repeated string: deploy ids items refer to),
//!                 counts=7 (repeated Counts), cumulative=8 (repeated Cumulative),
//!                 alerts=9 (repeated Alert), rollback=10 (optional Rollback), http=11 (bool: from HTTP),
//!                 consumed_at=12 (fixed64, ns; 0: unknown), request=13 (fixed64: the HTTP request's
//!                 id, 0: none), seen=14 (repeated Seen), handovers=15 (repeated Handover)
//! Source          topic=1, partition=2, last=3 (the last raw offset read when the batch was cut)
//! Counts          deploy=1 (index into deploys), baseline=2, source=3 (index into sources, -1: none),
//!                 offset=4 (raw offset), at=5 (slot start, ns), metrics=6, requests=7, errors=8,
//!                 slow=9, points=10
//! Cumulative      deploy=1, baseline=2, source=3, offset=4, series=5, start=6, time=7 (ns),
//!                 count=8, slow=9, error=10, resume=11 (optional: the raw offset stage 1
//!                 started reading the partition at; the series' later points come as counts)
//! Handover        topic=1, partition=2, next=3 (the raw offset the next reader starts at),
//!                 points=4 (repeated HandedPoint)
//! HandedPoint     deploy=1, baseline=2, series=3, start=4, time=5 (ns), count=6, slow=7
//! Seen            version=1, source=2, offset=3, at=4 (slot start, ns), metrics=5, requests=6,
//!                 errors=7, slow=8, points=9
//! Alert           firing=1, labels=2 (map), annotations=3 (map), starts_at=4 (ns),
//!                 fingerprint=5, generator_url=6
//! Rollback        deploy_id=1, reason=2, actor=3
//! ```
//!
//! A record of another version, or one that does not decode, is malformed:
//! counted, audited and dead-lettered like any other input (`docs/guarantees.md#bad-input`).

use std::collections::BTreeMap;

use prost::Message;

use super::DecodeError;
use crate::model::evidence::{
    Counts, Evidence, HandedPoint, Item, Key, Origin, RawOffset, RequestId, Role,
};
use crate::model::{Alert, AlertStatus};
use crate::time::Timestamp;

/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

#[derive(Clone, PartialEq, Message)]
struct EvidenceMsg {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(string, tag = "2")]
    service: String,
    #[prost(string, tag = "3")]
    environment: String,
    #[prost(string, tag = "4")]
    instance: String,
    #[prost(message, repeated, tag = "5")]
    sources: Vec<SourceMsg>,
    #[prost(string, repeated, tag = "6")]
    deploys: Vec<String>,
    #[prost(message, repeated, tag = "7")]
    counts: Vec<CountsMsg>,
    #[prost(message, repeated, tag = "8")]
    cumulative: Vec<CumulativeMsg>,
    #[prost(message, repeated, tag = "9")]
    alerts: Vec<AlertMsg>,
    #[prost(message, optional, tag = "10")]
    rollback: Option<RollbackMsg>,
    #[prost(bool, tag = "11")]
    http: bool,
    /// Unix nanoseconds; 0: unknown.
    #[prost(fixed64, tag = "12")]
    consumed_at: u64,
    /// The HTTP request's [`RequestId`]; 0: none.
    #[prost(fixed64, tag = "13")]
    request: u64,
    #[prost(message, repeated, tag = "14")]
    seen: Vec<SeenMsg>,
    #[prost(message, repeated, tag = "15")]
    handovers: Vec<HandoverMsg>,
}

/// Who sent an evidence record, and when intake consumed the oldest raw
/// record behind it (for the decision latency).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    pub instance: String,
    pub consumed_at: Option<Timestamp>,
}

#[derive(Clone, PartialEq, Message)]
struct SourceMsg {
    #[prost(string, tag = "1")]
    topic: String,
    #[prost(int32, tag = "2")]
    partition: i32,
    #[prost(int64, tag = "3")]
    last: i64,
}

#[derive(Clone, PartialEq, Message)]
struct CountsMsg {
    #[prost(uint32, tag = "1")]
    deploy: u32,
    #[prost(bool, tag = "2")]
    baseline: bool,
    #[prost(sint32, tag = "3")]
    source: i32,
    #[prost(int64, tag = "4")]
    offset: i64,
    #[prost(int64, tag = "5")]
    at: i64,
    #[prost(bool, tag = "6")]
    metrics: bool,
    #[prost(uint64, tag = "7")]
    requests: u64,
    #[prost(uint64, tag = "8")]
    errors: u64,
    #[prost(uint64, tag = "9")]
    slow: u64,
    #[prost(uint64, tag = "10")]
    points: u64,
}

#[derive(Clone, PartialEq, Message)]
struct SeenMsg {
    #[prost(string, tag = "1")]
    version: String,
    #[prost(sint32, tag = "2")]
    source: i32,
    #[prost(int64, tag = "3")]
    offset: i64,
    #[prost(int64, tag = "4")]
    at: i64,
    #[prost(bool, tag = "5")]
    metrics: bool,
    #[prost(uint64, tag = "6")]
    requests: u64,
    #[prost(uint64, tag = "7")]
    errors: u64,
    #[prost(uint64, tag = "8")]
    slow: u64,
    #[prost(uint64, tag = "9")]
    points: u64,
}

#[derive(Clone, PartialEq, Message)]
struct CumulativeMsg {
    #[prost(uint32, tag = "1")]
    deploy: u32,
    #[prost(bool, tag = "2")]
    baseline: bool,
    #[prost(sint32, tag = "3")]
    source: i32,
    #[prost(int64, tag = "4")]
    offset: i64,
    #[prost(fixed64, tag = "5")]
    series: u64,
    #[prost(int64, tag = "6")]
    start: i64,
    #[prost(int64, tag = "7")]
    time: i64,
    #[prost(uint64, tag = "8")]
    count: u64,
    #[prost(uint64, tag = "9")]
    slow: u64,
    #[prost(bool, tag = "10")]
    error: bool,
    #[prost(int64, optional, tag = "11")]
    resume: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
struct HandoverMsg {
    #[prost(string, tag = "1")]
    topic: String,
    #[prost(int32, tag = "2")]
    partition: i32,
    #[prost(int64, tag = "3")]
    next: i64,
    #[prost(message, repeated, tag = "4")]
    points: Vec<HandedPointMsg>,
}

#[derive(Clone, PartialEq, Message)]
struct HandedPointMsg {
    #[prost(uint32, tag = "1")]
    deploy: u32,
    #[prost(bool, tag = "2")]
    baseline: bool,
    #[prost(fixed64, tag = "3")]
    series: u64,
    #[prost(int64, tag = "4")]
    start: i64,
    #[prost(int64, tag = "5")]
    time: i64,
    #[prost(uint64, tag = "6")]
    count: u64,
    #[prost(uint64, tag = "7")]
    slow: u64,
}

#[derive(Clone, PartialEq, Message)]
struct AlertMsg {
    #[prost(bool, tag = "1")]
    firing: bool,
    #[prost(btree_map = "string, string", tag = "2")]
    labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "3")]
    annotations: BTreeMap<String, String>,
    #[prost(int64, tag = "4")]
    starts_at: i64,
    #[prost(string, tag = "5")]
    fingerprint: String,
    #[prost(string, optional, tag = "6")]
    generator_url: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct RollbackMsg {
    #[prost(string, tag = "1")]
    deploy_id: String,
    #[prost(string, tag = "2")]
    reason: String,
    #[prost(string, tag = "3")]
    actor: String,
}

/// The record key of `key`'s evidence.
pub fn record_key(key: &Key) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.service.len() + key.environment.len() + 1);
    k.extend_from_slice(key.service.as_bytes());
    k.push(0);
    k.extend_from_slice(key.environment.as_bytes());
    k
}

/// Indexes of strings in a table, added on first use.
struct Table(Vec<String>);

impl Table {
    fn index(&mut self, v: &str) -> u32 {
        match self.0.iter().position(|x| x == v) {
            Some(i) => i as u32,
            None => {
                self.0.push(v.to_string());
                (self.0.len() - 1) as u32
            }
        }
    }
}

/// Encodes `e`, produced by `instance`.
pub fn encode(e: &Evidence, envelope: &Envelope) -> Vec<u8> {
    let mut w = Writer::new(e, envelope);
    for item in &e.items {
        w.item(item);
    }
    w.msg.sources = w.sources;
    w.msg.deploys = w.deploys.0;
    w.msg.encode_to_vec()
}

/// An evidence message being written: the deploys and sources its items
/// refer to by index are added as the items are.
struct Writer {
    msg: EvidenceMsg,
    deploys: Table,
    sources: Vec<SourceMsg>,
}

/// What an item of telemetry refers to, as indexes into the message.
struct Refs {
    deploy: u32,
    baseline: bool,
    source: i32,
    offset: i64,
}

impl Writer {
    /// The message of `e` with its envelope and no items yet; the sources
    /// its origin read first.
    fn new(e: &Evidence, envelope: &Envelope) -> Writer {
        let sources: Vec<SourceMsg> = match &e.origin {
            Origin::Kafka(ranges) => ranges
                .iter()
                .map(|(topic, partition, last)| SourceMsg {
                    topic: topic.clone(),
                    partition: *partition,
                    last: *last,
                })
                .collect(),
            Origin::Http(_) | Origin::Local => Vec::new(),
        };
        let msg = EvidenceMsg {
            version: VERSION,
            service: e.key.service.clone(),
            environment: e.key.environment.clone(),
            instance: envelope.instance.clone(),
            http: matches!(e.origin, Origin::Http(_)),
            request: match e.origin {
                Origin::Http(Some(RequestId(id))) => id,
                _ => 0,
            },
            consumed_at: envelope
                .consumed_at
                .map_or(0, |t| u64::try_from(t.0).unwrap_or(0)),
            ..Default::default()
        };
        Writer {
            msg,
            deploys: Table(Vec::new()),
            sources,
        }
    }

    /// Adds one item to the message.
    fn item(&mut self, item: &Item) {
        match item {
            Item::Counts {
                deploy_id,
                role,
                raw,
                at,
                metrics,
                counts,
            } => {
                let r = self.refs(deploy_id, *role, raw);
                self.msg.counts.push(CountsMsg {
                    deploy: r.deploy,
                    baseline: r.baseline,
                    source: r.source,
                    offset: r.offset,
                    at: at.0,
                    metrics: *metrics,
                    requests: counts.requests,
                    errors: counts.errors,
                    slow: counts.slow,
                    points: counts.points,
                });
            }
            Item::Cumulative {
                deploy_id,
                role,
                raw,
                series,
                start,
                time,
                count,
                slow,
                error,
                resume,
            } => {
                let r = self.refs(deploy_id, *role, raw);
                self.msg.cumulative.push(CumulativeMsg {
                    deploy: r.deploy,
                    baseline: r.baseline,
                    source: r.source,
                    offset: r.offset,
                    series: *series,
                    start: start.0,
                    time: time.0,
                    count: *count,
                    slow: *slow,
                    error: *error,
                    resume: *resume,
                });
            }
            Item::Seen {
                version,
                raw,
                at,
                metrics,
                counts,
            } => {
                let (source, offset) = self.source(raw);
                self.msg.seen.push(SeenMsg {
                    version: version.clone(),
                    source,
                    offset,
                    at: at.0,
                    metrics: *metrics,
                    requests: counts.requests,
                    errors: counts.errors,
                    slow: counts.slow,
                    points: counts.points,
                });
            }
            Item::Handover {
                topic,
                partition,
                next,
                points,
            } => {
                let points = points
                    .iter()
                    .map(|p| HandedPointMsg {
                        deploy: self.deploys.index(&p.deploy_id),
                        baseline: p.role == Role::Baseline,
                        series: p.series,
                        start: p.start.0,
                        time: p.time.0,
                        count: p.count,
                        slow: p.slow,
                    })
                    .collect();
                self.msg.handovers.push(HandoverMsg {
                    topic: topic.clone(),
                    partition: *partition,
                    next: *next,
                    points,
                });
            }
            Item::Alerts(alerts) => self.msg.alerts.extend(alerts.iter().map(alert_msg)),
            Item::Rollback {
                deploy_id,
                reason,
                actor,
            } => {
                self.msg.rollback = Some(RollbackMsg {
                    deploy_id: deploy_id.clone(),
                    reason: reason.clone(),
                    actor: actor.clone(),
                })
            }
        }
    }

    /// The indexes of `deploy_id` and of `raw`'s source, each added on
    /// first use (source -1: none), and the raw offset.
    fn refs(&mut self, deploy_id: &str, role: Role, raw: &Option<RawOffset>) -> Refs {
        let deploy = self.deploys.index(deploy_id);
        let baseline = role == Role::Baseline;
        let (source, offset) = self.source(raw);
        Refs {
            deploy,
            baseline,
            source,
            offset,
        }
    }

    /// The index of `raw`'s source, added on first use (-1: none), and
    /// the raw offset.
    fn source(&mut self, raw: &Option<RawOffset>) -> (i32, i64) {
        let Some(r) = raw else {
            return (-1, 0);
        };
        let i = match self
            .sources
            .iter()
            .position(|s| s.topic == r.topic && s.partition == r.partition)
        {
            Some(i) => i,
            None => {
                self.sources.push(SourceMsg {
                    topic: r.topic.clone(),
                    partition: r.partition,
                    last: r.offset,
                });
                self.sources.len() - 1
            }
        };
        (i as i32, r.offset)
    }
}

/// An alert as the message writes it.
fn alert_msg(a: &Alert) -> AlertMsg {
    AlertMsg {
        firing: a.status == AlertStatus::Firing,
        labels: a.labels.clone(),
        annotations: a.annotations.clone(),
        starts_at: a.starts_at.0,
        fingerprint: a.fingerprint.clone(),
        generator_url: a.generator_url.clone(),
    }
}

/// Decodes one evidence record: the evidence, and its envelope.
pub fn decode(bytes: &[u8]) -> Result<(Evidence, Envelope), DecodeError> {
    let msg = EvidenceMsg::decode(bytes)?;
    if msg.version != VERSION {
        return Err(DecodeError::new(format!(
            "evidence version {}, this build reads {VERSION}",
            msg.version
        )));
    }
    let origin = origin(&msg);
    let mut items = Vec::with_capacity(msg.counts.len() + msg.cumulative.len() + 2);
    for c in &msg.counts {
        items.push(counts_item(&msg, c)?);
    }
    for c in &msg.cumulative {
        items.push(cumulative_item(&msg, c)?);
    }
    for c in &msg.seen {
        items.push(seen_item(&msg, c)?);
    }
    for h in &msg.handovers {
        items.push(handover_item(&msg, h)?);
    }
    if !msg.alerts.is_empty() {
        items.push(Item::Alerts(msg.alerts.iter().map(alert).collect()));
    }
    if let Some(r) = msg.rollback {
        items.push(Item::Rollback {
            deploy_id: r.deploy_id,
            reason: r.reason,
            actor: r.actor,
        });
    }
    let envelope = Envelope {
        instance: msg.instance,
        consumed_at: (msg.consumed_at > 0)
            .then(|| Timestamp::from_unix_nanos(msg.consumed_at))
            .flatten(),
    };
    let key = Key {
        service: msg.service,
        environment: msg.environment,
    };
    Ok((Evidence { key, origin, items }, envelope))
}

/// A counts item, its deploy and source looked up in `msg`'s tables.
fn counts_item(msg: &EvidenceMsg, c: &CountsMsg) -> Result<Item, DecodeError> {
    Ok(Item::Counts {
        deploy_id: deploy(msg, c.deploy)?,
        role: role(c.baseline),
        raw: raw(msg, c.source, c.offset)?,
        at: Timestamp(c.at),
        metrics: c.metrics,
        counts: Counts {
            requests: c.requests,
            errors: c.errors,
            slow: c.slow,
            points: c.points,
        },
    })
}

/// A seen item, its source looked up in `msg`'s table.
fn seen_item(msg: &EvidenceMsg, c: &SeenMsg) -> Result<Item, DecodeError> {
    Ok(Item::Seen {
        version: c.version.clone(),
        raw: raw(msg, c.source, c.offset)?,
        at: Timestamp(c.at),
        metrics: c.metrics,
        counts: Counts {
            requests: c.requests,
            errors: c.errors,
            slow: c.slow,
            points: c.points,
        },
    })
}

/// A cumulative item, its deploy and source looked up in `msg`'s tables.
fn cumulative_item(msg: &EvidenceMsg, c: &CumulativeMsg) -> Result<Item, DecodeError> {
    Ok(Item::Cumulative {
        deploy_id: deploy(msg, c.deploy)?,
        role: role(c.baseline),
        raw: raw(msg, c.source, c.offset)?,
        series: c.series,
        start: Timestamp(c.start),
        time: Timestamp(c.time),
        count: c.count,
        slow: c.slow,
        error: c.error,
        resume: c.resume,
    })
}

/// A handover item, its points' deploys looked up in `msg`'s table.
fn handover_item(msg: &EvidenceMsg, h: &HandoverMsg) -> Result<Item, DecodeError> {
    let points = h
        .points
        .iter()
        .map(|p| {
            Ok(HandedPoint {
                deploy_id: deploy(msg, p.deploy)?,
                role: role(p.baseline),
                series: p.series,
                start: Timestamp(p.start),
                time: Timestamp(p.time),
                count: p.count,
                slow: p.slow,
            })
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok(Item::Handover {
        topic: h.topic.clone(),
        partition: h.partition,
        next: h.next,
        points,
    })
}

/// An alert as the message wrote it.
fn alert(a: &AlertMsg) -> Alert {
    Alert {
        status: if a.firing {
            AlertStatus::Firing
        } else {
            AlertStatus::Resolved
        },
        labels: a.labels.clone(),
        annotations: a.annotations.clone(),
        starts_at: Timestamp(a.starts_at),
        fingerprint: a.fingerprint.clone(),
        generator_url: a.generator_url.clone(),
    }
}

/// The deploy id at index `i` of `msg`'s table.
fn deploy(msg: &EvidenceMsg, i: u32) -> Result<String, DecodeError> {
    msg.deploys
        .get(i as usize)
        .cloned()
        .ok_or_else(|| DecodeError::new(format!("evidence: no deploy #{i}")))
}

/// The raw record at `offset` of the source at index `source` of `msg`'s
/// table; `None` for -1.
fn raw(msg: &EvidenceMsg, source: i32, offset: i64) -> Result<Option<RawOffset>, DecodeError> {
    if source < 0 {
        return Ok(None);
    }
    let s = msg
        .sources
        .get(source as usize)
        .ok_or_else(|| DecodeError::new(format!("evidence: no source #{source}")))?;
    Ok(Some(RawOffset {
        topic: s.topic.clone(),
        partition: s.partition,
        offset,
    }))
}

/// The side a message's `baseline` flag names.
fn role(baseline: bool) -> Role {
    if baseline {
        Role::Baseline
    } else {
        Role::Candidate
    }
}

/// Where the evidence came from: an HTTP request (with its id, if any),
/// Kafka partitions up to their last offsets, or neither.
fn origin(msg: &EvidenceMsg) -> Origin {
    if msg.http {
        Origin::Http(Some(RequestId(msg.request)).filter(|r| r.0 != 0))
    } else if msg.sources.is_empty() {
        Origin::Local
    } else {
        Origin::Kafka(
            msg.sources
                .iter()
                .map(|s| (s.topic.clone(), s.partition, s.last))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests;
