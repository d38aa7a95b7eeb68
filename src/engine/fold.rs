//! Stage 1, intake: decoded telemetry, alerts and manual rollbacks matched
//! to the deploys they concern and folded into [`Evidence`] keyed by
//! (service, environment) — what the owner of each key needs to decide.
//!
//! Spans and delta histogram points become counters per deploy side, time
//! slot and raw record. Cumulative histogram points of keyed raw records
//! (a series stays on one raw partition) become counters too, but for the
//! first point read of each series ([`super::series`]); those of other
//! records travel as they are (a series may reach intake on several raw
//! partitions, so only the owner can turn it into deltas). A slot is the finest bucket of the deploy's
//! windows ([`window::slot`]: one second with the default windows), so the
//! owner's windows see the counters exactly as they would have seen each
//! request. Data from before a deploy started is outside its windows; data
//! older than its longest window is late (dropped); data that came later
//! than `allowed_lateness` after its slot ended is counted `too_late` here
//! and judged so again by the owner on its own clock (see `intake`); what
//! no active deploy claims is unmatched — and, for a service whose deploys
//! are inferred (`[deploys] infer`), folded the same way per version
//! ([`Item::Seen`]) for the owner to learn which versions serve (see
//! `infer`).
//!
//! A [`Fold`] gathers evidence until it is flushed: at once when the engine
//! is given telemetry itself (`replay`, `demo`, HTTP without Kafka: both
//! stages in one process), every flush interval in `run`, where the
//! evidence goes to its owner through the evidence topic
//! ([`crate::ingest::evidence`] is its record format).

use std::collections::BTreeMap;

use super::registry::{Registry, Target};
use super::series::{CumState, Handovers, Series, Step};
use super::{window, EngineConfig};
use crate::config::Policy;
use crate::model::evidence::{Counts, Evidence, Item, Key, Origin, RawOffset, Role};
use crate::model::{
    Alert, DeployEvent, HistPoint, ResourceTelemetry, SpanObs, TelemetryBatch, TelemetryOutcome,
    Temporality,
};
use crate::time::Timestamp;

/// The key of a deploy: its service and environment.
pub fn key_of(d: &DeployEvent) -> Key {
    Key {
        service: d.service.clone(),
        environment: d.environment_or_default().to_string(),
    }
}

/// What counts are of: a deploy's side, or a version no deploy claims.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Of {
    Side(String, Role),
    Version(String),
}

/// Items that sum: (what of, raw record, slot, metrics?).
type CountsKey = (Of, Option<RawOffset>, Timestamp, bool);

/// The raw Kafka record an export came from.
#[derive(Debug, Clone, Copy)]
pub struct Raw<'a> {
    pub offset: &'a RawOffset,
    /// Whether it has a key: keyed records are taken as keyed by resource,
    /// each series on one raw partition ([`super::series`]).
    pub keyed: bool,
}

/// Evidence being gathered, per key.
#[derive(Debug, Default)]
pub struct Fold {
    counts: BTreeMap<Key, BTreeMap<CountsKey, Counts>>,
    other: BTreeMap<Key, Vec<Item>>,
    /// The last raw offset folded, per (topic, partition).
    read: BTreeMap<(String, i32), i64>,
    /// Cumulative series of keyed raw records: kept across flushes.
    series: Series,
}

impl Fold {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.other.is_empty()
    }

    /// Notes that the raw record at (`topic`, `partition`, `offset`) is
    /// read (whether or not anything of it matches a deploy); false when
    /// this fold has it already — the partition was read again from an
    /// earlier offset before the flush (revoked and assigned anew, or
    /// started from its beginning): folded again, it would count twice in
    /// one item, which no owner can tell apart.
    pub fn read(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        self.series.record(topic, partition, offset);
        match self.read.get_mut(&(topic.to_string(), partition)) {
            Some(last) if offset <= *last => false,
            Some(last) => {
                *last = offset;
                true
            }
            None => {
                self.read.insert((topic.to_string(), partition), offset);
                true
            }
        }
    }

    /// Brings `kept` up to the series of keyed raw records as they are
    /// now: the handover of each partition when stage 1 stops reading it.
    pub fn keep_handovers(&mut self, kept: &mut Handovers) {
        self.series.keep(kept);
    }

    /// The partitions read changed (a rebalance): every series of keyed
    /// records starts afresh.
    pub fn reassigned(&mut self) {
        self.series.reset();
    }

    /// Matches one decoded export to deploys and folds it in. `raw` is the
    /// record it came from (Kafka), `None` from HTTP or a replay line.
    pub(super) fn telemetry(
        &mut self,
        registry: &Registry,
        config: &EngineConfig,
        batch: &TelemetryBatch,
        raw: Option<Raw<'_>>,
        now: Timestamp,
    ) -> TelemetryOutcome {
        let mut out = TelemetryOutcome::default();
        let offset = raw.map(|r| r.offset);
        if raw.is_some_and(|r| r.keyed) {
            self.series.sweep(now, config.longest_window);
        }
        for res in &batch.resources {
            let targets = registry.correlate(&res.ident);
            if targets.is_empty() {
                out.unmatched += (res.spans.len() + res.points.len()) as u64;
                self.unclaimed(config, res, offset, now);
                continue;
            }
            for t in &targets {
                self.side(t, res, (raw, config.limits.max_series), now, &mut out);
            }
        }
        out
    }

    /// Folds one resource's spans and points into one deploy side: counts
    /// per slot; cumulative points as what they add, or as they are (the
    /// first read of a series of keyed records, or any of other records).
    /// Keeps at most `max_series` series of keyed records.
    fn side(
        &mut self,
        t: &Target<'_>,
        res: &ResourceTelemetry,
        (raw, max_series): (Option<Raw<'_>>, usize),
        now: Timestamp,
        out: &mut TelemetryOutcome,
    ) {
        let d = t.deploy;
        let key = key_of(&d.info);
        let of = Of::Side(d.info.deploy_id.clone(), t.role);
        let offset = raw.map(|r| r.offset);
        let mut slots = SideSlots::new(&d.policy, d.info.at, now);
        // The kinds of request this service counts; the others are ignored.
        let counted = d.policy.requests;
        for s in res.spans.iter().filter(|s| counted.contains(s.kind)) {
            slots.span(s, out);
        }
        // Points that travel whole, added to the key's items at the end.
        let mut whole = Vec::new();
        for p in res.points.iter().filter(|p| counted.contains(p.kind)) {
            if p.temporality != Temporality::Cumulative {
                slots.delta(p, out);
                continue;
            }
            let step = match raw.filter(|r| r.keyed) {
                Some(r) => {
                    let point = CumState {
                        start: p.start.0,
                        time: p.time.0,
                        count: p.count,
                        slow: slots.slow(p),
                    };
                    let side = (p.series, d.seq, t.role);
                    let of = (&key, d.info.deploy_id.as_str());
                    self.series.point(r.offset, of, side, point, max_series)
                }
                None => Step::Whole,
            };
            let resume = match step {
                Step::Resume(from) => Some(from),
                Step::Whole => None,
                Step::Adds(requests, slow) => {
                    slots.cumulative_adds(p, (requests, slow), out);
                    continue;
                }
                Step::Nothing => {
                    out.observations += 1;
                    continue;
                }
            };
            whole.push(slots.cumulative(p, (&d.info.deploy_id, t.role), (offset, resume), out));
        }
        if !whole.is_empty() {
            self.other.entry(key.clone()).or_default().extend(whole);
        }
        self.sum(key, of, offset, slots.sums);
    }

    /// Folds a resource no deploy claims per version, for the owner to
    /// learn from, if its service's deploys are inferred and it says its
    /// version. A cumulative point says only that the version serves.
    fn unclaimed(
        &mut self,
        config: &EngineConfig,
        res: &ResourceTelemetry,
        raw: Option<&RawOffset>,
        now: Timestamp,
    ) {
        let (Some(service), Some(version)) = (&res.ident.service, &res.ident.version) else {
            return;
        };
        if !config.deploys.infers(service) {
            return;
        }
        let key = Key {
            service: service.clone(),
            environment: res
                .ident
                .environment
                .clone()
                .unwrap_or_else(|| crate::model::DEFAULT_ENVIRONMENT.to_string()),
        };
        let policy = config.policy(service);
        let counted = policy.requests;
        let mut slots = SideSlots::new(policy, Timestamp::MIN, now);
        let mut ignored = TelemetryOutcome::default();
        for s in res.spans.iter().filter(|s| counted.contains(s.kind)) {
            slots.span(s, &mut ignored);
        }
        for p in res.points.iter().filter(|p| counted.contains(p.kind)) {
            if p.temporality == Temporality::Cumulative {
                let presence = Counts {
                    points: 1,
                    ..Counts::default()
                };
                if p.time > slots.late_before {
                    slots.add(p.time, true, presence);
                }
            } else {
                slots.delta(p, &mut ignored);
            }
        }
        self.sum(key, Of::Version(version.clone()), raw, slots.sums);
    }

    /// Adds one resource's sums per (slot, metrics?) to the fold.
    fn sum(
        &mut self,
        key: Key,
        of: Of,
        raw: Option<&RawOffset>,
        sums: Vec<((Timestamp, bool), Counts)>,
    ) {
        if sums.is_empty() {
            return;
        }
        let counts = self.counts.entry(key).or_default();
        for ((at, metrics), c) in sums {
            *counts
                .entry((of.clone(), raw.cloned(), at, metrics))
                .or_default() += c;
        }
    }

    /// Routes alerts to the keys of the deploys `match_deploy` matches them
    /// to; returns those that match no active deploy (the instance that
    /// received them audits them).
    pub(super) fn alerts(
        &mut self,
        registry: &Registry,
        alerts: Vec<Alert>,
        match_deploy: impl Fn(&Alert) -> Option<String>,
    ) -> Vec<Alert> {
        let mut unmatched = Vec::new();
        for a in alerts {
            let key = match_deploy(&a)
                .and_then(|id| registry.get(&id))
                .map(|d| key_of(&d.info));
            let Some(key) = key else {
                unmatched.push(a);
                continue;
            };
            let items = self.other.entry(key).or_default();
            match items.last_mut() {
                Some(Item::Alerts(list)) => list.push(a),
                _ => items.push(Item::Alerts(vec![a])),
            }
        }
        unmatched
    }

    /// Gives a person's rollback of `deploy_id` to its owner; `None` when
    /// no such deploy is active.
    pub(super) fn rollback(
        &mut self,
        registry: &Registry,
        deploy_id: &str,
        reason: &str,
        actor: &str,
    ) -> Option<Key> {
        let key = key_of(&registry.get(deploy_id)?.info);
        self.other
            .entry(key.clone())
            .or_default()
            .push(Item::Rollback {
                deploy_id: deploy_id.to_string(),
                reason: reason.to_string(),
                actor: actor.to_string(),
            });
        Some(key)
    }

    /// What was gathered, one [`Evidence`] per key, from `origin` (for
    /// Kafka, the raw ranges read are filled in), and a fresh fold.
    pub fn flush(&mut self, origin: Origin) -> Vec<Evidence> {
        let series = std::mem::take(&mut self.series);
        let fold = std::mem::take(self);
        self.series = series;
        let ranges: Vec<(String, i32, i64)> = fold
            .read
            .into_iter()
            .map(|((t, p), last)| (t, p, last))
            .collect();
        let mut keys: Vec<Key> = fold
            .counts
            .keys()
            .chain(fold.other.keys())
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        let (mut counts, mut other) = (fold.counts, fold.other);
        keys.into_iter()
            .map(|key| {
                let mut items: Vec<Item> = counts
                    .remove(&key)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|((of, raw, at, metrics), counts)| match of {
                        Of::Side(deploy_id, role) => Item::Counts {
                            deploy_id,
                            role,
                            raw,
                            at,
                            metrics,
                            counts,
                        },
                        Of::Version(version) => Item::Seen {
                            version,
                            raw,
                            at,
                            metrics,
                            counts,
                        },
                    })
                    .collect();
                items.extend(other.remove(&key).unwrap_or_default());
                let origin = match &origin {
                    Origin::Kafka(_) => Origin::Kafka(ranges.clone()),
                    other => other.clone(),
                };
                Evidence { key, origin, items }
            })
            .collect()
    }
}

/// One deploy side's (or version's) share of one resource, summed per
/// (slot, metrics?) before it is merged into the fold once per slot.
struct SideSlots<'a> {
    policy: &'a Policy,
    /// When the deploy started: earlier evidence is outside its windows.
    start: Timestamp,
    now: Timestamp,
    /// The width of a slot, in nanoseconds.
    slot: i64,
    /// Evidence at or before this is older than the longest window: late.
    late_before: Timestamp,
    sums: Vec<((Timestamp, bool), Counts)>,
}

impl<'a> SideSlots<'a> {
    fn new(policy: &'a Policy, start: Timestamp, now: Timestamp) -> SideSlots<'a> {
        SideSlots {
            policy,
            start,
            now,
            slot: window::slot(&policy.lengths),
            late_before: now.saturating_sub(policy.longest()),
            sums: Vec::new(),
        }
    }

    /// Whether evidence of event time `t` came later than the policy's
    /// `allowed_lateness` after its slot ended.
    fn too_late(&self, t: Timestamp) -> bool {
        let lateness = self.policy.allowed_lateness;
        window::past_lateness(t.min(self.now), self.slot, lateness, self.now).is_some()
    }

    /// Adds `c` to the slot of `at` (spans or metrics).
    fn add(&mut self, at: Timestamp, metrics: bool, c: Counts) {
        let slot = self.slot;
        let at = Timestamp(at.min(self.now).0.div_euclid(slot) * slot);
        let sum = match self
            .sums
            .iter_mut()
            .rev()
            .find(|(k, _)| *k == (at, metrics))
        {
            Some((_, sum)) => sum,
            None => {
                self.sums.push(((at, metrics), Counts::default()));
                &mut self.sums.last_mut().expect("just pushed").1
            }
        };
        *sum += c;
    }

    /// One span: a request, unless it ended before the deploy or is late.
    fn span(&mut self, s: &SpanObs, out: &mut TelemetryOutcome) {
        if s.end < self.start {
            // Before the deploy: outside every window of it.
            return;
        }
        if s.end <= self.late_before {
            out.late += 1;
            return;
        }
        let threshold = self.policy.latency_threshold;
        let c = Counts {
            requests: 1,
            errors: u64::from(s.error),
            slow: u64::from(s.latency_ns > threshold.nanos()),
            points: 0,
        };
        self.add(s.end, false, c);
        out.observations += 1;
        out.too_late += u64::from(self.too_late(s.end));
    }

    /// Slow requests of a histogram point, by the policy's threshold.
    fn slow(&self, p: &HistPoint) -> u64 {
        let threshold = self.policy.latency_threshold;
        p.slow_count(threshold.as_secs_f64()).min(p.count)
    }

    /// A delta histogram point: its requests, unless it is from before the
    /// deploy or late.
    fn delta(&mut self, p: &HistPoint, out: &mut TelemetryOutcome) {
        if p.time < self.start {
            return;
        }
        if p.time <= self.late_before {
            out.late += 1;
            return;
        }
        let c = Counts {
            requests: p.count,
            errors: if p.error { p.count } else { 0 },
            slow: self.slow(p),
            points: 1,
        };
        self.add(p.time, true, c);
        out.observations += 1;
        out.too_late += u64::from(self.too_late(p.time));
    }

    /// A cumulative histogram point, as it is: every point, even an old
    /// one, is the reference the owner measures the next point's delta
    /// from. `resume`: stage 1 turns the series into deltas, this is the
    /// first point it read of it since it started reading at that offset.
    fn cumulative(
        &self,
        p: &HistPoint,
        (deploy_id, role): (&str, Role),
        (raw, resume): (Option<&RawOffset>, Option<i64>),
        out: &mut TelemetryOutcome,
    ) -> Item {
        out.observations += 1;
        out.too_late += u64::from(p.time >= self.start && self.too_late(p.time));
        Item::Cumulative {
            deploy_id: deploy_id.to_string(),
            role,
            raw: raw.cloned(),
            series: p.series,
            start: p.start,
            time: p.time,
            count: p.count,
            slow: self.slow(p),
            error: p.error,
            resume,
        }
    }

    /// What a cumulative point adds since the series' previous point
    /// (`requests`, `slow`): its requests, unless it is from before the
    /// deploy or late — as the owner counts it from whole points.
    fn cumulative_adds(
        &mut self,
        p: &HistPoint,
        (requests, slow): (u64, u64),
        out: &mut TelemetryOutcome,
    ) {
        out.observations += 1;
        if p.time < self.start {
            return;
        }
        out.too_late += u64::from(self.too_late(p.time));
        if p.time <= self.late_before {
            out.late += 1;
            return;
        }
        let c = Counts {
            requests,
            errors: if p.error { requests } else { 0 },
            slow,
            points: 1,
        };
        self.add(p.time, true, c);
    }
}
