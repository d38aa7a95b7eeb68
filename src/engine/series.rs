//! Cumulative histogram series turned into deltas: the one rule both
//! stages share ([`since`]), and stage 1's own state for series of keyed
//! raw records.
//!
//! A raw record with a key stays on the partition of its key, and an
//! exporter that keys records keys them by resource (the OpenTelemetry
//! Collector's Kafka exporter with `partition_metrics_by_resource_attributes`:
//! a hash of the resource's attributes), so every point of a series in
//! keyed records reaches one raw partition, in order, and whoever reads
//! that partition can turn the series into deltas. Stage 1 does, per raw
//! partition ([`Series`]): the first point it reads of each series goes to
//! the owner whole, marked with the offset stage 1 started reading the
//! partition at (`Item::Cumulative::resume`); each later one only as the
//! requests it adds, folded into the deploy side's counters like a delta
//! point. When it stops reading a partition (revoked, or shut down) it
//! hands the last point of each series, as of the raw offsets it stored
//! for commit, to the owner ([`Handovers`], `Item::Handover`): the next
//! reader starts at that offset, and the owner counts its first points
//! against them. A reader that starts anywhere else (after a crash) has no
//! reference: its first points are references only (see `absorb`).
//!
//! Records without a key may spread a series over partitions (and so over
//! instances): their points go to the owner whole, who turns them into
//! deltas.

use std::collections::BTreeMap;

use crate::model::evidence::{Evidence, HandedPoint, Item, Key, Origin, RawOffset, Role};
use crate::time::{Duration, Timestamp};

use super::idmap::IdMap;

/// The last point of a cumulative histogram series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CumState {
    pub start: i64,
    pub time: i64,
    pub count: u64,
    /// Requests in buckets at or above the deploy's latency threshold.
    pub slow: u64,
}

/// Requests and slow requests point `p` adds since `prev`, the series'
/// previous point (a drop or a new start time is a reset: `p` counts
/// whole); `None` for a repeat or out-of-order point (its counts are
/// already in).
pub fn since(prev: &CumState, p: &CumState) -> Option<(u64, u64)> {
    if p.time <= prev.time {
        return None;
    }
    let restarted = p.start != 0 && prev.start != 0 && p.start != prev.start;
    Some(if restarted || p.count < prev.count || p.slow < prev.slow {
        (p.count, p.slow)
    } else {
        (p.count - prev.count, p.slow - prev.slow)
    })
}

/// A series as one deploy side sees it: (the series' id, the deploy's
/// seq, the side).
pub type SideSeries = (u64, u64, Role);

/// What stage 1 keeps of one series.
#[derive(Debug, Clone)]
struct Held {
    point: CumState,
    key: Key,
    deploy_id: String,
}

/// One raw partition being read.
#[derive(Debug, Clone, Default)]
struct Part {
    /// The offset reading started at.
    from: i64,
    /// The last offset read.
    last: i64,
    series: IdMap<SideSeries, Held>,
    /// Series changed since [`Series::keep`] last looked (repeats are
    /// harmless), and whether the partition started afresh since.
    changed: Vec<SideSeries>,
    fresh: bool,
}

impl Part {
    /// Notes that `series` changed (the list stays within twice the
    /// series held when nobody looks).
    fn note(&mut self, series: SideSeries) {
        self.changed.push(series);
        if self.changed.len() > 2 * self.series.len() + 64 {
            self.changed.sort_unstable();
            self.changed.dedup();
        }
    }
}

/// What stage 1 makes of a point of a keyed series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The first point read of the series since reading started at this
    /// offset: sent whole, marked so.
    Resume(i64),
    /// Requests and slow requests it adds since the previous point.
    Adds(u64, u64),
    /// A repeat or out-of-order point: nothing.
    Nothing,
    /// More series than `limits.max_series`: sent whole, unmarked (the
    /// owner turns it into deltas).
    Whole,
}

/// How often series that stopped are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Stage 1's cumulative series of keyed raw records, per raw partition.
#[derive(Debug, Default)]
pub struct Series {
    parts: BTreeMap<(String, i32), Part>,
    held: usize,
    next_sweep: Timestamp,
}

impl Series {
    /// Notes that the record at `offset` of (`topic`, `partition`) is
    /// read. A partition read again from an earlier offset (assigned anew)
    /// starts afresh.
    pub fn record(&mut self, topic: &str, partition: i32, offset: i64) {
        match self.parts.get_mut(&(topic.to_string(), partition)) {
            Some(p) if offset > p.last => p.last = offset,
            _ => {
                let old = self.parts.insert(
                    (topic.to_string(), partition),
                    Part {
                        from: offset,
                        last: offset,
                        fresh: true,
                        ..Part::default()
                    },
                );
                self.held -= old.map_or(0, |p| p.series.len());
            }
        }
    }

    /// Forgets every partition: the assignment changed.
    pub fn reset(&mut self) {
        self.parts.clear();
        self.held = 0;
    }

    /// Takes point `p` of `series` (of deploy `deploy_id`, seq `seq`,
    /// side `role`, key `key`) from the raw record `raw`; keeps at most
    /// `max` series.
    pub fn point(
        &mut self,
        raw: &RawOffset,
        (key, deploy_id): (&Key, &str),
        series: SideSeries,
        p: CumState,
        max: usize,
    ) -> Step {
        let at = (raw.topic.clone(), raw.partition);
        if !self.parts.contains_key(&at) {
            self.record(&raw.topic, raw.partition, raw.offset);
        }
        let Some(part) = self.parts.get_mut(&at) else {
            return Step::Whole;
        };
        if let Some(h) = part.series.get_mut(&series) {
            return match since(&h.point, &p) {
                Some((count, slow)) => {
                    h.point = p;
                    part.note(series);
                    Step::Adds(count, slow)
                }
                None => Step::Nothing,
            };
        }
        if self.held >= max {
            return Step::Whole;
        }
        self.held += 1;
        let held = Held {
            point: p,
            key: key.clone(),
            deploy_id: deploy_id.to_string(),
        };
        part.series.insert(series, held);
        part.note(series);
        Step::Resume(part.from)
    }

    /// Forgets series not updated for two longest windows (`longest`),
    /// at most every minute.
    pub fn sweep(&mut self, now: Timestamp, longest: Duration) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now.saturating_add(SWEEP_EVERY);
        let keep_after = now.saturating_sub(longest).saturating_sub(longest).0;
        for part in self.parts.values_mut() {
            let changed = &mut part.changed;
            part.series.retain(|s, h| {
                let keep = h.point.time > keep_after;
                if !keep {
                    changed.push(*s);
                }
                keep
            });
        }
        self.held = self.parts.values().map(|p| p.series.len()).sum();
    }

    /// Brings `kept` up to the series as they are now (every partition
    /// read up to its last offset), copying only what changed since the
    /// last time.
    pub fn keep(&mut self, kept: &mut Handovers) {
        kept.parts.retain(|at, _| self.parts.contains_key(at));
        for (at, part) in &mut self.parts {
            let k = kept.parts.entry(at.clone()).or_default();
            if std::mem::take(&mut part.fresh) {
                k.series.clear();
            }
            (k.from, k.last) = (part.from, part.last);
            for s in part.changed.drain(..) {
                match part.series.get(&s) {
                    Some(h) => k.series.insert(s, h.clone()),
                    None => k.series.remove(&s),
                };
            }
        }
    }
}

/// Stage 1's series as of the raw offsets it last stored for commit: what
/// it hands over when it stops reading a partition.
#[derive(Debug, Clone, Default)]
pub struct Handovers {
    parts: BTreeMap<(String, i32), Part>,
}

impl Handovers {
    /// The handover of each raw partition `which` accepts, one evidence
    /// per key; those partitions are forgotten here.
    pub fn take(&mut self, which: impl Fn(&str, i32) -> bool) -> Vec<Evidence> {
        let taken: Vec<(String, i32)> = self
            .parts
            .iter()
            .filter(|((t, p), part)| which(t, *p) && !part.series.is_empty())
            .map(|(at, _)| at.clone())
            .collect();
        let mut by_key: BTreeMap<Key, Vec<Item>> = BTreeMap::new();
        for at in taken {
            let Some(part) = self.parts.remove(&at) else {
                continue;
            };
            let mut points: BTreeMap<&Key, Vec<HandedPoint>> = BTreeMap::new();
            for (&(series, _, role), h) in &part.series {
                points.entry(&h.key).or_default().push(HandedPoint {
                    deploy_id: h.deploy_id.clone(),
                    role,
                    series,
                    start: Timestamp(h.point.start),
                    time: Timestamp(h.point.time),
                    count: h.point.count,
                    slow: h.point.slow,
                });
            }
            for (key, mut points) in points {
                points.sort_by_key(|p| (p.series, p.role));
                by_key.entry(key.clone()).or_default().push(Item::Handover {
                    topic: at.0.clone(),
                    partition: at.1,
                    next: part.last + 1,
                    points,
                });
            }
        }
        by_key
            .into_iter()
            .map(|(key, items)| Evidence {
                key,
                origin: Origin::Kafka(Vec::new()),
                items,
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.values().all(|p| p.series.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(time: i64, count: u64) -> CumState {
        CumState {
            start: 1,
            time,
            count,
            slow: 0,
        }
    }

    #[test]
    fn a_point_adds_what_came_since_the_previous_one() {
        assert_eq!(since(&st(10, 5), &st(20, 8)), Some((3, 0)));
        assert_eq!(since(&st(10, 5), &st(10, 9)), None, "a repeat");
        assert_eq!(since(&st(10, 5), &st(20, 2)), Some((2, 0)), "a reset");
        let restarted = CumState {
            start: 2,
            ..st(20, 9)
        };
        assert_eq!(since(&st(10, 5), &restarted), Some((9, 0)));
    }

    #[test]
    fn the_first_point_of_each_series_per_partition_resumes_and_a_reread_starts_afresh() {
        let key = Key {
            service: "web".into(),
            environment: "prod".into(),
        };
        let raw = |partition, offset| RawOffset {
            topic: "otlp_metrics".into(),
            partition,
            offset,
        };
        let mut s = Series::default();
        let side = (7, 1, Role::Candidate);
        s.record("otlp_metrics", 0, 40);
        let of = (&key, "d-1");
        assert_eq!(
            s.point(&raw(0, 40), of, side, st(10, 5), 10),
            Step::Resume(40)
        );
        s.record("otlp_metrics", 0, 41);
        assert_eq!(
            s.point(&raw(0, 41), of, side, st(20, 8), 10),
            Step::Adds(3, 0)
        );
        assert_eq!(s.point(&raw(0, 41), of, side, st(20, 8), 10), Step::Nothing);
        // The same series on another partition is another series here.
        assert_eq!(
            s.point(&raw(1, 3), of, side, st(20, 8), 10),
            Step::Resume(3)
        );
        assert_eq!(
            s.point(&raw(1, 4), of, (8, 1, Role::Candidate), st(20, 8), 2),
            Step::Whole,
            "over the limit"
        );
        let mut h = Handovers::default();
        s.keep(&mut h);
        // Read again from an earlier offset: afresh.
        s.record("otlp_metrics", 0, 38);
        assert_eq!(
            s.point(&raw(0, 38), of, side, st(9, 4), 10),
            Step::Resume(38)
        );
        let handed = h.take(|_, p| p == 0);
        assert_eq!(handed.len(), 1);
        assert_eq!(
            handed[0].items,
            [Item::Handover {
                topic: "otlp_metrics".into(),
                partition: 0,
                next: 42,
                points: vec![HandedPoint {
                    deploy_id: "d-1".into(),
                    role: Role::Candidate,
                    series: 7,
                    start: Timestamp(1),
                    time: Timestamp(20),
                    count: 8,
                    slow: 0,
                }],
            }]
        );
        assert!(h.take(|_, p| p == 0).is_empty(), "handed over once");
        assert!(!h.is_empty());
        s.sweep(Timestamp(1_000_000_000_000), Duration::from_secs(1));
        assert_eq!(s.held, 0);
    }
}
