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
//!
//! Here: [`SeriesWindows`]. Beside it: the rings of buckets and their
//! tallies (`ring`), what a window reads — counts, their source, the SLIs
//! (`reading`) — and event-time slot arithmetic (`slots`).

mod reading;
mod ring;
mod slots;

use crate::config::Policy;
pub use crate::model::evidence::Counts;
use crate::time::{Duration, Timestamp};
pub use reading::{Sli, SliSource, WindowCounts};
use ring::{Bucket, Ring};
pub use ring::{Kind, Tally};
pub use slots::{bucket_width, pair_slots_kept, past_lateness, slot, MAX_PAIR_SLOTS};

/// Buckets per window length: the window's edges are exact to 1/60 of its
/// length (1s for a 1m window, 30s for a 30m one).
pub const BUCKETS: usize = 60;

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
                let kind = Kind::of(metric);
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
