//! Evidence: what stage 1 (intake, on every instance) hands to stage 2 (the
//! owner of a (service, environment)). Telemetry matched to deploys and
//! folded into counters per deploy side and time slot; cumulative histogram
//! points as they came where only the owner can turn a series into deltas
//! (a series spread over raw partitions), else the first point stage 1
//! read of each series and what the rest add (see [`Item::Cumulative`]);
//! and
//! the alerts and manual rollbacks that must reach the owner.
//!
//! Every item that came from a raw Kafka record says which one (topic,
//! partition, offset): the owner applies each raw record once per key, so a
//! batch stage 1 sent again after a crash changes nothing.

use crate::time::Timestamp;

use super::Alert;

/// Who decides: every deploy of one service in one environment has one
/// owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub service: String,
    pub environment: String,
}

impl Key {
    /// The evidence partition of this key among `partitions`.
    pub fn partition(&self, partitions: u32) -> i32 {
        partition_of(&self.service, &self.environment, partitions)
    }
}

/// The evidence partition of (`service`, `environment`) among
/// `partitions`: FNV-1a of `service NUL environment`. Stage 1 produces to
/// it and stage 2 owns what it is assigned, so both use this one function.
pub fn partition_of(service: &str, environment: &str, partitions: u32) -> i32 {
    let h = fnv1a(
        service
            .bytes()
            .chain(std::iter::once(0))
            .chain(environment.bytes()),
    );
    (h % u64::from(partitions.max(1))) as i32
}

/// FNV-1a, 64 bits: the same on every instance and every build.
fn fnv1a(bytes: impl Iterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// An HTTP request's identity: a hash of its route and body, the same
/// when an exporter sends the request again after an error (on any
/// instance). The owner applies a key's evidence from one request once, so
/// a request answered 503 after some of its keys' evidence was sent is
/// counted once when it comes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl RequestId {
    pub fn of(route: &str, body: &[u8]) -> RequestId {
        RequestId(fnv1a(
            route
                .bytes()
                .chain(std::iter::once(0))
                .chain(body.iter().copied()),
        ))
    }
}

/// An HTTP request as it came (its route and body), whose [`RequestId`]
/// is taken only where one is needed: hashing the body costs, and only
/// evidence sent through Kafka carries it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub route: &'a str,
    pub body: &'a [u8],
}

impl Request<'_> {
    pub fn id(&self) -> RequestId {
        RequestId::of(self.route, self.body)
    }
}

/// Which keys this instance decides for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Ownership {
    /// Every key: one process runs both stages (`replay`, `demo`, HTTP
    /// without Kafka).
    #[default]
    All,
    /// The keys of the `owned` evidence partitions, out of `count`.
    Partitions {
        count: u32,
        owned: std::collections::BTreeSet<i32>,
        /// Partitions being read back, not yet decided for: their keys'
        /// windows are kept (being rebuilt); every other key's are not.
        reading: std::collections::BTreeSet<i32>,
    },
}

impl Ownership {
    pub fn owns(&self, service: &str, environment: &str) -> bool {
        match self {
            Ownership::All => true,
            Ownership::Partitions { count, owned, .. } => {
                owned.contains(&partition_of(service, environment, *count))
            }
        }
    }

    /// Whether the key's evidence is kept here: owned, or being read back.
    pub fn keeps(&self, service: &str, environment: &str) -> bool {
        match self {
            Ownership::All => true,
            Ownership::Partitions {
                count,
                owned,
                reading,
            } => {
                let p = partition_of(service, environment, *count);
                owned.contains(&p) || reading.contains(&p)
            }
        }
    }
}

/// Which side of a deploy telemetry describes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Candidate,
    Baseline,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Candidate => "candidate",
            Role::Baseline => "baseline",
        }
    }
}

/// A raw Kafka record an item came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Where a batch of evidence came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Raw telemetry records: for each (topic, partition), the last offset
    /// stage 1 had read when it flushed (records without items for this key
    /// are covered too).
    Kafka(Vec<(String, i32, i64)>),
    /// An HTTP request (OTLP/HTTP, Alertmanager, the admin API). Telemetry
    /// says which request: applied once per key.
    Http(Option<RequestId>),
    /// In the same process (replay, demo, HTTP without Kafka).
    Local,
}

/// One batch of evidence for one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub key: Key,
    pub origin: Origin,
    pub items: Vec<Item>,
}

/// Requests counted together: of one deploy side in one time slot, or
/// added to a window at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub errors: u64,
    pub slow: u64,
    /// Histogram data points behind them (0 for spans; a point may carry
    /// zero requests, and a window uses metrics once it saw any).
    pub points: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.requests = self.requests.saturating_add(o.requests);
        self.errors = self.errors.saturating_add(o.errors);
        self.slow = self.slow.saturating_add(o.slow);
        self.points = self.points.saturating_add(o.points);
    }
}

/// The last point of one cumulative series on one deploy side, handed
/// over ([`Item::Handover`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HandedPoint {
    pub deploy_id: String,
    pub role: Role,
    pub series: u64,
    pub start: Timestamp,
    pub time: Timestamp,
    pub count: u64,
    pub slow: u64,
}

/// One piece of evidence.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// Requests of one deploy side in one time slot (the start of the
    /// slot: the policy's finest window bucket, so windows see them exactly
    /// as they would have seen each request).
    Counts {
        deploy_id: String,
        role: Role,
        raw: Option<RawOffset>,
        at: Timestamp,
        /// Histogram data (`true`) or spans.
        metrics: bool,
        counts: Counts,
    },
    /// One point of a cumulative histogram series, for the owner to turn
    /// into a delta.
    Cumulative {
        deploy_id: String,
        role: Role,
        raw: Option<RawOffset>,
        series: u64,
        start: Timestamp,
        time: Timestamp,
        count: u64,
        /// Requests in buckets at or above the deploy's latency threshold.
        slow: u64,
        error: bool,
        /// Stage 1 turns a series of keyed raw records into deltas itself
        /// (they stay on one raw partition) and sends only the first point
        /// it reads of each, with the offset it started reading the raw
        /// partition at: the owner counts what it adds only since a
        /// [`Item::Handover`] of that partition at that offset (or as the
        /// first point of a new series). `None`: the owner turns every
        /// point into a delta.
        resume: Option<i64>,
    },
    /// The last point of each cumulative series stage 1 turned into deltas
    /// on one raw partition, up to (not including) offset `next`, sent when
    /// it stops reading the partition (revoked, or shut down): the
    /// reference of the next reader's first points.
    Handover {
        topic: String,
        partition: i32,
        next: i64,
        points: Vec<HandedPoint>,
    },
    /// Requests of a version no active deploy claims, in one time slot
    /// (where deploys are inferred): the owner learns from them which
    /// versions serve, starts a deploy when a new one does, and counts them
    /// for a deploy that claims the version by then.
    Seen {
        version: String,
        raw: Option<RawOffset>,
        at: Timestamp,
        metrics: bool,
        counts: Counts,
    },
    /// Alertmanager alerts for deploys of this key (matched by stage 1;
    /// the owner matches them again with the same rules).
    Alerts(Vec<Alert>),
    /// A person's rollback of one deploy of this key.
    Rollback {
        deploy_id: String,
        reason: String,
        actor: String,
    },
}

impl Item {
    /// Whether it asks for a decision (an alert, a person's rollback)
    /// rather than adding to windows.
    pub fn is_decision(&self) -> bool {
        matches!(self, Item::Alerts(_) | Item::Rollback { .. })
    }

    /// The observations it stands for: the requests it counts, or one
    /// cumulative point.
    pub fn observations(&self) -> u64 {
        match self {
            Item::Counts { counts, .. } | Item::Seen { counts, .. } => counts.requests,
            Item::Cumulative { .. } => 1,
            _ => 0,
        }
    }

    /// The raw record it came from, if it came from one.
    pub fn raw(&self) -> Option<&RawOffset> {
        match self {
            Item::Counts { raw, .. } | Item::Cumulative { raw, .. } | Item::Seen { raw, .. } => {
                raw.as_ref()
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_and_stay_put() {
        let key = |s: &str, e: &str| Key {
            service: s.into(),
            environment: e.into(),
        };
        assert_eq!(
            key("checkout", "prod").partition(6),
            key("checkout", "prod").partition(6)
        );
        assert_ne!(
            key("a", "bc").partition(1 << 30),
            key("ab", "c").partition(1 << 30)
        );
        let mut seen = [0usize; 6];
        for i in 0..600 {
            seen[key(&format!("svc-{i}"), "prod").partition(6) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (50..150).contains(&n)), "{seen:?}");
        assert_eq!(key("x", "y").partition(0), 0);
    }
}
