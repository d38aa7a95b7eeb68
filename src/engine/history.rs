//! A deploy's history for people: one point per evaluation, thinned as the
//! deploy ages so that its whole life fits in [`MAX_POINTS`] points —
//! what the status page and the replay report chart.

use serde::Serialize;

use super::evaluate::Evaluation;
use crate::model::Verdict;
use crate::time::Timestamp;

/// Points kept per deploy: when full, every other one is dropped and one
/// evaluation in twice as many is kept from then on.
pub const MAX_POINTS: usize = 120;

/// One side's counts in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SideCounts {
    pub requests: u32,
    pub errors: u32,
    pub slow: u32,
}

/// One evaluation of a deploy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub at: Timestamp,
    pub verdict: Verdict,
    /// The candidate over the first window pair's short window, and the
    /// baseline over its long window (the one the tests compare against).
    pub candidate: SideCounts,
    pub baseline: SideCounts,
    /// Per window pair and SLI, in the evaluation's order: the long
    /// window's burn rate.
    pub burn: Vec<f32>,
}

/// The points of one deploy.
#[derive(Debug, Clone, Default)]
pub struct History {
    points: Vec<Point>,
    /// One evaluation in `stride` is kept.
    stride: u32,
    seen: u32,
}

fn counts(c: crate::engine::window::WindowCounts) -> SideCounts {
    let n = |v: u64| v.min(u32::MAX as u64) as u32;
    SideCounts {
        requests: n(c.requests),
        errors: n(c.errors),
        slow: n(c.slow),
    }
}

impl History {
    pub fn record(&mut self, ev: &Evaluation) {
        let stride = self.stride.max(1);
        self.seen += 1;
        if self.seen % stride != 0 {
            return;
        }
        let Some(first) = ev.pairs.first() else {
            return;
        };
        if self.points.len() >= MAX_POINTS {
            let mut i = 0;
            self.points.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride = stride * 2;
            self.seen = 0;
        }
        self.points.push(Point {
            at: ev.at,
            verdict: ev.verdict,
            candidate: counts(first.candidate_short),
            baseline: counts(first.baseline_long),
            burn: ev.pairs.iter().map(|p| p.burn_long as f32).collect(),
        });
    }

    pub fn points(&self) -> &[Point] {
        &self.points
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::evaluate::Evaluation;

    fn evaluation(at: i64) -> Evaluation {
        let policy = crate::config::Config::default().default_policy.clone();
        let mut judge = crate::engine::judge::Judge::new(&policy, Timestamp(0));
        let mut ev =
            crate::engine::evaluate::evaluate(&mut judge, &policy, None, None, Timestamp(at));
        ev.at = Timestamp(at);
        ev
    }

    #[test]
    fn a_long_life_is_thinned_to_the_limit_from_its_start() {
        let mut h = History::default();
        for i in 1..=1000 {
            h.record(&evaluation(i * 5_000_000_000));
        }
        let p = h.points();
        assert!(
            p.len() <= MAX_POINTS && p.len() > MAX_POINTS / 2,
            "{}",
            p.len()
        );
        assert!(p[0].at.0 <= 20_000_000_000, "the start is kept");
        assert!(
            p[p.len() - 1].at.0 >= 4_800_000_000_000,
            "and the recent end"
        );
        assert!(p.windows(2).all(|w| w[0].at < w[1].at));
        // What the README says a point costs (plus its burn rates).
        assert!(std::mem::size_of::<Point>() <= 64);
    }
}
