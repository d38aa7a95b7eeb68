//! A deploy's sequential tests (`stats::sequential`) and what they have
//! seen: per window pair and SLI, the threshold test (the candidate's bad
//! ratio exceeds burn_rate × budget) over the candidate's requests since
//! the test began; per SLI, the attribution test (the candidate is worse
//! than its baseline) over event-time slots in which both served requests.
//!
//! Tests restart (threshold tests every long window of their pair,
//! attribution tests every longest window); each lives two lengths, so at
//! any time one has seen between one and two lengths of traffic and a late
//! regression is not diluted by hours of good traffic before it. Every
//! test's level is `epoch_alpha` of its sequence, so together they hold at
//! `confidence` over the deploy's whole watch.
//!
//! Slots are the finest window's buckets (one second by default), or the
//! longest window's once either side reports histogram points, whose
//! exports are seconds apart. A slot is read once two more have ended after
//! it; its late data is read again for 15 more slots, and a slot where only
//! one side has new requests waits for the other (one side alone is no
//! evidence). A series that moves from spans to histograms (which it does
//! at most once) starts its tests again rather than count the same
//! requests twice; that restart spends its epoch's level a second time.
//!
//! The tests live in memory: an instance that restarts, or takes a key
//! over, starts them afresh (epoch 0 counts every request it is given
//! again; attribution reads new slots), so the bound holds per owner's
//! watch of a deploy.

use serde::Serialize;

use super::window::{SeriesWindows, Sli, Source, WindowCounts};
use crate::config::Policy;
use crate::stats::sequential::{epoch_alpha, ShareState, ShareTest, SHARE_ALTERNATIVES};
use crate::time::Timestamp;

/// One sequential test's standing: it rejects its null hypothesis when
/// `log_e ≥ needed` (= ln 1/α of the test).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TestResult {
    pub log_e: f64,
    pub needed: f64,
}

impl TestResult {
    pub fn rejects(&self) -> bool {
        self.log_e >= self.needed
    }

    fn margin(&self) -> f64 {
        self.log_e - self.needed
    }
}

/// How long a finest-window slot waits for both sides' data before the
/// attribution test reads it, in slots.
const SETTLE_SLOTS: i64 = 2;
/// Slots behind the newest settled one that are read again for late data.
const LATE_SLOTS: i64 = 15;
/// Slots remembered as paired: more than the settled and late ones.
const PAIRED_RING: usize = 32;

/// One deploy's sequential tests: what they have seen so far.
#[derive(Debug, Clone)]
pub struct Judge {
    at: Timestamp,
    /// Per window pair: the current threshold-test epoch and the one
    /// before (they restart every long window of the pair).
    epochs: Vec<[Option<Epoch>; 2]>,
    /// The attribution tests' current epoch and the one before (they
    /// restart every longest window; one per SLI, whatever the pair).
    share: [Option<ShareEpoch>; 2],
    /// Slots already given to the attribution tests, by slot number
    /// modulo the ring, with what was read of them.
    paired: Vec<Option<Paired>>,
    /// Whose buckets the slots are: the finest window's for spans; the
    /// longest window's once either side reports histogram points (metric
    /// exports are seconds apart and rarely share a fine slot).
    pair_window: Option<usize>,
}

#[derive(Debug, Clone)]
struct Epoch {
    index: u64,
    /// The candidate's totals when the epoch began.
    start: WindowCounts,
}

#[derive(Debug, Clone)]
struct ShareEpoch {
    index: u64,
    /// Errors, then latency.
    state: [ShareState; 2],
}

/// Moves `epochs` (current, previous) on to epoch `index`.
fn roll<E>(epochs: &mut [Option<E>; 2], index: u64, of: impl Fn(&E) -> u64, fresh: impl Fn() -> E) {
    let [current, previous] = epochs;
    match current.as_ref().map(&of) {
        Some(i) if i == index => {}
        Some(i) if i + 1 == index => *previous = current.replace(fresh()),
        _ => {
            *previous = None;
            *current = Some(fresh());
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Paired {
    slot: i64,
    candidate: WindowCounts,
    baseline: WindowCounts,
    /// A side's source changed after the slot was read: never read again.
    frozen: bool,
}

/// Of (ln e-value, α) per epoch, the one closest to rejecting.
fn best(tests: impl Iterator<Item = (f64, f64)>) -> Option<TestResult> {
    tests
        .map(|(log_e, alpha)| TestResult {
            log_e,
            needed: (1.0 / alpha).ln(),
        })
        .max_by(|a, b| a.margin().total_cmp(&b.margin()))
}

impl Judge {
    pub fn new(policy: &Policy, at: Timestamp) -> Judge {
        Judge {
            at,
            epochs: vec![[None, None]; policy.windows.len()],
            share: [None, None],
            paired: vec![None; PAIRED_RING],
            pair_window: None,
        }
    }

    /// Bytes of heap and inline state, for the memory bench.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.epochs.len() * std::mem::size_of::<[Option<Epoch>; 2]>()
            + self.paired.len() * std::mem::size_of::<Option<Paired>>()
    }

    /// When the deploy started.
    pub fn at(&self) -> Timestamp {
        self.at
    }

    /// Feeds the tests what arrived since the last call: restarts the
    /// tests whose epoch ended and gives the attribution tests the newly
    /// settled slots. Returns the candidate's totals, which the threshold
    /// tests read.
    pub fn observe(
        &mut self,
        policy: &Policy,
        candidate: Option<&SeriesWindows>,
        baseline: Option<&SeriesWindows>,
        now: Timestamp,
    ) -> WindowCounts {
        let totals = candidate.map_or(WindowCounts::EMPTY, |c| c.totals());
        self.start_epochs(policy, totals, now);
        if let (Some(c), Some(b)) = (candidate, baseline) {
            self.pair_slots(c, totals, b, now);
        }
        totals
    }

    fn start_epochs(&mut self, policy: &Policy, totals: WindowCounts, now: Timestamp) {
        let age = now.since(self.at).nanos().max(0);
        for (w, epochs) in policy.windows.iter().zip(&mut self.epochs) {
            let index = (age / w.long.nanos().max(1)) as u64;
            // The first test counts every request since the deploy started,
            // also those that arrived before its first evaluation.
            let start = if index == 0 && epochs[0].is_none() {
                WindowCounts::EMPTY
            } else {
                totals
            };
            roll(epochs, index, |e| e.index, || Epoch { index, start });
            // A series that moved from spans to metrics starts its count
            // again (once: it never moves back).
            for e in epochs.iter_mut().flatten() {
                if totals.since(e.start).is_none() {
                    e.start = totals;
                }
            }
        }
        let index = (age / policy.longest().nanos().max(1)) as u64;
        roll(
            &mut self.share,
            index,
            |e| e.index,
            || ShareEpoch {
                index,
                state: [[0.0; SHARE_ALTERNATIVES]; 2],
            },
        );
    }

    /// Gives the attribution tests every settled event-time slot (and late
    /// data of recent ones) in which candidate and baseline both served.
    fn pair_slots(
        &mut self,
        cand: &SeriesWindows,
        cand_totals: WindowCounts,
        base: &SeriesWindows,
        now: Timestamp,
    ) {
        let metrics = [cand_totals, base.totals()]
            .iter()
            .any(|t| t.source == Source::Metrics);
        let window = if metrics { cand.lengths() - 1 } else { 0 };
        if self.pair_window != Some(window) {
            if self.pair_window.is_some() {
                // Spans read in fine slots may come again as metrics: the
                // tests start again rather than read requests twice.
                for e in self.share.iter_mut().flatten() {
                    e.state = [[0.0; SHARE_ALTERNATIVES]; 2];
                }
            }
            self.paired.fill(None);
            self.pair_window = Some(window);
        }
        let width = cand.bucket_width(window);
        if width != base.bucket_width(window) {
            return;
        }
        // A slot is read once two more have ended after it.
        let newest = now.nanos().div_euclid(width) - SETTLE_SLOTS - 1;
        let oldest = (newest - LATE_SLOTS).max(self.at.nanos().div_euclid(width));
        let test = ShareTest::get();
        for slot in oldest..=newest {
            let (c, b) = (cand.bucket(window, slot), base.bucket(window, slot));
            if c.requests == 0 && b.requests == 0 {
                continue;
            }
            let ring = self.paired.len() as i64;
            let entry = &mut self.paired[slot.rem_euclid(ring) as usize];
            let seen = entry.filter(|p| p.slot == slot);
            let delta = match seen {
                Some(p) if p.frozen => continue,
                None => Some((c, b)),
                Some(p) => c.since(p.candidate).zip(b.since(p.baseline)),
            };
            let Some((dc, db)) = delta else {
                // A side's source changed after the slot was read: what it
                // says now may repeat what was read.
                *entry = Some(Paired {
                    slot,
                    candidate: c,
                    baseline: b,
                    frozen: true,
                });
                continue;
            };
            if dc.requests == 0 || db.requests == 0 {
                // Wait for the other side's requests of this slot.
                continue;
            }
            *entry = Some(Paired {
                slot,
                candidate: c,
                baseline: b,
                frozen: false,
            });
            for e in self.share.iter_mut().flatten() {
                for sli in Sli::ALL {
                    let state = &mut e.state[sli.index()];
                    test.update(state, dc.bad(sli), dc.requests, db.bad(sli), db.requests);
                }
            }
        }
    }

    /// The threshold test of pair `i` for `sli` with the most evidence:
    /// one of `2 × pairs` test sequences.
    pub fn rate_test(
        &self,
        policy: &Policy,
        i: usize,
        sli: Sli,
        totals: WindowCounts,
    ) -> Option<TestResult> {
        let test = &policy.rate_tests[i][sli.index()];
        let family = policy.windows.len() * 2;
        best(self.epochs[i].iter().flatten().map(|e| {
            let log_e = totals
                .since(e.start)
                .map_or(f64::NEG_INFINITY, |d| test.log_e(d.bad(sli), d.requests));
            (log_e, epoch_alpha(policy.confidence, family, e.index))
        }))
    }

    /// The attribution test for `sli` with the most evidence: one of 2
    /// test sequences (one per SLI).
    pub fn attribution_test(&self, policy: &Policy, sli: Sli) -> Option<TestResult> {
        let test = ShareTest::get();
        best(self.share.iter().flatten().map(|e| {
            let log_e = test.log_e(&e.state[sli.index()]);
            (log_e, epoch_alpha(policy.confidence, 2, e.index))
        }))
    }
}
