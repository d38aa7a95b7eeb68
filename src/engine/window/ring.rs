//! The rings of buckets a window is made of, and tallies of their counts.

use super::{bucket_width, Counts, SliSource, WindowCounts, BUCKETS};
use crate::time::{Duration, Timestamp};

/// Which source an observation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Span,
    Metric,
}

impl Kind {
    /// The kind of evidence that says whether it is histogram data.
    pub fn of(metrics: bool) -> Kind {
        if metrics {
            Kind::Metric
        } else {
            Kind::Span
        }
    }
}

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
pub(super) struct Bucket {
    pub(super) epoch: i64,
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

#[derive(Debug, Clone)]
pub(super) struct Ring {
    pub(super) width: i64,
    /// [`BUCKETS`] for a window; as many as the lateness needs for pair
    /// slots.
    pub(super) buckets: Box<[Bucket]>,
}

impl Ring {
    pub(super) fn new(length: Duration) -> Ring {
        Ring::slots(bucket_width(length), BUCKETS)
    }

    pub(super) fn slots(width: i64, count: usize) -> Ring {
        Ring {
            width: width.max(1),
            buckets: vec![EMPTY; count.max(1)].into_boxed_slice(),
        }
    }

    pub(super) fn add(&mut self, t: Timestamp, kind: Kind, c: Counts) {
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

    pub(super) fn sum(&self, now: Timestamp) -> WindowCounts {
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
    pub(super) fn bucket(&self, epoch: i64) -> WindowCounts {
        let b = &self.buckets[epoch.rem_euclid(self.buckets.len() as i64) as usize];
        if b.epoch == epoch {
            let mut t = Tally::default();
            t.add_bucket(b);
            t.counts()
        } else {
            WindowCounts::EMPTY
        }
    }

    pub(super) fn memory_bytes(&self) -> usize {
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
    pub(super) fn add_bucket(&mut self, b: &Bucket) {
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
