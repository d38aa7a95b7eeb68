//! Rolling windows in event time: time-bucketed request counters.
//!
//! A [`SeriesWindows`] keeps, for each distinct window length of a policy,
//! a ring of [`BUCKETS`] buckets of width `length / BUCKETS`. Adding an
//! observation touches one bucket per length (O(1)); a window sum reads one
//! ring. Memory is fixed when the series is created, whatever the traffic.
//!
//! A bucket remembers its epoch (bucket index since the Unix epoch), so a
//! slot that still holds older data is reset lazily by the next write, and a
//! read counts only epochs inside `(now − length, now]`. A write older than
//! what a slot already holds is too old for that ring and is dropped there.
//!
//! Spans and histogram points are counted separately in each bucket, because a
//! window uses metrics when it saw any histogram data and spans otherwise —
//! never both added together.
//!
//! Beside the windows, a series keeps what the attribution test reads (see
//! `judge`): its *watermark*, the latest event time added, and two rings of
//! pair slots — the finest window's buckets for spans, the longest
//! window's for histograms — long enough to hold a slot until
//! `allowed_lateness` after its end. Evidence that came later than that
//! ([`SeriesWindows::add_late_counts`]) still counts in the windows but
//! never reaches the pair slots, so the attribution test cannot read it.

use crate::config::Policy;
pub use crate::model::evidence::Counts;
use crate::time::{Duration, Timestamp};

/// Buckets per window length: the window's edges are exact to 1/60 of its
/// length (1s for a 1m window, 30s for a 30m one).
pub const BUCKETS: usize = 60;

/// Request counters of one bucket from one kind of source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cell {
    requests: u32,
    errors: u32,
    slow: u32,
}

impl Cell {
    fn add(&mut self, requests: u64, errors: u64, slow: u64) {
        let sat = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        self.requests = self.requests.saturating_add(sat(requests));
        self.errors = self.errors.saturating_add(sat(errors));
        self.slow = self.slow.saturating_add(sat(slow));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    epoch: i64,
    spans: Cell,
    metrics: Cell,
    /// Histogram data points seen (a point may carry zero requests).
    metric_points: u32,
}

const EMPTY: Bucket = Bucket {
    epoch: i64::MIN,
    spans: Cell {
        requests: 0,
        errors: 0,
        slow: 0,
    },
    metrics: Cell {
        requests: 0,
        errors: 0,
        slow: 0,
    },
    metric_points: 0,
};

/// Where a window's counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SliSource {
    None,
    Spans,
    Metrics,
}

/// The totals of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WindowCounts {
    pub requests: u64,
    pub errors: u64,
    pub slow: u64,
    pub source: SliSource,
}

impl WindowCounts {
    pub const EMPTY: WindowCounts = WindowCounts {
        requests: 0,
        errors: 0,
        slow: 0,
        source: SliSource::None,
    };

    pub fn bad(&self, sli: Sli) -> u64 {
        match sli {
            Sli::Errors => self.errors,
            Sli::Latency => self.slow,
        }
    }

    /// The counts added since `start` (an earlier reading of the same
    /// totals), or `None` when the source changed in between.
    pub fn since(self, start: WindowCounts) -> Option<WindowCounts> {
        if start.source != SliSource::None && start.source != self.source {
            return None;
        }
        Some(WindowCounts {
            requests: self.requests.saturating_sub(start.requests),
            errors: self.errors.saturating_sub(start.errors),
            slow: self.slow.saturating_sub(start.slow),
            source: self.source,
        })
    }

    /// Bad share of requests; zero when there were none.
    pub fn ratio(&self, sli: Sli) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.bad(sli) as f64 / self.requests as f64
        }
    }
}

/// The two service level indicators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sli {
    Errors,
    Latency,
}

impl Sli {
    pub const ALL: [Sli; 2] = [Sli::Errors, Sli::Latency];

    /// Its error budget under `policy` (1 − its objective).
    pub fn budget(self, policy: &Policy) -> f64 {
        match self {
            Sli::Errors => policy.error_budget(),
            Sli::Latency => policy.latency_budget(),
        }
    }

    /// Its place in per-SLI arrays: errors 0, latency 1.
    pub fn index(self) -> usize {
        match self {
            Sli::Errors => 0,
            Sli::Latency => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sli::Errors => "errors",
            Sli::Latency => "latency",
        }
    }
}

/// Which source an observation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Span,
    Metric,
}

#[derive(Debug, Clone)]
struct Ring {
    width: i64,
    /// [`BUCKETS`] for a window; as many as the lateness needs for pair
    /// slots.
    buckets: Box<[Bucket]>,
}

/// The most pair slots a series keeps per ring, whatever the policy: with
/// the finest slot of a second, over an hour of lateness (and ~160 KiB a
/// series). A longer `allowed_lateness` on such fine slots only loses the
/// late data of slots already overwritten; nothing is misread (a bucket
/// knows its epoch).
pub const MAX_PAIR_SLOTS: usize = 4096;

/// How many pair slots of `width` (ns) cover `allowed_lateness` past a
/// slot's end, plus the wait for the evaluation that reads it last (one
/// `evaluation_interval`) and a margin of three slots.
pub fn pair_slots_kept(
    allowed_lateness: Duration,
    evaluation_interval: Duration,
    width: i64,
) -> usize {
    let width = width.max(1);
    let span = allowed_lateness
        .nanos()
        .max(0)
        .saturating_add(evaluation_interval.nanos().max(0));
    let slots = span.div_euclid(width).saturating_add(1 + 3);
    usize::try_from(slots)
        .unwrap_or(MAX_PAIR_SLOTS)
        .clamp(4, MAX_PAIR_SLOTS)
}

/// The bucket width (ns) of a window of `length`.
pub fn bucket_width(length: Duration) -> i64 {
    let len = length.nanos().max(BUCKETS as i64);
    (len + BUCKETS as i64 - 1) / BUCKETS as i64
}

/// The finest time slot (ns) that lands in one bucket of every window of
/// `lengths`: the greatest common divisor of their bucket widths (one
/// second for the default 1m/5m/30m windows). Counts made at a slot's
/// start fill every window exactly as the requests inside it would have.
pub fn slot(lengths: &[Duration]) -> i64 {
    fn gcd(a: i64, b: i64) -> i64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    lengths.iter().map(|&l| bucket_width(l)).fold(0, gcd).max(1)
}

/// How late evidence of event time `t` is at `now` when it is later than
/// `allowed_lateness`: measured from the end of its `slot` (ns; see
/// [`slot`]) — the event time evidence carries is its slot's start — so
/// `None` until `allowed_lateness` has passed since the slot ended.
pub fn past_lateness(
    t: Timestamp,
    slot: i64,
    allowed_lateness: Duration,
    now: Timestamp,
) -> Option<Duration> {
    let slot = slot.max(1);
    let end = Timestamp(
        t.nanos()
            .div_euclid(slot)
            .saturating_add(1)
            .saturating_mul(slot),
    );
    let late_by = now.since(end);
    (late_by >= allowed_lateness.max(Duration::ZERO)).then_some(late_by)
}

impl Ring {
    fn new(length: Duration) -> Ring {
        Ring::slots(bucket_width(length), BUCKETS)
    }

    fn slots(width: i64, count: usize) -> Ring {
        Ring {
            width: width.max(1),
            buckets: vec![EMPTY; count.max(1)].into_boxed_slice(),
        }
    }

    fn add(&mut self, t: Timestamp, kind: Kind, c: Counts) {
        let epoch = t.nanos().div_euclid(self.width);
        let slot = epoch.rem_euclid(self.buckets.len() as i64) as usize;
        let b = &mut self.buckets[slot];
        if b.epoch < epoch {
            *b = Bucket { epoch, ..EMPTY };
        } else if b.epoch > epoch {
            return;
        }
        match kind {
            Kind::Span => b.spans.add(c.requests, c.errors, c.slow),
            Kind::Metric => {
                b.metrics.add(c.requests, c.errors, c.slow);
                let points = u32::try_from(c.points).unwrap_or(u32::MAX);
                b.metric_points = b.metric_points.saturating_add(points);
            }
        }
    }

    fn sum(&self, now: Timestamp) -> WindowCounts {
        let newest = now.nanos().div_euclid(self.width);
        let oldest = newest - self.buckets.len() as i64; // exclusive
        let mut t = Tally::default();
        for b in self.buckets.iter() {
            if b.epoch > oldest && b.epoch <= newest {
                t.add_bucket(b);
            }
        }
        t.counts()
    }

    /// The counts of bucket `epoch`, if the ring still holds it.
    fn bucket(&self, epoch: i64) -> WindowCounts {
        let b = &self.buckets[epoch.rem_euclid(self.buckets.len() as i64) as usize];
        if b.epoch == epoch {
            let mut t = Tally::default();
            t.add_bucket(b);
            t.counts()
        } else {
            WindowCounts::EMPTY
        }
    }

    fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Ring>() + self.buckets.len() * std::mem::size_of::<Bucket>()
    }
}

/// Counts summed over buckets (or over all time), by kind, without
/// overflow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    spans: [u64; 3],
    metrics: [u64; 3],
    points: u64,
}

impl Tally {
    /// Adds one bucket (plain additions: sums of u32 counters fit in u64).
    fn add_bucket(&mut self, b: &Bucket) {
        self.spans[0] += u64::from(b.spans.requests);
        self.spans[1] += u64::from(b.spans.errors);
        self.spans[2] += u64::from(b.spans.slow);
        self.metrics[0] += u64::from(b.metrics.requests);
        self.metrics[1] += u64::from(b.metrics.errors);
        self.metrics[2] += u64::from(b.metrics.slow);
        self.points += u64::from(b.metric_points);
    }

    pub fn add(&mut self, kind: Kind, c: [u64; 3], points: u64) {
        let cell = match kind {
            Kind::Span => &mut self.spans,
            Kind::Metric => &mut self.metrics,
        };
        for (sum, v) in cell.iter_mut().zip(c) {
            *sum = sum.saturating_add(v);
        }
        self.points = self.points.saturating_add(points);
    }

    /// Metrics when any histogram point was seen, else spans: never both.
    pub fn counts(&self) -> WindowCounts {
        let (c, source) = if self.points > 0 {
            (self.metrics, SliSource::Metrics)
        } else if self.spans[0] > 0 {
            (self.spans, SliSource::Spans)
        } else {
            return WindowCounts::EMPTY;
        };
        WindowCounts {
            requests: c[0],
            errors: c[1],
            slow: c[2],
            source,
        }
    }
}

/// All windows of one series (a deploy's candidate or its baseline).
#[derive(Debug, Clone)]
pub struct SeriesWindows {
    rings: Vec<Ring>,
    /// Everything ever added, by kind: the sequential tests count requests
    /// since their start, not inside a window.
    total: Tally,
    /// Event time of the earliest bad request added, errors then latency.
    first_bad: [Option<Timestamp>; 2],
    /// The attribution test's slots: the finest window's buckets (spans),
    /// then the longest window's (histograms), kept for the lateness.
    pair: [Ring; 2],
    /// The latest event time of evidence added in time: how far this
    /// side's evidence has come. One maximum over all of the side's
    /// sources, not a minimum per source (see `judge`).
    watermark: Option<Timestamp>,
    /// Evidence added in time so far (a count of adds), and the latest
    /// adds behind the watermark, with the count after each: a reader
    /// that remembers a [`Mark`] rereads only the slots touched since.
    writes: u64,
    behind: std::collections::VecDeque<(u64, Timestamp)>,
    /// The count of the latest add forgotten from `behind`.
    behind_forgotten: u64,
}

/// How many adds behind the watermark a series remembers (see
/// [`SeriesWindows::touched_since`]); a reader further behind rereads all.
const BEHIND_REMEMBERED: usize = 16;

/// What a reader of a series' pair slots had seen: see
/// [`SeriesWindows::touched_since`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    writes: u64,
    watermark: Option<Timestamp>,
}

impl SeriesWindows {
    /// The windows of `policy`, with pair slots kept for its
    /// `allowed_lateness`.
    pub fn for_policy(policy: &Policy) -> SeriesWindows {
        SeriesWindows::with_lateness(
            &policy.lengths,
            policy.allowed_lateness,
            policy.evaluation_interval,
        )
    }

    /// One ring per distinct window length, in the order of `lengths`, and
    /// pair slots for no lateness beyond one second of evaluation.
    pub fn new(lengths: &[Duration]) -> SeriesWindows {
        SeriesWindows::with_lateness(lengths, Duration::ZERO, Duration::from_secs(1))
    }

    fn with_lateness(
        lengths: &[Duration],
        allowed_lateness: Duration,
        evaluation_interval: Duration,
    ) -> SeriesWindows {
        let rings: Vec<Ring> = lengths.iter().map(|&l| Ring::new(l)).collect();
        let pair = |ring: Option<&Ring>| {
            let width = ring.map_or(1, |r| r.width);
            Ring::slots(
                width,
                pair_slots_kept(allowed_lateness, evaluation_interval, width),
            )
        };
        SeriesWindows {
            pair: [pair(rings.first()), pair(rings.last())],
            rings,
            total: Tally::default(),
            first_bad: [None, None],
            watermark: None,
            writes: 0,
            behind: Default::default(),
            behind_forgotten: 0,
        }
    }

    /// Counts `requests` (of which `errors` failed and `slow` were slow) at
    /// event time `t`, from one histogram point for [`Kind::Metric`].
    /// Callers clamp `t` to the clock, so nothing lands in the future.
    pub fn add(&mut self, t: Timestamp, kind: Kind, requests: u64, errors: u64, slow: u64) {
        let points = u64::from(kind == Kind::Metric);
        self.add_counts(
            t,
            kind,
            Counts {
                requests,
                errors,
                slow,
                points,
            },
        );
    }

    /// Adds counts gathered over many requests (and `points` histogram
    /// points) at `t`.
    pub fn add_counts(&mut self, t: Timestamp, kind: Kind, c: Counts) {
        for ring in &mut self.pair {
            ring.add(t, kind, c);
        }
        self.writes += 1;
        if self.watermark.is_some_and(|w| t < w) {
            if self.behind.len() == BEHIND_REMEMBERED {
                if let Some((forgotten, _)) = self.behind.pop_front() {
                    self.behind_forgotten = forgotten;
                }
            }
            self.behind.push_back((self.writes, t));
        }
        self.watermark = Some(self.watermark.map_or(t, |w| w.max(t)));
        self.add_late_counts(t, kind, c);
    }

    /// Adds counts that came later than `allowed_lateness`: to the windows
    /// and totals (the rates and the threshold tests), not to the pair
    /// slots or the watermark (the attribution test never reads them).
    pub fn add_late_counts(&mut self, t: Timestamp, kind: Kind, c: Counts) {
        for ring in &mut self.rings {
            ring.add(t, kind, c);
        }
        self.total
            .add(kind, [c.requests, c.errors, c.slow], c.points);
        for (first, bad) in self.first_bad.iter_mut().zip([c.errors, c.slow]) {
            if bad > 0 && first.is_none_or(|f| t < f) {
                *first = Some(t);
            }
        }
    }

    /// When the earliest bad request of `sli` added so far happened.
    pub fn first_bad(&self, sli: Sli) -> Option<Timestamp> {
        match sli {
            Sli::Errors => self.first_bad[0],
            Sli::Latency => self.first_bad[1],
        }
    }

    /// Every request added so far, from metrics when any histogram point
    /// was added, else from spans (the rule of a window).
    pub fn totals(&self) -> WindowCounts {
        self.total.counts()
    }

    /// The latest event time of evidence added in time, if any.
    pub fn watermark(&self) -> Option<Timestamp> {
        self.watermark
    }

    /// What a reader of the pair slots has seen now.
    pub fn mark(&self) -> Mark {
        Mark {
            writes: self.writes,
            watermark: self.watermark,
        }
    }

    /// The earliest event time evidence added since `mark` may have
    /// touched: `None` when nothing was added; [`Timestamp::MIN`] when that
    /// is no longer known (more adds behind the watermark than are
    /// remembered). Adds in order are at or after the watermark of `mark`.
    pub fn touched_since(&self, mark: Mark) -> Option<Timestamp> {
        if self.writes == mark.writes {
            return None;
        }
        if mark.writes < self.behind_forgotten {
            return Some(Timestamp::MIN);
        }
        let behind = self
            .behind
            .iter()
            .filter(|&&(after, _)| after > mark.writes)
            .map(|&(_, t)| t);
        Some(
            behind
                .chain(std::iter::once(mark.watermark.unwrap_or(Timestamp::MIN)))
                .min()
                .unwrap_or(Timestamp::MIN),
        )
    }

    /// The width (ns) of the pair slots in which candidate and baseline
    /// are compared: the finest window's buckets, or the longest window's
    /// for histograms (`metrics`).
    pub fn pair_width(&self, metrics: bool) -> i64 {
        self.pair[usize::from(metrics)].width
    }

    /// The counts of pair slot `epoch` (time `epoch × pair_width`), if it
    /// is still kept.
    pub fn pair_slot(&self, metrics: bool, epoch: i64) -> WindowCounts {
        self.pair[usize::from(metrics)].bucket(epoch)
    }

    /// What the longest window holds of event times at or after `t`
    /// (whole buckets only: a bucket that began before `t` is left out).
    pub fn since(&self, t: Timestamp) -> Tally {
        let mut tally = Tally::default();
        if let Some(r) = self.rings.last() {
            let first =
                t.nanos().div_euclid(r.width) + i64::from(t.nanos().rem_euclid(r.width) > 0);
            for b in r.buckets.iter().filter(|b| b.epoch >= first) {
                tally.add_bucket(b);
            }
        }
        tally
    }

    /// The totals of window `index` (an index into the policy's lengths) at `now`.
    pub fn window(&self, index: usize, now: Timestamp) -> WindowCounts {
        self.rings
            .get(index)
            .map_or(WindowCounts::EMPTY, |r| r.sum(now))
    }

    /// Bytes of heap and inline state, for the memory bench.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.rings.iter().map(Ring::memory_bytes).sum::<usize>()
            + self
                .pair
                .iter()
                .map(|r| r.buckets.len() * std::mem::size_of::<Bucket>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: i64 = 1_000_000_000;

    #[test]
    fn window_counts_only_its_range() {
        let mut w = SeriesWindows::new(&[Duration::from_secs(60), Duration::from_secs(300)]);
        for s in 0..600 {
            w.add(Timestamp(s * SEC), Kind::Span, 1, u64::from(s % 10 == 0), 0);
        }
        let now = Timestamp(599 * SEC);
        let short = w.window(0, now);
        assert_eq!(short.requests, 60);
        assert_eq!(short.errors, 6);
        assert_eq!(short.source, SliSource::Spans);
        assert_eq!(w.window(1, now).requests, 300);
        // Ten minutes later everything has aged out.
        assert_eq!(w.window(1, Timestamp(1200 * SEC)), WindowCounts::EMPTY);
    }

    #[test]
    fn metrics_win_over_spans_within_a_window() {
        let mut w = SeriesWindows::new(&[Duration::from_secs(60)]);
        w.add(Timestamp(10 * SEC), Kind::Span, 100, 50, 0);
        w.add(Timestamp(20 * SEC), Kind::Metric, 40, 1, 2);
        let c = w.window(0, Timestamp(30 * SEC));
        assert_eq!(
            (c.requests, c.errors, c.slow, c.source),
            (40, 1, 2, SliSource::Metrics)
        );
        // A point with zero requests still means "this window uses metrics".
        let mut w = SeriesWindows::new(&[Duration::from_secs(60)]);
        w.add(Timestamp(10 * SEC), Kind::Span, 100, 50, 0);
        w.add(Timestamp(20 * SEC), Kind::Metric, 0, 0, 0);
        assert_eq!(w.window(0, Timestamp(30 * SEC)).requests, 0);
    }

    #[test]
    fn late_writes_do_not_clobber_newer_buckets() {
        let mut w = SeriesWindows::new(&[Duration::from_secs(60)]);
        w.add(Timestamp(100 * SEC), Kind::Span, 5, 0, 0);
        // 60s earlier maps to the same slot: too old for this ring.
        w.add(Timestamp(40 * SEC), Kind::Span, 7, 7, 0);
        assert_eq!(w.window(0, Timestamp(100 * SEC)).requests, 5);
    }

    #[test]
    fn memory_is_small_and_fixed() {
        // The default windows, and pair slots for the default minute of
        // lateness: three rings of 60 buckets and ~70 one-second slots.
        let policy = crate::config::Config::default().default_policy.clone();
        let w = SeriesWindows::for_policy(&policy);
        assert!(w.memory_bytes() < 12 * 1024, "{}", w.memory_bytes());
        let mut long = (*policy).clone();
        long.allowed_lateness = Duration::from_secs(1800);
        let w = SeriesWindows::for_policy(&long);
        assert!(w.memory_bytes() < 96 * 1024, "{}", w.memory_bytes());
    }

    #[test]
    fn a_reader_learns_how_far_back_new_evidence_reaches() {
        let mut w = SeriesWindows::new(&[Duration::from_secs(60)]);
        let start = w.mark();
        w.add(Timestamp(100 * SEC), Kind::Span, 1, 0, 0);
        assert_eq!(w.touched_since(start), Some(Timestamp::MIN));
        let seen = w.mark();
        w.add(Timestamp(103 * SEC), Kind::Span, 1, 0, 0);
        assert_eq!(w.touched_since(seen), Some(Timestamp(100 * SEC)));
        w.add(Timestamp(90 * SEC), Kind::Span, 1, 0, 0);
        assert_eq!(w.touched_since(seen), Some(Timestamp(90 * SEC)));
        let seen = w.mark();
        w.add(Timestamp(95 * SEC), Kind::Span, 1, 0, 0);
        assert_eq!(w.touched_since(seen), Some(Timestamp(95 * SEC)));
        // Too many adds out of order since: no longer known.
        let seen = w.mark();
        for s in 0..=BEHIND_REMEMBERED as i64 {
            w.add(Timestamp((50 + s) * SEC), Kind::Span, 1, 0, 0);
        }
        assert_eq!(w.touched_since(seen), Some(Timestamp::MIN));
    }

    #[test]
    fn pair_slots_cover_the_lateness_and_late_counts_stay_out_of_them() {
        let policy = crate::config::Config::default().default_policy.clone();
        let mut w = SeriesWindows::for_policy(&policy);
        assert_eq!(w.pair_width(false), SEC);
        assert_eq!(w.pair_width(true), 30 * SEC);
        w.add(Timestamp(100 * SEC), Kind::Span, 5, 1, 0);
        // Its lateness and an evaluation interval later, slot 100 is
        // still kept.
        for s in 101..166 {
            w.add(Timestamp(s * SEC), Kind::Span, 1, 0, 0);
        }
        assert_eq!(w.pair_slot(false, 100).requests, 5);
        assert_eq!(w.watermark(), Some(Timestamp(165 * SEC)));
        // Evidence past its lateness counts in the windows only.
        w.add_late_counts(
            Timestamp(150 * SEC),
            Kind::Span,
            Counts {
                requests: 7,
                errors: 7,
                slow: 0,
                points: 0,
            },
        );
        assert_eq!(w.pair_slot(false, 150).requests, 1);
        assert_eq!(w.window(0, Timestamp(165 * SEC)).errors, 7);
        assert_eq!(w.touched_since(w.mark()), None);
        assert_eq!(w.totals().requests, 5 + 65 + 7);
        assert_eq!(w.watermark(), Some(Timestamp(165 * SEC)));
    }

    proptest! {
        /// Against a reference model: with times no later than `now`, a
        /// window's sum equals the naive count of observations whose bucket
        /// lies in the window's bucket range.
        #[test]
        fn matches_a_naive_model(
            len_s in 1i64..600,
            obs in proptest::collection::vec((0i64..4000, 0u64..5, 0u64..5, any::<bool>()), 0..300),
            extra in 0i64..200,
        ) {
            let length = Duration::from_secs(len_s);
            let mut w = SeriesWindows::new(&[length]);
            let mut sorted = obs.clone();
            sorted.sort_by_key(|o| o.0);
            let now_s = sorted.last().map_or(0, |o| o.0) + extra;
            let now = Timestamp(now_s * SEC);
            for &(t, req, err, metric) in &sorted {
                let kind = if metric { Kind::Metric } else { Kind::Span };
                w.add(Timestamp(t * SEC), kind, req, err.min(req), 0);
            }
            let width = (length.nanos() + BUCKETS as i64 - 1) / BUCKETS as i64;
            let newest = now.nanos().div_euclid(width);
            let in_window: Vec<_> = sorted.iter().filter(|o| {
                let e = (o.0 * SEC).div_euclid(width);
                e > newest - BUCKETS as i64 && e <= newest
            }).collect();
            let any_metric = in_window.iter().any(|o| o.3);
            let want: u64 = in_window.iter().filter(|o| o.3 == any_metric).map(|o| o.1).sum();
            let got = w.window(0, now);
            prop_assert_eq!(got.requests, want);
            let want_err: u64 = in_window.iter().filter(|o| o.3 == any_metric).map(|o| o.2.min(o.1)).sum();
            prop_assert_eq!(got.errors, want_err);
            // The covered span is between length − width and length.
            prop_assert!(BUCKETS as i64 * width >= length.nanos());
        }

        #[test]
        fn out_of_order_writes_within_the_window_are_kept(
            times in proptest::collection::vec(0i64..60, 1..100),
        ) {
            let mut w = SeriesWindows::new(&[Duration::from_secs(60)]);
            for &t in &times {
                w.add(Timestamp((1000 + t) * SEC), Kind::Span, 1, 0, 0);
            }
            prop_assert_eq!(w.window(0, Timestamp(1059 * SEC)).requests, times.len() as u64);
        }
    }
}
